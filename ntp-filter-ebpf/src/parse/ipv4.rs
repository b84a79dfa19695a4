use network_types::ip::Ipv4Hdr;
use ntp_filter_common::{table, DropReason, PassReason};

use super::{cursor::load_u32, udp, Cursor, DstKind, Fragment, L4};

const IPPROTO_UDP: u8 = 17;
const MORE_FRAGMENTS: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// Whether the cursor is on an IPv4 header of UDP: the first half of
/// [`parse`], so that the caller can look up what it needs before the
/// header's fields are read (and not for every other protocol).
#[inline(always)]
pub fn check(cur: &Cursor) -> Result<(), PassReason> {
    let ip: &Ipv4Hdr = cur.peek().ok_or(PassReason::Truncated)?;
    let version = ip.vihl >> 4;
    let ihl = ip.vihl & 0x0f;
    if version != 4 || ihl < 5 {
        return Err(PassReason::BadHeader);
    }
    if ip.proto != IPPROTO_UDP {
        return Err(PassReason::NotUdp);
    }
    Ok(())
}

/// The UDP header behind an IPv4 header that passed [`check`], if the
/// packet is not a later fragment and holds it; the cursor stays on the
/// IPv4 header. For a first look at the ports before anything else.
#[inline(always)]
pub fn udp_ahead(cur: &Cursor) -> Option<udp::Udp> {
    let ip: &Ipv4Hdr = cur.peek()?;
    if u16::from_be_bytes(ip.frags) & OFFSET_MASK != 0 {
        return None;
    }
    udp::peek_ahead(cur, (ip.vihl & 0x0f) as usize * 4)
}

/// Reads an IPv4 header that passed [`check`], with its options, and
/// leaves the cursor on the UDP header. IHL must be 5..=15: network-types' `options_len()` underflows on
/// IHL < 5, so the length is computed here from the masked nibble.
#[inline(always)]
pub fn parse(cur: &mut Cursor) -> Result<L4, PassReason> {
    let ip: &Ipv4Hdr = cur.peek().ok_or(PassReason::Truncated)?;
    let ihl = (ip.vihl & 0x0f) as usize;
    // SAFETY: both fields lie inside the header `peek` bounds-checked.
    let (src_le, dst_le) = unsafe {
        (
            load_u32(ip.src_addr.as_ptr()),
            load_u32(ip.dst_addr.as_ptr()),
        )
    };
    let (src, dst) = (table::v4_words(src_le), table::v4_words(dst_le));
    let frags = u16::from_be_bytes(ip.frags);
    cur.skip(ihl * 4).ok_or(PassReason::Truncated)?;

    let (fragment, hidden) = if frags & OFFSET_MASK != 0 {
        (Fragment::Later, Some(DropReason::Fragment))
    } else if frags & MORE_FRAGMENTS != 0 {
        (Fragment::First, None)
    } else {
        (Fragment::None, None)
    };
    // 224.0.0.0/4 multicast and the limited broadcast reach every host on
    // the link; subnet broadcasts are in the local map.
    let dst_kind = if dst_le & 0xf0 == 0xe0 || dst_le == u32::MAX {
        DstKind::Group
    } else {
        DstKind::Unicast
    };
    Ok(L4 {
        src,
        dst,
        dst_kind,
        fragment,
        hidden,
        embedded_v4_src: false,
    })
}
