//! Section 3: time sync under attack. The agent (`--no-clock-adjust`)
//! syncs to a `chronyd -x` server in namespaces; after a quiet phase an
//! outsider floods spoofed NTP of every mode at the router, including
//! mode-4 "replies" from the server's own address to random ports, from a
//! raw socket as fast as one thread sends, for a bounded time. Both phases
//! sample the agent's status once a second, and its RSS and CPU time (the
//! flood figure of section 5).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use ntp_filter_tests::{addrs::*, AgentEnv, ChronyConfig, Chronyd, NtpPacket, RouterLab};
use rand::Rng as _;
use serde::Serialize;
use serde_json::Value;

use crate::flooder::{FloodStats, Flooder, PoolFrame};
use crate::stats::{max_abs, ratio, rms, Summary};
use crate::sys::{self, ProcSample};
use crate::{footprint::Window, progress};

pub const POLL_ARGS: [&str; 4] = ["--minpoll", "3", "--maxpoll", "4"];

pub struct Opts {
    /// After reach 377: lets the burst's samples leave the clock filter.
    pub settle: Duration,
    pub quiet: Duration,
    pub attack: Duration,
}

#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the phase started.
    pub t: f64,
    pub synchronized: bool,
    pub offset_ms: f64,
    pub jitter_ms: f64,
    /// The server's reach register (255 = octal 377).
    pub reach: u64,
    pub delay_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub secs: f64,
    pub samples: Vec<Sample>,
    pub synchronized_all: bool,
    pub reach_min_octal: String,
    pub reach_377_all: bool,
    /// Distinct offset values seen (one per clock update).
    pub updates: usize,
    pub offset_rms_ms: f64,
    pub offset_max_abs_ms: f64,
    pub jitter: Summary,
    pub delay: Summary,
    pub footprint: Window,
    /// Filter counters and agent rejects during the phase.
    pub filter_dropped: u64,
    pub filter_passed: u64,
    pub rejects: Value,
}

#[derive(Debug, Serialize)]
pub struct AttackResult {
    pub poll: String,
    pub time_to_reach_377_s: Option<f64>,
    pub quiet: Phase,
    pub attack: Phase,
    pub flood: FloodStats,
    pub flood_pps: f64,
    pub flood_mix: String,
    /// Attack over quiet: offset RMS, jitter median.
    pub offset_ratio: f64,
    pub jitter_ratio: f64,
    pub stays_synchronized: bool,
    pub reach_stays_377: bool,
    pub offset_within_2x: bool,
    pub jitter_within_2x: bool,
}

const FLOOD_MIX: &str = "half: mode 4 from the server's address and port 123 to random ports of the router (random origin timestamps); the rest: every mode 0-7 from random outsiders in 203.0.113.0/24 and 2001:db8:99::/64 to port 123, and modes 1-3, 5-7 from the server's address";

fn pool(lab: &RouterLab) -> Vec<PoolFrame> {
    let mut rng = rand::thread_rng();
    let mut pkt = |mode: u8| {
        NtpPacket::new(mode)
            .origin_ts(rng.gen())
            .transmit_ts(rng.gen())
    };
    let mut out = Vec::new();
    for i in 0..1024u32 {
        let kind = i % 8;
        let frame = match kind {
            0..=3 => {
                // Spoofed server reply to a random port (rewritten per send).
                let mut bytes = lab
                    .ntp_frame(sock(SERVER_V4, 123), sock(ROUTER_V4, 40000), pkt(4))
                    .frame();
                // UDP checksum 0 ("none", IPv4): the port changes per send.
                bytes[14 + 20 + 6] = 0;
                bytes[14 + 20 + 7] = 0;
                PoolFrame {
                    bytes,
                    random_dst_port: Some(14 + 20 + 2),
                }
            }
            4 | 5 => {
                let src = Ipv4Addr::new(203, 0, 113, 1 + (i % 254) as u8);
                PoolFrame {
                    bytes: lab
                        .ntp_frame(
                            SocketAddr::new(src.into(), 1024 + (i as u16 % 60000)),
                            sock(ROUTER_V4, 123),
                            pkt((i / 8 % 8) as u8),
                        )
                        .frame(),
                    random_dst_port: None,
                }
            }
            6 => {
                let src = Ipv6Addr::new(0x2001, 0xdb8, 0x99, 0, 0, 0, 0, 1 + i as u16);
                PoolFrame {
                    bytes: lab
                        .ntp_frame(
                            SocketAddr::new(IpAddr::V6(src), 123),
                            sock(ROUTER_V6, 123),
                            pkt((i / 8 % 8) as u8),
                        )
                        .frame(),
                    random_dst_port: None,
                }
            }
            _ => {
                let mode = [1u8, 2, 3, 5, 6, 7][(i / 8 % 6) as usize];
                PoolFrame {
                    bytes: lab
                        .ntp_frame(sock(SERVER_V4, 123), sock(ROUTER_V4, 123), pkt(mode))
                        .frame(),
                    random_dst_port: None,
                }
            }
        };
        out.push(frame);
    }
    out
}

