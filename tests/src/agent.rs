//! One agent's private places (pin dir, control socket, drift file), so
//! tests running in parallel never share them, and the calls every agent
//! test makes.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use crate::journal::{Journal, Lifetime};
use crate::{agent_bin, run_agent_once, Child, Finished, Netns, PinDir, TempDir};

const START_TIMEOUT: Duration = Duration::from_secs(20);
const CMD_TIMEOUT: Duration = Duration::from_secs(20);
const STATUS_POLL: Duration = Duration::from_millis(250);

pub struct AgentEnv {
    pub pins: PinDir,
    tmp: TempDir,
    lifetime: Lifetime,
}

impl AgentEnv {
    pub fn new(tag: &str) -> Result<Self> {
        Ok(Self {
            pins: PinDir::new(tag)?,
            tmp: TempDir::new(tag)?,
            lifetime: Lifetime::Scoped,
        })
    }

    /// Persist mode: pins in `/sys/fs/bpf/<pin_name>`, socket and drift
    /// file in `<state dir>/agent/`; the agent `start` runs is left running.
    pub fn persist(pin_name: &str, journal: &Journal) -> Result<Self> {
        let lifetime = Lifetime::Persist(journal.clone());
        Ok(Self {
            pins: PinDir::persist(pin_name, journal)?,
            tmp: lifetime.temp_dir("agent")?,
            lifetime,
        })
    }

    pub fn pin_dir(&self) -> &str {
        self.pins.as_str()
    }

    pub fn control_socket(&self) -> String {
        self.tmp.path().join("agent.sock").display().to_string()
    }

    /// `run` with this env's places and `--no-clock-adjust` (tests never
    /// touch the clock), then `extra`.
    pub fn run_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = [
            "run",
            "--pin-dir",
            self.pin_dir(),
            "--control-socket",
            &self.control_socket(),
            "--drift-file",
            &self.tmp.path().join("drift").display().to_string(),
            "--no-clock-adjust",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// Starts `ntp-agent run …` in `ns` and waits until it is running.
    pub fn start(&self, ns: &Netns, extra: &[&str]) -> Result<Child> {
        self.start_bin(ns, &agent_bin()?, extra)
    }

    /// [`start`](Self::start) with another agent binary (the benchmark's
    /// before/after comparison).
    pub fn start_bin(&self, ns: &Netns, bin: &std::path::Path, extra: &[&str]) -> Result<Child> {
        let args = self.run_args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut agent = Child::spawn_in_with(ns, "ntp-agent", bin, &args, &self.lifetime)?;
        agent
            .wait_for_line("running;", START_TIMEOUT)
            .context("the agent did not come up")?;
        Ok(agent)
    }

    /// The directory holding the control socket and drift file.
    pub fn dir(&self) -> &std::path::Path {
        self.tmp.path()
    }

    /// Spawns `PREFIX… ntp-agent run …` in `ns` with `env` added, e.g.
    /// behind `setpriv` or with NOTIFY_SOCKET; does not wait for it.
    pub fn spawn_with(
        &self,
        ns: &Netns,
        prefix: &[&str],
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Result<Child> {
        let agent = agent_bin()?;
        let mut cmd = match prefix.split_first() {
            Some((program, args)) => {
                let mut cmd = ns.command(program);
                cmd.args(args).arg(&agent);
                cmd
            }
            None => ns.command(&agent),
        };
        cmd.args(self.run_args(extra));
        for (k, v) in env {
            cmd.env(k, v);
        }
        Child::spawn("ntp-agent", cmd)
    }

    /// Runs `ntp-agent run …` expecting it to fail; returns its output.
    pub fn run_failing(&self, ns: &Netns, extra: &[&str]) -> Result<String> {
        let args = self.run_args(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_agent_once(ns, &args, CMD_TIMEOUT)?;
        if out.status.success() {
            bail!("expected failure for {args:?}, got success:\n{}", out.log);
        }
        Ok(out.log)
    }

    /// `ntp-agent status --json` for this agent.
    pub fn status(&self, ns: &Netns) -> Result<Value> {
        let args = [
            "status",
            "--json",
            "--pin-dir",
            self.pin_dir(),
            "--control-socket",
            &self.control_socket(),
        ];
        let out = run_agent_once(ns, &args, CMD_TIMEOUT)?;
        if !out.status.success() {
            bail!("status failed: {}", out.log);
        }
        let start = out.log.find('{').context("no JSON in status output")?;
        serde_json::from_str(&out.log[start..])
            .with_context(|| format!("status output: {}", out.log))
    }

    /// `ntp-agent status --json` whatever its exit status (non-zero while a
    /// configured interface is not filtered): whether it succeeded, and the
    /// object.
    pub fn status_any(&self, ns: &Netns) -> Result<(bool, Value)> {
        let args = [
            "status",
            "--json",
            "--pin-dir",
            self.pin_dir(),
            "--control-socket",
            &self.control_socket(),
        ];
        let out = run_agent_once(ns, &args, CMD_TIMEOUT)?;
        let start = out.log.find('{').context("no JSON in status output")?;
        let end = out.log.rfind('}').context("no JSON in status output")?;
        let v = serde_json::from_str(&out.log[start..=end])
            .with_context(|| format!("status output: {}", out.log))?;
        Ok((out.status.success(), v))
    }

    /// Polls `status --json` until `done` holds; the error names `what`
    /// and shows the last status.
    pub fn wait_status(
        &self,
        ns: &Netns,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.status(ns) {
                Ok(v) if done(&v) => return Ok(v),
                Ok(v) => serde_json::to_string_pretty(&v)?,
                Err(e) => format!("status failed: {e:#}"),
            };
            if Instant::now() >= deadline {
                bail!("{what}: not reached within {timeout:?}; last status:\n{last}");
            }
            std::thread::sleep(STATUS_POLL);
        }
    }

    /// `ntp-agent ARGS… --control-socket …` against this agent (`mode
    /// server`, `peer add …`), run to completion.
    pub fn control(&self, ns: &Netns, args: &[&str]) -> Result<Finished> {
        let ctl = self.control_socket();
        let mut full = args.to_vec();
        full.extend(["--control-socket", &ctl]);
        run_agent_once(ns, &full, CMD_TIMEOUT)
    }

    /// `ntp-agent status` (text) for this agent.
    pub fn status_text(&self, ns: &Netns) -> Result<String> {
        let args = [
            "status",
            "--pin-dir",
            self.pin_dir(),
            "--control-socket",
            &self.control_socket(),
        ];
        Ok(run_agent_once(ns, &args, CMD_TIMEOUT)?.log)
    }
}

/// Whether a `status --json` object says the host is synchronized.
pub fn synchronized(status: &Value) -> bool {
    status["host"]["synchronized"].as_bool() == Some(true)
}
