//! Pure parsers for the outputs setup and test look at, kept free of I/O so
//! they can be unit-tested against captured samples.

/// Major LLVM version from `rustc -vV` (`LLVM version: 22.1.4` → 22).
pub fn llvm_major(rustc_vv: &str) -> Option<u32> {
    rustc_vv
        .lines()
        .find_map(|l| l.trim().strip_prefix("LLVM version:"))
        .and_then(|v| v.trim().split('.').next()?.parse().ok())
}

/// Whether /proc/mounts content has a bpf filesystem at `mountpoint`.
pub fn bpffs_mounted(proc_mounts: &str, mountpoint: &str) -> bool {
    proc_mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_dev, mp, fstype) = (f.next(), f.next(), f.next());
        mp == Some(mountpoint) && fstype == Some("bpf")
    })
}

/// Whether a `dpkg-query -W -f='${Status}'` answer means "installed"
/// (`install ok installed`, `hold ok installed`; not `deinstall ok config-files`).
pub fn dpkg_installed(status: &str) -> bool {
    let w: Vec<&str> = status.split_whitespace().collect();
    w.len() == 3 && w[1] == "ok" && w[2] == "installed"
}

/// Whether `rustup toolchain list` shows `name` (e.g. `nightly`).
pub fn rustup_has_toolchain(list: &str, name: &str) -> bool {
    list.lines().any(|l| {
        let t = l.split_whitespace().next().unwrap_or("");
        t == name || t.starts_with(&format!("{name}-"))
    })
}

/// Whether `rustup component list --installed` shows `component`
/// (`rust-src`, or `clippy-x86_64-unknown-linux-gnu` for `clippy`).
pub fn rustup_has_component(list: &str, component: &str) -> bool {
    list.lines().any(|l| {
        let t = l.split_whitespace().next().unwrap_or("");
        t == component || t.starts_with(&format!("{component}-"))
    })
}

/// LLVM major a dynamically linked bpf-linker uses, from `ldd` output
/// (`libLLVM.so.22.1 => …` or `libLLVM-22.so => …`).
pub fn llvm_major_from_ldd(ldd: &str) -> Option<u32> {
    ldd.lines().find_map(|l| {
        let name = l.split_whitespace().next()?;
        let v = name
            .strip_prefix("libLLVM.so.")
            .or_else(|| name.strip_prefix("libLLVM-")?.strip_suffix(".so"))?;
        v.split('.').next()?.parse().ok()
    })
}

/// LLVM major bpf-linker was installed for, from the `llvm-N` feature that
/// cargo recorded in `$CARGO_HOME/.crates2.json`.
pub fn llvm_major_from_crates2(json: &str) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let installs = v.get("installs")?.as_object()?;
    installs
        .iter()
        .filter(|(k, _)| k.starts_with("bpf-linker "))
        .filter_map(|(_, e)| e.get("features")?.as_array())
        .flatten()
        .find_map(|f| f.as_str()?.strip_prefix("llvm-")?.parse().ok())
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TestCounts {
    pub runs: u32,
    pub ok_runs: u32,
    pub passed: u32,
    pub failed: u32,
    pub ignored: u32,
    pub filtered_out: u32,
}

impl TestCounts {
    pub fn add(&mut self, o: TestCounts) {
        self.runs += o.runs;
        self.ok_runs += o.ok_runs;
        self.passed += o.passed;
        self.failed += o.failed;
        self.ignored += o.ignored;
        self.filtered_out += o.filtered_out;
    }
}

/// Parses libtest's summary line:
/// `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s`.
pub fn test_result(line: &str) -> Option<TestCounts> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let (status, rest) = rest.split_once(". ")?;
    let mut c = TestCounts {
        runs: 1,
        ok_runs: u32::from(status == "ok"),
        ..Default::default()
    };
    for part in rest.split(';') {
        let Some((n, what)) = part.trim().split_once(' ') else {
            continue;
        };
        let Ok(n) = n.parse::<u32>() else { continue };
        match what {
            "passed" => c.passed = n,
            "failed" => c.failed = n,
            "ignored" => c.ignored = n,
            "filtered out" => c.filtered_out = n,
            _ => {}
        }
    }
    Some(c)
}

