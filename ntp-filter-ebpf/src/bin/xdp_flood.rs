//! Benchmark traffic generator (`cargo xtask bench`), run with
//! BPF_PROG_TEST_RUN in live-frames mode: every frame is an IPv4/UDP frame
//! built by the benchmark; this program gives it a random source address in
//! 203.0.113.0/24 (documentation range), updates the IPv4 header checksum,
//! clears the UDP checksum (optional in IPv4), and redirects it into the
//! veth named by `FLOOD_IFINDEX` (set by the loader), whose peer runs the
//! program under test.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::{bpf_get_prandom_u32, bpf_redirect},
    macros::xdp,
    programs::XdpContext,
};

/// The interface to redirect into; written by the loader (`set_global`).
#[unsafe(no_mangle)]
static FLOOD_IFINDEX: u32 = 0;

const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
/// Ethernet + IPv4 without options + the UDP header.
const HEADERS: usize = ETH_LEN + IP_LEN + 8;

#[xdp]
pub fn xdp_flood(ctx: XdpContext) -> u32 {
    // SAFETY: a plain read of a global the loader may have set.
    let ifindex = unsafe { core::ptr::read_volatile(&FLOOD_IFINDEX) };
    if ctx.data() + HEADERS > ctx.data_end() {
        return xdp_action::XDP_ABORTED;
    }
    let frame = ctx.data() as *mut u8;
    // SAFETY: the bounds check above covers every byte touched below.
    unsafe {
        // 1..=254: never the network or broadcast address.
        let host = (bpf_get_prandom_u32() % 254) as u8 + 1;
        // The source becomes 203.0.113.<host>, and the header checksum
        // follows incrementally (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')
        // for each 16-bit word m that changes to m'), from whatever the
        // frame holds: each frame costs the generator a few instructions
        // instead of a sum over the header, and what the generator spends
        // per frame is in every case's rate alike.
        let word =
            |at: usize| -> u32 { (u32::from(*frame.add(at)) << 8) | u32::from(*frame.add(at + 1)) };
        let (src_hi, src_lo) = (ETH_LEN + 12, ETH_LEN + 14);
        let (new_hi, new_lo) = ((203u32 << 8), (113u32 << 8) | u32::from(host));
        let mut sum = u32::from(!(word(ETH_LEN + 10) as u16));
        sum += u32::from(!(word(src_hi) as u16)) + new_hi;
        sum += u32::from(!(word(src_lo) as u16)) + new_lo;
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        let csum = !(sum as u16);
        *frame.add(src_hi) = 203;
        *frame.add(src_hi + 1) = 0;
        *frame.add(src_lo) = 113;
        *frame.add(src_lo + 1) = host;
        *frame.add(ETH_LEN + 10) = (csum >> 8) as u8;
        *frame.add(ETH_LEN + 11) = csum as u8;
        // UDP checksum 0: "none" (the pseudo-header changed with the source).
        *frame.add(ETH_LEN + IP_LEN + 6) = 0;
        *frame.add(ETH_LEN + IP_LEN + 7) = 0;
        bpf_redirect(ifindex, 0) as u32
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
