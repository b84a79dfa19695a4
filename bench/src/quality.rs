//! Section 4: sync quality.
//!
//! * Simulation: every `ntp_sim` scenario over several seeds (the
//!   real NTP core against a simulated clock and network), next to chrony's
//!   published figures for the same conditions, and |offset| against time
//!   per scenario.
//! * Real time: a test responder (host clock + a known offset, random
//!   delay each way) queried side by side by the agent (`--no-clock-adjust`)
//!   and by `chronyd -x`, each in its own namespace, for the same minutes.
//!   Both read the same host clock, so each one's error is its offset
//!   estimate minus the injected offset. The agent's estimate is its
//!   status offset; chronyd's is `chronyc tracking`'s "System time": with
//!   `-x` chronyd keeps its corrections in a virtual clock and reports the
//!   whole of them there.
//! * While that runs, an idle agent with 4 sources in a third namespace
//!   gives section 5's idle footprint.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use ntp_filter_tests::{chrony::chronyd_bin, AgentEnv, Child, Netns, TempDir, Topology};
use ntp_sim::{self as sim, Scenario};
use serde::Serialize;

use crate::footprint::Window;
use crate::responder::{self, Responder};
use crate::stats::{max_abs, mean, ratio, rms, sd, Summary};
use crate::{progress, sys};

// ---------------------------------------------------------------- simulation

#[derive(Debug, Serialize)]
pub struct SimRow {
    pub scenario: String,
    pub client: usize,
    pub seeds: u64,
    pub sync_s: Vec<Option<f64>>,
    pub sync_median_s: Option<f64>,
    /// Worst max |error| after sync over the seeds, µs.
    pub max_us: f64,
    /// Mean and standard deviation over the seeds of the RMS error after sync, µs.
    pub rms_mean_us: f64,
    pub rms_sd_us: f64,
    /// Worst RMS frequency error after sync, ppm.
    pub freq_rms_ppm: f64,
    pub synced_at_end: usize,
    /// chrony's published figures for the same conditions.
    pub chrony: &'static str,
    /// chrony's mean RMS, µs, where it publishes one.
    pub chrony_rms_us: Option<f64>,
    pub rms_ratio_to_chrony: f64,
}

/// |error| over time of one scenario (seed 1, client 0), for the plot:
/// the largest |error| in each time bucket.
#[derive(Debug, Serialize)]
pub struct SimSeries {
    pub scenario: String,
    pub t_s: Vec<f64>,
    pub max_abs_error_s: Vec<f64>,
    pub sync_s: Option<f64>,
    pub duration_s: f64,
}

#[derive(Debug, Serialize)]
pub struct SimResult {
    pub seeds: u64,
    pub rows: Vec<SimRow>,
    #[serde(skip)]
    pub series: Vec<SimSeries>,
}

/// chrony's test/simulation thresholds and its comparison page's means.
fn chrony_reference(scenario: &str) -> (&'static str, Option<f64>) {
    match scenario {
        "chrony default" => (
            "sync 120–210 s, max ≤ 1000 µs, RMS ≤ 300 µs, freq RMS ≤ 10 ppm",
            None,
        ),
        "jitter 0.01 ms" => ("RMS 35 ± 8 µs, sync 120–210 s", Some(35.0)),
        "jitter 1 ms" => ("RMS 475 ± 93 µs, sync 120–210 s", Some(475.0)),
        "jitter 10 ms" => ("RMS 1603 ± 447 µs, sync 120–210 s", Some(1603.0)),
        _ => ("", None),
    }
}

const PLOT_BUCKETS: usize = 400;

