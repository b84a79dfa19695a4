//! The router note's story, end to end, over IPv4 and IPv6: a router in
//! client mode syncs to its upstream but does not answer anyone — no NTP,
//! not even an ICMP port unreachable for a probe of port 123 — then serves
//! clients after `ntp-agent mode server` (rate limited, with an access list
//! enforced at the NIC) and stops again after `ntp-agent mode client`,
//! without restarting and without losing sync.

use std::{
    net::{IpAddr, SocketAddr},
    process::Output,
    time::Duration,
};

use ntp_filter_tests::{addrs::*, *};
use serde_json::Value;

const SYNC_TIMEOUT: Duration = Duration::from_secs(45);
const REPLY_WAIT: Duration = Duration::from_secs(2);

struct Scenario {
    lab: RouterLab,
    env: AgentEnv,
    agent: Child,
    _upstream_v4: Chronyd,
    _upstream_v6: Chronyd,
}

/// Router with the agent in client mode, synced to an upstream chronyd
/// (stratum 4, so the router is stratum 5), like the note's transcript.
fn router_in_client_mode(tag: &str) -> Scenario {
    let lab = RouterLab::new(tag).unwrap();
    // The outside host talks from 192.0.2.99 / 2001:db8::99 (as in the
    // issue), not from its first address, which is the upstream server's.
    lab.outside()
        .ip(&[
            "route",
            "add",
            "192.0.2.1/32",
            "dev",
            EXT_IF,
            "src",
            "192.0.2.99",
        ])
        .unwrap();
    lab.outside()
        .ip(&[
            "-6",
            "route",
            "add",
            "2001:db8::1/128",
            "dev",
            EXT_IF,
            "src",
            "2001:db8::99",
        ])
        .unwrap();
    let upstream_v4 = Chronyd::start(
        lab.outside(),
        &ChronyConfig::server(SERVER_V4.into()).local_stratum(4),
    )
    .unwrap();
    let upstream_v6 = Chronyd::start(
        lab.outside(),
        &ChronyConfig::server(SERVER_V6.into()).local_stratum(4),
    )
    .unwrap();
    let env = AgentEnv::new(tag).unwrap();
    let agent = env
        .start(
            lab.router(),
            &[
                "--iface",
                WAN_IF,
                "--server",
                "192.0.2.10",
                "--server",
                "2001:db8::10",
                "--mode",
                "client",
                "--ratelimit-burst",
                "4",
            ],
        )
        .unwrap();
    let s = Scenario {
        lab,
        env,
        agent,
        _upstream_v4: upstream_v4,
        _upstream_v6: upstream_v6,
    };
    s.wait_status("synchronized", |v| v["host"]["synchronized"] == true);
    s
}

impl Scenario {
    fn wait_status(&self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.env
            .wait_status(self.lab.router(), SYNC_TIMEOUT, what, done)
            .unwrap()
    }

    fn status(&self) -> Value {
        self.env.status(self.lab.router()).unwrap()
    }

    /// `ntp-agent <args> --control-socket …` against the running agent.
    fn control(&self, args: &[&str]) -> Finished {
        self.env.control(self.lab.router(), args).unwrap()
    }

    fn ntpdate(&self, router: IpAddr) -> Output {
        self.lab
            .outside()
            .command("ntpdate")
            .args(["-q", &router.to_string()])
            .output()
            .unwrap()
    }

    /// One request from `client`, and what came back within REPLY_WAIT.
    fn ask(&self, client: SocketAddr, router: IpAddr) -> Vec<Reply> {
        let sock = self.lab.outside_udp(client).unwrap();
        sock.send_to(
            &NtpPacket::new(mode::CLIENT).to_bytes(),
            SocketAddr::new(router, 123),
        )
        .unwrap();
        let _ = sock.wait_for(|_| true, REPLY_WAIT);
        sock.received()
            .unwrap()
            .iter()
            .map(|d| Reply::parse(&d.data))
            .collect()
    }
}

#[derive(Debug, PartialEq)]
struct Reply {
    mode: u8,
    stratum: u8,
    refid: [u8; 4],
}

impl Reply {
    fn parse(b: &[u8]) -> Self {
        assert!(b.len() >= 48, "short reply {b:?}");
        Self {
            mode: b[0] & 7,
            stratum: b[1],
            refid: [b[12], b[13], b[14], b[15]],
        }
    }

