//! `cargo xtask setup`: checks each prerequisite and installs what is missing.
//!
//! Every prerequisite is a [`Step`]: a check that reports `Ok`/`Missing` with a
//! short detail, and an installer that only issues commands through
//! [`Ctx::run`], so `--dry-run` prints exactly what a real run would execute.

use crate::cmd::{is_root, which, Cmd};
use crate::parse;
use anyhow::{anyhow, bail, Context, Result};
use std::cell::{Cell, OnceCell, RefCell};
use std::path::{Path, PathBuf};

pub const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const BPFFS: &str = "/sys/fs/bpf";
const TEST_PACKAGES: &[&str] = &[
    "iproute2",
    "nftables",
    "chrony",
    "ntpsec-ntpdate",
    "tcpdump",
    // systemd-analyze, to verify dist/ntp-agent.service (nothing is started).
    "systemd",
    // dnsmasq as the pool test's DNS server: the binary only, without the
    // `dnsmasq` package's service (and service starts are blocked anyway).
    "dnsmasq-base",
];
const RUSTUP_FIX: &str = "curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y \
                          && rustup toolchain install nightly --profile minimal";

#[derive(Debug, Default, Clone)]
pub struct Opts {
    /// Print what would be installed, change nothing.
    pub dry_run: bool,
    /// Treat these step ids (or `all`) as missing: exercises the install paths.
    pub assume_missing: Vec<String>,
    /// Collapse the `ok:` lines into one summary line (used by build/run/test).
    pub quiet: bool,
}

pub enum Status {
    Ok(String),
    Missing(String),
}

pub struct Step {
    /// Short id for `--assume-missing`.
    pub id: &'static str,
    pub name: &'static str,
    pub needs_root: bool,
    pub check: fn(&Ctx) -> Result<Status>,
    /// `None`: cannot be installed by us; the `Missing` detail says how.
    pub install: Option<fn(&Ctx) -> Result<()>>,
}

pub fn steps() -> Vec<Step> {
    vec![
        Step {
            id: "rustup",
            name: "rustup",
            needs_root: false,
            check: check_rustup,
            install: None,
        },
        Step {
            id: "nightly",
            name: "nightly toolchain",
            needs_root: false,
            check: check_nightly,
            install: Some(install_nightly),
        },
        Step {
            id: "rust-src",
            name: "rust-src for nightly",
            needs_root: false,
            check: check_rust_src,
            install: Some(install_rust_src),
        },
        Step {
            id: "cc",
            name: "C compiler",
            needs_root: true,
            check: check_cc,
            install: Some(install_cc),
        },
        Step {
            id: "llvm",
            name: "LLVM dev packages",
            needs_root: true,
            check: check_llvm,
            install: Some(install_llvm),
        },
        Step {
            id: "bpf-linker",
            name: "bpf-linker",
            needs_root: false,
            check: check_bpf_linker,
            install: Some(install_bpf_linker),
        },
        Step {
            id: "test-tools",
            name: "test tools",
            needs_root: true,
            check: check_test_tools,
            install: Some(install_test_tools),
        },
        Step {
            id: "bpffs",
            name: "bpffs",
            needs_root: true,
            check: check_bpffs,
            install: Some(install_bpffs),
        },
    ]
}

#[derive(Debug, Default)]
pub struct Report {
    pub present: usize,
    pub installed: usize,
}