fn series_of(report: &sim::Report, duration: f64) -> SimSeries {
    let c = &report.clients[0];
    let bucket = (duration / PLOT_BUCKETS as f64).max(1.0);
    let mut t_s = Vec::new();
    let mut max_abs_error_s = Vec::new();
    let mut cur: Option<(usize, f64)> = None;
    for p in &c.series {
        let b = (p.t / bucket) as usize;
        match &mut cur {
            Some((cb, m)) if *cb == b => *m = m.max(p.error.abs()),
            _ => {
                if let Some((cb, m)) = cur {
                    t_s.push(cb as f64 * bucket);
                    max_abs_error_s.push(m);
                }
                cur = Some((b, p.error.abs()));
            }
        }
    }
    if let Some((cb, m)) = cur {
        t_s.push(cb as f64 * bucket);
        max_abs_error_s.push(m);
    }
    SimSeries {
        scenario: report.scenario.clone(),
        t_s,
        max_abs_error_s,
        sync_s: c.sync_time,
        duration_s: duration,
    }
}

pub fn simulate(seeds: u64) -> Result<SimResult> {
    let seeds = seeds.max(1);
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(2) as u64;
    let mut runs: Vec<(u64, Vec<sim::Report>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    (1..=seeds)
                        .filter(|seed| seed % workers == w)
                        .map(|seed| {
                            let reports = Scenario::all(seed)
                                .into_iter()
                                .map(|mut sc| {
                                    sc.keep_series = seed == 1;
                                    sim::run(&sc)
                                })
                                .collect();
                            progress("quality", &format!("simulation seed {seed}/{seeds} done"));
                            (seed, reports)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("simulation thread"))
            .collect()
    });
    runs.sort_by_key(|(seed, _)| *seed);
    let durations: Vec<f64> = Scenario::all(1).iter().map(|s| s.duration).collect();
    let first = &runs[0].1;
    let mut rows = Vec::new();
    for (i, scenario) in first.iter().enumerate() {
        for client in 0..scenario.clients.len() {
            let reports: Vec<_> = runs.iter().map(|(_, r)| &r[i].clients[client]).collect();
            let sync_s: Vec<Option<f64>> = reports.iter().map(|c| c.sync_time).collect();
            let mut synced: Vec<f64> = sync_s.iter().flatten().copied().collect();
            synced.sort_by(f64::total_cmp);
            let finite = |v: f64| v.is_finite().then_some(v);
            let rms_us: Vec<f64> = reports
                .iter()
                .filter_map(|c| finite(c.rms_error_after_sync))
                .map(|v| v * 1e6)
                .collect();
            let (chrony, chrony_rms_us) = chrony_reference(&scenario.scenario);
            let rms_mean_us = mean(&rms_us);
            rows.push(SimRow {
                scenario: scenario.scenario.clone(),
                client,
                seeds,
                sync_median_s: (!synced.is_empty()).then(|| Summary::of(&synced).median),
                sync_s,
                max_us: reports
                    .iter()
                    .filter_map(|c| finite(c.max_error_after_sync))
                    .fold(f64::NAN, f64::max)
                    * 1e6,
                rms_mean_us,
                rms_sd_us: sd(&rms_us),
                freq_rms_ppm: reports
                    .iter()
                    .filter_map(|c| finite(c.freq_rms_after_sync))
                    .fold(f64::NAN, f64::max)
                    * 1e6,
                synced_at_end: reports.iter().filter(|c| c.synchronized_at_end).count(),
                chrony,
                chrony_rms_us,
                rms_ratio_to_chrony: chrony_rms_us.map_or(f64::NAN, |c| ratio(rms_mean_us, c)),
            });
        }
    }
    let series = first
        .iter()
        .zip(&durations)
        .map(|(r, d)| series_of(r, *d))
        .collect();
    Ok(SimResult {
        seeds,
        rows,
        series,
    })
}

// ----------------------------------------------------------------- real time

pub struct RealtimeOpts {
    /// Length of each condition's run.
    pub duration: Duration,
    pub sample_every: Duration,
    /// Idle footprint window (during the first condition): starts this
    /// long after the idle agent came up, and lasts `idle_window`.
    pub idle_settle: Duration,
    pub idle_window: Duration,
}

