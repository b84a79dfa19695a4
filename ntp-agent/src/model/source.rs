//! A configured source: an address or a name, with poll settings of its
//! own where they differ from the global ones. On the command line and the
//! control socket it is `ADDR[,minpoll=N][,maxpoll=N][,iburst|,noiburst]`
//! (`--server 192.0.2.10,minpoll=4,noiburst`); in the config file a table
//! (`{ address = "192.0.2.10", minpoll = 4, iburst = false }`) that is
//! turned into that form, so both are checked by this one parser.

use std::{fmt, net::IpAddr, str::FromStr};

use ntp_proto::SourceKind;

use super::addr;

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
            // One address, one source: `::ffff:192.0.2.11` is 192.0.2.11,
            // as it is one entry in the filter.
            let ip = addr::canonical(ip);
            if let Some(why) = addr::never_a_source(ip) {
                return Err(why.into());
            }
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceArg {
    pub spec: SourceSpec,
    pub poll: PollOverride,
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
}

impl From<SourceSpec> for SourceArg {
    fn from(spec: SourceSpec) -> Self {
        Self {
            spec,
            poll: PollOverride::default(),
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
            Some(true) => f.write_str(",iburst"),
            Some(false) => f.write_str(",noiburst"),
            None => Ok(()),
        }
    }
}

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
        for option in parts.map(str::trim) {
            let (key, value) = option.split_once('=').unwrap_or((option, ""));
            let seen = match key {
                "minpoll" => poll.minpoll.replace(poll_value(key, value)?).is_some(),
                "maxpoll" => poll.maxpoll.replace(poll_value(key, value)?).is_some(),
                "iburst" | "noiburst" if value.is_empty() => {
                    poll.iburst.replace(key == "iburst").is_some()
                }
                _ => {
                    return Err(format!(
                        "unknown source option {option:?}: expected minpoll=N, maxpoll=N, iburst or noiburst"
                    ))
                }
            };
            if seen {
                return Err(format!("{key} is given twice for {spec}"));
            }
        }
        if let (Some(min), Some(max)) = (poll.minpoll, poll.maxpoll) {
            if min > max {
                return Err(format!(
                    "{spec}: minpoll {min} is larger than maxpoll {max}"
                ));
            }
        }
        Ok(Self { spec, poll })
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
        assert_eq!(
            "::ffff:192.0.2.11".parse(),
            Ok(SourceSpec::Addr("192.0.2.11".parse().unwrap())),
            "an IPv4-mapped address is the IPv4 source"
        );
        for bad in [
            "0.0.0.0",
            "::",
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "224.0.1.1",
            "fe80::1",
            "255.255.255.255",
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
        let crossing: SourceArg = "192.0.2.10,minpoll=12".parse().unwrap();
        assert_eq!(
            crossing.poll_settings(&GLOBAL).unwrap_err(),
            "192.0.2.10: minpoll 12 (its) is larger than maxpoll 10 (the global)"
        );
    }
}
