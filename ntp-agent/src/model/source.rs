//! A configured source: an address or a name, with poll settings of its
//! own where they differ from the global ones, NTS, and for a pool how many
//! addresses it gives. On the command line and the control socket it is
//! `ADDR[,minpoll=N][,maxpoll=N][,iburst|,noiburst][,nts[,nts-port=N]][,maxsources=N]`
//! (`--server 192.0.2.10,minpoll=4,noiburst`, `--server time.example,nts`);
//! in the config file a table (`{ address = "192.0.2.10", minpoll = 4,
//! iburst = false }`) that is turned into that form, so both are checked by
//! this one parser.

use std::{fmt, net::IpAddr, str::FromStr};

use ntp_proto::SourceKind;

/// An address or a host name, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    Addr(IpAddr),
    Name(String),
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addr(a) => a.fmt(f),
            Self::Name(n) => f.write_str(n),
        }
    }
}

impl FromStr for SourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Self::Addr(ip));
        }
        if is_host_name(s) {
            return Ok(Self::Name(s.trim_end_matches('.').to_ascii_lowercase()));
        }
        Err("neither an IP address nor a host name".into())
    }
}

/// RFC 1123 host names; a numeric last label is rejected so that a
/// mistyped address (`192.0.2.300`) is an error, not a DNS query.
fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    labels.iter().all(label_ok)
        && !labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

super::text::serde_as_text!(SourceSpec, SourceArg);

/// `server` or `peer`, as in the commands that add them.
pub fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Server => "server",
        SourceKind::Peer => "peer",
    }
}

/// The range `--minpoll`/`--maxpoll` accept (log2 s: 8 s … 36 h).
pub const POLL_RANGE: std::ops::RangeInclusive<i8> = 3..=17;

/// Poll settings for all sources (`--minpoll`, `--maxpoll`, `--no-iburst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollSettings {
    pub minpoll: i8,
    pub maxpoll: i8,
    pub iburst: bool,
}

/// Per-source exceptions to [`PollSettings`]; `None` takes the global value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollOverride {
    pub minpoll: Option<i8>,
    pub maxpoll: Option<i8>,
    pub iburst: Option<bool>,
}

/// The NTS-KE port when `nts-port` is not given (RFC 8915).
pub const NTS_KE_PORT: u16 = 4460;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceArg {
    pub spec: SourceSpec,
    pub poll: PollOverride,
    /// `nts` (with `nts-port=N`): authenticate with NTS, key establishment
    /// on this TCP port. `None`: plain NTP.
    pub nts_ke_port: Option<u16>,
    /// `maxsources=N`: how many addresses a pool takes from its name.
    pub max_sources: Option<usize>,
}

/// What a [`SourceArg`] is given as: `--server`, `--peer` or `--pool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SourceRole {
    Server,
    Peer,
    Pool,
}

impl SourceRole {
    /// As in the commands that add them (`server add`, `pool add`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Peer => "peer",
            Self::Pool => "pool",
        }
    }

    /// How the core talks to what it gives: a pool gives servers.
    pub fn kind(self) -> SourceKind {
        match self {
            Self::Server | Self::Pool => SourceKind::Server,
            Self::Peer => SourceKind::Peer,
        }
    }
}

impl SourceArg {
    /// This source's effective poll settings; an error (naming the source)
    /// when its interval bounds cross, e.g. its own `minpoll=12` against the
    /// global `--maxpoll 10`.
    pub fn poll_settings(&self, global: &PollSettings) -> Result<PollSettings, String> {
        let p = PollSettings {
            minpoll: self.poll.minpoll.unwrap_or(global.minpoll),
            maxpoll: self.poll.maxpoll.unwrap_or(global.maxpoll),
            iburst: self.poll.iburst.unwrap_or(global.iburst),
        };
        if p.minpoll > p.maxpoll {
            let origin = |own: Option<i8>| if own.is_some() { "its" } else { "the global" };
            return Err(format!(
                "{}: minpoll {} ({}) is larger than maxpoll {} ({})",
                self.spec,
                p.minpoll,
                origin(self.poll.minpoll),
                p.maxpoll,
                origin(self.poll.maxpoll)
            ));
        }
        Ok(p)
    }

