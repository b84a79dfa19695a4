//! Sources given by name: `--server time.example.net` stands for every
//! address the name resolves to. Names are resolved by the sync loop, not
//! at start-up, so a router that boots before its DNS works still starts
//! (and filters) at once; unresolved names and names whose sources have all
//! gone quiet are retried.

use std::{fmt, net::IpAddr, str::FromStr};

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

/// All addresses of `name`, sorted and deduplicated.
pub async fn resolve(name: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
    let mut addrs: Vec<IpAddr> = tokio::net::lookup_host((name, port))
        .await?
        .map(|sa| sa.ip())
        .collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[tokio::test]
    async fn localhost_resolves() {
        let addrs = resolve("localhost", 123).await.unwrap();
        assert!(addrs.iter().all(|a| a.is_loopback()), "{addrs:?}");
        assert!(!addrs.is_empty());
    }
}
