//! The XDP program in the kernel, table-driven through BPF_PROG_TEST_RUN.
//!
//! Every fixture is a frame, the agent configuration it runs under, and the
//! verdict and counters the specification (not the program) says it gets:
//!
//! * in scope = UDP to one of the box's addresses (NF_LOCAL), a multicast
//!   group or 255.255.255.255, with source or destination port = the NTP
//!   port, or source port = a server port (one an NTS key establishment
//!   negotiated); everything else passes with the reason it is out of scope;
//! * in scope and a fragment, too many IPv6 extension headers, a payload
//!   under 48 bytes, an NTP version outside 1..=4, a mode the source's class
//!   may not send, or a server reply to another port than its reply port or
//!   from another port than its server port: dropped;
//! * client mode: server → {4}, peer → {1, 2}, other → {}; server mode adds
//!   mode 3 for every class;
//! * a mode-3 request the table passes is then checked against the access
//!   list: the longest matching allow/deny prefix decides; with no match it
//!   passes, unless some rule is an `allow`; a denied one is dropped as
//!   `denied` and counts as a `(class, 3, drop)` decision;
//! * every packet moves exactly one pass/drop reason counter; packets that
//!   reach the mode/class decision also move one decision counter;
//! * those counters are the ingress interface's: the block of its counter
//!   slot, or of slot 0 ("other") when it has none.
//!
//! A test run without a context reports the caller's loopback device as the
//! ingress interface. The harness gives `lo` a slot the way `run --iface lo`
//! does; the "unslotted" fixtures clear its entry first.
//!
//! The runner applies the fixture's configuration, reads all counters of
//! every slot, runs the frame once, reads them again and checks the return
//! value and that the delta is exactly the expected counters in the expected
//! slot. Failures are collected and reported together.

use std::{collections::BTreeMap, net::IpAddr};

use etherparse::ip_number;
use ntp_agent::{
    filter::{slots, stats::FilterStats},
    model::Role,
};
use ntp_filter_common::{
    counter_index, split_index, Counter, DropReason, PassReason, SourceClass, Verdict, IFACE_OTHER,
};
use ntp_filter_tests::{
    packet::*,
    say,
    test_run::{addrs::*, Env, Harness, XDP_DROP, XDP_PASS},
    trial, Netns,
};

// ---------------------------------------------------------------------------
// Expectations

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Passed for this reason; no decision counter.
    Pass(PassReason),
    /// Dropped for this reason before the mode/class decision.
    Drop(DropReason),
    /// Reached the mode/class decision: one decision counter, then
    /// `Pass(Allowed)` or `Drop(reason)`.
    Decided {
        class: SourceClass,
        mode: u8,
        drop: Option<DropReason>,
    },
}

impl Expect {
    fn action(self) -> u32 {
        match self {
            Expect::Pass(_) | Expect::Decided { drop: None, .. } => XDP_PASS,
            Expect::Drop(_) | Expect::Decided { drop: Some(_), .. } => XDP_DROP,
        }
    }

    fn counters(self) -> Vec<Counter> {
        match self {
            Expect::Pass(r) => vec![Counter::Pass(r)],
            Expect::Drop(r) => vec![Counter::Drop(r)],
            Expect::Decided { class, mode, drop } => {
                let verdict = if drop.is_some() {
                    Verdict::Drop
                } else {
                    Verdict::Pass
                };
                vec![
                    Counter::Decision {
                        class,
                        mode,
                        verdict,
                    },
                    match drop {
                        Some(r) => Counter::Drop(r),
                        None => Counter::Pass(PassReason::Allowed),
                    },
                ]
            }
        }
    }
}

/// The specification's mode table, written out independently of
/// `ntp_filter_common::{client,server}_policy`.
fn spec_allows(mode: Role, class: SourceClass, ntp_mode: u8) -> bool {
    let client = match class {
        SourceClass::Server => ntp_mode == 4,
        SourceClass::Peer => ntp_mode == 1 || ntp_mode == 2,
        SourceClass::Other => false,
    };
    client || (mode == Role::Server && ntp_mode == 3)
}

/// The decision for an in-scope NTP packet on the source's registered reply
/// port (or no reply-port question at all).
fn spec_decision(mode: Role, class: SourceClass, ntp_mode: u8) -> Expect {
    let drop = if spec_allows(mode, class, ntp_mode) {
        None
    } else if class == SourceClass::Other {
        Some(DropReason::OtherSource)
    } else {
        Some(DropReason::ModeNotAllowed)
    };
    Expect::Decided {
        class,
        mode: ntp_mode,
        drop,
    }
}

fn allowed(class: SourceClass, mode: u8) -> Expect {
    Expect::Decided {
        class,
        mode,
        drop: None,
    }
}

fn refused(class: SourceClass, mode: u8, reason: DropReason) -> Expect {
    Expect::Decided {
        class,
        mode,
        drop: Some(reason),
    }
}

use DropReason as D;
use PassReason as P;
use SourceClass::{Other, Peer, Server};

// ---------------------------------------------------------------------------
// The table

struct Fixture {
    name: String,
    frame: Vec<u8>,
    env: Env,
    expect: Expect,
    /// Whether the ingress interface (`lo`) has its counter slot; without,
    /// the counters are expected in slot 0.
    slotted: bool,
}

#[derive(Default)]
struct Table(Vec<Fixture>);

impl Table {
    fn add(&mut self, name: impl Into<String>, frame: Vec<u8>, expect: Expect) {
        self.with(Env::CLIENT, name, frame, expect);
    }

    fn with(&mut self, env: Env, name: impl Into<String>, frame: Vec<u8>, expect: Expect) {
        self.0.push(Fixture {
            name: name.into(),
            frame,
            env,
            expect,
            slotted: true,
        });
    }

    /// A fixture arriving on an interface without a counter slot.
    fn unslotted(&mut self, env: Env, name: impl Into<String>, frame: Vec<u8>, expect: Expect) {
        self.0.push(Fixture {
            name: name.into(),
            frame,
            env,
            expect,
            slotted: false,
        });
    }
}

const NTP: u16 = 123;
const EPHEMERAL: u16 = 50000;
const CUSTOM_PORT: u16 = 1123;

fn fam(v6: bool) -> &'static str {
    if v6 {
        "v6"
    } else {
        "v4"
    }
}

fn local(v6: bool) -> IpAddr {
    if v6 {
        LOCAL6
    } else {
        LOCAL4
    }
}

fn transit(v6: bool) -> IpAddr {
    if v6 {
        TRANSIT6
    } else {
        TRANSIT4
    }
}

fn source(class: SourceClass, v6: bool) -> IpAddr {
    match (class, v6) {
        (Server, false) => SERVER4,
        (Server, true) => SERVER6,
        (Peer, false) => PEER4,
        (Peer, true) => PEER6,
        (Other, false) => OTHER4,
        (Other, true) => OTHER6,
    }
}

/// The six extension headers the program must walk: every kind it knows
/// except the fragment header, with AH among them.
const SIX_EXTS: [Ipv6Ext; 6] = [
    Ipv6Ext::Octets(0, 0),   // hop-by-hop, 8 bytes
    Ipv6Ext::Octets(60, 1),  // destination options, 16 bytes
    Ipv6Ext::Octets(43, 0),  // routing, 8 bytes
    Ipv6Ext::Auth(4),        // AH, 24 bytes
    Ipv6Ext::Octets(135, 0), // mobility, 8 bytes
    Ipv6Ext::Octets(139, 0), // HIP, 8 bytes
];

const SEVEN_EXTS: [Ipv6Ext; 7] = [
    Ipv6Ext::Octets(0, 0),
    Ipv6Ext::Octets(60, 1),
    Ipv6Ext::Octets(43, 0),
    Ipv6Ext::Auth(4),
    Ipv6Ext::Octets(135, 0),
    Ipv6Ext::Octets(139, 0),
    Ipv6Ext::Octets(140, 0), // shim6
];

