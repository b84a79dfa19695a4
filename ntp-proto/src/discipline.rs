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

/// Shortest slew (chrony's MIN_SLEW_DURATION), seconds.
pub const MIN_SLEW_DURATION: f64 = 1.0;
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

    /// Ends a finished slew.
    pub fn handle_timer(&mut self, now: NtpInstant) -> Option<ClockAction> {
        match self.slew_end {
            Some(end) if end <= now => {
                self.slew_end = None;
                self.set_rate(now, self.freq);
                Some(ClockAction::SetFrequency(self.rate))
            }
            _ => None,
        }
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
        let duration = if o.abs() < 1e-12 {
            MIN_SLEW_DURATION
        } else {
            (rate / o.abs()).clamp(MIN_SLEW_DURATION, MAX_SLEW_DURATION)
        };
        let max_slew = self.cfg.max_slew;
        let slew = (o / duration).clamp(
            (-max_slew - self.freq).ratio(),
            (max_slew - self.freq).ratio(),
        );
        let duration = if slew != 0.0 { o / slew } else { 0.0 };
        let duration = NtpDuration::from_seconds(duration);
        self.set_rate(now, self.freq + Frequency::from_ratio(slew));
        self.slew_end = Some(now + duration);
        (
            UpdateOutcome::Slew { offset, duration },
            vec![ClockAction::SetFrequency(self.rate)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn small_offset_is_slewed() {
        let mut d = Discipline::new(DisciplineConfig::default());
        let (o, a) = d.update(at(0.0), dur(0.01), 1e-10, dur(0.0));
        match o {
            UpdateOutcome::Slew { offset, duration } => {
                assert_eq!(offset, dur(0.01));
                assert!(duration > NtpDuration::ZERO);
                assert!((freq_of(&a) - 1e6 * 0.01 / duration.to_seconds()).abs() < 1e-3);
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
    fn large_offset_is_slewed_at_max_rate() {
        let mut d = Discipline::new(DisciplineConfig::default());
        let (o, a) = d.update(at(0.0), dur(0.1), 1e-10, dur(0.0));
        assert!(matches!(o, UpdateOutcome::Slew { .. }));
        assert!((freq_of(&a) - 83333.333).abs() < 1e-3);
    }

    #[test]
    fn step_above_threshold() {
        let mut d = Discipline::new(DisciplineConfig::default());
        let (o, a) = d.update(at(0.0), dur(2.0), 1e-10, dur(0.0));
        assert_eq!(o, UpdateOutcome::Step { offset: dur(2.0) });
        assert_eq!(a[0], ClockAction::Step(dur(2.0)));
        assert_eq!(d.correction(at(0.0)), dur(2.0));
        // The same clock measured again after the step has no offset left.
        let (o, _) = d.update(at(2.0), dur(2.0), 1e-10, dur(0.0));
        assert!(matches!(o, UpdateOutcome::Slew { offset, .. } if offset.abs() < dur(1e-9)));
    }

    #[test]
    fn step_limit_and_panic() {
        let cfg = DisciplineConfig {
            step_limit: Some(1),
            ..Default::default()
        };
        let mut d = Discipline::new(cfg);
        d.update(at(0.0), dur(0.0), 1e-10, dur(0.0));
        // Second update: steps no longer allowed, slew instead.
        let (o, _) = d.update(at(2.0), dur(1.0), 1e-10, dur(0.0));
        assert!(matches!(o, UpdateOutcome::Slew { .. }), "{o:?}");

        let mut d = Discipline::new(DisciplineConfig::default());
        let (o, a) = d.update(at(0.0), dur(2000.0), 1e-10, dur(0.0));
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
        let (o, _) = d.update(at(0.0), dur(2000.0), 1e-10, dur(0.0));
        assert_eq!(
            o,
            UpdateOutcome::Step {
                offset: dur(2000.0)
            }
        );
        // One-shot: a later big offset is refused again.
        let (o, _) = d.update(at(10.0), dur(5000.0), 1e-10, dur(0.0));
        assert!(matches!(o, UpdateOutcome::PanicRefused { .. }));
    }

    #[test]
    fn frequency_from_regression() {
        // A clock running 50 ppm fast: phase falls 50 us per second.
        let mut d = Discipline::new(DisciplineConfig::default());
        for i in 0..10 {
            let t = i as f64 * 16.0;
            // measured offset = phase - correction applied so far
            let phase = -50e-6 * t;
            d.update(at(t), dur(phase), 1e-10, dur(0.0));
        }
        assert!(
            (d.frequency().ppm() + 50.0).abs() < 1e-3,
            "{}",
            d.frequency().ppm()
        );
        let restored = d.set_frequency(at(200.0), Frequency::from_ppm(12.5));
        assert!(matches!(restored, ClockAction::SetFrequency(f) if (f.ppm() - 12.5).abs() < 1e-9));
        assert!((d.frequency().ppm() - 12.5).abs() < 1e-9);
    }
}
