//! `--pool NAME` in the event loop: [`Pool`] decides which addresses to
//! take and which member to replace; this adds the new member to the
//! filter and the core before the one it replaces leaves them, and keeps
//! the pool's own bookkeeping (members and their core sources) no larger
//! than `maxsources`.

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use ntp_filter_common::SourceClass;
use ntp_proto::{SourceId, SourceKind, SourceStatus, Tally};

use super::{names, source_config, Agent, Resolving};
use crate::{
    model::{PollSettings, SourceArg, SourceSpec},
    net::resolve::resolve,
    pool::{Health, Pool, DEFAULT_MAX_SOURCES},
    protocol::PoolReport,
};

pub struct PoolSource {
    pool: Pool,
    poll: PollSettings,
    /// The core source of each member.
    sources: Vec<(IpAddr, SourceId)>,
    /// When the pool, not full, may be resolved again.
    next_fill: Instant,
    /// A resolution is under way (at most one per pool).
    resolving: bool,
    /// The member that resolution is to replace.
    replacing: Option<IpAddr>,
    replacements: u64,
}

impl PoolSource {
    pub fn name(&self) -> &str {
        &self.pool.name
    }

    fn id_of(&self, addr: IpAddr) -> Option<SourceId> {
        self.sources
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, id)| *id)
    }

    /// How the members are doing, from the core's status.
    fn health(&self, status: &[SourceStatus]) -> Vec<Health> {
        self.sources
            .iter()
            .filter_map(|&(addr, id)| {
                let s = status.iter().find(|s| s.id == id)?;
                Some(Health {
                    addr,
                    reach: s.reach,
                    falseticker: s.tally_kind == Tally::Falseticker,
                })
            })
            .collect()
    }

    /// The members' current poll interval (the longest), which bounds how
    /// often one is replaced.
    fn poll_interval(&self, status: &[SourceStatus]) -> Duration {
        let floor = 1u64 << self.poll.minpoll.max(0);
        let longest = self
            .sources
            .iter()
            .filter_map(|(_, id)| status.iter().find(|s| s.id == *id))
            .map(|s| s.poll)
            .max()
            .unwrap_or(floor);
        Duration::from_secs(longest.max(floor))
    }
}

impl Agent {
    pub(super) fn add_pool(&mut self, arg: &SourceArg, poll: PollSettings) -> Result<()> {
        let SourceSpec::Name(name) = &arg.spec else {
            bail!("{}: a pool is a host name", arg.spec);
        };
        if self.pools.iter().any(|p| p.name() == name) || self.names.iter().any(|n| &n.name == name)
        {
            bail!("{name} is already a source");
        }
        self.pools.push(PoolSource {
            pool: Pool::new(
                name.clone(),
                arg.options.max_sources.unwrap_or(DEFAULT_MAX_SOURCES),
            ),
            poll,
            sources: Vec::new(),
            next_fill: Instant::now(),
            resolving: false,
            replacing: None,
            replacements: 0,
        });
        Ok(())
    }

    pub(super) fn remove_pool(&mut self, spec: &SourceSpec) -> Result<()> {
        let name = spec.to_string();
        let Some(i) = self.pools.iter().position(|p| p.name() == name) else {
            bail!("no pool {name} is configured");
        };
        let p = self.pools.remove(i);
        for (addr, id) in p.sources {
            self.retire(id, addr)?;
        }
        Ok(())
    }

    /// Who a source belongs to, when it is not the operator's own address.
    pub(super) fn owner_of(&self, id: SourceId) -> Option<String> {
        if let Some(p) = self
            .pools
            .iter()
            .find(|p| p.sources.iter().any(|s| s.1 == id))
        {
            return Some(format!("the pool {}", p.name()));
        }
        self.nts_reports()
            .into_iter()
            .find(|r| r.source == Some(id))
            .map(|r| format!("the NTS source {}", r.host))
    }

