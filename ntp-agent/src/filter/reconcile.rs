//! Bringing a map from what it holds to what the configuration says, adding
//! and updating before removing, so a reconfiguration never has a moment in
//! which a still-valid source is missing.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use ntp_filter_common::{
    config_flags, AddrKey, FilterConfig, ModeMask, SourceClass, SourceEntry, MAX_ACL_RULES,
    MAX_LOCAL_ADDRS, MAX_SOURCES,
};

use super::maps::FilterMaps;
use crate::model::{
    acl::{self, AclRule, Cidr},
    source::too_many_sources,
};

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

/// How many of `p`'s removals must go before its upserts for the
/// additions to fit in a map of `capacity` that holds `current`: none
/// while old and new together fit (add before remove), else just enough.
pub fn early_removals<K: Ord, V>(
    current: &BTreeMap<K, V>,
    p: &Plan<K, V>,
    capacity: usize,
) -> usize {
    let added = p
        .upserts
        .iter()
        .filter(|(k, _)| !current.contains_key(k))
        .count();
    (current.len() + added)
        .saturating_sub(capacity)
        .min(p.removals.len())
}

/// The part of the filter's state that follows from configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// The config entry. Its [`config_flags::ACL_DEFAULT_DENY`] bit is
    /// ignored: [`apply`] derives it from `acl`.
    pub config: FilterConfig,
    pub policy: [ModeMask; SourceClass::COUNT],
    pub sources: BTreeMap<AddrKey, SourceEntry>,
    /// The client access list (see [`acl`]). Empty: every client allowed.
    pub acl: Vec<AclRule>,
}

impl Desired {
    /// The config entry as written: `config` with the default-deny flag
    /// set exactly when some rule allows.
    pub fn effective_config(&self) -> FilterConfig {
        with_default_deny(self.config, acl::default_deny(&self.acl))
    }
}

fn with_default_deny(mut cfg: FilterConfig, deny: bool) -> FilterConfig {
    cfg.flags &= !config_flags::ACL_DEFAULT_DENY;
    if deny {
        cfg.flags |= config_flags::ACL_DEFAULT_DENY;
    }
    cfg
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub sources_added_or_updated: usize,
    pub sources_removed: usize,
    pub policy_changed: bool,
    pub config_changed: bool,
    pub acl_added_or_updated: usize,
    pub acl_removed: usize,
}

