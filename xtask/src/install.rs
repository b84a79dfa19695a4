//! `cargo xtask install [--root DIR]`: puts the release binary, the systemd
//! unit and (only if there is none) the example config in place under
//! `DIR` (default `/`), and says what to run next. It never starts or
//! enables anything: that stays the operator's decision.

use anyhow::{bail, Context, Result};
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Where each file goes, relative to the root.
pub const BINARY: &str = "usr/local/sbin/ntp-agent";
pub const UNIT: &str = "etc/systemd/system/ntp-agent.service";
pub const CONFIG: &str = "etc/ntp-filter/agent.toml";

/// What happened to one file.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Written,
    Replaced,
    Unchanged,
    /// An existing config: never overwritten.
    Kept,
}

#[derive(Debug)]
pub struct Installed {
    pub path: PathBuf,
    pub what: &'static str,
    pub outcome: Outcome,
}

/// Whether `root` is this machine's own `/` (so root privileges are needed
/// and the printed commands apply here).
pub fn is_system_root(root: &Path) -> bool {
    root.canonicalize().is_ok_and(|p| p == Path::new("/"))
}

/// Installs `binary` and the files from `dist` (the repository's dist/)
/// under `root`.
pub fn install(root: &Path, binary: &Path, dist: &Path) -> Result<Vec<Installed>> {
    let bin = fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let unit = fs::read(dist.join("ntp-agent.service"))
        .with_context(|| format!("reading {}", dist.join("ntp-agent.service").display()))?;
    let config = fs::read(dist.join("agent.toml"))
        .with_context(|| format!("reading {}", dist.join("agent.toml").display()))?;
    Ok(vec![
        Installed {
            outcome: replace(&root.join(BINARY), &bin, 0o755)?,
            path: root.join(BINARY),
            what: "binary",
        },
        Installed {
            outcome: replace(&root.join(UNIT), &unit, 0o644)?,
            path: root.join(UNIT),
            what: "systemd unit",
        },
        Installed {
            outcome: create_new(&root.join(CONFIG), &config, 0o644)?,
            path: root.join(CONFIG),
            what: "config",
        },
    ])
}

