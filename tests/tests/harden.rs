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

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![
        trial!(
            agent_ignores_ipv6_senders_embedding_ipv4,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(ipv4_mapped_alias_is_the_same_source, Netns, Bpffs, Agent),
    ])
}
