//! NTS (RFC 8915) against a real `chronyd -x` NTS server in a namespace,
//! with a test CA made at test time. chronyd never touches the clock.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::Arc,
    time::{Duration, Instant},
};

use ntp_agent::nts::{ke, trust};
use ntp_filter_tests::{addrs::*, *};
use ntp_proto::{Mode, NtpPacket, NtpTimestamp};
use serde_json::Value;

const KE_PORT: u16 = 4460;
/// From agent start to "synchronized" (a KE, then the iburst).
const SYNC_TIMEOUT: Duration = Duration::from_secs(45);
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

fn nts_chronyd(lab: &RouterLab, ca: &TestCa, ntp_port: u16) -> Chronyd {
    nts_chronyd_naming(lab, ca, ntp_port, None)
}

/// chronyd as NTS-KE and NTP server on SERVER_V4; `ntp_server`: the NTP
/// server its KE names instead of itself.
fn nts_chronyd_naming(
    lab: &RouterLab,
    ca: &TestCa,
    ntp_port: u16,
    ntp_server: Option<IpAddr>,
) -> Chronyd {
    let cert = ca
        .server_cert(&[&SERVER_V4.to_string(), "nts.test"], false)
        .unwrap();
    let cfg = ChronyConfig::server(SERVER_V4.into())
        .ntp_port(ntp_port)
        .command_socket()
        .nts(NtsServer {
            cert,
            ke_port: KE_PORT,
            ntp_server: ntp_server.map(|a| a.to_string()),
        });
    Chronyd::start(lab.outside(), &cfg).unwrap()
}

/// The `peers` entry whose `remote` is `remote`, if any.
fn peer<'a>(v: &'a Value, remote: &str) -> Option<&'a Value> {
    v["peers"]
        .as_array()?
        .iter()
        .find(|p| p["remote"] == remote)
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// UDP the router sent towards `server`, as the outside received it.
fn udp_from_router_to(obs: &Observer, server: IpAddr) -> Vec<UdpInfo> {
    obs.frames()
        .iter()
        .filter_map(Frame::udp)
        .filter(|u| u.src == IpAddr::from(ROUTER_V4) && u.dst == server)
        .collect()
}

fn agent_args<'a>(server: &'a str, ca: &'a str) -> Vec<&'a str> {
    vec!["--iface", WAN_IF, "--server", server, "--nts-ca", ca]
}

fn stat(chrony: &Chronyd, name: &str) -> u64 {
    let stats = chrony.server_stats().unwrap();
    stats
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no {name:?} in serverstats: {stats:?}"))
}

/// One KE with chronyd from the router namespace, then one authenticated
/// exchange by hand: chrony's cookies and keys work with ours, the reply
/// verifies and refills the jar, and chronyd counts one authenticated packet.
fn ke_and_authenticated_exchange_with_chronyd() {
    let lab = RouterLab::new("ntske").unwrap();
    let ca = TestCa::new("ke").unwrap();
    // A port other than 123: chronyd negotiates it in the KE.
    let chrony = nts_chronyd(&lab, &ca, 10123);
    let tls = Arc::new(trust::client_config(&[ca.ca_file()], false).unwrap());
    let (done, verified, sent_len, reply_len) = lab
        .router()
        .in_ns(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let mut done = rt
                .block_on(ke::establish(
                    tls,
                    &SERVER_V4.to_string(),
                    KE_PORT,
                    123,
                    ke::KE_TIMEOUT,
                ))
                .unwrap();
            let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = NtpPacket::new(Mode::Client);
            req.transmit_timestamp = NtpTimestamp::from_bits(0x1234_5678_9abc_def0);
            let mut rng = rand::rngs::OsRng;
            let wire = done.session.seal_request(&req.encode(), &mut rng).unwrap();
            sock.send_to(&wire, SocketAddr::new(done.ntp_addr, done.ntp_port))
                .unwrap();
            let mut buf = [0u8; 2048];
            let (n, _) = sock.recv_from(&mut buf).unwrap();
            let verified = done.session.open_reply(&buf[..n]);
            (done, verified, wire.len(), n)
        })
        .unwrap();
    assert_eq!(done.ntp_addr, IpAddr::from(SERVER_V4));
    assert_eq!(done.ntp_port, 10123, "chronyd negotiated its NTP port");
    assert_eq!(done.aead.id(), 15);
    let header = NtpPacket::decode(&verified.expect("chronyd's reply verifies")).unwrap();
    assert_eq!(header.mode, Mode::Server);
    assert_eq!(header.origin_timestamp.to_bits(), 0x1234_5678_9abc_def0);
    assert_eq!(done.session.cookies(), 8, "the jar was refilled to 8");
    assert_eq!(stat(&chrony, "NTS-KE connections accepted"), 1);
    assert_eq!(stat(&chrony, "Authenticated NTP packets"), 1);
    println!(
        "KE: {:?}, {} bytes sent, {} received; exchange: request {sent_len} bytes, reply {reply_len} bytes",
        done.elapsed, done.bytes_sent, done.bytes_received
    );
}

