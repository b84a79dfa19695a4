//! The client access list: which addresses may send client requests (NTP
//! mode 3) when the agent serves time, as IPv4/IPv6 CIDR `allow`/`deny`
//! rules, like chrony's `allow`/`deny`.
//!
//! The XDP program enforces it (see `filter::acl`): the longest matching
//! prefix decides; an address no rule matches is allowed, unless
//! some rule is an `allow` (then everything not allowed is denied, chrony's
//! convention), which the agent expresses with
//! [`ACL_DEFAULT_DENY`](ntp_filter_common::config_flags::ACL_DEFAULT_DENY).
//! Other modes are not affected, and the class table still comes first: a
//! request the mode table drops never reaches the list.
//!
//! A range is matched as the 16-byte address of `AddrKey`, IPv4 as
//! `::ffff:a.b.c.d`, so an IPv4 `/n` is a prefix of `96 + n` bits. An IPv6 rule shorter
//! than /96 that covers `::ffff:0:0/96` (e.g. `::/0`) therefore covers every
//! IPv4 client too; `0.0.0.0/0` covers IPv4 only.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, Ipv6Addr},
    str::FromStr,
};

use anyhow::{bail, Result};
use ipnet::{IpNet, Ipv6Net};
use ntp_filter_common::{AddrKey, MAX_ACL_RULES, V4_MAPPED_PREFIX_LEN};

/// An address range: a network address and a prefix length, with no bits
/// set after the prefix. IPv4-mapped IPv6 ranges (`::ffff:a.b.c.d/n`,
/// n ≥ 96) are stored as the IPv4 range they are, so both spellings are the
/// same rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

/// Why a range was refused. The message names the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("invalid address range {0:?}: expected an address or ADDRESS/PREFIX, e.g. 192.0.2.0/24 or 2001:db8::/32")]
    Syntax(String),
    #[error(
        "invalid address range {value:?}: the prefix length of an {family} range is 0..={max}"
    )]
    PrefixTooLong {
        value: String,
        family: &'static str,
        max: u8,
    },
    #[error("invalid address range {value:?}: bits are set after the /{prefix_len} prefix; write {network}/{prefix_len} for the network or {addr}/{host_len} for the one address")]
    HostBits {
        value: String,
        network: IpAddr,
        addr: IpAddr,
        prefix_len: u8,
        host_len: u8,
    },
}

