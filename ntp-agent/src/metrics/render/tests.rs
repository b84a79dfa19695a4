use std::collections::{BTreeMap, BTreeSet};

use ntp_filter_common::{Counter, DropReason, PassReason, COUNTER_SLOTS};
use ntp_proto::{KodState, RejectCounters, SourceId, SystemStatus};

use super::*;
use crate::{
    model::{timestamps::StampCounts, Role, SourceStamps, StampKind},
    protocol::{
        IgnoredCounters, InterfaceReport, InterfaceState, KeFailureKind, NtsRejects, NtsReport,
        PoolReport, ServerCounters, SourceName, SourceTimestamps,
    },
};

fn source(id: usize, remote: &str, kind: char, tally: Tally) -> SourceStatus {
    SourceStatus {
        id: SourceId::new(id as u32, id as u64),
        remote: remote.into(),
        refid: "127.127.1.1".into(),
        stratum: 4,
        kind,
        when: Some(3),
        poll: 64,
        reach: 0o77,
        delay_ms: Some(0.25),
        offset_ms: Some(-1.5),
        jitter_ms: Some(0.125),
        tally: tally.as_char(),
        tally_kind: tally,
        rejects: RejectCounters {
            bogus_origin: 2,
            ..RejectCounters::default()
        },
        kod: KodState::None,
        state: "reachable".into(),
    }
}

fn report() -> AgentReport {
    let mut unheard = source(2, "2001:db8::20", 's', Tally::NotUsable);
    unheard.reach = 0;
    unheard.when = None;
    unheard.delay_ms = None;
    unheard.offset_ms = None;
    unheard.jitter_ms = None;
    unheard.stratum = 16;
    AgentReport {
        role: Role::Server,
        clock: "observe only (--no-clock-adjust)".into(),
        clock_correction_ms: Some(-250.0),
        system: SystemStatus {
            synchronized: true,
            reason: None,
            reason_kind: None,
            stratum: 5,
            system_peer: Some(SourceId::new(0, 0)),
            refid: "192.0.2.10".into(),
            offset_ms: 0.5,
            jitter_ms: 0.25,
            root_delay_ms: 2.0,
            root_dispersion_ms: 4.0,
            leap: LeapIndicator::InsertSecond,
            frequency_ppm: -12.5,
            applied_frequency_ppm: -10.0,
            clock_updates: 7,
            clock_steps: 1,
        },
        last_update_age_s: Some(3.5),
        sources: vec![
            source(0, "192.0.2.10", 'u', Tally::SystemPeer),
            source(1, "192.0.2.11", 'u', Tally::Falseticker),
            unheard,
        ],
        source_names: vec![SourceName {
            id: SourceId::new(1, 1),
            name: "time.example.net".into(),
        }],
        server: ServerCounters {
            answered: 10,
            rate_kod: 1,
            rate_ignored: 4,
            not_serving: 0,
            malformed: 2,
        },
        nts: vec![
            NtsReport {
                host: "nts.example.net".into(),
                source: Some(SourceId::new(0, 0)),
                reason: None,
                nts: NtsStatus {
                    ke_server: "nts.example.net:4460".into(),
                    ntp_server: Some("192.0.2.10:123".parse().unwrap()),
                    cookies: 7,
                    aead: Some("AEAD_AES_SIV_CMAC_256".into()),
                    last_ke: Some(1_700_000_000),
                    ke_successes: 2,
                    ke_failures: 1,
                    last_error: None,
                    last_error_kind: None,
                    rejects: NtsRejects {
                        nts_auth: 3,
                        ..NtsRejects::default()
                    },
                },
            },
            NtsReport {
                host: "192.0.2.30".into(),
                source: None,
                reason: Some("NTS-KE with 192.0.2.30:4460 failed: no answer within 10s".into()),
                nts: NtsStatus {
                    ke_server: "192.0.2.30:4460".into(),
                    ntp_server: None,
                    cookies: 0,
                    aead: None,
                    last_ke: None,
                    ke_successes: 0,
                    ke_failures: 4,
                    last_error: Some("no answer within 10s".into()),
                    last_error_kind: Some(KeFailureKind::Timeout),
                    rejects: NtsRejects::default(),
                },
            },
        ],
        pools: vec![PoolReport {
            name: "pool.example.net".into(),
            max_sources: 4,
            members: vec![SourceId::new(1, 1), SourceId::new(2, 2)],
            replacements: 3,
        }],
        timestamps: vec![SourceTimestamps {
            id: SourceId::new(0, 0),
            stamps: SourceStamps {
                rx: StampCounts {
                    in_use: Some(StampKind::Kernel),
                    kernel: 6,
                    user: 1,
                    fallbacks: 1,
                },
                tx: StampCounts {
                    in_use: Some(StampKind::Kernel),
                    kernel: 7,
                    user: 0,
                    fallbacks: 0,
                },
            },
        }],
        ignored: IgnoredCounters {
            ipv4_mapped_source: 2,
        },
        interfaces: vec![
            InterfaceReport {
                name: "wan0".into(),
                state: InterfaceState::Attached,
                ifindex: Some(2),
                since: 1_700_000_000,
                reason: None,
            },
            InterfaceReport {
                name: "lan0".into(),
                state: InterfaceState::Detached,
                ifindex: Some(3),
                since: 1_700_000_100,
                reason: Some("its link pin was removed".into()),
            },
        ],
        state: Default::default(),
    }
}

