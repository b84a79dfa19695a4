//! The address tables (servers and peers, the box's own addresses): array
//! maps indexed by a collision-free hash the agent lays out, so the XDP
//! program finds an address with two array lookups, which the verifier
//! inlines, instead of a hash-map lookup (a jhash call over a 16-byte key).
//!
//! Two levels, as in "hash and displace" (CHD): an address's hash picks a
//! directory entry (its *bucket*); the entry holds a displacement chosen by
//! the agent so that every address of the bucket lands on a slot of its own.
//! The slot holds the whole address, so an address that is not in the table
//! finds a slot holding another address (or nothing) and misses.
//!
//! The program and the agent compute the same functions below, compiled
//! from this one source for both.

/// An address as two little-endian words: bytes 0..8 and 8..16 of the
/// 16-byte form (IPv4 as `::ffff:a.b.c.d`).
pub type Words = [u64; 2];

/// Geometry of one table. The slots are kept at most half full and the
/// buckets hold two addresses on average at capacity, so the agent finds a
/// displacement for a bucket after a few tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// log2 of the directory's entries.
    pub dir_bits: u32,
    /// log2 of the slots.
    pub slot_bits: u32,
    /// How many addresses the agent puts in it.
    pub capacity: u32,
}

impl Geometry {
    pub const fn dir_len(self) -> u32 {
        1 << self.dir_bits
    }

    pub const fn slots(self) -> u32 {
        1 << self.slot_bits
    }
}

/// Servers and peers ([`crate::MAX_SOURCES`]).
pub const SOURCES: Geometry = Geometry {
    dir_bits: 9,
    slot_bits: 11,
    capacity: crate::MAX_SOURCES,
};

/// The box's own addresses ([`crate::MAX_LOCAL_ADDRS`]).
pub const LOCAL: Geometry = Geometry {
    dir_bits: 11,
    slot_bits: 13,
    capacity: crate::MAX_LOCAL_ADDRS,
};

/// The displacement of a bucket with no address: the program stops at the
/// directory. Every other bucket's displacement is not 0.
pub const EMPTY: u32 = 0;

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
const MIX: u64 = 0xff51_afd7_ed55_8ccd;

/// The hash of an address under the tables' `seed`
/// ([`ConfigRecord::table_seed`](crate::ConfigRecord::table_seed)).
/// Multiplicative: the high bits of the product depend on every bit of the
/// folded input, and an IPv4 address sits in the low half of it (`w1`
/// rotated by 32), where it moves the most bits. Two addresses collide
/// (same hash, so the same bucket and slot under every displacement) only
/// when [`key_word`] of their first words differ by exactly the difference
/// of their rotated second words: without a secret seed an IPv6 host could
/// solve that for its interface identifier and keep a configured source
/// out of the table; with one it cannot. Addresses sharing the first word
/// (all IPv4 ones) never collide.
#[inline(always)]
pub const fn hash(w: Words, seed: u64) -> u64 {
    hash_keyed(key_word(w[0], seed), w[1])
}

/// [`hash`] from the first word already under the key
/// ([`key_word`]`(w[0], seed)`): the program computes that once for an
/// IPv4 packet, whose two addresses share the first word (0).
#[inline(always)]
pub const fn hash_keyed(k0: u64, w1: u64) -> u64 {
    (k0 ^ w1.rotate_right(32)).wrapping_mul(GOLDEN)
}

/// The first word under the key, through a multiply, a shift and another
/// multiply, so that every bit of the seed reaches every bit of the
/// difference between two first words (a single multiply would let
/// seeds that differ in high bits act alike).
#[inline(always)]
pub const fn key_word(w0: u64, seed: u64) -> u64 {
    let v = (w0 ^ seed).wrapping_mul(MIX);
    (v ^ (v >> 32)).wrapping_mul(GOLDEN)
}

/// The directory entry of an address with hash `h`.
#[inline(always)]
pub const fn bucket(h: u64, g: Geometry) -> u32 {
    (h >> (64 - g.dir_bits)) as u32
}

/// The slot an address with hash `h` lands on under displacement `disp`.
#[inline(always)]
pub const fn slot(h: u64, disp: u32, g: Geometry) -> u32 {
    ((h ^ disp as u64).wrapping_mul(MIX) >> (64 - g.slot_bits)) as u32
}

/// IPv4 `a.b.c.d` (its 4 bytes read as a little-endian u32, as the program
/// loads them from the packet) as [`Words`] of `::ffff:a.b.c.d`.
#[inline(always)]
pub const fn v4_words(le: u32) -> Words {
    [0, ((le as u64) << 32) | 0xffff_0000]
}

