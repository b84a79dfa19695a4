//! Numbering of the counters.
//!
//! What they mean ([`Counter`]): every packet moves exactly one "why"
//! counter, a [`DropReason`] or a [`PassReason`]. Packets that reach the
//! policy decision (a parsed NTP header from a classified source) also move
//! one `(class, mode, verdict)` counter, so `status` can show drops by
//! class, mode and reason.
//!
//! What the program writes ([`cell`]): one per-CPU *cell* per packet, whose
//! number says both at once for a decided packet (class, mode and outcome)
//! and the reason for the others. The agent adds the cells up into the
//! counters ([`expand`]); a packet is counted with one write.
//!
//! The per-CPU array holds one block of [`CELLS`] cells per interface slot:
//! the packet's ingress interface indexes [`NF_IFACES`](crate::names::IFACES),
//! whose value is the slot. Slot [`IFACE_OTHER`] takes packets from
//! interfaces without one, so the sum over all blocks is always every
//! packet the program saw. The counters are numbered the same way, one
//! block of [`COUNTER_SLOTS`] per interface slot ([`counter_index`]).

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
    /// A mode not allowed for addresses of class
    /// [`Other`](crate::SourceClass::Other) (neither server nor peer).
    /// Operators see it as `unknown_source`, the name it has always had.
    OtherSource = 4,
    /// A mode not allowed for the configured server or peer it came from.
    ModeNotAllowed = 5,
    /// A server reply to a local port we have no request outstanding on.
    WrongReplyPort = 6,
    /// A client request (mode 3) from an address the access list
    /// ([`NF_ACL`](crate::names::ACL)) denies.
    Denied = 7,
    /// An IPv6 packet whose source is IPv4-mapped (`::ffff:0:0/96`) or
    /// IPv4-compatible (`::/96` but `::` and `::1`), RFC 4291: a spoof that
    /// would pass as the IPv4 host it embeds.
    MappedSource = 8,
}

impl DropReason {
    pub const COUNT: usize = 9;
    pub const ALL: [DropReason; Self::COUNT] = [
        Self::Fragment,
        Self::ExtHeaders,
        Self::ShortPayload,
        Self::BadVersion,
        Self::OtherSource,
        Self::ModeNotAllowed,
        Self::WrongReplyPort,
        Self::Denied,
        Self::MappedSource,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Fragment => "fragment",
            Self::ExtHeaders => "too_many_ext_headers",
            Self::ShortPayload => "short_payload",
            Self::BadVersion => "bad_version",
            Self::OtherSource => "unknown_source",
            Self::ModeNotAllowed => "mode_not_allowed",
            Self::WrongReplyPort => "wrong_reply_port",
            Self::Denied => "denied",
            Self::MappedSource => "ipv4_mapped_source",
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
            } => {
                ((class as u32 % SourceClass::COUNT as u32) * 8 + (mode as u32 & 7)) * 2
                    + verdict as u32
            }
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

/// The cells the program counts in, one per packet.
pub mod cell {
    use super::{DropReason, PassReason};
    use crate::SourceClass;

    /// How a decided packet ended: passed, or dropped for one of the
    /// reasons the decision gives.
    pub const OUTCOMES: [Option<DropReason>; 5] = [
        None,
        Some(DropReason::OtherSource),
        Some(DropReason::ModeNotAllowed),
        Some(DropReason::WrongReplyPort),
        Some(DropReason::Denied),
    ];
    pub const ALLOWED: u32 = 0;
    pub const OTHER_SOURCE: u32 = 1;
    pub const MODE_NOT_ALLOWED: u32 = 2;
    pub const WRONG_REPLY_PORT: u32 = 3;
    pub const DENIED: u32 = 4;

    const DECISIONS: u32 = (SourceClass::COUNT * 8 * OUTCOMES.len()) as u32;
    const DROPS: u32 = DECISIONS;
    const PASSES: u32 = DROPS + DropReason::COUNT as u32;
    /// Cells per interface slot.
    pub const COUNT: u32 = PASSES + PassReason::COUNT as u32;

    /// A decided packet: `class` (a map byte), NTP mode, an outcome above.
    #[inline(always)]
    pub const fn decision(class: u8, mode: u8, outcome: u32) -> u32 {
        ((class as u32 % SourceClass::COUNT as u32) * 8 + (mode as u32 & 7)) * OUTCOMES.len() as u32
            + outcome
    }

    /// A packet dropped before the decision.
    #[inline(always)]
    pub const fn drop(reason: DropReason) -> u32 {
        DROPS + reason as u32
    }

    /// A packet passed before the decision (out of scope).
    #[inline(always)]
    pub const fn pass(reason: PassReason) -> u32 {
        PASSES + reason as u32
    }

