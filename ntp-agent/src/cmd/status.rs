//! `ntp-agent status`: the running agent's time sync (over the control
//! socket) in the router note's layout, then the filter, read straight from
//! the pins so it shows whether or not the agent is running.

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::Result;
use ntp_filter_common::SourceClass;
use ntp_proto::SystemStatus;
use serde::Serialize;

use crate::{
    cli::StatusArgs,
    control,
    filter::{
        inspect::{self, FilterStatus},
        stats::FilterStats,
        PinDir,
    },
    model::{policy::Modes, Role},
    protocol::{
        AgentReport, AgentState, IgnoredCounters, InterfaceReport, NtsReport, PoolReport,
        ServerCounters,
    },
};

pub fn render_text(s: &FilterStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "filter info:");
    let _ = writeln!(out, "        pin dir:    {}", s.pin_dir);
    let _ = writeln!(out, "        ntp port:   {}", s.ntp_port);
    if !s.server_ports.is_empty() {
        let ports: Vec<String> = s.server_ports.iter().map(u16::to_string).collect();
        let _ = writeln!(
            out,
            "        server ports: {} (negotiated by NTS)",
            ports.join(", ")
        );
    }
    for i in &s.interfaces {
        let slot = match i.counter_slot {
            Some(n) => format!("counter slot {n}"),
            None => "counted under other".into(),
        };
        let _ = writeln!(
            out,
            "        interface:  {} (xdp {}, {slot})",
            i.name, i.xdp_mode
        );
    }
    if s.interfaces.is_empty() {
        let _ = writeln!(out, "        interface:  none attached");
    }
    for class in SourceClass::ALL {
        let mask = s.policy[class.name()].iter().fold(0u8, |m, b| m | 1 << b);
        let _ = writeln!(
            out,
            "        allow {:<7} modes {}",
            class.name(),
            Modes(mask)
        );
    }
    let _ = writeln!(
        out,
        "        sources:    {} server, {} peer; {} local addresses",
        s.servers.len(),
        s.peers.len(),
        s.local_addresses
    );
    if s.local_addresses_unprotected > 0 {
        let _ = writeln!(
            out,
            "        WARNING:    {} more local addresses than the filter holds ({}): NTP to them is treated as transit",
            s.local_addresses_unprotected,
            ntp_filter_common::MAX_LOCAL_ADDRS
        );
    }
    if !s.out_of_scope_counted {
        let _ = writeln!(
            out,
            "        out-of-scope passes: not counted (not_ip, not_udp, not_ntp_port, not_local stay 0; --count-out-of-scope counts them)"
        );
    }
    if !s.acl.is_empty() {
        let _ = writeln!(
            out,
            "        clients:    {}; others {}",
            s.acl.join(", "),
            s.acl_default
        );
    }
    let c = &s.counters;
    let _ = writeln!(out, "filter drops:");
    let _ = writeln!(out, "     class   mode    passed   dropped");
    class_mode_rows(&mut out, c, "     ");
    by_reason(&mut out, "dropped", c.total_dropped, &c.drops);
    by_reason(&mut out, "passed", c.total_passed, &c.passes);
    if !s.counters_by_interface.is_empty() {
        let _ = writeln!(out, "filter counters by interface:");
        let _ = writeln!(out, "       class   mode    passed   dropped");
    }
    for (iface, c) in &s.counters_by_interface {
        let _ = writeln!(
            out,
            "     {iface}: dropped {}{}, passed {}{}",
            c.total_dropped,
            nonzero(&c.drops),
            c.total_passed,
            nonzero(&c.passes)
        );
        class_mode_rows(&mut out, c, "       ");
    }
    out
}

/// `     dropped 7 by reason: fragment 2, unknown_source 5`.
fn by_reason(out: &mut String, what: &str, total: u64, reasons: &BTreeMap<&'static str, u64>) {
    let list: Vec<String> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let _ = writeln!(out, "     {what} {total} by reason: {}", list.join(", "));
}

