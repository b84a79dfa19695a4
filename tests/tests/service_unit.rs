//! dist/ntp-agent.service against the agent's own defaults: the places the
//! unit sets up (state, runtime, writable paths) are the ones the agent
//! uses, and the settings the service depends on are there. Needs no
//! systemd (xtask's `the_installed_unit_verifies` runs systemd-analyze).

use std::collections::HashMap;

use clap::Parser as _;
use ntp_agent::cli::{Cli, Command};

const UNIT: &str = include_str!("../../dist/ntp-agent.service");
const EXAMPLE_CONFIG: &str = include_str!("../../dist/agent.toml");

/// `(section, key)` → every value it was given, in order.
fn parse(unit: &str) -> HashMap<(String, String), Vec<String>> {
    let mut out: HashMap<(String, String), Vec<String>> = HashMap::new();
    let mut section = String::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line:?}"));
        out.entry((section.clone(), key.to_string()))
            .or_default()
            .push(value.to_string());
    }
    out
}

struct Unit(HashMap<(String, String), Vec<String>>);

impl Unit {
    fn one(&self, section: &str, key: &str) -> &str {
        match self.0.get(&(section.into(), key.into())) {
            Some(v) if v.len() == 1 => &v[0],
            other => panic!("[{section}] {key}= should be set once, is {other:?}"),
        }
    }

    fn words(&self, section: &str, key: &str) -> Vec<&str> {
        self.0
            .get(&(section.into(), key.into()))
            .map(|v| v.iter().flat_map(|s| s.split_whitespace()).collect())
            .unwrap_or_default()
    }

    fn has(&self, section: &str, key: &str) -> bool {
        self.0.contains_key(&(section.into(), key.into()))
    }
}

fn unit() -> Unit {
    Unit(parse(UNIT))
}

fn run_defaults() -> ntp_agent::cli::RunArgs {
    let cli = Cli::try_parse_from(["ntp-agent", "run"]).unwrap();
    let Command::Run(args) = cli.command else {
        unreachable!()
    };
    *args
}

fn starts_as_a_notify_service_with_the_installed_config() {
    let u = unit();
    assert_eq!(u.one("Service", "Type"), "notify");
    assert_eq!(
        u.one("Service", "ExecStart"),
        "/usr/local/sbin/ntp-agent run --config /etc/ntp-filter/agent.toml"
    );
    assert_eq!(u.one("Service", "Restart"), "on-failure");
    assert_eq!(u.one("Service", "LimitMEMLOCK"), "infinity");
    // Room for a socket per source plus every capped connection, with
    // margin for maps, netlink and the NTP port.
    let nofile: usize = u.one("Service", "LimitNOFILE").parse().unwrap();
    let needed = ntp_filter_common::MAX_SOURCES as usize
        + ntp_agent::control::MAX_CONNECTIONS
        + ntp_agent::metrics::MAX_CONNECTIONS;
    assert!(nofile >= 2 * needed, "LimitNOFILE={nofile} < 2 × {needed}");
    assert_eq!(u.one("Install", "WantedBy"), "multi-user.target");
}

fn ordered_like_a_time_daemon() {
    let u = unit();
    assert_eq!(u.words("Unit", "After"), ["network-online.target"]);
    let wants = u.words("Unit", "Wants");
    assert!(wants.contains(&"network-online.target"), "{wants:?}");
    assert!(wants.contains(&"time-sync.target"), "{wants:?}");
    assert_eq!(u.words("Unit", "Before"), ["time-sync.target"]);
    let conflicts = u.words("Unit", "Conflicts");
    for other in [
        "systemd-timesyncd.service",
        "chrony.service",
        "ntp.service",
        "ntpsec.service",
        "openntpd.service",
    ] {
        assert!(conflicts.contains(&other), "{other} not in {conflicts:?}");
    }
}