fn table() -> Vec<Fixture> {
    let mut t = Table::default();

    // Every mode from every class over both families, client mode: the
    // router note's table.
    for v6 in [false, true] {
        for class in [Server, Peer, Other] {
            for mode in 0..8u8 {
                t.add(
                    format!("client/{}/{}/mode{mode}", fam(v6), class.name()),
                    ntp_frame(source(class, v6), local(v6), NTP, NTP, 4, mode),
                    spec_decision(Role::Client, class, mode),
                );
            }
        }
    }

    // Server mode: client requests (mode 3, from an ephemeral port) from
    // every class; the rest of the table is unchanged.
    for v6 in [false, true] {
        for class in [Server, Peer, Other] {
            t.with(
                Env::SERVER,
                format!("server/{}/{}/mode3", fam(v6), class.name()),
                ntp_frame(source(class, v6), local(v6), EPHEMERAL, NTP, 4, 3),
                spec_decision(Role::Server, class, 3),
            );
        }
    }
    t.with(
        Env::SERVER,
        "server/v4/other/mode4",
        ntp_frame(OTHER4, LOCAL4, NTP, NTP, 4, 4),
        spec_decision(Role::Server, Other, 4),
    );
    t.with(
        Env::SERVER,
        "server/v4/server/mode4",
        ntp_frame(SERVER4, LOCAL4, NTP, NTP, 4, 4),
        spec_decision(Role::Server, Server, 4),
    );
    t.with(
        Env::SERVER,
        "server/v6/peer/mode1",
        ntp_frame(PEER6, LOCAL6, NTP, NTP, 4, 1),
        spec_decision(Role::Server, Peer, 1),
    );
    t.with(
        Env::SERVER,
        "server/v4/other/mode3/to-limited-broadcast",
        ntp_frame(OTHER4, LIMITED_BCAST4, EPHEMERAL, NTP, 4, 3),
        allowed(Other, 3),
    );
    // Back in client mode, mode 3 is refused again (the table was restored).
    t.add(
        "client-restored/v4/other/mode3",
        ntp_frame(OTHER4, LOCAL4, EPHEMERAL, NTP, 4, 3),
        refused(Other, 3, D::OtherSource),
    );

    acl_fixtures(&mut t);
    unslotted_fixtures(&mut t);
    embedded_ipv4_source_fixtures(&mut t);

    // VLAN tags: 0 (everything above), 1 and 2 of either kind, 3.
    let n3 = ntp(4, 3);
    let n4 = ntp(4, 4);
    t.add(
        "vlan/802.1Q/v4/server/mode4",
        udp_vlan(Vlan::Single, SERVER4, LOCAL4, NTP, NTP, &n4),
        allowed(Server, 4),
    );
    t.add(
        "vlan/802.1Q/v6/other/mode3",
        udp_vlan(Vlan::Single, OTHER6, LOCAL6, NTP, NTP, &n3),
        refused(Other, 3, D::OtherSource),
    );
    t.add(
        "vlan/802.1ad-single/v4/other/mode3",
        set_tpids(
            udp_vlan(Vlan::Single, OTHER4, LOCAL4, NTP, NTP, &n3),
            &[TPID_8021AD],
        ),
        refused(Other, 3, D::OtherSource),
    );
    t.add(
        "vlan/88a8+8100/v4/other/mode3",
        udp_vlan(Vlan::Double, OTHER4, LOCAL4, NTP, NTP, &n3),
        refused(Other, 3, D::OtherSource),
    );
    t.add(
        "vlan/88a8+8100/v6/peer/mode1",
        udp_vlan(Vlan::Double, PEER6, LOCAL6, NTP, NTP, &ntp(4, 1)),
        allowed(Peer, 1),
    );
    t.add(
        "vlan/8100+8100/v4/server/mode4",
        set_tpids(
            udp_vlan(Vlan::Double, SERVER4, LOCAL4, NTP, NTP, &n4),
            &[TPID_8021Q, TPID_8021Q],
        ),
        allowed(Server, 4),
    );
    t.add(
        "vlan/8100+88a8/v4/other/mode3",
        set_tpids(
            udp_vlan(Vlan::Double, OTHER4, LOCAL4, NTP, NTP, &n3),
            &[TPID_8021Q, TPID_8021AD],
        ),
        refused(Other, 3, D::OtherSource),
    );
    t.add(
        "vlan/88a8+88a8/v6/other/mode3",
        set_tpids(
            udp_vlan(Vlan::Double, OTHER6, LOCAL6, NTP, NTP, &n3),
            &[TPID_8021AD, TPID_8021AD],
        ),
        refused(Other, 3, D::OtherSource),
    );
    t.add(
        "vlan/88a8+8100/v4/transit/other/mode3",
        udp_vlan(Vlan::Double, OTHER4, TRANSIT4, NTP, NTP, &n3),
        Expect::Pass(P::NotLocal),
    );
    t.add(
        "vlan/3-tags/8100+88a8+8100/v4/other/mode3",
        push_tag(
            udp_vlan(Vlan::Double, OTHER4, LOCAL4, NTP, NTP, &n3),
            TPID_8021Q,
            300,
        ),
        Expect::Pass(P::VlanTooDeep),
    );
    t.add(
        "vlan/3-tags/88a8+88a8+8100/v6/other/mode3",
        push_tag(
            udp_vlan(Vlan::Double, OTHER6, LOCAL6, NTP, NTP, &n3),
            TPID_8021AD,
            300,
        ),
        Expect::Pass(P::VlanTooDeep),
    );
    t.add(
        "vlan/802.1Q/arp",
        push_tag(
            arp_request([192, 0, 2, 99], [192, 0, 2, 1]),
            TPID_8021Q,
            100,
        ),
        Expect::Pass(P::NotIp),
    );

    // IPv4 header length.
    t.add(
        "ipv4/ihl6/other/mode3",
        udp4_with_options(OTHER4, LOCAL4, NTP, NTP, &n3, 4),
        refused(Other, 3, D::OtherSource),
    );
    t.add(
        "ipv4/ihl6/server/mode4",
        udp4_with_options(SERVER4, LOCAL4, NTP, NTP, &n4, 4),
        allowed(Server, 4),
    );
    t.add(
        "ipv4/ihl15/other/mode3",
        udp4_with_options(OTHER4, LOCAL4, NTP, NTP, &n3, 40),
        refused(Other, 3, D::OtherSource),
    );
    t.add(
        "ipv4/ihl15/server/mode4",
        udp4_with_options(SERVER4, LOCAL4, NTP, NTP, &n4, 40),
        allowed(Server, 4),
    );
    t.add(
        "ipv4/ihl15/dns",
        udp4_with_options(OTHER4, LOCAL4, EPHEMERAL, 53, &n3, 40),
        Expect::Pass(P::NotNtpPort),
    );
    t.add(
        "ipv4/ihl4",
        set_ipv4_vihl(ntp_frame(OTHER4, LOCAL4, NTP, NTP, 4, 3), 0x44),
        Expect::Pass(P::BadHeader),
    );
    t.add(
        "ipv4/ihl0",
        set_ipv4_vihl(ntp_frame(OTHER4, LOCAL4, NTP, NTP, 4, 3), 0x40),
        Expect::Pass(P::BadHeader),
    );
    t.add(
        "ipv4/version6-under-ipv4-ethertype",
        set_ipv4_vihl(ntp_frame(OTHER4, LOCAL4, NTP, NTP, 4, 3), 0x65),
        Expect::Pass(P::BadHeader),
    );
    {
        // The PassReason docs: "version mismatch" is BadHeader for IPv6 too.
        let mut f = ntp_frame(OTHER6, LOCAL6, NTP, NTP, 4, 3);
        f[ETH_LEN] = 0x40 | (f[ETH_LEN] & 0x0f);
        t.add(
            "ipv6/version4-under-ipv6-ethertype",
            f,
            Expect::Pass(P::BadHeader),
        );
    }

    // IPv4 fragments.
    t.add(
        "ipv4-frag/first(MF,off0)/ntp-ports/other/mode3",
        ip_fragment(OTHER4, LOCAL4, Some((NTP, NTP)), &n3, true, 0),
        Expect::Drop(D::Fragment),
    );
    t.add(
        "ipv4-frag/first(MF,off0)/ntp-ports/server/mode4",
        ip_fragment(SERVER4, LOCAL4, Some((NTP, NTP)), &n4, true, 0),
        Expect::Drop(D::Fragment),
    );
    t.add(
        "ipv4-frag/last(off185)/to-box",
        ip_fragment(OTHER4, LOCAL4, None, &[0x5a; 48], false, 185),
        Expect::Drop(D::Fragment),
    );
    t.add(
        "ipv4-frag/middle(MF,off7)/to-box",
        ip_fragment(OTHER4, LOCAL4, None, &[0x5a; 56], true, 7),
        Expect::Drop(D::Fragment),
    );
    t.add(
        "ipv4-frag/last(off185)/to-multicast",
        ip_fragment(OTHER4, MCAST4, None, &[0x5a; 48], false, 185),
        Expect::Drop(D::Fragment),
    );
    t.add(
        "ipv4-frag/first(MF,off0)/dns-ports/to-box",
        ip_fragment(OTHER4, LOCAL4, Some((EPHEMERAL, 53)), &[0x5a; 100], true, 0),
        Expect::Pass(P::NotNtpPort),
    );
    t.add(
        "ipv4-frag/last(off185)/to-transit",
        ip_fragment(OTHER4, TRANSIT4, None, &[0x5a; 48], false, 185),
        Expect::Pass(P::NotLocal),
    );
    t.add(
        "ipv4-frag/first(MF,off0)/ntp-ports/to-transit",
        ip_fragment(OTHER4, TRANSIT4, Some((NTP, NTP)), &n3, true, 0),
        Expect::Pass(P::NotLocal),
    );
    // A first fragment too short to show the ports is, like a non-first
    // one, a fragment with no ports visible addressed to the box.
    t.add(
        "ipv4-frag/first(MF,off0)/4-bytes-no-ports/to-box",
        ip_fragment(OTHER4, LOCAL4, None, &[0, 123, 0, 123], true, 0),
        Expect::Drop(D::Fragment),
    );

    // IPv6 fragment header.
    t.add(
        "ipv6-frag/first(M,off0)/ntp-ports/other/mode3",
        ip_fragment(OTHER6, LOCAL6, Some((NTP, NTP)), &n3, true, 0),
        Expect::Drop(D::Fragment),
    );
    t.add(
        "ipv6-frag/first(M,off0)/ntp-ports/server/mode4",
        ip_fragment(SERVER6, LOCAL6, Some((NTP, NTP)), &n4, true, 0),
        Expect::Drop(D::Fragment),
    );
    t.add(
        "ipv6-frag/atomic(off0,no M)/ntp-ports/to-box",
        ip_fragment(OTHER6, LOCAL6, Some((NTP, NTP)), &n3, false, 0),
        Expect::Drop(D::Fragment),
    );
    t.add(
        "ipv6-frag/last(off185)/to-box",
        ip_fragment(OTHER6, LOCAL6, None, &[0x5a; 48], false, 185),
        Expect::Drop(D::Fragment),
    );
    t.add(
        "ipv6-frag/last(off185)/to-multicast",
        ip_fragment(OTHER6, MCAST6, None, &[0x5a; 48], false, 185),
        Expect::Drop(D::Fragment),
    );
    t.add(
        "ipv6-frag/first(M,off0)/dns-ports/to-box",
        ip_fragment(OTHER6, LOCAL6, Some((EPHEMERAL, 53)), &[0x5a; 100], true, 0),
        Expect::Pass(P::NotNtpPort),
    );
    t.add(
        "ipv6-frag/last(off185)/to-transit",
        ip_fragment(OTHER6, TRANSIT6, None, &[0x5a; 48], false, 185),
        Expect::Pass(P::NotLocal),
    );

    // PASS_NON_FIRST_FRAGMENTS: only non-first fragments to the box change.
    let frag_pass = Env {
        pass_non_first_fragments: true,
        ..Env::CLIENT
    };
    t.with(
        frag_pass,
        "pass-non-first/ipv4-frag/last/to-box",
        ip_fragment(OTHER4, LOCAL4, None, &[0x5a; 48], false, 185),
        Expect::Pass(P::NonFirstFragment),
    );
    t.with(
        frag_pass,
        "pass-non-first/ipv6-frag/last/to-box",
        ip_fragment(OTHER6, LOCAL6, None, &[0x5a; 48], false, 185),
        Expect::Pass(P::NonFirstFragment),
    );
    t.with(
        frag_pass,
        "pass-non-first/ipv4-frag/first/ntp-ports/to-box",
        ip_fragment(OTHER4, LOCAL4, Some((NTP, NTP)), &n3, true, 0),
        Expect::Drop(D::Fragment),
    );
    t.with(
        frag_pass,
        "pass-non-first/ipv6-frag/first/ntp-ports/to-box",
        ip_fragment(OTHER6, LOCAL6, Some((NTP, NTP)), &n3, true, 0),
        Expect::Drop(D::Fragment),
    );
    t.with(
        frag_pass,
        "pass-non-first/ipv4-frag/last/to-transit",
        ip_fragment(OTHER4, TRANSIT4, None, &[0x5a; 48], false, 185),
        Expect::Pass(P::NotLocal),
    );
    t.with(
        frag_pass,
        "pass-non-first/ipv6/7-ext-headers/to-box",
        insert_ipv6_exts(ntp_frame(OTHER6, LOCAL6, NTP, NTP, 4, 3), &SEVEN_EXTS),
        Expect::Drop(D::ExtHeaders),
    );
    t.with(
        frag_pass,
        "pass-non-first/v4/other/mode3",
        ntp_frame(OTHER4, LOCAL4, NTP, NTP, 4, 3),
        refused(Other, 3, D::OtherSource),
    );
    // The exemption never covers an IPv6 source embedding IPv4.
    t.with(
        frag_pass,
        "pass-non-first/ipv6-frag/last/::ffff:peer/to-box",
        ip_fragment(
            "::ffff:192.0.2.20".parse().unwrap(),
            LOCAL6,
            None,
            &[0x5a; 48],
            false,
            185,
        ),
        Expect::Drop(D::MappedSource),
    );
    t.add(
        "pass-non-first-restored/ipv4-frag/last/to-box",
        ip_fragment(OTHER4, LOCAL4, None, &[0x5a; 48], false, 185),
        Expect::Drop(D::Fragment),
    );

    // IPv6 extension headers.
    t.add(
        "ipv6-ext/1-hop-by-hop/other/mode3",
        udp6_hop_by_hop(OTHER6, LOCAL6, NTP, NTP, &n3),
        refused(Other, 3, D::OtherSource),
    );
    t.add(
        "ipv6-ext/1-hop-by-hop/server/mode4",
        udp6_hop_by_hop(SERVER6, LOCAL6, NTP, NTP, &n4),
        allowed(Server, 4),
    );
    // AH with a 12-byte ICV: 24 bytes, Payload Len 4. Read in 8-byte units
    // it would be 40 bytes and land inside the NTP header.
    t.add(
        "ipv6-ext/1-AH/other/mode3",
        udp6_auth(OTHER6, LOCAL6, NTP, NTP, &n3, 12),
        refused(Other, 3, D::OtherSource),
    );
    t.add(
        "ipv6-ext/1-AH/server/mode4",
        udp6_auth(SERVER6, LOCAL6, NTP, NTP, &n4, 12),
        allowed(Server, 4),
    );
    t.add(
        "ipv6-ext/1-AH(hand-built,Payload Len 1)/peer/mode2",
        insert_ipv6_exts(
            ntp_frame(PEER6, LOCAL6, NTP, NTP, 4, 2),
            &[Ipv6Ext::Auth(1)],
        ),
        allowed(Peer, 2),
    );
    t.add(
        "ipv6-ext/6/other/mode3",
        insert_ipv6_exts(ntp_frame(OTHER6, LOCAL6, NTP, NTP, 4, 3), &SIX_EXTS),
        refused(Other, 3, D::OtherSource),
    );
    t.add(
        "ipv6-ext/6/peer/mode2",
        insert_ipv6_exts(ntp_frame(PEER6, LOCAL6, NTP, NTP, 4, 2), &SIX_EXTS),
        allowed(Peer, 2),
    );
    t.add(
        "ipv6-ext/6/dns",
        insert_ipv6_exts(udp(OTHER6, LOCAL6, EPHEMERAL, 53, &n3), &SIX_EXTS),
        Expect::Pass(P::NotNtpPort),
    );
    t.add(
        "ipv6-ext/7/to-box",
        insert_ipv6_exts(ntp_frame(SERVER6, LOCAL6, NTP, NTP, 4, 4), &SEVEN_EXTS),
        Expect::Drop(D::ExtHeaders),
    );
    t.add(
        "ipv6-ext/7/to-multicast",
        insert_ipv6_exts(ntp_frame(OTHER6, MCAST6, NTP, NTP, 4, 5), &SEVEN_EXTS),
        Expect::Drop(D::ExtHeaders),
    );
    t.add(
        "ipv6-ext/7/to-transit",
        insert_ipv6_exts(ntp_frame(OTHER6, TRANSIT6, NTP, NTP, 4, 3), &SEVEN_EXTS),
        Expect::Pass(P::NotLocal),
    );
    t.add(
        "ipv6-ext/hop-by-hop+icmpv6(MLD)",
        icmpv6_behind_hop_by_hop(OTHER6, MCAST6),
        Expect::Pass(P::NotUdp),
    );

    // Truncation at every layer: passes as Truncated until the NTP payload,
    // which is in scope and dropped as ShortPayload.
    let v4_other = ntp_frame(OTHER4, LOCAL4, NTP, NTP, 4, 3);
    let v6_other = ntp_frame(OTHER6, LOCAL6, NTP, NTP, 4, 3);
    t.add(
        "truncated/ethernet/10-bytes",
        truncate(v4_other.clone(), 10),
        Expect::Pass(P::Truncated),
    );
    t.add(
        "truncated/ethernet/13-bytes",
        truncate(v4_other.clone(), 13),
        Expect::Pass(P::Truncated),
    );
    t.add(
        "truncated/inside-802.1Q-tag",
        truncate(
            udp_vlan(Vlan::Single, OTHER4, LOCAL4, NTP, NTP, &n3),
            ETH_LEN + 2,
        ),
        Expect::Pass(P::Truncated),
    );
    t.add(
        "truncated/inside-inner-tag-of-qinq",
        truncate(
            udp_vlan(Vlan::Double, OTHER4, LOCAL4, NTP, NTP, &n3),
            ETH_LEN + 4 + 3,
        ),
        Expect::Pass(P::Truncated),
    );
    t.add(
        "truncated/ipv4-header",
        truncate(v4_other.clone(), ETH_LEN + 12),
        Expect::Pass(P::Truncated),
    );
    t.add(
        "truncated/ipv4-options(ihl15)",
        truncate(
            udp4_with_options(OTHER4, LOCAL4, NTP, NTP, &n3, 40),
            ETH_LEN + IPV4_LEN + 20,
        ),
        Expect::Pass(P::Truncated),
    );
    t.add(
        "truncated/ipv6-header",
        truncate(v6_other.clone(), ETH_LEN + 30),
        Expect::Pass(P::Truncated),
    );
    t.add(
        "truncated/ipv6-ext-header/first-byte",
        truncate(
            udp6_hop_by_hop(OTHER6, LOCAL6, NTP, NTP, &n3),
            ETH_LEN + IPV6_LEN + 1,
        ),
        Expect::Pass(P::Truncated),
    );
    t.add(
        "truncated/ipv6-ext-header/body",
        truncate(
            udp6_hop_by_hop(OTHER6, LOCAL6, NTP, NTP, &n3),
            ETH_LEN + IPV6_LEN + 6,
        ),
        Expect::Pass(P::Truncated),
    );
    t.add(
        "truncated/ipv6-ext-header/AH-body",
        truncate(
            udp6_auth(OTHER6, LOCAL6, NTP, NTP, &n3, 12),
            ETH_LEN + IPV6_LEN + 16,
        ),
        Expect::Pass(P::Truncated),
    );
    t.add(
        "truncated/ipv6-fragment-header",
        truncate(
            ip_fragment(OTHER6, LOCAL6, None, &[0x5a; 48], false, 185),
            ETH_LEN + IPV6_LEN + 4,
        ),
        Expect::Pass(P::Truncated),
    );
    t.add(
        "truncated/udp-header/v4",
        truncate(v4_other.clone(), ETH_LEN + IPV4_LEN + 4),
        Expect::Pass(P::Truncated),
    );
    t.add(
        "truncated/udp-header/v6",
        truncate(v6_other.clone(), ETH_LEN + IPV6_LEN + 7),
        Expect::Pass(P::Truncated),
    );
    let udp4_at = ETH_LEN + IPV4_LEN;
    t.add(
        "short/ntp-cut-to-40-bytes(udp-len-56)/v4",
        truncate(v4_other.clone(), udp4_at + UDP_LEN + 40),
        Expect::Drop(D::ShortPayload),
    );
    t.add(
        "short/ntp-cut-to-47-bytes(udp-len-56)/v6/server/mode4",
        truncate(
            ntp_frame(SERVER6, LOCAL6, NTP, NTP, 4, 4),
            ETH_LEN + IPV6_LEN + UDP_LEN + 47,
        ),
        Expect::Drop(D::ShortPayload),
    );
    t.add(
        "short/20-byte-payload/v4",
        udp(OTHER4, LOCAL4, NTP, NTP, &n3[..20]),
        Expect::Drop(D::ShortPayload),
    );
    t.add(
        "short/empty-payload/v6",
        udp(OTHER6, LOCAL6, NTP, NTP, &[]),
        Expect::Drop(D::ShortPayload),
    );
    t.add(
        "short/47-byte-payload/v4/server/mode4",
        udp(SERVER4, LOCAL4, NTP, NTP, &n4[..47]),
        Expect::Drop(D::ShortPayload),
    );
    t.add(
        "short/udp-len-55-with-48-bytes/v4",
        set_udp_len(v4_other.clone(), udp4_at, 55),
        Expect::Drop(D::ShortPayload),
    );
    t.add(
        "short/udp-len-8-with-48-bytes/v6",
        set_udp_len(v6_other.clone(), ETH_LEN + IPV6_LEN, 8),
        Expect::Drop(D::ShortPayload),
    );
    t.add(
        "short/20-byte-payload/to-transit",
        udp(OTHER4, TRANSIT4, NTP, NTP, &n3[..20]),
        Expect::Pass(P::NotLocal),
    );
    t.add(
        "short/20-byte-payload/dns",
        udp(OTHER4, LOCAL4, EPHEMERAL, 53, &n3[..20]),
        Expect::Pass(P::NotNtpPort),
    );
    {
        // 48-byte header plus an extension field / MAC: longer is fine.
        let mut long = ntp(4, 4);
        long.extend_from_slice(&[0; 20]);
        t.add(
            "long/68-byte-ntp/v4/server/mode4",
            udp(SERVER4, LOCAL4, NTP, NTP, &long),
            allowed(Server, 4),
        );
        // An NTS reply: unique identifier, cookies and the authenticator
        // make a few hundred bytes of extension fields.
        let mut nts = ntp(4, 4);
        nts.extend_from_slice(&[0x5a; 364]);
        t.add(
            "long/412-byte-nts-reply/v6/server/mode4",
            udp(SERVER6, LOCAL6, NTP, NTP, &nts),
            allowed(Server, 4),
        );
        // An NTS server on the port its key establishment negotiated
        // (4123, a server port of the config record): in scope, and its
        // replies must travel between that port and the request's.
        for v6 in [false, true] {
            let (srv, f) = (if v6 { NTS6 } else { NTS4 }, fam(v6));
            t.add(
                format!("nts-port/{f}/412-byte-reply/4123-to-40124"),
                udp(srv, local(v6), NTS_SERVER_PORT, NTS_REPLY_PORT, &nts),
                allowed(Server, 4),
            );
            t.add(
                format!("nts-port/{f}/412-byte-reply/4123-to-40999"),
                udp(srv, local(v6), NTS_SERVER_PORT, 40999, &nts),
                refused(Server, 4, D::WrongReplyPort),
            );
            t.add(
                format!("nts-port/{f}/412-byte-reply/123-to-40124"),
                udp(srv, local(v6), NTP, NTS_REPLY_PORT, &nts),
                refused(Server, 4, D::WrongReplyPort),
            );
        }
        t.add(
            "nts-port/v4/other/mode4/4123-to-40124",
            udp(OTHER4, LOCAL4, NTS_SERVER_PORT, NTS_REPLY_PORT, &nts),
            refused(Other, 4, D::OtherSource),
        );
        t.add(
            "nts-port/v6/other/mode3/4123-to-123",
            ntp_frame(OTHER6, LOCAL6, NTS_SERVER_PORT, NTP, 4, 3),
            refused(Other, 3, D::OtherSource),
        );
        t.add(
            "nts-port/v4/plain-server(port 123)/mode4/4123-to-40123",
            udp(
                EPHEMERAL4,
                LOCAL4,
                NTS_SERVER_PORT,
                EPHEMERAL_REPLY_PORT,
                &nts,
            ),
            refused(Server, 4, D::WrongReplyPort),
        );
        t.add(
            "nts-port/v4/nts-server/mode4/4124-to-40124(not a server port)",
            udp(NTS4, LOCAL4, 4124, NTS_REPLY_PORT, &nts),
            Expect::Pass(P::NotNtpPort),
        );
        t.add(
            "nts-port/v4/transit/4123",
            udp(OTHER4, TRANSIT4, NTS_SERVER_PORT, NTS_REPLY_PORT, &nts),
            Expect::Pass(P::NotLocal),
        );
        t.add(
            "nts-port/v4/dst-4123-only/other/mode3",
            ntp_frame(OTHER4, LOCAL4, EPHEMERAL, NTS_SERVER_PORT, 4, 3),
            Expect::Pass(P::NotNtpPort),
        );
    }

    // NTP versions: 1..=4 reach the table, the rest are dropped first.
    for version in [0u8, 5, 6, 7] {
        t.add(
            format!("version/{version}/v4/server/mode4"),
            ntp_frame(SERVER4, LOCAL4, NTP, NTP, version, 4),
            Expect::Drop(D::BadVersion),
        );
    }
    t.add(
        "version/0/v6/other/mode3",
        ntp_frame(OTHER6, LOCAL6, NTP, NTP, 0, 3),
        Expect::Drop(D::BadVersion),
    );
    t.add(
        "version/7/v6/peer/mode1",
        ntp_frame(PEER6, LOCAL6, NTP, NTP, 7, 1),
        Expect::Drop(D::BadVersion),
    );
    for version in [1u8, 2, 3] {
        t.add(
            format!("version/{version}/v4/server/mode4"),
            ntp_frame(SERVER4, LOCAL4, NTP, NTP, version, 4),
            allowed(Server, 4),
        );
    }
    t.add(
        "version/1/v6/other/mode3",
        ntp_frame(OTHER6, LOCAL6, NTP, NTP, 1, 3),
        refused(Other, 3, D::OtherSource),
    );

    // Transit: NTP to a host behind the router, from every class.
    for v6 in [false, true] {
        for (class, mode) in [(Server, 4u8), (Peer, 1), (Other, 3), (Other, 4)] {
            t.add(
                format!("transit/{}/{}/mode{mode}", fam(v6), class.name()),
                ntp_frame(source(class, v6), transit(v6), NTP, NTP, 4, mode),
                Expect::Pass(P::NotLocal),
            );
        }
    }
    t.add(
        "transit/v4/other/bad-version",
        ntp_frame(OTHER4, TRANSIT4, NTP, NTP, 0, 3),
        Expect::Pass(P::NotLocal),
    );
    t.add(
        "transit/v4/broadcast-of-another-subnet",
        ntp_frame(OTHER4, [198, 51, 100, 255].into(), NTP, NTP, 4, 5),
        Expect::Pass(P::NotLocal),
    );

    // Broadcast and multicast destinations are in scope.
    t.add(
        "group/255.255.255.255/other/mode3",
        ntp_frame(OTHER4, LIMITED_BCAST4, NTP, NTP, 4, 3),
        refused(Other, 3, D::OtherSource),
    );
    t.add(
        "group/255.255.255.255/server/mode5",
        ntp_frame(SERVER4, LIMITED_BCAST4, NTP, NTP, 4, 5),
        refused(Server, 5, D::ModeNotAllowed),
    );
    t.add(
        "group/192.0.2.255/other/mode5",
        ntp_frame(OTHER4, SUBNET_BCAST4, NTP, NTP, 4, 5),
        refused(Other, 5, D::OtherSource),
    );
    t.add(
        "group/192.0.2.255/peer/mode1",
        ntp_frame(PEER4, SUBNET_BCAST4, NTP, NTP, 4, 1),
        allowed(Peer, 1),
    );
    t.add(
        "group/224.0.1.1/other/mode5",
        ntp_frame(OTHER4, MCAST4, NTP, NTP, 4, 5),
        refused(Other, 5, D::OtherSource),
    );
    t.add(
        "group/224.0.1.1/server/mode4",
        ntp_frame(SERVER4, MCAST4, NTP, NTP, 4, 4),
        allowed(Server, 4),
    );
    t.add(
        "group/ff02::101/other/mode5",
        ntp_frame(OTHER6, MCAST6, NTP, NTP, 4, 5),
        refused(Other, 5, D::OtherSource),
    );
    t.add(
        "group/ff02::101/peer/mode2",
        ntp_frame(PEER6, MCAST6, NTP, NTP, 4, 2),
        allowed(Peer, 2),
    );
    t.add(
        "group/ff02::101/non-ntp",
        udp(OTHER6, MCAST6, EPHEMERAL, 5353, &n3),
        Expect::Pass(P::NotNtpPort),
    );
    t.add(
        "group/239.255.255.250/ssdp",
        udp(OTHER4, [239, 255, 255, 250].into(), EPHEMERAL, 1900, &n3),
        Expect::Pass(P::NotNtpPort),
    );

    // Out of scope: other UDP, other IP protocols, other EtherTypes.
    t.add(
        "scope/udp-53/v4",
        udp(OTHER4, LOCAL4, EPHEMERAL, 53, &n3),
        Expect::Pass(P::NotNtpPort),
    );
    t.add(
        "scope/udp-53/v6",
        udp(OTHER6, LOCAL6, EPHEMERAL, 53, &n3),
        Expect::Pass(P::NotNtpPort),
    );
    t.add(
        "scope/udp-53/v4/from-server",
        udp(SERVER4, LOCAL4, 53, EPHEMERAL, &n4),
        Expect::Pass(P::NotNtpPort),
    );
    t.add(
        "scope/tcp-123/v4",
        tcp(OTHER4, LOCAL4, EPHEMERAL, NTP),
        Expect::Pass(P::NotUdp),
    );
    t.add(
        "scope/tcp-123/v6",
        tcp(OTHER6, LOCAL6, EPHEMERAL, NTP),
        Expect::Pass(P::NotUdp),
    );
    t.add(
        "scope/icmpv4-echo",
        ipv4_proto(
            OTHER4,
            LOCAL4,
            ip_number::ICMP,
            &[8, 0, 0xf7, 0xff, 0, 0, 0, 0],
        ),
        Expect::Pass(P::NotUdp),
    );
    t.add(
        "scope/icmpv6-neighbour-solicitation",
        icmpv6_neighbor_solicitation(OTHER6, LOCAL6),
        Expect::Pass(P::NotUdp),
    );
    t.add(
        "scope/arp",
        arp_request([192, 0, 2, 99], [192, 0, 2, 1]),
        Expect::Pass(P::NotIp),
    );
    t.add(
        "scope/lldp",
        ethertype_frame([0x01, 0x80, 0xc2, 0, 0, 0x0e], 0x88cc, &[0; 46]),
        Expect::Pass(P::NotIp),
    );

    // Reply ports.
    for v6 in [false, true] {
        let (server, eph) = if v6 {
            (SERVER6, EPHEMERAL6)
        } else {
            (SERVER4, EPHEMERAL4)
        };
        let f = fam(v6);
        t.add(
            format!("reply-port/{f}/server(reply 123)/mode4/dst-40000"),
            ntp_frame(server, local(v6), NTP, 40000, 4, 4),
            refused(Server, 4, D::WrongReplyPort),
        );
        t.add(
            format!("reply-port/{f}/server(reply 40123)/mode4/dst-40123"),
            ntp_frame(eph, local(v6), NTP, EPHEMERAL_REPLY_PORT, 4, 4),
            allowed(Server, 4),
        );
        t.add(
            format!("reply-port/{f}/server(reply 40123)/mode4/dst-123"),
            ntp_frame(eph, local(v6), NTP, NTP, 4, 4),
            refused(Server, 4, D::WrongReplyPort),
        );
        t.add(
            format!("reply-port/{f}/server(reply 123)/mode4/src-50000"),
            ntp_frame(server, local(v6), EPHEMERAL, NTP, 4, 4),
            refused(Server, 4, D::WrongReplyPort),
        );
    }
    t.add(
        "reply-port/v4/server(no request, reply 0)/mode4/dst-123",
        ntp_frame(IDLE4, LOCAL4, NTP, NTP, 4, 4),
        refused(Server, 4, D::WrongReplyPort),
    );
    t.add(
        "reply-port/v6/server(no request, reply 0)/mode4/dst-40123",
        ntp_frame(IDLE6, LOCAL6, NTP, EPHEMERAL_REPLY_PORT, 4, 4),
        refused(Server, 4, D::WrongReplyPort),
    );
    t.add(
        "reply-port/v4/server(no request, reply 0)/mode3",
        ntp_frame(IDLE4, LOCAL4, EPHEMERAL, NTP, 4, 3),
        refused(Server, 3, D::ModeNotAllowed),
    );
    t.add(
        "reply-port/v4/server(reply 123)/mode5/dst-40000",
        ntp_frame(SERVER4, LOCAL4, NTP, 40000, 4, 5),
        refused(Server, 5, D::ModeNotAllowed),
    );
    t.add(
        "reply-port/v4/peer/mode4/dst-40000",
        ntp_frame(PEER4, LOCAL4, NTP, 40000, 4, 4),
        refused(Peer, 4, D::ModeNotAllowed),
    );
    t.add(
        "reply-port/v4/peer/mode1/dst-40000",
        ntp_frame(PEER4, LOCAL4, NTP, 40000, 4, 1),
        allowed(Peer, 1),
    );
    t.add(
        "src-port-only/v4/other/mode4/dst-50000",
        ntp_frame(OTHER4, LOCAL4, NTP, EPHEMERAL, 4, 4),
        refused(Other, 4, D::OtherSource),
    );
    t.add(
        "src-port-only/v6/other/mode4/dst-50000",
        ntp_frame(OTHER6, LOCAL6, NTP, EPHEMERAL, 4, 4),
        refused(Other, 4, D::OtherSource),
    );
    t.add(
        "dst-port-only/v4/other/mode3/src-50000",
        ntp_frame(OTHER4, LOCAL4, EPHEMERAL, NTP, 4, 3),
        refused(Other, 3, D::OtherSource),
    );

    // NTP on a custom port (--ntp-port 1123 --source-port 1123: server
    // replies are expected on it too), then back to 123.
    let custom = Env {
        ntp_port: CUSTOM_PORT,
        ..Env::CLIENT
    };
    t.with(
        custom,
        "port-1123/v4/other/mode3/dst-1123",
        ntp_frame(OTHER4, LOCAL4, EPHEMERAL, CUSTOM_PORT, 4, 3),
        refused(Other, 3, D::OtherSource),
    );
    t.with(
        custom,
        "port-1123/v6/other/mode3/src-1123",
        ntp_frame(OTHER6, LOCAL6, CUSTOM_PORT, EPHEMERAL, 4, 3),
        refused(Other, 3, D::OtherSource),
    );
    t.with(
        custom,
        "port-1123/v4/other/mode3/123-to-123",
        ntp_frame(OTHER4, LOCAL4, NTP, NTP, 4, 3),
        Expect::Pass(P::NotNtpPort),
    );
    t.with(
        custom,
        "port-1123/v4/server/mode4/1123-to-1123",
        ntp_frame(SERVER4, LOCAL4, CUSTOM_PORT, CUSTOM_PORT, 4, 4),
        allowed(Server, 4),
    );
    t.with(
        custom,
        "port-1123/v4/server/mode4/123-to-123",
        ntp_frame(SERVER4, LOCAL4, NTP, NTP, 4, 4),
        Expect::Pass(P::NotNtpPort),
    );
    t.with(
        custom,
        "port-1123/v6/server(reply 40123)/mode4/1123-to-40123",
        ntp_frame(EPHEMERAL6, LOCAL6, CUSTOM_PORT, EPHEMERAL_REPLY_PORT, 4, 4),
        allowed(Server, 4),
    );
    t.with(
        custom,
        "port-1123/v4/transit",
        ntp_frame(OTHER4, TRANSIT4, CUSTOM_PORT, CUSTOM_PORT, 4, 3),
        Expect::Pass(P::NotLocal),
    );
    t.add(
        "port-restored/v4/other/mode3/dst-1123",
        ntp_frame(OTHER4, LOCAL4, EPHEMERAL, CUSTOM_PORT, 4, 3),
        Expect::Pass(P::NotNtpPort),
    );
    t.add(
        "port-restored/v4/server/mode4/123-to-123",
        ntp_frame(SERVER4, LOCAL4, NTP, NTP, 4, 4),
        allowed(Server, 4),
    );

    t.0
}

