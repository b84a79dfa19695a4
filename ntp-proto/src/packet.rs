//! NTPv4 (RFC 5905) header codec. Extension fields (RFC 7822) and a trailing MAC
//! are walked over and ignored; decoding is bounded by the input slice and never
//! panics.

use crate::time::{NtpShort, NtpTimestamp};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;

pub const HEADER_LEN: usize = 48;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize, Default)]
pub enum LeapIndicator {
    #[default]
    NoWarning,
    InsertSecond,
    DeleteSecond,
    Unsynchronized,
}

impl LeapIndicator {
    pub fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => LeapIndicator::NoWarning,
            1 => LeapIndicator::InsertSecond,
            2 => LeapIndicator::DeleteSecond,
            _ => LeapIndicator::Unsynchronized,
        }
    }

    pub fn to_bits(self) -> u8 {
        match self {
            LeapIndicator::NoWarning => 0,
            LeapIndicator::InsertSecond => 1,
            LeapIndicator::DeleteSecond => 2,
            LeapIndicator::Unsynchronized => 3,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub enum Mode {
    Reserved,
    SymmetricActive,
    SymmetricPassive,
    Client,
    Server,
    Broadcast,
    Control,
    Private,
}

impl Mode {
    pub fn from_bits(b: u8) -> Self {
        match b & 7 {
            0 => Mode::Reserved,
            1 => Mode::SymmetricActive,
            2 => Mode::SymmetricPassive,
            3 => Mode::Client,
            4 => Mode::Server,
            5 => Mode::Broadcast,
            6 => Mode::Control,
            _ => Mode::Private,
        }
    }

    pub fn to_bits(self) -> u8 {
        match self {
            Mode::Reserved => 0,
            Mode::SymmetricActive => 1,
            Mode::SymmetricPassive => 2,
            Mode::Client => 3,
            Mode::Server => 4,
            Mode::Broadcast => 5,
            Mode::Control => 6,
            Mode::Private => 7,
        }
    }
}

/// Kiss-o'-Death codes we act on (RFC 5905 section 7.4).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub enum KissCode {
    Rate,
    Deny,
    Rstr,
    Other([u8; 4]),
}

impl KissCode {
    pub fn from_refid(r: RefId) -> Self {
        match &r.0 {
            b"RATE" => KissCode::Rate,
            b"DENY" => KissCode::Deny,
            b"RSTR" => KissCode::Rstr,
            other => KissCode::Other(*other),
        }
    }

    pub fn to_refid(self) -> RefId {
        match self {
            KissCode::Rate => RefId(*b"RATE"),
            KissCode::Deny => RefId(*b"DENY"),
            KissCode::Rstr => RefId(*b"RSTR"),
            KissCode::Other(b) => RefId(b),
        }
    }
}

impl fmt::Display for KissCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_refid().display(0))
    }
}

/// Reference identifier: an IPv4 address (stratum >= 2), a 4-character code
/// (stratum 1 reference clock, or KoD code at stratum 0) or an IPv6 hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize)]
pub struct RefId(pub [u8; 4]);

impl RefId {
    pub fn from_ipv4(a: Ipv4Addr) -> Self {
        RefId(a.octets())
    }

    /// RFC 5905: an IPv6 reference is the first four octets of the MD5 hash of the address.
    pub fn from_ip(a: std::net::IpAddr) -> Self {
        match a {
            std::net::IpAddr::V4(v4) => RefId::from_ipv4(v4),
            std::net::IpAddr::V6(v6) => {
                let d = md5::compute(v6.octets());
                RefId([d[0], d[1], d[2], d[3]])
            }
        }
    }

