//! A test NTP server for the real-time comparison: it serves the host
//! clock plus a known offset (the truth both clients are measured
//! against), and injects random network delay by sleeping before it takes
//! the receive timestamp (request path) and after it takes the transmit
//! timestamp (reply path). No netem needed; the injected asymmetry is what
//! the clients' filters have to see through.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use ntp_filter_tests::Netns;
use ntp_proto::{build_reply, LeapIndicator, NtpPacket, NtpTimestamp, RefId, ServerState};
use rand::Rng as _;
use serde::Serialize;

/// At most this many delayed replies in flight (each is a short thread).
const MAX_IN_FLIGHT: usize = 64;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Config {
    /// Served time minus host time, seconds.
    pub offset_s: f64,
    /// Each direction's delay is uniform in [0, max_delay_s].
    pub max_delay_s: f64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    replies: AtomicU64,
    busy: AtomicU64,
    in_flight: AtomicUsize,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub replies: u64,
    /// Requests dropped because too many replies were in flight.
    pub busy: u64,
}

pub struct Responder {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
}

fn now_plus(offset_s: f64) -> NtpTimestamp {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let t = if offset_s >= 0.0 {
        now + Duration::from_secs_f64(offset_s)
    } else {
        now.saturating_sub(Duration::from_secs_f64(-offset_s))
    };
    NtpTimestamp::from_unix(t)
}

fn state(offset_s: f64) -> ServerState {
    ServerState {
        leap: LeapIndicator::NoWarning,
        stratum: 1,
        precision: -20,
        root_delay: 0.0,
        root_dispersion: 0.0001,
        reference_id: RefId(*b"GPS\0"),
        reference_time: now_plus(offset_s - 1.0),
    }
}

impl Responder {
    /// Serves NTP on port 123 of each of `addrs` (one socket each, so every
    /// reply leaves from the address its request went to) inside `ns`.
    pub fn start(ns: &Netns, addrs: &[IpAddr], cfg: Config) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let mut threads = Vec::new();
        for &ip in addrs {
            let addr = SocketAddr::new(ip, 123);
            let sock = ns
                .in_ns(move || UdpSocket::bind(addr))?
                .with_context(|| format!("binding the responder to {addr}"))?;
            sock.set_read_timeout(Some(Duration::from_millis(100)))?;
            let sock = Arc::new(sock);
            let (stop, counters) = (stop.clone(), counters.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("nf-bench-ntp-{ip}"))
                    .spawn(move || serve(&sock, cfg, &stop, &counters))
                    .context("spawning the responder")?,
            );
        }
        Ok(Self {
            stop,
            counters,
            threads,
        })
    }

    pub fn stats(&self) -> Stats {
        Stats {
            requests: self.counters.requests.load(Ordering::Relaxed),
            replies: self.counters.replies.load(Ordering::Relaxed),
            busy: self.counters.busy.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn serve(sock: &Arc<UdpSocket>, cfg: Config, stop: &AtomicBool, counters: &Arc<Counters>) {
    let mut buf = [0u8; 1024];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue; // timeout: check the stop flag
        };
        let Ok(request) = NtpPacket::decode(&buf[..n]) else {
            continue;
        };
        counters.requests.fetch_add(1, Ordering::Relaxed);
        if counters.in_flight.fetch_add(1, Ordering::Relaxed) >= MAX_IN_FLIGHT {
            counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            counters.busy.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        let (sock, shared) = (sock.clone(), counters.clone());
        let spawned = std::thread::Builder::new()
            .name("nf-bench-ntp-reply".into())
            .spawn(move || {
                let mut rng = rand::thread_rng();
                let (d1, d2) = (
                    rng.gen_range(0.0..=cfg.max_delay_s),
                    rng.gen_range(0.0..=cfg.max_delay_s),
                );
                // Request path: the request "arrives" d1 later.
                std::thread::sleep(Duration::from_secs_f64(d1));
                let receive = now_plus(cfg.offset_s);
                let reply = build_reply(
                    &request,
                    &state(cfg.offset_s),
                    receive,
                    now_plus(cfg.offset_s),
                );
                if let Some(reply) = reply {
                    // Reply path: it "travels" d2 after its transmit timestamp.
                    std::thread::sleep(Duration::from_secs_f64(d2));
                    if sock.send_to(&reply.encode(), from).is_ok() {
                        shared.replies.fetch_add(1, Ordering::Relaxed);
                    }
                }
                shared.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        if spawned.is_err() {
            counters.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}
