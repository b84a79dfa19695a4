//! Self-tests of the harness, with no XDP program attached: everything sent
//! must arrive, the marker barrier must be exact, and every guard must clean
//! up on success and on panic.

use ntp_filter_tests::addrs::*;
use ntp_filter_tests::*;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

fn ns_list() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_gone(names: &[String]) {
    let list = ns_list();
    for n in names {
        assert!(!Netns::exists(n), "namespace {n} still exists");
        assert!(
            !list
                .lines()
                .any(|l| l.split_whitespace().next() == Some(n.as_str())),
            "{n} in ip netns list"
        );
    }
}

fn pid_gone(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn raw_ntp_reaches_wan_and_router_sockets() {
    let names;
    {
        let lab = RouterLab::new("raw").unwrap();
        names = lab.topo.namespace_names();
        let obs = lab.observe_wan().unwrap();
        let udp4 = lab
            .router_udp(sock(std::net::Ipv4Addr::UNSPECIFIED, 123))
            .unwrap();
        let udp6 = lab
            .router_udp(sock(std::net::Ipv6Addr::UNSPECIFIED, 123))
            .unwrap();
        let tx = lab.raw_sender().unwrap();
        let v4 = lab.ntp_frame(
            sock(OUTSIDER_V4, 40123),
            sock(ROUTER_V4, 123),
            NtpPacket::new(mode::CLIENT),
        );
        let v6 = lab.ntp_frame(
            sock(OUTSIDER_V6, 40123),
            sock(ROUTER_V6, 123),
            NtpPacket::new(mode::CLIENT),
        );
        tx.send_all(&[v4.frame(), v6.frame()]).unwrap();
        lab.sync(&tx, &obs).unwrap();

        assert_eq!(obs.count(&Match::ntp(OUTSIDER_V4.into(), mode::CLIENT)), 1);
        assert_eq!(obs.count(&Match::ntp(OUTSIDER_V6.into(), mode::CLIENT)), 1);
        assert_eq!(
            obs.count(&Match::exact(&v4.frame())),
            1,
            "frame arrives byte for byte"
        );
        assert_eq!(obs.count(&Match::ntp(OUTSIDER_V4.into(), mode::SERVER)), 0);
        // The barrier guarantees the stack already queued them: no waiting here.
        let from = |ip: IpAddr| {
            move |d: &Datagram| d.from.ip() == ip && d.ntp_mode() == Some(mode::CLIENT)
        };
        assert_eq!(udp4.count_matching(from(OUTSIDER_V4.into())).unwrap(), 1);
        assert_eq!(udp6.count_matching(from(OUTSIDER_V6.into())).unwrap(), 1);
        assert_eq!(
            udp4.received().unwrap()[0].data,
            NtpPacket::new(mode::CLIENT).to_bytes()
        );
    }
    assert_gone(&names);
}

fn vlan_tagged_frames_are_observed_as_sent() {
    let lab = RouterLab::new("vlan").unwrap();
    let obs = lab.observe_wan().unwrap();
    let tx = lab.raw_sender().unwrap();
    let base = lab.ntp_frame(
        sock(SERVER_V4, 123),
        sock(ROUTER_V4, 123),
        NtpPacket::new(mode::SERVER),
    );
    let single = base.clone().vlan(42).frame();
    let double = base.clone().qinq(100, 200).frame();
    let v6 = lab
        .ntp_frame(
            sock(PEER_V6, 123),
            sock(ROUTER_V6, 123),
            NtpPacket::new(mode::SYMMETRIC_ACTIVE),
        )
        .vlan(7)
        .frame();
    tx.send_all(&[single.clone(), double.clone(), v6.clone()])
        .unwrap();
    lab.sync(&tx, &obs).unwrap();
    // The kernel strips the outer tag before the tap; the observer puts it back.
    for f in [&single, &double, &v6] {
        assert_eq!(obs.count(&Match::exact(f)), 1, "tagged frame seen as sent");
    }
    assert_eq!(
        obs.count(&Match::ntp(SERVER_V4.into(), mode::SERVER).vlan(42)),
        1
    );
    assert_eq!(
        obs.count(&Match::ntp(SERVER_V4.into(), mode::SERVER).vlan(100)),
        1
    );
    assert_eq!(
        obs.count(&Match::ntp(PEER_V6.into(), mode::SYMMETRIC_ACTIVE).vlan(7)),
        1
    );
}

fn odd_frames_are_injected_verbatim() {
    let lab = RouterLab::new("odd").unwrap();
    let obs = lab.observe_wan().unwrap();
    let tx = lab.raw_sender().unwrap();
    let f = lab.ntp_frame(
        sock(OUTSIDER_V4, 123),
        sock(ROUTER_V4, 123),
        NtpPacket::new(mode::CONTROL),
    );
    let f6 = lab
        .ntp_frame(
            sock(OUTSIDER_V6, 123),
            sock(ROUTER_V6, 123),
            NtpPacket::new(mode::CONTROL),
        )
        .ipv6_ext(Ipv6Ext::HopByHop)
        .ipv6_ext(Ipv6Ext::DestOpts);
    let mut frames = f.fragments(16);
    frames.extend(f6.fragments(24));
    frames.push(f6.frame());
    let mut bad_version = f.frame();
    bad_version[14] = 0x65; // IP version 6 in an IPv4 ethertype frame
    frames.push(bad_version);
    let mut short = f.clone().payload(vec![0x23]).frame(); // 1-byte NTP payload
    short.truncate(short.len());
    frames.push(short);
    tx.send_all(&frames).unwrap();
    lab.sync(&tx, &obs).unwrap();
    for fr in &frames {
        assert_eq!(
            obs.count(&Match::exact(fr)),
            1,
            "frame {:02x?} seen",
            &fr[..40.min(fr.len())]
        );
    }
    assert_eq!(
        obs.count(&Match::ntp(OUTSIDER_V6.into(), mode::CONTROL)),
        1,
        "ext headers parse"
    );
}

fn transit_frames_reach_lan_host() {
    let names;
    {
        let lab = RouterLab::with_lan("transit").unwrap();
        names = lab.topo.namespace_names();
        assert_eq!(
            lab.router().read_sysctl("net.ipv4.ip_forward").unwrap(),
            "1"
        );
        let wan = lab.observe_wan().unwrap();
        let lan = lab.observe_lan().unwrap();
        let host4 = lab.lan_udp(sock(LAN_HOST_V4, 123)).unwrap();
        let host6 = lab.lan_udp(sock(LAN_HOST_V6, 123)).unwrap();
        let tx = lab.raw_sender().unwrap();
        let v4 = lab.ntp_frame(
            sock(OUTSIDER_V4, 123),
            sock(LAN_HOST_V4, 123),
            NtpPacket::new(mode::CLIENT),
        );
        let v6 = lab.ntp_frame(
            sock(OUTSIDER_V6, 123),
            sock(LAN_HOST_V6, 123),
            NtpPacket::new(mode::CLIENT),
        );
        tx.send_all(&[v4.frame(), v6.frame()]).unwrap();
        lab.sync(&tx, &lan).unwrap();
        lab.sync(&tx, &wan).unwrap();
        for ip in [IpAddr::from(OUTSIDER_V4), OUTSIDER_V6.into()] {
            assert_eq!(wan.count(&Match::ntp(ip, mode::CLIENT)), 1, "{ip} on wan0");
            assert_eq!(
                lan.count(&Match::ntp(ip, mode::CLIENT)),
                1,
                "{ip} forwarded to lan"
            );
        }
        assert_eq!(host4.received().unwrap().len(), 1);
        assert_eq!(host6.received().unwrap().len(), 1);

        // Real sockets both ways through the router.
        let out = lab.outside_udp(sock(PEER_V4, 0)).unwrap();
        out.send_to(b"hello", sock(LAN_HOST_V4, 123)).unwrap();
        let d = host4.wait_for(|d| d.data == b"hello", WAIT).unwrap();
        host4.socket().send_to(b"back", d.from).unwrap();
        out.wait_for(|d| d.data == b"back", WAIT).unwrap();
    }
    assert_gone(&names);
}

fn real_udp_sockets_from_chosen_sources() {
    let lab = RouterLab::new("udp").unwrap();
    let obs = lab.observe_wan().unwrap();
    let tx = lab.raw_sender().unwrap();
    let r4 = lab.router_udp(sock(ROUTER_V4, 123)).unwrap();
    let r6 = lab.router_udp(sock(ROUTER_V6, 123)).unwrap();
    for (src, dst, r) in [
        (sock(SERVER_V4, 123), sock(ROUTER_V4, 123), &r4),
        (sock(PEER_V6, 123), sock(ROUTER_V6, 123), &r6),
    ] {
        let s = lab.outside_udp(src).unwrap();
        s.send_to(&NtpPacket::new(mode::SYMMETRIC_ACTIVE).to_bytes(), dst)
            .unwrap();
        lab.sync(&tx, &obs).unwrap();
        assert_eq!(
            obs.count(&Match::ntp(src.ip(), mode::SYMMETRIC_ACTIVE).src_port(123)),
            1
        );
        let got = r.received().unwrap();
        assert_eq!(got.len(), 1, "{src} -> {dst}");
        assert_eq!(got[0].from, src);
    }
}

fn marker_barrier_is_exact() {
    let lab = RouterLab::new("marker").unwrap();
    let obs = lab.observe_wan().unwrap();
    let udp = lab.router_udp(sock(ROUTER_V4, 123)).unwrap();
    let tx = lab.raw_sender().unwrap();
    let mut expected = 0;
    for round in 0..5u64 {
        let mark = obs.mark();
        let n = 50 * (round + 1);
        let frames: Vec<Vec<u8>> = (0..n)
            .map(|i| {
                let src = if i % 2 == 0 {
                    sock(SERVER_V4, 123)
                } else {
                    sock(SERVER_V6, 123)
                };
                let dst = if i % 2 == 0 {
                    sock(ROUTER_V4, 123)
                } else {
                    sock(ROUTER_V6, 123)
                };
                lab.ntp_frame(
                    src,
                    dst,
                    NtpPacket::new(mode::SERVER).transmit_ts(round << 32 | i),
                )
                .frame()
            })
            .collect();
        // One by one (many lane trips) in odd rounds, batched in even ones.
        if round % 2 == 1 {
            for f in &frames {
                tx.send(f).unwrap();
            }
        } else {
            tx.send_all(&frames).unwrap();
        }
        lab.sync(&tx, &obs).unwrap();
        // Counted immediately after the barrier: no sleeps, no retries.
        assert_eq!(
            obs.count_since(mark, |f| Match::udp().dst_port(123).matches(f)),
            n as usize
        );
        expected += n.div_ceil(2) as usize;
        assert_eq!(udp.received().unwrap().len(), expected);
    }
    assert!(
        obs.frames()
            .iter()
            .all(|f| f.udp().map(|u| u.dst_port) != Some(MARKER_PORT)),
        "markers are not recorded as frames"
    );

    // With an XDP program dropping UDP/123 on wan0, the dropped frames are
    // not seen while the marker (port 9) and other ports still are.
    let mark = obs.mark();
    let xdp = TestXdp::drop_udp4_port(lab.router(), WAN_IF, 123).unwrap();
    let dropped = lab.ntp_frame(
        sock(OUTSIDER_V4, 123),
        sock(ROUTER_V4, 123),
        NtpPacket::new(mode::CLIENT),
    );
    let passed = lab.frame(sock(OUTSIDER_V4, 123), sock(ROUTER_V4, 124), b"x".to_vec());
    for _ in 0..20 {
        tx.send_all(&[dropped.frame(), passed.frame()]).unwrap();
    }
    lab.sync(&tx, &obs).unwrap();
    assert_eq!(
        obs.count_since(mark, |f| Match::exact(&dropped.frame()).matches(f)),
        0
    );
    assert_eq!(
        obs.count_since(mark, |f| Match::exact(&passed.frame()).matches(f)),
        20
    );
    assert_eq!(
        udp.received().unwrap().len(),
        expected,
        "socket got nothing new"
    );
    drop(xdp);
    let mark = obs.mark();
    tx.send(&dropped.frame()).unwrap();
    lab.sync(&tx, &obs).unwrap();
    assert_eq!(
        obs.count_since(mark, |f| Match::exact(&dropped.frame()).matches(f)),
        1,
        "detached on drop"
    );

    // A barrier that cannot complete fails loudly instead of passing
    // vacuously (here: an XDP program eats the marker).
    let _xdp = TestXdp::drop_udp4_port(lab.router(), WAN_IF, MARKER_PORT).unwrap();
    let template = lab.frame(
        sock(SERVER_V4, MARKER_PORT),
        sock(ROUTER_V4, MARKER_PORT),
        Vec::new(),
    );
    let err = obs
        .sync(&tx, &template, Duration::from_millis(300))
        .unwrap_err();
    assert!(err.to_string().contains("not observed"), "{err:#}");
}

fn child_runs_inside_namespace_and_is_killed() {
    let ns = Netns::new("child").unwrap();
    let name = ns.name().to_string();
    let pid;
    {
        let mut c = Child::spawn_in(
            &ns,
            "sh",
            "sh",
            &[
                "-c",
                "echo attached to $(ip -br link | wc -l) links; exec sleep 600",
            ],
        )
        .unwrap();
        pid = c.pid();
        let line = c.wait_for_line("attached", WAIT).unwrap();
        assert_eq!(
            line.trim(),
            "attached to 1 links",
            "only lo is visible inside"
        );
        // Same network namespace as the guard's, and bpffs still visible (nsenter, not ip netns exec).
        let inode = |p: &str| {
            std::fs::metadata(p)
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .unwrap()
        };
        assert_eq!(
            inode(&format!("/proc/{pid}/ns/net")),
            inode(&ns.path().display().to_string())
        );
        let out = ns.run("sh", &["-c", "stat -f -c %T /sys/fs/bpf"]).unwrap();
        ensure_bpffs().unwrap();
        assert!(out.contains("bpf"), "bpffs visible inside: {out}");
        assert!(c.try_wait().unwrap().is_none());
    }
    assert!(pid_gone(pid), "child {pid} still exists");
    drop(ns);
    assert_gone(&[name]);

    let mut short = Child::spawn("true", std::process::Command::new("true")).unwrap();
    assert!(short.wait_exit(WAIT).unwrap().success());
    let mut silent = Child::spawn("sleep", {
        let mut c = std::process::Command::new("sleep");
        c.arg("600");
        c
    })
    .unwrap();
    let err = silent
        .wait_for_line("never", Duration::from_millis(100))
        .unwrap_err();
    assert!(err.to_string().contains("did not print"), "{err:#}");
    let st = silent.stop().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&st),
        Some(libc::SIGTERM)
    );
}

