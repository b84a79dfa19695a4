//! The XDP program: drops NTP addressed to the box by NTP mode and source
//! class, as the router note's client mode table says, and passes everything
//! else untouched. See `policy.rs` for the table, `parse/` for the headers.
#![no_std]
#![no_main]
// One-load reads of unaligned packet fields (parse::cursor).
#![feature(asm_experimental_arch)]

mod maps;
mod parse;
mod policy;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::debug;

use crate::{
    parse::{eth, ipv4, ipv6, Cursor},
    policy::Verdict,
};

/// `--bpf-log`: set at load time (a read-only global, see
/// `ntp_filter_common::BPF_LOG`). When 0 the verifier proves the log
/// branch dead and removes it, so the filter carries no aya-log code.
#[unsafe(no_mangle)]
static BPF_LOG: u8 = 0;

#[xdp]
pub fn ntp_filter(ctx: XdpContext) -> u32 {
    let v = classify(&ctx);
    maps::count(ctx.ingress_ifindex() as u32, v.cell);
    if !v.drop {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: a plain read of a global the loader may have set.
    if unsafe { core::ptr::read_volatile(&BPF_LOG) } != 0 {
        debug!(&ctx, "ntp-filter: drop, counter cell {}", v.cell);
    }
    xdp_action::XDP_DROP
}

#[inline(always)]
fn classify(ctx: &XdpContext) -> Verdict {
    let mut cur = Cursor::new(ctx);
    let l4 = match eth::parse(&mut cur) {
        Ok(eth::L3::Ipv4) => ipv4::parse(&mut cur),
        Ok(eth::L3::Ipv6) => ipv6::parse(&mut cur),
        Err(reason) => Err(reason),
    };
    match l4 {
        Ok(l4) => policy::decide(&mut cur, &l4),
        Err(reason) => policy::pass(reason),
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