/// One `class mode passed dropped` row per cell that counted anything.
fn class_mode_rows(out: &mut String, c: &FilterStats, indent: &str) {
    for (class, modes) in &c.by_class_mode {
        for (mode, pd) in modes {
            let _ = writeln!(
                out,
                "{indent}{class:<7} {mode:>4} {:>9} {:>9}",
                pd.passed, pd.dropped
            );
        }
    }
}

/// ` (reason n, ...)` for the reasons that counted anything.
fn nonzero(reasons: &BTreeMap<&'static str, u64>) -> String {
    let hit: Vec<String> = reasons
        .iter()
        .filter(|(_, n)| **n != 0)
        .map(|(r, n)| format!("{r} {n}"))
        .collect();
    if hit.is_empty() {
        String::new()
    } else {
        format!(" ({})", hit.join(", "))
    }
}

/// The router's `show status ntp` layout for the agent's part.
pub fn render_agent(agent: &AgentReport) -> String {
    let mut out = String::new();
    let host = &agent.system;
    let _ = writeln!(out, "function info:");
    let _ = writeln!(out, "        mode:  {}", agent.role);
    for i in &agent.interfaces {
        match &i.reason {
            None => {
                let _ = writeln!(out, "        filter on {}: {}", i.name, i.state.name());
            }
            Some(why) => {
                let _ = writeln!(
                    out,
                    "        filter on {}: NOT FILTERED, {}: {why}",
                    i.name,
                    i.state.name()
                );
            }
        }
    }
    let _ = writeln!(out, "host info:");
    if host.synchronized {
        let _ = writeln!(out, "        status:   synchronized");
    } else {
        let reason = host.reason.as_deref().unwrap_or("unknown reason");
        let _ = writeln!(out, "        status:   unsynchronized ({reason})");
    }
    let _ = writeln!(out, "        stratum:  {}", host.stratum);
    let _ = writeln!(out, "        offset:   {:.3}ms", host.offset_ms);
    let _ = writeln!(out, "        jitter:   {:.3}ms", host.jitter_ms);
    if agent.role == Role::Server {
        let srv = &agent.server;
        let _ = writeln!(
            out,
            "        clients:  {} answered, {} KoD RATE, {} ignored (rate limit), {} malformed",
            srv.answered, srv.rate_kod, srv.rate_ignored, srv.malformed
        );
    }
    if agent.ignored.ipv4_mapped_source > 0 {
        let _ = writeln!(
            out,
            "        ignored:  {} datagrams from IPv6 addresses embedding IPv4 (ipv4_mapped_source)",
            agent.ignored.ipv4_mapped_source
        );
    }
    let _ = writeln!(out, "peer info:");
    let _ = writeln!(
        out,
        "     remote           refid      st t when poll reach   delay   offset  jitter"
    );
    let _ = writeln!(out, "{}", "=".repeat(78));
    for p in &agent.sources {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.3}"));
        let when = p.when.map_or_else(|| "-".into(), |w| w.to_string());
        let nts = agent.nts.iter().find(|n| n.source == Some(p.id));
        let _ = writeln!(
            out,
            "{}{:<15} {:<15} {:>2} {} {:>4} {:>4} {:>4o} {:>8} {:>8} {:>7}",
            p.tally,
            p.remote,
            p.refid,
            p.stratum,
            if nts.is_some() { NTS_MARK } else { p.kind },
            when,
            p.poll,
            p.reach,
            ms(p.delay_ms),
            ms(p.offset_ms),
            ms(p.jitter_ms),
        );
        if p.state.contains("KoD") {
            let _ = writeln!(out, "      {} {}", p.remote, p.state);
        }
        if let Some(n) = nts {
            let _ = writeln!(out, "      {} {}", p.remote, nts_line(n));
        }
    }
    // NTS sources whose key establishment has not named a server yet.
    for n in agent.nts.iter().filter(|n| n.source.is_none()) {
        let _ = writeln!(
            out,
            " {:<15} {:<15} 16 {NTS_MARK}    -    -    0        -        -       -",
            n.host, ".NTS."
        );
        let _ = writeln!(out, "      {} {}", n.host, nts_line(n));
    }
    for p in &agent.pools {
        let _ = writeln!(
            out,
            "pool {}: {} of {} members, {} replaced",
            p.name,
            p.members.len(),
            p.max_sources,
            p.replacements
        );
    }
    for p in &agent.sources {
        let Some(t) = agent.timestamps.iter().find(|t| t.id == p.id) else {
            continue;
        };
        let (rx, tx) = t.stamps.in_use();
        let _ = write!(out, "      {} timestamps: rx {rx}, tx {tx}", p.remote);
        match t.stamps.fallbacks() {
            0 => {}
            n => {
                let _ = write!(out, ", {n} kernel timestamps refused");
            }
        }
        let _ = writeln!(out);
    }
    out
}