/// One network condition of the real-time comparison.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Condition {
    pub name: &'static str,
    /// Each direction's extra delay is uniform in [0, max_delay_s].
    pub max_delay_s: f64,
}

/// Quiet LAN and a jittery path, the two conditions of issue #13.
pub const CONDITIONS: [Condition; 2] = [
    Condition {
        name: "quiet",
        max_delay_s: 0.000_05,
    },
    Condition {
        name: "jittery",
        max_delay_s: 0.002,
    },
];

impl Condition {
    /// Standard deviation of one exchange's offset error: half the
    /// difference of two delays uniform in [0, max]: max / sqrt(24).
    pub fn offset_sd_s(&self) -> f64 {
        self.max_delay_s / 24f64.sqrt()
    }

    /// "Settled": |error| within max(1 ms, 5 × the single-exchange offset
    /// error's standard deviation), the simulation's synchronisation limit.
    pub fn settle_bound_s(&self) -> f64 {
        (5.0 * self.offset_sd_s()).max(1e-3)
    }
}

#[derive(Debug, Serialize)]
pub struct ClientRun {
    pub name: &'static str,
    pub config: String,
    pub note: &'static str,
    /// Seconds from start to the first counted sample.
    pub first_estimate_s: Option<f64>,
    /// (seconds since start, offset estimate in ms, counted).
    pub samples: Vec<(f64, f64, bool)>,
    /// Over the counted samples: estimate minus the injected offset, ms.
    pub error_mean_ms: f64,
    pub error_rms_ms: f64,
    pub error_max_abs_ms: f64,
    pub n: usize,
    /// Seconds from start after which every sample was counted and within
    /// the condition's settle bound; `None`: not settled by the end.
    pub settle_s: Option<f64>,
    /// Largest |error| of the counted samples before / after settling, ms.
    pub startup_max_abs_ms: f64,
    pub steady_max_abs_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct ConditionRun {
    pub condition: Condition,
    pub max_delay_ms: f64,
    pub settle_bound_ms: f64,
    pub duration_s: f64,
    /// The agent as `--no-clock-adjust` runs it: its virtual clock's
    /// correction, like chronyd -x's System time.
    pub agent: ClientRun,
    /// The agent with its discipline idle (`--panic-threshold 0.001`): the
    /// clock filter's and selection's offset alone.
    pub agent_observe: ClientRun,
    pub chronyd: ClientRun,
    /// Agent RMS error over chronyd's.
    pub rms_ratio_agent_to_chronyd: f64,
    /// Agent settle time minus chronyd's, seconds (≤ 0: no later).
    pub settle_difference_s: Option<f64>,
    pub responder: responder::Stats,
}

#[derive(Debug, Serialize)]
pub struct RealtimeResult {
    pub truth_offset_ms: f64,
    pub poll_s: u64,
    pub conditions: Vec<ConditionRun>,
    /// Section 5: the idle agent with 4 sources.
    pub idle_footprint: Option<Window>,
}

const TRUTH_S: f64 = 0.005;

const SRV_AGT: &str = "203.0.113.1";
const SRV_CHR: &str = "203.0.113.17";
const SRV_IDLE: [&str; 4] = [
    "203.0.113.33",
    "203.0.113.34",
    "203.0.113.35",
    "203.0.113.36",
];
const SRV_OBS: &str = "203.0.113.49";

fn lab() -> Result<Topology> {
    let mut t = Topology::new("brt");
    for role in ["srv", "agt", "obs", "chr", "idl"] {
        t.add_ns(role)?;
    }
    t.veth(("srv", "s-agt"), ("agt", "wan0"))?;
    t.addr("srv", "s-agt", &format!("{SRV_AGT}/28"))?;
    t.addr("agt", "wan0", "203.0.113.2/28")?;
    t.veth(("srv", "s-chr"), ("chr", "eth0"))?;
    t.addr("srv", "s-chr", &format!("{SRV_CHR}/28"))?;
    t.addr("chr", "eth0", "203.0.113.18/28")?;
    t.veth(("srv", "s-idl"), ("idl", "wan0"))?;
    for a in SRV_IDLE {
        t.addr("srv", "s-idl", &format!("{a}/28"))?;
    }
    t.addr("idl", "wan0", "203.0.113.40/28")?;
    t.veth(("srv", "s-obs"), ("obs", "wan0"))?;
    t.addr("srv", "s-obs", &format!("{SRV_OBS}/28"))?;
    t.addr("obs", "wan0", "203.0.113.50/28")?;
    Ok(t)
}

/// `chronyd -x` as a client of `server`, command port on 127.0.0.1 of its
/// own namespace (for chronyc), no NTP port, private files.
struct ChronyClient {
    child: Child,
    _dir: TempDir,
}

impl ChronyClient {
    fn start(ns: &Netns, server: &str) -> Result<Self> {
        let dir = TempDir::new("bchr")?;
        let conf = format!(
            "# benchmark client: never controls the clock (-x)\n\
             server {server} iburst minpoll {POLL_EXP} maxpoll {POLL_EXP}\n\
             port 0\n\
             cmdport 323\n\
             bindcmdaddress 127.0.0.1\n\
             bindcmdaddress /\n\
             cmdallow 127.0.0.1\n\
             pidfile {dir}/chronyd.pid\n\
             driftfile {dir}/drift\n",
            dir = dir.path().display()
        );
        let path = dir.path().join("chrony.conf");
        std::fs::write(&path, &conf)?;
        let conf_arg = path.display().to_string();
        let mut child = Child::spawn_in(
            ns,
            "chronyd-client",
            chronyd_bin(),
            &["-x", "-d", "-u", "root", "-f", &conf_arg],
        )?;
        child
            .wait_for_line("Disabled control of system clock", Duration::from_secs(20))
            .context("chronyd (client) did not start with clock control disabled")?;
        Ok(Self { child, _dir: dir })
    }

