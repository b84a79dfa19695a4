//! Every bad input gets one clear line naming the problem and the fix, a
//! non-zero exit, and nothing half-attached left behind.

use std::{process::Command, time::Duration};

use ntp_filter_tests::{addrs::*, *};

const TIMEOUT: Duration = Duration::from_secs(20);

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

fn unknown_interface_bad_address_and_conflicts() {
    let lab = RouterLab::new("badarg").unwrap();
    let env = AgentEnv::new("badarg").unwrap();
    let r = lab.router();
    let run_fails = |extra: &[&str]| env.run_failing(r, extra).unwrap();

    let log = run_fails(&["--iface", "nf-nosuch0"]);
    assert_says(&log, "unknown interface \"nf-nosuch0\"");
    // The good interface listed first must not be attached either.
    let log = run_fails(&["--iface", WAN_IF, "--iface", "nf-nosuch0"]);
    assert_says(&log, "unknown interface \"nf-nosuch0\"");
    assert!(!xdp_attached(r, WAN_IF));

    let log = run_fails(&["--iface", WAN_IF, "--server", "192.0.2.300"]);
    assert_says(
        &log,
        "invalid value '192.0.2.300' for '--server <ADDR[,OPTIONS]>'",
    );
    let log = run_fails(&["--iface", WAN_IF, "--peer", "2001:db8::zz"]);
    assert_says(
        &log,
        "invalid value '2001:db8::zz' for '--peer <ADDR[,OPTIONS]>'",
    );
    let log = run_fails(&[
        "--iface",
        WAN_IF,
        "--server",
        "192.0.2.10",
        "--peer",
        "192.0.2.10",
    ]);
    assert_says(&log, "192.0.2.10 is given both as --server and as --peer");
    let log = run_fails(&["--iface", WAN_IF, "--allow-modes", "server=9"]);
    assert_says(&log, "mode \"9\" is not an NTP mode 0..7");
    let log = run_fails(&["--iface", WAN_IF, "--minpoll", "10", "--maxpoll", "6"]);
    assert_says(&log, "--minpoll 10 is larger than --maxpoll 6");

    // NTS and pools: each mistake one line, before anything is attached.
    let dir = TempDir::new("badnts").unwrap();
    let missing = dir.path().join("missing.pem").display().to_string();
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let empty = empty.display().to_string();
    let nts = ["--iface", WAN_IF, "--server", "192.0.2.10,nts", "--nts-ca"];
    for (extra, says) in [
        (
            [&nts[..], &[missing.as_str()]].concat(),
            format!("--nts-ca {missing}: cannot read the file"),
        ),
        (
            [&nts[..], &[empty.as_str()]].concat(),
            format!("--nts-ca {empty}: holds no certificate"),
        ),
        (
            vec!["--iface", WAN_IF, "--peer", "192.0.2.20,nts"],
            "nts on a peer: NTS has no symmetric mode".into(),
        ),
        (
            vec!["--iface", WAN_IF, "--server", "192.0.2.10,nts,maxpol=8"],
            "unknown source option \"maxpol=8\"".into(),
        ),
        (
            vec!["--iface", WAN_IF, "--pool", "pool.example,nts"],
            "nts on a pool is not supported".into(),
        ),
        (
            vec!["--iface", WAN_IF, "--server", "time.example,maxsources=2"],
            "maxsources=N is for --pool only".into(),
        ),
    ] {
        let log = run_fails(&extra);
        assert_says(&log, &says);
        let lines: Vec<&str> = log.lines().filter(|l| l.contains("error")).collect();
        assert_eq!(lines.len(), 1, "not one error line for {extra:?}:\n{log}");
        assert!(!xdp_attached(r, WAN_IF), "attached for {extra:?}");
    }

    let ctl = env.control_socket();
    let log = fails(
        r,
        &[
            "run",
            "--iface",
            WAN_IF,
            "--pin-dir",
            "/tmp/nf-not-bpffs",
            "--control-socket",
            &ctl,
            "--no-clock-adjust",
        ],
    );
    assert_says(&log, "is not on a bpffs mount");
    assert!(!std::path::Path::new("/tmp/nf-not-bpffs").exists());
    assert!(
        !std::path::Path::new(&ctl).exists(),
        "control socket left behind"
    );

    let p = env.pin_dir();
    let log = fails(r, &["detach", "--iface", WAN_IF, "--pin-dir", p]);
    assert_says(&log, "no filter attached to wan0");
    let log = fails(r, &["status", "--pin-dir", p, "--control-socket", &ctl]);
    assert_says(&log, "is the filter loaded");
    assert_says(&log, "the agent is not running");

    assert!(!xdp_attached(r, WAN_IF));
    assert!(
        !env.pins.path().exists() || env.pins.entries().unwrap().is_empty(),
        "left: {:?}",
        env.pins.entries()
    );
}