/// The `t` column of an NTS source: a server whose replies are
/// authenticated (the `nts` line under it says how).
const NTS_MARK: char = 'N';

/// `NTS via HOST:PORT: 8 cookies, AEAD_AES_SIV_CMAC_256`, or why not.
fn nts_line(n: &NtsReport) -> String {
    let s = &n.nts;
    match &n.reason {
        Some(reason) => format!("{reason}; nothing is sent until it succeeds"),
        None => {
            let aead = s.aead.as_deref().unwrap_or("-");
            let mut line = format!("NTS via {}: {} cookies, {aead}", s.ke_server, s.cookies);
            if let Some(e) = &s.last_error {
                let _ = write!(line, "; last KE error: {e}");
            }
            line
        }
    }
}

/// `status --json`: the agent's part under the names the README
/// documents, then the filter's; each part, when it cannot be read, is
/// replaced by its error.
#[derive(Serialize)]
struct StatusJson<'a> {
    #[serde(flatten)]
    agent: Option<AgentJson<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<&'a FilterStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    filter_error: Option<String>,
}

#[derive(Serialize)]
struct AgentJson<'a> {
    mode: Role,
    clock: &'a str,
    clock_correction_ms: Option<f64>,
    host: &'a SystemStatus,
    /// The sources, an NTS one with its `nts` object and each with its
    /// `timestamps` (absent before the first); NTS sources without a server
    /// yet at the end (`remote` the KE host, `state` why).
    peers: Vec<serde_json::Value>,
    pools: &'a [PoolReport],
    server: &'a ServerCounters,
    ignored: &'a IgnoredCounters,
    interfaces: &'a [InterfaceReport],
    state: &'a AgentState,
}

fn peers_json(a: &AgentReport) -> Vec<serde_json::Value> {
    let nts_of = |id| a.nts.iter().find(|n| n.source == Some(id));
    let stamps_of = |id| a.timestamps.iter().find(|t| t.id == id).map(|t| &t.stamps);
    let known = a.sources.iter().map(|s| {
        let mut v = serde_json::to_value(s).unwrap_or_default();
        if let Some(m) = v.as_object_mut() {
            if let Some(n) = nts_of(s.id) {
                m.insert(
                    "nts".into(),
                    serde_json::to_value(&n.nts).unwrap_or_default(),
                );
            }
            if let Some(t) = stamps_of(s.id) {
                m.insert(
                    "timestamps".into(),
                    serde_json::to_value(t).unwrap_or_default(),
                );
            }
        }
        v
    });
    let pending = a.nts.iter().filter(|n| n.source.is_none()).map(|n| {
        serde_json::json!({
            "remote": n.host,
            "kind": "u",
            "reach": 0,
            "state": n.reason,
            "nts": n.nts,
        })
    });
    known.chain(pending).collect()
}

