use network_types::udp::UdpHdr;
use ntp_filter_common::{MAX_SERVER_PORTS, NTP_HEADER_LEN};

use super::{cursor::load_u64, Cursor};

/// The UDP header as one little-endian load: ports and length in network
/// byte order, in the low 48 bits.
#[derive(Clone, Copy)]
pub struct Udp {
    raw: u64,
}

impl Udp {
    /// Whether either port is `port`: compared in network byte order, so
    /// the packet's fields need no swapping.
    #[inline(always)]
    pub fn has_port(self, port: u16) -> bool {
        let be = u64::from(port.swap_bytes());
        self.raw & 0xffff == be || (self.raw >> 16) & 0xffff == be
    }

    /// Whether the source port is one of `ports` (network byte order, as
    /// [`ConfigRecord::server_ports`](ntp_filter_common::ConfigRecord)).
    #[inline(always)]
    pub fn src_port_in(self, ports: &[u16; MAX_SERVER_PORTS]) -> bool {
        let src = self.raw as u16;
        // Unrolled: one compare per lane, no loop for the verifier.
        ports[0] == src || ports[1] == src || ports[2] == src || ports[3] == src
    }

    #[inline(always)]
    pub fn src_port(self) -> u16 {
        (self.raw as u16).swap_bytes()
    }

    #[inline(always)]
    pub fn dst_port(self) -> u16 {
        ((self.raw >> 16) as u16).swap_bytes()
    }

    /// The length field: header plus payload.
    #[inline(always)]
    fn len(self) -> u16 {
        ((self.raw >> 32) as u16).swap_bytes()
    }
}

#[inline(always)]
pub fn parse(cur: &mut Cursor) -> Option<Udp> {
    cur.read().map(from_header)
}

/// The header `ahead` bytes past the cursor, which stays where it is.
#[inline(always)]
pub fn peek_ahead(cur: &Cursor, ahead: usize) -> Option<Udp> {
    cur.peek_ahead(ahead).map(from_header)
}

#[inline(always)]
fn from_header(udp: &UdpHdr) -> Udp {
    // SAFETY: the 8 bytes are the header the cursor bounds-checked.
    let raw = unsafe { load_u64(udp as *const UdpHdr as *const u8) };
    Udp { raw }
}

/// The first NTP header byte (leap, version, mode), if the datagram carries
/// a whole 48-byte header both by its length field and by the bytes present.
/// Both matter: the stack trims the payload to the length field, and a
/// length field larger than the frame is a truncated packet. Longer payloads
/// (extension fields, NTS) are fine: only the first 48 bytes are looked at.
#[inline(always)]
pub fn ntp_first_byte(cur: &Cursor, udp: &Udp) -> Option<u8> {
    if (udp.len() as usize) < 8 + NTP_HEADER_LEN {
        return None;
    }
    let header: &[u8; NTP_HEADER_LEN] = cur.peek()?;
    Some(header[0])
}