/// The client access list (server mode): the longest matching prefix
/// decides mode-3 requests that the class table passes, from any class;
/// unmatched requests pass unless some rule allows. Denied requests count as
/// `(class, 3, drop)` and `denied`. Nothing else changes.
fn acl_fixtures(t: &mut Table) {
    const fn server_with(acl: &'static [&'static str]) -> Env {
        Env {
            mode: Role::Server,
            acl,
            ..Env::CLIENT
        }
    }
    let req = |src: IpAddr| {
        let dst = if src.is_ipv4() { LOCAL4 } else { LOCAL6 };
        ntp_frame(src, dst, EPHEMERAL, NTP, 4, 3)
    };

    // (a) One host denied; no allow rule, so everyone else passes.
    let deny_one = server_with(&["deny 192.0.2.99/32"]);
    t.with(
        deny_one,
        "acl/deny-one/v4/other(.99)/mode3",
        req(OTHER4),
        refused(Other, 3, D::Denied),
    );
    t.with(
        deny_one,
        "acl/deny-one/v4/other(.98)/mode3",
        req(CLIENT4_98),
        allowed(Other, 3),
    );
    t.with(
        deny_one,
        "acl/deny-one/v6/other/mode3",
        req(OTHER6),
        allowed(Other, 3),
    );
    t.with(
        deny_one,
        "acl/deny-one/v4/other(.99)/mode3/to-limited-broadcast",
        ntp_frame(OTHER4, LIMITED_BCAST4, EPHEMERAL, NTP, 4, 3),
        refused(Other, 3, D::Denied),
    );
    t.with(
        deny_one,
        "acl/deny-one/vlan/88a8+8100/v4/other(.99)/mode3",
        udp_vlan(Vlan::Double, OTHER4, LOCAL4, EPHEMERAL, NTP, &ntp(4, 3)),
        refused(Other, 3, D::Denied),
    );
    // The class table comes first: a mode it drops is not "denied".
    t.with(
        deny_one,
        "acl/deny-one/v4/other(.99)/mode4",
        ntp_frame(OTHER4, LOCAL4, NTP, NTP, 4, 4),
        refused(Other, 4, D::OtherSource),
    );
    t.with(
        deny_one,
        "acl/deny-one/v4/other(.99)/mode7",
        ntp_frame(OTHER4, LOCAL4, EPHEMERAL, NTP, 2, 7),
        refused(Other, 7, D::OtherSource),
    );
    // Scope and parsing come first too.
    t.with(
        deny_one,
        "acl/deny-one/v4/other(.99)/mode3/transit",
        ntp_frame(OTHER4, TRANSIT4, EPHEMERAL, NTP, 4, 3),
        Expect::Pass(P::NotLocal),
    );
    t.with(
        deny_one,
        "acl/deny-one/v4/other(.99)/version0",
        ntp_frame(OTHER4, LOCAL4, EPHEMERAL, NTP, 0, 3),
        Expect::Drop(D::BadVersion),
    );
    // In client mode the table already refuses mode 3.
    t.with(
        Env {
            acl: &["deny 192.0.2.99/32"],
            ..Env::CLIENT
        },
        "acl/deny-one/client-mode/v4/other(.99)/mode3",
        req(OTHER4),
        refused(Other, 3, D::OtherSource),
    );

    // (b) An allow rule: everything it does not cover is denied.
    // 192.0.2.0/25 is .0-.127, so .99 is inside it.
    let allow_half = server_with(&["allow 192.0.2.0/25"]);
    t.with(
        allow_half,
        "acl/allow-/25/v4/other(.50)/mode3",
        req(CLIENT4_50),
        allowed(Other, 3),
    );
    t.with(
        allow_half,
        "acl/allow-/25/v4/other(.99)/mode3",
        req(OTHER4),
        allowed(Other, 3),
    );
    t.with(
        allow_half,
        "acl/allow-/25/v4/other(.200)/mode3",
        req(CLIENT4_200),
        refused(Other, 3, D::Denied),
    );
    t.with(
        allow_half,
        "acl/allow-/25/v4/other(198.51.100.7)/mode3",
        req(FAR4),
        refused(Other, 3, D::Denied),
    );
    t.with(
        allow_half,
        "acl/allow-/25/v6/other/mode3",
        req(OTHER6),
        refused(Other, 3, D::Denied),
    );
    t.with(
        allow_half,
        "acl/allow-/25/v6/server/mode3",
        req(SERVER6),
        refused(Server, 3, D::Denied),
    );
    t.with(
        allow_half,
        "acl/allow-/25/v4/server(.10)/mode3",
        req(SERVER4),
        allowed(Server, 3),
    );

    // (c) The longest prefix wins, either way round.
    let nested = server_with(&["allow 192.0.2.0/24", "deny 192.0.2.96/28"]);
    t.with(
        nested,
        "acl/nested/v4/other(.99,in-/28)/mode3",
        req(OTHER4),
        refused(Other, 3, D::Denied),
    );
    t.with(
        nested,
        "acl/nested/v4/other(.98,in-/28)/mode3",
        req(CLIENT4_98),
        refused(Other, 3, D::Denied),
    );
    t.with(
        nested,
        "acl/nested/v4/server(.10)/mode3",
        req(SERVER4),
        allowed(Server, 3),
    );
    t.with(
        nested,
        "acl/nested/v4/other(.50)/mode3",
        req(CLIENT4_50),
        allowed(Other, 3),
    );
    t.with(
        nested,
        "acl/nested/v4/other(.112,past-/28)/mode3",
        req(CLIENT4_112),
        allowed(Other, 3),
    );
    t.with(
        nested,
        "acl/nested/v4/other(198.51.100.7,no-match)/mode3",
        req(FAR4),
        refused(Other, 3, D::Denied),
    );
    let nested_rev = server_with(&["deny 192.0.2.0/24", "allow 192.0.2.96/28"]);
    t.with(
        nested_rev,
        "acl/nested-reversed/v4/other(.99,in-/28)/mode3",
        req(OTHER4),
        allowed(Other, 3),
    );
    t.with(
        nested_rev,
        "acl/nested-reversed/v4/other(.50)/mode3",
        req(CLIENT4_50),
        refused(Other, 3, D::Denied),
    );

    // (d) Only mode 3 is subject to the list: every own source's address
    // denied, their replies and symmetric messages still pass.
    let ours_denied = server_with(&[
        "allow 198.51.100.0/24",
        "deny 192.0.2.0/24",
        "deny 2001:db8::/32",
    ]);
    for v6 in [false, true] {
        let f = fam(v6);
        let (server, peer) = (source(Server, v6), source(Peer, v6));
        t.with(
            ours_denied,
            format!("acl/ours-denied/{f}/server/mode4"),
            ntp_frame(server, local(v6), NTP, NTP, 4, 4),
            allowed(Server, 4),
        );
        t.with(
            ours_denied,
            format!("acl/ours-denied/{f}/peer/mode1"),
            ntp_frame(peer, local(v6), NTP, NTP, 4, 1),
            allowed(Peer, 1),
        );
        t.with(
            ours_denied,
            format!("acl/ours-denied/{f}/peer/mode2"),
            ntp_frame(peer, local(v6), NTP, NTP, 4, 2),
            allowed(Peer, 2),
        );
        t.with(
            ours_denied,
            format!("acl/ours-denied/{f}/server/mode3"),
            req(server),
            refused(Server, 3, D::Denied),
        );
        t.with(
            ours_denied,
            format!("acl/ours-denied/{f}/peer/mode3"),
            req(peer),
            refused(Peer, 3, D::Denied),
        );
    }
    t.with(
        ours_denied,
        "acl/ours-denied/v4/server/mode4/dst-40000",
        ntp_frame(SERVER4, LOCAL4, NTP, 40000, 4, 4),
        refused(Server, 4, D::WrongReplyPort),
    );
    t.with(
        ours_denied,
        "acl/ours-denied/v4/server/mode5",
        ntp_frame(SERVER4, LOCAL4, NTP, NTP, 4, 5),
        refused(Server, 5, D::ModeNotAllowed),
    );
    t.with(
        ours_denied,
        "acl/ours-denied/v4/other(198.51.100.7)/mode3",
        req(FAR4),
        allowed(Other, 3),
    );

    // (e) IPv6 /64s, and an IPv4 client under an IPv6-only allow list.
    let v6_nets = server_with(&["allow 2001:db8:0:5::/64", "deny 2001:db8::/64"]);
    t.with(
        v6_nets,
        "acl/v6-/64/other(2001:db8:0:5::99)/mode3",
        req(CLIENT6_NET5),
        allowed(Other, 3),
    );
    t.with(
        v6_nets,
        "acl/v6-/64/other(2001:db8::99)/mode3",
        req(OTHER6),
        refused(Other, 3, D::Denied),
    );
    t.with(
        v6_nets,
        "acl/v6-/64/other(2001:db8:0:6::99,no-match)/mode3",
        req(CLIENT6_NET6),
        refused(Other, 3, D::Denied),
    );
    t.with(
        v6_nets,
        "acl/v6-/64/v4/other(.99,no-match)/mode3",
        req(OTHER4),
        refused(Other, 3, D::Denied),
    );
    t.with(
        v6_nets,
        "acl/v6-/64/ipv6-ext/6/other(2001:db8:0:5::99)/mode3",
        insert_ipv6_exts(
            ntp_frame(CLIENT6_NET5, LOCAL6, EPHEMERAL, NTP, 4, 3),
            &SIX_EXTS,
        ),
        allowed(Other, 3),
    );
    t.with(
        v6_nets,
        "acl/v6-/64/ipv6-ext/6/other(2001:db8::99)/mode3",
        insert_ipv6_exts(ntp_frame(OTHER6, LOCAL6, EPHEMERAL, NTP, 4, 3), &SIX_EXTS),
        refused(Other, 3, D::Denied),
    );
    // A deny-only IPv6 list leaves IPv4 alone.
    let v6_deny = server_with(&["deny 2001:db8::/64"]);
    t.with(
        v6_deny,
        "acl/v6-deny-/64/v6/other(2001:db8::99)/mode3",
        req(OTHER6),
        refused(Other, 3, D::Denied),
    );
    t.with(
        v6_deny,
        "acl/v6-deny-/64/v6/other(2001:db8:0:5::99)/mode3",
        req(CLIENT6_NET5),
        allowed(Other, 3),
    );
    t.with(
        v6_deny,
        "acl/v6-deny-/64/v4/other(.99)/mode3",
        req(OTHER4),
        allowed(Other, 3),
    );

    // Rules removed, flag cleared: everyone may ask again.
    t.with(
        Env::SERVER,
        "acl-restored/v4/other(.200)/mode3",
        req(CLIENT4_200),
        allowed(Other, 3),
    );
    t.with(
        Env::SERVER,
        "acl-restored/v6/other/mode3",
        req(OTHER6),
        allowed(Other, 3),
    );
}

