//! Deciding whether a privileged test can run, and clearing leftovers of
//! test processes that were killed before their guards could run.

use crate::netns::Netns;
use crate::util::run;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

/// Returns true if the test can use root + network namespaces. Otherwise
/// prints a SKIP line and returns false — or panics when
/// `NF_REQUIRE_PRIVILEGED=1` (CI must never silently skip).
///
/// ```no_run
/// if !ntp_filter_tests::require_privileged("drops_outsider_client") { return; }
/// ```
pub fn require_privileged(what: &str) -> bool {
    static PROBE: OnceLock<Result<(), String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        let r = probe();
        if r.is_ok() {
            reap_stale();
        }
        r
    });
    match probe {
        Ok(()) => true,
        Err(reason) => {
            let msg = format!(
                "SKIP {what}: needs root and network namespaces ({reason}); \
                 run as root, e.g. sudo -E cargo xtask test"
            );
            if std::env::var("NF_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
                panic!("NF_REQUIRE_PRIVILEGED=1 but {msg}");
            }
            say(&msg);
            false
        }
    }
}

/// A privileged test that cannot run on this machine for `why`: prints a
/// SKIP line and returns false, or panics under `NF_REQUIRE_PRIVILEGED=1`.
pub fn skip(what: &str, why: &str) -> bool {
    let msg = format!("SKIP {what}: {why}");
    if std::env::var("NF_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("NF_REQUIRE_PRIVILEGED=1 but {msg}");
    }
    say(&msg);
    false
}

/// Writes to the real stderr: `eprintln!` is captured by the test runner
/// and hidden for passing tests, but a skip must show up in CI logs.
fn say(msg: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn probe() -> Result<(), String> {
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        return Err(format!("not root: euid {euid}"));
    }
    for tool in ["ip", "nsenter"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Err(format!("`{tool}` not found"));
        }
    }
    let ns = Netns::new("probe").map_err(|e| format!("ip netns add failed: {e:#}"))?;
    ns.in_ns(|| ())
        .map_err(|e| format!("setns failed: {e:#}"))?;
    Ok(())
}

/// Deletes `nf-<tag>-<pid>-<n>` namespaces, bpffs pin dirs and temp dirs
/// whose creating process no longer exists. Anything belonging to a live
/// process (this one, or a parallel test binary) is left alone.
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
        say(&format!("reaping stale namespace {ns}"));
        let _ = run(Command::new("ip").args(["netns", "del", &ns]));
    }
    for dir in [
        crate::bpffs::BPFFS.to_string(),
        std::env::temp_dir().display().to_string(),
    ] {
        for d in names(&dir) {
            let p = Path::new(&dir).join(&d);
            say(&format!("reaping stale {}", p.display()));
            let _ = std::fs::remove_dir_all(p);
        }
    }
}