fn filter() -> FilterSnapshot {
    let mut slots = vec![0u64; COUNTER_SLOTS as usize];
    let drop3 = Counter::Decision {
        class: SourceClass::Other,
        mode: 3,
        verdict: Verdict::Drop,
    };
    slots[drop3.index() as usize] = 5;
    let pass4 = Counter::Decision {
        class: SourceClass::Server,
        mode: 4,
        verdict: Verdict::Pass,
    };
    slots[pass4.index() as usize] = 9;
    slots[Counter::Drop(DropReason::ModeNotAllowed).index() as usize] = 5;
    slots[Counter::Pass(PassReason::Allowed).index() as usize] = 9;
    slots[Counter::Pass(PassReason::NotUdp).index() as usize] = 3;
    let stats = FilterStats::from_slots(&slots);
    FilterSnapshot {
        counters: vec![
            ("wan0".into(), stats),
            (
                "lan0".into(),
                FilterStats::from_slots(&vec![0; slots.len()]),
            ),
        ],
        local_addresses: 4,
        local_addresses_unprotected: 0,
        out_of_scope_counted: true,
        interfaces: vec![
            ("wan0".into(), "native".into()),
            ("lan0".into(), "skb".into()),
        ],
    }
}

/// One sample as a strict reading of the text format gives it.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

#[derive(Debug, Default)]
struct Parsed {
    /// family -> (type, help)
    families: BTreeMap<String, (String, String)>,
    units: BTreeMap<String, String>,
    samples: Vec<Sample>,
    eof: bool,
}

