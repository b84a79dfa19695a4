//! `ntp-filter-lab up|down` (what `cargo xtask lab [--down]` runs), under
//! test-only names (`nf-lab-test-<pid>-…`, its own state dir), so a
//! developer's own lab is never touched: the story's facts as printed, the
//! lab still running after `up` returns (and the commands it prints
//! working on it), `down` leaving nothing, a half-made lab removed, and a
//! failing step of `up` removing what it had made.

use std::path::{Path, PathBuf};
use std::process::Command;

use ntp_filter_tests::journal::{cmdline, is_running};
use ntp_filter_tests::notelab::LabOpts;
use ntp_filter_tests::{agent_bin, trial, Child, Journal, Lifetime, Made, Netns};
use serde_json::Value;

/// The pin directory's layout subdirectory (`v3`).
fn layout_dir() -> String {
    format!("v{}", ntp_filter_common::LAYOUT_VERSION)
}

/// A lab under test names; dropping it runs `down` if anything is left.
struct TestLab {
    opts: LabOpts,
}

/// What a run printed (stdout, then stderr) and whether it succeeded.
struct Ran {
    ok: bool,
    out: String,
}

impl TestLab {
    fn new(name: &str) -> Self {
        let id = format!("{}-{name}", std::process::id());
        Self {
            opts: LabOpts {
                prefix: format!("nf-lab-test-{id}"),
                state_dir: PathBuf::from(format!("/run/ntp-filter-lab-test-{id}")),
            },
        }
    }

    /// `ntp-filter-lab ACTION --prefix … --state-dir …`, with `agent` as
    /// NTP_AGENT_BIN if given.
    fn run(&self, action: &str, agent: Option<&Path>) -> Ran {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ntp-filter-lab"));
        cmd.arg(action)
            .arg("--prefix")
            .arg(&self.opts.prefix)
            .arg("--state-dir")
            .arg(&self.opts.state_dir);
        if let Some(a) = agent {
            cmd.env("NTP_AGENT_BIN", a);
        }
        let o = cmd.output().expect("running ntp-filter-lab");
        let out =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        println!("---- ntp-filter-lab {action} ({}) ----\n{out}", o.status);
        Ran {
            ok: o.status.success(),
            out,
        }
    }

    fn ns(&self, role: &str) -> String {
        self.opts.netns(role)
    }

    /// Everything of this lab that exists: namespaces with its prefix, its
    /// pin dir and state dir, processes whose command line names the
    /// state dir.
    fn leftovers(&self) -> Vec<String> {
        let mut left: Vec<String> = std::fs::read_dir("/var/run/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&format!("{}-", self.opts.prefix)))
                    .collect()
            })
            .unwrap_or_default();
        for p in [self.opts.pin_dir(), self.opts.state_dir.clone()] {
            if p.exists() {
                left.push(p.display().to_string());
            }
        }
        let state = self.opts.state_dir.display().to_string();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let line = cmdline(pid).unwrap_or_default().join(" ");
            if is_running(pid) && line.contains(&state) {
                left.push(format!("pid {pid}: {line}"));
            }
        }
        left
    }

    /// Starts the half of a lab that `up` makes first, through the same
    /// persist-mode harness: its journal, the router namespace, and a
    /// process in it. Returns the process's pid.
    fn half_made(&self) -> u32 {
        let journal = Journal::create(&self.opts.state_dir).unwrap();
        let lifetime = Lifetime::Persist(journal);
        let ns = Netns::create(self.ns("router"), &lifetime).unwrap();
        let sleeper = Child::spawn_in_with(&ns, "sleeper", "sleep", &["600"], &lifetime).unwrap();
        let pid = sleeper.pid();
        // Persist mode: dropping the guards removes nothing.
        drop((sleeper, ns));
        assert!(Netns::exists(&self.ns("router")));
        assert!(is_running(pid));
        pid
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if !self.leftovers().is_empty() {
            self.run("down", None);
        }
    }
}