    fn is_rate_kod(&self) -> bool {
        self.stratum == 0 && &self.refid == b"RATE"
    }
}

/// Everything the router sent to the outside host (as seen on the
/// outside's interface): NTP or ICMP port unreachable alike. (The router's
/// own requests to its upstream go to another address.)
fn answers_from_router(obs: &Observer, since: usize) -> usize {
    let from_router = [IpAddr::from(ROUTER_V4), IpAddr::from(ROUTER_V6)];
    let to_outsider = [IpAddr::from(OUTSIDER_V4), IpAddr::from(OUTSIDER_V6)];
    obs.count_since(since, |f| {
        f.ip()
            .is_some_and(|ip| from_router.contains(&ip.src) && to_outsider.contains(&ip.dst))
    })
}

fn client_mode_syncs_but_answers_nobody() {
    let s = router_in_client_mode("note-cli");
    let st = s.status();
    assert_eq!(st["mode"], "client");
    assert_eq!(st["host"]["stratum"], 5, "{st:#}");
    let text = s.env.status_text(s.lab.router()).unwrap();
    assert!(text.contains("mode:  client"), "{text}");
    assert!(text.contains("status:   synchronized"), "{text}");
    assert!(text.contains("stratum:  5"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("*192.0.2.10") || l.starts_with("+192.0.2.10")),
        "{text}"
    );

    let obs = Observer::start(s.lab.outside(), EXT_IF).unwrap();
    for router in [IpAddr::from(ROUTER_V4), IpAddr::from(ROUTER_V6)] {
        let out = s.ntpdate(router);
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "ntpdate -q {router} got an answer: {said}"
        );
        // ntpsec's ntpdate; classic ntpdate says "no server suitable for
        // synchronization found".
        assert!(said.contains("no eligible servers"), "{said}");

        // hping -p 123 style probe: not NTP at all. No answer of any kind.
        let mark = obs.mark();
        let probe = s
            .lab
            .outside_udp(SocketAddr::new(outsider_of(router), 40_999))
            .unwrap();
        probe.send_to(b"x", SocketAddr::new(router, 123)).unwrap();
        probe
            .send_to(
                &NtpPacket::new(mode::CLIENT).to_bytes(),
                SocketAddr::new(router, 123),
            )
            .unwrap();
        std::thread::sleep(REPLY_WAIT);
        assert_eq!(probe.received().unwrap().len(), 0, "{router} answered");
        assert_eq!(
            answers_from_router(&obs, mark),
            0,
            "{router} sent something back (ICMP?)"
        );
    }
    let st = s.status();
    assert!(
        st["filter"]["counters"]["drops"]["short_payload"].as_u64() >= Some(2),
        "{st:#}"
    );
    assert!(st["filter"]["counters"]["by_class_mode"]["other"]["3"]["dropped"].as_u64() >= Some(2));
}

fn outsider_of(router: IpAddr) -> IpAddr {
    match router {
        IpAddr::V4(_) => OUTSIDER_V4.into(),
        IpAddr::V6(_) => OUTSIDER_V6.into(),
    }
}

fn server_mode_at_runtime_then_back_to_client() {
    let mut s = router_in_client_mode("note-srv");
    let pid = s.agent.pid();

    let out = s.control(&["mode", "server"]);
    assert!(out.status.success(), "{}", out.log);
    assert!(out.log.contains("now in server mode"), "{}", out.log);
    assert_eq!(s.status()["mode"], "server");
    for router in [IpAddr::from(ROUTER_V4), IpAddr::from(ROUTER_V6)] {
        let out = s.ntpdate(router);
        let said = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "ntpdate -q {router} failed in server mode: {said}"
        );
        // ntpdig reports the server's stratum as "s5".
        assert!(said.contains("s5"), "{said}");
        let replies = s.ask(SocketAddr::new(outsider_of(router), 41_000), router);
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!((replies[0].mode, replies[0].stratum), (4, 5));
    }

    let out = s.control(&["mode", "client"]);
    assert!(out.status.success(), "{}", out.log);
    for router in [IpAddr::from(ROUTER_V4), IpAddr::from(ROUTER_V6)] {
        assert!(
            !s.ntpdate(router).status.success(),
            "{router} still answers"
        );
        assert!(s
            .ask(SocketAddr::new(outsider_of(router), 41_001), router)
            .is_empty());
    }
    let st = s.status();
    assert_eq!(st["mode"], "client");
    assert_eq!(st["host"]["synchronized"], true, "sync lost: {st:#}");
    assert!(s.agent.try_wait().unwrap().is_none(), "the agent restarted");
    assert_eq!(s.agent.pid(), pid);

    let out = s.control(&["mode", "sideways"]);
    assert!(!out.status.success());
    assert!(out.log.contains("invalid value 'sideways'"), "{}", out.log);
}

