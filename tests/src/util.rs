//! Naming and small process helpers shared by the guards.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// `nf-<tag>-<pid>-<n>`: the pid lets `reap_stale` recognise leftovers of
/// dead test processes, the counter keeps parallel tests in one process apart.
pub(crate) fn unique_name(tag: &str) -> String {
    let tag: String = tag
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    let tag = if tag.is_empty() { "t".to_string() } else { tag };
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("nf-{tag}-{}-{n}", std::process::id())
}

/// Where `ip netns add NAME` puts namespace `name`.
pub(crate) fn netns_path(name: &str) -> PathBuf {
    Path::new("/var/run/netns").join(name)
}

/// Runs a command to completion; errors carry the command line and stderr
/// because a bare exit status is useless when a topology step fails in CI.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("failed to start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether `program` (a path, or a name looked up in PATH) is there. Only
/// looked at, never run: an unexpected chronyd must not start.
pub(crate) fn installed(program: &Path) -> bool {
    if program.components().count() > 1 {
        return program.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// Temporary directory under /tmp, removed recursively on drop; or, in
/// persist mode, a directory in the lab's state dir that stays.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    pub fn new(tag: &str) -> Result<Self> {
        let path = std::env::temp_dir().join(unique_name(tag));
        std::fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(Self { path, keep: false })
    }

    /// `path`, left in place on drop (persist mode: see
    /// [`Lifetime::temp_dir`](crate::journal::Lifetime::temp_dir)).
    pub(crate) fn kept(path: PathBuf) -> Self {
        Self { path, keep: true }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
