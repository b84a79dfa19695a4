//! BPF_PROG_TEST_RUN on the real XDP program: [`Harness`] loads it into a
//! private pin directory and fills its maps the way `ntp-agent run` does,
//! for the fixture network of [`addrs`].

pub mod addrs;

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::{bail, Context as _, Result};
use aya::{
    programs::{TestRun, TestRunOptions, TestRunResult, Xdp},
    Ebpf,
};
use clap::Parser as _;
use ntp_agent::{
    cli::{Cli, Command},
    cmd::run,
    filter::{
        self, reconcile,
        slots::{self, Iface},
        Desired, FilterMaps, PinDir,
    },
    model::{AclRule, Role},
};
use ntp_filter_common::{local_kind, AddrKey, SourceClass, SourceEntry};

use self::addrs::*;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// The policy-relevant part of the agent's configuration for a fixture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Env {
    pub mode: Role,
    pub ntp_port: u16,
    pub pass_non_first_fragments: bool,
    /// Access-list rules, `allow RANGE` / `deny RANGE`.
    pub acl: &'static [&'static str],
}

impl Env {
    pub const CLIENT: Env = Env {
        mode: Role::Client,
        ntp_port: 123,
        pass_non_first_fragments: false,
        acl: &[],
    };
    pub const SERVER: Env = Env {
        mode: Role::Server,
        ..Env::CLIENT
    };
}

impl Default for Env {
    fn default() -> Self {
        Env::CLIENT
    }
}

/// What `ntp-agent run --server 192.0.2.10 --server 2001:db8::10 --peer
/// 192.0.2.20 --peer 2001:db8::20 --source-port <NTP port> [--mode server]
/// [--ntp-port N] [--pass-non-first-fragments]` puts in the maps, parsed
/// from the command line (not a struct literal) so the agent's own defaults
/// apply and new options do not break the test.
///
/// `--source-port` makes the agent send every request from that port, so
/// the servers' registered reply port is the NTP port. Two more servers the
/// sync loop would have registered itself are added the way it does, in
/// the sources map: one whose request left from an ephemeral port, one
/// with no request outstanding (reply port 0), and an NTS server answering
/// from a negotiated port (which [`Harness`] also enters as a server port).
/// The access list is set from `env.acl` directly.
pub fn desired(env: Env) -> Result<Desired> {
    let mut argv: Vec<String> = ["ntp-agent", "run", "--iface", "lo"]
        .map(String::from)
        .to_vec();
    for ip in [SERVER4, SERVER6] {
        argv.extend(["--server".into(), ip.to_string()]);
    }
    for ip in [PEER4, PEER6] {
        argv.extend(["--peer".into(), ip.to_string()]);
    }
    argv.extend(["--mode".into(), env.mode.name().into()]);
    argv.extend(["--ntp-port".into(), env.ntp_port.to_string()]);
    argv.extend(["--source-port".into(), env.ntp_port.to_string()]);
    if env.pass_non_first_fragments {
        argv.push("--pass-non-first-fragments".into());
    }
    let cli = Cli::try_parse_from(&argv).with_context(|| format!("parsing {argv:?}"))?;
    let Command::Run(args) = cli.command else {
        bail!("{argv:?} is not `run`");
    };
    let mut d = run::desired(&args)?;
    // The fixtures rest on these; say so plainly if the agent's mapping
    // from options to map entries changes.
    for (ip, class, reply_port) in [
        (SERVER4, SourceClass::Server, env.ntp_port),
        (SERVER6, SourceClass::Server, env.ntp_port),
        (PEER4, SourceClass::Peer, 0),
        (PEER6, SourceClass::Peer, 0),
    ] {
        let entry = d.sources.get(&key(ip));
        let want = (class as u8, reply_port);
        if entry.map(|e| (e.class, e.reply_port)) != Some(want) {
            bail!(
                "run::desired({argv:?}) maps {ip} to {entry:?}; the fixtures assume class {class:?} with reply port {reply_port}"
            );
        }
    }
    for (ips, reply_port, server_port) in [
        ([EPHEMERAL4, EPHEMERAL6], EPHEMERAL_REPLY_PORT, env.ntp_port),
        ([IDLE4, IDLE6], 0, env.ntp_port),
        ([NTS4, NTS6], NTS_REPLY_PORT, NTS_SERVER_PORT),
    ] {
        for ip in ips {
            d.sources
                .insert(key(ip), SourceEntry::server(reply_port, server_port));
        }
    }
    d.acl = env
        .acl
        .iter()
        .map(|r| r.parse::<AclRule>())
        .collect::<Result<_>>()?;
    Ok(d)
}

pub fn key(ip: IpAddr) -> AddrKey {
    AddrKey::from_ip(ip)
}

/// The box's own addresses: what `local_addrs::current()` would report for
/// an interface with 192.0.2.1/24 and 2001:db8::1/64.
pub fn local_addrs() -> BTreeMap<AddrKey, u8> {
    BTreeMap::from([
        (key(LOCAL4), local_kind::UNICAST),
        (key(LOCAL6), local_kind::UNICAST),
        (key(SUBNET_BCAST4), local_kind::BROADCAST),
    ])
}

