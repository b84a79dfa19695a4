//! The exposition itself: a pure function of the agent's report and a
//! snapshot of the filter, so every name, label and value is testable
//! without a kernel. A fresh registry per scrape: the values are read-outs
//! of state kept elsewhere, not instruments updated in place.

use ntp_filter_common::{SourceClass, Verdict};
use ntp_proto::{LeapIndicator, SourceStatus, Tally, UnsyncReason};
use prometheus_client::{
    encoding::{prometheus_text, text, EncodeMetric, MetricEncoder},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType, TypedMetric},
    registry::{Registry, Unit},
};

use crate::{
    filter::stats::FilterStats,
    model::{timestamps::StampCounts, StampKind},
    protocol::{AgentReport, NtsStatus},
};

/// What the filter looked like at scrape time, read from the pinned maps.
#[derive(Clone, Debug, Default)]
pub struct FilterSnapshot {
    /// Counters per interface label, as the maps report them.
    pub counters: Vec<(String, FilterStats)>,
    /// `(interface, xdp mode)` of every filtered interface; the mode is
    /// `native`, `skb`, `hw` or `unknown`.
    pub interfaces: Vec<(String, String)>,
    /// As `status`: addresses in the local map, and left out of it.
    pub local_addresses: usize,
    pub local_addresses_unprotected: usize,
    pub out_of_scope_counted: bool,
}

/// The two text formats Prometheus scrapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The classic text format (0.0.4): what every scraper reads.
    Text,
    /// OpenMetrics 1.0, for scrapers that ask for it.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it, the classic text
    /// format otherwise (also without a header, e.g. curl).
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

type Labels = Vec<(String, String)>;

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A family whose series come out in the order given (the crate's own
/// `Family` is a hash map: fine for Prometheus, hard on a person reading
/// the page).
#[derive(Debug)]
struct Rows<M>(Vec<(Labels, M)>);

impl<M: EncodeMetric + TypedMetric> EncodeMetric for Rows<M> {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (l, m) in &self.0 {
            m.encode(encoder.encode_family(l)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        M::TYPE
    }
}

/// Registers one family per call; a family without rows is left out so
/// that "not known" (e.g. a source without samples) is an absent series,
/// not a made-up zero.
struct Exposition {
    registry: Registry,
}

impl Exposition {
    fn new() -> Self {
        Self {
            registry: Registry::with_prefix("ntp_filter"),
        }
    }

    fn add<M>(&mut self, name: &str, help: &str, unit: Option<Unit>, rows: Vec<(Labels, M)>)
    where
        M: EncodeMetric + TypedMetric + Send + Sync + std::fmt::Debug + 'static,
    {
        if rows.is_empty() {
            return;
        }
        let rows = Rows(rows);
        match unit {
            Some(u) => self.registry.register_with_unit(name, help, u, rows),
            None => self.registry.register(name, help, rows),
        }
    }

    fn floats(
        &mut self,
        name: &str,
        help: &str,
        unit: Option<Unit>,
        rows: impl IntoIterator<Item = (Labels, f64)>,
    ) {
        let rows = rows.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
        self.add(name, help, unit, rows.collect());
    }

    fn ints(&mut self, name: &str, help: &str, rows: impl IntoIterator<Item = (Labels, i64)>) {
        let rows = rows.into_iter().map(|(l, v)| (l, ConstGauge::new(v)));
        self.add(name, help, None, rows.collect());
    }

    fn counters(&mut self, name: &str, help: &str, rows: impl IntoIterator<Item = (Labels, u64)>) {
        let rows = rows.into_iter().map(|(l, v)| (l, ConstCounter::new(v)));
        self.add(name, help, None, rows.collect());
    }

    fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = match format {
            Format::Text => prometheus_text::encode(&mut out, &self.registry),
            Format::OpenMetrics => text::encode(&mut out, &self.registry),
        };
        out
    }
}

fn ratio() -> Option<Unit> {
    Some(Unit::Other("ratio".into()))
}

fn seconds() -> Option<Unit> {
    Some(Unit::Seconds)
}

/// The metrics page. `agent` is `None` when the sync loop did not answer,
/// `filter` is `None` when the pinned maps could not be read; the rest is
/// still exposed.
pub fn render(
    agent: Option<&AgentReport>,
    filter: Option<&FilterSnapshot>,
    format: Format,
) -> String {
    let mut x = Exposition::new();
    if let Some(a) = agent {
        sync_metrics(&mut x, a);
        source_metrics(&mut x, a);
        nts_metrics(&mut x, a);
        pool_metrics(&mut x, a);
        server_metrics(&mut x, a);
        interface_metrics(&mut x, a);
    }
    x.ints(
        "maps_readable",
        "1 if the filter's pinned maps could be read for this scrape, 0 if not (packets, drops, passes and xdp_attached are missing then)",
        [(Vec::new(), i64::from(filter.is_some()))],
    );
    if let Some(f) = filter {
        filter_metrics(&mut x, f);
    }
    x.encode(format)
}

fn one<T>(v: T) -> [(Labels, T); 1] {
    [(Vec::new(), v)]
}

fn leap_value(l: LeapIndicator) -> i64 {
    i64::from(l.to_bits())
}

fn reason_name(r: &UnsyncReason) -> &'static str {
    match r {
        UnsyncReason::NoSources => "no_sources",
        UnsyncReason::WaitingForFirstSamples => "waiting_for_first_samples",
        UnsyncReason::NoReachableSources => "no_reachable_sources",
        UnsyncReason::SourcesRefuseService(_) => "sources_refuse_service",
        UnsyncReason::NoMajority => "no_majority",
        UnsyncReason::NoSuitableSources => "no_suitable_sources",
        UnsyncReason::PanicThreshold { .. } => "panic_threshold",
    }
}

