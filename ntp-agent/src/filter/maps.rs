//! Typed access to the pinned maps. Every writer and reader (the running
//! agent, `status`, `detach`, tests) opens them from their pins, so there is
//! one path whether or not this process loaded the program.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context as _, Result};
use aya::maps::{lpm_trie::LpmTrie, Array, HashMap, Map, MapData, MapError, PerCpuArray};
use ntp_filter_common::{
    config_flags, names, AclKey, AddrKey, FilterConfig, ModeMask, SourceClass, SourceEntry,
    COUNTER_SLOTS,
};

use super::{
    acl::{AclRule, Cidr},
    pins::PinDir,
};

pub struct FilterMaps {
    config: Array<MapData, FilterConfig>,
    policy: Array<MapData, ModeMask>,
    sources: HashMap<MapData, AddrKey, SourceEntry>,
    local: HashMap<MapData, AddrKey, u8>,
    counters: PerCpuArray<MapData, u64>,
    acl: LpmTrie<MapData, AclKey, u8>,
}

fn open(pins: &PinDir, name: &str) -> Result<MapData> {
    let path = pins.map(name);
    MapData::from_pin(&path).with_context(|| {
        format!(
            "cannot open pinned map {}: is the filter loaded (`ntp-agent run`) and --pin-dir right?",
            path.display()
        )
    })
}

impl FilterMaps {
    pub fn open(pins: &PinDir) -> Result<Self> {
        Ok(Self {
            config: Array::try_from(Map::Array(open(pins, names::CONFIG)?))?,
            policy: Array::try_from(Map::Array(open(pins, names::POLICY)?))?,
            sources: HashMap::try_from(Map::HashMap(open(pins, names::SOURCES)?))?,
            local: HashMap::try_from(Map::HashMap(open(pins, names::LOCAL_ADDRS)?))?,
            counters: PerCpuArray::try_from(Map::PerCpuArray(open(pins, names::COUNTERS)?))?,
            acl: LpmTrie::try_from(Map::LpmTrie(open(pins, names::ACL)?))?,
        })
    }

    pub fn config(&self) -> Result<FilterConfig> {
        Ok(self.config.get(&0, 0)?)
    }

    pub fn set_config(&mut self, cfg: FilterConfig) -> Result<()> {
        Ok(self.config.set(0, cfg, 0)?)
    }

    pub fn policy(&self) -> Result<[ModeMask; SourceClass::COUNT]> {
        let mut masks = [0; SourceClass::COUNT];
        for class in SourceClass::ALL {
            masks[class as usize] = self.policy.get(&(class as u32), 0)?;
        }
        Ok(masks)
    }

    pub fn set_policy(&mut self, class: SourceClass, mask: ModeMask) -> Result<()> {
        Ok(self.policy.set(class as u32, mask, 0)?)
    }

    pub fn sources(&self) -> Result<BTreeMap<AddrKey, SourceEntry>> {
        Ok(self.sources.iter().collect::<Result<_, MapError>>()?)
    }

    pub fn put_source(&mut self, key: AddrKey, entry: SourceEntry) -> Result<()> {
        Ok(self.sources.insert(key, entry, 0)?)
    }

    pub fn remove_source(&mut self, key: &AddrKey) -> Result<()> {
        Ok(self.sources.remove(key)?)
    }

    pub fn local_addrs(&self) -> Result<BTreeMap<AddrKey, u8>> {
        Ok(self.local.iter().collect::<Result<_, MapError>>()?)
    }

    pub fn put_local(&mut self, key: AddrKey, kind: u8) -> Result<()> {
        Ok(self.local.insert(key, kind, 0)?)
    }

    pub fn remove_local(&mut self, key: &AddrKey) -> Result<()> {
        Ok(self.local.remove(key)?)
    }

    /// The access list, sorted (IPv4 first, then by address and length).
    pub fn acl_rules(&self) -> Result<Vec<AclRule>> {
        let mut rules = Vec::new();
        for entry in self.acl.iter() {
            let (key, value) = entry?;
            let cidr = Cidr::from_key(&key)?;
            rules.push(AclRule {
                cidr,
                allow: value == ntp_filter_common::acl::ALLOW,
            });
        }
        rules.sort();
        Ok(rules)
    }

    /// Adds the rule, or changes the verdict of an existing rule for the same
    /// range (one map write: the range is never without a rule). Does not
    /// touch the default-deny flag.
    pub fn put_acl(&mut self, rule: AclRule) -> Result<()> {
        self.acl
            .insert(&rule.cidr.key(), rule.value(), 0)
            .with_context(|| format!("adding `{rule}` to the access list"))
    }

    /// Removes the rule for exactly this range (not a longest-prefix match).
    pub fn remove_acl(&mut self, cidr: Cidr) -> Result<()> {
        match self.acl.remove(&cidr.key()) {
            Ok(()) => Ok(()),
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                Err(anyhow!("no allow/deny rule for {cidr}"))
            }
            Err(e) => {
                Err(e).with_context(|| format!("removing the rule for {cidr} from the access list"))
            }
        }
    }

    /// Whether clients that match no rule are denied.
    pub fn acl_default_deny(&self) -> Result<bool> {
        Ok(self.config()?.flags & config_flags::ACL_DEFAULT_DENY != 0)
    }

    /// Sets or clears [`config_flags::ACL_DEFAULT_DENY`], leaving the other
    /// config fields as they are. Writes only if it changes.
    pub fn set_acl_default_deny(&mut self, deny: bool) -> Result<()> {
        let mut cfg = self.config()?;
        let flags = if deny {
            cfg.flags | config_flags::ACL_DEFAULT_DENY
        } else {
            cfg.flags & !config_flags::ACL_DEFAULT_DENY
        };
        if flags != cfg.flags {
            cfg.flags = flags;
            self.set_config(cfg)?;
        }
        Ok(())
    }

    /// Every counter slot summed over the CPUs.
    pub fn counters(&self) -> Result<Vec<u64>> {
        (0..COUNTER_SLOTS)
            .map(|i| Ok(self.counters.get(&i, 0)?.iter().sum()))
            .collect()
    }
}

// TEMPORARY until per-interface counters land: the counters are one set for
// every interface, so they are reported under the label "all". The lead
// replaces this block with the per-interface version at merge.
impl FilterMaps {
    /// Counters per filtered interface, as `(interface, stats)`.
    pub fn interface_counters(&self) -> Result<Vec<(String, super::stats::FilterStats)>> {
        Ok(vec![(
            "all".to_string(),
            super::stats::FilterStats::from_slots(&self.counters()?),
        )])
    }
}
