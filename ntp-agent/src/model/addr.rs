//! What an address can be to the agent: one canonical form per host (so
//! `::ffff:192.0.2.11` and `192.0.2.11` are one source, as they are one
//! entry in the filter), the IPv6 senders that embed an IPv4 address and
//! are never taken for the IPv4 host (RFC 4291), and the addresses that can
//! never be a server or peer.

use std::net::{IpAddr, Ipv6Addr};

/// The one form of an address: an IPv4-mapped IPv6 address is the IPv4
/// address it maps; everything else is itself.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// An IPv6 address that embeds an IPv4 one: IPv4-mapped (`::ffff:0:0/96`)
/// or IPv4-compatible (`::/96` other than `::` and `::1`, deprecated by
/// RFC 4291). A datagram *from* such an address came over IPv6 (the
/// agent's IPv4 traffic arrives on IPv4 sockets), so it is neither the
/// IPv4 host it names nor anyone the agent should answer.
pub fn embeds_ipv4(ip: IpAddr) -> bool {
    let IpAddr::V6(v6) = ip else { return false };
    if v6.to_ipv4_mapped().is_some() {
        return true;
    }
    let [a, b, c, d, e, f, _, _] = v6.segments();
    [a, b, c, d, e, f] == [0; 6] && v6 != Ipv6Addr::UNSPECIFIED && v6 != Ipv6Addr::LOCALHOST
}

/// Why `ip` (canonical) can never be a server or peer, if it cannot.
pub fn never_a_source(ip: IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("the unspecified address is no host");
    }
    if ip.is_loopback() {
        return Some("a loopback address is this box itself, not a time source");
    }
    if ip.is_multicast() {
        return Some(
            "a multicast address is a group, not a server or peer (multicast NTP is not supported)",
        );
    }
    match ip {
        IpAddr::V4(v4) if v4.is_broadcast() => {
            Some("the broadcast address is every host, not a server or peer")
        }
        IpAddr::V6(v6) if v6.is_unicast_link_local() => Some(
            "a link-local address needs an interface scope (fe80::1%eth0), which sources do not take: give a global address",
        ),
        _ if embeds_ipv4(ip) => Some(
            "an IPv4-compatible IPv6 address is deprecated (RFC 4291) and dropped by the filter: give the IPv4 address",
        ),
        _ => None,
    }
}

/// Why `ip` cannot be a source given the box's own addresses, if it
/// cannot: [`never_a_source`], or one of `own` (the box's addresses and
/// subnet broadcasts, canonical).
pub fn refuse_source(ip: IpAddr, own: &[(IpAddr, bool)]) -> Option<String> {
    if let Some(why) = never_a_source(ip) {
        return Some(format!("{ip}: {why}"));
    }
    own.iter().find(|(a, _)| *a == ip).map(|(_, broadcast)| {
        if *broadcast {
            format!("{ip}: a broadcast address of this box's subnets is not a server or peer")
        } else {
            format!("{ip}: that is this box's own address, not a time source")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_ipv4_mapped_address_is_the_ipv4_address() {
        assert_eq!(canonical(ip("::ffff:192.0.2.11")), ip("192.0.2.11"));
        assert_eq!(canonical(ip("192.0.2.11")), ip("192.0.2.11"));
        assert_eq!(canonical(ip("2001:db8::11")), ip("2001:db8::11"));
        // Compatible addresses are not mapped: they stay IPv6 (and are
        // refused as sources).
        assert_eq!(canonical(ip("::192.0.2.11")), ip("::192.0.2.11"));
    }

    #[test]
    fn ipv6_senders_embedding_ipv4_per_rfc_4291() {
        for s in ["::ffff:192.0.2.20", "::ffff:0.0.0.0", "::192.0.2.20", "::2"] {
            assert!(embeds_ipv4(ip(s)), "{s}");
        }
        for s in [
            "::",
            "::1",
            "192.0.2.20",
            "2001:db8::20",
            "64:ff9b::192.0.2.20",
            "2001:db8::ffff:192.0.2.20",
            "fe80::1",
        ] {
            assert!(!embeds_ipv4(ip(s)), "{s}");
        }
    }

    #[test]
    fn addresses_that_can_never_be_sources() {
        for (s, why) in [
            ("0.0.0.0", "unspecified"),
            ("::", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("224.0.1.1", "multicast"),
            ("ff02::101", "multicast"),
            ("fe80::1", "link-local"),
            ("127.0.0.1", "loopback"),
            ("127.3.4.5", "loopback"),
            ("::1", "loopback"),
            ("::192.0.2.10", "IPv4-compatible"),
        ] {
            let got = never_a_source(ip(s));
            assert!(got.is_some_and(|g| g.contains(why)), "{s}: {got:?}");
        }
        for s in ["192.0.2.10", "2001:db8::10", "169.254.1.1", "10.0.0.1"] {
            assert_eq!(never_a_source(ip(s)), None, "{s}");
        }
        let own = [(ip("192.0.2.1"), false), (ip("192.0.2.255"), true)];
        assert_eq!(
            refuse_source(ip("192.0.2.1"), &own).unwrap(),
            "192.0.2.1: that is this box's own address, not a time source"
        );
        assert!(refuse_source(ip("192.0.2.255"), &own)
            .unwrap()
            .contains("broadcast address of this box's subnets"));
        assert_eq!(refuse_source(ip("192.0.2.10"), &own), None);
        assert!(refuse_source(ip("0.0.0.0"), &own)
            .unwrap()
            .starts_with("0.0.0.0: "));
    }
}
