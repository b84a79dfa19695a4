//! Packet sockets (AF_PACKET): what neither std, nix nor socket2 wraps —
//! `sockaddr_ll` addresses, PACKET_AUXDATA — in one place. Everything else
//! goes through nix.

use anyhow::{bail, Context as _, Result};
use nix::sys::socket::{
    self, sockopt, AddressFamily, LinkAddr, SockFlag, SockType, SockaddrStorage,
};
use std::ffi::c_void;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

pub(crate) const ETH_P_ALL: u16 = 0x0003;
/// `<linux/if_packet.h>`: a control message per frame with the VLAN tag
/// the kernel took out of it.
const PACKET_AUXDATA: i32 = 8;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// `struct tpacket_auxdata`.
#[repr(C)]
#[derive(Clone, Copy)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// Must be called on a thread inside the target namespace: the lookup is
/// answered by the calling thread's network namespace.
pub(crate) fn if_index(ifname: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(ifname).with_context(|| format!("no interface {ifname}"))
}

fn sockaddr_ll(ifindex: u32, protocol: u16) -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: protocol.to_be(),
        sll_ifindex: ifindex as i32,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    }
}

fn cvt(ret: isize, what: &str) -> Result<usize> {
    if ret < 0 {
        bail!("{what}: {}", io::Error::last_os_error());
    }
    Ok(ret as usize)
}

/// AF_PACKET/SOCK_RAW socket bound to one interface. Created with protocol 0
/// and only then bound with `protocol`, so it never queues frames from other
/// interfaces in the window between socket() and bind().
pub(crate) fn packet_socket(ifindex: u32, protocol: u16) -> Result<OwnedFd> {
    let fd = socket::socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("socket(AF_PACKET)")?;
    let sa = sockaddr_ll(ifindex, protocol);
    // SAFETY: `sa` is a valid, initialised sockaddr_ll and the length
    // passed is its size; the kernel only reads it.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    cvt(ret as isize, "bind(AF_PACKET)")?;
    Ok(fd)
}

/// Hardware address of the interface a packet socket is bound to.
pub(crate) fn bound_mac(fd: &OwnedFd) -> Result<[u8; 6]> {
    // As storage: nix's LinkAddr refuses the short length the kernel
    // reports for a packet socket (the address part is only sll_halen long).
    let sa: SockaddrStorage =
        socket::getsockname(fd.as_raw_fd()).context("getsockname(AF_PACKET)")?;
    sa.as_link_addr()
        .and_then(LinkAddr::addr)
        .context("the packet socket's interface has no hardware address")
}

/// Sends one Ethernet frame out of `ifindex` (its EtherType as protocol).
pub(crate) fn send_frame(fd: &OwnedFd, ifindex: u32, frame: &[u8]) -> Result<()> {
    let mut sa = sockaddr_ll(ifindex, u16::from_be_bytes([frame[12], frame[13]]));
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&frame[..6]);
    // SAFETY: `frame` is a live buffer of `frame.len()` bytes and `sa` a
    // valid sockaddr_ll of the size passed; the kernel only reads both.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&sa as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    cvt(n, "sendto(AF_PACKET)").map(drop)
}

/// Sets up a capturing socket: VLAN tags reported, a queue deep enough
/// for bursts of test frames, and a read timeout for noticing a stop flag.
pub(crate) fn set_capture_options(fd: &OwnedFd, timeout: std::time::Duration) -> Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a live c_int and the length passed is its size;
    // the kernel only reads it.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_AUXDATA,
            (&on as *const libc::c_int).cast::<c_void>(),
            std::mem::size_of::<libc::c_int>() as u32,
        )
    };
    cvt(ret as isize, "PACKET_AUXDATA")?;
    // Root may force a queue above rmem_max.
    socket::setsockopt(fd, sockopt::RcvBufForce, &(8 << 20))
        .or_else(|_| socket::setsockopt(fd, sockopt::RcvBuf, &(8 << 20)))
        .context("SO_RCVBUF")?;
    let tv = nix::sys::time::TimeVal::new(timeout.as_secs() as _, timeout.subsec_micros() as _);
    socket::setsockopt(fd, sockopt::ReceiveTimeout, &tv).context("SO_RCVTIMEO")?;
    Ok(())
}

/// One frame read from a capturing socket.
pub(crate) struct Received {
    pub len: usize,
    /// `sll_pkttype` (0 host, 1 broadcast, 2 multicast, 3 other host,
    /// 4 outgoing).
    pub pkttype: u8,
    /// The VLAN tag (TPID, TCI) the kernel moved out of the frame.
    pub vlan: Option<(u16, u16)>,
}

/// Reads one frame into `buf`; `Ok(None)` on a timeout, an interrupt or
/// a link that went down (the socket keeps working when it comes back).
pub(crate) fn recv_frame(fd: impl AsFd, buf: &mut [u8]) -> io::Result<Option<Received>> {
    let mut sa = sockaddr_ll(0, 0);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut cbuf = [0u64; 32];
    // SAFETY: an all-zero msghdr is a valid empty one (null pointers,
    // zero lengths); every pointer set below is to a live local.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = (&mut sa as *mut libc::sockaddr_ll).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&cbuf);
    // SAFETY: `msg` points at `sa`, `iov` (over `buf`) and `cbuf`, all
    // alive and of the sizes given, for the duration of the call.
    let n = unsafe { libc::recvmsg(fd.as_fd().as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ENETDOWN) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(Received {
        len: n as usize,
        pkttype: sa.sll_pkttype,
        vlan: vlan_from_cmsgs(&msg),
    }))
}

/// The VLAN tag the kernel stripped before the tap (it reports it in
/// PACKET_AUXDATA instead of in the frame bytes).
fn vlan_from_cmsgs(msg: &libc::msghdr) -> Option<(u16, u16)> {
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/CMSG_NXTHDR stay
    // within its control buffer and return null past the end, and an
    // auxdata message carries a whole tpacket_auxdata (read unaligned).
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                let aux = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const TpacketAuxdata);
                if aux.tp_status & TP_STATUS_VLAN_VALID == 0 {
                    return None;
                }
                let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                    aux.tp_vlan_tpid
                } else {
                    0x8100
                };
                return Some((tpid, aux.tp_vlan_tci));
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}
