//! Frame construction: NTP payloads, UDP over IPv4/IPv6, Ethernet with
//! optional VLAN tags, IPv6 extension headers and IP fragments.
//!
//! Everything returns plain `Vec<u8>` so tests can corrupt bytes afterwards
//! (bad IP version, truncated payloads, …) before sending.

use etherparse::{IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, UdpHeader};
use std::net::{IpAddr, SocketAddr};

/// NTP association modes (RFC 5905 figure 10).
pub mod mode {
    pub const RESERVED: u8 = 0;
    pub const SYMMETRIC_ACTIVE: u8 = 1;
    pub const SYMMETRIC_PASSIVE: u8 = 2;
    pub const CLIENT: u8 = 3;
    pub const SERVER: u8 = 4;
    pub const BROADCAST: u8 = 5;
    pub const CONTROL: u8 = 6;
    pub const PRIVATE: u8 = 7;
    pub const ALL: [u8; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
}

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

/// The 48-byte NTP header plus optional trailing bytes (extension fields,
/// MAC, or junk). Fields are public so tests can set odd values directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtpPacket {
    pub leap: u8,
    pub version: u8,
    pub mode: u8,
    pub stratum: u8,
    pub poll: i8,
    pub precision: i8,
    pub root_delay: u32,
    pub root_dispersion: u32,
    pub reference_id: [u8; 4],
    pub reference_ts: u64,
    pub origin_ts: u64,
    pub receive_ts: u64,
    pub transmit_ts: u64,
    pub extra: Vec<u8>,
}

impl NtpPacket {
    /// Version 4 packet of `mode` with plausible defaults.
    pub fn new(mode: u8) -> Self {
        Self {
            leap: 0,
            version: 4,
            mode,
            stratum: if mode == mode::SERVER || mode == mode::BROADCAST {
                2
            } else {
                0
            },
            poll: 6,
            precision: -20,
            root_delay: 0,
            root_dispersion: 0,
            reference_id: [0; 4],
            reference_ts: 0,
            origin_ts: 0,
            receive_ts: 0,
            transmit_ts: 0,
            extra: Vec::new(),
        }
    }

    pub fn version(mut self, v: u8) -> Self {
        self.version = v;
        self
    }

    pub fn stratum(mut self, s: u8) -> Self {
        self.stratum = s;
        self
    }

    /// A per-packet tag in the transmit timestamp lets a test tell its own
    /// packets apart in the observer.
    pub fn transmit_ts(mut self, ts: u64) -> Self {
        self.transmit_ts = ts;
        self
    }

    pub fn origin_ts(mut self, ts: u64) -> Self {
        self.origin_ts = ts;
        self
    }

    pub fn extra(mut self, bytes: &[u8]) -> Self {
        self.extra = bytes.to_vec();
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(48 + self.extra.len());
        b.push((self.leap & 3) << 6 | (self.version & 7) << 3 | (self.mode & 7));
        b.push(self.stratum);
        b.push(self.poll as u8);
        b.push(self.precision as u8);
        b.extend_from_slice(&self.root_delay.to_be_bytes());
        b.extend_from_slice(&self.root_dispersion.to_be_bytes());
        b.extend_from_slice(&self.reference_id);
        for ts in [
            self.reference_ts,
            self.origin_ts,
            self.receive_ts,
            self.transmit_ts,
        ] {
            b.extend_from_slice(&ts.to_be_bytes());
        }
        b.extend_from_slice(&self.extra);
        b
    }
}

impl From<NtpPacket> for Vec<u8> {
    fn from(p: NtpPacket) -> Vec<u8> {
        p.to_bytes()
    }
}

/// An IPv6 extension header placed between the fixed header and UDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ipv6Ext {
    /// 8-byte Hop-by-Hop Options header padded with PadN.
    HopByHop,
    /// 8-byte Destination Options header padded with PadN.
    DestOpts,
    /// Any header: `protocol` is its IP protocol number, `body` everything
    /// after the next-header byte (so its length must be 8n - 1).
    Raw { protocol: u8, body: Vec<u8> },
}

impl Ipv6Ext {
    fn protocol(&self) -> u8 {
        match self {
            Ipv6Ext::HopByHop => 0,
            Ipv6Ext::DestOpts => 60,
            Ipv6Ext::Raw { protocol, .. } => *protocol,
        }
    }

    fn bytes(&self, next: u8) -> Vec<u8> {
        let mut b = vec![next];
        match self {
            // hdr-ext-len 0 (8 bytes) then a 4-byte PadN option.
            Ipv6Ext::HopByHop | Ipv6Ext::DestOpts => b.extend_from_slice(&[0, 1, 4, 0, 0, 0, 0]),
            Ipv6Ext::Raw { body, .. } => b.extend_from_slice(body),
        }
        b
    }
}

