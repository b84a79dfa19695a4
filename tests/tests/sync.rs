//! Time sync end to end: `ntp-agent run` in the router namespace syncing
//! (observe-only, `--no-clock-adjust`) to a real chronyd in the outside
//! namespace, through its own XDP filter. chronyd always runs with `-x`, so
//! nothing here can change this machine's clock.
//!
//! Every wait polls the agent's status with a deadline (no fixed sleeps);
//! the deadlines are generous because these tests run in parallel on small,
//! busy machines.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr},
    time::{Duration, Instant},
};

use ntp_filter_tests::{addrs::*, *};
use serde_json::Value;

/// From agent start to "synchronized": the iburst gives the first samples
/// within seconds; the rest is slack for a loaded machine.
const SYNC_TIMEOUT: Duration = Duration::from_secs(45);
/// For one more event (a request, a counter) once things are running.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(250);
/// For the agent's next request after sync: up to one poll interval of the
/// ramp that follows the burst (4, 8, 16, 32 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(40);

/// Polls `env.status` until `done` holds; panics with the last status
/// (and `what`) at the deadline. The agent's and chronyd's guards print
/// their logs when the test panics.
fn wait_status(
    env: &AgentEnv,
    lab: &RouterLab,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    env.wait_status(lab.router(), timeout, what, done).unwrap()
}

/// The `peers` entry of `remote`.
fn source(v: &Value, remote: IpAddr) -> &Value {
    let remote = remote.to_string();
    v["peers"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["remote"] == remote.as_str()))
        .unwrap_or_else(|| panic!("no source {remote} in status:\n{v:#}"))
}

/// Which timestamps the agent used for `src`'s packets in `direction`
/// (`rx`, `tx`): `kernel` or `user`.
fn timestamps<'a>(src: &'a Value, direction: &str) -> &'a Value {
    &src["timestamps"][direction]["in_use"]
}

fn filter_passed(v: &Value, class: &str, mode: u8) -> u64 {
    v["filter"]["counters"]["by_class_mode"][class][mode.to_string()]["passed"]
        .as_u64()
        .unwrap_or(0)
}

fn filter_drops(v: &Value, reason: &str) -> u64 {
    v["filter"]["counters"]["drops"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no drop counter {reason:?} in status:\n{v:#}"))
}

fn rejects(src: &Value, reason: &str) -> u64 {
    src["rejects"][reason]
        .as_u64()
        .unwrap_or_else(|| panic!("no reject counter {reason:?} in:\n{src:#}"))
}

/// The reference id a stratum ≥ 2 host synced to `ip` announces, as shown:
/// the IPv4 address, or (RFC 5905) the first four bytes of the MD5 of the
/// IPv6 address as a dotted quad. Computed here, independently of ntp-proto.
fn expected_refid(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let d = md5::compute(v6.octets());
            Ipv4Addr::new(d[0], d[1], d[2], d[3]).to_string()
        }
    }
}

fn router_ip(of: IpAddr) -> IpAddr {
    match of {
        IpAddr::V4(_) => ROUTER_V4.into(),
        IpAddr::V6(_) => ROUTER_V6.into(),
    }
}

/// Client requests (mode 3) from the router to `server:123` as seen on the
/// outside's ext0, in order.
fn requests_to(obs: &Observer, server: IpAddr) -> Vec<UdpInfo> {
    let m = Match::udp()
        .src(router_ip(server))
        .dst(server)
        .dst_port(123)
        .ntp_mode(mode::CLIENT);
    obs.frames()
        .iter()
        .filter(|f| m.matches(f))
        .filter_map(Frame::udp)
        .collect()
}

fn wait_requests(obs: &Observer, server: IpAddr, n: usize, timeout: Duration) -> Vec<UdpInfo> {
    let deadline = Instant::now() + timeout;
    loop {
        let reqs = requests_to(obs, server);
        if reqs.len() >= n || Instant::now() >= deadline {
            return reqs;
        }
        std::thread::sleep(POLL);
    }
}