    /// Resolves each pool that is short of members (at most every
    /// [`names::RESOLVE_RETRY`]) or has a member due for replacement.
    pub(super) fn resolve_due_pools(&mut self) {
        let now = Instant::now();
        let status = self.system.source_status(self.mono(now));
        for p in &mut self.pools {
            if p.resolving {
                continue;
            }
            if p.pool.len() < p.pool.max_sources {
                if now < p.next_fill {
                    continue;
                }
                p.next_fill = now + names::RESOLVE_RETRY;
            } else {
                let (health, poll) = (p.health(&status), p.poll_interval(&status));
                match p.pool.due_replacement(&health, poll, now) {
                    Some(old) => p.replacing = Some(old),
                    None => continue,
                }
            }
            p.resolving = true;
            let (name, port, tx) = (
                p.name().to_owned(),
                self.settings.ntp_port,
                self.resolved_tx.clone(),
            );
            tokio::spawn(async move {
                let result = resolve(&name, port).await;
                let _ = tx.send((Resolving::Pool(name), result)).await;
            });
        }
    }

    pub(super) fn on_pool_resolved(&mut self, name: &str, result: std::io::Result<Vec<IpAddr>>) {
        let Some(i) = self.pools.iter().position(|p| p.name() == name) else {
            return;
        };
        self.pools[i].resolving = false;
        let replacing = self.pools[i].replacing.take();
        let addrs = match result {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(
                    pool = name,
                    "cannot resolve: {e}; retrying in {}s",
                    names::RESOLVE_RETRY.as_secs()
                );
                return;
            }
        };
        self.apply_pool_resolution(i, replacing, &addrs, Instant::now());
    }

    /// What a resolution of pool `i` gives: the replacement of
    /// `replacing` (new member in first, then the old one out), and
    /// addresses for the free places.
    fn apply_pool_resolution(
        &mut self,
        i: usize,
        replacing: Option<IpAddr>,
        addrs: &[IpAddr],
        now: Instant,
    ) {
        let system = &self.system;
        let taken = |a: IpAddr| system.source_by_address(a).is_some();
        let p = &mut self.pools[i];
        let mut joining = Vec::new();
        let mut leaving = None;
        if let Some(old) = replacing {
            match p.pool.replace(old, addrs, taken, now) {
                Some(new) => {
                    joining.push(new);
                    leaving = p.id_of(old).map(|id| (old, id, new));
                    p.replacements += 1;
                }
                None => {
                    tracing::info!(pool = %p.pool.name, %old, "pool member unreachable or a falseticker, but the name offers no other address; kept")
                }
            }
        }
        joining.extend(p.pool.fill(addrs, taken, now));
        // Normally the old member leaves only after its replacement is in;
        // with the filter's table full it leaves first (it is unreachable
        // or a falseticker: nothing good is lost in between).
        if leaving.is_some() && self.transport.filter_room() < joining.len() {
            self.pool_member_leaves(i, leaving.take());
        }
        for addr in joining {
            self.add_pool_member(i, addr);
        }
        self.pool_member_leaves(i, leaving);
    }

    fn pool_member_leaves(&mut self, i: usize, leaving: Option<(IpAddr, SourceId, IpAddr)>) {
        let Some((old, id, new)) = leaving else {
            return;
        };
        self.pools[i].sources.retain(|s| s.1 != id);
        if let Err(e) = self.retire(id, old) {
            tracing::error!("{e:#}");
        }
        tracing::info!(pool = %self.pools[i].pool.name, %old, %new, "pool member replaced (unreachable or a falseticker)");
    }

    fn add_pool_member(&mut self, i: usize, addr: IpAddr) {
        if let Err(e) = self
            .transport
            .admit(addr, SourceClass::Server, self.settings.ntp_port)
        {
            tracing::error!("{e:#}");
            self.pools[i].pool.remove(addr);
            return;
        }
        let now = self.mono(Instant::now());
        let p = &mut self.pools[i];
        let id = self
            .system
            .add_source(source_config(&p.poll, addr, SourceKind::Server), now);
        self.kinds.insert(id, SourceKind::Server);
        p.sources.push((addr, id));
        tracing::info!(pool = %p.pool.name, %addr, "pool member added");
    }

    pub(super) fn pool_reports(&self) -> Vec<PoolReport> {
        self.pools
            .iter()
            .map(|p| PoolReport {
                name: p.name().to_owned(),
                max_sources: p.pool.max_sources,
                members: p.sources.iter().map(|s| s.1).collect(),
                replacements: p.replacements,
            })
            .collect()
    }

    /// The pools' members, for `source_names`.
    pub(super) fn pool_member_names(&self) -> impl Iterator<Item = (SourceId, &str)> {
        self.pools
            .iter()
            .flat_map(|p| p.sources.iter().map(move |s| (s.1, p.name())))
    }
}
