//! The command line. Scripts depend on these names; keep them stable.

use std::{
    num::{NonZeroU16, NonZeroU32},
    path::PathBuf,
};

use clap::{Args, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

use crate::{
    control,
    filter::{pins, XdpModeArg},
    metrics::ListenAddr,
    model::{
        source::Poll,
        text::{integer, parse_integer, some_integer, value_enum},
        Cidr, ModeOverride, Role, SourceArg,
    },
};

#[derive(Parser, Debug)]
#[command(
    name = "ntp-agent",
    version,
    about = "NTP client for routers with an XDP filter at the NIC"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The command line, and its matches: which options were given on it
    /// (for laying them over the config file).
    pub fn parse_with_matches() -> (Self, clap::ArgMatches) {
        use clap::CommandFactory as _;
        let matches = Self::command().get_matches();
        let cli = Self::from_arg_matches(&matches)
            .unwrap_or_else(|e| e.format(&mut Self::command()).exit());
        (cli, matches)
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Attach the filter to the interfaces, keep its maps current, and run.
    #[command(args_override_self = true)]
    Run(Box<RunArgs>),
    /// Check a config file without touching anything.
    CheckConfig {
        /// The TOML file (keys are `run`'s long options).
        file: PathBuf,
    },
    /// Remove the filter from interfaces and delete its pins.
    Detach(DetachArgs),
    /// Show time sync (from the running agent) and the filter's state and
    /// counters (from the pinned maps).
    Status(StatusArgs),
    /// Add or delete a server on the running agent.
    Server(SourceCommand),
    /// Add or delete a symmetric peer on the running agent.
    Peer(SourceCommand),
    /// Add or delete a pool (servers taken from a name) on the running agent.
    Pool(SourceCommand),
    /// Switch the running agent between client and server mode.
    Mode(ModeCommand),
    /// Let a client range in, on the running agent (server mode).
    Allow(AclCommand),
    /// Drop a client range at the NIC, on the running agent.
    Deny(AclCommand),
}

#[derive(Args, Debug)]
pub struct AclCommand {
    /// Remove this rule instead of adding it.
    #[arg(long)]
    pub del: bool,
    /// A range (`192.0.2.0/24`, `2001:db8::/32`) or one address.
    pub cidr: Cidr,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Op {
    Add,
    Del,
}

#[derive(Args, Debug)]
pub struct SourceCommand {
    pub op: Op,
    /// An address or a host name; with `add`, optionally its own options:
    /// `ADDR,minpoll=4,maxpoll=8,noiburst`, `HOST,nts`, `NAME,maxsources=6`.
    #[arg(value_name = "ADDR|NAME[,OPTIONS]")]
    pub target: SourceArg,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Args, Debug)]
pub struct ModeCommand {
    #[arg(value_enum, value_name = "MODE")]
    pub role: Role,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Args, Debug, Clone)]
pub struct ControlArgs {
    /// The running agent's control socket.
    #[arg(long = "control-socket", value_name = "PATH", default_value = control::DEFAULT_PATH)]
    pub control_socket: PathBuf,
}

