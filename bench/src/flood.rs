//! Section 2: drop rate under a flood of spoofed mode-3 packets.
//!
//! ```text
//!  gen ns                                   one router ns per case
//!  BPF_PROG_TEST_RUN, live frames:          wan0 (192.0.2.1), native XDP:
//!  xdp_flood ── redirect ──► g* ── veth ──► filter | drop-all | pass + nftables | pass (stack)
//! ```
//! `xdp_flood` runs in the generator namespace in live-frames mode, gives
//! each frame a random source in 203.0.113.0/24 and redirects it into the
//! veth whose peer is the case's `wan0`. Frames redirected into a veth only
//! arrive when the peer runs a native XDP program, so the nftables and the
//! no-filter cases attach `xdp_pass` natively and the frames go on to the
//! stack. Every case has its own namespace and veth, so rounds interleave
//! without re-attaching anything; what each case sank is `wan0`'s
//! rx_packets (veth counts every frame its XDP program saw), over a fixed
//! time.
//!
//! Two placements of the receiver ([`Placement`]; each case in each, rounds
//! interleaved): *shared*, the default, leaves the NAPI poll in the softirq
//! of the generator's CPU, so each rate includes the generator's per-frame
//! cost; *split* (`--flood-split`) gives `wan0` threaded NAPI with its
//! kthread pinned to CPU 1 and the generator to CPU 0. Split looks like a
//! router's RX core, but on a VM it measures the cross-CPU hand-off of
//! each batch (the NAPI thread sleeping on an empty 256-frame ring and
//! woken from the other CPU), so shared is the headline: see the report.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use aya::programs::{TestRun as _, TestRunAttrs, TestRunOptions};
use clap::Parser as _;
use ntp_agent::filter::Desired;
use ntp_filter_tests::{AgentEnv, Child, Netns, NtpPacket, Topology, UdpFrame};
use serde::Serialize;

use crate::objects::{self, Baseline};
use crate::stats::{ratio, Summary};
use crate::sys::{self, LinkStats};
use crate::{nft, progress};

const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ROUTER_CIDRS: [&str; 2] = ["192.0.2.1/24", "2001:db8::1/64"];
const WAN: &str = "wan0";
/// Frames per BPF_PROG_TEST_RUN call: about 40 ms at 6 Mpps.
const REPEAT: u32 = 1 << 18;

/// The agent configuration of the flood: the filter's maps and the
/// nftables ruleset both follow from it.
pub const AGENT_ARGS: [&str; 12] = [
    "--server",
    "192.0.2.10",
    "--server",
    "2001:db8::10",
    "--peer",
    "192.0.2.20",
    "--peer",
    "2001:db8::20",
    "--source-port",
    "123",
    "--xdp-mode",
    "native",
];

/// Where `wan0`'s receive work runs relative to the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Threaded NAPI on `wan0`, its kthread on [`RX_CPU`], the generator on
    /// [`GEN_CPU`]: the receiver's own core.
    Split,
    /// NAPI in the softirq of the generator's CPU ([`GEN_CPU`]): one core
    /// for both.
    Shared,
}

impl Placement {
    pub const ALL: [Placement; 2] = [Placement::Shared, Placement::Split];

    pub fn label(self) -> &'static str {
        match self {
            Placement::Split => "receiver on its own core",
            Placement::Shared => "generator and receiver on one core",
        }
    }
}

/// The generator's CPU (both placements) and the split receiver's.
pub const GEN_CPU: usize = 0;
pub const RX_CPU: usize = 1;

pub struct Opts {
    pub rounds: usize,
    pub round: Duration,
    /// Live-frames batch size (frames per redirect flush).
    pub batch: u32,
    /// The placements to measure (each case in each, rounds interleaved).
    pub placements: Vec<Placement>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    Filter,
    DropAll,
    Nftables,
    NoFilter,
}

impl Case {
    pub const ALL: [Case; 4] = [Case::Filter, Case::DropAll, Case::Nftables, Case::NoFilter];

    pub fn label(self) -> &'static str {
        match self {
            Case::Filter => "ntp-filter (XDP)",
            Case::DropAll => "XDP_DROP-all",
            Case::Nftables => "nftables netdev ingress",
            Case::NoFilter => "no filter (stack)",
        }
    }
}

/// One case in one placement: its own namespace and veth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Lane {
    case: Case,
    placement: Placement,
}

impl Lane {
    fn all(placements: &[Placement]) -> Vec<Lane> {
        placements
            .iter()
            .flat_map(|&placement| Case::ALL.iter().map(move |&case| Lane { case, placement }))
            .collect()
    }

