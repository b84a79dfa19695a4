//! The configuration file (`--config FILE`, TOML). Its keys are the long
//! options of `ntp-agent run` without the dashes (`server = ["192.0.2.10"]`,
//! `xdp-mode = "native"`): serde reads the file into [`RunArgs`] itself, so
//! the file and the command line are one definition, and a value is
//! checked by the parser of its flag's type. Flags given on the command
//! line override the file; for lists (`iface`, `server`, …) the command
//! line's list replaces the file's.
//!
//! A server, peer or pool is a string, or a table with its own options:
//!
//! ```toml
//! server = ["192.0.2.10", { address = "time.example.net", minpoll = 4, iburst = false }]
//! nts-ca = ["/etc/ntp-filter/ca.pem"]
//!
//! [[server]]
//! address = "nts.example.net"
//! nts = true
//!
//! [[pool]]
//! address = "pool.example.net"
//! maxsources = 6
//! ```

use std::{collections::BTreeMap, ops::Range, path::Path};

use anyhow::{anyhow, Context as _, Result};
use clap::{parser::ValueSource, ArgMatches, FromArgMatches as _};
use toml::Spanned;

use crate::cli::RunArgs;

/// Reads `path` into `run`'s settings (keys it leaves out at their
/// defaults); errors name the file, line, key and problem.
pub fn load(path: &Path) -> Result<RunArgs> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    parse(&text).map_err(|e| anyhow!("{}: {e:#}", path.display()))
}

/// The file's text as `run`'s settings.
pub fn parse(text: &str) -> Result<RunArgs> {
    toml::from_str(text).map_err(|e| anyhow!("{}", describe(text, &e)))
}

/// `line N: key = …: problem`, or what of it the error knows.
fn describe(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_string();
    };
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    match key_at(text, &span) {
        Some(key) => format!("line {line}: {key} = …: {}", e.message()),
        None => format!("line {line}: {}", e.message()),
    }
}

/// The top-level key whose value holds `span`.
fn key_at(text: &str, span: &Range<usize>) -> Option<String> {
    let keys: BTreeMap<String, Spanned<toml::Value>> = toml::from_str(text).ok()?;
    keys.into_iter()
        .find(|(_, v)| v.span().start <= span.start && span.end <= v.span().end)
        .map(|(k, _)| k)
}

/// `run --config FILE`: the file's settings with the command line's own
/// over them; without `--config`, `args` as they are.
pub fn with_file(args: RunArgs, run: &ArgMatches) -> Result<RunArgs> {
    match &args.config {
        Some(path) => merge(load(path)?, run),
        None => Ok(args),
    }
}

