//! The benchmark's own eBPF objects (built from `ntp-filter-ebpf/src/bin/`
//! by build.rs) and loading them.

use anyhow::{Context as _, Result};
use aya::{include_bytes_aligned, programs::Xdp, Ebpf, EbpfLoader};

/// `xdp_pass`: returns XDP_PASS, nothing else.
pub static XDP_PASS: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_pass"));
/// `xdp_drop`: returns XDP_DROP, nothing else.
pub static XDP_DROP: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_drop"));
/// `xdp_flood`: randomises the IPv4 source and redirects to `FLOOD_IFINDEX`.
pub static XDP_FLOOD: &[u8] = include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xdp_flood"));

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    Pass,
    Drop,
}

impl Baseline {
    pub fn program_name(self) -> &'static str {
        match self {
            Baseline::Pass => "xdp_pass",
            Baseline::Drop => "xdp_drop",
        }
    }

    fn object(self) -> &'static [u8] {
        match self {
            Baseline::Pass => XDP_PASS,
            Baseline::Drop => XDP_DROP,
        }
    }

    /// Loads the program into the kernel (not attached anywhere).
    pub fn load(self) -> Result<Ebpf> {
        let mut ebpf = Ebpf::load(self.object())
            .with_context(|| format!("loading the {} object", self.program_name()))?;
        xdp(&mut ebpf, self.program_name())?
            .load()
            .with_context(|| format!("the kernel rejected {}", self.program_name()))?;
        Ok(ebpf)
    }
}

pub fn xdp<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut Xdp> {
    let prog = ebpf
        .program_mut(name)
        .with_context(|| format!("no program {name} in the object"))?;
    Ok(prog.try_into()?)
}

/// The flood generator, redirecting into interface `ifindex` (of the
/// namespace the test run is started from).
pub fn load_flood(ifindex: u32) -> Result<Ebpf> {
    let mut ebpf = EbpfLoader::new()
        .override_global("FLOOD_IFINDEX", &ifindex, true)
        .load(XDP_FLOOD)
        .context("loading the xdp_flood object")?;
    xdp(&mut ebpf, "xdp_flood")?
        .load()
        .context("the kernel rejected xdp_flood")?;
    Ok(ebpf)
}
