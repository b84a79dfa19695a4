//! Building frames, for the namespace tests and the BPF_PROG_TEST_RUN
//! fixtures alike: NTP payloads ([`NtpPacket`], [`ntp`]), UDP over IPv4 or
//! IPv6 in Ethernet with any VLAN tags, IPv4 options, IPv6 extension
//! headers and IP fragments ([`UdpFrame`] and the shorthand functions over
//! it), and the odd shapes a filter must survive (IHL < 5, lying length
//! fields, cut frames, TCP, ICMPv6, ARP, other EtherTypes).
//!
//! etherparse writes the IPv4, IPv6, UDP, TCP and ICMPv6 headers and their
//! checksums; the Ethernet header with its tags, the IPv6 extension chain
//! and the IPv6 fragment header are laid by hand: etherparse 0.16 writes
//! only two tags in one order, cannot chain arbitrary extension headers,
//! and puts the fragment header's offset and M flag at the wrong bits
//! (JulianSchmid/etherparse#150, fixed in 0.20), which made its "first
//! fragment" a non-first one on the wire.
//!
//! Everything returns plain `Vec<u8>`, so a test can corrupt bytes
//! afterwards (bad IP version, truncated payloads, …) before sending.

use etherparse::{
    ip_number, IpHeaders, IpNumber, Ipv4Header, Ipv4Options, Ipv6Extensions, Ipv6FlowLabel,
    Ipv6Header, Ipv6RawExtHeader, PacketBuilder, UdpHeader,
};
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

