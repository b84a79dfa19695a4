//! `cargo xtask bench`: every benchmark of the filter and the agent in one
//! run, written to bench/results.md, bench/results.json and bench/*.svg.
//!
//! Run through `cargo xtask bench [--quick]`, which sets up, builds the
//! agent and passes it in NTP_AGENT_BIN. Needs root, bpffs and network
//! namespaces; everything runs inside `nf-…` namespaces on documentation
//! addresses, never touches the clock (agent `--no-clock-adjust`, chronyd
//! `-x`), and is torn down by guards, also on failure.
//!
//! The machine is shared and noisy, so every figure that matters is a ratio
//! to a baseline measured in the same run, and absolute figures give min
//! and median over rounds. Nothing here asserts a time.

mod attack;
mod cost;
mod flood;
mod flooder;
mod footprint;
mod nft;
mod nts;
mod objects;
mod quality;
mod report;
mod responder;
mod stats;
mod svg;
mod sys;

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Section {
    /// 1: cost per packet (BPF_PROG_TEST_RUN).
    Cost,
    /// 2: drop rate under a flood (live frames into a veth).
    Flood,
    /// 3: sync under attack (agent + chronyd -x server, AF_PACKET flood).
    Attack,
    /// 4: sync quality (simulation, and real time next to chronyd).
    Quality,
    /// Only the real-time half of 4 (agent and chronyd -x side by side).
    Realtime,
    /// 5: the agent's RSS and CPU time (idle: during 4; flood: during 3).
    Footprint,
    /// 6: what NTS costs (key establishment, authenticated exchanges).
    Nts,
}

#[derive(Parser, Debug)]
#[command(
    name = "ntp-filter-bench",
    about = "The benchmarks behind README's Performance section"
)]
struct Args {
    /// About 2 minutes instead of about 8: fewer rounds and seeds, shorter runs.
    #[arg(long)]
    quick: bool,
    /// Only these sections (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Section>,
    /// Where results.md, results.json and the SVGs go.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// Another agent binary to run next to the agent in the real-time
    /// comparison (e.g. the build before a change), same responder and
    /// polling, reported as "ntp-agent, before".
    #[arg(long, value_name = "PATH")]
    before_agent: Option<PathBuf>,
    /// An older build of the filter's eBPF object (same map layout): the
    /// cost section measures it on every path in the same rounds.
    #[arg(long, value_name = "PATH")]
    filter_before: Option<PathBuf>,
    /// The flood section also measures each case with the receiver on a
    /// core of its own (threaded NAPI pinned to CPU 1, the generator on
    /// CPU 0), next to the default shared core.
    #[arg(long)]
    flood_split: bool,
    /// Print the nftables ruleset of the flood comparison and exit.
    #[arg(long)]
    print_nft: bool,
}

/// What became of one section.
#[derive(Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<T> {
    Ok(T),
    Failed(String),
    Skipped(String),
}

