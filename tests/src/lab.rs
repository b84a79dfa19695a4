//! `RouterLab`: the standard topology of the integration tests.
//!
//! ```text
//!  outside ns                    router ns                      lan ns (optional)
//!  ext0 ─────────── veth ─────── wan0      lan0 ─────── veth ─── host0
//!  192.0.2.10/.20/.99            192.0.2.1  198.51.100.1         198.51.100.50
//!  2001:db8::10/20/99            2001:db8::1 2001:db8:1::1       2001:db8:1::50
//! ```
//! The XDP program goes on `wan0` (and `lan0` when a test filters both);
//! frames are injected on `ext0` (and `host0`).

use crate::netns::Netns;
use crate::observe::{Observer, SYNC_TIMEOUT};
use crate::packet::{NtpPacket, UdpFrame};
use crate::sender::RawSender;
use crate::topology::Topology;
use crate::udp::UdpEndpoint;
use anyhow::Result;
use std::net::{IpAddr, SocketAddr};

/// Addresses and interface names of `RouterLab` (documentation ranges only).
pub mod addrs {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    /// Port the sync markers go to (discard): never NTP, so filters pass it.
    pub const MARKER_PORT: u16 = 9;

    pub const WAN_IF: &str = "wan0";
    pub const EXT_IF: &str = "ext0";
    pub const LAN_IF: &str = "lan0";
    pub const HOST_IF: &str = "host0";

    pub const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    pub const PEER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
    pub const OUTSIDER_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);
    pub const LAN_GW_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
    pub const LAN_HOST_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 50);

    pub const ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10);
    pub const PEER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x20);
    pub const OUTSIDER_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x99);
    pub const LAN_GW_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
    pub const LAN_HOST_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x50);

    /// The outside sources, v4 and v6: (server, peer, outsider).
    pub const OUTSIDE_V4: [Ipv4Addr; 3] = [SERVER_V4, PEER_V4, OUTSIDER_V4];
    pub const OUTSIDE_V6: [Ipv6Addr; 3] = [SERVER_V6, PEER_V6, OUTSIDER_V6];

    pub fn sock(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
        SocketAddr::new(ip.into(), port)
    }
}

use addrs::*;

#[derive(Debug)]
pub struct RouterLab {
    pub topo: Topology,
    has_lan: bool,
    // Cached: frame building is hot (hundreds of frames per test).
    wan_mac: [u8; 6],
    ext_mac: [u8; 6],
    /// `(host0, lan0)` when there is a lan.
    lan_macs: Option<([u8; 6], [u8; 6])>,
}

impl RouterLab {
    /// router + outside.
    pub fn new(tag: &str) -> Result<Self> {
        Self::build(tag, false)
    }

    /// router + outside + lan behind the router (forwarding on).
    pub fn with_lan(tag: &str) -> Result<Self> {
        Self::build(tag, true)
    }

    fn build(tag: &str, lan: bool) -> Result<Self> {
        let mut t = Topology::new(tag);
        t.add_ns("router")?;
        t.add_ns("outside")?;
        t.veth(("router", WAN_IF), ("outside", EXT_IF))?;
        wan_addresses(&t)?;
        if lan {
            t.add_ns("lan")?;
            t.veth(("router", LAN_IF), ("lan", HOST_IF))?;
            t.addr("router", LAN_IF, &format!("{LAN_GW_V4}/24"))?;
            t.addr("router", LAN_IF, &format!("{LAN_GW_V6}/64"))?;
            t.addr("lan", HOST_IF, &format!("{LAN_HOST_V4}/24"))?;
            t.addr("lan", HOST_IF, &format!("{LAN_HOST_V6}/64"))?;
            t.forwarding("router")?;
            t.route("lan", "default", &LAN_GW_V4.to_string())?;
            t.route("lan", "default", &LAN_GW_V6.to_string())?;
            outside_routes(&t)?;
        }
        let lan_macs = if lan {
            Some((t.mac("lan", HOST_IF)?, t.mac("router", LAN_IF)?))
        } else {
            None
        };
        Ok(Self {
            wan_mac: t.mac("router", WAN_IF)?,
            ext_mac: t.mac("outside", EXT_IF)?,
            lan_macs,
            topo: t,
            has_lan: lan,
        })
    }

    /// Deletes the router's `wan0` (and with it its peer `ext0`): the
    /// filtered interface disappears, as a USB, PPP or VPN interface does.
    pub fn delete_wan(&self) -> Result<()> {
        self.router().ip(&["link", "del", WAN_IF]).map(|_| ())
    }

    /// `wan0` <-> `ext0` again as built: the same names, MACs, addresses,
    /// neighbour entries and routes, under new interface indexes. Observers
    /// and senders opened before must be opened again.
    pub fn recreate_wan(&self) -> Result<()> {
        let mac = crate::topology::fmt_mac;
        self.router().ip(&[
            "link",
            "add",
            "name",
            WAN_IF,
            "address",
            &mac(self.wan_mac),
            "type",
            "veth",
            "peer",
            "name",
            EXT_IF,
            "address",
            &mac(self.ext_mac),
            "netns",
            self.outside().name(),
        ])?;
        self.router().ip(&["link", "set", WAN_IF, "up"])?;
        self.outside().ip(&["link", "set", EXT_IF, "up"])?;
        wan_addresses(&self.topo)?;
        if self.has_lan {
            outside_routes(&self.topo)?;
        }
        Ok(())
    }