/// The agent, given `server add 192.0.2.10,nts` live, against chronyd
/// whose KE negotiates NTP port 10123: synchronized through NTS only
/// (every request sealed, chronyd counts every packet authenticated), and
/// the filter holds the negotiated port: a reply from it is in scope (a
/// stray one to a port we did not ask from is dropped at the NIC, not
/// passed as "not NTP").
fn syncs_through_nts_on_the_negotiated_port() {
    const PORT: u16 = 10123;
    let lab = RouterLab::new("ntssync").unwrap();
    let ca = TestCa::new("sync").unwrap();
    let chrony = nts_chronyd(&lab, &ca, PORT);
    let ext = Observer::start(lab.outside(), EXT_IF).unwrap();
    let env = AgentEnv::new("ntssync").unwrap();
    let ca_file = ca.ca_file().display().to_string();
    let agent = env
        .start(lab.router(), &["--iface", WAN_IF, "--nts-ca", &ca_file])
        .unwrap();
    let added = env
        .control(lab.router(), &["server", "add", "192.0.2.10,nts"])
        .unwrap();
    assert!(added.status.success(), "{}", added.log);
    let st = env
        .wait_status(
            lab.router(),
            SYNC_TIMEOUT,
            "synchronized through NTS",
            synchronized,
        )
        .unwrap();
    let p = peer(&st, "192.0.2.10").unwrap_or_else(|| panic!("no peer:\n{st:#}"));
    let nts = &p["nts"];
    assert_eq!(nts["ke_server"], "192.0.2.10:4460", "{st:#}");
    assert_eq!(nts["ntp_server"], format!("192.0.2.10:{PORT}"), "{st:#}");
    assert_eq!(nts["aead"], "AEAD_AES_SIV_CMAC_256", "{st:#}");
    assert!(n(&nts["cookies"]) >= 1, "{st:#}");
    assert!(nts["last_ke"].as_u64().is_some(), "{st:#}");
    assert_eq!(n(&nts["ke_failures"]), 0, "{st:#}");
    assert_eq!(
        st["filter"]["server_ports"],
        serde_json::json!([PORT]),
        "{st:#}"
    );
    assert_eq!(st["filter"]["servers"], serde_json::json!(["192.0.2.10"]));
    let passed = &st["filter"]["counters"]["by_class_mode"]["server"]["4"]["passed"];
    assert!(
        n(passed) >= 1,
        "replies from port {PORT} were not decided: {st:#}"
    );

    // Every NTP packet chronyd got was authenticated; every request on the
    // wire carried extension fields, to the negotiated port.
    let received = stat(&chrony, "NTP packets received");
    assert!(received >= 1);
    assert_eq!(stat(&chrony, "Authenticated NTP packets"), received);
    let sent = udp_from_router_to(&ext, SERVER_V4.into());
    assert!(!sent.is_empty());
    for u in &sent {
        assert_eq!(u.dst_port, PORT, "{u:?}");
        assert!(u.payload.len() > 48, "an unsealed request: {u:?}");
    }

    // In scope: a reply from the negotiated port to a port we did not ask
    // from is dropped at the NIC as a wrong reply port.
    let obs = lab.observe_wan().unwrap();
    let tx = lab.raw_sender().unwrap();
    let stray = NtpPacketBytes::server_reply(0x1234);
    tx.send(
        &lab.frame(sock(SERVER_V4, PORT), sock(ROUTER_V4, 40999), stray.clone())
            .frame(),
    )
    .unwrap();
    lab.sync(&tx, &obs).unwrap();
    assert_eq!(
        obs.count(&Match::udp().src(SERVER_V4.into()).dst_port(40999)),
        0
    );
    let after = env.status(lab.router()).unwrap();
    let drops = |v: &Value| n(&v["filter"]["counters"]["drops"]["wrong_reply_port"]);
    assert_eq!(drops(&after), drops(&st) + 1, "{after:#}");

    let text = env.status_text(lab.router()).unwrap();
    assert!(text.contains(" N "), "no NTS mark:\n{text}");
    assert!(
        text.contains("192.0.2.10 NTS via 192.0.2.10:4460: "),
        "{text}"
    );
    assert!(
        text.contains(&format!("server ports: {PORT} (negotiated by NTS)")),
        "{text}"
    );
    assert!(agent.log().contains("NTS-KE succeeded"), "{}", agent.log());
}

