use ntp_proto::LeapIndicator;

/// A local clock: phase error `e` (reading minus true time) that drifts at its
/// own frequency error plus whatever correction the core requests.
#[derive(Clone, Debug)]
pub struct SimClock {
    /// Reading minus TAI-like true time, seconds (includes inserted leaps).
    pub e: f64,
    /// Intrinsic frequency error, s/s (wanders).
    pub f0: f64,
    /// Correction requested by the core (SetFrequency), s/s.
    pub rate: f64,
    /// Kernel leap state.
    pub leap: LeapIndicator,
    /// Local-time position of the next UTC midnight (simulation seconds).
    pub midnight: f64,
    t_last: f64,
    pub leaps_applied: u32,
}

impl SimClock {
    pub fn new(initial_offset: f64, freq_error: f64, midnight: f64) -> Self {
        SimClock {
            e: initial_offset,
            f0: freq_error,
            rate: 0.0,
            leap: LeapIndicator::NoWarning,
            midnight,
            t_last: 0.0,
            leaps_applied: 0,
        }
    }

    /// Local reading (seconds on the simulation scale) at true time `t`.
    pub fn advance(&mut self, t: f64) -> f64 {
        let dt = t - self.t_last;
        if dt > 0.0 {
            let before = self.t_last + self.e;
            self.e += (self.f0 + self.rate) * dt;
            self.t_last = t;
            let after = t + self.e;
            match self.leap {
                LeapIndicator::InsertSecond if before < self.midnight && after >= self.midnight => {
                    self.e -= 1.0;
                    self.leap = LeapIndicator::NoWarning;
                    self.leaps_applied += 1;
                }
                LeapIndicator::DeleteSecond
                    if before < self.midnight - 1.0 && after >= self.midnight - 1.0 =>
                {
                    self.e += 1.0;
                    self.leap = LeapIndicator::NoWarning;
                    self.leaps_applied += 1;
                }
                _ => {}
            }
        }
        t + self.e
    }

    /// Total frequency error (intrinsic plus correction), s/s.
    pub fn frequency_error(&self) -> f64 {
        self.f0 + self.rate
    }
}