/// Fails unless `out` has every one of `lines`.
fn assert_says(out: &str, lines: &[String]) {
    for l in lines {
        assert!(out.contains(l.as_str()), "`{l}` missing in:\n{out}");
    }
}

/// The part of the story under the heading that starts with `== {n}.`.
fn section<'a>(out: &'a str, n: &str) -> &'a str {
    let start = out
        .find(&format!("\n== {n}."))
        .unwrap_or_else(|| panic!("no step {n} in:\n{out}"));
    let rest = &out[start + 1..];
    let end = rest[3..].find("\n== ").map_or(rest.len(), |e| e + 3);
    &rest[..end]
}

/// The source line of `addr` in a status's peer table.
fn source_line<'a>(text: &'a str, addr: &str) -> &'a str {
    text.lines()
        .find(|l| {
            l.get(1..)
                .is_some_and(|r| r.starts_with(&format!("{addr} ")))
        })
        .unwrap_or_else(|| panic!("no source {addr} in:\n{text}"))
}

/// Runs `line` (a command the lab printed) through the shell.
fn sh(line: &str) -> Ran {
    let o = Command::new("sh").args(["-c", line]).output().unwrap();
    Ran {
        ok: o.status.success(),
        out: String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    }
}

/// The printed command that starts with `start` and contains `has`.
fn printed<'a>(out: &'a str, start: &str, has: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(start) && l.contains(has))
        .unwrap_or_else(|| panic!("no command `{start} … {has} …` printed in:\n{out}"))
}

