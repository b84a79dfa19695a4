//! Per-test pin directory on bpffs. Pinned objects live until unlinked, so
//! removing the directory is what releases links and maps a test left.

use crate::journal::{Journal, Made};
use crate::process::agent_bin;
use crate::util::{run, unique_name};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

pub const BPFFS: &str = "/sys/fs/bpf";

fn is_bpffs(path: &str) -> bool {
    ntp_agent::filter::pins::is_bpffs(Path::new(path))
}

/// Makes sure /sys/fs/bpf is a bpf filesystem, mounting one if not.
pub fn ensure_bpffs() -> Result<()> {
    if is_bpffs(BPFFS) {
        return Ok(());
    }
    run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS])).context("mounting bpffs")?;
    if !is_bpffs(BPFFS) {
        bail!("{BPFFS} is still not a bpf filesystem after mounting");
    }
    Ok(())
}

/// `/sys/fs/bpf/nf-<tag>-<pid>-<n>`, created empty and removed recursively
/// on drop (unless made in persist mode).
#[derive(Debug)]
pub struct PinDir {
    path: PathBuf,
    keep: bool,
}

impl PinDir {
    pub fn new(tag: &str) -> Result<Self> {
        ensure_bpffs()?;
        let path = Path::new(BPFFS).join(unique_name(tag));
        std::fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        Ok(Self { path, keep: false })
    }

    /// Persist mode: `/sys/fs/bpf/<name>` (must not exist yet), recorded in
    /// `journal` to be removed with the agent's `detach`.
    pub fn persist(name: &str, journal: &Journal) -> Result<Self> {
        ensure_bpffs()?;
        let path = Path::new(BPFFS).join(name);
        std::fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        let mut pins = Self { path, keep: false };
        journal.record(&Made::Pins {
            dir: pins.path.clone(),
            agent: agent_bin()?,
        })?;
        pins.keep = true;
        Ok(pins)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path` as &str, for agent command lines.
    pub fn as_str(&self) -> &str {
        self.path.to_str().expect("pin dir path is ASCII")
    }

    /// Relative paths of everything pinned below the directory, sorted.
    pub fn entries(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        walk(&self.path, &self.path, &mut out)?;
        out.sort();
        Ok(out)
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        out.push(p.strip_prefix(root)?.display().to_string());
        if p.is_dir() {
            walk(root, &p, out)?;
        }
    }
    Ok(())
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if !self.keep && self.path.exists() {
            if let Err(e) = std::fs::remove_dir_all(&self.path) {
                eprintln!("warning: could not remove {}: {e}", self.path.display());
            }
        }
    }
}
