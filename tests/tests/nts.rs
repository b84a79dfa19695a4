//! NTS (RFC 8915) against a real `chronyd -x` NTS server in a namespace,
//! with a test CA made at test time. chronyd never touches the clock.

use std::{
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::Arc,
    time::Duration,
};

use ntp_agent::nts::{ke, trust};
use ntp_filter_tests::{addrs::*, *};
use ntp_proto::{Mode, NtpPacket, NtpTimestamp};

const KE_PORT: u16 = 4460;

fn nts_chronyd(lab: &RouterLab, ca: &TestCa, ntp_port: u16) -> Chronyd {
    let cert = ca
        .server_cert(&[&SERVER_V4.to_string(), "nts.test"], false)
        .unwrap();
    let cfg = ChronyConfig::server(SERVER_V4.into())
        .ntp_port(ntp_port)
        .command_socket()
        .nts(NtsServer {
            cert,
            ke_port: KE_PORT,
            ntp_server: None,
        });
    Chronyd::start(lab.outside(), &cfg).unwrap()
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

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![trial!(
        ke_and_authenticated_exchange_with_chronyd,
        Netns,
        Chronyd
    )])
}
