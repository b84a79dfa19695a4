//! The control protocol: what `ntp-agent status|server|peer|mode|allow|
//! deny` ask the running agent over the control socket and what it
//! answers — one JSON line each way, both ends (de)serializing these very
//! types, so the two cannot drift apart. Values inside (addresses, ranges,
//! sources with poll options) are checked by the command line's own
//! parsers when they are read, on either end.

use std::fmt;

use ntp_proto::{SourceId, SourceStatus, SystemStatus};
use serde::{Deserialize, Serialize};

use crate::model::{AclRule, Role, SourceArg, SourceRole, SourceSpec, SourceStamps};

/// Longest request the agent reads; the longest real one (a 253-byte host
/// name with poll options) is far shorter.
pub const MAX_REQUEST: usize = 4096;

/// One request line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Request {
    Status,
    Change(Command),
}

/// A change to the running agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    Add(SourceRole, SourceArg),
    /// Only the address or name: source options go with `Add`.
    Del(SourceRole, SourceSpec),
    Mode(Role),
    /// Adds (or, with `del`, removes) an allow or deny rule.
    Acl {
        rule: AclRule,
        del: bool,
    },
}

/// As an operator would have typed it (`server add 192.0.2.10`), for the
/// agent's log.
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Add(r, s) => write!(f, "{} add {s}", r.name()),
            Self::Del(r, s) => write!(f, "{} del {s}", r.name()),
            Self::Mode(role) => write!(f, "mode {role}"),
            Self::Acl { rule, del: false } => write!(f, "{rule}"),
            Self::Acl { rule, del: true } => write!(f, "{} del {}", rule.verb(), rule.cidr),
        }
    }
}

/// One answer line.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Status(Box<AgentReport>),
    /// A change was made; what it did (`server 192.0.2.20 added`).
    Ok(String),
    /// Nothing changed, and why.
    Error(String),
}

/// The running agent's state: `status`'s first part and the agent's
/// metrics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentReport {
    #[serde(rename = "mode")]
    pub role: Role,
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
    /// The NTS sources, whether or not they have a core source yet.
    pub nts: Vec<NtsReport>,
    pub pools: Vec<PoolReport>,
    /// Kernel or user timestamps per source (empty from an agent that
    /// predates them, so a newer `status` still reads an older agent).
    #[serde(default)]
    pub timestamps: Vec<SourceTimestamps>,
    #[serde(default)]
    pub ignored: IgnoredCounters,
    /// Each configured interface and whether the filter is on it (empty
    /// from an agent that predates them, and without a filter).
    #[serde(default)]
    pub interfaces: Vec<InterfaceReport>,
    #[serde(default)]
    pub state: AgentState,
}

/// Whether the filter is on a configured interface, as the running agent
/// last saw it (link events, and a look every few seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterfaceState {
    /// The program is attached through the pinned link.
    Attached,
    /// The interface is gone (deleted, or renamed away); the agent
    /// re-attaches when an interface of that name appears.
    Missing,
    /// The link was removed under the running agent (`ntp-agent detach`):
    /// unfiltered, and the agent does not re-attach on its own.
    Detached,
    /// The interface is there but attaching failed (`reason` says why);
    /// retried at each look.
    Failed,
}

impl InterfaceState {
    pub fn name(self) -> &'static str {
        match self {
            Self::Attached => "attached",
            Self::Missing => "missing",
            Self::Detached => "detached",
            Self::Failed => "failed",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceReport {
    pub name: String,
    pub state: InterfaceState,
    /// The interface's index now (`None` while it is missing).
    pub ifindex: Option<u32>,
    /// Unix time of the last change of `state`.
    pub since: u64,
    /// Why it is not attached (`None` while attached).
    pub reason: Option<String>,
}

impl InterfaceReport {
    pub fn filtered(&self) -> bool {
        self.state == InterfaceState::Attached
    }
}

/// How much per-source state the agent holds: every count follows the
/// configured sources, however many were added and deleted before.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentState {
    /// Filter entries the configured sources may take, as `check-config`
    /// counts them (a pool its `maxsources`), out of
    /// [`ntp_filter_common::MAX_SOURCES`].
    pub sources_committed: usize,
    /// The core's source table, free slots included.
    pub core_slots: usize,
    /// Sources in the core.
    pub core_sources: usize,
    /// The loop's per-source records: kind, timestamps, failing sends.
    pub kinds: usize,
    pub timestamps: usize,
    pub send_failing: usize,
    /// Sources whose last reach, tally and KoD the log keeps, to log changes.
    pub logged_states: usize,
    /// Open per-request sockets (one per server at most).
    pub request_sockets: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceTimestamps {
    pub id: SourceId,
    #[serde(flatten)]
    pub stamps: SourceStamps,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceName {
    pub id: SourceId,
    pub name: String,
}

/// What server mode did with client requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerCounters {
    pub answered: u64,
    pub rate_kod: u64,
    pub rate_ignored: u64,
    /// Requests that arrived while in client mode (the filter normally
    /// stops them at the NIC; seen only on unfiltered interfaces).
    pub not_serving: u64,
    /// Mode-3 datagrams that are no NTP request (too short, a broken
    /// trailer): never answered, never charged to the rate limit.
    #[serde(default)]
    pub malformed: u64,
}

/// Replies from an NTS source refused before the RFC 5905 checks, by
/// reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NtsRejects {
    /// Authenticator missing or not verifying (e.g. a forged plain reply).
    pub nts_auth: u64,
    /// NTS NAK from the server.
    pub nts_nak: u64,
    /// Unique identifier missing or not that of our request.
    pub nts_unique_id: u64,
    /// Nothing of ours outstanding (a replay, a late duplicate).
    pub nts_unsolicited: u64,
    /// Extension fields that do not parse.
    pub nts_malformed: u64,
}

/// Why a key establishment failed, one word per class of failure (the
/// log line and `last_error` have the whole message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeFailureKind {
    Resolve,
    Refused,
    Connect,
    Timeout,
    NameMismatch,
    UnknownIssuer,
    Expired,
    Certificate,
    Tls,
    Protocol,
    /// The KE named an NTP server that is already another source.
    Conflict,
}

