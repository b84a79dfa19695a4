//! A tiny hand-assembled XDP program for the harness self-tests: it drops
//! IPv4 UDP frames to one destination port (no IP options, no VLAN) and
//! passes everything else. It lets the harness prove, without the real
//! filter, that an XDP-dropped frame is never observed while the marker is.

use crate::netns::Netns;
use crate::sys;
use anyhow::{bail, Result};
use std::os::fd::{FromRawFd, OwnedFd};

const BPF_PROG_LOAD: i64 = 5;
const BPF_LINK_CREATE: i64 = 28;
const BPF_LINK_DETACH: i64 = 34;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;

#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8, // dst in the low nibble, src in the high nibble
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

fn program(port: u16) -> Vec<Insn> {
    // Loads compare against network-order bytes read as little-endian u16.
    let port_le = i32::from(u16::from_le_bytes(port.to_be_bytes()));
    vec![
        insn(0x61, 2, 1, 0, 0),       // r2 = ctx->data
        insn(0x61, 3, 1, 4, 0),       // r3 = ctx->data_end
        insn(0xbf, 4, 2, 0, 0),       // r4 = r2
        insn(0x07, 4, 0, 0, 38),      // r4 += 38 (up to the UDP dst port)
        insn(0x2d, 4, 3, 6, 0),       // if r4 > r3 goto pass
        insn(0x69, 5, 2, 12, 0),      // r5 = ethertype
        insn(0x55, 5, 0, 4, 0x0008),  // if r5 != 0x0800 goto pass
        insn(0x69, 5, 2, 36, 0),      // r5 = UDP dst port (IHL 5 assumed)
        insn(0x55, 5, 0, 2, port_le), // if r5 != port goto pass
        insn(0xb7, 0, 0, 0, 1),       // r0 = XDP_DROP
        insn(0x95, 0, 0, 0, 0),       // exit
        insn(0xb7, 0, 0, 0, 2),       // pass: r0 = XDP_PASS
        insn(0x95, 0, 0, 0, 0),       // exit
    ]
}

/// The bpf(2) system call, which neither nix nor libc wraps.
///
/// # Safety
/// `attr` must be a valid `union bpf_attr` for `cmd`: every pointer in it
/// must point to memory that stays alive, and is large enough, for the
/// lengths given beside it.
unsafe fn bpf(cmd: i64, attr: &mut [u64; 16]) -> i64 {
    // SAFETY: upheld by the caller; the size passed is attr's own.
    libc::syscall(
        libc::SYS_bpf,
        cmd,
        attr.as_mut_ptr(),
        std::mem::size_of_val(attr),
    )
}

/// The attached program; dropping the guard detaches it (nothing is pinned).
#[derive(Debug)]
pub struct TestXdp {
    link: OwnedFd,
    _prog: OwnedFd,
}

impl Drop for TestXdp {
    fn drop(&mut self) {
        // Explicit detach: merely closing the link fd is not synchronous,
        // because a child forked by a parallel test may hold a copy of the
        // fd table until its exec, keeping the link alive a little longer.
        let mut attr = [0u64; 16];
        attr[0] = std::os::fd::AsRawFd::as_raw_fd(&self.link) as u64;
        // SAFETY: link_detach takes only the link fd, no pointers.
        if unsafe { bpf(BPF_LINK_DETACH, &mut attr) } < 0 {
            eprintln!(
                "warning: BPF_LINK_DETACH: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

impl TestXdp {
    /// Attaches the "drop IPv4 UDP to `port`" program to `ifname` in `ns`.
    pub fn drop_udp4_port(ns: &Netns, ifname: &str, port: u16) -> Result<Self> {
        let ifname = ifname.to_string();
        ns.in_ns(move || -> Result<Self> {
            let ifindex = sys::if_index(&ifname)?;
            let insns = program(port);
            let license = b"GPL\0";
            let mut log = vec![0u8; 1 << 16];
            // union bpf_attr for BPF_PROG_LOAD, laid out as u64 words.
            let mut attr = [0u64; 16];
            attr[0] = u64::from(BPF_PROG_TYPE_XDP) | (insns.len() as u64) << 32;
            attr[1] = insns.as_ptr() as u64;
            attr[2] = license.as_ptr() as u64;
            attr[3] = 1 | (log.len() as u64) << 32; // log_level, log_size
            attr[4] = log.as_mut_ptr() as u64;
            attr[8] = u64::from(BPF_XDP) << 32; // prog_ifindex 0, expected_attach_type
                                                // SAFETY: insns, license and log are live locals of the lengths
                                                // written beside their pointers, and outlive the call.
            let prog = unsafe { bpf(BPF_PROG_LOAD, &mut attr) };
            if prog < 0 {
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                bail!(
                    "BPF_PROG_LOAD: {}\n{}",
                    std::io::Error::last_os_error(),
                    String::from_utf8_lossy(&log[..end])
                );
            }
            // SAFETY: a new fd returned by BPF_PROG_LOAD, owned by nobody else.
            let prog = unsafe { OwnedFd::from_raw_fd(prog as i32) };
            let mut attr = [0u64; 16];
            attr[0] = std::os::fd::AsRawFd::as_raw_fd(&prog) as u64 | u64::from(ifindex) << 32;
            attr[1] = u64::from(BPF_XDP); // attach_type, flags 0
                                          // SAFETY: link_create takes two fds and an attach type, no pointers.
            let link = unsafe { bpf(BPF_LINK_CREATE, &mut attr) };
            if link < 0 {
                bail!(
                    "BPF_LINK_CREATE (XDP on {ifname}): {}",
                    std::io::Error::last_os_error()
                );
            }
            Ok(Self {
                // SAFETY: a new fd returned by BPF_LINK_CREATE, owned by nobody else.
                link: unsafe { OwnedFd::from_raw_fd(link as i32) },
                _prog: prog,
            })
        })?
    }
}