pub fn run(opts: &Opts) -> Result<Report> {
    let ctx = Ctx::new(opts.dry_run);
    let mut report = Report::default();
    let all = steps();
    for a in &opts.assume_missing {
        if a != "all" && !all.iter().any(|s| s.id == a) {
            let ids: Vec<_> = all.iter().map(|s| s.id).collect();
            bail!(
                "unknown step `{a}` for --assume-missing (known: all, {})",
                ids.join(", ")
            );
        }
    }
    for step in &all {
        let forced = opts
            .assume_missing
            .iter()
            .any(|a| a == "all" || a == step.id);
        let status = match (step.check)(&ctx) {
            Ok(s) => s,
            Err(e) if opts.dry_run => Status::Missing(format!("cannot check yet: {e:#}")),
            Err(e) => return Err(e.context(format!("checking {}", step.name))),
        };
        let detail = match status {
            Status::Ok(d) if !forced => {
                report.present += 1;
                if !opts.quiet {
                    println!("ok: {} ({d})", step.name);
                }
                continue;
            }
            Status::Ok(d) => format!("{d}; --assume-missing"),
            Status::Missing(d) => d,
        };
        let Some(install) = step.install else {
            let line = format!("missing: {} ({detail}) — fix: {RUSTUP_FIX}", step.name);
            if opts.dry_run {
                println!("{line}");
                continue;
            }
            bail!(line);
        };
        if step.needs_root && !ctx.is_root && !opts.dry_run {
            bail!(
                "missing: {} ({detail}) — needs root; fix: sudo -E env \"PATH=$PATH\" cargo xtask setup   [runs: {}]",
                step.name,
                ctx.record(install)
            );
        }
        let verb = if opts.dry_run {
            "would install"
        } else {
            "installing"
        };
        println!("{verb}: {} ({detail})", step.name);
        install(&ctx).with_context(|| format!("installing {}", step.name))?;
        if !opts.dry_run {
            match (step.check)(&ctx)? {
                Status::Ok(d) => println!("ok: {} ({d})", step.name),
                Status::Missing(d) => bail!("{} still missing after install: {d}", step.name),
            }
        }
        report.installed += 1;
    }
    if opts.quiet && report.installed == 0 {
        println!("setup: ok (all {} prerequisites present)", report.present);
    }
    Ok(report)
}

/// State shared by the steps; all commands go through [`Ctx::run`].
pub struct Ctx {
    dry_run: bool,
    is_root: bool,
    llvm: OnceCell<u32>,
    apt_updated: Cell<bool>,
    /// When `Some`, `run` only records commands (for the "fix:" hint).
    recording: RefCell<Option<Vec<String>>>,
}

impl Ctx {
    fn new(dry_run: bool) -> Self {
        Ctx {
            dry_run,
            is_root: is_root(),
            llvm: OnceCell::new(),
            apt_updated: Cell::new(false),
            recording: RefCell::new(None),
        }
    }

    fn recording(&self) -> bool {
        self.recording.borrow().is_some()
    }

    /// Runs a command (printing it), or only prints it in dry-run mode.
    fn run(&self, cmd: Cmd) -> Result<()> {
        if let Some(rec) = self.recording.borrow_mut().as_mut() {
            rec.push(cmd.to_string());
            return Ok(());
        }
        println!("  $ {cmd}");
        if self.dry_run {
            return Ok(());
        }
        cmd.run()
    }

    /// The commands an installer would run, joined for a one-line hint.
    fn record(&self, install: fn(&Ctx) -> Result<()>) -> String {
        *self.recording.borrow_mut() = Some(Vec::new());
        let res = install(self);
        let cmds = self.recording.borrow_mut().take().unwrap_or_default();
        match res {
            Ok(()) => cmds.join(" && "),
            Err(e) => format!("{e:#}"),
        }
    }

    /// Major version of the LLVM that nightly rustc uses (what bpf-linker must match).
    pub fn llvm_major(&self) -> Result<u32> {
        if let Some(v) = self.llvm.get() {
            return Ok(*v);
        }
        let out = Cmd::new("rustc")
            .args(["+nightly", "-vV"])
            .stdout_if_ok()
            .ok_or_else(|| {
                anyhow!("`rustc +nightly -vV` failed (is the nightly toolchain installed?)")
            })?;
        let v = parse::llvm_major(&out)
            .ok_or_else(|| anyhow!("no `LLVM version:` line in `rustc +nightly -vV` output"))?;
        Ok(*self.llvm.get_or_init(|| v))
    }

    fn apt_install(&self, pkgs: &[String]) -> Result<()> {
        if which("apt-get").is_none() && !self.dry_run && !self.recording() {
            bail!(
                "apt-get not found: install {} with your distribution's package manager",
                pkgs.join(" ")
            );
        }
        let env = |c: Cmd| c.env("DEBIAN_FRONTEND", "noninteractive");
        if !self.apt_updated.get() {
            self.run(env(Cmd::new("apt-get")).args(["update", "-q"]))?;
            self.apt_updated.set(!self.recording());
        }
        let install = env(Cmd::new("apt-get"))
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(pkgs.iter().cloned());
        if self.recording() {
            return self.run(install);
        }
        let chronyd_before = chronyd_pids();
        {
            let _guard = PolicyRcGuard::install(Path::new(POLICY_RC_D), self.dry_run)?;
            self.run(install).map_err(|e| {
                e.context(format!(
                    "apt-get could not install {}; check your apt sources (LLVM packages \
                     for other releases: https://apt.llvm.org)",
                    pkgs.join(" ")
                ))
            })?;
        }
        if self.dry_run {
            return Ok(());
        }
        warn_about_chronyd(&chronyd_before);
        if pkgs.iter().any(|p| p == "chrony") && which("systemctl").is_some() {
            // Installed for the tests only: never let it start at boot and adjust the clock.
            println!("  (chrony is for the tests only: disabling its service at boot)");
            if let Err(e) = self.run(Cmd::new("systemctl").args(["disable", "chrony.service"])) {
                println!("  (could not disable chrony.service: {e:#})");
            }
        }
        Ok(())
    }
}

