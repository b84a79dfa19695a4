//! `NotifySocket`: stands in for systemd's notification socket
//! (NOTIFY_SOCKET), so a test sees READY=1, STATUS=, WATCHDOG=1 and
//! STOPPING=1 as systemd would, each with the time it arrived.

use crate::util::TempDir;
use anyhow::{bail, Context, Result};
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One datagram from the service.
#[derive(Clone, Debug)]
pub struct Notification {
    pub at: Instant,
    pub text: String,
}

impl Notification {
    /// Whether one of its lines is exactly `assignment` (e.g. `READY=1`).
    pub fn has(&self, assignment: &str) -> bool {
        self.text.lines().any(|l| l == assignment)
    }

    /// The value of its STATUS= line, if it has one.
    pub fn status(&self) -> Option<&str> {
        self.text.lines().find_map(|l| l.strip_prefix("STATUS="))
    }
}

pub struct NotifySocket {
    socket: UnixDatagram,
    path: PathBuf,
    received: Vec<Notification>,
    _dir: TempDir,
}

impl NotifySocket {
    pub fn new(tag: &str) -> Result<Self> {
        let dir = TempDir::new(tag)?;
        let path = dir.path().join("notify");
        let socket =
            UnixDatagram::bind(&path).with_context(|| format!("binding {}", path.display()))?;
        // Any uid may send to it, as to systemd's: the agent may not be root.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        Ok(Self {
            socket,
            path,
            received: Vec::new(),
            _dir: dir,
        })
    }

    /// The value for NOTIFY_SOCKET.
    pub fn path(&self) -> &str {
        self.path.to_str().expect("temp paths are UTF-8")
    }

    /// Everything received so far, in order.
    pub fn received(&self) -> &[Notification] {
        &self.received
    }

    /// Receives until a datagram satisfies `done` and returns it (the
    /// first earlier one that does, if any); fails at `timeout` with
    /// everything seen.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Notification) -> bool,
    ) -> Result<Notification> {
        if let Some(n) = self.received.iter().find(|n| done(n)) {
            return Ok(n.clone());
        }
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!(
                    "no notification {what} within {timeout:?}; received: {:#?}",
                    self.received
                );
            }
            self.socket.set_read_timeout(Some(left))?;
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    let note = Notification {
                        at: Instant::now(),
                        text: String::from_utf8_lossy(&buf[..n]).into_owned(),
                    };
                    self.received.push(note.clone());
                    if done(&note) {
                        return Ok(note);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(e).context("receiving a notification"),
            }
        }
    }

    /// Receives whatever arrives within `window`.
    pub fn drain(&mut self, window: Duration) -> Result<()> {
        let _ = self.wait_for("(draining)", window, |_| false);
        Ok(())
    }
}
