//! `cargo xtask bench`: setup, build the agent, then build and run the
//! measurements (the `ntp-filter-bench` crate in bench/), which write
//! bench/results.md, bench/results.json and bench/*.svg.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::cmd::{self, is_root, Cmd};
use crate::{build, quick_setup, target_dir, Common};

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    common: Common,
    /// About 2-3 minutes instead of about 8: fewer rounds and seeds, shorter runs.
    #[arg(long)]
    quick: bool,
    /// Only these sections, comma-separated: cost, flood, attack, quality, realtime (its real-time half), footprint, nts.
    #[arg(long, value_name = "SECTIONS")]
    only: Option<String>,
    /// Another agent binary run next to this one in the real-time
    /// comparison (the before of a change, e.g. built in a `git worktree`).
    #[arg(long, value_name = "PATH")]
    before_agent: Option<String>,
    /// An older build of the filter's eBPF object (same map layout, e.g.
    /// `target/release/build/ntp-agent-*/out/ntp-filter` of a `git
    /// worktree` of the before): the cost section measures it on every
    /// filter path in the same rounds.
    #[arg(long, value_name = "PATH")]
    filter_before: Option<String>,
    /// The flood section also measures each case with the receiver on a
    /// core of its own (threaded NAPI on CPU 1, the generator on CPU 0).
    #[arg(long)]
    flood_split: bool,
    /// Directory for the results (relative to the workspace).
    #[arg(long, default_value = "bench")]
    out: String,
}

fn rerun_line(args: &BenchArgs) -> String {
    let mut line = String::from("sudo -E env \"PATH=$PATH\" cargo xtask bench");
    if args.quick {
        line.push_str(" --quick");
    }
    if let Some(o) = &args.only {
        line.push_str(&format!(" --only {}", cmd::shell_quote(o)));
    }
    if let Some(b) = &args.before_agent {
        line.push_str(&format!(" --before-agent {}", cmd::shell_quote(b)));
    }
    if let Some(b) = &args.filter_before {
        line.push_str(&format!(" --filter-before {}", cmd::shell_quote(b)));
    }
    if args.flood_split {
        line.push_str(" --flood-split");
    }
    line
}

pub fn run(args: &BenchArgs) -> Result<ExitCode> {
    if !is_root() {
        bail!(
            "`bench` must run as root: it loads XDP programs, creates network namespaces and sends raw frames (all inside namespaces it removes again): {}",
            rerun_line(args)
        );
    }
    let started = Instant::now();
    println!("== [setup]");
    quick_setup(&args.common)?;
    println!("== [build] the agent, then the benchmarks");
    let agent = build()?.path;
    let cmd = Cmd::cargo().args(["build", "--release", "-p", "ntp-filter-bench"]);
    println!("$ {cmd}");
    cmd.run()?;
    let bin = target_dir()?.join("release/ntp-filter-bench");
    if !bin.exists() {
        bail!("the build produced no {}", bin.display());
    }
    let prepared = started.elapsed().as_secs_f64();

    let mut run = Cmd::new(bin.to_string_lossy())
        .args(["--out", &args.out])
        .env("NTP_AGENT_BIN", agent.to_string_lossy());
    if args.quick {
        run = run.arg("--quick");
    }
    if let Some(o) = &args.only {
        run = run.args(["--only", o]);
    }
    if let Some(b) = &args.before_agent {
        run = run.args(["--before-agent", b]);
    }
    if let Some(b) = &args.filter_before {
        run = run.args(["--filter-before", b]);
    }
    if args.flood_split {
        run = run.arg("--flood-split");
    }
    println!("== [measure] $ {run}");
    let status = run
        .command()
        .status()
        .with_context(|| format!("cannot run `{run}`"))?;
    println!(
        "\nbench: {:.0} s in all ({:.0} s setup and build, {:.0} s measuring); results in {}/results.md",
        started.elapsed().as_secs_f64(),
        prepared,
        started.elapsed().as_secs_f64() - prepared,
        args.out
    );
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        eprintln!("bench: some measurements failed ({status}); the report says which");
        ExitCode::FAILURE
    })
}