/// Makes sure `policy-rc.d` denies (exit 101) every service start while apt
/// installs packages: chrony's postinst would otherwise start chronyd, which
/// adjusts the real clock. Restores the previous state on drop.
pub struct PolicyRcGuard {
    path: PathBuf,
    undo: Undo,
}

#[derive(Debug, PartialEq)]
enum Undo {
    Nothing,
    Remove,
    Restore(PathBuf),
}

const POLICY_RC_D_SCRIPT: &str = "#!/bin/sh\n\
    # Written by `cargo xtask setup` for the duration of an apt install:\n\
    # no service may start (chrony would adjust the clock).\n\
    exit 101\n";

impl PolicyRcGuard {
    pub fn install(path: &Path, dry_run: bool) -> Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let denies = path.exists()
            && Cmd::new(path.to_string_lossy())
                .args(["chrony", "start"])
                .command()
                .status()
                .map(|s| s.code() == Some(101))
                .unwrap_or(false);
        let p = path.display();
        let undo = if denies {
            println!("  (policy-rc.d: {p} already denies service starts)");
            Undo::Nothing
        } else if dry_run {
            println!(
                "  (policy-rc.d: would write {p} = `exit 101` for the install, then undo that)"
            );
            return Ok(PolicyRcGuard {
                path: path.into(),
                undo: Undo::Nothing,
            });
        } else {
            let undo = if path.exists() {
                let saved = path.with_extension("xtask-saved");
                std::fs::rename(path, &saved).with_context(|| format!("moving {p} aside"))?;
                println!("  (policy-rc.d: {p} allows service starts; replaced by `exit 101` for the install)");
                Undo::Restore(saved)
            } else {
                println!("  (policy-rc.d: created {p} = `exit 101` for the install)");
                Undo::Remove
            };
            let guard = PolicyRcGuard {
                path: path.into(),
                undo,
            };
            std::fs::write(path, POLICY_RC_D_SCRIPT).with_context(|| format!("writing {p}"))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
            return Ok(guard);
        };
        Ok(PolicyRcGuard {
            path: path.into(),
            undo,
        })
    }
}

impl Drop for PolicyRcGuard {
    fn drop(&mut self) {
        let p = self.path.display();
        let res = match &self.undo {
            Undo::Nothing => return,
            Undo::Remove => std::fs::remove_file(&self.path),
            Undo::Restore(saved) => std::fs::rename(saved, &self.path),
        };
        match res {
            Ok(()) => println!("  (policy-rc.d: restored {p})"),
            Err(e) => eprintln!("WARNING: could not restore {p}: {e}"),
        }
    }
}

/// Pids of running `chronyd` processes (visible in our pid namespace).
pub fn chronyd_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim() == "chronyd")
                .unwrap_or(false)
        })
        .collect()
}

/// We never start chronyd here; any running one may be adjusting the clock.
fn warn_about_chronyd(before: &[u32]) {
    let now = chronyd_pids();
    if now.is_empty() {
        println!("  (checked: no chronyd running)");
        return;
    }
    let new: Vec<_> = now.iter().filter(|p| !before.contains(p)).collect();
    let bar = "!".repeat(78);
    eprintln!("{bar}");
    eprintln!(
        "!! WARNING: chronyd is running (pids {now:?}; started during this install: {new:?})."
    );
    eprintln!("!! It was NOT started by cargo xtask and may adjust this machine's real clock.");
    eprintln!("!! xtask leaves it alone; stop it yourself if it should not run.");
    eprintln!("{bar}");
}

fn dpkg_missing(pkgs: &[String]) -> Vec<String> {
    pkgs.iter()
        .filter(|p| {
            let st = Cmd::new("dpkg-query")
                .args(["-W", "-f=${Status}", p.as_str()])
                .stdout_if_ok()
                .unwrap_or_default();
            !parse::dpkg_installed(&st)
        })
        .cloned()
        .collect()
}

