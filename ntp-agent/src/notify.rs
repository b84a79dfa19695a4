//! systemd's service notifications (`Type=notify`, sd_notify(3)): READY=1
//! once the agent does its job, a STATUS= line whenever what `systemctl
//! status` should say changes, WATCHDOG=1 from the event loop, STOPPING=1
//! on the way out.
//!
//! Without NOTIFY_SOCKET (started by hand, or by a unit that is not
//! `Type=notify`) every call does nothing and nothing is logged.

use std::time::Duration;

use sd_notify::NotifyState;

use crate::filter::Attachment;

/// When the service counts as started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyWhen {
    /// The filter is attached everywhere and the control socket is up.
    Filtering,
    /// That, and the clock is synchronized for the first time
    /// (`--ready-after-sync`, for units ordered before time-sync.target).
    Synchronized,
}

/// What the STATUS= line says about time sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// `to`: the selected source; `stratum`: the agent's own, as in
    /// `ntp-agent status` and chronyc tracking.
    Synchronized {
        to: String,
        stratum: u8,
    },
    Unsynchronized {
        reason: String,
    },
}

impl SyncState {
    pub fn is_synchronized(&self) -> bool {
        matches!(self, SyncState::Synchronized { .. })
    }

    fn describe(&self) -> String {
        match self {
            SyncState::Synchronized { to, stratum } => {
                format!("synchronized to {to}, stratum {stratum}")
            }
            SyncState::Unsynchronized { reason } => format!("not synchronized: {reason}"),
        }
    }
}

/// `filter on eth0 (native), eth1 (skb)`.
pub fn describe_filter(attached: &[(String, Attachment)]) -> String {
    let each: Vec<String> = attached
        .iter()
        .map(|(iface, how)| {
            let how = match how {
                Attachment::Native => "native",
                Attachment::Skb => "skb",
                Attachment::Reused => "existing link",
            };
            format!("{iface} ({how})")
        })
        .collect();
    format!("filter on {}", each.join(", "))
}

pub struct Notifier {
    /// NOTIFY_SOCKET was set when the agent started.
    enabled: bool,
    ready_when: ReadyWhen,
    filter: String,
    /// The event loop runs (sockets bound, sources added).
    running: bool,
    ready_sent: bool,
    state: Option<SyncState>,
    last_status: Option<String>,
    watchdog: Option<Duration>,
    /// A failed send is worth one warning, not one per watchdog ping.
    warned: bool,
}

