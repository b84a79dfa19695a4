//! Clock discipline, modelled on chrony's `reference.c`: each update brings
//! an estimate of the clock's phase (from the sources' regressions, see
//! `regress.rs`) with its standard deviation, and possibly a frequency
//! estimate with its skew.
//!
//! - Frequency: the old and the new estimate are combined by their
//!   uncertainties (chrony's gain 3·old_skew² / (3·old_skew² + new_skew²));
//!   an estimate whose skew exceeds `max_update_skew` is ignored.
//! - Offset: removed by a temporary extra frequency (slew) whose duration
//!   is `correction_time_ratio · sd · interval / (2 · |offset|)`, between
//!   `MIN_SLEW_DURATION` and `MAX_SLEW_DURATION`, at most `max_slew`: an
//!   offset of the order of its noise is removed slowly (so the noise does
//!   not turn into frequency error), one of a hundred sd within a fraction
//!   of the interval. Offsets above `step_threshold` are stepped.
//!
//! Phase is offset + correction applied so far (`C(t)`): what the offset
//! would be had we never touched the clock.

use crate::filter::Projection;
use crate::packet::LeapIndicator;
use crate::time::{Frequency, NtpDuration, NtpInstant};
use serde::Serialize;

/// Shortest slew, seconds. chrony's is 1 s; 0.1 s removes the first
/// offset of a start (5 ms at 50000 ppm) before anyone reads the clock, and
/// a late end of the slew is made good (see `handle_timer`).
pub const MIN_SLEW_DURATION: f64 = 0.1;
/// A slew lasts at least this many times the recent lateness of its end
/// (chrony's MIN_SLEW_DURATION_EXCESS_RATIO): a late timer then costs at
/// most a fifth of the slew.
pub const SLEW_EXCESS_RATIO: f64 = 5.0;
/// How fast the remembered lateness fades per slew end.
const LATENESS_DECAY: f64 = 0.9;
/// Corrections smaller than this are not slewed back, seconds.
const NEGLIGIBLE: f64 = 1e-9;
/// Longest slew (chrony's MAX_SLEW_DURATION), seconds.
pub const MAX_SLEW_DURATION: f64 = 1e4;
/// Skew assumed before any frequency was measured: "rather bad" (chrony).
pub const INITIAL_SKEW: f64 = 1.0;
/// Skew assumed for a frequency restored from the drift file (which stores
/// no skew): trusted, but a measurement a few ppm off still moves it.
pub const RESTORED_SKEW: f64 = 5e-6;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DisciplineConfig {
    /// Offsets above this are stepped (if a step is allowed).
    pub step_threshold: NtpDuration,
    /// Steps allowed only during the first N clock updates; `None`: always.
    pub step_limit: Option<u32>,
    /// Offsets above this are refused; `None` disables the check.
    pub panic_threshold: Option<NtpDuration>,
    /// Allow one correction of any size as the very first update (ntpd -g).
    pub allow_panic_step_at_start: bool,
    /// Largest total frequency change requested (base + slew).
    pub max_slew: Frequency,
    /// Largest frequency estimate accepted for the clock's own error.
    pub max_frequency: Frequency,
    /// Frequency to start from (e.g. from a drift file).
    pub initial_frequency: Frequency,
    /// Frequency estimates with a larger skew are not used (chrony's
    /// maxupdateskew, 1000 ppm).
    pub max_update_skew: Frequency,
    /// chrony's corrtimeratio (3): an offset equal to its standard deviation
    /// takes this many update intervals / 2 to remove.
    pub correction_time_ratio: f64,
}

impl Default for DisciplineConfig {
    fn default() -> Self {
        DisciplineConfig {
            step_threshold: NtpDuration::from_seconds(0.128),
            step_limit: None,
            panic_threshold: Some(NtpDuration::from_seconds(1000.0)),
            allow_panic_step_at_start: false,
            max_slew: Frequency::from_ppm(83333.333),
            max_frequency: Frequency::from_ppm(500.0),
            initial_frequency: Frequency::ZERO,
            max_update_skew: Frequency::from_ppm(1000.0),
            correction_time_ratio: 3.0,
        }
    }
}