fn check_syncs_to_server(tag: &str, server: IpAddr) {
    let lab = RouterLab::new(tag).unwrap();
    let _chronyd = Chronyd::start(lab.outside(), &ChronyConfig::server(server)).unwrap();
    // On the outside's ext0: the agent's requests as they arrive at the server.
    let ext = Observer::start(lab.outside(), EXT_IF).unwrap();
    let env = AgentEnv::new(tag).unwrap();
    let server_arg = server.to_string();
    let _agent = env
        .start(lab.router(), &["--iface", WAN_IF, "--server", &server_arg])
        .unwrap();

    let st = wait_status(&env, &lab, SYNC_TIMEOUT, "synchronized", synchronized);
    let host = &st["host"];
    assert_eq!(host["stratum"], 4, "{st:#}");
    assert_eq!(host["refid"], expected_refid(server).as_str(), "{st:#}");
    assert_eq!(host["reason"], Value::Null, "{st:#}");
    let src = source(&st, server);
    assert_eq!(src["tally"], "*", "{st:#}");
    assert_eq!(src["kind"], "u", "{st:#}");
    assert_eq!(src["stratum"], 3, "{st:#}");
    assert_ne!(src["reach"].as_u64(), Some(0), "{st:#}");
    assert!(src["reach"].is_u64(), "{st:#}");
    // Replies stamped by the kernel as they came in, requests as the veth
    // driver took them: no wake-up latency in the offsets.
    assert_eq!(timestamps(src, "rx"), "kernel", "{st:#}");
    assert_eq!(timestamps(src, "tx"), "kernel", "{st:#}");
    assert_eq!(src["timestamps"]["rx"]["fallbacks"], 0, "{st:#}");

    let text = env.status_text(lab.router()).unwrap();
    assert!(text.contains("status:   synchronized"), "{text}");
    assert!(text.contains("stratum:  4"), "{text}");
    let line = format!("*{server}");
    assert!(
        text.lines().any(|l| l.starts_with(&line)),
        "no line starting with {line:?}:\n{text}"
    );
    let line = format!("      {server} timestamps: rx kernel, tx kernel\n");
    assert!(text.contains(&line), "no {line:?} in:\n{text}");

    // RFC 9109: every request from a fresh port.
    let reqs = wait_requests(&ext, server, 4, EVENT_TIMEOUT);
    assert!(
        reqs.len() >= 4,
        "only {} requests seen: {reqs:?}",
        reqs.len()
    );
    let ports: BTreeSet<u16> = reqs.iter().map(|r| r.src_port).collect();
    assert!(
        ports.len() >= 3,
        "{} requests from only {} ports: {ports:?}",
        reqs.len(),
        ports.len()
    );
    assert!(
        !ports.contains(&123),
        "a client request left from 123: {ports:?}"
    );

    // Every reply got through the NIC on its registered port.
    let st = wait_status(&env, &lab, EVENT_TIMEOUT, "4 replies passed the NIC", |v| {
        filter_passed(v, "server", mode::SERVER) >= 4
    });
    assert_eq!(filter_drops(&st, "wrong_reply_port"), 0, "{st:#}");
    // Nothing else arrived from the server's address and was dropped.
    assert_eq!(filter_drops(&st, "mode_not_allowed"), 0, "{st:#}");
    let src = source(&st, server);
    assert_eq!(
        rejects(src, "bogus_origin") + rejects(src, "unsolicited"),
        0,
        "{st:#}"
    );
}

fn syncs_to_chronyd_server_v4() {
    check_syncs_to_server("syncv4", SERVER_V4.into());
}

fn syncs_to_chronyd_server_v6() {
    check_syncs_to_server("syncv6", SERVER_V6.into());
}

fn syncs_to_chronyd_symmetric_peer() {
    let lab = RouterLab::new("syncpeer").unwrap();
    let peer = IpAddr::from(PEER_V4);
    // chrony sends in symmetric mode only on its own schedule (no reply per
    // packet): poll every 2 s instead of 64 s so samples come quickly.
    let cfg = ChronyConfig::server(peer).peer(ROUTER_V4.into(), "minpoll 1 maxpoll 1");
    let _chronyd = Chronyd::start(lab.outside(), &cfg).unwrap();
    let env = AgentEnv::new("syncpeer").unwrap();
    let _agent = env
        .start(lab.router(), &["--iface", WAN_IF, "--peer", "192.0.2.20"])
        .unwrap();

    let st = wait_status(&env, &lab, SYNC_TIMEOUT, "synchronized", synchronized);
    assert_eq!(st["host"]["stratum"], 4, "{st:#}");
    assert_eq!(st["host"]["refid"], "192.0.2.20", "{st:#}");
    let src = source(&st, peer);
    assert_eq!(src["kind"], "s", "{st:#}");
    assert_eq!(src["tally"], "*", "{st:#}");
    assert_eq!(src["stratum"], 3, "{st:#}");
    assert_ne!(src["reach"].as_u64(), Some(0), "{st:#}");
    // The NTP-port socket is kernel-stamped too.
    assert_eq!(timestamps(src, "rx"), "kernel", "{st:#}");
    assert_eq!(timestamps(src, "tx"), "kernel", "{st:#}");
    // Symmetric modes from the peer passed the NIC.
    let passed = filter_passed(&st, "peer", mode::SYMMETRIC_ACTIVE)
        + filter_passed(&st, "peer", mode::SYMMETRIC_PASSIVE);
    assert!(passed >= 1, "{st:#}");

    let text = env.status_text(lab.router()).unwrap();
    assert!(text.contains("status:   synchronized"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("*192.0.2.20")),
        "no selected peer line:\n{text}"
    );
}

