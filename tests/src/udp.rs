//! `UdpEndpoint`: a real UDP socket inside a namespace, for sending from a
//! chosen source address/port and for recording what the stack delivered.

use crate::netns::Netns;
use crate::sender::on_lane;
use crate::sys;
use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd};
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
            let mut pfd = libc::pollfd {
                fd: self.sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            unsafe {
                libc::poll(
                    &mut pfd,
                    1,
                    left.as_millis().clamp(1, i32::MAX as u128) as i32,
                )
            };
        }
    }
}

fn bind_in_current_ns(addr: SocketAddr) -> Result<UdpSocket> {
    match addr {
        SocketAddr::V4(_) => Ok(UdpSocket::bind(addr)?),
        SocketAddr::V6(a) => {
            let fd = sys::cvt(
                unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) },
                "socket(AF_INET6)",
            )?;
            let sock = unsafe { UdpSocket::from_raw_fd(fd) };
            sys::setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1, "IPV6_V6ONLY")?;
            let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sa.sin6_family = libc::AF_INET6 as u16;
            sa.sin6_port = a.port().to_be();
            sa.sin6_addr.s6_addr = a.ip().octets();
            sa.sin6_scope_id = a.scope_id();
            sys::cvt(
                unsafe {
                    libc::bind(
                        fd,
                        &sa as *const _ as *const libc::sockaddr,
                        std::mem::size_of::<libc::sockaddr_in6>() as u32,
                    )
                },
                "bind(AF_INET6)",
            )?;
            Ok(sock)
        }
    }
}
