//! Section 6: what NTS costs. A key establishment (TLS 1.3 + NTS-KE) with a
//! `chronyd -x` NTS server in a namespace: wall time, the client's CPU
//! time and the bytes each way. Then, against the same chronyd, plain and
//! NTS-authenticated exchanges interleaved: round trip and datagram sizes;
//! and the client's own CPU per authenticated exchange (seal + verify) next
//! to a plain header's encode + decode, in-process.

use std::{
    net::{SocketAddr, UdpSocket},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ntp_agent::nts::{ke, trust};
use ntp_filter_tests::{addrs::*, ChronyConfig, Chronyd, NtsServer, RouterLab, TestCa};
use ntp_proto::nts::{session::test_server, AeadAlgorithm, AeadKey, NtsSession};
use ntp_proto::{Mode, NtpPacket, NtpTimestamp};
use serde::Serialize;

use crate::{progress, stats::Summary};

pub struct Opts {
    pub key_exchanges: usize,
    pub exchanges: usize,
    pub cpu_iterations: usize,
}

#[derive(Debug, Serialize)]
pub struct NtsResult {
    pub ke_wall_ms: Summary,
    pub ke_cpu_ms: Summary,
    pub ke_bytes_sent: u64,
    pub ke_bytes_received: u64,
    pub plain_rtt_us: Summary,
    pub nts_rtt_us: Summary,
    pub rtt_ratio: f64,
    pub plain_request_bytes: usize,
    pub nts_request_bytes: usize,
    pub nts_reply_bytes: usize,
    /// Client CPU per exchange, ns: encode + decode of a plain header, and
    /// seal + verify of an NTS one.
    pub plain_cpu_ns: f64,
    pub nts_cpu_ns: f64,
    pub cpu_ratio: f64,
    pub authenticated_at_server: u64,
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the valid `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn request(xmt: u64) -> [u8; 48] {
    let mut p = NtpPacket::new(Mode::Client);
    p.transmit_timestamp = NtpTimestamp::from_bits(xmt);
    p.encode()
}

pub fn run(o: &Opts) -> Result<NtsResult> {
    let lab = RouterLab::new("bnts")?;
    let ca = TestCa::new("bench")?;
    let cert = ca.server_cert(&[&SERVER_V4.to_string()], false)?;
    let chrony = Chronyd::start(
        lab.outside(),
        &ChronyConfig::server(SERVER_V4.into())
            .command_socket()
            .nts(NtsServer {
                cert,
                ke_port: 4460,
                ntp_server: None,
            }),
    )?;
    let tls = Arc::new(trust::client_config(&[ca.ca_file()], false)?);
    progress("nts", &format!("{} key establishments", o.key_exchanges));
    let (kes, mut session, ntp) = lab.router().in_ns(|| -> Result<_> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let mut kes = Vec::new();
        let mut last = None;
        for _ in 0..o.key_exchanges {
            let (cpu0, t0) = (thread_cpu(), Instant::now());
            let done = rt.block_on(ke::establish(
                tls.clone(),
                &SERVER_V4.to_string(),
                4460,
                123,
                ke::KE_TIMEOUT,
            ))?;
            kes.push((
                t0.elapsed().as_secs_f64() * 1e3,
                (thread_cpu() - cpu0).as_secs_f64() * 1e3,
                done.bytes_sent,
                done.bytes_received,
            ));
            last = Some(done);
        }
        let done = last.context("no key establishment")?;
        Ok((
            kes,
            done.session,
            SocketAddr::new(done.ntp_addr, done.ntp_port),
        ))
    })??;

    progress(
        "nts",
        &format!("{} plain and NTS exchanges, interleaved", o.exchanges),
    );
    let (plain_rtt, nts_rtt, sizes) = lab.router().in_ns(|| -> Result<_> {
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.connect(ntp)?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut rng = rand::rngs::OsRng;
        let (mut plain, mut nts, mut sizes) = (Vec::new(), Vec::new(), (0, 0));
        let mut buf = [0u8; 2048];
        for i in 0..o.exchanges as u64 {
            let t0 = Instant::now();
            sock.send(&request(2 * i + 1))?;
            let n = sock.recv(&mut buf)?;
            plain.push(t0.elapsed().as_secs_f64() * 1e6);
            if n < 48 {
                bail!("short plain reply");
            }
            let wire = session
                .seal_request(&request(2 * i + 2), &mut rng)
                .context("out of cookies")?;
            let t0 = Instant::now();
            sock.send(&wire)?;
            let n = sock.recv(&mut buf)?;
            nts.push(t0.elapsed().as_secs_f64() * 1e6);
            session
                .open_reply(&buf[..n])
                .map_err(|e| anyhow::anyhow!("chronyd's reply refused: {e}"))?;
            sizes = (wire.len(), n);
        }
        Ok((plain, nts, sizes))
    })??;
    let authenticated = chrony
        .server_stats()?
        .into_iter()
        .find(|(k, _)| k == "Authenticated NTP packets")
        .map(|(_, v)| v)
        .unwrap_or(0);

    progress("nts", "client CPU per exchange, in-process");
    let (plain_cpu_ns, nts_cpu_ns) = cpu_per_exchange(o.cpu_iterations);
    let (plain_rtt_us, nts_rtt_us) = (Summary::of(&plain_rtt), Summary::of(&nts_rtt));
    let col = |f: fn(&(f64, f64, u64, u64)) -> f64| kes.iter().map(f).collect::<Vec<_>>();
    Ok(NtsResult {
        ke_wall_ms: Summary::of(&col(|k| k.0)),
        ke_cpu_ms: Summary::of(&col(|k| k.1)),
        ke_bytes_sent: kes.last().map_or(0, |k| k.2),
        ke_bytes_received: kes.last().map_or(0, |k| k.3),
        rtt_ratio: nts_rtt_us.median / plain_rtt_us.median,
        plain_rtt_us,
        nts_rtt_us,
        plain_request_bytes: 48,
        nts_request_bytes: sizes.0,
        nts_reply_bytes: sizes.1,
        plain_cpu_ns,
        nts_cpu_ns,
        cpu_ratio: nts_cpu_ns / plain_cpu_ns,
        authenticated_at_server: authenticated,
    })
}

/// Client-side CPU per exchange, ns: the server's part (done by a stand-in
/// here) is excluded from the timing.
fn cpu_per_exchange(iterations: usize) -> (f64, f64) {
    let alg = AeadAlgorithm::AesSivCmac256;
    let (c2s, s2c) = (
        AeadKey::new(alg, &[1; 32]).expect("32 bytes"),
        AeadKey::new(alg, &[2; 32]).expect("32 bytes"),
    );
    let cookies: Vec<Vec<u8>> = (0..8).map(|i| vec![i; 104]).collect();
    let mut session = NtsSession::new(alg, &[1; 32], &[2; 32], cookies).expect("keys");
    let mut rng = rand::rngs::OsRng;
    let (mut plain, mut nts) = (Duration::ZERO, Duration::ZERO);
    for i in 0..iterations as u64 {
        let t0 = Instant::now();
        let bytes = std::hint::black_box(request(i + 1));
        let _ = std::hint::black_box(NtpPacket::decode(&bytes));
        plain += t0.elapsed();

        let t0 = Instant::now();
        let wire = session
            .seal_request(&request(i + 1), &mut rng)
            .expect("the stand-in refills the jar");
        nts += t0.elapsed();
        let opened = test_server::open_request(&c2s, &wire).expect("verifies");
        let mut reply = NtpPacket::new(Mode::Server);
        reply.origin_timestamp = NtpTimestamp::from_bits(i + 1);
        let cookies = vec![vec![9u8; 104]; 1 + opened.placeholders];
        let reply =
            test_server::seal_reply(&s2c, &reply.encode(), &opened.unique_id, &cookies, &[3; 16]);
        let t0 = Instant::now();
        let _ = std::hint::black_box(session.open_reply(&reply).expect("verifies"));
        nts += t0.elapsed();
    }
    let per = |d: Duration| d.as_secs_f64() * 1e9 / iterations as f64;
    (per(plain), per(nts))
}
