//! The real system clock, through `clock-steering` (adjtimex /
//! clock_adjtime). The one thing that crate does not cover is the kernel
//! tick: ADJ_FREQUENCY stops at ±500 ppm, and chrony reaches its ±83333 ppm
//! slew rate by also lengthening or shortening the tick, so that part is a
//! single adjtimex call here.

use anyhow::{Context as _, Result};
use clock_steering::{unix::UnixClock, Clock as _, LeapIndicator as SteerLeap, TimeOffset};
use ntp_proto::{ClockAction, LeapIndicator, NtpTimestamp};

use super::Clock;

/// ADJ_FREQUENCY's limit.
const MAX_FREQ_PPM: f64 = 500.0;

pub struct SystemClock {
    clock: UnixClock,
    /// Nominal tick, µs per jiffy (1e6 / USER_HZ).
    nominal_tick: i64,
}

/// Splits a frequency correction (ppm) into a tick change (µs per jiffy)
/// and the ADJ_FREQUENCY remainder (ppm). A 1 µs longer tick makes a clock
/// whose tick is `nominal_tick` µs run 1/nominal_tick faster.
pub fn split_frequency(ppm: f64, nominal_tick: i64) -> (i64, f64) {
    let ppm_per_tick = 1e6 / nominal_tick as f64;
    // The kernel accepts ±10% of the nominal tick.
    let limit = nominal_tick / 10;
    let ticks = ((ppm / ppm_per_tick).round() as i64).clamp(-limit, limit);
    let rest = (ppm - ticks as f64 * ppm_per_tick).clamp(-MAX_FREQ_PPM, MAX_FREQ_PPM);
    (ticks, rest)
}

impl SystemClock {
    pub fn new() -> Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
        let clock = UnixClock::CLOCK_REALTIME;
        clock
            .disable_kernel_ntp_algorithm()
            .context("taking the clock over from the kernel's NTP PLL (needs CAP_SYS_TIME)")?;
        Ok(Self {
            clock,
            nominal_tick: 1_000_000 / hz,
        })
    }

    fn set_tick(&self, tick: i64) -> Result<()> {
        // SAFETY: an all-zero timex is a valid "change nothing" request; only
        // ADJ_TICK is set, and the kernel reads nothing else.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        tx.modes = libc::ADJ_TICK;
        tx.tick = tick as libc::c_long;
        // SAFETY: tx is a valid, initialised timex.
        if unsafe { libc::adjtimex(&mut tx) } < 0 {
            return Err(std::io::Error::last_os_error()).context("adjtimex(ADJ_TICK)");
        }
        Ok(())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> NtpTimestamp {
        super::realtime_now()
    }

    fn apply(&mut self, action: &ClockAction) -> Result<()> {
        match *action {
            ClockAction::SetFrequency(freq) => {
                let (ticks, rest) = split_frequency(freq.ppm(), self.nominal_tick);
                self.set_tick(self.nominal_tick + ticks)?;
                self.clock
                    .set_frequency(rest)
                    .map_err(|e| anyhow::anyhow!("setting the clock frequency: {e}"))?;
            }
            ClockAction::Step(offset) => {
                let offset_seconds = offset.to_seconds();
                let whole = offset_seconds.floor();
                let offset = TimeOffset {
                    seconds: whole as libc::time_t,
                    nanos: ((offset_seconds - whole) * 1e9).min(999_999_999.0) as u32,
                };
                self.clock
                    .step_clock(offset)
                    .map_err(|e| anyhow::anyhow!("stepping the clock: {e}"))?;
                tracing::warn!(offset_seconds, "clock stepped");
            }
            ClockAction::SetLeap(leap) => {
                let leap = match leap {
                    LeapIndicator::InsertSecond => SteerLeap::Leap61,
                    LeapIndicator::DeleteSecond => SteerLeap::Leap59,
                    LeapIndicator::NoWarning => SteerLeap::NoWarning,
                    LeapIndicator::Unsynchronized => SteerLeap::Unknown,
                };
                self.clock
                    .set_leap_seconds(leap)
                    .map_err(|e| anyhow::anyhow!("arming the leap second: {e}"))?;
                tracing::info!(?leap, "kernel leap second status set");
            }
        }
        Ok(())
    }

    fn describe(&self) -> &'static str {
        "system clock (adjtimex)"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_corrections_use_frequency_only() {
        assert_eq!(split_frequency(42.0, 10_000), (0, 42.0));
    }

    #[test]
    fn large_slews_use_the_tick() {
        // +1 µs on a 10000 µs tick is +100 ppm.
        let (ticks, rest) = split_frequency(83_333.0, 10_000);
        assert_eq!(ticks, 833);
        assert!((rest - 33.0).abs() < 1e-9, "{rest}");
        let (ticks, rest) = split_frequency(-1_230.0, 10_000);
        assert_eq!((ticks, rest), (-12, -30.0));
    }

    #[test]
    fn the_tick_stays_within_ten_percent() {
        let (ticks, rest) = split_frequency(1e6, 10_000);
        assert_eq!(ticks, 1_000);
        assert_eq!(rest, 500.0);
    }
}