fn flooding_client_gets_one_rate_kod_then_silence() {
    let s = router_in_client_mode("note-rate");
    // Logs: one line per state change, never one per packet.
    let log = s.agent.log();
    for line in [
        "filter maps reconciled",
        "filter attached",
        "source reachable",
        "source selected",
        "synchronized",
    ] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
    let lines_before = log.lines().count();
    assert!(s.control(&["mode", "server"]).status.success());
    for router in [IpAddr::from(ROUTER_V4), IpAddr::from(ROUTER_V6)] {
        let flooder = s
            .lab
            .outside_udp(SocketAddr::new(outsider_of(router), 42_000))
            .unwrap();
        // Burst is 4 (see router_in_client_mode): 4 answers, one KoD, then
        // nothing for the rest of the flood.
        for _ in 0..20 {
            flooder
                .send_to(
                    &NtpPacket::new(mode::CLIENT).to_bytes(),
                    SocketAddr::new(router, 123),
                )
                .unwrap();
        }
        std::thread::sleep(REPLY_WAIT);
        let replies: Vec<Reply> = flooder
            .received()
            .unwrap()
            .iter()
            .map(|d| Reply::parse(&d.data))
            .collect();
        let kods = replies.iter().filter(|r| r.is_rate_kod()).count();
        let answers = replies
            .iter()
            .filter(|r| r.mode == 4 && r.stratum == 5)
            .count();
        assert_eq!((answers, kods), (4, 1), "{router}: {replies:?}");
        assert!(
            replies.last().unwrap().is_rate_kod(),
            "nothing may follow the KoD: {replies:?}"
        );

        // A polite client from another address is still answered.
        let polite = match router {
            IpAddr::V4(_) => IpAddr::from(PEER_V4),
            IpAddr::V6(_) => IpAddr::from(PEER_V6),
        };
        let replies = s.ask(SocketAddr::new(polite, 42_001), router);
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(replies[0].stratum, 5);
    }
    let st = s.status();
    assert_eq!(st["server"]["rate_kod"], 2, "{st:#}");
    assert!(st["server"]["rate_ignored"].as_u64() >= Some(2 * 15));
    // 42 requests and 10 answers later: the mode change, the NTP port
    // opening, and one line per flooder going over its limit.
    let log = s.agent.log();
    let new: Vec<&str> = log.lines().skip(lines_before).collect();
    assert_eq!(
        new.iter().filter(|l| l.contains("KoD RATE sent")).count(),
        2,
        "{new:#?}"
    );
    assert!(new.len() <= 4, "more than one line per change: {new:#?}");
}

fn denied_client_is_dropped_at_the_nic() {
    let s = router_in_client_mode("note-deny");
    assert!(s.control(&["mode", "server"]).status.success());
    let out = s.control(&["deny", "192.0.2.99/32"]);
    assert!(out.status.success(), "{}", out.log);
    assert!(out.log.contains("deny 192.0.2.99/32 added"), "{}", out.log);
    assert!(s.control(&["deny", "2001:db8::99"]).status.success());

    let text = s.env.status_text(s.lab.router()).unwrap();
    assert!(text.contains("deny 192.0.2.99/32"), "{text}");
    for router in [IpAddr::from(ROUTER_V4), IpAddr::from(ROUTER_V6)] {
        assert!(s
            .ask(SocketAddr::new(outsider_of(router), 43_000), router)
            .is_empty());
        let other = match router {
            IpAddr::V4(_) => IpAddr::from(PEER_V4),
            IpAddr::V6(_) => IpAddr::from(PEER_V6),
        };
        assert_eq!(
            s.ask(SocketAddr::new(other, 43_001), router).len(),
            1,
            "{other} refused"
        );
    }
    let st = s.status();
    assert_eq!(st["filter"]["counters"]["drops"]["denied"], 2, "{st:#}");
    assert_eq!(st["filter"]["acl_default"], "allow");

    // Taking the rule back lets the client in again; deleting what is not
    // there is an error that changes nothing.
    assert!(s
        .control(&["deny", "--del", "192.0.2.99/32"])
        .status
        .success());
    assert_eq!(
        s.ask(
            SocketAddr::new(OUTSIDER_V4.into(), 43_002),
            ROUTER_V4.into()
        )
        .len(),
        1
    );
    let out = s.control(&["deny", "--del", "192.0.2.99/32"]);
    assert!(!out.status.success());
    assert!(
        out.log.contains("no deny rule for 192.0.2.99/32"),
        "{}",
        out.log
    );
    let out = s.control(&["allow", "192.0.2.99/24"]);
    assert!(!out.status.success());
    assert!(out.log.contains("192.0.2.99/24"), "{}", out.log);

    // Allowing a range denies everyone else (chrony's convention).
    assert!(s.control(&["allow", "192.0.2.16/28"]).status.success());
    assert_eq!(
        s.ask(SocketAddr::new(PEER_V4.into(), 43_003), ROUTER_V4.into())
            .len(),
        1
    );
    assert!(s
        .ask(
            SocketAddr::new(OUTSIDER_V4.into(), 43_004),
            ROUTER_V4.into()
        )
        .is_empty());
    assert_eq!(s.status()["filter"]["acl_default"], "deny");
}

