//! The filter in a real network: `ntp-agent run` in a router namespace, real
//! frames from an outside namespace, and an AF_PACKET observer on the
//! router's interface that only sees what XDP passed.

use std::{
    net::{IpAddr, SocketAddr},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use ntp_filter_tests::{addrs::*, *};
use serde_json::Value;

const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// The router note's client-mode table, as the tests expect it.
fn allowed_in_client_mode(src: IpAddr, mode: u8) -> bool {
    let server = src == IpAddr::from(SERVER_V4) || src == IpAddr::from(SERVER_V6);
    let peer = src == IpAddr::from(PEER_V4) || src == IpAddr::from(PEER_V6);
    (server && mode == 4) || (peer && (mode == 1 || mode == 2))
}

/// Source port a source of this kind uses: servers and peers talk from 123,
/// an outsider from anywhere.
fn src_port(src: IpAddr) -> u16 {
    if src == IpAddr::from(OUTSIDER_V4) || src == IpAddr::from(OUTSIDER_V6) {
        50_000
    } else {
        123
    }
}

fn all_sources() -> Vec<(IpAddr, IpAddr)> {
    let mut v: Vec<(IpAddr, IpAddr)> = OUTSIDE_V4
        .iter()
        .map(|&s| (s.into(), ROUTER_V4.into()))
        .collect();
    v.extend(
        OUTSIDE_V6
            .iter()
            .map(|&s| (IpAddr::from(s), IpAddr::from(ROUTER_V6))),
    );
    v
}

/// Servers and peers on both families; requests leave from port 123 so the
/// tests know where replies are expected.
const SOURCES: [&str; 10] = [
    "--iface",
    WAN_IF,
    "--server",
    "192.0.2.10",
    "--server",
    "2001:db8::10",
    "--peer",
    "192.0.2.20",
    "--peer",
    "2001:db8::20",
];

fn start_agent(lab: &RouterLab, env: &AgentEnv, xdp_mode: &str, extra: &[&str]) -> Child {
    let mut args = SOURCES.to_vec();
    args.extend_from_slice(&["--source-port", "123", "--xdp-mode", xdp_mode]);
    args.extend_from_slice(extra);
    env.start(lab.router(), &args)
        .unwrap_or_else(|e| panic!("agent did not come up: {e:#}"))
}

fn status_json(lab: &RouterLab, env: &AgentEnv) -> Value {
    let v = env.status(lab.router()).unwrap();
    v["filter"].clone()
}

fn decision(status: &Value, class: &str, mode: u8, verdict: &str) -> u64 {
    status["counters"]["by_class_mode"][class][mode.to_string()][verdict]
        .as_u64()
        .unwrap_or(0)
}

fn counter(status: &Value, kind: &str, reason: &str) -> u64 {
    status["counters"][kind][reason]
        .as_u64()
        .expect("counter present")
}

/// Sends one NTP frame of every mode from every source and checks that
/// exactly the allowed ones got past XDP, on IPv4 and IPv6.
fn check_policy_table(xdp_mode: &str, tag: &str) {
    let lab = RouterLab::new(tag).unwrap();
    let env = AgentEnv::new(tag).unwrap();
    let _agent = start_agent(&lab, &env, xdp_mode, &[]);
    let status = status_json(&lab, &env);
    assert_eq!(status["interfaces"][0]["xdp_mode"], xdp_mode, "{status}");

    let obs = lab.observe_wan().unwrap();
    let tx = lab.raw_sender().unwrap();
    for (src, dst) in all_sources() {
        for mode in mode::ALL {
            let pkt = NtpPacket::new(mode);
            let frame = lab.ntp_frame(
                SocketAddr::new(src, src_port(src)),
                SocketAddr::new(dst, 123),
                pkt,
            );
            tx.send(&frame.frame()).unwrap();
        }
    }
    lab.sync(&tx, &obs).unwrap();

    let mut wrong = Vec::new();
    for (src, _) in all_sources() {
        for mode in mode::ALL {
            let seen = obs.count(&Match::ntp(src, mode));
            let want = usize::from(allowed_in_client_mode(src, mode));
            if seen != want {
                wrong.push(format!("{src} mode {mode}: seen {seen}, want {want}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{xdp_mode}: {}", wrong.join("; "));

    let status = status_json(&lab, &env);
    assert_eq!(decision(&status, "server", 4, "passed"), 2, "{status}");
    assert_eq!(decision(&status, "peer", 1, "passed"), 2);
    assert_eq!(decision(&status, "peer", 2, "passed"), 2);
    assert_eq!(decision(&status, "other", 3, "dropped"), 2);
    assert_eq!(decision(&status, "other", 7, "dropped"), 2);
    assert_eq!(decision(&status, "server", 3, "dropped"), 2);
    // 8 outsider modes + 7 server + 6 peer, per family.
    assert_eq!(counter(&status, "drops", "unknown_source"), 16);
    assert_eq!(counter(&status, "drops", "mode_not_allowed"), 26);
}

/// An outsider's client request (mode 3) to the router, as ext0 sends it.
fn outsider_request(lab: &RouterLab) -> Vec<u8> {
    lab.ntp_frame(
        sock(OUTSIDER_V4, 50_000),
        sock(ROUTER_V4, 123),
        NtpPacket::new(mode::CLIENT),
    )
    .frame()
}

/// The server's reply (mode 4) to the router's NTP port.
fn server_reply(lab: &RouterLab) -> Vec<u8> {
    lab.ntp_frame(
        sock(SERVER_V4, 123),
        sock(ROUTER_V4, 123),
        NtpPacket::new(mode::SERVER),
    )
    .frame()
}

fn policy_table_native_xdp() {
    check_policy_table("native", "polnat");
}

fn policy_table_skb_xdp() {
    check_policy_table("skb", "polskb");
}

/// Real sockets: the kernel delivers to a socket on port 123 only what the
/// filter passed, and a server reply to a port other than the one the agent
/// registered for it is dropped at the NIC.
fn real_sockets_receive_only_allowed_ntp() {
    let lab = RouterLab::new("sock").unwrap();
    let env = AgentEnv::new("sock").unwrap();
    // Client mode, but client requests from anyone allowed by override: a
    // positive case for delivery to a real socket on 123 (the agent has no
    // socket there: no peers, requests leave from 40123).
    let _agent = env
        .start(
            lab.router(),
            &[
                "--iface",
                WAN_IF,
                "--server",
                "192.0.2.10",
                "--server",
                "2001:db8::10",
                "--source-port",
                "40123",
                "--allow-modes",
                "other=3",
            ],
        )
        .unwrap();

    for (router, server, outsider) in [
        (
            IpAddr::from(ROUTER_V4),
            IpAddr::from(SERVER_V4),
            IpAddr::from(OUTSIDER_V4),
        ),
        (ROUTER_V6.into(), SERVER_V6.into(), OUTSIDER_V6.into()),
    ] {
        let rx = lab.router_udp(SocketAddr::new(router, 123)).unwrap();
        let rx_other_port = lab.router_udp(SocketAddr::new(router, 40_000)).unwrap();
        let from_server = lab.outside_udp(SocketAddr::new(server, 123)).unwrap();
        let from_outsider = lab.outside_udp(SocketAddr::new(outsider, 50_000)).unwrap();

        let reply = NtpPacket::new(mode::SERVER).to_bytes();
        from_server
            .send_to(&reply, SocketAddr::new(router, 40_000))
            .unwrap();
        from_server
            .send_to(&reply, SocketAddr::new(router, 123))
            .unwrap();
        from_outsider
            .send_to(
                &NtpPacket::new(mode::PRIVATE).to_bytes(),
                SocketAddr::new(router, 123),
            )
            .unwrap();
        from_outsider
            .send_to(
                &NtpPacket::new(mode::CLIENT).to_bytes(),
                SocketAddr::new(router, 123),
            )
            .unwrap();
        rx.wait_for(
            |d| d.ntp_mode() == Some(mode::CLIENT),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("allowed request not delivered over {router}: {e:#}"));
        // Everything sent before it has been processed by now (one send
        // lane, in order).
        let got: Vec<_> = rx
            .received()
            .unwrap()
            .iter()
            .map(|d| (d.from.ip(), d.ntp_mode()))
            .collect();
        assert_eq!(got, vec![(outsider, Some(mode::CLIENT))], "{router}");
        assert_eq!(
            rx_other_port.received().unwrap().len(),
            0,
            "{router}: wrong port delivered"
        );
    }
    let status = status_json(&lab, &env);
    assert_eq!(counter(&status, "drops", "wrong_reply_port"), 4, "{status}");
    assert_eq!(counter(&status, "drops", "unknown_source"), 2);
    assert_eq!(decision(&status, "other", 3, "passed"), 2);
}

/// NTP to hosts behind the router is transit: the filter leaves it alone.
fn transit_ntp_is_forwarded_untouched() {
    let lab = RouterLab::with_lan("transit").unwrap();
    let env = AgentEnv::new("transit").unwrap();
    // Transit is only counted on request.
    let _agent = start_agent(&lab, &env, "auto", &["--count-out-of-scope"]);
    for (host, outsider) in [
        (IpAddr::from(LAN_HOST_V4), IpAddr::from(OUTSIDER_V4)),
        (LAN_HOST_V6.into(), OUTSIDER_V6.into()),
    ] {
        let rx = lab.lan_udp(SocketAddr::new(host, 123)).unwrap();
        let tx = lab.outside_udp(SocketAddr::new(outsider, 50_001)).unwrap();
        for m in [mode::CLIENT, mode::CONTROL, mode::PRIVATE] {
            tx.send_to(&NtpPacket::new(m).to_bytes(), SocketAddr::new(host, 123))
                .unwrap();
        }
        rx.wait_for(
            |d| d.ntp_mode() == Some(mode::PRIVATE),
            Duration::from_secs(5),
        )
        .unwrap_or_else(|e| panic!("transit to {host} blocked: {e:#}"));
        assert_eq!(rx.received().unwrap().len(), 3, "{host}");
    }
    let status = status_json(&lab, &env);
    assert!(counter(&status, "passes", "not_local") >= 6, "{status}");
    assert_eq!(status["counters"]["total_dropped"], 0);
}

/// Spawns a thread that keeps sending outsider mode-3 frames and server
/// replies until stopped; returns how many of each it sent.
struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(lab: &RouterLab) -> Self {
        let tx = lab.raw_sender().unwrap();
        let outsider = outsider_request(lab);
        let server = server_reply(lab);
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let (s, n) = (stop.clone(), sent.clone());
        let handle = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                tx.send(&outsider).unwrap();
                tx.send(&server).unwrap();
                n.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        Self {
            stop,
            sent,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap();
        self.sent.load(Ordering::Relaxed)
    }
}

/// kill -9 leaves the filter enforcing; a restart swaps the program inside
/// the pinned link with traffic flowing and never opens a gap; detach
/// removes the link and every pin.
fn survives_kill_restarts_in_place_and_detaches() {
    let lab = RouterLab::new("life").unwrap();
    let env = AgentEnv::new("life").unwrap();
    let pins = &env.pins;
    let mut agent = start_agent(&lab, &env, "auto", &[]);
    let first_prog = xdp_prog_id(&lab).expect("program attached");

    agent.signal(libc::SIGKILL);
    agent.wait_exit(CMD_TIMEOUT).unwrap();
    assert_eq!(
        xdp_prog_id(&lab),
        Some(first_prog),
        "the filter went away with the agent"
    );

    let obs = lab.observe_wan().unwrap();
    let flood = Flood::start(&lab);
    std::thread::sleep(Duration::from_millis(100));
    // Restart under traffic, with the same sources: valid replies must keep
    // flowing and outsiders must stay out throughout the swap.
    let mut agent = start_agent(&lab, &env, "auto", &[]);
    assert!(
        agent.log().contains("Reused"),
        "pinned link not reused:\n{}",
        agent.log()
    );
    std::thread::sleep(Duration::from_millis(100));
    let sent = flood.stop();
    let tx = lab.raw_sender().unwrap();
    lab.sync(&tx, &obs).unwrap();
    let second_prog = xdp_prog_id(&lab).expect("still attached");
    assert_ne!(second_prog, first_prog, "program not swapped");
    assert_eq!(
        obs.count(&Match::ntp(OUTSIDER_V4.into(), mode::CLIENT)),
        0,
        "outsider passed"
    );
    assert_eq!(
        obs.count(&Match::ntp(SERVER_V4.into(), mode::SERVER)),
        sent,
        "server replies lost"
    );
    assert!(sent > 50, "flood too small to mean anything: {sent}");

    agent.stop().unwrap();
    assert_eq!(
        xdp_prog_id(&lab),
        Some(second_prog),
        "SIGTERM must leave the filter"
    );

    let out = run_agent_once(
        lab.router(),
        &["detach", "--pin-dir", pins.as_str()],
        CMD_TIMEOUT,
    )
    .unwrap();
    assert!(out.status.success(), "{}", out.log);
    assert!(out.log.contains("link-wan0"), "{}", out.log);
    assert_eq!(xdp_prog_id(&lab), None, "detach left XDP attached");
    assert!(!pins.path().exists(), "pins left: {:?}", pins.entries());
    // With the filter gone, the outsider reaches the stack again.
    let mark = obs.mark();
    tx.send(&outsider_request(&lab)).unwrap();
    lab.sync(&tx, &obs).unwrap();
    assert_eq!(
        obs.count_since(mark, |f| Match::ntp(OUTSIDER_V4.into(), mode::CLIENT)
            .matches(f)),
        1
    );
}

/// The XDP program id on the router's wan0, from iproute2.
fn xdp_prog_id(lab: &RouterLab) -> Option<u64> {
    let out = lab
        .router()
        .ip(&["-j", "-d", "link", "show", "dev", WAN_IF])
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0]["xdp"]["prog"]["id"].as_u64()
}

/// A restart with another configuration reconciles the pinned maps: the
/// removed server loses its pass, the added one gains it, server mode lets
/// clients in.
fn restart_reconciles_to_new_configuration() {
    let lab = RouterLab::new("recon").unwrap();
    let env = AgentEnv::new("recon").unwrap();
    let r = lab.router();
    let fixed = ["--iface", WAN_IF, "--source-port", "123"];
    let mut agent = env
        .start(r, &[&fixed[..], &["--server", "192.0.2.10"]].concat())
        .unwrap();
    agent.stop().unwrap();
    let _agent = env
        .start(
            r,
            &[&fixed[..], &["--server", "192.0.2.20", "--mode", "server"]].concat(),
        )
        .unwrap();
    let status = status_json(&lab, &env);
    assert_eq!(
        status["servers"],
        serde_json::json!(["192.0.2.20"]),
        "{status}"
    );
    assert_eq!(status["policy"]["other"], serde_json::json!([3]));

    let obs = lab.observe_wan().unwrap();
    let tx = lab.raw_sender().unwrap();
    let send = |src, m| {
        tx.send(
            &lab.ntp_frame(sock(src, 123), sock(ROUTER_V4, 123), NtpPacket::new(m))
                .frame(),
        )
        .unwrap()
    };
    send(SERVER_V4, mode::SERVER);
    send(PEER_V4, mode::SERVER);
    send(OUTSIDER_V4, mode::CLIENT);
    lab.sync(&tx, &obs).unwrap();
    assert_eq!(
        obs.count(&Match::ntp(SERVER_V4.into(), mode::SERVER)),
        0,
        "old server kept"
    );
    assert_eq!(
        obs.count(&Match::ntp(PEER_V4.into(), mode::SERVER)),
        1,
        "new server missing"
    );
    assert_eq!(
        obs.count(&Match::ntp(OUTSIDER_V4.into(), mode::CLIENT)),
        1,
        "server mode"
    );
}

/// An address added to the box while the agent runs is protected as soon
/// as the netlink event is processed.
fn follows_local_address_changes() {
    let lab = RouterLab::new("addrs").unwrap();
    let env = AgentEnv::new("addrs").unwrap();
    let _agent = start_agent(&lab, &env, "auto", &[]);
    let before = status_json(&lab, &env)["local_addresses"].as_u64().unwrap();
    lab.router()
        .ip(&["addr", "add", "192.0.2.2/24", "dev", WAN_IF])
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let now = status_json(&lab, &env)["local_addresses"].as_u64().unwrap();
        if now > before {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "new address never reached the map"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let obs = lab.observe_wan().unwrap();
    let tx = lab.raw_sender().unwrap();
    let router2: IpAddr = "192.0.2.2".parse().unwrap();
    tx.send(
        &lab.ntp_frame(
            sock(OUTSIDER_V4, 50_000),
            SocketAddr::new(router2, 123),
            NtpPacket::new(mode::CLIENT),
        )
        .frame(),
    )
    .unwrap();
    lab.sync(&tx, &obs).unwrap();
    assert_eq!(obs.count(&Match::ntp(OUTSIDER_V4.into(), mode::CLIENT)), 0);

    lab.router()
        .ip(&["addr", "del", "192.0.2.2/24", "dev", WAN_IF])
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while status_json(&lab, &env)["local_addresses"].as_u64().unwrap() != before {
        assert!(
            std::time::Instant::now() < deadline,
            "removed address stayed in the map"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An agent with a new map layout takes over the links the previous layout
/// pinned (swapping the program in place, re-pinning under its own version)
/// and removes the old pins, with traffic flowing: valid replies keep
/// passing and outsiders stay out throughout, so an upgrade never leaves
/// the interface open. An interface dropped from the configuration is
/// detached.
fn upgrade_takes_over_older_layout_and_drops_removed_interfaces() {
    let lab = RouterLab::with_lan("upgrade").unwrap();
    let env = AgentEnv::new("upgrade").unwrap();
    let r = lab.router();
    let mut agent = start_agent(&lab, &env, "auto", &["--iface", LAN_IF]);
    agent.stop().unwrap();
    let before = xdp_prog_id(&lab).expect("attached");
    // Make the pins look like the previous layout's (v3 -> v4 today).
    let current = format!("v{}", ntp_filter_common::LAYOUT_VERSION);
    let old = env
        .pins
        .path()
        .join(format!("v{}", ntp_filter_common::LAYOUT_VERSION - 1));
    std::fs::rename(env.pins.path().join(&current), &old).unwrap();

    let obs = lab.observe_wan().unwrap();
    let flood = Flood::start(&lab);
    std::thread::sleep(Duration::from_millis(100));
    let agent = start_agent(&lab, &env, "auto", &[]);
    assert!(
        agent.log().contains("took over the link of an older agent"),
        "{}",
        agent.log()
    );
    std::thread::sleep(Duration::from_millis(100));
    let sent = flood.stop();
    let tx = lab.raw_sender().unwrap();
    lab.sync(&tx, &obs).unwrap();
    assert_eq!(
        obs.count(&Match::ntp(OUTSIDER_V4.into(), mode::CLIENT)),
        0,
        "outsider passed during the takeover"
    );
    assert_eq!(
        obs.count(&Match::ntp(SERVER_V4.into(), mode::SERVER)),
        sent,
        "server replies lost during the takeover"
    );
    assert!(sent > 50, "flood too small to mean anything: {sent}");
    let now = xdp_prog_id(&lab).expect("still attached");
    assert_ne!(now, before, "program not swapped");
    assert!(!old.exists(), "old pins left behind");
    assert!(env.pins.path().join(&current).join("link-wan0").exists());
    assert!(
        !r.ip(&["-d", "link", "show", "dev", LAN_IF])
            .unwrap()
            .contains("prog/xdp"),
        "lan0 is no longer configured and must be detached"
    );
}

/// `status --json`'s counters of one interface.
fn iface_counter(status: &Value, iface: &str, kind: &str, reason: &str) -> u64 {
    status["counters_by_interface"][iface][kind][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no {kind}.{reason} for {iface}: {status}"))
}

fn iface_decision(status: &Value, iface: &str, class: &str, mode: u8, verdict: &str) -> u64 {
    status["counters_by_interface"][iface]["by_class_mode"][class][mode.to_string()][verdict]
        .as_u64()
        .unwrap_or(0)
}

/// `interfaces[].counter_slot` by name.
fn counter_slots(status: &Value) -> Vec<(String, Option<u64>)> {
    status["interfaces"]
        .as_array()
        .expect("interfaces")
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_string(),
                i["counter_slot"].as_u64(),
            )
        })
        .collect()
}

fn counted_interfaces(status: &Value) -> Vec<String> {
    status["counters_by_interface"]
        .as_object()
        .expect("counters_by_interface")
        .keys()
        .cloned()
        .collect()
}

/// Two filtered interfaces count their own packets: outsider requests on
/// wan0 and from the lan host on lan0 show up under each interface in
/// `status`, and the totals are their sum. An in-place restart keeps each
/// interface's slot and counters; an interface dropped from the
/// configuration loses its slot, and comes back with zeroed counters.
fn counters_per_interface_survive_restart() {
    let lab = RouterLab::with_lan("ifcnt").unwrap();
    let env = AgentEnv::new("ifcnt").unwrap();
    let both = ["--iface", LAN_IF];
    let mut agent = start_agent(&lab, &env, "auto", &both);

    let status = status_json(&lab, &env);
    let slots = counter_slots(&status);
    let slot_of = |slots: &[(String, Option<u64>)], name: &str| {
        slots
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, s)| *s)
            .unwrap_or_else(|| panic!("{name} has no counter slot: {slots:?}"))
    };
    let (wan_slot, lan_slot) = (slot_of(&slots, WAN_IF), slot_of(&slots, LAN_IF));
    assert_ne!(wan_slot, lan_slot, "{slots:?}");

    let wan_tx = lab.raw_sender().unwrap();
    let wan_obs = lab.observe_wan().unwrap();
    let lan_tx = lab.lan_raw_sender().unwrap();
    let lan_obs = lab.observe_router_lan().unwrap();
    let outsider = outsider_request(&lab);
    let reply = server_reply(&lab);
    let lan_request = |m| {
        lab.lan_frame(
            sock(LAN_HOST_V4, 50_000),
            sock(LAN_GW_V4, 123),
            NtpPacket::new(m).to_bytes(),
        )
        .frame()
    };
    let send_wan = |outsiders: usize, replies: usize| {
        for _ in 0..outsiders {
            wan_tx.send(&outsider).unwrap();
        }
        for _ in 0..replies {
            wan_tx.send(&reply).unwrap();
        }
        lab.sync(&wan_tx, &wan_obs).unwrap();
    };
    send_wan(3, 2);
    for _ in 0..5 {
        lan_tx.send(&lan_request(mode::CLIENT)).unwrap();
    }
    lan_tx.send(&lan_request(mode::PRIVATE)).unwrap();
    lab.sync(&lan_tx, &lan_obs).unwrap();
    assert_eq!(
        lan_obs.count(&Match::ntp(LAN_HOST_V4.into(), mode::CLIENT)),
        0,
        "lan0 is not filtering"
    );

    let status = status_json(&lab, &env);
    assert_eq!(
        counted_interfaces(&status),
        [LAN_IF, WAN_IF],
        "every interface has a slot, so nothing counts as other: {status}"
    );
    assert_eq!(iface_counter(&status, WAN_IF, "drops", "unknown_source"), 3);
    assert_eq!(iface_decision(&status, WAN_IF, "other", 3, "dropped"), 3);
    assert_eq!(iface_decision(&status, WAN_IF, "server", 4, "passed"), 2);
    assert_eq!(iface_counter(&status, WAN_IF, "passes", "allowed"), 2);
    assert_eq!(iface_counter(&status, LAN_IF, "drops", "unknown_source"), 6);
    assert_eq!(iface_decision(&status, LAN_IF, "other", 3, "dropped"), 5);
    assert_eq!(iface_decision(&status, LAN_IF, "other", 7, "dropped"), 1);
    assert_eq!(iface_counter(&status, LAN_IF, "passes", "allowed"), 0);
    assert_eq!(counter(&status, "drops", "unknown_source"), 9, "{status}");
    // Passes keep moving (neighbour discovery, the agent's own traffic),
    // so only the drops are summed exactly.
    let dropped = |s: &Value, i: &str| s["counters_by_interface"][i]["total_dropped"].as_u64();
    assert_eq!(
        (dropped(&status, WAN_IF), dropped(&status, LAN_IF)),
        (Some(3), Some(6))
    );
    assert_eq!(status["counters"]["total_dropped"], 9, "{status}");
    let text = env.status_text(lab.router()).unwrap();
    for line in [
        "wan0: dropped 3 (unknown_source 3), passed".to_string(),
        "lan0: dropped 6 (unknown_source 6), passed".to_string(),
        format!("counter slot {wan_slot})"),
        format!("counter slot {lan_slot})"),
    ] {
        assert!(text.contains(&line), "no {line:?} in:\n{text}");
    }

    // In-place restart: same slots, counters carry on.
    agent.stop().unwrap();
    let mut agent = start_agent(&lab, &env, "auto", &both);
    assert!(agent.log().contains("Reused"), "{}", agent.log());
    let status = status_json(&lab, &env);
    assert_eq!(counter_slots(&status), slots, "{status}");
    assert_eq!(iface_counter(&status, WAN_IF, "drops", "unknown_source"), 3);
    assert_eq!(iface_counter(&status, LAN_IF, "drops", "unknown_source"), 6);
    send_wan(1, 0);
    let status = status_json(&lab, &env);
    assert_eq!(iface_counter(&status, WAN_IF, "drops", "unknown_source"), 4);
    assert_eq!(iface_counter(&status, LAN_IF, "drops", "unknown_source"), 6);

    // lan0 leaves the configuration: its slot and counters go.
    agent.stop().unwrap();
    let mut agent = start_agent(&lab, &env, "auto", &[]);
    let status = status_json(&lab, &env);
    assert_eq!(
        counter_slots(&status),
        [(WAN_IF.to_string(), Some(wan_slot))]
    );
    assert_eq!(counted_interfaces(&status), [WAN_IF], "{status}");
    assert_eq!(iface_counter(&status, WAN_IF, "drops", "unknown_source"), 4);

    // Back again: a slot with counters from zero.
    agent.stop().unwrap();
    let _agent = start_agent(&lab, &env, "auto", &both);
    let status = status_json(&lab, &env);
    slot_of(&counter_slots(&status), LAN_IF);
    assert_eq!(iface_counter(&status, LAN_IF, "drops", "unknown_source"), 0);
    assert_eq!(dropped(&status, LAN_IF), Some(0), "{status}");
    assert_eq!(dropped(&status, WAN_IF), Some(4), "{status}");

    // `detach --iface` frees the slot too.
    let lan_slot = slot_of(&counter_slots(&status), LAN_IF);
    let out = run_agent_once(
        lab.router(),
        &["detach", "--iface", LAN_IF, "--pin-dir", env.pin_dir()],
        CMD_TIMEOUT,
    )
    .unwrap();
    assert!(out.status.success(), "{}", out.log);
    assert!(
        out.log
            .contains(&format!("freed counter slot {lan_slot} of {LAN_IF}")),
        "{}",
        out.log
    );
    // Under the running agent, which says so (`status` fails, #14 item 5).
    let (ok, full) = env.status_any(lab.router()).unwrap();
    assert!(!ok, "{full:#}");
    assert_eq!(full["interfaces"][1]["name"], LAN_IF, "{full:#}");
    assert_eq!(full["interfaces"][1]["state"], "detached", "{full:#}");
    let status = &full["filter"];
    assert_eq!(counted_interfaces(status), [WAN_IF], "{status}");
}

/// RFC 4291: an IPv6 packet whose source embeds an IPv4 address is dropped
/// at the NIC, counted as `ipv4_mapped_source`: `::ffff:192.0.2.20` is not
/// the IPv4 peer 192.0.2.20 (client mode), and in server mode a request
/// from `::ffff:192.0.2.99` is never answered (it would be answered over
/// IPv4: a cross-family reflection).
fn ipv6_sources_embedding_ipv4_are_dropped_at_the_nic() {
    let lab = RouterLab::new("mapped").unwrap();
    let env = AgentEnv::new("mapped").unwrap();
    let _agent = start_agent(&lab, &env, "auto", &[]);
    let obs = lab.observe_wan().unwrap();
    let tx = lab.raw_sender().unwrap();
    let router = SocketAddr::new(ROUTER_V6.into(), 123);
    let mapped_peer: IpAddr = PEER_V4.to_ipv6_mapped().into();
    let mapped_outsider: IpAddr = OUTSIDER_V4.to_ipv6_mapped().into();
    for (round, (mode_flag, src, sport, ntp_mode)) in [
        ("client", mapped_peer, 123, mode::SYMMETRIC_ACTIVE),
        ("server", mapped_outsider, 50_000, mode::CLIENT),
    ]
    .into_iter()
    .enumerate()
    {
        let done = env.control(lab.router(), &["mode", mode_flag]).unwrap();
        assert!(done.status.success(), "{}", done.log);
        let frame = lab.ntp_frame(
            SocketAddr::new(src, sport),
            router,
            NtpPacket::new(ntp_mode),
        );
        tx.send(&frame.frame()).unwrap();
        lab.sync(&tx, &obs).unwrap();
        assert_eq!(
            obs.count(&Match::ntp(src, ntp_mode)),
            0,
            "{mode_flag} mode: {src} mode {ntp_mode} passed the NIC"
        );
        let status = status_json(&lab, &env);
        assert_eq!(
            counter(&status, "drops", "ipv4_mapped_source"),
            round as u64 + 1,
            "{status}"
        );
        // The genuine IPv4 peer is still the peer.
        let v4 = lab.ntp_frame(
            sock(PEER_V4, 123),
            sock(ROUTER_V4, 123),
            NtpPacket::new(mode::SYMMETRIC_ACTIVE),
        );
        tx.send(&v4.frame()).unwrap();
        lab.sync(&tx, &obs).unwrap();
        assert_eq!(
            obs.count(&Match::ntp(PEER_V4.into(), mode::SYMMETRIC_ACTIVE)),
            1
        );
        obs.clear();
    }
}

/// More addresses than the local-address map holds, then some removed and
/// a new one added: the map makes room by dropping the stale entries first,
/// so the new address is protected (a mode-7 probe to it is dropped, not
/// passed as transit); `status` says how many addresses did not fit while
/// there were too many.
fn local_address_map_makes_room_after_overflow() {
    use ntp_filter_common::MAX_LOCAL_ADDRS;
    let lab = RouterLab::new("lcap").unwrap();
    let env = AgentEnv::new("lcap").unwrap();
    let _agent = start_agent(&lab, &env, "auto", &[]);
    let r = lab.router();
    let base = status_json(&lab, &env)["local_addresses"].as_u64().unwrap() as usize;
    let extra = MAX_LOCAL_ADDRS as usize + 40 - base;
    let dir = TempDir::new("lcap").unwrap();
    let batch = |verb: &str, range: std::ops::Range<usize>| {
        let path = dir.path().join(format!("{verb}.batch"));
        let opt = if verb == "add" { " nodad" } else { "" };
        let lines: String = range
            .map(|i| format!("address {verb} 2001:db8:ff::{:x}/128 dev lo{opt}\n", i + 1))
            .collect();
        std::fs::write(&path, lines).unwrap();
        r.ip(&["-batch", &path.display().to_string()]).unwrap();
    };
    let wait_for = |what: &str, ok: &dyn Fn(&Value) -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let s = status_json(&lab, &env);
            if ok(&s) {
                return s;
            }
            assert!(std::time::Instant::now() < deadline, "{what}: {s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    batch("add", 0..extra);
    let full = wait_for("the map never filled", &|s| {
        s["local_addresses"] == MAX_LOCAL_ADDRS
    });

    batch("del", 0..200);
    lab.router()
        .ip(&["addr", "add", "192.0.2.77/32", "dev", WAN_IF])
        .unwrap();
    let want = (MAX_LOCAL_ADDRS as usize + 40 - 200 + 1) as u64;
    wait_for("the map did not make room", &|s| {
        s["local_addresses"] == want
    });

    let obs = lab.observe_wan().unwrap();
    let tx = lab.raw_sender().unwrap();
    let before = counter(&status_json(&lab, &env), "drops", "unknown_source");
    tx.send(
        &lab.ntp_frame(
            sock(OUTSIDER_V4, 50_000),
            SocketAddr::new("192.0.2.77".parse().unwrap(), 123),
            NtpPacket::new(mode::PRIVATE),
        )
        .frame(),
    )
    .unwrap();
    lab.sync(&tx, &obs).unwrap();
    assert_eq!(
        obs.count(&Match::ntp(OUTSIDER_V4.into(), mode::PRIVATE)),
        0,
        "the mode-7 probe to the new address passed as transit"
    );
    let status = status_json(&lab, &env);
    assert_eq!(counter(&status, "drops", "unknown_source"), before + 1);
    // While full, status said how many did not fit; now none.
    assert_eq!(full["local_addresses_unprotected"], 40, "{full}");
    assert_eq!(status["local_addresses_unprotected"], 0, "{status}");
}

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![
        trial!(policy_table_native_xdp, Netns, Bpffs, Agent),
        trial!(policy_table_skb_xdp, Netns, Bpffs, Agent),
        trial!(real_sockets_receive_only_allowed_ntp, Netns, Bpffs, Agent),
        trial!(transit_ntp_is_forwarded_untouched, Netns, Bpffs, Agent),
        trial!(
            survives_kill_restarts_in_place_and_detaches,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(restart_reconciles_to_new_configuration, Netns, Bpffs, Agent),
        trial!(follows_local_address_changes, Netns, Bpffs, Agent),
        trial!(
            upgrade_takes_over_older_layout_and_drops_removed_interfaces,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(counters_per_interface_survive_restart, Netns, Bpffs, Agent),
        trial!(
            ipv6_sources_embedding_ipv4_are_dropped_at_the_nic,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(
            local_address_map_makes_room_after_overflow,
            Netns,
            Bpffs,
            Agent
        ),
    ])
}
