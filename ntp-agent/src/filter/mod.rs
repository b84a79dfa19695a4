//! The XDP filter seen from userspace: load, attach, pins, maps, reconcile,
//! local addresses, per-interface counter slots, the access list's keys,
//! and reading it all back (inspect).

pub mod acl;
pub mod attach;
pub mod inspect;
pub mod links;
pub mod local_addrs;
pub mod lock;
pub mod maps;
pub mod object;
pub mod pins;
pub mod reconcile;
pub mod slots;
pub mod stats;
pub mod table;

use anyhow::{bail, Context as _, Result};
use aya::{programs::Xdp, Ebpf, EbpfLoader};
use ntp_filter_common::names;

pub use attach::{Attachment, XdpModeArg};
pub use maps::FilterMaps;
pub use pins::PinDir;
pub use reconcile::Desired;

/// What the program is built to do beyond filtering, fixed when it is
/// loaded: read-only globals the verifier knows, so a switch that is off
/// costs nothing (its code is removed as dead).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// `--bpf-log`: an aya-log record of each drop.
    pub bpf_log: bool,
    /// `--count-out-of-scope`: count the packets passed as not IP, not
    /// UDP, not the NTP port or not for the box too.
    pub count_out_of_scope: bool,
}

impl LoadOptions {
    /// Every packet counted, no log: what the fixture tests expect.
    pub const COUNT_ALL: LoadOptions = LoadOptions {
        bpf_log: false,
        count_out_of_scope: true,
    };
}

/// Loads the embedded program, reusing (or creating and pinning) the maps
/// under `pins`, and verifies it.
pub fn load(pins: &PinDir, opts: LoadOptions) -> Result<Ebpf> {
    load_object(object::PROGRAM_OBJECT, pins, opts)
}

/// [`load`] with another build of the program (the benchmark's A/B run of
/// an older object, same map layout).
pub fn load_object(bytes: &[u8], pins: &PinDir, opts: LoadOptions) -> Result<Ebpf> {
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(pins.root())
        .override_global(ntp_filter_common::BPF_LOG, &u8::from(opts.bpf_log), true)
        .override_global(
            ntp_filter_common::COUNT_OUT_OF_SCOPE,
            &u8::from(opts.count_out_of_scope),
            true,
        )
        .load(bytes)
        .context("loading the XDP program")?;
    let prog: &mut Xdp = program(&mut ebpf)?;
    prog.load().context("the kernel rejected the XDP program")?;
    Ok(ebpf)
}

pub fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    let Some(prog) = ebpf.program_mut(names::PROGRAM) else {
        bail!("the embedded object has no program {}", names::PROGRAM);
    };
    Ok(prog.try_into()?)
}

/// The interface index, or a clear error naming the interface.
pub fn ifindex(iface: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(iface)
        .map_err(|_| anyhow::anyhow!("unknown interface {iface:?}: check `ip link` for its name"))
}
