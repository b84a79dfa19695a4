//! The configuration file (`--config FILE`, TOML). Its keys are the long
//! options of `ntp-agent run` without the dashes (`server = ["192.0.2.10"]`,
//! `xdp-mode = "native"`), so the file and the command line mean the same
//! thing, and a value is checked by exactly the code that checks the flag.
//! Flags given on the command line override the file; for lists (`iface`,
//! `server`, …) the command line's list replaces the file's.
//!
//! A server or peer is a string, or a table with its own poll settings:
//!
//! ```toml
//! server = ["192.0.2.10", { address = "time.example.net", minpoll = 4, iburst = false }]
//!
//! [[peer]]
//! address = "192.0.2.20"
//! maxpoll = 8
//! ```

use std::{
    ffi::OsString,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use toml::Spanned;

/// Every key the file may hold; anything else is an error naming it.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    iface: Option<Spanned<Vec<String>>>,
    server: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    peer: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    pool: Option<Spanned<Vec<Spanned<toml::Value>>>>,
    nts_ca: Option<Spanned<Vec<PathBuf>>>,
    mode: Option<Spanned<String>>,
    xdp_mode: Option<Spanned<String>>,
    pin_dir: Option<Spanned<PathBuf>>,
    control_socket: Option<Spanned<PathBuf>>,
    metrics: Option<Spanned<String>>,
    no_clock_adjust: Option<Spanned<bool>>,
    ready_after_sync: Option<Spanned<bool>>,
    allow_modes: Option<Spanned<Vec<String>>>,
    allow: Option<Spanned<Vec<String>>>,
    deny: Option<Spanned<Vec<String>>>,
    ntp_port: Option<Spanned<i64>>,
    pass_non_first_fragments: Option<Spanned<bool>>,
    bpf_log: Option<Spanned<bool>>,
    count_out_of_scope: Option<Spanned<bool>>,
    minpoll: Option<Spanned<i64>>,
    maxpoll: Option<Spanned<i64>>,
    iburst: Option<Spanned<bool>>,
    source_port: Option<Spanned<i64>>,
    step_threshold: Option<Spanned<f64>>,
    step_limit: Option<Spanned<i64>>,
    panic_threshold: Option<Spanned<f64>>,
    allow_panic_step: Option<Spanned<bool>>,
    drift_file: Option<Spanned<PathBuf>>,
    ratelimit_burst: Option<Spanned<i64>>,
    ratelimit_interval: Option<Spanned<f64>>,
}

/// One key of the file as command-line arguments, with where it was.
struct Setting {
    key: &'static str,
    /// The long flag it stands for.
    flag: &'static str,
    args: Vec<String>,
    offset: usize,
}

fn list(
    key: &'static str,
    flag: &'static str,
    v: &Option<Spanned<Vec<String>>>,
    out: &mut Vec<Setting>,
) {
    if let Some(v) = v {
        out.push(Setting {
            key,
            flag,
            args: v
                .get_ref()
                .iter()
                .flat_map(|x| [flag.to_string(), x.clone()])
                .collect(),
            offset: v.span().start,
        });
    }
}

fn value<T: ToString>(
    key: &'static str,
    flag: &'static str,
    v: &Option<Spanned<T>>,
    out: &mut Vec<Setting>,
) {
    if let Some(v) = v {
        out.push(Setting {
            key,
            flag,
            args: vec![flag.to_string(), v.get_ref().to_string()],
            offset: v.span().start,
        });
    }
}

/// A boolean switch: `key = true` is the flag; `false` is the default.
/// (`iburst` is the one the other way round: `false` means `--no-iburst`.)
fn switch(
    key: &'static str,
    flag: &'static str,
    when: bool,
    v: &Option<Spanned<bool>>,
    out: &mut Vec<Setting>,
) {
    if let Some(v) = v {
        out.push(Setting {
            key,
            flag,
            args: if *v.get_ref() == when {
                vec![flag.to_string()]
            } else {
                Vec::new()
            },
            offset: v.span().start,
        });
    }
}