fn parent_dirs(path: &Path) -> Result<()> {
    let dir = path.parent().context("a file path has a parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// Writes beside `path` and renames over it, so a running binary is never
/// half-written (and never "text file busy").
fn replace(path: &Path, content: &[u8], mode: u32) -> Result<Outcome> {
    parent_dirs(path)?;
    let outcome = match fs::read(path) {
        Ok(old) if old == content => {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .with_context(|| format!("setting the mode of {}", path.display()))?;
            return Ok(Outcome::Unchanged);
        }
        Ok(_) => Outcome::Replaced,
        Err(_) => Outcome::Written,
    };
    let name = path.file_name().context("a file path has a name")?;
    let tmp = path.with_file_name(format!(".{}.xtask-new", name.to_string_lossy()));
    let written = (|| -> Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(content)?;
        f.sync_all()?;
        // The mode given to open() is filtered by the umask.
        fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map(|()| outcome)
}

/// Creates `path` only if nothing is there (O_EXCL: not even a race
/// overwrites an operator's file).
fn create_new(path: &Path, content: &[u8], mode: u32) -> Result<Outcome> {
    parent_dirs(path)?;
    let mut f = match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(Outcome::Kept),
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    };
    let written = f
        .write_all(content)
        .and_then(|()| f.sync_all())
        .and_then(|()| fs::set_permissions(path, fs::Permissions::from_mode(mode)));
    if let Err(e) = written {
        let _ = fs::remove_file(path);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    Ok(Outcome::Written)
}

/// The report: each file, then the commands the operator runs next.
pub fn report(root: &Path, installed: &[Installed]) -> String {
    let mut out = String::from("installed:\n");
    for i in installed {
        let note = match (&i.outcome, i.what) {
            (Outcome::Kept, _) => {
                " — already there, NOT overwritten (an operator's config is never replaced; the example is dist/agent.toml)"
            }
            (Outcome::Written, "config") => " — the example; edit iface and server",
            (Outcome::Written, _) => "",
            (Outcome::Replaced, "systemd unit") => {
                " — replaced; keep local changes in `systemctl edit ntp-agent` drop-ins"
            }
            (Outcome::Replaced, _) => " — replaced",
            (Outcome::Unchanged, _) => " — unchanged",
        };
        out.push_str(&format!("  {} ({}){note}\n", i.path.display(), i.what));
    }
    let system = is_system_root(root);
    out.push_str(if system {
        "\nnothing was started or enabled; next:\n"
    } else {
        "\nnothing was started or enabled; next, on the system this root becomes:\n"
    });
    for cmd in [
        format!("/{BINARY} check-config /{CONFIG}"),
        "systemctl daemon-reload".to_string(),
        "systemctl enable --now ntp-agent".to_string(),
        "systemctl status ntp-agent".to_string(),
    ] {
        out.push_str(&format!("  {cmd}\n"));
    }
    out
}

/// Refuses to write into this machine's `/` without root, before building.
pub fn check_allowed(root: &Path) -> Result<()> {
    if is_system_root(root) && !crate::cmd::is_root() {
        bail!(
            "installing into / needs root: sudo -E env \"PATH=$PATH\" cargo xtask install (or --root DIR to stage the files elsewhere)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!("xtask-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn dist() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist")
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o7777
    }

    /// A stand-in for the release binary: the install does not care what
    /// it runs, systemd-analyze only that it is executable.
    fn fake_binary(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join("ntp-agent-build");
        fs::write(&p, format!("#!/bin/sh\n# {body}\n")).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn installs_into_a_root_and_never_overwrites_the_config() {
        let tmp = TempDir::new("install");
        let root = tmp.0.join("root");
        let bin = fake_binary(&tmp.0, "v1");

        let first = install(&root, &bin, &dist()).unwrap();
        let outcomes: Vec<_> = first.iter().map(|i| &i.outcome).collect();
        assert_eq!(
            outcomes,
            [&Outcome::Written, &Outcome::Written, &Outcome::Written]
        );
        assert_eq!(
            fs::read(root.join(BINARY)).unwrap(),
            fs::read(&bin).unwrap()
        );
        assert_eq!(mode(&root.join(BINARY)), 0o755);
        assert_eq!(
            fs::read(root.join(UNIT)).unwrap(),
            fs::read(dist().join("ntp-agent.service")).unwrap()
        );
        assert_eq!(mode(&root.join(UNIT)), 0o644);
        assert_eq!(
            fs::read(root.join(CONFIG)).unwrap(),
            fs::read(dist().join("agent.toml")).unwrap()
        );
        let text = report(&root, &first);
        assert!(
            text.contains("the example; edit iface and server"),
            "{text}"
        );

        // The operator edits the config; a new build is installed.
        fs::write(root.join(CONFIG), "iface = [\"wan0\"]\n").unwrap();
        let bin = fake_binary(&tmp.0, "v2");
        let second = install(&root, &bin, &dist()).unwrap();
        let outcomes: Vec<_> = second.iter().map(|i| &i.outcome).collect();
        assert_eq!(
            outcomes,
            [&Outcome::Replaced, &Outcome::Unchanged, &Outcome::Kept]
        );
        assert_eq!(
            fs::read_to_string(root.join(CONFIG)).unwrap(),
            "iface = [\"wan0\"]\n"
        );
        assert_eq!(
            fs::read(root.join(BINARY)).unwrap(),
            fs::read(&bin).unwrap()
        );
        // No temporary file left beside the binary.
        let leftovers: Vec<_> = fs::read_dir(root.join("usr/local/sbin"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["ntp-agent"]);

        let text = report(&root, &second);
        assert!(text.contains("NOT overwritten"), "{text}");
        for cmd in [
            "/usr/local/sbin/ntp-agent check-config /etc/ntp-filter/agent.toml",
            "systemctl daemon-reload",
            "systemctl enable --now ntp-agent",
        ] {
            assert!(text.contains(cmd), "{cmd:?} missing from:\n{text}");
        }
        assert!(text.contains("nothing was started or enabled"), "{text}");
    }

    #[test]
    fn a_missing_source_file_is_named() {
        let tmp = TempDir::new("missing");
        let err = install(&tmp.0.join("root"), &tmp.0.join("no-such-binary"), &dist()).unwrap_err();
        assert!(format!("{err:#}").contains("no-such-binary"), "{err:#}");
        assert!(!tmp.0.join("root").join(CONFIG).exists());
    }

    /// `systemd-analyze verify` on the installed unit, in a root that also
    /// has this machine's system units (for sysinit.target and the rest).
    ///
    /// The unit's key settings are also checked by the tests crate's
    /// tests/service_unit.rs, which needs no systemd; CI, where `cargo
    /// xtask setup` installs systemd, fails on the skip (build.rs).
    #[test]
    #[cfg_attr(
        no_systemd_analyze,
        ignore = "needs systemd-analyze and /usr/lib/systemd/system (cargo xtask setup installs systemd)"
    )]
    fn the_installed_unit_verifies() {
        let units = Path::new("/usr/lib/systemd/system");
        let analyze = crate::cmd::which("systemd-analyze").expect("systemd-analyze on PATH");
        let tmp = TempDir::new("verify");
        let root = tmp.0.join("root");
        install(&root, &fake_binary(&tmp.0, "verify"), &dist()).unwrap();
        fs::create_dir_all(root.join("usr/lib/systemd")).unwrap();
        let copied = Command::new("cp")
            .arg("-a")
            .arg(units)
            .arg(root.join("usr/lib/systemd/"))
            .status()
            .unwrap();
        assert!(copied.success());
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        let out = Command::new(analyze)
            .args(["verify", "--man=no", "--generators=no"])
            .arg(format!("--root={}", root.display()))
            .arg("ntp-agent.service")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // verify exits 0 on unknown keys and bad values: any output is a finding.
        assert!(out.status.success() && said.trim().is_empty(), "{said}");

        // And it does find things: the same unit with a misspelt key.
        let unit = fs::read_to_string(root.join(UNIT)).unwrap();
        let broken = unit.replace("ProtectHome=yes", "ProtectHom=yes");
        assert_ne!(broken, unit);
        fs::write(root.join("etc/systemd/system/nf-broken.service"), broken).unwrap();
        let out = Command::new(crate::cmd::which("systemd-analyze").unwrap())
            .args(["verify", "--man=no", "--generators=no"])
            .arg(format!("--root={}", root.display()))
            .arg("nf-broken.service")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("ProtectHom"), "{said}");
    }
}
