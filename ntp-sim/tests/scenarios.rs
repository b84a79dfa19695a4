//! Acceptance: closed-loop simulations of the real core (see `ntp_sim`).
//! Thresholds from chrony's simulation suite (clknetsim defaults: time limit
//! 1 ms, frequency limit 500 ppm, RMS 0.3 ms, frequency RMS 1e-5, sync <= 210 s).

use ntp_proto::{KissCode, KodState, LeapIndicator, UnsyncReason};
use ntp_sim::{run, ClientReport, Report, Scenario, StampingSpec};

fn client(r: &Report, i: usize) -> &ClientReport {
    print!("{}", r.summary());
    &r.clients[i]
}

fn assert_chrony_default(c: &ClientReport) {
    let sync = c.sync_time.expect("never synchronised");
    assert!(sync <= 210.0, "sync time {sync}");
    assert!(
        c.max_error_after_sync <= 1e-3,
        "max {}",
        c.max_error_after_sync
    );
    assert!(
        c.rms_error_after_sync <= 3e-4,
        "rms {}",
        c.rms_error_after_sync
    );
    assert!(
        c.freq_rms_after_sync <= 1e-5,
        "freq rms {}",
        c.freq_rms_after_sync
    );
    assert!(c.synchronized_at_end);
    assert_eq!(c.steps, 0);
}

#[test]
fn chrony_default_scenario() {
    let r = run(&Scenario::chrony_default(1));
    assert_chrony_default(client(&r, 0));
}

#[test]
fn chrony_default_scenario_several_seeds() {
    for seed in 2..=6 {
        let r = run(&Scenario::chrony_default(seed));
        assert_chrony_default(client(&r, 0));
    }
}

/// chrony's published mean RMS over 100 runs (µs) and its spread: the
/// mean over `JITTER_SEEDS` seeds must be at or below chrony's mean, and
/// every single seed below chrony's mean + 3 spreads (one run is noisy;
/// chrony's own runs vary by the ± figure).
const JITTER_SEEDS: u64 = 10;

fn assert_jitter_vs_chrony(jitter: f64, chrony_mean_us: f64, chrony_spread_us: f64) {
    let mut rms = Vec::new();
    for seed in 1..=JITTER_SEEDS {
        let r = run(&Scenario::with_jitter(seed, jitter));
        let c = client(&r, 0);
        assert!(c.sync_time.is_some(), "seed {seed} never synchronised");
        assert!(c.synchronized_at_end, "seed {seed}");
        rms.push(c.rms_error_after_sync * 1e6);
    }
    let mean = rms.iter().sum::<f64>() / rms.len() as f64;
    println!("jitter {jitter}: RMS per seed {rms:.0?} µs, mean {mean:.1} µs (chrony {chrony_mean_us} ± {chrony_spread_us})");
    assert!(
        mean <= chrony_mean_us,
        "mean RMS {mean:.1} µs over {JITTER_SEEDS} seeds > chrony's {chrony_mean_us} µs: {rms:.0?}"
    );
    let bound = chrony_mean_us + 3.0 * chrony_spread_us;
    for (i, r) in rms.iter().enumerate() {
        assert!(*r <= bound, "seed {}: RMS {r:.0} µs > {bound} µs", i + 1);
    }
}

#[test]
fn jitter_10us() {
    assert_jitter_vs_chrony(1e-5, 35.0, 8.0);
}

#[test]
fn jitter_1ms() {
    assert_jitter_vs_chrony(1e-3, 475.0, 93.0);
}

#[test]
fn jitter_10ms() {
    assert_jitter_vs_chrony(1e-2, 1603.0, 447.0);
}

#[test]
fn falseticker_is_rejected() {
    let r = run(&Scenario::falseticker(1));
    let c = client(&r, 0);
    assert_eq!(c.sources[2].tally, 'x');
    assert!(c.sources[..2].iter().any(|s| s.tally == '*'));
    assert!(c.sources[..2]
        .iter()
        .all(|s| s.tally == '*' || s.tally == '+'));
    assert!(c.synchronized_at_end);
    assert!(c.sync_time.is_some_and(|t| t <= 210.0));
    assert!(
        c.rms_error_after_sync <= 3e-4,
        "rms {}",
        c.rms_error_after_sync
    );
    assert!(c.final_error.abs() < 1e-3);
}

#[test]
fn silent_server_with_backup() {
    let r = run(&Scenario::silent(1, true));
    let c = client(&r, 0);
    let s = &c.sources[0];
    assert_eq!(s.reach, 0);
    assert_eq!(s.tally, ' ');
    assert_eq!(s.state, "unreachable");
    assert_eq!(c.sources[1].tally, '*');
    assert!(c.synchronized_at_end);
    assert!(c.max_error_after_sync <= 1e-3);
    assert!(
        c.rms_error_after_sync <= 3e-4,
        "rms {}",
        c.rms_error_after_sync
    );
}

