//! The core's time types: three kinds of time that must not mix.
//!
//! - `NtpTimestamp`: a reading of a clock on the wire (the raw 64-bit value,
//!   32.32 fixed point seconds since the start of *some* NTP era).
//!   Differences between two timestamps are taken with wrapping arithmetic,
//!   so they are correct across the 2036 rollover as long as the two points
//!   are less than 68 years apart. Converting to a full date needs a
//!   reference time to choose the era (`NtpTimestamp::to_unix`).
//! - `NtpInstant`: a point on the caller's monotonic timescale (timers,
//!   sample ages); never sent, never stepped.
//! - `NtpDuration`: a signed span or offset, 2^-32 s units (~233 ps
//!   resolution, range ±68 years); the difference of two timestamps or two
//!   instants.
//!
//! `Frequency` is a rate (dimensionless s/s; `ppm()` for display), what
//! a clock gains per second. The numerical parts of the algorithms (the
//! regression, intersection) compute in `f64` seconds locally and hand typed
//! values back.

use serde::Serialize;
use std::ops::{Add, AddAssign, Div, Mul, Neg, Sub, SubAssign};
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

    pub fn from_millis_f64(ms: f64) -> Self {
        Self::from_seconds(ms * 1e-3)
    }

    pub fn to_millis_f64(self) -> f64 {
        self.to_seconds() * 1e3
    }

    pub fn max(self, other: Self) -> Self {
        Ord::max(self, other)
    }

    pub fn min(self, other: Self) -> Self {
        Ord::min(self, other)
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// The larger of zero and `self` (a span that cannot be negative).
    pub fn non_negative(self) -> Self {
        self.max(NtpDuration::ZERO)
    }
}

/// A point on the caller's monotonic timescale, as a span since its origin
/// (e.g. the agent's start). Differences are signed `NtpDuration`s; adding
/// a duration saturates at the origin.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Debug, PartialOrd, Ord)]
pub struct NtpInstant(Duration);

impl NtpInstant {
    pub const ZERO: NtpInstant = NtpInstant(Duration::ZERO);

    pub const fn from_duration(since_origin: Duration) -> Self {
        NtpInstant(since_origin)
    }

    pub const fn as_duration(self) -> Duration {
        self.0
    }

    /// Negative values (and NaN) are the origin.
    pub fn from_secs_f64(s: f64) -> Self {
        NtpInstant(Duration::try_from_secs_f64(s).unwrap_or(Duration::ZERO))
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }

    /// Signed span from `earlier` to `self`.
    pub fn since(self, earlier: NtpInstant) -> NtpDuration {
        self - earlier
    }
}

impl Sub for NtpInstant {
    type Output = NtpDuration;
    fn sub(self, rhs: NtpInstant) -> NtpDuration {
        let (a, b) = (self.0.as_nanos() as i128, rhs.0.as_nanos() as i128);
        let units = ((a - b) << 32) / 1_000_000_000;
        NtpDuration(units.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
    }
}

impl Add<NtpDuration> for NtpInstant {
    type Output = NtpInstant;
    fn add(self, rhs: NtpDuration) -> NtpInstant {
        let nanos = ((rhs.0 as i128) * 1_000_000_000) >> 32;
        let total = (self.0.as_nanos() as i128 + nanos).max(0);
        let total = total.min(u64::MAX as i128 * 1_000_000_000) as u128;
        NtpInstant(Duration::new(
            (total / 1_000_000_000) as u64,
            (total % 1_000_000_000) as u32,
        ))
    }
}

impl Sub<NtpDuration> for NtpInstant {
    type Output = NtpInstant;
    fn sub(self, rhs: NtpDuration) -> NtpInstant {
        self + (-rhs)
    }
}

/// A clock's rate relative to another: seconds gained per second (so
/// `1e-6` is 1 ppm). Positive makes a clock run faster.
#[derive(Clone, Copy, PartialEq, PartialOrd, Default, Debug, Serialize)]
pub struct Frequency(f64);

impl Frequency {
    pub const ZERO: Frequency = Frequency(0.0);

    pub const fn from_ratio(r: f64) -> Self {
        Frequency(r)
    }