/// `run`'s options, and the config file's keys: serde reads the file into
/// this same struct (keys are the long options without dashes, values are
/// checked by the parsers the flags use), absent keys take clap's defaults,
/// and [`crate::config::merge`] lays the command line over it.
#[derive(Args, Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RunArgs {
    /// Interface to filter (repeat for several).
    #[arg(long = "iface", value_name = "IF")]
    #[serde(rename = "iface")]
    pub ifaces: Vec<String>,
    /// Read settings from this TOML file; flags given here override it.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// NTP server, an address or a host name (every address it resolves
    /// to); repeat for several. Its mode-4 replies pass. Its own poll
    /// settings may follow: `192.0.2.10,minpoll=4,maxpoll=8,noiburst`;
    /// `HOST,nts[,nts-port=N]` authenticates it with NTS.
    #[arg(long = "server", value_name = "ADDR[,OPTIONS]")]
    #[serde(rename = "server")]
    pub servers: Vec<SourceArg>,
    /// Symmetric peer, an address or a host name; repeat for several. Its
    /// modes 1 and 2 pass. Options as for --server.
    #[arg(long = "peer", value_name = "ADDR[,OPTIONS]")]
    #[serde(rename = "peer")]
    pub peers: Vec<SourceArg>,
    /// A pool: up to `maxsources=N` (default 4) servers from one name, an
    /// unreachable or falseticking one replaced by a fresh address; repeat
    /// for several. Options as for --server, and `maxsources=N`.
    #[arg(long = "pool", value_name = "NAME[,OPTIONS]")]
    #[serde(rename = "pool")]
    pub pools: Vec<SourceArg>,
    /// Trust anchors for NTS-KE (PEM certificates) besides the system's;
    /// repeat for several.
    #[arg(long = "nts-ca", value_name = "FILE")]
    pub nts_ca: Vec<PathBuf>,
    #[arg(long = "mode", value_name = "MODE", value_enum, default_value_t = Role::Client)]
    #[serde(rename = "mode")]
    pub role: Role,
    #[arg(long = "xdp-mode", value_enum, default_value_t = XdpModeArg::Auto)]
    #[serde(deserialize_with = "value_enum")]
    pub xdp_mode: XdpModeArg,
    /// Base directory on bpffs for the pinned link and maps; the layout
    /// version is appended (`<DIR>/v<N>`).
    #[arg(long = "pin-dir", value_name = "DIR", default_value = pins::DEFAULT_BASE)]
    pub pin_dir: PathBuf,
    /// Never change the system clock (measure and report only).
    #[arg(long)]
    pub no_clock_adjust: bool,
    /// Under systemd (Type=notify): report ready only once the clock is
    /// first synchronized, not as soon as the filter is attached, so units
    /// after time-sync.target wait for real time.
    #[arg(long)]
    pub ready_after_sync: bool,
    /// Shortest poll interval, log2 seconds (6 = 64 s), for sources
    /// without their own `minpoll=`.
    #[arg(long, default_value = "6")]
    pub minpoll: Poll,
    /// Longest poll interval, log2 seconds (10 = 1024 s), for sources
    /// without their own `maxpoll=`.
    #[arg(long, default_value = "10")]
    pub maxpoll: Poll,
    /// Do not send the first requests in a quick burst (sources with their
    /// own `iburst` still do).
    #[arg(long)]
    #[serde(rename = "iburst", deserialize_with = "inverted")]
    pub no_iburst: bool,
    /// Send every request from this local port (e.g. 123 for strict
    /// upstream firewalls) instead of a random port per request.
    #[arg(long, value_name = "PORT", value_parser = parse_integer::<NonZeroU16>)]
    #[serde(deserialize_with = "some_integer")]
    pub source_port: Option<NonZeroU16>,
    /// Step instead of slewing when the offset exceeds this (seconds).
    #[arg(long, default_value_t = 0.128, value_name = "SECONDS")]
    pub step_threshold: f64,
    /// Allow steps only during the first N clock updates (like chrony's
    /// makestep); without it, steps are allowed at any time.
    #[arg(long, value_name = "N", value_parser = parse_integer::<u32>)]
    #[serde(deserialize_with = "some_integer")]
    pub step_limit: Option<u32>,
    /// Refuse to set the clock when the offset exceeds this (seconds).
    #[arg(long, default_value_t = 1000.0, value_name = "SECONDS")]
    pub panic_threshold: f64,
    /// Allow one step beyond the panic threshold at start (like ntpd -g),
    /// for boxes without a real-time clock.
    #[arg(long)]
    pub allow_panic_step: bool,
    /// Server mode: requests a client may send back to back.
    #[arg(long, default_value = "8", value_parser = parse_integer::<NonZeroU32>)]
    #[serde(deserialize_with = "integer")]
    pub ratelimit_burst: NonZeroU32,
    /// Server mode: a client earns one more request per this many seconds;
    /// over its limit it gets one KoD RATE, then no answer.
    #[arg(long, default_value_t = 2.0, value_name = "SECONDS")]
    pub ratelimit_interval: f64,
    /// Frequency estimate kept across restarts.
    #[arg(long, value_name = "PATH", default_value = "/var/lib/ntp-filter/drift")]
    pub drift_file: PathBuf,
    /// Unix socket `ntp-agent status` talks to (mode 0600).
    #[arg(long = "control-socket", value_name = "PATH", default_value = control::DEFAULT_PATH)]
    pub control_socket: PathBuf,
    /// Serve Prometheus metrics at http://ADDR:PORT/metrics, e.g.
    /// 127.0.0.1:9975 (off unless given).
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<ListenAddr>,
    /// Replace the allowed modes of a class: `server=4`, `peer=1,2,4`,
    /// `other=` (none). Repeat per class. Overrides the --mode defaults.
    #[arg(long = "allow-modes", value_name = "CLASS=MODES")]
    pub allow_modes: Vec<ModeOverride>,
    /// Server mode: let client requests from this range in (repeat). Once
    /// anything is allowed, every other client is denied at the NIC.
    #[arg(long = "allow", value_name = "CIDR")]
    pub allow: Vec<Cidr>,
    /// Server mode: drop client requests from this range at the NIC
    /// (repeat). The longest matching prefix of all rules decides.
    #[arg(long = "deny", value_name = "CIDR")]
    pub deny: Vec<Cidr>,
    /// UDP port NTP uses on this network.
    #[arg(long, default_value = "123", value_parser = parse_integer::<NonZeroU16>)]
    #[serde(deserialize_with = "integer")]
    pub ntp_port: NonZeroU16,
    /// Pass non-first UDP fragments addressed to the box (dropped by default).
    #[arg(long)]
    pub pass_non_first_fragments: bool,
    /// Log every drop from the XDP program (debug; costs ~20 ns a packet).
    #[arg(long)]
    pub bpf_log: bool,
    /// Count the traffic the filter leaves alone too (not IP, not UDP, not
    /// the NTP port, transit): off, it costs one lookup and one write less
    /// per such packet.
    #[arg(long)]
    pub count_out_of_scope: bool,
}