fn the_units_directories_are_the_agents_defaults() {
    let u = unit();
    let args = run_defaults();
    let state = format!("/var/lib/{}/", u.one("Service", "StateDirectory"));
    assert!(
        args.drift_file.starts_with(&state),
        "drift file {} is not under StateDirectory {state}",
        args.drift_file.display()
    );
    let runtime = format!("/run/{}/", u.one("Service", "RuntimeDirectory"));
    assert!(
        ntp_agent::control::DEFAULT_PATH.starts_with(&runtime),
        "control socket {} is not under RuntimeDirectory {runtime}",
        ntp_agent::control::DEFAULT_PATH
    );
    let writable = u.words("Service", "ReadWritePaths");
    assert!(
        writable
            .iter()
            .any(|w| args.pin_dir.starts_with(w.trim_start_matches('-'))),
        "pin dir {} is not under ReadWritePaths {writable:?}",
        args.pin_dir.display()
    );
    // The example config the install puts next to it uses the same places.
    for (key, value) in [
        ("pin-dir", args.pin_dir.display().to_string()),
        (
            "control-socket",
            ntp_agent::control::DEFAULT_PATH.to_string(),
        ),
        ("drift-file", args.drift_file.display().to_string()),
    ] {
        let line = format!("{key} = \"{value}\"");
        assert!(
            EXAMPLE_CONFIG.lines().any(|l| l == line),
            "dist/agent.toml lacks {line:?}"
        );
    }
}

fn hardened_without_breaking_the_agent() {
    let u = unit();
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectKernelTunables", "yes"),
    ] {
        assert_eq!(u.one("Service", key), value, "{key}=");
    }
    assert_eq!(
        u.words("Service", "RestrictAddressFamilies"),
        ["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"]
    );
    // Each of these would stop the agent from doing its job.
    for key in [
        "ProtectClock",
        "PrivateNetwork",
        "PrivateUsers",
        "User",
        "DynamicUser",
    ] {
        assert!(!u.has("Service", key), "{key}= must not be set");
    }
    // A denied system call must fail with an error, never kill the agent.
    assert_eq!(u.one("Service", "SystemCallErrorNumber"), "EPERM");
    let filter = u.words("Service", "SystemCallFilter");
    assert!(
        filter.first().is_some_and(|f| f.starts_with('~')),
        "a deny list: {filter:?}"
    );
    for needed in ["@clock", "bpf", "@network-io", "@privileged"] {
        assert!(!filter.contains(&needed), "{needed} denied: {filter:?}");
    }
}

fn the_header_explains_ready_after_sync() {
    let header: String = UNIT
        .lines()
        .take_while(|l| l.starts_with('#') || l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    for words in [
        "ready-after-sync = true",
        "time-sync.target",
        "TimeoutStartSec=",
    ] {
        assert!(
            header.contains(words),
            "{words:?} not in the header:\n{header}"
        );
    }
}

fn ready_after_sync_from_the_config_file_or_the_flag() {
    let parse_run = |file: &str, flags: &[&str]| {
        use clap::CommandFactory as _;
        let file = ntp_agent::config::parse(file).unwrap();
        let argv = ["ntp-agent", "run"].iter().chain(flags);
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        let run = matches.subcommand_matches("run").unwrap();
        ntp_agent::config::merge(file, run)
            .unwrap()
            .ready_after_sync
    };
    assert!(!parse_run("", &[]));
    assert!(parse_run("ready-after-sync = true\n", &[]));
    assert!(!parse_run("ready-after-sync = false\n", &[]));
    assert!(parse_run(
        "ready-after-sync = false\n",
        &["--ready-after-sync"]
    ));
    let err = format!(
        "{:#}",
        ntp_agent::config::parse("\nready-after-sync = \"yes\"\n").unwrap_err()
    );
    assert!(err.contains("line 2"), "{err}");
}

fn ready_after_sync_without_a_source_is_refused() {
    let args = |extra: &[&str]| {
        let mut argv = vec!["ntp-agent", "run", "--iface", "lo", "--ready-after-sync"];
        argv.extend(extra);
        let Command::Run(args) = Cli::try_parse_from(argv).unwrap().command else {
            unreachable!()
        };
        args
    };
    let err = format!("{:#}", ntp_agent::cmd::run::check(&args(&[])).unwrap_err());
    assert!(
        err.contains("--ready-after-sync") && err.contains("--server"),
        "{err}"
    );
    ntp_agent::cmd::run::check(&args(&["--server", "192.0.2.10"])).unwrap();
}

fn main() -> std::process::ExitCode {
    use ntp_filter_tests::trial;
    ntp_filter_tests::runner::run(vec![
        trial!(starts_as_a_notify_service_with_the_installed_config),
        trial!(ordered_like_a_time_daemon),
        trial!(the_units_directories_are_the_agents_defaults),
        trial!(hardened_without_breaking_the_agent),
        trial!(the_header_explains_ready_after_sync),
        trial!(ready_after_sync_from_the_config_file_or_the_flag),
        trial!(ready_after_sync_without_a_source_is_refused),
    ])
}