impl Notifier {
    /// Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (left set: the
    /// agent starts no children that could misuse them).
    pub fn from_env(ready_when: ReadyWhen, filter: String) -> Self {
        let mut usec = 0;
        let watchdog = sd_notify::watchdog_enabled(false, &mut usec)
            .then(|| watchdog_interval(usec))
            .flatten();
        Self {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty()),
            ready_when,
            filter,
            running: false,
            ready_sent: false,
            state: None,
            last_status: None,
            watchdog,
            warned: false,
        }
    }

    /// How often the event loop should send WATCHDOG=1, if systemd watches.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.enabled)
    }

    pub fn ready_sent(&self) -> bool {
        self.ready_sent
    }

    /// The event loop is about to run: every interface is filtered, the
    /// control socket is bound and the NTP sockets are open.
    pub fn loop_started(&mut self, state: SyncState) {
        self.running = true;
        self.state = Some(state);
        self.update();
    }

    /// Called by the state log when synchronization or its reason changed.
    pub fn sync_changed(&mut self, state: SyncState) {
        if self.state.as_ref() == Some(&state) {
            return;
        }
        self.state = Some(state);
        self.update();
    }

    pub fn watchdog(&mut self) {
        self.send(&[NotifyState::Watchdog]);
    }

    pub fn stopping(&mut self) {
        let status = format!("stopping; {} stays attached (fail closed)", self.filter);
        self.send(&[NotifyState::Stopping, NotifyState::Status(&status)]);
    }

    fn status_line(&self) -> Option<String> {
        let state = self.state.as_ref()?;
        Some(format!("{}; {}", self.filter, state.describe()))
    }

    fn update(&mut self) {
        if !self.running {
            return;
        }
        let ready_now = !self.ready_sent
            && match self.ready_when {
                ReadyWhen::Filtering => true,
                ReadyWhen::Synchronized => {
                    self.state.as_ref().is_some_and(SyncState::is_synchronized)
                }
            };
        let status = self.status_line();
        let changed = status.is_some() && status != self.last_status;
        let mut states = Vec::new();
        if ready_now {
            states.push(NotifyState::Ready);
        }
        if let (true, Some(s)) = (changed, status.as_deref()) {
            states.push(NotifyState::Status(s));
        }
        if states.is_empty() {
            return;
        }
        // Status text and readiness in one datagram: whoever sees READY=1
        // also sees what it was ready with.
        if self.send(&states) {
            self.ready_sent |= ready_now;
            self.last_status = status;
        }
    }

    /// Returns whether the message went out (or there is nobody to tell).
    fn send(&mut self, states: &[NotifyState]) -> bool {
        if !self.enabled {
            return true;
        }
        match sd_notify::notify(false, states) {
            Ok(()) => true,
            Err(e) if !self.warned => {
                self.warned = true;
                tracing::warn!("telling systemd our state (NOTIFY_SOCKET) failed: {e}");
                false
            }
            Err(e) => {
                tracing::debug!("sd_notify failed again: {e}");
                false
            }
        }
    }
}