    /// (offset estimate in ms: server minus local, synchronized).
    fn sample(&mut self, ns: &Netns) -> Result<(f64, bool)> {
        if let Some(st) = self.child.try_wait()? {
            bail!("chronyd exited ({st}):\n{}", self.child.log());
        }
        let out = ns.run(
            "chronyc",
            &["-h", "127.0.0.1", "-p", "323", "-c", "-n", "tracking"],
        )?;
        let (corr, synced) = parse_tracking(&out)?;
        Ok((corr * 1e3, synced))
    }
}

/// `chronyc -c tracking`: field 5 is "System time", the correction chronyd
/// would apply (positive: the local clock is slow, the server ahead);
/// field 14 the leap status.
fn parse_tracking(out: &str) -> Result<(f64, bool)> {
    let f: Vec<&str> = out.trim().split(',').collect();
    if f.len() < 14 {
        bail!("unexpected chronyc tracking output: {out:?}");
    }
    let correction: f64 = f[4]
        .parse()
        .with_context(|| format!("System time in {out:?}"))?;
    let synced = f[0] != "00000000" && f[13] != "Not synchronised";
    Ok((correction, synced))
}

/// The agent's estimate of the system clock's offset in ms and whether to
/// count it. Plain `--no-clock-adjust`: the virtual clock's whole correction
/// (`clock_correction_ms`, like chronyc's System time), once synchronized.
/// Discipline idle: the clock filter's offset, once its source has answered.
fn agent_sample(st: &serde_json::Value, measurement_only: bool) -> (f64, bool) {
    let offset = if measurement_only {
        st["host"]["offset_ms"].as_f64().unwrap_or(f64::NAN)
    } else {
        st["clock_correction_ms"].as_f64().unwrap_or(f64::NAN)
    };
    let counted = if measurement_only {
        // Once selection has a system peer: before that the offset is 0.
        offset.is_finite()
            && (!st["host"]["system_peer"].is_null() || st["peers"][0]["tally"] == "*")
    } else {
        st["host"]["synchronized"].as_bool() == Some(true)
    };
    (offset, counted)
}

/// Settle time: the first sample after which every sample is counted and
/// its |error| (ms) within `bound_ms`.
fn settle_time(samples: &[(f64, f64, bool)], bound_ms: f64) -> Option<usize> {
    let ok = |s: &(f64, f64, bool)| s.2 && (s.1 - TRUTH_S * 1e3).abs() <= bound_ms;
    match samples.iter().rposition(|s| !ok(s)) {
        None if samples.is_empty() => None,
        None => Some(0),
        Some(i) if i + 1 < samples.len() => Some(i + 1),
        Some(_) => None,
    }
}

fn client_run(
    name: &'static str,
    config: String,
    note: &'static str,
    samples: Vec<(f64, f64, bool)>,
    settle_bound_ms: f64,
) -> ClientRun {
    let error = |s: &(f64, f64, bool)| s.1 - TRUTH_S * 1e3;
    let counted = |s: &&(f64, f64, bool)| s.2 && s.1.is_finite();
    let errors: Vec<f64> = samples.iter().filter(counted).map(error).collect();
    let settled = settle_time(&samples, settle_bound_ms);
    let split = settled.unwrap_or(samples.len());
    let before: Vec<f64> = samples[..split].iter().filter(counted).map(error).collect();
    let after: Vec<f64> = samples[split..].iter().filter(counted).map(error).collect();
    ClientRun {
        name,
        config,
        note,
        first_estimate_s: samples.iter().find(|s| s.2).map(|s| s.0),
        error_mean_ms: mean(&errors),
        error_rms_ms: rms(&errors),
        error_max_abs_ms: max_abs(&errors),
        n: errors.len(),
        settle_s: settled.map(|i| samples[i].0),
        startup_max_abs_ms: if before.is_empty() {
            0.0
        } else {
            max_abs(&before)
        },
        steady_max_abs_ms: max_abs(&after),
        samples,
    }
}

const POLL_EXP: u32 = 3;

fn start_agent(
    t: &Topology,
    role: &str,
    server: &str,
    extra: &[&str],
) -> Result<(AgentEnv, Child, String)> {
    let env = AgentEnv::new(&format!("brt{role}"))?;
    let poll = POLL_EXP.to_string();
    let mut args = vec![
        "--iface",
        "wan0",
        "--server",
        server,
        "--minpoll",
        &poll,
        "--maxpoll",
        &poll,
    ];
    args.extend(extra);
    let config = format!("ntp-agent run --no-clock-adjust {}", args.join(" "));
    let child = env.start(t.ns(role), &args)?;
    Ok((env, child, config))
}

/// Runs every condition in turn, each in a fresh lab.
pub fn realtime(opts: &RealtimeOpts, with_idle: bool) -> Result<RealtimeResult> {
    let mut conditions = Vec::new();
    let mut idle_footprint = None;
    for (i, c) in CONDITIONS.iter().enumerate() {
        let (run, idle) = realtime_condition(opts, *c, with_idle && i == 0)?;
        progress(
            "quality",
            &format!(
                "{}: agent RMS {:.3} ms (settled {}), chronyd RMS {:.3} ms (settled {}): {:.2}×",
                c.name,
                run.agent.error_rms_ms,
                fmt_settle(run.agent.settle_s),
                run.chronyd.error_rms_ms,
                fmt_settle(run.chronyd.settle_s),
                run.rms_ratio_agent_to_chronyd
            ),
        );
        conditions.push(run);
        idle_footprint = idle_footprint.or(idle);
    }
    Ok(RealtimeResult {
        truth_offset_ms: TRUTH_S * 1e3,
        poll_s: 1 << POLL_EXP,
        conditions,
        idle_footprint,
    })
}

fn fmt_settle(s: Option<f64>) -> String {
    s.map_or_else(|| "never".into(), |t| format!("after {t:.0} s"))
}

fn realtime_condition(
    opts: &RealtimeOpts,
    condition: Condition,
    with_idle: bool,
) -> Result<(ConditionRun, Option<Window>)> {
    let t = lab()?;
    let mut addrs: Vec<IpAddr> = [SRV_AGT, SRV_CHR, SRV_OBS]
        .iter()
        .chain(SRV_IDLE.iter())
        .map(|a| a.parse::<Ipv4Addr>().map(IpAddr::V4))
        .collect::<Result<_, _>>()?;
    addrs.dedup();
    let cfg = responder::Config {
        offset_s: TRUTH_S,
        max_delay_s: condition.max_delay_s,
    };
    let server = Responder::start(t.ns("srv"), &addrs, cfg)?;
    let bound_ms = condition.settle_bound_s() * 1e3;

    // Spawned from this (the main) thread: the children's parent-death
    // signal follows the spawning thread.
    let (agt_env, _agt, agt_config) =
        start_agent(&t, "agt", SRV_AGT, &["--panic-threshold", "0.001"])?;
    let (obs_env, _obs, obs_config) = start_agent(&t, "obs", SRV_OBS, &[])?;
    let mut chrony = ChronyClient::start(t.ns("chr"), SRV_CHR)?;

    let idle = if with_idle {
        let env = AgentEnv::new("brtidl")?;
        let mut args = vec!["--iface", "wan0"];
        for a in SRV_IDLE {
            args.extend(["--server", a]);
        }
        let child = env.start(t.ns("idl"), &args)?;
        Some((env, child, Instant::now()))
    } else {
        None
    };
    let mut idle_start: Option<sys::ProcSample> = None;
    let mut idle_rss_max = 0;
    let mut idle_window: Option<Window> = None;

    let start = Instant::now();
    let (mut agt_s, mut obs_s, mut chr_s) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_print = Instant::now();
    while start.elapsed() < opts.duration {
        let ts = start.elapsed().as_secs_f64();
        for (env, role, out, measurement_only) in [
            (&agt_env, "agt", &mut agt_s, true),
            (&obs_env, "obs", &mut obs_s, false),
        ] {
            match env.status(t.ns(role)) {
                Ok(st) => {
                    let (o, c) = agent_sample(&st, measurement_only);
                    out.push((ts, o, c));
                }
                Err(e) => progress(
                    "quality",
                    &format!("agent status failed at {ts:.0} s: {e:#}"),
                ),
            }
        }
        match chrony.sample(t.ns("chr")) {
            Ok((o, c)) => chr_s.push((ts, o, c)),
            Err(e) => progress("quality", &format!("chronyd at {ts:.0} s: {e:#}")),
        }
        if let Some((_, child, up)) = &idle {
            let pid = child.pid();
            let since = up.elapsed();
            if idle_start.is_none() && since >= opts.idle_settle {
                idle_start = Some(sys::proc_sample(pid)?);
            }
            if let Some(s0) = &idle_start {
                let now = sys::proc_sample(pid)?;
                idle_rss_max = idle_rss_max.max(now.rss_kib);
                if idle_window.is_none() && since >= opts.idle_settle + opts.idle_window {
                    let wall = (since - opts.idle_settle).as_secs_f64();
                    let w = Window::between(s0, &now, wall, idle_rss_max);
                    progress(
                        "footprint",
                        &format!(
                            "idle agent (4 sources): {:.2} s CPU in {:.0} s, RSS {} KiB",
                            w.cpu_s, wall, now.rss_kib
                        ),
                    );
                    idle_window = Some(w);
                }
            }
        }
        if last_print.elapsed() >= Duration::from_secs(15) {
            let last = |v: &Vec<(f64, f64, bool)>| {
                v.last()
                    .map(|s| format!("{:+.3} ms{}", s.1, if s.2 { "" } else { " (not yet)" }))
                    .unwrap_or_else(|| "-".into())
            };
            progress(
                "quality",
                &format!(
                    "{} {:>3.0}/{:.0} s, truth +5.000 ms: agent {}, chronyd {}, agent discipline idle {}",
                    condition.name,
                    ts,
                    opts.duration.as_secs_f64(),
                    last(&obs_s),
                    last(&chr_s),
                    last(&agt_s)
                ),
            );
            last_print = Instant::now();
        }
        let next = start
            + opts
                .sample_every
                .mul_f64((ts / opts.sample_every.as_secs_f64()).floor() + 1.0);
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    let agent = client_run(
        "ntp-agent",
        obs_config,
        "clock_correction_ms of ntp-agent status: its virtual clock's whole correction, like chronyd's System time; counted while synchronized",
        obs_s,
        bound_ms,
    );
    let agent_observe = client_run(
        "ntp-agent, discipline idle",
        agt_config,
        "--panic-threshold 0.001 refuses every correction, so its offset is the clock filter's and selection's estimate alone; counted once selection has a system peer",
        agt_s,
        bound_ms,
    );
    let chronyd = client_run(
        "chronyd -x",
        format!("chronyd -x: server {SRV_CHR} iburst minpoll {POLL_EXP} maxpoll {POLL_EXP}"),
        "System time of chronyc tracking (its virtual clock's whole correction); counted while synchronized",
        chr_s,
        bound_ms,
    );
    let run = ConditionRun {
        condition,
        max_delay_ms: condition.max_delay_s * 1e3,
        settle_bound_ms: bound_ms,
        duration_s: start.elapsed().as_secs_f64(),
        rms_ratio_agent_to_chronyd: ratio(agent.error_rms_ms, chronyd.error_rms_ms),
        settle_difference_s: agent.settle_s.zip(chronyd.settle_s).map(|(a, c)| a - c),
        agent,
        agent_observe,
        chronyd,
        responder: server.stats(),
    };
    Ok((run, idle_window))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chronyc_csv() {
        let out = "CB007111,203.0.113.17,2,1700000000.1,0.004998001,0.000001,0.0002,-1.2,0.01,0.5,0.001,0.0002,8.0,Normal\n";
        let (c, s) = parse_tracking(out).unwrap();
        assert!((c - 0.004998001).abs() < 1e-12);
        assert!(s);
        let out = "00000000,,0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,1.0,1.0,0.0,Not synchronised\n";
        assert!(!parse_tracking(out).unwrap().1);
        assert!(parse_tracking("506 Cannot talk to daemon").is_err());
    }

    #[test]
    fn settle_needs_every_later_sample_counted_and_in_bound() {
        let truth = TRUTH_S * 1e3;
        let s = |t: f64, e: f64, c: bool| (t, truth + e, c);
        let samples = [
            s(0.0, -5.0, false),
            s(2.0, 3.0, true),
            s(4.0, 0.2, true),
            s(6.0, 1.5, true),
            s(8.0, 0.1, true),
            s(10.0, -0.3, true),
        ];
        assert_eq!(settle_time(&samples, 1.0), Some(4));
        assert_eq!(settle_time(&samples, 5.0), Some(1));
        assert_eq!(settle_time(&samples[..4], 1.0), None);
        assert_eq!(settle_time(&[], 1.0), None);
        let run = client_run("x", String::new(), "", samples.to_vec(), 1.0);
        assert_eq!(run.settle_s, Some(8.0));
        assert!((run.startup_max_abs_ms - 3.0).abs() < 1e-9);
        assert!((run.steady_max_abs_ms - 0.3).abs() < 1e-9);
        assert_eq!(run.n, 5);
    }

    #[test]
    fn settle_bounds_of_the_conditions() {
        assert!((CONDITIONS[0].settle_bound_s() - 1e-3).abs() < 1e-12);
        assert!((CONDITIONS[1].settle_bound_s() - 0.010 / 24f64.sqrt()).abs() < 1e-12);
    }
}
