use std::time::Instant;

use anyhow::Result;
use ntp_proto::{ClockAction, NtpDuration, NtpTimestamp};

use super::Clock;

/// Changes nothing, like `chronyd -x`: the discipline's corrections go into
/// a virtual clock (system time plus the correction so far) instead of the
/// kernel, so the core sees its corrections take effect and converges,
/// while [`correction`](Self::correction) tells how far the real clock is
/// off.
pub struct ObserveOnly {
    /// Correction accumulated up to `since`, seconds.
    offset: f64,
    /// Current correction rate, ppm.
    freq_ppm: f64,
    since: Instant,
}

impl Default for ObserveOnly {
    fn default() -> Self {
        Self {
            offset: 0.0,
            freq_ppm: 0.0,
            since: Instant::now(),
        }
    }
}

impl ObserveOnly {
    fn correction_seconds(&self, at: Instant) -> f64 {
        let elapsed = at.saturating_duration_since(self.since).as_secs_f64();
        self.offset + self.freq_ppm * 1e-6 * elapsed
    }
}

impl Clock for ObserveOnly {
    fn now(&self) -> NtpTimestamp {
        super::realtime_now() + self.correction_at(Instant::now())
    }

    fn correction_at(&self, at: Instant) -> NtpDuration {
        NtpDuration::from_seconds(self.correction_seconds(at))
    }

    fn apply(&mut self, action: &ClockAction) -> Result<()> {
        let now = Instant::now();
        match *action {
            ClockAction::SetFrequency(freq) => {
                self.offset = self.correction_seconds(now);
                self.since = now;
                self.freq_ppm = freq.ppm();
            }
            ClockAction::Step(offset) => self.offset += offset.to_seconds(),
            ClockAction::SetLeap(_) => {}
        }
        tracing::debug!(?action, "virtual clock only (--no-clock-adjust)");
        Ok(())
    }

    fn correction(&self) -> Option<f64> {
        Some(self.correction_seconds(Instant::now()))
    }

    fn describe(&self) -> &'static str {
        "observe only (--no-clock-adjust)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corrections_accumulate_in_the_virtual_clock_only() {
        let mut c = ObserveOnly::default();
        c.apply(&ClockAction::Step(NtpDuration::from_seconds(0.005)))
            .unwrap();
        c.apply(&ClockAction::SetFrequency(ntp_proto::Frequency::from_ppm(
            1000.0,
        )))
        .unwrap();
        let t = c.since + std::time::Duration::from_secs(2);
        // 5 ms step + 1000 ppm for 2 s = 7 ms.
        assert!((c.correction_seconds(t) - 0.007).abs() < 1e-9);
        let before = super::super::realtime_now();
        let virtual_now = c.now();
        let ahead = (virtual_now - before).to_seconds();
        assert!(ahead > 0.004 && ahead < 0.1, "{ahead}");
    }
}
