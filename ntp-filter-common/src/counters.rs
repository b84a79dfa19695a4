//! Numbering of the per-CPU counter array.
//!
//! Every packet moves exactly one "why" counter: a [`DropReason`] or a
//! [`PassReason`]. Packets that reach the policy decision (a parsed NTP
//! header from a classified source) also move one `(class, mode, verdict)`
//! counter, so `status` can show drops by class, mode and reason.
//!
//! The array holds one block of [`COUNTER_SLOTS`] counters per interface
//! slot: the packet's ingress interface indexes [`NF_IFACES`](crate::names::IFACES),
//! whose value is the slot. Slot [`IFACE_OTHER`] takes packets from
//! interfaces without one, so the sum over all blocks is always every
//! packet the program saw.

use crate::SourceClass;

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Pass = 0,
    Drop = 1,
}

/// Why an in-scope packet was dropped.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// A UDP fragment for the box: NTP never fragments.
    Fragment = 0,
    /// More IPv6 extension headers than the program walks.
    ExtHeaders = 1,
    /// UDP payload shorter than the 48-byte NTP header.
    ShortPayload = 2,
    /// NTP version outside 1..=4.
    BadVersion = 3,
    /// A mode not allowed for addresses that are neither server nor peer.
    UnknownSource = 4,
    /// A mode not allowed for the configured server or peer it came from.
    ModeNotAllowed = 5,
    /// A server reply to a local port we have no request outstanding on.
    WrongReplyPort = 6,
    /// A client request (mode 3) from an address the access list
    /// ([`NF_ACL`](crate::names::ACL)) denies.
    Denied = 7,
}

impl DropReason {
    pub const COUNT: usize = 8;
    pub const ALL: [DropReason; Self::COUNT] = [
        Self::Fragment,
        Self::ExtHeaders,
        Self::ShortPayload,
        Self::BadVersion,
        Self::UnknownSource,
        Self::ModeNotAllowed,
        Self::WrongReplyPort,
        Self::Denied,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Fragment => "fragment",
            Self::ExtHeaders => "too_many_ext_headers",
            Self::ShortPayload => "short_payload",
            Self::BadVersion => "bad_version",
            Self::UnknownSource => "unknown_source",
            Self::ModeNotAllowed => "mode_not_allowed",
            Self::WrongReplyPort => "wrong_reply_port",
            Self::Denied => "denied",
        }
    }
}

/// Why a packet passed. `Allowed` is the only in-scope one; the others say
/// why the packet was out of the filter's scope.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PassReason {
    /// NTP for the box whose mode is allowed for its source.
    Allowed = 0,
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    NotIp = 1,
    /// IP, but not UDP (TCP, ICMP, ND, ESP, ...).
    NotUdp = 2,
    /// UDP with neither port equal to the NTP port.
    NotNtpPort = 3,
    /// NTP addressed to someone else: transit traffic through the router.
    NotLocal = 4,
    /// A header cut short before the filter could tell what the packet is;
    /// the kernel's own checks drop it.
    Truncated = 5,
    /// An IP header the kernel rejects anyway (IPv4 IHL < 5, version
    /// mismatch).
    BadHeader = 6,
    /// More VLAN tags than the program looks through.
    VlanTooDeep = 7,
    /// A non-first UDP fragment, passed because the config asks for it.
    NonFirstFragment = 8,
}

impl PassReason {
    pub const COUNT: usize = 9;
    pub const ALL: [PassReason; Self::COUNT] = [
        Self::Allowed,
        Self::NotIp,
        Self::NotUdp,
        Self::NotNtpPort,
        Self::NotLocal,
        Self::Truncated,
        Self::BadHeader,
        Self::VlanTooDeep,
        Self::NonFirstFragment,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::NotIp => "not_ip",
            Self::NotUdp => "not_udp",
            Self::NotNtpPort => "not_ntp_port",
            Self::NotLocal => "not_local",
            Self::Truncated => "truncated",
            Self::BadHeader => "bad_header",
            Self::VlanTooDeep => "vlan_too_deep",
            Self::NonFirstFragment => "non_first_fragment",
        }
    }
}

/// One slot of the counter array.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    Decision {
        class: SourceClass,
        mode: u8,
        verdict: Verdict,
    },
    Drop(DropReason),
    Pass(PassReason),
}

const DECISION_SLOTS: u32 = (SourceClass::COUNT * 8 * 2) as u32;
const DROP_BASE: u32 = DECISION_SLOTS;
const PASS_BASE: u32 = DROP_BASE + DropReason::COUNT as u32;

/// Counters per interface slot.
pub const COUNTER_SLOTS: u32 = PASS_BASE + PassReason::COUNT as u32;

