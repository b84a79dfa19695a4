//! `ntp-agent check-config FILE`: every check `run` makes before it
//! touches the kernel, on the file alone.

use std::path::Path;

use anyhow::Result;

pub fn check_config(file: &Path) -> Result<()> {
    let args = crate::config::load(file)?;
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
