//! Wire timestamps and durations.
//!
//! `NtpTimestamp` is the raw 64-bit wire value (32.32 fixed point seconds since the
//! start of *some* NTP era). Differences between two timestamps are taken with
//! wrapping arithmetic, so they are correct across the 2036 rollover as long as
//! the two points are less than 68 years apart. Converting to a full date needs a
//! reference time to choose the era (`NtpTimestamp::to_unix`).
//!
//! `NtpDuration` is a signed 64-bit count of 2^-32 s units (~233 ps resolution,
//! range ±68 years). The algorithms (filter, selection, discipline) work in `f64`
//! seconds; conversions are provided.

use serde::Serialize;
use std::ops::{Add, Neg, Sub};
use std::time::Duration;

/// Seconds from 1900-01-01 (NTP era 0) to 1970-01-01 (Unix epoch).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

const FRAC: f64 = 4_294_967_296.0; // 2^32

#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug, Serialize, PartialOrd, Ord)]
pub struct NtpTimestamp(u64);

impl NtpTimestamp {
    pub const ZERO: NtpTimestamp = NtpTimestamp(0);

    pub const fn from_bits(bits: u64) -> Self {
        NtpTimestamp(bits)
    }

    pub const fn to_bits(self) -> u64 {
        self.0
    }

    pub const fn from_seconds_fraction(seconds: u32, fraction: u32) -> Self {
        NtpTimestamp(((seconds as u64) << 32) | fraction as u64)
    }

    pub const fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub const fn fraction(self) -> u32 {
        self.0 as u32
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Time since the Unix epoch to wire format (the era number is dropped).
    pub fn from_unix(since_epoch: Duration) -> Self {
        let secs = since_epoch.as_secs().wrapping_add(NTP_UNIX_OFFSET);
        let frac = ((since_epoch.subsec_nanos() as u64) << 32) / 1_000_000_000;
        NtpTimestamp((secs << 32).wrapping_add(frac))
    }

    /// Full time (since the Unix epoch) of this wire timestamp, choosing the NTP
    /// era that puts it nearest to `reference`. Times before 1970 saturate to 0.
    pub fn to_unix(self, reference: Duration) -> Duration {
        let full = self.to_full(reference);
        let unix = full - ((NTP_UNIX_OFFSET as i128) << 32);
        if unix <= 0 {
            return Duration::ZERO;
        }
        let secs = (unix >> 32) as u64;
        let nanos = (((unix & 0xffff_ffff) as u64) * 1_000_000_000) >> 32;
        Duration::new(secs, nanos as u32)
    }

    /// Full 2^-32 s count since NTP era 0 (era * 2^64 + wire value), era chosen
    /// to be nearest `reference` (a time since the Unix epoch).
    pub fn to_full(self, reference: Duration) -> i128 {
        let r = ((reference.as_secs() as i128 + NTP_UNIX_OFFSET as i128) << 32)
            + (((reference.subsec_nanos() as i128) << 32) / 1_000_000_000);
        let era_base = (r >> 64) << 64;
        let mut best = era_base + self.0 as i128;
        for k in [-1i128, 1] {
            let cand = era_base + self.0 as i128 + (k << 64);
            if (cand - r).abs() < (best - r).abs() {
                best = cand;
            }
        }
        best
    }
}

impl Sub for NtpTimestamp {
    type Output = NtpDuration;
    fn sub(self, rhs: NtpTimestamp) -> NtpDuration {
        NtpDuration(self.0.wrapping_sub(rhs.0) as i64)
    }
}

impl Add<NtpDuration> for NtpTimestamp {
    type Output = NtpTimestamp;
    fn add(self, rhs: NtpDuration) -> NtpTimestamp {
        NtpTimestamp(self.0.wrapping_add(rhs.0 as u64))
    }
}

impl Sub<NtpDuration> for NtpTimestamp {
    type Output = NtpTimestamp;
    fn sub(self, rhs: NtpDuration) -> NtpTimestamp {
        NtpTimestamp(self.0.wrapping_sub(rhs.0 as u64))
    }
}

/// Signed duration in 2^-32 s units.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug, Serialize, PartialOrd, Ord)]
pub struct NtpDuration(i64);

impl NtpDuration {
    pub const ZERO: NtpDuration = NtpDuration(0);

    pub const fn from_fixed(units: i64) -> Self {
        NtpDuration(units)
    }