fn lab_tells_the_story_stays_up_and_down_removes_it() {
    let agent = agent_bin().unwrap();
    let lab = TestLab::new("story");
    let up = lab.run("up", Some(&agent));
    assert!(up.ok, "up failed:\n{}", up.out);
    let out = &up.out;

    // 1. Synchronized in client mode, with its server and its peer.
    let s1 = section(out, "1");
    assert!(s1.contains("mode:  client"), "{s1}");
    assert!(s1.contains("status:   synchronized"), "{s1}");
    let server = source_line(s1, "192.0.2.10");
    let peer = source_line(s1, "192.0.2.20");
    assert!(matches!(&server[..1], "*" | "+"), "{s1}");
    assert!(matches!(&peer[..1], "*" | "+"), "{s1}");
    assert!(server.contains(" 3 u "), "{server}");
    assert!(peer.contains(" 3 s "), "{peer}");

    // 2. ntpdate from outside fails, 3. the probe gets nothing back.
    let s2 = section(out, "2");
    assert!(s2.contains("outside# ntpdate -q 192.0.2.1"), "{s2}");
    assert!(s2.contains("no eligible servers"), "{s2}");
    assert!(s2.contains("(exit status: 1)"), "{s2}");
    let s3 = section(out, "3");
    assert!(s3.contains("nothing came back"), "{s3}");
    assert!(!s3.contains("answered:"), "{s3}");

    // 4. The drop counter moved, and the counters printed show the drops.
    let s4 = section(out, "4");
    let counts = s4
        .lines()
        .find_map(|l| l.split_once("dropped: "))
        .map(|(_, c)| c.to_string())
        .unwrap_or_else(|| panic!("no counter line in:\n{s4}"));
    let numbers: Vec<u64> = counts
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    // "A before step 2, B now": the "2" of "step 2" sits in between.
    assert_eq!(numbers.len(), 3, "{counts}");
    let (before, after) = (numbers[0], numbers[2]);
    assert!(after > before, "drop counter did not move: {counts}");
    let other3 = s4
        .lines()
        .find(|l| l.split_whitespace().take(2).eq(["other", "3"]))
        .unwrap_or_else(|| panic!("no other/3 counter row in:\n{s4}"));
    let dropped: u64 = other3.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(dropped >= after, "{other3} vs {counts}");

    // 5. Server mode: ntpdate gets the time, the probe an NTP reply.
    let s5 = section(out, "5");
    assert!(s5.contains("now in server mode"), "{s5}");
    assert!(s5.contains("192.0.2.1 s4 "), "{s5}");
    assert!(!s5.contains("exit status"), "{s5}");
    assert!(
        s5.contains("answered: UDP 192.0.2.1:123 -> 192.0.2.99:40123, NTP mode 4, stratum 4"),
        "{s5}"
    );

    // 6. Back in client mode: no answer, still synchronized.
    let s6 = section(out, "6");
    assert!(s6.contains("now in client mode"), "{s6}");
    assert!(s6.contains("no eligible servers"), "{s6}");
    assert!(s6.contains("mode:  client"), "{s6}");
    assert!(s6.contains("status:   synchronized"), "{s6}");

    // Still up after `up` returned: namespaces, processes, pins, status.
    let made = Journal::open(&lab.opts.state_dir)
        .expect("journal in the state dir")
        .entries()
        .unwrap();
    let mut pids = Vec::new();
    for m in &made {
        match m {
            Made::Netns { name } => assert!(Netns::exists(name), "{name} is gone"),
            Made::Process {
                name,
                pid,
                cmdline: recorded,
            } => {
                assert!(is_running(*pid), "{name} (pid {pid}) is not running");
                assert_eq!(cmdline(*pid).as_ref(), Some(recorded));
                pids.push(*pid);
            }
            Made::Pins { dir, .. } => assert!(dir.join(layout_dir()).is_dir(), "{}", dir.display()),
        }
    }
    assert_eq!(
        made.iter()
            .filter(|m| matches!(m, Made::Netns { .. }))
            .count(),
        5
    );
    assert!(
        made.iter()
            .any(|m| matches!(m, Made::Process { name, .. } if name == "ntp-agent")),
        "{made:?}"
    );
    assert_eq!(pids.len(), 3, "{made:?}");

    // The commands printed to play with work as printed.
    let router = format!("nsenter --net=/var/run/netns/{}", lab.ns("router"));
    let outside = format!("nsenter --net=/var/run/netns/{}", lab.ns("outside"));
    let status = sh(&format!("{} --json", printed(out, &router, " status ")));
    assert!(status.ok, "{}", status.out);
    let v: Value = serde_json::from_str(&status.out[status.out.find('{').unwrap()..]).unwrap();
    assert_eq!(v["mode"], "client", "{v:#}");
    assert_eq!(v["host"]["synchronized"], true, "{v:#}");
    assert_eq!(v["filter"]["interfaces"][0]["name"], "wan0", "{v:#}");
    let ntpdate = printed(out, &outside, "ntpdate -q 192.0.2.1");
    assert!(!sh(ntpdate).ok, "answered in client mode");
    let to_server = sh(printed(out, &router, " mode server "));
    assert!(
        to_server.out.contains("now in server mode"),
        "{}",
        to_server.out
    );
    let asked = sh(ntpdate);
    assert!(
        asked.ok && asked.out.contains("192.0.2.1 s4 "),
        "{}",
        asked.out
    );
    let to_client = sh(printed(out, &router, " mode client "));
    assert!(
        to_client.out.contains("now in client mode"),
        "{}",
        to_client.out
    );
    assert!(printed(out, "ls ", "").contains(&lab.opts.state_dir.display().to_string()));
    // Not the default lab, so `down` is spelled out with its names.
    let down_line = printed(out, "", " down --prefix ");
    assert!(down_line.contains(&lab.opts.prefix), "{down_line}");

    // down: nothing left, and it says what it removed.
    let down = lab.run("down", None);
    assert!(down.ok, "{}", down.out);
    assert_says(
        &down.out,
        &[
            "stopped ntp-agent".to_string(),
            "stopped chronyd-192.0.2.10".to_string(),
            "stopped chronyd-192.0.2.20".to_string(),
            "detached the filter".to_string(),
            format!(
                "removed {}/{}/link-wan0",
                lab.opts.pin_dir().display(),
                layout_dir()
            ),
            format!("deleted namespace {}", lab.ns("router")),
            format!("deleted namespace {}", lab.ns("wan")),
            format!("removed {}", lab.opts.state_dir.display()),
        ],
    );
    assert_eq!(lab.leftovers(), Vec::<String>::new());
    for pid in pids {
        assert!(!is_running(pid), "pid {pid} still runs");
    }

    // down again: nothing to do, and that is fine.
    let again = lab.run("down", None);
    assert!(again.ok, "{}", again.out);
    assert!(again.out.contains("nothing to remove"), "{}", again.out);
}