    /// As shown to a user: a code at stratum 0/1, a dotted quad otherwise.
    pub fn display(&self, stratum: u8) -> String {
        if stratum <= 1 {
            self.0
                .iter()
                .take_while(|&&b| b != 0)
                .map(|&b| {
                    if b.is_ascii_graphic() || b == b' ' {
                        b as char
                    } else {
                        '?'
                    }
                })
                .collect()
        } else {
            Ipv4Addr::from(self.0).to_string()
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
pub struct NtpPacket {
    pub leap: LeapIndicator,
    pub version: u8,
    pub mode: Mode,
    pub stratum: u8,
    pub poll: i8,
    pub precision: i8,
    pub root_delay: NtpShort,
    pub root_dispersion: NtpShort,
    pub reference_id: RefId,
    pub reference_timestamp: NtpTimestamp,
    pub origin_timestamp: NtpTimestamp,
    pub receive_timestamp: NtpTimestamp,
    pub transmit_timestamp: NtpTimestamp,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
pub enum PacketError {
    #[error("packet shorter than the 48-byte header ({0} bytes)")]
    TooShort(usize),
    #[error("malformed extension field at byte {0}")]
    BadExtension(usize),
    #[error("trailing data of {0} bytes is neither extension fields nor a MAC")]
    BadTrailer(usize),
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn be64(b: &[u8], at: usize) -> u64 {
    ((be32(b, at) as u64) << 32) | be32(b, at + 4) as u64
}

impl NtpPacket {
    /// A blank packet of the given mode (version 4, everything else zero).
    pub fn new(mode: Mode) -> Self {
        NtpPacket {
            leap: LeapIndicator::NoWarning,
            version: 4,
            mode,
            stratum: 0,
            poll: 0,
            precision: 0,
            root_delay: NtpShort::default(),
            root_dispersion: NtpShort::default(),
            reference_id: RefId::default(),
            reference_timestamp: NtpTimestamp::ZERO,
            origin_timestamp: NtpTimestamp::ZERO,
            receive_timestamp: NtpTimestamp::ZERO,
            transmit_timestamp: NtpTimestamp::ZERO,
        }
    }

    pub fn decode(data: &[u8]) -> Result<Self, PacketError> {
        if data.len() < HEADER_LEN {
            return Err(PacketError::TooShort(data.len()));
        }
        skip_trailer(&data[HEADER_LEN..])?;
        Ok(NtpPacket {
            leap: LeapIndicator::from_bits(data[0] >> 6),
            version: (data[0] >> 3) & 7,
            mode: Mode::from_bits(data[0]),
            stratum: data[1],
            poll: data[2] as i8,
            precision: data[3] as i8,
            root_delay: NtpShort::from_bits(be32(data, 4)),
            root_dispersion: NtpShort::from_bits(be32(data, 8)),
            reference_id: RefId([data[12], data[13], data[14], data[15]]),
            reference_timestamp: NtpTimestamp::from_bits(be64(data, 16)),
            origin_timestamp: NtpTimestamp::from_bits(be64(data, 24)),
            receive_timestamp: NtpTimestamp::from_bits(be64(data, 32)),
            transmit_timestamp: NtpTimestamp::from_bits(be64(data, 40)),
        })
    }

    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = (self.leap.to_bits() << 6) | ((self.version & 7) << 3) | self.mode.to_bits();
        b[1] = self.stratum;
        b[2] = self.poll as u8;
        b[3] = self.precision as u8;
        b[4..8].copy_from_slice(&self.root_delay.to_bits().to_be_bytes());
        b[8..12].copy_from_slice(&self.root_dispersion.to_bits().to_be_bytes());
        b[12..16].copy_from_slice(&self.reference_id.0);
        b[16..24].copy_from_slice(&self.reference_timestamp.to_bits().to_be_bytes());
        b[24..32].copy_from_slice(&self.origin_timestamp.to_bits().to_be_bytes());
        b[32..40].copy_from_slice(&self.receive_timestamp.to_bits().to_be_bytes());
        b[40..48].copy_from_slice(&self.transmit_timestamp.to_bits().to_be_bytes());
        b
    }

    /// Overwrites the transmit timestamp of an encoded packet, so a server
    /// can take T3 at the very last moment before the send. Only for
    /// packets without a MAC or authenticated extension fields (they would
    /// no longer verify); shorter buffers are left alone.
    pub fn restamp_transmit(encoded: &mut [u8], transmit: NtpTimestamp) {
        if let Some(field) = encoded.get_mut(40..48) {
            field.copy_from_slice(&transmit.to_bits().to_be_bytes());
        }
    }

    /// Kiss code if this is a Kiss-o'-Death packet (stratum 0).
    pub fn kiss_code(&self) -> Option<KissCode> {
        (self.stratum == 0).then(|| KissCode::from_refid(self.reference_id))
    }
}

/// Walks RFC 7822 extension fields; whatever is left must fit a MAC
/// (4-byte crypto-NAK, or key id + 16/20-byte digest).
fn skip_trailer(mut rest: &[u8]) -> Result<(), PacketError> {
    let mut offset = HEADER_LEN;
    // More than a maximal MAC left means an extension field must start here.
    while rest.len() > 24 {
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        if len < 16 || !len.is_multiple_of(4) || len > rest.len() {
            return Err(PacketError::BadExtension(offset));
        }
        rest = &rest[len..];
        offset += len;
    }
    match rest.len() {
        0 | 4 | 20 | 24 => Ok(()),
        n => Err(PacketError::BadTrailer(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A server reply as seen on the wire (hand-built from a typical capture of a
    /// stratum 2 server): LI 0, VN 4, mode 4, stratum 2, poll 6, precision -23,
    /// root delay 0x0000_0b5e, root dispersion 0x0000_0041, refid 192.168.1.10.
    const REPLY: [u8; 48] = [
        0x24, 0x02, 0x06, 0xe9, 0x00, 0x00, 0x0b, 0x5e, 0x00, 0x00, 0x00, 0x41, 0xc0, 0xa8, 0x01,
        0x0a, 0xe9, 0x4d, 0x1c, 0x20, 0x3a, 0x5e, 0x35, 0x3f, 0x9c, 0x3b, 0x1a, 0x77, 0x01, 0x02,
        0x03, 0x04, 0xe9, 0x4d, 0x1c, 0x5a, 0x80, 0x00, 0x00, 0x00, 0xe9, 0x4d, 0x1c, 0x5a, 0x80,
        0x10, 0x00, 0x00,
    ];

    #[test]
    fn decode_known_reply() {
        let p = NtpPacket::decode(&REPLY).unwrap();
        assert_eq!(p.leap, LeapIndicator::NoWarning);
        assert_eq!(p.version, 4);
        assert_eq!(p.mode, Mode::Server);
        assert_eq!(p.stratum, 2);
        assert_eq!(p.poll, 6);
        assert_eq!(p.precision, -23);
        assert!((p.root_delay.to_seconds() - 0.044403).abs() < 1e-5);
        assert!((p.root_dispersion.to_seconds() - 0.000992).abs() < 1e-5);
        assert_eq!(p.reference_id.display(p.stratum), "192.168.1.10");
        assert_eq!(p.origin_timestamp.to_bits(), 0x9c3b1a77_01020304);
        assert_eq!(p.receive_timestamp.seconds(), 0xe94d1c5a);
        assert_eq!(p.receive_timestamp.fraction(), 0x8000_0000);
        // 0xe94d1c5a is in January 2024 (era 0)
        let unix = p
            .receive_timestamp
            .to_unix(std::time::Duration::from_secs(1_700_000_000));
        assert_eq!(unix.as_secs(), 0xe94d1c5a - crate::time::NTP_UNIX_OFFSET);
        assert_eq!(unix.subsec_millis(), 500);
        assert_eq!(p.encode(), REPLY);
        assert_eq!(p.kiss_code(), None);
    }

    #[test]
    fn round_trip_all_fields() {
        let mut p = NtpPacket::new(Mode::SymmetricActive);
        p.leap = LeapIndicator::InsertSecond;
        p.version = 3;
        p.stratum = 15;
        p.poll = -3;
        p.precision = -20;
        p.root_delay = NtpShort::from_bits(0xdead_beef);
        p.root_dispersion = NtpShort::from_bits(7);
        p.reference_id = RefId(*b"GPS\0");
        p.reference_timestamp = NtpTimestamp::from_bits(1);
        p.origin_timestamp = NtpTimestamp::from_bits(u64::MAX);
        p.receive_timestamp = NtpTimestamp::from_bits(0x1234);
        p.transmit_timestamp = NtpTimestamp::from_bits(0x8000_0000_0000_0001);
        assert_eq!(NtpPacket::decode(&p.encode()).unwrap(), p);
        assert_eq!(p.reference_id.display(1), "GPS");
    }

    #[test]
    fn restamping_changes_only_the_transmit_field() {
        let mut p = NtpPacket::new(Mode::Server);
        p.receive_timestamp = NtpTimestamp::from_bits(5);
        let mut bytes = p.encode();
        NtpPacket::restamp_transmit(&mut bytes, NtpTimestamp::from_bits(9));
        p.transmit_timestamp = NtpTimestamp::from_bits(9);
        assert_eq!(NtpPacket::decode(&bytes).unwrap(), p);
        let mut short = [0u8; 40];
        NtpPacket::restamp_transmit(&mut short, NtpTimestamp::from_bits(9));
        assert_eq!(short, [0u8; 40]);
    }

    #[test]
    fn kod_and_extensions() {
        let mut p = NtpPacket::new(Mode::Server);
        p.reference_id = KissCode::Deny.to_refid();
        assert_eq!(p.kiss_code(), Some(KissCode::Deny));
        let mut bytes = p.encode().to_vec();
        // One extension field of 16 bytes plus a 20-byte MAC.
        bytes.extend_from_slice(&[0x01, 0x04, 0x00, 0x10]);
        bytes.extend_from_slice(&[0u8; 12]);
        bytes.extend_from_slice(&[0xaa; 20]);
        assert_eq!(NtpPacket::decode(&bytes).unwrap(), p);
        // Extension length pointing past the end.
        let mut bad = p.encode().to_vec();
        bad.extend_from_slice(&[0x01, 0x04, 0x01, 0x00]);
        bad.extend_from_slice(&[0u8; 28]);
        assert!(matches!(
            NtpPacket::decode(&bad),
            Err(PacketError::BadExtension(48))
        ));
        assert_eq!(
            NtpPacket::decode(&bytes[..47]),
            Err(PacketError::TooShort(47))
        );
    }

    #[test]
    fn fuzz_never_panics() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let good = REPLY;
        for i in 0..20_000 {
            let len = rng.gen_range(0..200usize);
            let mut buf: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if i % 2 == 0 && len >= 48 {
                buf[..48].copy_from_slice(&good);
            }
            if i % 3 == 0 && len > 52 {
                // plausible-looking extension header with a random length
                buf[50] = 0;
                buf[51] = rng.gen_range(0..64) * 4;
            }
            let _ = NtpPacket::decode(&buf);
            let _ = NtpPacket::decode(&buf[..len.min(48)]);
        }
    }
}
