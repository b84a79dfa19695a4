//! The test runner of every integration test binary (`harness = false` in
//! Cargo.toml, built on libtest-mimic): each test names what it needs from
//! the machine; a test whose needs are not met is reported as
//! `ignored (needs …)` — in its own line and in the `test result:` counts,
//! never as a pass — and fails instead under CI (`CI=true`) or
//! `NF_REQUIRE_PRIVILEGED=1`, where every test must run.
//!
//! ```no_run
//! use ntp_filter_tests::trial;
//!
//! fn drops_outsider_client() { /* … */ }
//!
//! fn main() -> std::process::ExitCode {
//!     ntp_filter_tests::runner::run(vec![trial!(drops_outsider_client, Netns, Bpffs, Agent)])
//! }
//! ```
//!
//! Unlike libtest, the runner captures no output and reuses its worker
//! threads: a test must not leave its thread in another namespace (use
//! `Netns::in_ns`, which runs on a thread of its own).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, ExitCode};
use std::sync::OnceLock;

use libtest_mimic::{Arguments, Completion, Failed, Trial};

use crate::{bpffs, chrony, netns::Netns, process, reap};

/// Something a test needs from the machine. Each is probed once per test
/// binary, the first time a test that needs it is about to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Need {
    /// Effective uid 0 (BPF, raw sockets, routes).
    Root,
    /// Network namespaces: `ip netns add` and `setns` work (needs root).
    Netns,
    /// A bpf filesystem at /sys/fs/bpf, mounted if there is none (needs root).
    Bpffs,
    /// /sys/fs/bpf searchable by other users (how `cargo xtask setup`
    /// mounts it; systemd's mount is 0700).
    SharedBpffs,
    /// The agent binary named by `NTP_AGENT_BIN` (set by `cargo xtask test`).
    Agent,
    /// chronyd installed (`cargo xtask setup` installs it).
    Chronyd,
    /// dnsmasq installed (`cargo xtask setup` installs dnsmasq-base).
    Dnsmasq,
}

impl Need {
    const ALL: [Need; 7] = [
        Need::Root,
        Need::Netns,
        Need::Bpffs,
        Need::SharedBpffs,
        Need::Agent,
        Need::Chronyd,
        Need::Dnsmasq,
    ];

