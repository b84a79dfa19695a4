//! Closed-loop simulation driving the real NTP core (`ntp-proto`): simulated local clocks that
//! obey the core's clock actions, a network with delay/jitter/asymmetry/loss,
//! and simulated servers and peers. Deterministic for a given seed.
//!
//! Simulated true time is TAI-like seconds `t` since the start. UTC lags by one
//! second after an inserted leap second. Error of a client = its clock reading
//! minus UTC.
//!
//! A crate of its own so the agent's core carries no simulation code or
//! its random-number generator; the scenario tests, `cargo xtask sim` and
//! the bench's quality section use it.

mod clock;
mod scenario;

pub use clock::SimClock;
pub use scenario::*;