fn dpkg_status(pkgs: &[String]) -> Result<Status> {
    if which("dpkg-query").is_none() {
        bail!(
            "dpkg-query not found: this setup supports Debian/Ubuntu; install {} yourself",
            pkgs.join(" ")
        );
    }
    let missing = dpkg_missing(pkgs);
    Ok(if missing.is_empty() {
        Status::Ok(pkgs.join(" "))
    } else {
        Status::Missing(format!("missing {}", missing.join(" ")))
    })
}

// ---- the steps ---------------------------------------------------------

fn check_rustup(_: &Ctx) -> Result<Status> {
    Ok(match Cmd::new("rustup").arg("--version").stdout_if_ok() {
        Some(v) => Status::Ok(v.lines().next().unwrap_or("").trim().to_string()),
        None => Status::Missing("`rustup --version` failed".into()),
    })
}

fn check_nightly(_: &Ctx) -> Result<Status> {
    let list = Cmd::new("rustup")
        .args(["toolchain", "list"])
        .stdout_if_ok()
        .unwrap_or_default();
    Ok(if parse::rustup_has_toolchain(&list, "nightly") {
        Status::Ok("installed".into())
    } else {
        Status::Missing("not installed".into())
    })
}

fn install_nightly(ctx: &Ctx) -> Result<()> {
    ctx.run(Cmd::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
}

fn check_rust_src(_: &Ctx) -> Result<Status> {
    let list = Cmd::new("rustup")
        .args(["component", "list", "--toolchain", "nightly", "--installed"])
        .stdout_if_ok()
        .unwrap_or_default();
    Ok(if parse::rustup_has_component(&list, "rust-src") {
        Status::Ok("installed".into())
    } else {
        Status::Missing("not installed".into())
    })
}

fn install_rust_src(ctx: &Ctx) -> Result<()> {
    ctx.run(Cmd::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

fn check_cc(_: &Ctx) -> Result<Status> {
    Ok(match which("cc") {
        Some(p) => Status::Ok(p.display().to_string()),
        None => Status::Missing("no `cc` in PATH".into()),
    })
}

fn install_cc(ctx: &Ctx) -> Result<()> {
    ctx.apt_install(&["build-essential".to_string()])
}

fn llvm_packages(major: u32) -> Vec<String> {
    vec![format!("llvm-{major}-dev"), format!("libpolly-{major}-dev")]
}

fn check_llvm(ctx: &Ctx) -> Result<Status> {
    let n = ctx.llvm_major()?;
    Ok(match dpkg_status(&llvm_packages(n))? {
        Status::Ok(d) => Status::Ok(format!("{d}, matching nightly's LLVM {n}")),
        Status::Missing(d) => Status::Missing(format!("{d}, for nightly's LLVM {n}")),
    })
}

fn install_llvm(ctx: &Ctx) -> Result<()> {
    let n = ctx.llvm_major()?;
    let mut pkgs = dpkg_missing(&llvm_packages(n));
    if pkgs.is_empty() {
        pkgs = llvm_packages(n);
    }
    ctx.apt_install(&pkgs)
}

fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(std::env::var_os("HOME")?).join(".cargo")))
}

/// The LLVM major an installed bpf-linker was built for, if it can be told:
/// from the libLLVM it links (ldd), else from cargo's install record.
fn bpf_linker_llvm(path: &Path) -> Option<u32> {
    Cmd::new("ldd")
        .arg(path.to_string_lossy())
        .stdout_if_ok()
        .and_then(|o| parse::llvm_major_from_ldd(&o))
        .or_else(|| {
            let json = std::fs::read_to_string(cargo_home()?.join(".crates2.json")).ok()?;
            parse::llvm_major_from_crates2(&json)
        })
}

fn check_bpf_linker(ctx: &Ctx) -> Result<Status> {
    let n = ctx.llvm_major()?;
    let Some(path) = which("bpf-linker") else {
        return Ok(Status::Missing("not in PATH".into()));
    };
    let Some(version) = Cmd::new(path.to_string_lossy())
        .arg("--version")
        .stdout_if_ok()
    else {
        return Ok(Status::Missing(format!(
            "`{} --version` failed",
            path.display()
        )));
    };
    let version = version.trim();
    Ok(match bpf_linker_llvm(&path) {
        Some(m) if m == n => Status::Ok(format!("{version}, LLVM {m}")),
        Some(m) => Status::Missing(format!(
            "{version} is built for LLVM {m}, nightly uses LLVM {n}"
        )),
        None => Status::Ok(format!(
            "{version}, its LLVM cannot be told; presence is enough"
        )),
    })
}

