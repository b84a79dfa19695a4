//! `ntp-agent run --metrics`: the Prometheus page scraped from inside the
//! router namespace while the agent syncs (observe-only) to a chronyd
//! (`-x`) and drops an outsider's requests at the NIC; and a bad or busy
//! metrics address stopping the start with nothing left behind.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

use ntp_filter_tests::{addrs::*, *};

/// On the router's loopback: only reachable from inside its namespace.
const METRICS: &str = "127.0.0.1:9975";
const SYNC_TIMEOUT: Duration = Duration::from_secs(45);
const POLL: Duration = Duration::from_millis(250);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Outsider requests sent in one go; the counters must move by exactly this.
const PROBES: u16 = 7;

struct Page {
    status: u16,
    content_type: String,
    body: String,
}

/// GET `path` on the metrics address from a thread inside the router
/// namespace, so the connection is made there.
fn get(lab: &RouterLab, path: &str, accept: Option<&str>) -> Page {
    let url = format!("http://{METRICS}{path}");
    let accept = accept.map(str::to_string);
    lab.router()
        .in_ns(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(HTTP_TIMEOUT))
                .build()
                .into();
            let mut req = agent.get(&url);
            if let Some(a) = &accept {
                req = req.header("Accept", a);
            }
            let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
            Page {
                status: resp.status().as_u16(),
                content_type: resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_string(),
                body: resp.body_mut().read_to_string().unwrap(),
            }
        })
        .unwrap()
}

struct Metrics(prometheus_parse::Scrape);

impl Metrics {
    fn scrape(lab: &RouterLab) -> Self {
        let page = get(lab, "/metrics", None);
        assert_eq!(page.status, 200, "{}", page.body);
        assert_eq!(
            page.content_type, "text/plain; version=0.0.4; charset=utf-8",
            "{}",
            page.body
        );
        Self(prometheus_parse::Scrape::parse(page.body.lines().map(|l| Ok(l.to_string()))).unwrap())
    }

    fn samples<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a prometheus_parse::Sample> + 'a {
        self.0.samples.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// The value of the one series matching, `None` if there is none.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<_> = self.samples(name, labels).collect();
        assert!(found.len() <= 1, "{name}{labels:?} matches {found:?}");
        found.first().map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{name}: unexpected {other:?}"),
        })
    }

    fn must(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no {name}{labels:?} in {:#?}", self.0.samples))
    }
}

fn server_synced(m: &Metrics) -> bool {
    let server = [("address", "192.0.2.10"), ("kind", "server")];
    let selected = [
        ("address", "192.0.2.10"),
        ("kind", "server"),
        ("state", "selected"),
    ];
    m.value("ntp_filter_sync_synchronized", &[]) == Some(1.0)
        && m.value("ntp_filter_source_reach", &server).unwrap_or(0.0) > 0.0
        && m.value("ntp_filter_source_state", &selected) == Some(1.0)
}

fn metrics_follow_sync_and_drops_at_the_nic() {
    let lab = RouterLab::new("metrics").unwrap();
    let _chronyd = Chronyd::start(lab.outside(), &ChronyConfig::server(SERVER_V4.into())).unwrap();
    let env = AgentEnv::new("metrics").unwrap();
    let _agent = env
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

    let deadline = Instant::now() + SYNC_TIMEOUT;
    let m = loop {
        let m = Metrics::scrape(&lab);
        if server_synced(&m) {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "not synchronized to 192.0.2.10 (reach > 0, selected) within {SYNC_TIMEOUT:?}: {:#?}",
            m.0.samples
        );
        std::thread::sleep(POLL);
    };
    // chronyd announces stratum 3.
    assert_eq!(m.must("ntp_filter_sync_stratum", &[]), 4.0);
    assert_eq!(
        m.must("ntp_filter_source_stratum", &[("address", "192.0.2.10")]),
        3.0
    );
    assert!(
        m.must(
            "ntp_filter_source_delay_seconds",
            &[("address", "192.0.2.10")]
        ) > 0.0
    );
    assert!(m.must("ntp_filter_sync_last_update_age_seconds", &[]) >= 0.0);
    // --no-clock-adjust (AgentEnv): the observe-only correction is there.
    assert!(m
        .value("ntp_filter_clock_correction_seconds", &[])
        .is_some());
    assert_eq!(m.must("ntp_filter_agent_mode", &[("mode", "client")]), 1.0);
    assert_eq!(m.must("ntp_filter_maps_readable", &[]), 1.0);
    let xdp: Vec<_> = m
        .samples("ntp_filter_xdp_attached", &[("interface", WAN_IF)])
        .collect();
    assert_eq!(xdp.len(), 1, "{xdp:?}");
    assert!(
        ["native", "skb"].contains(&xdp[0].labels.get("mode").unwrap_or("")),
        "{xdp:?}"
    );

    // The counters are per interface: only the filtered one is labelled.
    let ifaces: BTreeSet<&str> = m
        .samples("ntp_filter_packets_total", &[])
        .filter_map(|s| s.labels.get("interface"))
        .collect();
    assert_eq!(ifaces, BTreeSet::from([WAN_IF]));
    let iface = WAN_IF;
    let outsider_drops = [
        ("interface", iface),
        ("class", "other"),
        ("mode", "3"),
        ("verdict", "drop"),
    ];
    let unknown_source = [("interface", iface), ("reason", "unknown_source")];
    let before = (
        m.must("ntp_filter_packets_total", &outsider_drops),
        m.must("ntp_filter_drops_total", &unknown_source),
    );

    let obs = lab.observe_wan().unwrap();
    let tx = lab.raw_sender().unwrap();
    let frames: Vec<Vec<u8>> = (0..PROBES)
        .map(|i| {
            lab.ntp_frame(
                sock(OUTSIDER_V4, 41_000 + i),
                sock(ROUTER_V4, 123),
                NtpPacket::new(mode::CLIENT),
            )
            .frame()
        })
        .collect();
    tx.send_all(&frames).unwrap();
    // After the barrier XDP has seen every probe (and counted it).
    lab.sync(&tx, &obs).unwrap();
    assert_eq!(
        obs.count(&Match::ntp(OUTSIDER_V4.into(), mode::CLIENT)),
        0,
        "a probe got through the filter"
    );
    let m = Metrics::scrape(&lab);
    let after = (
        m.must("ntp_filter_packets_total", &outsider_drops),
        m.must("ntp_filter_drops_total", &unknown_source),
    );
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (f64::from(PROBES), f64::from(PROBES)),
        "before {before:?}, after {after:?}"
    );

    for path in ["/", "/metric", "/metrics/x"] {
        let page = get(&lab, path, None);
        assert_eq!(page.status, 404, "{path}: {}", page.body);
    }
    let om = get(
        &lab,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    );
    assert_eq!(om.status, 200);
    assert_eq!(
        om.content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(om.body.ends_with("# EOF\n"), "{}", om.body);
}

