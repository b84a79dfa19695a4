//! Types shared by the XDP program and the agent.
//!
//! Everything here crosses the kernel/user boundary through BPF maps, so every
//! type is `#[repr(C)]` with no implicit padding (checked by the const asserts
//! at the bottom): the verifier rejects reads of uninitialised padding in keys,
//! and userspace would otherwise hash garbage bytes.
#![no_std]

pub mod counters;
pub mod table;

pub use counters::{
    cell, cell_base, counter_index, slot_base, split_index, Counter, DropReason, PassReason,
    Verdict, CELLS, COUNTER_SLOTS, IFACE_OTHER, MAX_IFACE_SLOTS, MAX_IFINDEX,
};

/// Bumped whenever a map's key or value layout, a map's size, or the counter
/// numbering changes. It is part of the pin directory (`.../v3/`), so an agent
/// with a new layout never reuses maps pinned by an old one.
///
/// 2: `NF_ACL` and `DropReason::Denied` (which moved every pass counter).
/// 3: `NF_IFACES`, and `NF_COUNTERS` one block of counters per interface slot.
/// 4: the address tables as hashed arrays ([`table`]), the policy in the
///    config record, `NF_COUNTERS` as one cell per packet ([`cell`]),
///    `DropReason::MappedSource`; a server's port in its slot and the
///    ports servers answer from in the config record (NTS).
pub const LAYOUT_VERSION: u32 = 4;

/// The NTP port, used until the agent writes [`FilterConfig`].
pub const NTP_PORT: u16 = 123;

/// The bpffs names the maps and the program are pinned under. BPF object
/// names are limited to 15 characters.
pub mod names {
    pub const PROGRAM: &str = "ntp_filter";
    pub const CONFIG: &str = "NF_CONFIG";
    /// The sources table's slots and directory ([`crate::table`]).
    pub const SOURCES: &str = "NF_SOURCES";
    pub const SOURCES_DIR: &str = "NF_SOURCES_DIR";
    /// The local-address table's slots and directory.
    pub const LOCAL_ADDRS: &str = "NF_LOCAL";
    pub const LOCAL_DIR: &str = "NF_LOCAL_DIR";
    pub const COUNTERS: &str = "NF_COUNTERS";
    pub const ACL: &str = "NF_ACL";
    pub const IFACES: &str = "NF_IFACES";
    pub const ALL_MAPS: [&str; 8] = [
        CONFIG,
        SOURCES,
        SOURCES_DIR,
        LOCAL_ADDRS,
        LOCAL_DIR,
        COUNTERS,
        ACL,
        IFACES,
    ];
}

/// Capacity of the address maps. A router has a handful of servers and a few
/// hundred local addresses at most; the bound keeps memory fixed.
pub const MAX_SOURCES: u32 = 1024;
pub const MAX_LOCAL_ADDRS: u32 = 4096;
/// Capacity of the client access list ([`names::ACL`]).
pub const MAX_ACL_RULES: u32 = 4096;

/// How deep the program looks for VLAN tags (802.1Q and 802.1ad).
pub const MAX_VLAN_TAGS: usize = 2;
/// How many IPv6 extension headers the program walks before giving up.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;
/// The smallest NTP message: the 48-byte header.
pub const NTP_HEADER_LEN: usize = 48;

/// A source address as the maps key it: IPv4 as an IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`), so one 16-byte key type serves both families.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrKey {
    pub addr: [u8; 16],
}

impl AddrKey {
    #[inline(always)]
    pub const fn from_v4(octets: [u8; 4]) -> Self {
        Self {
            addr: [
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, octets[0], octets[1], octets[2],
                octets[3],
            ],
        }
    }

    #[inline(always)]
    pub const fn from_v6(octets: [u8; 16]) -> Self {
        Self { addr: octets }
    }

    /// The key of an address, IPv4 as `::ffff:a.b.c.d` (what the program
    /// builds from a packet's source address).
    pub const fn from_ip(ip: core::net::IpAddr) -> Self {
        match ip {
            core::net::IpAddr::V4(v4) => Self::from_v4(v4.octets()),
            core::net::IpAddr::V6(v6) => Self::from_v6(v6.octets()),
        }
    }

    /// The address a key stands for: an IPv4-mapped key is the IPv4
    /// address, so `to_ip(from_ip(a)) == a` for IPv4 and IPv6 alike.
    pub fn to_ip(&self) -> core::net::IpAddr {
        let v6 = core::net::Ipv6Addr::from(self.addr);
        match v6.to_ipv4_mapped() {
            Some(v4) => core::net::IpAddr::V4(v4),
            None => core::net::IpAddr::V6(v6),
        }
    }
}