fn sample(st: &Value, t: f64) -> Sample {
    let host = &st["host"];
    let peer = &st["peers"][0];
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    Sample {
        t,
        synchronized: host["synchronized"].as_bool() == Some(true),
        offset_ms: f(&host["offset_ms"]),
        jitter_ms: f(&host["jitter_ms"]),
        reach: peer["reach"].as_u64().unwrap_or(0),
        delay_ms: f(&peer["delay_ms"]),
    }
}

fn counters(st: &Value) -> (u64, u64) {
    let c = &st["filter"]["counters"];
    (
        c["total_dropped"].as_u64().unwrap_or(0),
        c["total_passed"].as_u64().unwrap_or(0),
    )
}

/// Reject counters (reason → count) of the first source, minus `before`.
fn rejects_since(st: &Value, before: &Value) -> Value {
    let mut out = serde_json::Map::new();
    if let Some(now) = st["peers"][0]["rejects"].as_object() {
        for (k, v) in now {
            let d = v
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(before[k].as_u64().unwrap_or(0));
            if d > 0 {
                out.insert(k.clone(), d.into());
            }
        }
    }
    Value::Object(out)
}

fn run_phase(
    name: &'static str,
    env: &AgentEnv,
    lab: &RouterLab,
    pid: u32,
    len: Duration,
) -> Result<Phase> {
    let st0 = env.status(lab.router())?;
    let p0 = sys::proc_sample(pid)?;
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut rss_max = p0.rss_kib;
    let mut last_print = Instant::now();
    while start.elapsed() < len {
        let t = start.elapsed().as_secs_f64();
        match env.status(lab.router()) {
            Ok(st) => samples.push(sample(&st, t)),
            Err(e) => progress("attack", &format!("status failed at {t:.0} s: {e:#}")),
        }
        rss_max = rss_max.max(sys::proc_sample(pid)?.rss_kib);
        if last_print.elapsed() >= Duration::from_secs(10) {
            if let Some(s) = samples.last() {
                progress(
                    "attack",
                    &format!(
                        "{name} {:>3.0}/{:.0} s: synchronized {}, reach {:o}, offset {:+.3} ms, jitter {:.3} ms",
                        t,
                        len.as_secs_f64(),
                        s.synchronized,
                        s.reach,
                        s.offset_ms,
                        s.jitter_ms
                    ),
                );
            }
            last_print = Instant::now();
        }
        let next = Duration::from_secs_f64((t + 1.0).floor());
        std::thread::sleep(
            next.saturating_sub(start.elapsed())
                .min(Duration::from_secs(1)),
        );
    }
    let secs = start.elapsed().as_secs_f64();
    let p1: ProcSample = sys::proc_sample(pid)?;
    let st1 = env.status(lab.router())?;
    let (d0, pass0) = counters(&st0);
    let (d1, pass1) = counters(&st1);
    // One value per clock update: consecutive equal samples are one update.
    let mut updates: Vec<(f64, f64)> = Vec::new();
    for s in &samples {
        if s.offset_ms.is_finite() && updates.last() != Some(&(s.offset_ms, s.jitter_ms)) {
            updates.push((s.offset_ms, s.jitter_ms));
        }
    }
    let offsets: Vec<f64> = updates.iter().map(|u| u.0).collect();
    let jitters: Vec<f64> = updates.iter().map(|u| u.1).collect();
    let delays: Vec<f64> = samples.iter().map(|s| s.delay_ms).collect();
    let reach_min = samples.iter().map(|s| s.reach).min().unwrap_or(0);
    Ok(Phase {
        name,
        secs,
        synchronized_all: !samples.is_empty() && samples.iter().all(|s| s.synchronized),
        reach_min_octal: format!("{reach_min:o}"),
        reach_377_all: !samples.is_empty() && samples.iter().all(|s| s.reach == 0o377),
        updates: updates.len(),
        offset_rms_ms: rms(&offsets),
        offset_max_abs_ms: max_abs(&offsets),
        jitter: Summary::of(&jitters),
        delay: Summary::of(&delays),
        footprint: Window::between(&p0, &p1, secs, rss_max),
        filter_dropped: d1.saturating_sub(d0),
        filter_passed: pass1.saturating_sub(pass0),
        rejects: rejects_since(&st1, &st0["peers"][0]["rejects"]),
        samples,
    })
}