/// The MACs of [`UdpFrame::new`] frames (locally administered).
pub const MAC_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
pub const UDP_LEN: usize = 8;
pub const NTP_LEN: usize = 48;

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
            stratum: if mode == mode::SERVER || mode == mode::BROADCAST {
                2
            } else {
                0
            },
            poll: 6,
            precision: -20,
            ..Self::zeroed(4, mode)
        }
    }

    /// Every field 0 but version and mode (what a filter looks at).
    pub fn zeroed(version: u8, mode: u8) -> Self {
        Self {
            leap: 0,
            version,
            mode,
            stratum: 0,
            poll: 0,
            precision: 0,
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
        let mut b = Vec::with_capacity(NTP_LEN + self.extra.len());
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

/// A 48-byte NTP header, all zero but the version and mode.
pub fn ntp(version: u8, mode: u8) -> Vec<u8> {
    NtpPacket::zeroed(version, mode).to_bytes()
}

/// An IPv6 extension header, as [`UdpFrame::ipv6_ext`] and
/// [`insert_ipv6_exts`] splice it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv6Ext {
    /// 8-byte Hop-by-Hop Options header padded with PadN.
    HopByHop,
    /// 8-byte Destination Options header padded with PadN.
    DestOpts,
    /// A header in 8-octet units (hop-by-hop 0, routing 43, destination
    /// options 60, mobility 135, HIP 139, shim6 140): `.1` is the Hdr Ext
    /// Len field, the header is `(len + 1) * 8` bytes of PadN.
    Octets(u8, u8),
    /// Authentication header (51): `.0` is the Payload Len field, the
    /// header is `(len + 2) * 4` bytes (RFC 4302), SPI 0x1000.
    Auth(u8),
    /// Fragment header (44, RFC 8200 4.5), identification 0x4242.
    Fragment { offset_units: u16, more: bool },
}

impl Ipv6Ext {
    fn number(self) -> u8 {
        match self {
            Ipv6Ext::HopByHop => 0,
            Ipv6Ext::DestOpts => 60,
            Ipv6Ext::Octets(n, _) => n,
            Ipv6Ext::Auth(_) => ip_number::AUTHENTICATION_HEADER.0,
            Ipv6Ext::Fragment { .. } => ip_number::IPV6_FRAG.0,
        }
    }

    /// The header with its next-header byte set to `next`.
    fn bytes(self, next: u8) -> Vec<u8> {
        let mut b = match self {
            Ipv6Ext::HopByHop | Ipv6Ext::DestOpts => return Ipv6Ext::Octets(0, 0).bytes(next),
            Ipv6Ext::Octets(_, len) => {
                let mut b = vec![0u8; (len as usize + 1) * 8];
                b[1] = len;
                // PadN over the rest (harmless for routing headers too,
                // whose segments-left byte stays 0).
                b[2] = 1;
                b[3] = (b.len() - 4) as u8;
                b
            }
            Ipv6Ext::Auth(len) => {
                let mut b = vec![0u8; (len as usize + 2) * 4];
                b[1] = len;
                b[4..8].copy_from_slice(&0x1000u32.to_be_bytes());
                b
            }
            Ipv6Ext::Fragment { offset_units, more } => {
                assert!(offset_units < 1 << 13, "fragment offset {offset_units}");
                // Next Header, Reserved, Fragment Offset (13 bits) | Res (2)
                // | M, Identification.
                let mut b = vec![0u8, 0];
                b.extend_from_slice(&((offset_units << 3) | u16::from(more)).to_be_bytes());
                b.extend_from_slice(&0x4242u32.to_be_bytes());
                b
            }
        };
        b[0] = next;
        b
    }
}

/// Splices `exts` between the IPv6 header and whatever followed it in an
/// untagged IPv6 frame, fixing the next-header chain and payload length.
pub fn insert_ipv6_exts(mut frame: Vec<u8>, exts: &[Ipv6Ext]) -> Vec<u8> {
    let ip = ETH_LEN;
    let mut next = frame[ip + 6];
    let mut chain = Vec::new();
    for ext in exts.iter().rev() {
        let mut b = ext.bytes(next);
        next = ext.number();
        b.extend_from_slice(&chain);
        chain = b;
    }
    frame[ip + 6] = next;
    let plen = u16::from_be_bytes([frame[ip + 4], frame[ip + 5]]) as usize + chain.len();
    frame[ip + 4..ip + 6].copy_from_slice(&(plen as u16).to_be_bytes());
    frame.splice(ip + IPV6_LEN..ip + IPV6_LEN, chain);
    frame
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
    /// IPv4 options (a multiple of 4 bytes, at most 40).
    pub ipv4_options: Vec<u8>,
    pub ipv6_ext: Vec<Ipv6Ext>,
    pub payload: Vec<u8>,
}

impl UdpFrame {
    pub fn new(src: SocketAddr, dst: SocketAddr, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            src_mac: MAC_SRC,
            dst_mac: [0xff; 6],
            vlans: Vec::new(),
            src,
            dst,
            ttl: 64,
            ip_id: 0x4e46,
            ipv4_options: Vec::new(),
            ipv6_ext: Vec::new(),
            payload: payload.into(),
        }
    }

    /// From `src` to `dst`, MAC_SRC to MAC_DST: the fixtures' frame.
    pub fn fixture(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Self {
        Self::new(
            SocketAddr::new(src, sport),
            SocketAddr::new(dst, dport),
            payload,
        )
        .macs(MAC_SRC, MAC_DST)
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

    /// IPv4 options of `len` bytes: NOPs ending in EOL (IHL = 5 + len / 4).
    pub fn ipv4_nop_options(mut self, len: usize) -> Self {
        assert!(
            len.is_multiple_of(4) && len <= 40,
            "IPv4 options of {len} bytes"
        );
        self.ipv4_options = vec![1u8; len]; // NOP
        if let Some(last) = self.ipv4_options.last_mut() {
            *last = 0; // end of option list
        }
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

    /// The IP header(s) for `data` (UDP, or a piece of it when
    /// `fragment` is `Some((offset_units, more))`) followed by `data`.
    fn ip_packet_of(&self, data: &[u8], fragment: Option<(u16, bool)>) -> Vec<u8> {
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h = Ipv4Header::new(
                    data.len() as u16,
                    self.ttl,
                    IpNumber::UDP,
                    s.octets(),
                    d.octets(),
                )
                .expect("IPv4 payload too large");
                h.identification = self.ip_id;
                h.options =
                    Ipv4Options::try_from(&self.ipv4_options[..]).expect("IPv4 options length");
                // The total length counts the options too.
                h.set_payload_len(data.len())
                    .expect("IPv4 payload too large");
                if let Some((offset_units, more)) = fragment {
                    // etherparse's default is DF, which a fragment cannot have.
                    h.dont_fragment = false;
                    h.more_fragments = more;
                    h.fragment_offset = etherparse::IpFragOffset::try_new(offset_units)
                        .expect("fragment offset too large");
                }
                h.header_checksum = h.calc_header_checksum();
                let mut b = h.to_bytes().to_vec();
                b.extend_from_slice(data);
                b
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                let h = Ipv6Header {
                    traffic_class: 0,
                    flow_label: Ipv6FlowLabel::ZERO,
                    payload_length: data.len() as u16,
                    next_header: IpNumber::UDP,
                    hop_limit: self.ttl,
                    source: s.octets(),
                    destination: d.octets(),
                };
                let mut exts = self.ipv6_ext.clone();
                if let Some((offset_units, more)) = fragment {
                    exts.push(Ipv6Ext::Fragment { offset_units, more });
                }
                // Built as a frame so insert_ipv6_exts finds the header
                // where it looks, then the Ethernet header is cut again.
                let mut b = vec![0u8; ETH_LEN];
                b.extend_from_slice(&h.to_bytes());
                b.extend_from_slice(data);
                insert_ipv6_exts(b, &exts).split_off(ETH_LEN)
            }
            _ => panic!(
                "UdpFrame: mixed address families {} -> {}",
                self.src, self.dst
            ),
        }
    }

    /// The IP packet (IP header[s] + UDP), without Ethernet.
    pub fn ip_packet(&self) -> Vec<u8> {
        self.ip_packet_of(&self.udp_segment(), None)
    }

    /// The complete Ethernet frame.
    pub fn frame(&self) -> Vec<u8> {
        self.ethernet(&self.ip_packet())
    }

    /// One IP fragment carrying `data` at `offset_units` × 8 bytes into
    /// the datagram: the UDP header is in it only if `data` holds it. IPv6
    /// puts the Fragment header after any configured extension headers.
    pub fn fragment(&self, data: &[u8], offset_units: u16, more: bool) -> Vec<u8> {
        self.ethernet(&self.ip_packet_of(data, Some((offset_units, more))))
    }

    /// The datagram split into IP fragments of `chunk` bytes of UDP data
    /// (rounded down to a multiple of 8, at least 8), as Ethernet frames in
    /// order. Only the first fragment carries the UDP header.
    pub fn fragments(&self, chunk: usize) -> Vec<Vec<u8>> {
        let chunk = (chunk / 8).max(1) * 8;
        let udp = self.udp_segment();
        let pieces: Vec<&[u8]> = udp.chunks(chunk).collect();
        let n = pieces.len();
        pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| self.fragment(piece, (i * chunk / 8) as u16, i + 1 < n))
            .collect()
    }

    fn ethernet(&self, ip: &[u8]) -> Vec<u8> {
        ethernet(
            self.src_mac,
            self.dst_mac,
            &self.vlans,
            self.ethertype(),
            ip,
        )
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
    let mut b = Vec::with_capacity(ETH_LEN + 4 * vlans.len() + payload.len());
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

// ---------------------------------------------------------------------------
// Shorthands for the fixtures: MAC_SRC → MAC_DST frames.

/// VLAN tagging of a frame built by [`udp_vlan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vlan {
    None,
    /// One 802.1Q tag, VLAN 100.
    Single,
    /// 802.1ad outer (VLAN 200) + 802.1Q inner (VLAN 100).
    Double,
}

/// A UDP datagram in an Ethernet frame (untagged or tagged).
pub fn udp_vlan(
    vlan: Vlan,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let f = UdpFrame::fixture(src, dst, sport, dport, payload);
    match vlan {
        Vlan::None => f,
        Vlan::Single => f.vlan(100),
        Vlan::Double => f.qinq(200, 100),
    }
    .frame()
}

/// An untagged UDP frame.
pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    udp_vlan(Vlan::None, src, dst, sport, dport, payload)
}