    /// The namespace role (the harness names namespaces by the first three
    /// characters of the role).
    fn role(self) -> &'static str {
        match (self.placement, self.case) {
            (Placement::Shared, Case::Filter) => "fil",
            (Placement::Shared, Case::DropAll) => "drp",
            (Placement::Shared, Case::Nftables) => "nft",
            (Placement::Shared, Case::NoFilter) => "stk",
            (Placement::Split, Case::Filter) => "sfl",
            (Placement::Split, Case::DropAll) => "sdr",
            (Placement::Split, Case::Nftables) => "snf",
            (Placement::Split, Case::NoFilter) => "sst",
        }
    }

    fn gen_if(self) -> String {
        format!("g{}", self.role())
    }
}

#[derive(Debug, Serialize)]
pub struct CaseResult {
    pub case: Case,
    pub placement: Placement,
    pub label: String,
    /// Frames the case's XDP program saw per second, per round, Mpps.
    pub mpps_rounds: Vec<f64>,
    pub mpps: Summary,
    /// Frames the generator produced per second, per round, Mpps.
    pub offered_mpps: Summary,
    /// Frames lost before the case's program (veth ring full), per round.
    pub overflow_rounds: Vec<u64>,
    /// Per-round ratio to XDP_DROP-all of the same placement in the same
    /// round; median.
    pub ratio_to_drop_all: f64,
    /// Per-round ratio to nftables of the same placement in the same round;
    /// median.
    pub ratio_to_nftables: f64,
    /// What the case's own counter says it disposed of, against what its
    /// wan0 received (filter: its drop counters; nftables: its rule
    /// counters; no filter: UDP NoPorts).
    pub own_counter: Option<u64>,
    pub received: u64,
}

#[derive(Debug, Serialize)]
pub struct FloodResult {
    pub rounds: usize,
    pub round_s: f64,
    pub batch: u32,
    pub frame_len: usize,
    pub frame: String,
    pub cases: Vec<CaseResult>,
    pub nft_ruleset: String,
}

pub fn desired() -> Result<Desired> {
    let mut argv = vec!["ntp-agent", "run", "--iface", WAN];
    argv.extend(AGENT_ARGS);
    let cli =
        ntp_agent::cli::Cli::try_parse_from(&argv).with_context(|| format!("parsing {argv:?}"))?;
    let ntp_agent::cli::Command::Run(args) = cli.command else {
        bail!("{argv:?} is not `run`");
    };
    ntp_agent::cmd::run::desired(&args)
}

/// What is attached in each router namespace; dropped (detached) at the end.
#[derive(Default)]
struct Attached {
    agent: Option<(AgentEnv, Child)>,
    programs: Vec<aya::Ebpf>,
}

fn attach_baseline(ns: &Netns, which: Baseline) -> Result<aya::Ebpf> {
    let mut ebpf = which.load()?;
    let prog = objects::xdp(&mut ebpf, which.program_name())?;
    ns.in_ns(|| prog.attach(WAN, aya::programs::XdpMode::Driver))?
        .with_context(|| format!("attaching {} natively to {WAN}", which.program_name()))?;
    Ok(ebpf)
}

fn nft_list(ns: &Netns) -> Result<String> {
    ns.run("nft", &["-j", "list", "table", "netdev", nft::TABLE])
}

/// The case's own count of what it disposed of.
fn own_counter(case: Case, ns: &Netns, attached: &Attached) -> Result<Option<u64>> {
    Ok(match case {
        Case::Filter => {
            let (env, _) = attached.agent.as_ref().context("no agent")?;
            let st = env.status(ns)?;
            st["filter"]["counters"]["total_dropped"].as_u64()
        }
        Case::DropAll => None,
        Case::Nftables => nft::dropped_packets(&nft_list(ns)?),
        Case::NoFilter => Some(sys::snmp(ns, "Udp", "NoPorts")?),
    })
}

/// The nftables ruleset of the flood comparison.
pub fn print_nft() -> Result<String> {
    Ok(nft::ruleset(&desired()?, WAN, &local_addrs()?))
}

fn local_addrs() -> Result<Vec<IpAddr>> {
    Ok(vec![
        ROUTER_V4.into(),
        Ipv4Addr::new(192, 0, 2, 255).into(),
        "2001:db8::1".parse()?,
    ])
}

/// Pins the calling thread to `cpu`.
fn pin_thread(cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("pinning the generator to CPU {cpu}"))
}

/// The pids of the kernel's NAPI threads (`napi/<dev>-<id>`).
fn napi_threads() -> Result<Vec<i32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.starts_with("napi/") {
            pids.push(pid);
        }
    }
    Ok(pids)
}