/// With a CA that did not issue chronyd's certificate: every KE fails as
/// `unknown_issuer` (status says so as the source's reason, the log names
/// the TLS error), nothing at all is sent over UDP to the server, and the
/// agent never synchronizes.
fn wrong_ca_never_synchronizes_and_sends_no_ntp() {
    let lab = RouterLab::new("ntsca").unwrap();
    let ca = TestCa::new("right").unwrap();
    let other = TestCa::new("wrong").unwrap();
    let chrony = nts_chronyd(&lab, &ca, 123);
    let ext = Observer::start(lab.outside(), EXT_IF).unwrap();
    let env = AgentEnv::new("ntsca").unwrap();
    let ca_file = other.ca_file().display().to_string();
    let agent = env
        .start(lab.router(), &agent_args("192.0.2.10,nts", &ca_file))
        .unwrap();
    // Two failed KEs: the first at start, the second after the backoff.
    let st = env
        .wait_status(lab.router(), EVENT_TIMEOUT, "two KE failures", |v| {
            peer(v, "192.0.2.10").is_some_and(|p| n(&p["nts"]["ke_failures"]) >= 2)
        })
        .unwrap();
    assert!(!synchronized(&st), "{st:#}");
    let p = peer(&st, "192.0.2.10").unwrap();
    assert_eq!(p["nts"]["last_error_kind"], "unknown_issuer", "{st:#}");
    assert!(
        p["state"]
            .as_str()
            .unwrap()
            .contains("NTS-KE with 192.0.2.10:4460 failed"),
        "{st:#}"
    );
    assert!(
        p["nts"]["last_error"]
            .as_str()
            .unwrap()
            .contains("UnknownIssuer"),
        "{st:#}"
    );
    assert_eq!(st["filter"]["servers"], serde_json::json!([]), "{st:#}");
    assert_eq!(stat(&chrony, "NTP packets received"), 0);
    // chronyd counts the TCP accept before the handshake fails: one per
    // KE attempt, and not one of them went on to NTP.
    assert!(stat(&chrony, "NTS-KE connections accepted") >= 2);
    let sent = udp_from_router_to(&ext, SERVER_V4.into());
    assert!(sent.is_empty(), "UDP sent without NTS: {sent:?}");
    let text = env.status_text(lab.router()).unwrap();
    assert!(text.contains("unsynchronized"), "{text}");
    assert!(text.contains("192.0.2.10 NTS-KE with 192.0.2.10:4460 failed: TLS: invalid peer certificate: UnknownIssuer"), "{text}");
    let log = agent.log();
    assert!(
        log.contains("NTS-KE failed") && log.contains("UnknownIssuer"),
        "{log}"
    );
}