/// Interface slots, [`IFACE_OTHER`] included: 31 interfaces get their own
/// counters. A router filters a handful; the bound keeps the per-CPU array
/// (`COUNTER_SLOTS * MAX_IFACE_SLOTS` u64 per CPU, 16 KiB) fixed.
pub const MAX_IFACE_SLOTS: u32 = 32;
/// The slot of packets from interfaces that have none.
pub const IFACE_OTHER: u32 = 0;
/// Entries of [`NF_IFACES`](crate::names::IFACES), indexed by ifindex: an
/// interface with a higher index counts under [`IFACE_OTHER`]. Linux hands
/// out indexes from 1 upwards, so this is only reached on a box that has
/// created and deleted thousands of interfaces.
pub const MAX_IFINDEX: u32 = 4096;

/// First index of `slot`'s block. A slot out of range (a corrupt
/// `NF_IFACES` value) is [`IFACE_OTHER`]'s, so no packet goes uncounted and
/// no block spills into the next.
#[inline(always)]
pub const fn slot_base(slot: u32) -> u32 {
    let slot = if slot < MAX_IFACE_SLOTS {
        slot
    } else {
        IFACE_OTHER
    };
    slot * COUNTER_SLOTS
}

/// Index of `counter` in `slot`'s block of the counter array.
#[inline(always)]
pub const fn counter_index(slot: u32, counter: Counter) -> u32 {
    slot_base(slot) + counter.index()
}

/// The slot and counter an index of the whole array stands for.
pub const fn split_index(index: u32) -> Option<(u32, Counter)> {
    if index >= COUNTER_SLOTS * MAX_IFACE_SLOTS {
        return None;
    }
    match Counter::from_index(index % COUNTER_SLOTS) {
        Some(c) => Some((index / COUNTER_SLOTS, c)),
        None => None,
    }
}

impl Counter {
    #[inline(always)]
    pub const fn index(self) -> u32 {
        match self {
            Self::Decision {
                class,
                mode,
                verdict,
            } => decision_index(class as u8, mode, verdict),
            Self::Drop(r) => DROP_BASE + r as u32,
            Self::Pass(r) => PASS_BASE + r as u32,
        }
    }

    pub const fn from_index(index: u32) -> Option<Self> {
        if index < DECISION_SLOTS {
            let verdict = if index & 1 == 0 {
                Verdict::Pass
            } else {
                Verdict::Drop
            };
            let class = match SourceClass::from_u8((index / 16) as u8) {
                Some(c) => c,
                None => return None,
            };
            Some(Self::Decision {
                class,
                mode: ((index / 2) % 8) as u8,
                verdict,
            })
        } else if index < PASS_BASE {
            Some(Self::Drop(DropReason::ALL[(index - DROP_BASE) as usize]))
        } else if index < COUNTER_SLOTS {
            Some(Self::Pass(PassReason::ALL[(index - PASS_BASE) as usize]))
        } else {
            None
        }
    }
}

/// `Counter::Decision` index from raw parts, for the XDP program, which has
/// the class as a map byte.
#[inline(always)]
pub const fn decision_index(class: u8, mode: u8, verdict: Verdict) -> u32 {
    ((class as u32 % SourceClass::COUNT as u32) * 8 + (mode as u32 & 7)) * 2 + verdict as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_round_trips() {
        for i in 0..COUNTER_SLOTS {
            let c = Counter::from_index(i).expect("slot in range");
            assert_eq!(c.index(), i, "{c:?}");
        }
        assert_eq!(Counter::from_index(COUNTER_SLOTS), None);
    }

    #[test]
    fn slots_hold_disjoint_blocks() {
        for slot in 0..MAX_IFACE_SLOTS {
            for i in 0..COUNTER_SLOTS {
                let c = Counter::from_index(i).unwrap();
                let at = counter_index(slot, c);
                assert_eq!(split_index(at), Some((slot, c)), "slot {slot} {c:?}");
            }
        }
        let last = counter_index(
            MAX_IFACE_SLOTS - 1,
            Counter::Pass(PassReason::NonFirstFragment),
        );
        assert_eq!(last, COUNTER_SLOTS * MAX_IFACE_SLOTS - 1);
        assert_eq!(split_index(last + 1), None);
        // A corrupt slot value counts under "other", never past the array.
        let drop = Counter::Drop(DropReason::Denied);
        assert_eq!(
            counter_index(MAX_IFACE_SLOTS, drop),
            counter_index(IFACE_OTHER, drop)
        );
        assert_eq!(counter_index(u32::MAX, drop), drop.index());
    }

    #[test]
    fn reasons_are_numbered_in_order_with_unique_names() {
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
            assert!(DropReason::ALL[..i].iter().all(|o| o.name() != r.name()));
        }
        for (i, r) in PassReason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?}");
            assert!(PassReason::ALL[..i].iter().all(|o| o.name() != r.name()));
        }
        assert_eq!(DropReason::Denied.name(), "denied");
    }
}