fn sync_metrics(x: &mut Exposition, a: &AgentReport) {
    let s = &a.system;
    // Offset, jitter and the root values describe the selected sources;
    // without any they would be zeros that look like perfect sync.
    let synced = |v: f64| s.synchronized.then(|| (Vec::new(), v / 1e3));
    x.ints(
        "sync_synchronized",
        "1 when the agent's clock is synchronized to its sources, 0 when not",
        one(i64::from(s.synchronized)),
    );
    x.ints(
        "sync_unsynchronized_reason",
        "Why the agent is not synchronized (1 for the current reason; absent while synchronized)",
        s.reason_kind
            .iter()
            .map(|r| (labels([("reason", reason_name(r))]), 1)),
    );
    x.ints(
        "sync_stratum",
        "Stratum the agent announces (16 while unsynchronized)",
        one(i64::from(s.stratum)),
    );
    x.floats(
        "sync_offset",
        "Combined offset of the selected sources from the local clock (absent while unsynchronized)",
        seconds(),
        synced(s.offset_ms),
    );
    x.floats(
        "sync_jitter",
        "System jitter, selection and peer jitter combined (absent while unsynchronized)",
        seconds(),
        synced(s.jitter_ms),
    );
    x.floats(
        "sync_root_delay",
        "Total round-trip delay to the primary reference (absent while unsynchronized)",
        seconds(),
        synced(s.root_delay_ms),
    );
    x.floats(
        "sync_root_dispersion",
        "Total dispersion to the primary reference (absent while unsynchronized)",
        seconds(),
        synced(s.root_dispersion_ms),
    );
    x.ints(
        "sync_leap",
        "Leap indicator: 0 none, 1 insert second, 2 delete second, 3 unsynchronized",
        one(leap_value(s.leap)),
    );
    x.floats(
        "sync_frequency",
        "Long-term frequency correction of the local clock (1e-6 is 1 ppm)",
        ratio(),
        one(s.frequency_ppm / 1e6),
    );
    x.floats(
        "sync_last_update_age",
        "Time since the clock was last updated from the sources (absent before the first update)",
        seconds(),
        a.last_update_age_s.map(|t| (Vec::new(), t)),
    );
    x.counters(
        "clock_updates",
        "Clock updates since the agent started",
        one(u64::from(s.clock_updates)),
    );
    x.counters(
        "clock_steps",
        "Clock steps since the agent started",
        one(u64::from(s.clock_steps)),
    );
    x.floats(
        "clock_correction",
        "Observe-only clock (--no-clock-adjust): the correction the agent would have applied so far; the system clock is that much slow (negative: fast)",
        seconds(),
        a.clock_correction_ms.map(|ms| (Vec::new(), ms / 1e3)),
    );
    x.ints(
        "agent_mode",
        "The agent's function: client (sync only) or server (also answers clients)",
        [(labels([("mode", a.role.name())]), 1)],
    );
}

