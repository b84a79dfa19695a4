//! Persist mode: harness objects that outlive the process that made them.
//!
//! In tests every namespace, process and pin directory is owned by a guard
//! that removes it on drop. The lab (`ntp-filter-lab up`) has to leave its
//! objects running after it exits, so it makes them with
//! [`Lifetime::Persist`]: each object is written to a [`Journal`] (one JSON
//! line in `<state dir>/made`) as soon as it exists, and only then does its
//! guard stop removing it. [`Journal::undo`] removes everything recorded,
//! newest first; it is what `ntp-filter-lab down` runs, and what `up` runs
//! when a step fails, so a journal cut short by a crash is handled the same
//! way as a complete one.

use crate::util::{netns_path, run, TempDir};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const JOURNAL_FILE: &str = "made";
const TERM_GRACE: Duration = Duration::from_secs(5);
const KILL_GRACE: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(20);

/// Who removes what a harness object makes.
#[derive(Debug, Clone, Default)]
pub enum Lifetime {
    /// Its guard, on drop (tests, benchmarks).
    #[default]
    Scoped,
    /// Nobody in this process: it is recorded in the journal and left
    /// running for [`Journal::undo`].
    Persist(Journal),
}

impl Lifetime {
    /// A private directory for `tag`: a fresh temporary one, or
    /// `<state dir>/<tag>` that outlives this process.
    pub fn temp_dir(&self, tag: &str) -> Result<TempDir> {
        match self.journal() {
            None => TempDir::new(tag),
            Some(j) => Ok(TempDir::kept(j.subdir(tag)?)),
        }
    }

    pub fn journal(&self) -> Option<&Journal> {
        match self {
            Lifetime::Scoped => None,
            Lifetime::Persist(j) => Some(j),
        }
    }
}

/// One thing a lab made, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "made", rename_all = "snake_case")]
pub enum Made {
    Netns {
        name: String,
    },
    /// `cmdline` is what `/proc/PID/cmdline` must say before the process
    /// may be signalled (see `is_recorded`): a pid reused by someone else
    /// is left alone.
    Process {
        name: String,
        pid: u32,
        cmdline: Vec<String>,
    },
    /// A pin directory, removed with `AGENT detach --pin-dir DIR`.
    Pins {
        dir: PathBuf,
        agent: PathBuf,
    },
}

/// A lab's state directory and the record of what it made.
#[derive(Debug, Clone)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// Starts a journal in `dir`, which must not exist yet or be empty.
    pub fn create(dir: &Path) -> Result<Self> {
        if !dir.is_absolute() {
            bail!("state dir {} must be an absolute path", dir.display());
        }
        let used = std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
        if used {
            bail!(
                "state dir {} exists and is not empty: not a lab's, or one whose journal is gone; \
                 remove it or choose another",
                dir.display()
            );
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let j = Self { dir: dir.into() };
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(j.file())
            .with_context(|| format!("creating {}", j.file().display()))?;
        Ok(j)
    }

    /// The journal in `dir`, if there is one.
    pub fn open(dir: &Path) -> Option<Self> {
        let j = Self { dir: dir.into() };
        j.file().is_file().then_some(j)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self) -> PathBuf {
        self.dir.join(JOURNAL_FILE)
    }

    /// `<dir>/<name>`, created if missing; removed with the state dir.
    pub fn subdir(&self, name: &str) -> Result<PathBuf> {
        let p = self.dir.join(name);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(p)
    }

    pub fn record(&self, made: &Made) -> Result<()> {
        let mut line = serde_json::to_string(made)?;
        line.push('\n');
        std::fs::OpenOptions::new()
            .append(true)
            .open(self.file())
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .with_context(|| format!("recording {line:?} in {}", self.file().display()))
    }

    /// Everything recorded, oldest first. A line that does not parse (the
    /// last one, when the writer died mid-write) is reported and skipped.
    pub fn entries(&self) -> Result<Vec<Made>> {
        let text = std::fs::read_to_string(self.file())
            .with_context(|| format!("reading {}", self.file().display()))?;
        Ok(text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .filter_map(|(i, l)| match serde_json::from_str(l) {
                Ok(m) => Some(m),
                Err(e) => {
                    say!(
                        "skipping line {} of {}: {e}: {l:?}",
                        i + 1,
                        self.file().display()
                    );
                    None
                }
            })
            .collect())
    }

    /// Removes everything recorded, newest first (processes before the pins
    /// they hold, namespaces last), then the state dir. Says what it did;
    /// goes on after a failure, and then keeps the state dir, so that a
    /// second try still knows what is left.
    pub fn undo(&self) -> Result<()> {
        let mut failed = Vec::new();
        for made in self.entries()?.iter().rev() {
            if let Err(e) = undo_one(made) {
                say!("failed: {e:#}");
                failed.push(format!("{e:#}"));
            }
        }
        if !failed.is_empty() {
            bail!(
                "{} thing(s) could not be removed ({}); {} is kept for another try",
                failed.len(),
                failed.join("; "),
                self.dir.display()
            );
        }
        std::fs::remove_dir_all(&self.dir)
            .with_context(|| format!("removing {}", self.dir.display()))?;
        say!("removed {}", self.dir.display());
        Ok(())
    }
}

