//! Sockets for the NTP client and server.
//!
//! Each request to a server leaves from a fresh, randomly chosen ephemeral
//! port (RFC 9109). The port is written into the filter's sources map
//! *before* the request is sent, so the NIC drops replies to any other port:
//! an off-path attacker has to guess the port as well as the transmit
//! timestamp. Symmetric peers and server mode use the NTP port itself; that
//! socket exists only while something needs it, so a plain client never
//! listens on 123 (the router note's complaint: "port 123 still answers").

pub mod admission;
pub mod resolve;
pub mod stamp;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::{Context as _, Result};
use ntp_filter_common::{AddrKey, SourceClass, SourceEntry};
use ntp_proto::{NtpTimestamp, SourceId};
use tokio::{io::Interest, net::UdpSocket, sync::mpsc, task::JoinHandle};

use crate::{clock::realtime_now, filter::FilterMaps, model::Stamp};

/// A datagram for the agent, timestamped when the kernel received it (or,
/// failing that, when the agent read it).
pub struct Received {
    /// Sender as the socket saw it: IPv4 traffic arrives on IPv4 sockets,
    /// so an IPv6 sender embedding an IPv4 address (`::ffff:192.0.2.20`)
    /// really sent over IPv6 and is not that IPv4 host.
    pub from: SocketAddr,
    /// Known when it came in on a socket used for one server only.
    pub source: Option<SourceId>,
    /// Came in on the NTP port (peers, clients) rather than a request port.
    pub on_ntp_port: bool,
    pub data: Vec<u8>,
    /// System time (not yet the disciplined clock's).
    pub at: Stamp<NtpTimestamp>,
    /// Monotonic time of the read, next to `at`.
    pub mono: Instant,
}

/// When a datagram left: the kernel's transmit stamp, or the clock read
/// immediately before the send call.
pub struct Sent {
    /// System time (not yet the disciplined clock's).
    pub at: Stamp<NtpTimestamp>,
    pub mono: Instant,
}

/// A port bound for both families: one IPv4 socket and one IPv6-only
/// socket rather than a dual-stack one, so that an IPv6 datagram from
/// `::ffff:192.0.2.20` can never pass for the IPv4 host 192.0.2.20, nor a
/// reply to it go out over IPv4 (a cross-family reflection).
struct Bound {
    v4: Arc<UdpSocket>,
    v6: Arc<UdpSocket>,
    readers: [JoinHandle<()>; 2],
}

impl Bound {
    fn socket_for(&self, to: &SocketAddr) -> &Arc<UdpSocket> {
        match to {
            SocketAddr::V4(_) => &self.v4,
            SocketAddr::V6(_) => &self.v6,
        }
    }
}

impl Drop for Bound {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

pub struct Transport {
    ntp_port: u16,
    /// `--source-port`: every request leaves from this port.
    source_port: Option<u16>,
    maps: Option<Arc<Mutex<FilterMaps>>>,
    to_agent: mpsc::Sender<Received>,
    /// The reader of the socket of each server's outstanding request.
    per_server: HashMap<SourceId, JoinHandle<()>>,
    /// The NTP port (both families).
    ntp_socket: Option<Bound>,
    /// `source_port` (both families) when that is not the NTP port.
    fixed_socket: Option<Bound>,
}

fn bind_family(ip: IpAddr, port: u16) -> Result<UdpSocket> {
    Ok(UdpSocket::from_std(bind_socket(ip, port)?.into())?)
}

/// Binds and closes the UDP sockets a start will bind on `ports` (both
/// families, as the transport binds them), so that a busy or forbidden
/// port stops `run` before anything is attached. (Another process can
/// still take a port in between; `run` then undoes its start.)
pub fn probe_ports(ports: &[u16]) -> Result<()> {
    for &port in ports {
        for ip in [
            IpAddr::from(Ipv4Addr::UNSPECIFIED),
            IpAddr::from(Ipv6Addr::UNSPECIFIED),
        ] {
            drop(bind_socket(ip, port)?);
        }
    }
    Ok(())
}

fn bind_socket(ip: IpAddr, port: u16) -> Result<socket2::Socket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(SocketAddr::new(ip, port)),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if ip.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    stamp::enable(&socket);
    socket
        .bind(&SocketAddr::new(ip, port).into())
        .map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::PermissionDenied {
                "the agent lacks CAP_NET_BIND_SERVICE"
            } else {
                "is another NTP daemon running?"
            };
            anyhow::anyhow!("binding UDP port {port} ({why}): {e}")
        })?;
    Ok(socket)
}

