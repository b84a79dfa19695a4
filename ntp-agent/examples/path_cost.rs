//! What each path through the XDP program costs, measured in the kernel with
//! BPF_PROG_TEST_RUN. A measurement, not a test: needs root and bpffs.
//!
//!     sudo -E cargo run --release -p ntp-agent --example path_cost [-- REPEAT]
//!
//! For each path the frame runs REPEAT times (default 1 000 000) per round,
//! five rounds. Two figures per round:
//!
//! * kernel: `TestRunResult::duration`. The kernel already divides its
//!   elapsed time by the number of runs (`bpf_test_timer_continue`:
//!   `do_div(time_spent, i)`), so this is ns per packet as it stands —
//!   dividing it by REPEAT again would be wrong. It is whole nanoseconds and
//!   includes the test loop's own per-run overhead (bottom-half toggling,
//!   the timer check).
//! * wall: the syscall's wall-clock time / REPEAT, with fractions of a ns;
//!   it adds one copy of the frame in and out per syscall, negligible at
//!   this REPEAT.
//!
//! The ARP row (Ethernet header only, one counter) is the floor every other
//! path pays.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{net::IpAddr, process::ExitCode, time::Instant};

use anyhow::{bail, Context as _, Result};
use common::{
    addrs::*,
    frames::*,
    harness::{privilege_problem, Harness, XDP_DROP, XDP_PASS},
};

const NTP: u16 = 123;
const ROUNDS: usize = 5;

struct Path {
    name: &'static str,
    frame: Vec<u8>,
    action: u32,
}

fn paths() -> Vec<Path> {
    let n3 = ntp(4, 3);
    let v6_two_exts = |src: IpAddr, mode: u8| {
        insert_ipv6_exts(
            ntp_frame(src, LOCAL6, NTP, NTP, 4, mode),
            &[Ext::Octets(0, 0), Ext::Octets(60, 0)],
        )
    };
    vec![
        Path {
            name: "arp (floor: ethernet only)",
            frame: arp_request([192, 0, 2, 99], [192, 0, 2, 1]),
            action: XDP_PASS,
        },
        Path {
            name: "outsider mode 3 (v4)",
            frame: ntp_frame(OTHER4, LOCAL4, 50000, NTP, 4, 3),
            action: XDP_DROP,
        },
        Path {
            name: "server mode 4, registered port (v4)",
            frame: ntp_frame(SERVER4, LOCAL4, NTP, NTP, 4, 4),
            action: XDP_PASS,
        },
        Path {
            name: "peer mode 1 (v4)",
            frame: ntp_frame(PEER4, LOCAL4, NTP, NTP, 4, 1),
            action: XDP_PASS,
        },
        Path {
            name: "server mode 4, wrong reply port (v4)",
            frame: ntp_frame(SERVER4, LOCAL4, NTP, 40000, 4, 4),
            action: XDP_DROP,
        },
        Path {
            name: "fragment: first, NTP ports (v4)",
            frame: ipv4_fragment(OTHER4, LOCAL4, Some((NTP, NTP)), &n3, true, 0),
            action: XDP_DROP,
        },
        Path {
            name: "transit NTP (v4)",
            frame: ntp_frame(OTHER4, TRANSIT4, NTP, NTP, 4, 3),
            action: XDP_PASS,
        },
        Path {
            name: "non-NTP UDP, dns (v4)",
            frame: udp(OTHER4, LOCAL4, 50000, 53, &n3),
            action: XDP_PASS,
        },
        Path {
            name: "outsider mode 3 (v6)",
            frame: ntp_frame(OTHER6, LOCAL6, 50000, NTP, 4, 3),
            action: XDP_DROP,
        },
        Path {
            name: "v6 + 2 ext headers, outsider mode 3",
            frame: v6_two_exts(OTHER6, 3),
            action: XDP_DROP,
        },
        Path {
            name: "v6 + 2 ext headers, server mode 4",
            frame: v6_two_exts(SERVER6, 4),
            action: XDP_PASS,
        },
        Path {
            name: "QinQ, outsider mode 3 (v4)",
            frame: udp_vlan(Vlan::Double, OTHER4, LOCAL4, 50000, NTP, &n3),
            action: XDP_DROP,
        },
        Path {
            name: "QinQ, server mode 4 (v4)",
            frame: udp_vlan(Vlan::Double, SERVER4, LOCAL4, NTP, NTP, &ntp(4, 4)),
            action: XDP_PASS,
        },
    ]
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn action_name(a: u32) -> &'static str {
    match a {
        XDP_DROP => "drop",
        XDP_PASS => "pass",
        _ => "?",
    }
}

fn measure(h: &mut Harness, repeat: u32) -> Result<()> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "path_cost: {repeat} runs x {ROUNDS} rounds per path, kernel {}, ns per packet",
        kernel.trim()
    );
    println!(
        "{:<38} {:>7} {:>11} {:>11} {:>10} {:>10}",
        "path", "verdict", "kernel min", "kernel med", "wall min", "wall med"
    );
    for p in paths() {
        let first = h.run(&p.frame, 1)?;
        if first.return_value != p.action {
            bail!(
                "{}: the program said {} ({}), expected {}",
                p.name,
                action_name(first.return_value),
                first.return_value,
                action_name(p.action)
            );
        }
        let mut kernel_ns = Vec::with_capacity(ROUNDS);
        let mut wall_ns = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let r = h.run(&p.frame, repeat)?;
            let wall = t.elapsed();
            // Already the per-run average (see the module docs).
            kernel_ns.push(r.duration.as_nanos() as f64);
            wall_ns.push(wall.as_nanos() as f64 / f64::from(repeat));
        }
        println!(
            "{:<38} {:>7} {:>11.0} {:>11.0} {:>10.2} {:>10.2}",
            p.name,
            action_name(p.action),
            min(&kernel_ns),
            median(&mut kernel_ns),
            min(&wall_ns),
            median(&mut wall_ns),
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let repeat = match std::env::args()
        .nth(1)
        .map(|a| a.replace('_', "").parse::<u32>())
    {
        None => 1_000_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: path_cost [REPEAT]  (REPEAT: runs per round, a positive u32)");
            return ExitCode::FAILURE;
        }
    };
    if let Some(reason) = privilege_problem() {
        eprintln!("path_cost needs root and bpffs ({reason}); run it with sudo -E");
        return ExitCode::FAILURE;
    }
    let Some(mut h) = Harness::start("path_cost", "cost") else {
        return ExitCode::FAILURE;
    };
    let result = measure(&mut h, repeat).context("measuring");
    drop(h); // removes the pin directory
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("path_cost: {e:#}");
            ExitCode::FAILURE
        }
    }
}
