//! `ntp-agent check-config FILE`: every check `run` makes before it
//! touches the kernel, on the file alone.

use std::path::Path;

use anyhow::Result;
use clap::Parser as _;

use crate::cli::{Cli, Command};

pub fn check_config(file: &Path) -> Result<()> {
    let settings = crate::config::load(file)?;
    let mut argv: Vec<std::ffi::OsString> = vec!["ntp-agent".into(), "run".into()];
    argv.extend(crate::config::merge(settings, &[]));
    let cli = Cli::try_parse_from(argv)?;
    let Command::Run(args) = cli.command else {
        unreachable!("parsed as run");
    };
    super::run::check(&args).map_err(|e| anyhow::anyhow!("{}: {e:#}", file.display()))?;
    println!(
        "{}: ok ({} interface(s), {} server(s), {} peer(s), {:?} mode)",
        file.display(),
        args.ifaces.len(),
        args.servers.len(),
        args.peers.len(),
        args.role
    );
    Ok(())
}
