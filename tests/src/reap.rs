//! Clearing leftovers of test processes that were killed before their
//! guards could run.

use crate::util::run;
use std::path::Path;
use std::process::Command;

/// Deletes `nf-<tag>-<pid>-<n>` namespaces, bpffs pin dirs and temp dirs
/// whose creating process no longer exists. Anything belonging to a live
/// process (this one, or a parallel test binary) is left alone. The runner
/// calls it once per test binary, before the first privileged test.
pub fn reap_stale() {
    let stale = |name: &str| -> bool {
        let parts: Vec<&str> = name.split('-').collect();
        if parts.len() < 4 || parts[0] != "nf" {
            return false;
        }
        let (pid, n) = (parts[parts.len() - 2], parts[parts.len() - 1]);
        match (pid.parse::<u32>(), n.parse::<u64>()) {
            (Ok(pid), Ok(_)) => !Path::new(&format!("/proc/{pid}")).exists(),
            _ => false,
        }
    };
    let names = |dir: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| stale(n))
                    .collect()
            })
            .unwrap_or_default()
    };
    for ns in names("/var/run/netns") {
        say!("reaping stale namespace {ns}");
        let _ = run(Command::new("ip").args(["netns", "del", &ns]));
    }
    for dir in [
        crate::bpffs::BPFFS.to_string(),
        std::env::temp_dir().display().to_string(),
    ] {
        for d in names(&dir) {
            let p = Path::new(&dir).join(&d);
            say!("reaping stale {}", p.display());
            let _ = std::fs::remove_dir_all(p);
        }
    }
}
