//! Prints the simulation report: `cargo run -p ntp-proto --example simreport [seed]`.
use ntp_proto::sim::{self, Scenario};

fn main() {
    let seed: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    for sc in Scenario::all(seed) {
        print!("{}", sim::run(&sc).summary());
    }
}