/// Off-path spoofing with the reply port known (`--source-port`): a reply
/// to the right port passes the NIC but fails the origin check in the
/// agent; a reply to any other port never gets past the NIC.
fn spoofed_replies_are_rejected() {
    const PORT: u16 = 40123;
    let lab = RouterLab::new("spoof").unwrap();
    let server = IpAddr::from(SERVER_V4);
    let mut chronyd = Chronyd::start(lab.outside(), &ChronyConfig::server(server)).unwrap();
    let ext = Observer::start(lab.outside(), EXT_IF).unwrap();
    let env = AgentEnv::new("spoof").unwrap();
    let _agent = env
        .start(
            lab.router(),
            &[
                "--iface",
                WAN_IF,
                "--server",
                "192.0.2.10",
                "--source-port",
                &PORT.to_string(),
            ],
        )
        .unwrap();
    wait_status(&env, &lab, SYNC_TIMEOUT, "synchronized", synchronized);

    // Hold the server's answers so that one request of the agent is
    // outstanding: a forged reply then meets the origin check (and not
    // merely "nothing asked").
    let obs = lab.observe_wan().unwrap();
    let tx = lab.raw_sender().unwrap();
    chronyd.pause();
    let mut seen = requests_to(&ext, server).len();
    let nonce = loop {
        let reqs = wait_requests(&ext, server, seen + 1, REQUEST_TIMEOUT);
        assert!(
            reqs.len() > seen,
            "no request from the agent within {REQUEST_TIMEOUT:?} after {seen}"
        );
        let req = reqs.last().unwrap();
        assert_eq!(req.src_port, PORT, "{req:?}");
        // The transmit timestamp of a client request is its nonce.
        let nonce = u64::from_be_bytes(req.payload[40..48].try_into().unwrap());
        // Unless chronyd answered it just before it stopped, it is outstanding.
        lab.sync(&tx, &obs).unwrap();
        let answered = obs.count_matching(|f| {
            f.udp().is_some_and(|u| {
                u.src == server
                    && u.ntp_mode() == Some(mode::SERVER)
                    && u.payload.get(24..32) == Some(&nonce.to_be_bytes()[..])
            })
        });
        if answered == 0 {
            break nonce;
        }
        seen = reqs.len();
    };

    let before = env.status(lab.router()).unwrap();
    let src0 = source(&before, server).clone();
    assert_eq!(src0["tally"], "*", "{before:#}");

    let forged = |origin: u64, transmit: u64| {
        let mut p = NtpPacket::new(mode::SERVER).stratum(3);
        p.reference_id = [127, 127, 1, 1];
        p.reference_ts = transmit;
        p.receive_ts = transmit;
        p.origin_ts = origin;
        p.transmit_ts = transmit;
        p
    };
    let now_ntp = |extra: u64| {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        ((unix.as_secs() + 2_208_988_800) << 32) + extra
    };

    // (a) Right port, wrong origin: passes the NIC, rejected by the agent.
    let a = forged(nonce ^ 0x5a5a_5a5a_0000_0001, now_ntp(0x1111));
    let a_frame = lab.ntp_frame(sock(server, 123), sock(ROUTER_V4, PORT), a.clone());
    tx.send(&a_frame.frame()).unwrap();
    lab.sync(&tx, &obs).unwrap();
    assert_eq!(
        obs.count(
            &Match::udp()
                .src(server)
                .dst_port(PORT)
                .payload(&a.to_bytes())
        ),
        1,
        "the forged reply to the registered port did not pass the NIC"
    );
    let after_a = wait_status(&env, &lab, EVENT_TIMEOUT, "bogus origin counted", |v| {
        rejects(source(v, server), "bogus_origin") > rejects(&src0, "bogus_origin")
    });
    assert_eq!(
        filter_passed(&after_a, "server", mode::SERVER),
        filter_passed(&before, "server", mode::SERVER) + 1,
        "before: {before:#}\nafter: {after_a:#}"
    );
    let src_a = source(&after_a, server);
    assert_eq!(src_a["tally"], "*", "{after_a:#}");
    assert!(synchronized(&after_a), "{after_a:#}");

    // (b) Wrong port: dropped at the NIC.
    let b = forged(nonce, now_ntp(0x2222));
    let b_frame = lab.ntp_frame(sock(server, 123), sock(ROUTER_V4, PORT + 1), b.clone());
    tx.send(&b_frame.frame()).unwrap();
    lab.sync(&tx, &obs).unwrap();
    assert_eq!(
        obs.count(&Match::udp().src(server).payload(&b.to_bytes())),
        0,
        "the forged reply to an unregistered port passed the NIC"
    );
    let after_b = env.status(lab.router()).unwrap();
    assert_eq!(
        filter_drops(&after_b, "wrong_reply_port"),
        filter_drops(&after_a, "wrong_reply_port") + 1,
        "before: {after_a:#}\nafter: {after_b:#}"
    );

    // The real answer to the held request still counts.
    chronyd.resume();
    chronyd.check_running().unwrap();
    let st = wait_status(
        &env,
        &lab,
        EVENT_TIMEOUT,
        "server reachable and selected after the forgeries",
        |v| {
            let s = source(v, server);
            synchronized(v) && s["tally"] == "*" && s["reach"].as_u64().unwrap_or(0) & 1 == 1
        },
    );
    let src = source(&st, server);
    assert!(
        rejects(src, "bogus_origin") > rejects(&src0, "bogus_origin"),
        "{st:#}"
    );
    assert_eq!(st["host"]["stratum"], 4, "{st:#}");
}