fn install_bpf_linker(ctx: &Ctx) -> Result<()> {
    let n = ctx.llvm_major()?;
    let mut cmd = Cmd::cargo()
        .env("LLVM_PREFIX", format!("/usr/lib/llvm-{n}"))
        .args([
            "install",
            "bpf-linker",
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{n}"));
    if which("bpf-linker").is_some() {
        cmd = cmd.arg("--force");
    }
    ctx.run(cmd)
}

fn test_packages() -> Vec<String> {
    TEST_PACKAGES.iter().map(|s| s.to_string()).collect()
}

fn check_test_tools(_: &Ctx) -> Result<Status> {
    dpkg_status(&test_packages())
}

fn install_test_tools(ctx: &Ctx) -> Result<()> {
    let mut pkgs = dpkg_missing(&test_packages());
    if pkgs.is_empty() {
        pkgs = test_packages(); // --assume-missing: reinstall them all
    }
    ctx.apt_install(&pkgs)
}

fn check_bpffs(_: &Ctx) -> Result<Status> {
    let mounts = std::fs::read_to_string("/proc/mounts").context("reading /proc/mounts")?;
    Ok(if parse::bpffs_mounted(&mounts, BPFFS) {
        Status::Ok(format!("mounted at {BPFFS}"))
    } else {
        Status::Missing(format!("not mounted at {BPFFS}"))
    })
}

fn install_bpffs(ctx: &Ctx) -> Result<()> {
    ctx.run(Cmd::new("mkdir").args(["-p", BPFFS]))?;
    ctx.run(Cmd::new("mount").args(["-t", "bpf", "bpf", BPFFS]))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These tests write scripts and execute them: keep other test threads from
    /// forking meanwhile (an inherited write fd would make exec fail with ETXTBSY).
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn policy_rc_d_created_then_removed() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let p = tmp("create").join("policy-rc.d");
        {
            let _g = PolicyRcGuard::install(&p, false).unwrap();
            let st = std::process::Command::new(&p).status().unwrap();
            assert_eq!(st.code(), Some(101));
        }
        assert!(!p.exists());
    }

    #[test]
    fn policy_rc_d_permissive_one_is_replaced_then_restored() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        use std::os::unix::fs::PermissionsExt;
        let p = tmp("replace").join("policy-rc.d");
        std::fs::write(&p, "#!/bin/sh\nexit 0\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        {
            let _g = PolicyRcGuard::install(&p, false).unwrap();
            assert_eq!(
                std::process::Command::new(&p).status().unwrap().code(),
                Some(101)
            );
        }
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "#!/bin/sh\nexit 0\n");
    }

    #[test]
    fn policy_rc_d_denying_one_is_left_alone() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        use std::os::unix::fs::PermissionsExt;
        let p = tmp("keep").join("policy-rc.d");
        std::fs::write(&p, "#!/bin/sh\nexit 101\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        let g = PolicyRcGuard::install(&p, false).unwrap();
        assert_eq!(g.undo, Undo::Nothing);
        drop(g);
        assert!(p.exists());
    }

    #[test]
    fn dry_run_writes_nothing() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let p = tmp("dry").join("policy-rc.d");
        drop(PolicyRcGuard::install(&p, true).unwrap());
        assert!(!p.exists());
    }

    #[test]
    fn recorded_install_commands() {
        let ctx = Ctx::new(false);
        ctx.llvm.set(23).unwrap();
        let hint = ctx.record(|c| c.apt_install(&llvm_packages(c.llvm_major()?)));
        assert_eq!(
            hint,
            "DEBIAN_FRONTEND=noninteractive apt-get update -q && DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -q --no-install-recommends llvm-23-dev libpolly-23-dev"
        );
        assert!(!ctx.apt_updated.get());
        let hint = ctx.record(install_bpffs);
        assert_eq!(hint, "mkdir -p /sys/fs/bpf && mount -t bpf bpf /sys/fs/bpf");
    }

    #[test]
    fn step_ids_are_unique() {
        let s = steps();
        for (i, a) in s.iter().enumerate() {
            assert!(s[i + 1..].iter().all(|b| b.id != a.id), "{}", a.id);
        }
    }
}
