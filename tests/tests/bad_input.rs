//! Every bad input gets one clear line naming the problem and the fix, a
//! non-zero exit, and nothing half-attached left behind.

use std::{process::Command, time::Duration};

use ntp_filter_tests::{addrs::*, *};

const TIMEOUT: Duration = Duration::from_secs(20);

/// Runs the agent in `ns`, expects failure, and returns its output.
fn fails(ns: &Netns, args: &[&str]) -> String {
    let out = run_agent_once(ns, args, TIMEOUT).unwrap();
    assert!(
        !out.status.success(),
        "expected failure for {args:?}, got success:\n{}",
        out.log
    );
    out.log
}

fn assert_says(log: &str, needle: &str) {
    assert!(log.contains(needle), "expected {needle:?} in:\n{log}");
}

fn xdp_attached(ns: &Netns, iface: &str) -> bool {
    ns.ip(&["-d", "link", "show", "dev", iface])
        .unwrap()
        .contains("prog/xdp")
}

#[test]
fn unknown_interface_bad_address_and_conflicts() {
    if !require_privileged("unknown_interface_bad_address_and_conflicts") {
        return;
    }
    let lab = RouterLab::new("badarg").unwrap();
    let pins = PinDir::new("badarg").unwrap();
    let p = pins.as_str();
    let r = lab.router();

    let log = fails(r, &["run", "--iface", "nf-nosuch0", "--pin-dir", p]);
    assert_says(&log, "unknown interface \"nf-nosuch0\"");
    // The good interface listed first must not be attached either.
    let log = fails(
        r,
        &[
            "run",
            "--iface",
            WAN_IF,
            "--iface",
            "nf-nosuch0",
            "--pin-dir",
            p,
        ],
    );
    assert_says(&log, "unknown interface \"nf-nosuch0\"");
    assert!(!xdp_attached(r, WAN_IF));

    let log = fails(
        r,
        &[
            "run",
            "--iface",
            WAN_IF,
            "--server",
            "192.0.2.300",
            "--pin-dir",
            p,
        ],
    );
    assert_says(&log, "invalid value '192.0.2.300' for '--server <ADDR>'");
    let log = fails(
        r,
        &[
            "run",
            "--iface",
            WAN_IF,
            "--peer",
            "2001:db8::zz",
            "--pin-dir",
            p,
        ],
    );
    assert_says(&log, "invalid value '2001:db8::zz' for '--peer <ADDR>'");
    let log = fails(
        r,
        &[
            "run",
            "--iface",
            WAN_IF,
            "--server",
            "192.0.2.10",
            "--peer",
            "192.0.2.10",
            "--pin-dir",
            p,
        ],
    );
    assert_says(&log, "192.0.2.10 is given both as --server and as --peer");
    let log = fails(
        r,
        &[
            "run",
            "--iface",
            WAN_IF,
            "--allow-modes",
            "server=9",
            "--pin-dir",
            p,
        ],
    );
    assert_says(&log, "mode \"9\" is not an NTP mode 0..7");

    let log = fails(
        r,
        &["run", "--iface", WAN_IF, "--pin-dir", "/tmp/nf-not-bpffs"],
    );
    assert_says(&log, "is not on a bpffs mount");
    assert!(!std::path::Path::new("/tmp/nf-not-bpffs").exists());

    let log = fails(r, &["detach", "--iface", WAN_IF, "--pin-dir", p]);
    assert_says(&log, "no filter attached to wan0");
    let log = fails(r, &["status", "--pin-dir", p]);
    assert_says(&log, "is the filter loaded");

    assert!(!xdp_attached(r, WAN_IF));
    assert!(
        !pins.path().exists() || pins.entries().unwrap().is_empty(),
        "left: {:?}",
        pins.entries()
    );
}