/// The loaded program with its maps, in a pin directory of its own.
/// Field order is drop order: program and map fds first, then the pins.
pub struct Harness {
    pub ebpf: Ebpf,
    pub maps: FilterMaps,
    env: Env,
    /// The interface BPF_PROG_TEST_RUN without a context reports as the
    /// ingress: the loopback device of the caller's network namespace.
    pub lo: Iface,
    /// The counter slot the agent gave `lo` (as `run --iface lo` would).
    pub lo_slot: u32,
    /// Whether `lo`'s `NF_IFACES` entry currently points at `lo_slot`.
    lo_slotted: bool,
    /// Removes the whole pin directory when dropped.
    _pins: crate::PinDir,
}

impl Harness {
    /// Loads the program under a fresh `<bpffs>/nf-<tag>-<pid>-<n>` and
    /// fills the maps for [`Env::CLIENT`]. Needs root and bpffs
    /// (`Need::Bpffs`). The program counts every packet.
    pub fn start(tag: &str) -> Self {
        Self::start_with(tag, filter::LoadOptions::COUNT_ALL)
    }

    /// [`start`](Self::start) with the program loaded with `opts`.
    pub fn start_with(tag: &str, opts: filter::LoadOptions) -> Self {
        Self::load(tag, opts).unwrap_or_else(|e| panic!("loading the filter: {e:#}"))
    }

    fn load(tag: &str, opts: filter::LoadOptions) -> Result<Self> {
        let dir = crate::PinDir::new(tag)?;
        let pins = PinDir::new(dir.path());
        pins.prepare()?;
        let ebpf = filter::load(&pins, opts)?;
        // What the program created must be what `run` expects to find
        // pinned on its next start.
        pins.check_layout()?;
        let mut maps = FilterMaps::open(&pins)?;
        maps.seed_tables()?;
        reconcile::apply(&mut maps, &desired(Env::CLIENT)?)?;
        // What the sync loop writes when a key establishment negotiated
        // another port (before the server's entry).
        maps.set_server_ports(&[NTS_SERVER_PORT])?;
        reconcile::apply_local(&mut maps, &local_addrs())?;
        let lo = Iface {
            name: "lo".into(),
            index: filter::ifindex("lo")?,
        };
        let assigned = slots::assign(&mut maps, std::slice::from_ref(&lo))?;
        let lo_slot = assigned[0]
            .1
            .slot()
            .with_context(|| format!("lo got no counter slot: {assigned:?}"))?;
        Ok(Self {
            ebpf,
            maps,
            env: Env::CLIENT,
            lo,
            lo_slot,
            lo_slotted: true,
            _pins: dir,
        })
    }

    /// Points `lo` at its slot, or clears its entry (its packets then count
    /// under "other") without touching any counter.
    pub fn set_lo_slotted(&mut self, slotted: bool) -> Result<()> {
        if slotted != self.lo_slotted {
            let slot = if slotted { self.lo_slot } else { 0 };
            self.maps.set_iface_slot(self.lo.index, slot)?;
            self.lo_slotted = slotted;
        }
        Ok(())
    }

    /// Brings the maps to `env` (only what differs is written).
    pub fn set_env(&mut self, env: Env) -> Result<()> {
        if env != self.env {
            reconcile::apply(&mut self.maps, &desired(env)?)?;
            self.env = env;
        }
        Ok(())
    }

    pub fn program(&mut self) -> Result<&mut Xdp> {
        filter::program(&mut self.ebpf)
    }

    /// Totals over every interface slot, by `Counter::index`.
    pub fn counters(&self) -> Result<Vec<u64>> {
        self.maps.counters()
    }

    /// The whole array, by `counter_index(slot, counter)`.
    pub fn all_counters(&self) -> Result<Vec<u64>> {
        self.maps.all_counters()
    }

    /// Runs `frame` once as if it arrived on `ifindex` (of the calling
    /// thread's network namespace): the context names the ingress device.
    pub fn run_on(&mut self, frame: &[u8], ifindex: u32) -> Result<TestRunResult> {
        // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
        // rx_queue_index, egress_ifindex.
        let md: Vec<u8> = [0, frame.len() as u32, 0, ifindex, 0, 0]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect();
        let prog = self.program()?;
        prog.test_run(TestRunOptions {
            data_in: Some(frame),
            ctx_in: Some(&md),
            ..Default::default()
        })
        .with_context(|| format!("BPF_PROG_TEST_RUN on ifindex {ifindex}"))
    }

    /// Runs `frame` through the program `repeat` times.
    pub fn run(&mut self, frame: &[u8], repeat: u32) -> Result<TestRunResult> {
        let prog = self.program()?;
        prog.test_run(TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        })
        .with_context(|| format!("BPF_PROG_TEST_RUN of a {}-byte frame", frame.len()))
    }
}
