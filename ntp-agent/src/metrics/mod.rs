//! `run --metrics ADDR:PORT`: Prometheus metrics at `http://ADDR:PORT/metrics`.
//!
//! The agent's part comes from the sync loop over the control socket's
//! channel (the loop answers between events, so nothing in it is locked for
//! a scrape); the filter's part is read from the pinned maps, like
//! `ntp-agent status` does, off the runtime's thread.

mod http;
pub mod render;

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::{anyhow, Result};
use tokio::sync::{mpsc, oneshot};

pub use http::MAX_CONNECTIONS;
pub use render::{render, FilterSnapshot, Format};

use crate::{
    control,
    filter::{inspect, PinDir},
    protocol::AgentReport,
};

/// How long a scrape waits for the sync loop; it answers between events,
/// so only a wedged loop takes this long (the page then lacks its part).
const REPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// `--metrics`: an IP address and a port. Names are refused, so the
/// address the agent listens on is exactly the one written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl std::str::FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let addr: SocketAddr = s.parse().map_err(|_| {
            format!("expected IP:PORT such as 127.0.0.1:9975 or [::1]:9975, not {s:?}")
        })?;
        if addr.port() == 0 {
            return Err(format!("port 0 in {s:?}: give the port scrapers will use"));
        }
        Ok(Self(addr))
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

crate::model::text::serde_as_text!(ListenAddr);

/// Binds the listener; done before the filter is attached, so a bad or
/// busy address stops the start with nothing changed.
pub fn bind(ListenAddr(addr): ListenAddr) -> Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr).map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => ": something else listens there",
            std::io::ErrorKind::AddrNotAvailable => ": not an address of this box",
            _ => "",
        };
        anyhow!("cannot listen on {addr} for --metrics: {e}{hint}")
    })
}

/// Starts answering scrapes on `listener` (already bound by [`bind`]).
pub fn spawn(
    listener: std::net::TcpListener,
    core: mpsc::Sender<control::Call>,
    pins: PinDir,
) -> Result<SocketAddr> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let addr = listener.local_addr()?;
    let scraper = Scraper {
        core,
        pins,
        maps_failing: AtomicBool::new(false),
    };
    tokio::spawn(http::serve(listener, std::sync::Arc::new(scraper)));
    Ok(addr)
}

/// Reads the pinned maps: counters per interface and each interface's XDP
/// mode.
pub fn snapshot(pins: &PinDir) -> Result<FilterSnapshot> {
    let status = inspect::collect(pins)?;
    Ok(FilterSnapshot {
        local_addresses: status.local_addresses,
        local_addresses_unprotected: status.local_addresses_unprotected,
        out_of_scope_counted: status.out_of_scope_counted,
        counters: status.counters_by_interface.into_iter().collect(),
        interfaces: status
            .interfaces
            .into_iter()
            .map(|i| (i.name, i.xdp_mode))
            .collect(),
    })
}

pub(crate) struct Scraper {
    core: mpsc::Sender<control::Call>,
    pins: PinDir,
    /// Logged when the maps become unreadable and again when they recover,
    /// not at every scrape.
    maps_failing: AtomicBool,
}

impl Scraper {
    pub(crate) async fn page(&self, format: Format) -> String {
        let pins = self.pins.clone();
        let (agent, filter) = tokio::join!(
            self.report(),
            tokio::task::spawn_blocking(move || snapshot(&pins))
        );
        let filter = match filter {
            Ok(Ok(f)) => {
                if self.maps_failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("metrics: the filter's maps are readable again");
                }
                Some(f)
            }
            Ok(Err(e)) => {
                if !self.maps_failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!("metrics: cannot read the filter's maps: {e:#}");
                }
                None
            }
            Err(e) => {
                tracing::warn!("metrics: reading the filter's maps failed: {e}");
                None
            }
        };
        render(agent.as_ref(), filter.as_ref(), format)
    }

    async fn report(&self) -> Option<AgentReport> {
        // One deadline for queueing and answering: a stuck loop must not
        // hold scrapes (and their connection slots) forever.
        tokio::time::timeout(REPORT_TIMEOUT, async {
            let (tx, rx) = oneshot::channel();
            self.core.send(control::Call::Status(tx)).await.ok()?;
            rx.await.ok()
        })
        .await
        .ok()
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_addr(s: &str) -> Result<SocketAddr, String> {
        s.parse::<ListenAddr>().map(|a| a.0)
    }

    #[test]
    fn addresses_are_ip_and_port() {
        assert_eq!(
            parse_addr("127.0.0.1:9975").unwrap(),
            "127.0.0.1:9975".parse().unwrap()
        );
        assert_eq!(
            parse_addr("[::1]:9975").unwrap(),
            "[::1]:9975".parse().unwrap()
        );
        for bad in ["localhost:9975", "127.0.0.1", "9975", "127.0.0.1:99999", ""] {
            let e = parse_addr(bad).unwrap_err();
            assert!(e.contains("expected IP:PORT") && e.contains(bad), "{e}");
        }
        assert!(parse_addr("127.0.0.1:0").unwrap_err().contains("port 0"));
    }

    #[test]
    fn a_busy_address_is_named_with_the_flag() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = format!("{:#}", bind(ListenAddr(addr)).unwrap_err());
        assert!(
            e.starts_with(&format!("cannot listen on {addr} for --metrics: ")),
            "{e}"
        );
        assert!(e.contains("something else listens there"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }
}
