//! Interface slots: which block of the counter array an interface's packets
//! count in (`NF_IFACES`: ifindex -> slot, 0 = none, counted as "other").
//!
//! The map is pinned, so an interface keeps its slot, and with it its
//! counters, across agent restarts. A slot is freed (and its counters
//! zeroed) when its interface leaves the configuration or is detached, and
//! zeroed again when handed out, so a new interface never inherits counts.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use ntp_filter_common::{IFACE_OTHER, MAX_IFACE_SLOTS, MAX_IFINDEX};

use super::maps::FilterMaps;

/// The name `status` gives the counters of interfaces without a slot.
pub const OTHER: &str = "other";

/// An interface the agent filters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub index: u32,
}

/// Why an interface counts under "other".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoSlot {
    /// Its ifindex is past the end of `NF_IFACES`.
    IndexTooHigh,
    /// Every slot is taken.
    Full,
}

/// What an interface got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Assignment {
    /// The slot it had before (a restart): its counters carry on.
    Kept(u32),
    /// A slot that was free, counters zeroed.
    New(u32),
    Other(NoSlot),
}

impl Assignment {
    pub fn slot(self) -> Option<u32> {
        match self {
            Self::Kept(s) | Self::New(s) => Some(s),
            Self::Other(_) => None,
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// `(ifindex, slot)` entries to clear; the slot's counters are zeroed
    /// unless an interface keeps it.
    pub frees: Vec<(u32, u32)>,
    /// One per wanted interface, in the order given.
    pub assignments: Vec<(Iface, Assignment)>,
}

/// From what `NF_IFACES` holds (`ifindex -> slot`, zeros left out) to one
/// slot per wanted interface: keep the slots they have, free every other
/// entry, hand out the lowest free slots. Pure, so it is tested without a
/// kernel.
pub fn plan(current: &BTreeMap<u32, u32>, wanted: &[Iface]) -> Plan {
    let mut taken = BTreeSet::new();
    let mut kept = BTreeMap::new();
    for iface in wanted {
        match current.get(&iface.index) {
            // A duplicate or out-of-range value (never written by this
            // module) is treated as no slot.
            Some(&slot)
                if (1..MAX_IFACE_SLOTS).contains(&slot)
                    && !taken.contains(&slot)
                    && !kept.contains_key(&iface.index) =>
            {
                taken.insert(slot);
                kept.insert(iface.index, slot);
            }
            _ => {}
        }
    }
    let frees = current
        .iter()
        .filter(|(ifindex, slot)| kept.get(ifindex) != Some(slot))
        .map(|(&ifindex, &slot)| (ifindex, slot))
        .collect();
    let mut free_slots = (1..MAX_IFACE_SLOTS).filter(|s| !taken.contains(s));
    let mut given: BTreeMap<u32, Assignment> = BTreeMap::new();
    let assignments = wanted
        .iter()
        .map(|iface| {
            let a = if let Some(&a) = given.get(&iface.index) {
                // The same interface twice (two names for one index).
                a
            } else if let Some(&slot) = kept.get(&iface.index) {
                Assignment::Kept(slot)
            } else if iface.index >= MAX_IFINDEX {
                Assignment::Other(NoSlot::IndexTooHigh)
            } else {
                match free_slots.next() {
                    Some(slot) => Assignment::New(slot),
                    None => Assignment::Other(NoSlot::Full),
                }
            };
            given.insert(iface.index, a);
            (iface.clone(), a)
        })
        .collect();
    Plan { frees, assignments }
}

/// Gives each of `wanted` a slot (see [`plan`]) and frees every other
/// entry, logging what it did; an interface without a slot is warned about
/// here, once per agent start. Entries are cleared before slots are handed
/// out, so an interface about to be detached counts under "other" for the
/// moment until its link goes, rather than holding a slot a configured one
/// needs.
pub fn assign(maps: &mut FilterMaps, wanted: &[Iface]) -> Result<Vec<(Iface, Assignment)>> {
    let plan = plan(&maps.iface_slots()?, wanted);
    let kept: BTreeSet<u32> = plan
        .assignments
        .iter()
        .filter_map(|(_, a)| match a {
            Assignment::Kept(s) => Some(*s),
            _ => None,
        })
        .collect();
    for &(ifindex, slot) in &plan.frees {
        maps.set_iface_slot(ifindex, IFACE_OTHER)?;
        if slot < MAX_IFACE_SLOTS && !kept.contains(&slot) {
            maps.zero_slot(slot)?;
        }
        tracing::info!(
            ifindex,
            slot,
            iface = %iface_name(ifindex),
            "freed the counter slot of an interface no longer filtered"
        );
    }
    let mut done = BTreeSet::new();
    for (iface, a) in &plan.assignments {
        if !done.insert(iface.index) {
            continue;
        }
        match a {
            Assignment::Kept(slot) => {
                tracing::debug!(iface = %iface.name, slot, "interface keeps its counter slot")
            }
            Assignment::New(slot) => {
                // Zeroed before the entry points at it: counts a racing
                // packet left in a freed slot do not carry over.
                maps.zero_slot(*slot)?;
                maps.set_iface_slot(iface.index, *slot)?;
                tracing::debug!(iface = %iface.name, slot, "interface got a counter slot");
            }
            Assignment::Other(NoSlot::IndexTooHigh) => tracing::warn!(
                iface = %iface.name,
                ifindex = iface.index,
                "ifindex {} is past the {MAX_IFINDEX} the counters track per interface: its packets are filtered as usual but counted under \"{OTHER}\"",
                iface.index
            ),
            Assignment::Other(NoSlot::Full) => tracing::warn!(
                iface = %iface.name,
                "all {} per-interface counter slots are taken: this interface's packets are filtered as usual but counted under \"{OTHER}\"",
                MAX_IFACE_SLOTS - 1
            ),
        }
    }
    Ok(plan.assignments)
}

/// Frees `ifindex`'s slot and zeroes its counters (an interface detached
/// on its own). Returns the slot it had.
pub fn release(maps: &mut FilterMaps, ifindex: u32) -> Result<Option<u32>> {
    let slots = maps.iface_slots()?;
    let Some(&slot) = slots.get(&ifindex) else {
        return Ok(None);
    };
    maps.set_iface_slot(ifindex, IFACE_OTHER)?;
    let shared = slots.iter().any(|(&i, &s)| i != ifindex && s == slot);
    if slot < MAX_IFACE_SLOTS && !shared {
        maps.zero_slot(slot)?;
    }
    Ok(Some(slot))
}

/// The interface's current name, or `ifindex N` once it is gone.
pub fn iface_name(ifindex: u32) -> String {
    nix::net::if_::if_indextoname(ifindex)
        .ok()
        .and_then(|n| n.into_string().ok())
        .unwrap_or_else(|| format!("ifindex {ifindex}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, index: u32) -> Iface {
        Iface {
            name: name.into(),
            index,
        }
    }

    fn slots(p: &Plan) -> Vec<Assignment> {
        p.assignments.iter().map(|(_, a)| *a).collect()
    }

    #[test]
    fn fresh_interfaces_get_the_lowest_slots() {
        let p = plan(&BTreeMap::new(), &[iface("wan0", 7), iface("lan0", 3)]);
        assert_eq!(slots(&p), [Assignment::New(1), Assignment::New(2)]);
        assert!(p.frees.is_empty());
    }

    #[test]
    fn a_restart_keeps_slots_and_frees_dropped_interfaces() {
        let current = BTreeMap::from([(7, 2), (3, 1), (9, 5)]);
        let p = plan(&current, &[iface("wan0", 7), iface("new0", 11)]);
        assert_eq!(slots(&p), [Assignment::Kept(2), Assignment::New(1)]);
        assert_eq!(p.frees, [(3, 1), (9, 5)]);
    }

    #[test]
    fn no_slot_past_the_map_or_when_full() {
        let wanted: Vec<Iface> = (1..=MAX_IFACE_SLOTS)
            .map(|i| iface(&format!("if{i}"), i))
            .chain([iface("big", MAX_IFINDEX), iface("edge", MAX_IFINDEX - 1)])
            .collect();
        let p = plan(&BTreeMap::new(), &wanted);
        let got = slots(&p);
        for (i, a) in got[..MAX_IFACE_SLOTS as usize - 1].iter().enumerate() {
            assert_eq!(*a, Assignment::New(i as u32 + 1));
        }
        assert_eq!(
            got[MAX_IFACE_SLOTS as usize - 1..],
            [
                Assignment::Other(NoSlot::Full),
                Assignment::Other(NoSlot::IndexTooHigh),
                Assignment::Other(NoSlot::Full),
            ]
        );
    }

    #[test]
    fn bad_entries_are_freed_not_trusted() {
        // Two interfaces claiming slot 4, and one out of range.
        let current = BTreeMap::from([(5, 4), (6, 4), (8, MAX_IFACE_SLOTS)]);
        let p = plan(&current, &[iface("a", 5), iface("b", 6), iface("c", 8)]);
        assert_eq!(
            slots(&p),
            [Assignment::Kept(4), Assignment::New(1), Assignment::New(2)]
        );
        assert_eq!(p.frees, [(6, 4), (8, MAX_IFACE_SLOTS)]);
    }

    #[test]
    fn the_same_interface_twice_gets_one_slot() {
        let p = plan(&BTreeMap::new(), &[iface("a", 5), iface("a", 5)]);
        assert_eq!(slots(&p), [Assignment::New(1), Assignment::New(1)]);
    }
}
