//! The router note's lab: `ntp-filter-lab up` builds a small network of
//! namespaces with fixed names, runs the agent on its router, tells the
//! note's story live, and leaves everything running to play with;
//! `ntp-filter-lab down` removes it again.
//!
//! ```text
//!  <prefix>-router   192.0.2.1   wan0 ─┐
//!  <prefix>-upstream 192.0.2.10  eth0 ─┤  <prefix>-wan: bridge br0
//!  <prefix>-peer     192.0.2.20  eth0 ─┤
//!  <prefix>-outside  192.0.2.99  eth0 ─┘
//! ```
//!
//! The lab's objects are made in persist mode (see `journal`): recorded in
//! the state dir as soon as they exist, so `down` finds them, and removed
//! at once if a step of `up` fails.

mod story;

use crate::addrs::{OUTSIDER_V4, PEER_V4, ROUTER_V4, SERVER_V4, WAN_IF};
use crate::journal::{delete_netns, Journal, Lifetime};
use crate::{AgentEnv, Child, ChronyConfig, Chronyd, Netns, Topology};
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub const DEFAULT_PREFIX: &str = "nf-lab";
pub const DEFAULT_STATE_DIR: &str = "/run/ntp-filter-lab";

/// Every host's interface, except the router's `wan0`.
const HOST_IF: &str = "eth0";
const BRIDGE: &str = "br0";
/// The namespaces, by role: `<prefix>-<role>`.
const ROLES: [&str; 5] = ["wan", "router", "upstream", "peer", "outside"];
/// The hosts on the switch: role, interface, address, what it is.
const HOSTS: [(&str, &str, Ipv4Addr, &str); 4] = [
    (
        "router",
        WAN_IF,
        ROUTER_V4,
        "ntp-agent, client mode, XDP filter on wan0",
    ),
    (
        "upstream",
        HOST_IF,
        SERVER_V4,
        "its NTP server: chronyd -x, local stratum 3",
    ),
    (
        "peer",
        HOST_IF,
        PEER_V4,
        "its symmetric peer: chronyd -x, local stratum 3, peer 192.0.2.1",
    ),
    ("outside", HOST_IF, OUTSIDER_V4, "a host on the internet"),
];
/// The upstream announces stratum 3, so the synchronized router is at 4.
const UPSTREAM_STRATUM: u8 = 3;
/// Symmetric mode needs chronyd's own polls; every 2 s at first, so the
/// router has the peer's samples within seconds. `noselect`: the peer
/// gives the router its time but never takes the router's (everything here
/// shares one clock; a peer synced to the router would be a timing loop,
/// which the agent rightly rejects).
const PEER_OPTIONS: &str = "minpoll 1 maxpoll 4 noselect";

/// Where a lab lives: its names and its state.
#[derive(Debug, Clone)]
pub struct LabOpts {
    /// Namespaces are `<prefix>-<role>`, the pin dir `/sys/fs/bpf/<prefix>`.
    pub prefix: String,
    /// The journal, the agent's socket and drift file, configs and logs.
    pub state_dir: PathBuf,
}

impl LabOpts {
    pub fn check(&self) -> Result<()> {
        let p = &self.prefix;
        let ok_chars = p
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !p.starts_with("nf-") || !ok_chars || p.ends_with('-') || p.len() > 40 {
            bail!(
                "--prefix {p:?}: must start with `nf-`, use only a-z, 0-9 and `-`, \
                 not end with `-`, and be at most 40 characters"
            );
        }
        if !self.state_dir.is_absolute() {
            bail!(
                "--state-dir {}: must be an absolute path",
                self.state_dir.display()
            );
        }
        Ok(())
    }

    pub fn netns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    pub fn pin_dir(&self) -> PathBuf {
        Path::new(crate::bpffs::BPFFS).join(&self.prefix)
    }

    /// The agent's control socket (see `AgentEnv::persist`).
    pub fn control_socket(&self) -> PathBuf {
        self.state_dir.join("agent/agent.sock")
    }

    fn is_default(&self) -> bool {
        self.prefix == DEFAULT_PREFIX && self.state_dir == Path::new(DEFAULT_STATE_DIR)
    }

    /// Anything of a lab here: a journal, or objects with the lab's names.
    fn leftovers(&self) -> Vec<String> {
        let mut found: Vec<String> = ROLES
            .iter()
            .map(|r| self.netns(r))
            .filter(|n| Netns::exists(n))
            .collect();
        for p in [self.state_dir.clone(), self.pin_dir()] {
            if p.exists() {
                found.push(p.display().to_string());
            }
        }
        found
    }
}

fn require_root(action: &str) -> Result<()> {
    let euid = nix::unistd::geteuid();
    if !euid.is_root() {
        let (does, flag) = match action {
            "up" => ("creates network namespaces and loads an XDP program", ""),
            _ => (
                "stops processes, detaches an XDP program, deletes namespaces",
                " --down",
            ),
        };
        bail!(
            "`ntp-filter-lab {action}` must run as root (euid is {euid}): it {does}; \
             try `sudo -E env \"PATH=$PATH\" cargo xtask lab{flag}`"
        );
    }
    Ok(())
}

