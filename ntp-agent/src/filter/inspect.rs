//! Reading the filter back from its pins, for `status`, the metrics page
//! and systemd's STATUS= line: it works whether or not an agent runs (e.g.
//! after `kill -9`), and never changes anything.

use std::{collections::BTreeMap, net::IpAddr};

use anyhow::Result;
use ntp_filter_common::{SourceClass, LAYOUT_VERSION};
use serde::Serialize;

use super::{stats::FilterStats, FilterMaps, PinDir};
use crate::model::policy::modes_in;

#[derive(Serialize)]
pub struct FilterStatus {
    pub layout_version: u32,
    pub pin_dir: String,
    pub ntp_port: u16,
    pub interfaces: Vec<InterfaceStatus>,
    /// Allowed NTP modes per class, as lists.
    pub policy: BTreeMap<&'static str, Vec<u8>>,
    pub servers: Vec<IpAddr>,
    pub peers: Vec<IpAddr>,
    /// Ports servers answer from besides `ntp_port` (negotiated by NTS
    /// key establishments): replies from them are in scope too.
    pub server_ports: Vec<u16>,
    pub local_addresses: usize,
    /// The box's addresses (in this network namespace) that are not in the
    /// filter's local-address map because it is full: NTP to them is
    /// treated as transit. Normally 0.
    pub local_addresses_unprotected: usize,
    /// Whether the program counts the passes it leaves alone (not IP, not
    /// UDP, not the NTP port, transit): `--count-out-of-scope`. When
    /// false, those four pass reasons stay at 0.
    pub out_of_scope_counted: bool,
    /// Client access list, e.g. `allow 192.0.2.0/24`, longest prefix wins.
    pub acl: Vec<String>,
    /// What happens to clients no rule matches: `allow` or `deny`.
    pub acl_default: &'static str,
    /// Every interface together.
    pub counters: FilterStats,
    /// The same counters per interface with a slot, plus `other` (packets
    /// from interfaces without one) when it counted anything. Their sum is
    /// `counters`.
    pub counters_by_interface: BTreeMap<String, FilterStats>,
}

#[derive(Serialize)]
pub struct InterfaceStatus {
    pub name: String,
    /// `native`, `skb`, `hw`, or `unknown` when the kernel does not say.
    pub xdp_mode: String,
    /// Its block of the counter array; `null`: counted under `other`.
    pub counter_slot: Option<u32>,
}

/// The filter's state and counters as the pinned maps hold them.
pub fn collect(pins: &PinDir) -> Result<FilterStatus> {
    let maps = FilterMaps::open(pins)?;
    let cfg = maps.config()?;
    let masks = maps.policy()?;
    let mut servers = Vec::new();
    let mut peers = Vec::new();
    for (key, entry) in maps.sources()? {
        match SourceClass::from_u8(entry.class) {
            Some(SourceClass::Server) => servers.push(key.to_ip()),
            Some(SourceClass::Peer) => peers.push(key.to_ip()),
            _ => {}
        }
    }
    let slots = maps.iface_slots()?;
    let local = maps.local_addrs()?;
    let interfaces = pins
        .linked_interfaces()?
        .into_iter()
        .map(|name| InterfaceStatus {
            xdp_mode: xdp_mode(&name).unwrap_or_else(|| "unknown".into()),
            counter_slot: super::ifindex(&name)
                .ok()
                .and_then(|i| slots.get(&i).copied()),
            name,
        })
        .collect();
    Ok(FilterStatus {
        layout_version: LAYOUT_VERSION,
        pin_dir: pins.root().display().to_string(),
        ntp_port: if cfg.ntp_port == 0 { 123 } else { cfg.ntp_port },
        interfaces,
        policy: SourceClass::ALL
            .iter()
            .map(|c| (c.name(), modes_in(masks[*c as usize])))
            .collect(),
        servers,
        peers,
        server_ports: maps.server_ports()?,
        local_addresses: local.len(),
        local_addresses_unprotected: crate::filter::local_addrs::current()
            .map(|box_addrs| box_addrs.keys().filter(|k| !local.contains_key(k)).count())
            .unwrap_or(0),
        out_of_scope_counted: cfg.flags & ntp_filter_common::config_flags::OUT_OF_SCOPE_COUNTED
            != 0,
        acl: maps.acl_rules()?.iter().map(ToString::to_string).collect(),
        acl_default: if maps.acl_default_deny()? {
            "deny"
        } else {
            "allow"
        },
        counters: FilterStats::from_slots(&maps.counters()?),
        counters_by_interface: maps.interface_counters()?.into_iter().collect(),
    })
}