/// Name of a failed test from libtest's `test some::name ... FAILED` line.
pub fn failed_test(line: &str) -> Option<&str> {
    line.trim()
        .strip_prefix("test ")?
        .strip_suffix(" ... FAILED")
}

/// A skipped test and why, from the runner's `test NAME ... ignored (WHY)`
/// or libtest's `test NAME ... ignored, WHY` (`None` as the reason for a
/// bare `ignored`).
pub fn skipped_test(line: &str) -> Option<(&str, Option<&str>)> {
    let rest = line.trim().strip_prefix("test ")?;
    let (name, outcome) = rest.split_once(" ... ")?;
    let reason = outcome.strip_prefix("ignored")?;
    let reason = reason
        .strip_prefix(" (")
        .and_then(|r| r.strip_suffix(')'))
        .or_else(|| reason.strip_prefix(", "))
        .map(str::trim)
        .filter(|r| !r.is_empty());
    Some((name.trim(), reason))
}

/// Finds an embedded little-endian 64-bit ELF object for BPF (e_machine 247)
/// in a binary; returns its offset and size (end of its section headers).
pub fn find_bpf_elf(bin: &[u8]) -> Option<(usize, usize)> {
    const MAGIC: &[u8] = b"\x7fELF\x02\x01\x01";
    const EM_BPF: u16 = 247;
    let u16_at = |b: &[u8], o: usize| Some(u16::from_le_bytes(b.get(o..o + 2)?.try_into().ok()?));
    let u64_at = |b: &[u8], o: usize| Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?));
    let mut from = 0;
    while let Some(i) = bin[from..].windows(MAGIC.len()).position(|w| w == MAGIC) {
        let off = from + i;
        let elf = &bin[off..];
        if u16_at(elf, 18) == Some(EM_BPF) {
            let shoff = u64_at(elf, 0x28).unwrap_or(0) as usize;
            let shentsize = u16_at(elf, 0x3a).unwrap_or(0) as usize;
            let shnum = u16_at(elf, 0x3c).unwrap_or(0) as usize;
            return Some((off, shoff + shentsize * shnum));
        }
        from = off + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llvm_major_from_rustc_vv() {
        let out = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\nbinary: rustc\n\
                   host: x86_64-unknown-linux-gnu\nrelease: 1.97.0-nightly\nLLVM version: 22.1.4\n";
        assert_eq!(llvm_major(out), Some(22));
        assert_eq!(llvm_major("LLVM version: 9.0\n"), Some(9));
        assert_eq!(llvm_major("rustc 1.0.0\n"), None);
    }

    #[test]
    fn bpffs_in_proc_mounts() {
        let without = "proc /proc proc rw,relatime 0 0\nsysfs /sys sysfs rw 0 0\n\
                       tmpfs /sys/fs/bpf tmpfs rw 0 0\n";
        assert!(!bpffs_mounted(without, "/sys/fs/bpf"));
        let with =
            format!("{without}bpf /sys/fs/bpf bpf rw,nosuid,nodev,noexec,relatime,mode=700 0 0\n");
        assert!(bpffs_mounted(&with, "/sys/fs/bpf"));
        assert!(!bpffs_mounted(
            "bpf /sys/fs/bpf/x bpf rw 0 0\n",
            "/sys/fs/bpf"
        ));
    }

    #[test]
    fn dpkg_status_words() {
        assert!(dpkg_installed("install ok installed"));
        assert!(dpkg_installed("hold ok installed\n"));
        assert!(!dpkg_installed("deinstall ok config-files"));
        assert!(!dpkg_installed("install ok unpacked"));
        assert!(!dpkg_installed(""));
    }

    #[test]
    fn rustup_lists() {
        let tl =
            "stable-x86_64-unknown-linux-gnu (active, default)\nnightly-x86_64-unknown-linux-gnu\n";
        assert!(rustup_has_toolchain(tl, "nightly"));
        assert!(rustup_has_toolchain(tl, "stable"));
        assert!(!rustup_has_toolchain(tl, "beta"));
        assert!(!rustup_has_toolchain(
            "nightly-2024-01-01-x86_64-unknown-linux-gnu\n",
            "beta"
        ));
        let cl = "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\nrust-src\n\
                  rust-std-x86_64-unknown-linux-gnu\n";
        assert!(rustup_has_component(cl, "rust-src"));
        assert!(rustup_has_component(cl, "clippy"));
        assert!(!rustup_has_component(cl, "rustfmt"));
        assert!(!rustup_has_component(
            "rust-std-x86_64-unknown-linux-gnu\n",
            "rust-src"
        ));
    }

    #[test]
    fn bpf_linker_llvm() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                   \tlibLLVM.so.22.1 => /usr/lib/llvm-22/lib/libLLVM.so.22.1 (0x00007fb7)\n";
        assert_eq!(llvm_major_from_ldd(ldd), Some(22));
        assert_eq!(
            llvm_major_from_ldd("\tlibLLVM-19.so => /usr/lib/x (0x1)\n"),
            Some(19)
        );
        assert_eq!(
            llvm_major_from_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n"),
            None
        );
        let crates2 = r#"{"installs":{
            "bpf-linker 0.13.0 (registry+https://github.com/rust-lang/crates.io-index)":
              {"features":["llvm-22"],"no_default_features":true},
            "ripgrep 14.0.0 (registry+x)": {"features":[]}}}"#;
        assert_eq!(llvm_major_from_crates2(crates2), Some(22));
        assert_eq!(llvm_major_from_crates2(r#"{"installs":{}}"#), None);
        assert_eq!(llvm_major_from_crates2("not json"), None);
    }

    #[test]
    fn libtest_lines() {
        let ok = "test result: ok. 12 passed; 0 failed; 2 ignored; 0 measured; 3 filtered out; finished in 0.41s";
        assert_eq!(
            test_result(ok),
            Some(TestCounts {
                runs: 1,
                ok_runs: 1,
                passed: 12,
                failed: 0,
                ignored: 2,
                filtered_out: 3
            })
        );
        let bad = "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1.00s";
        let c = test_result(bad).unwrap();
        assert_eq!((c.ok_runs, c.passed, c.failed), (0, 1, 2));
        assert_eq!(test_result("running 3 tests"), None);
        assert_eq!(
            failed_test("test netns::drops_mode_3 ... FAILED"),
            Some("netns::drops_mode_3")
        );
        assert_eq!(failed_test("test a::b ... ok"), None);
        assert_eq!(
            skipped_test(
                "test marker_barrier_is_exact   ... ignored (needs root: running as euid 65534)"
            ),
            Some((
                "marker_barrier_is_exact",
                Some("needs root: running as euid 65534")
            ))
        );
        assert_eq!(
            skipped_test("test slow ... ignored, takes an hour"),
            Some(("slow", Some("takes an hour")))
        );
        assert_eq!(skipped_test("test bare ... ignored"), Some(("bare", None)));
        assert_eq!(skipped_test("test a::b ... ok"), None);
    }

    #[test]
    fn embedded_bpf_object() {
        let mut elf = vec![0u8; 64];
        elf[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        elf[18..20].copy_from_slice(&247u16.to_le_bytes());
        elf[0x28..0x30].copy_from_slice(&100u64.to_le_bytes()); // e_shoff
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes()); // e_shentsize
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes()); // e_shnum
        let mut host = b"\x7fELF\x02\x01\x01".to_vec(); // the host ELF header itself
        host.resize(20, 0);
        host[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        host.extend_from_slice(&[0u8; 33]);
        let at = host.len();
        host.extend_from_slice(&elf);
        assert_eq!(find_bpf_elf(&host), Some((at, 100 + 64 * 3)));
        assert_eq!(find_bpf_elf(&host[..at]), None);
    }
}
