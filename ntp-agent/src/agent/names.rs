//! Sources given by name and the addresses they currently stand for.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use ntp_filter_common::SourceClass;
use ntp_proto::{NtpInstant, SourceId, SourceKind, SourceStatus, System};

use super::source_config;
use crate::{
    filter::local_addrs,
    model::{addr, PollSettings},
    net::Transport,
};

/// How often names are checked, how soon a failed resolution is retried,
/// and how long a resolved name whose sources all went silent waits
/// before it is resolved again.
pub const RESOLVE_CHECK: Duration = Duration::from_secs(5);
pub const RESOLVE_RETRY: Duration = Duration::from_secs(30);
pub const RERESOLVE_SILENT: Duration = Duration::from_secs(600);

/// A `--server NAME` / `--peer NAME` and the sources it currently stands for.
pub struct NamedSource {
    pub name: String,
    pub kind: SourceKind,
    pub sources: Vec<(IpAddr, SourceId)>,
    pub next_resolve: Instant,
    /// Poll settings for every address the name gives.
    pub poll: PollSettings,
    /// Addresses it gave that can never be sources (loopback, the box's
    /// own), so each is warned about once.
    refused: Vec<IpAddr>,
}

pub fn class_of(kind: SourceKind) -> SourceClass {
    match kind {
        SourceKind::Server => SourceClass::Server,
        SourceKind::Peer => SourceClass::Peer,
    }
}

impl NamedSource {
    pub fn new(name: String, kind: SourceKind, poll: PollSettings) -> Self {
        Self {
            name,
            kind,
            sources: Vec::new(),
            next_resolve: Instant::now(),
            poll,
            refused: Vec::new(),
        }
    }

    /// Unresolved names are retried; resolved ones only when every source
    /// they gave has become unreachable.
    pub fn due(&self, now: Instant, status: &[SourceStatus]) -> bool {
        if now < self.next_resolve {
            return false;
        }
        self.sources.is_empty()
            || self.sources.iter().all(|(_, id)| {
                status
                    .iter()
                    .any(|s| s.id == *id && s.reach == 0 && s.when.is_some())
            })
    }

    /// Adds the new addresses (to the core and the filter), then retires
    /// those the name no longer resolves to: add before remove.
    pub fn apply(
        &mut self,
        addrs: Vec<IpAddr>,
        system: &mut System,
        kinds: &mut HashMap<SourceId, SourceKind>,
        transport: &mut Transport,
        now: NtpInstant,
    ) {
        let class = class_of(self.kind);
        let own = local_addrs::own_addresses().ok();
        let mut refused = Vec::new();
        let mut kept = Vec::new();
        // Add before remove, unless the filter's table has no room for the
        // new addresses: then those the name left go first.
        let (stale, staying): (Vec<_>, Vec<_>) = std::mem::take(&mut self.sources)
            .into_iter()
            .partition(|(a, _)| !addrs.contains(a));
        let new = addrs
            .iter()
            .filter(|a| !staying.iter().any(|(s, _)| s == *a))
            .count();
        let mut stale = Some(stale);
        if transport.filter_room() < new {
            self.retire_stale(
                stale.take().unwrap_or_default(),
                system,
                kinds,
                transport,
                now,
            );
        }
        self.sources = staying;
        for &addr in &addrs {
            if let Some(&(_, id)) = self.sources.iter().find(|(a, _)| *a == addr) {
                kept.push((addr, id));
                continue;
            }
            if let Some(why) = addr::refuse_source(addr, own.as_deref().unwrap_or(&[])) {
                // Said once per address, not at every re-resolution.
                if !self.refused.contains(&addr) {
                    tracing::warn!(name = %self.name, "not a source: {why}");
                }
                refused.push(addr);
                continue;
            }
            if system.source_by_address(addr).is_some() {
                tracing::warn!(name = %self.name, %addr, "address is already a source; not added twice");
                continue;
            }
            if let Err(e) = transport.admit(addr, class, transport.ntp_port()) {
                tracing::error!("{e:#}");
                continue;
            }
            let id = system.add_source(source_config(&self.poll, addr, self.kind), now);
            kinds.insert(id, self.kind);
            tracing::info!(name = %self.name, %addr, "source added");
            kept.push((addr, id));
        }
        self.retire_stale(stale.unwrap_or_default(), system, kinds, transport, now);
        self.sources = kept;
        self.refused = refused;
        self.next_resolve = Instant::now() + RERESOLVE_SILENT;
    }

    fn retire_stale(
        &self,
        stale: Vec<(IpAddr, SourceId)>,
        system: &mut System,
        kinds: &mut HashMap<SourceId, SourceKind>,
        transport: &mut Transport,
        now: NtpInstant,
    ) {
        for (addr, id) in stale {
            system.retire_source(id, now);
            kinds.remove(&id);
            if let Err(e) = transport.forget(id, addr) {
                tracing::error!("{e:#}");
            }
            tracing::info!(name = %self.name, %addr, "source removed: the name no longer resolves to it");
        }
    }
}
