//! Developer tasks for ntp-filter: `cargo xtask setup|build|run|test|lab`.

mod bench;
mod cmd;
mod install;
mod lab;
mod modgraph;
mod parse;
mod setup;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use cmd::{is_root, Cmd};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "ntp-filter developer tasks")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Check prerequisites and install the missing ones (idempotent; needs root to install).
    Setup {
        /// Only print what would be installed.
        #[arg(long)]
        dry_run: bool,
        /// Treat these steps as missing (comma-separated ids, or `all`), to exercise
        /// the install paths, best with --dry-run.
        #[arg(long, value_name = "STEP", value_delimiter = ',')]
        assume_missing: Vec<String>,
    },
    /// Setup, then build target/release/ntp-agent (eBPF program embedded).
    Build(Common),
    /// Setup, build, then run `ntp-agent run --iface IFACE ARGS...` (as root).
    Run {
        #[command(flatten)]
        common: Common,
        /// Interface to attach the XDP program to.
        #[arg(long)]
        iface: String,
        /// Further arguments for `ntp-agent run`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run every time-sync simulation scenario (simulated clock and network,
    /// the real NTP core) and print its figures next to chrony's.
    Sim {
        /// Seeds per scenario.
        #[arg(long, default_value_t = 5)]
        seeds: u32,
    },
    /// Setup, build, then `cargo test --workspace --release`.
    ///
    /// Arguments after `--` go to the test binaries (`cargo xtask test -- --nocapture`,
    /// or a name filter); with a second `--`, the part before it goes to cargo test
    /// (`cargo xtask test -- -p ntp-proto -- --nocapture`).
    Test {
        #[command(flatten)]
        common: Common,
        /// Privileged tests fail instead of skipping without root/bpffs/netns
        /// (sets NF_REQUIRE_PRIVILEGED=1; implied when CI is set).
        #[arg(long)]
        require_privileged: bool,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Setup, build, then install the binary, the systemd unit and (only if
    /// absent) the example config under ROOT; starts and enables nothing.
    Install {
        #[command(flatten)]
        common: Common,
        /// Install under this directory instead of / (staging, images).
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
    },
    /// Setup, build, then the router note's story live in network namespaces
    /// (as root), left running to play with; `--down` removes it.
    Lab(lab::LabArgs),
    /// Setup, build, then run every benchmark (as root; --quick for a short run)
    /// and write bench/results.md, bench/results.json and bench/*.svg.
    Bench(bench::BenchArgs),
    /// Print which top-level module of each crate uses which, and fail on
    /// an import cycle.
    Modgraph {
        /// The workspace to read (another checkout, e.g. to compare).
        #[arg(long, value_name = "DIR")]
        root: Option<PathBuf>,
        /// Only these crates (directory names), e.g. `ntp-agent`.
        crates: Vec<String>,
    },
}

#[derive(Args)]
struct Common {
    /// Skip the prerequisite check.
    #[arg(long)]
    no_setup: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.task) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> Result<ExitCode> {
    let root = workspace_root();
    std::env::set_current_dir(&root).with_context(|| format!("cd {}", root.display()))?;
    match task {
        Task::Setup {
            dry_run,
            assume_missing,
        } => {
            let r = setup::run(&setup::Opts {
                dry_run,
                assume_missing,
                quiet: false,
            })?;
            let what = if dry_run {
                "would install"
            } else {
                "installed"
            };
            println!("setup: {} present, {} {what}", r.present, r.installed);
        }
        Task::Build(c) => {
            quick_setup(&c)?;
            build()?;
        }
        Task::Run {
            common,
            iface,
            args,
        } => {
            if !is_root() {
                let mut line =
                    format!("sudo -E env \"PATH=$PATH\" cargo xtask run --iface {iface}");
                for a in &args {
                    line.push(' ');
                    line.push_str(&cmd::shell_quote(a));
                }
                bail!("`run` must be run as root (it loads an XDP program): {line}");
            }
            quick_setup(&common)?;
            let agent = build()?.path;
            let cmd = Cmd::new(agent.to_string_lossy())
                .args(["run", "--iface", &iface])
                .args(args);
            println!("== run: $ {cmd}");
            use std::os::unix::process::CommandExt;
            let err = cmd.command().exec();
            bail!("cannot exec {}: {err}", agent.display());
        }
        Task::Test {
            common,
            require_privileged,
            args,
        } => return test(&common, require_privileged, &args),
        Task::Bench(args) => return bench::run(&args),
        Task::Install { common, root } => {
            install::check_allowed(&root)?;
            quick_setup(&common)?;
            let agent = build()?.path;
            let installed = install::install(&root, &agent, &workspace_root().join("dist"))?;
            print!("{}", install::report(&root, &installed));
        }
        Task::Lab(args) => return lab::run(&args),
        Task::Modgraph {
            root: other,
            crates,
        } => {
            if !modgraph::run(other.as_deref().unwrap_or(&root), &crates)? {
                return Ok(ExitCode::FAILURE);
            }
        }
        Task::Sim { seeds } => {
            Cmd::cargo()
                .args([
                    "run",
                    "--quiet",
                    "--release",
                    "-p",
                    "ntp-sim",
                    "--example",
                    "simreport",
                    "--",
                ])
                .arg(seeds.to_string())
                .run()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn quick_setup(c: &Common) -> Result<setup::Report> {
    if c.no_setup {
        println!("setup: skipped (--no-setup)");
        return Ok(setup::Report::default());
    }
    setup::run(&setup::Opts {
        quiet: true,
        ..Default::default()
    })
}

/// Cargo's target directory (honours CARGO_TARGET_DIR and config).
fn target_dir() -> Result<PathBuf> {
    let out = Cmd::cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stdout_if_ok()
        .context("`cargo metadata` failed")?;
    let v: serde_json::Value = serde_json::from_str(&out).context("parsing cargo metadata")?;
    let dir = v["target_directory"]
        .as_str()
        .context("no target_directory in cargo metadata")?;
    Ok(PathBuf::from(dir))
}

struct Built {
    path: PathBuf,
    summary: String,
}

fn build() -> Result<Built> {
    let cmd = Cmd::cargo().args(["build", "--release", "-p", "ntp-agent"]);
    println!("== build: $ {cmd}");
    cmd.run()?;
    let path = target_dir()?.join("release/ntp-agent");
    let bin =
        std::fs::read(&path).with_context(|| format!("build produced no {}", path.display()))?;
    let Some((_, bpf_len)) = parse::find_bpf_elf(&bin) else {
        bail!(
            "{} contains no embedded eBPF object (no ELF with e_machine=EM_BPF inside): \
             is ntp-filter-ebpf built and embedded by ntp-agent's build script?",
            path.display()
        );
    };
    let summary = format!(
        "{} ({}, embedded eBPF object {})",
        path.display(),
        human(bin.len()),
        human(bpf_len)
    );
    println!("built: {summary}");
    Ok(Built { path, summary })
}

fn human(n: usize) -> String {
    match n {
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
}

/// Splits `cargo xtask test -- ARGS`: without an inner `--` all of ARGS go to
/// the test binaries; with one, what precedes it goes to cargo test.
fn cargo_test_args(user: &[String]) -> Vec<String> {
    // --no-fail-fast: one failing test binary must not hide the others' results.
    let mut v: Vec<String> = ["test", "--workspace", "--release", "--no-fail-fast"]
        .map(String::from)
        .into();
    match user.iter().position(|a| a == "--") {
        Some(_) => v.extend(user.iter().cloned()),
        None if user.is_empty() => {}
        None => {
            v.push("--".into());
            v.extend(user.iter().cloned());
        }
    }
    v
}

fn test(common: &Common, require_privileged: bool, args: &[String]) -> Result<ExitCode> {
    let stages = ["setup", "build", "test"];
    let mut lines: Vec<String> = Vec::new();
    let finish = |lines: &[String], failed: bool| {
        println!("\n== summary");
        for (i, s) in stages.iter().enumerate() {
            match lines.get(i) {
                Some(l) => println!("{s:<6} {l}"),
                None => println!("{s:<6} not run"),
            }
        }
        if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    };

    println!("== [1/3] setup");
    match quick_setup(common) {
        Ok(r) => lines.push(format!(
            "ok — {} present, {} installed",
            r.present, r.installed
        )),
        Err(e) => {
            eprintln!("xtask: {e:#}");
            lines.push(format!("FAILED — {e:#}"));
            return Ok(finish(&lines, true));
        }
    }

    println!("== [2/3] build");
    let agent = match build() {
        Ok(b) => {
            lines.push(format!("ok — {}", b.summary));
            b.path
        }
        Err(e) => {
            eprintln!("xtask: {e:#}");
            lines.push(format!("FAILED — {e:#}"));
            return Ok(finish(&lines, true));
        }
    };

    println!("== [3/3] test");
    let privileged = require_privileged || ci();
    let mut cmd = Cmd::cargo()
        .args(cargo_test_args(args))
        .env("NTP_AGENT_BIN", agent.to_string_lossy());
    if privileged {
        cmd = cmd.env("NF_REQUIRE_PRIVILEGED", "1");
    }
    println!("$ {cmd}");
    if !privileged {
        println!("(privileged tests may skip; pass --require-privileged or set CI=true to make them fail instead)");
    }
    let (status, counts, failures, skips) = run_cargo_test(&cmd)?;
    let c = counts;
    // The runner reports a test this machine cannot run as ignored, with
    // the reason; in the totals it is a skip.
    let mut line = format!(
        "{} passed, {} failed, {} skipped, {} filtered out ({} test runs)",
        c.passed, c.failed, c.ignored, c.filtered_out, c.runs
    );
    if !failures.is_empty() {
        line.push_str(&format!("; failed: {}", failures.join(", ")));
    }
    if !skips.is_empty() {
        println!("\n== skipped ({})", skips.len());
        for s in &skips {
            println!("  {s}");
        }
    }
    // Under CI no test may skip (the runner already fails such tests; this
    // also catches a libtest #[ignore]).
    let ok = status.success() && c.failed == 0 && c.runs > 0 && !(privileged && c.ignored > 0);
    let verdict = if ok {
        "ok"
    } else if c.runs == 0 && status.success() {
        "FAILED (no `test result:` lines seen)"
    } else {
        "FAILED"
    };
    lines.push(format!("{verdict} — {line} [cargo test: {status}]"));
    let code = finish(&lines, !ok);
    // The plain closing line CI tooling reads.
    println!(
        "tests: {} passed, {} failed, {} skipped",
        c.passed, c.failed, c.ignored
    );
    Ok(code)
}

/// What one `cargo test` run said: its exit status, the totals, the failed
/// tests, and the skipped ones with their reasons.
type TestRun = (
    std::process::ExitStatus,
    parse::TestCounts,
    Vec<String>,
    Vec<String>,
);

/// Runs cargo test, echoing its stdout line by line while counting results.
fn run_cargo_test(cmd: &Cmd) -> Result<TestRun> {
    let mut child = cmd
        .command()
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run `{cmd}`"))?;
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut counts = parse::TestCounts::default();
    let mut failures = Vec::new();
    let mut skips = Vec::new();
    let stdout = std::io::stdout();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if out.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        let mut so = stdout.lock();
        so.write_all(&buf)?;
        so.flush()?;
        let line = String::from_utf8_lossy(&buf);
        if let Some(c) = parse::test_result(&line) {
            counts.add(c);
        } else if let Some(name) = parse::failed_test(&line) {
            failures.push(name.to_string());
        } else if let Some((name, why)) = parse::skipped_test(&line) {
            skips.push(format!("{name}: {}", why.unwrap_or("no reason given")));
        }
    }
    Ok((child.wait()?, counts, failures, skips))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn test_args_split() {
        assert_eq!(
            cargo_test_args(&[]),
            s(&["test", "--workspace", "--release", "--no-fail-fast"])
        );
        assert_eq!(
            cargo_test_args(&s(&["--nocapture"])),
            s(&[
                "test",
                "--workspace",
                "--release",
                "--no-fail-fast",
                "--",
                "--nocapture"
            ])
        );
        assert_eq!(
            cargo_test_args(&s(&["-p", "ntp-proto", "--", "--nocapture"])),
            s(&[
                "test",
                "--workspace",
                "--release",
                "--no-fail-fast",
                "-p",
                "ntp-proto",
                "--",
                "--nocapture"
            ])
        );
    }

    #[test]
    fn cli_passes_run_args_through() {
        let cli = Cli::try_parse_from([
            "xtask",
            "run",
            "--iface",
            "eth0",
            "--server",
            "192.0.2.10",
            "--no-clock-adjust",
        ])
        .unwrap();
        let Task::Run { iface, args, .. } = cli.task else {
            panic!("not run")
        };
        assert_eq!(iface, "eth0");
        assert_eq!(args, s(&["--server", "192.0.2.10", "--no-clock-adjust"]));

        let cli = Cli::try_parse_from(["xtask", "test", "--", "--nocapture", "filter"]).unwrap();
        let Task::Test {
            args,
            require_privileged,
            ..
        } = cli.task
        else {
            panic!("not test")
        };
        assert!(!require_privileged);
        assert_eq!(args, s(&["--nocapture", "filter"]));

        for (argv, down) in [
            (&["xtask", "lab"][..], false),
            (&["xtask", "lab", "--down"], true),
        ] {
            let Task::Lab(lab) = Cli::try_parse_from(argv).unwrap().task else {
                panic!("not lab")
            };
            assert_eq!(lab.down, down);
        }
    }
}
