//! Clock discipline, modelled on chrony: the frequency of the local clock is
//! estimated by weighted linear regression over recent offset samples, and the
//! current offset is removed by a temporary extra frequency (slew) for a computed
//! duration, or by a step when it is large.
//!
//! Regression works on *phase*: offset + correction applied so far (`C(t)`). The
//! phase is what the offset would be had we never touched the clock, so it is a
//! straight line whose slope is the frequency correction the clock needs.
//! Times are monotonic seconds (`f64`) as passed in by the caller.

use crate::filter::Projection;
use crate::packet::LeapIndicator;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DisciplineConfig {
    /// Offsets above this are stepped (if a step is allowed), seconds.
    pub step_threshold: f64,
    /// Steps allowed only during the first N clock updates; `None`: always.
    pub step_limit: Option<u32>,
    /// Offsets above this are refused; `None` disables the check.
    pub panic_threshold: Option<f64>,
    /// Allow one correction of any size as the very first update (ntpd -g).
    pub allow_panic_step_at_start: bool,
    /// Largest total frequency change requested (base + slew), ppm.
    pub max_slew_ppm: f64,
    /// Largest frequency estimate accepted for the clock's own error, ppm.
    pub max_frequency_ppm: f64,
    /// Frequency to start from (e.g. from a drift file), ppm.
    pub initial_frequency_ppm: f64,
    /// Samples kept for the frequency regression.
    pub max_samples: usize,
    /// Slew duration relative to the interval between updates (chrony's
    /// corrtimeratio idea: longer slews favour frequency over time accuracy).
    pub correction_time_ratio: f64,
}

impl Default for DisciplineConfig {
    fn default() -> Self {
        DisciplineConfig {
            step_threshold: 0.128,
            step_limit: None,
            panic_threshold: Some(1000.0),
            allow_panic_step_at_start: false,
            max_slew_ppm: 83333.333,
            max_frequency_ppm: 500.0,
            initial_frequency_ppm: 0.0,
            max_samples: 16,
            correction_time_ratio: 0.25,
        }
    }
}

