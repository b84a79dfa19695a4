//! Typed access to the pinned maps. Every writer and reader (the running
//! agent, `status`, `detach`, tests) opens them from their pins, so there is
//! one path whether or not this process loaded the program.

use std::collections::BTreeMap;

use anyhow::{anyhow, Context as _, Result};
use aya::maps::{lpm_trie::LpmTrie, Array, Map, MapData, MapError, PerCpuArray, PerCpuValues};
use ntp_filter_common::{
    cell, cell_base, config_flags, counters, names, table, AclKey, AddrKey, ConfigRecord,
    FilterConfig, ModeMask, SourceClass, SourceEntry, COUNTER_SLOTS, IFACE_OTHER, MAX_IFACE_SLOTS,
    MAX_SERVER_PORTS,
};

use super::{
    pins::PinDir,
    slots,
    stats::FilterStats,
    table::{AddrTable, Value},
};
use crate::model::acl::{AclRule, Cidr};

pub struct FilterMaps {
    config: Array<MapData, ConfigRecord>,
    sources: AddrTable,
    local: AddrTable,
    counters: PerCpuArray<MapData, u64>,
    acl: LpmTrie<MapData, AclKey, u8>,
    ifaces: Array<MapData, u32>,
}

/// The NTP port a config record means (0: the default).
fn effective_port(ntp_port: u16) -> u16 {
    if ntp_port == 0 {
        ntp_filter_common::NTP_PORT
    } else {
        ntp_port
    }
}

