//! What a hostile network and a careless operator broke (issue #14), end to
//! end: `ntp-agent run` in a router namespace, frames from outside and from
//! a lan the filter is not on, and the control socket.

use std::{net::SocketAddr, time::Duration};

use ntp_filter_tests::{addrs::*, *};
use serde_json::Value;

const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// `agent.ignored.ipv4_mapped_source` (the status JSON's `ignored` block).
fn ignored_mapped(v: &Value) -> Option<u64> {
    v["ignored"]["ipv4_mapped_source"].as_u64()
}

/// The agent half of RFC 4291's rule: an IPv6 datagram whose sender embeds
/// an IPv4 address reaches the agent on an interface the filter is not on
/// (here the lan), on the NTP port, from the configured server's and peer's
/// mapped addresses and, in server mode, as a client request from
/// `::ffff:192.0.2.99`. None is taken for the IPv4 host, none is answered
/// (no reply over IPv4 to 192.0.2.99, none over IPv6), each is counted; a
/// genuine IPv6 client on the same port is still answered.
fn agent_ignores_ipv6_senders_embedding_ipv4() {
    let lab = RouterLab::with_lan("hmap").unwrap();
    let env = AgentEnv::new("hmap").unwrap();
    let agent = env
        .start(
            lab.router(),
            &[
                "--iface",
                WAN_IF,
                "--server",
                "192.0.2.10",
                "--peer",
                "192.0.2.20",
                "--source-port",
                "123",
                "--mode",
                "server",
            ],
        )
        .unwrap();
    // "running;" (what `start` waits for) only once port 123 is bound: said
    // before, the datagrams below could come before the socket and be lost
    // (this test failed 2 runs in 4 that way).
    let log = agent.log();
    let order = |line: &str| {
        log.find(line)
            .unwrap_or_else(|| panic!("no {line:?} in {log}"))
    };
    assert!(
        order("listening on the NTP port") < order("running;"),
        "the agent said it was running before its NTP port was open: {log}"
    );
    // Replies the router sends: to the outside (over IPv4) and to the lan.
    let ext = Observer::start(lab.outside(), EXT_IF).unwrap();
    let host = lab.observe_lan().unwrap();
    let lan0 = lab.observe_router_lan().unwrap();
    let tx = lab.lan_raw_sender().unwrap();
    let router = sock(LAN_GW_V6, 123);
    let mapped = |v4: std::net::Ipv4Addr, port| SocketAddr::new(v4.to_ipv6_mapped().into(), port);
    for (src, ntp_mode) in [
        (mapped(OUTSIDER_V4, 50_000), mode::CLIENT),
        (mapped(PEER_V4, 123), mode::SYMMETRIC_ACTIVE),
        (mapped(SERVER_V4, 123), mode::SERVER),
        // IPv4-compatible (deprecated): the same.
        (
            SocketAddr::new("::192.0.2.99".parse().unwrap(), 50_001),
            mode::CLIENT,
        ),
    ] {
        let frame = lab.lan_frame(src, router, NtpPacket::new(ntp_mode).to_bytes());
        tx.send(&frame.frame()).unwrap();
    }
    lab.sync(&tx, &lan0).unwrap();

    // A genuine IPv6 client on the same socket, sent after them: once it is
    // answered, any answer to the mapped ones would have gone out too.
    let client = lab.lan_udp(sock(LAN_HOST_V6, 50_002)).unwrap();
    client
        .send_to(&NtpPacket::new(mode::CLIENT).to_bytes(), router)
        .unwrap();
    client
        .wait_for(|d| d.ntp_mode() == Some(mode::SERVER), EVENT_TIMEOUT)
        .unwrap();
    let from_123 = Match::udp().src_port(123);
    let out: Vec<Frame> = ext
        .frames()
        .into_iter()
        .filter(|f| from_123.matches(f))
        .collect();
    assert!(
        !out.iter()
            .any(|f| f.udp().is_some_and(|u| u.dst == OUTSIDER_V4)),
        "a mapped sender was answered over IPv4 (cross-family reflection): {out:?}"
    );
    // The observer records on a thread of its own: wait until it has the
    // genuine reply before counting what else it saw.
    let from_ntp_port = |f: &Frame| f.udp().is_some_and(|u| u.src_port == 123);
    host.wait_for(from_ntp_port, EVENT_TIMEOUT).unwrap();
    let to_lan = host.count_matching(from_ntp_port);
    assert_eq!(to_lan, 1, "only the genuine client is answered on the lan");
    let st = env
        .wait_status(lab.router(), EVENT_TIMEOUT, "4 datagrams ignored", |v| {
            ignored_mapped(v) == Some(4)
        })
        .unwrap();
    assert_eq!(st["server"]["answered"], 1, "{st:#}");
    let text = env.status_text(lab.router()).unwrap();
    assert!(
        text.contains("4 datagrams from IPv6 addresses embedding IPv4"),
        "{text}"
    );
}

