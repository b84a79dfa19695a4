//! Issue #14, items 4 and 5, end to end: a second agent on the same pin
//! directory, the filtered interface deleted and re-created under a
//! running agent and between two runs, and `ntp-agent detach` under a
//! running agent.

use std::{
    io::{Read as _, Write as _},
    time::Duration,
};

use ntp_filter_tests::{addrs::*, *};
use serde_json::Value;

const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
const CMD_TIMEOUT: Duration = Duration::from_secs(20);
/// On the router's loopback: only reachable from inside its namespace.
const METRICS: &str = "127.0.0.1:9975";

/// The outsider's mode-3 probe of the router's port 123.
fn probe(lab: &RouterLab) -> Vec<u8> {
    lab.ntp_frame(
        sock(OUTSIDER_V4, 50_123),
        sock(ROUTER_V4, 123),
        NtpPacket::new(mode::CLIENT),
    )
    .frame()
}

/// Sends `n` probes from outside and returns how many reached wan0's stack
/// (passed the filter), after a marker barrier.
fn probes_passed(lab: &RouterLab, n: usize) -> usize {
    let obs = lab.observe_wan().unwrap();
    let tx = lab.raw_sender().unwrap();
    for _ in 0..n {
        tx.send(&probe(lab)).unwrap();
    }
    lab.sync(&tx, &obs).unwrap();
    obs.count(&Match::ntp(OUTSIDER_V4.into(), mode::CLIENT))
}

/// wan0's `other` mode-3 drops, from `status --json`'s filter part.
fn wan_probe_drops(st: &Value) -> u64 {
    st["filter"]["counters_by_interface"][WAN_IF]["by_class_mode"]["other"]["3"]["dropped"]
        .as_u64()
        .unwrap_or(0)
}

/// The agent's view of `iface` in `status --json`.
fn iface_state(st: &Value, iface: &str) -> Option<String> {
    st["interfaces"]
        .as_array()?
        .iter()
        .find(|i| i["name"] == iface)
        .and_then(|i| i["state"].as_str())
        .map(str::to_string)
}

/// Whether the kernel reports an XDP program on the router's wan0.
fn wan_has_xdp(lab: &RouterLab) -> bool {
    let out = lab
        .router()
        .ip(&["-j", "-d", "link", "show", "dev", WAN_IF])
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    v[0]["xdp"]["prog"]["id"].as_u64().is_some()
}

/// The metrics page, fetched from inside the router namespace.
fn metrics_page(lab: &RouterLab) -> String {
    lab.router()
        .in_ns(|| {
            let mut s = std::net::TcpStream::connect(METRICS).unwrap();
            s.set_read_timeout(Some(CMD_TIMEOUT)).unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut page = String::new();
            s.read_to_string(&mut page).unwrap();
            page
        })
        .unwrap()
}

/// Item 4. Agent A runs in client mode; agent B is started on the same pin
/// directory in server mode with its own control socket. B exits non-zero
/// with one line naming the pin directory and A's pid, and touches
/// nothing: A's policy is still client mode, an outsider's probe of port
/// 123 is still dropped at the NIC (the counter moves), A still answers
/// `status`, and B left no control socket.
fn a_second_agent_on_the_same_pins_is_refused() {
    let lab = RouterLab::new("hlock").unwrap();
    let a_env = AgentEnv::new("hlocka").unwrap();
    let a = a_env
        .start(lab.router(), &["--iface", WAN_IF, "--server", "192.0.2.10"])
        .unwrap();
    let before = a_env.status(lab.router()).unwrap();
    assert_eq!(before["mode"], "client", "{before:#}");

    let b_env = AgentEnv::new("hlockb").unwrap();
    let mut args = b_env.run_args(&[
        "--iface",
        WAN_IF,
        "--server",
        "192.0.2.10",
        "--mode",
        "server",
    ]);
    let at = args.iter().position(|a| a == "--pin-dir").unwrap() + 1;
    args[at] = a_env.pin_dir().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut b = run_agent(lab.router(), &args).unwrap();
    let b_exit = b.wait_exit(CMD_TIMEOUT);
    let b_log = b.log();

    // A first: what B did to it shows even when B did not stop.
    let after = a_env.status(lab.router()).unwrap();
    assert_eq!(after["mode"], "client", "{after:#}");
    assert_eq!(
        after["filter"]["policy"], before["filter"]["policy"],
        "the second agent rewrote the running agent's policy; B's log:\n{b_log}"
    );
    assert_eq!(
        after["filter"]["policy"]["other"],
        serde_json::json!([]),
        "{after:#}"
    );
    assert_eq!(probes_passed(&lab, 3), 0, "the probes passed the NIC");
    let counted = a_env.status(lab.router()).unwrap();
    assert_eq!(
        wan_probe_drops(&counted),
        wan_probe_drops(&after) + 3,
        "{counted:#}"
    );

    let b_exit = b_exit.unwrap_or_else(|e| panic!("the second agent kept running: {e:#}"));
    assert!(!b_exit.success(), "{b_log}");
    let lines: Vec<&str> = b_log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {b_log}");
    let want = format!(
        "another agent (pid {}) is running on the pin directory {}: refusing to start, nothing was changed",
        a.pid(),
        a_env.pin_dir()
    );
    assert!(lines[0].contains(&want), "{b_log}");
    assert!(
        !std::path::Path::new(&b_env.control_socket()).exists(),
        "the refused agent left its control socket"
    );
}