fn control_errors_change_nothing() {
    let s = router_in_client_mode("note-ctl");
    let before = s.status();
    for (args, says) in [
        (
            &["server", "del", "192.0.2.77"][..],
            "no server 192.0.2.77 is configured",
        ),
        (
            &["server", "add", "192.0.2.10"][..],
            "192.0.2.10 is already a source",
        ),
        (
            &["peer", "add", "192.0.2.300"][..],
            "invalid value '192.0.2.300'",
        ),
        (&["mode", "client"][..], "already in client mode"),
        (
            &["server", "add", "192.0.2.20,minpoll=12"][..],
            "minpoll 12 (its) is larger than maxpoll",
        ),
        (
            &["server", "del", "192.0.2.10,minpoll=4"][..],
            "source options go with `add`",
        ),
    ] {
        let out = s.control(args);
        assert!(out.log.contains(says), "{args:?}: {}", out.log);
    }
    let after = s.status();
    assert_eq!(before["filter"]["servers"], after["filter"]["servers"]);
    assert_eq!(before["filter"]["policy"], after["filter"]["policy"]);

    // A server added at run time reaches the filter and the core at once,
    // with its own poll interval; deleting it takes it out of both.
    let out = s.control(&["server", "add", "192.0.2.20,minpoll=4,maxpoll=4"]);
    assert!(out.status.success(), "{}", out.log);
    let st = s.status();
    let added = st["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["remote"] == "192.0.2.20")
        .unwrap_or_else(|| panic!("192.0.2.20 not added:\n{st:#}"));
    assert_eq!(added["poll"], 16, "2^4 s, the source's own minpoll/maxpoll");
    assert!(
        st["filter"]["servers"]
            .as_array()
            .unwrap()
            .contains(&"192.0.2.20".into()),
        "{st:#}"
    );
    assert!(st["peers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["remote"] == "192.0.2.20"));
    assert!(s.control(&["server", "del", "192.0.2.20"]).status.success());
    let st = s.status();
    assert!(!st["filter"]["servers"]
        .as_array()
        .unwrap()
        .contains(&"192.0.2.20".into()));
    assert!(!st["peers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["remote"] == "192.0.2.20"));

    // No agent behind the socket: a clear error.
    let out = run_agent_once(
        s.lab.router(),
        &[
            "mode",
            "server",
            "--control-socket",
            "/tmp/nf-no-such-agent.sock",
        ],
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(!out.status.success());
    assert!(out.log.contains("the agent is not running"), "{}", out.log);
}

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![
        trial!(
            client_mode_syncs_but_answers_nobody,
            Netns,
            Bpffs,
            Agent,
            Chronyd
        ),
        trial!(
            server_mode_at_runtime_then_back_to_client,
            Netns,
            Bpffs,
            Agent,
            Chronyd
        ),
        trial!(
            flooding_client_gets_one_rate_kod_then_silence,
            Netns,
            Bpffs,
            Agent,
            Chronyd
        ),
        trial!(
            denied_client_is_dropped_at_the_nic,
            Netns,
            Bpffs,
            Agent,
            Chronyd
        ),
        trial!(control_errors_change_nothing, Netns, Bpffs, Agent, Chronyd),
    ])
}
