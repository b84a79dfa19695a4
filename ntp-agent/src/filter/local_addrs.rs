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
use ntp_filter_common::{local_kind, AddrKey, MAX_LOCAL_ADDRS};

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

/// Resynchronises the map with the interfaces now. `left_out` is how many
/// addresses did not fit last time: a change is logged once, not at every
/// sync.
pub fn sync(maps: &Mutex<FilterMaps>, left_out: &mut usize) -> Result<()> {
    let desired = current()?;
    let mut maps = maps.lock().expect("maps lock poisoned");
    let c = reconcile::apply_local(&mut maps, &desired)?;
    if !c.plan.is_empty() {
        tracing::info!(
            added = c.plan.upserts.len(),
            removed = c.plan.removals.len(),
            total = desired.len(),
            "local addresses reconciled"
        );
    }
    if c.left_out.len() != *left_out {
        if c.left_out.is_empty() {
            tracing::info!("every local address is in the filter again");
        } else {
            tracing::warn!(
                addresses = desired.len(),
                capacity = MAX_LOCAL_ADDRS,
                unprotected = c.left_out.len(),
                first = %c.left_out[0].to_ip(),
                "the box has more addresses than the filter's local-address map holds: NTP to the {} left out is treated as transit (not filtered)",
                c.left_out.len()
            );
        }
        *left_out = c.left_out.len();
    }
    Ok(())
}

/// Receive buffer of the rtnetlink socket: room for the events of a burst
/// of thousands of address changes, so the kernel need not drop any
/// (ENOBUFS). Forced past `net.core.rmem_max` when the agent may.
const RX_BUFFER: usize = 4 << 20;

/// Subscribes to address changes before the first sync, so no change can
/// fall between the two, then resyncs on every event on a background thread.
pub fn watch(maps: Arc<Mutex<FilterMaps>>) -> Result<std::thread::JoinHandle<()>> {
    let mut socket = Socket::new(NETLINK_ROUTE).context("opening an rtnetlink socket")?;
    socket
        .bind(&SocketAddr::new(0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
        .context("subscribing to rtnetlink address events")?;
    grow_rx_buffer(&socket);
    let mut left_out = 0;
    sync(&maps, &mut left_out)?;
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
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        // Events were lost, not the socket: the resync below
                        // reads the whole state, at once.
                        tracing::warn!(
                            "rtnetlink events overflowed the socket buffer; resyncing now"
                        );
                        drain(&socket, &mut buf);
                    }
                    Err(e) => {
                        tracing::error!("rtnetlink receive failed: {e}; resyncing");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                if let Err(e) = sync(&maps, &mut left_out) {
                    tracing::error!("local address sync failed: {e:#}");
                }
            }
        })
        .context("starting the local address watcher")?;
    Ok(handle)
}

fn grow_rx_buffer(socket: &Socket) {
    use std::os::fd::AsRawFd as _;
    let size = RX_BUFFER as libc::c_int;
    // SAFETY: setsockopt on our own socket with a pointer to an int and its
    // size; failure (no CAP_NET_ADMIN) is handled below.
    let forced = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    } == 0;
    if !forced {
        if let Err(e) = socket.set_rx_buf_sz(RX_BUFFER) {
            tracing::warn!("cannot grow the rtnetlink receive buffer: {e}");
        }
    }
}

fn drain(socket: &Socket, buf: &mut [u8]) {
    let _ = socket.set_non_blocking(true);
    while socket.recv(&mut &mut buf[..], 0).is_ok() {}
    let _ = socket.set_non_blocking(false);
}