pub fn run(opts: &Opts) -> Result<AttackResult> {
    let lab = RouterLab::new("batk")?;
    let _chronyd = Chronyd::start(lab.outside(), &ChronyConfig::server(SERVER_V4.into()))?;
    let env = AgentEnv::new("batk")?;
    let mut args = vec!["--iface", WAN_IF, "--server", "192.0.2.10"];
    args.extend(POLL_ARGS);
    let agent = env.start(lab.router(), &args)?;
    let pid = agent.pid();
    if sys::comm(pid) != "ntp-agent" {
        progress(
            "attack",
            &format!("warning: pid {pid} is {:?}, not ntp-agent", sys::comm(pid)),
        );
    }

    progress(
        "attack",
        "waiting for sync and reach 377 (iburst: about 16 s)",
    );
    let start = Instant::now();
    let mut time_to_377 = None;
    while start.elapsed() < Duration::from_secs(90) {
        if let Ok(st) = env.status(lab.router()) {
            let s = sample(&st, 0.0);
            if s.synchronized && s.reach == 0o377 {
                time_to_377 = Some(start.elapsed().as_secs_f64());
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    match time_to_377 {
        Some(t) => progress("attack", &format!("synchronized, reach 377 after {t:.0} s")),
        None => progress(
            "attack",
            "not synchronized with reach 377 after 90 s; measuring anyway",
        ),
    }

    progress(
        "attack",
        &format!(
            "settling {:.0} s, then a quiet phase of {:.0} s",
            opts.settle.as_secs_f64(),
            opts.quiet.as_secs_f64()
        ),
    );
    std::thread::sleep(opts.settle);
    let quiet = run_phase("quiet", &env, &lab, pid, opts.quiet)?;

    progress(
        "attack",
        &format!(
            "flood phase, {:.0} s (AF_PACKET sender on ext0)",
            opts.attack.as_secs_f64()
        ),
    );
    let flooder = Flooder::start(
        lab.outside(),
        EXT_IF,
        pool(&lab),
        opts.attack + Duration::from_secs(5),
    )
    .context("starting the flood")?;
    let attack = run_phase("attack", &env, &lab, pid, opts.attack);
    let flood = flooder.stop()?;
    let attack = attack?;
    progress(
        "attack",
        &format!(
            "flood sent {} frames in {:.1} s ({:.0} kpps), filter dropped {}",
            flood.sent,
            flood.secs,
            flood.pps() / 1e3,
            attack.filter_dropped
        ),
    );
    drop(agent);

    let offset_ratio = ratio(attack.offset_rms_ms, quiet.offset_rms_ms);
    let jitter_ratio = ratio(attack.jitter.median, quiet.jitter.median);
    Ok(AttackResult {
        poll: POLL_ARGS.join(" "),
        time_to_reach_377_s: time_to_377,
        stays_synchronized: attack.synchronized_all,
        reach_stays_377: attack.reach_377_all,
        offset_within_2x: offset_ratio <= 2.0,
        jitter_within_2x: jitter_ratio <= 2.0,
        offset_ratio,
        jitter_ratio,
        flood_pps: flood.pps(),
        flood,
        flood_mix: FLOOD_MIX.into(),
        quiet,
        attack,
    })
}
