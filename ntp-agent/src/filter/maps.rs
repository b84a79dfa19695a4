//! Typed access to the pinned maps. Every writer and reader (the running
//! agent, `status`, `detach`, tests) opens them from their pins, so there is
//! one path whether or not this process loaded the program.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result};
use aya::maps::{Array, HashMap, Map, MapData, MapError, PerCpuArray};
use ntp_filter_common::{
    names, AddrKey, FilterConfig, ModeMask, SourceClass, SourceEntry, COUNTER_SLOTS,
};

use super::pins::PinDir;

pub struct FilterMaps {
    config: Array<MapData, FilterConfig>,
    policy: Array<MapData, ModeMask>,
    sources: HashMap<MapData, AddrKey, SourceEntry>,
    local: HashMap<MapData, AddrKey, u8>,
    counters: PerCpuArray<MapData, u64>,
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

    /// Every counter slot summed over the CPUs.
    pub fn counters(&self) -> Result<Vec<u64>> {
        (0..COUNTER_SLOTS)
            .map(|i| Ok(self.counters.get(&i, 0)?.iter().sum()))
            .collect()
    }
}
