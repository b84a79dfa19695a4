//! `Observer`: records the frames an interface *received*, via an AF_PACKET
//! socket. Packet taps run after XDP, so a frame the XDP program dropped is
//! never seen here, while a frame it passed always is.
//!
//! "Not seen" is only meaningful once we know the frame had its chance:
//! `sync` sends a marker frame (UDP to port 9, which the NTP filter passes)
//! after the frames under test and waits until the marker is recorded.
//! Frames are processed in send order (see `sender`), and the recording
//! thread reads the socket in queue order, so once the marker is recorded
//! every earlier frame has either been recorded or was dropped.

pub use crate::frame::{parse_udp, Frame, IpInfo, Match, UdpInfo};
use crate::netns::Netns;
use crate::packet::UdpFrame;
use crate::sender::RawSender;
use crate::sys;
use anyhow::{bail, Result};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const MARKER_MAGIC: &[u8] = b"NF-HARNESS-MARKER:";
const PACKET_OUTGOING: u8 = 4;

/// Default time to wait for a marker; generous because CI machines stall.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Default)]
struct State {
    frames: Vec<Frame>,
    markers: Vec<u64>,
    error: Option<String>,
}

/// Background recorder of frames received on one interface.
pub struct Observer {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    ns_name: String,
    ifname: String,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Observer({}:{})", self.ns_name, self.ifname)
    }
}

impl Observer {
    /// Starts recording `ifname` in `ns`. The socket is bound before this
    /// returns, so every frame arriving afterwards is captured.
    pub fn start(ns: &Netns, ifname: &str) -> Result<Self> {
        let name = ifname.to_string();
        let fd = ns.in_ns(move || -> Result<OwnedFd> {
            let fd = sys::packet_socket(sys::if_index(&name)?, sys::ETH_P_ALL)?;
            // The read timeout is how the thread notices the stop flag.
            sys::set_capture_options(&fd, Duration::from_millis(50))?;
            Ok(fd)
        })??;
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name(format!("nf-observe-{ifname}"))
                .spawn(move || record(fd, &shared, &stop))?
        };
        Ok(Self {
            shared,
            stop,
            thread: Some(thread),
            ns_name: ns.name().to_string(),
            ifname: ifname.to_string(),
        })
    }

    pub fn ns_name(&self) -> &str {
        &self.ns_name
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// All frames recorded so far (markers excluded).
    pub fn frames(&self) -> Vec<Frame> {
        self.shared.state.lock().unwrap().frames.clone()
    }

    /// Number of frames so far: a checkpoint for `count_since`.
    pub fn mark(&self) -> usize {
        self.shared.state.lock().unwrap().frames.len()
    }

    pub fn count_matching(&self, pred: impl Fn(&Frame) -> bool) -> usize {
        self.count_since(0, pred)
    }

    /// Counts matching frames recorded after checkpoint `mark`.
    pub fn count_since(&self, mark: usize, pred: impl Fn(&Frame) -> bool) -> usize {
        let st = self.shared.state.lock().unwrap();
        st.frames.iter().skip(mark).filter(|f| pred(f)).count()
    }

    pub fn count(&self, m: &Match) -> usize {
        self.count_matching(|f| m.matches(f))
    }

    pub fn clear(&self) {
        self.shared.state.lock().unwrap().frames.clear();
    }

    /// Waits until a frame matching `pred` is recorded (condvar, no polling).
    pub fn wait_for(&self, pred: impl Fn(&Frame) -> bool, timeout: Duration) -> Result<Frame> {
        let r = self.wait_until(timeout, |st| st.frames.iter().find(|f| pred(f)).cloned())?;
        r.ok_or_else(|| anyhow::anyhow!("{self:?}: no matching frame within {timeout:?}"))
    }

    fn wait_until<T>(
        &self,
        timeout: Duration,
        f: impl Fn(&State) -> Option<T>,
    ) -> Result<Option<T>> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.state.lock().unwrap();
        loop {
            if let Some(v) = f(&st) {
                return Ok(Some(v));
            }
            if let Some(e) = &st.error {
                bail!("{self:?}: recorder failed: {e}");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            st = self.shared.cv.wait_timeout(st, left).unwrap().0;
        }
    }

    /// Barrier: sends `template` (with a fresh marker payload) through
    /// `sender` and waits until this observer recorded it. `template` must
    /// describe a frame the filter passes and that reaches this interface
    /// (e.g. UDP to port 9). After `Ok`, "not recorded" means "not passed".
    pub fn sync(&self, sender: &RawSender, template: &UdpFrame, timeout: Duration) -> Result<()> {
        static SEQ: AtomicU64 = AtomicU64::new(1);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let marker = template.clone().payload(marker_payload(seq));
        sender.send(&marker.frame())?;
        match self.wait_until(timeout, |st| st.markers.contains(&seq).then_some(()))? {
            Some(()) => Ok(()),
            None => bail!(
                "{self:?}: marker {seq} ({} -> {}) not observed within {timeout:?}; \
                 is the path up, and does the filter pass it?",
                template.src,
                template.dst
            ),
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn marker_payload(seq: u64) -> Vec<u8> {
    let mut p = MARKER_MAGIC.to_vec();
    p.extend_from_slice(&std::process::id().to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p
}

/// Marker sequence number if `data` carries one of this process's markers.
fn marker_seq(data: &[u8]) -> Option<u64> {
    let at = data
        .windows(MARKER_MAGIC.len())
        .position(|w| w == MARKER_MAGIC)?;
    let rest = data.get(at + MARKER_MAGIC.len()..at + MARKER_MAGIC.len() + 12)?;
    if rest[..4] != std::process::id().to_be_bytes() {
        return None;
    }
    Some(u64::from_be_bytes(rest[4..12].try_into().ok()?))
}

fn record(fd: OwnedFd, shared: &Shared, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let got = match sys::recv_frame(&fd, &mut buf) {
            Ok(Some(got)) => got,
            Ok(None) => continue,
            Err(e) => {
                shared.state.lock().unwrap().error = Some(e.to_string());
                shared.cv.notify_all();
                return;
            }
        };
        if got.pkttype == PACKET_OUTGOING {
            continue;
        }
        let mut data = buf[..got.len].to_vec();
        if let Some((tpid, tci)) = got.vlan {
            if data.len() >= 12 {
                let tag = [tpid.to_be_bytes(), tci.to_be_bytes()].concat();
                data.splice(12..12, tag);
            }
        }
        let mut st = shared.state.lock().unwrap();
        match marker_seq(&data) {
            Some(seq) => st.markers.push(seq),
            None => st.frames.push(Frame {
                data,
                pkttype: got.pkttype,
            }),
        }
        drop(st);
        shared.cv.notify_all();
    }
}
