//! A spoofed-NTP flood from a raw AF_PACKET socket: prebuilt frames sent
//! with sendmmsg(2) as fast as one thread can, for a fixed time. The
//! socket bypasses the qdisc, so frames go straight to the veth.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _, Result};
use ntp_filter_tests::Netns;
use serde::Serialize;

const PACKET_QDISC_BYPASS: libc::c_int = 20;
const BATCH: usize = 64;

/// One frame of the pool; `random_dst_port` is the offset of a UDP
/// destination port to rewrite with a random value on every send (the
/// UDP checksum must be 0 for that, IPv4 only).
pub struct PoolFrame {
    pub bytes: Vec<u8>,
    pub random_dst_port: Option<usize>,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct FloodStats {
    pub sent: u64,
    /// Send calls that failed (e.g. ENOBUFS).
    pub errors: u64,
    pub secs: f64,
}

impl FloodStats {
    pub fn pps(&self) -> f64 {
        if self.secs > 0.0 {
            self.sent as f64 / self.secs
        } else {
            0.0
        }
    }
}

pub struct Flooder {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Result<FloodStats>>>,
}

impl Flooder {
    /// Opens the socket on `ifname` in `ns` and starts sending for at most
    /// `duration` (or until [`Flooder::stop`]).
    pub fn start(
        ns: &Netns,
        ifname: &str,
        pool: Vec<PoolFrame>,
        duration: Duration,
    ) -> Result<Self> {
        if pool.is_empty() || pool.iter().any(|f| f.bytes.len() < 14) {
            bail!("flood pool must hold complete Ethernet frames");
        }
        let name = ifname.to_string();
        let (fd, ifindex) = ns.in_ns(move || open(&name))??;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("nf-bench-flood".into())
            .spawn(move || send_loop(&fd, ifindex, pool, duration, &flag))
            .context("spawning the flood thread")?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }

    /// Stops (if still running) and returns what was sent.
    pub fn stop(mut self) -> Result<FloodStats> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| anyhow!("the flood thread panicked"))?
    }
}

impl Drop for Flooder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn open(ifname: &str) -> Result<(OwnedFd, u32)> {
    let c = std::ffi::CString::new(ifname)?;
    // SAFETY: plain libc calls on values we own; results are checked.
    unsafe {
        let ifindex = libc::if_nametoindex(c.as_ptr());
        if ifindex == 0 {
            bail!("no interface {ifname}: {}", std::io::Error::last_os_error());
        }
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            bail!("socket(AF_PACKET): {}", std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        let mut sa: libc::sockaddr_ll = std::mem::zeroed();
        sa.sll_family = libc::AF_PACKET as u16;
        sa.sll_ifindex = ifindex as i32;
        if libc::bind(
            fd.as_raw_fd(),
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        ) < 0
        {
            bail!("bind(AF_PACKET): {}", std::io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        // Best effort: without it frames take the qdisc, a little slower.
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_QDISC_BYPASS,
            &one as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        );
        Ok((fd, ifindex))
    }
}

/// xorshift64*: fast and good enough to pick frames and ports.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn send_loop(
    fd: &OwnedFd,
    ifindex: u32,
    mut pool: Vec<PoolFrame>,
    duration: Duration,
    stop: &AtomicBool,
) -> Result<FloodStats> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let addrs: Vec<libc::sockaddr_ll> = pool
        .iter()
        .map(|f| {
            // SAFETY: sockaddr_ll is plain data.
            let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_protocol = u16::from_be_bytes([f.bytes[12], f.bytes[13]]).to_be();
            sa.sll_ifindex = ifindex as i32;
            sa.sll_halen = 6;
            sa.sll_addr[..6].copy_from_slice(&f.bytes[..6]);
            sa
        })
        .collect();
    let start = Instant::now();
    let mut stats = FloodStats::default();
    let mut picks = [0usize; BATCH];
    // SAFETY: zeroed iovec/mmsghdr are valid "empty" values; every pointer
    // set below points into `pool`/`addrs`, which outlive the syscall.
    let mut iov: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    while !stop.load(Ordering::Relaxed) && start.elapsed() < duration {
        for (k, pick) in picks.iter_mut().enumerate() {
            let i = (rng.next() % pool.len() as u64) as usize;
            *pick = i;
            if let Some(at) = pool[i].random_dst_port {
                let port = 1024 + (rng.next() % (65536 - 1024)) as u16;
                pool[i].bytes[at..at + 2].copy_from_slice(&port.to_be_bytes());
            }
            iov[k] = libc::iovec {
                iov_base: pool[i].bytes.as_ptr() as *mut libc::c_void,
                iov_len: pool[i].bytes.len(),
            };
        }
        for (k, &i) in picks.iter().enumerate() {
            let h = &mut msgs[k].msg_hdr;
            h.msg_name = &addrs[i] as *const _ as *mut libc::c_void;
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            h.msg_iov = &mut iov[k];
            h.msg_iovlen = 1;
        }
        // SAFETY: see above.
        let n = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n < 0 {
            stats.errors += 1;
            std::thread::yield_now();
        } else {
            stats.sent += n as u64;
        }
    }
    stats.secs = start.elapsed().as_secs_f64();
    Ok(stats)
}
