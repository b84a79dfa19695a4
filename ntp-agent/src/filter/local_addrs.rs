//! The box's own addresses, which decide what is "for us" as opposed to
//! transit traffic, kept current from rtnetlink address events.

use std::{
    collections::BTreeMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, Result};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::{ifaddrs::getifaddrs, net::if_::InterfaceFlags};
use ntp_filter_common::{local_kind, AddrKey};

use super::{maps::FilterMaps, reconcile};

const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

/// Every address on every interface of this network namespace, plus the
/// IPv4 subnet broadcast addresses.
pub fn current() -> Result<BTreeMap<AddrKey, u8>> {
    let mut addrs = BTreeMap::new();
    for ifa in getifaddrs().context("listing interface addresses (getifaddrs)")? {
        if let Some(ip) = ifa.address.as_ref().and_then(ip_of) {
            addrs.insert(AddrKey::from_ip(ip), local_kind::UNICAST);
        }
        if ifa.flags.contains(InterfaceFlags::IFF_BROADCAST) {
            if let Some(ip) = ifa.broadcast.as_ref().and_then(ip_of) {
                addrs
                    .entry(AddrKey::from_ip(ip))
                    .or_insert(local_kind::BROADCAST);
            }
        }
    }
    Ok(addrs)
}

fn ip_of(sa: &nix::sys::socket::SockaddrStorage) -> Option<IpAddr> {
    if let Some(v4) = sa.as_sockaddr_in() {
        return Some(IpAddr::V4(v4.ip()));
    }
    sa.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
}

/// Resynchronises the map with the interfaces now.
pub fn sync(maps: &Mutex<FilterMaps>) -> Result<()> {
    let desired = current()?;
    let mut maps = maps.lock().expect("maps lock poisoned");
    let p = reconcile::apply_local(&mut maps, &desired)?;
    if !p.is_empty() {
        tracing::info!(
            added = p.upserts.len(),
            removed = p.removals.len(),
            total = desired.len(),
            "local addresses reconciled"
        );
    }
    Ok(())
}

/// Subscribes to address changes before the first sync, so no change can
/// fall between the two, then resyncs on every event on a background thread.
pub fn watch(maps: Arc<Mutex<FilterMaps>>) -> Result<std::thread::JoinHandle<()>> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
    socket
        .bind(&SocketAddr::new(0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        .context("subscribing to rtnetlink address events")?;
    sync(&maps)?;
    let handle = std::thread::Builder::new()
        .name("local-addrs".into())
        .spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match socket.recv(&mut &mut buf[..], 0) {
                    Ok(_) => {
                        // Several events come in a burst (an address and its
                        // broadcast, DAD completion); one resync covers them.
                        std::thread::sleep(Duration::from_millis(20));
                        drain(&socket, &mut buf);
                        if let Err(e) = sync(&maps) {
                            tracing::error!("local address sync failed: {e:#}");
                        }
                    }
                    Err(e) => {
                        tracing::error!("rtnetlink receive failed: {e}; resyncing");
                        std::thread::sleep(Duration::from_secs(1));
                        if let Err(e) = sync(&maps) {
                            tracing::error!("local address sync failed: {e:#}");
                        }
                    }
                }
            }
        })
        .context("starting the local address watcher")?;
    Ok(handle)
}

fn drain(socket: &Socket, buf: &mut [u8]) {
    let _ = socket.set_non_blocking(true);
    while socket.recv(&mut &mut buf[..], 0).is_ok() {}
    let _ = socket.set_non_blocking(false);
}
