//! The agent as systemd runs it: notifications to a stand-in NOTIFY_SOCKET
//! (READY=1, STATUS=, WATCHDOG=1, STOPPING=1), and the capability set of
//! dist/ntp-agent.service, applied with setpriv, being enough to attach and
//! sync. Every agent runs with --no-clock-adjust (AgentEnv), so CAP_SYS_TIME
//! is granted but never exercised; chronyd always runs with -x.

use std::time::{Duration, Instant};

use ntp_filter_tests::{addrs::*, *};
use serde_json::Value;

const START_TIMEOUT: Duration = Duration::from_secs(20);
const SYNC_TIMEOUT: Duration = Duration::from_secs(45);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(250);
const UNIT: &str = include_str!("../../dist/ntp-agent.service");
const NOBODY: u32 = 65534;

fn wait_status(env: &AgentEnv, ns: &Netns, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + SYNC_TIMEOUT;
    loop {
        let last = match env.status(ns) {
            Ok(v) if done(&v) => return v,
            Ok(v) => v,
            Err(e) => Value::String(format!("status failed: {e:#}")),
        };
        assert!(
            Instant::now() < deadline,
            "{what}: not reached within {SYNC_TIMEOUT:?}; last status:\n{last:#}"
        );
        std::thread::sleep(POLL);
    }
}

/// The XDP program is on `wan0` (as the kernel reports it) and its link is
/// pinned, i.e. the filter enforces whatever the agent does next.
fn assert_filtering(lab: &RouterLab, env: &AgentEnv) {
    let link = lab.router().ip(&["link", "show", WAN_IF]).unwrap();
    assert!(
        link.contains("prog/xdp"),
        "no XDP program on {WAN_IF}:\n{link}"
    );
    let pins = env.pins.entries().unwrap();
    assert!(
        pins.iter().any(|p| p.ends_with(&format!("link-{WAN_IF}"))),
        "no pinned link: {pins:?}"
    );
}

const SYNCED_TO_SERVER: &str = "filter on wan0 (native); synchronized to 192.0.2.10, stratum 4";

/// Without --ready-after-sync, READY=1 comes once the filter is attached
/// and the control socket answers, before any reply could be taken in:
/// chronyd is paused until READY=1 is in. Then STATUS= follows sync, and
/// SIGTERM brings STOPPING=1.
fn ready_when_filtering_then_status_and_stopping() {
    let lab = RouterLab::new("sdready").unwrap();
    let mut chronyd =
        Chronyd::start(lab.outside(), &ChronyConfig::server(SERVER_V4.into())).unwrap();
    chronyd.pause();
    let env = AgentEnv::new("sdready").unwrap();
    let mut systemd = NotifySocket::new("sdready").unwrap();
    let mut agent = env
        .spawn_with(
            lab.router(),
            &[],
            &[("NOTIFY_SOCKET", systemd.path())],
            &["--iface", WAN_IF, "--server", "192.0.2.10"],
        )
        .unwrap();

    let ready = systemd
        .wait_for("READY=1", START_TIMEOUT, |n| n.has("READY=1"))
        .unwrap();
    assert_filtering(&lab, &env);
    let st = env.status(lab.router()).unwrap();
    assert!(!synchronized(&st), "{st:#}");
    assert_eq!(
        ready.status(),
        Some("filter on wan0 (native); not synchronized: waiting for first samples"),
        "{ready:?}"
    );
    let log = agent.log();
    assert!(log.contains("filter attached"), "{log}");

    chronyd.resume();
    systemd
        .wait_for("STATUS= synchronized", SYNC_TIMEOUT, |n| {
            n.status() == Some(SYNCED_TO_SERVER)
        })
        .unwrap();
    assert!(synchronized(&env.status(lab.router()).unwrap()));

    agent.signal(libc::SIGTERM);
    let exit = agent.wait_exit(STOP_TIMEOUT).unwrap();
    assert!(exit.success(), "{exit}");
    let stop = systemd
        .wait_for("STOPPING=1", STOP_TIMEOUT, |n| n.has("STOPPING=1"))
        .unwrap();
    assert_eq!(
        stop.status(),
        Some("stopping; filter on wan0 (native) stays attached (fail closed)")
    );
    // Stopping leaves the filter enforcing.
    assert_filtering(&lab, &env);

    let all = systemd.received();
    assert_eq!(
        all.iter().filter(|n| n.has("READY=1")).count(),
        1,
        "{all:#?}"
    );
    // No WATCHDOG_USEC, no pings.
    assert!(!all.iter().any(|n| n.has("WATCHDOG=1")), "{all:#?}");
    // Every datagram says something; a STATUS= repeats nothing.
    let statuses: Vec<&str> = all.iter().filter_map(Notification::status).collect();
    for pair in statuses.windows(2) {
        assert_ne!(pair[0], pair[1], "{all:#?}");
    }
}