/// Applies `desired`. Order: new and updated sources and access rules,
/// then the policy and config (with the access list's default-deny flag),
/// then removals, so that widening a class never waits on a removal and a
/// source or an allowed client being replaced is never absent. The access
/// list and the number of sources are checked before anything is written.
/// When the old and new sources together exceed the table (a restart at
/// capacity that replaces some), just enough stale ones leave first: a
/// full table must not refuse a new source halfway through, leaving a
/// mix of both configurations behind.
pub fn apply(maps: &mut FilterMaps, desired: &Desired) -> Result<Changes> {
    if let Some(why) = too_many_sources(desired.sources.len()) {
        bail!("{why}");
    }
    let acl_plan = AclPlan::new(maps, &desired.acl)?;
    let current = maps.sources()?;
    let sources = plan(&current, &desired.sources);
    let early = early_removals(&current, &sources, MAX_SOURCES as usize);
    for key in &sources.removals[..early] {
        maps.remove_source(key)?;
    }
    for (key, entry) in &sources.upserts {
        maps.put_source(*key, *entry)?;
    }
    acl_plan.add(maps)?;
    let mut changes = Changes {
        sources_added_or_updated: sources.upserts.len(),
        sources_removed: sources.removals.len(),
        acl_added_or_updated: acl_plan.plan.upserts.len(),
        acl_removed: acl_plan.plan.removals.len(),
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
    let config = desired.effective_config();
    if maps.config()? != config {
        maps.set_config(config)?;
        changes.config_changed = true;
    }
    for key in &sources.removals[early..] {
        maps.remove_source(key)?;
    }
    acl_plan.remove_rest(maps)?;
    Ok(changes)
}

/// The access-list writes, in the order that keeps allowed clients
/// allowed: removals that must come first for the additions to fit in the
/// map (only when the list is near [`MAX_ACL_RULES`]), then additions and
/// changes, then (the caller's flag write, then) the other removals.
struct AclPlan {
    plan: Plan<Cidr, bool>,
    /// How many of `plan.removals` go before the upserts.
    early: usize,
}

impl AclPlan {
    /// Checks `desired` (contradictions, size) before anything is written.
    fn new(maps: &FilterMaps, desired: &[AclRule]) -> Result<Self> {
        let current: BTreeMap<Cidr, bool> = maps
            .acl_rules()?
            .into_iter()
            .map(|r| (r.cidr, r.allow))
            .collect();
        let plan = plan(&current, &acl::table(desired)?);
        let early = early_removals(&current, &plan, MAX_ACL_RULES as usize);
        Ok(Self { plan, early })
    }

    fn add(&self, maps: &mut FilterMaps) -> Result<()> {
        for cidr in &self.plan.removals[..self.early] {
            maps.remove_acl(*cidr)?;
        }
        for (cidr, allow) in &self.plan.upserts {
            maps.put_acl(AclRule {
                cidr: *cidr,
                allow: *allow,
            })?;
        }
        Ok(())
    }

    fn remove_rest(&self, maps: &mut FilterMaps) -> Result<()> {
        for cidr in &self.plan.removals[self.early..] {
            maps.remove_acl(*cidr)?;
        }
        Ok(())
    }
}

/// Brings the access list to `desired` alone (a runtime `allow`/`deny`
/// change), leaving sources, policy and the other config bits alone: new
/// and changed rules, then the default-deny flag (set when some rule
/// allows), then removals. A client allowed both before and after is never
/// dropped in between; one denied afterwards may still pass for the
/// microseconds the update takes. (Exception: when the old and new lists
/// together exceed the map, just enough old rules are removed first.)
///
/// [`apply`] writes the same list and flag from [`Desired::acl`], so a
/// caller that changes the list at runtime must keep its `Desired` in step,
/// or the next `apply` puts the old list back.
pub fn apply_acl(maps: &mut FilterMaps, desired: &[AclRule]) -> Result<Plan<Cidr, bool>> {
    let p = AclPlan::new(maps, desired)?;
    p.add(maps)?;
    maps.set_acl_default_deny(acl::default_deny(desired))?;
    p.remove_rest(maps)?;
    Ok(p.plan)
}

/// What [`apply_local`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct LocalChanges {
    pub plan: Plan<AddrKey, u8>,
    /// The box's addresses that did not fit in the map
    /// ([`MAX_LOCAL_ADDRS`]): NTP to them is treated as transit.
    pub left_out: Vec<AddrKey>,
}

/// Which of `desired` go in a map of `capacity` that holds `current`:
/// all when they fit; else the ones it holds already (so no protected
/// address loses its protection to a newcomer), then the others in order.
pub fn fitting<V: Clone>(
    current: &BTreeMap<AddrKey, V>,
    desired: &BTreeMap<AddrKey, V>,
    capacity: usize,
) -> (BTreeMap<AddrKey, V>, Vec<AddrKey>) {
    if desired.len() <= capacity {
        return (desired.clone(), Vec::new());
    }
    let (held, new): (Vec<_>, Vec<_>) = desired.iter().partition(|(k, _)| current.contains_key(k));
    let mut fit = BTreeMap::new();
    let mut left_out = Vec::new();
    for (k, v) in held.into_iter().chain(new) {
        if fit.len() < capacity {
            fit.insert(*k, v.clone());
        } else {
            left_out.push(*k);
        }
    }
    left_out.sort();
    (fit, left_out)
}

