//! `Netns`: a named network namespace owned by the test.

use crate::journal::{Lifetime, Made};
use crate::util::{netns_path, run, unique_name};
use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

/// A network namespace created with `ip netns add` and deleted on drop
/// (unless made in persist mode).
///
/// Commands run inside through `nsenter --net=…` (not `ip netns exec`, which
/// remounts /sys and so hides /sys/fs/bpf from anything that pins).
#[derive(Debug)]
pub struct Netns {
    name: String,
    keep: bool,
}

impl Netns {
    /// Creates `nf-<tag>-<pid>-<n>` with loopback up.
    pub fn new(tag: &str) -> Result<Self> {
        Self::create(unique_name(tag), &Lifetime::Scoped)
    }

    /// Creates exactly `name` (which must start with `nf-`) with loopback up.
    pub fn create(name: String, lifetime: &Lifetime) -> Result<Self> {
        if !name.starts_with("nf-") {
            bail!("namespace name {name:?} must start with nf-");
        }
        if Self::exists(&name) {
            bail!("namespace {name} already exists");
        }
        run(Command::new("ip").args(["netns", "add", &name]))
            .with_context(|| format!("creating network namespace {name}"))?;
        // Guard first, so a failure below still deletes the namespace.
        let mut ns = Self { name, keep: false };
        if let Some(j) = lifetime.journal() {
            j.record(&Made::Netns {
                name: ns.name.clone(),
            })?;
            ns.keep = true;
        }
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bind-mounted namespace file (`/var/run/netns/NAME`).
    pub fn path(&self) -> PathBuf {
        netns_path(&self.name)
    }

    /// A `Command` that runs `program` inside this namespace (shares the
    /// mount namespace, so /sys/fs/bpf stays visible).
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// Runs `program args…` inside and returns its stdout; error includes stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        run(self.command(program).args(args))
    }

    /// `ip -n NAME args…`.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
            .with_context(|| format!("in namespace {}", self.name))
    }

    /// Writes a sysctl of this namespace, e.g. `("net.ipv4.ip_forward", "1")`.
    /// Done from a thread inside the namespace because /proc/sys/net is
    /// resolved against the calling thread's namespace; no sysctl binary needed.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        self.in_ns(move || {
            std::fs::write(&path, value).with_context(|| format!("writing {}", path.display()))
        })?
    }

    /// Reads a sysctl of this namespace.
    pub fn read_sysctl(&self, key: &str) -> Result<String> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        self.in_ns(move || {
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .with_context(|| format!("reading {}", path.display()))
        })?
    }

    /// Runs `f` on a fresh thread that has joined this namespace and returns
    /// its result. Sockets opened in `f` stay in this namespace for their
    /// whole life, whichever thread uses them later. A panic in `f` is
    /// propagated to the caller (so guards unwind as usual).
    pub fn in_ns<F, T>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        let file = std::fs::File::open(self.path())
            .with_context(|| format!("opening {}", self.path().display()))?;
        std::thread::scope(|s| {
            let handle = s.spawn(move || -> Result<T> {
                // setns only affects this thread, which ends with the scope:
                // the caller's thread never changes namespace.
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("setns({})", self.name))?;
                Ok(f())
            });
            match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Whether the namespace still exists (used by the self-tests).
    pub fn exists(name: &str) -> bool {
        netns_path(name).exists()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        // Processes still inside keep the kernel object alive, but those are
        // owned (and killed) by their own `Child` guards.
        if let Err(e) = run(Command::new("ip").args(["netns", "del", &self.name])) {
            eprintln!("warning: could not delete namespace {}: {e:#}", self.name);
        }
    }
}