/// The 16-byte form as [`Words`].
#[inline(always)]
pub const fn words(addr: &[u8; 16]) -> Words {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    let mut i = 0;
    while i < 8 {
        lo[i] = addr[i];
        hi[i] = addr[8 + i];
        i += 1;
    }
    [u64::from_le_bytes(lo), u64::from_le_bytes(hi)]
}

/// [`words`] backwards.
pub const fn addr(w: Words) -> [u8; 16] {
    let lo = w[0].to_le_bytes();
    let hi = w[1].to_le_bytes();
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 8 {
        out[i] = lo[i];
        out[8 + i] = hi[i];
        i += 1;
    }
    out
}

/// RFC 4291 2.5.5: an IPv4-mapped (`::ffff:0:0/96`) or IPv4-compatible
/// (`::/96` except `::` and `::1`) IPv6 address. As an IPv6 packet's source
/// it is a spoof: it would be classed as the IPv4 host it embeds.
#[inline(always)]
pub const fn embeds_ipv4(w: Words) -> bool {
    let (low32, v4) = (w[1] & 0xffff_ffff, w[1] >> 32);
    // `::1` has its one bit in the last byte: v4 (little-endian) 1 << 24.
    w[0] == 0 && (low32 == 0xffff_0000 || (low32 == 0 && v4 != 0 && v4 != 1 << 24))
}

/// One slot of an address table. All zeros is an empty slot (and the
/// address `::`, which is never a source or a local address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub addr: Words,
    /// Sources: a [`SourceClass`](crate::SourceClass) as u8. Local: 0.
    pub class: u8,
    /// Local: a [`local_kind`](crate::local_kind). Sources: 0.
    pub kind: u8,
    /// Sources: as [`SourceEntry::reply_port`](crate::SourceEntry).
    pub reply_port: u16,
    /// Sources: as [`SourceEntry::server_port`](crate::SourceEntry).
    pub server_port: u16,
    pub _pad: u16,
}

const _: () = assert!(core::mem::size_of::<Slot>() == 24);

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    /// The address an IPv6 host in the /64 `prefix` (first word) would pick
    /// to collide with `target` if it knew `seed`: solves the hash's
    /// pre-multiplication state for the interface identifier.
    fn collider(target: Words, prefix: u64, seed: u64) -> Words {
        let want = key_word(target[0], seed) ^ target[1].rotate_right(32);
        let w1 = (want ^ key_word(prefix, seed)).rotate_left(32);
        [prefix, w1]
    }

    /// Why the tables are keyed: with a known key a host can always find an
    /// address with a configured source's hash (which then can never be
    /// placed beside it); under any other key — one bit off included — the
    /// same address is just an address.
    #[test]
    fn a_collision_needs_the_key() {
        let target = v4_words(u32::from_le_bytes([192, 0, 2, 11]));
        let prefix = words(&[0x20, 1, 0xd, 0xb8, 0xb, 0xad, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])[0];
        for known in [0, 0x0123_4567_89ab_cdef, u64::MAX] {
            let forged = collider(target, prefix, known);
            assert_ne!(forged, target);
            assert_eq!(hash(forged, known), hash(target, known));
            let others = (0..64)
                .map(|bit| known ^ (1 << bit))
                .chain([1, 42, 0x8000_0000]);
            for other in others.filter(|&o| o != known) {
                assert_ne!(
                    hash(forged, other),
                    hash(target, other),
                    "{known:#x} vs {other:#x}"
                );
            }
        }
        // Addresses sharing the first word (every IPv4 address) never
        // collide, whatever the key.
        for seed in [0, 7, u64::MAX] {
            let a = v4_words(u32::from_le_bytes([192, 0, 2, 11]));
            let b = v4_words(u32::from_le_bytes([192, 0, 2, 12]));
            assert_ne!(hash(a, seed), hash(b, seed));
        }
    }

    #[test]
    fn words_round_trip_and_v4_matches_the_mapped_form() {
        let a = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99];
        assert_eq!(addr(words(&a)), a);
        let mapped = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 20];
        assert_eq!(
            v4_words(u32::from_le_bytes([192, 0, 2, 20])),
            words(&mapped)
        );
    }

    #[test]
    fn embedded_ipv4_is_rfc_4291s() {
        let w = |s: &str| words(&s.parse::<std::net::Ipv6Addr>().unwrap().octets());
        for yes in [
            "::ffff:192.0.2.20",
            "::ffff:0:0",
            "::192.0.2.20",
            "::1.0.0.0",
            "::2",
            "::ff:ffff",
        ] {
            assert!(embeds_ipv4(w(yes)), "{yes}");
        }
        for no in [
            "::",
            "::1",
            "::1:ffff:192.0.2.20",
            "::1:0:0",
            "64:ff9b::192.0.2.20",
            "2001:db8::ffff:192.0.2.20",
            "::ffff:1:192.0.2.20",
        ] {
            assert!(!embeds_ipv4(w(no)), "{no}");
        }
    }
}