impl<'a> StatusJson<'a> {
    fn new(agent: &'a Result<AgentReport>, filter: &'a Result<FilterStatus>) -> Self {
        Self {
            agent: agent.as_ref().ok().map(|a| AgentJson {
                mode: a.role,
                clock: &a.clock,
                clock_correction_ms: a.clock_correction_ms,
                host: &a.system,
                peers: peers_json(a),
                pools: &a.pools,
                server: &a.server,
                ignored: &a.ignored,
                interfaces: &a.interfaces,
                state: &a.state,
            }),
            agent_error: agent.as_ref().err().map(|e| format!("{e:#}")),
            filter: filter.as_ref().ok(),
            filter_error: filter.as_ref().err().map(|e| format!("{e:#}")),
        }
    }

    /// Pretty-printed, keys sorted at every level (as through a
    /// `serde_json::Value`), so the output is stable.
    fn render(&self) -> Result<String> {
        Ok(serde_json::to_string_pretty(&serde_json::to_value(self)?)?)
    }
}

pub fn status(args: StatusArgs) -> Result<()> {
    let agent = control::status(&args.control_socket);
    let filter = inspect::collect(&PinDir::new(&args.pins.pin_dir));
    if args.json {
        println!("{}", StatusJson::new(&agent, &filter).render()?);
    } else {
        match &agent {
            Ok(a) => print!("{}", render_agent(a)),
            Err(e) => println!("agent: {e:#}"),
        }
        match &filter {
            Ok(f) => print!("{}", render_text(f)),
            Err(e) => println!("filter: {e:#}"),
        }
    }
    match (agent, filter) {
        (Err(a), Err(_)) => Err(a),
        (Ok(a), _) => all_filtered(&a),
        _ => Ok(()),
    }
}