/// A second agent is refused before it touches the filter: on the same
/// pins by the pin directory's lock (first), on other pins with the same
/// control socket by the socket that answers.
fn second_agent_is_refused() {
    let lab = RouterLab::new("twice").unwrap();
    let env = AgentEnv::new("twice").unwrap();
    let _first = env.start(lab.router(), &["--iface", WAN_IF]).unwrap();
    let log = env.run_failing(lab.router(), &["--iface", WAN_IF]).unwrap();
    assert_says(&log, "is running on the pin directory");
    let other = AgentEnv::new("twice2").unwrap();
    let mut args = other.run_args(&["--iface", WAN_IF]);
    let at = args.iter().position(|a| a == "--control-socket").unwrap() + 1;
    args[at] = env.control_socket();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_agent_once(lab.router(), &args, TIMEOUT).unwrap();
    assert!(!out.status.success(), "{}", out.log);
    assert_says(&out.log, "another agent is already running");
}

/// Without privileges the agent names the capabilities it lacks.
fn missing_capabilities_are_named() {
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
    assert_says(&log, "missing capabilities CAP_BPF (");
    for cap in ["CAP_PERFMON (", "CAP_NET_ADMIN (", "CAP_SYS_TIME ("] {
        assert_says(&log, cap);
    }
    assert_says(&log, "run as root");
    assert_says(&log, "dist/ntp-agent.service");
}