/// With --ready-after-sync (and systemd's watchdog on), the agent filters
/// and reports its state, but READY=1 comes only with the first sync: the
/// status queried the moment it arrives says synchronized. WATCHDOG=1
/// comes from the event loop all along, at half WATCHDOG_USEC.
fn ready_after_sync_waits_for_the_clock_and_pings_the_watchdog() {
    let lab = RouterLab::new("sdsync").unwrap();
    let _chronyd = Chronyd::start(lab.outside(), &ChronyConfig::server(SERVER_V4.into())).unwrap();
    let env = AgentEnv::new("sdsync").unwrap();
    let mut systemd = NotifySocket::new("sdsync").unwrap();
    // systemd sets WATCHDOG_PID to the service's pid; the shell learns it
    // ($$) and execs the agent under it.
    let mut agent = env
        .spawn_with(
            lab.router(),
            &["sh", "-c", "WATCHDOG_PID=$$ exec \"$0\" \"$@\""],
            &[
                ("NOTIFY_SOCKET", systemd.path()),
                ("WATCHDOG_USEC", "1000000"),
            ],
            &[
                "--iface",
                WAN_IF,
                "--server",
                "192.0.2.10",
                "--ready-after-sync",
            ],
        )
        .unwrap();

    let first = systemd
        .wait_for("a first STATUS=", START_TIMEOUT, |n| n.status().is_some())
        .unwrap();
    assert!(!first.has("READY=1"), "{first:?}");
    assert_eq!(
        first.status(),
        Some("filter on wan0 (native); not synchronized: waiting for first samples")
    );
    assert_filtering(&lab, &env);

    let ready = systemd
        .wait_for("READY=1", SYNC_TIMEOUT, |n| n.has("READY=1"))
        .unwrap();
    let st = env.status(lab.router()).unwrap();
    assert!(synchronized(&st), "READY=1 before sync: {st:#}");
    assert_eq!(ready.status(), Some(SYNCED_TO_SERVER), "{ready:?}");

    // 0.5 s pings from the start of the loop until READY=1 and beyond.
    systemd.drain(Duration::from_secs(2)).unwrap();
    let pings: Vec<Instant> = systemd
        .received()
        .iter()
        .filter(|n| n.has("WATCHDOG=1"))
        .map(|n| n.at)
        .collect();
    let span = ready.at.duration_since(first.at) + Duration::from_secs(2);
    // One per 0.5 s over the span: not per loop turn, and not just once
    // (half as many leaves room for a busy machine).
    let expected = (span.as_millis() / 500) as usize;
    assert!(
        pings.len() * 2 >= expected && pings.len() <= expected + 2,
        "{} pings over {span:?}",
        pings.len()
    );
    assert!(
        pings.iter().any(|&t| t < ready.at),
        "no ping before READY=1"
    );
    let before: Vec<&Notification> = systemd
        .received()
        .iter()
        .take_while(|n| !n.has("READY=1"))
        .collect();
    assert!(
        before
            .iter()
            .filter_map(|n| n.status())
            .all(|s| s.contains("not synchronized")),
        "{before:#?}"
    );
    agent.stop().unwrap();
    systemd
        .wait_for("STOPPING=1", STOP_TIMEOUT, |n| n.has("STOPPING=1"))
        .unwrap();
}

/// The unit's CapabilityBoundingSet=, as setpriv arguments (`-all,+bpf,…`).
fn unit_caps() -> String {
    let line = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet=");
    let mut set = String::from("-all");
    for cap in line.split_whitespace() {
        let name = cap
            .strip_prefix("CAP_")
            .unwrap_or_else(|| panic!("not a capability: {cap}"));
        set.push_str(",+");
        set.push_str(&name.to_ascii_lowercase());
    }
    set
}

