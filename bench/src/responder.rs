//! A test NTP server for the real-time comparison: it serves the host
//! clock plus a known offset (the truth both clients are measured
//! against), and injects random network delay on each path. No netem
//! needed; the injected asymmetry is what the clients' filters have to see
//! through.
//!
//! Its own timestamps must not add an error of their own, or the "known
//! offset" is not known: the request's arrival is the kernel's receive
//! timestamp (SO_TIMESTAMPNS) and its receive timestamp is that plus the
//! request path's delay; the reply is sent once both delays have passed and
//! its transmit timestamp is the clock read right before the send minus the
//! reply path's delay. Thread start-up and sleep overshoot then only
//! lengthen the wait, never an injected path. (Taking the receive
//! timestamp after a thread start and a sleep, as an earlier version did,
//! biased every client's offset by about +0.12 ms on this machine.)

use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use nix::sys::socket::{
    recvmsg, setsockopt, sockopt::ReceiveTimestampns, ControlMessageOwned, MsgFlags,
    SockaddrStorage,
};
use ntp_filter_tests::Netns;
use ntp_proto::{
    build_reply, LeapIndicator, NtpDuration, NtpPacket, NtpTimestamp, RefId, ServerState,
};
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
    no_kernel_timestamp: AtomicU64,
    in_flight: AtomicUsize,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Stats {
    pub requests: u64,
    pub replies: u64,
    /// Requests dropped because too many replies were in flight.
    pub busy: u64,
    /// Requests without a kernel receive timestamp (arrival read after recv).
    pub no_kernel_timestamp: u64,
}

pub struct Responder {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    threads: Vec<JoinHandle<()>>,
}

/// Host time since the Unix epoch.
fn host_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// The served time at host time `at`.
fn served(at: Duration, offset_s: f64) -> NtpTimestamp {
    NtpTimestamp::from_unix(at) + NtpDuration::from_seconds(offset_s)
}

fn state(offset_s: f64) -> ServerState {
    ServerState {
        leap: LeapIndicator::NoWarning,
        stratum: 1,
        precision: -20,
        root_delay: NtpDuration::ZERO,
        root_dispersion: NtpDuration::from_seconds(0.0001),
        reference_id: RefId(*b"GPS\0"),
        reference_time: served(host_now(), offset_s - 1.0),
    }
}

/// One datagram and its arrival (the kernel's receive timestamp, or the
/// clock read after recv when there is none).
fn receive(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr, Duration, bool)> {
    let mut cmsg = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .ok()?;
    let from = msg.address.and_then(|a| {
        a.as_sockaddr_in()
            .map(|v4| SocketAddr::V4((*v4).into()))
            .or_else(|| a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into())))
    })?;
    let kernel = msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::ScmTimestampns(ts) => Some(Duration::new(
            ts.tv_sec().max(0) as u64,
            ts.tv_nsec().clamp(0, 999_999_999) as u32,
        )),
        _ => None,
    });
    let len = msg.bytes;
    Some(match kernel {
        Some(at) => (len, from, at, true),
        None => (len, from, host_now(), false),
    })
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
            setsockopt(&sock, ReceiveTimestampns, &true)
                .context("enabling SO_TIMESTAMPNS on the responder's socket")?;
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
            no_kernel_timestamp: self.counters.no_kernel_timestamp.load(Ordering::Relaxed),
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
        let Some((n, from, arrival, kernel)) = receive(sock, &mut buf) else {
            continue; // timeout: check the stop flag
        };
        let Ok(request) = NtpPacket::decode(&buf[..n]) else {
            continue;
        };
        counters.requests.fetch_add(1, Ordering::Relaxed);
        if !kernel {
            counters.no_kernel_timestamp.fetch_add(1, Ordering::Relaxed);
        }
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
                let (d1, d2) = (Duration::from_secs_f64(d1), Duration::from_secs_f64(d2));
                // Request path: the request "arrives" d1 after it came in.
                let receive = served(arrival + d1, cfg.offset_s);
                // Reply path: it leaves d2 before it is really sent, so wait
                // until both delays have passed.
                std::thread::sleep((arrival + d1 + d2).saturating_sub(host_now()));
                let mut reply = build_reply(&request, &state(cfg.offset_s), receive, receive);
                if let Some(reply) = &mut reply {
                    let sent = host_now();
                    reply.transmit_timestamp = served(sent.saturating_sub(d2), cfg.offset_s);
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
