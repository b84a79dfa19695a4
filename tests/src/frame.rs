//! Frames as observed, and matching them: `Frame`, `UdpInfo`, `Match`.

use etherparse::{NetSlice, SlicedPacket, TransportSlice, VlanSlice};
use std::net::IpAddr;

/// A received frame as it was on the wire (a VLAN tag the kernel moved into
/// metadata is put back, so `data` is what XDP saw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub data: Vec<u8>,
    /// `sll_pkttype` (0 host, 1 broadcast, 2 multicast, 3 other host).
    pub pkttype: u8,
}

impl Frame {
    pub fn udp(&self) -> Option<UdpInfo> {
        parse_udp(&self.data)
    }

    /// The IP view: any IPv4 or IPv6 packet, whatever it carries (UDP,
    /// ICMP port unreachable, …).
    pub fn ip(&self) -> Option<IpInfo> {
        let p = SlicedPacket::from_ethernet(&self.data).ok()?;
        let (src, dst, payload) = match &p.net {
            Some(NetSlice::Ipv4(ip)) => (
                ip.header().source_addr().into(),
                ip.header().destination_addr().into(),
                ip.payload(),
            ),
            Some(NetSlice::Ipv6(ip)) => (
                ip.header().source_addr().into(),
                ip.header().destination_addr().into(),
                ip.payload(),
            ),
            None => return None,
        };
        Some(IpInfo {
            src,
            dst,
            protocol: payload.ip_number.0,
        })
    }
}

/// Addresses and transport protocol number of an IP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IANA protocol number: 1 ICMP, 17 UDP, 58 ICMPv6, …
    pub protocol: u8,
}

/// The UDP view of an unfragmented frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpInfo {
    /// VLAN IDs, outermost first.
    pub vlans: Vec<u16>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: Vec<u8>,
}

impl UdpInfo {
    pub fn ntp_mode(&self) -> Option<u8> {
        self.payload.first().map(|b| b & 7)
    }
}

/// Parses an Ethernet frame down to UDP; `None` for anything else,
/// including IP fragments and malformed headers (match those on raw bytes).
pub fn parse_udp(frame: &[u8]) -> Option<UdpInfo> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let vlans = match &p.vlan {
        Some(VlanSlice::SingleVlan(v)) => vec![v.vlan_identifier().value()],
        Some(VlanSlice::DoubleVlan(v)) => vec![
            v.outer().vlan_identifier().value(),
            v.inner().vlan_identifier().value(),
        ],
        None => vec![],
    };
    let (src, dst) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        Some(NetSlice::Ipv6(ip)) => (
            ip.header().source_addr().into(),
            ip.header().destination_addr().into(),
        ),
        None => return None,
    };
    match &p.transport {
        Some(TransportSlice::Udp(u)) => Some(UdpInfo {
            vlans,
            src,
            dst,
            src_port: u.source_port(),
            dst_port: u.destination_port(),
            payload: u.payload().to_vec(),
        }),
        _ => None,
    }
}

/// Declarative frame filter; unset fields match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Match {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub src_port: Option<u16>,
    pub dst_port: Option<u16>,
    pub ntp_mode: Option<u8>,
    pub vlan: Option<u16>,
    pub payload: Option<Vec<u8>>,
    pub exact: Option<Vec<u8>>,
}

impl Match {
    /// Any UDP frame.
    pub fn udp() -> Self {
        Self::default()
    }

    /// NTP from `src` to port 123 with `mode`.
    pub fn ntp(src: IpAddr, mode: u8) -> Self {
        Self::udp().src(src).dst_port(123).ntp_mode(mode)
    }

    /// Exactly these frame bytes (for fragments and malformed frames that do
    /// not parse as UDP).
    pub fn exact(frame: &[u8]) -> Self {
        Self {
            exact: Some(frame.to_vec()),
            ..Self::default()
        }
    }

    pub fn src(mut self, ip: IpAddr) -> Self {
        self.src = Some(ip);
        self
    }
    pub fn dst(mut self, ip: IpAddr) -> Self {
        self.dst = Some(ip);
        self
    }
    pub fn src_port(mut self, p: u16) -> Self {
        self.src_port = Some(p);
        self
    }
    pub fn dst_port(mut self, p: u16) -> Self {
        self.dst_port = Some(p);
        self
    }
    pub fn ntp_mode(mut self, m: u8) -> Self {
        self.ntp_mode = Some(m);
        self
    }
    /// Outermost VLAN ID.
    pub fn vlan(mut self, id: u16) -> Self {
        self.vlan = Some(id);
        self
    }
    /// Exact UDP payload.
    pub fn payload(mut self, p: &[u8]) -> Self {
        self.payload = Some(p.to_vec());
        self
    }

    pub fn matches(&self, f: &Frame) -> bool {
        if let Some(e) = &self.exact {
            if &f.data != e {
                return false;
            }
            if self == &Self::exact(e) {
                return true;
            }
        }
        let Some(u) = f.udp() else { return false };
        want(&self.src, &u.src)
            && want(&self.dst, &u.dst)
            && want(&self.src_port, &u.src_port)
            && want(&self.dst_port, &u.dst_port)
            && (self.ntp_mode.is_none() || u.ntp_mode() == self.ntp_mode)
            && (self.vlan.is_none() || u.vlans.first() == self.vlan.as_ref())
            && want(&self.payload, &u.payload)
    }
}

/// `None` matches anything.
fn want<T: PartialEq>(want: &Option<T>, got: &T) -> bool {
    match want {
        None => true,
        Some(w) => w == got,
    }
}