/// Without privileges the agent names the capabilities it lacks.
#[test]
fn missing_capabilities_are_named() {
    if !require_privileged("missing_capabilities_are_named") {
        return;
    }
    let ns = Netns::new("nocap").unwrap();
    let pins = PinDir::new("nocap").unwrap();
    let out = ns
        .command("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(agent_bin().unwrap())
        .args(["run", "--iface", "lo", "--pin-dir", pins.as_str()])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_says(&log, "missing capability CAP_BPF and CAP_NET_ADMIN");
    assert_says(&log, "run as root");
}

/// With /sys/fs/bpf unmounted (in a private mount namespace) and no
/// CAP_SYS_ADMIN to mount it, the agent says so and how to fix it.
#[test]
fn unmountable_bpffs_is_reported() {
    if !require_privileged("unmountable_bpffs_is_reported") {
        return;
    }
    let ns = Netns::new("nobpffs").unwrap();
    let script = format!(
        "umount /sys/fs/bpf 2>/dev/null; umount /sys/fs/bpf 2>/dev/null; \
         exec setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin -- {} run --iface lo",
        agent_bin().unwrap().display()
    );
    let out = ns
        .command("unshare")
        .args([
            "--mount",
            "--propagation",
            "private",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert_says(
        &log,
        "bpffs is not mounted at /sys/fs/bpf and mounting it failed",
    );
    assert_says(&log, "mount -t bpf bpf /sys/fs/bpf");
}

/// A map pinned with another layout is refused, named, and left untouched.
#[test]
fn incompatible_pinned_layout_is_refused() {
    if !require_privileged("incompatible_pinned_layout_is_refused") {
        return;
    }
    let lab = RouterLab::new("layout").unwrap();
    let pins = PinDir::new("layout").unwrap();
    let v1 = pins.path().join("v1");
    std::fs::create_dir_all(&v1).unwrap();
    // An NF_CONFIG with an 8-byte value where this agent has 4 bytes.
    let wrong = aya_map_with_value_size_8();
    wrong.pin(v1.join("NF_CONFIG")).unwrap();

    let log = fails(
        lab.router(),
        &["run", "--iface", WAN_IF, "--pin-dir", pins.as_str()],
    );
    assert_says(&log, "holds an incompatible map NF_CONFIG");
    assert_says(&log, "ntp-agent detach --pin-dir");
    assert!(
        v1.join("NF_CONFIG").exists(),
        "the operator's pins must not be deleted"
    );
    assert!(!xdp_attached(lab.router(), WAN_IF));
}

fn aya_map_with_value_size_8() -> aya::maps::Array<aya::maps::MapData, u64> {
    aya::maps::Array::<aya::maps::MapData, u64>::create(1, 0).unwrap()
}

/// When the second interface cannot be attached (it carries someone
/// else's XDP program), the first one is rolled back and no pins remain.
#[test]
fn failed_attach_rolls_back() {
    if !require_privileged("failed_attach_rolls_back") {
        return;
    }
    let lab = RouterLab::with_lan("rollbk").unwrap();
    let theirs = PinDir::new("rollbk-a").unwrap();
    let ours = PinDir::new("rollbk-b").unwrap();
    let r = lab.router();
    // Someone else's filter on lan0.
    let mut other =
        run_agent(r, &["run", "--iface", LAN_IF, "--pin-dir", theirs.as_str()]).unwrap();
    other.wait_for_line("running;", TIMEOUT).unwrap();

    let log = fails(
        r,
        &[
            "run",
            "--iface",
            WAN_IF,
            "--iface",
            LAN_IF,
            "--pin-dir",
            ours.as_str(),
        ],
    );
    assert_says(
        &log,
        "interface lan0 already has an XDP program that is not ours",
    );
    assert_says(&log, "ip link set dev lan0 xdp off");
    assert!(!xdp_attached(r, WAN_IF), "wan0 was left attached");
    assert!(
        !ours.path().exists() || ours.entries().unwrap().is_empty(),
        "pins left: {:?}",
        ours.entries()
    );
    assert!(
        xdp_attached(r, LAN_IF),
        "the other filter must be untouched"
    );
    other.stop().unwrap();
    let out = run_agent_once(r, &["detach", "--pin-dir", theirs.as_str()], TIMEOUT).unwrap();
    assert!(out.status.success(), "{}", out.log);
}

#[test]
fn help_names_the_contract() {
    // No privileges needed: the command-line contract scripts rely on.
    let Ok(bin) = agent_bin() else {
        assert!(
            std::env::var_os("NF_REQUIRE_PRIVILEGED").is_none(),
            "NTP_AGENT_BIN must be set in CI"
        );
        eprintln!("SKIP help_names_the_contract: NTP_AGENT_BIN is not set (run cargo xtask test)");
        return;
    };
    let out = Command::new(bin).args(["run", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--iface",
        "--server",
        "--peer",
        "--mode",
        "--xdp-mode",
        "--pin-dir",
        "--no-clock-adjust",
    ] {
        assert!(
            help.contains(flag),
            "{flag} missing from run --help:\n{help}"
        );
    }
}
