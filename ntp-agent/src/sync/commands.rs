//! Changes to a running agent through the control socket. Each one is
//! checked before anything changes, and reaches the filter's maps add
//! before remove.

use std::{str::FromStr, time::Instant};

use anyhow::{bail, Context as _, Result};
use ntp_filter_common::SourceClass;
use ntp_proto::SourceKind;

use super::Agent;
use crate::{
    cli::Mode,
    filter::{acl, reconcile, AclRule, Cidr},
    policy,
    resolve::SourceSpec,
    source_arg::SourceArg,
};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Add(SourceKind, SourceArg),
    Del(SourceKind, SourceSpec),
    Mode(Mode),
    /// Adds (or, with `del`, removes) an allow or deny rule.
    Acl {
        rule: AclRule,
        del: bool,
    },
}

fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Server => "server",
        SourceKind::Peer => "peer",
    }
}

impl Command {
    /// The line sent over the control socket.
    pub fn to_line(&self) -> String {
        match self {
            Self::Add(k, s) => format!("{} add {s}", kind_name(*k)),
            Self::Del(k, s) => format!("{} del {s}", kind_name(*k)),
            Self::Mode(Mode::Client) => "mode client".into(),
            Self::Mode(Mode::Server) => "mode server".into(),
            Self::Acl { rule, del: false } => rule.to_string(),
            Self::Acl { rule, del: true } => format!("{} del {}", rule.verb(), rule.cidr),
        }
    }
}

impl FromStr for Command {
    type Err = String;

    fn from_str(line: &str) -> Result<Self, Self::Err> {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [kind @ ("server" | "peer"), op @ ("add" | "del"), target] => {
                let kind = if *kind == "server" {
                    SourceKind::Server
                } else {
                    SourceKind::Peer
                };
                let arg: SourceArg = target.parse()?;
                if *op == "add" {
                    return Ok(Self::Add(kind, arg));
                }
                if arg.poll != Default::default() {
                    return Err(format!(
                        "{target:?}: poll options go with `add`; `del` takes only the address or name"
                    ));
                }
                Ok(Self::Del(kind, arg.spec))
            }
            [verb @ ("allow" | "deny"), rest @ ..] => {
                let (del, range) = match rest {
                    ["del", range] => (true, *range),
                    [range] => (false, *range),
                    _ => return Err(format!("expected `{verb} [del] CIDR`, got {line:?}")),
                };
                let cidr: Cidr = range.parse().map_err(|e| format!("{e:#}"))?;
                let rule = if *verb == "allow" {
                    AclRule::allow(cidr)
                } else {
                    AclRule::deny(cidr)
                };
                Ok(Self::Acl { rule, del })
            }
            ["mode", "client"] => Ok(Self::Mode(Mode::Client)),
            ["mode", "server"] => Ok(Self::Mode(Mode::Server)),
            ["mode", other] => Err(format!("unknown mode {other:?}: expected client or server")),
            _ => Err(format!(
                "unknown command {line:?}: expected `server add|del ADDR`, `peer add|del ADDR`, `mode client|server`, `allow|deny [del] CIDR` or `status`"
            )),
        }
    }
}

impl Agent {
    pub(super) fn on_command(&mut self, cmd: Command) -> Result<String> {
        let done = match &cmd {
            Command::Add(kind, spec) => {
                self.add_source(spec.clone(), *kind, true)?;
                self.update_ntp_port()?;
                format!("{} {spec} added", kind_name(*kind))
            }
            Command::Del(kind, spec) => {
                self.remove_source(spec, *kind)?;
                self.update_ntp_port()?;
                format!("{} {spec} deleted", kind_name(*kind))
            }
            Command::Mode(mode) => self.set_mode(*mode)?,
            Command::Acl { rule, del } => self.change_acl(*rule, *del)?,
        };
        tracing::info!(command = %cmd.to_line(), "control: {done}");
        Ok(done)
    }

    fn remove_source(&mut self, spec: &SourceSpec, kind: SourceKind) -> Result<()> {
        let now = self.mono(Instant::now());
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
                self.system.retire_source(id, now);
                self.kinds.remove(&id);
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
                    self.transport.forget(id, addr)?;
                }
            }
        }
        Ok(())
    }

    /// To server mode: open the port, then let requests in at the NIC. To
    /// client mode: stop them at the NIC first, then close the port. Time
    /// sync goes on untouched either way.
    fn set_mode(&mut self, mode: Mode) -> Result<String> {
        if self.settings.mode == mode {
            return Ok(format!("already in {} mode", mode_name(mode)));
        }
        let previous = self.settings.mode;
        self.settings.mode = mode;
        let changed = match mode {
            Mode::Server => self.update_ntp_port().and_then(|()| self.write_policy()),
            Mode::Client => self.write_policy().and_then(|()| self.update_ntp_port()),
        };
        if let Err(e) = changed {
            self.settings.mode = previous;
            let _ = self.write_policy();
            let _ = self.update_ntp_port();
            return Err(e);
        }
        Ok(format!("now in {} mode", mode_name(mode)))
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
        let table = policy::table(self.settings.mode, &self.settings.policy_overrides);
        let mut maps = maps.lock().expect("maps lock poisoned");
        for class in SourceClass::ALL {
            maps.set_policy(class, table[class as usize])?;
        }
        Ok(())
    }
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Client => "client",
        Mode::Server => "server",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command_and_round_trips() {
        for line in [
            "server add 192.0.2.10",
            "server add time.example.net,minpoll=4,noiburst",
            "server del 2001:db8::10",
            "peer add 192.0.2.20",
            "peer del ntp.example.net",
            "mode client",
            "mode server",
            "allow 192.0.2.0/24",
            "deny 2001:db8::99/128",
            "deny del 192.0.2.99/32",
        ] {
            let cmd: Command = line.parse().unwrap();
            assert_eq!(cmd.to_line(), line);
        }
    }

    #[test]
    fn bad_commands_say_what_is_wrong() {
        let err = |l: &str| l.parse::<Command>().unwrap_err();
        assert!(err("server add 192.0.2.300").contains("neither an IP address nor a host name"));
        assert!(err("mode peer").contains("unknown mode \"peer\""));
        assert!(err("reboot").contains("unknown command \"reboot\""));
        assert!(err("server frob 192.0.2.1").contains("unknown command"));
        assert!(err("server del 192.0.2.10,minpoll=4").contains("poll options go with `add`"));
        assert!(err("peer add 192.0.2.20,minpoll=1").contains("minpoll=1"));
    }
}
