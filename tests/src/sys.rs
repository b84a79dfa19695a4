//! Thin libc wrappers for packet sockets; kept here so the unsafe code is in
//! one place.

use anyhow::{bail, Result};
use std::ffi::CString;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

pub(crate) const ETH_P_ALL: u16 = 0x0003;

pub(crate) fn cvt(ret: libc::c_int, what: &str) -> Result<libc::c_int> {
    if ret < 0 {
        bail!("{what}: {}", io::Error::last_os_error());
    }
    Ok(ret)
}

/// Must be called on a thread inside the target namespace: the lookup is
/// answered by the calling thread's network namespace.
pub(crate) fn if_index(ifname: &str) -> Result<u32> {
    let c = CString::new(ifname)?;
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!("no interface {ifname}: {}", io::Error::last_os_error());
    }
    Ok(idx)
}

pub(crate) fn sockaddr_ll(ifindex: u32, protocol: u16) -> libc::sockaddr_ll {
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = protocol.to_be();
    sa.sll_ifindex = ifindex as i32;
    sa
}

/// AF_PACKET/SOCK_RAW socket bound to one interface. Created with protocol 0
/// and only then bound with `protocol`, so it never queues frames from other
/// interfaces in the window between socket() and bind().
pub(crate) fn packet_socket(ifindex: u32, protocol: u16) -> Result<OwnedFd> {
    let fd = cvt(
        unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) },
        "socket(AF_PACKET)",
    )?;
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let sa = sockaddr_ll(ifindex, protocol);
    cvt(
        unsafe {
            libc::bind(
                std::os::fd::AsRawFd::as_raw_fd(&fd),
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        },
        "bind(AF_PACKET)",
    )?;
    Ok(fd)
}

pub(crate) fn setsockopt_int(fd: i32, level: i32, name: i32, value: i32, what: &str) -> Result<()> {
    cvt(
        unsafe {
            libc::setsockopt(
                fd,
                level,
                name,
                &value as *const i32 as *const libc::c_void,
                std::mem::size_of::<i32>() as u32,
            )
        },
        what,
    )?;
    Ok(())
}

/// Hardware address of the interface a packet socket is bound to.
pub(crate) fn bound_mac(fd: i32) -> Result<[u8; 6]> {
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
    cvt(
        unsafe { libc::getsockname(fd, &mut sa as *mut _ as *mut libc::sockaddr, &mut len) },
        "getsockname(AF_PACKET)",
    )?;
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&sa.sll_addr[..6]);
    Ok(mac)
}
