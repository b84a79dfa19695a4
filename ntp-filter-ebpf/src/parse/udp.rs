use network_types::udp::UdpHdr;
use ntp_filter_common::NTP_HEADER_LEN;

use super::Cursor;

pub struct Udp {
    pub src_port: u16,
    pub dst_port: u16,
    /// UDP length field: header plus payload.
    pub len: u16,
}

#[inline(always)]
pub fn parse(cur: &mut Cursor) -> Option<Udp> {
    let udp: &UdpHdr = cur.read()?;
    Some(Udp {
        src_port: u16::from_be_bytes(udp.src),
        dst_port: u16::from_be_bytes(udp.dst),
        len: u16::from_be_bytes(udp.len),
    })
}

/// The first NTP header byte (leap, version, mode), if the datagram carries
/// a whole 48-byte header both by its length field and by the bytes present.
/// Both matter: the stack trims the payload to the length field, and a
/// length field larger than the frame is a truncated packet.
#[inline(always)]
pub fn ntp_first_byte(cur: &Cursor, udp: &Udp) -> Option<u8> {
    if (udp.len as usize) < 8 + NTP_HEADER_LEN {
        return None;
    }
    let header: &[u8; NTP_HEADER_LEN] = cur.peek()?;
    Some(header[0])
}
