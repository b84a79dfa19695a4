//! The XDP program: drops NTP addressed to the box by NTP mode and source
//! class, as the router note's client mode table says, and passes everything
//! else untouched. See `policy.rs` for the table, `parse/` for the headers.
#![no_std]
#![no_main]

mod maps;
mod parse;
mod policy;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use aya_log_ebpf::debug;
use ntp_filter_common::{config_flags, Counter, FilterConfig, PassReason};

use crate::{
    maps::{bump, counter_base, NF_CONFIG},
    parse::{eth, ipv4, ipv6, Cursor},
    policy::Outcome,
};

const DEFAULT_CONFIG: FilterConfig = FilterConfig {
    ntp_port: 0,
    flags: 0,
};

#[xdp]
pub fn ntp_filter(ctx: XdpContext) -> u32 {
    let cfg = NF_CONFIG.get(0).copied().unwrap_or(DEFAULT_CONFIG);
    let outcome = classify(&ctx, &cfg);
    let base = counter_base(ctx.ingress_ifindex() as u32);
    let (action, why) = match outcome {
        Outcome::Pass(reason) => (xdp_action::XDP_PASS, Counter::Pass(reason)),
        Outcome::Drop(reason) => (xdp_action::XDP_DROP, Counter::Drop(reason)),
        Outcome::Decided { decision, drop } => {
            bump(base + decision);
            match drop {
                Some(reason) => (xdp_action::XDP_DROP, Counter::Drop(reason)),
                None => (xdp_action::XDP_PASS, Counter::Pass(PassReason::Allowed)),
            }
        }
    };
    bump(base + why.index());
    if action == xdp_action::XDP_DROP && cfg.flags & config_flags::LOG_DROPS != 0 {
        debug!(&ctx, "ntp-filter: drop, counter {}", why.index());
    }
    action
}

#[inline(always)]
fn classify(ctx: &XdpContext, cfg: &FilterConfig) -> Outcome {
    let mut cur = Cursor::new(ctx);
    let l4 = match eth::parse(&mut cur) {
        Ok(eth::L3::Ipv4) => ipv4::parse(&mut cur),
        Ok(eth::L3::Ipv6) => ipv6::parse(&mut cur),
        Err(reason) => Err(reason),
    };
    match l4 {
        Ok(l4) => policy::decide(&mut cur, &l4, cfg),
        Err(reason) => Outcome::Pass(reason),
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
