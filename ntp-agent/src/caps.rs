//! Capability checks done before touching the kernel, so a missing privilege
//! is one clear line instead of an EPERM from deep inside the loader.
//!
//! What each capability is for was found by running the agent with reduced
//! bounding sets (see the README's systemd section); `SERVICE_SET` is what
//! dist/ntp-agent.service grants, and a test keeps the two in step.

use anyhow::{bail, Context as _, Result};

pub const CAP_NET_BIND_SERVICE: u32 = 10;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_SYS_TIME: u32 = 25;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

/// Every capability `run` may need, by name: the unit's
/// CapabilityBoundingSet= and AmbientCapabilities=.
pub const SERVICE_SET: [(u32, &str); 5] = [
    (CAP_BPF, "CAP_BPF"),
    (CAP_PERFMON, "CAP_PERFMON"),
    (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
    (CAP_SYS_TIME, "CAP_SYS_TIME"),
    (CAP_NET_BIND_SERVICE, "CAP_NET_BIND_SERVICE"),
];

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

/// What this run will do that needs a privilege.
#[derive(Clone, Copy, Debug, Default)]
pub struct Needs {
    /// Adjust the system clock (not `--no-clock-adjust`).
    pub clock: bool,
    /// Bind this port, which is below `ip_unprivileged_port_start`.
    pub low_port: Option<u16>,
}

/// Names every missing capability with what it is for.
fn missing(set: u64, needs: Needs) -> Vec<String> {
    let mut out = Vec::new();
    // CAP_SYS_ADMIN stands in for both on kernels before 5.8, and still
    // implies them.
    let admin = has(set, CAP_SYS_ADMIN);
    if !has(set, CAP_BPF) && !admin {
        out.push("CAP_BPF (load the XDP program, create and pin its maps)".to_string());
    }
    // Without it the verifier refuses the program's packet-pointer
    // arithmetic ("pointer arithmetic with it prohibited for !root").
    if !has(set, CAP_PERFMON) && !admin {
        out.push("CAP_PERFMON (the verifier's checks for privileged programs)".to_string());
    }
    if !has(set, CAP_NET_ADMIN) {
        out.push("CAP_NET_ADMIN (attach XDP to the interfaces)".to_string());
    }
    if needs.clock && !has(set, CAP_SYS_TIME) {
        out.push("CAP_SYS_TIME (adjust the clock; --no-clock-adjust only measures)".to_string());
    }
    if let Some(port) = needs.low_port {
        if !has(set, CAP_NET_BIND_SERVICE) {
            out.push(format!(
                "CAP_NET_BIND_SERVICE (bind UDP port {port} for server mode, peers or --source-port)"
            ));
        }
    }
    out
}

/// Fails with every capability this run lacks, and how to grant them.
pub fn require(needs: Needs) -> Result<()> {
    let lacking = missing(effective()?, needs);
    if lacking.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = SERVICE_SET.iter().map(|(_, n)| *n).collect();
    bail!(
        "missing capabilit{} {}: run as root (sudo), or under systemd with dist/ntp-agent.service (CapabilityBoundingSet={}), or grant them with `setcap {}+ep ntp-agent`",
        if lacking.len() == 1 { "y" } else { "ies" },
        lacking.join(", "),
        names.join(" "),
        names
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(",")
    )
}

/// The lowest port anyone may bind in this network namespace
/// (net.ipv4.ip_unprivileged_port_start); 1024 when it cannot be read,
/// e.g. under systemd's ProcSubset=pid.
pub fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[u32]) -> u64 {
        caps.iter().fold(0, |s, c| s | 1 << c)
    }

    #[test]
    fn parses_cap_eff() {
        let status = "Name:\tx\nCapPrm:\t000001fffeffffff\nCapEff:\t0000008000003000\n";
        let set = parse_cap_eff(status).unwrap();
        assert!(has(set, CAP_BPF));
        assert!(has(set, CAP_NET_ADMIN));
        assert!(!has(set, CAP_SYS_ADMIN));
    }

    #[test]
    fn names_each_missing_capability_for_what_the_run_does() {
        let client = Needs {
            clock: true,
            low_port: None,
        };
        let server = Needs {
            clock: true,
            low_port: Some(123),
        };
        let all: Vec<u32> = SERVICE_SET.iter().map(|(c, _)| *c).collect();
        assert!(missing(set(&all), server).is_empty());
        let filter_only = set(&[CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN]);
        assert!(missing(filter_only, Needs::default()).is_empty());
        let m = missing(filter_only, server);
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].starts_with("CAP_SYS_TIME"), "{m:?}");
        assert!(
            m[1].starts_with("CAP_NET_BIND_SERVICE") && m[1].contains("port 123"),
            "{m:?}"
        );
        let m = missing(set(&[CAP_BPF, CAP_NET_ADMIN, CAP_SYS_TIME]), client);
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(m[0].starts_with("CAP_PERFMON"), "{m:?}");
        // CAP_SYS_ADMIN covers BPF and PERFMON (kernels before 5.8).
        assert!(missing(set(&[CAP_SYS_ADMIN, CAP_NET_ADMIN]), Needs::default()).is_empty());
        assert_eq!(missing(0, server).len(), 5);
    }

    /// The unit grants exactly what the agent may ask for.
    #[test]
    fn the_unit_grants_the_service_set() {
        let unit = include_str!("../../dist/ntp-agent.service");
        let want: Vec<&str> = SERVICE_SET.iter().map(|(_, n)| *n).collect();
        for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
            let lines: Vec<&str> = unit
                .lines()
                .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .collect();
            assert_eq!(lines.len(), 1, "{key}= once in the unit: {lines:?}");
            let mut got: Vec<&str> = lines[0].split_whitespace().collect();
            let mut want = want.clone();
            got.sort();
            want.sort();
            assert_eq!(got, want, "{key}=");
        }
    }
}