/// IPv6 sources that embed an IPv4 address (RFC 4291 2.5.5): IPv4-mapped
/// `::ffff:0:0/96` and IPv4-compatible `::/96` (but `::` and `::1`). In
/// scope they are dropped before any class is looked up, even when the
/// embedded address is a configured server or peer; out of scope they pass
/// like anything else.
fn embedded_ipv4_source_fixtures(t: &mut Table) {
    let v6 = |s: &str| -> IpAddr { s.parse().unwrap() };
    let mapped_peer = v6("::ffff:192.0.2.20");
    let mapped_server = v6("::ffff:192.0.2.10");
    let mapped_other = v6("::ffff:192.0.2.99");
    let compat_other = v6("::192.0.2.99");
    let dropped = Expect::Drop(D::MappedSource);
    t.add(
        "v4-mapped/::ffff:peer/mode1",
        ntp_frame(mapped_peer, LOCAL6, NTP, NTP, 4, 1),
        dropped,
    );
    t.add(
        "v4-mapped/::ffff:peer/mode2/to-multicast",
        ntp_frame(mapped_peer, MCAST6, NTP, NTP, 4, 2),
        dropped,
    );
    t.add(
        "v4-mapped/::ffff:server/mode4",
        ntp_frame(mapped_server, LOCAL6, NTP, NTP, 4, 4),
        dropped,
    );
    t.with(
        Env::SERVER,
        "v4-mapped/server-mode/::ffff:other/mode3",
        ntp_frame(mapped_other, LOCAL6, EPHEMERAL, NTP, 4, 3),
        dropped,
    );
    t.with(
        Env::SERVER,
        "v4-compatible/server-mode/::192.0.2.99/mode3",
        ntp_frame(compat_other, LOCAL6, EPHEMERAL, NTP, 4, 3),
        dropped,
    );
    t.add(
        "v4-compatible/::2/mode4",
        ntp_frame(v6("::2"), LOCAL6, NTP, NTP, 4, 4),
        dropped,
    );
    t.add(
        "v4-mapped/::ffff:peer/mode1/vlan/88a8+8100",
        udp_vlan(Vlan::Double, mapped_peer, LOCAL6, NTP, NTP, &ntp(4, 1)),
        dropped,
    );
    t.add(
        "v4-mapped/::ffff:peer/mode1/ipv6-ext/6",
        insert_ipv6_exts(ntp_frame(mapped_peer, LOCAL6, NTP, NTP, 4, 1), &SIX_EXTS),
        dropped,
    );
    // Before the later checks: a bad version or a short payload from such a
    // source counts as what the source is.
    t.add(
        "v4-mapped/::ffff:other/version0",
        ntp_frame(mapped_other, LOCAL6, NTP, NTP, 0, 3),
        dropped,
    );
    // What cannot be seen or is not in scope keeps its reason.
    t.add(
        "v4-mapped/::ffff:peer/7-ext-headers",
        insert_ipv6_exts(ntp_frame(mapped_peer, LOCAL6, NTP, NTP, 4, 1), &SEVEN_EXTS),
        Expect::Drop(D::ExtHeaders),
    );
    t.add(
        "v4-mapped/::ffff:peer/to-transit",
        ntp_frame(mapped_peer, TRANSIT6, NTP, NTP, 4, 1),
        Expect::Pass(P::NotLocal),
    );
    t.add(
        "v4-mapped/::ffff:other/dns",
        udp(mapped_other, LOCAL6, EPHEMERAL, 53, &ntp(4, 3)),
        Expect::Pass(P::NotNtpPort),
    );
    // Not embedded IPv4: `::1`, `::`, NAT64's 64:ff9b::/96, a mapped
    // address under a prefix: ordinary outsiders.
    for src in [
        "::1",
        "::",
        "64:ff9b::192.0.2.20",
        "2001:db8::ffff:192.0.2.20",
    ] {
        t.add(
            format!("not-v4-mapped/{src}/mode1"),
            ntp_frame(v6(src), LOCAL6, NTP, NTP, 4, 1),
            refused(Other, 1, D::OtherSource),
        );
    }
    // The IPv4 peer itself is still the peer.
    t.add(
        "v4-mapped/the-ipv4-peer-itself/mode1",
        ntp_frame(PEER4, LOCAL4, NTP, NTP, 4, 1),
        allowed(Peer, 1),
    );
}