impl KeFailureKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Resolve => "resolve",
            Self::Refused => "refused",
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::NameMismatch => "name_mismatch",
            Self::UnknownIssuer => "unknown_issuer",
            Self::Expired => "expired",
            Self::Certificate => "certificate",
            Self::Tls => "tls",
            Self::Protocol => "protocol",
            Self::Conflict => "conflict",
        }
    }
}

/// The `nts` object of a source in `status --json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NtsStatus {
    /// `HOST:PORT` of the NTS-KE server.
    pub ke_server: String,
    /// Where NTP goes since the last key establishment.
    pub ntp_server: Option<std::net::SocketAddr>,
    pub cookies: usize,
    pub aead: Option<String>,
    /// Unix time of the last successful key establishment.
    pub last_ke: Option<u64>,
    pub ke_successes: u64,
    pub ke_failures: u64,
    /// The last failure (`None` once a key establishment succeeds again).
    pub last_error: Option<String>,
    pub last_error_kind: Option<KeFailureKind>,
    pub rejects: NtsRejects,
}

/// One NTS source: its core source once a key establishment named the
/// NTP server, and why it cannot be used while there is none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NtsReport {
    /// As configured (`time.example`, the KE host).
    pub host: String,
    pub source: Option<SourceId>,
    pub reason: Option<String>,
    pub nts: NtsStatus,
}

/// One `--pool NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolReport {
    pub name: String,
    pub max_sources: usize,
    pub members: Vec<SourceId>,
    /// Members replaced so far (unreachable or falsetickers).
    pub replacements: u64,
}

/// Datagrams the agent dropped before looking at them, by reason.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IgnoredCounters {
    /// From an IPv6 address embedding an IPv4 one (`::ffff:0:0/96`,
    /// `::/96`): never taken for the IPv4 host, never answered.
    pub ipv4_mapped_source: u64,
}

impl Request {
    /// The line the client sends.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a request always serializes")
    }

    /// A line as the agent reads it; whatever it is, the answer is a
    /// request or one clear error.
    pub fn from_line(line: &str) -> Result<Self, String> {
        serde_json::from_str(line.trim()).map_err(|e| {
            format!("malformed request ({e}): is the client an ntp-agent of another version?")
        })
    }

    /// The request in a line as read off the socket, which may be any bytes.
    pub fn from_bytes(line: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(line).map_err(|e| {
            format!(
                "malformed request (not UTF-8: invalid byte at offset {}): requests are one line of JSON",
                e.valid_up_to()
            )
        })?;
        Self::from_line(text)
    }
}

