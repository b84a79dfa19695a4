//! Closed-loop simulation driving the real core: simulated local clocks that
//! obey the core's clock actions, a network with delay/jitter/asymmetry/loss,
//! and simulated servers and peers. Deterministic for a given seed.
//!
//! Simulated true time is TAI-like seconds `t` since the start. UTC lags by one
//! second after an inserted leap second. Error of a client = its clock reading
//! minus UTC.

mod clock;
mod scenario;

pub use clock::SimClock;
pub use scenario::*;