/// The same verdicts from an interface without a counter slot: only the
/// block the counters land in changes (slot 0).
fn unslotted_fixtures(t: &mut Table) {
    t.unslotted(
        Env::CLIENT,
        "unslotted/v4/other/mode3",
        ntp_frame(OTHER4, LOCAL4, EPHEMERAL, NTP, 4, 3),
        refused(Other, 3, D::OtherSource),
    );
    t.unslotted(
        Env::CLIENT,
        "unslotted/v6/server/mode4",
        ntp_frame(SERVER6, LOCAL6, NTP, NTP, 4, 4),
        allowed(Server, 4),
    );
    t.unslotted(
        Env::SERVER,
        "unslotted/server/v4/other/mode3",
        ntp_frame(OTHER4, LOCAL4, EPHEMERAL, NTP, 4, 3),
        allowed(Other, 3),
    );
    t.unslotted(
        Env::CLIENT,
        "unslotted/v4/short-payload",
        udp(OTHER4, LOCAL4, EPHEMERAL, NTP, &[0x23; 20]),
        Expect::Drop(D::ShortPayload),
    );
    t.unslotted(
        Env::CLIENT,
        "unslotted/v4/dns",
        udp(OTHER4, LOCAL4, EPHEMERAL, 53, &ntp(4, 3)),
        Expect::Pass(P::NotNtpPort),
    );
    t.unslotted(
        Env::CLIENT,
        "unslotted/arp",
        arp_request([192, 0, 2, 99], [192, 0, 2, 1]),
        Expect::Pass(P::NotIp),
    );
}

