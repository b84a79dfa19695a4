//! Kernel software timestamps on the NTP sockets (SO_TIMESTAMPING), the
//! way chrony and ntpd-rs take them: a reply is stamped when the network
//! stack received it, not when the agent's task woke up to read it, and a
//! request when the driver took it, read back from the socket's error
//! queue. `nix`'s control messages do the parsing; the sockets stay
//! tokio's own (see the README's dependency table for why not
//! `timestamped-socket`).
//!
//! The XDP filter runs before the receive timestamp is taken, so its
//! verdict time is part of the measured delay (the README's timekeeping
//! section gives the figure).

use std::{
    io::{self, IoSliceMut},
    net::{SocketAddr, SocketAddrV4, SocketAddrV6},
    os::fd::{AsFd, AsRawFd},
    time::Duration,
};

use nix::{
    errno::Errno,
    sys::{
        socket::{
            recvmsg, setsockopt, sockopt, ControlMessageOwned, MsgFlags, SockaddrStorage,
            TimestampingFlag,
        },
        time::TimeSpec,
    },
};
use ntp_proto::{NtpDuration, NtpTimestamp};

use crate::model::{Stamp, StampKind};

/// Like chrony: a kernel timestamp further than this from the clock read
/// next to it is wrong (some NAT-accelerating NICs corrupt them), and the
/// clock reading is used instead.
pub const MAX_KERNEL_SKEW: NtpDuration = NtpDuration::from_fixed(1 << 32);

/// Control-message room for one SO_TIMESTAMPING message plus the error
/// queue's sock_extended_err and its address.
const CMSG_ROOM: usize = 256;

/// Asks the kernel for software receive and transmit timestamps on
/// `socket`. `false` (and the agent's own clock readings are used) if the
/// kernel refuses.
pub fn enable(socket: &impl AsFd) -> bool {
    let flags = TimestampingFlag::SOF_TIMESTAMPING_SOFTWARE
        | TimestampingFlag::SOF_TIMESTAMPING_RX_SOFTWARE
        | TimestampingFlag::SOF_TIMESTAMPING_TX_SOFTWARE
        // The error queue returns only the timestamp, not the packet.
        | TimestampingFlag::SOF_TIMESTAMPING_OPT_TSONLY;
    match setsockopt(socket, sockopt::Timestamping, &flags) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("kernel timestamps unavailable, using the agent's clock readings: {e}");
            false
        }
    }
}

fn from_timespec(ts: &TimeSpec) -> Option<NtpTimestamp> {
    let secs = u64::try_from(ts.tv_sec()).ok()?;
    let nanos = u32::try_from(ts.tv_nsec()).ok()?;
    (secs != 0 || nanos != 0).then(|| NtpTimestamp::from_unix(Duration::new(secs, nanos)))
}

/// The software timestamp in a message's control data, if any.
fn software_stamp<S>(msg: &nix::sys::socket::RecvMsg<'_, '_, S>) -> Option<NtpTimestamp> {
    msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::ScmTimestampsns(ts) => from_timespec(&ts.system),
        _ => None,
    })
}

/// Uses the kernel's timestamp if there is one and it is within
/// [`MAX_KERNEL_SKEW`] of `user`, the clock read next to it.
pub fn choose(kernel: Option<NtpTimestamp>, user: NtpTimestamp) -> Stamp<NtpTimestamp> {
    match kernel {
        Some(k) if (k - user).abs() <= MAX_KERNEL_SKEW => Stamp {
            at: k,
            kind: StampKind::Kernel,
            fell_back: false,
        },
        Some(k) => {
            tracing::debug!(
                skew_s = (k - user).to_seconds(),
                "kernel timestamp refused, using the clock reading"
            );
            Stamp {
                at: user,
                kind: StampKind::User,
                fell_back: true,
            }
        }
        None => Stamp {
            at: user,
            kind: StampKind::User,
            fell_back: false,
        },
    }
}

/// One datagram read with [`recv`].
pub struct Datagram {
    pub len: usize,
    pub from: SocketAddr,
    /// When the kernel received it (system clock), if it said.
    pub kernel: Option<NtpTimestamp>,
}

