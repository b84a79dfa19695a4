//! Builds the XDP program (nightly, bpf-linker) and drops the object in
//! OUT_DIR, where `filter::object` embeds it: the agent ships as one binary.
use anyhow::{anyhow, Context as _};
use aya_build::{build_ebpf, Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let ebpf = Package {
        name: "ntp-filter-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../ntp-filter-ebpf"),
        ..Default::default()
    };
    build_ebpf([ebpf], Toolchain::default())
        .context("building the XDP program failed; `cargo xtask setup` installs nightly rust-src and bpf-linker")
        .map_err(|e| anyhow!("{e:#}"))
}