/// The data part of an [`names::ACL`] key: the address as in [`AddrKey`]
/// (IPv4 as `::ffff:a.b.c.d`), most significant bit first, so an IPv4 `/n`
/// is an LPM prefix of `96 + n` bits. The full key is the LPM trie's
/// `{ prefix_len: u32, data: AclKey }` (20 bytes, packed).
pub type AclKey = AddrKey;

/// Bits of the IPv4-mapped prefix `::ffff:0:0/96` an IPv4 prefix length is
/// added to.
pub const V4_MAPPED_PREFIX_LEN: u32 = 96;

/// Values of the access list: what a longest-prefix match on a client's
/// address decides for its requests (mode 3). Any value other than
/// [`ALLOW`](acl::ALLOW) denies.
pub mod acl {
    pub const DENY: u8 = 0;
    pub const ALLOW: u8 = 1;
}

/// The class of a source address. Its number indexes the config record's
/// [`policy`](ConfigRecord::policy)
/// and the per-class counters.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceClass {
    /// Any address not configured as a server or peer.
    Other = 0,
    /// An address configured with `--server`.
    Server = 1,
    /// An address configured with `--peer`.
    Peer = 2,
}

impl SourceClass {
    pub const COUNT: usize = 3;
    pub const ALL: [SourceClass; 3] = [SourceClass::Other, SourceClass::Server, SourceClass::Peer];

    #[inline(always)]
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(Self::Other),
            1 => Some(Self::Server),
            2 => Some(Self::Peer),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Self::Other => "other",
            Self::Server => "server",
            Self::Peer => "peer",
        }
    }
}

/// Value of the sources map.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceEntry {
    /// A [`SourceClass`] as u8 (`Server` or `Peer`).
    pub class: u8,
    pub _pad: u8,
    /// For a server: the local UDP port our requests to it currently leave
    /// from, host byte order. A mode-4 reply to any other port is dropped
    /// (RFC 9109). 0 means no request outstanding: every reply is dropped.
    pub reply_port: u16,
    /// For a server: the UDP port it answers from, host byte order — the
    /// NTP port, or the one an NTS key establishment negotiated. A mode-4
    /// reply from any other port is dropped.
    pub server_port: u16,
    pub _pad2: u16,
}

impl SourceEntry {
    /// A server answering from `server_port`, replies expected at
    /// `reply_port` (0: none yet).
    pub const fn server(reply_port: u16, server_port: u16) -> Self {
        Self {
            class: SourceClass::Server as u8,
            _pad: 0,
            reply_port,
            server_port,
            _pad2: 0,
        }
    }

    /// A symmetric peer (it talks from the NTP port to the NTP port).
    pub const fn peer() -> Self {
        Self {
            class: SourceClass::Peer as u8,
            _pad: 0,
            reply_port: 0,
            server_port: 0,
            _pad2: 0,
        }
    }
}

/// How many ports other than the NTP port servers may answer from
/// ([`ConfigRecord::server_ports`]): NTS servers negotiating their own.
pub const MAX_SERVER_PORTS: usize = 4;

/// What the local-address map knows about a destination.
pub mod local_kind {
    pub const UNICAST: u8 = 1;
    pub const BROADCAST: u8 = 2;
}

/// The single entry of the config map, as the program reads it: the
/// settings and the policy table in one lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConfigRecord {
    /// As [`FilterConfig::ntp_port`].
    pub ntp_port: u16,
    /// As [`FilterConfig::flags`].
    pub flags: u16,
    /// Allowed NTP modes, indexed by [`SourceClass`].
    pub policy: [ModeMask; SourceClass::COUNT],
    pub _pad: u8,
    /// Ports servers answer from besides the NTP port (negotiated by NTS
    /// key establishments), *network* byte order so the program compares
    /// them with the packet's field as loaded. A datagram from one of them
    /// is in scope like one from the NTP port. Used lanes come first;
    /// unused ones hold the NTP port, which adds nothing (so a first lane
    /// holding it means there are none).
    pub server_ports: [u16; MAX_SERVER_PORTS],
    /// The key of the address tables' hash ([`table::hash`]), drawn at
    /// random by the agent when it creates the maps and kept for their
    /// life: without it anyone who can get an address into the configured
    /// set (a pool's DNS answer) could pick one that collides with a
    /// configured source and keep that source out of the table.
    pub table_seed: u64,
}