/// An untagged NTP frame with a 48-byte header.
pub fn ntp_frame(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    version: u8,
    mode: u8,
) -> Vec<u8> {
    udp(src, dst, sport, dport, &ntp(version, mode))
}

/// Rewrites the TPIDs of a tagged frame: `tpids[0]` is the Ethernet type
/// field, `tpids[1]` the first tag's type field, and so on.
pub fn set_tpids(mut frame: Vec<u8>, tpids: &[u16]) -> Vec<u8> {
    for (i, tpid) in tpids.iter().enumerate() {
        let at = 12 + 4 * i;
        frame[at..at + 2].copy_from_slice(&tpid.to_be_bytes());
    }
    frame
}

/// Inserts one more VLAN tag (TCI `vid`) right after the MAC addresses, with
/// `tpid` in the Ethernet type field; the former outer TPID moves into the
/// new tag's type field.
pub fn push_tag(mut frame: Vec<u8>, tpid: u16, vid: u16) -> Vec<u8> {
    let old_type = [frame[12], frame[13]];
    frame[12..14].copy_from_slice(&tpid.to_be_bytes());
    let tag = [(vid >> 8) as u8 & 0x0f, vid as u8, old_type[0], old_type[1]];
    frame.splice(14..14, tag);
    frame
}

/// An IPv4 UDP frame with `options_len` bytes of IPv4 options (NOPs ending
/// in EOL), i.e. IHL = 5 + options_len / 4.
pub fn udp4_with_options(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload: &[u8],
    options_len: usize,
) -> Vec<u8> {
    UdpFrame::fixture(src, dst, sport, dport, payload)
        .ipv4_nop_options(options_len)
        .frame()
}