impl<T> Outcome<T> {
    pub fn ok(&self) -> Option<&T> {
        match self {
            Outcome::Ok(v) => Some(v),
            _ => None,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Meta {
    pub date_utc: String,
    pub kernel: String,
    pub cpu: String,
    pub cores: usize,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub quick: bool,
    pub commit: String,
    pub agent: String,
    pub total_runtime_s: f64,
    pub section_runtime_s: Vec<(String, f64)>,
}

#[derive(Debug, Serialize)]
pub struct Results {
    pub meta: Meta,
    pub cost: Outcome<cost::CostResult>,
    pub flood: Outcome<flood::FloodResult>,
    pub attack: Outcome<attack::AttackResult>,
    pub simulation: Outcome<quality::SimResult>,
    pub realtime: Outcome<quality::RealtimeResult>,
    pub footprint: Outcome<footprint::FootprintResult>,
    pub nts: Outcome<nts::NtsResult>,
}

pub fn progress(section: &str, msg: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[{section}] {msg}");
    let _ = out.flush();
}

fn run_section<T>(
    name: &str,
    wanted: bool,
    times: &mut Vec<(String, f64)>,
    f: impl FnOnce() -> Result<T>,
) -> Outcome<T> {
    if !wanted {
        return Outcome::Skipped("not selected (--only)".into());
    }
    let t = Instant::now();
    let r = match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Outcome::Ok(v),
        Ok(Err(e)) => Outcome::Failed(format!("{e:#}")),
        Err(p) => Outcome::Failed(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    };
    let secs = t.elapsed().as_secs_f64();
    times.push((name.to_string(), secs));
    match &r {
        Outcome::Failed(e) => progress(name, &format!("FAILED after {secs:.0} s: {e}")),
        _ => progress(name, &format!("done in {secs:.0} s")),
    }
    r
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn cmd_out(prog: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(prog).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Why the benchmarks cannot run here, if they cannot (root for BPF,
/// network namespaces and raw sockets; a bpffs), as the tests probe it.
fn privilege_problem() -> Option<String> {
    use ntp_filter_tests::Need;
    [Need::Netns, Need::Bpffs]
        .into_iter()
        .find_map(|need| need.check().err())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.print_nft {
        return match flood::print_nft() {
            Ok(s) => {
                print!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ntp-filter-bench: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("ntp-filter-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<bool> {
    if let Some(p) = privilege_problem() {
        bail!("{p}; run it as root: sudo -E env \"PATH=$PATH\" cargo xtask bench");
    }
    if std::env::var_os("NTP_AGENT_BIN").is_none_or(|v| v.is_empty()) {
        bail!("NTP_AGENT_BIN is not set: run the benchmarks through `cargo xtask bench`, which builds the agent and sets it");
    }
    let agent = ntp_filter_tests::agent_bin()?;
    if !agent.exists() {
        bail!(
            "NTP_AGENT_BIN={} does not exist: run through cargo xtask bench",
            agent.display()
        );
    }
    for (tool, why) in [
        ("nft", "the nftables comparison (section 2)"),
        ("chronyd", "sections 3 and 4"),
        ("chronyc", "section 4"),
    ] {
        if cmd_out(
            "sh",
            &[
                "-c",
                &format!("command -v {tool} || test -x /usr/sbin/{tool}"),
            ],
        )
        .is_none()
        {
            progress(
                "bench",
                &format!(
                    "warning: {tool} not found, needed for {why}: cargo xtask setup installs it"
                ),
            );
        }
    }
    ntp_filter_tests::reap_stale();
    std::fs::create_dir_all(&args.out)?;

    let wanted = |s: Section| args.only.is_empty() || args.only.contains(&s);
    let quick = args.quick;
    let started = Instant::now();
    let loadavg_start = read_trim("/proc/loadavg");
    let mut times = Vec::new();
    println!(
        "== ntp-filter benchmarks ({}): writing to {}",
        if quick {
            "quick, about 2-3 minutes"
        } else {
            "full, about 8 minutes"
        },
        args.out.display()
    );

    println!("\n== [1/6] cost per packet (BPF_PROG_TEST_RUN)");
    let cost = run_section("cost", wanted(Section::Cost), &mut times, || {
        cost::run(&cost::Opts {
            repeat: 1_000_000,
            rounds: if quick { 5 } else { 7 },
            before: args.filter_before.clone(),
        })
    });

    println!("\n== [2/6] drop rate under a flood (live frames into a veth)");
    let flood = run_section("flood", wanted(Section::Flood), &mut times, || {
        flood::run(&flood::Opts {
            rounds: if quick { 3 } else { 5 },
            round: Duration::from_secs_f64(if quick { 1.0 } else { 2.0 }),
            batch: 64,
            placements: if args.flood_split {
                vec![flood::Placement::Shared, flood::Placement::Split]
            } else {
                vec![flood::Placement::Shared]
            },
        })
    });

    println!("\n== [3/6] sync under attack (agent + chronyd -x, spoofed flood)");
    let attack = run_section(
        "attack",
        wanted(Section::Attack) || wanted(Section::Footprint),
        &mut times,
        || {
            attack::run(&attack::Opts {
                settle: Duration::from_secs(if quick { 5 } else { 30 }),
                quiet: Duration::from_secs(if quick { 20 } else { 75 }),
                attack: Duration::from_secs(if quick { 20 } else { 75 }),
            })
        },
    );

    println!("\n== [4/6] sync quality (simulation; real time next to chronyd -x)");
    let simulation = run_section("simulation", wanted(Section::Quality), &mut times, || {
        quality::simulate(if quick { 2 } else { 5 })
    });
    let realtime = run_section(
        "realtime",
        wanted(Section::Quality) || wanted(Section::Realtime) || wanted(Section::Footprint),
        &mut times,
        || {
            quality::realtime(
                &quality::RealtimeOpts {
                    duration: Duration::from_secs(if quick { 50 } else { 150 }),
                    sample_every: Duration::from_secs(2),
                    idle_settle: Duration::from_secs(if quick { 10 } else { 20 }),
                    idle_window: Duration::from_secs(if quick { 30 } else { 60 }),
                    before_agent: args.before_agent.clone(),
                },
                wanted(Section::Footprint),
            )
        },
    );

    println!("\n== [5/6] footprint (agent RSS and CPU time)");
    let footprint = if wanted(Section::Footprint) {
        let idle = realtime.ok().and_then(|r| r.idle_footprint);
        let quiet = attack.ok().map(|a| a.quiet.footprint);
        let flood_w = attack.ok().map(|a| a.attack.footprint);
        if idle.is_none() && flood_w.is_none() {
            Outcome::Failed(
                "neither the idle nor the flood measurement ran (see sections 3 and 4)".into(),
            )
        } else {
            Outcome::Ok(footprint::FootprintResult::new(idle, quiet, flood_w))
        }
    } else {
        Outcome::Skipped("not selected (--only)".into())
    };

    println!("\n== [6/6] what NTS costs (KE and authenticated exchanges with chronyd -x)");
    let nts = run_section("nts", wanted(Section::Nts), &mut times, || {
        nts::run(&nts::Opts {
            key_exchanges: if quick { 10 } else { 30 },
            exchanges: if quick { 200 } else { 1000 },
            cpu_iterations: 20_000,
        })
    });

    let results = Results {
        meta: Meta {
            date_utc: cmd_out("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_default(),
            kernel: read_trim("/proc/sys/kernel/osrelease"),
            cpu: read_trim("/proc/cpuinfo")
                .lines()
                .find_map(|l| {
                    l.strip_prefix("model name")
                        .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
                })
                .unwrap_or_default(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            loadavg_start,
            loadavg_end: read_trim("/proc/loadavg"),
            quick,
            commit: cmd_out("git", &["describe", "--always", "--dirty"]).unwrap_or_default(),
            agent: agent.display().to_string(),
            total_runtime_s: started.elapsed().as_secs_f64(),
            section_runtime_s: times,
        },
        cost,
        flood,
        attack,
        simulation,
        realtime,
        footprint,
        nts,
    };
    let written = report::write(&args.out, &results)?;
    println!("\n== results");
    print!("{}", report::summary(&results));
    for f in written {
        println!("wrote {}", f.display());
    }
    let failed = [
        matches!(results.cost, Outcome::Failed(_)),
        matches!(results.flood, Outcome::Failed(_)),
        matches!(results.attack, Outcome::Failed(_)),
        matches!(results.simulation, Outcome::Failed(_)),
        matches!(results.realtime, Outcome::Failed(_)),
        matches!(results.footprint, Outcome::Failed(_)),
        matches!(results.nts, Outcome::Failed(_)),
    ]
    .iter()
    .any(|f| *f);
    Ok(!failed)
}