fn unsynchronized_says_why() {
    let lab = RouterLab::new("unsync").unwrap();
    let outsider = IpAddr::from(OUTSIDER_V4);
    let ext = Observer::start(lab.outside(), EXT_IF).unwrap();
    let env = AgentEnv::new("unsync").unwrap();
    let _agent = env
        .start(lab.router(), &["--iface", WAN_IF, "--server", "192.0.2.99"])
        .unwrap();

    let first = env.status(lab.router()).unwrap();
    assert!(!synchronized(&first), "{first:#}");
    assert_eq!(
        first["host"]["reason"], "waiting for first samples",
        "{first:#}"
    );

    // After the burst goes unanswered the reason changes.
    let st = wait_status(&env, &lab, SYNC_TIMEOUT, "no reachable sources", |v| {
        v["host"]["reason"] == "no reachable sources"
    });
    assert!(!synchronized(&st), "{st:#}");
    assert_eq!(st["host"]["stratum"], 16, "{st:#}");
    let src = source(&st, outsider);
    assert_eq!(src["reach"], 0, "{st:#}");
    assert_eq!(src["tally"], " ", "{st:#}");
    let reqs = wait_requests(&ext, outsider, 8, EVENT_TIMEOUT);
    assert!(reqs.len() >= 8, "{} requests before giving up", reqs.len());

    let text = env.status_text(lab.router()).unwrap();
    assert!(
        text.lines()
            .any(|l| l.trim_start() == "status:   unsynchronized (no reachable sources)"),
        "{text}"
    );
    assert!(
        !text.contains("status:   synchronized"),
        "claims sync:\n{text}"
    );
}

/// `--server NAME` stands for every address the name resolves to: each one
/// becomes a source and enters the filter's server entries. The name is
/// served by dnsmasq in the outside namespace (a name resolving to the box
/// itself, like `localhost`, is refused: loopback is no time source).
fn server_by_name_becomes_sources_and_filter_entries() {
    let lab = RouterLab::new("byname").unwrap();
    let want: BTreeSet<IpAddr> = [SERVER_V4.into(), IpAddr::from(SERVER_V6)].into();
    let records: Vec<(&str, IpAddr)> = want.iter().map(|&ip| ("time.test", ip)).collect();
    let dns = Dnsmasq::start(lab.outside(), OUTSIDER_V4.into(), &records).unwrap();
    let env = AgentEnv::new("byname").unwrap();
    let prefix = dns.resolver_prefix();
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let _agent = env
        .spawn_with(
            lab.router(),
            &prefix,
            &[],
            &["--iface", WAN_IF, "--server", "time.test"],
        )
        .unwrap();
    let servers = |v: &Value| -> BTreeSet<IpAddr> {
        v["filter"]["servers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str()?.parse().ok())
            .collect()
    };
    let st = wait_status(&env, &lab, EVENT_TIMEOUT, "time.test resolved", |v| {
        servers(v) == want
    });
    let remotes: BTreeSet<IpAddr> = st["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["remote"].as_str()?.parse().ok())
        .collect();
    assert_eq!(
        remotes, want,
        "every address of the name is a source: {st:#}"
    );
}

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![
        trial!(syncs_to_chronyd_server_v4, Netns, Bpffs, Agent, Chronyd),
        trial!(syncs_to_chronyd_server_v6, Netns, Bpffs, Agent, Chronyd),
        trial!(
            syncs_to_chronyd_symmetric_peer,
            Netns,
            Bpffs,
            Agent,
            Chronyd
        ),
        trial!(spoofed_replies_are_rejected, Netns, Bpffs, Agent, Chronyd),
        trial!(unsynchronized_says_why, Netns, Bpffs, Agent),
        trial!(
            server_by_name_becomes_sources_and_filter_entries,
            Netns,
            Bpffs,
            Agent,
            Dnsmasq
        ),
    ])
}