/// Item 5 (a). wan0 is deleted under a running agent: one warning, `status`
/// fails and says `missing`, the metric is 0. wan0 comes back (same name,
/// MACs and addresses, a new ifindex): the agent attaches again by itself,
/// an outsider's probe is dropped at the NIC again (the counter moves),
/// and `status` succeeds with `attached`.
fn a_deleted_interface_is_missing_then_filtered_again() {
    let lab = RouterLab::new("hgone").unwrap();
    let env = AgentEnv::new("hgone").unwrap();
    let mut agent = env
        .start(
            lab.router(),
            &[
                "--iface",
                WAN_IF,
                "--server",
                "192.0.2.10",
                "--metrics",
                METRICS,
            ],
        )
        .unwrap();
    let first = env.status(lab.router()).unwrap();
    assert_eq!(iface_state(&first, WAN_IF).as_deref(), Some("attached"));
    let old_index = first["interfaces"][0]["ifindex"].as_u64().unwrap();
    assert!(metrics_page(&lab).contains("ntp_filter_interface_filtered{interface=\"wan0\"} 1"));

    lab.delete_wan().unwrap();
    agent
        .wait_for_line("interface wan0 disappeared", EVENT_TIMEOUT)
        .unwrap();
    let (ok, st) = env.status_any(lab.router()).unwrap();
    assert!(!ok, "status succeeded with wan0 gone: {st:#}");
    assert_eq!(
        iface_state(&st, WAN_IF).as_deref(),
        Some("missing"),
        "{st:#}"
    );
    let text = env.status_text(lab.router()).unwrap();
    assert!(
        text.contains("filter on wan0: NOT FILTERED, missing"),
        "{text}"
    );
    assert!(
        text.contains("the filter is not on wan0 (missing)"),
        "{text}"
    );
    let page = metrics_page(&lab);
    assert!(
        page.contains("ntp_filter_interface_filtered{interface=\"wan0\"} 0"),
        "{page}"
    );
    assert!(
        page.contains("ntp_filter_interface_state{interface=\"wan0\",state=\"missing\"} 1"),
        "{page}"
    );
    assert_eq!(
        agent.log().matches("interface wan0 disappeared").count(),
        1,
        "warned once: {}",
        agent.log()
    );

    lab.recreate_wan().unwrap();
    agent
        .wait_for_line("interface wan0 is back", EVENT_TIMEOUT)
        .unwrap();
    let back = env
        .wait_status(lab.router(), EVENT_TIMEOUT, "wan0 attached", |v| {
            iface_state(v, WAN_IF).as_deref() == Some("attached")
        })
        .unwrap();
    assert_ne!(
        back["interfaces"][0]["ifindex"].as_u64(),
        Some(old_index),
        "{back:#}"
    );
    assert!(wan_has_xdp(&lab));
    assert_eq!(probes_passed(&lab, 3), 0, "the probes passed the NIC");
    let counted = env.status(lab.router()).unwrap();
    assert_eq!(
        wan_probe_drops(&counted),
        wan_probe_drops(&back) + 3,
        "{counted:#}"
    );
    assert!(metrics_page(&lab).contains("ntp_filter_interface_filtered{interface=\"wan0\"} 1"));
}

