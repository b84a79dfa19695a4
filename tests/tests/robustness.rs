//! What a hostile network and a careless operator tried (issue #14) and the
//! agent now survives: garbage NTP requests, a control-socket path that is
//! a regular file, SIGHUP, floods of control and metrics connections,
//! invalid UTF-8 on the control socket.

use std::time::Duration;

use ntp_filter_tests::{addrs::*, *};

const REPLY_WAIT: Duration = Duration::from_secs(2);

/// A KoD RATE (mode 4, stratum 0, refid "RATE") or an answer.
fn is_rate_kod(d: &[u8]) -> bool {
    d.len() >= 48 && d[0] & 7 == 4 && d[1] == 0 && &d[12..16] == b"RATE"
}

/// With a burst of 1, a garbage mode-3 datagram between two good requests
/// must not spend the client's one KoD RATE: the second good request gets
/// it, and the garbage is counted as malformed.
fn malformed_request_does_not_spend_the_kod() {
    let lab = RouterLab::new("malform").unwrap();
    let env = AgentEnv::new("malform").unwrap();
    let _agent = env
        .start(
            lab.router(),
            &[
                "--iface",
                WAN_IF,
                "--server",
                "192.0.2.10",
                "--mode",
                "server",
                "--ratelimit-burst",
                "1",
            ],
        )
        .unwrap();
    let client = lab.outside_udp(sock(OUTSIDER_V4, 42_100)).unwrap();
    let router = sock(ROUTER_V4, 123);
    let good = NtpPacket::new(mode::CLIENT).to_bytes();
    // A header and 3 bytes that are neither an extension field nor a MAC.
    let mut garbage = good.clone();
    garbage.extend([1, 2, 3]);
    client.send_to(&good, router).unwrap();
    client.wait_for(|_| true, REPLY_WAIT).unwrap();
    // Same socket, same path: the agent sees them in this order.
    client.send_to(&garbage, router).unwrap();
    client.send_to(&good, router).unwrap();
    let _ = client.wait_for(|d| is_rate_kod(&d.data), REPLY_WAIT);
    let replies: Vec<Vec<u8>> = client
        .received()
        .unwrap()
        .into_iter()
        .map(|d| d.data)
        .collect();
    assert_eq!(replies.len(), 2, "{replies:?}");
    assert!(!is_rate_kod(&replies[0]), "first: an answer {replies:?}");
    assert!(
        is_rate_kod(&replies[1]),
        "the garbage spent the KoD: {replies:?}"
    );
    let st = env.status(lab.router()).unwrap();
    assert_eq!(st["server"]["malformed"], 1, "{st:#}");
    assert_eq!(st["server"]["answered"], 1, "{st:#}");
    assert_eq!(st["server"]["rate_kod"], 1, "{st:#}");
    let text = env.status_text(lab.router()).unwrap();
    assert!(text.contains("1 malformed"), "{text}");
}

/// `--control-socket` naming a regular file: the agent refuses to start,
/// says why, and the file is untouched.
fn control_socket_path_that_is_a_file_is_kept() {
    let lab = RouterLab::new("ctlfile").unwrap();
    let env = AgentEnv::new("ctlfile").unwrap();
    let file = env.dir().join("notes.txt");
    std::fs::write(&file, "the operator's notes").unwrap();
    let file_arg = file.display().to_string();
    let args = [
        "run",
        "--iface",
        WAN_IF,
        "--pin-dir",
        env.pin_dir(),
        "--control-socket",
        &file_arg,
        "--no-clock-adjust",
    ];
    let out = run_agent_once(lab.router(), &args, Duration::from_secs(10)).unwrap();
    assert!(!out.status.success(), "{}", out.log);
    assert!(
        out.log.contains("is a regular file, not a socket"),
        "{}",
        out.log
    );
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "the operator's notes"
    );
}

/// SIGHUP (a closed terminal, a habitual `systemctl reload`) never stops
/// the agent: it logs that it ignores it and keeps answering.
fn sighup_is_logged_and_ignored() {
    let lab = RouterLab::new("sighup").unwrap();
    let env = AgentEnv::new("sighup").unwrap();
    let mut agent = env
        .start(lab.router(), &["--iface", WAN_IF, "--server", "192.0.2.10"])
        .unwrap();
    for _ in 0..3 {
        agent.signal(libc::SIGHUP);
    }
    agent
        .wait_for_line("SIGHUP received and ignored", Duration::from_secs(5))
        .unwrap();
    assert!(matches!(agent.try_wait(), Ok(None)), "{}", agent.log());
    let st = env.status(lab.router()).unwrap();
    assert!(st["peers"].is_array(), "{st:#}");
    assert!(matches!(agent.try_wait(), Ok(None)), "{}", agent.log());
    assert!(std::path::Path::new(&env.control_socket()).exists());
}

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![
        trial!(
            malformed_request_does_not_spend_the_kod,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(
            control_socket_path_that_is_a_file_is_kept,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(sighup_is_logged_and_ignored, Netns, Bpffs, Agent),
    ])
}