/// One non-blocking read of a datagram and its receive timestamp
/// (`WouldBlock` when there is none: use it inside tokio's `async_io`).
pub fn recv(socket: &impl AsRawFd, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = Vec::with_capacity(CMSG_ROOM);
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let from = msg
        .address
        .as_ref()
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| SocketAddr::V4(SocketAddrV4::from(*v4)))
                .or_else(|| {
                    a.as_sockaddr_in6()
                        .map(|v6| SocketAddr::V6(SocketAddrV6::from(*v6)))
                })
        })
        .ok_or_else(|| io::Error::other("datagram without a sender address"))?;
    Ok(Datagram {
        len: msg.bytes,
        from,
        kernel: software_stamp(&msg),
    })
}

/// Reads every transmit timestamp waiting in `socket`'s error queue and
/// returns the latest one not before `not_before` (the clock read just
/// before the send: an older one belongs to an earlier send whose stamp
/// came late). `None` if the driver gave none (yet): the caller keeps its
/// clock reading.
pub fn sent_at(socket: &impl AsRawFd, not_before: NtpTimestamp) -> Option<NtpTimestamp> {
    let mut latest = None;
    // Bounded: the queue holds at most the sends since the last drain.
    for _ in 0..64 {
        let mut data = [0u8; 64];
        let mut iov = [IoSliceMut::new(&mut data)];
        let mut cmsg = Vec::with_capacity(CMSG_ROOM);
        let msg = match recvmsg::<SockaddrStorage>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
        ) {
            Ok(msg) => msg,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        };
        if let Some(t) = software_stamp(&msg) {
            if (t - not_before).to_seconds() >= 0.0 {
                latest = Some(t);
            }
        }
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::realtime_now;

    #[test]
    fn a_kernel_stamp_far_from_the_clock_is_refused() {
        let user = realtime_now();
        let near = user + NtpDuration::from_seconds(-0.000_05);
        assert_eq!(
            choose(Some(near), user),
            Stamp {
                at: near,
                kind: StampKind::Kernel,
                fell_back: false
            }
        );
        let far = user + NtpDuration::from_seconds(-1.5);
        assert_eq!(
            choose(Some(far), user),
            Stamp {
                at: user,
                kind: StampKind::User,
                fell_back: true
            }
        );
        assert_eq!(choose(None, user).kind, StampKind::User);
        assert!(!choose(None, user).fell_back);
    }

    /// Over loopback (no namespace needed): the kernel stamps both
    /// directions, and its stamps sit between the clock readings around
    /// the calls. The kernel switches receive stamping on for the whole
    /// host in deferred work after the first socket asks, so the first
    /// datagrams may come without one: retry until one has it.
    #[test]
    fn loopback_datagrams_carry_kernel_stamps() {
        let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(enable(&a) && enable(&b));
        let secs = |a: NtpTimestamp, b: NtpTimestamp| (b - a).to_seconds();
        let mut buf = [0u8; 64];
        for _ in 0..200 {
            let before = realtime_now();
            a.send_to(b"ntp", b.local_addr().unwrap()).unwrap();
            let tx = sent_at(&a, before).expect("loopback gives TX software stamps");
            // Nothing is left: a second drain finds no stamp.
            assert_eq!(sent_at(&a, before), None);
            let d = (0..1000)
                .find_map(|_| match recv(&b, &mut buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1));
                        None
                    }
                    r => Some(r.unwrap()),
                })
                .expect("the datagram arrives");
            let after = realtime_now();
            assert_eq!(
                (&buf[..d.len], d.from),
                (&b"ntp"[..], a.local_addr().unwrap())
            );
            assert!(secs(before, tx) >= 0.0 && secs(tx, after) >= 0.0);
            if let Some(rx) = d.kernel {
                assert!(
                    secs(tx, rx) >= 0.0 && secs(rx, after) >= 0.0,
                    "{before:?} {tx:?} {rx:?} {after:?}"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no loopback datagram got a kernel receive stamp in 2 s");
    }
}
