//! Capability checks done before touching the kernel, so a missing privilege
//! is one clear line instead of an EPERM from deep inside the loader.

use anyhow::{bail, Context as _, Result};

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYS_TIME: u32 = 25;
pub const CAP_BPF: u32 = 39;

/// The effective capability set of this process.
pub fn effective() -> Result<u64> {
    let status =
        std::fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    parse_cap_eff(&status).context("no CapEff line in /proc/self/status")
}

fn parse_cap_eff(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
}

pub fn has(set: u64, cap: u32) -> bool {
    set & (1 << cap) != 0
}

/// Loading and attaching XDP needs CAP_BPF (or CAP_SYS_ADMIN on kernels
/// before 5.8) and CAP_NET_ADMIN.
pub fn require_filter_caps() -> Result<()> {
    let set = effective()?;
    let mut missing = Vec::new();
    if !has(set, CAP_BPF) && !has(set, CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(set, CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "missing capability {}: run as root (sudo), or grant it with `setcap cap_bpf,cap_net_admin,cap_sys_time+ep ntp-agent` or AmbientCapabilities= in the systemd unit",
        missing.join(" and ")
    )
}

/// Adjusting the clock needs CAP_SYS_TIME.
pub fn require_clock_caps() -> Result<()> {
    if has(effective()?, CAP_SYS_TIME) {
        return Ok(());
    }
    bail!("missing capability CAP_SYS_TIME to adjust the clock: run as root, grant it, or pass --no-clock-adjust to only measure")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cap_eff() {
        let status = "Name:\tx\nCapPrm:\t000001fffeffffff\nCapEff:\t0000008000003000\n";
        let set = parse_cap_eff(status).unwrap();
        assert!(has(set, CAP_BPF));
        assert!(has(set, CAP_NET_ADMIN));
        assert!(!has(set, CAP_SYS_ADMIN));
    }
}