fn unescape_label(s: &str) -> (String, &str) {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (out, &s[i + 1..]),
            '\\' => match chars.next().map(|(_, c)| c) {
                Some('\\') => out.push('\\'),
                Some('"') => out.push('"'),
                Some('n') => out.push('\n'),
                other => panic!("bad escape {other:?} in {s:?}"),
            },
            c => out.push(c),
        }
    }
    panic!("unterminated label value: {s:?}")
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A deliberately strict parser of the text formats (0.0.4 and the
/// OpenMetrics subset we emit): every sample belongs to the family whose
/// HELP and TYPE came just before it, names and label values are well
/// formed, a name+labels pair appears once.
fn parse(text: &str, format: Format) -> Parsed {
    let mut p = Parsed::default();
    let mut current: Option<(String, String)> = None;
    let mut seen = BTreeSet::new();
    assert!(text.ends_with('\n'), "no final newline");
    for line in text.lines() {
        assert!(!p.eof, "text after # EOF: {line:?}");
        if line == "# EOF" {
            p.eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP without text");
            assert!(is_name(name), "{line}");
            assert!(!help.trim().is_empty(), "empty HELP: {line}");
            assert!(!p.families.contains_key(name), "family {name} twice");
            p.families.insert(name.into(), (String::new(), help.into()));
            current = Some((name.into(), String::new()));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap();
            let (cur, _) = current.as_ref().expect("TYPE before HELP");
            assert_eq!(name, cur, "TYPE for another family than its HELP");
            assert!(["counter", "gauge"].contains(&ty), "{line}");
            p.families.get_mut(name).unwrap().0 = ty.into();
            current = Some((name.into(), ty.into()));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# UNIT ") {
            assert_eq!(format, Format::OpenMetrics, "UNIT in 0.0.4 text");
            let (name, unit) = rest.split_once(' ').unwrap();
            assert!(name.ends_with(&format!("_{unit}")), "{line}");
            p.units.insert(name.into(), unit.into());
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line:?}");
        let (family, ty) = current.clone().expect("sample before HELP/TYPE");
        let end = line.find(['{', ' ']).expect("sample without value");
        let name = &line[..end];
        let expected = if ty == "counter" && format == Format::OpenMetrics {
            format!("{family}_total")
        } else {
            family.clone()
        };
        assert_eq!(name, expected, "sample outside its family: {line}");
        let mut rest = &line[end..];
        let mut labels = BTreeMap::new();
        if let Some(r) = rest.strip_prefix('{') {
            let mut r = r;
            loop {
                let (k, after) = r.split_once("=\"").expect("label without =\"");
                assert!(is_name(k), "bad label name {k:?} in {line}");
                let (v, after) = unescape_label(after);
                assert!(labels.insert(k.to_string(), v).is_none(), "label {k} twice");
                if let Some(a) = after.strip_prefix(',') {
                    r = a;
                } else {
                    rest = after.strip_prefix('}').expect("labels not closed");
                    break;
                }
            }
        }
        let value = rest.strip_prefix(' ').expect("no space before value");
        assert!(
            !value.contains(' '),
            "timestamp or junk after value: {line}"
        );
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value in {line}"));
        assert!(
            seen.insert(format!("{name}{labels:?}")),
            "duplicate series {line}"
        );
        p.samples.push(Sample {
            name: name.into(),
            labels,
            value,
        });
    }
    assert_eq!(p.eof, format == Format::OpenMetrics, "# EOF marker");
    for (name, (ty, _)) in &p.families {
        assert!(!ty.is_empty(), "{name} has no TYPE");
        assert!(name.starts_with("ntp_filter_"), "{name} lacks the prefix");
        if ty == "counter" && format == Format::Text {
            assert!(name.ends_with("_total"), "counter {name}");
        }
    }
    p
}

impl Parsed {
    fn find(&self, name: &str, want: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && want
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the one sample matching; panics if none or several.
    fn value(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        match self.find(name, want).as_slice() {
            [s] => s.value,
            other => panic!("{name}{want:?}: {} samples: {other:?}", other.len()),
        }
    }

    fn absent(&self, name: &str, want: &[(&str, &str)]) -> bool {
        self.find(name, want).is_empty()
    }
}

fn full(format: Format) -> (String, Parsed) {
    let text = render(Some(&report()), Some(&filter()), format);
    let parsed = parse(&text, format);
    (text, parsed)
}

#[test]
fn every_family_is_named_typed_and_documented() {
    let (text, p) = full(Format::Text);
    for name in [
        "ntp_filter_sync_synchronized",
        "ntp_filter_sync_stratum",
        "ntp_filter_sync_offset_seconds",
        "ntp_filter_sync_jitter_seconds",
        "ntp_filter_sync_root_delay_seconds",
        "ntp_filter_sync_root_dispersion_seconds",
        "ntp_filter_sync_leap",
        "ntp_filter_sync_frequency_ratio",
        "ntp_filter_sync_last_update_age_seconds",
        "ntp_filter_clock_correction_seconds",
        "ntp_filter_clock_updates_total",
        "ntp_filter_clock_steps_total",
        "ntp_filter_agent_mode",
        "ntp_filter_source_reach",
        "ntp_filter_source_reach_ratio",
        "ntp_filter_source_offset_seconds",
        "ntp_filter_source_delay_seconds",
        "ntp_filter_source_jitter_seconds",
        "ntp_filter_source_stratum",
        "ntp_filter_source_state",
        "ntp_filter_source_poll_interval_seconds",
        "ntp_filter_source_last_reply_age_seconds",
        "ntp_filter_source_rejected_replies_total",
        "ntp_filter_nts_session",
        "ntp_filter_nts_cookies",
        "ntp_filter_nts_key_establishments_total",
        "ntp_filter_nts_last_key_establishment_timestamp_seconds",
        "ntp_filter_pool_members",
        "ntp_filter_pool_max_sources",
        "ntp_filter_pool_replacements_total",
        "ntp_filter_server_requests_total",
        "ntp_filter_packets_total",
        "ntp_filter_drops_total",
        "ntp_filter_passes_total",
        "ntp_filter_xdp_attached",
        "ntp_filter_maps_readable",
        "ntp_filter_interface_filtered",
        "ntp_filter_interface_state",
    ] {
        assert!(p.families.contains_key(name), "{name} missing:\n{text}");
    }
    let ty = |n: &str| p.families[n].0.as_str();
    assert_eq!(ty("ntp_filter_packets_total"), "counter");
    assert_eq!(ty("ntp_filter_server_requests_total"), "counter");
    assert_eq!(ty("ntp_filter_sync_offset_seconds"), "gauge");
    assert!(p.families["ntp_filter_sync_synchronized"]
        .1
        .contains("synchronized"));
}

#[test]
fn sync_values_are_in_base_units() {
    let (_, p) = full(Format::Text);
    assert_eq!(p.value("ntp_filter_sync_synchronized", &[]), 1.0);
    assert_eq!(p.value("ntp_filter_sync_stratum", &[]), 5.0);
    assert_eq!(p.value("ntp_filter_sync_offset_seconds", &[]), 0.0005);
    assert_eq!(p.value("ntp_filter_sync_jitter_seconds", &[]), 0.00025);
    assert_eq!(p.value("ntp_filter_sync_root_delay_seconds", &[]), 0.002);
    assert_eq!(
        p.value("ntp_filter_sync_root_dispersion_seconds", &[]),
        0.004
    );
    assert_eq!(p.value("ntp_filter_sync_leap", &[]), 1.0);
    assert_eq!(p.value("ntp_filter_sync_frequency_ratio", &[]), -12.5e-6);
    assert_eq!(p.value("ntp_filter_sync_last_update_age_seconds", &[]), 3.5);
    assert_eq!(p.value("ntp_filter_clock_correction_seconds", &[]), -0.25);
    assert_eq!(p.value("ntp_filter_clock_updates_total", &[]), 7.0);
    assert_eq!(p.value("ntp_filter_clock_steps_total", &[]), 1.0);
    assert_eq!(p.value("ntp_filter_agent_mode", &[("mode", "server")]), 1.0);
    assert!(p.absent("ntp_filter_sync_unsynchronized_reason", &[]));
}

#[test]
fn unsynchronized_says_why_and_leaves_out_what_is_unknown() {
    let mut r = report();
    r.system.synchronized = false;
    r.system.reason_kind = Some(UnsyncReason::NoReachableSources);
    r.system.stratum = 16;
    r.last_update_age_s = None;
    r.clock_correction_ms = None;
    let p = parse(&render(Some(&r), None, Format::Text), Format::Text);
    assert_eq!(p.value("ntp_filter_sync_synchronized", &[]), 0.0);
    assert_eq!(
        p.value(
            "ntp_filter_sync_unsynchronized_reason",
            &[("reason", "no_reachable_sources")]
        ),
        1.0
    );
    assert!(p.absent("ntp_filter_sync_last_update_age_seconds", &[]));
    assert!(p.absent("ntp_filter_clock_correction_seconds", &[]));
    for name in ["offset", "jitter", "root_delay", "root_dispersion"] {
        assert!(
            p.absent(&format!("ntp_filter_sync_{name}_seconds"), &[]),
            "{name}"
        );
    }
    assert_eq!(p.value("ntp_filter_sync_stratum", &[]), 16.0);
}

#[test]
fn sources_carry_address_kind_name_and_one_state() {
    let (_, p) = full(Format::Text);
    let server = [("address", "192.0.2.10"), ("kind", "server")];
    assert_eq!(p.value("ntp_filter_source_reach", &server), 63.0);
    assert_eq!(p.value("ntp_filter_source_reach_ratio", &server), 0.75);
    assert_eq!(
        p.value("ntp_filter_source_offset_seconds", &server),
        -0.0015
    );
    assert_eq!(p.value("ntp_filter_source_delay_seconds", &server), 0.00025);
    assert_eq!(
        p.value("ntp_filter_source_jitter_seconds", &server),
        0.000125
    );
    assert_eq!(p.value("ntp_filter_source_stratum", &server), 4.0);
    assert_eq!(
        p.value("ntp_filter_source_poll_interval_seconds", &server),
        64.0
    );
    assert_eq!(
        p.value("ntp_filter_source_last_reply_age_seconds", &server),
        3.0
    );
    assert_eq!(
        p.value(
            "ntp_filter_source_rejected_replies_total",
            &[("address", "192.0.2.10"), ("reason", "bogus_origin")]
        ),
        2.0
    );
    assert_eq!(
        p.find("ntp_filter_source_rejected_replies_total", &server)
            .len(),
        13 + 5,
        "every reject reason, zeros included, and an NTS source's nts_* ones"
    );
    assert_eq!(
        p.value(
            "ntp_filter_source_rejected_replies_total",
            &[("address", "192.0.2.10"), ("reason", "nts_auth")]
        ),
        3.0
    );
    assert_eq!(
        p.find(
            "ntp_filter_source_rejected_replies_total",
            &[("address", "192.0.2.11")]
        )
        .len(),
        13,
        "a plain source has no nts_* reasons"
    );
    // A name only where the source came from one.
    for s in p.find("ntp_filter_source_reach", &[]) {
        let named = s.labels.get("name").map(String::as_str);
        match s.labels["address"].as_str() {
            "192.0.2.11" => assert_eq!(named, Some("time.example.net")),
            _ => assert_eq!(named, None, "{s:?}"),
        }
    }
    // Exactly one state per source is 1, and it is the right one.
    for (addr, state) in [
        ("192.0.2.10", "selected"),
        ("192.0.2.11", "falseticker"),
        ("2001:db8::20", "not_usable"),
    ] {
        let states = p.find("ntp_filter_source_state", &[("address", addr)]);
        assert_eq!(states.len(), 5, "{states:?}");
        let on: Vec<&str> = states
            .iter()
            .filter(|s| s.value == 1.0)
            .map(|s| s.labels["state"].as_str())
            .collect();
        assert_eq!(on, [state], "{addr}");
        assert!(states.iter().all(|s| s.value == 0.0 || s.value == 1.0));
    }
    let peer = [("address", "2001:db8::20"), ("kind", "peer")];
    assert_eq!(p.value("ntp_filter_source_reach", &peer), 0.0);
    assert_eq!(p.value("ntp_filter_source_stratum", &peer), 16.0);
    assert!(p.absent("ntp_filter_source_offset_seconds", &peer));
    assert!(p.absent("ntp_filter_source_last_reply_age_seconds", &peer));
}

#[test]
fn nts_sources_by_key_establishment_server() {
    let (_, p) = full(Format::Text);
    let up = [("ke_server", "nts.example.net:4460")];
    let down = [("ke_server", "192.0.2.30:4460")];
    assert_eq!(p.value("ntp_filter_nts_session", &up), 1.0);
    assert_eq!(p.value("ntp_filter_nts_session", &down), 0.0);
    assert_eq!(p.value("ntp_filter_nts_cookies", &up), 7.0);
    let ke = |l: &[(&str, &str)], r| {
        let mut l = l.to_vec();
        l.push(("result", r));
        p.value("ntp_filter_nts_key_establishments_total", &l)
    };
    assert_eq!((ke(&up, "success"), ke(&up, "failure")), (2.0, 1.0));
    assert_eq!((ke(&down, "success"), ke(&down, "failure")), (0.0, 4.0));
    assert_eq!(
        p.value(
            "ntp_filter_nts_last_key_establishment_timestamp_seconds",
            &up
        ),
        1.7e9
    );
    assert!(p.absent(
        "ntp_filter_nts_last_key_establishment_timestamp_seconds",
        &down
    ));
}

#[test]
fn pools_by_name() {
    let (_, p) = full(Format::Text);
    let pool = [("pool", "pool.example.net")];
    assert_eq!(p.value("ntp_filter_pool_members", &pool), 2.0);
    assert_eq!(p.value("ntp_filter_pool_max_sources", &pool), 4.0);
    assert_eq!(p.value("ntp_filter_pool_replacements_total", &pool), 3.0);
}

#[test]
fn server_requests_by_result() {
    let (_, p) = full(Format::Text);
    let v = |r| p.value("ntp_filter_server_requests_total", &[("result", r)]);
    assert_eq!(
        [
            v("answered"),
            v("kod_rate"),
            v("ignored_rate"),
            v("not_serving"),
            v("malformed")
        ],
        [10.0, 1.0, 4.0, 0.0, 2.0]
    );
    assert_eq!(
        p.value(
            "ntp_filter_agent_ignored_datagrams_total",
            &[("reason", "ipv4_mapped_source")]
        ),
        2.0
    );
}

#[test]
fn configured_interfaces_filtered_or_not_with_one_state() {
    let (_, p) = full(Format::Text);
    let filtered = |i| p.value("ntp_filter_interface_filtered", &[("interface", i)]);
    assert_eq!([filtered("wan0"), filtered("lan0")], [1.0, 0.0]);
    for (iface, now) in [("wan0", "attached"), ("lan0", "detached")] {
        for state in ["attached", "missing", "detached", "failed"] {
            assert_eq!(
                p.value(
                    "ntp_filter_interface_state",
                    &[("interface", iface), ("state", state)]
                ),
                f64::from(u8::from(state == now)),
                "{iface} {state}"
            );
        }
    }
}

#[test]
fn filter_counters_per_interface_class_mode_verdict() {
    let (_, p) = full(Format::Text);
    let packets = |iface, class, mode, verdict| {
        p.value(
            "ntp_filter_packets_total",
            &[
                ("interface", iface),
                ("class", class),
                ("mode", mode),
                ("verdict", verdict),
            ],
        )
    };
    assert_eq!(packets("wan0", "other", "3", "drop"), 5.0);
    assert_eq!(packets("wan0", "other", "3", "pass"), 0.0);
    assert_eq!(packets("wan0", "server", "4", "pass"), 9.0);
    assert_eq!(packets("lan0", "other", "3", "drop"), 0.0);
    // Every class x mode x verdict from the start, so rate() sees the first
    // increment.
    assert_eq!(
        p.find("ntp_filter_packets_total", &[("interface", "wan0")])
            .len(),
        3 * 8 * 2
    );
    let drops = |iface, reason| {
        p.value(
            "ntp_filter_drops_total",
            &[("interface", iface), ("reason", reason)],
        )
    };
    assert_eq!(drops("wan0", "mode_not_allowed"), 5.0);
    assert_eq!(drops("wan0", "denied"), 0.0);
    assert_eq!(
        p.find("ntp_filter_drops_total", &[("interface", "lan0")])
            .len(),
        DropReason::COUNT
    );
    let passes = |reason| {
        p.value(
            "ntp_filter_passes_total",
            &[("interface", "wan0"), ("reason", reason)],
        )
    };
    assert_eq!((passes("allowed"), passes("not_udp")), (9.0, 3.0));
    assert_eq!(
        p.find("ntp_filter_passes_total", &[("interface", "wan0")])
            .len(),
        PassReason::COUNT
    );
    assert_eq!(
        p.value(
            "ntp_filter_xdp_attached",
            &[("interface", "wan0"), ("mode", "native")]
        ),
        1.0
    );
    assert_eq!(
        p.value(
            "ntp_filter_xdp_attached",
            &[("interface", "lan0"), ("mode", "skb")]
        ),
        1.0
    );
    assert_eq!(p.value("ntp_filter_maps_readable", &[]), 1.0);
}

#[test]
fn a_missing_part_leaves_the_other() {
    let p = parse(&render(None, Some(&filter()), Format::Text), Format::Text);
    assert!(p
        .families
        .keys()
        .all(|n| !n.contains("sync_") && !n.contains("source_")));
    assert_eq!(p.value("ntp_filter_maps_readable", &[]), 1.0);
    assert!(!p.absent("ntp_filter_packets_total", &[]));

    let p = parse(&render(Some(&report()), None, Format::Text), Format::Text);
    assert_eq!(p.value("ntp_filter_maps_readable", &[]), 0.0);
    assert!(p.absent("ntp_filter_packets_total", &[]));
    assert!(p.absent("ntp_filter_xdp_attached", &[]));
    assert_eq!(p.value("ntp_filter_sync_synchronized", &[]), 1.0);
}

#[test]
fn label_values_are_escaped() {
    let mut r = report();
    r.source_names[0].name = "we\"ird\\name\n".into();
    let p = parse(&render(Some(&r), None, Format::Text), Format::Text);
    let s = p.find("ntp_filter_source_reach", &[("address", "192.0.2.11")]);
    assert_eq!(s[0].labels["name"], "we\"ird\\name\n");
}

#[test]
fn openmetrics_when_asked() {
    assert_eq!(Format::negotiate(None), Format::Text);
    assert_eq!(
        Format::negotiate(Some("text/plain;version=0.0.4")),
        Format::Text
    );
    let prometheus_accept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(
        Format::negotiate(Some(prometheus_accept)),
        Format::OpenMetrics
    );
    assert_eq!(
        Format::Text.content_type(),
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert_eq!(
        Format::OpenMetrics.content_type(),
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );

    let (text, p) = full(Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"));
    assert_eq!(p.units["ntp_filter_sync_offset_seconds"], "seconds");
    assert_eq!(p.units["ntp_filter_source_reach_ratio"], "ratio");
    // The same series and values as the classic format.
    let (_, classic) = full(Format::Text);
    assert_eq!(p.samples.len(), classic.samples.len());
    for s in &classic.samples {
        let want: Vec<(&str, &str)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(p.value(&s.name, &want), s.value, "{s:?}");
    }
}

/// An independent reader (the `prometheus-parse` crate) sees the same
/// samples as the strict one.
#[test]
fn another_parser_agrees() {
    let (text, mine) = full(Format::Text);
    let theirs = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    assert_eq!(theirs.samples.len(), mine.samples.len());
    for s in &theirs.samples {
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("unexpected {other:?}"),
        };
        let want: Vec<(&str, &str)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(mine.value(&s.metric, &want), value, "{s:?}");
        if s.metric.ends_with("_total") {
            assert!(
                matches!(s.value, prometheus_parse::Value::Counter(_)),
                "{s:?}"
            );
        }
    }
    assert!(theirs.docs.contains_key("ntp_filter_packets_total"));
}
/// The strict reader refuses what a scraper would refuse, so the tests
/// above cannot pass on a malformed page.
#[test]
fn the_strict_reader_refuses_malformed_pages() {
    let bad = [
        "ntp_filter_x 1\n",
        "# HELP ntp_filter_x x\n# TYPE ntp_filter_x gauge\nntp_filter_x 1\nntp_filter_x 2\n",
        "# HELP ntp_filter_x x\n# TYPE ntp_filter_x gauge\nntp_filter_y 1\n",
        "# HELP ntp_filter_x x\n# TYPE ntp_filter_x gauge\nntp_filter_x{a=\"b} 1\n",
        "# HELP ntp_filter_x x\n# TYPE ntp_filter_x gauge\nntp_filter_x one\n",
        "# HELP x x\n# TYPE x gauge\nx 1\n",
    ];
    for page in bad {
        let refused = std::panic::catch_unwind(|| parse(page, Format::Text)).is_err();
        assert!(refused, "accepted {page:?}");
    }
    parse(
        "# HELP ntp_filter_x x\n# TYPE ntp_filter_x gauge\nntp_filter_x{a=\"b\"} 1\n",
        Format::Text,
    );
}
