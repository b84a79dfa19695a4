//! The counters, summed over CPUs, in the shape `status` shows them.

use std::collections::BTreeMap;

use ntp_filter_common::{Counter, DropReason, PassReason, SourceClass, Verdict};
use serde::Serialize;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct FilterStats {
    /// `class -> mode -> {passed, dropped}` for packets that reached the
    /// policy table.
    pub by_class_mode: BTreeMap<&'static str, BTreeMap<u8, PassDrop>>,
    /// Drops by reason (every drop is here once).
    pub drops: BTreeMap<&'static str, u64>,
    /// Passes by reason (`allowed` is NTP for the box; the rest were out of
    /// the filter's scope).
    pub passes: BTreeMap<&'static str, u64>,
    pub total_dropped: u64,
    pub total_passed: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PassDrop {
    pub passed: u64,
    pub dropped: u64,
}

impl FilterStats {
    pub fn from_slots(slots: &[u64]) -> Self {
        let mut stats = Self::default();
        for reason in DropReason::ALL {
            stats.drops.insert(reason.name(), 0);
        }
        for reason in PassReason::ALL {
            stats.passes.insert(reason.name(), 0);
        }
        for (i, &n) in slots.iter().enumerate() {
            match Counter::from_index(i as u32) {
                Some(Counter::Decision {
                    class,
                    mode,
                    verdict,
                }) => {
                    if n == 0 {
                        continue;
                    }
                    let cell = stats
                        .by_class_mode
                        .entry(class.name())
                        .or_default()
                        .entry(mode)
                        .or_default();
                    match verdict {
                        Verdict::Pass => cell.passed += n,
                        Verdict::Drop => cell.dropped += n,
                    }
                }
                Some(Counter::Drop(r)) => {
                    stats.drops.insert(r.name(), n);
                    stats.total_dropped += n;
                }
                Some(Counter::Pass(r)) => {
                    stats.passes.insert(r.name(), n);
                    stats.total_passed += n;
                }
                None => {}
            }
        }
        stats
    }

    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops.get(reason.name()).copied().unwrap_or(0)
    }

    pub fn pass_count(&self, reason: PassReason) -> u64 {
        self.passes.get(reason.name()).copied().unwrap_or(0)
    }

    pub fn decision(&self, class: SourceClass, mode: u8) -> PassDrop {
        self.by_class_mode
            .get(class.name())
            .and_then(|m| m.get(&mode))
            .copied()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ntp_filter_common::COUNTER_SLOTS;

    #[test]
    fn slots_land_in_their_cells() {
        let mut slots = vec![0u64; COUNTER_SLOTS as usize];
        let drop3 = Counter::Decision {
            class: SourceClass::Other,
            mode: 3,
            verdict: Verdict::Drop,
        };
        slots[drop3.index() as usize] = 5;
        slots[Counter::Drop(DropReason::OtherSource).index() as usize] = 5;
        slots[Counter::Pass(PassReason::NotLocal).index() as usize] = 2;
        let s = FilterStats::from_slots(&slots);
        assert_eq!(
            s.decision(SourceClass::Other, 3),
            PassDrop {
                passed: 0,
                dropped: 5
            }
        );
        assert_eq!(s.drop_count(DropReason::OtherSource), 5);
        assert_eq!(s.pass_count(PassReason::NotLocal), 2);
        assert_eq!((s.total_dropped, s.total_passed), (5, 2));
    }

    #[test]
    fn every_reason_is_listed_even_at_zero() {
        let s = FilterStats::from_slots(&vec![0; COUNTER_SLOTS as usize]);
        assert_eq!(s.drops.len(), DropReason::COUNT);
        assert_eq!(s.passes.len(), PassReason::COUNT);
        assert_eq!(s.drops.get("denied"), Some(&0));

        let mut slots = vec![0u64; COUNTER_SLOTS as usize];
        slots[Counter::Drop(DropReason::Denied).index() as usize] = 3;
        let s = FilterStats::from_slots(&slots);
        assert_eq!(s.drop_count(DropReason::Denied), 3);
        assert_eq!(s.total_dropped, 3);
    }
}