impl ConfigRecord {
    pub const fn settings(self) -> FilterConfig {
        FilterConfig {
            ntp_port: self.ntp_port,
            flags: self.flags,
        }
    }
}

/// The settings part of the config entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FilterConfig {
    /// The NTP port, host byte order. 0 (an unwritten map) means [`NTP_PORT`].
    pub ntp_port: u16,
    /// [`config_flags`] bits.
    pub flags: u16,
}

pub mod config_flags {
    /// The agent runs with `--bpf-log`: the program was loaded with its
    /// aya-log records of each drop switched on ([`BPF_LOG`](crate::BPF_LOG)),
    /// which fill the log ring under a flood. Informational: the program
    /// reads the load-time switch, not this bit.
    pub const LOG_DROPS: u16 = 1 << 0;
    /// Pass non-first UDP fragments addressed to the box instead of dropping
    /// them. Safe because the first fragment, which carries the ports, is
    /// still filtered and Linux discards overlapping fragments; needed only
    /// when the box's own UDP services (not NTP) receive fragmented datagrams.
    pub const PASS_NON_FIRST_FRAGMENTS: u16 = 1 << 1;
    /// A client request (mode 3) whose address matches no access-list rule
    /// is denied instead of allowed. The agent sets it when at least one
    /// `allow` rule exists (chrony's convention: once something is allowed,
    /// everything else is denied).
    pub const ACL_DEFAULT_DENY: u16 = 1 << 2;
    /// The program was loaded counting out-of-scope passes
    /// ([`COUNT_OUT_OF_SCOPE`](crate::COUNT_OUT_OF_SCOPE)). Informational,
    /// for `status`: the program reads the load-time switch.
    pub const OUT_OF_SCOPE_COUNTED: u16 = 1 << 3;
}

/// The load-time switch (a read-only global) of the program's aya-log
/// records of drops. Loaded as 0, the verifier removes the log calls as
/// dead code, so the filter pays nothing for them.
pub const BPF_LOG: &str = "BPF_LOG";

/// The load-time switch of counting out-of-scope passes (not IP, not UDP,
/// not the NTP port, not for the box). Loaded as 0 they are not counted.
pub const COUNT_OUT_OF_SCOPE: &str = "COUNT_OUT_OF_SCOPE";

/// Bitmask of NTP modes (bit `m` set = mode `m` allowed), one per class.
pub type ModeMask = u8;

pub const fn mode_bit(mode: u8) -> ModeMask {
    1 << (mode & 7)
}

/// The router note's client mode: servers may send replies (4), peers
/// symmetric messages (1, 2), everyone else nothing.
pub const fn client_policy(class: SourceClass) -> ModeMask {
    match class {
        SourceClass::Other => 0,
        SourceClass::Server => mode_bit(4),
        SourceClass::Peer => mode_bit(1) | mode_bit(2),
    }
}

/// Server mode additionally accepts client requests (3) from any address.
pub const fn server_policy(class: SourceClass) -> ModeMask {
    client_policy(class) | mode_bit(3)
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all are repr(C), Copy, and have no implicit padding (asserted
    // below), so any byte pattern of their size is a valid value.
    unsafe impl aya::Pod for super::AddrKey {}
    unsafe impl aya::Pod for super::SourceEntry {}
    unsafe impl aya::Pod for super::FilterConfig {}
    unsafe impl aya::Pod for super::ConfigRecord {}
    unsafe impl aya::Pod for super::table::Slot {}
}

const _: () = {
    assert!(core::mem::size_of::<AddrKey>() == 16);
    assert!(core::mem::size_of::<SourceEntry>() == 8);
    assert!(core::mem::size_of::<FilterConfig>() == 4);
    assert!(core::mem::size_of::<ConfigRecord>() == 24);
};

#[cfg(test)]
mod tests {
    use core::net::IpAddr;

    use super::AddrKey;

    #[test]
    fn addresses_and_keys_convert_both_ways() {
        for (ip, key) in [
            (
                "192.0.2.10",
                [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 10],
            ),
            (
                "2001:db8::10",
                [
                    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
                ],
            ),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(AddrKey::from_ip(ip).addr, key);
            assert_eq!(AddrKey::from_ip(ip).to_ip(), ip);
        }
        // An IPv4-mapped IPv6 address is the IPv4 client it maps.
        let mapped: IpAddr = "::ffff:192.0.2.10".parse().unwrap();
        assert_eq!(
            AddrKey::from_ip(mapped).to_ip(),
            "192.0.2.10".parse::<IpAddr>().unwrap()
        );
    }
}