#[test]
fn silent_only_server() {
    let r = run(&Scenario::silent(1, false));
    let c = client(&r, 0);
    assert!(c.ever_synchronized);
    assert!(!c.synchronized_at_end);
    assert_eq!(c.status.reason_kind, Some(UnsyncReason::NoReachableSources));
    assert_eq!(c.status.reason.as_deref(), Some("no reachable sources"));
    assert_eq!(c.sources[0].reach, 0);
    assert_eq!(c.sources[0].state, "unreachable");
}

#[test]
fn kod_rate_backs_off() {
    let r = run(&Scenario::kod_rate(1));
    let c = client(&r, 0);
    let s = &c.sources[0];
    assert!(matches!(s.kod, KodState::RateLimited { min_poll, .. } if min_poll >= 8));
    assert!(s.poll >= 256, "poll {}", s.poll);
    assert!(s.rejects.kod >= 1);
    assert!(c.synchronized_at_end);
    assert!(c.sync_time.is_some());
}

#[test]
fn kod_deny_only_server() {
    let r = run(&Scenario::kod_deny(1, false));
    let c = client(&r, 0);
    let s = &c.sources[0];
    assert_eq!(s.kod, KodState::Denied(KissCode::Deny));
    assert_eq!(s.state, "unreachable: KoD DENY");
    assert_eq!(s.tally, ' ');
    assert!(!c.synchronized_at_end);
    assert_eq!(
        c.status.reason_kind,
        Some(UnsyncReason::SourcesRefuseService(KissCode::Deny))
    );
    assert_eq!(
        c.status.reason.as_deref(),
        Some("source refuses service (KoD DENY)")
    );
}

#[test]
fn kod_deny_with_backup() {
    let r = run(&Scenario::kod_deny(1, true));
    let c = client(&r, 0);
    assert_eq!(c.sources[0].state, "unreachable: KoD DENY");
    assert_eq!(c.sources[1].tally, '*');
    assert!(c.synchronized_at_end);
    assert!(c.rms_error_after_sync <= 3e-4);
}

#[test]
fn leap_second_inserted() {
    let sc = Scenario::leap_second(1);
    let leap_at = sc.leap_at.unwrap();
    let r = run(&sc);
    let c = client(&r, 0);
    let armed = c
        .leap_actions
        .iter()
        .find(|(_, l)| *l == LeapIndicator::InsertSecond)
        .expect("SetLeap(insert) not issued");
    assert!(armed.0 < leap_at && armed.0 > leap_at - sc.leap_announce);
    assert!(c
        .leap_actions
        .iter()
        .any(|(t, l)| *t > leap_at && *l == LeapIndicator::NoWarning));
    assert_eq!(c.leaps_applied, 1);
    assert!(c.sync_time.is_some_and(|t| t <= 210.0));
    assert!(
        c.max_error_after_sync <= 1e-3,
        "max {}",
        c.max_error_after_sync
    );
    assert!(c.synchronized_at_end);
    assert_eq!(c.status.leap, LeapIndicator::NoWarning);
}

#[test]
fn two_second_offset_steps_once() {
    let r = run(&Scenario::initial_offset(1, 2.0, false));
    let c = client(&r, 0);
    assert_eq!(c.steps, 1);
    assert!((c.step_offsets[0] + 2.0).abs() < 0.01);
    assert!(c.sync_time.is_some_and(|t| t <= 210.0));
    assert!(c.max_error_after_sync <= 1e-3);
    assert!(c.rms_error_after_sync <= 3e-4);
    assert_eq!(c.status.clock_steps, 1);
}

#[test]
fn panic_offset_refused() {
    let r = run(&Scenario::initial_offset(1, 2000.0, false));
    let c = client(&r, 0);
    assert_eq!(c.steps, 0);
    assert!(!c.synchronized_at_end);
    assert!(!c.ever_synchronized);
    assert!(matches!(
        c.status.reason_kind,
        Some(UnsyncReason::PanicThreshold { offset }) if offset < -1999.0
    ));
    assert!(c
        .status
        .reason
        .as_ref()
        .unwrap()
        .contains("panic threshold"));
}

#[test]
fn panic_offset_stepped_when_allowed() {
    let r = run(&Scenario::initial_offset(1, 2000.0, true));
    let c = client(&r, 0);
    assert_eq!(c.steps, 1);
    assert!(c.synchronized_at_end);
    assert!(c.sync_time.is_some_and(|t| t <= 210.0));
    assert!(c.rms_error_after_sync <= 3e-4);
}

#[test]
fn symmetric_peers() {
    let r = run(&Scenario::symmetric_peers(1));
    let a = client(&r, 0);
    let b = client(&r, 1);
    assert_eq!(a.sources[0].kind, 'u');
    assert_eq!(a.sources[0].tally, '*');
    assert_eq!(a.sources[1].kind, 's');
    // B is synchronised to A: A must not use it (loop).
    assert!(a.sources[1].rejects.loop_detected > 0);
    assert_eq!(b.sources[0].kind, 's');
    assert_eq!(b.sources[0].tally, '*');
    assert_eq!(b.status.stratum, 3);
    assert!(b.synchronized_at_end);
    assert!(b.sync_time.is_some_and(|t| t <= 300.0));
    assert!(
        b.rms_error_after_sync <= 5e-4,
        "rms {}",
        b.rms_error_after_sync
    );
    assert!(a.rms_error_after_sync <= 3e-4);
}

