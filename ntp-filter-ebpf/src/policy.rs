//! The decision for a UDP datagram: is it NTP for the box, and if so, does
//! the router note's table allow its mode from its source?

use aya_ebpf::maps::lpm_trie::Key;
use ntp_filter_common::{
    acl, config_flags, counters::decision_index, mode_bit, AddrKey, DropReason, FilterConfig,
    PassReason, SourceClass, Verdict, NTP_PORT,
};

use crate::{
    maps::{NF_ACL, NF_LOCAL, NF_POLICY, NF_SOURCES},
    parse::{udp, Cursor, DstKind, Fragment, L4},
};

pub enum Outcome {
    Pass(PassReason),
    Drop(DropReason),
    /// An NTP header from a classified source reached the policy table:
    /// `decision` is its `(class, mode, verdict)` counter. Computed here,
    /// where class and mode exist: with the two carried out to the caller,
    /// LLVM hoisted the index arithmetic above the match, onto paths where
    /// they are undefined, and the verifier refused the uninitialised read.
    Decided {
        decision: u32,
        drop: Option<DropReason>,
    },
}

/// Transit traffic to hosts behind the router is not ours to filter.
#[inline(always)]
fn for_us(l4: &L4) -> bool {
    l4.dst_kind == DstKind::Group || NF_LOCAL.get_ptr(l4.dst).is_some()
}

/// The access list's verdict on a client request from `src`: the longest
/// matching prefix decides; with no match, the default (deny once the
/// operator allowed anything).
#[inline(always)]
fn acl_allows(src: &AddrKey, cfg: &FilterConfig) -> bool {
    let key = Key::new(128, *src);
    match NF_ACL.get(&key) {
        Some(&verdict) => verdict == acl::ALLOW,
        None => cfg.flags & config_flags::ACL_DEFAULT_DENY == 0,
    }
}

#[inline(always)]
pub fn decide(cur: &mut Cursor, l4: &L4, cfg: &FilterConfig) -> Outcome {
    if let Some(reason) = l4.hidden {
        // Ports unknown: anything for the box might be NTP.
        if !for_us(l4) {
            return Outcome::Pass(PassReason::NotLocal);
        }
        if reason == DropReason::Fragment && cfg.flags & config_flags::PASS_NON_FIRST_FRAGMENTS != 0
        {
            return Outcome::Pass(PassReason::NonFirstFragment);
        }
        return Outcome::Drop(reason);
    }
    let Some(udp) = udp::parse(cur) else {
        // A first fragment too short to hold the ports is the classic tiny-
        // fragment trick to slip past port filters.
        if l4.fragment == Fragment::First && for_us(l4) {
            return Outcome::Drop(DropReason::Fragment);
        }
        return Outcome::Pass(PassReason::Truncated);
    };
    let port = if cfg.ntp_port == 0 {
        NTP_PORT
    } else {
        cfg.ntp_port
    };
    if udp.src_port != port && udp.dst_port != port {
        return Outcome::Pass(PassReason::NotNtpPort);
    }
    if !for_us(l4) {
        return Outcome::Pass(PassReason::NotLocal);
    }
    if l4.fragment != Fragment::None {
        return Outcome::Drop(DropReason::Fragment);
    }
    let Some(first) = udp::ntp_first_byte(cur, &udp) else {
        return Outcome::Drop(DropReason::ShortPayload);
    };
    let version = (first >> 3) & 7;
    if version == 0 || version > 4 {
        return Outcome::Drop(DropReason::BadVersion);
    }
    let mode = first & 7;

    let source = NF_SOURCES.get_ptr(l4.src);
    let (class, reply_port) = match source {
        // SAFETY: the value is 4 plain bytes; a concurrent update by the
        // agent can at worst give a torn but valid entry.
        Some(entry) => unsafe { ((*entry).class, (*entry).reply_port) },
        None => (SourceClass::Other as u8, 0),
    };
    let allowed = NF_POLICY.get(class as u32).copied().unwrap_or(0);
    let drop = if allowed & mode_bit(mode) == 0 {
        Some(if class == SourceClass::Other as u8 {
            DropReason::UnknownSource
        } else {
            DropReason::ModeNotAllowed
        })
    } else if class == SourceClass::Server as u8 && mode == 4 && udp.dst_port != reply_port {
        Some(DropReason::WrongReplyPort)
    } else if mode == 3 && !acl_allows(&l4.src, cfg) {
        // Client requests the class table lets through still need the
        // access list's consent, whatever the class.
        Some(DropReason::Denied)
    } else {
        None
    };
    let verdict = if drop.is_some() {
        Verdict::Drop
    } else {
        Verdict::Pass
    };
    Outcome::Decided {
        decision: decision_index(class, mode, verdict),
        drop,
    }
}