const fn max_len(addr: &IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `addr` with every bit after the first `prefix_len` (at most the
/// family's length) cleared.
fn mask(addr: IpAddr, prefix_len: u8) -> IpAddr {
    IpNet::new(addr, prefix_len)
        .map(|net| net.trunc().addr())
        .unwrap_or(addr)
}

/// `::ffff:a.b.c.d/n` with n ≥ 96 as `a.b.c.d/(n-96)`.
fn unmap(addr: IpAddr, prefix_len: u8) -> (IpAddr, u8) {
    if let IpAddr::V6(a) = addr {
        if prefix_len as u32 >= V4_MAPPED_PREFIX_LEN {
            if let Some(v4) = a.to_ipv4_mapped() {
                return (IpAddr::V4(v4), prefix_len - V4_MAPPED_PREFIX_LEN as u8);
            }
        }
    }
    (addr, prefix_len)
}

impl Cidr {
    /// The range `addr/prefix_len`. Refuses a prefix longer than the
    /// family's and an address with bits set after the prefix (a typo such
    /// as `192.0.2.99/24` would otherwise silently cover 255 more hosts).
    pub fn new(addr: IpAddr, prefix_len: u8) -> Result<Self, CidrError> {
        Self::checked(addr, prefix_len, &format!("{addr}/{prefix_len}"))
    }

    /// The single address `addr` (/32 or /128).
    pub fn host(addr: IpAddr) -> Self {
        let (addr, prefix_len) = unmap(addr, max_len(&addr));
        Self { addr, prefix_len }
    }

    fn checked(addr: IpAddr, prefix_len: u8, value: &str) -> Result<Self, CidrError> {
        let max = max_len(&addr);
        let Ok(net) = IpNet::new(addr, prefix_len) else {
            return Err(CidrError::PrefixTooLong {
                value: value.to_owned(),
                family: if max == 32 { "IPv4" } else { "IPv6" },
                max,
            });
        };
        let network = net.trunc().addr();
        if network != addr {
            return Err(CidrError::HostBits {
                value: value.to_owned(),
                network,
                addr,
                prefix_len,
                host_len: max,
            });
        }
        let (addr, prefix_len) = unmap(addr, prefix_len);
        Ok(Self { addr, prefix_len })
    }

    /// The network address (IPv4 for IPv4-mapped ranges).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` is in the range. An IPv4 address and its IPv4-mapped
    /// IPv6 form are the same client, as in the filter.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (want, len) = self.mapped();
        Ipv6Net::new(Ipv6Addr::from(want.addr), len as u8)
            .is_ok_and(|net| net.contains(&Ipv6Addr::from(AddrKey::from_ip(ip).addr)))
    }

    /// The range as the filter matches it: the 16-byte address of
    /// `AddrKey` (IPv4 as `::ffff:a.b.c.d`) and its prefix length (96 + n
    /// for an IPv4 /n), so IPv4 and IPv6 rules compare in one trie.
    pub fn mapped(&self) -> (AddrKey, u32) {
        let offset = if self.addr.is_ipv4() {
            V4_MAPPED_PREFIX_LEN
        } else {
            0
        };
        (
            AddrKey::from_ip(self.addr),
            offset + u32::from(self.prefix_len),
        )
    }

    /// The range a mapped address and prefix length stand for. Bits after
    /// the prefix (which the kernel ignores when matching) are cleared, so
    /// a key written by anything else still reads back as the range it
    /// matches.
    pub fn from_mapped(addr: [u8; 16], len: u32) -> Result<Self, CidrError> {
        let addr = IpAddr::V6(Ipv6Addr::from(addr));
        if len > 128 {
            return Err(CidrError::PrefixTooLong {
                value: format!("{addr}/{len}"),
                family: "IPv6",
                max: 128,
            });
        }
        let len = len as u8;
        let (addr, prefix_len) = unmap(mask(addr, len), len);
        Ok(Self { addr, prefix_len })
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `192.0.2.0/24`, `2001:db8::/32` (read by `ipnet`), or a bare
    /// address (/32, /128).
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let value = s.trim();
        if let Ok(net) = value.parse::<IpNet>() {
            return Self::checked(net.addr(), net.prefix_len(), value);
        }
        if let Ok(addr) = value.parse::<IpAddr>() {
            return Self::checked(addr, max_len(&addr), value);
        }
        // ipnet refuses a length past the family's (and one with leading
        // zeros, `/024`) like any typo: an address and digits are a length,
        // so take it or say it is too long.
        match value.split_once('/') {
            Some((addr, len)) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => {
                let addr: IpAddr = addr.parse().map_err(|_| CidrError::Syntax(s.to_owned()))?;
                if let Some(len) = len.parse::<u8>().ok().filter(|l| *l <= max_len(&addr)) {
                    return Self::checked(addr, len, value);
                }
                Err(CidrError::PrefixTooLong {
                    value: value.to_owned(),
                    family: if addr.is_ipv4() { "IPv4" } else { "IPv6" },
                    max: max_len(&addr),
                })
            }
            _ => Err(CidrError::Syntax(s.to_owned())),
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

super::text::serde_as_text!(Cidr);

/// One access-list rule.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct AclRule {
    pub cidr: Cidr,
    /// `true` = allow, `false` = deny.
    pub allow: bool,
}

impl AclRule {
    pub fn allow(cidr: Cidr) -> Self {
        Self { cidr, allow: true }
    }

    pub fn deny(cidr: Cidr) -> Self {
        Self { cidr, allow: false }
    }

    pub fn verb(&self) -> &'static str {
        if self.allow {
            "allow"
        } else {
            "deny"
        }
    }
}

impl fmt::Display for AclRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb(), self.cidr)
    }
}

impl FromStr for AclRule {
    type Err = anyhow::Error;

    /// `allow RANGE` or `deny RANGE`.
    fn from_str(s: &str) -> Result<Self> {
        let mut words = s.split_whitespace();
        let (verb, range) = match (words.next(), words.next(), words.next()) {
            (Some(v), Some(r), None) => (v, r),
            _ => bail!("invalid access rule {s:?}: expected `allow RANGE` or `deny RANGE`"),
        };
        let cidr = range.parse()?;
        match verb {
            "allow" => Ok(Self::allow(cidr)),
            "deny" => Ok(Self::deny(cidr)),
            _ => bail!("invalid access rule {s:?}: {verb:?} is neither `allow` nor `deny`"),
        }
    }
}