    /// The options that only some kinds of source take: `nts` not on a
    /// peer (NTS has no symmetric mode) nor a pool (each member would need
    /// a KE of its own, not done), `maxsources` only on a pool, and a pool
    /// is a name.
    pub fn check_role(&self, role: SourceRole) -> Result<(), String> {
        let spec = &self.spec;
        if role == SourceRole::Peer && self.nts_ke_port.is_some() {
            return Err(format!(
                "{spec}: nts on a peer: NTS has no symmetric mode (use --server {spec},nts)"
            ));
        }
        if role != SourceRole::Pool && self.max_sources.is_some() {
            return Err(format!("{spec}: maxsources=N is for --pool only"));
        }
        if role == SourceRole::Pool {
            if let SourceSpec::Addr(a) = spec {
                return Err(format!(
                    "{a}: a pool is a host name (use --server {a} for one address)"
                ));
            }
            if self.nts_ke_port.is_some() {
                return Err(format!(
                    "{spec}: nts on a pool is not supported: give its servers as --server HOST,nts"
                ));
            }
        }
        Ok(())
    }
}

impl From<SourceSpec> for SourceArg {
    fn from(spec: SourceSpec) -> Self {
        Self {
            spec,
            poll: PollOverride::default(),
            nts_ke_port: None,
            max_sources: None,
        }
    }
}

impl fmt::Display for SourceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.spec)?;
        if let Some(n) = self.poll.minpoll {
            write!(f, ",minpoll={n}")?;
        }
        if let Some(n) = self.poll.maxpoll {
            write!(f, ",maxpoll={n}")?;
        }
        match self.poll.iburst {
            Some(true) => f.write_str(",iburst")?,
            Some(false) => f.write_str(",noiburst")?,
            None => {}
        }
        match self.nts_ke_port {
            Some(NTS_KE_PORT) => f.write_str(",nts")?,
            Some(p) => write!(f, ",nts,nts-port={p}")?,
            None => {}
        }
        if let Some(n) = self.max_sources {
            write!(f, ",maxsources={n}")?;
        }
        Ok(())
    }
}

/// `maxsources` a pool may ask for (chrony's bound).
pub const MAX_SOURCES_RANGE: std::ops::RangeInclusive<usize> = 1..=16;

fn poll_value(key: &str, value: &str) -> Result<i8, String> {
    value
        .parse::<i8>()
        .ok()
        .filter(|n| POLL_RANGE.contains(n))
        .ok_or_else(|| {
            format!(
                "{key}={value}: expected a log2 interval in {}..={}",
                POLL_RANGE.start(),
                POLL_RANGE.end()
            )
        })
}