/// `selected` is the system peer (`*`), `candidate` is combined into the
/// offset (`+`), `outlier` was discarded by clustering (`-`),
/// `falseticker` is outside the majority (`x`), `not_usable` is anything
/// else (no samples, unreachable, too far, KoD).
const STATES: [(Tally, &str); 5] = [
    (Tally::SystemPeer, "selected"),
    (Tally::Candidate, "candidate"),
    (Tally::Outlier, "outlier"),
    (Tally::Falseticker, "falseticker"),
    (Tally::NotUsable, "not_usable"),
];

fn source_labels(a: &AgentReport, s: &SourceStatus) -> Labels {
    let kind = match s.kind {
        's' => "peer",
        _ => "server",
    };
    let mut l = labels([("address", s.remote.as_str()), ("kind", kind)]);
    if let Some(n) = a.source_names.iter().find(|n| n.id == s.id) {
        l.push(("name".into(), n.name.clone()));
    }
    l
}

fn source_metrics(x: &mut Exposition, a: &AgentReport) {
    let rows: Vec<(Labels, &SourceStatus)> =
        a.sources.iter().map(|s| (source_labels(a, s), s)).collect();
    let floats = |f: fn(&SourceStatus) -> Option<f64>| {
        rows.iter()
            .filter_map(move |(l, s)| f(s).map(|v| (l.clone(), v)))
            .collect::<Vec<_>>()
    };
    x.ints(
        "source_reach",
        "Reach register of the source: the last 8 polls, 1 bits answered, least significant is the latest (0..255)",
        rows.iter().map(|(l, s)| (l.clone(), i64::from(s.reach))),
    );
    x.floats(
        "source_reach",
        "Share of the last 8 polls of the source that were answered",
        ratio(),
        rows.iter()
            .map(|(l, s)| (l.clone(), f64::from(s.reach.count_ones()) / 8.0)),
    );
    x.floats(
        "source_offset",
        "Offset of the source from the local clock (absent before its first sample)",
        seconds(),
        floats(|s| s.offset_ms.map(|v| v / 1e3)),
    );
    x.floats(
        "source_delay",
        "Round-trip delay to the source (absent before its first sample)",
        seconds(),
        floats(|s| s.delay_ms.map(|v| v / 1e3)),
    );
    x.floats(
        "source_jitter",
        "Jitter of the source's samples (absent before its first sample)",
        seconds(),
        floats(|s| s.jitter_ms.map(|v| v / 1e3)),
    );
    x.floats(
        "source_last_reply_age",
        "Time since the source's last accepted reply (absent before the first)",
        seconds(),
        floats(|s| s.when.map(|w| w as f64)),
    );
    x.floats(
        "source_poll_interval",
        "Current poll interval of the source",
        seconds(),
        floats(|s| Some(s.poll as f64)),
    );
    x.ints(
        "source_stratum",
        "Stratum the source announces (16: unsynchronized or not heard yet)",
        rows.iter().map(|(l, s)| (l.clone(), i64::from(s.stratum))),
    );
    x.ints(
        "source_state",
        "Selection state of the source: 1 for its current state (selected, candidate, outlier, falseticker, not_usable), 0 for the others",
        rows.iter().flat_map(|(l, s)| {
            STATES.iter().map(move |(tally, name)| {
                let mut l = l.clone();
                l.push(("state".into(), (*name).into()));
                (l, i64::from(s.tally_kind == *tally))
            })
        }),
    );
    x.counters(
        "source_rejected_replies",
        "Replies from the source refused by the RFC 5905 checks, and for an NTS source by the NTS checks before them (nts_*), by reason",
        rows.iter().flat_map(|(l, s)| {
            rejects(a, s).into_iter().map(move |(reason, n)| {
                let mut l = l.clone();
                l.push(("reason".into(), reason));
                (l, n)
            })
        }),
    );
    timestamp_metrics(x, a, &rows);
}

