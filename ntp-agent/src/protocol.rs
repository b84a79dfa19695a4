//! The control protocol: what `ntp-agent status|server|peer|mode|allow|
//! deny` ask the running agent over the control socket and what it
//! answers. Both ends use these types.

use std::str::FromStr;

use ntp_proto::{SourceId, SourceKind, SourceStatus, SystemStatus};
use serde::Serialize;

use crate::model::{AclRule, Cidr, Role, SourceArg, SourceSpec};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Add(SourceKind, SourceArg),
    Del(SourceKind, SourceSpec),
    Mode(Role),
    /// Adds (or, with `del`, removes) an allow or deny rule.
    Acl {
        rule: AclRule,
        del: bool,
    },
}

pub fn kind_name(kind: SourceKind) -> &'static str {
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
            Self::Mode(Role::Client) => "mode client".into(),
            Self::Mode(Role::Server) => "mode server".into(),
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
            ["mode", "client"] => Ok(Self::Mode(Role::Client)),
            ["mode", "server"] => Ok(Self::Mode(Role::Server)),
            ["mode", other] => Err(format!("unknown mode {other:?}: expected client or server")),
            _ => Err(format!(
                "unknown command {line:?}: expected `server add|del ADDR`, `peer add|del ADDR`, `mode client|server`, `allow|deny [del] CIDR` or `status`"
            )),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct AgentReport {
    pub mode: Role,
    pub clock: String,
    /// With `--no-clock-adjust`: the correction the agent would have made
    /// to the system clock so far, ms (chronyc's "System time"); add it to
    /// the system time to get the agent's estimate of true time.
    pub clock_correction_ms: Option<f64>,
    pub system: SystemStatus,
    /// Seconds since the clock was last updated (None before the first
    /// update).
    pub last_update_age_s: Option<f64>,
    pub sources: Vec<SourceStatus>,
    /// The host name a source's address came from, for sources given by name.
    pub source_names: Vec<SourceName>,
    pub server: ServerCounters,
}

#[derive(Clone, Debug, Serialize)]
pub struct SourceName {
    pub id: SourceId,
    pub name: String,
}

/// What server mode did with client requests.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerCounters {
    pub answered: u64,
    pub rate_kod: u64,
    pub rate_ignored: u64,
    /// Requests that arrived while in client mode (the filter normally
    /// stops them at the NIC; seen only on unfiltered interfaces).
    pub not_serving: u64,
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
