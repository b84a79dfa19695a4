//! `Chronyd`: a real NTP server or symmetric peer (chrony) inside a test
//! namespace, for end-to-end time-sync tests.
//!
//! Safety rules this module enforces (there is no way around them through
//! its API):
//! - chronyd always runs with `-x`: it never controls the system clock.
//! - It runs in the foreground (`-d`) as a [`Child`], so its guard kills it.
//!   It keeps running as root (`-u root`): changing credentials would clear
//!   the parent-death signal that kills it if the test process dies before
//!   the guard runs.
//! - Its config, pid file and drift file are private (a [`TempDir`]); the
//!   command port and the Unix command socket are disabled, so instances in
//!   parallel tests (or a system chronyd) never share anything.
//! - No `rtcsync`, no `makestep`, no log dir: only the directives below.

use crate::journal::Lifetime;
use crate::netns::Netns;
use crate::process::Child;
use crate::util::TempDir;
use anyhow::{bail, Context, Result};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What chronyd prints once it runs with `-x`.
const READY_LINE: &str = "Disabled control of system clock";
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Path of chronyd: `CHRONYD` if set, else `/usr/sbin/chronyd` if present,
/// else `chronyd` from `PATH`.
pub fn chronyd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CHRONYD").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let sbin = PathBuf::from("/usr/sbin/chronyd");
    if sbin.exists() {
        sbin
    } else {
        PathBuf::from("chronyd")
    }
}

/// Configuration of one test chronyd: it serves NTP on port 123 of `bind`
/// to anyone, as a `local stratum` reference (no upstream needed), and
/// optionally has symmetric peers.
#[derive(Debug, Clone)]
pub struct ChronyConfig {
    bind: IpAddr,
    local_stratum: u8,
    peers: Vec<(IpAddr, String)>,
}

impl ChronyConfig {
    /// A server on `bind` announcing stratum 3.
    pub fn server(bind: IpAddr) -> Self {
        Self {
            bind,
            local_stratum: 3,
            peers: Vec::new(),
        }
    }

    pub fn local_stratum(mut self, stratum: u8) -> Self {
        self.local_stratum = stratum;
        self
    }

    /// Adds `peer ADDR OPTIONS` (e.g. options `"minpoll 0 maxpoll 0"`).
    /// Options are limited to the peer line: no newlines allowed.
    pub fn peer(mut self, addr: IpAddr, options: &str) -> Self {
        self.peers.push((addr, options.to_string()));
        self
    }

    /// The chrony.conf text, with private paths under `dir`.
    fn render(&self, dir: &std::path::Path) -> Result<String> {
        let mut c = String::new();
        let _ = writeln!(
            c,
            "# test chronyd: serves only, never controls the clock (-x)"
        );
        let _ = writeln!(c, "port 123");
        let _ = writeln!(c, "cmdport 0");
        // "/" disables the Unix domain command socket (else /run/chrony is shared).
        let _ = writeln!(c, "bindcmdaddress /");
        // Only its own address; the other family only on loopback, so it
        // never answers for the other addresses of its namespace.
        let _ = writeln!(c, "bindaddress {}", self.bind);
        let other = match self.bind {
            IpAddr::V4(_) => "::1",
            IpAddr::V6(_) => "127.0.0.1",
        };
        let _ = writeln!(c, "bindaddress {other}");
        let _ = writeln!(c, "allow all");
        let _ = writeln!(c, "local stratum {}", self.local_stratum);
        let _ = writeln!(c, "pidfile {}", dir.join("chronyd.pid").display());
        let _ = writeln!(c, "driftfile {}", dir.join("drift").display());
        for (addr, opts) in &self.peers {
            if opts.contains(['\n', '\r']) {
                bail!("peer options must stay on the peer line: {opts:?}");
            }
            let _ = writeln!(c, "peer {addr} {opts}");
        }
        Ok(c)
    }
}

/// A running chronyd (`chronyd -x -d -u root -f <private conf>`), killed on drop.
#[derive(Debug)]
pub struct Chronyd {
    child: Child,
    conf: String,
    _dir: TempDir,
}

impl Chronyd {
    /// Starts chronyd in `ns` and waits until it reports that clock control
    /// is disabled (its first line after reading the config).
    pub fn start(ns: &Netns, cfg: &ChronyConfig) -> Result<Self> {
        Self::start_with(ns, cfg, &Lifetime::Scoped)
    }

    /// `start`, left running in persist mode (its files then live in the
    /// lab's state dir, under `chrony-<bind address>`).
    pub fn start_with(ns: &Netns, cfg: &ChronyConfig, lifetime: &Lifetime) -> Result<Self> {
        let dir = TempDir::with_lifetime(&format!("chrony-{}", cfg.bind), lifetime)?;
        let conf = cfg.render(dir.path())?;
        let conf_path = dir.path().join("chrony.conf");
        std::fs::write(&conf_path, &conf)
            .with_context(|| format!("writing {}", conf_path.display()))?;
        let conf_arg = conf_path.display().to_string();
        // -x: never touch the clock. -d: foreground, log to stderr.
        let mut child = Child::spawn_in_with(
            ns,
            &format!("chronyd-{}", cfg.bind),
            chronyd_bin(),
            &["-x", "-d", "-u", "root", "-f", &conf_arg],
            lifetime,
        )?;
        child
            .wait_for_line(READY_LINE, START_TIMEOUT)
            .with_context(|| {
                format!("chronyd did not start with clock control disabled; conf:\n{conf}")
            })?;
        Ok(Self {
            child,
            conf,
            _dir: dir,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Everything chronyd printed so far.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// The configuration it runs with.
    pub fn conf(&self) -> &str {
        &self.conf
    }

    /// Fails if chronyd has exited.
    pub fn check_running(&mut self) -> Result<()> {
        if let Some(st) = self.child.try_wait()? {
            bail!("chronyd exited ({st}); log:\n{}", self.log());
        }
        Ok(())
    }

    /// SIGSTOP: requests queue up unanswered until [`Chronyd::resume`].
    pub fn pause(&mut self) {
        self.child.signal(libc::SIGSTOP);
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        self.child.signal(libc::SIGCONT);
    }
}

impl Drop for Chronyd {
    fn drop(&mut self) {
        if self.child.persists() {
            return;
        }
        // A stopped process would sit out SIGTERM until the SIGKILL fallback.
        self.resume();
        // `child`'s own Drop then terminates it (and prints the log if panicking).
    }
}