impl FromStr for SourceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(',');
        let target = parts.next().unwrap_or_default().trim();
        let spec: SourceSpec = target.parse().map_err(|e| format!("{target:?}: {e}"))?;
        let mut poll = PollOverride::default();
        let (mut nts, mut nts_port, mut max_sources) = (false, None, None);
        for option in parts.map(str::trim) {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            let seen = match key {
                "minpoll" => poll.minpoll.replace(poll_value(key, value)?).is_some(),
                "maxpoll" => poll.maxpoll.replace(poll_value(key, value)?).is_some(),
                "iburst" | "noiburst" if value.is_empty() => {
                    poll.iburst.replace(key == "iburst").is_some()
                }
                "nts" if value.is_empty() => std::mem::replace(&mut nts, true),
                "nts-port" => {
                    let port = value
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| format!("nts-port={value}: expected a TCP port 1..=65535"))?;
                    nts_port.replace(port).is_some()
                }
                "maxsources" => {
                    let n = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| MAX_SOURCES_RANGE.contains(n))
                        .ok_or_else(|| {
                            format!(
                                "maxsources={value}: expected a number in {}..={}",
                                MAX_SOURCES_RANGE.start(),
                                MAX_SOURCES_RANGE.end()
                            )
                        })?;
                    max_sources.replace(n).is_some()
                }
                _ => {
                    return Err(format!(
                        "unknown source option {option:?}: expected minpoll=N, maxpoll=N, iburst, noiburst, nts, nts-port=N or maxsources=N"
                    ))
                }
            };
            if seen {
                return Err(format!("{key} is given twice for {spec}"));
            }
        }
        if nts_port.is_some() && !nts {
            return Err(format!("{spec}: nts-port=N needs nts"));
        }
        if let (Some(min), Some(max)) = (poll.minpoll, poll.maxpoll) {
            if min > max {
                return Err(format!(
                    "{spec}: minpoll {min} is larger than maxpoll {max}"
                ));
            }
        }
        Ok(Self {
            spec,
            poll,
            nts_ke_port: nts.then(|| nts_port.unwrap_or(NTS_KE_PORT)),
            max_sources,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GLOBAL: PollSettings = PollSettings {
        minpoll: 6,
        maxpoll: 10,
        iburst: true,
    };

    #[test]
    fn addresses_names_and_mistakes() {
        assert_eq!(
            "192.0.2.10".parse(),
            Ok(SourceSpec::Addr("192.0.2.10".parse().unwrap()))
        );
        assert_eq!(
            "2001:db8::10".parse(),
            Ok(SourceSpec::Addr("2001:db8::10".parse().unwrap()))
        );
        assert_eq!(
            "Time.Example.NET.".parse(),
            Ok(SourceSpec::Name("time.example.net".into()))
        );
        for bad in [
            "192.0.2.300",
            "2001:db8::zz",
            "-bad.example",
            "a..b",
            "",
            "under_score.example",
        ] {
            assert!(bad.parse::<SourceSpec>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn options_parse_and_round_trip() {
        for s in [
            "192.0.2.10",
            "2001:db8::10,minpoll=4",
            "time.example.net,minpoll=4,maxpoll=8,noiburst",
            "192.0.2.10,iburst",
            "time.example.net,maxpoll=8,nts",
            "192.0.2.10,nts,nts-port=4461",
            "pool.example.net,iburst,maxsources=6",
        ] {
            let a: SourceArg = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
        let a: SourceArg = "192.0.2.10,maxpoll=8,noiburst".parse().unwrap();
        assert_eq!(
            a.poll_settings(&GLOBAL),
            Ok(PollSettings {
                minpoll: 6,
                maxpoll: 8,
                iburst: false
            })
        );
    }

    #[test]
    fn mistakes_are_named() {
        let err = |s: &str| s.parse::<SourceArg>().unwrap_err();
        assert!(err("192.0.2.300").contains("neither an IP address"));
        assert!(
            err("192.0.2.10,minpoll=2").contains("minpoll=2: expected a log2 interval in 3..=17")
        );
        assert!(err("192.0.2.10,maxpol=8").contains("unknown source option \"maxpol=8\""));
        assert!(err("192.0.2.10,iburst=yes").contains("unknown source option"));
        assert!(err("192.0.2.10,minpoll=4,minpoll=5").contains("minpoll is given twice"));
        assert!(
            err("192.0.2.10,minpoll=9,maxpoll=8").contains("minpoll 9 is larger than maxpoll 8")
        );
        assert!(err("192.0.2.10,nts-port=4461").contains("nts-port=N needs nts"));
        assert!(err("192.0.2.10,nts,nts-port=0").contains("nts-port=0: expected a TCP port"));
        assert!(err("192.0.2.10,nts,nts").contains("nts is given twice"));
        assert!(
            err("p.example,maxsources=17").contains("maxsources=17: expected a number in 1..=16")
        );
        let arg = |s: &str| s.parse::<SourceArg>().unwrap();
        assert_eq!(
            arg("192.0.2.20,nts")
                .check_role(SourceRole::Peer)
                .unwrap_err(),
            "192.0.2.20: nts on a peer: NTS has no symmetric mode (use --server 192.0.2.20,nts)"
        );
        assert!(arg("t.example,maxsources=2")
            .check_role(SourceRole::Server)
            .unwrap_err()
            .contains("maxsources=N is for --pool only"));
        assert!(arg("192.0.2.1")
            .check_role(SourceRole::Pool)
            .unwrap_err()
            .contains("a pool is a host name"));
        assert!(arg("p.example,nts,maxsources=2")
            .check_role(SourceRole::Pool)
            .unwrap_err()
            .contains("nts on a pool is not supported"));
        arg("p.example,maxsources=2")
            .check_role(SourceRole::Pool)
            .unwrap();
        assert_eq!(arg("192.0.2.10,nts").nts_ke_port, Some(NTS_KE_PORT));
        let crossing: SourceArg = "192.0.2.10,minpoll=12".parse().unwrap();
        assert_eq!(
            crossing.poll_settings(&GLOBAL).unwrap_err(),
            "192.0.2.10: minpoll 12 (its) is larger than maxpoll 10 (the global)"
        );
    }
}
