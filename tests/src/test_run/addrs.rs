//! The addresses of the test network (RFC 5737 / RFC 3849 documentation
//! ranges).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const fn a4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

const fn a6(segments: [u16; 8]) -> IpAddr {
    let [a, b, c, d, e, f, g, h] = segments;
    IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h))
}

/// The box itself.
pub const LOCAL4: IpAddr = a4(192, 0, 2, 1);
pub const LOCAL6: IpAddr = a6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1]);
/// The subnet broadcast of 192.0.2.1/24 (in the local map as BROADCAST).
pub const SUBNET_BCAST4: IpAddr = a4(192, 0, 2, 255);
pub const LIMITED_BCAST4: IpAddr = a4(255, 255, 255, 255);
/// NTP multicast groups.
pub const MCAST4: IpAddr = a4(224, 0, 1, 1);
pub const MCAST6: IpAddr = a6([0xff02, 0, 0, 0, 0, 0, 0, 0x101]);

/// `--server` with `--source-port 123`: requests leave from the NTP port, so
/// replies come back to it.
pub const SERVER4: IpAddr = a4(192, 0, 2, 10);
pub const SERVER6: IpAddr = a6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10]);
/// A server whose requests leave from an ephemeral port.
pub const EPHEMERAL4: IpAddr = a4(192, 0, 2, 11);
pub const EPHEMERAL6: IpAddr = a6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x11]);
pub const EPHEMERAL_REPLY_PORT: u16 = 40123;
/// A server with no request outstanding (reply port 0): every reply drops.
pub const IDLE4: IpAddr = a4(192, 0, 2, 12);
pub const IDLE6: IpAddr = a6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x12]);
/// An NTS server whose key establishment negotiated another NTP port:
/// it answers from [`NTS_SERVER_PORT`] to [`NTS_REPLY_PORT`].
pub const NTS4: IpAddr = a4(192, 0, 2, 13);
pub const NTS6: IpAddr = a6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x13]);
pub const NTS_SERVER_PORT: u16 = 4123;
pub const NTS_REPLY_PORT: u16 = 40124;
/// `--peer`.
pub const PEER4: IpAddr = a4(192, 0, 2, 20);
pub const PEER6: IpAddr = a6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20]);
/// Neither server nor peer.
pub const OTHER4: IpAddr = a4(192, 0, 2, 99);
pub const OTHER6: IpAddr = a6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99]);
/// More clients (neither server nor peer) for the access-list fixtures:
/// neighbours of `OTHER4` on either side of the prefixes the fixtures use.
pub const CLIENT4_50: IpAddr = a4(192, 0, 2, 50);
pub const CLIENT4_98: IpAddr = a4(192, 0, 2, 98);
pub const CLIENT4_112: IpAddr = a4(192, 0, 2, 112);
pub const CLIENT4_200: IpAddr = a4(192, 0, 2, 200);
/// A client outside 192.0.2.0/24 altogether.
pub const FAR4: IpAddr = a4(198, 51, 100, 7);
/// IPv6 clients in other /64s than the box's 2001:db8::/64.
pub const CLIENT6_NET5: IpAddr = a6([0x2001, 0xdb8, 0, 5, 0, 0, 0, 0x99]);
pub const CLIENT6_NET6: IpAddr = a6([0x2001, 0xdb8, 0, 6, 0, 0, 0, 0x99]);

/// A host behind the router.
pub const TRANSIT4: IpAddr = a4(198, 51, 100, 50);
pub const TRANSIT6: IpAddr = a6([0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x50]);
