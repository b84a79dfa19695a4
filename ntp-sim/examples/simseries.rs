//! Time series of one scenario: `--example simseries <index in Scenario::all> [seed] [chunk s] [chunks] [client]`.
use ntp_sim::{self as sim, Scenario};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: f64| a.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let idx = arg(1, 0.0) as usize;
    let seed = arg(2, 1.0) as u64;
    let step = arg(3, 300.0) as usize;
    let n = arg(4, 100.0) as usize;
    let client = arg(5, 0.0) as usize;
    let mut sc = Scenario::all(seed).remove(idx);
    sc.keep_series = true;
    let r = sim::run(&sc);
    let c = &r.clients[client];
    for chunk in c.series.chunks(step).take(n) {
        let max = chunk.iter().map(|p| p.error.abs()).fold(0.0, f64::max);
        let rms =
            (chunk.iter().map(|p| p.error * p.error).sum::<f64>() / chunk.len() as f64).sqrt();
        let fmax = chunk.iter().map(|p| p.freq_error.abs()).fold(0.0, f64::max);
        println!(
            "t {:6.0} err {:9.1} max {:9.1} us rms {:9.1} us fmax {:.2e} sync {}",
            chunk[0].t,
            chunk[0].error * 1e6,
            max * 1e6,
            rms * 1e6,
            fmax,
            chunk[0].synchronized
        );
    }
}