/// What the caller must do to the disciplined clock.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum ClockAction {
    /// Total frequency correction (long-term estimate plus any temporary slew);
    /// positive makes the clock run faster. May exceed the ±500 ppm of
    /// ADJ_FREQUENCY: split it into tick + frequency.
    SetFrequency(Frequency),
    /// Add this to the clock.
    Step(NtpDuration),
    /// Arm (or clear) the kernel leap second for the coming midnight.
    SetLeap(LeapIndicator),
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum UpdateOutcome {
    Slew {
        offset: NtpDuration,
        duration: NtpDuration,
    },
    Step {
        offset: NtpDuration,
    },
    /// Offset beyond the panic threshold; nothing done.
    PanicRefused {
        offset: NtpDuration,
    },
}

/// One clock update's input.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockEstimate {
    /// Estimated phase of the clock at the update time.
    pub phase: NtpDuration,
    /// Standard deviation of that estimate, seconds.
    pub offset_sd: f64,
    /// Frequency correction the clock needs and its skew (s/s), when the
    /// sources have a regression.
    pub frequency: Option<(Frequency, f64)>,
}

#[derive(Clone, Debug)]
pub struct Discipline {
    cfg: DisciplineConfig,
    corr_base: NtpDuration,
    corr_time: NtpInstant,
    /// Currently applied total frequency correction.
    rate: Frequency,
    /// Long-term frequency correction estimate.
    freq: Frequency,
    /// Its uncertainty (s/s).
    skew: f64,
    slew_end: Option<NtpInstant>,
    /// Decaying maximum of how late slews ended, seconds.
    lateness: f64,
    updates: u32,
    steps: u32,
    skew_refused: u32,
    last_update: Option<NtpInstant>,
    last_offset: NtpDuration,
}

impl Discipline {
    pub fn new(cfg: DisciplineConfig) -> Self {
        let f = cfg.initial_frequency;
        Discipline {
            cfg,
            corr_base: NtpDuration::ZERO,
            corr_time: NtpInstant::ZERO,
            rate: f,
            freq: f,
            skew: INITIAL_SKEW,
            slew_end: None,
            lateness: 0.0,
            updates: 0,
            steps: 0,
            skew_refused: 0,
            last_update: None,
            last_offset: NtpDuration::ZERO,
        }
    }

    pub fn config(&self) -> &DisciplineConfig {
        &self.cfg
    }

    /// The action that puts the clock at the initial frequency.
    pub fn initial_action(&self) -> ClockAction {
        ClockAction::SetFrequency(self.rate)
    }

    /// Replace the frequency estimate (drift file restore).
    pub fn set_frequency(&mut self, now: NtpInstant, freq: Frequency) -> ClockAction {
        let max = self.cfg.max_frequency;
        self.freq = freq.clamp(-max, max);
        self.skew = RESTORED_SKEW;
        self.set_rate(now, self.freq);
        self.slew_end = None;
        ClockAction::SetFrequency(self.rate)
    }

    /// Long-term frequency estimate (what a drift file stores).
    pub fn frequency(&self) -> Frequency {
        self.freq
    }

    /// Uncertainty of the frequency estimate (s/s).
    pub fn skew(&self) -> f64 {
        self.skew
    }

    /// Frequency estimates ignored for too large a skew.
    pub fn skew_refused(&self) -> u32 {
        self.skew_refused
    }

    /// Currently requested total frequency (estimate + slew).
    pub fn applied_frequency(&self) -> Frequency {
        self.rate
    }

    pub fn updates(&self) -> u32 {
        self.updates
    }

    pub fn steps(&self) -> u32 {
        self.steps
    }

    pub fn last_offset(&self) -> NtpDuration {
        self.last_offset
    }

    /// When the clock was last updated.
    pub fn last_update(&self) -> Option<NtpInstant> {
        self.last_update
    }

    /// Total correction applied to the clock up to `t`.
    pub fn correction(&self, t: NtpInstant) -> NtpDuration {
        self.corr_base + self.rate * (t - self.corr_time)
    }

    pub fn projection(&self, now: NtpInstant) -> Projection {
        Projection {
            now,
            correction: self.correction(now),
            freq: self.freq,
        }
    }

    fn set_rate(&mut self, now: NtpInstant, rate: Frequency) {
        self.corr_base = self.correction(now);
        self.corr_time = now;
        self.rate = rate;
    }

    /// When the current slew ends (call `handle_timer` then).
    pub fn next_timer(&self) -> Option<NtpInstant> {
        self.slew_end
    }