fn assert_says(log: &str, needle: &str) {
    assert!(log.contains(needle), "expected {needle:?} in:\n{log}");
}

/// The start failed before touching anything: no XDP program, no pins, no
/// control socket.
fn assert_nothing_left(lab: &RouterLab, env: &AgentEnv) {
    let link = lab
        .router()
        .ip(&["-d", "link", "show", "dev", WAN_IF])
        .unwrap();
    assert!(!link.contains("prog/xdp"), "{link}");
    assert!(
        !env.pins.path().exists() || env.pins.entries().unwrap().is_empty(),
        "left: {:?}",
        env.pins.entries()
    );
    assert!(
        !std::path::Path::new(&env.control_socket()).exists(),
        "control socket left behind"
    );
}

fn busy_or_bad_metrics_address_fails_the_start() {
    let lab = RouterLab::new("metbusy").unwrap();
    let env = AgentEnv::new("metbusy").unwrap();
    let addr: SocketAddr = METRICS.parse().unwrap();
    let _taken = lab
        .router()
        .in_ns(move || std::net::TcpListener::bind(addr))
        .unwrap()
        .unwrap();

    let log = env
        .run_failing(lab.router(), &["--iface", WAN_IF, "--metrics", METRICS])
        .unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("--metrics"))
        .unwrap_or_else(|| panic!("no line naming --metrics in:\n{log}"));
    assert_eq!(
        line,
        "ntp-agent: error: cannot listen on 127.0.0.1:9975 for --metrics: \
         Address already in use (os error 98): something else listens there"
    );
    assert_nothing_left(&lab, &env);

    // The same through the config file key.
    let dir = TempDir::new("metbusy").unwrap();
    let file = dir.path().join("agent.toml");
    std::fs::write(&file, format!("metrics = \"{METRICS}\"\n")).unwrap();
    let file = file.display().to_string();
    let log = env
        .run_failing(lab.router(), &["--iface", WAN_IF, "--config", &file])
        .unwrap();
    assert_says(&log, "cannot listen on 127.0.0.1:9975 for --metrics");
    assert_nothing_left(&lab, &env);

    // An address that is not the router's.
    let log = env
        .run_failing(
            lab.router(),
            &["--iface", WAN_IF, "--metrics", "192.0.2.77:9975"],
        )
        .unwrap();
    assert_says(
        &log,
        "cannot listen on 192.0.2.77:9975 for --metrics: Cannot assign requested address",
    );
    assert_says(&log, "not an address of this box");
    assert_nothing_left(&lab, &env);

    // Not an IP:PORT at all (names are refused).
    let log = env
        .run_failing(
            lab.router(),
            &["--iface", WAN_IF, "--metrics", "localhost:9975"],
        )
        .unwrap();
    assert_says(
        &log,
        "invalid value 'localhost:9975' for '--metrics <ADDR:PORT>'",
    );
    assert_says(&log, "expected IP:PORT");
    assert_nothing_left(&lab, &env);
}

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![
        trial!(
            metrics_follow_sync_and_drops_at_the_nic,
            Netns,
            Bpffs,
            Agent,
            Chronyd
        ),
        trial!(
            busy_or_bad_metrics_address_fails_the_start,
            Netns,
            Bpffs,
            Agent
        ),
    ])
}
