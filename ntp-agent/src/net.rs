//! Sockets for the NTP client.
//!
//! Each request to a server leaves from a fresh, randomly chosen ephemeral
//! port (RFC 9109). The port is written into the filter's sources map
//! *before* the request is sent, so the NIC drops replies to any other port:
//! an off-path attacker has to guess the port as well as the transmit
//! timestamp. Symmetric peers use the NTP port itself, as RFC 5905 requires;
//! that socket exists only when peers are configured (or a fixed source port
//! asks for it), so a plain client never listens on 123.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    sync::{Arc, Mutex},
    time::Instant,
};

use anyhow::{Context as _, Result};
use ntp_filter_common::{SourceClass, SourceEntry};
use ntp_proto::{NtpTimestamp, SourceId};
use tokio::{net::UdpSocket, sync::mpsc, task::JoinHandle};

use crate::{
    clock::realtime_now,
    filter::{local_addrs::key_of, FilterMaps},
};

/// A datagram for the NTP core, timestamped as it came off the socket.
pub struct Received {
    pub from: IpAddr,
    /// Known when it came in on a socket used for one server only.
    pub source: Option<SourceId>,
    pub data: Vec<u8>,
    pub at: NtpTimestamp,
    pub mono: Instant,
}

pub struct Transport {
    ntp_port: u16,
    maps: Option<Arc<Mutex<FilterMaps>>>,
    to_core: mpsc::Sender<Received>,
    /// The reader of the socket of each server's outstanding request.
    per_server: HashMap<SourceId, JoinHandle<()>>,
    /// Dual-stack socket on a fixed port: the NTP port for peers, or the
    /// operator's `--source-port` for everything.
    shared: Option<(Arc<UdpSocket>, JoinHandle<()>)>,
    shared_for_servers: bool,
}

/// IPv4-mapped senders on a dual-stack socket are IPv4 sources.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn bind_dual_stack(port: u16) -> Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_only_v6(false)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket
        .bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port).into())
        .with_context(|| format!("binding UDP port {port}"))?;
    Ok(UdpSocket::from_std(socket.into())?)
}

fn spawn_reader(
    socket: Arc<UdpSocket>,
    source: Option<SourceId>,
    to_core: mpsc::Sender<Received>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let received = Received {
                at: realtime_now(),
                mono: Instant::now(),
                from: canonical(from.ip()),
                source,
                data: buf[..len].to_vec(),
            };
            if to_core.send(received).await.is_err() {
                return;
            }
        }
    })
}

impl Transport {
    /// `shared_port`: bind the fixed dual-stack socket (peers need the NTP
    /// port; `--source-port` gives another). `maps` is `None` only in tests
    /// that run without a filter.
    pub fn new(
        ntp_port: u16,
        shared_port: Option<u16>,
        shared_for_servers: bool,
        maps: Option<Arc<Mutex<FilterMaps>>>,
        to_core: mpsc::Sender<Received>,
    ) -> Result<Self> {
        let shared = match shared_port {
            Some(port) => {
                let socket = Arc::new(bind_dual_stack(port)?);
                let reader = spawn_reader(socket.clone(), None, to_core.clone());
                Some((socket, reader))
            }
            None => None,
        };
        Ok(Self {
            ntp_port,
            maps,
            to_core,
            per_server: HashMap::new(),
            shared,
            shared_for_servers,
        })
    }

    /// The reply port a server's entry starts with: the fixed source port,
    /// or 0 (nothing accepted) until its first request picks one.
    fn initial_reply_port(&self) -> u16 {
        match &self.shared {
            Some((socket, _)) if self.shared_for_servers => {
                socket.local_addr().map(|a| a.port()).unwrap_or(0)
            }
            _ => 0,
        }
    }

    /// Adds a source that joined at run time (a name resolved) to the
    /// filter.
    pub fn admit(&self, ip: IpAddr, class: SourceClass) -> Result<()> {
        let Some(maps) = &self.maps else {
            return Ok(());
        };
        let reply_port = match class {
            SourceClass::Server => self.initial_reply_port(),
            _ => 0,
        };
        maps.lock()
            .expect("maps lock poisoned")
            .put_source(
                key_of(ip),
                SourceEntry {
                    class: class as u8,
                    _pad: 0,
                    reply_port,
                },
            )
            .with_context(|| format!("adding {ip} to the filter"))
    }

    /// Removes a source that left (its name no longer resolves to it).
    pub fn forget(&mut self, id: SourceId, ip: IpAddr) -> Result<()> {
        if let Some(reader) = self.per_server.remove(&id) {
            reader.abort();
        }
        let Some(maps) = &self.maps else {
            return Ok(());
        };
        maps.lock()
            .expect("maps lock poisoned")
            .remove_source(&key_of(ip))
            .with_context(|| format!("removing {ip} from the filter"))
    }

    fn register_reply_port(&self, server: IpAddr, port: u16) -> Result<()> {
        if let Some(maps) = &self.maps {
            let entry = SourceEntry {
                class: SourceClass::Server as u8,
                _pad: 0,
                reply_port: port,
            };
            maps.lock()
                .expect("maps lock poisoned")
                .put_source(key_of(server), entry)
                .context("registering the reply port in the filter")?;
        }
        Ok(())
    }

    /// Sends a client request to a server from a new ephemeral port (or the
    /// shared one), registering the port with the filter first.
    pub async fn send_to_server(
        &mut self,
        id: SourceId,
        server: IpAddr,
        packet: &[u8],
    ) -> Result<()> {
        let dst = SocketAddr::new(server, self.ntp_port);
        if self.shared_for_servers {
            let (shared, _) = self.shared.as_ref().expect("shared socket bound");
            self.register_reply_port(server, shared.local_addr()?.port())?;
            shared.send_to(packet, dst).await?;
            return Ok(());
        }
        let local: SocketAddr = match server {
            IpAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
            IpAddr::V6(_) => "[::]:0".parse().expect("literal"),
        };
        let socket = UdpSocket::bind(local).await?;
        // connect() makes the kernel drop datagrams from anyone else too.
        socket.connect(dst).await?;
        self.register_reply_port(server, socket.local_addr()?.port())?;
        socket.send(packet).await?;
        let reader = spawn_reader(Arc::new(socket), Some(id), self.to_core.clone());
        // The previous request's socket closes here: a late reply to it is
        // stale, and the NIC already drops it.
        if let Some(old) = self.per_server.insert(id, reader) {
            old.abort();
        }
        Ok(())
    }

    /// Sends a symmetric-mode message to a peer from the NTP port.
    pub async fn send_to_peer(&self, peer: IpAddr, packet: &[u8]) -> Result<()> {
        let (shared, _) = self
            .shared
            .as_ref()
            .context("no socket on the NTP port for peers")?;
        shared
            .send_to(packet, SocketAddr::new(peer, self.ntp_port))
            .await?;
        Ok(())
    }
}

impl Drop for Transport {
    fn drop(&mut self) {
        for (_, reader) in self.per_server.drain() {
            reader.abort();
        }
        if let Some((_, reader)) = self.shared.take() {
            reader.abort();
        }
    }
}