    /// Ends a finished slew. When the call comes late the slew ran on
    /// for that long: exactly that much extra correction is slewed back.
    pub fn handle_timer(&mut self, now: NtpInstant) -> Option<ClockAction> {
        match self.slew_end {
            Some(end) if end <= now => {
                let late = (now - end).to_seconds().max(0.0);
                self.lateness = (self.lateness * LATENESS_DECAY).max(late);
                let excess = (self.rate - self.freq) * (now - end);
                self.slew_end = None;
                self.set_rate(now, self.freq);
                if excess.to_seconds().abs() > NEGLIGIBLE {
                    self.start_slew(now, -excess, MIN_SLEW_DURATION);
                }
                Some(ClockAction::SetFrequency(self.rate))
            }
            _ => None,
        }
    }

    /// Slews `offset` out over `duration` (at least the shortest slew and
    /// five times the recent lateness), at most at `max_slew`; returns the
    /// duration used.
    fn start_slew(&mut self, now: NtpInstant, offset: NtpDuration, duration: f64) -> NtpDuration {
        let duration = duration
            .max(MIN_SLEW_DURATION)
            .max(SLEW_EXCESS_RATIO * self.lateness)
            .min(MAX_SLEW_DURATION);
        let o = offset.to_seconds();
        let max_slew = self.cfg.max_slew;
        let slew = (o / duration).clamp(
            (-max_slew - self.freq).ratio(),
            (max_slew - self.freq).ratio(),
        );
        let duration = NtpDuration::from_seconds(if slew != 0.0 { o / slew } else { 0.0 });
        self.set_rate(now, self.freq + Frequency::from_ratio(slew));
        self.slew_end = Some(now + duration);
        duration
    }

    /// chrony's get_clock_estimates: combine the expected (current) and the
    /// measured frequency by their skews.
    fn combine_frequency(&mut self, measured: Frequency, skew: f64) {
        if !skew.is_finite() || skew > self.cfg.max_update_skew.ratio() {
            self.skew_refused += 1;
            return;
        }
        let (old, s0) = (self.freq.ratio(), self.skew);
        let m = measured.ratio();
        let gain = (3.0 * s0 * s0 / (3.0 * s0 * s0 + skew * skew)).clamp(0.0, 1.0);
        let new = old + gain * (m - old);
        let extra = ((old - new).powi(2) * (1.0 - gain) + (m - new).powi(2) * gain).sqrt();
        self.skew = s0 + gain * (skew - s0) + extra;
        let max = self.cfg.max_frequency;
        self.freq = Frequency::from_ratio(new).clamp(-max, max);
    }

