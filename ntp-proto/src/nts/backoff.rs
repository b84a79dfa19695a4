//! When to try a key establishment again after one failed: soon for a
//! passing glitch, then exponentially less often so a misconfigured or
//! hostile KE server is not hammered (chrony and ntpd-rs back off too).

use std::time::Duration;

pub const FIRST_RETRY: Duration = Duration::from_secs(8);
pub const MAX_RETRY: Duration = Duration::from_secs(1024);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeBackoff {
    failures: u32,
}

impl KeBackoff {
    /// Failures in a row so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure; the wait before the next attempt. `spread` in
    /// [0, 1) adds up to 25% so sources failing together drift apart.
    pub fn failed(&mut self, spread: f64) -> Duration {
        let base = FIRST_RETRY.saturating_mul(1u32 << self.failures.min(16));
        self.failures = self.failures.saturating_add(1);
        base.min(MAX_RETRY)
            .mul_f64(1.0 + 0.25 * spread.clamp(0.0, 1.0))
    }

    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_a_ceiling_and_resets() {
        let mut b = KeBackoff::default();
        let waits: Vec<u64> = (0..10).map(|_| b.failed(0.0).as_secs()).collect();
        assert_eq!(waits, [8, 16, 32, 64, 128, 256, 512, 1024, 1024, 1024]);
        assert_eq!(b.failures(), 10);
        for _ in 0..100 {
            b.failed(0.0);
        }
        assert_eq!(b.failed(0.999).as_secs(), 1279);
        b.succeeded();
        assert_eq!(b.failed(0.5), Duration::from_secs(9));
    }
}