/// The keys of a source table, in the order of the command-line form.
const SOURCE_KEYS: [&str; 7] = [
    "address",
    "minpoll",
    "maxpoll",
    "iburst",
    "nts",
    "nts-port",
    "maxsources",
];

/// One `server`/`peer` entry as the command line writes it
/// (`ADDR,minpoll=4,noiburst`); `--server`'s own parser then checks it.
fn source_entry(v: &toml::Value) -> Result<String> {
    let t = match v {
        toml::Value::String(s) => return Ok(s.clone()),
        toml::Value::Table(t) => t,
        other => bail!(
            "expected an address, a name or a table {{ address = …, minpoll = …, maxpoll = …, iburst = … }}, not a {}",
            other.type_str()
        ),
    };
    if let Some(k) = t.keys().find(|k| !SOURCE_KEYS.contains(&k.as_str())) {
        bail!("unknown key `{k}` in a source table, expected one of `address`, `minpoll`, `maxpoll`, `iburst`, `nts`, `nts-port`, `maxsources`");
    }
    let mut out = match t.get("address") {
        Some(toml::Value::String(a)) => a.clone(),
        Some(other) => bail!("`address` must be a string, not {other}"),
        None => bail!("a source table needs `address`"),
    };
    for key in ["minpoll", "maxpoll"] {
        match t.get(key) {
            Some(toml::Value::Integer(n)) => out.push_str(&format!(",{key}={n}")),
            Some(other) => bail!("`{key}` must be an integer (log2 seconds), not {other}"),
            None => {}
        }
    }
    match t.get("iburst") {
        Some(toml::Value::Boolean(true)) => out.push_str(",iburst"),
        Some(toml::Value::Boolean(false)) => out.push_str(",noiburst"),
        Some(other) => bail!("`iburst` must be true or false, not {other}"),
        None => {}
    }
    match t.get("nts") {
        Some(toml::Value::Boolean(true)) => out.push_str(",nts"),
        Some(toml::Value::Boolean(false)) | None => {}
        Some(other) => bail!("`nts` must be true or false, not {other}"),
    }
    for key in ["nts-port", "maxsources"] {
        match t.get(key) {
            Some(toml::Value::Integer(n)) => out.push_str(&format!(",{key}={n}")),
            Some(other) => bail!("`{key}` must be an integer, not {other}"),
            None => {}
        }
    }
    Ok(out)
}

/// `server`/`peer`: one setting per entry, so an error names the entry's line.
fn sources(
    key: &'static str,
    flag: &'static str,
    v: &Option<Spanned<Vec<Spanned<toml::Value>>>>,
    out: &mut Vec<Setting>,
) -> Result<(), (usize, String)> {
    let Some(v) = v else { return Ok(()) };
    let mut args = Vec::new();
    for entry in v.get_ref() {
        let arg = source_entry(entry.get_ref())
            .map_err(|e| (entry.span().start, format!("{key} = …: {e}")))?;
        // Checked alone so that the error points at this entry's line.
        check(&Setting {
            key,
            flag,
            args: vec![flag.to_string(), arg.clone()],
            offset: entry.span().start,
        })
        .map_err(|e| (entry.span().start, format!("{key} = …: {e}")))?;
        args.extend([flag.to_string(), arg]);
    }
    out.push(Setting {
        key,
        flag,
        args,
        offset: v.span().start,
    });
    Ok(())
}

