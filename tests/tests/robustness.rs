//! What a hostile network and a careless operator tried (issue #14) and the
//! agent now survives: garbage NTP requests, a control-socket path that is
//! a regular file, SIGHUP, floods of control and metrics connections,
//! invalid UTF-8 on the control socket.

use std::time::{Duration, Instant};

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

/// Bytes that are not UTF-8 on the control socket get an error line
/// back, not a silently closed connection.
fn invalid_utf8_on_the_control_socket_gets_an_error() {
    use std::io::{BufRead as _, Write as _};
    let lab = RouterLab::new("utf8").unwrap();
    let env = AgentEnv::new("utf8").unwrap();
    let _agent = env
        .start(lab.router(), &["--iface", WAN_IF, "--server", "192.0.2.10"])
        .unwrap();
    let mut c = std::os::unix::net::UnixStream::connect(env.control_socket()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"{\"status\xff\xfe\n").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(c).read_line(&mut line).unwrap();
    let reply: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("no reply line ({e}): {line:?}"));
    let error = reply["error"].as_str().unwrap_or_else(|| panic!("{reply}"));
    assert!(error.contains("not UTF-8"), "{error}");
    // And the agent still answers a proper request.
    env.status(lab.router()).unwrap();
}

/// A float option far out of range (`1e30` seconds) is one line naming
/// the option, the value and the range, in `check-config` and `run` alike,
/// never a panic (exit 101).
fn float_option_out_of_range_is_named_not_a_panic() {
    let ns = Netns::new("float").unwrap();
    let env = AgentEnv::new("float").unwrap();
    let file = env.dir().join("agent.toml");
    std::fs::write(
        &file,
        "iface = [\"lo\"]\nserver = [\"192.0.2.10\"]\nratelimit-interval = 1e30\n",
    )
    .unwrap();
    let file = file.display().to_string();
    let check = run_agent_once(&ns, &["check-config", &file], Duration::from_secs(10)).unwrap();
    let args = env.run_args(&["--iface", "lo", "--ratelimit-interval", "1e30"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = run_agent_once(&ns, &args, Duration::from_secs(10)).unwrap();
    for (what, out) in [("check-config", &check), ("run", &run)] {
        let (code, log) = (out.status.code(), &out.log);
        assert!(!log.contains("panicked"), "{what}: {log}");
        assert_eq!(code, Some(1), "{what}: {log}");
        assert!(
            log.contains("--ratelimit-interval 1000000000000000000000000000000 is out of range")
                && log.contains("0.001 to 3600 seconds"),
            "{what}: {log}"
        );
    }
}

/// Idle connections opened on the control socket, as in the issue.
const IDLE_CONNECTIONS: usize = 1100;
/// The agent's descriptor limit in the flood test: far fewer than the
/// connections thrown at it.
const AGENT_NOFILE: &str = "--nofile=256:256";
const METRICS: &str = "127.0.0.1:9977";

/// Raises this process's soft descriptor limit to its hard one, for the
/// client ends of the flood.
fn raise_own_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(lim.rlim_cur as usize > IDLE_CONNECTIONS + 100, "{lim:?}");
}

/// Opens up to `n` idle connections to the Unix socket at `path` without
/// ever blocking: a full backlog (nothing accepted) is retried until
/// `deadline`, then given up on.
fn idle_unix_connections(path: &str, n: usize, deadline: Instant) -> Vec<socket2::Socket> {
    use socket2::{Domain, SockAddr, Socket, Type};
    let addr = SockAddr::unix(path).unwrap();
    let mut conns = Vec::with_capacity(n);
    while conns.len() < n && Instant::now() < deadline {
        let s = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        match s.connect(&addr) {
            Ok(()) => conns.push(s),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(e) => panic!("connect {path}: {e}"),
        }
    }
    conns
}

/// One scrape of `/metrics` from inside `ns`, with a deadline.
fn scrape(ns: &Netns, within: Duration) -> std::io::Result<String> {
    ns.in_ns(move || {
        use std::io::{Read as _, Write as _};
        let mut c = std::net::TcpStream::connect(METRICS)?;
        c.set_read_timeout(Some(within))?;
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")?;
        let mut page = String::new();
        c.read_to_string(&mut page)?;
        Ok(page)
    })
    .unwrap()
}

/// An agent with 256 descriptors gets 1100 idle control connections and
/// a slowloris crowd on `/metrics`: `status` still answers, a scrape still
/// succeeds, and the agent keeps polling its server (which it could not
/// without descriptors for its request sockets).
fn connection_floods_leave_status_scrapes_and_ntp_working() {
    raise_own_nofile();
    let lab = RouterLab::new("flood").unwrap();
    let env = AgentEnv::new("flood").unwrap();
    // A silent upstream that counts the agent's requests.
    let upstream = lab.outside_udp(sock(SERVER_V4, 123)).unwrap();
    let mut agent = env
        .spawn_with(
            lab.router(),
            &["prlimit", AGENT_NOFILE, "--"],
            &[],
            &[
                "--iface",
                WAN_IF,
                "--server",
                "192.0.2.10,minpoll=3,maxpoll=3",
                "--metrics",
                METRICS,
            ],
        )
        .unwrap();
    agent
        .wait_for_line("running;", Duration::from_secs(20))
        .unwrap();
    let is_request = |d: &Datagram| d.ntp_mode() == Some(mode::CLIENT);
    upstream
        .wait_for(is_request, Duration::from_secs(10))
        .unwrap();

    let started = Instant::now();
    let idle = idle_unix_connections(
        &env.control_socket(),
        IDLE_CONNECTIONS,
        started + Duration::from_secs(10),
    );
    // Slowloris: half a request each, never finished, more than the
    // metrics listener's connection cap.
    let slow = lab
        .router()
        .in_ns(|| {
            use std::io::Write as _;
            (0..3 * ntp_agent::metrics::MAX_CONNECTIONS)
                .map(|_| {
                    let mut c = std::net::TcpStream::connect(METRICS).unwrap();
                    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: a").unwrap();
                    c
                })
                .collect::<Vec<_>>()
        })
        .unwrap();
    assert_eq!(
        idle.len(),
        IDLE_CONNECTIONS,
        "the control socket stopped accepting after {} connections",
        idle.len()
    );
    let st = env.status(lab.router());
    eprintln!(
        "status {} {:?} after the flood began",
        if st.is_ok() { "answered" } else { "failed" },
        started.elapsed()
    );
    let st = st.unwrap();
    assert!(
        st.get("agent_error").is_none() && st["peers"].is_array(),
        "the agent did not answer status: {}",
        st["agent_error"]
    );
    let page = scrape(lab.router(), Duration::from_secs(4)).expect("a scrape during slowloris");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("ntp_filter_"), "{page}");

    upstream.clear().unwrap();
    upstream
        .wait_for(is_request, Duration::from_secs(30))
        .expect("the agent stopped polling its server during the flood");
    assert!(matches!(agent.try_wait(), Ok(None)), "{}", agent.log());
    drop((idle, slow));
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
        trial!(float_option_out_of_range_is_named_not_a_panic, Netns, Agent),
        trial!(
            invalid_utf8_on_the_control_socket_gets_an_error,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(
            connection_floods_leave_status_scrapes_and_ntp_working,
            Netns,
            Bpffs,
            Agent
        ),
    ])
}
