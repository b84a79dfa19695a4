use network_types::ip::Ipv6Hdr;
use ntp_filter_common::{table, DropReason, PassReason, MAX_IPV6_EXT_HEADERS};

use super::{cursor::load_u64, Cursor, DstKind, Fragment, L4};

const NEXTHDR_HOP: u8 = 0;
const NEXTHDR_UDP: u8 = 17;
const NEXTHDR_ROUTING: u8 = 43;
const NEXTHDR_FRAGMENT: u8 = 44;
const NEXTHDR_AUTH: u8 = 51;
const NEXTHDR_DEST: u8 = 60;
const NEXTHDR_MOBILITY: u8 = 135;
const NEXTHDR_HIP: u8 = 139;
const NEXTHDR_SHIM6: u8 = 140;

#[inline(always)]
fn is_extension(nh: u8) -> bool {
    matches!(
        nh,
        NEXTHDR_HOP
            | NEXTHDR_ROUTING
            | NEXTHDR_FRAGMENT
            | NEXTHDR_AUTH
            | NEXTHDR_DEST
            | NEXTHDR_MOBILITY
            | NEXTHDR_HIP
            | NEXTHDR_SHIM6
    )
}

/// Reads the IPv6 header and walks up to [`MAX_IPV6_EXT_HEADERS`] extension
/// headers, leaving the cursor on the UDP header. A chain longer than that
/// hides the transport header; it is reported through `L4::hidden` so the
/// caller drops it when it is addressed to the box (fail closed).
#[inline(always)]
pub fn parse(cur: &mut Cursor) -> Result<L4, PassReason> {
    let ip: &Ipv6Hdr = cur.read().ok_or(PassReason::Truncated)?;
    if ip.vcf[0] >> 4 != 6 {
        return Err(PassReason::BadHeader);
    }
    let (s, d) = (ip.src_addr.as_ptr(), ip.dst_addr.as_ptr());
    // SAFETY: both addresses lie inside the header `read` bounds-checked.
    let (src, dst) = unsafe {
        (
            [load_u64(s), load_u64(s.add(8))],
            [load_u64(d), load_u64(d.add(8))],
        )
    };
    let dst_kind = if ip.dst_addr[0] == 0xff {
        DstKind::Group
    } else {
        DstKind::Unicast
    };
    let mut nh = ip.next_hdr;
    let mut fragment = Fragment::None;

    for _ in 0..MAX_IPV6_EXT_HEADERS {
        if !is_extension(nh) {
            break;
        }
        if nh == NEXTHDR_FRAGMENT {
            let frag: &[u8; 8] = cur.read().ok_or(PassReason::Truncated)?;
            nh = frag[0];
            let offset = u16::from_be_bytes([frag[2], frag[3]]) >> 3;
            if offset != 0 {
                // What follows is the middle of a datagram, not a header.
                fragment = Fragment::Later;
                break;
            }
            fragment = Fragment::First;
        } else {
            let hdr: &[u8; 2] = cur.peek().ok_or(PassReason::Truncated)?;
            // AH counts its length in 4-byte units minus 2 (RFC 4302); the
            // others in 8-byte units minus 1 (RFC 8200).
            let len = if nh == NEXTHDR_AUTH {
                (hdr[1] as usize + 2) * 4
            } else {
                (hdr[1] as usize + 1) * 8
            };
            nh = hdr[0];
            cur.skip(len).ok_or(PassReason::Truncated)?;
        }
    }

    let hidden = match fragment {
        Fragment::Later if nh == NEXTHDR_UDP || is_extension(nh) => Some(DropReason::Fragment),
        _ if is_extension(nh) => Some(DropReason::ExtHeaders),
        _ if nh != NEXTHDR_UDP => return Err(PassReason::NotUdp),
        _ => None,
    };
    Ok(L4 {
        src,
        dst,
        dst_kind,
        fragment,
        hidden,
        embedded_v4_src: table::embeds_ipv4(src),
    })
}