/// Per source and direction: which timestamps are in use, how many of
/// each kind were taken and how many kernel ones were refused.
fn timestamp_metrics(x: &mut Exposition, a: &AgentReport, rows: &[(Labels, &SourceStatus)]) {
    let per_direction: Vec<(Labels, StampCounts)> = rows
        .iter()
        .filter_map(|(l, s)| {
            let t = a.timestamps.iter().find(|t| t.id == s.id)?;
            Some([("rx", t.stamps.rx), ("tx", t.stamps.tx)].map(|(dir, c)| {
                let mut l = l.clone();
                l.push(("direction".into(), dir.into()));
                (l, c)
            }))
        })
        .flatten()
        .collect();
    let by_kind = |l: &Labels, kind: StampKind| {
        let mut l = l.clone();
        l.push(("timestamp".into(), kind.to_string()));
        l
    };
    x.ints(
        "source_timestamps_in_use",
        "Kind of the source's latest timestamp per direction (rx, tx): label timestamp: 1 for the kind in use (kernel, user), 0 for the other",
        per_direction.iter().flat_map(|(l, c)| {
            [StampKind::Kernel, StampKind::User]
                .map(|k| (by_kind(l, k), i64::from(c.in_use == Some(k))))
        }),
    );
    x.counters(
        "source_timestamps",
        "Timestamps of the source's packets per direction (rx, tx) and kind (label timestamp; kernel: the kernel's software timestamp, user: the agent's clock reading)",
        per_direction.iter().flat_map(|(l, c)| {
            [(StampKind::Kernel, c.kernel), (StampKind::User, c.user)].map(|(k, n)| (by_kind(l, k), n))
        }),
    );
    x.counters(
        "source_timestamp_fallbacks",
        "Kernel timestamps of the source's packets refused (more than 1 s from the clock read next to them) and replaced by the agent's clock reading, per direction",
        per_direction.iter().map(|(l, c)| (l.clone(), c.fallbacks)),
    );
}

