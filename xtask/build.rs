//! Whether this machine can run `systemd-analyze verify` on the installed
//! unit: without it, that unit test is compiled as `#[ignore]` with the
//! reason, so libtest reports the skip (and `cargo xtask test` under CI,
//! where no test may skip, fails) instead of a silent pass.

use std::path::Path;

const UNITS: &str = "/usr/lib/systemd/system";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(no_systemd_analyze)");
    println!("cargo::rerun-if-env-changed=PATH");
    let analyze = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("systemd-analyze"))
            .find(|p| p.is_file())
    });
    match &analyze {
        // Found: rebuild if it goes away.
        Some(p) => println!("cargo::rerun-if-changed={}", p.display()),
        // Missing: rebuild once it is installed.
        None => println!("cargo::rerun-if-changed=/usr/bin/systemd-analyze"),
    }
    println!("cargo::rerun-if-changed={UNITS}");
    if analyze.is_none() || !Path::new(UNITS).is_dir() {
        println!("cargo::rustc-cfg=no_systemd_analyze");
    }
}
