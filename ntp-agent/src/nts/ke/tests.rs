//! The KE client against an in-memory NTS-KE server (rustls on the other
//! end of a pipe; no sockets): keys agree, negotiated server and port are
//! taken, and each certificate problem is named.

use super::*;
use ntp_proto::nts::{ke::Record, session::test_server, AeadKey};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::{
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer},
    RootCertStore, ServerConfig,
};
use tokio_rustls::TlsAcceptor;

struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(name: &str) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        Self {
            ca: p.self_signed(&ca_key).unwrap(),
            ca_key,
        }
    }

    fn leaf(
        &self,
        names: &[&str],
        expired: bool,
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        (
            cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    fn client(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut c = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = vec![ALPN.to_vec()];
        Arc::new(c)
    }
}

/// How the test server answers.
#[derive(Clone)]
struct Answer {
    records: Vec<(Record, bool)>,
    alpn: bool,
}

fn good_answer() -> Answer {
    Answer {
        records: vec![
            (Record::NextProtocol(vec![0]), true),
            (Record::Aead(vec![15]), true),
            (Record::Server("192.0.2.11".into()), true),
            (Record::Port(10123), true),
            (Record::NewCookie(vec![1; 96]), false),
            (Record::NewCookie(vec![2; 96]), false),
            (Record::EndOfMessage, true),
        ],
        alpn: true,
    }
}

const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10)), 4460);

/// Runs one KE between the client (trusting `client_pki`, asking for
/// `host`) and a server with `cert`; also returns the keys the server
/// exported, when it got that far.
async fn run(
    client: Arc<ClientConfig>,
    host: &str,
    cert: (CertificateDer<'static>, PrivateKeyDer<'static>),
    answer: Answer,
) -> (Result<Established, KeFailure>, Option<(Vec<u8>, Vec<u8>)>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.0], cert.1)
        .unwrap();
    if answer.alpn {
        server.alpn_protocols = vec![ALPN.to_vec()];
    }
    let (client_end, server_end) = tokio::io::duplex(4096);
    let server = tokio::spawn(async move {
        let mut tls = TlsAcceptor::from(Arc::new(server))
            .accept(server_end)
            .await
            .ok()?;
        let mut request = Vec::new();
        let mut buf = [0u8; 512];
        // Read up to the client's End of Message.
        loop {
            let n = tls.read(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            request.extend_from_slice(&buf[..n]);
            if request.ends_with(&[0x80, 0, 0, 0]) {
                break;
            }
        }
        assert_eq!(request, ntp_proto::nts::client_request());
        let mut out = Vec::new();
        for (r, c) in &answer.records {
            r.encode(*c, &mut out);
        }
        tls.write_all(&out).await.ok()?;
        let alg = AeadAlgorithm::AesSivCmac256;
        let export = |s2c| {
            tls.get_ref()
                .1
                .export_keying_material(
                    vec![0; 32],
                    EXPORTER_LABEL,
                    Some(&exporter_context(alg, s2c)),
                )
                .unwrap()
        };
        let keys = (export(false), export(true));
        let _ = tls.shutdown().await;
        Some(keys)
    });
    let result = exchange(client_end, client, host, PEER, 123).await;
    (result, server.await.unwrap())
}

#[tokio::test]
async fn keys_agree_and_negotiated_server_and_port_are_taken() {
    let pki = Pki::new("test CA");
    let (result, server_keys) = run(
        pki.client(),
        "nts.test",
        pki.leaf(&["nts.test"], false),
        good_answer(),
    )
    .await;
    let mut done = result.unwrap();
    assert_eq!(done.aead, AeadAlgorithm::AesSivCmac256);
    assert_eq!(done.ntp_addr, "192.0.2.11".parse::<IpAddr>().unwrap());
    assert_eq!(done.ntp_port, 10123);
    assert_eq!(done.session.cookies(), 2);
    assert!(done.bytes_sent > 0 && done.bytes_received > done.bytes_sent / 4);
    // The client's c2s key is the server's: a request it seals opens there.
    let (c2s, _) = server_keys.unwrap();
    let mut rng = rand::rngs::OsRng;
    let req = done
        .session
        .seal_request(&[0x23; 48], &mut rng)
        .expect("a cookie");
    let server_c2s = AeadKey::new(AeadAlgorithm::AesSivCmac256, &c2s).unwrap();
    let opened =
        test_server::open_request(&server_c2s, &req).expect("verifies with the server's key");
    assert_eq!(opened.cookie, vec![1; 96]);
}

