use network_types::{eth::EthHdr, vlan::VlanHdr};
use ntp_filter_common::{PassReason, MAX_VLAN_TAGS};

use super::Cursor;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;

pub enum L3 {
    Ipv4,
    Ipv6,
}

/// Reads the Ethernet header and up to [`MAX_VLAN_TAGS`] tags (802.1Q or
/// 802.1ad, in any order). With VLAN offload the NIC has already stripped
/// the tag and the frame looks untagged; both shapes end up here.
#[inline(always)]
pub fn parse(cur: &mut Cursor) -> Result<L3, PassReason> {
    let eth: &EthHdr = cur.read().ok_or(PassReason::Truncated)?;
    let mut proto = u16::from_be(eth.ether_type);
    for _ in 0..MAX_VLAN_TAGS {
        if proto != ETH_P_8021Q && proto != ETH_P_8021AD {
            break;
        }
        let tag: &VlanHdr = cur.read().ok_or(PassReason::Truncated)?;
        proto = u16::from_be(tag.ether_type);
    }
    match proto {
        ETH_P_IPV4 => Ok(L3::Ipv4),
        ETH_P_IPV6 => Ok(L3::Ipv6),
        // A third tag: the box itself would need three stacked VLAN devices
        // to receive this, so it is left to the stack like any other frame.
        ETH_P_8021Q | ETH_P_8021AD => Err(PassReason::VlanTooDeep),
        _ => Err(PassReason::NotIp),
    }
}