/// What the caller must do to the disciplined clock.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum ClockAction {
    /// Total frequency correction (long-term estimate plus any temporary slew),
    /// ppm; positive makes the clock run faster. May exceed the ±500 ppm of
    /// ADJ_FREQUENCY: split it into tick + frequency.
    SetFrequency { ppm: f64 },
    /// Add this many seconds to the clock.
    Step { offset_seconds: f64 },
    /// Arm (or clear) the kernel leap second for the coming midnight.
    SetLeap(LeapIndicator),
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum UpdateOutcome {
    Slew {
        offset: f64,
        duration: f64,
    },
    Step {
        offset: f64,
    },
    /// Offset beyond the panic threshold; nothing done.
    PanicRefused {
        offset: f64,
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
    corr_base: f64,
    corr_time: f64,
    /// Currently applied total frequency correction, s/s.
    rate: f64,
    /// Long-term frequency correction estimate, s/s.
    freq: f64,
    slew_end: Option<f64>,
    points: Vec<Point>,
    updates: u32,
    steps: u32,
    last_update: Option<f64>,
    last_offset: f64,
}

impl Discipline {
    pub fn new(cfg: DisciplineConfig) -> Self {
        let f = cfg.initial_frequency_ppm * 1e-6;
        Discipline {
            cfg,
            corr_base: 0.0,
            corr_time: 0.0,
            rate: f,
            freq: f,
            slew_end: None,
            points: Vec::new(),
            updates: 0,
            steps: 0,
            last_update: None,
            last_offset: 0.0,
        }
    }

    pub fn config(&self) -> &DisciplineConfig {
        &self.cfg
    }

    /// The action that puts the clock at the initial frequency.
    pub fn initial_action(&self) -> ClockAction {
        ClockAction::SetFrequency {
            ppm: self.rate * 1e6,
        }
    }

    /// Replace the frequency estimate (drift file restore), ppm.
    pub fn set_frequency(&mut self, now: f64, ppm: f64) -> ClockAction {
        self.freq = ppm.clamp(-self.cfg.max_frequency_ppm, self.cfg.max_frequency_ppm) * 1e-6;
        self.points.clear();
        self.set_rate(now, self.freq);
        self.slew_end = None;
        ClockAction::SetFrequency {
            ppm: self.rate * 1e6,
        }
    }

    /// Long-term frequency estimate (what a drift file stores), ppm.
    pub fn frequency_ppm(&self) -> f64 {
        self.freq * 1e6
    }

    /// Currently requested total frequency (estimate + slew), ppm.
    pub fn applied_frequency_ppm(&self) -> f64 {
        self.rate * 1e6
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

    pub fn last_offset(&self) -> f64 {
        self.last_offset
    }

    /// When the clock was last updated (the caller's monotonic seconds).
    pub fn last_update(&self) -> Option<f64> {
        self.last_update
    }

    /// Total correction applied to the clock up to `t` (seconds).
    pub fn correction(&self, t: f64) -> f64 {
        self.corr_base + self.rate * (t - self.corr_time)
    }

    pub fn projection(&self, now: f64) -> Projection {
        Projection {
            now,
            correction: self.correction(now),
            freq: self.freq,
        }
    }

    fn set_rate(&mut self, now: f64, rate: f64) {
        self.corr_base = self.correction(now);
        self.corr_time = now;
        self.rate = rate;
    }

    /// When the current slew ends (call `handle_timer` then).
    pub fn next_timer(&self) -> Option<f64> {
        self.slew_end
    }

    /// Ends a finished slew.
    pub fn handle_timer(&mut self, now: f64) -> Option<ClockAction> {
        match self.slew_end {
            Some(end) if end <= now => {
                self.slew_end = None;
                self.set_rate(now, self.freq);
                Some(ClockAction::SetFrequency {
                    ppm: self.rate * 1e6,
                })
            }
            _ => None,
        }
    }

    /// Predicted offset (true - local) if no new measurement arrives.
    pub fn predicted_offset(&self, now: f64) -> Option<f64> {
        let (_, p) = self.regression(now)?;
        Some(p - self.correction(now))
    }

    fn regression(&self, now: f64) -> Option<(f64, f64)> {
        let pts = &self.points[..];
        fit(pts, self.freq, self.cfg.max_frequency_ppm * 1e-6).map(|f| (f.slope, f.at(now)))
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
            let Some(f) = fit(pts, self.freq, self.cfg.max_frequency_ppm * 1e-6) else {
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
        now: f64,
        phase: f64,
        var: f64,
        bias: f64,
    ) -> (UpdateOutcome, Vec<ClockAction>) {
        self.points.push(Point {
            time: now,
            phase,
            var,
        });
        while self.points.len() > self.cfg.max_samples.max(3) {
            self.points.remove(0);
        }
        self.trim_by_runs();
        let (b, p) = self.regression(now).unwrap_or((self.freq, phase));
        let offset = p - self.correction(now) + bias;

        if let Some(panic) = self.cfg.panic_threshold {
            let one_shot = self.cfg.allow_panic_step_at_start && self.updates == 0;
            if offset.abs() > panic && !one_shot {
                self.points.pop();
                return (UpdateOutcome::PanicRefused { offset }, Vec::new());
            }
        }

        self.freq = b;
        self.updates += 1;
        let interval = self.last_update.map(|t| now - t).unwrap_or(2.0).max(1.0);
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
                    ClockAction::Step {
                        offset_seconds: offset,
                    },
                    ClockAction::SetFrequency {
                        ppm: self.rate * 1e6,
                    },
                ],
            );
        }

        let max_slew = self.cfg.max_slew_ppm * 1e-6;
        let wanted = (interval * self.cfg.correction_time_ratio).max(1.0);
        let slew = (offset / wanted).clamp(-max_slew - self.freq, max_slew - self.freq);
        let duration = if slew != 0.0 { offset / slew } else { 0.0 };
        self.set_rate(now, self.freq + slew);
        self.slew_end = Some(now + duration);
        (
            UpdateOutcome::Slew { offset, duration },
            vec![ClockAction::SetFrequency {
                ppm: self.rate * 1e6,
            }],
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
                ClockAction::SetFrequency { ppm } => Some(*ppm),
                _ => None,
            })
            .unwrap()
    }

    #[test]
    fn small_offset_is_slewed() {
        let mut d = Discipline::new(DisciplineConfig::default());
        let (o, a) = d.update(0.0, 0.01, 1e-10, 0.0);
        match o {
            UpdateOutcome::Slew { offset, duration } => {
                assert_eq!(offset, 0.01);
                assert!(duration > 0.0);
                assert!((freq_of(&a) - 1e6 * 0.01 / duration).abs() < 1e-6);
            }
            _ => panic!("{o:?}"),
        }
        let end = d.next_timer().unwrap();
        assert_eq!(d.handle_timer(end - 0.1), None);
        assert_eq!(
            d.handle_timer(end),
            Some(ClockAction::SetFrequency { ppm: 0.0 })
        );
        // After the slew the whole offset is accounted as correction.
        assert!((d.correction(end + 100.0) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn large_offset_is_slewed_at_max_rate() {
        let mut d = Discipline::new(DisciplineConfig::default());
        let (o, a) = d.update(0.0, 0.1, 1e-10, 0.0);
        assert!(matches!(o, UpdateOutcome::Slew { .. }));
        assert!((freq_of(&a) - 83333.333).abs() < 1e-3);
    }

    #[test]
    fn step_above_threshold() {
        let mut d = Discipline::new(DisciplineConfig::default());
        let (o, a) = d.update(0.0, 2.0, 1e-10, 0.0);
        assert_eq!(o, UpdateOutcome::Step { offset: 2.0 });
        assert_eq!(
            a[0],
            ClockAction::Step {
                offset_seconds: 2.0
            }
        );
        assert_eq!(d.correction(0.0), 2.0);
        // The same clock measured again after the step has no offset left.
        let (o, _) = d.update(2.0, 2.0, 1e-10, 0.0);
        assert!(matches!(o, UpdateOutcome::Slew { offset, .. } if offset.abs() < 1e-9));
    }

    #[test]
    fn step_limit_and_panic() {
        let cfg = DisciplineConfig {
            step_limit: Some(1),
            ..Default::default()
        };
        let mut d = Discipline::new(cfg);
        d.update(0.0, 0.0, 1e-10, 0.0);
        // Second update: steps no longer allowed, slew instead.
        let (o, _) = d.update(2.0, 1.0, 1e-10, 0.0);
        assert!(matches!(o, UpdateOutcome::Slew { .. }), "{o:?}");

        let mut d = Discipline::new(DisciplineConfig::default());
        let (o, a) = d.update(0.0, 2000.0, 1e-10, 0.0);
        assert_eq!(o, UpdateOutcome::PanicRefused { offset: 2000.0 });
        assert!(a.is_empty());
        assert_eq!(d.updates(), 0);

        let cfg = DisciplineConfig {
            allow_panic_step_at_start: true,
            ..Default::default()
        };
        let mut d = Discipline::new(cfg);
        let (o, _) = d.update(0.0, 2000.0, 1e-10, 0.0);
        assert_eq!(o, UpdateOutcome::Step { offset: 2000.0 });
        // One-shot: a later big offset is refused again.
        let (o, _) = d.update(10.0, 5000.0, 1e-10, 0.0);
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
            d.update(t, phase, 1e-10, 0.0);
        }
        assert!(
            (d.frequency_ppm() + 50.0).abs() < 1e-6,
            "{}",
            d.frequency_ppm()
        );
        let restored = d.set_frequency(200.0, 12.5);
        assert!(matches!(restored, ClockAction::SetFrequency { ppm } if (ppm - 12.5).abs() < 1e-9));
        assert!((d.frequency_ppm() - 12.5).abs() < 1e-9);
    }
}
