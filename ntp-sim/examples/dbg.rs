use ntp_sim::{run, Scenario};
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let seed: u64 = a[1].parse().unwrap();
    let jitter: f64 = a[2].parse().unwrap();
    let mut sc = Scenario::with_jitter(seed, jitter);
    sc.keep_series = true;
    let r = run(&sc);
    let c = &r.clients[0];
    print!("{}", r.summary());
    if a.len() > 3 { return; }
    println!("max_poll_seen {:?}", c.max_poll_seen);
    let s = &c.series;
    let mut i = 0;
    while i < s.len() {
        let w = &s[i..(i + 600).min(s.len())];
        let rms = (w.iter().map(|p| p.error * p.error).sum::<f64>() / w.len() as f64).sqrt();
        let fr = (w.iter().map(|p| p.freq_error * p.freq_error).sum::<f64>() / w.len() as f64).sqrt();
        println!("t {:6.0} rms {:8.1} us  freq {:7.3} ppm", w[0].t, rms * 1e6, fr * 1e6);
        i += 600;
    }
}
