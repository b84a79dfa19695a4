//! A small command builder that can print itself the way a user would type it.

use anyhow::{bail, Context, Result};
use std::fmt;
use std::process::{Command, Stdio};

#[derive(Clone, Debug)]
pub struct Cmd {
    prog: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Cmd {
    pub fn new(prog: impl Into<String>) -> Self {
        Cmd {
            prog: prog.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// `cargo`, preferring the one that runs us.
    pub fn cargo() -> Self {
        Cmd::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.prog);
        c.args(&self.args);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    /// Runs with inherited stdio; errors unless it exits 0.
    pub fn run(&self) -> Result<()> {
        let st = self
            .command()
            .status()
            .with_context(|| format!("cannot run `{self}`"))?;
        if !st.success() {
            bail!("`{self}` failed ({st})");
        }
        Ok(())
    }

    /// Stdout of a successful run, or `None` if it cannot run or fails.
    pub fn stdout_if_ok(&self) -> Option<String> {
        let out = self
            .command()
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut word = |f: &mut fmt::Formatter<'_>, w: &str| -> fmt::Result {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            f.write_str(&shell_quote(w))
        };
        for (k, v) in &self.env {
            word(f, &format!("{k}={v}"))?;
        }
        // Print `cargo` rather than the absolute path in $CARGO.
        let prog = if self.prog.ends_with("/cargo") {
            "cargo"
        } else {
            &self.prog
        };
        word(f, prog)?;
        for a in &self.args {
            word(f, a)?;
        }
        Ok(())
    }
}

pub fn shell_quote(w: &str) -> String {
    let safe = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=./:,+@%".contains(c));
    if safe {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', r"'\''"))
    }
}

/// Looks `prog` up in $PATH.
pub fn which(prog: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_like_a_shell() {
        let c = Cmd::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "a b", "it's"]);
        assert_eq!(
            c.to_string(),
            r"DEBIAN_FRONTEND=noninteractive apt-get install -y 'a b' 'it'\''s'"
        );
        assert_eq!(
            Cmd::new("/x/bin/cargo").arg("build").to_string(),
            "cargo build"
        );
    }
}