/// Item 5 (b). The agent is killed (`kill -9`: the pins stay), wan0 is
/// deleted and re-created (unfiltered now: a probe passes), and the agent
/// started again: it replaces the severed pinned link instead of failing
/// with "Link has been severed", and filters.
fn a_restart_after_the_interface_was_recreated_filters() {
    let lab = RouterLab::new("hrestart").unwrap();
    let env = AgentEnv::new("hrestart").unwrap();
    let args = ["--iface", WAN_IF, "--server", "192.0.2.10"];
    let mut agent = env.start(lab.router(), &args).unwrap();
    agent.signal(libc::SIGKILL);
    agent.wait_exit(CMD_TIMEOUT).unwrap();
    assert!(env
        .pins
        .entries()
        .unwrap()
        .iter()
        .any(|e| e.ends_with("link-wan0")));
    lab.delete_wan().unwrap();
    lab.recreate_wan().unwrap();
    assert_eq!(
        probes_passed(&lab, 1),
        1,
        "the new wan0 is not filtered yet"
    );

    let agent = env.start(lab.router(), &args).unwrap();
    assert!(
        agent.log().contains("no longer filters it"),
        "{}",
        agent.log()
    );
    let st = env.status(lab.router()).unwrap();
    assert_eq!(
        iface_state(&st, WAN_IF).as_deref(),
        Some("attached"),
        "{st:#}"
    );
    assert!(wan_has_xdp(&lab));
    assert_eq!(probes_passed(&lab, 3), 0, "the probes passed the NIC");
    let counted = env.status(lab.router()).unwrap();
    assert_eq!(
        wan_probe_drops(&counted),
        wan_probe_drops(&st) + 3,
        "{counted:#}"
    );
}

/// Item 5 (c). `ntp-agent detach --iface wan0` under a running agent warns
/// that the agent keeps running unfiltered; the agent notices: `status`
/// fails naming wan0 `detached`, `server add` is refused (nothing changes),
/// and the agent does not attach again behind the operator's back. A full
/// `detach` then keeps the pin directory (the agent's lock), so a second
/// agent is still refused.
fn detach_under_a_running_agent_is_reported_and_changes_refused() {
    let lab = RouterLab::new("hdetach").unwrap();
    let env = AgentEnv::new("hdetach").unwrap();
    let mut agent = env
        .start(lab.router(), &["--iface", WAN_IF, "--server", "192.0.2.10"])
        .unwrap();
    let out = run_agent_once(
        lab.router(),
        &["detach", "--iface", WAN_IF, "--pin-dir", env.pin_dir()],
        CMD_TIMEOUT,
    )
    .unwrap();
    assert!(out.status.success(), "{}", out.log);
    assert!(
        out.log.contains(&format!(
            "warning: an agent (pid {}) is running on {}",
            agent.pid(),
            env.pin_dir()
        )),
        "{}",
        out.log
    );
    assert!(!wan_has_xdp(&lab));

    let (ok, st) = env.status_any(lab.router()).unwrap();
    assert!(!ok, "status succeeded with wan0 detached: {st:#}");
    assert_eq!(
        iface_state(&st, WAN_IF).as_deref(),
        Some("detached"),
        "{st:#}"
    );
    let text = env.status_text(lab.router()).unwrap();
    assert!(
        text.contains("filter on wan0: NOT FILTERED, detached"),
        "{text}"
    );
    agent
        .wait_for_line("the filter was removed from wan0", EVENT_TIMEOUT)
        .unwrap();

    let add = env
        .control(lab.router(), &["server", "add", "192.0.2.11"])
        .unwrap();
    assert!(!add.status.success(), "{}", add.log);
    assert!(
        add.log.contains("the filter is detached on wan0"),
        "{}",
        add.log
    );
    let (_, st) = env.status_any(lab.router()).unwrap();
    let remotes: Vec<&str> = st["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["remote"].as_str())
        .collect();
    assert_eq!(remotes, ["192.0.2.10"], "{st:#}");

    // Two periodic looks later: still not attached.
    std::thread::sleep(Duration::from_secs(5));
    assert!(!wan_has_xdp(&lab), "the agent attached again");
    assert_eq!(probes_passed(&lab, 1), 1, "wan0 is unfiltered");

    let out = run_agent_once(
        lab.router(),
        &["detach", "--pin-dir", env.pin_dir()],
        CMD_TIMEOUT,
    )
    .unwrap();
    assert!(out.status.success(), "{}", out.log);
    assert!(env.pins.path().exists(), "the locked pin directory went");
    let second = AgentEnv::new("hdetach2").unwrap();
    let mut args = second.run_args(&["--iface", WAN_IF]);
    let at = args.iter().position(|a| a == "--pin-dir").unwrap() + 1;
    args[at] = env.pin_dir().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let refused = run_agent_once(lab.router(), &args, CMD_TIMEOUT).unwrap();
    assert!(!refused.status.success(), "{}", refused.log);
    assert!(
        refused.log.contains("is running on the pin directory"),
        "{}",
        refused.log
    );
    agent.stop().unwrap();
}

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![
        trial!(
            a_second_agent_on_the_same_pins_is_refused,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(
            a_deleted_interface_is_missing_then_filtered_again,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(
            a_restart_after_the_interface_was_recreated_filters,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(
            detach_under_a_running_agent_is_reported_and_changes_refused,
            Netns,
            Bpffs,
            Agent
        ),
    ])
}