/// Brings the local-address map to `desired`: adding before removing, but
/// first removing just enough stale entries for the additions to fit when
/// old and new together exceed the map (a new address must not wait
/// behind addresses that are gone). When the box has more addresses than
/// the map holds, the ones that do not fit are returned.
pub fn apply_local(maps: &mut FilterMaps, desired: &BTreeMap<AddrKey, u8>) -> Result<LocalChanges> {
    let current = maps.local_addrs()?;
    let cap = MAX_LOCAL_ADDRS as usize;
    let (want, left_out) = fitting(&current, desired, cap);
    let p = plan(&current, &want);
    let early = early_removals(&current, &p, cap);
    for key in &p.removals[..early] {
        maps.remove_local(key)?;
    }
    for (key, kind) in &p.upserts {
        maps.put_local(*key, *kind)?;
    }
    for key in &p.removals[early..] {
        maps.remove_local(key)?;
    }
    Ok(LocalChanges { plan: p, left_out })
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
    fn the_default_deny_flag_follows_the_allow_rules_only() {
        let cidr: Cidr = "192.0.2.0/24".parse().unwrap();
        let mut d = Desired {
            config: FilterConfig {
                ntp_port: 123,
                flags: config_flags::LOG_DROPS | config_flags::ACL_DEFAULT_DENY,
            },
            policy: [0; SourceClass::COUNT],
            sources: BTreeMap::new(),
            acl: Vec::new(),
        };
        // A stray bit in `config` does not survive: the list decides.
        assert_eq!(d.effective_config().flags, config_flags::LOG_DROPS);
        d.acl.push(AclRule::deny(cidr));
        assert_eq!(d.effective_config().flags, config_flags::LOG_DROPS);
        d.acl.push(AclRule::allow("10.0.0.0/8".parse().unwrap()));
        assert_eq!(
            d.effective_config().flags,
            config_flags::LOG_DROPS | config_flags::ACL_DEFAULT_DENY
        );
        assert_eq!(d.effective_config().ntp_port, 123);
    }

    #[test]
    fn addresses_past_capacity_leave_out_newcomers_not_held_ones() {
        let k = |i: u8| AddrKey::from_v4([192, 0, 2, i]);
        let current = BTreeMap::from([(k(5), 1u8), (k(9), 1)]);
        let desired: BTreeMap<_, _> = (1..=9).map(|i| (k(i), 1u8)).collect();
        let (fit, out) = fitting(&current, &desired, 4);
        assert_eq!(
            fit.keys().copied().collect::<Vec<_>>(),
            [k(1), k(2), k(5), k(9)]
        );
        assert_eq!(out, [k(3), k(4), k(6), k(7), k(8)]);
        assert_eq!(fitting(&current, &desired, 9), (desired.clone(), vec![]));
    }

    /// A restart at capacity that replaces sources: in the old order
    /// (every upsert first) the full table refuses the first newcomer and
    /// leaves a mix of both sets; with the early removals the whole plan
    /// goes through, and only as many stale entries as needed leave early.
    #[test]
    fn a_replacement_at_capacity_removes_just_enough_first() {
        use super::super::table::{Image, Value};
        use ntp_filter_common::table;
        let g = table::SOURCES;
        let cap = g.capacity as usize;
        let k = |i: u32| {
            let [a, b, c, d] = (0xc633_6400u32 + i).to_be_bytes(); // 198.51.100.0/22
            AddrKey::from_v4([a, b, c, d])
        };
        let v = Value {
            class: 1,
            kind: 0,
            reply_port: 0,
            server_port: 123,
        };
        let current: BTreeMap<AddrKey, Value> = (0..cap as u32).map(|i| (k(i), v)).collect();
        let mut full = Image::empty(g, 0x5eed);
        for key in current.keys() {
            full.put(key, v).unwrap();
        }
        for replaced in [1usize, 3] {
            // The first `replaced` sources give way to as many new ones.
            let desired: BTreeMap<AddrKey, Value> = (replaced as u32..(cap + replaced) as u32)
                .map(|i| (k(i), v))
                .collect();
            let p = plan(&current, &desired);
            let early = early_removals(&current, &p, cap);
            assert_eq!(early, replaced);

            let mut img = full.clone();
            let naive = p
                .upserts
                .iter()
                .try_for_each(|(key, v)| img.put(key, *v).map(|_| ()));
            assert!(naive.is_err(), "upserts first fit a full table");

            let mut img = full.clone();
            for key in &p.removals[..early] {
                img.remove(key).unwrap();
            }
            for (key, v) in &p.upserts {
                img.put(key, *v).unwrap();
            }
            for key in &p.removals[early..] {
                img.remove(key).unwrap();
            }
            assert_eq!(img.entries(), desired);
        }
        // Room to spare: everything is added before anything goes.
        let less: BTreeMap<AddrKey, Value> = (1..cap as u32).map(|i| (k(i), v)).collect();
        let some: BTreeMap<AddrKey, Value> = (0..10).map(|i| (k(i), v)).collect();
        assert_eq!(early_removals(&less, &plan(&less, &some), cap), 0);
    }

    #[test]
    fn plan_of_identical_maps_is_empty() {
        let m = BTreeMap::from([(1, 'a')]);
        assert!(plan(&m, &m).is_empty());
    }
}