    /// The counters cell `n` stands for: a decision and its reason, or a
    /// reason alone.
    pub const fn counters(n: u32) -> Option<(Option<super::Counter>, super::Counter)> {
        use super::{Counter, Verdict};
        if n < DECISIONS {
            let outcome = OUTCOMES[(n % OUTCOMES.len() as u32) as usize];
            let rest = n / OUTCOMES.len() as u32;
            let class = match SourceClass::from_u8((rest / 8) as u8) {
                Some(c) => c,
                None => return None,
            };
            let (verdict, why) = match outcome {
                None => (Verdict::Pass, Counter::Pass(PassReason::Allowed)),
                Some(r) => (Verdict::Drop, Counter::Drop(r)),
            };
            let decision = Counter::Decision {
                class,
                mode: (rest % 8) as u8,
                verdict,
            };
            Some((Some(decision), why))
        } else if n < PASSES {
            Some((None, Counter::Drop(DropReason::ALL[(n - DROPS) as usize])))
        } else if n < COUNT {
            Some((None, Counter::Pass(PassReason::ALL[(n - PASSES) as usize])))
        } else {
            None
        }
    }
}

/// Cells of the whole per-CPU array.
pub const CELLS: u32 = cell::COUNT * MAX_IFACE_SLOTS;

/// First cell of `slot`'s block; out of range is [`IFACE_OTHER`]'s, like
/// [`slot_base`].
#[inline(always)]
pub const fn cell_base(slot: u32) -> u32 {
    let slot = if slot < MAX_IFACE_SLOTS {
        slot
    } else {
        IFACE_OTHER
    };
    slot * cell::COUNT
}

/// Adds one slot's cells (`cells[n]`: cell `n`, summed over the CPUs) to
/// its counters (`counters[Counter::index]`).
pub fn expand(cells: &[u64], counters: &mut [u64]) {
    for (n, &v) in cells.iter().enumerate() {
        if v == 0 {
            continue;
        }
        if let Some((decision, why)) = cell::counters(n as u32) {
            if let Some(d) = decision {
                counters[d.index() as usize] += v;
            }
            counters[why.index() as usize] += v;
        }
    }
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

    #[test]
    fn every_cell_is_one_packet_of_the_counters_it_stands_for() {
        let mut seen = [false; COUNTER_SLOTS as usize];
        for n in 0..cell::COUNT {
            let mut cells = [0u64; cell::COUNT as usize];
            cells[n as usize] = 1;
            let mut counters = [0u64; COUNTER_SLOTS as usize];
            expand(&cells, &mut counters);
            let (decision, why) = cell::counters(n).expect("cell in range");
            let mut want = [0u64; COUNTER_SLOTS as usize];
            want[why.index() as usize] = 1;
            if let Some(d) = decision {
                want[d.index() as usize] += 1;
                // A decided packet is allowed or dropped for a decision's
                // reason, never a pre-decision one.
                match (d, why) {
                    (
                        Counter::Decision {
                            verdict: Verdict::Pass,
                            ..
                        },
                        Counter::Pass(PassReason::Allowed),
                    ) => {}
                    (
                        Counter::Decision {
                            verdict: Verdict::Drop,
                            ..
                        },
                        Counter::Drop(r),
                    ) => {
                        assert!(cell::OUTCOMES.contains(&Some(r)), "{r:?}")
                    }
                    other => panic!("cell {n}: {other:?}"),
                }
            }
            assert_eq!(counters, want, "cell {n}");
            for (i, v) in counters.iter().enumerate() {
                seen[i] |= *v != 0;
            }
        }
        // Every counter can be reached from some cell.
        assert!(seen.iter().all(|s| *s), "{seen:?}");
        // The program's numbering lands where the agent reads it.
        let d = cell::decision(SourceClass::Server as u8, 4, cell::WRONG_REPLY_PORT);
        assert_eq!(
            cell::counters(d),
            Some((
                Some(Counter::Decision {
                    class: SourceClass::Server,
                    mode: 4,
                    verdict: Verdict::Drop
                }),
                Counter::Drop(DropReason::WrongReplyPort)
            ))
        );
        assert_eq!(
            cell::counters(cell::drop(DropReason::MappedSource)),
            Some((None, Counter::Drop(DropReason::MappedSource)))
        );
        assert_eq!(
            cell::counters(cell::pass(PassReason::NotUdp)),
            Some((None, Counter::Pass(PassReason::NotUdp)))
        );
        assert_eq!(cell_base(MAX_IFACE_SLOTS), cell_base(IFACE_OTHER));
        assert_eq!(cell_base(MAX_IFACE_SLOTS - 1) + cell::COUNT, CELLS);
    }
}
