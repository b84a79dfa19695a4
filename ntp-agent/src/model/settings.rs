//! The validated configuration the running agent works from: what `run`
//! (and `check-config`) make of the command line and the config file once
//! every check has passed. Run-time changes (`mode`, `allow`/`deny`) update
//! it in place, so a later recomputation sees the same state.

use std::{path::PathBuf, time::Duration};

use ntp_proto::SystemConfig;

use super::{AclRule, ModeOverride, PollSettings, Role, SourceArg};

#[derive(Clone, Debug)]
pub struct Settings {
    pub servers: Vec<SourceArg>,
    pub peers: Vec<SourceArg>,
    /// `--pool NAME[,maxsources=N]`: servers taken from a name.
    pub pools: Vec<SourceArg>,
    /// `--nts-ca FILE`: trust anchors for NTS-KE besides the system's.
    pub nts_ca: Vec<PathBuf>,
    pub poll: PollSettings,
    pub system: SystemConfig,
    /// Where the frequency estimate is kept across restarts (only used when
    /// the clock is really adjusted).
    pub drift_file: Option<PathBuf>,
    pub ntp_port: u16,
    /// Send every request from this port instead of a random one.
    pub source_port: Option<u16>,
    pub role: Role,
    /// `--allow-modes`, kept so a role change at run time recomputes the
    /// same table the start-up did.
    pub policy_overrides: Vec<ModeOverride>,
    /// The client access list as it stands (changed by `allow`/`deny`).
    pub acl: Vec<AclRule>,
    pub rate_limit: RateLimit,
}

/// Server mode's limit per client (`--ratelimit-burst`,
/// `--ratelimit-interval`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Requests a client may send back to back.
    pub burst: u32,
    /// One more request allowed per this interval.
    pub interval: Duration,
}
