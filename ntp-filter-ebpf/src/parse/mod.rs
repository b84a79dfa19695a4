//! Header walking: Ethernet and VLAN tags, then IPv4 or IPv6, then UDP.
//! Each layer hands the next an [`L4`] summary or an early pass reason.

mod cursor;
pub mod eth;
pub mod ipv4;
pub mod ipv6;
pub mod udp;

pub use cursor::Cursor;
use ntp_filter_common::{table::Words, DropReason};

/// What the IP layer learnt, for the UDP and NTP checks.
pub struct L4 {
    /// Addresses as the tables key them (IPv4 as `::ffff:a.b.c.d`).
    pub src: Words,
    pub dst: Words,
    pub dst_kind: DstKind,
    pub fragment: Fragment,
    /// The UDP header cannot be read (a later fragment, or an extension
    /// chain past the bound): drop for this reason if it is for the box.
    pub hidden: Option<DropReason>,
    /// IPv6 with an IPv4-mapped or -compatible source (RFC 4291).
    pub embedded_v4_src: bool,
}

/// Whether the destination could be the box itself without a map lookup.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum DstKind {
    /// Multicast or limited broadcast: every host on the link, the box too.
    Group,
    /// A unicast (or subnet broadcast) address: look it up in the local map.
    Unicast,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Fragment {
    None,
    /// Offset 0 with more to come: the UDP header is here, the rest is not.
    First,
    /// Offset > 0: no UDP header, ports unknown.
    Later,
}
