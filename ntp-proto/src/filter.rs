//! RFC 5905 clock filter: the last eight samples of one source, the one with the
//! lowest delay is its current estimate.
//!
//! Samples are stored as *phase* (`offset + C(t)`, where `C` is the correction
//! the discipline has applied to the local clock up to the sample time). Unlike a
//! raw offset this does not go stale when the clock is slewed or stepped, so old
//! samples can be compared with new ones; `Projection` turns a phase back into
//! the offset it implies now.

use crate::time::{Frequency, NtpDuration, NtpInstant};
use std::collections::VecDeque;

/// Frequency tolerance used for dispersion growth. RFC 5905 uses 15 ppm; at
/// maxpoll 10 that lets eight-sample-old dispersion reach ~0.1 s and hides a
/// 50 ms falseticker inside overlapping intervals. Like chrony (maxclockerror)
/// we assume 1 ppm for a disciplined clock.
pub const PHI: Frequency = Frequency::from_ratio(1e-6);
/// Dispersion of an empty filter slot (RFC 5905 MAXDISP, 16 s).
pub const MAXDISP: NtpDuration = NtpDuration::from_fixed(16 << 32);
pub const NSTAGE: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When the measurement was made.
    pub time: NtpInstant,
    /// Offset plus the clock correction applied up to `time`.
    pub phase: NtpDuration,
    /// Offset as measured (for display of the raw value).
    pub offset: NtpDuration,
    pub delay: NtpDuration,
    /// Dispersion at measurement time (precisions + PHI * round trip).
    pub dispersion: NtpDuration,
}

/// Maps phases to offsets at `now`: offset = phase + freq * (now - time) - correction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Projection {
    pub now: NtpInstant,
    /// Total correction applied to the clock up to `now`.
    pub correction: NtpDuration,
    /// Estimated phase drift rate of the uncorrected clock.
    pub freq: Frequency,
}

impl Projection {
    pub fn offset(&self, s: &Sample) -> NtpDuration {
        s.phase + self.freq * (self.now - s.time) - self.correction
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FilterOutput {
    /// Offset of the chosen sample projected to now.
    pub offset: NtpDuration,
    pub delay: NtpDuration,
    /// Peer dispersion (RFC 5905 weighted sum over the sorted stages).
    pub dispersion: NtpDuration,
    /// The same sum without the empty stages' MAXDISP: what the samples
    /// held say (the start-up gate, see `System`).
    pub held_dispersion: NtpDuration,
    /// RMS of the differences between the chosen offset and the others.
    pub jitter: NtpDuration,
    /// Lowest delay in the register (reference for weighting newer samples).
    pub min_delay: NtpDuration,
}

#[derive(Clone, Debug, Default)]
pub struct ClockFilter {
    samples: VecDeque<Sample>,
}

impl ClockFilter {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, s: Sample) {
        if self.samples.len() == NSTAGE {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    pub fn clear(&mut self) {
        self.samples.clear();
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn latest(&self) -> Option<&Sample> {
        self.samples.back()
    }

    pub fn output(&self, proj: &Projection, precision: NtpDuration) -> Option<FilterOutput> {
        let mut sorted: Vec<Sample> = self.samples.iter().copied().collect();
        if sorted.is_empty() {
            return None;
        }
        // Lowest delay first; among equal delays the newer one.
        sorted.sort_by(|a, b| a.delay.cmp(&b.delay).then(b.time.cmp(&a.time)));
        let best = sorted[0];
        let mut dispersion = NtpDuration::ZERO;
        let mut held_dispersion = NtpDuration::ZERO;
        for i in 0..NSTAGE {
            let held = sorted
                .get(i)
                .map(|s| (s.dispersion + PHI * (proj.now - s.time).non_negative()).min(MAXDISP));
            let w = f64::powi(2.0, i as i32 + 1);
            dispersion += held.unwrap_or(MAXDISP) / w;
            held_dispersion += held.unwrap_or(NtpDuration::ZERO) / w;
        }
        let best_offset = proj.offset(&best);
        let jitter = if sorted.len() > 1 {
            let sum: f64 = sorted[1..]
                .iter()
                .map(|s| (proj.offset(s) - best_offset).to_seconds().powi(2))
                .sum();
            NtpDuration::from_seconds((sum / (sorted.len() - 1) as f64).sqrt())
        } else {
            NtpDuration::ZERO
        }
        .max(precision);
        Some(FilterOutput {
            offset: best_offset,
            delay: best.delay,
            dispersion,
            held_dispersion,
            jitter,
            min_delay: best.delay,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: f64) -> NtpDuration {
        NtpDuration::from_seconds(s)
    }

    fn at(s: f64) -> NtpInstant {
        NtpInstant::from_secs_f64(s)
    }

    fn s(time: f64, offset: f64, delay: f64) -> Sample {
        Sample {
            time: at(time),
            phase: d(offset),
            offset: d(offset),
            delay: d(delay),
            dispersion: d(1e-6),
        }
    }

    fn proj(now: f64, correction: f64, freq_ppm: f64) -> Projection {
        Projection {
            now: at(now),
            correction: d(correction),
            freq: Frequency::from_ppm(freq_ppm),
        }
    }

    fn close(a: NtpDuration, b: f64) -> bool {
        (a.to_seconds() - b).abs() < 1e-9
    }

    #[test]
    fn picks_minimum_delay_and_keeps_eight() {
        let mut f = ClockFilter::new();
        let delays = [5e-3, 4e-3, 1e-3, 6e-3, 2e-3, 9e-3, 3e-3, 7e-3, 8e-3];
        for (i, d) in delays.iter().enumerate() {
            f.add(s(i as f64 * 64.0, i as f64 * 1e-4, *d));
        }
        assert_eq!(f.len(), 8);
        let proj = proj(600.0, 0.0, 0.0);
        let out = f.output(&proj, d(1e-9)).unwrap();
        assert_eq!(out.delay, d(1e-3));
        assert!(close(out.offset, 2e-4));
        assert!(out.jitter > NtpDuration::ZERO);
        assert!(out.dispersion > NtpDuration::ZERO && out.dispersion < MAXDISP);
        // Once the 1 ms sample is pushed out, the 2 ms one wins.
        f.add(s(600.0, 0.0, 9e-3));
        f.add(s(664.0, 0.0, 9e-3));
        let out = f.output(&proj, d(1e-9)).unwrap();
        assert_eq!(out.delay, d(2e-3));
    }

    #[test]
    fn projection_accounts_for_corrections() {
        let mut f = ClockFilter::new();
        // Measured +10 ms at t=0 with no correction yet applied.
        f.add(s(0.0, 0.01, 1e-3));
        // After the discipline slewed the clock by 10 ms the projected offset is 0.
        let out = f.output(&proj(10.0, 0.01, 0.0), d(1e-9)).unwrap();
        assert!(close(out.offset, 0.0));
        // An uncorrected drift of -1 ppm shows up as a growing negative offset.
        let p = proj(1000.0, 0.01, -1.0);
        assert!(close(f.output(&p, d(1e-9)).unwrap().offset, -1e-3));
        // A single sample: peer dispersion is dominated by empty stages.
        let out = f.output(&p, d(1e-9)).unwrap();
        assert!(out.dispersion > d(7.9));
        assert!(out.held_dispersion < d(1e-3));
    }
}
