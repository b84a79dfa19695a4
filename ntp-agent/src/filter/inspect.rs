//! Reading the filter back from its pins, for `status`, the metrics page
//! and systemd's STATUS= line: it works whether or not an agent runs (e.g.
//! after `kill -9`), and never changes anything.

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::Result;
use ntp_filter_common::{SourceClass, LAYOUT_VERSION};
use serde::Serialize;

use super::{stats::FilterStats, FilterMaps, PinDir};
use crate::model::policy::modes_in;

#[derive(Serialize)]
pub struct FilterStatus {
    pub layout_version: u32,
    pub pin_dir: String,
    pub ntp_port: u16,
    pub interfaces: Vec<InterfaceStatus>,
    /// Allowed NTP modes per class, as lists.
    pub policy: BTreeMap<&'static str, Vec<u8>>,
    pub servers: Vec<IpAddr>,
    pub peers: Vec<IpAddr>,
    pub local_addresses: usize,
    /// The box's addresses (in this network namespace) that are not in the
    /// filter's local-address map because it is full: NTP to them is
    /// treated as transit. Normally 0.
    pub local_addresses_unprotected: usize,
    /// Whether the program counts the passes it leaves alone (not IP, not
    /// UDP, not the NTP port, transit): `--count-out-of-scope`. When
    /// false, those four pass reasons stay at 0.
    pub out_of_scope_counted: bool,
    /// Client access list, e.g. `allow 192.0.2.0/24`, longest prefix wins.
    pub acl: Vec<String>,
    /// What happens to clients no rule matches: `allow` or `deny`.
    pub acl_default: &'static str,
    /// Every interface together.
    pub counters: FilterStats,
    /// The same counters per interface with a slot, plus `other` (packets
    /// from interfaces without one) when it counted anything. Their sum is
    /// `counters`.
    pub counters_by_interface: BTreeMap<String, FilterStats>,
}

#[derive(Serialize)]
pub struct InterfaceStatus {
    pub name: String,
    /// `native`, `skb`, `hw`, or `unknown` when iproute2 cannot tell.
    pub xdp_mode: String,
    /// Its block of the counter array; `null`: counted under `other`.
    pub counter_slot: Option<u32>,
}

/// The filter's state and counters as the pinned maps hold them.
pub fn collect(pins: &PinDir) -> Result<FilterStatus> {
    let maps = FilterMaps::open(pins)?;
    let cfg = maps.config()?;
    let masks = maps.policy()?;
    let mut servers = Vec::new();
    let mut peers = Vec::new();
    for (key, entry) in maps.sources()? {
        match SourceClass::from_u8(entry.class) {
            Some(SourceClass::Server) => servers.push(key.to_ip()),
            Some(SourceClass::Peer) => peers.push(key.to_ip()),
            _ => {}
        }
    }
    let slots = maps.iface_slots()?;
    let local = maps.local_addrs()?;
    let interfaces = pins
        .linked_interfaces()?
        .into_iter()
        .map(|name| InterfaceStatus {
            xdp_mode: xdp_mode(&name).unwrap_or_else(|| "unknown".into()),
            counter_slot: super::ifindex(&name)
                .ok()
                .and_then(|i| slots.get(&i).copied()),
            name,
        })
        .collect();
    Ok(FilterStatus {
        layout_version: LAYOUT_VERSION,
        pin_dir: pins.root().display().to_string(),
        ntp_port: if cfg.ntp_port == 0 { 123 } else { cfg.ntp_port },
        interfaces,
        policy: SourceClass::ALL
            .iter()
            .map(|c| (c.name(), modes_in(masks[*c as usize])))
            .collect(),
        servers,
        peers,
        local_addresses: local.len(),
        local_addresses_unprotected: crate::filter::local_addrs::current()
            .map(|box_addrs| box_addrs.keys().filter(|k| !local.contains_key(k)).count())
            .unwrap_or(0),
        out_of_scope_counted: cfg.flags & ntp_filter_common::config_flags::OUT_OF_SCOPE_COUNTED
            != 0,
        acl: maps.acl_rules()?.iter().map(ToString::to_string).collect(),
        acl_default: if maps.acl_default_deny()? {
            "deny"
        } else {
            "allow"
        },
        counters: FilterStats::from_slots(&maps.counters()?),
        counters_by_interface: maps.interface_counters()?.into_iter().collect(),
    })
}

/// The attach mode as the kernel reports it (IFLA_XDP via iproute2).
pub fn xdp_mode(iface: &str) -> Option<String> {
    let out = std::process::Command::new("ip")
        .args(["-j", "-d", "link", "show", "dev", iface])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let mode = v.get(0)?.get("xdp")?.get("mode")?.as_u64()?;
    Some(
        match mode {
            1 => "native",
            2 => "skb",
            3 => "hw",
            _ => "unknown",
        }
        .into(),
    )
}
