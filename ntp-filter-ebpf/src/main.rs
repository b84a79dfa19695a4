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
use ntp_filter_common::PassReason;

use crate::{
    parse::{eth, ipv4, ipv6, Cursor},
    policy::Verdict,
};

/// `--bpf-log`: set at load time (a read-only global, see
/// `ntp_filter_common::BPF_LOG`). When 0 the verifier proves the log
/// branch dead and removes it, so the filter carries no aya-log code.
#[unsafe(no_mangle)]
static BPF_LOG: u8 = 0;

/// `--count-out-of-scope`: set at load time like [`BPF_LOG`]. When 0,
/// packets passed as not IP, not UDP, not the NTP port or not for the box
/// (the bulk of a router's traffic) are not counted, which spares them the
/// interface and counter lookups.
#[unsafe(no_mangle)]
static COUNT_OUT_OF_SCOPE: u8 = 0;

#[xdp]
pub fn ntp_filter(ctx: XdpContext) -> u32 {
    let v = classify(&ctx);
    // SAFETY: a plain read of a global the loader may have set.
    let count_all = unsafe { core::ptr::read_volatile(&COUNT_OUT_OF_SCOPE) } != 0;
    if count_all || !policy::out_of_scope(v.cell) {
        maps::count(ctx.ingress_ifindex() as u32, v.cell);
    }
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
    // One decision per family, so each is compiled with what its family
    // knows (an IPv4 address's upper words are constants). The config
    // lookup comes as soon as the packet may concern the filter: not for
    // other protocols, and before the IPv4 header's fields are read, so
    // they need not be kept across it.
    match eth::parse(&mut cur) {
        Ok(eth::L3::Ipv4) => {
            if let Err(reason) = ipv4::check(&cur) {
                return policy::pass(reason);
            }
            let cfg = policy::config();
            // Most UDP a router sees is not NTP: its ports decide before
            // the addresses are read.
            let ahead = ipv4::udp_ahead(&cur);
            if let Some(udp) = ahead {
                if !policy::in_scope(udp, cfg) {
                    return policy::pass(PassReason::NotNtpPort);
                }
            }
            match ipv4::parse(&mut cur) {
                Ok(l4) => policy::decide(&mut cur, &l4, cfg, ahead.is_some()),
                Err(reason) => policy::pass(reason),
            }
        }
        Ok(eth::L3::Ipv6) => match ipv6::parse(&mut cur) {
            Ok(l4) => policy::decide(&mut cur, &l4, policy::config(), false),
            Err(reason) => policy::pass(reason),
        },
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
