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
                Attachment::Native => "native".to_string(),
                Attachment::Skb => "skb".to_string(),
                // A restart swaps the program inside the pinned link; the
                // kernel knows the mode that link was made with.
                Attachment::Reused => crate::filter::inspect::xdp_mode(iface)
                    .unwrap_or_else(|| "existing link".into()),
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

    /// Also a second chance for a READY=1 whose datagram was lost, so
    /// one failed send cannot leave the start hanging until it times out.
    pub fn watchdog(&mut self) {
        if self.running && !self.ready_sent {
            self.last_status = None;
            self.update();
        }
        self.send(&[NotifyState::Watchdog]);
    }

    /// A send to NOTIFY_SOCKET has failed (and was logged once).
    pub fn send_failed(&self) -> bool {
        self.warned
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
    use super::*;

    fn filter() -> String {
        describe_filter(&[
            ("eth0".into(), Attachment::Native),
            ("eth1".into(), Attachment::Skb),
        ])
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
}
