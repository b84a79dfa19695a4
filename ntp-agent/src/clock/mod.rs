//! The clock the NTP core disciplines: the real system clock, or an
//! observe-only view of it that never changes anything (`--no-clock-adjust`,
//! and every test).

mod observe;
mod system;

use std::time::Instant;

use anyhow::Result;
use ntp_proto::{ClockAction, NtpDuration, NtpTimestamp};

pub use observe::ObserveOnly;
pub use system::{split_frequency, SystemClock};

pub trait Clock: Send {
    /// The clock's current reading.
    fn now(&self) -> NtpTimestamp;
    /// What to add to a system-clock reading taken at `at` to get this
    /// clock's reading (receive timestamps are taken as system time).
    fn correction_at(&self, _at: Instant) -> NtpDuration {
        NtpDuration::from_seconds(0.0)
    }
    /// For a clock that is not really adjusted: how far the system clock
    /// is off by its own estimate (seconds, add to correct it).
    fn correction(&self) -> Option<f64> {
        None
    }
    /// Carries out what the discipline asked for.
    fn apply(&mut self, action: &ClockAction) -> Result<()>;
    fn describe(&self) -> &'static str;
}

pub fn realtime_now() -> NtpTimestamp {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    NtpTimestamp::from_unix(since_epoch)
}
