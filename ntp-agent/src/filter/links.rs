//! The configured interfaces under a running agent, kept filtered from
//! rtnetlink link events and a look every few seconds:
//! - an interface that disappears is warned about once and shown as
//!   `missing`; when an interface of that name comes back (a new ifindex),
//!   the program is attached to it afresh in the configured mode, its link
//!   re-pinned and its counter slot re-assigned;
//! - a link pin removed under the agent (`ntp-agent detach`) is shown as
//!   `detached` and left so: the operator's word stands, the agent does
//!   not fight it (a restart filters again).
//!
//! Detach makes no link event (nothing about the interface changes), hence
//! the periodic look; `status` and control commands also look first, so
//! they never report a state older than the request.

use std::{
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use super::{attach, slots, FilterMaps, PinDir, XdpModeArg};
use crate::protocol::{InterfaceReport, InterfaceState};

/// `RTMGRP_LINK`: RTM_NEWLINK / RTM_DELLINK of every interface.
const RTMGRP_LINK: u32 = 1;
/// How often the interfaces are looked at without an event.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// A handle on the interfaces' state; clones share it.
#[derive(Clone)]
pub struct Links(Arc<Mutex<Guard>>);

struct Guard {
    /// The loaded program, for attaching again.
    ebpf: aya::Ebpf,
    pins: PinDir,
    mode: XdpModeArg,
    maps: Arc<Mutex<FilterMaps>>,
    ifaces: Vec<Tracked>,
}

struct Tracked {
    name: String,
    state: InterfaceState,
    ifindex: Option<u32>,
    since: SystemTime,
    reason: Option<String>,
    /// The agent removed the stale pin and has not pinned a new link yet
    /// (an attach that failed): no pin then is not the operator's detach.
    unpinned: bool,
}

/// What one look found for an interface.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Live(u32),
    /// There (with this index), but its pinned link is not on it.
    Stale(u32),
    Gone,
    PinRemoved(Option<u32>),
    /// The kernel could not be asked (this look changes nothing).
    Unknown(String),
}

impl Links {
    /// `ifaces`: the configured interfaces, all just attached by `run`.
    pub fn new(
        ebpf: aya::Ebpf,
        pins: PinDir,
        mode: XdpModeArg,
        maps: Arc<Mutex<FilterMaps>>,
        ifaces: &[String],
    ) -> Self {
        let now = SystemTime::now();
        let ifaces = ifaces
            .iter()
            .map(|name| Tracked {
                name: name.clone(),
                state: InterfaceState::Attached,
                ifindex: super::ifindex(name).ok(),
                since: now,
                reason: None,
                unpinned: false,
            })
            .collect();
        Self(Arc::new(Mutex::new(Guard {
            ebpf,
            pins,
            mode,
            maps,
            ifaces,
        })))
    }

    /// Subscribes to link events, looks once (so nothing between the
    /// attach and the subscription is missed), then looks again at every
    /// event and every [`CHECK_INTERVAL`] on a background thread.
    pub fn watch(&self) -> Result<std::thread::JoinHandle<()>> {
        let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
        socket
            .bind(&SocketAddr::new(0, RTMGRP_LINK))
            .context("subscribing to rtnetlink link events")?;
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(CHECK_INTERVAL.as_secs() as _, 0),
        )
        .context("setting the link watcher's timeout")?;
        self.check();
        let links = self.clone();
        std::thread::Builder::new()
            .name("links".into())
            .spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match socket.recv(&mut &mut buf[..], 0) {
                        Ok(_) => {
                            // A deletion or creation comes as several
                            // messages (the link, its state, its addresses).
                            std::thread::sleep(Duration::from_millis(20));
                            drain(&socket, &mut buf);
                        }
                        // The timeout: the periodic look.
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                            drain(&socket, &mut buf)
                        }
                        Err(e) => {
                            tracing::error!("rtnetlink link events: {e}; looking anyway");
                            std::thread::sleep(CHECK_INTERVAL);
                        }
                    }
                    links.check();
                }
            })
            .context("starting the link watcher")
    }

    /// Looks at every interface now, attaching again where one came back.
    pub fn check(&self) {
        self.0.lock().expect("links lock poisoned").check();
    }

    pub fn report(&self) -> Vec<InterfaceReport> {
        let guard = self.0.lock().expect("links lock poisoned");
        guard
            .ifaces
            .iter()
            .map(|t| InterfaceReport {
                name: t.name.clone(),
                state: t.state,
                ifindex: t.ifindex,
                since: t
                    .since
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                reason: t.reason.clone(),
            })
            .collect()
    }
}