impl FileConfig {
    fn settings(&self) -> Result<Vec<Setting>, (usize, String)> {
        let mut s = Vec::new();
        list("iface", "--iface", &self.iface, &mut s);
        sources("server", "--server", &self.server, &mut s)?;
        sources("peer", "--peer", &self.peer, &mut s)?;
        sources("pool", "--pool", &self.pool, &mut s)?;
        if let Some(v) = &self.nts_ca {
            s.push(Setting {
                key: "nts-ca",
                flag: "--nts-ca",
                args: v
                    .get_ref()
                    .iter()
                    .flat_map(|p| ["--nts-ca".to_string(), p.display().to_string()])
                    .collect(),
                offset: v.span().start,
            });
        }
        value("mode", "--mode", &self.mode, &mut s);
        value("xdp-mode", "--xdp-mode", &self.xdp_mode, &mut s);
        if let Some(p) = &self.pin_dir {
            s.push(path_setting("pin-dir", "--pin-dir", p));
        }
        if let Some(p) = &self.control_socket {
            s.push(path_setting("control-socket", "--control-socket", p));
        }
        value("metrics", "--metrics", &self.metrics, &mut s);
        if let Some(p) = &self.drift_file {
            s.push(path_setting("drift-file", "--drift-file", p));
        }
        switch(
            "no-clock-adjust",
            "--no-clock-adjust",
            true,
            &self.no_clock_adjust,
            &mut s,
        );
        switch(
            "ready-after-sync",
            "--ready-after-sync",
            true,
            &self.ready_after_sync,
            &mut s,
        );
        list("allow-modes", "--allow-modes", &self.allow_modes, &mut s);
        list("allow", "--allow", &self.allow, &mut s);
        list("deny", "--deny", &self.deny, &mut s);
        value("ntp-port", "--ntp-port", &self.ntp_port, &mut s);
        switch(
            "pass-non-first-fragments",
            "--pass-non-first-fragments",
            true,
            &self.pass_non_first_fragments,
            &mut s,
        );
        switch("bpf-log", "--bpf-log", true, &self.bpf_log, &mut s);
        switch(
            "count-out-of-scope",
            "--count-out-of-scope",
            true,
            &self.count_out_of_scope,
            &mut s,
        );
        value("minpoll", "--minpoll", &self.minpoll, &mut s);
        value("maxpoll", "--maxpoll", &self.maxpoll, &mut s);
        switch("iburst", "--no-iburst", false, &self.iburst, &mut s);
        value("source-port", "--source-port", &self.source_port, &mut s);
        value(
            "step-threshold",
            "--step-threshold",
            &self.step_threshold,
            &mut s,
        );
        value("step-limit", "--step-limit", &self.step_limit, &mut s);
        value(
            "panic-threshold",
            "--panic-threshold",
            &self.panic_threshold,
            &mut s,
        );
        switch(
            "allow-panic-step",
            "--allow-panic-step",
            true,
            &self.allow_panic_step,
            &mut s,
        );
        value(
            "ratelimit-burst",
            "--ratelimit-burst",
            &self.ratelimit_burst,
            &mut s,
        );
        value(
            "ratelimit-interval",
            "--ratelimit-interval",
            &self.ratelimit_interval,
            &mut s,
        );
        Ok(s)
    }
}

fn path_setting(key: &'static str, flag: &'static str, p: &Spanned<PathBuf>) -> Setting {
    Setting {
        key,
        flag,
        args: vec![flag.to_string(), p.get_ref().display().to_string()],
        offset: p.span().start,
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Reads `path` and turns it into `run` arguments, each value checked by
/// the command line's own parser; errors name the file, line, key and
/// problem.
pub fn load(path: &Path) -> Result<Vec<(String, Vec<String>)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    parse(&text).map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))
}

/// The file's settings as `(flag, args)` pairs.
pub fn parse(text: &str) -> Result<Vec<(String, Vec<String>)>> {
    let cfg: FileConfig = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start));
        match line {
            Some(l) => anyhow::anyhow!("line {l}: {}", e.message()),
            None => anyhow::anyhow!("{}", e.message()),
        }
    })?;
    let mut out = Vec::new();
    let settings = cfg
        .settings()
        .map_err(|(offset, e)| anyhow::anyhow!("line {}: {e}", line_of(text, offset)))?;
    for s in settings {
        check(&s)
            .map_err(|e| anyhow::anyhow!("line {}: {} = …: {e}", line_of(text, s.offset), s.key))?;
        out.push((s.flag.to_string(), s.args));
    }
    Ok(out)
}

