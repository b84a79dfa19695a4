//! The maps, pinned by name under the agent's pin directory so the filter
//! keeps its policy when the agent stops or restarts.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray},
};
use ntp_filter_common::{
    slot_base, AclKey, AddrKey, FilterConfig, ModeMask, SourceClass, SourceEntry, COUNTER_SLOTS,
    IFACE_OTHER, MAX_ACL_RULES, MAX_IFACE_SLOTS, MAX_IFINDEX, MAX_LOCAL_ADDRS, MAX_SOURCES,
};

#[map]
pub static NF_CONFIG: Array<FilterConfig> = Array::pinned(1, 0);

/// Allowed NTP modes per [`SourceClass`].
#[map]
pub static NF_POLICY: Array<ModeMask> = Array::pinned(SourceClass::COUNT as u32, 0);

/// Configured servers and peers.
#[map]
pub static NF_SOURCES: HashMap<AddrKey, SourceEntry> = HashMap::pinned(MAX_SOURCES, 0);

/// The box's own unicast and subnet-broadcast addresses (a `local_kind`).
#[map]
pub static NF_LOCAL: HashMap<AddrKey, u8> = HashMap::pinned(MAX_LOCAL_ADDRS, 0);

/// The client access list: CIDR -> `acl::ALLOW` / `acl::DENY`, longest
/// prefix wins. aya-ebpf adds `BPF_F_NO_PREALLOC`, which LPM tries require.
#[map]
pub static NF_ACL: LpmTrie<AclKey, u8> = LpmTrie::pinned(MAX_ACL_RULES, 0);

/// Ingress ifindex -> counter slot (0: none, counted under "other").
#[map]
pub static NF_IFACES: Array<u32> = Array::pinned(MAX_IFINDEX, 0);

/// One block of `COUNTER_SLOTS` counters per interface slot.
#[map]
pub static NF_COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(COUNTER_SLOTS * MAX_IFACE_SLOTS, 0);

/// Where the counters of packets from `ifindex` start. An array lookup
/// (which the verifier inlines into a bounds check and an add); an index
/// past the map is a miss, so no explicit bound is needed.
#[inline(always)]
pub fn counter_base(ifindex: u32) -> u32 {
    slot_base(NF_IFACES.get(ifindex).copied().unwrap_or(IFACE_OTHER))
}

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(slot) = NF_COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot is only touched by this CPU, and XDP does
        // not preempt itself, so a plain increment cannot race.
        unsafe { *slot += 1 };
    }
}