/// The attach mode as the kernel reports it: IFLA_XDP's attach type, read
/// with one RTM_GETLINK over rtnetlink (no `ip` process per scrape).
/// `None` when nothing is attached or the link cannot be read.
pub fn xdp_mode(iface: &str) -> Option<String> {
    use netlink_packet_route::link::{LinkAttribute, LinkXdp, XdpAttached};
    let link = get_link(iface).ok()?;
    let attached = link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Xdp(xdp) => xdp.iter().find_map(|x| match x {
            LinkXdp::Attached(mode) => Some(*mode),
            _ => None,
        }),
        _ => None,
    })?;
    let mode = match attached {
        XdpAttached::None => return None,
        XdpAttached::Driver => "native",
        XdpAttached::SocketBuffer => "skb",
        XdpAttached::Hardware => "hw",
        _ => "unknown",
    };
    Some(mode.into())
}

/// The ids of the XDP programs the kernel reports attached to `iface` (one,
/// or one per mode when several are): how a pinned link is recognised as
/// still being the one on the interface of that name.
pub fn xdp_prog_ids(iface: &str) -> Result<Vec<u32>> {
    use netlink_packet_route::link::{LinkAttribute, LinkXdp};
    let link = get_link(iface)?;
    Ok(link
        .attributes
        .iter()
        .filter_map(|a| match a {
            LinkAttribute::Xdp(xdp) => Some(xdp),
            _ => None,
        })
        .flatten()
        .filter_map(|x| match x {
            LinkXdp::ProgId(id)
            | LinkXdp::DrvProgId(id)
            | LinkXdp::SkbProgId(id)
            | LinkXdp::HwProgId(id) => Some(*id),
            _ => None,
        })
        .filter(|&id| id != 0)
        .collect())
}

/// How long a reply from the kernel may take before the caller gets on
/// without it (it answers at once; this only bounds a scrape).
const NETLINK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// `iface`'s link message, as `ip link show dev IFACE` reads it.
fn get_link(iface: &str) -> Result<netlink_packet_route::link::LinkMessage> {
    use anyhow::{bail, Context as _};
    use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
    use netlink_packet_route::{link::LinkMessage, RouteNetlinkMessage};
    use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

    let index =
        nix::net::if_::if_nametoindex(iface).with_context(|| format!("no interface {iface:?}"))?;
    let mut link = LinkMessage::default();
    link.header.index = index;
    let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetLink(link));
    request.header.flags = NLM_F_REQUEST;
    request.header.sequence_number = 1;
    request.finalize();
    let mut out = vec![0u8; request.buffer_len()];
    request.serialize(&mut out);

    let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
    socket.bind_auto()?;
    nix::sys::socket::setsockopt(
        &socket,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &nix::sys::time::TimeVal::new(NETLINK_TIMEOUT.as_secs() as _, 0),
    )?;
    socket.send_to(&out, &SocketAddr::new(0, 0), 0)?;
    let mut buf = vec![0u8; 64 * 1024];
    let n = socket.recv(&mut &mut buf[..], 0)?;
    let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[..n])
        .context("reading the rtnetlink reply")?;
    match reply.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(link)) => Ok(link),
        NetlinkPayload::Error(e) => bail!("RTM_GETLINK {iface}: {e}"),
        _ => bail!("RTM_GETLINK {iface}: unexpected reply"),
    }
}

#[cfg(test)]
mod tests {
    /// Nothing is attached to `lo` here, and a missing interface is no
    /// error for status: both read as no mode (the attached modes are
    /// checked by the namespace tests, `status`'s `xdp_mode`).
    #[test]
    fn xdp_mode_reads_the_link_over_rtnetlink() {
        assert_eq!(super::get_link("lo").unwrap().header.index, 1);
        assert_eq!(super::xdp_mode("lo"), None);
        assert_eq!(super::xdp_mode("nf-no-such-if"), None);
        assert!(
            format!("{:#}", super::get_link("nf-no-such-if").unwrap_err())
                .contains("nf-no-such-if")
        );
    }
}