/// The reject counters under the names `status --json` uses, an NTS
/// source's `nts_*` ones included.
fn rejects(a: &AgentReport, s: &SourceStatus) -> Vec<(String, u64)> {
    let nts = a
        .nts
        .iter()
        .find(|n| n.source == Some(s.id))
        .map(|n| n.nts.rejects);
    let as_map = |v: serde_json::Result<serde_json::Value>| match v {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let mut m = as_map(serde_json::to_value(s.rejects));
    if let Some(r) = nts {
        m.extend(as_map(serde_json::to_value(r)));
    }
    m.into_iter()
        .filter_map(|(k, v)| v.as_u64().map(|n| (k, n)))
        .collect()
}

/// Per NTS source, labelled by its key establishment server.
fn nts_metrics(x: &mut Exposition, a: &AgentReport) {
    let rows: Vec<(Labels, &NtsStatus)> = a
        .nts
        .iter()
        .map(|n| (labels([("ke_server", n.nts.ke_server.as_str())]), &n.nts))
        .collect();
    x.ints(
        "nts_session",
        "1 while the NTS source has keys and cookies from a key establishment, 0 while it waits for one (it sends nothing then)",
        a.nts
            .iter()
            .zip(&rows)
            .map(|(n, (l, _))| (l.clone(), i64::from(n.reason.is_none()))),
    );
    x.ints(
        "nts_cookies",
        "NTS cookies the source holds (8 when full)",
        rows.iter().map(|(l, n)| (l.clone(), n.cookies as i64)),
    );
    x.counters(
        "nts_key_establishments",
        "NTS key establishments of the source, by result",
        rows.iter().flat_map(|(l, n)| {
            [("success", n.ke_successes), ("failure", n.ke_failures)].map(|(r, v)| {
                let mut l = l.clone();
                l.push(("result".into(), r.into()));
                (l, v)
            })
        }),
    );
    x.floats(
        "nts_last_key_establishment_timestamp",
        "Unix time of the source's last successful NTS key establishment (absent before the first)",
        seconds(),
        rows.iter()
            .filter_map(|(l, n)| n.last_ke.map(|t| (l.clone(), t as f64))),
    );
}

/// Per `--pool`, labelled by its name.
fn pool_metrics(x: &mut Exposition, a: &AgentReport) {
    let pool = |name: &str| labels([("pool", name)]);
    x.ints(
        "pool_members",
        "Servers the pool has now (up to its maxsources)",
        a.pools
            .iter()
            .map(|p| (pool(&p.name), p.members.len() as i64)),
    );
    x.ints(
        "pool_max_sources",
        "The pool's maxsources",
        a.pools
            .iter()
            .map(|p| (pool(&p.name), p.max_sources as i64)),
    );
    x.counters(
        "pool_replacements",
        "Pool members replaced (unreachable or falsetickers for 8 polls)",
        a.pools.iter().map(|p| (pool(&p.name), p.replacements)),
    );
}

fn server_metrics(x: &mut Exposition, a: &AgentReport) {
    let c = &a.server;
    x.counters(
        "server_requests",
        "Client requests (mode 3) that reached the agent, by result: answered, kod_rate (over the rate limit, one KoD RATE sent), ignored_rate (over the limit after the KoD), not_serving (arrived in client mode), malformed (no NTP request: never answered, never charged to the rate limit)",
        [
            ("answered", c.answered),
            ("kod_rate", c.rate_kod),
            ("ignored_rate", c.rate_ignored),
            ("not_serving", c.not_serving),
            ("malformed", c.malformed),
        ]
        .map(|(r, n)| (labels([("result", r)]), n)),
    );
    x.counters(
        "agent_ignored_datagrams",
        "Datagrams the agent dropped unread, by reason: ipv4_mapped_source (an IPv6 sender embedding an IPv4 address, never taken for that IPv4 host)",
        [("ipv4_mapped_source", a.ignored.ipv4_mapped_source)]
            .map(|(r, n)| (labels([("reason", r)]), n)),
    );
}

/// The configured interfaces as the running agent sees them (the filter's
/// part, `xdp_attached`, is what the kernel says of the pinned links).
fn interface_metrics(x: &mut Exposition, a: &AgentReport) {
    use crate::protocol::InterfaceState::{Attached, Detached, Failed, Missing};
    x.ints(
        "interface_filtered",
        "1 while the filter is on the configured interface, 0 while it is not (missing, detached, failed: see interface_state). Alert when 0",
        a.interfaces
            .iter()
            .map(|i| (labels([("interface", i.name.as_str())]), i64::from(i.filtered()))),
    );
    x.ints(
        "interface_state",
        "1 for the configured interface's state, 0 for the others: attached, missing (the interface is gone; attached again when it returns), detached (its link was removed under the agent, not attached again), failed (attaching again failed; retried)",
        a.interfaces.iter().flat_map(|i| {
            [Attached, Missing, Detached, Failed].map(|s| {
                (
                    labels([("interface", i.name.as_str()), ("state", s.name())]),
                    i64::from(i.state == s),
                )
            })
        }),
    );
}

fn filter_metrics(x: &mut Exposition, f: &FilterSnapshot) {
    x.counters(
        "packets",
        "NTP packets that reached the filter's policy table, by interface, source class (server, peer, other), NTP mode and verdict (pass, drop)",
        f.counters.iter().flat_map(|(iface, st)| {
            SourceClass::ALL.into_iter().flat_map(move |class| {
                (0u8..8).flat_map(move |mode| {
                    let cell = st.decision(class, mode);
                    [(Verdict::Pass, cell.passed), (Verdict::Drop, cell.dropped)].map(
                        |(verdict, n)| {
                            let verdict = match verdict {
                                Verdict::Pass => "pass",
                                Verdict::Drop => "drop",
                            };
                            let mode = mode.to_string();
                            (
                                labels([
                                    ("interface", iface.as_str()),
                                    ("class", class.name()),
                                    ("mode", mode.as_str()),
                                    ("verdict", verdict),
                                ]),
                                n,
                            )
                        },
                    )
                })
            })
        }),
    );
    x.counters(
        "drops",
        "Packets the filter dropped, by interface and reason",
        f.counters.iter().flat_map(|(iface, st)| {
            st.drops
                .iter()
                .map(move |(r, n)| (labels([("interface", iface.as_str()), ("reason", r)]), *n))
        }),
    );
    x.counters(
        "passes",
        "Packets the filter passed, by interface and reason (allowed: NTP for the box; the others were out of scope)",
        f.counters.iter().flat_map(|(iface, st)| {
            st.passes
                .iter()
                .map(move |(r, n)| (labels([("interface", iface.as_str()), ("reason", r)]), *n))
        }),
    );
    x.ints(
        "local_addresses",
        "The box's addresses in the filter's local-address map (NTP to them is filtered)",
        one(f.local_addresses as i64),
    );
    x.ints(
        "local_addresses_unprotected",
        "The box's addresses left out of the full local-address map: NTP to them is treated as transit. Alert when not 0",
        one(f.local_addresses_unprotected as i64),
    );
    x.ints(
        "out_of_scope_counted",
        "1 if the program counts the passes it leaves alone (not_ip, not_udp, not_ntp_port, not_local; --count-out-of-scope), 0 if those stay 0",
        one(i64::from(f.out_of_scope_counted)),
    );
    x.ints(
        "xdp_attached",
        "1 for each filtered interface, with the XDP mode the kernel reports (native, skb, hw, unknown)",
        f.interfaces
            .iter()
            .map(|(iface, mode)| (labels([("interface", iface), ("mode", mode)]), 1)),
    );
}

#[cfg(test)]
mod tests;
