//! `ntp-agent status`: the running agent's time sync (over the control
//! socket) in the router note's layout, then the filter, read straight from
//! the pins so it shows whether or not the agent is running.

use std::{collections::BTreeMap, fmt::Write as _};

use anyhow::Result;
use ntp_filter_common::SourceClass;

use crate::{
    cli::StatusArgs,
    filter::{
        inspect::{self, FilterStatus},
        stats::FilterStats,
        PinDir,
    },
    model::policy::Modes,
};

pub fn render_text(s: &FilterStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "filter info:");
    let _ = writeln!(out, "        pin dir:    {}", s.pin_dir);
    let _ = writeln!(out, "        ntp port:   {}", s.ntp_port);
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
    let reasons: Vec<String> = c.drops.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let _ = writeln!(
        out,
        "     dropped {} by reason: {}",
        c.total_dropped,
        reasons.join(", ")
    );
    let passes: Vec<String> = c.passes.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let _ = writeln!(
        out,
        "     passed {} by reason: {}",
        c.total_passed,
        passes.join(", ")
    );
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
pub fn render_agent(agent: &serde_json::Value) -> String {
    let mut out = String::new();
    let host = &agent["system"];
    let _ = writeln!(out, "function info:");
    let _ = writeln!(
        out,
        "        mode:  {}",
        agent["mode"].as_str().unwrap_or("?")
    );
    let _ = writeln!(out, "host info:");
    if host["synchronized"].as_bool() == Some(true) {
        let _ = writeln!(out, "        status:   synchronized");
    } else {
        let reason = host["reason"].as_str().unwrap_or("unknown reason");
        let _ = writeln!(out, "        status:   unsynchronized ({reason})");
    }
    let _ = writeln!(
        out,
        "        stratum:  {}",
        host["stratum"].as_u64().unwrap_or(16)
    );
    let _ = writeln!(
        out,
        "        offset:   {:.3}ms",
        host["offset_ms"].as_f64().unwrap_or(0.0)
    );
    let _ = writeln!(
        out,
        "        jitter:   {:.3}ms",
        host["jitter_ms"].as_f64().unwrap_or(0.0)
    );
    if agent["mode"] == "server" {
        let srv = &agent["server"];
        let _ = writeln!(
            out,
            "        clients:  {} answered, {} KoD RATE, {} ignored (rate limit)",
            srv["answered"].as_u64().unwrap_or(0),
            srv["rate_kod"].as_u64().unwrap_or(0),
            srv["rate_ignored"].as_u64().unwrap_or(0)
        );
    }
    let _ = writeln!(out, "peer info:");
    let _ = writeln!(
        out,
        "     remote           refid      st t when poll reach   delay   offset  jitter"
    );
    let _ = writeln!(out, "{}", "=".repeat(78));
    for p in agent["sources"].as_array().into_iter().flatten() {
        let ms = |k: &str| {
            p[k].as_f64()
                .map(|v| format!("{v:.3}"))
                .unwrap_or_else(|| "-".into())
        };
        let when = p["when"]
            .as_u64()
            .map(|w| w.to_string())
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{}{:<15} {:<15} {:>2} {} {:>4} {:>4} {:>4o} {:>8} {:>8} {:>7}",
            p["tally"].as_str().unwrap_or(" "),
            p["remote"].as_str().unwrap_or("?"),
            p["refid"].as_str().unwrap_or("?"),
            p["stratum"].as_u64().unwrap_or(16),
            p["kind"].as_str().unwrap_or("?"),
            when,
            p["poll"].as_u64().unwrap_or(0),
            p["reach"].as_u64().unwrap_or(0),
            ms("delay_ms"),
            ms("offset_ms"),
            ms("jitter_ms"),
        );
        let state = p["state"].as_str().unwrap_or("");
        if state.contains("KoD") {
            let _ = writeln!(out, "      {} {state}", p["remote"].as_str().unwrap_or("?"));
        }
    }
    out
}

pub fn status(args: StatusArgs) -> Result<()> {
    let agent = crate::control::request(&args.control_socket, "status");
    let filter = inspect::collect(&PinDir::new(&args.pins.pin_dir));
    if args.json {
        let mut v = serde_json::json!({});
        match &agent {
            Ok(a) => {
                v["mode"] = a["mode"].clone();
                v["clock"] = a["clock"].clone();
                v["clock_correction_ms"] = a["clock_correction_ms"].clone();
                v["host"] = a["system"].clone();
                v["peers"] = a["sources"].clone();
                v["server"] = a["server"].clone();
            }
            Err(e) => v["agent_error"] = format!("{e:#}").into(),
        }
        match &filter {
            Ok(f) => v["filter"] = serde_json::to_value(f)?,
            Err(e) => v["filter_error"] = format!("{e:#}").into(),
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
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
        _ => Ok(()),
    }
}
