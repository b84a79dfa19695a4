//! The decision for a UDP datagram: is it NTP for the box, and if so, does
//! the router note's table allow its mode from its source? Each outcome is
//! the one counter cell the packet is counted in.

use aya_ebpf::maps::lpm_trie::Key;
use ntp_filter_common::{
    acl, cell, config_flags, mode_bit, table, AddrKey, ConfigRecord, DropReason, PassReason,
    SourceClass, MAX_SERVER_PORTS, NTP_PORT,
};

use crate::{
    maps::{self, NF_ACL, NF_CONFIG},
    parse::{
        udp::{self, Udp},
        Cursor, DstKind, Fragment, L4,
    },
};

/// What to do with a packet and where it is counted.
#[derive(Clone, Copy)]
pub struct Verdict {
    pub drop: bool,
    pub cell: u32,
}

#[inline(always)]
pub fn pass(reason: PassReason) -> Verdict {
    Verdict {
        drop: false,
        cell: cell::pass(reason),
    }
}

/// Whether `cell` is one of the out-of-scope passes only counted on
/// request: not IP, not UDP, not the NTP port, not for the box.
#[inline(always)]
pub fn out_of_scope(cell: u32) -> bool {
    const FIRST: u32 = cell::pass(PassReason::NotIp);
    const LAST: u32 = cell::pass(PassReason::NotLocal);
    const _: () = assert!(LAST - FIRST == 3, "the out-of-scope reasons are contiguous");
    (FIRST..=LAST).contains(&cell)
}

#[inline(always)]
fn drop(reason: DropReason) -> Verdict {
    Verdict {
        drop: true,
        cell: cell::drop(reason),
    }
}

const DEFAULT_CONFIG: ConfigRecord = ConfigRecord {
    ntp_port: 0,
    flags: 0,
    policy: [0; SourceClass::COUNT],
    _pad: 0,
    server_ports: [NTP_PORT.swap_bytes(); MAX_SERVER_PORTS],
    table_seed: 0,
};

/// The config entry, read in place (a copy of the record costs a load per
/// field and the shifts to join them).
#[inline(always)]
pub fn config() -> &'static ConfigRecord {
    NF_CONFIG.get(0).unwrap_or(&DEFAULT_CONFIG)
}

/// Transit traffic to hosts behind the router is not ours to filter.
/// `kd`: the destination's first word under the tables' key.
#[inline(always)]
fn for_us(l4: &L4, kd: u64) -> bool {
    l4.dst_kind == DstKind::Group || maps::is_local(l4.dst, kd)
}

/// The access list's verdict on a client request from `src`: the longest
/// matching prefix decides; with no match, the default (deny once the
/// operator allowed anything).
#[inline(always)]
fn acl_allows(src: table::Words, cfg: &ConfigRecord) -> bool {
    let key = Key::new(
        128,
        AddrKey {
            addr: table::addr(src),
        },
    );
    match NF_ACL.get(&key) {
        Some(&verdict) => verdict == acl::ALLOW,
        None => cfg.flags & config_flags::ACL_DEFAULT_DENY == 0,
    }
}

/// Whether a datagram with these ports is NTP to look at: to or from the
/// NTP port, or from a server's negotiated port.
#[inline(always)]
pub fn in_scope(udp: Udp, cfg: &ConfigRecord) -> bool {
    let port = if cfg.ntp_port == 0 {
        NTP_PORT
    } else {
        cfg.ntp_port
    };
    // A server that an NTS key establishment sent to another port answers
    // from that port: in scope too, checked against its slot in `decide`.
    // The agent fills the lanes from the first, so a first lane holding
    // the NTP port means there are none: one compare for most routers.
    udp.has_port(port)
        || (cfg.server_ports[0] != port.swap_bytes() && udp.src_port_in(&cfg.server_ports))
}

/// `cfg`: the config record, looked up by the caller as soon as the
/// packet is known to be UDP or to hide its transport header (the lookup
/// is a call for the compiler, so the fewer values live across it, the
/// fewer are spilled to the stack).
#[inline(always)]
/// `in_scope_known`: the caller has seen this datagram's ports pass
/// [`in_scope`] (IPv4, which looks at them first).
pub fn decide(cur: &mut Cursor, l4: &L4, cfg: &ConfigRecord, in_scope_known: bool) -> Verdict {
    // Read once: the tables' key goes into every address's hash, and a
    // field read again after a map lookup is a load (and its hash work)
    // again.
    let seed = cfg.table_seed;
    if let Some(reason) = l4.hidden {
        // Ports unknown: anything for the box might be NTP.
        if !for_us(l4, table::key_word(l4.dst[0], seed)) {
            return pass(PassReason::NotLocal);
        }
        // The exemption for non-first fragments is for real IPv6 hosts: a
        // source embedding IPv4 is never one (RFC 4291), fragment or not.
        if reason == DropReason::Fragment && cfg.flags & config_flags::PASS_NON_FIRST_FRAGMENTS != 0
        {
            if l4.embedded_v4_src {
                return drop(DropReason::MappedSource);
            }
            return pass(PassReason::NonFirstFragment);
        }
        return drop(reason);
    }
    let Some(udp) = udp::parse(cur) else {
        // A first fragment too short to hold the ports is the classic tiny-
        // fragment trick to slip past port filters.
        if l4.fragment == Fragment::First && for_us(l4, table::key_word(l4.dst[0], seed)) {
            return drop(DropReason::Fragment);
        }
        return pass(PassReason::Truncated);
    };
    if !in_scope_known && !in_scope(udp, cfg) {
        return pass(PassReason::NotNtpPort);
    }
    // Both addresses' first words under the key, each computed once: an
    // IPv4 packet's are both 0 (one computation), an IPv6 packet within
    // one /64 shares them too.
    let kd = table::key_word(l4.dst[0], seed);
    let ks = if l4.src[0] == l4.dst[0] {
        kd
    } else {
        table::key_word(l4.src[0], seed)
    };
    if !for_us(l4, kd) {
        return pass(PassReason::NotLocal);
    }
    if l4.embedded_v4_src {
        return drop(DropReason::MappedSource);
    }
    if l4.fragment != Fragment::None {
        return drop(DropReason::Fragment);
    }
    let Some(first) = udp::ntp_first_byte(cur, &udp) else {
        return drop(DropReason::ShortPayload);
    };
    let version = (first >> 3) & 7;
    if version == 0 || version > 4 {
        return drop(DropReason::BadVersion);
    }
    let mode = first & 7;

    let (class, reply_port, server_port) = match maps::source(l4.src, ks) {
        Some(s) => (s.class, s.reply_port, s.server_port),
        None => (SourceClass::Other as u8, 0, 0),
    };
    let allowed = match cfg.policy.get(class as usize) {
        Some(&m) => m,
        None => 0,
    };
    let outcome = if allowed & mode_bit(mode) == 0 {
        if class == SourceClass::Other as u8 {
            cell::OTHER_SOURCE
        } else {
            cell::MODE_NOT_ALLOWED
        }
    } else if class == SourceClass::Server as u8
        && mode == 4
        && (udp.dst_port() != reply_port || udp.src_port() != server_port)
    {
        // A reply travels between the ports of our request, no others.
        cell::WRONG_REPLY_PORT
    } else if mode == 3 && !acl_allows(l4.src, cfg) {
        // Client requests the class table lets through still need the
        // access list's consent, whatever the class.
        cell::DENIED
    } else {
        cell::ALLOWED
    };
    Verdict {
        drop: outcome != cell::ALLOWED,
        cell: cell::decision(class, mode, outcome),
    }
}
