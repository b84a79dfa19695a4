//! A bounds-checked read position in the packet.
//!
//! Every read compares `start + off + size_of::<T>()` with `data_end` right
//! before it, in the shape the verifier tracks; a failed check is `None`, so
//! no caller can read past the end by forgetting a check.

use core::mem;

use aya_ebpf::programs::XdpContext;

pub struct Cursor {
    start: usize,
    end: usize,
    off: usize,
}

impl Cursor {
    #[inline(always)]
    pub fn new(ctx: &XdpContext) -> Self {
        Self {
            start: ctx.data(),
            end: ctx.data_end(),
            off: 0,
        }
    }

    /// A reference to a `T` at the current position, if the packet holds one.
    #[inline(always)]
    pub fn peek<T>(&self) -> Option<&T> {
        let at = self.start + self.off;
        if at + mem::size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: the range [at, at + size_of::<T>()) lies inside the packet
        // (checked above); every T used here is a plain byte-array header
        // with alignment 1, so any address is aligned for it.
        Some(unsafe { &*(at as *const T) })
    }

    /// A reference to a `T` `ahead` bytes past the current position, if the
    /// packet holds one. `ahead` must be bounded as for [`skip`](Self::skip).
    #[inline(always)]
    pub fn peek_ahead<T>(&self, ahead: usize) -> Option<&T> {
        let at = self.start + self.off + ahead;
        if at + mem::size_of::<T>() > self.end {
            return None;
        }
        // SAFETY: as in `peek`.
        Some(unsafe { &*(at as *const T) })
    }

    /// Like [`peek`](Self::peek), then moves past the `T`.
    #[inline(always)]
    pub fn read<T>(&mut self) -> Option<&T> {
        let at = self.start + self.off;
        if at + mem::size_of::<T>() > self.end {
            return None;
        }
        self.off += mem::size_of::<T>();
        // SAFETY: as in `peek`.
        Some(unsafe { &*(at as *const T) })
    }

    /// Moves `len` bytes on, if the packet is that long. `len` must be
    /// bounded by the caller (a header length field), which keeps the offset
    /// within what the verifier accepts.
    #[inline(always)]
    pub fn skip(&mut self, len: usize) -> Option<()> {
        if self.start + self.off + len > self.end {
            return None;
        }
        self.off += len;
        Some(())
    }
}

/// The 4 bytes at `p` as a little-endian u32, in one load. Plain Rust
/// (`read_unaligned`) gives four byte loads and the shifts to join them:
/// LLVM assumes BPF cannot load unaligned, but the verifier allows it on
/// packet data where the CPU does (x86, arm64), and the JIT emits one load.
///
/// # Safety
/// `p..p + 4` must lie inside a header the cursor handed out.
#[inline(always)]
pub unsafe fn load_u32(p: *const u8) -> u32 {
    let v: u64;
    // SAFETY: in bounds by the caller's contract; the load has no other
    // effect (pure, readonly, no stack).
    unsafe {
        core::arch::asm!(
            "{v} = *(u32 *)({p} + 0)",
            v = out(reg) v,
            p = in(reg) p,
            options(pure, readonly, nostack),
        )
    };
    v as u32
}

/// The 8 bytes at `p` as a little-endian u64, in one load (see
/// [`load_u32`]).
///
/// # Safety
/// As [`load_u32`], for 8 bytes.
#[inline(always)]
pub unsafe fn load_u64(p: *const u8) -> u64 {
    let v: u64;
    // SAFETY: as in `load_u32`.
    unsafe {
        core::arch::asm!(
            "{v} = *(u64 *)({p} + 0)",
            v = out(reg) v,
            p = in(reg) p,
            options(pure, readonly, nostack),
        )
    };
    v
}
