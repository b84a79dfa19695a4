//! sd_notify messages as systemd would receive them, through a stand-in
//! NOTIFY_SOCKET.

use std::{os::unix::net::UnixDatagram, time::Duration};

use ntp_agent::{
    filter::Attachment,
    notify::{describe_filter, Notifier, ReadyWhen, SyncState},
};

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

    /// A new listener at `path` (after the previous one went away with its
    /// directory).
    fn at(path: &std::path::Path) -> Self {
        let dir = path.parent().unwrap().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let socket = UnixDatagram::bind(path).unwrap();
        socket.set_nonblocking(true).unwrap();
        Self {
            socket,
            _dir: TempDir(dir),
        }
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

// The only test in this binary: NOTIFY_SOCKET and WATCHDOG_* are
// process-wide, and setting them while other test threads run (and read
// the environment from C code) would race.
fn messages_to_a_fake_notify_socket() {
    // Unset: nothing is sent, every call succeeds quietly.
    std::env::remove_var("NOTIFY_SOCKET");
    let mut quiet = Notifier::from_env(ReadyWhen::Filtering, filter());
    quiet.loop_started(unsynced("waiting for first samples"));
    quiet.watchdog();
    quiet.stopping();
    assert!(quiet.ready_sent(), "readiness is moot without systemd");
    assert!(!quiet.send_failed());

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
    assert!(n.send_failed());
    assert!(!n.ready_sent());
    n.watchdog();
    assert!(!n.ready_sent());
    // systemd back (same path): the next watchdog tick delivers READY=1.
    let systemd = FakeSystemd::at(&path);
    n.watchdog();
    assert!(n.ready_sent());
    let got = systemd.take();
    assert!(got[0].starts_with("READY=1\nSTATUS="), "{got:?}");
    assert_eq!(got[1..], ["WATCHDOG=1\n"]);

    std::env::remove_var("WATCHDOG_USEC");
    std::env::remove_var("WATCHDOG_PID");
    std::env::remove_var("NOTIFY_SOCKET");
}

fn main() -> std::process::ExitCode {
    use ntp_filter_tests::trial;
    ntp_filter_tests::runner::run(vec![trial!(messages_to_a_fake_notify_socket)])
}