/// A configured interface the filter is not on fails `status` (after it
/// printed everything), so a check (`ntp-agent status || alert`) sees it.
fn all_filtered(agent: &AgentReport) -> Result<()> {
    let not: Vec<String> = agent
        .interfaces
        .iter()
        .filter(|i| !i.filtered())
        .map(|i| format!("{} ({})", i.name, i.state.name()))
        .collect();
    if not.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("the filter is not on {}", not.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::tests::full_report;

    #[test]
    fn the_agent_part_is_the_router_notes_layout() {
        let text = render_agent(&full_report());
        for line in [
            "        mode:  server\n",
            "        filter on wan0: attached\n",
            "        filter on lan0: NOT FILTERED, missing: the interface is gone\n",
            "        status:   unsynchronized (source refuses service (KoD DENY))\n",
            "        stratum:  16\n",
            "        offset:   0.500ms\n",
            "        clients:  10 answered, 2 KoD RATE, 30 ignored (rate limit), 3 malformed\n",
            "        ignored:  5 datagrams from IPv6 addresses embedding IPv4 (ipv4_mapped_source)\n",
            "*192.0.2.10      127.127.1.1      3 N   12   64  377    0.208   -0.142   0.139\n",
            "      192.0.2.10 NTS via nts.example.net:4460: 7 cookies, AEAD_AES_SIV_CMAC_256; last KE error: TLS: invalid peer certificate: UnknownIssuer\n",
            "x192.0.2.10      127.127.1.1      3 s    -   64  377        -   -0.142   0.139\n",
            "      192.0.2.10 unreachable: KoD DENY\n",
            " 192.0.2.30      .NTS.           16 N    -    -    0        -        -       -\n",
            "      192.0.2.30 NTS-KE with 192.0.2.30:4460 failed: no answer within 10s; nothing is sent until it succeeds\n",
            "pool pool.example.net: 1 of 4 members, 9 replaced\n",
            "      192.0.2.10 timestamps: rx kernel, tx user, 1 kernel timestamps refused\n",
        ] {
            assert!(text.contains(line), "no {line:?} in:\n{text}");
        }
        let mut client = full_report();
        client.role = Role::Client;
        client.ignored.ipv4_mapped_source = 0;
        let text = render_agent(&client);
        assert!(!text.contains("clients:"));
        assert!(!text.contains("ignored:"), "said only when not 0");
    }

    #[test]
    fn status_fails_while_a_configured_interface_is_not_filtered() {
        let mut report = full_report();
        assert_eq!(
            format!("{:#}", all_filtered(&report).unwrap_err()),
            "the filter is not on lan0 (missing)"
        );
        report.interfaces[1].state = crate::protocol::InterfaceState::Attached;
        all_filtered(&report).unwrap();
        report.interfaces.clear();
        all_filtered(&report).unwrap();
    }

    #[test]
    fn json_has_the_documented_keys_and_errors_in_place_of_parts() {
        let report = full_report();
        let keys = |agent: Result<AgentReport>, filter: Result<FilterStatus>| {
            let v: serde_json::Value =
                serde_json::from_str(&StatusJson::new(&agent, &filter).render().unwrap()).unwrap();
            (
                v.as_object().unwrap().keys().cloned().collect::<Vec<_>>(),
                v,
            )
        };
        let (k, v) = keys(Ok(report.clone()), Err(anyhow::anyhow!("no pins")));
        assert_eq!(
            k,
            [
                "clock",
                "clock_correction_ms",
                "filter_error",
                "host",
                "ignored",
                "interfaces",
                "mode",
                "peers",
                "pools",
                "server",
                "state"
            ]
        );
        assert_eq!(v["mode"], "server");
        assert_eq!(v["host"], serde_json::to_value(&report.system).unwrap());
        // Each source as the core reports it, an NTS one with its `nts`
        // object, each with its `timestamps`, then the NTS source still
        // without a server.
        let peers = v["peers"].as_array().unwrap();
        assert_eq!(peers.len(), report.sources.len() + 1);
        for (p, s) in peers.iter().zip(&report.sources) {
            let mut p = p.clone();
            let nts = p.as_object_mut().unwrap().remove("nts");
            let stamps = p.as_object_mut().unwrap().remove("timestamps");
            assert_eq!(p, serde_json::to_value(s).unwrap());
            assert_eq!(nts.is_some(), s.id == report.nts[0].source.unwrap());
            assert_eq!(
                stamps.is_some(),
                report.timestamps.iter().any(|t| t.id == s.id)
            );
        }
        let stamped = peers
            .iter()
            .find(|p| p.get("timestamps").is_some())
            .unwrap();
        assert_eq!(stamped["timestamps"]["rx"]["in_use"], "kernel");
        assert_eq!(peers[0]["nts"]["cookies"], 7);
        assert_eq!(peers[0]["nts"]["ke_server"], "nts.example.net:4460");
        assert_eq!(peers[0]["nts"]["aead"], "AEAD_AES_SIV_CMAC_256");
        assert_eq!(peers[0]["nts"]["last_ke"], 1_700_000_000);
        assert_eq!(peers[0]["nts"]["ke_failures"], 1);
        assert_eq!(peers[0]["nts"]["rejects"]["nts_auth"], 1);
        assert_eq!(peers[2]["remote"], "192.0.2.30");
        assert_eq!(peers[2]["nts"]["last_error_kind"], "timeout");
        assert!(peers[2]["state"].as_str().unwrap().contains("failed"));
        assert_eq!(v["pools"][0]["name"], "pool.example.net");
        assert_eq!(v["pools"][0]["max_sources"], 4);
        assert_eq!(v["server"]["rate_ignored"], 30);
        assert_eq!(v["server"]["malformed"], 3);
        assert_eq!(v["ignored"]["ipv4_mapped_source"], 5);
        assert_eq!(v["interfaces"][0]["state"], "attached");
        assert_eq!(v["interfaces"][1]["name"], "lan0");
        assert_eq!(v["interfaces"][1]["state"], "missing");
        assert_eq!(v["interfaces"][1]["ifindex"], serde_json::Value::Null);
        assert_eq!(v["interfaces"][1]["since"], 1_700_000_200);
        assert_eq!(v["filter_error"], "no pins");
        let (k, v) = keys(
            Err(anyhow::anyhow!("the agent is not running")),
            Err(anyhow::anyhow!("no pins")),
        );
        assert_eq!(k, ["agent_error", "filter_error"]);
        assert_eq!(v["agent_error"], "the agent is not running");
    }
}