/// `::ffff:192.0.2.20` is the peer 192.0.2.20 on the control socket too:
/// `server add` of the alias is refused as a duplicate (it used to re-class
/// the peer's filter entry as a server), `server del` of it finds no
/// server (it used to delete the peer's entry), and the peer's packets
/// still pass the NIC.
fn ipv4_mapped_alias_is_the_same_source() {
    let lab = RouterLab::new("halias").unwrap();
    let env = AgentEnv::new("halias").unwrap();
    let _agent = env
        .start(lab.router(), &["--iface", WAN_IF, "--peer", "192.0.2.20"])
        .unwrap();
    let add = env
        .control(lab.router(), &["server", "add", "::ffff:192.0.2.20"])
        .unwrap();
    assert!(!add.status.success(), "{}", add.log);
    assert!(
        add.log.contains("192.0.2.20 is already a source"),
        "{}",
        add.log
    );
    let del = env
        .control(lab.router(), &["server", "del", "::ffff:192.0.2.20"])
        .unwrap();
    assert!(!del.status.success(), "{}", del.log);
    assert!(del.log.contains("no server 192.0.2.20"), "{}", del.log);
    let peer_del = env
        .control(lab.router(), &["peer", "del", "::ffff:192.0.2.99"])
        .unwrap();
    assert!(!peer_del.status.success(), "{}", peer_del.log);

    let st = env.status(lab.router()).unwrap();
    assert_eq!(
        st["filter"]["peers"],
        serde_json::json!(["192.0.2.20"]),
        "{st:#}"
    );
    assert_eq!(st["filter"]["servers"], serde_json::json!([]), "{st:#}");
    let peers: Vec<&str> = st["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["remote"].as_str())
        .collect();
    assert_eq!(peers, ["192.0.2.20"], "{st:#}");

    let obs = lab.observe_wan().unwrap();
    let tx = lab.raw_sender().unwrap();
    let frame = lab.ntp_frame(
        sock(PEER_V4, 123),
        sock(ROUTER_V4, 123),
        NtpPacket::new(mode::SYMMETRIC_ACTIVE),
    );
    tx.send(&frame.frame()).unwrap();
    lab.sync(&tx, &obs).unwrap();
    assert_eq!(
        obs.count(&Match::ntp(PEER_V4.into(), mode::SYMMETRIC_ACTIVE)),
        1,
        "the peer's packets no longer pass"
    );
}

/// The filter's sources table ([`ntp_filter_common::MAX_SOURCES`]).
const MAX_SOURCES: usize = ntp_filter_common::MAX_SOURCES as usize;

/// `n` distinct peer addresses from 2001:db8:5::/64 (off the lab's subnets,
/// so none is refused as the router's own; none needs to answer).
fn peer_addrs(n: usize, from: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| format!("2001:db8:5::{:x}", i + 1))
        .collect()
}

/// A config file filtering the wan with `peers` (and `extra` lines).
fn config_with_peers(env: &AgentEnv, name: &str, peers: &[String], extra: &str) -> String {
    let list: Vec<String> = peers.iter().map(|p| format!("\"{p}\"")).collect();
    let file = env.dir().join(name);
    std::fs::write(
        &file,
        format!(
            "iface = [\"{WAN_IF}\"]\n{extra}peer = [{}]\n",
            list.join(", ")
        ),
    )
    .unwrap();
    file.display().to_string()
}

/// Whether XDP is attached to the router's wan (`ip link` says `xdp`).
fn xdp_on_wan(lab: &RouterLab) -> bool {
    let link = lab.router().ip(&["link", "show", "dev", WAN_IF]).unwrap();
    link.contains("xdp")
}

