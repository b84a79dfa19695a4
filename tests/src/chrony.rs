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
    ntp_port: u16,
    nts: Option<NtsServer>,
    command_socket: bool,
}

/// chronyd as an NTS-KE server (RFC 8915): its certificate and key, the KE
/// port, and optionally the NTP server it tells clients to use.
#[derive(Debug, Clone)]
pub struct NtsServer {
    pub cert: crate::pki::ServerCert,
    pub ke_port: u16,
    /// `ntsntpserver`: the name or address sent in the NTPv4 Server record.
    pub ntp_server: Option<String>,
}

impl ChronyConfig {
    /// A server on `bind` announcing stratum 3.
    pub fn server(bind: IpAddr) -> Self {
        Self {
            bind,
            local_stratum: 3,
            peers: Vec::new(),
            ntp_port: 123,
            nts: None,
            command_socket: false,
        }
    }

    /// Serves NTP on `port` instead of 123 (an NTS-KE server then
    /// negotiates that port with its clients).
    pub fn ntp_port(mut self, port: u16) -> Self {
        self.ntp_port = port;
        self
    }

    /// Also an NTS-KE server.
    pub fn nts(mut self, nts: NtsServer) -> Self {
        self.nts = Some(nts);
        self
    }

    /// Opens a private Unix command socket, for [`Chronyd::chronyc`].
    pub fn command_socket(mut self) -> Self {
        self.command_socket = true;
        self
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
        let _ = writeln!(c, "port {}", self.ntp_port);
        let _ = writeln!(c, "cmdport 0");
        if self.command_socket {
            // A private socket, never the shared one in /run/chrony.
            let _ = writeln!(
                c,
                "bindcmdaddress {}",
                dir.join("cmd/chronyd.sock").display()
            );
        } else {
            // "/" disables the Unix domain command socket (else /run/chrony is shared).
            let _ = writeln!(c, "bindcmdaddress /");
        }
        if let Some(nts) = &self.nts {
            let _ = writeln!(c, "ntsservercert {}", nts.cert.cert.display());
            let _ = writeln!(c, "ntsserverkey {}", nts.cert.key.display());
            let _ = writeln!(c, "ntsport {}", nts.ke_port);
            // Keys and cookies stay in the private dir; no helper processes,
            // so the guard's kill ends the whole server.
            let _ = writeln!(c, "ntsdumpdir {}", dir.display());
            let _ = writeln!(c, "ntsprocesses 0");
            if let Some(s) = &nts.ntp_server {
                let _ = writeln!(c, "ntsntpserver {s}");
            }
        }
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
    ns_path: PathBuf,
    dir: TempDir,
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
        let dir = lifetime.temp_dir(&format!("chrony-{}", cfg.bind))?;
        let conf = cfg.render(dir.path())?;
        if cfg.command_socket {
            // chronyd refuses a socket directory others can enter.
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir.path().join("cmd"))
                .context("making chronyd's command socket directory")?;
        }
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
            ns_path: ns.path().to_path_buf(),
            dir,
        })
    }

    /// Runs `chronyc -h <its private socket> ARGS` in its namespace (needs
    /// [`ChronyConfig::command_socket`]), e.g. `serverstats`.
    pub fn chronyc(&self, args: &[&str]) -> Result<String> {
        let sock = self.dir.path().join("cmd/chronyd.sock");
        let out = std::process::Command::new("nsenter")
            .arg(format!("--net={}", self.ns_path.display()))
            .arg("chronyc")
            .args(["-n", "-h"])
            .arg(&sock)
            .args(args)
            .output()
            .context("running chronyc")?;
        if !out.status.success() {
            bail!(
                "chronyc {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `serverstats` as (name, value) pairs, e.g. ("Authenticated NTP packets", 12).
    pub fn server_stats(&self) -> Result<Vec<(String, u64)>> {
        Ok(self
            .chronyc(&["serverstats"])?
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once(':')?;
                Some((k.trim().to_string(), v.trim().parse().ok()?))
            })
            .collect())
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
