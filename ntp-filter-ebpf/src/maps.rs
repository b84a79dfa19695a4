//! The maps, pinned by name under the agent's pin directory so the filter
//! keeps its policy when the agent stops or restarts.

use aya_ebpf::{
    macros::map,
    maps::{Array, LpmTrie, PerCpuArray},
};
use ntp_filter_common::{
    cell_base,
    table::{self, Geometry, Slot, Words},
    AclKey, ConfigRecord, CELLS, IFACE_OTHER, MAX_ACL_RULES, MAX_IFINDEX,
};

/// Settings and the policy table, one entry.
#[map]
pub static NF_CONFIG: Array<ConfigRecord> = Array::pinned(1, 0);

/// Configured servers and peers ([`table`]): slots and directory.
#[map]
pub static NF_SOURCES: Array<Slot> = Array::pinned(table::SOURCES.slots(), 0);
#[map]
pub static NF_SOURCES_DIR: Array<u32> = Array::pinned(table::SOURCES.dir_len(), 0);

/// The box's own unicast and subnet-broadcast addresses (slot `kind`).
#[map]
pub static NF_LOCAL: Array<Slot> = Array::pinned(table::LOCAL.slots(), 0);
#[map]
pub static NF_LOCAL_DIR: Array<u32> = Array::pinned(table::LOCAL.dir_len(), 0);

/// The client access list: CIDR -> `acl::ALLOW` / `acl::DENY`, longest
/// prefix wins. aya-ebpf adds `BPF_F_NO_PREALLOC`, which LPM tries require.
#[map]
pub static NF_ACL: LpmTrie<AclKey, u8> = LpmTrie::pinned(MAX_ACL_RULES, 0);

/// Ingress ifindex -> counter slot (0: none, counted under "other").
#[map]
pub static NF_IFACES: Array<u32> = Array::pinned(MAX_IFINDEX, 0);

/// One block of `cell::COUNT` cells per interface slot.
#[map]
pub static NF_COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(CELLS, 0);

/// The slot holding `w`, if the table has it: two array lookups, both
/// inlined by the verifier. `k0`: `w`'s first word under the tables' key
/// ([`table::key_word`]), which the caller may share between addresses.
#[inline(always)]
fn find(
    dir: &Array<u32>,
    slots: &'static Array<Slot>,
    g: Geometry,
    w: Words,
    k0: u64,
) -> Option<&'static Slot> {
    let h = table::hash_keyed(k0, w[1]);
    let disp = *dir.get(table::bucket(h, g))?;
    if disp == table::EMPTY {
        // Most misses end here: a router has few addresses of either kind.
        return None;
    }
    let slot = slots.get(table::slot(h, disp, g))?;
    (slot.addr[0] == w[0] && slot.addr[1] == w[1]).then_some(slot)
}

/// Whether `w` is one of the box's addresses (`k0` as in [`find`]).
#[inline(always)]
pub fn is_local(w: Words, k0: u64) -> bool {
    find(&NF_LOCAL_DIR, &NF_LOCAL, table::LOCAL, w, k0).is_some_and(|s| s.kind != 0)
}

/// The slot of a configured source (its class and ports), if any.
#[inline(always)]
pub fn source(w: Words, k0: u64) -> Option<&'static Slot> {
    find(&NF_SOURCES_DIR, &NF_SOURCES, table::SOURCES, w, k0)
}

/// Counts one packet in `cell` of the ingress interface's block: one
/// array lookup for the slot, one per-CPU write.
#[inline(always)]
pub fn count(ifindex: u32, cell: u32) {
    let slot = NF_IFACES.get(ifindex).copied().unwrap_or(IFACE_OTHER);
    if let Some(n) = NF_COUNTERS.get_ptr_mut(cell_base(slot) + cell) {
        // SAFETY: a per-CPU slot is only touched by this CPU, and XDP does
        // not preempt itself, so a plain increment cannot race.
        unsafe { *n += 1 };
    }
}