/// The addresses the filter holds as peers (read from the pins by `status`).
fn filter_peers(st: &Value) -> Vec<String> {
    let mut v: Vec<String> = st["filter"]["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("no filter.peers: {st:#}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// 1025 sources (peers, or peers and a pool's maxsources) are refused by
/// `check-config` and by `run` with one line naming the count and the
/// limit, and `run` leaves nothing: no pins, no XDP on the interface.
/// (It used to pass `check-config` and fail `run` after filling the
/// table with 1024 of them.)
fn more_sources_than_the_filter_holds_are_refused_up_front() {
    let lab = RouterLab::new("cap").unwrap();
    let env = AgentEnv::new("cap").unwrap();
    let want = format!(
        "{} sources configured; the filter holds at most {MAX_SOURCES}",
        MAX_SOURCES + 1
    );
    let all = config_with_peers(&env, "all.toml", &peer_addrs(MAX_SOURCES + 1, 0), "");
    let pooled = config_with_peers(
        &env,
        "pooled.toml",
        &peer_addrs(MAX_SOURCES - 3, 0),
        "pool = [\"pool.example.net,maxsources=4\"]\n",
    );
    let fits = config_with_peers(&env, "fits.toml", &peer_addrs(MAX_SOURCES, 0), "");
    for file in [&all, &pooled] {
        let check = run_agent_once(
            lab.router(),
            &["check-config", file],
            Duration::from_secs(20),
        )
        .unwrap();
        assert_eq!(check.status.code(), Some(1), "{}", check.log);
        assert!(check.log.contains(&want), "{file}: {}", check.log);
        let log = env.run_failing(lab.router(), &["--config", file]).unwrap();
        assert!(log.contains(&want), "{file}: {log}");
        assert!(!log.contains("Argument list too long"), "{log}");
        assert_eq!(env.pins.entries().unwrap(), Vec::<String>::new(), "{log}");
        assert!(!xdp_on_wan(&lab), "XDP left on {WAN_IF}: {log}");
    }
    let check = run_agent_once(
        lab.router(),
        &["check-config", &fits],
        Duration::from_secs(20),
    )
    .unwrap();
    assert!(check.status.success(), "{}", check.log);
}

/// An agent at capacity (1024 peers): `server add`, `peer add` and
/// `pool add` are refused naming the limit, and nothing changes (the
/// filter and the agent keep exactly the 1024); after a `peer del` the
/// same `server add` goes through.
fn control_add_at_capacity_is_refused_and_changes_nothing() {
    let lab = RouterLab::new("capctl").unwrap();
    let env = AgentEnv::new("capctl").unwrap();
    let peers = peer_addrs(MAX_SOURCES, 0);
    let file = config_with_peers(&env, "full.toml", &peers, "");
    let _agent = env.start(lab.router(), &["--config", &file]).unwrap();
    let mut want_peers = peers.clone();
    want_peers.sort();
    for (cmd, n) in [
        (["server", "add", "203.0.113.5"], MAX_SOURCES + 1),
        (["peer", "add", "203.0.113.6"], MAX_SOURCES + 1),
        (["pool", "add", "pool.example.net"], MAX_SOURCES + 4),
    ] {
        let out = env.control(lab.router(), &cmd).unwrap();
        assert!(!out.status.success(), "{cmd:?}: {}", out.log);
        let want = format!("{n} sources configured; the filter holds at most {MAX_SOURCES}");
        assert!(out.log.contains(&want), "{cmd:?}: {}", out.log);
        let st = env.status(lab.router()).unwrap();
        assert_eq!(filter_peers(&st), want_peers);
        assert_eq!(st["filter"]["servers"], serde_json::json!([]), "{cmd:?}");
        assert_eq!(st["peers"].as_array().unwrap().len(), MAX_SOURCES);
        assert_eq!(st["pools"], serde_json::json!([]), "{cmd:?}");
        assert_eq!(st["state"]["sources_committed"], MAX_SOURCES, "{cmd:?}");
    }
    let del = env
        .control(lab.router(), &["peer", "del", &peers[0]])
        .unwrap();
    assert!(del.status.success(), "{}", del.log);
    let add = env
        .control(lab.router(), &["server", "add", "203.0.113.5"])
        .unwrap();
    assert!(add.status.success(), "{}", add.log);
    let st = env.status(lab.router()).unwrap();
    assert_eq!(st["filter"]["servers"], serde_json::json!(["203.0.113.5"]));
    assert_eq!(filter_peers(&st).len(), MAX_SOURCES - 1);
}

/// An agent holding 1024 sources dies (`kill -9`: its pins stay); the next
/// start's configuration replaces one source with another, 1024 again. It
/// starts, and the table holds exactly the new set (it used to fail with
/// the table full halfway, leaving a mix, and fail every start after).
fn a_restart_at_capacity_that_replaces_a_source_applies_the_new_set() {
    let lab = RouterLab::new("caprs").unwrap();
    let env = AgentEnv::new("caprs").unwrap();
    let old = peer_addrs(MAX_SOURCES, 0);
    let new = peer_addrs(MAX_SOURCES, 1);
    let old_file = config_with_peers(&env, "old.toml", &old, "");
    let new_file = config_with_peers(&env, "new.toml", &new, "");
    let mut first = env.start(lab.router(), &["--config", &old_file]).unwrap();
    assert_eq!(
        filter_peers(&env.status(lab.router()).unwrap()).len(),
        MAX_SOURCES
    );
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(xdp_on_wan(&lab), "the pinned filter went with the agent");
    let second = env.start(lab.router(), &["--config", &new_file]);
    let mut second = second.unwrap_or_else(|e| panic!("the restart failed: {e:#}"));
    second.stop().unwrap();
    let pinned = env.pins.entries().unwrap();
    // One source too many against those pins: refused before they change.
    let mut too_many = new.clone();
    too_many.push(old[0].clone());
    let too_many = config_with_peers(&env, "too_many.toml", &too_many, "");
    let log = env
        .run_failing(lab.router(), &["--config", &too_many])
        .unwrap();
    assert!(
        log.contains(&format!("{} sources configured", MAX_SOURCES + 1)),
        "{log}"
    );
    assert_eq!(env.pins.entries().unwrap(), pinned);
    assert!(xdp_on_wan(&lab), "the refused start took the filter away");
    let mut second = env.start(lab.router(), &["--config", &new_file]).unwrap();
    let mut want = new.clone();
    want.sort();
    let st = env.status(lab.router()).unwrap();
    assert_eq!(filter_peers(&st), want, "the table is not the new set");
    assert!(xdp_on_wan(&lab));
    assert!(matches!(second.try_wait(), Ok(None)), "{}", second.log());
}

/// `--source-port 5000` with a peer is refused by `check-config` and by
/// `run` before anything is attached (it used to fail in the sync loop
/// after the attach, leaving the filter and its pins behind); and a UDP
/// port `run` needs that another daemon holds stops `run` before the
/// attach too.
fn a_start_that_cannot_work_fails_before_attaching() {
    let lab = RouterLab::new("srcport").unwrap();
    let env = AgentEnv::new("srcport").unwrap();
    let file = env.dir().join("agent.toml");
    std::fs::write(
        &file,
        format!("iface = [\"{WAN_IF}\"]\npeer = [\"192.0.2.20\"]\nsource-port = 5000\n"),
    )
    .unwrap();
    let file = file.display().to_string();
    let want = "--source-port 5000 cannot be combined with --peer";
    let check = run_agent_once(
        lab.router(),
        &["check-config", &file],
        Duration::from_secs(20),
    )
    .unwrap();
    assert_eq!(check.status.code(), Some(1), "{}", check.log);
    assert!(check.log.contains(want), "{}", check.log);
    let log = env
        .run_failing(
            lab.router(),
            &[
                "--iface",
                WAN_IF,
                "--source-port",
                "5000",
                "--peer",
                "192.0.2.20",
            ],
        )
        .unwrap();
    assert!(log.contains(want), "{log}");
    assert!(!log.contains("filter attached"), "{log}");
    assert_eq!(env.pins.entries().unwrap(), Vec::<String>::new(), "{log}");
    assert!(!xdp_on_wan(&lab), "XDP left on {WAN_IF}: {log}");

    // Another NTP daemon on the port server mode needs.
    let busy = lab
        .router()
        .in_ns(|| std::net::UdpSocket::bind("0.0.0.0:123"))
        .unwrap()
        .unwrap();
    let log = env
        .run_failing(
            lab.router(),
            &[
                "--iface",
                WAN_IF,
                "--server",
                "192.0.2.10",
                "--mode",
                "server",
            ],
        )
        .unwrap();
    assert!(log.contains("binding UDP port 123"), "{log}");
    assert!(!log.contains("filter attached"), "{log}");
    assert_eq!(env.pins.entries().unwrap(), Vec::<String>::new(), "{log}");
    assert!(!xdp_on_wan(&lab), "XDP left on {WAN_IF}: {log}");
    drop(busy);
}

/// Control `server add` and `server del` of one address, 20,000 times:
/// every count of per-source state (the core's slots, the loop's maps,
/// the request sockets) and the filter's table are what they were after
/// the first cycle. (Timing is printed, never asserted.)
fn retired_sources_leave_no_state_behind() {
    use ntp_agent::{
        model::{SourceArg, SourceRole, SourceSpec},
        protocol::Command,
    };
    const CYCLES: usize = 20_000;
    let lab = RouterLab::new("cycle").unwrap();
    let env = AgentEnv::new("cycle").unwrap();
    let agent = env
        .start(
            lab.router(),
            &[
                "--iface",
                WAN_IF,
                "--server",
                "192.0.2.10",
                "--peer",
                "192.0.2.20",
            ],
        )
        .unwrap();
    let rss = || {
        let st = std::fs::read_to_string(format!("/proc/{}/status", agent.pid())).unwrap();
        st.lines()
            .find(|l| l.starts_with("VmRSS:"))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    let path = std::path::PathBuf::from(env.control_socket());
    let addr: std::net::IpAddr = "203.0.113.7".parse().unwrap();
    let add = Command::Add(
        SourceRole::Server,
        "203.0.113.7".parse::<SourceArg>().unwrap(),
    );
    let del = Command::Del(SourceRole::Server, SourceSpec::Addr(addr));
    let cycle = || {
        ntp_agent::control::change(&path, add.clone()).unwrap();
        ntp_agent::control::change(&path, del.clone()).unwrap();
    };
    let check = |what: &str| -> Value {
        let st = env.status(lab.router()).unwrap();
        assert_eq!(
            st["filter"]["servers"],
            serde_json::json!(["192.0.2.10"]),
            "{what}"
        );
        assert_eq!(
            st["filter"]["peers"],
            serde_json::json!(["192.0.2.20"]),
            "{what}"
        );
        assert_eq!(st["peers"].as_array().unwrap().len(), 2, "{what}");
        st["state"].clone()
    };
    // Both configured sources polled once (their timestamps and the
    // server's request socket exist), so only the cycles can change counts.
    env.wait_status(lab.router(), EVENT_TIMEOUT, "the first polls", |v| {
        v["state"]["timestamps"] == 2 && v["state"]["request_sockets"] == 1
    })
    .unwrap();
    let started = std::time::Instant::now();
    cycle();
    let mut after_one = check("after one cycle");
    let rss_one = rss();
    assert!(after_one.is_object(), "no state block in status");
    let mut lap = std::time::Instant::now();
    let mut laps = Vec::new();
    for i in 1..CYCLES {
        cycle();
        if i % 5000 == 0 {
            laps.push(lap.elapsed() / 5000);
            lap = std::time::Instant::now();
        }
    }
    let after_all = check("after every cycle");
    eprintln!(
        "{CYCLES} add/del cycles in {:?}; per cycle, by 5000: {laps:?}; agent RSS {rss_one} after the first cycle, {} after the last",
        started.elapsed(),
        rss()
    );
    // A send to a configured source may start or stop failing meanwhile
    // (the lab answers with ICMP): bounded by the two, not compared.
    let mut after_all = after_all;
    for st in [&mut after_one, &mut after_all] {
        let failing = st["send_failing"].take().as_u64().unwrap();
        assert!(failing <= 2, "{failing} failing sends recorded");
    }
    assert_eq!(after_all, after_one, "per-source state grew");
    assert_eq!(after_all["core_sources"], 2, "{after_all:#}");
    assert!(
        after_all["core_slots"].as_u64().unwrap() <= 3,
        "{after_all:#}"
    );
}

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![
        trial!(
            agent_ignores_ipv6_senders_embedding_ipv4,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(ipv4_mapped_alias_is_the_same_source, Netns, Bpffs, Agent),
        trial!(
            more_sources_than_the_filter_holds_are_refused_up_front,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(
            control_add_at_capacity_is_refused_and_changes_nothing,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(
            a_restart_at_capacity_that_replaces_a_source_applies_the_new_set,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(
            a_start_that_cannot_work_fails_before_attaching,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(retired_sources_leave_no_state_behind, Netns, Bpffs, Agent),
    ])
}