impl Guard {
    fn check(&mut self) {
        for i in 0..self.ifaces.len() {
            if self.ifaces[i].state == InterfaceState::Detached {
                // Never re-attached behind the operator's back.
                continue;
            }
            let name = self.ifaces[i].name.clone();
            let pin = self.pins.link(&name);
            let seen = match look(&name, &pin) {
                // The pin a failed attach removed itself: try again.
                Seen::PinRemoved(index) if self.ifaces[i].unpinned => {
                    index.map_or(Seen::Gone, Seen::Stale)
                }
                seen => seen,
            };
            match seen {
                Seen::Unknown(e) => {
                    tracing::debug!(iface = %name, "cannot tell whether the filter is on {name}: {e}");
                }
                Seen::Live(index) => {
                    let was = self.ifaces[i].state;
                    self.set(i, InterfaceState::Attached, Some(index), None);
                    if was != InterfaceState::Attached {
                        tracing::info!(iface = %name, ifindex = index, "the filter is on {name} again");
                    }
                }
                Seen::Gone => {
                    if self.set(
                        i,
                        InterfaceState::Missing,
                        None,
                        Some("the interface is gone; the filter is attached again when an interface of that name appears".into()),
                    ) {
                        tracing::warn!(
                            iface = %name,
                            "interface {name} disappeared: nothing is filtered there while it is away; the filter is attached again when an interface of that name appears"
                        );
                    }
                }
                Seen::PinRemoved(index) => {
                    self.set(
                        i,
                        InterfaceState::Detached,
                        index,
                        Some(format!(
                            "its link pin {} was removed under the running agent (`ntp-agent detach`?); the agent does not attach again on its own: restart it to filter {name}",
                            pin.display()
                        )),
                    );
                    tracing::warn!(
                        iface = %name,
                        pin = %pin.display(),
                        "the filter was removed from {name} under the running agent (its link pin is gone: `ntp-agent detach`?): {name} is NOT filtered; the agent does not attach again on its own, restart it to filter {name}"
                    );
                }
                Seen::Stale(index) => match self.reattach(i, &pin, index) {
                    Ok(how) => {
                        self.set(i, InterfaceState::Attached, Some(index), None);
                        tracing::info!(
                            iface = %name,
                            ifindex = index,
                            xdp = ?how,
                            "interface {name} is back: filter attached again"
                        );
                    }
                    Err(e) => {
                        let why = format!("attaching the filter again failed: {e:#}");
                        if self.set(i, InterfaceState::Failed, Some(index), Some(why.clone())) {
                            tracing::error!(
                                iface = %name,
                                "interface {name} is back but NOT filtered: {why}; retried every {}s",
                                CHECK_INTERVAL.as_secs()
                            );
                        }
                    }
                },
            }
        }
    }

    /// Records a state; `true` when it (or its reason) changed.
    fn set(
        &mut self,
        i: usize,
        state: InterfaceState,
        ifindex: Option<u32>,
        reason: Option<String>,
    ) -> bool {
        let t = &mut self.ifaces[i];
        t.ifindex = ifindex;
        if t.state == state && t.reason == reason {
            return false;
        }
        if t.state != state {
            t.since = SystemTime::now();
        }
        t.state = state;
        t.reason = reason;
        true
    }

    /// The interface came back as `index`: its counter slot first (so its
    /// first packets count under its name), then a fresh attach in place of
    /// the severed link.
    fn reattach(&mut self, i: usize, pin: &Path, index: u32) -> Result<attach::Attachment> {
        let name = self.ifaces[i].name.clone();
        let wanted: Vec<slots::Iface> = self
            .ifaces
            .iter()
            .filter(|t| t.state != InterfaceState::Detached)
            .filter_map(|t| {
                let index = if t.name == name {
                    Some(index)
                } else {
                    super::ifindex(&t.name).ok()
                };
                index.map(|index| slots::Iface {
                    name: t.name.clone(),
                    index,
                })
            })
            .collect();
        slots::assign(&mut self.maps.lock().expect("maps lock poisoned"), &wanted)?;
        let prog = super::program(&mut self.ebpf)?;
        if pin.exists() {
            attach::replace_stale(&name, pin)?;
            self.ifaces[i].unpinned = true;
        }
        let how = attach::attach(prog, &name, self.mode, pin, None)?;
        self.ifaces[i].unpinned = false;
        Ok(how)
    }
}

fn look(name: &str, pin: &Path) -> Seen {
    let index = super::ifindex(name).ok();
    // The pin first: detached is detached, whether or not the interface
    // is there.
    if !pin.exists() {
        return Seen::PinRemoved(index);
    }
    let Some(index) = index else {
        return Seen::Gone;
    };
    match attach::pinned_link_is_on(pin, name) {
        Ok(true) => Seen::Live(index),
        Ok(false) => Seen::Stale(index),
        // Gone between the two looks, or the pin between.
        Err(_) if super::ifindex(name).is_err() => Seen::Gone,
        Err(_) if !pin.exists() => Seen::PinRemoved(Some(index)),
        // Never taken for stale: replacing a live link would open a gap.
        Err(e) => Seen::Unknown(format!("{e:#}")),
    }
}

fn drain(socket: &Socket, buf: &mut [u8]) {
    let _ = socket.set_non_blocking(true);
    while socket.recv(&mut &mut buf[..], 0).is_ok() {}
    let _ = socket.set_non_blocking(false);
}
