//! `Child`: a process started by the test, with its output captured to a
//! file and a guaranteed kill on drop.

use crate::journal::{Lifetime, Made};
use crate::netns::Netns;
use crate::util::TempDir;
use anyhow::{anyhow, bail, Context, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a process gets after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(20);

/// Outcome of a process that was run to completion.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// stdout and stderr, interleaved as written.
    pub log: String,
}

/// A running process owned by the test. Drop sends SIGTERM, waits briefly,
/// sends SIGKILL, and reaps it; while panicking it also prints the log, so a
/// failed test shows what the agent said. In persist mode Drop leaves it
/// running.
#[derive(Debug)]
pub struct Child {
    name: String,
    child: std::process::Child,
    log: PathBuf,
    status: Option<ExitStatus>,
    keep: bool,
    _dir: TempDir,
}

impl Child {
    /// Spawns `cmd` with stdin closed and stdout+stderr going to one log file.
    pub fn spawn(name: &str, cmd: Command) -> Result<Self> {
        Self::spawn_with(name, cmd, &Lifetime::Scoped, None)
    }

    /// Persist mode: `recorded` is the command line the journal keeps for
    /// it (what `/proc/PID/cmdline` says once it runs).
    fn spawn_with(
        name: &str,
        mut cmd: Command,
        lifetime: &Lifetime,
        recorded: Option<Vec<String>>,
    ) -> Result<Self> {
        let dir = lifetime.temp_dir("log")?;
        let log = dir.path().join(format!("{}.log", name.replace('/', "_")));
        let out = std::fs::File::create(&log)?;
        cmd.stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        let persist = lifetime.journal().is_some();
        // SAFETY: the hook runs in the forked child before exec and only
        // makes async-signal-safe system calls (setsid, prctl); it touches
        // no lock, allocation or state of the parent.
        unsafe {
            cmd.pre_exec(move || {
                if persist {
                    // Its own session: neither a Ctrl-C in the terminal
                    // that ran the lab nor that terminal closing reaches it.
                    nix::unistd::setsid()?;
                } else {
                    // If the test process itself dies (SIGKILL, abort) no
                    // Drop runs: let the kernel kill the child then. Note
                    // this follows the *thread* that spawned it; the
                    // runner's worker threads live as long as the process.
                    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        // Guard first: if recording fails, Drop still stops it.
        let mut c = Self {
            name: name.to_string(),
            child,
            log,
            status: None,
            keep: false,
            _dir: dir,
        };
        if let Some(j) = lifetime.journal() {
            j.record(&Made::Process {
                name: name.to_string(),
                pid: c.pid(),
                cmdline: recorded.unwrap_or_default(),
            })?;
            c.keep = true;
        }
        Ok(c)
    }

    /// Spawns `program args…` inside `ns` (via nsenter, so bpffs is visible).
    pub fn spawn_in(
        ns: &Netns,
        name: &str,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
    ) -> Result<Self> {
        Self::spawn_in_with(ns, name, program, args, &Lifetime::Scoped)
    }

    /// `spawn_in`, left running in persist mode.
    pub fn spawn_in_with(
        ns: &Netns,
        name: &str,
        program: impl AsRef<std::ffi::OsStr>,
        args: &[&str],
        lifetime: &Lifetime,
    ) -> Result<Self> {
        // nsenter execs `program` with these arguments: that is the
        // command line the process has while it runs.
        let recorded = std::iter::once(program.as_ref().to_string_lossy().into_owned())
            .chain(args.iter().map(|a| a.to_string()))
            .collect();
        let mut cmd = ns.command(program);
        cmd.args(args);
        Self::spawn_with(name, cmd, lifetime, Some(recorded))
    }

    /// Whether it was made in persist mode (and so outlives its guard).
    pub fn persists(&self) -> bool {
        self.keep
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `Some(status)` once the process has exited (it is reaped then).
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Waits until a log line contains `pattern` and returns it. Fails early
    /// if the process exits first; errors include the whole log.
    pub fn wait_for_line(&mut self, pattern: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            // Read before checking exit, so a last line written just before exiting counts.
            let log = self.log();
            if let Some(line) = log.lines().find(|l| l.contains(pattern)) {
                return Ok(line.to_string());
            }
            if let Some(st) = self.try_wait()? {
                let log = self.log();
                if let Some(line) = log.lines().find(|l| l.contains(pattern)) {
                    return Ok(line.to_string());
                }
                bail!(
                    "{} exited ({st}) before printing {pattern:?}; log:\n{log}",
                    self.name
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not print {pattern:?} within {timeout:?}; log:\n{log}",
                    self.name
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait()? {
                return Ok(st);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} still running after {timeout:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGTERM and wait for a clean exit (SIGKILL after a grace period).
    /// Returns the exit status so tests can check graceful shutdown.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        if let Some(st) = self.try_wait()? {
            return Ok(st);
        }
        self.signal(libc::SIGTERM);
        match self.wait_exit(TERM_GRACE) {
            Ok(st) => Ok(st),
            Err(_) => {
                let _ = self.child.kill();
                let st = self.child.wait()?;
                self.status = Some(st);
                Err(anyhow!(
                    "{} ignored SIGTERM, killed; log:\n{}",
                    self.name,
                    self.log()
                ))
            }
        }
    }

    /// Sends `sig` to the process (only while it is ours and unreaped, so
    /// the pid cannot have been reused).
    /// `sig` is a `libc::SIG*` number.
    pub fn signal(&mut self, sig: i32) {
        let sig = nix::sys::signal::Signal::try_from(sig)
            .unwrap_or_else(|e| panic!("signal number {sig}: {e}"));
        if matches!(self.try_wait(), Ok(None)) {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, sig);
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        let _ = self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- log of {} (pid {}) ----\n{}---- end of log ----",
                self.name,
                self.pid(),
                self.log()
            );
        }
    }
}

/// Path of the agent binary, from `NTP_AGENT_BIN`.
pub fn agent_bin() -> Result<PathBuf> {
    match std::env::var_os("NTP_AGENT_BIN") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => bail!("NTP_AGENT_BIN is not set: run the tests with cargo xtask test"),
    }
}

/// Starts `ntp-agent ARGS…` inside `ns` (e.g. `["run", "--iface", "wan0", …]`).
pub fn run_agent(ns: &Netns, args: &[&str]) -> Result<Child> {
    Child::spawn_in(ns, "ntp-agent", agent_bin()?, args)
}

/// Runs a short agent command (e.g. `detach`) inside `ns` to completion.
pub fn run_agent_once(ns: &Netns, args: &[&str], timeout: Duration) -> Result<Finished> {
    let mut c = run_agent(ns, args)?;
    let status = c.wait_exit(timeout)?;
    Ok(Finished {
        status,
        log: c.log(),
    })
}