/// One UDP datagram in an Ethernet frame. Addresses must be of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFrame {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    /// (TPID, TCI), outermost first.
    pub vlans: Vec<(u16, u16)>,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// TTL / hop limit.
    pub ttl: u8,
    pub ip_id: u16,
    pub ipv6_ext: Vec<Ipv6Ext>,
    pub payload: Vec<u8>,
}

impl UdpFrame {
    pub fn new(src: SocketAddr, dst: SocketAddr, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            src_mac: [0x02, 0, 0, 0, 0, 1],
            dst_mac: [0xff; 6],
            vlans: Vec::new(),
            src,
            dst,
            ttl: 64,
            ip_id: 0x4e46,
            ipv6_ext: Vec::new(),
            payload: payload.into(),
        }
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// Adds an 802.1Q tag (inside any tags already added).
    pub fn vlan(mut self, vlan_id: u16) -> Self {
        self.vlans.push((TPID_8021Q, vlan_id & 0x0fff));
        self
    }

    /// Adds an 802.1ad outer tag plus an 802.1Q inner tag.
    pub fn qinq(mut self, outer: u16, inner: u16) -> Self {
        self.vlans.push((TPID_8021AD, outer & 0x0fff));
        self.vlans.push((TPID_8021Q, inner & 0x0fff));
        self
    }

    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    pub fn ipv6_ext(mut self, ext: Ipv6Ext) -> Self {
        self.ipv6_ext.push(ext);
        self
    }

    pub fn payload(mut self, payload: impl Into<Vec<u8>>) -> Self {
        self.payload = payload.into();
        self
    }

    fn is_v6(&self) -> bool {
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(_), IpAddr::V4(_)) => false,
            (IpAddr::V6(_), IpAddr::V6(_)) => true,
            _ => panic!(
                "UdpFrame: mixed address families {} -> {}",
                self.src, self.dst
            ),
        }
    }

    pub fn ethertype(&self) -> u16 {
        if self.is_v6() {
            ETHERTYPE_IPV6
        } else {
            ETHERTYPE_IPV4
        }
    }

    /// UDP header + payload with a correct checksum.
    pub fn udp_segment(&self) -> Vec<u8> {
        let h =
            UdpHeader::without_ipv4_checksum(self.src.port(), self.dst.port(), self.payload.len())
                .expect("UDP payload too large");
        let checksum = match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                h.calc_checksum_ipv4_raw(s.octets(), d.octets(), &self.payload)
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                h.calc_checksum_ipv6_raw(s.octets(), d.octets(), &self.payload)
            }
            _ => panic!("UdpFrame: mixed address families"),
        }
        .expect("UDP payload too large");
        let h = UdpHeader { checksum, ..h };
        let mut b = h.to_bytes().to_vec();
        b.extend_from_slice(&self.payload);
        b
    }

    fn ipv4_header(&self, payload_len: usize, more: bool, offset_bytes: usize) -> Vec<u8> {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (self.src.ip(), self.dst.ip()) else {
            unreachable!()
        };
        let mut h = Ipv4Header::new(
            payload_len as u16,
            self.ttl,
            IpNumber::UDP,
            s.octets(),
            d.octets(),
        )
        .expect("IPv4 payload too large");
        h.identification = self.ip_id;
        h.more_fragments = more;
        h.fragment_offset = etherparse::IpFragOffset::try_new((offset_bytes / 8) as u16)
            .expect("fragment offset too large");
        h.header_checksum = h.calc_header_checksum();
        h.to_bytes().to_vec()
    }

    /// IPv6 fixed header + configured extension headers (+ `last_ext`),
    /// chained to end in `final_proto`.
    fn ipv6_headers(&self, upper_len: usize, last_ext: Option<(u8, Vec<u8>)>) -> Vec<u8> {
        let (IpAddr::V6(s), IpAddr::V6(d)) = (self.src.ip(), self.dst.ip()) else {
            unreachable!()
        };
        let mut protos: Vec<u8> = self.ipv6_ext.iter().map(Ipv6Ext::protocol).collect();
        if let Some((p, _)) = &last_ext {
            protos.push(*p);
        }
        protos.push(17);
        let mut ext = Vec::new();
        for (i, e) in self.ipv6_ext.iter().enumerate() {
            ext.extend_from_slice(&e.bytes(protos[i + 1]));
        }
        if let Some((_, body)) = &last_ext {
            ext.push(17);
            ext.extend_from_slice(body);
        }
        let h = Ipv6Header {
            traffic_class: 0,
            flow_label: Ipv6FlowLabel::ZERO,
            payload_length: (ext.len() + upper_len) as u16,
            next_header: IpNumber(protos[0]),
            hop_limit: self.ttl,
            source: s.octets(),
            destination: d.octets(),
        };
        let mut b = h.to_bytes().to_vec();
        b.extend_from_slice(&ext);
        b
    }

    /// The IP packet (IP header[s] + UDP), without Ethernet.
    pub fn ip_packet(&self) -> Vec<u8> {
        let udp = self.udp_segment();
        let mut b = if self.is_v6() {
            self.ipv6_headers(udp.len(), None)
        } else {
            self.ipv4_header(udp.len(), false, 0)
        };
        b.extend_from_slice(&udp);
        b
    }

    /// The complete Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        ethernet(
            self.src_mac,
            self.dst_mac,
            &self.vlans,
            self.ethertype(),
            &self.ip_packet(),
        )
    }

    /// The datagram split into IP fragments of `chunk` bytes of UDP data
    /// (rounded down to a multiple of 8, at least 8), as Ethernet frames in
    /// order. Only the first fragment carries the UDP header. IPv6 uses a
    /// Fragment header after any configured extension headers.
    pub fn fragments(&self, chunk: usize) -> Vec<Vec<u8>> {
        let chunk = (chunk / 8).max(1) * 8;
        let udp = self.udp_segment();
        let pieces: Vec<&[u8]> = udp.chunks(chunk).collect();
        let n = pieces.len();
        pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| {
                let more = i + 1 < n;
                let offset = i * chunk;
                let mut ip = if self.is_v6() {
                    let off_field = ((offset / 8) as u16) << 3 | more as u16;
                    let mut body = vec![0u8];
                    body.extend_from_slice(&off_field.to_be_bytes());
                    body.extend_from_slice(&(self.ip_id as u32).to_be_bytes());
                    self.ipv6_headers(piece.len(), Some((44, body)))
                } else {
                    self.ipv4_header(piece.len(), more, offset)
                };
                ip.extend_from_slice(piece);
                ethernet(
                    self.src_mac,
                    self.dst_mac,
                    &self.vlans,
                    self.ethertype(),
                    &ip,
                )
            })
            .collect()
    }
}