fn guards_clean_up_when_a_test_panics() {
    let seen = std::sync::Mutex::new((Vec::<String>::new(), 0u32, String::new()));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let lab = RouterLab::with_lan("panic").unwrap();
        let pins = PinDir::new("panic").unwrap();
        std::fs::create_dir(pins.path().join("sub")).unwrap();
        let _obs = lab.observe_wan().unwrap();
        let child = Child::spawn_in(lab.router(), "sleep", "sleep", &["600"]).unwrap();
        *seen.lock().unwrap() = (
            lab.topo.namespace_names(),
            child.pid(),
            pins.as_str().to_string(),
        );
        // Panic on a namespace thread too: it must surface here, not be lost.
        lab.outside()
            .in_ns(|| panic!("deliberate panic inside the namespace"))
            .unwrap();
        unreachable!("in_ns propagates the panic");
    }));
    assert!(r.is_err(), "closure panicked");
    let (names, pid, pins) = seen.into_inner().unwrap();
    assert_eq!(names.len(), 3);
    assert_gone(&names);
    assert!(pid_gone(pid), "child {pid} survived the panic");
    assert!(
        !Path::new(&pins).exists(),
        "pin dir {pins} survived the panic"
    );
}

fn pin_dir_and_agent_env() {
    let path;
    {
        let pins = PinDir::new("pins").unwrap();
        path = pins.path().to_path_buf();
        assert!(
            pins.as_str().starts_with("/sys/fs/bpf/nf-pins-"),
            "{path:?}"
        );
        std::fs::create_dir_all(pins.path().join("a/b")).unwrap();
        assert_eq!(pins.entries().unwrap(), vec!["a", "a/b"]);
    }
    assert!(!path.exists());
    if std::env::var_os("NTP_AGENT_BIN").is_none() {
        let err = agent_bin().unwrap_err().to_string();
        assert_eq!(
            err,
            "NTP_AGENT_BIN is not set: run the tests with cargo xtask test"
        );
    }
}

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![
        trial!(raw_ntp_reaches_wan_and_router_sockets, Netns),
        trial!(vlan_tagged_frames_are_observed_as_sent, Netns),
        trial!(odd_frames_are_injected_verbatim, Netns),
        trial!(transit_frames_reach_lan_host, Netns),
        trial!(real_udp_sockets_from_chosen_sources, Netns),
        trial!(marker_barrier_is_exact, Netns),
        trial!(child_runs_inside_namespace_and_is_killed, Netns, Bpffs),
        trial!(guards_clean_up_when_a_test_panics, Netns, Bpffs),
        trial!(pin_dir_and_agent_env, Netns, Bpffs),
    ])
}