/// An on-path attacker: chronyd's KE sends the agent to 192.0.2.99 for
/// NTP, where the attacker sees each request and answers it with a
/// well-formed plain reply (right origin, right ports), some even echoing
/// the request's unique identifier. The filter lets them through (they
/// come from the source, between the request's ports) and follows the
/// negotiated address; the agent refuses every one and never synchronizes.
fn on_path_forgeries_are_refused() {
    const FORGED: usize = 4;
    let lab = RouterLab::new("ntsfrg").unwrap();
    let ca = TestCa::new("frg").unwrap();
    let _chrony = nts_chronyd_naming(&lab, &ca, 123, Some(OUTSIDER_V4.into()));
    let forger = lab.outside_udp(sock(OUTSIDER_V4, 123)).unwrap();
    let env = AgentEnv::new("ntsfrg").unwrap();
    let ca_file = ca.ca_file().display().to_string();
    let _agent = env
        .start(lab.router(), &agent_args("192.0.2.10,nts", &ca_file))
        .unwrap();
    let mut answered = 0;
    let deadline = Instant::now() + SYNC_TIMEOUT;
    while answered < FORGED {
        assert!(Instant::now() < deadline, "only {answered} requests seen");
        let req = forger
            .wait_for(|d| d.ntp_mode() == Some(3), EVENT_TIMEOUT)
            .expect("a request to the negotiated server");
        forger.clear().unwrap();
        assert!(req.data.len() > 48, "an unsealed request: {req:?}");
        let origin = u64::from_be_bytes(req.data[40..48].try_into().unwrap());
        let mut reply = NtpPacketBytes::server_reply(origin);
        if answered % 2 == 1 {
            reply.extend_from_slice(unique_id_field(&req.data).expect("a unique identifier"));
        }
        forger.send_to(&reply, req.from).unwrap();
        answered += 1;
    }
    let st = env
        .wait_status(lab.router(), EVENT_TIMEOUT, "every forgery refused", |v| {
            peer(v, "192.0.2.99").is_some_and(|p| {
                let r = &p["nts"]["rejects"];
                n(&r["nts_unique_id"]) + n(&r["nts_auth"]) >= FORGED as u64
            })
        })
        .unwrap();
    let p = peer(&st, "192.0.2.99").unwrap();
    let r = &p["nts"]["rejects"];
    assert!(
        n(&r["nts_unique_id"]) >= 1 && n(&r["nts_auth"]) >= 1,
        "{st:#}"
    );
    assert_eq!(p["reach"], 0, "{st:#}");
    assert!(!synchronized(&st), "{st:#}");
    assert_eq!(p["nts"]["ntp_server"], "192.0.2.99:123", "{st:#}");
    assert_eq!(
        st["filter"]["servers"],
        serde_json::json!(["192.0.2.99"]),
        "{st:#}"
    );
    let passed = &st["filter"]["counters"]["by_class_mode"]["server"]["4"]["passed"];
    assert!(
        n(passed) >= FORGED as u64,
        "the forgeries did not reach the agent: {st:#}"
    );
}

