//! The test harness of every ntp-filter integration test (`tests/*.rs`):
//! the test runner ([`runner`]: what a test needs, skips reported with
//! their reason), network namespaces and veth topologies, raw frame
//! building, injection and observation, guards for processes and pins, and
//! BPF_PROG_TEST_RUN on the real program ([`test_run`]).
//!
//! Everything a test creates (namespaces, veths, pins, processes, temp dirs)
//! is owned by an RAII guard, so it is torn down on success, failure and
//! panic alike. Only documentation address ranges are used, and all traffic
//! stays inside namespaces the test created itself.
//!
//! Typical use (all fallible calls return `anyhow::Result`):
//! ```no_run
//! use ntp_filter_tests::{addrs::*, *};
//! # fn main() -> anyhow::Result<()> {
//! // Listed as `trial!(outsider_client_is_dropped, Netns, Bpffs, Agent)`.
//! let lab = RouterLab::new("outcli")?;
//! let pins = PinDir::new("outcli")?;
//! let mut agent = run_agent(lab.router(), &["run", "--iface", WAN_IF, "--pin-dir", pins.as_str()])?;
//! agent.wait_for_line("attached", std::time::Duration::from_secs(10))?;
//! let obs = lab.observe_wan()?;
//! let tx = lab.raw_sender()?;
//! let pkt = NtpPacket::new(mode::CLIENT);
//! tx.send(&lab.ntp_frame(sock(OUTSIDER_V4, 50000), sock(ROUTER_V4, 123), pkt).frame())?;
//! lab.sync(&tx, &obs)?; // marker barrier: now "not seen" means "dropped"
//! assert_eq!(obs.count(&Match::ntp(OUTSIDER_V4.into(), mode::CLIENT)), 0);
//! # Ok(()) }
//! ```

// Every unsafe block says why it is sound.
#![deny(clippy::undocumented_unsafe_blocks)]

/// `println!` that carries on when stdout is gone (`cargo xtask lab | head`):
/// the lab's work must not stop half-way because nobody reads its story.
/// The tests' notes use it too (the runner captures nothing).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` with the same carry-on, flushed (the line goes on later).
macro_rules! say_part {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout();
        let _ = write!(out, $($arg)*);
        let _ = out.flush();
    }};
}

pub mod agent;
pub mod bpffs;
pub mod chrony;
pub mod dns;
pub mod frame;
pub mod journal;
pub mod lab;
pub mod netns;
pub mod notelab;
pub mod notify;
pub mod observe;
pub mod packet;
pub mod pki;
pub mod process;
pub mod reap;
pub mod runner;
pub mod sender;
pub mod test_run;
pub mod testxdp;
pub mod topology;
pub mod udp;

mod sys;
mod util;

pub use agent::{synchronized, AgentEnv};
pub use bpffs::{ensure_bpffs, PinDir};
pub use chrony::{ChronyConfig, Chronyd, NtsServer};
pub use dns::Dnsmasq;
pub use journal::{Journal, Lifetime, Made};
pub use lab::{addrs, RouterLab};
pub use netns::Netns;
pub use notify::{Notification, NotifySocket};
pub use observe::{parse_udp, Frame, IpInfo, Match, Observer, UdpInfo};
pub use packet::{ethernet, mode, Ipv6Ext, NtpPacket, UdpFrame};
pub use pki::{ServerCert, TestCa};
pub use process::{agent_bin, run_agent, run_agent_once, Child, Finished};
pub use reap::reap_stale;
pub use runner::{Need, Test};
pub use sender::RawSender;
pub use testxdp::TestXdp;
pub use topology::Topology;
pub use udp::{Datagram, UdpEndpoint};
pub use util::TempDir;