// ---------------------------------------------------------------------------
// Running it

fn counter_name(counter: Counter) -> String {
    match counter {
        Counter::Decision {
            class,
            mode,
            verdict,
        } => format!("decision({}, mode {mode}, {verdict:?})", class.name()),
        Counter::Drop(r) => format!("drop:{}", r.name()),
        Counter::Pass(r) => format!("pass:{}", r.name()),
    }
}

/// A counter of the whole array, with its interface slot.
fn indexed_name(index: u32) -> String {
    match split_index(index) {
        Some((slot, counter)) => format!("slot {slot} {}", counter_name(counter)),
        None => format!("index {index}"),
    }
}

fn show(delta: &BTreeMap<u32, i128>) -> String {
    if delta.is_empty() {
        return "(no counter moved)".into();
    }
    delta
        .iter()
        .map(|(i, n)| format!("{}{n:+}", indexed_name(*i)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn action_name(action: u32) -> String {
    match action {
        XDP_DROP => "XDP_DROP".into(),
        XDP_PASS => "XDP_PASS".into(),
        n => format!("action {n}"),
    }
}

enum Checked {
    Ok,
    Failed(String),
    /// The kernel would not run the frame at all (see [`ETH_HLEN`]).
    NotRunnable(String),
}

/// BPF_PROG_TEST_RUN for XDP refuses input with less than an Ethernet
/// header of packet data (EINVAL; on 6.18 also when the frame sits behind
/// XDP metadata), so a frame cut inside the Ethernet header cannot reach the
/// program this way. Such fixtures are tried anyway — a kernel that accepts
/// them gets them checked — and otherwise reported as not run.
const ETH_HLEN: usize = 14;

fn is_einval(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.raw_os_error() == Some(libc::EINVAL))
}

/// `interface_counters()` as name -> (dropped, passed).
fn by_iface(h: &Harness) -> BTreeMap<String, (u64, u64)> {
    h.maps
        .interface_counters()
        .expect("reading the counters per interface")
        .into_iter()
        .map(|(name, s)| (name, (s.total_dropped, s.total_passed)))
        .collect()
}

/// Runs one fixture and compares verdict and counter delta with the spec.
fn check(h: &mut Harness, f: &Fixture) -> Checked {
    let run = |h: &mut Harness| -> anyhow::Result<(u32, Vec<u64>, Vec<u64>)> {
        h.set_env(f.env)?;
        h.set_lo_slotted(f.slotted)?;
        let before = h.all_counters()?;
        let result = h.run(&f.frame, 1)?;
        let after = h.all_counters()?;
        Ok((result.return_value, before, after))
    };
    let (action, before, after) = match run(h) {
        Ok(r) => r,
        Err(e) if f.frame.len() < ETH_HLEN && is_einval(&e) => {
            return Checked::NotRunnable(format!("{e:#}"))
        }
        Err(e) => return Checked::Failed(format!("{e:#}")),
    };

    let got: BTreeMap<u32, i128> = (0..before.len() as u32)
        .map(|i| (i, after[i as usize] as i128 - before[i as usize] as i128))
        .filter(|(_, d)| *d != 0)
        .collect();
    let mut want: BTreeMap<u32, i128> = BTreeMap::new();
    let slot = if f.slotted { h.lo_slot } else { IFACE_OTHER };
    for c in f.expect.counters() {
        *want.entry(counter_index(slot, c)).or_default() += 1;
    }
    let want_action = f.expect.action();
    if action == want_action && got == want {
        return Checked::Ok;
    }
    Checked::Failed(format!(
        "expected {} [{}], got {} [{}]",
        action_name(want_action),
        show(&want),
        action_name(action),
        show(&got),
    ))
}

fn verdicts_and_counters_match_the_spec() {
    let mut h = Harness::start("ptr");
    let fixtures = table();
    let start = FilterStats::from_slots(&h.counters().expect("reading counters"));
    let start_by_iface = by_iface(&h);

    let mut failures = Vec::new();
    let mut not_run = Vec::new();
    let (mut ran_drops, mut ran_passes) = (0u64, 0u64);
    // (drops, passes) expected per interface name.
    let mut per_iface: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for f in &fixtures {
        let tag = format!(
            "{} ({} bytes, {:?}{})",
            f.name,
            f.frame.len(),
            f.env,
            if f.slotted { "" } else { ", lo without slot" }
        );
        match check(&mut h, f) {
            Checked::NotRunnable(why) => {
                not_run.push(format!("  {tag}: {why}"));
                continue;
            }
            Checked::Failed(why) => failures.push(format!("  {tag}: {why}")),
            Checked::Ok => {}
        }
        let iface = if f.slotted { "lo" } else { slots::OTHER };
        let cell = per_iface.entry(iface.to_string()).or_default();
        if f.expect.action() == XDP_DROP {
            ran_drops += 1;
            cell.0 += 1;
        } else {
            ran_passes += 1;
            cell.1 += 1;
        }
    }
    h.set_lo_slotted(true).expect("restoring lo's slot");
    if !not_run.is_empty() {
        say!(
            "NOTE: the kernel refused {} fixture(s) shorter than an Ethernet header; not run:\n{}",
            not_run.len(),
            not_run.join("\n")
        );
    }

    // Leave the maps as they started (and prove the restore took).
    h.set_env(Env::CLIENT).expect("restoring the client config");
    let cfg = h.maps.config().expect("reading the config");
    assert_eq!((cfg.ntp_port, cfg.flags), (123, 0), "config not restored");
    assert_eq!(
        h.maps.acl_rules().expect("reading the access list"),
        vec![],
        "access list not restored"
    );

    // The same totals through FilterStats, as `status` shows them.
    let end = FilterStats::from_slots(&h.counters().expect("reading counters"));
    let totals = (
        end.total_dropped - start.total_dropped,
        end.total_passed - start.total_passed,
    );
    if totals != (ran_drops, ran_passes) {
        failures.push(format!(
            "  totals: expected {ran_drops} dropped / {ran_passes} passed over the table, FilterStats shows {} / {}",
            totals.0, totals.1
        ));
    }
    // And per interface, as `status` and the metrics show them.
    let end_by_iface = by_iface(&h);
    let moved: BTreeMap<String, (u64, u64)> = end_by_iface
        .iter()
        .map(|(name, &(d, p))| {
            let (d0, p0) = start_by_iface.get(name).copied().unwrap_or_default();
            (name.clone(), (d - d0, p - p0))
        })
        .filter(|(_, moved)| *moved != (0, 0))
        .collect();
    if moved != per_iface {
        failures.push(format!(
            "  per interface (dropped, passed): expected {per_iface:?}, interface_counters shows {moved:?}"
        ));
    }

    assert!(
        failures.is_empty(),
        "{} of {} fixtures contradict the spec:\n{}",
        failures.len(),
        fixtures.len(),
        failures.join("\n")
    );
    say!(
        "prog_test_run: {} fixtures match the spec ({} not runnable on this kernel)",
        fixtures.len() - not_run.len(),
        not_run.len()
    );
}

/// With a context naming the ingress device, the counters land in that
/// device's block: its own slot; slot 0 ("other") when it has none or its
/// ifindex is past the end of NF_IFACES. Freeing a slot zeroes it and sends
/// the interface's packets to "other".
fn counters_follow_the_ingress_interface() {
    use ntp_agent::filter::slots::{Assignment, Iface, NoSlot};
    use ntp_filter_common::MAX_IFINDEX;

    let mut h = Harness::start("ptrif");
    let ns = Netns::new("ptrif").expect("creating a namespace");
    // Devices with chosen indexes in a namespace of our own: the two ends
    // of the NF_IFACES range, and a low index without a slot. Any device's
    // rx queues are registered for XDP, so a test run accepts it.
    let edge = Iface {
        name: "nfedge".into(),
        index: MAX_IFINDEX - 1,
    };
    let big = Iface {
        name: "nfbig".into(),
        index: MAX_IFINDEX,
    };
    let (edge_i, big_i) = (edge.index.to_string(), big.index.to_string());
    ns.ip(&[
        "link", "add", "nfedge", "index", &edge_i, "type", "veth", "peer", "name", "nfbig",
        "index", &big_i,
    ])
    .expect("adding veths");
    ns.ip(&[
        "link", "add", "nflow", "index", "77", "type", "veth", "peer", "name", "nflow2", "index",
        "78",
    ])
    .expect("adding veths");

    let assigned = slots::assign(&mut h.maps, &[h.lo.clone(), edge.clone(), big.clone()])
        .expect("assigning slots");
    let got: Vec<Assignment> = assigned.iter().map(|(_, a)| *a).collect();
    let edge_slot = match got[..] {
        [Assignment::Kept(lo), Assignment::New(e), Assignment::Other(NoSlot::IndexTooHigh)]
            if lo == h.lo_slot && e != lo =>
        {
            e
        }
        _ => panic!("unexpected assignments {assigned:?}"),
    };

    let frame = ntp_frame(OTHER4, LOCAL4, EPHEMERAL, NTP, 4, 3);
    let expect = refused(Other, 3, D::OtherSource);
    let run_all = |h: &mut Harness, cases: &[(u32, u32)]| -> Vec<String> {
        // On a thread of the namespace's: the test run looks the ingress
        // device up there.
        ns.in_ns(|| {
            let mut failures = Vec::new();
            for &(ifindex, slot) in cases {
                let before = h.all_counters().expect("reading counters");
                let r = h.run_on(&frame, ifindex).expect("test run");
                let after = h.all_counters().expect("reading counters");
                let got: BTreeMap<u32, i128> = (0..before.len())
                    .map(|i| (i as u32, after[i] as i128 - before[i] as i128))
                    .filter(|(_, d)| *d != 0)
                    .collect();
                let want: BTreeMap<u32, i128> = expect
                    .counters()
                    .into_iter()
                    .map(|c| (counter_index(slot, c), 1))
                    .collect();
                if r.return_value != XDP_DROP || got != want {
                    failures.push(format!(
                        "ifindex {ifindex}: expected XDP_DROP [{}], got {} [{}]",
                        show(&want),
                        action_name(r.return_value),
                        show(&got)
                    ));
                }
            }
            failures
        })
        .expect("entering the namespace")
    };

    // The namespace's own loopback is ifindex 1 too: NF_IFACES is by index.
    let (lo_index, lo_slot) = (h.lo.index, h.lo_slot);
    let failures = run_all(
        &mut h,
        &[
            (lo_index, lo_slot),
            (edge.index, edge_slot),
            (big.index, IFACE_OTHER),
            (77, IFACE_OTHER),
        ],
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Retiring nfedge: its entry goes, its block is zeroed, its packets
    // count under "other"; lo keeps its slot and counters.
    let lo_before = h.maps.slot_counters(h.lo_slot).unwrap();
    slots::assign(&mut h.maps, std::slice::from_ref(&h.lo)).expect("freeing nfedge");
    assert_eq!(h.maps.slot_counters(h.lo_slot).unwrap(), lo_before);
    assert!(
        h.maps
            .slot_counters(edge_slot)
            .unwrap()
            .iter()
            .all(|&n| n == 0),
        "a freed slot keeps counts"
    );
    assert_eq!(
        h.maps.iface_slots().unwrap(),
        BTreeMap::from([(h.lo.index, h.lo_slot)])
    );
    let failures = run_all(&mut h, &[(edge.index, IFACE_OTHER)]);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Loaded as the agent runs by default (without `--count-out-of-scope`):
/// the traffic the filter leaves alone passes uncounted, everything in
/// scope and every anomaly is counted exactly as with it.
fn out_of_scope_passes_are_counted_only_on_request() {
    let mut h = Harness::start_with("ptroos", ntp_agent::filter::LoadOptions::default());
    let uncounted = [
        ("arp", arp_request([192, 0, 2, 99], [192, 0, 2, 1])),
        ("tcp", tcp(OTHER4, LOCAL4, EPHEMERAL, NTP)),
        ("dns", udp(OTHER6, LOCAL6, EPHEMERAL, 53, &ntp(4, 3))),
        ("transit", ntp_frame(OTHER4, TRANSIT4, NTP, NTP, 4, 3)),
    ];
    let mut failures = Vec::new();
    for (name, frame) in &uncounted {
        let before = h.all_counters().unwrap();
        let r = h.run(frame, 1).unwrap();
        if r.return_value != XDP_PASS || h.all_counters().unwrap() != before {
            failures.push(format!(
                "{name}: {} or a counter moved",
                action_name(r.return_value)
            ));
        }
    }
    // The rest of the table is counted as the spec says.
    for f in table().iter().filter(|f| {
        !matches!(
            f.expect,
            Expect::Pass(P::NotIp | P::NotUdp | P::NotNtpPort | P::NotLocal)
        )
    }) {
        if let Checked::Failed(why) = check(&mut h, f) {
            failures.push(format!("{}: {why}", f.name));
        }
    }
    h.set_env(Env::CLIENT).unwrap();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The access-list API on the real map: exact-range rules, sorted reads,
/// overwrites, removal of an absent range, the default-deny flag, and the
/// reconcile helpers (contradictions refused before any write, the map's
/// full capacity usable).
fn access_list_maps_round_trip() {
    use ntp_agent::{
        filter::reconcile,
        model::{AclRule, Cidr},
    };
    use ntp_filter_common::{config_flags, MAX_ACL_RULES};

    let mut h = Harness::start("acl");
    let cidr = |s: &str| s.parse::<Cidr>().unwrap();
    let rule = |s: &str| s.parse::<AclRule>().unwrap();
    let m = &mut h.maps;
    assert_eq!(m.acl_rules().unwrap(), vec![]);
    assert!(!m.acl_default_deny().unwrap());

    for r in [
        "deny 2001:db8::/64",
        "deny 192.0.2.96/28",
        "allow 192.0.2.0/24",
    ] {
        m.put_acl(rule(r)).unwrap();
    }
    let shown = |m: &ntp_agent::filter::FilterMaps| {
        m.acl_rules()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        shown(m),
        [
            "allow 192.0.2.0/24",
            "deny 192.0.2.96/28",
            "deny 2001:db8::/64"
        ]
    );
    // Same range again: the verdict is replaced, not added.
    m.put_acl(rule("allow 192.0.2.96/28")).unwrap();
    assert_eq!(
        shown(m),
        [
            "allow 192.0.2.0/24",
            "allow 192.0.2.96/28",
            "deny 2001:db8::/64"
        ]
    );
    // Removal is by exact range, not longest-prefix match.
    let e = m.remove_acl(cidr("192.0.2.0/25")).unwrap_err();
    assert_eq!(e.to_string(), "no allow/deny rule for 192.0.2.0/25");
    m.remove_acl(cidr("192.0.2.0/24")).unwrap();
    assert_eq!(shown(m), ["allow 192.0.2.96/28", "deny 2001:db8::/64"]);

    // The flag leaves the rest of the config alone.
    let before = m.config().unwrap();
    m.set_acl_default_deny(true).unwrap();
    let cfg = m.config().unwrap();
    assert_eq!(cfg.ntp_port, before.ntp_port);
    assert_eq!(cfg.flags, before.flags | config_flags::ACL_DEFAULT_DENY);
    assert!(m.acl_default_deny().unwrap());
    m.set_acl_default_deny(false).unwrap();
    assert_eq!(m.config().unwrap(), before);

    // apply_acl: contradictions refused with the map untouched.
    let e =
        reconcile::apply_acl(m, &[rule("allow 10.0.0.0/8"), rule("deny 10.0.0.0/8")]).unwrap_err();
    assert!(e.to_string().contains("10.0.0.0/8"), "{e}");
    assert_eq!(shown(m), ["allow 192.0.2.96/28", "deny 2001:db8::/64"]);
    // Adds, changes, removes, and sets the flag from the allow rules.
    let p =
        reconcile::apply_acl(m, &[rule("allow 10.0.0.0/8"), rule("allow 2001:db8::/64")]).unwrap();
    assert_eq!((p.upserts.len(), p.removals.len()), (2, 1));
    assert_eq!(shown(m), ["allow 10.0.0.0/8", "allow 2001:db8::/64"]);
    assert!(m.acl_default_deny().unwrap());
    reconcile::apply_acl(m, &[rule("deny 10.0.0.0/8")]).unwrap();
    assert_eq!(shown(m), ["deny 10.0.0.0/8"]);
    assert!(!m.acl_default_deny().unwrap());

    // The whole capacity, then one too many (refused before writing).
    let full: Vec<AclRule> = (0..MAX_ACL_RULES)
        .map(|i| {
            let [_, _, a, b] = i.to_be_bytes();
            AclRule::deny(Cidr::host(IpAddr::from([10, 9, a, b])))
        })
        .collect();
    reconcile::apply_acl(m, &full).unwrap();
    assert_eq!(m.acl_rules().unwrap().len(), MAX_ACL_RULES as usize);
    let mut too_many = full.clone();
    too_many.push(rule("deny 10.8.0.0/16"));
    let e = reconcile::apply_acl(m, &too_many).unwrap_err();
    assert!(e.to_string().contains("at most 4096"), "{e}");
    assert_eq!(m.acl_rules().unwrap().len(), MAX_ACL_RULES as usize);
    // Full to another full list: some old rules must go first to make room.
    let mut shifted = full[100..].to_vec();
    shifted.extend((0..100u8).map(|i| AclRule::allow(Cidr::host(IpAddr::from([10, 10, 0, i])))));
    let p = reconcile::apply_acl(m, &shifted).unwrap();
    assert_eq!((p.upserts.len(), p.removals.len()), (100, 100));
    let mut want = shifted.clone();
    want.sort();
    assert_eq!(m.acl_rules().unwrap(), want);
    assert!(m.acl_default_deny().unwrap());

    // reconcile::apply owns the list and the flag through Desired.acl.
    h.set_env(Env {
        acl: &["allow 192.0.2.0/24"],
        ..Env::SERVER
    })
    .unwrap();
    assert_eq!(shown(&h.maps), ["allow 192.0.2.0/24"]);
    assert!(h.maps.acl_default_deny().unwrap());
    h.set_env(Env::CLIENT).unwrap();
    assert_eq!(h.maps.acl_rules().unwrap(), vec![]);
    assert_eq!(h.maps.config().unwrap().flags, 0);
}

/// The table itself: big enough, no duplicate names, and every drop and
/// pass reason expected somewhere, so a new reason cannot go untested.
fn fixture_table_covers_every_reason() {
    let fixtures = table();
    assert!(fixtures.len() >= 60, "only {} fixtures", fixtures.len());

    let mut names = std::collections::BTreeSet::new();
    for f in &fixtures {
        assert!(
            names.insert(f.name.as_str()),
            "duplicate fixture {}",
            f.name
        );
        assert!(!f.frame.is_empty(), "{}: empty frame", f.name);
    }

    let expected: Vec<Counter> = fixtures.iter().flat_map(|f| f.expect.counters()).collect();
    let missing: Vec<String> = DropReason::ALL
        .iter()
        .map(|r| Counter::Drop(*r))
        .chain(PassReason::ALL.iter().map(|r| Counter::Pass(*r)))
        .filter(|c| !expected.contains(c))
        .map(counter_name)
        .collect();
    assert!(missing.is_empty(), "no fixture expects {missing:?}");

    // The generated mode table covers every (class, mode, family).
    for class in SourceClass::ALL {
        for mode in 0..8u8 {
            for v6 in [false, true] {
                let name = format!("client/{}/{}/mode{mode}", fam(v6), class.name());
                assert!(names.contains(name.as_str()), "missing {name}");
            }
        }
    }
}

/// The hand-built parts of the frames are what the fixture names claim, so a
/// fixture cannot pass by testing a different packet than intended (as
/// etherparse 0.16's IPv6 fragment header once did). Checked by an
/// independent RFC-rule walk here, not by the program.
fn hand_built_frames_are_what_they_claim() {
    use etherparse::{NetSlice, SlicedPacket, TransportSlice};

    // Where the UDP header starts after walking an IPv6 extension chain,
    // and how many headers were walked.
    fn walk_ipv6(frame: &[u8]) -> (usize, usize) {
        let mut nh = frame[ETH_LEN + 6];
        let mut at = ETH_LEN + IPV6_LEN;
        let mut n = 0;
        while nh != 17 {
            let len = match nh {
                44 => 8,
                51 => (frame[at + 1] as usize + 2) * 4,
                _ => (frame[at + 1] as usize + 1) * 8,
            };
            nh = frame[at];
            at += len;
            n += 1;
        }
        (at, n)
    }
    fn ports_at(frame: &[u8], at: usize) -> (u16, u16) {
        (
            u16::from_be_bytes([frame[at], frame[at + 1]]),
            u16::from_be_bytes([frame[at + 2], frame[at + 3]]),
        )
    }

    let six = insert_ipv6_exts(ntp_frame(OTHER6, LOCAL6, NTP, 40000, 4, 3), &SIX_EXTS);
    let (udp_at, n) = walk_ipv6(&six);
    assert_eq!((n, ports_at(&six, udp_at)), (6, (NTP, 40000)));
    assert_eq!(six.len(), udp_at + UDP_LEN + NTP_LEN);
    let plen = u16::from_be_bytes([six[ETH_LEN + 4], six[ETH_LEN + 5]]) as usize;
    assert_eq!(plen, six.len() - ETH_LEN - IPV6_LEN);
    let seven = insert_ipv6_exts(ntp_frame(OTHER6, LOCAL6, NTP, 40000, 4, 3), &SEVEN_EXTS);
    assert_eq!(walk_ipv6(&seven).1, 7);

    // etherparse's AH is 24 bytes with Payload Len 4 for a 12-byte ICV.
    let ah = udp6_auth(OTHER6, LOCAL6, NTP, 40000, &ntp(4, 3), 12);
    assert_eq!((ah[ETH_LEN + 6], ah[ETH_LEN + IPV6_LEN + 1]), (51, 4));
    assert_eq!(walk_ipv6(&ah), (ETH_LEN + IPV6_LEN + 24, 1));

    // RFC 8200 fragment header: offset << 3 | M.
    let first = ip_fragment(OTHER6, LOCAL6, Some((NTP, 40000)), &ntp(4, 3), true, 0);
    let f = ETH_LEN + IPV6_LEN;
    assert_eq!(
        (first[ETH_LEN + 6], &first[f..f + 4]),
        (44, &[17u8, 0, 0, 1][..])
    );
    assert_eq!(ports_at(&first, f + 8), (NTP, 40000));
    let later = ip_fragment(OTHER6, LOCAL6, None, &[0; 48], false, 185);
    assert_eq!(u16::from_be_bytes([later[f + 2], later[f + 3]]), 185 << 3);

    // IPv4 options and fragments as etherparse reads them back.
    for (options, ihl) in [(4, 6u8), (40, 15)] {
        let frame = udp4_with_options(OTHER4, LOCAL4, NTP, 40000, &ntp(4, 3), options);
        let p = SlicedPacket::from_ethernet(&frame).expect("ipv4 with options parses");
        let Some(NetSlice::Ipv4(ip)) = p.net else {
            panic!("not ipv4")
        };
        assert_eq!(ip.header().ihl(), ihl);
        let Some(TransportSlice::Udp(udp)) = p.transport else {
            panic!("no udp after options")
        };
        assert_eq!((udp.source_port(), udp.destination_port()), (NTP, 40000));
    }
    let frag = ip_fragment(OTHER4, LOCAL4, None, &[0; 48], true, 7);
    let flags = u16::from_be_bytes([frag[ETH_LEN + 6], frag[ETH_LEN + 7]]);
    assert_eq!(flags, 0x2000 | 7);

    // VLAN tag types, outer to inner, and the third tag.
    let tpids = |f: &[u8], n: usize| -> Vec<u16> {
        (0..=n)
            .map(|i| u16::from_be_bytes([f[12 + 4 * i], f[13 + 4 * i]]))
            .collect()
    };
    let qinq = udp_vlan(Vlan::Double, OTHER4, LOCAL4, NTP, NTP, &ntp(4, 3));
    assert_eq!(tpids(&qinq, 2), [TPID_8021AD, TPID_8021Q, 0x0800]);
    assert_eq!(
        tpids(&set_tpids(qinq.clone(), &[TPID_8021Q, TPID_8021AD]), 2),
        [TPID_8021Q, TPID_8021AD, 0x0800]
    );
    assert_eq!(
        tpids(&push_tag(qinq, TPID_8021Q, 300), 3),
        [TPID_8021Q, TPID_8021AD, TPID_8021Q, 0x0800]
    );
}

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![
        trial!(verdicts_and_counters_match_the_spec, Bpffs),
        trial!(counters_follow_the_ingress_interface, Bpffs, Netns),
        trial!(access_list_maps_round_trip, Bpffs),
        trial!(out_of_scope_passes_are_counted_only_on_request, Bpffs),
        trial!(fixture_table_covers_every_reason),
        trial!(hand_built_frames_are_what_they_claim),
    ])
}