/// Overwrites the IPv4 version/IHL byte of an untagged IPv4 frame.
pub fn set_ipv4_vihl(mut frame: Vec<u8>, vihl: u8) -> Vec<u8> {
    frame[ETH_LEN] = vihl;
    frame
}

/// An IP fragment of a UDP datagram (IPv4, or IPv6 with a fragment
/// header). With `ports` a UDP header (and `payload`) follows the IP
/// header, as in a first fragment; with `None`, `payload` is the raw middle
/// of a datagram, as in a non-first fragment (or a first fragment too short
/// to hold the ports).
pub fn ip_fragment(
    src: IpAddr,
    dst: IpAddr,
    ports: Option<(u16, u16)>,
    payload: &[u8],
    more_fragments: bool,
    offset_units: u16,
) -> Vec<u8> {
    let (sport, dport) = ports.unwrap_or_default();
    let mut f = UdpFrame::fixture(src, dst, sport, dport, payload);
    f.ip_id = 0x4242;
    let data = match ports {
        Some(_) => f.udp_segment(),
        None => payload.to_vec(),
    };
    f.fragment(&data, offset_units, more_fragments)
}

/// An IPv6 UDP frame with a single hop-by-hop options header (PadN).
pub fn udp6_hop_by_hop(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    UdpFrame::fixture(src, dst, sport, dport, payload)
        .ipv6_ext(Ipv6Ext::HopByHop)
        .frame()
}