/// Ethernet II frame with optional VLAN tags (TPID, TCI), outermost first.
pub fn ethernet(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    vlans: &[(u16, u16)],
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut b = Vec::with_capacity(14 + 4 * vlans.len() + payload.len());
    b.extend_from_slice(&dst_mac);
    b.extend_from_slice(&src_mac);
    for (tpid, tci) in vlans {
        b.extend_from_slice(&tpid.to_be_bytes());
        b.extend_from_slice(&tci.to_be_bytes());
    }
    b.extend_from_slice(&ethertype.to_be_bytes());
    b.extend_from_slice(payload);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_header_layout() {
        let b = NtpPacket::new(mode::CLIENT)
            .transmit_ts(0x0102030405060708)
            .to_bytes();
        assert_eq!(b.len(), 48);
        assert_eq!(b[0], 0x23);
        assert_eq!(&b[40..48], &[1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn frames_parse_back() {
        let p = NtpPacket::new(mode::SERVER).to_bytes();
        let v4 = UdpFrame::new(
            "192.0.2.10:123".parse().unwrap(),
            "192.0.2.1:123".parse().unwrap(),
            p.clone(),
        )
        .vlan(7);
        let v6 = UdpFrame::new(
            "[2001:db8::10]:123".parse().unwrap(),
            "[2001:db8::1]:123".parse().unwrap(),
            p,
        )
        .ipv6_ext(Ipv6Ext::HopByHop)
        .ipv6_ext(Ipv6Ext::DestOpts);
        for f in [v4, v6] {
            let bytes = f.frame();
            let s = etherparse::SlicedPacket::from_ethernet(&bytes).expect("parses");
            match s.transport {
                Some(etherparse::TransportSlice::Udp(u)) => {
                    assert_eq!(u.destination_port(), 123);
                    assert_eq!(u.payload()[0] & 7, mode::SERVER);
                }
                other => panic!("no UDP: {other:?}"),
            }
        }
    }

    #[test]
    fn fragments_reassemble_lengths() {
        for src in ["192.0.2.10:123", "[2001:db8::10]:123"] {
            let dst = if src.contains('[') {
                "[2001:db8::1]:123"
            } else {
                "192.0.2.1:123"
            };
            let f = UdpFrame::new(
                src.parse().unwrap(),
                dst.parse().unwrap(),
                NtpPacket::new(3).to_bytes(),
            );
            let frags = f.fragments(16);
            assert_eq!(frags.len(), 4); // 56 bytes of UDP in 16-byte pieces
            for fr in &frags {
                etherparse::SlicedPacket::from_ethernet(fr).expect("fragment parses");
            }
        }
    }
}
