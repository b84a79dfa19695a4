//! Section 5: the agent's memory and CPU time, at idle with 4 sources
//! (measured while section 4 runs, in its own namespace) and during the
//! flood of section 3, from /proc/PID/status (VmRSS, VmHWM) and
//! /proc/PID/stat (utime + stime).

use serde::Serialize;

use crate::stats::ratio;
use crate::sys::ProcSample;

/// One measurement window.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Window {
    pub wall_s: f64,
    /// CPU time used in the window (user + system), seconds: the larger of
    /// the utime+stime and the schedstat figure.
    pub cpu_s: f64,
    /// `cpu_s / wall_s` in percent of one core.
    pub cpu_percent: f64,
    pub rss_kib_start: u64,
    pub rss_kib_end: u64,
    pub rss_kib_max: u64,
    /// Peak RSS over the process's life at the end of the window.
    pub hwm_kib: u64,
}

impl Window {
    pub fn between(start: &ProcSample, end: &ProcSample, wall_s: f64, rss_max: u64) -> Self {
        // Ticks count exited threads but move in 10 ms steps; schedstat is
        // exact but only knows live threads. Each one can only undercount.
        let cpu_s = (end.cpu_s - start.cpu_s)
            .max(end.sched_s - start.sched_s)
            .max(0.0);
        Window {
            wall_s,
            cpu_s,
            cpu_percent: 100.0 * ratio(cpu_s, wall_s),
            rss_kib_start: start.rss_kib,
            rss_kib_end: end.rss_kib,
            rss_kib_max: rss_max.max(start.rss_kib).max(end.rss_kib),
            hwm_kib: end.hwm_kib,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct FootprintResult {
    /// 4 servers, default polling, nothing else happening to the agent.
    pub idle: Option<Window>,
    pub idle_sources: usize,
    /// Section 3's quiet phase (1 server, polling every 8-16 s).
    pub quiet: Option<Window>,
    /// Section 3's flood phase.
    pub flood: Option<Window>,
    /// Flood CPU time over quiet CPU time (same agent, same length).
    pub flood_cpu_ratio: f64,
    pub flood_rss_ratio: f64,
}

impl FootprintResult {
    pub fn new(idle: Option<Window>, quiet: Option<Window>, flood: Option<Window>) -> Self {
        let (cpu, rss) = match (quiet, flood) {
            (Some(q), Some(f)) => (
                ratio(f.cpu_percent, q.cpu_percent),
                ratio(f.rss_kib_max as f64, q.rss_kib_max as f64),
            ),
            _ => (f64::NAN, f64::NAN),
        };
        FootprintResult {
            idle,
            idle_sources: 4,
            quiet,
            flood,
            flood_cpu_ratio: cpu,
            flood_rss_ratio: rss,
        }
    }
}