/// For each option: the command line's value if it was given there
/// (`run`: its matches), else the file's, else the default, which `file`
/// already holds for the keys it leaves out. A list given on the command
/// line replaces the file's whole list.
pub fn merge(mut file: RunArgs, run: &ArgMatches) -> Result<RunArgs> {
    let mut given = run.clone();
    let ids: Vec<String> = run.ids().map(|id| id.as_str().to_owned()).collect();
    for id in ids {
        if run.value_source(&id) != Some(ValueSource::CommandLine) {
            given.try_clear_id(&id)?;
        }
    }
    file.update_from_arg_matches(&given)?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;
    use crate::{
        cli::Cli,
        model::{source::Poll, Role, SourceArg},
    };

    fn args(flags: &[&str]) -> ArgMatches {
        let argv = ["ntp-agent", "run"].iter().chain(flags);
        let matches = Cli::command().try_get_matches_from(argv).unwrap();
        matches.subcommand_matches("run").unwrap().clone()
    }

    fn sources(list: &[SourceArg]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn the_shipped_example_parses() {
        let file = parse(include_str!("../../dist/agent.toml")).unwrap();
        assert!(
            sources(&file.servers).contains(&"2001:db8::10,minpoll=4,maxpoll=8".to_string()),
            "{:?}",
            file.servers
        );
    }

    #[test]
    fn errors_name_line_key_and_problem() {
        let err = |t: &str| format!("{:#}", parse(t).unwrap_err());
        let e = err("iface = [\"eth0\"]\nmode = \"clinet\"\n");
        assert!(
            e.contains("line 2") && e.contains("mode") && e.contains("clinet"),
            "{e}"
        );
        let e = err("serverz = [\"192.0.2.10\"]\n");
        assert!(
            e.contains("line 1") && e.contains("unknown field `serverz`"),
            "{e}"
        );
        let e = err("\n\nserver = [\"192.0.2.300\"]\n");
        assert!(
            e.contains("line 3") && e.contains("server") && e.contains("192.0.2.300"),
            "{e}"
        );
        let e = err("minpoll = 40\n");
        assert!(
            e.contains("line 1") && e.contains("minpoll") && e.contains("40"),
            "{e}"
        );
        let e = err("ntp-port = \"x\"\n");
        assert!(e.contains("line 1"), "{e}");
    }

    /// Issue #14 item 15, the file part: at 6ba3db4 a negative number
    /// came back as clap's "unexpected argument '-1' found".
    #[test]
    fn bad_numbers_name_the_key_and_the_range() {
        for (text, want) in [
            (
                "ntp-port = -1",
                "line 1: ntp-port = …: expected an integer in 1..=65535, not -1",
            ),
            (
                "source-port = 70000",
                "line 1: source-port = …: expected an integer in 1..=65535, not 70000",
            ),
            (
                "step-limit = -3",
                "line 1: step-limit = …: expected an integer in 0..=4294967295, not -3",
            ),
            (
                "ratelimit-burst = 0",
                "line 1: ratelimit-burst = …: expected an integer in 1..=4294967295, not 0",
            ),
            (
                "minpoll = -1",
                "line 1: minpoll = …: expected a log2 interval in 3..=17, not -1",
            ),
        ] {
            let e = format!("{:#}", parse(&format!("{text}\n")).unwrap_err());
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    /// The same value is refused by the flag and by the key, for the same
    /// reason.
    #[test]
    fn the_file_and_the_flag_refuse_alike() {
        for (key, value, flag) in [
            ("minpoll", "2", "--minpoll=2"),
            ("ntp-port", "0", "--ntp-port=0"),
            ("ratelimit-burst", "0", "--ratelimit-burst=0"),
            ("metrics", "\"localhost:9975\"", "--metrics=localhost:9975"),
            ("allow", "[\"192.0.2.99/24\"]", "--allow=192.0.2.99/24"),
            ("allow-modes", "[\"client=4\"]", "--allow-modes=client=4"),
            ("mode", "\"peer\"", "--mode=peer"),
        ] {
            let file = format!("{:#}", parse(&format!("{key} = {value}\n")).unwrap_err());
            let cli = Cli::command()
                .try_get_matches_from(["ntp-agent", "run", flag])
                .unwrap_err()
                .to_string();
            assert!(file.contains(&format!("line 1: {key} = …: ")), "{file}");
            // The reason after clap's "invalid value … for '--flag …': ".
            let reason = cli
                .lines()
                .next()
                .unwrap()
                .split_once("': ")
                .map(|(_, r)| r)
                .unwrap_or_default();
            if !reason.is_empty() {
                assert!(file.contains(reason), "{key}: {file:?} vs {cli:?}");
            }
        }
    }

    /// The file holds every option of `run`, and the README's reference
    /// documents each one.
    #[test]
    fn every_run_option_is_a_key_and_documented() {
        let readme = include_str!("../../README.md");
        let reference = readme
            .split("## Configuration reference")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has a configuration reference");
        let cli = Cli::command();
        let run = cli.find_subcommand("run").unwrap();
        let mut checked = 0;
        for flag in run.get_arguments().filter_map(|a| a.get_long()) {
            if flag == "help" {
                continue;
            }
            assert!(
                reference.contains(&format!("`--{flag}")),
                "--{flag} is missing from the README's configuration reference"
            );
            if flag == "config" {
                continue;
            }
            let key = if flag == "no-iburst" { "iburst" } else { flag };
            let err = parse(&format!("{key} = 0\n"))
                .err()
                .map(|e| format!("{e:#}"));
            assert!(
                !err.as_deref().unwrap_or("").contains("unknown field"),
                "--{flag} has no config key `{key}`: {err:?}"
            );
            checked += 1;
        }
        assert!(checked >= 25, "only {checked} options seen");
        // `config` is the one flag the file cannot hold.
        assert!(format!("{:#}", parse("config = \"x\"\n").unwrap_err()).contains("unknown field"));
    }

    #[test]
    fn sources_are_strings_or_tables_with_their_own_poll() {
        let text = "server = [\"192.0.2.10\", { address = \"time.example.net\", minpoll = 4, iburst = false }]\n\n[[peer]]\naddress = \"192.0.2.20\"\nmaxpoll = 8\n";
        let file = parse(text).unwrap();
        assert_eq!(
            sources(&file.servers),
            ["192.0.2.10", "time.example.net,minpoll=4,noiburst"]
        );
        assert_eq!(sources(&file.peers), ["192.0.2.20,maxpoll=8"]);
        let err = |t: &str| format!("{:#}", parse(t).unwrap_err());
        let e =
            err("server = [\n  \"192.0.2.10\",\n  { address = \"192.0.2.11\", minpol = 4 },\n]\n");
        assert!(
            e.contains("line 3") && e.contains("unknown key `minpol`"),
            "{e}"
        );
        let e = err("[[server]]\naddress = \"192.0.2.10\"\nminpoll = 30\n");
        assert!(
            e.contains("line 1") && e.contains("minpoll=30") && e.contains("3..=17"),
            "{e}"
        );
        let e = err("[[server]]\nminpoll = 4\n");
        assert!(e.contains("needs `address`"), "{e}");
        let e = err("server = [{ address = \"192.0.2.10\", minpoll = 9, maxpoll = 8 }]\n");
        assert!(
            e.contains("line 1") && e.contains("minpoll 9 is larger than maxpoll 8"),
            "{e}"
        );
        let e = err("server = [{ address = \"192.0.2.10\", iburst = \"yes\" }]\n");
        assert!(e.contains("`iburst` must be true or false"), "{e}");
        let e = err("server = [4]\n");
        assert!(e.contains("not a integer"), "{e}");
    }

    #[test]
    fn flags_override_the_file_lists_included() {
        let file = parse("iface = [\"eth0\"]\nserver = [\"192.0.2.10\", \"192.0.2.11\"]\nminpoll = 4\niburst = false\nmode = \"server\"\n").unwrap();
        let merged = merge(file, &args(&["--server", "192.0.2.99", "--minpoll=5"])).unwrap();
        assert_eq!(merged.ifaces, ["eth0"]);
        assert_eq!(sources(&merged.servers), ["192.0.2.99"]);
        assert_eq!(merged.minpoll, "5".parse::<Poll>().unwrap());
        assert!(merged.no_iburst, "the file's iburst = false stays");
        assert_eq!(merged.role, Role::Server, "the file's mode stays");
        // A switch on the command line beats the file's `false` too.
        let file = parse("iburst = true\nbpf-log = false\n").unwrap();
        let merged = merge(file, &args(&["--no-iburst", "--bpf-log"])).unwrap();
        assert!(merged.no_iburst && merged.bpf_log);
    }

    /// A key the file leaves out, and an option nobody gives, is the
    /// command line's default.
    #[test]
    fn left_out_is_the_default() {
        let from_file = merge(parse("").unwrap(), &args(&[])).unwrap();
        let from_cli = RunArgs::from_arg_matches(&args(&[])).unwrap();
        assert_eq!(format!("{from_file:?}"), format!("{from_cli:?}"));
        assert_eq!(format!("{:?}", RunArgs::default()), format!("{from_cli:?}"));
        assert_eq!(from_cli.ntp_port.get(), 123);
        assert_eq!(from_cli.minpoll.get(), 6);
    }

    #[test]
    fn the_metrics_key_is_the_flag() {
        let file = parse("metrics = \"127.0.0.1:9975\"\n").unwrap();
        assert_eq!(
            file.metrics.map(|m| m.0),
            Some("127.0.0.1:9975".parse().unwrap())
        );
        let e = format!(
            "{:#}",
            parse("\nmetrics = \"localhost:9975\"\n").unwrap_err()
        );
        assert!(
            e.contains("line 2") && e.contains("metrics") && e.contains("expected IP:PORT"),
            "{e}"
        );
    }
}
