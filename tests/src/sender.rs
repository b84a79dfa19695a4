//! Sending frames: `RawSender` injects Ethernet frames through an AF_PACKET
//! socket, and every send (raw or UDP) goes through one pinned "lane" thread.
//!
//! Why the lane: a veth delivers a frame to its peer on the CPU that sent
//! it (per-CPU backlog). Frames sent from different CPUs may be processed
//! out of order, which would break the marker barrier ("marker seen ⇒
//! everything sent before it was processed"). Sending everything from one
//! thread pinned to one CPU makes delivery order equal send order.

use crate::netns::Netns;
use crate::sys;
use anyhow::{anyhow, Result};
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

fn lane() -> &'static mpsc::Sender<Job> {
    static LANE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    LANE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("nf-send-lane".into())
            .spawn(move || {
                pin_to_one_cpu();
                for job in rx {
                    // A panicking job must not take the lane down for other tests.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                }
            })
            .expect("spawning send lane");
        tx
    })
}

/// Best effort: unpinned still works, just with a tiny reorder risk.
fn pin_to_one_cpu() {
    use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
    let this_thread = nix::unistd::Pid::from_raw(0);
    let Ok(allowed) = sched_getaffinity(this_thread) else {
        return;
    };
    let Some(cpu) = (0..CpuSet::count()).find(|&c| allowed.is_set(c).unwrap_or(false)) else {
        return;
    };
    let mut one = CpuSet::new();
    if one.set(cpu).is_ok() {
        let _ = sched_setaffinity(this_thread, &one);
    }
}

/// Runs `f` on the send lane and waits for its result.
pub(crate) fn on_lane<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let (rtx, rrx) = mpsc::sync_channel(1);
    lane()
        .send(Box::new(move || {
            let _ = rtx.send(f());
        }))
        .map_err(|_| anyhow!("send lane is gone"))?;
    rrx.recv().map_err(|_| anyhow!("send lane job panicked"))
}

/// Injects raw Ethernet frames on one interface of a namespace. The kernel
/// does not touch them: any source address, VLAN tags, fragments, broken
/// headers go out as given, and arrive at the veth peer like wire traffic.
#[derive(Debug, Clone)]
pub struct RawSender {
    fd: Arc<OwnedFd>,
    ifindex: u32,
    mac: [u8; 6],
    ifname: String,
}

impl RawSender {
    pub fn open(ns: &Netns, ifname: &str) -> Result<Self> {
        let name = ifname.to_string();
        let (fd, ifindex) = ns.in_ns(move || -> Result<(OwnedFd, u32)> {
            let idx = sys::if_index(&name)?;
            // Protocol 0: this socket only sends, it never queues copies of traffic.
            Ok((sys::packet_socket(idx, 0)?, idx))
        })??;
        let mac = sys::bound_mac(&fd)?;
        Ok(Self {
            fd: Arc::new(fd),
            ifindex,
            mac,
            ifname: ifname.to_string(),
        })
    }

    /// MAC of the sending interface (use as the frames' source MAC).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Sends one complete Ethernet frame (destination MAC first).
    pub fn send(&self, frame: &[u8]) -> Result<()> {
        self.send_all(&[frame.to_vec()])
    }

    /// Sends frames in order, in one trip to the send lane.
    pub fn send_all(&self, frames: &[Vec<u8>]) -> Result<()> {
        if let Some(f) = frames.iter().find(|f| f.len() < 14) {
            return Err(anyhow!(
                "frame of {} bytes is shorter than an Ethernet header",
                f.len()
            ));
        }
        let fd = self.fd.clone();
        let ifindex = self.ifindex;
        let frames = frames.to_vec();
        on_lane(move || -> Result<()> {
            for frame in &frames {
                sys::send_frame(&fd, ifindex, frame)?;
            }
            Ok(())
        })?
    }
}