/// Parses one setting alone, so a bad value is reported with its key.
fn check(s: &Setting) -> Result<()> {
    use clap::Parser as _;
    let mut argv: Vec<String> = vec!["ntp-agent".into(), "run".into()];
    if s.flag != "--iface" {
        argv.extend(["--iface".into(), "lo".into()]);
    }
    argv.extend(s.args.iter().cloned());
    match crate::cli::Cli::try_parse_from(&argv) {
        Ok(_) => Ok(()),
        Err(e) => {
            let msg = e.to_string();
            let first = msg
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ");
            bail!("{first}")
        }
    }
}

/// The command line for `run` with the file's settings in front, leaving
/// out every flag the command line itself gives (so the command line wins,
/// lists included).
pub fn merge(file: Vec<(String, Vec<String>)>, cli_run_args: &[OsString]) -> Vec<OsString> {
    let given = |flag: &str| {
        cli_run_args.iter().any(|a| {
            let a = a.to_string_lossy();
            a == flag || a.starts_with(&format!("{flag}="))
        })
    };
    let mut out: Vec<OsString> = Vec::new();
    for (flag, args) in file {
        let overridden = if flag == "--no-iburst" {
            given("--no-iburst")
        } else {
            given(&flag)
        };
        if !overridden {
            out.extend(args.into_iter().map(OsString::from));
        }
    }
    out.extend(cli_run_args.iter().cloned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_parses() {
        let file = parse(include_str!("../../dist/agent.toml")).unwrap();
        let servers = file.iter().find(|(f, _)| f == "--server").unwrap();
        assert!(
            servers
                .1
                .contains(&"2001:db8::10,minpoll=4,maxpoll=8".to_string()),
            "{servers:?}"
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

    /// The file holds every option of `run`, and the README's reference
    /// documents each one.
    #[test]
    fn every_run_option_is_a_key_and_documented() {
        use clap::CommandFactory as _;
        let readme = include_str!("../../README.md");
        let reference = readme
            .split("## Configuration reference")
            .nth(1)
            .and_then(|rest| rest.split("\n## ").next())
            .expect("README has a configuration reference");
        let cli = crate::cli::Cli::command();
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
    }

    #[test]
    fn sources_are_strings_or_tables_with_their_own_poll() {
        let text = "server = [\"192.0.2.10\", { address = \"time.example.net\", minpoll = 4, iburst = false }]\n\n[[peer]]\naddress = \"192.0.2.20\"\nmaxpoll = 8\n";
        let file = parse(text).unwrap();
        assert_eq!(
            file,
            [
                (
                    "--server".to_string(),
                    [
                        "--server",
                        "192.0.2.10",
                        "--server",
                        "time.example.net,minpoll=4,noiburst"
                    ]
                    .map(String::from)
                    .to_vec()
                ),
                (
                    "--peer".to_string(),
                    ["--peer", "192.0.2.20,maxpoll=8"]
                        .map(String::from)
                        .to_vec()
                ),
            ]
        );
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
        let file = parse("iface = [\"eth0\"]\nserver = [\"192.0.2.10\", \"192.0.2.11\"]\nminpoll = 4\niburst = false\n").unwrap();
        let cli: Vec<OsString> = ["--server", "192.0.2.99", "--minpoll=5"]
            .iter()
            .map(OsString::from)
            .collect();
        let merged: Vec<String> = merge(file, &cli)
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            merged,
            [
                "--iface",
                "eth0",
                "--no-iburst",
                "--server",
                "192.0.2.99",
                "--minpoll=5"
            ]
        );
    }

    #[test]
    fn the_metrics_key_is_the_flag() {
        let file = parse("metrics = \"127.0.0.1:9975\"\n").unwrap();
        assert_eq!(
            file,
            [(
                "--metrics".to_string(),
                vec!["--metrics".to_string(), "127.0.0.1:9975".to_string()]
            )]
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
