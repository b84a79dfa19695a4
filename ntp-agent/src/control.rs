//! The control socket: a Unix stream socket, root-only (0600), one request
//! line in, one JSON line out. `ntp-agent status` is its client.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};

use crate::protocol::{AgentReport, Command};

pub const DEFAULT_PATH: &str = "/run/ntp-filter/agent.sock";
const MAX_REQUEST: usize = 4096;

/// What the control socket (and the metrics page) asks the running
/// agent's event loop, with where the answer goes.
pub enum Request {
    Status(oneshot::Sender<AgentReport>),
    Command(Command, oneshot::Sender<Result<String, String>>),
}

/// The bound control socket; its file goes away with it, whether the agent
/// stops normally or fails after binding.
pub struct Bound {
    pub listener: std::os::unix::net::UnixListener,
    path: PathBuf,
}

impl Drop for Bound {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the socket, refusing to take over one a live agent answers on.
/// A std listener, so it can be bound before the runtime exists.
pub fn bind_std(path: &Path) -> Result<Bound> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!(
                "another agent is already running (its control socket {} answers): stop it first",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale control socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("binding the control socket {}", path.display()))?;
    let bound = Bound {
        listener,
        path: path.to_path_buf(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(bound)
}

/// Accepts connections until the listener is dropped.
pub async fn serve(listener: UnixListener, core: mpsc::Sender<Request>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let core = core.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(stream, core).await {
                tracing::debug!("control connection: {e:#}");
            }
        });
    }
}

async fn answer(stream: UnixStream, core: mpsc::Sender<Request>) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64);
    reader.read_line(&mut line).await?;
    let reply = match line.trim() {
        "status" => {
            let (tx, rx) = oneshot::channel();
            core.send(Request::Status(tx)).await?;
            serde_json::to_string(&rx.await?)?
        }
        other => match other.parse::<Command>() {
            Ok(cmd) => {
                let (tx, rx) = oneshot::channel();
                core.send(Request::Command(cmd, tx)).await?;
                match rx.await? {
                    Ok(done) => serde_json::json!({ "ok": done }).to_string(),
                    Err(e) => serde_json::json!({ "error": e }).to_string(),
                }
            }
            Err(e) => serde_json::json!({ "error": e }).to_string(),
        },
    };
    write.write_all(reply.as_bytes()).await?;
    write.write_all(b"\n").await?;
    Ok(())
}

/// Client side: sends one command and returns the JSON answer.
pub fn request(path: &PathBuf, command: &str) -> Result<serde_json::Value> {
    let mut stream = std::os::unix::net::UnixStream::connect(path).with_context(|| {
        format!(
            "the agent is not running or not reachable (control socket {})",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(stream, "{command}")?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    let value: serde_json::Value = serde_json::from_str(&line).context("malformed answer")?;
    if let Some(err) = value.get("error").and_then(|e| e.as_str()) {
        bail!("{err}");
    }
    Ok(value)
}

/// Sends a change to the running agent and prints what it did.
pub fn command(path: &PathBuf, cmd: &Command) -> Result<()> {
    let value = request(path, &cmd.to_line())?;
    println!("{}", value["ok"].as_str().unwrap_or("done"));
    Ok(())
}