fn spawn_reader(
    socket: Arc<UdpSocket>,
    source: Option<SourceId>,
    on_ntp_port: bool,
    to_agent: mpsc::Sender<Received>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok(d) = socket
                .async_io(Interest::READABLE, || stamp::recv(&*socket, &mut buf))
                .await
            else {
                return;
            };
            let received = Received {
                at: stamp::choose(d.kernel, realtime_now()),
                mono: Instant::now(),
                from: d.from,
                source,
                on_ntp_port,
                data: buf[..d.len].to_vec(),
            };
            if to_agent.send(received).await.is_err() {
                return;
            }
        }
    })
}

/// Sends `packet` (to `to`, or the connected peer), reading the clock
/// immediately before the send call, then takes the kernel's transmit
/// stamp if it already has one.
async fn send_stamped(
    socket: &UdpSocket,
    packet: &[u8],
    to: Option<SocketAddr>,
    stamp_field: Option<&(dyn Fn(NtpTimestamp) -> NtpTimestamp + Sync)>,
) -> Result<Sent> {
    let mut packet = packet.to_vec();
    loop {
        socket.writable().await?;
        let before = realtime_now();
        let mono = Instant::now();
        if let Some(stamp_field) = stamp_field {
            // A server reply's T3: written last thing before it leaves.
            let t3 = stamp_field(before);
            ntp_proto::NtpPacket::restamp_transmit(&mut packet, t3);
        }
        let sent = match to {
            Some(to) => socket.try_send_to(&packet, to),
            None => socket.try_send(&packet),
        };
        match sent {
            Ok(_) => {
                return Ok(Sent {
                    at: stamp::choose(stamp::sent_at(socket, before), before),
                    mono,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

impl Transport {
    /// `maps` is `None` only in tests that run without a filter.
    pub fn new(
        ntp_port: u16,
        source_port: Option<u16>,
        maps: Option<Arc<Mutex<FilterMaps>>>,
        to_agent: mpsc::Sender<Received>,
    ) -> Result<Self> {
        let mut t = Self {
            ntp_port,
            source_port,
            maps,
            to_agent,
            per_server: HashMap::new(),
            ntp_socket: None,
            fixed_socket: None,
        };
        match source_port {
            Some(p) if p == ntp_port => t.open_ntp_port()?,
            Some(p) => t.fixed_socket = Some(t.bind(p, false)?),
            None => {}
        }
        Ok(t)
    }

    fn bind(&self, port: u16, on_ntp_port: bool) -> Result<Bound> {
        let v4 = Arc::new(bind_family(Ipv4Addr::UNSPECIFIED.into(), port)?);
        let v6 = Arc::new(bind_family(Ipv6Addr::UNSPECIFIED.into(), port)?);
        let readers =
            [&v4, &v6].map(|s| spawn_reader(s.clone(), None, on_ntp_port, self.to_agent.clone()));
        Ok(Bound { v4, v6, readers })
    }

    /// Opens the NTP-port socket (peers, server mode) if it is not open.
    pub fn open_ntp_port(&mut self) -> Result<()> {
        if self.ntp_socket.is_none() {
            self.ntp_socket = Some(self.bind(self.ntp_port, true)?);
            tracing::info!(port = self.ntp_port, "listening on the NTP port");
        }
        Ok(())
    }

    /// Closes the NTP-port socket unless requests leave from it.
    pub fn close_ntp_port(&mut self) {
        if self.source_port != Some(self.ntp_port) && self.ntp_socket.take().is_some() {
            tracing::info!(port = self.ntp_port, "NTP port closed");
        }
    }

    fn fixed(&self) -> Option<&Bound> {
        match self.source_port {
            Some(p) if p == self.ntp_port => self.ntp_socket.as_ref(),
            Some(_) => self.fixed_socket.as_ref(),
            None => None,
        }
    }

    /// The reply port a server's entry starts with: the fixed source port,
    /// or 0 (nothing accepted) until its first request picks one.
    pub fn initial_reply_port(&self) -> u16 {
        self.source_port.unwrap_or(0)
    }

    fn put_entry(&self, ip: IpAddr, entry: SourceEntry) -> Result<()> {
        let Some(maps) = &self.maps else {
            return Ok(());
        };
        maps.lock()
            .expect("maps lock poisoned")
            .put_source(AddrKey::from_ip(ip), entry)
            .with_context(|| format!("updating {ip} in the filter"))
    }

    /// Adds a source that joined at run time to the filter; a server
    /// answers from `server_port` (the NTP port, or the one its NTS key
    /// establishment negotiated).
    pub fn admit(&self, ip: IpAddr, class: SourceClass, server_port: u16) -> Result<()> {
        let entry = match class {
            SourceClass::Server => SourceEntry::server(self.initial_reply_port(), server_port),
            _ => SourceEntry::peer(),
        };
        self.put_entry(ip, entry)
    }

    /// How many more addresses the filter's sources table takes now (no
    /// limit without a filter; none when it cannot be read, so callers
    /// make room first).
    pub fn filter_room(&self) -> usize {
        let Some(maps) = &self.maps else {
            return usize::MAX;
        };
        let count = maps.lock().expect("maps lock poisoned").source_count();
        count.map_or(0, |n| {
            (ntp_filter_common::MAX_SOURCES as usize).saturating_sub(n)
        })
    }

    /// Removes a source that left from the filter.
    pub fn forget(&mut self, id: SourceId, ip: IpAddr) -> Result<()> {
        if let Some(reader) = self.per_server.remove(&id) {
            reader.abort();
        }
        let Some(maps) = &self.maps else {
            return Ok(());
        };
        maps.lock()
            .expect("maps lock poisoned")
            .remove_source(&AddrKey::from_ip(ip))
            .with_context(|| format!("removing {ip} from the filter"))
    }

    /// Sends a client request to a server (at `dst`: the NTP port, or the
    /// one NTS negotiated) from a new ephemeral port (or the fixed one),
    /// registering both ports with the filter first.
    pub async fn send_to_server(
        &mut self,
        id: SourceId,
        dst: SocketAddr,
        packet: &[u8],
    ) -> Result<Sent> {
        let server = dst.ip();
        if let Some(fixed) = self.fixed() {
            let fixed = fixed.socket_for(&dst).clone();
            let entry = SourceEntry::server(fixed.local_addr()?.port(), dst.port());
            self.put_entry(server, entry)?;
            return send_stamped(&fixed, packet, Some(dst), None).await;
        }
        let local: SocketAddr = match server {
            IpAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
            IpAddr::V6(_) => "[::]:0".parse().expect("literal"),
        };
        let socket = UdpSocket::bind(local).await?;
        stamp::enable(&socket);
        // connect() makes the kernel drop datagrams from anyone else too.
        socket.connect(dst).await?;
        let entry = SourceEntry::server(socket.local_addr()?.port(), dst.port());
        self.put_entry(server, entry)?;
        // T1 is read in here, after the bind, connect and filter write.
        let sent = send_stamped(&socket, packet, None, None).await?;
        let reader = spawn_reader(Arc::new(socket), Some(id), false, self.to_agent.clone());
        // The previous request's socket closes here: a late reply to it is
        // stale, and the NIC already drops it.
        if let Some(old) = self.per_server.insert(id, reader) {
            old.abort();
        }
        Ok(sent)
    }

    /// Sends from the NTP port: symmetric-mode messages to peers, replies
    /// to clients. `t3`, for a server reply, gives the transmit timestamp
    /// from the system time read right before the send.
    pub async fn send_from_ntp_port(
        &self,
        to: SocketAddr,
        packet: &[u8],
        t3: Option<&(dyn Fn(NtpTimestamp) -> NtpTimestamp + Sync)>,
    ) -> Result<Sent> {
        let bound = self
            .ntp_socket
            .as_ref()
            .context("the NTP port is not open")?;
        send_stamped(bound.socket_for(&to), packet, Some(to), t3).await
    }

    /// Per-request sockets open (at most one per server).
    pub fn request_sockets(&self) -> usize {
        self.per_server.len()
    }

    pub fn ntp_port(&self) -> u16 {
        self.ntp_port
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        for (_, reader) in self.per_server.drain() {
            reader.abort();
        }
    }
}