/// An IPv6 UDP frame with a single authentication header whose ICV is
/// `icv_len` bytes (Payload Len field = (12 + icv_len) / 4 - 2).
pub fn udp6_auth(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload: &[u8],
    icv_len: usize,
) -> Vec<u8> {
    assert!(icv_len.is_multiple_of(4), "an AH ICV of {icv_len} bytes");
    UdpFrame::fixture(src, dst, sport, dport, payload)
        .ipv6_ext(Ipv6Ext::Auth(((12 + icv_len) / 4 - 2) as u8))
        .frame()
}

/// Overwrites the UDP length field of a frame whose UDP header starts at
/// `udp_at`.
pub fn set_udp_len(mut frame: Vec<u8>, udp_at: usize, len: u16) -> Vec<u8> {
    frame[udp_at + 4..udp_at + 6].copy_from_slice(&len.to_be_bytes());
    frame
}

pub fn truncate(mut frame: Vec<u8>, len: usize) -> Vec<u8> {
    assert!(
        len < frame.len(),
        "truncating {} bytes to {len}",
        frame.len()
    );
    frame.truncate(len);
    frame
}

fn v4(ip: IpAddr) -> [u8; 4] {
    match ip {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(a) => panic!("{a} is not IPv4"),
    }
}

fn v6(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => panic!("{a} is not IPv6"),
    }
}

/// A TCP segment (SYN) in an untagged frame.
pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC_SRC, MAC_DST);
    let b = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed address families {src} -> {dst}"),
    };
    let mut out = Vec::new();
    b.tcp(sport, dport, 1, 64240)
        .syn()
        .write(&mut out, &[])
        .expect("tcp frame");
    out
}

/// An ICMPv6 neighbour solicitation for `target` (type 135), as the stack
/// sends it: to the solicited-node multicast group, hop limit 255.
pub fn icmpv6_neighbor_solicitation(src: IpAddr, target: IpAddr) -> Vec<u8> {
    let t = v6(target);
    let group = [
        0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, t[13], t[14], t[15],
    ];
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, [0x33, 0x33, 0xff, t[13], t[14], t[15]])
        .ipv6(v6(src), group, 255)
        .icmpv6_raw(135, 0, [0; 4])
        .write(&mut out, &t)
        .expect("neighbour solicitation");
    out
}

/// An ICMPv6 packet behind a hop-by-hop header (an MLD report's shape:
/// Router Alert, then PadN).
pub fn icmpv6_behind_hop_by_hop(src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let exts = Ipv6Extensions {
        hop_by_hop_options: Some(
            Ipv6RawExtHeader::new_raw(ip_number::IPV6_ICMP, &[5, 2, 0, 0, 1, 0]).unwrap(),
        ),
        ..Default::default()
    };
    let ip = Ipv6Header {
        hop_limit: 64,
        source: v6(src),
        destination: v6(dst),
        ..Default::default()
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ip(IpHeaders::Ipv6(ip, exts))
        .icmpv6_raw(143, 0, [0; 4])
        .write(&mut out, &[])
        .expect("mld-like frame");
    out
}

/// An ARP request (who-has `target` tell `sender`), built by hand.
pub fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut arp = vec![0, 1, 0x08, 0, 6, 4, 0, 1]; // Ethernet/IPv4, request
    arp.extend_from_slice(&MAC_SRC);
    arp.extend_from_slice(&sender);
    arp.extend_from_slice(&[0; 6]);
    arp.extend_from_slice(&target);
    ethertype_frame([0xff; 6], 0x0806, &arp)
}

/// Any IP payload with the given protocol number (e.g. ICMP) in IPv4.
pub fn ipv4_proto(src: IpAddr, dst: IpAddr, proto: IpNumber, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ipv4(v4(src), v4(dst), 64)
        .write(&mut out, proto, payload)
        .expect("ipv4 frame");
    out
}

/// A frame of any other EtherType (LLDP, ...), built by hand.
pub fn ethertype_frame(dst_mac: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
    ethernet(MAC_SRC, dst_mac, &[], ethertype, payload)
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