#[test]
fn two_disagreeing_servers_have_no_majority() {
    let mut sc = Scenario::falseticker(1);
    sc.servers.remove(0);
    sc.clients[0].targets.pop();
    let r = run(&sc);
    let c = client(&r, 0);
    assert!(!c.synchronized_at_end);
    assert_eq!(c.status.reason_kind, Some(UnsyncReason::NoMajority));
    assert!(c.sources.iter().all(|s| s.tally == 'x'));
}

#[test]
fn runs_across_2036_era_rollover() {
    let r = run(&Scenario::era_rollover(1));
    assert_chrony_default(client(&r, 0));
}

/// Mean error after sync, from the kept series.
fn mean_error_after_sync(c: &ClientReport) -> f64 {
    let sync = c.sync_time.expect("never synchronised");
    let after: Vec<f64> = c
        .series
        .iter()
        .filter(|p| p.t >= sync)
        .map(|p| p.error)
        .collect();
    after.iter().sum::<f64>() / after.len() as f64
}

/// What kernel timestamps buy on a quiet LAN: a T1 read 150 µs before the
/// request leaves and a T4 read on average 20 µs after the reply arrived
/// bias every offset by (150 − 20) / 2 = 65 µs, which no discipline can
/// see; stamped at the send and at the arrival the bias is gone.
#[test]
fn kernel_timestamps_remove_the_bias_of_late_user_stamps() {
    let run_with = |seed, kernel| {
        let mut sc = Scenario::with_jitter(seed, 1e-5);
        sc.duration = 3600.0;
        sc.keep_series = true;
        sc.stamping = StampingSpec {
            send_setup: 150e-6,
            wakeup: 20e-6,
            kernel,
        };
        run(&sc)
    };
    for seed in 1..=5 {
        let user = run_with(seed, false);
        let kernel = run_with(seed, true);
        let (u, k) = (client(&user, 0), client(&kernel, 0));
        let (mu, mk) = (mean_error_after_sync(u), mean_error_after_sync(k));
        assert!(
            (mu - 65e-6).abs() < 20e-6,
            "seed {seed}: user-stamp bias {mu}"
        );
        assert!(mk.abs() < 10e-6, "seed {seed}: kernel-stamp bias {mk}");
        assert!(
            k.rms_error_after_sync < 0.6 * u.rms_error_after_sync,
            "seed {seed}: RMS kernel {} vs user {}",
            k.rms_error_after_sync,
            u.rms_error_after_sync
        );
    }
}

#[test]
fn startup_settles_fast_without_overshoot() {
    // Settled: |error| within max(1 ms, 5 × jitter) = 1 ms from then on.
    // chronyd with iburst makes its first update on its third sample
    // (about 4 s) and slews 5 ms within its 1 s shortest slew: the agent
    // must be settled by 8 s. From then to 120 s |error| stays within
    // 40 µs, and the overshoot (error of the other sign than the initial
    // +5 ms) within twice the steady-state (120 s to the end) largest
    // |error| or twice one exchange's offset error sd (25 µs / √2 here),
    // whichever is larger: the simulated steady state can be quieter than
    // a single exchange, the bench's never is.
    let exchange_sd = 25e-6 / 2f64.sqrt();
    for seed in 1..=5 {
        let r = run(&Scenario::startup(seed));
        let c = client(&r, 0);
        let s = &c.series;
        let settled = s
            .iter()
            .rposition(|p| p.error.abs() > 1e-3)
            .map_or(0.0, |i| s[i + 1].t);
        let early: Vec<f64> = s
            .iter()
            .filter(|p| p.t >= settled && p.t < 120.0)
            .map(|p| p.error)
            .collect();
        let early_max = early.iter().map(|e| e.abs()).fold(0.0, f64::max);
        let overshoot = early.iter().map(|e| -e).fold(0.0, f64::max);
        let steady = s
            .iter()
            .filter(|p| p.t >= 120.0)
            .map(|p| p.error.abs())
            .fold(0.0, f64::max);
        println!(
            "seed {seed}: settled at {settled} s; to 120 s max |error| {:.1} µs, overshoot {:.1} µs; after: max {:.1} µs",
            early_max * 1e6,
            overshoot * 1e6,
            steady * 1e6
        );
        assert!(settled <= 8.0, "seed {seed}: settled at {settled} s");
        assert!(
            early_max <= 40e-6,
            "seed {seed}: max |error| {:.1} µs before 120 s",
            early_max * 1e6
        );
        assert!(
            overshoot <= 2.0 * steady.max(exchange_sd),
            "seed {seed}: overshoot {:.1} µs > 2 × max(steady {:.1} µs, exchange sd)",
            overshoot * 1e6,
            steady * 1e6
        );
        assert_eq!(c.steps, 0);
    }
}
