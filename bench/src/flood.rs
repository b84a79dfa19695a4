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

pub struct Opts {
    pub rounds: usize,
    pub round: Duration,
    /// Live-frames batch size (frames per redirect flush).
    pub batch: u32,
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

    fn role(self) -> &'static str {
        match self {
            Case::Filter => "fil",
            Case::DropAll => "drp",
            Case::Nftables => "nft",
            Case::NoFilter => "stk",
        }
    }

    fn gen_if(self) -> &'static str {
        match self {
            Case::Filter => "gfil",
            Case::DropAll => "gdrp",
            Case::Nftables => "gnft",
            Case::NoFilter => "gstk",
        }
    }
}

#[derive(Debug, Serialize)]
pub struct CaseResult {
    pub case: Case,
    pub label: String,
    /// Frames the case's XDP program saw per second, per round, Mpps.
    pub mpps_rounds: Vec<f64>,
    pub mpps: Summary,
    /// Frames the generator produced per second, per round, Mpps.
    pub offered_mpps: Summary,
    /// Frames lost before the case's program (veth ring full), per round.
    pub overflow_rounds: Vec<u64>,
    /// Per-round ratio to XDP_DROP-all in the same round; median.
    pub ratio_to_drop_all: f64,
    /// Per-round ratio to nftables in the same round; median.
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

pub fn run(opts: &Opts) -> Result<FloodResult> {
    let desired = desired()?;
    let mut topo = Topology::new("bfl");
    topo.add_ns("gen")?;
    for case in Case::ALL {
        topo.add_ns(case.role())?;
        topo.veth(("gen", case.gen_if()), (case.role(), WAN))?;
        for cidr in ROUTER_CIDRS {
            topo.addr(case.role(), WAN, cidr)?;
        }
    }
    let ruleset = nft::ruleset(&desired, WAN, &local_addrs()?);

    progress(
        "flood",
        "attaching: agent (native), xdp_drop, xdp_pass + nftables, xdp_pass",
    );
    let mut attached: Vec<Attached> = Vec::new();
    for case in Case::ALL {
        let ns = topo.ns(case.role());
        let mut a = Attached::default();
        match case {
            Case::Filter => {
                let env = AgentEnv::new("bflfil")?;
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
        attached.push(a);
    }

    let frames: Vec<Vec<u8>> = Case::ALL
        .iter()
        .map(|case| -> Result<Vec<u8>> {
            let src = SocketAddr::new(Ipv4Addr::new(203, 0, 113, 1).into(), 40000);
            let dst = SocketAddr::new(ROUTER_V4.into(), 123);
            Ok(UdpFrame::new(src, dst, NtpPacket::new(3).to_bytes())
                .macs(topo.mac("gen", case.gen_if())?, topo.mac(case.role(), WAN)?)
                .frame())
        })
        .collect::<Result<_>>()?;
    let ifindexes: Vec<u32> = Case::ALL
        .iter()
        .map(|c| sys::ifindex(topo.ns("gen"), c.gen_if()))
        .collect::<Result<_>>()?;

    let own_before: Vec<Option<u64>> = Case::ALL
        .iter()
        .zip(&attached)
        .map(|(c, a)| own_counter(*c, topo.ns(c.role()), a))
        .collect::<Result<_>>()?;

    let n = Case::ALL.len();
    let mut mpps = vec![Vec::new(); n];
    let mut offered = vec![Vec::new(); n];
    let mut overflow = vec![Vec::new(); n];
    let mut received = vec![0u64; n];
    let gen = topo.ns("gen");
    let topo_ref = &topo;
    // Test runs resolve the redirect's ifindex in the caller's namespace:
    // the whole loop runs on a thread inside `gen`.
    gen.in_ns(|| -> Result<()> {
        let mut gens: Vec<aya::Ebpf> = ifindexes
            .iter()
            .map(|&i| objects::load_flood(i))
            .collect::<Result<_>>()?;
        for round in 0..opts.rounds {
            let mut line = Vec::new();
            for k in 0..n {
                let c = (round + k) % n;
                let case = Case::ALL[c];
                let ns = topo_ref.ns(case.role());
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
                let d = sys::link_stats(ns, WAN)?.since(before);
                received[c] += d.rx_packets;
                mpps[c].push(d.rx_packets as f64 / wall / 1e6);
                offered[c].push(sent as f64 / wall / 1e6);
                overflow[c].push(d.rx_dropped);
            }
            for (c, case) in Case::ALL.iter().enumerate() {
                line.push(format!(
                    "{} {:.2}",
                    case.label(),
                    mpps[c].last().copied().unwrap_or(f64::NAN)
                ));
            }
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

    let own_after: Vec<Option<u64>> = Case::ALL
        .iter()
        .zip(&attached)
        .map(|(c, a)| own_counter(*c, topo.ns(c.role()), a))
        .collect::<Result<_>>()?;
    drop(attached);

    let idx = |c: Case| Case::ALL.iter().position(|x| *x == c).expect("known case");
    let per_round_ratio = |c: usize, base: usize| -> f64 {
        let r: Vec<f64> = mpps[c]
            .iter()
            .zip(&mpps[base])
            .map(|(a, b)| ratio(*a, *b))
            .collect();
        Summary::of(&r).median
    };
    let cases = Case::ALL
        .iter()
        .enumerate()
        .map(|(c, case)| CaseResult {
            case: *case,
            label: case.label().to_string(),
            mpps_rounds: mpps[c].clone(),
            mpps: Summary::of(&mpps[c]),
            offered_mpps: Summary::of(&offered[c]),
            overflow_rounds: overflow[c].clone(),
            ratio_to_drop_all: per_round_ratio(c, idx(Case::DropAll)),
            ratio_to_nftables: per_round_ratio(c, idx(Case::Nftables)),
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
