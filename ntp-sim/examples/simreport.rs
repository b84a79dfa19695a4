//! The simulation report next to chrony's published figures:
//! `cargo xtask sim [--seeds N]` (or `cargo run --release -p ntp-sim
//! --example simreport -- [seeds]`). Each scenario runs once per seed; the
//! table gives the median time to sync, the worst max error, and the mean
//! and standard deviation of the RMS error over the seeds.
use ntp_sim::{self as sim, Scenario};

/// chrony's own simulation thresholds (test/simulation) and its comparison
/// page's means over 100 runs, for the scenarios that have them.
fn chrony_reference(scenario: &str) -> &'static str {
    match scenario {
        "chrony default" => "sync 120–210 s, max ≤ 1000 µs, RMS ≤ 300 µs, freq RMS ≤ 1e-5",
        "jitter 0.01 ms" => "RMS 35 ± 8 µs",
        "jitter 1 ms" => "RMS 475 ± 93 µs",
        "jitter 10 ms" => "RMS 1603 ± 447 µs",
        _ => "",
    }
}

fn main() {
    let seeds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
        .max(1);
    let runs: Vec<Vec<sim::Report>> = (1..=seeds)
        .map(|seed| Scenario::all(seed).iter().map(sim::run).collect())
        .collect();
    println!(
        "{:<42} {:>3} {:>8} {:>9} {:>17} {:>9} {:>6}  chrony reference",
        "scenario", "cl", "sync s", "max µs", "RMS µs (mean±sd)", "freq RMS", "synced"
    );
    for (i, first) in runs[0].iter().enumerate() {
        for client in 0..first.clients.len() {
            let reports: Vec<_> = runs.iter().map(|r| &r[i].clients[client]).collect();
            let mut sync: Vec<f64> = reports.iter().filter_map(|c| c.sync_time).collect();
            sync.sort_by(f64::total_cmp);
            let median_sync = sync
                .get(sync.len() / 2)
                .map(|t| format!("{t:.0}"))
                .unwrap_or_else(|| "never".into());
            let finite = |v: f64| v.is_finite().then_some(v);
            let max = reports
                .iter()
                .filter_map(|c| finite(c.max_error_after_sync))
                .fold(f64::NAN, f64::max);
            let rms: Vec<f64> = reports
                .iter()
                .filter_map(|c| finite(c.rms_error_after_sync))
                .collect();
            let mean = rms.iter().sum::<f64>() / rms.len().max(1) as f64;
            let sd = (rms.iter().map(|r| (r - mean).powi(2)).sum::<f64>()
                / rms.len().max(1) as f64)
                .sqrt();
            let freq = reports
                .iter()
                .filter_map(|c| finite(c.freq_rms_after_sync))
                .fold(f64::NAN, f64::max);
            let synced = reports.iter().filter(|c| c.synchronized_at_end).count();
            println!(
                "{:<42} {:>3} {:>8} {:>9.1} {:>17} {:>9.2e} {:>6}  {}",
                first.scenario,
                client,
                median_sync,
                max * 1e6,
                if rms.is_empty() {
                    "-".to_string()
                } else {
                    format!("{:.1}±{:.1}", mean * 1e6, sd * 1e6)
                },
                freq,
                format!("{synced}/{seeds}"),
                chrony_reference(&first.scenario),
            );
        }
    }
    println!(
        "\nsync: time after which |error| ≤ max(1 ms, 5×jitter) and the frequency error stayed within limits (clknetsim's definition); max, RMS and freq RMS after that."
    );
}