/// Gives `wan0` in `ns` threaded NAPI and pins its one NAPI thread to
/// [`RX_CPU`]. The thread is told apart from the other namespaces' (all
/// named `napi/wan0-*`) as the one that appears; sysfs shows a
/// namespace's devices only when mounted inside it, so the switch is
/// written through `ip netns exec`, which mounts one.
fn split_receiver(ns: &Netns) -> Result<()> {
    let before = napi_threads()?;
    run_cmd(std::process::Command::new("ip").args([
        "netns",
        "exec",
        ns.name(),
        "sh",
        "-c",
        &format!("echo 1 > /sys/class/net/{WAN}/threaded"),
    ]))
    .with_context(|| format!("threaded NAPI on {WAN} in {}", ns.name()))?;
    // The kthread starts with the switch when the device's NAPI exists
    // (native XDP on a veth creates it), else when it is enabled.
    let deadline = Instant::now() + Duration::from_secs(5);
    let new = loop {
        let new: Vec<i32> = napi_threads()?
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if !new.is_empty() || Instant::now() > deadline {
            break new;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let [pid] = new[..] else {
        bail!(
            "expected one new NAPI thread for {WAN} in {}, found {new:?}",
            ns.name()
        );
    };
    let mut set = nix::sched::CpuSet::new();
    set.set(RX_CPU)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(pid), &set)
        .with_context(|| format!("pinning NAPI thread {pid} to CPU {RX_CPU}"))?;
    // Softirq work (the shared placement's NAPI, a router's RX) preempts
    // every task; a NAPI thread is an ordinary task unless told otherwise,
    // and on this shared machine it would get a fair share of its CPU
    // beside whatever else runs there. Real-time priority gives it the
    // softirq's precedence (the kernel's RT throttling still leaves the
    // CPU 5% for others).
    let param = libc::sched_param { sched_priority: 50 };
    // SAFETY: a plain syscall on a pid, with a parameter we own.
    if unsafe { libc::sched_setscheduler(pid, libc::SCHED_FIFO, &param) } != 0 {
        bail!(
            "SCHED_FIFO for NAPI thread {pid}: {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn run_cmd(cmd: &mut std::process::Command) -> Result<()> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

pub fn run(opts: &Opts) -> Result<FloodResult> {
    if opts.placements.contains(&Placement::Split)
        && std::thread::available_parallelism().map_or(1, |n| n.get()) <= RX_CPU
    {
        bail!("the split placement needs CPUs {GEN_CPU} and {RX_CPU}");
    }
    let desired = desired()?;
    let lanes = Lane::all(&opts.placements);
    let mut topo = Topology::new("bfl");
    topo.add_ns("gen")?;
    for lane in &lanes {
        topo.add_ns(lane.role())?;
        topo.veth(("gen", &lane.gen_if()), (lane.role(), WAN))?;
        for cidr in ROUTER_CIDRS {
            topo.addr(lane.role(), WAN, cidr)?;
        }
    }
    let ruleset = nft::ruleset(&desired, WAN, &local_addrs()?);

    progress(
        "flood",
        "attaching, in both placements: agent (native), xdp_drop, xdp_pass + nftables, xdp_pass",
    );
    let mut attached: Vec<Attached> = Vec::new();
    for lane in &lanes {
        let ns = topo.ns(lane.role());
        let mut a = Attached::default();
        match lane.case {
            Case::Filter => {
                let env = AgentEnv::new(&format!("bfl{}", lane.role()))?;
                let mut extra = vec!["--iface", WAN];
                extra.extend(AGENT_ARGS);
                let child = env.start(ns, &extra)?;
                a.agent = Some((env, child));
            }
            Case::DropAll => a.programs.push(attach_baseline(ns, Baseline::Drop)?),
            Case::Nftables => {
                a.programs.push(attach_baseline(ns, Baseline::Pass)?);
                let dir = ntp_filter_tests::TempDir::new("bflnft")?;
                let path = dir.path().join("ruleset.nft");
                std::fs::write(&path, &ruleset)?;
                ns.run("nft", &["-f", &path.display().to_string()])
                    .context("loading the nftables ruleset")?;
            }
            Case::NoFilter => a.programs.push(attach_baseline(ns, Baseline::Pass)?),
        }
        if lane.placement == Placement::Split {
            split_receiver(ns)?;
        }
        attached.push(a);
    }

    let frames: Vec<Vec<u8>> = lanes
        .iter()
        .map(|lane| -> Result<Vec<u8>> {
            let src = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 1).into(), 40000);
            let dst = SocketAddr::new(ROUTER_V4.into(), 123);
            Ok(UdpFrame::new(src, dst, NtpPacket::new(3).to_bytes())
                .macs(
                    topo.mac("gen", &lane.gen_if())?,
                    topo.mac(lane.role(), WAN)?,
                )
                .frame())
        })
        .collect::<Result<_>>()?;
    let ifindexes: Vec<u32> = lanes
        .iter()
        .map(|l| sys::ifindex(topo.ns("gen"), &l.gen_if()))
        .collect::<Result<_>>()?;

    let own_before: Vec<Option<u64>> = lanes
        .iter()
        .zip(&attached)
        .map(|(l, a)| own_counter(l.case, topo.ns(l.role()), a))
        .collect::<Result<_>>()?;

    let n = lanes.len();
    let mut mpps = vec![Vec::new(); n];
    let mut offered = vec![Vec::new(); n];
    let mut overflow = vec![Vec::new(); n];
    let mut received = vec![0u64; n];
    let gen = topo.ns("gen");
    let topo_ref = &topo;
    let lanes_ref = &lanes;
    // Test runs resolve the redirect's ifindex in the caller's namespace:
    // the whole loop runs on a thread inside `gen`, pinned, so the shared
    // placement's NAPI (run where the redirect happened) and the split
    // one's kthread are on known, different CPUs.
    gen.in_ns(|| -> Result<()> {
        pin_thread(GEN_CPU)?;
        let mut gens: Vec<aya::Ebpf> = ifindexes
            .iter()
            .map(|&i| objects::load_flood(i))
            .collect::<Result<_>>()?;
        for round in 0..opts.rounds {
            for k in 0..n {
                let c = (round + k) % n;
                let ns = topo_ref.ns(lanes_ref[c].role());
                let prog = objects::xdp(&mut gens[c], "xdp_flood")?;
                let before: LinkStats = sys::link_stats(ns, WAN)?;
                let start = Instant::now();
                let mut sent = 0u64;
                while start.elapsed() < opts.round {
                    let r = prog
                        .test_run(TestRunOptions {
                            data_in: Some(&frames[c]),
                            repeat: REPEAT,
                            attrs: TestRunAttrs::new().xdp_live_frames(opts.batch),
                            ..Default::default()
                        })
                        .context("BPF_PROG_TEST_RUN with live frames")?;
                    if r.return_value != 0 {
                        bail!("xdp_flood test run returned {}", r.return_value);
                    }
                    sent += u64::from(REPEAT);
                }
                let wall = start.elapsed().as_secs_f64();
                // The split receiver may still hold a ring's worth.
                std::thread::sleep(Duration::from_millis(20));
                let d = sys::link_stats(ns, WAN)?.since(before);
                received[c] += d.rx_packets;
                mpps[c].push(d.rx_packets as f64 / wall / 1e6);
                offered[c].push(sent as f64 / wall / 1e6);
                overflow[c].push(d.rx_dropped);
            }
            let line: Vec<String> = lanes_ref
                .iter()
                .enumerate()
                .map(|(c, l)| {
                    format!(
                        "{} {} {:.2}",
                        l.role(),
                        l.case.label(),
                        mpps[c].last().copied().unwrap_or(f64::NAN)
                    )
                })
                .collect();
            progress(
                "flood",
                &format!(
                    "round {}/{}: Mpps {}",
                    round + 1,
                    opts.rounds,
                    line.join(", ")
                ),
            );
        }
        Ok(())
    })??;

    let own_after: Vec<Option<u64>> = lanes
        .iter()
        .zip(&attached)
        .map(|(l, a)| own_counter(l.case, topo.ns(l.role()), a))
        .collect::<Result<_>>()?;
    drop(attached);

    let idx = |case: Case, placement: Placement| {
        lanes
            .iter()
            .position(|l| *l == Lane { case, placement })
            .expect("known lane")
    };
    let per_round_ratio = |c: usize, base: usize| -> f64 {
        let r: Vec<f64> = mpps[c]
            .iter()
            .zip(&mpps[base])
            .map(|(a, b)| ratio(*a, *b))
            .collect();
        Summary::of(&r).median
    };
    let cases = lanes
        .iter()
        .enumerate()
        .map(|(c, lane)| CaseResult {
            case: lane.case,
            placement: lane.placement,
            label: lane.case.label().to_string(),
            mpps_rounds: mpps[c].clone(),
            mpps: Summary::of(&mpps[c]),
            offered_mpps: Summary::of(&offered[c]),
            overflow_rounds: overflow[c].clone(),
            ratio_to_drop_all: per_round_ratio(c, idx(Case::DropAll, lane.placement)),
            ratio_to_nftables: per_round_ratio(c, idx(Case::Nftables, lane.placement)),
            own_counter: match (own_before[c], own_after[c]) {
                (Some(b), Some(a)) => Some(a.saturating_sub(b)),
                _ => None,
            },
            received: received[c],
        })
        .collect();
    Ok(FloodResult {
        rounds: opts.rounds,
        round_s: opts.round.as_secs_f64(),
        batch: opts.batch,
        frame_len: frames[0].len(),
        frame: "Ethernet/IPv4/UDP 203.0.113.<random 1-254>:40000 → 192.0.2.1:123, NTPv4 mode 3 (48 bytes)".into(),
        cases,
        nft_ruleset: ruleset,
    })
}
