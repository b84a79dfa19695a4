//! The maps, pinned by name under the agent's pin directory so the filter
//! keeps its policy when the agent stops or restarts.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LpmTrie, PerCpuArray},
};
use ntp_filter_common::{
    AclKey, AddrKey, FilterConfig, ModeMask, SourceClass, SourceEntry, COUNTER_SLOTS,
    MAX_ACL_RULES, MAX_LOCAL_ADDRS, MAX_SOURCES,
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

#[map]
pub static NF_COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(COUNTER_SLOTS, 0);

#[inline(always)]
pub fn bump(index: u32) {
    if let Some(slot) = NF_COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU slot is only touched by this CPU, and XDP does
        // not preempt itself, so a plain increment cannot race.
        unsafe { *slot += 1 };
    }
}
