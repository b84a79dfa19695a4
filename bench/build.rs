//! Builds the eBPF crate's baseline programs (`xdp_pass`, `xdp_drop`) and
//! the traffic generator (`xdp_flood`) into OUT_DIR, where `objects.rs`
//! embeds them. The filter itself comes from ntp-agent (`filter::load`), the
//! object the agent ships.
use anyhow::{anyhow, Context as _};
use aya_build::{build_ebpf, Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let ebpf = Package {
        name: "ntp-filter-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../ntp-filter-ebpf"),
        ..Default::default()
    };
    build_ebpf([ebpf], Toolchain::default())
        .context("building the eBPF baselines failed; `cargo xtask setup` installs nightly rust-src and bpf-linker")
        .map_err(|e| anyhow!("{e:#}"))
}