fn undo_one(made: &Made) -> Result<()> {
    match made {
        Made::Netns { name } => delete_netns(name),
        Made::Process { name, pid, cmdline } => stop_process(name, *pid, cmdline),
        Made::Pins { dir, agent } => remove_pins(dir, agent),
    }
}

/// Deletes namespace `name` if it exists; says so either way.
pub fn delete_netns(name: &str) -> Result<()> {
    if !netns_path(name).exists() {
        say!("namespace {name}: already gone");
        return Ok(());
    }
    run(Command::new("ip").args(["netns", "del", name]))?;
    say!("deleted namespace {name}");
    Ok(())
}

/// `Some(state)` (the letter in `/proc/PID/stat`) while `pid` exists.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name in parentheses may contain anything: the state is
    // the first field after the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether `pid` is a running process (a zombie has exited: it only waits
/// for its parent to reap it).
pub fn is_running(pid: u32) -> bool {
    matches!(proc_state(pid), Some(s) if s != 'Z')
}

/// The argument vector of a running process.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while is_running(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
    true
}

/// Whether a process whose command line is `now` is the one recorded: it
/// runs the recorded command, or is still the `nsenter … -- COMMAND` that
/// starts it (for the milliseconds before nsenter execs it).
fn is_recorded(now: &[String], recorded: &[String]) -> bool {
    if now == recorded {
        return true;
    }
    let launcher = now
        .len()
        .checked_sub(recorded.len() + 1)
        .map(|n| now.split_at(n));
    matches!(launcher, Some((head, tail))
        if head.first().is_some_and(|p| p == "nsenter" || p.ends_with("/nsenter"))
            && tail[0] == "--"
            && &tail[1..] == recorded)
}

/// SIGTERM (then SIGKILL) to `pid`, but only while its command line is
/// still the recorded one.
fn stop_process(name: &str, pid: u32, recorded: &[String]) -> Result<()> {
    if !is_running(pid) {
        say!("{name} (pid {pid}): already exited");
        return Ok(());
    }
    // A process spawned a moment ago may still be between fork and exec
    // (its command line is its launcher's, or being replaced): give it a
    // second to become what was recorded before calling it someone else's.
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut now = cmdline(pid).unwrap_or_default();
    while !is_recorded(&now, recorded) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        now = cmdline(pid).unwrap_or_default();
    }
    if !is_recorded(&now, recorded) {
        say!(
            "{name} (pid {pid}): left alone, pid {pid} is now `{}`, not `{}`",
            now.join(" "),
            recorded.join(" ")
        );
        return Ok(());
    }
    let target = nix::unistd::Pid::from_raw(pid as i32);
    // The lab's own process, by the pid it recorded (checked just above).
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
    if wait_gone(pid, TERM_GRACE) {
        say!("stopped {name} (pid {pid})");
        return Ok(());
    }
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
    if wait_gone(pid, KILL_GRACE) {
        say!("killed {name} (pid {pid}): it ignored SIGTERM for {TERM_GRACE:?}");
        return Ok(());
    }
    bail!("{name} (pid {pid}) still runs after SIGKILL")
}

/// `agent detach --pin-dir DIR` (which unpins the links, detaching the
/// filter, and the maps); if that fails (e.g. the binary is gone), removing
/// the directory does the same: a link or map lives on only while pinned
/// or held open.
fn remove_pins(dir: &Path, agent: &Path) -> Result<()> {
    if !dir.exists() {
        say!("pin dir {}: already gone", dir.display());
        return Ok(());
    }
    let d = dir.display().to_string();
    match run(Command::new(agent).args(["detach", "--pin-dir", &d])) {
        Ok(out) => {
            say!(
                "detached the filter: {} detach --pin-dir {d}",
                agent.display()
            );
            for l in out.lines() {
                say!("  {l}");
            }
        }
        Err(e) => say!("`{} detach` failed ({e:#}); removing {d}", agent.display()),
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {d}"))?;
        say!("removed {d}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split(' ').map(String::from).collect()
    }

    #[test]
    fn recorded_command_or_its_launcher() {
        let rec = v("/usr/sbin/chronyd -x -f /run/lab/c.conf");
        assert!(is_recorded(&rec, &rec));
        assert!(is_recorded(
            &v("nsenter --net=/var/run/netns/nf-lab-peer -- /usr/sbin/chronyd -x -f /run/lab/c.conf"),
            &rec
        ));
        for other in [
            "/usr/sbin/chronyd -x -f /etc/chrony.conf",
            "/usr/sbin/chronyd -x",
            "nsenter --net=/var/run/netns/nf-lab-peer /usr/sbin/chronyd -x -f /run/lab/c.conf",
            "sh -c -- /usr/sbin/chronyd -x -f /run/lab/c.conf",
            "",
        ] {
            assert!(!is_recorded(&v(other), &rec), "{other}");
        }
        assert!(!is_recorded(&[], &rec));
    }
}
