//! Benchmark traffic generator (`cargo xtask bench`), run with
//! BPF_PROG_TEST_RUN in live-frames mode: every frame is an IPv4/UDP frame
//! built by the benchmark; this program gives it a random source address in
//! 203.0.113.0/24 (documentation range), fixes the IPv4 header checksum,
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
        *frame.add(ETH_LEN + 12) = 203;
        *frame.add(ETH_LEN + 13) = 0;
        *frame.add(ETH_LEN + 14) = 113;
        *frame.add(ETH_LEN + 15) = host;
        // IPv4 header checksum over the 20 bytes, checksum field as zero.
        *frame.add(ETH_LEN + 10) = 0;
        *frame.add(ETH_LEN + 11) = 0;
        let mut sum: u32 = 0;
        let mut i = 0;
        while i < IP_LEN {
            let hi = u32::from(*frame.add(ETH_LEN + i));
            let lo = u32::from(*frame.add(ETH_LEN + i + 1));
            sum += (hi << 8) | lo;
            i += 2;
        }
        sum = (sum & 0xffff) + (sum >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        let csum = !(sum as u16);
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
