//! Test frames. etherparse builds everything it can (Ethernet, one or two
//! VLAN tags, IPv4 with options and fragment fields, IPv6 with a hop-by-hop
//! or authentication header, UDP, TCP, ICMPv6); what it cannot build, or
//! builds wrong, is patched or spliced in by hand below: other VLAN tag
//! orders, a third tag, IHL < 5, long IPv6 extension chains, the IPv6
//! fragment header (etherparse 0.16 misplaces its bits), cut frames, lying
//! length fields.

use std::net::IpAddr;

use etherparse::{
    ip_number, IpAuthHeader, IpFragOffset, IpHeaders, IpNumber, Ipv4Header, Ipv4Options,
    Ipv6Extensions, Ipv6Header, Ipv6RawExtHeader, PacketBuilder,
};

pub const MAC_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const MAC_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const IPV6_LEN: usize = 40;
pub const UDP_LEN: usize = 8;
pub const NTP_LEN: usize = 48;

pub const TPID_8021Q: u16 = 0x8100;
pub const TPID_8021AD: u16 = 0x88a8;

/// A 48-byte NTP header with leap 0 and the given version and mode.
pub fn ntp(version: u8, mode: u8) -> Vec<u8> {
    let mut p = vec![0u8; NTP_LEN];
    p[0] = ((version & 7) << 3) | (mode & 7);
    p
}

/// VLAN tagging of a frame built by [`udp`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vlan {
    None,
    /// One 802.1Q tag (etherparse `single_vlan`).
    Single,
    /// 802.1ad outer + 802.1Q inner (etherparse `double_vlan`).
    Double,
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

/// A UDP datagram in an Ethernet frame (untagged or tagged).
pub fn udp_vlan(
    vlan: Vlan,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC_SRC, MAC_DST);
    let mut out = Vec::new();
    macro_rules! finish {
        ($step:expr) => {{
            let b = match (src, dst) {
                (IpAddr::V4(s), IpAddr::V4(d)) => $step.ipv4(s.octets(), d.octets(), 64),
                (IpAddr::V6(s), IpAddr::V6(d)) => $step.ipv6(s.octets(), d.octets(), 64),
                _ => panic!("mixed address families {src} -> {dst}"),
            };
            b.udp(sport, dport)
                .write(&mut out, payload)
                .expect("udp frame");
        }};
    }
    match vlan {
        Vlan::None => finish!(eth),
        Vlan::Single => finish!(eth.single_vlan(100.try_into().unwrap())),
        Vlan::Double => {
            finish!(eth.double_vlan(200.try_into().unwrap(), 100.try_into().unwrap()))
        }
    }
    out
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
/// field, `tpids[1]` the first tag's type field, and so on (etherparse always
/// writes 0x88a8 outer / 0x8100 inner).
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
    assert!(options_len.is_multiple_of(4) && options_len <= 40);
    let mut ip = Ipv4Header::new(0, 64, ip_number::UDP, v4(src), v4(dst)).unwrap();
    let mut options = vec![1u8; options_len]; // NOP
    if let Some(last) = options.last_mut() {
        *last = 0; // end of option list
    }
    ip.options = Ipv4Options::try_from(&options[..]).expect("options length");
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ip(IpHeaders::Ipv4(ip, Default::default()))
        .udp(sport, dport)
        .write(&mut out, payload)
        .expect("ipv4 options frame");
    out
}

/// Overwrites the IPv4 version/IHL byte of an untagged IPv4 frame.
pub fn set_ipv4_vihl(mut frame: Vec<u8>, vihl: u8) -> Vec<u8> {
    frame[ETH_LEN] = vihl;
    frame
}

/// An IPv4 fragment. With `ports` a UDP header (and `payload`) follows the
/// IP header, as in a first fragment; with `None`, `payload` is the raw
/// middle of a datagram, as in a non-first fragment (or a first fragment too
/// short to hold the ports).
pub fn ipv4_fragment(
    src: IpAddr,
    dst: IpAddr,
    ports: Option<(u16, u16)>,
    payload: &[u8],
    more_fragments: bool,
    offset_units: u16,
) -> Vec<u8> {
    let mut ip = Ipv4Header::new(0, 64, ip_number::UDP, v4(src), v4(dst)).unwrap();
    ip.identification = 0x4242;
    ip.dont_fragment = false; // etherparse's default is DF
    ip.more_fragments = more_fragments;
    ip.fragment_offset = IpFragOffset::try_new(offset_units).unwrap();
    let step =
        PacketBuilder::ethernet2(MAC_SRC, MAC_DST).ip(IpHeaders::Ipv4(ip, Default::default()));
    let mut out = Vec::new();
    match ports {
        Some((sport, dport)) => step.udp(sport, dport).write(&mut out, payload),
        None => step.write(&mut out, ip_number::UDP, payload),
    }
    .expect("ipv4 fragment");
    out
}