/// With /sys/fs/bpf unmounted (in a private mount namespace) and no
/// CAP_SYS_ADMIN to mount it, the agent says so and how to fix it.
fn unmountable_bpffs_is_reported() {
    let ns = Netns::new("nobpffs").unwrap();
    let env = AgentEnv::new("nobpffs").unwrap();
    let script = format!(
        "umount /sys/fs/bpf 2>/dev/null; umount /sys/fs/bpf 2>/dev/null; \
         exec setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin -- {} run --iface lo \
         --no-clock-adjust --control-socket {}",
        agent_bin().unwrap().display(),
        env.control_socket()
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
fn incompatible_pinned_layout_is_refused() {
    let lab = RouterLab::new("layout").unwrap();
    let env = AgentEnv::new("layout").unwrap();
    let v1 = env
        .pins
        .path()
        .join(format!("v{}", ntp_filter_common::LAYOUT_VERSION));
    std::fs::create_dir_all(&v1).unwrap();
    // An NF_CONFIG with a 4-byte value (layout 3's) where this agent has 8.
    let wrong = aya_map_with_value_size_4();
    wrong.pin(v1.join("NF_CONFIG")).unwrap();

    let log = env.run_failing(lab.router(), &["--iface", WAN_IF]).unwrap();
    assert_says(&log, "holds an incompatible map NF_CONFIG");
    assert_says(&log, "ntp-agent detach --pin-dir");
    assert!(
        v1.join("NF_CONFIG").exists(),
        "the operator's pins must not be deleted"
    );
    assert!(!xdp_attached(lab.router(), WAN_IF));
}

fn aya_map_with_value_size_4() -> aya::maps::Array<aya::maps::MapData, u32> {
    aya::maps::Array::<aya::maps::MapData, u32>::create(1, 0).unwrap()
}

/// When the second interface cannot be attached (it carries someone
/// else's XDP program), the first one is rolled back and no pins remain.
fn failed_attach_rolls_back() {
    let lab = RouterLab::with_lan("rollbk").unwrap();
    let theirs = AgentEnv::new("rollbk-a").unwrap();
    let ours = AgentEnv::new("rollbk-b").unwrap();
    let r = lab.router();
    // Someone else's filter on lan0.
    let mut other = theirs.start(r, &["--iface", LAN_IF]).unwrap();

    let log = ours
        .run_failing(r, &["--iface", WAN_IF, "--iface", LAN_IF])
        .unwrap();
    assert_says(
        &log,
        "interface lan0 already has an XDP program that is not ours",
    );
    assert_says(&log, "ip link set dev lan0 xdp off");
    assert!(!xdp_attached(r, WAN_IF), "wan0 was left attached");
    assert!(
        !ours.pins.path().exists() || ours.pins.entries().unwrap().is_empty(),
        "pins left: {:?}",
        ours.pins.entries()
    );
    assert!(
        xdp_attached(r, LAN_IF),
        "the other filter must be untouched"
    );
    other.stop().unwrap();
    let out = run_agent_once(r, &["detach", "--pin-dir", theirs.pin_dir()], TIMEOUT).unwrap();
    assert!(out.status.success(), "{}", out.log);
}

fn help_names_the_contract() {
    // No privileges needed: the command-line contract scripts rely on.
    let bin = agent_bin().unwrap();
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

/// `run --config FILE`: the file's settings apply (a peer with its own
/// poll interval among them), a flag given on the command line overrides
/// the file (a list replaces the file's list), and a bad file names the
/// file, line, key and problem.
fn config_file_with_overrides_and_errors() {
    let lab = RouterLab::new("config").unwrap();
    let env = AgentEnv::new("config").unwrap();
    let dir = TempDir::new("config").unwrap();
    let good = dir.path().join("agent.toml");
    std::fs::write(
        &good,
        "iface = [\"wan0\"]\nserver = [\"192.0.2.10\"]\nmode = \"server\"\ndeny = [\"192.0.2.99/32\"]\nminpoll = 5\n\n[[peer]]\naddress = \"192.0.2.20\"\nminpoll = 3\nmaxpoll = 3\n",
    )
    .unwrap();
    let good = good.display().to_string();
    let _agent = env
        .start(lab.router(), &["--config", &good, "--server", "192.0.2.11"])
        .unwrap();
    let st = env.status(lab.router()).unwrap();
    assert_eq!(st["mode"], "server", "{st:#}");
    assert_eq!(
        st["filter"]["servers"],
        serde_json::json!(["192.0.2.11"]),
        "{st:#}"
    );
    assert_eq!(st["filter"]["peers"], serde_json::json!(["192.0.2.20"]));
    let poll_of = |remote: &str| {
        st["peers"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["remote"] == remote))
            .map(|p| p["poll"].clone())
            .unwrap_or_else(|| panic!("no source {remote}:\n{st:#}"))
    };
    assert_eq!(
        poll_of("192.0.2.20"),
        8,
        "2^3 s: the peer's own minpoll/maxpoll"
    );
    assert_eq!(
        poll_of("192.0.2.11"),
        32,
        "2^5 s: the file's global minpoll"
    );
    assert_eq!(
        st["filter"]["acl"],
        serde_json::json!(["deny 192.0.2.99/32"])
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "iface = [\"wan0\"]\nxdp-mode = \"turbo\"\n").unwrap();
    let bad = bad.display().to_string();
    let other = AgentEnv::new("config2").unwrap();
    let log = other
        .run_failing(lab.router(), &["--config", &bad])
        .unwrap();
    assert_says(&log, &format!("{bad}: line 2: xdp-mode"));
    assert_says(&log, "turbo");
    let out = run_agent_once(lab.router(), &["check-config", &bad], TIMEOUT).unwrap();
    assert!(!out.status.success());
    assert_says(&out.log, "line 2: xdp-mode");

    // NTS sources, a pool and trust anchors in the file, as on the
    // command line: a good file checks out, a missing CA file is named.
    let ca = TestCa::new("config").unwrap();
    let nts = |ca_file: &str| {
        format!(
            "iface = [\"wan0\"]\nnts-ca = [\"{ca_file}\"]\n\n[[server]]\naddress = \"time.example\"\nnts = true\n\n[[server]]\naddress = \"192.0.2.10\"\nnts = true\nnts-port = 4461\n\n[[pool]]\naddress = \"pool.example\"\nmaxsources = 3\n"
        )
    };
    let file = dir.path().join("nts.toml");
    std::fs::write(&file, nts(&ca.ca_file().display().to_string())).unwrap();
    let file = file.display().to_string();
    let out = run_agent_once(lab.router(), &["check-config", &file], TIMEOUT).unwrap();
    assert!(out.status.success(), "{}", out.log);
    let missing = dir.path().join("nope.pem").display().to_string();
    std::fs::write(&file, nts(&missing)).unwrap();
    let out = run_agent_once(lab.router(), &["check-config", &file], TIMEOUT).unwrap();
    assert!(!out.status.success(), "{}", out.log);
    assert_says(
        &out.log,
        &format!("--nts-ca {missing}: cannot read the file"),
    );
}

fn main() -> std::process::ExitCode {
    ntp_filter_tests::runner::run(vec![
        trial!(
            unknown_interface_bad_address_and_conflicts,
            Netns,
            Bpffs,
            Agent
        ),
        trial!(second_agent_is_refused, Netns, Bpffs, Agent),
        trial!(missing_capabilities_are_named, Netns, Bpffs, Agent),
        trial!(unmountable_bpffs_is_reported, Netns, Bpffs, Agent),
        trial!(incompatible_pinned_layout_is_refused, Netns, Bpffs, Agent),
        trial!(failed_attach_rolls_back, Netns, Bpffs, Agent),
        trial!(help_names_the_contract, Agent),
        trial!(config_file_with_overrides_and_errors, Netns, Bpffs, Agent),
    ])
}