    /// The needs met before this one is even probed.
    fn implies(self) -> &'static [Need] {
        match self {
            Need::Root | Need::Agent | Need::Chronyd | Need::Dnsmasq => &[],
            Need::Netns | Need::Bpffs => &[Need::Root],
            Need::SharedBpffs => &[Need::Bpffs],
        }
    }

    /// `Ok` if the machine has it, else why not and how to get it. Cached.
    pub fn check(self) -> Result<(), String> {
        static PROBED: [OnceLock<Result<(), String>>; Need::ALL.len()] =
            [const { OnceLock::new() }; Need::ALL.len()];
        let slot = Need::ALL.iter().position(|n| *n == self).expect("in ALL");
        PROBED[slot]
            .get_or_init(|| {
                for before in self.implies() {
                    before.check()?;
                }
                self.probe()
                    .map_err(|why| format!("needs {}: {why}", self.what()))
            })
            .clone()
    }

    fn what(self) -> &'static str {
        match self {
            Need::Root => "root",
            Need::Netns => "network namespaces",
            Need::Bpffs => "bpffs",
            Need::SharedBpffs => "a bpffs other users can search",
            Need::Agent => "the agent binary",
            Need::Chronyd => "chronyd",
            Need::Dnsmasq => "dnsmasq",
        }
    }

    fn probe(self) -> Result<(), String> {
        match self {
            Need::Root => {
                let euid = nix::unistd::geteuid();
                if euid.is_root() {
                    Ok(())
                } else {
                    Err(format!("running as euid {euid}"))
                }
            }
            Need::Netns => {
                for tool in ["ip", "nsenter"] {
                    if Command::new(tool).arg("-V").output().is_err() {
                        return Err(format!(
                            "`{tool}` not found (package iproute2 / util-linux)"
                        ));
                    }
                }
                let ns = Netns::new("probe").map_err(|e| format!("ip netns add failed: {e:#}"))?;
                ns.in_ns(|| ())
                    .map_err(|e| format!("setns failed: {e:#}"))?;
                drop(ns);
                // Leftovers of killed runs go before the first test makes more.
                reap::reap_stale();
                Ok(())
            }
            Need::Bpffs => bpffs::ensure_bpffs().map_err(|e| format!("{e:#}")),
            Need::SharedBpffs => {
                let mode = std::fs::metadata(bpffs::BPFFS)
                    .map_err(|e| format!("{}: {e}", bpffs::BPFFS))?
                    .permissions()
                    .mode();
                if mode & 0o001 != 0 {
                    Ok(())
                } else {
                    Err(format!(
                        "{} has mode {:o}; a bpffs mounted without mode=, as `cargo xtask setup` does, is 1777",
                        bpffs::BPFFS,
                        mode & 0o7777
                    ))
                }
            }
            Need::Agent => {
                let bin = process::agent_bin().map_err(|e| format!("{e:#}"))?;
                if bin.is_file() {
                    Ok(())
                } else {
                    Err(format!(
                        "NTP_AGENT_BIN={} does not exist; run through cargo xtask test",
                        bin.display()
                    ))
                }
            }
            Need::Chronyd => {
                let bin = chrony::chronyd_bin();
                if crate::util::installed(&bin) {
                    Ok(())
                } else {
                    Err(format!(
                        "{} not found (package chrony; `cargo xtask setup` installs it)",
                        bin.display()
                    ))
                }
            }
            Need::Dnsmasq => {
                let bin = std::path::Path::new(crate::dns::DNSMASQ);
                if crate::util::installed(bin) {
                    Ok(())
                } else {
                    Err(format!(
                        "{} not found (package dnsmasq-base; `cargo xtask setup` installs it)",
                        bin.display()
                    ))
                }
            }
        }
    }
}

/// One test: a function that panics on failure, and what it needs.
pub struct Test {
    name: &'static str,
    body: fn(),
    needs: &'static [Need],
}

impl Test {
    pub const fn new(name: &'static str, body: fn(), needs: &'static [Need]) -> Self {
        Self { name, body, needs }
    }

    /// Why it cannot run here, if it cannot.
    fn unmet(&self) -> Option<String> {
        self.needs.iter().find_map(|n| n.check().err())
    }

    fn execute(self, strict: bool) -> Result<Completion, Failed> {
        if let Some(why) = self.unmet() {
            if strict {
                return Err(format!(
                    "cannot run here ({why}), and under CI / NF_REQUIRE_PRIVILEGED=1 no test may be skipped"
                )
                .into());
            }
            return Ok(Completion::ignored_with(why));
        }
        (self.body)();
        Ok(Completion::Completed)
    }
}

/// `Test` for the function `name`, with the `Need`s that follow it:
/// `trial!(syncs_to_chronyd, Netns, Bpffs, Agent, Chronyd)`.
#[macro_export]
macro_rules! trial {
    ($name:ident $(, $need:ident)* $(,)?) => {
        $crate::runner::Test::new(
            stringify!($name),
            $name,
            &[$($crate::runner::Need::$need),*],
        )
    };
}

/// Whether a skip must fail the run: under CI, or when asked to.
pub fn strict() -> bool {
    let set =
        |var: &str| std::env::var(var).is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"));
    set("CI") || set("NF_REQUIRE_PRIVILEGED")
}

/// Runs `tests` as libtest would (same arguments, same output and
/// summary line) and exits with its verdict.
pub fn run(tests: Vec<Test>) -> ExitCode {
    let mut names = BTreeSet::new();
    for t in &tests {
        assert!(names.insert(t.name), "test {} is listed twice", t.name);
    }
    let strict = strict();
    let trials = tests
        .into_iter()
        .map(|t| Trial::ignorable_test(t.name, move || t.execute(strict)))
        .collect();
    libtest_mimic::run(&Arguments::from_args(), trials).exit_code()
}