/// The record's server ports in host order, without the unused lanes (the
/// NTP port, or 0 in a map never written).
fn server_ports_of(rec: &ConfigRecord) -> Vec<u16> {
    let ntp = effective_port(rec.ntp_port);
    let mut ports: Vec<u16> = rec
        .server_ports
        .iter()
        .map(|p| u16::from_be(*p))
        .filter(|p| *p != 0 && *p != ntp)
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// `ports` as the record's lanes (network order, unused ones the NTP
/// port), and the ports that did not fit.
fn lanes(ports: &[u16], ntp: u16) -> ([u16; MAX_SERVER_PORTS], Vec<u16>) {
    let mut wanted: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| *p != ntp && *p != 0)
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut out = [ntp.to_be(); MAX_SERVER_PORTS];
    for (lane, p) in out.iter_mut().zip(&wanted) {
        *lane = p.to_be();
    }
    let left_out = wanted.get(MAX_SERVER_PORTS..).unwrap_or_default().to_vec();
    (out, left_out)
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
        let array = |name| -> Result<Map> { Ok(Map::Array(open(pins, name)?)) };
        let config: Array<MapData, ConfigRecord> = Array::try_from(array(names::CONFIG)?)?;
        let seed = config.get(&0, 0)?.table_seed;
        Ok(Self {
            config,
            sources: AddrTable::new(
                table::SOURCES,
                seed,
                Array::try_from(array(names::SOURCES_DIR)?)?,
                Array::try_from(array(names::SOURCES)?)?,
            ),
            local: AddrTable::new(
                table::LOCAL,
                seed,
                Array::try_from(array(names::LOCAL_DIR)?)?,
                Array::try_from(array(names::LOCAL_ADDRS)?)?,
            ),
            counters: PerCpuArray::try_from(Map::PerCpuArray(open(pins, names::COUNTERS)?))?,
            acl: LpmTrie::try_from(Map::LpmTrie(open(pins, names::ACL)?))?,
            ifaces: Array::try_from(Map::Array(open(pins, names::IFACES)?))?,
        })
    }

    /// Gives freshly created tables their secret hash key: only while both
    /// are empty and unkeyed, so a table is always read with the key it was
    /// laid out with (a restarted agent, `status` and the program all take
    /// it from the config record). Called once by the agent that loads the
    /// program, before anything is put in the tables.
    pub fn seed_tables(&mut self) -> Result<()> {
        let rec = self.record()?;
        if rec.table_seed != 0 || self.sources.count()? != 0 || self.local.count()? != 0 {
            return Ok(());
        }
        let seed = loop {
            let s: u64 = rand::random();
            if s != 0 {
                break s;
            }
        };
        self.config.set(
            0,
            ConfigRecord {
                table_seed: seed,
                ..rec
            },
            0,
        )?;
        self.sources.set_seed(seed);
        self.local.set_seed(seed);
        Ok(())
    }

    fn record(&self) -> Result<ConfigRecord> {
        Ok(self.config.get(&0, 0)?)
    }

    pub fn config(&self) -> Result<FilterConfig> {
        Ok(self.record()?.settings())
    }

    /// Writes the settings, leaving the policy and the server ports as
    /// they are (one write of the whole record, so the program never sees
    /// half of it).
    pub fn set_config(&mut self, cfg: FilterConfig) -> Result<()> {
        let old = self.record()?;
        let ports = server_ports_of(&old);
        let mut rec = ConfigRecord {
            ntp_port: cfg.ntp_port,
            flags: cfg.flags,
            ..old
        };
        rec.server_ports = lanes(&ports, effective_port(cfg.ntp_port)).0;
        Ok(self.config.set(0, rec, 0)?)
    }

    /// The ports servers answer from besides the NTP port (host order).
    pub fn server_ports(&self) -> Result<Vec<u16>> {
        Ok(server_ports_of(&self.record()?))
    }

    /// Sets the ports servers answer from besides the NTP port; returns
    /// those that did not fit ([`MAX_SERVER_PORTS`]), whose replies stay
    /// out of the filter's scope.
    pub fn set_server_ports(&mut self, ports: &[u16]) -> Result<Vec<u16>> {
        let mut rec = self.record()?;
        let (lanes, left_out) = lanes(ports, effective_port(rec.ntp_port));
        if rec.server_ports != lanes {
            rec.server_ports = lanes;
            self.config.set(0, rec, 0)?;
        }
        Ok(left_out)
    }

    pub fn policy(&self) -> Result<[ModeMask; SourceClass::COUNT]> {
        Ok(self.record()?.policy)
    }

    pub fn set_policy(&mut self, class: SourceClass, mask: ModeMask) -> Result<()> {
        let mut rec = self.record()?;
        rec.policy[class as usize] = mask;
        Ok(self.config.set(0, rec, 0)?)
    }

    pub fn sources(&self) -> Result<BTreeMap<AddrKey, SourceEntry>> {
        Ok(self
            .sources
            .entries()?
            .into_iter()
            .map(|(k, v)| {
                let entry = SourceEntry {
                    class: v.class,
                    _pad: 0,
                    reply_port: v.reply_port,
                    server_port: v.server_port,
                    _pad2: 0,
                };
                (k, entry)
            })
            .collect())
    }

    /// How many addresses the sources table holds.
    pub fn source_count(&self) -> Result<usize> {
        self.sources.count()
    }

    pub fn put_source(&mut self, key: AddrKey, entry: SourceEntry) -> Result<()> {
        let value = Value {
            class: entry.class,
            kind: 0,
            reply_port: entry.reply_port,
            server_port: entry.server_port,
        };
        self.sources
            .put(&key, value)
            .with_context(|| format!("adding {} to the sources", key.to_ip()))
    }

    pub fn remove_source(&mut self, key: &AddrKey) -> Result<()> {
        self.sources
            .remove(key)
            .with_context(|| format!("removing {} from the sources", key.to_ip()))
    }

    pub fn local_addrs(&self) -> Result<BTreeMap<AddrKey, u8>> {
        Ok(self
            .local
            .entries()?
            .into_iter()
            .map(|(k, v)| (k, v.kind))
            .collect())
    }

    pub fn put_local(&mut self, key: AddrKey, kind: u8) -> Result<()> {
        let value = Value {
            class: 0,
            kind,
            reply_port: 0,
            server_port: 0,
        };
        self.local
            .put(&key, value)
            .with_context(|| format!("adding {} to the local addresses", key.to_ip()))
    }

    pub fn remove_local(&mut self, key: &AddrKey) -> Result<()> {
        self.local
            .remove(key)
            .with_context(|| format!("removing {} from the local addresses", key.to_ip()))
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

    /// Every counter summed over the CPUs and the interface slots: what the
    /// program counted on all interfaces, indexed by `Counter::index`.
    pub fn counters(&self) -> Result<Vec<u64>> {
        let mut total = vec![0u64; COUNTER_SLOTS as usize];
        for slot in 0..MAX_IFACE_SLOTS {
            for (t, n) in total.iter_mut().zip(self.slot_counters(slot)?) {
                *t += n;
            }
        }
        Ok(total)
    }

    /// One interface slot's counters summed over the CPUs, indexed by
    /// `Counter::index` (added up from the cells the program writes).
    pub fn slot_counters(&self, slot: u32) -> Result<Vec<u64>> {
        if slot >= MAX_IFACE_SLOTS {
            return Err(anyhow!(
                "interface slot {slot} out of range (0..{MAX_IFACE_SLOTS})"
            ));
        }
        let base = cell_base(slot);
        let cells: Vec<u64> = (base..base + cell::COUNT)
            .map(|i| Ok(self.counters.get(&i, 0)?.iter().sum()))
            .collect::<Result<_>>()?;
        let mut out = vec![0u64; COUNTER_SLOTS as usize];
        counters::expand(&cells, &mut out);
        Ok(out)
    }

    /// Every slot's counters, one block after the other: indexed by
    /// `counter_index(slot, counter)`.
    pub fn all_counters(&self) -> Result<Vec<u64>> {
        let mut out = Vec::with_capacity((COUNTER_SLOTS * MAX_IFACE_SLOTS) as usize);
        for slot in 0..MAX_IFACE_SLOTS {
            out.extend(self.slot_counters(slot)?);
        }
        Ok(out)
    }

    /// Sets a slot's counters to zero on every CPU.
    pub fn zero_slot(&mut self, slot: u32) -> Result<()> {
        if slot >= MAX_IFACE_SLOTS {
            return Err(anyhow!(
                "interface slot {slot} out of range (0..{MAX_IFACE_SLOTS})"
            ));
        }
        let cpus = aya::util::nr_cpus().map_err(|(what, e)| anyhow!("{what}: {e}"))?;
        let base = cell_base(slot);
        for i in base..base + cell::COUNT {
            let zeros = PerCpuValues::try_from(vec![0u64; cpus])?;
            self.counters
                .set(i, zeros, 0)
                .with_context(|| format!("zeroing counter {i} of interface slot {slot}"))?;
        }
        Ok(())
    }

    /// Interfaces with a counter slot: ifindex -> slot (every entry of
    /// `NF_IFACES` that is not 0).
    pub fn iface_slots(&self) -> Result<BTreeMap<u32, u32>> {
        let mut slots = BTreeMap::new();
        for (ifindex, slot) in self.ifaces.iter().enumerate() {
            let slot = slot?;
            if slot != IFACE_OTHER {
                slots.insert(ifindex as u32, slot);
            }
        }
        Ok(slots)
    }

    /// Points `ifindex`'s packets at `slot` (0: "other"). Low level: the
    /// counters are not touched; see [`slots`] for assigning and freeing.
    pub fn set_iface_slot(&mut self, ifindex: u32, slot: u32) -> Result<()> {
        self.ifaces
            .set(ifindex, slot, 0)
            .with_context(|| format!("setting the counter slot of ifindex {ifindex} to {slot}"))
    }

    /// The counters per interface, in slot order: each interface that has a
    /// slot under its current name (`ifindex N` if it no longer exists),
    /// then `other` (interfaces without a slot) if it counted anything.
    pub fn interface_counters(&self) -> Result<Vec<(String, FilterStats)>> {
        let mut by_slot: Vec<(u32, String)> = self
            .iface_slots()?
            .into_iter()
            .filter(|(_, slot)| *slot < MAX_IFACE_SLOTS)
            .map(|(ifindex, slot)| (slot, slots::iface_name(ifindex)))
            .collect();
        by_slot.sort();
        let mut out = Vec::with_capacity(by_slot.len() + 1);
        for (slot, name) in by_slot {
            out.push((name, FilterStats::from_slots(&self.slot_counters(slot)?)));
        }
        let other = self.slot_counters(IFACE_OTHER)?;
        if other.iter().any(|&n| n != 0) {
            out.push((slots::OTHER.to_string(), FilterStats::from_slots(&other)));
        }
        Ok(out)
    }
}