fn down_removes_what_a_half_made_lab_left() {
    let lab = TestLab::new("half");
    let sleeper = lab.half_made();
    let journal = Journal::open(&lab.opts.state_dir).unwrap();
    // Recorded but never made (or already removed by hand).
    journal
        .record(&Made::Netns {
            name: lab.ns("outside"),
        })
        .unwrap();
    journal
        .record(&Made::Pins {
            dir: lab.opts.pin_dir(),
            agent: agent_bin().unwrap(),
        })
        .unwrap();
    // A recorded pid that now belongs to another program (here: this test).
    let me = std::process::id();
    journal
        .record(&Made::Process {
            name: "chronyd".into(),
            pid: me,
            cmdline: vec!["/usr/sbin/chronyd".into(), "-x".into()],
        })
        .unwrap();
    // Named like the lab's but in no journal (its state dir was lost).
    Command::new("ip")
        .args(["netns", "add", &lab.ns("peer")])
        .status()
        .unwrap();

    let down = lab.run("down", None);
    assert!(down.ok, "{}", down.out);
    assert_says(
        &down.out,
        &[
            format!("chronyd (pid {me}): left alone"),
            format!("stopped sleeper (pid {sleeper})"),
            format!("pin dir {}: already gone", lab.opts.pin_dir().display()),
            format!("namespace {}: already gone", lab.ns("outside")),
            format!("deleted namespace {}", lab.ns("router")),
            format!("deleted namespace {}", lab.ns("peer")),
            format!("removed {}", lab.opts.state_dir.display()),
        ],
    );
    assert!(!is_running(sleeper));
    assert_eq!(lab.leftovers(), Vec::<String>::new());
    assert!(lab.run("down", None).out.contains("nothing to remove"));
}

fn up_replaces_a_lab_and_a_failing_step_removes_what_it_made() {
    let lab = TestLab::new("fail");
    let sleeper = lab.half_made();
    // An "agent" that exits at once: the lab gets as far as starting it.
    let up = lab.run("up", Some(Path::new("/bin/false")));
    assert!(!up.ok, "{}", up.out);
    let out = &up.out;
    let taken_down = out.find("taking it down first").expect(out);
    let failed = out
        .find("step failed: starting the agent")
        .unwrap_or_else(|| panic!("the failing step is not named:\n{out}"));
    assert!(taken_down < failed, "{out}");
    assert!(
        out.contains(&format!("stopped sleeper (pid {sleeper})")),
        "{out}"
    );
    // What this run made before the failing step, removed again.
    let cleanup = &out[failed..];
    assert!(
        cleanup.contains("removing what the lab made so far"),
        "{out}"
    );
    assert_says(
        cleanup,
        &[
            "stopped chronyd-192.0.2.10".to_string(),
            "stopped chronyd-192.0.2.20".to_string(),
            format!("removed {}", lab.opts.pin_dir().display()),
            format!("deleted namespace {}", lab.ns("router")),
            format!("deleted namespace {}", lab.ns("outside")),
        ],
    );
    assert!(!is_running(sleeper));
    assert_eq!(lab.leftovers(), Vec::<String>::new());
}

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![
        trial!(
            lab_tells_the_story_stays_up_and_down_removes_it,
            Netns,
            Bpffs,
            Agent,
            Chronyd
        ),
        trial!(down_removes_what_a_half_made_lab_left, Netns, Bpffs, Agent),
        trial!(
            up_replaces_a_lab_and_a_failing_step_removes_what_it_made,
            Netns,
            Bpffs,
            Chronyd
        ),
    ])
}