/// An IPv6 datagram with one fragment header; `ports` as for
/// [`ipv4_fragment`].
///
/// The fragment header is written by hand: etherparse 0.16 puts the offset
/// and the M flag at the wrong bit positions (M in bit 7 of byte 3 instead
/// of bit 0; JulianSchmid/etherparse#150, fixed in 0.20), so its "first
/// fragment" is a non-first one on the wire.
pub fn ipv6_fragment(
    src: IpAddr,
    dst: IpAddr,
    ports: Option<(u16, u16)>,
    payload: &[u8],
    more_fragments: bool,
    offset_units: u16,
) -> Vec<u8> {
    assert!(offset_units < 1 << 13);
    let mut out = match ports {
        Some((sport, dport)) => udp(src, dst, sport, dport, payload),
        None => {
            let mut out = Vec::new();
            PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
                .ip(IpHeaders::Ipv6(ip6(src, dst), Default::default()))
                .write(&mut out, ip_number::UDP, payload)
                .expect("ipv6 frame");
            out
        }
    };
    // RFC 8200 4.5: Next Header, Reserved, Fragment Offset (13 bits) |
    // Res (2) | M, Identification.
    let word = (offset_units << 3) | more_fragments as u16;
    let mut frag = vec![ip_number::UDP.0, 0];
    frag.extend_from_slice(&word.to_be_bytes());
    frag.extend_from_slice(&0x4242u32.to_be_bytes());
    let ip = ETH_LEN;
    out[ip + 6] = ip_number::IPV6_FRAG.0;
    let plen = u16::from_be_bytes([out[ip + 4], out[ip + 5]]) + frag.len() as u16;
    out[ip + 4..ip + 6].copy_from_slice(&plen.to_be_bytes());
    out.splice(ip + IPV6_LEN..ip + IPV6_LEN, frag);
    out
}

fn ip6(src: IpAddr, dst: IpAddr) -> Ipv6Header {
    Ipv6Header {
        hop_limit: 64,
        source: v6(src),
        destination: v6(dst),
        ..Default::default()
    }
}

/// An IPv6 UDP frame with a single hop-by-hop options header (PadN).
pub fn udp6_hop_by_hop(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let exts = Ipv6Extensions {
        hop_by_hop_options: Some(
            Ipv6RawExtHeader::new_raw(ip_number::UDP, &[1, 4, 0, 0, 0, 0]).unwrap(),
        ),
        ..Default::default()
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ip(IpHeaders::Ipv6(ip6(src, dst), exts))
        .udp(sport, dport)
        .write(&mut out, payload)
        .expect("ipv6 hop-by-hop frame");
    out
}

/// An IPv6 UDP frame with a single authentication header whose ICV is
/// `icv_len` bytes (payload length field = (12 + icv_len) / 4 - 2).
pub fn udp6_auth(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload: &[u8],
    icv_len: usize,
) -> Vec<u8> {
    let icv = vec![0xa5u8; icv_len];
    let exts = Ipv6Extensions {
        auth: Some(IpAuthHeader::new(ip_number::UDP, 0x1000, 1, &icv).unwrap()),
        ..Default::default()
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ip(IpHeaders::Ipv6(ip6(src, dst), exts))
        .udp(sport, dport)
        .write(&mut out, payload)
        .expect("ipv6 AH frame");
    out
}

/// An IPv6 extension header to splice in by hand.
#[derive(Clone, Copy, Debug)]
pub enum Ext {
    /// A header in 8-octet units (hop-by-hop 0, routing 43, destination
    /// options 60, mobility 135, HIP 139, shim6 140): `len` is the Hdr Ext
    /// Len field, the header is `(len + 1) * 8` bytes.
    Octets(u8, u8),
    /// Authentication header (51): `len` is the Payload Len field, the
    /// header is `(len + 2) * 4` bytes (RFC 4302).
    Auth(u8),
}

impl Ext {
    fn number(self) -> u8 {
        match self {
            Ext::Octets(n, _) => n,
            Ext::Auth(_) => 51,
        }
    }

    fn bytes(self) -> Vec<u8> {
        match self {
            Ext::Octets(_, len) => {
                let mut b = vec![0u8; (len as usize + 1) * 8];
                b[1] = len;
                if b.len() > 2 {
                    // PadN over the rest (harmless for routing headers too,
                    // whose segments-left byte stays 0).
                    b[2] = 1;
                    b[3] = (b.len() - 4) as u8;
                }
                b
            }
            Ext::Auth(len) => {
                let mut b = vec![0u8; (len as usize + 2) * 4];
                b[1] = len;
                b[4..8].copy_from_slice(&0x1000u32.to_be_bytes()); // SPI
                b
            }
        }
    }
}

/// Splices `exts` between the IPv6 header and whatever followed it in an
/// untagged IPv6 frame, fixing the next-header chain and payload length.
pub fn insert_ipv6_exts(mut frame: Vec<u8>, exts: &[Ext]) -> Vec<u8> {
    let ip = ETH_LEN;
    let mut next = frame[ip + 6];
    let mut chain = Vec::new();
    for ext in exts.iter().rev() {
        let mut b = ext.bytes();
        b[0] = next;
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

/// A TCP segment (SYN) in an untagged frame.
pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(MAC_SRC, MAC_DST);
    let b = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
        (IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
        _ => panic!("mixed address families"),
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

/// An ICMPv6 packet behind a hop-by-hop header (an MLD report's shape).
pub fn icmpv6_behind_hop_by_hop(src: IpAddr, dst: IpAddr) -> Vec<u8> {
    let exts = Ipv6Extensions {
        hop_by_hop_options: Some(
            Ipv6RawExtHeader::new_raw(ip_number::IPV6_ICMP, &[5, 2, 0, 0, 1, 0]).unwrap(),
        ),
        ..Default::default()
    };
    let mut out = Vec::new();
    PacketBuilder::ethernet2(MAC_SRC, MAC_DST)
        .ip(IpHeaders::Ipv6(ip6(src, dst), exts))
        .icmpv6_raw(143, 0, [0; 4])
        .write(&mut out, &[])
        .expect("mld-like frame");
    out
}

/// An ARP request (who-has `target` tell `sender`), built by hand.
pub fn arp_request(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&MAC_SRC);
    f.extend_from_slice(&0x0806u16.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]); // Ethernet/IPv4, request
    f.extend_from_slice(&MAC_SRC);
    f.extend_from_slice(&sender);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
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
    let mut f = Vec::with_capacity(ETH_LEN + payload.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&MAC_SRC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}
