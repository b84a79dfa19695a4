use anyhow::Result;
use ntp_proto::{ClockAction, NtpTimestamp};

use super::Clock;

/// Reads the system clock, changes nothing: offsets and jitter are measured
/// and reported, like `chronyd -x`.
#[derive(Default)]
pub struct ObserveOnly;

impl Clock for ObserveOnly {
    fn now(&self) -> NtpTimestamp {
        super::realtime_now()
    }

    fn apply(&mut self, action: &ClockAction) -> Result<()> {
        tracing::debug!(?action, "clock left alone (--no-clock-adjust)");
        Ok(())
    }

    fn describe(&self) -> &'static str {
        "observe only (--no-clock-adjust)"
    }
}