#[tokio::test]
async fn without_server_records_ntp_goes_to_the_ke_host() {
    let pki = Pki::new("test CA");
    let mut answer = good_answer();
    answer
        .records
        .retain(|(r, _)| !matches!(r, Record::Server(_) | Record::Port(_)));
    let (result, _) = run(
        pki.client(),
        "192.0.2.10",
        pki.leaf(&["192.0.2.10"], false),
        answer,
    )
    .await;
    let done = result.unwrap();
    assert_eq!(done.ntp_addr, PEER.ip());
    assert_eq!(done.ntp_port, 123, "the caller's default NTP port");
}

#[tokio::test]
async fn certificate_problems_are_named() {
    let pki = Pki::new("test CA");
    let stranger = Pki::new("another CA");
    let cases = [
        (
            stranger.client(),
            "nts.test",
            pki.leaf(&["nts.test"], false),
            FailureKind::UnknownIssuer,
        ),
        (
            pki.client(),
            "other.test",
            pki.leaf(&["nts.test"], false),
            FailureKind::NameMismatch,
        ),
        // An address needs an IP SAN; a DNS name with the same text is not one.
        (
            pki.client(),
            "192.0.2.10",
            pki.leaf(&["nts.test"], false),
            FailureKind::NameMismatch,
        ),
        (
            pki.client(),
            "nts.test",
            pki.leaf(&["nts.test"], true),
            FailureKind::Expired,
        ),
    ];
    for (client, host, cert, kind) in cases {
        let (result, server_keys) = run(client, host, cert, good_answer()).await;
        let err = result.unwrap_err();
        assert_eq!(err.kind(), kind, "{host}: {err}");
        assert!(
            err.to_string().starts_with("TLS: invalid peer certificate"),
            "{err}"
        );
        assert!(server_keys.is_none(), "no keys without a valid certificate");
    }
}

#[tokio::test]
async fn protocol_problems_are_named() {
    let pki = Pki::new("test CA");
    let mut no_alpn = good_answer();
    no_alpn.alpn = false;
    let (result, _) = run(
        pki.client(),
        "nts.test",
        pki.leaf(&["nts.test"], false),
        no_alpn,
    )
    .await;
    let err = result.unwrap_err();
    assert!(
        matches!(err, KeFailure::NoAlpn | KeFailure::Tls(_)),
        "{err}"
    );
    assert_eq!(err.kind(), FailureKind::Tls);

    let mut refusal = good_answer();
    refusal.records = vec![(Record::Error(1), true), (Record::EndOfMessage, true)];
    let (result, _) = run(
        pki.client(),
        "nts.test",
        pki.leaf(&["nts.test"], false),
        refusal,
    )
    .await;
    let err = result.unwrap_err();
    assert_eq!(err.kind(), FailureKind::Protocol);
    assert_eq!(
        err.to_string(),
        "NTS-KE: the server sent an Error record: bad request (1)"
    );

    let mut cut = good_answer();
    cut.records.pop();
    let (result, _) = run(
        pki.client(),
        "nts.test",
        pki.leaf(&["nts.test"], false),
        cut,
    )
    .await;
    assert_eq!(
        result.unwrap_err().to_string(),
        "NTS-KE: the connection closed before End of Message"
    );
}
