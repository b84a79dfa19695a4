//! `UdpEndpoint`: a real UDP socket inside a namespace, for sending from a
//! chosen source address/port and for recording what the stack delivered.

use crate::netns::Netns;
use crate::sender::on_lane;
use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub from: SocketAddr,
    pub data: Vec<u8>,
}

impl Datagram {
    /// NTP mode from the first byte, if any.
    pub fn ntp_mode(&self) -> Option<u8> {
        self.data.first().map(|b| b & 7)
    }
}

/// Received datagrams are read lazily (drained from the socket on every
/// query), so a query made after a marker barrier sees everything the
/// kernel had queued — no background thread, no sleeps.
#[derive(Debug)]
pub struct UdpEndpoint {
    sock: Arc<UdpSocket>,
    received: Mutex<Vec<Datagram>>,
}

impl UdpEndpoint {
    /// Binds `addr` inside `ns`. IPv6 sockets are V6ONLY so that `0.0.0.0:123`
    /// and `[::]:123` can be bound side by side.
    pub fn bind(ns: &Netns, addr: SocketAddr) -> Result<Self> {
        let sock = ns
            .in_ns(move || bind_in_current_ns(addr))?
            .with_context(|| format!("binding UDP {addr} in {}", ns.name()))?;
        sock.set_nonblocking(true)?;
        Ok(Self {
            sock: Arc::new(sock),
            received: Mutex::new(Vec::new()),
        })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.sock.local_addr()?)
    }

    /// The underlying socket, e.g. to answer requests as a fake NTP server.
    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Sends one datagram (through the ordered send lane, see `sender`).
    pub fn send_to(&self, payload: &[u8], dst: SocketAddr) -> Result<()> {
        let sock = self.sock.clone();
        let payload = payload.to_vec();
        on_lane(move || sock.send_to(&payload, dst))?
            .with_context(|| format!("UDP send to {dst}"))?;
        Ok(())
    }

    fn drain(&self) -> Result<()> {
        let mut buf = vec![0u8; 65536];
        let mut got = self.received.lock().unwrap();
        loop {
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => got.push(Datagram {
                    from,
                    data: buf[..n].to_vec(),
                }),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                // ICMP errors from earlier sends surface here; they are not datagrams.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
                Err(e) => bail!("recv_from: {e}"),
            }
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Result<Vec<Datagram>> {
        self.drain()?;
        Ok(self.received.lock().unwrap().clone())
    }

    pub fn count_matching(&self, pred: impl Fn(&Datagram) -> bool) -> Result<usize> {
        Ok(self.received()?.iter().filter(|d| pred(d)).count())
    }

    /// Forgets what was received so far.
    pub fn clear(&self) -> Result<()> {
        self.drain()?;
        self.received.lock().unwrap().clear();
        Ok(())
    }

    /// Waits (poll(2), no sleeps) until a datagram matching `pred` arrived.
    pub fn wait_for(
        &self,
        pred: impl Fn(&Datagram) -> bool,
        timeout: Duration,
    ) -> Result<Datagram> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(d) = self.received()?.into_iter().find(|d| pred(d)) {
                return Ok(d);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no matching datagram within {timeout:?}");
            }
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            let wait = PollTimeout::try_from(left.max(Duration::from_millis(1)))
                .unwrap_or(PollTimeout::MAX);
            // EINTR or a timeout: the loop looks again either way.
            let _ = poll(&mut fds, wait);
        }
    }
}

fn bind_in_current_ns(addr: SocketAddr) -> Result<UdpSocket> {
    match addr {
        SocketAddr::V4(_) => Ok(UdpSocket::bind(addr)?),
        SocketAddr::V6(_) => {
            let sock = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))
                .context("socket(AF_INET6)")?;
            sock.set_only_v6(true).context("IPV6_V6ONLY")?;
            sock.bind(&addr.into()).context("bind(AF_INET6)")?;
            Ok(sock.into())
        }
    }
}
