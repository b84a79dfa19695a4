//! The control socket: a Unix stream socket, root-only (0600), one
//! [`Request`] line in, one [`Reply`] line out (see [`crate::protocol`]).
//! Both ends are here: the agent's side, which hands each request to the
//! event loop, and the client's, for `ntp-agent status|server|…`.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::fs::{FileTypeExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{anyhow, bail, Context as _, Result};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _},
    net::{UnixListener, UnixStream},
    sync::{mpsc, oneshot},
};

use crate::{
    net::admission::Admission,
    protocol::{AgentReport, Command, Reply, Request, MAX_REQUEST},
};

pub const DEFAULT_PATH: &str = "/run/ntp-filter/agent.sock";

/// What the control socket (and the metrics page) asks the running
/// agent's event loop, with where the answer goes.
pub enum Call {
    Status(oneshot::Sender<AgentReport>),
    Change(Command, oneshot::Sender<Result<String, String>>),
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
    // Not following a symlink: what is removed is what was looked at.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            bail!(
                "--control-socket {} is {}, not a socket: refusing to replace it; give another path or remove it yourself",
                path.display(),
                file_kind(&meta.file_type())
            );
        }
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

fn file_kind(t: &std::fs::FileType) -> &'static str {
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a special file"
    }
}

/// Control connections open at once. `status` and changes are one line
/// each way from a root-only socket: a handful at a time is plenty, and
/// the cap keeps the agent's descriptors for NTP.
pub const MAX_CONNECTIONS: usize = 32;
/// A client sends its request at once and reads the reply at once; one
/// that idles, or sends half a line, is closed after this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts connections until the listener is dropped.
pub async fn serve(listener: UnixListener, core: mpsc::Sender<Call>) {
    let admission = Admission::new("control socket", MAX_CONNECTIONS);
    loop {
        let (stream, ticket) = admission
            .next(|| async { listener.accept().await.map(|(s, _)| s) })
            .await;
        let core = core.clone();
        tokio::spawn(async move {
            match ticket.serve(answer(stream, core)).await {
                Some(Err(e)) => tracing::debug!("control connection: {e:#}"),
                Some(Ok(())) => {}
                None => tracing::debug!("control connection closed to make room for a newer one"),
            }
        });
    }
}

async fn answer(stream: UnixStream, core: mpsc::Sender<Call>) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = tokio::io::BufReader::new(read).take(MAX_REQUEST as u64);
    tokio::time::timeout(IO_TIMEOUT, reader.read_until(b'\n', &mut line))
        .await
        .context("no complete request line in time")??;
    let request = if line.len() >= MAX_REQUEST && !line.ends_with(b"\n") {
        Err(format!(
            "malformed request: longer than {MAX_REQUEST} bytes"
        ))
    } else {
        Request::from_bytes(&line)
    };
    let reply = match request {
        Ok(Request::Status) => {
            let (tx, rx) = oneshot::channel();
            core.send(Call::Status(tx)).await?;
            Reply::Status(Box::new(rx.await?))
        }
        Ok(Request::Change(cmd)) => {
            let (tx, rx) = oneshot::channel();
            core.send(Call::Change(cmd, tx)).await?;
            match rx.await? {
                Ok(done) => Reply::Ok(done),
                Err(e) => Reply::Error(e),
            }
        }
        Err(e) => Reply::Error(e),
    };
    let mut out = reply.to_line();
    out.push('\n');
    tokio::time::timeout(IO_TIMEOUT, write.write_all(out.as_bytes()))
        .await
        .context("the client did not read the reply in time")??;
    Ok(())
}

/// Client side: sends one request and returns the agent's answer; the
/// agent's refusal is the error.
fn request(path: &Path, request: &Request) -> Result<Reply> {
    let mut stream = std::os::unix::net::UnixStream::connect(path).with_context(|| {
        format!(
            "the agent is not running or not reachable (control socket {})",
            path.display()
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    writeln!(stream, "{}", request.to_line())?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    match Reply::from_line(&line).map_err(|e| anyhow!(e))? {
        Reply::Error(e) => bail!("{e}"),
        reply => Ok(reply),
    }
}

/// The running agent's report (`status`).
pub fn status(path: &Path) -> Result<AgentReport> {
    match request(path, &Request::Status)? {
        Reply::Status(report) => Ok(*report),
        other => bail!("the agent answered {other:?} to `status`"),
    }
}

/// Sends a change to the running agent; returns what it did.
pub fn change(path: &Path, cmd: Command) -> Result<String> {
    match request(path, &Request::Change(cmd))? {
        Reply::Ok(done) => Ok(done),
        other => bail!("the agent answered {other:?} to a change"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ntp-agent-ctl-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// What the agent's side answers to `request`, with no event loop
    /// behind it (the request must not reach one).
    async fn reply_to(request: &[u8]) -> Reply {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (core, _loop) = mpsc::channel(1);
        let served = tokio::spawn(answer(ours, core));
        theirs.write_all(request).await.unwrap();
        let mut line = String::new();
        tokio::io::BufReader::new(theirs)
            .read_line(&mut line)
            .await
            .unwrap();
        served.await.unwrap().unwrap();
        Reply::from_line(&line).unwrap()
    }

    #[tokio::test]
    async fn bad_bytes_get_an_error_reply() {
        let Reply::Error(e) = reply_to(b"{\"status\xff\xfe\n").await else {
            panic!("invalid UTF-8 must be answered with an error");
        };
        assert!(e.contains("not UTF-8: invalid byte at offset 8"), "{e}");
        let Reply::Error(e) = reply_to(&[b'x'; MAX_REQUEST + 10]).await else {
            panic!("an over-long line must be answered with an error");
        };
        assert!(e.contains("longer than 4096 bytes"), "{e}");
        let Reply::Error(e) = reply_to(b"[1, 2]\n").await else {
            panic!("JSON that is no request must be answered with an error");
        };
        assert!(e.contains("malformed request"), "{e}");
    }

    #[test]
    fn only_a_stale_socket_is_replaced() {
        let dir = scratch("stale");
        let file = dir.join("agent.sock");
        std::fs::write(&file, "the operator's notes").unwrap();
        let e = format!(
            "{:#}",
            bind_std(&file).err().expect("a regular file is refused")
        );
        assert!(e.contains("is a regular file, not a socket"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "the operator's notes"
        );

        let link = dir.join("link.sock");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let e = format!("{:#}", bind_std(&link).err().expect("a symlink is refused"));
        assert!(e.contains("is a symbolic link"), "{e}");
        assert!(file.exists() && link.exists());

        let stale = dir.join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        assert!(stale.exists(), "a closed listener leaves its file");
        let bound = bind_std(&stale).expect("a stale socket is replaced");
        drop(bound);
        assert!(!stale.exists(), "the agent's own socket goes with it");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
