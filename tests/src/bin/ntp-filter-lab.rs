//! `ntp-filter-lab up|down`: the router note's story in network namespaces,
//! left running to play with (see `ntp_filter_tests::notelab`). Run through
//! `cargo xtask lab [--down]`, which builds the agent first.

use clap::{Parser, Subcommand};
use ntp_filter_tests::notelab::{self, LabOpts, DEFAULT_PREFIX, DEFAULT_STATE_DIR};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "ntp-filter-lab",
    about = "The router note's story, live, in network namespaces"
)]
struct Cli {
    #[command(subcommand)]
    action: Action,
    /// Namespaces are PREFIX-router, PREFIX-outside, …; pins under /sys/fs/bpf/PREFIX.
    #[arg(long, global = true, default_value = DEFAULT_PREFIX)]
    prefix: String,
    /// What the lab made (the journal `down` reads), the agent's socket, configs and logs.
    #[arg(long, global = true, default_value = DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

#[derive(Subcommand)]
enum Action {
    /// Build the lab (taking down one that is up), tell the story, leave it running.
    Up,
    /// Remove everything the lab made; nothing to remove is fine.
    Down,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Built next to the agent (both in target/release).
    if std::env::var_os("NTP_AGENT_BIN").is_none_or(|v| v.is_empty()) {
        if let Some(dir) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Into::into))
        {
            let dir: PathBuf = dir;
            std::env::set_var("NTP_AGENT_BIN", dir.join("ntp-agent"));
        }
    }
    let opts = LabOpts {
        prefix: cli.prefix,
        state_dir: cli.state_dir,
    };
    let res = match cli.action {
        Action::Up => notelab::up(&opts),
        Action::Down => notelab::down(&opts),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ntp-filter-lab: {e:#}");
            ExitCode::FAILURE
        }
    }
}
