//! Reading the kernel's own accounting: interface counters, UDP counters,
//! and a process's memory and CPU time.

use anyhow::{bail, Context as _, Result};
use ntp_filter_tests::Netns;
use serde::Serialize;
use serde_json::Value;

/// Receive counters of one interface (`ip -s -j link`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_dropped: u64,
}

impl LinkStats {
    pub fn since(self, before: LinkStats) -> LinkStats {
        LinkStats {
            rx_packets: self.rx_packets.saturating_sub(before.rx_packets),
            rx_dropped: self.rx_dropped.saturating_sub(before.rx_dropped),
        }
    }
}

fn link_json(ns: &Netns, ifname: &str) -> Result<Value> {
    let out = ns.ip(&["-s", "-j", "link", "show", "dev", ifname])?;
    let v: Value = serde_json::from_str(&out).context("parsing `ip -s -j link`")?;
    Ok(v[0].clone())
}

pub fn link_stats(ns: &Netns, ifname: &str) -> Result<LinkStats> {
    let v = link_json(ns, ifname)?;
    let rx = &v["stats64"]["rx"];
    match (rx["packets"].as_u64(), rx["dropped"].as_u64()) {
        (Some(rx_packets), Some(rx_dropped)) => Ok(LinkStats {
            rx_packets,
            rx_dropped,
        }),
        _ => bail!("no rx counters for {ifname} in {v}"),
    }
}

pub fn ifindex(ns: &Netns, ifname: &str) -> Result<u32> {
    let v = link_json(ns, ifname)?;
    v["ifindex"]
        .as_u64()
        .map(|i| i as u32)
        .with_context(|| format!("no ifindex for {ifname} in {v}"))
}

/// A counter of `/proc/net/snmp` in `ns`, e.g. `("Udp", "NoPorts")`.
pub fn snmp(ns: &Netns, group: &str, field: &str) -> Result<u64> {
    let text = ns.run("cat", &["/proc/net/snmp"])?;
    parse_snmp(&text, group, field)
        .with_context(|| format!("no {group} {field} in /proc/net/snmp of {}", ns.name()))
}

fn parse_snmp(text: &str, group: &str, field: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == field)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// Memory and CPU time of a process at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct ProcSample {
    /// VmRSS, KiB.
    pub rss_kib: u64,
    /// VmHWM (peak RSS), KiB.
    pub hwm_kib: u64,
    /// utime + stime, seconds (clock ticks: 10 ms steps; counts exited
    /// threads too).
    pub cpu_s: f64,
    /// Sum of the live threads' on-CPU time from schedstat, seconds (ns
    /// resolution; 0 when schedstat is unavailable).
    pub sched_s: f64,
}

pub fn proc_sample(pid: u32) -> Result<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = |key: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("no {key} in /proc/{pid}/status"))
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let ticks = cpu_ticks(&stat).with_context(|| format!("parsing /proc/{pid}/stat"))?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ProcSample {
        rss_kib: kib("VmRSS:")?,
        hwm_kib: kib("VmHWM:")?,
        cpu_s: ticks as f64 / hz,
        sched_s: sched_ns(pid) as f64 / 1e9,
    })
}

/// On-CPU time of every live thread of `pid` (first field of
/// /proc/PID/task/TID/schedstat), ns.
fn sched_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command
/// name (field 2) may contain spaces and parentheses: count from the last ')'.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The command name of a process (to make sure a pid is the agent).
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_the_command_name() {
        let line = "1234 (ntp (x) agent) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 99 1000 200";
        assert_eq!(cpu_ticks(line), Some(300));
    }

    #[test]
    fn snmp_lookup() {
        let text =
            "Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors\nUdp: 5 17 0\n";
        assert_eq!(parse_snmp(text, "Udp", "NoPorts"), Some(17));
        assert_eq!(parse_snmp(text, "Udp", "Nope"), None);
    }
}
