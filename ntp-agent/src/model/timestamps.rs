//! Which timestamps a source's samples are made of: the kernel's (taken
//! when the datagram passed the network stack) or the agent's own clock
//! reading next to the send or receive call (late by the task's wake-up).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where one timestamp came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StampKind {
    /// The kernel's software timestamp (SO_TIMESTAMPING).
    Kernel,
    /// The agent's clock read just before the send or after the receive.
    User,
}

impl fmt::Display for StampKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kernel => "kernel",
            Self::User => "user",
        })
    }
}

/// One timestamp as the agent uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp<T> {
    pub at: T,
    pub kind: StampKind,
    /// The kernel gave one but it was not believable (see `net::stamp`):
    /// `at` is the user reading instead.
    pub fell_back: bool,
}

/// Counts for one direction (receive or transmit).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StampCounts {
    /// Kind of the latest timestamp; `None` before the first.
    pub in_use: Option<StampKind>,
    pub kernel: u64,
    pub user: u64,
    /// Kernel timestamps refused (more than 1 s from the clock read next to
    /// them) and replaced by the user reading.
    pub fallbacks: u64,
}

impl StampCounts {
    pub fn record<T>(&mut self, s: &Stamp<T>) {
        self.in_use = Some(s.kind);
        match s.kind {
            StampKind::Kernel => self.kernel += 1,
            StampKind::User => self.user += 1,
        }
        if s.fell_back {
            self.fallbacks += 1;
        }
    }
}

/// A source's receive and transmit timestamps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStamps {
    pub rx: StampCounts,
    pub tx: StampCounts,
}

impl SourceStamps {
    /// `kernel`, `user` or `-` (none yet) for receive, then transmit.
    pub fn in_use(&self) -> (String, String) {
        let name = |c: &StampCounts| c.in_use.map_or_else(|| "-".into(), |k| k.to_string());
        (name(&self.rx), name(&self.tx))
    }

    pub fn fallbacks(&self) -> u64 {
        self.rx.fallbacks + self.tx.fallbacks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_kind_and_fallbacks() {
        let mut s = SourceStamps::default();
        assert_eq!(s.in_use(), ("-".into(), "-".into()));
        let stamp = |kind, fell_back| Stamp {
            at: 0u8,
            kind,
            fell_back,
        };
        s.rx.record(&stamp(StampKind::Kernel, false));
        s.rx.record(&stamp(StampKind::User, true));
        s.tx.record(&stamp(StampKind::Kernel, false));
        assert_eq!(s.in_use(), ("user".into(), "kernel".into()));
        assert_eq!((s.rx.kernel, s.rx.user, s.fallbacks()), (1, 1, 1));
        let json = serde_json::to_value(s).unwrap();
        assert_eq!(json["tx"]["in_use"], "kernel");
        assert_eq!(json["rx"]["fallbacks"], 1);
    }
}