impl Reply {
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("a reply always serializes")
    }

    pub fn from_line(line: &str) -> Result<Self, String> {
        serde_json::from_str(line.trim()).map_err(|e| {
            format!("malformed answer from the agent ({e}): is it an ntp-agent of another version?")
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use ntp_proto::{KissCode, KodState, LeapIndicator, RejectCounters, Tally, UnsyncReason};

    use super::*;
    use crate::model::{timestamps::StampCounts, Cidr, StampKind};

    fn every_command() -> Vec<Command> {
        let arg = |s: &str| s.parse::<SourceArg>().unwrap();
        let cidr = |s: &str| s.parse::<Cidr>().unwrap();
        vec![
            Command::Add(SourceRole::Server, arg("192.0.2.10")),
            Command::Add(
                SourceRole::Server,
                arg("time.example.net,minpoll=4,maxpoll=8,noiburst"),
            ),
            Command::Add(SourceRole::Peer, arg("2001:db8::20,iburst")),
            Command::Add(SourceRole::Server, arg("nts.example.net,nts,nts-port=4461")),
            Command::Add(SourceRole::Pool, arg("pool.example.net,maxsources=6")),
            Command::Del(SourceRole::Server, "2001:db8::10".parse().unwrap()),
            Command::Del(SourceRole::Peer, "ntp.example.net".parse().unwrap()),
            Command::Del(SourceRole::Pool, "pool.example.net".parse().unwrap()),
            Command::Mode(Role::Client),
            Command::Mode(Role::Server),
            Command::Acl {
                rule: AclRule::allow(cidr("192.0.2.0/24")),
                del: false,
            },
            Command::Acl {
                rule: AclRule::deny(cidr("2001:db8::99/128")),
                del: true,
            },
        ]
    }

    /// Every field filled, none at its default, so a field one end drops
    /// or renames fails the comparison.
    pub(crate) fn full_report() -> AgentReport {
        let source = SourceStatus {
            id: SourceId::new(3, 3),
            remote: "192.0.2.10".into(),
            refid: "127.127.1.1".into(),
            stratum: 3,
            kind: 'u',
            when: Some(12),
            poll: 64,
            reach: 0o377,
            delay_ms: Some(0.208),
            offset_ms: Some(-0.142),
            jitter_ms: Some(0.139),
            tally: '*',
            tally_kind: Tally::SystemPeer,
            rejects: RejectCounters {
                malformed: 1,
                bad_version: 2,
                bad_mode: 3,
                duplicate: 4,
                unsolicited: 5,
                bogus_origin: 6,
                zero_timestamp: 7,
                kod: 8,
                unsynchronized: 9,
                bad_stratum: 10,
                root_distance: 11,
                loop_detected: 12,
                leap_window: 13,
            },
            kod: KodState::RateLimited {
                count: 2,
                min_poll: 7,
            },
            state: "reachable".into(),
        };
        let denied = SourceStatus {
            id: SourceId::new(4, 4),
            kind: 's',
            when: None,
            delay_ms: None,
            tally: 'x',
            tally_kind: Tally::Falseticker,
            kod: KodState::Denied(KissCode::Other(*b"XYZW")),
            state: "unreachable: KoD DENY".into(),
            ..source.clone()
        };
        AgentReport {
            role: Role::Server,
            clock: "observe only (--no-clock-adjust)".into(),
            clock_correction_ms: Some(-1.25),
            system: SystemStatus {
                synchronized: false,
                reason: Some("source refuses service (KoD DENY)".into()),
                reason_kind: Some(UnsyncReason::SourcesRefuseService(KissCode::Deny)),
                stratum: 16,
                system_peer: Some(SourceId::new(3, 3)),
                refid: "192.0.2.10".into(),
                offset_ms: 0.5,
                jitter_ms: 0.25,
                root_delay_ms: 1.5,
                root_dispersion_ms: 2.5,
                leap: LeapIndicator::Unsynchronized,
                frequency_ppm: -12.5,
                applied_frequency_ppm: -12.75,
                clock_updates: 40,
                clock_steps: 1,
            },
            last_update_age_s: Some(31.5),
            sources: vec![source, denied],
            source_names: vec![SourceName {
                id: SourceId::new(4, 4),
                name: "ntp.example.net".into(),
            }],
            server: ServerCounters {
                answered: 10,
                rate_kod: 2,
                rate_ignored: 30,
                not_serving: 1,
                malformed: 3,
            },
            nts: vec![
                NtsReport {
                    host: "nts.example.net".into(),
                    source: Some(SourceId::new(3, 3)),
                    reason: None,
                    nts: NtsStatus {
                        ke_server: "nts.example.net:4460".into(),
                        ntp_server: Some("192.0.2.10:123".parse().unwrap()),
                        cookies: 7,
                        aead: Some("AEAD_AES_SIV_CMAC_256".into()),
                        last_ke: Some(1_700_000_000),
                        ke_successes: 2,
                        ke_failures: 1,
                        last_error: Some("TLS: invalid peer certificate: UnknownIssuer".into()),
                        last_error_kind: Some(KeFailureKind::UnknownIssuer),
                        rejects: NtsRejects {
                            nts_auth: 1,
                            nts_nak: 2,
                            nts_unique_id: 3,
                            nts_unsolicited: 4,
                            nts_malformed: 5,
                        },
                    },
                },
                NtsReport {
                    host: "192.0.2.30".into(),
                    source: None,
                    reason: Some("NTS-KE with 192.0.2.30:4460 failed: no answer within 10s".into()),
                    nts: NtsStatus {
                        ke_server: "192.0.2.30:4460".into(),
                        ntp_server: None,
                        cookies: 0,
                        aead: None,
                        last_ke: None,
                        ke_successes: 0,
                        ke_failures: 3,
                        last_error: Some("no answer within 10s".into()),
                        last_error_kind: Some(KeFailureKind::Timeout),
                        rejects: NtsRejects::default(),
                    },
                },
            ],
            pools: vec![PoolReport {
                name: "pool.example.net".into(),
                max_sources: 4,
                members: vec![SourceId::new(4, 4)],
                replacements: 9,
            }],
            timestamps: vec![SourceTimestamps {
                id: SourceId::new(3, 3),
                stamps: SourceStamps {
                    rx: StampCounts {
                        in_use: Some(StampKind::Kernel),
                        kernel: 20,
                        user: 1,
                        fallbacks: 1,
                    },
                    tx: StampCounts {
                        in_use: Some(StampKind::User),
                        kernel: 3,
                        user: 18,
                        fallbacks: 0,
                    },
                },
            }],
            ignored: IgnoredCounters {
                ipv4_mapped_source: 5,
            },
            interfaces: vec![
                InterfaceReport {
                    name: "wan0".into(),
                    state: InterfaceState::Attached,
                    ifindex: Some(7),
                    since: 1_700_000_100,
                    reason: None,
                },
                InterfaceReport {
                    name: "lan0".into(),
                    state: InterfaceState::Missing,
                    ifindex: None,
                    since: 1_700_000_200,
                    reason: Some("the interface is gone".into()),
                },
            ],
            state: Default::default(),
        }
    }

    #[test]
    fn a_report_from_an_agent_without_timestamps_still_reads() {
        let mut v = serde_json::to_value(full_report()).unwrap();
        v.as_object_mut().unwrap().remove("timestamps");
        v.as_object_mut().unwrap().remove("interfaces");
        let report: AgentReport = serde_json::from_value(v).unwrap();
        assert!(report.timestamps.is_empty());
        assert!(report.interfaces.is_empty());
        assert_eq!(report.sources, full_report().sources);
    }

    #[test]
    fn every_request_and_reply_round_trips() {
        let mut requests = vec![Request::Status];
        requests.extend(every_command().into_iter().map(Request::Change));
        for r in requests {
            let line = r.to_line();
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(Request::from_line(&line), Ok(r), "{line}");
        }
        for r in [
            Reply::Status(Box::new(full_report())),
            Reply::Ok("server 192.0.2.20 added".into()),
            Reply::Error("no server 192.0.2.77 is configured".into()),
        ] {
            let line = r.to_line();
            assert!(!line.contains('\n'), "{line}");
            assert_eq!(Reply::from_line(&line), Ok(r), "{line}");
        }
    }

    #[test]
    fn the_report_keeps_the_names_status_json_documents() {
        let v = serde_json::to_value(full_report()).unwrap();
        assert_eq!(v["mode"], "server");
        for key in [
            "clock",
            "clock_correction_ms",
            "system",
            "sources",
            "server",
        ] {
            assert!(v.get(key).is_some(), "{key} missing: {v:#}");
        }
    }

    #[test]
    fn bad_lines_get_an_error_not_a_panic() {
        for line in [
            "",
            "status",
            "server add 192.0.2.10",
            "{}",
            r#""reboot""#,
            r#"{"change":{"add":["Server","192.0.2.300"]}}"#,
            r#"{"change":{"add":["Server","192.0.2.10,minpoll=40"]}}"#,
            r#"{"change":{"acl":{"rule":{"cidr":"192.0.2.99/24","allow":true},"del":false}}}"#,
            r#"{"change":{"mode":"sideways"}}"#,
            "\u{0}\u{ffff}",
        ] {
            let e = Request::from_line(line).unwrap_err();
            assert!(e.starts_with("malformed request"), "{line:?}: {e}");
        }
        let e = Request::from_line(r#"{"change":{"add":["Server","192.0.2.300"]}}"#).unwrap_err();
        assert!(e.contains("neither an IP address nor a host name"), "{e}");
        assert!(Reply::from_line("{\"ok\":").is_err());
    }

    #[test]
    fn commands_show_as_typed_in_the_log() {
        let shown: Vec<String> = every_command().iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "server add 192.0.2.10",
                "server add time.example.net,minpoll=4,maxpoll=8,noiburst",
                "peer add 2001:db8::20,iburst",
                "server add nts.example.net,nts,nts-port=4461",
                "pool add pool.example.net,maxsources=6",
                "server del 2001:db8::10",
                "peer del ntp.example.net",
                "pool del pool.example.net",
                "mode client",
                "mode server",
                "allow 192.0.2.0/24",
                "deny del 2001:db8::99/128",
            ]
        );
    }
}
