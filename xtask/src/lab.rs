//! `cargo xtask lab [--down]`: setup, build the agent and the lab binary
//! (`ntp-filter-lab` in the tests crate), then `ntp-filter-lab up`, which
//! builds the router note's lab in network namespaces, tells its story and
//! leaves it running; `--down` removes it.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::Args;

use crate::cmd::{is_root, Cmd};
use crate::{build, quick_setup, target_dir, Common};

#[derive(Args)]
pub struct LabArgs {
    #[command(flatten)]
    common: Common,
    /// Remove the lab: stop its processes, detach its filter, delete its namespaces.
    #[arg(long)]
    pub down: bool,
}

pub fn run(args: &LabArgs) -> Result<ExitCode> {
    let action = if args.down { "down" } else { "up" };
    if !is_root() {
        let flag = if args.down { " --down" } else { "" };
        bail!(
            "`lab` must run as root: it creates network namespaces (named nf-lab-*) and loads \
             an XDP program inside one; it never touches the clock or anything outside them: \
             sudo -E env \"PATH=$PATH\" cargo xtask lab{flag}"
        );
    }
    if !args.down {
        quick_setup(&args.common)?;
        build()?;
    }
    let bin = target_dir()?.join("release/ntp-filter-lab");
    let cmd = Cmd::cargo().args([
        "build",
        "--release",
        "-p",
        "ntp-filter-tests",
        "--bin",
        "ntp-filter-lab",
    ]);
    println!("== build: $ {cmd}");
    if let Err(e) = cmd.run() {
        // Taking a lab down must not depend on the tree building.
        if !(args.down && bin.exists()) {
            return Err(e);
        }
        println!("xtask: {e:#}; using the {} built earlier", bin.display());
    }
    // Next to it in target/release, the lab finds the agent by itself.
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| bin.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| bin.clone());
    let run = Cmd::new(shown.to_string_lossy()).arg(action);
    println!("== lab: $ {run}\n");
    let status = run
        .command()
        .status()
        .with_context(|| format!("cannot run `{run}`"))?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