    pub fn from_ppm(ppm: f64) -> Self {
        Frequency(ppm * 1e-6)
    }

    pub const fn ratio(self) -> f64 {
        self.0
    }

    pub fn ppm(self) -> f64 {
        self.0 * 1e6
    }

    pub fn abs(self) -> Self {
        Frequency(self.0.abs())
    }

    pub fn clamp(self, lo: Frequency, hi: Frequency) -> Self {
        Frequency(self.0.clamp(lo.0, hi.0))
    }

    pub fn max(self, other: Frequency) -> Self {
        Frequency(self.0.max(other.0))
    }

    pub fn min(self, other: Frequency) -> Self {
        Frequency(self.0.min(other.0))
    }
}

impl Add for Frequency {
    type Output = Frequency;
    fn add(self, rhs: Self) -> Self {
        Frequency(self.0 + rhs.0)
    }
}

impl Sub for Frequency {
    type Output = Frequency;
    fn sub(self, rhs: Self) -> Self {
        Frequency(self.0 - rhs.0)
    }
}

impl Neg for Frequency {
    type Output = Frequency;
    fn neg(self) -> Self {
        Frequency(-self.0)
    }
}

impl Mul<f64> for Frequency {
    type Output = Frequency;
    fn mul(self, rhs: f64) -> Self {
        Frequency(self.0 * rhs)
    }
}

/// What a clock running at this rate gains over `span`.
impl Mul<NtpDuration> for Frequency {
    type Output = NtpDuration;
    fn mul(self, span: NtpDuration) -> NtpDuration {
        NtpDuration::from_seconds(self.0 * span.to_seconds())
    }
}

/// The rate that gains `self` over `span`.
impl Div<NtpDuration> for NtpDuration {
    type Output = Frequency;
    fn div(self, span: NtpDuration) -> Frequency {
        Frequency(self.to_seconds() / span.to_seconds())
    }
}

impl Add for NtpDuration {
    type Output = NtpDuration;
    fn add(self, rhs: Self) -> Self {
        NtpDuration(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for NtpDuration {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl SubAssign for NtpDuration {
    fn sub_assign(&mut self, rhs: Self) {
        *self = *self - rhs;
    }
}

impl Mul<f64> for NtpDuration {
    type Output = NtpDuration;
    fn mul(self, rhs: f64) -> Self {
        NtpDuration::from_seconds(self.to_seconds() * rhs)
    }
}

impl Div<f64> for NtpDuration {
    type Output = NtpDuration;
    fn div(self, rhs: f64) -> Self {
        NtpDuration::from_seconds(self.to_seconds() / rhs)
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
        assert_eq!(NtpDuration::from_millis_f64(250.0).to_seconds(), 0.25);
        assert_eq!((d * 2.0).to_seconds(), -3.0);
        assert_eq!((d / 3.0).to_seconds(), -0.5);
    }

    #[test]
    fn instants_and_frequencies() {
        let a = NtpInstant::from_duration(Duration::from_millis(1500));
        let b = NtpInstant::from_secs_f64(4.0);
        assert_eq!((b - a).to_seconds(), 2.5);
        assert_eq!((a - b).to_seconds(), -2.5);
        assert_eq!(a + (b - a), b);
        assert_eq!(b - (b - a), a);
        // Adding saturates at the origin.
        assert_eq!(a + NtpDuration::from_seconds(-10.0), NtpInstant::ZERO);
        assert_eq!(NtpInstant::from_secs_f64(-1.0), NtpInstant::ZERO);
        assert!(a < b);
        let f = Frequency::from_ppm(50.0);
        assert!((f.ratio() - 5e-5).abs() < 1e-18);
        assert!(((f * NtpDuration::from_seconds(100.0)).to_seconds() - 5e-3).abs() < 1e-9);
        let r = NtpDuration::from_seconds(1e-3) / NtpDuration::from_seconds(10.0);
        assert!((r.ppm() - 100.0).abs() < 1e-4);
        assert_eq!((f - f).ratio(), 0.0);
        assert_eq!(-f, Frequency::from_ppm(-50.0));
    }
}