/// Whether the rules deny unmatched clients: once anything is allowed,
/// everything else is denied.
pub fn default_deny(rules: &[AclRule]) -> bool {
    rules.iter().any(|r| r.allow)
}

/// The rules as the map holds them: one verdict per range. The same range
/// twice with the same verdict is fine; with both verdicts it is refused,
/// as is a list longer than the map.
pub fn table(rules: &[AclRule]) -> Result<BTreeMap<Cidr, bool>> {
    let mut t = BTreeMap::new();
    for rule in rules {
        if let Some(prev) = t.insert(rule.cidr, rule.allow) {
            if prev != rule.allow {
                bail!(
                    "{} is given both as `allow` and as `deny`: a range is one or the other",
                    rule.cidr
                );
            }
        }
    }
    if t.len() > MAX_ACL_RULES as usize {
        bail!(
            "{} allow/deny ranges, the filter holds at most {MAX_ACL_RULES}",
            t.len()
        );
    }
    Ok(t)
}

/// What the filter decides for a client request from `ip` under `rules`
/// (the longest matching prefix, else the default): the program's logic in
/// userspace, for status output and tests.
pub fn allows(rules: &[AclRule], ip: IpAddr) -> bool {
    rules
        .iter()
        .filter(|r| r.cidr.contains(ip))
        .max_by_key(|r| r.cidr.mapped().1)
        .map_or(!default_deny(rules), |r| r.allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> String {
        s.parse::<Cidr>().unwrap_err().to_string()
    }

    #[test]
    fn parses_ranges_and_bare_addresses() {
        assert_eq!(
            c("192.0.2.0/24").addr(),
            "192.0.2.0".parse::<IpAddr>().unwrap()
        );
        assert_eq!(c("192.0.2.0/24").prefix_len(), 24);
        assert_eq!(c("2001:db8::/32").prefix_len(), 32);
        assert_eq!(c("192.0.2.7").prefix_len(), 32);
        assert_eq!(c("2001:db8::7").prefix_len(), 128);
        assert_eq!(c(" 10.0.0.0/8 ").to_string(), "10.0.0.0/8");
        assert_eq!(c("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(c("::/0").to_string(), "::/0");
        assert_eq!(c("2001:DB8:0::/48").to_string(), "2001:db8::/48");
        assert_eq!(c("192.0.2.7/032").prefix_len(), 32);
    }

    #[test]
    fn ipv4_mapped_ranges_are_the_ipv4_range() {
        assert_eq!(c("::ffff:192.0.2.0/120"), c("192.0.2.0/24"));
        assert_eq!(c("::ffff:192.0.2.7"), c("192.0.2.7"));
        assert_eq!(c("::ffff:0.0.0.0/96"), c("0.0.0.0/0"));
        // Shorter than /96 it is an IPv6 range (covering IPv4 too).
        assert_eq!(c("::/80").to_string(), "::/80");
        assert_eq!(
            Cidr::host("::ffff:192.0.2.7".parse().unwrap()),
            c("192.0.2.7")
        );
    }

    #[test]
    fn refuses_garbage_naming_the_value() {
        for bad in [
            "",
            "/24",
            "foo",
            "192.0.2.0/",
            "192.0.2.0/x",
            "192.0.2.0/+24",
            "192.0.2.0/-1",
            "192.0.2.0/24/1",
            "192.0.2/24",
            "192.0.2.0 /24",
            "fe80::1%eth0",
        ] {
            let e = err(bad);
            assert!(e.contains(&format!("{bad:?}")), "{bad:?}: {e}");
            assert!(e.contains("expected an address"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn refuses_too_long_prefixes() {
        let e = err("192.0.2.0/33");
        assert!(
            e.contains("\"192.0.2.0/33\"") && e.contains("IPv4") && e.contains("0..=32"),
            "{e}"
        );
        let e = err("2001:db8::/129");
        assert!(e.contains("IPv6") && e.contains("0..=128"), "{e}");
        let e = err("192.0.2.0/99999");
        assert!(e.contains("0..=32"), "{e}");
        assert!(Cidr::new("192.0.2.0".parse().unwrap(), 33).is_err());
    }

    #[test]
    fn refuses_host_bits_with_both_readings() {
        let e = err("192.0.2.99/24");
        assert!(
            e.contains("\"192.0.2.99/24\"")
                && e.contains("192.0.2.0/24")
                && e.contains("192.0.2.99/32"),
            "{e}"
        );
        let e = err("2001:db8::1/64");
        assert!(
            e.contains("2001:db8::/64") && e.contains("2001:db8::1/128"),
            "{e}"
        );
        assert!(err("192.0.2.1/0").contains("0.0.0.0/0"));
        assert!(Cidr::new("10.1.0.0".parse().unwrap(), 16).is_ok());
        assert!(Cidr::new("10.1.0.0".parse().unwrap(), 15).is_err());
    }

    #[test]
    fn contains_matches_the_prefix() {
        let net = c("192.0.2.0/25");
        assert!(net.contains("192.0.2.50".parse().unwrap()));
        assert!(net.contains("::ffff:192.0.2.50".parse().unwrap()));
        // .0 to .127: 192.0.2.99 is inside a /25.
        assert!(net.contains("192.0.2.99".parse().unwrap()));
        assert!(net.contains("192.0.2.127".parse().unwrap()));
        assert!(!net.contains("192.0.2.128".parse().unwrap()));
        assert!(!net.contains("192.0.2.200".parse().unwrap()));
        assert!(!net.contains("2001:db8::50".parse().unwrap()));
        assert!(c("::/0").contains("192.0.2.1".parse().unwrap()));
        assert!(!c("0.0.0.0/0").contains("2001:db8::1".parse().unwrap()));
        assert!(c("2001:db8:0:1::/64").contains("2001:db8:0:1::99".parse().unwrap()));
        assert!(!c("2001:db8:0:1::/64").contains("2001:db8:0:2::99".parse().unwrap()));
    }

    #[test]
    fn rules_parse_and_print() {
        let r: AclRule = "allow 192.0.2.0/24".parse().unwrap();
        assert_eq!(r, AclRule::allow(c("192.0.2.0/24")));
        assert_eq!(r.to_string(), "allow 192.0.2.0/24");
        let r: AclRule = "deny   2001:db8::1".parse().unwrap();
        assert_eq!(r.to_string(), "deny 2001:db8::1/128");
        assert!("permit 10.0.0.0/8".parse::<AclRule>().is_err());
        assert!("allow".parse::<AclRule>().is_err());
        assert!("allow 10.0.0.0/8 extra".parse::<AclRule>().is_err());
        let e = "deny 10.0.0.1/8"
            .parse::<AclRule>()
            .unwrap_err()
            .to_string();
        assert!(e.contains("10.0.0.0/8"), "{e}");
    }

    #[test]
    fn serde_uses_the_text_form() {
        let cidr = c("2001:db8::/32");
        assert_eq!(serde_json::to_string(&cidr).unwrap(), "\"2001:db8::/32\"");
        assert_eq!(
            serde_json::from_str::<Cidr>("\"2001:db8::/32\"").unwrap(),
            cidr
        );
        assert!(serde_json::from_str::<Cidr>("\"nope\"").is_err());
    }

    #[test]
    fn table_refuses_contradictions() {
        let net = c("192.0.2.0/24");
        let t = table(&[AclRule::allow(net), AclRule::allow(net)]).unwrap();
        assert_eq!(t.len(), 1);
        let e = table(&[AclRule::allow(net), AclRule::deny(net)]).unwrap_err();
        assert!(e.to_string().contains("192.0.2.0/24"), "{e}");
    }

    #[test]
    fn userspace_verdicts_follow_longest_prefix_and_default() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(allows(&[], ip("192.0.2.99")));
        let deny_one = [AclRule::deny(c("192.0.2.99"))];
        assert!(!allows(&deny_one, ip("192.0.2.99")));
        assert!(allows(&deny_one, ip("192.0.2.98")));
        let allow_half = [AclRule::allow(c("192.0.2.0/25"))];
        assert!(allows(&allow_half, ip("192.0.2.50")));
        assert!(allows(&allow_half, ip("192.0.2.99")));
        assert!(!allows(&allow_half, ip("192.0.2.200")));
        assert!(!allows(&allow_half, ip("2001:db8::99")));
        let nested = [
            AclRule::allow(c("192.0.2.0/24")),
            AclRule::deny(c("192.0.2.96/28")),
        ];
        assert!(!allows(&nested, ip("192.0.2.99")));
        assert!(allows(&nested, ip("192.0.2.10")));
        assert!(default_deny(&nested));
        assert!(!default_deny(&deny_one));
    }
}