/// The unit's capability set as a bit mask, from the kernel's numbers.
fn unit_cap_mask() -> u64 {
    let line = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap();
    line.split_whitespace()
        .map(|cap| match cap {
            "CAP_NET_BIND_SERVICE" => 10,
            "CAP_NET_ADMIN" => 12,
            "CAP_SYS_TIME" => 25,
            "CAP_PERFMON" => 38,
            "CAP_BPF" => 39,
            other => panic!("{other}: add its number here"),
        })
        .fold(0, |m, bit| m | 1u64 << bit)
}

fn proc_caps(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    u64::from_str_radix(line.trim(), 16).unwrap()
}

/// Runs the agent under `prefix` in server mode (port 123: the unit's
/// CAP_NET_BIND_SERVICE) and checks it attaches and syncs with exactly the
/// unit's capabilities in effect.
fn syncs_with_unit_caps(tag: &str, env: &AgentEnv, prefix: &[&str]) {
    let lab = RouterLab::new(tag).unwrap();
    let _chronyd = Chronyd::start(lab.outside(), &ChronyConfig::server(SERVER_V4.into())).unwrap();
    let mut agent = env
        .spawn_with(
            lab.router(),
            prefix,
            &[],
            &[
                "--iface",
                WAN_IF,
                "--server",
                "192.0.2.10",
                "--mode",
                "server",
            ],
        )
        .unwrap();
    agent.wait_for_line("running;", START_TIMEOUT).unwrap();
    // nsenter and setpriv exec in turn: the pid is the agent's.
    assert_eq!(proc_caps(agent.pid(), "CapEff:"), unit_cap_mask());
    assert_eq!(proc_caps(agent.pid(), "CapBnd:"), unit_cap_mask());
    assert_filtering(&lab, env);
    let st = wait_status(env, lab.router(), "synchronized", synchronized);
    assert_eq!(st["host"]["refid"], "192.0.2.10", "{st:#}");
    assert_eq!(st["mode"], "server", "{st:#}");
    agent.stop().unwrap();
}

/// As the unit runs it: root, with the bounding set cut to the unit's.
fn unit_capabilities_suffice_as_root() {
    let env = AgentEnv::new("sdcaproot").unwrap();
    let caps = format!("--bounding-set={}", unit_caps());
    syncs_with_unit_caps("sdcaproot", &env, &["setpriv", &caps, "--"]);
}

/// As a `User=` drop-in would run it: another uid, the unit's set as
/// ambient capabilities, owning its pin, socket and drift places.
fn unit_capabilities_suffice_as_another_user() {
    // systemd mounts /sys/fs/bpf 0700: there another uid cannot reach any
    // pin dir, which is why the unit keeps root (Need::SharedBpffs).
    let env = AgentEnv::new("sdcapuser").unwrap();
    for dir in [env.pins.path(), env.dir()] {
        std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let caps = unit_caps();
    let args = [
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".into(),
        format!("--bounding-set={caps}"),
        format!("--inh-caps={caps}"),
        format!("--ambient-caps={caps}"),
        // Changing uid clears the parent-death signal Child set.
        "--pdeathsig=KILL".into(),
        "--".into(),
    ];
    let mut prefix = vec!["setpriv"];
    prefix.extend(args.iter().map(String::as_str));
    syncs_with_unit_caps("sdcapuser", &env, &prefix);
}

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![
        trial!(
            ready_when_filtering_then_status_and_stopping,
            Netns,
            Bpffs,
            Agent,
            Chronyd
        ),
        trial!(
            ready_after_sync_waits_for_the_clock_and_pings_the_watchdog,
            Netns,
            Bpffs,
            Agent,
            Chronyd
        ),
        trial!(
            unit_capabilities_suffice_as_root,
            Netns,
            Bpffs,
            Agent,
            Chronyd
        ),
        trial!(
            unit_capabilities_suffice_as_another_user,
            Netns,
            SharedBpffs,
            Agent,
            Chronyd
        ),
    ])
}