/// The programs the lab runs, each with the package that has it.
fn require_tools() -> Result<()> {
    let chronyd = crate::chrony::chronyd_bin();
    let missing: Vec<String> = [
        (Path::new("ip"), "iproute2"),
        (Path::new("nsenter"), "util-linux"),
        (chronyd.as_path(), "chrony"),
        (Path::new("ntpdate"), "ntpsec-ntpdate"),
    ]
    .iter()
    .filter(|(program, _)| !crate::util::installed(program))
    .map(|(program, pkg)| format!("{} (package {pkg})", program.display()))
    .collect();
    if !missing.is_empty() {
        bail!(
            "missing: {}; `cargo xtask setup` installs them (chrony without starting it)",
            missing.join(", ")
        );
    }
    Ok(())
}

/// Builds the lab, tells the story, leaves it running. A lab already there
/// is taken down first; when a step fails, everything made so far is
/// removed and the error names the step.
pub fn up(opts: &LabOpts) -> Result<()> {
    opts.check()?;
    require_root("up")?;
    require_tools()?;
    let found = opts.leftovers();
    if !found.is_empty() {
        say!(
            "a lab is already up ({}): taking it down first",
            found.join(", ")
        );
        down(opts)?;
        say!();
    }
    story::intro(opts);
    let journal = Journal::create(&opts.state_dir)?;
    let started = Instant::now();
    let told = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = Lab::build(opts, &journal)?;
        story::tell(&lab, started)
    }));
    let err = match told {
        Ok(Ok(())) => {
            story::how_to_play(opts);
            return Ok(());
        }
        Ok(Err(e)) => e,
        Err(_) => anyhow::anyhow!("a step panicked (see the message above)"),
    };
    // The whole chain goes to stderr from main; here the step that failed.
    say!("\n{err}: removing what the lab made so far");
    if let Err(e) = journal.undo() {
        say!("{e:#}");
    }
    Err(err)
}

/// Removes what the journal in the state dir records (processes, pins,
/// namespaces, the state dir), then anything else named like this lab's.
/// Succeeds when there is nothing to remove.
pub fn down(opts: &LabOpts) -> Result<()> {
    opts.check()?;
    require_root("down")?;
    if opts.leftovers().is_empty() {
        say!(
            "no lab is up (no {}, no {}-* namespaces, no {}): nothing to remove",
            opts.state_dir.display(),
            opts.prefix,
            opts.pin_dir().display()
        );
        return Ok(());
    }
    let mut result = Ok(());
    match Journal::open(&opts.state_dir) {
        Some(j) => {
            say!(
                "taking down the lab recorded in {}",
                opts.state_dir.display()
            );
            result = j.undo();
        }
        // `up` died between making the dir and its journal.
        None if std::fs::remove_dir(&opts.state_dir).is_ok() => {
            say!("removed {} (empty)", opts.state_dir.display());
        }
        None if opts.state_dir.exists() => say!(
            "{} has no journal, so it is not a lab's: left alone",
            opts.state_dir.display()
        ),
        None => {}
    }
    // Named like the lab's but not (or no longer) in a journal.
    for role in ROLES {
        let name = opts.netns(role);
        if Netns::exists(&name) {
            delete_netns(&name)?;
        }
    }
    let pins = opts.pin_dir();
    if pins.exists() {
        std::fs::remove_dir_all(&pins).with_context(|| format!("removing {}", pins.display()))?;
        say!("removed {}", pins.display());
    }
    result
}

/// A running lab (persist mode: dropping it removes nothing).
struct Lab {
    topo: Topology,
    agent: AgentEnv,
    _upstream: Chronyd,
    _peer: Chronyd,
    _agent: Child,
}

fn step<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    f().with_context(|| format!("step failed: {what}"))
}

impl Lab {
    fn build(opts: &LabOpts, journal: &Journal) -> Result<Self> {
        let lifetime = Lifetime::Persist(journal.clone());
        let topo = step("making the namespaces", || {
            let mut t = Topology::with_lifetime(&opts.prefix, lifetime.clone());
            for role in ROLES {
                t.add_ns(role)?;
            }
            for (role, ifname, ..) in HOSTS {
                t.veth((role, ifname), ("wan", role))?;
            }
            t.bridge("wan", BRIDGE, &HOSTS.map(|h| h.0))?;
            for (role, ifname, ip, _) in HOSTS {
                t.addr(role, ifname, &format!("{ip}/24"))?;
            }
            Ok(t)
        })?;
        let upstream = step("starting the upstream server (chronyd -x)", || {
            let cfg = ChronyConfig::server(SERVER_V4.into()).local_stratum(UPSTREAM_STRATUM);
            Chronyd::start_with(topo.ns("upstream"), &cfg, &lifetime)
        })?;
        let peer = step("starting the symmetric peer (chronyd -x)", || {
            let cfg = ChronyConfig::server(PEER_V4.into())
                .local_stratum(UPSTREAM_STRATUM)
                .peer(ROUTER_V4.into(), PEER_OPTIONS);
            Chronyd::start_with(topo.ns("peer"), &cfg, &lifetime)
        })?;
        let agent = step("preparing the agent's pin dir", || {
            AgentEnv::persist(&opts.prefix, journal)
        })?;
        let running = step(
            "starting the agent (client mode, --no-clock-adjust)",
            || {
                agent.start(
                    topo.ns("router"),
                    &[
                        "--iface",
                        WAN_IF,
                        "--server",
                        &SERVER_V4.to_string(),
                        "--peer",
                        &PEER_V4.to_string(),
                        "--mode",
                        "client",
                    ],
                )
            },
        )?;
        Ok(Self {
            topo,
            agent,
            _upstream: upstream,
            _peer: peer,
            _agent: running,
        })
    }

    fn router(&self) -> &Netns {
        self.topo.ns("router")
    }

    fn outside(&self) -> &Netns {
        self.topo.ns("outside")
    }
}