/// `--pool pool.test,maxsources=2` against dnsmasq in the outside
/// namespace, whose name has three addresses: 192.0.2.10 and 192.0.2.20
/// (chronyd each) and 192.0.2.15, where nothing answers. The agent takes
/// the first two (sorted), the dead one among them; after 8 polls without
/// an answer it is replaced by 192.0.2.20, which the filter holds before
/// the dead one leaves it; `pool del` then removes the pool and its
/// members from the core and the filter.
fn pool_fills_and_replaces_a_dead_member() {
    const DEAD: [u8; 4] = [192, 0, 2, 15];
    let lab = RouterLab::new("pool").unwrap();
    let _a = Chronyd::start(lab.outside(), &ChronyConfig::server(SERVER_V4.into())).unwrap();
    let _b = Chronyd::start(lab.outside(), &ChronyConfig::server(PEER_V4.into())).unwrap();
    let dead = IpAddr::from(DEAD);
    let dns = Dnsmasq::start(
        lab.outside(),
        OUTSIDER_V4.into(),
        &[
            ("pool.test", SERVER_V4.into()),
            ("pool.test", dead),
            ("pool.test", PEER_V4.into()),
        ],
    )
    .unwrap();
    let env = AgentEnv::new("pool").unwrap();
    let prefix = dns.resolver_prefix();
    let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
    let mut agent = env
        .spawn_with(
            lab.router(),
            &prefix,
            &[],
            &[
                "--iface",
                WAN_IF,
                "--pool",
                "pool.test,maxsources=2,minpoll=3,maxpoll=3",
            ],
        )
        .unwrap();
    agent.wait_for_line("running;", EVENT_TIMEOUT).unwrap();
    let servers = |v: &Value| v["filter"]["servers"].clone();
    let st = env
        .wait_status(lab.router(), EVENT_TIMEOUT, "the pool full", |v| {
            v["pools"][0]["members"].as_array().map(Vec::len) == Some(2)
        })
        .unwrap();
    assert_eq!(st["pools"][0]["name"], "pool.test", "{st:#}");
    assert_eq!(st["pools"][0]["max_sources"], 2, "{st:#}");
    assert_eq!(
        servers(&st),
        serde_json::json!(["192.0.2.10", "192.0.2.15"]),
        "{st:#}"
    );
    // 8 polls of 8 s, then one resolution.
    let st = env
        .wait_status(
            lab.router(),
            Duration::from_secs(120),
            "the dead member replaced",
            |v| v["pools"][0]["replacements"] == 1 && synchronized(v),
        )
        .unwrap();
    assert_eq!(
        servers(&st),
        serde_json::json!(["192.0.2.10", "192.0.2.20"]),
        "{st:#}"
    );
    assert!(peer(&st, "192.0.2.15").is_none(), "{st:#}");
    assert!(peer(&st, "192.0.2.20").is_some(), "{st:#}");
    let log = agent.log();
    let added = log
        .find("pool member added pool=pool.test addr=192.0.2.20")
        .unwrap_or_else(|| panic!("{log}"));
    let replaced = log.find("pool member replaced").unwrap();
    assert!(
        added < replaced,
        "not added before the old one left:\n{log}"
    );
    let text = env.status_text(lab.router()).unwrap();
    assert!(
        text.contains("pool pool.test: 2 of 2 members, 1 replaced"),
        "{text}"
    );

    let del = env
        .control(lab.router(), &["pool", "del", "pool.test"])
        .unwrap();
    assert!(del.status.success(), "{}", del.log);
    let st = env.status(lab.router()).unwrap();
    assert_eq!(servers(&st), serde_json::json!([]), "{st:#}");
    assert_eq!(st["pools"], serde_json::json!([]), "{st:#}");
}

/// The Unique Identifier extension field (type 0x0104) of a request.
fn unique_id_field(packet: &[u8]) -> Option<&[u8]> {
    let mut at = 48;
    while at + 4 <= packet.len() {
        let kind = u16::from_be_bytes([packet[at], packet[at + 1]]);
        let len = usize::from(u16::from_be_bytes([packet[at + 2], packet[at + 3]]));
        if len < 4 || at + len > packet.len() {
            return None;
        }
        if kind == 0x0104 {
            return Some(&packet[at..at + len]);
        }
        at += len;
    }
    None
}

/// A plain, well-formed server reply (stratum 2, times of now) to the
/// request whose transmit timestamp is `origin`.
struct NtpPacketBytes;

impl NtpPacketBytes {
    fn server_reply(origin: u64) -> Vec<u8> {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let now = (unix.as_secs() + 2_208_988_800) << 32;
        let mut p = ntp_filter_tests::NtpPacket::new(mode::SERVER).stratum(2);
        p.reference_id = [127, 127, 1, 1];
        p.reference_ts = now;
        p.origin_ts = origin;
        p.receive_ts = now;
        p.transmit_ts = now;
        p.to_bytes()
    }
}

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![
        trial!(ke_and_authenticated_exchange_with_chronyd, Netns, Chronyd),
        trial!(
            syncs_through_nts_on_the_negotiated_port,
            Netns,
            Bpffs,
            Agent,
            Chronyd
        ),
        trial!(
            wrong_ca_never_synchronizes_and_sends_no_ntp,
            Netns,
            Bpffs,
            Agent,
            Chronyd
        ),
        trial!(on_path_forgeries_are_refused, Netns, Bpffs, Agent, Chronyd),
        trial!(
            pool_fills_and_replaces_a_dead_member,
            Netns,
            Bpffs,
            Agent,
            Chronyd,
            Dnsmasq
        ),
    ])
}