    pub fn router(&self) -> &Netns {
        self.topo.ns("router")
    }

    pub fn outside(&self) -> &Netns {
        self.topo.ns("outside")
    }

    /// Panics if the lab was built without a lan.
    pub fn lan(&self) -> &Netns {
        assert!(
            self.has_lan,
            "RouterLab built without lan: use RouterLab::with_lan"
        );
        self.topo.ns("lan")
    }

    pub fn wan_mac(&self) -> [u8; 6] {
        self.wan_mac
    }

    pub fn ext_mac(&self) -> [u8; 6] {
        self.ext_mac
    }

    /// Raw frame injector on `ext0` (frames arrive on `wan0`).
    pub fn raw_sender(&self) -> Result<RawSender> {
        RawSender::open(self.outside(), EXT_IF)
    }

    /// Frames that `wan0` received (i.e. that XDP passed).
    pub fn observe_wan(&self) -> Result<Observer> {
        Observer::start(self.router(), WAN_IF)
    }

    /// Frames that reached the lan host (transit traffic).
    pub fn observe_lan(&self) -> Result<Observer> {
        Observer::start(self.lan(), HOST_IF)
    }

    /// Raw frame injector on the lan host's `host0` (frames arrive on the
    /// router's `lan0`).
    pub fn lan_raw_sender(&self) -> Result<RawSender> {
        RawSender::open(self.lan(), HOST_IF)
    }

    /// Frames that the router's `lan0` received (i.e. that XDP there passed).
    pub fn observe_router_lan(&self) -> Result<Observer> {
        Observer::start(self.router(), LAN_IF)
    }

    /// Frame from the lan host towards the router's lan0 MAC. Panics if the
    /// lab was built without a lan.
    pub fn lan_frame(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        payload: impl Into<Vec<u8>>,
    ) -> UdpFrame {
        let (host, lan0) = self
            .lan_macs
            .expect("RouterLab built without lan: use RouterLab::with_lan");
        UdpFrame::new(src, dst, payload).macs(host, lan0)
    }

    /// A UDP socket in the router namespace (e.g. `sock(ROUTER_V4, 123)`).
    pub fn router_udp(&self, addr: SocketAddr) -> Result<UdpEndpoint> {
        UdpEndpoint::bind(self.router(), addr)
    }

    /// A UDP socket in the outside namespace bound to one of its sources.
    pub fn outside_udp(&self, addr: SocketAddr) -> Result<UdpEndpoint> {
        UdpEndpoint::bind(self.outside(), addr)
    }

    /// A UDP socket on the lan host.
    pub fn lan_udp(&self, addr: SocketAddr) -> Result<UdpEndpoint> {
        UdpEndpoint::bind(self.lan(), addr)
    }

    /// Frame from the outside towards the router's wan0 MAC (`dst` may be the
    /// router itself or a lan address for transit).
    pub fn frame(&self, src: SocketAddr, dst: SocketAddr, payload: impl Into<Vec<u8>>) -> UdpFrame {
        UdpFrame::new(src, dst, payload).macs(self.ext_mac, self.wan_mac)
    }

    /// NTP frame from the outside towards the router's wan0 MAC.
    pub fn ntp_frame(&self, src: SocketAddr, dst: SocketAddr, pkt: NtpPacket) -> UdpFrame {
        self.frame(src, dst, pkt.to_bytes())
    }

    /// Marker barrier for `obs` (an observer on wan0 or on the lan host with
    /// [`raw_sender`](Self::raw_sender), or on the router's lan0 with
    /// [`lan_raw_sender`](Self::lan_raw_sender)): afterwards every frame sent
    /// earlier through the send lane has been recorded by `obs` or was
    /// dropped.
    pub fn sync(&self, tx: &RawSender, obs: &Observer) -> Result<()> {
        if self.has_lan && obs.ns_name() == self.router().name() && obs.ifname() == LAN_IF {
            let template = self.lan_frame(
                sock(LAN_HOST_V4, MARKER_PORT),
                sock(LAN_GW_V4, MARKER_PORT),
                Vec::new(),
            );
            return obs.sync(tx, &template, SYNC_TIMEOUT);
        }
        let to_lan = self.has_lan && obs.ns_name() == self.lan().name();
        let dst: IpAddr = if to_lan {
            LAN_HOST_V4.into()
        } else {
            ROUTER_V4.into()
        };
        let template = self.frame(
            sock(SERVER_V4, MARKER_PORT),
            sock(dst, MARKER_PORT),
            Vec::new(),
        );
        obs.sync(tx, &template, SYNC_TIMEOUT)
    }
}

/// The addresses on both ends of the wan veth (with the permanent
/// neighbour entries `Topology::addr` adds).
fn wan_addresses(t: &Topology) -> Result<()> {
    t.addr("router", WAN_IF, &format!("{ROUTER_V4}/24"))?;
    t.addr("router", WAN_IF, &format!("{ROUTER_V6}/64"))?;
    for ip in OUTSIDE_V4 {
        t.addr("outside", EXT_IF, &format!("{ip}/24"))?;
    }
    for ip in OUTSIDE_V6 {
        t.addr("outside", EXT_IF, &format!("{ip}/64"))?;
    }
    Ok(())
}

/// The outside's routes to the lan, through the router's wan address.
fn outside_routes(t: &Topology) -> Result<()> {
    t.route("outside", "198.51.100.0/24", &ROUTER_V4.to_string())?;
    t.route("outside", "2001:db8:1::/64", &ROUTER_V6.to_string())
}