    /// One clock update at `now`.
    pub fn update(
        &mut self,
        now: NtpInstant,
        est: ClockEstimate,
    ) -> (UpdateOutcome, Vec<ClockAction>) {
        let offset = est.phase - self.correction(now);

        if let Some(panic) = self.cfg.panic_threshold {
            let one_shot = self.cfg.allow_panic_step_at_start && self.updates == 0;
            if offset.abs() > panic && !one_shot {
                return (UpdateOutcome::PanicRefused { offset }, Vec::new());
            }
        }

        if let Some((f, skew)) = est.frequency {
            self.combine_frequency(f, skew);
        }
        self.updates += 1;
        let interval = self
            .last_update
            .map(|t| (now - t).to_seconds())
            .unwrap_or(0.0)
            .max(0.0);
        self.last_update = Some(now);
        self.last_offset = offset;

        let step_allowed = self.cfg.step_limit.is_none_or(|n| self.updates <= n);
        if offset.abs() > self.cfg.step_threshold && step_allowed {
            self.steps += 1;
            self.set_rate(now, self.freq);
            self.corr_base += offset;
            self.slew_end = None;
            return (
                UpdateOutcome::Step { offset },
                vec![
                    ClockAction::Step(offset),
                    ClockAction::SetFrequency(self.rate),
                ],
            );
        }

        // chrony's correction rate: the area under the offset-versus-time
        // graph of the correction; the duration is that over the offset.
        let rate = self.cfg.correction_time_ratio * 0.5 * est.offset_sd.max(0.0) * interval;
        let o = offset.to_seconds();
        let wanted = if o.abs() < NEGLIGIBLE {
            MIN_SLEW_DURATION
        } else {
            rate / o.abs()
        };
        let duration = self.start_slew(now, offset, wanted);
        (
            UpdateOutcome::Slew { offset, duration },
            vec![ClockAction::SetFrequency(self.rate)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::regress::SourceStats;

    fn freq_of(actions: &[ClockAction]) -> f64 {
        actions
            .iter()
            .find_map(|a| match a {
                ClockAction::SetFrequency(f) => Some(f.ppm()),
                _ => None,
            })
            .unwrap()
    }

    fn at(s: f64) -> NtpInstant {
        NtpInstant::from_secs_f64(s)
    }

    fn dur(s: f64) -> NtpDuration {
        NtpDuration::from_seconds(s)
    }

    /// An offset-only estimate: `offset` measured at `now` on `d`'s clock.
    fn offset_only(d: &Discipline, now: NtpInstant, offset: f64, sd: f64) -> ClockEstimate {
        ClockEstimate {
            phase: dur(offset) + d.correction(now),
            offset_sd: sd,
            frequency: None,
        }
    }

    fn slew_duration(o: UpdateOutcome) -> f64 {
        match o {
            UpdateOutcome::Slew { duration, .. } => duration.to_seconds(),
            _ => panic!("{o:?}"),
        }
    }

    #[test]
    fn small_offset_is_slewed() {
        let mut d = Discipline::new(DisciplineConfig::default());
        let e = offset_only(&d, at(0.0), 0.01, 1e-5);
        let (o, a) = d.update(at(0.0), e);
        match o {
            UpdateOutcome::Slew { offset, duration } => {
                assert_eq!(offset, dur(0.01));
                assert!(duration > NtpDuration::ZERO);
                let want = 1e6 * 0.01 / duration.to_seconds();
                assert!(
                    (freq_of(&a) / want - 1.0).abs() < 1e-6,
                    "{} vs {want}",
                    freq_of(&a)
                );
            }
            _ => panic!("{o:?}"),
        }
        let end = d.next_timer().unwrap();
        assert_eq!(d.handle_timer(end - NtpDuration::from_seconds(0.1)), None);
        assert_eq!(
            d.handle_timer(end),
            Some(ClockAction::SetFrequency(Frequency::ZERO))
        );
        // After the slew the whole offset is accounted as correction.
        let later = end + NtpDuration::from_seconds(100.0);
        assert!((d.correction(later).to_seconds() - 0.01).abs() < 1e-9);
    }

    #[test]
    fn first_offset_is_removed_within_the_shortest_slew() {
        // Start-up: no update interval yet, so 5 ms go within the shortest
        // slew (0.1 s at 50000 ppm), not over a fraction of the poll.
        let mut d = Discipline::new(DisciplineConfig::default());
        let e = offset_only(&d, at(0.0), 0.005, 1e-5);
        let (o, a) = d.update(at(0.0), e);
        assert!((slew_duration(o) - MIN_SLEW_DURATION).abs() < 1e-6);
        assert!(
            (freq_of(&a) / 50000.0 - 1.0).abs() < 1e-6,
            "{}",
            freq_of(&a)
        );
    }

    #[test]
    fn a_late_end_of_slew_is_made_good() {
        let mut d = Discipline::new(DisciplineConfig::default());
        let e = offset_only(&d, at(0.0), 0.005, 1e-5);
        d.update(at(0.0), e);
        let end = d.next_timer().unwrap();
        // The timer fires 10 ms late: 50000 ppm ran on for 500 µs too long.
        let late = end + dur(0.01);
        assert!(d.handle_timer(late).is_some());
        assert!((d.correction(late).to_seconds() - 0.0055).abs() < 1e-8);
        // The excess goes back, over at least five times the lateness.
        let back = d.next_timer().expect("a slew back");
        assert!((back - late).to_seconds() >= 0.05 - 1e-9);
        assert!(d.handle_timer(back).is_some());
        assert!((d.correction(back).to_seconds() - 0.005).abs() < 1e-8);
        assert_eq!(d.next_timer(), None);
        assert_eq!(d.applied_frequency(), Frequency::ZERO);
    }

    #[test]
    fn large_offset_is_slewed_at_max_rate() {
        let mut d = Discipline::new(DisciplineConfig::default());
        let e = offset_only(&d, at(0.0), 0.1, 1e-5);
        let (o, a) = d.update(at(0.0), e);
        assert!(matches!(o, UpdateOutcome::Slew { .. }));
        assert!((freq_of(&a) - 83333.333).abs() < 1e-3);
    }

    #[test]
    fn correction_time_follows_offset_over_its_noise() {
        // corrtimeratio 3, update interval 64 s, sd 10 µs: an offset of one
        // sd takes 3 · 64 / 2 = 96 s to remove, of ten sd 9.6 s, of a
        // hundred 0.96 s.
        let sd = 1e-5;
        let run = |offset: f64| {
            let mut d = Discipline::new(DisciplineConfig::default());
            let e = offset_only(&d, at(0.0), 0.0, sd);
            d.update(at(0.0), e);
            let e = offset_only(&d, at(64.0), offset, sd);
            slew_duration(d.update(at(64.0), e).0)
        };
        let slow = run(sd);
        assert!((slow / 96.0 - 1.0).abs() < 1e-4, "1 sd: {slow} s");
        let fast = run(100.0 * sd);
        assert!((fast / 0.96 - 1.0).abs() < 1e-4, "100 sd: {fast} s");
        // 10 ms would take the shortest slew (0.1 s) but at most
        // max_slew (83333 ppm): 0.12 s.
        let fastest = run(1000.0 * sd);
        assert!((fastest / 0.12 - 1.0).abs() < 1e-4, "1000 sd: {fastest} s");
        let mid = run(10.0 * sd);
        assert!((mid / 9.6 - 1.0).abs() < 1e-4, "10 sd: {mid} s");
    }

    #[test]
    fn step_above_threshold() {
        let mut d = Discipline::new(DisciplineConfig::default());
        let (o, a) = d.update(at(0.0), offset_only(&d, at(0.0), 2.0, 1e-5));
        assert_eq!(o, UpdateOutcome::Step { offset: dur(2.0) });
        assert_eq!(a[0], ClockAction::Step(dur(2.0)));
        assert_eq!(d.correction(at(0.0)), dur(2.0));
        // The same clock measured again after the step has no offset left:
        // the phase (offset + correction) is unchanged.
        let e = ClockEstimate {
            phase: dur(2.0),
            offset_sd: 1e-5,
            frequency: None,
        };
        let (o, _) = d.update(at(2.0), e);
        assert!(matches!(o, UpdateOutcome::Slew { offset, .. } if offset.abs() < dur(1e-9)));
    }

    #[test]
    fn step_limit_and_panic() {
        let cfg = DisciplineConfig {
            step_limit: Some(1),
            ..Default::default()
        };
        let mut d = Discipline::new(cfg);
        d.update(at(0.0), offset_only(&d, at(0.0), 0.0, 1e-5));
        // Second update: steps no longer allowed, slew instead.
        let (o, _) = d.update(at(2.0), offset_only(&d, at(2.0), 1.0, 1e-5));
        assert!(matches!(o, UpdateOutcome::Slew { .. }), "{o:?}");

        let mut d = Discipline::new(DisciplineConfig::default());
        let (o, a) = d.update(at(0.0), offset_only(&d, at(0.0), 2000.0, 1e-5));
        assert_eq!(
            o,
            UpdateOutcome::PanicRefused {
                offset: dur(2000.0)
            }
        );
        assert!(a.is_empty());
        assert_eq!(d.updates(), 0);

        let cfg = DisciplineConfig {
            allow_panic_step_at_start: true,
            ..Default::default()
        };
        let mut d = Discipline::new(cfg);
        let (o, _) = d.update(at(0.0), offset_only(&d, at(0.0), 2000.0, 1e-5));
        assert_eq!(
            o,
            UpdateOutcome::Step {
                offset: dur(2000.0)
            }
        );
        // One-shot: a later big offset is refused again.
        let (o, _) = d.update(at(10.0), offset_only(&d, at(10.0), 5000.0, 1e-5));
        assert!(matches!(o, UpdateOutcome::PanicRefused { .. }));
    }

    /// Closed loop: a clock `err_ppm` off, measured every `poll` seconds
    /// with `noise` (deterministic, ±), through one source's regression.
    fn closed_loop(d: &mut Discipline, stats: &mut SourceStats, err_ppm: f64, updates: usize) {
        let poll = 16.0;
        for i in 0..updates {
            let t = i as f64 * poll;
            let now = at(t);
            let _ = d.handle_timer(now);
            let noise = 2e-6 * (((i * 7919) % 13) as f64 / 6.0 - 1.0);
            // The clock loses err_ppm; the correction applied so far makes
            // up for part of it.
            let offset = -err_ppm * 1e-6 * t - d.correction(now).to_seconds() + noise;
            let phase = dur(offset) + d.correction(now);
            stats.add(now, phase, dur(1e-3), dur(0.0), dur(1e-9));
            let est = match stats.estimate() {
                Some(e) => ClockEstimate {
                    phase: e.phase_at(now),
                    offset_sd: e.offset_sd,
                    frequency: Some((e.frequency, e.skew)),
                },
                None => ClockEstimate {
                    phase,
                    offset_sd: 2e-6,
                    frequency: None,
                },
            };
            d.update(now, est);
        }
    }

    #[test]
    fn a_frequency_error_is_learnt() {
        // A clock 50 ppm slow: within 12 updates (192 s) the estimate is
        // within 0.5 ppm, within 40 within 0.05 ppm.
        let mut d = Discipline::new(DisciplineConfig::default());
        let mut stats = SourceStats::new();
        closed_loop(&mut d, &mut stats, 50.0, 12);
        let f = d.frequency().ppm();
        assert!((f + 50.0).abs() < 0.5, "after 12 updates: {f} ppm");
        closed_loop(&mut d, &mut stats, 50.0, 40);
        let f = d.frequency().ppm();
        assert!((f + 50.0).abs() < 0.05, "after 40 updates: {f} ppm");
        assert!(d.skew() < 0.1e-6, "skew {}", d.skew());
        let restored = d.set_frequency(at(2000.0), Frequency::from_ppm(12.5));
        assert!(matches!(restored, ClockAction::SetFrequency(f) if (f.ppm() - 12.5).abs() < 1e-9));
        assert!((d.frequency().ppm() - 12.5).abs() < 1e-9);
    }

    #[test]
    fn frequencies_are_combined_by_their_skews() {
        let mut d = Discipline::new(DisciplineConfig::default());
        // Nothing known yet (skew 1): the first good estimate is taken
        // almost whole.
        let mut e = offset_only(&d, at(0.0), 0.0, 1e-6);
        e.frequency = Some((Frequency::from_ppm(10.0), 1e-6));
        d.update(at(0.0), e);
        assert!((d.frequency().ppm() - 10.0).abs() < 1e-6);
        // A second estimate as sure as the first (skew 1 ppm, the first's
        // skew now ~1 ppm): gain 3/4, and the disagreement widens the skew.
        let mut e = offset_only(&d, at(16.0), 0.0, 1e-6);
        e.frequency = Some((Frequency::from_ppm(14.0), 1e-6));
        let before = d.skew();
        d.update(at(16.0), e);
        let gain = 3.0 * before * before / (3.0 * before * before + 1e-12);
        let want = 10.0 + gain * 4.0;
        assert!((gain - 0.75).abs() < 1e-3);
        let got = d.frequency().ppm();
        assert!((got - want).abs() < 1e-6, "{got} want {want}");
        assert!(d.skew() > 1e-6);
        // An estimate 100 ppm off but with a skew of 100 ppm (~40 times
        // the current one) moves it by less than 1 % of the difference.
        let f = d.frequency().ppm();
        let mut e = offset_only(&d, at(32.0), 0.0, 1e-6);
        e.frequency = Some((Frequency::from_ppm(f + 100.0), 100e-6));
        d.update(at(32.0), e);
        let moved = d.frequency().ppm() - f;
        assert!(moved > 0.0 && moved < 1.0, "moved {moved} ppm");
    }

    #[test]
    fn a_frequency_with_too_large_a_skew_is_ignored() {
        let mut d = Discipline::new(DisciplineConfig::default());
        let mut e = offset_only(&d, at(0.0), 0.0, 1e-6);
        // 400 ppm off, skew 2000 ppm (> max_update_skew 1000 ppm): even with
        // nothing known (skew 1) the gain would be ~1; the gate refuses it.
        e.frequency = Some((Frequency::from_ppm(400.0), 2000e-6));
        d.update(at(0.0), e);
        assert_eq!(d.frequency(), Frequency::ZERO);
        assert_eq!(d.skew_refused(), 1);
        assert_eq!(d.skew(), INITIAL_SKEW);
        // Just under the gate it is used.
        let mut e = offset_only(&d, at(16.0), 0.0, 1e-6);
        e.frequency = Some((Frequency::from_ppm(400.0), 900e-6));
        d.update(at(16.0), e);
        assert!(d.frequency().ppm() > 300.0, "{}", d.frequency().ppm());
        assert_eq!(d.skew_refused(), 1);
    }
}
