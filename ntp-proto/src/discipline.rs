//! Clock discipline, modelled on chrony: the frequency of the local clock is
//! estimated by weighted linear regression over recent offset samples, and the
//! current offset is removed by a temporary extra frequency (slew) for a computed
//! duration, or by a step when it is large.
//!
//! Regression works on *phase*: offset + correction applied so far (`C(t)`). The
//! phase is what the offset would be had we never touched the clock, so it is a
//! straight line whose slope is the frequency correction the clock needs.
//! The regression's arithmetic is in `f64` seconds since the caller's
//! monotonic origin; everything in and out is typed.

use crate::filter::Projection;
use crate::packet::LeapIndicator;
use crate::time::{Frequency, NtpDuration, NtpInstant};
use serde::Serialize;

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
    /// Samples kept for the frequency regression.
    pub max_samples: usize,
    /// Slew duration relative to the interval between updates (chrony's
    /// corrtimeratio idea: longer slews favour frequency over time accuracy).
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
            max_samples: 16,
            correction_time_ratio: 0.25,
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

#[derive(Clone, Copy, Debug)]
struct Point {
    time: f64,
    phase: f64,
    var: f64,
}

struct Fit {
    slope: f64,
    tm: f64,
    pm: f64,
}

impl Fit {
    fn at(&self, t: f64) -> f64 {
        self.pm + self.slope * (t - self.tm)
    }
}

/// Weighted least squares line through the phases; with too little data the
/// slope falls back to `freq`.
fn fit(points: &[Point], freq: f64, max_freq: f64) -> Option<Fit> {
    let n = points.len();
    if n == 0 {
        return None;
    }
    let w: Vec<f64> = points.iter().map(|p| 1.0 / p.var.max(1e-18)).collect();
    let ws: f64 = w.iter().sum();
    let tm = points.iter().zip(&w).map(|(p, w)| w * p.time).sum::<f64>() / ws;
    let pm = points.iter().zip(&w).map(|(p, w)| w * p.phase).sum::<f64>() / ws;
    let mut stt = 0.0;
    let mut stp = 0.0;
    for (p, w) in points.iter().zip(&w) {
        stt += w * (p.time - tm).powi(2);
        stp += w * (p.time - tm) * (p.phase - pm);
    }
    let span = points[n - 1].time - points[0].time;
    let slope = if n >= 3 && span > 1.0 && stt > 0.0 {
        (stp / stt).clamp(-max_freq, max_freq)
    } else {
        freq
    };
    Some(Fit { slope, tm, pm })
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
    slew_end: Option<NtpInstant>,
    points: Vec<Point>,
    updates: u32,
    steps: u32,
    last_update: Option<NtpInstant>,
    last_offset: NtpDuration,
}

fn secs(t: NtpInstant) -> f64 {
    t.as_secs_f64()
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
            slew_end: None,
            points: Vec::new(),
            updates: 0,
            steps: 0,
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
        self.points.clear();
        self.set_rate(now, self.freq);
        self.slew_end = None;
        ClockAction::SetFrequency(self.rate)
    }

    /// Long-term frequency estimate (what a drift file stores).
    pub fn frequency(&self) -> Frequency {
        self.freq
    }

    /// Currently requested total frequency (estimate + slew).
    pub fn applied_frequency(&self) -> Frequency {
        self.rate
    }

    /// Samples currently used by the frequency regression.
    pub fn sample_count(&self) -> usize {
        self.points.len()
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

    fn regression(&self, now: NtpInstant) -> Option<(f64, f64)> {
        let pts = &self.points[..];
        fit(pts, self.freq.ratio(), self.cfg.max_frequency.ratio())
            .map(|f| (f.slope, f.at(secs(now))))
    }

    /// Drops the oldest samples while the residuals of the fit show too few sign
    /// runs (chrony's runs test): the clock wandered and old samples no longer
    /// fit a straight line.
    fn trim_by_runs(&mut self) {
        loop {
            let n = self.points.len();
            if n < 8 {
                return;
            }
            let pts = &self.points[..];
            let Some(f) = fit(pts, self.freq.ratio(), self.cfg.max_frequency.ratio()) else {
                return;
            };
            let signs: Vec<bool> = pts.iter().map(|p| p.phase >= f.at(p.time)).collect();
            let runs = 1 + signs.windows(2).filter(|w| w[0] != w[1]).count();
            let n1 = signs.iter().filter(|&&x| x).count() as f64;
            let n2 = n as f64 - n1;
            let nf = n as f64;
            let mean = 1.0 + 2.0 * n1 * n2 / nf;
            let var = 2.0 * n1 * n2 * (2.0 * n1 * n2 - nf) / (nf * nf * (nf - 1.0));
            if (runs as f64) >= mean - 1.645 * var.max(0.0).sqrt() {
                return;
            }
            let drop = (n / 4).max(1);
            for _ in 0..drop {
                self.points.remove(0);
            }
        }
    }

    /// Forget the regression samples (their source changed), keep the frequency.
    pub fn reset_samples(&mut self) {
        self.points.clear();
    }

    /// Feed one measurement: `phase` is the offset measured at `now` plus
    /// `correction(now)`; `var` its error variance (s^2) used as weight;
    /// `bias` is added to the estimated offset only (e.g. other sources'
    /// contribution to the combined offset), not to the regression.
    pub fn update(
        &mut self,
        now: NtpInstant,
        phase: NtpDuration,
        var: f64,
        bias: NtpDuration,
    ) -> (UpdateOutcome, Vec<ClockAction>) {
        self.points.push(Point {
            time: secs(now),
            phase: phase.to_seconds(),
            var,
        });
        while self.points.len() > self.cfg.max_samples.max(3) {
            self.points.remove(0);
        }
        self.trim_by_runs();
        let (b, p) = self
            .regression(now)
            .unwrap_or((self.freq.ratio(), phase.to_seconds()));
        let offset = NtpDuration::from_seconds(p) - self.correction(now) + bias;

        if let Some(panic) = self.cfg.panic_threshold {
            let one_shot = self.cfg.allow_panic_step_at_start && self.updates == 0;
            if offset.abs() > panic && !one_shot {
                self.points.pop();
                return (UpdateOutcome::PanicRefused { offset }, Vec::new());
            }
        }

        self.freq = Frequency::from_ratio(b);
        self.updates += 1;
        let interval = self
            .last_update
            .map(|t| (now - t).to_seconds())
            .unwrap_or(2.0)
            .max(1.0);
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

        let max_slew = self.cfg.max_slew;
        let wanted = (interval * self.cfg.correction_time_ratio).max(1.0);
        let slew = (offset.to_seconds() / wanted).clamp(
            (-max_slew - self.freq).ratio(),
            (max_slew - self.freq).ratio(),
        );
        let duration = if slew != 0.0 {
            offset.to_seconds() / slew
        } else {
            0.0
        };
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