/// What `run` does with no options at all: clap's defaults, the only place
/// they are written down (also for the keys a config file leaves out).
impl Default for RunArgs {
    fn default() -> Self {
        let cmd = RunArgs::augment_args(clap::Command::new("run")).no_binary_name(true);
        let matches = cmd
            .try_get_matches_from(std::iter::empty::<&str>())
            .expect("run needs no option");
        RunArgs::from_arg_matches(&matches).expect("defaults parse")
    }
}

/// `iburst = false` is `--no-iburst`.
fn inverted<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    bool::deserialize(d).map(|b| !b)
}

#[derive(Args, Debug, Clone)]
pub struct PinArgs {
    /// Base directory on bpffs for the pinned link and maps; the layout
    /// version is appended (`<DIR>/v<N>`).
    #[arg(long = "pin-dir", value_name = "DIR", default_value = pins::DEFAULT_BASE)]
    pub pin_dir: PathBuf,
}

#[derive(Args, Debug)]
pub struct DetachArgs {
    /// Only this interface (repeat for several); without it, every
    /// interface and all the maps.
    #[arg(long = "iface", value_name = "IF")]
    pub ifaces: Vec<String>,
    #[command(flatten)]
    pub pins: PinArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[command(flatten)]
    pub pins: PinArgs,
    #[arg(long = "control-socket", value_name = "PATH", default_value = control::DEFAULT_PATH)]
    pub control_socket: PathBuf,
    /// Machine-readable output (field names documented in the README).
    #[arg(long)]
    pub json: bool,
}
