//! The options that take seconds as a float (`--step-threshold`,
//! `--panic-threshold`, `--ratelimit-interval`), each with the range it
//! accepts. A value becomes a duration only through [`SecondsOption::check`],
//! from the command line and the file alike, so `1e30`, `inf` or `NaN` get
//! one line naming the option, the value and the range, never a panic in a
//! conversion or an overflow later (`interval * burst`).

use std::time::Duration;

/// One float option and its inclusive range in seconds.
#[derive(Clone, Copy, Debug)]
pub struct SecondsOption {
    pub flag: &'static str,
    pub min: f64,
    pub max: f64,
    /// 0 is also accepted, meaning "off".
    pub zero_disables: bool,
}

/// Steps above this many seconds of offset: from 1 µs to a day.
pub const STEP_THRESHOLD: SecondsOption = SecondsOption {
    flag: "--step-threshold",
    min: 1e-6,
    max: 86_400.0,
    zero_disables: false,
};

/// Refuses offsets above this: 1 ms to 10 years (an NTP era is 136), or 0
/// for no limit.
pub const PANIC_THRESHOLD: SecondsOption = SecondsOption {
    flag: "--panic-threshold",
    min: 1e-3,
    max: 315_360_000.0,
    zero_disables: true,
};

/// One more request per this many seconds: 1 ms (the limiter's
/// resolution) to an hour; with a burst of up to 2^32 the time a bucket
/// takes to refill stays far inside a `Duration`.
pub const RATELIMIT_INTERVAL: SecondsOption = SecondsOption {
    flag: "--ratelimit-interval",
    min: 1e-3,
    max: 3_600.0,
    zero_disables: false,
};

impl SecondsOption {
    /// `value` if it is in range (or 0 where that disables), else the
    /// error naming the option, the value and the range.
    pub fn check(&self, value: f64) -> Result<f64, String> {
        if (value >= self.min && value <= self.max) || (self.zero_disables && value == 0.0) {
            return Ok(value);
        }
        let zero = if self.zero_disables {
            ", or 0 to disable it"
        } else {
            ""
        };
        Err(format!(
            "{} {value} is out of range: give {} to {} seconds{zero}",
            self.flag, self.min, self.max
        ))
    }

    /// The checked value as a `Duration` (`None` for a disabling 0).
    pub fn duration(&self, value: f64) -> Result<Option<Duration>, String> {
        let s = self.check(value)?;
        if s == 0.0 {
            return Ok(None);
        }
        Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|e| format!("{} {value}: {e}", self.flag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_values_name_the_option_value_and_range() {
        for v in [1e30, f64::INFINITY, f64::NAN, -1.0, 0.0, 3600.5] {
            let e = RATELIMIT_INTERVAL.duration(v).unwrap_err();
            assert!(
                e.starts_with(&format!("--ratelimit-interval {v} is out of range")),
                "{e}"
            );
            assert!(e.contains("0.001 to 3600 seconds"), "{e}");
        }
        assert_eq!(
            RATELIMIT_INTERVAL.duration(2.0).unwrap(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(PANIC_THRESHOLD.duration(0.0).unwrap(), None);
        let e = PANIC_THRESHOLD.check(-1.0).unwrap_err();
        assert!(e.ends_with("seconds, or 0 to disable it"), "{e}");
        assert!(STEP_THRESHOLD.check(0.0).is_err());
        assert!(STEP_THRESHOLD.check(1e300).is_err());
        assert_eq!(STEP_THRESHOLD.check(0.128), Ok(0.128));
    }
}
