//! Bringing a map from what it holds to what the configuration says, adding
//! and updating before removing, so a reconfiguration never has a moment in
//! which a still-valid source is missing.

use std::collections::BTreeMap;

use anyhow::Result;
use ntp_filter_common::{AddrKey, FilterConfig, ModeMask, SourceClass, SourceEntry};

use super::maps::FilterMaps;

#[derive(Debug, PartialEq, Eq)]
pub struct Plan<K, V> {
    /// Entries to insert or overwrite, applied first.
    pub upserts: Vec<(K, V)>,
    /// Keys to delete, applied after every upsert.
    pub removals: Vec<K>,
}

impl<K, V> Plan<K, V> {
    pub fn is_empty(&self) -> bool {
        self.upserts.is_empty() && self.removals.is_empty()
    }
}

pub fn plan<K: Ord + Clone, V: PartialEq + Clone>(
    current: &BTreeMap<K, V>,
    desired: &BTreeMap<K, V>,
) -> Plan<K, V> {
    Plan {
        upserts: desired
            .iter()
            .filter(|(k, v)| current.get(k) != Some(v))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        removals: current
            .keys()
            .filter(|k| !desired.contains_key(k))
            .cloned()
            .collect(),
    }
}

/// The part of the filter's state that follows from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub config: FilterConfig,
    pub policy: [ModeMask; SourceClass::COUNT],
    pub sources: BTreeMap<AddrKey, SourceEntry>,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub sources_added_or_updated: usize,
    pub sources_removed: usize,
    pub policy_changed: bool,
    pub config_changed: bool,
}

/// Applies `desired`. Order: new and updated sources, then the policy and
/// config, then removals, so that widening a class never waits on a
/// removal and a source being replaced is never absent.
pub fn apply(maps: &mut FilterMaps, desired: &Desired) -> Result<Changes> {
    let sources = plan(&maps.sources()?, &desired.sources);
    for (key, entry) in &sources.upserts {
        maps.put_source(*key, *entry)?;
    }
    let mut changes = Changes {
        sources_added_or_updated: sources.upserts.len(),
        sources_removed: sources.removals.len(),
        ..Changes::default()
    };
    let policy = maps.policy()?;
    for class in SourceClass::ALL {
        let want = desired.policy[class as usize];
        if policy[class as usize] != want {
            maps.set_policy(class, want)?;
            changes.policy_changed = true;
        }
    }
    if maps.config()? != desired.config {
        maps.set_config(desired.config)?;
        changes.config_changed = true;
    }
    for key in &sources.removals {
        maps.remove_source(key)?;
    }
    Ok(changes)
}

/// Brings the local-address map to `desired`, adding before removing.
pub fn apply_local(
    maps: &mut FilterMaps,
    desired: &BTreeMap<AddrKey, u8>,
) -> Result<Plan<AddrKey, u8>> {
    let p = plan(&maps.local_addrs()?, desired);
    for (key, kind) in &p.upserts {
        maps.put_local(*key, *kind)?;
    }
    for key in &p.removals {
        maps.remove_local(key)?;
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_upserts_changed_and_new_and_removes_stale() {
        let current = BTreeMap::from([(1, 'a'), (2, 'b'), (3, 'c')]);
        let desired = BTreeMap::from([(2, 'b'), (3, 'x'), (4, 'd')]);
        let p = plan(&current, &desired);
        assert_eq!(p.upserts, vec![(3, 'x'), (4, 'd')]);
        assert_eq!(p.removals, vec![1]);
    }

    #[test]
    fn plan_of_identical_maps_is_empty() {
        let m = BTreeMap::from([(1, 'a')]);
        assert!(plan(&m, &m).is_empty());
    }
}