/// Half the watchdog timeout, so one late ping never trips it.
fn watchdog_interval(usec: u64) -> Option<Duration> {
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixDatagram;

    use super::*;

    fn filter() -> String {
        describe_filter(&[
            ("eth0".into(), Attachment::Native),
            ("eth1".into(), Attachment::Skb),
        ])
    }

    fn synced() -> SyncState {
        SyncState::Synchronized {
            to: "192.0.2.10".into(),
            stratum: 3,
        }
    }

    fn unsynced(reason: &str) -> SyncState {
        SyncState::Unsynchronized {
            reason: reason.into(),
        }
    }

    struct FakeSystemd {
        socket: UnixDatagram,
        _dir: TempDir,
    }

    impl FakeSystemd {
        fn new() -> (Self, std::path::PathBuf) {
            let dir = TempDir::new();
            let path = dir.0.join("notify");
            let socket = UnixDatagram::bind(&path).unwrap();
            socket.set_nonblocking(true).unwrap();
            (Self { socket, _dir: dir }, path)
        }

        /// Every datagram received so far.
        fn take(&self) -> Vec<String> {
            let mut out = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = self.socket.recv(&mut buf) {
                out.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            }
            out
        }
    }

    struct TempDir(std::path::PathBuf);

    impl TempDir {
        fn new() -> Self {
            let p = std::env::temp_dir().join(format!(
                "ntp-agent-notify-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn filter_description_names_each_interface_and_how() {
        assert_eq!(filter(), "filter on eth0 (native), eth1 (skb)");
        assert_eq!(
            describe_filter(&[("wan0".into(), Attachment::Reused)]),
            "filter on wan0 (existing link)"
        );
    }

    #[test]
    fn watchdog_pings_at_half_the_timeout() {
        assert_eq!(watchdog_interval(0), None);
        assert_eq!(watchdog_interval(30_000_000), Some(Duration::from_secs(15)));
    }

    // One test for everything that needs NOTIFY_SOCKET, because the
    // variable is process-wide and tests run in parallel threads.
    #[test]
    fn messages_to_a_fake_notify_socket() {
        // Unset: nothing is sent, every call succeeds quietly.
        std::env::remove_var("NOTIFY_SOCKET");
        let mut quiet = Notifier::from_env(ReadyWhen::Filtering, filter());
        quiet.loop_started(unsynced("waiting for first samples"));
        quiet.watchdog();
        quiet.stopping();
        assert!(quiet.ready_sent(), "readiness is moot without systemd");
        assert!(!quiet.warned);

        let (systemd, path) = FakeSystemd::new();
        std::env::set_var("NOTIFY_SOCKET", &path);

        // Ready once the loop runs, with the status in the same datagram.
        let mut n = Notifier::from_env(ReadyWhen::Filtering, filter());
        n.sync_changed(unsynced("waiting for first samples"));
        assert_eq!(systemd.take(), Vec::<String>::new(), "not running yet");
        n.loop_started(unsynced("waiting for first samples"));
        assert_eq!(
            systemd.take(),
            ["READY=1\nSTATUS=filter on eth0 (native), eth1 (skb); not synchronized: waiting for first samples\n"]
        );
        // Same state again: nothing new to say.
        n.sync_changed(unsynced("waiting for first samples"));
        assert_eq!(systemd.take(), Vec::<String>::new());
        n.sync_changed(synced());
        assert_eq!(
            systemd.take(),
            ["STATUS=filter on eth0 (native), eth1 (skb); synchronized to 192.0.2.10, stratum 3\n"]
        );
        n.sync_changed(unsynced("no reachable sources"));
        assert_eq!(
            systemd.take(),
            ["STATUS=filter on eth0 (native), eth1 (skb); not synchronized: no reachable sources\n"]
        );
        n.watchdog();
        n.stopping();
        assert_eq!(
            systemd.take(),
            [
                "WATCHDOG=1\n",
                "STOPPING=1\nSTATUS=stopping; filter on eth0 (native), eth1 (skb) stays attached (fail closed)\n"
            ]
        );

        // --ready-after-sync: status lines first, READY=1 only with sync.
        let mut n = Notifier::from_env(ReadyWhen::Synchronized, filter());
        n.loop_started(unsynced("waiting for first samples"));
        n.sync_changed(unsynced("no reachable sources"));
        assert!(!n.ready_sent());
        let before = systemd.take();
        assert_eq!(before.len(), 2, "{before:?}");
        assert!(before.iter().all(|m| !m.contains("READY=1")), "{before:?}");
        n.sync_changed(synced());
        assert_eq!(
            systemd.take(),
            ["READY=1\nSTATUS=filter on eth0 (native), eth1 (skb); synchronized to 192.0.2.10, stratum 3\n"]
        );
        // Losing and regaining sync never repeats READY=1.
        n.sync_changed(unsynced("no reachable sources"));
        n.sync_changed(synced());
        let after = systemd.take();
        assert_eq!(after.len(), 2, "{after:?}");
        assert!(after.iter().all(|m| !m.contains("READY=1")), "{after:?}");

        // No watchdog unless systemd asked for one, for this very process.
        assert_eq!(n.watchdog_interval(), None);
        std::env::set_var("WATCHDOG_USEC", "4000000");
        std::env::set_var("WATCHDOG_PID", (std::process::id() + 1).to_string());
        assert_eq!(
            Notifier::from_env(ReadyWhen::Filtering, filter()).watchdog_interval(),
            None
        );
        std::env::set_var("WATCHDOG_PID", std::process::id().to_string());
        assert_eq!(
            Notifier::from_env(ReadyWhen::Filtering, filter()).watchdog_interval(),
            Some(Duration::from_secs(2))
        );

        // A socket that went away: one warning, then the agent carries on.
        drop(systemd);
        let mut n = Notifier::from_env(ReadyWhen::Filtering, filter());
        n.loop_started(synced());
        assert!(n.warned);
        assert!(!n.ready_sent());
        n.watchdog();

        std::env::remove_var("WATCHDOG_USEC");
        std::env::remove_var("WATCHDOG_PID");
        std::env::remove_var("NOTIFY_SOCKET");
    }
}