    pub const fn to_fixed(self) -> i64 {
        self.0
    }

    /// Saturates outside ±2^31 s.
    pub fn from_seconds(s: f64) -> Self {
        NtpDuration((s * FRAC) as i64)
    }

    pub fn to_seconds(self) -> f64 {
        self.0 as f64 / FRAC
    }

    pub fn abs(self) -> Self {
        NtpDuration(self.0.saturating_abs())
    }
}

impl Add for NtpDuration {
    type Output = NtpDuration;
    fn add(self, rhs: Self) -> Self {
        NtpDuration(self.0.saturating_add(rhs.0))
    }
}

impl Sub for NtpDuration {
    type Output = NtpDuration;
    fn sub(self, rhs: Self) -> Self {
        NtpDuration(self.0.saturating_sub(rhs.0))
    }
}

impl Neg for NtpDuration {
    type Output = NtpDuration;
    fn neg(self) -> Self {
        NtpDuration(self.0.saturating_neg())
    }
}

/// 16.16 unsigned fixed point seconds (root delay / root dispersion).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug, Serialize)]
pub struct NtpShort(u32);

impl NtpShort {
    pub const fn from_bits(bits: u32) -> Self {
        NtpShort(bits)
    }

    pub const fn to_bits(self) -> u32 {
        self.0
    }

    /// Negative values become 0, values over 65535 s saturate.
    pub fn from_seconds(s: f64) -> Self {
        let v = (s * 65536.0).clamp(0.0, u32::MAX as f64);
        NtpShort(v as u32)
    }

    pub fn to_seconds(self) -> f64 {
        self.0 as f64 / 65536.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_round_trip() {
        let d = Duration::new(1_700_000_000, 123_456_789);
        let ts = NtpTimestamp::from_unix(d);
        assert_eq!(ts.seconds() as u64, 1_700_000_000 + NTP_UNIX_OFFSET);
        let back = ts.to_unix(d);
        let err = back.as_nanos() as i128 - d.as_nanos() as i128;
        assert!(err.abs() <= 1, "{err}");
    }

    #[test]
    fn era_rollover_2036() {
        // Era 1 starts at 2036-02-07T06:28:16Z.
        let rollover_unix = (1u64 << 32) - NTP_UNIX_OFFSET;
        assert_eq!(rollover_unix, 2_085_978_496);
        let after = Duration::from_secs(rollover_unix + 10);
        let before = Duration::from_secs(rollover_unix - 10);
        let ts_after = NtpTimestamp::from_unix(after);
        let ts_before = NtpTimestamp::from_unix(before);
        assert_eq!(ts_after.seconds(), 10);
        assert_eq!(ts_before.seconds(), u32::MAX - 9);
        // Reference on either side of the rollover picks the right era.
        assert_eq!(ts_after.to_unix(before), after);
        assert_eq!(ts_before.to_unix(after), before);
        assert_eq!(
            ts_after.to_unix(Duration::from_secs(rollover_unix + 1_000_000)),
            after
        );
        // Differences wrap correctly.
        assert_eq!((ts_after - ts_before).to_seconds(), 20.0);
        assert_eq!((ts_before - ts_after).to_seconds(), -20.0);
        // Era 0 timestamp with a 2024 reference stays in era 0.
        let t2024 = Duration::from_secs(1_704_067_200);
        assert_eq!(NtpTimestamp::from_unix(t2024).to_unix(t2024), t2024);
        // Full value in era 1 is above 2^64.
        assert!(ts_after.to_full(after) > (1i128 << 64));
    }

    #[test]
    fn duration_conversions() {
        let d = NtpDuration::from_seconds(-1.5);
        assert_eq!(d.to_fixed(), -(3i64 << 31));
        assert_eq!(d.to_seconds(), -1.5);
        assert_eq!((-d).to_seconds(), 1.5);
        assert_eq!(d.abs().to_seconds(), 1.5);
        let t = NtpTimestamp::from_bits(5);
        assert_eq!((t + NtpDuration::from_fixed(-10)).to_bits(), u64::MAX - 4);
        assert_eq!(NtpShort::from_seconds(1.5).to_bits(), 0x0001_8000);
        assert_eq!(NtpShort::from_bits(0x0000_8000).to_seconds(), 0.5);
        assert_eq!(NtpShort::from_seconds(-1.0).to_bits(), 0);
    }
}
