//! Changes to a running agent through the control socket. Each one is
//! checked before anything changes, and reaches the filter's maps add
//! before remove.

use std::time::Instant;

use anyhow::{bail, Context as _, Result};
use ntp_filter_common::SourceClass;
use ntp_proto::SourceKind;

use super::Agent;
use crate::{
    filter::reconcile,
    model::{
        acl, policy,
        source::{filter_entries, kind_name, too_many_sources},
        AclRule, Role, SourceRole, SourceSpec,
    },
    protocol::{Command, InterfaceReport, InterfaceState},
};

impl Agent {
    pub(super) fn on_command(&mut self, cmd: Command) -> Result<String> {
        let unfiltered: Vec<InterfaceReport> = self.links.as_ref().map_or_else(Vec::new, |l| {
            l.check();
            l.report().into_iter().filter(|i| !i.filtered()).collect()
        });
        // The operator removed the filter under the agent, which will not
        // attach it again: a change "added" would be enforced nowhere, so
        // none is made.
        if let Some(i) = unfiltered
            .iter()
            .find(|i| i.state == InterfaceState::Detached)
        {
            bail!(
                "the filter is detached on {}: `{cmd}` refused, nothing changed ({}); restart the agent to filter again",
                i.name,
                i.reason.as_deref().unwrap_or("its link is gone")
            );
        }
        let done = match &cmd {
            Command::Add(role, spec) => {
                let n = self.committed_sources() + filter_entries(spec, *role);
                if let Some(why) = too_many_sources(n) {
                    bail!("{why}");
                }
                self.add_source(spec.clone(), *role, true)?;
                self.update_ntp_port()?;
                format!("{} {spec} added", role.name())
            }
            Command::Del(role, spec) => {
                self.remove_source(spec, *role)?;
                self.update_ntp_port()?;
                format!("{} {spec} deleted", role.name())
            }
            Command::Mode(role) => self.set_role(*role)?,
            Command::Acl { rule, del } => self.change_acl(*rule, *del)?,
        };
        // Missing or failed: the change is in the maps, and the filter
        // attached again when the interface returns enforces it.
        let done = match unfiltered.as_slice() {
            [] => done,
            some => format!(
                "{done}; NOT enforced on {} until the filter is on it again",
                some.iter()
                    .map(|i| format!("{} ({})", i.name, i.state.name()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        tracing::info!(command = %cmd, "control: {done}");
        Ok(done)
    }

    /// The filter entries the configured sources may take, counted as
    /// `check-config` counts them: each source by address, name or NTS one
    /// (a name more while it stands for more addresses), each pool its
    /// `maxsources`.
    pub(super) fn committed_sources(&self) -> usize {
        let named: usize = self.names.iter().map(|n| n.sources.len()).sum();
        let pooled: usize = self.pool_reports().iter().map(|p| p.members.len()).sum();
        let nts_cores = self
            .nts_reports()
            .iter()
            .filter(|r| r.source.is_some())
            .count();
        let by_address = self.kinds.len().saturating_sub(named + pooled + nts_cores);
        by_address
            + self
                .names
                .iter()
                .map(|n| n.sources.len().max(1))
                .sum::<usize>()
            + self
                .pool_reports()
                .iter()
                .map(|p| p.max_sources)
                .sum::<usize>()
            + self.nts.len()
    }

    fn remove_source(&mut self, spec: &SourceSpec, role: SourceRole) -> Result<()> {
        let now = self.mono(Instant::now());
        let kind = role.kind();
        if role == SourceRole::Pool {
            return self.remove_pool(spec);
        }
        if kind == SourceKind::Server && self.remove_nts(&spec.to_string())? {
            return Ok(());
        }
        match spec {
            SourceSpec::Addr(addr) => {
                let id = self
                    .system
                    .source_by_address(*addr)
                    .filter(|id| self.kinds.get(id) == Some(&kind))
                    .with_context(|| format!("no {} {addr} is configured", kind_name(kind)))?;
                if let Some(named) = self
                    .names
                    .iter()
                    .find(|n| n.sources.iter().any(|(_, i)| *i == id))
                {
                    bail!(
                        "{addr} comes from the name {}: delete the name instead",
                        named.name
                    );
                }
                if let Some(owner) = self.owner_of(id) {
                    bail!("{addr} comes from {owner}: delete that instead");
                }
                self.system.retire_source(id, now);
                self.kinds.remove(&id);
                self.stamps.remove(&id);
                self.send_failing.remove(addr);
                self.transport.forget(id, *addr)?;
            }
            SourceSpec::Name(name) => {
                let index = self
                    .names
                    .iter()
                    .position(|n| &n.name == name && n.kind == kind)
                    .with_context(|| format!("no {} {name} is configured", kind_name(kind)))?;
                let named = self.names.remove(index);
                for (addr, id) in named.sources {
                    self.system.retire_source(id, now);
                    self.kinds.remove(&id);
                    self.stamps.remove(&id);
                    self.send_failing.remove(&addr);
                    self.transport.forget(id, addr)?;
                }
            }
        }
        Ok(())
    }

    /// To server mode: open the port, then let requests in at the NIC. To
    /// client mode: stop them at the NIC first, then close the port. Time
    /// sync goes on untouched either way.
    fn set_role(&mut self, role: Role) -> Result<String> {
        if self.settings.role == role {
            return Ok(format!("already in {role} mode"));
        }
        let previous = self.settings.role;
        self.settings.role = role;
        let changed = match role {
            Role::Server => self.update_ntp_port().and_then(|()| self.write_policy()),
            Role::Client => self.write_policy().and_then(|()| self.update_ntp_port()),
        };
        if let Err(e) = changed {
            self.settings.role = previous;
            let _ = self.write_policy();
            let _ = self.update_ntp_port();
            return Err(e);
        }
        Ok(format!("now in {role} mode"))
    }

    /// A new rule replaces any rule for the same range; `del` removes the
    /// rule with that verb and range. The whole list is checked before the
    /// map changes.
    fn change_acl(&mut self, rule: AclRule, del: bool) -> Result<String> {
        let mut rules: Vec<AclRule> = self
            .settings
            .acl
            .iter()
            .filter(|r| r.cidr != rule.cidr)
            .copied()
            .collect();
        let done = if del {
            if !self.settings.acl.contains(&rule) {
                bail!("no {} rule for {}", rule.verb(), rule.cidr);
            }
            format!("{} {} removed", rule.verb(), rule.cidr)
        } else {
            rules.push(rule);
            format!("{} {} added", rule.verb(), rule.cidr)
        };
        acl::table(&rules)?;
        if let Some(maps) = &self.maps {
            reconcile::apply_acl(&mut maps.lock().expect("maps lock poisoned"), &rules)?;
        }
        self.settings.acl = rules;
        Ok(done)
    }

    fn write_policy(&self) -> Result<()> {
        let Some(maps) = &self.maps else {
            return Ok(());
        };
        let table = policy::table(self.settings.role, &self.settings.policy_overrides);
        let mut maps = maps.lock().expect("maps lock poisoned");
        for class in SourceClass::ALL {
            maps.set_policy(class, table[class as usize])?;
        }
        Ok(())
    }
}
