//! ntp-agent: loads the ntp-filter XDP program, keeps its maps in step with
//! the configuration and the box's addresses, syncs the clock, and reports
//! its state.
//!
//! Dependencies point one way, top to bottom (`cargo xtask modgraph`
//! prints the graph; a test keeps it free of cycles):
//!
//! - the command line and the config file: [`cli`], [`config`], and
//!   [`cmd`], one module per subcommand;
//! - the event loop: [`agent`];
//! - the services it drives: [`filter`], [`net`], [`clock`], [`server`],
//!   [`notify`], [`metrics`], [`control`] (the socket), [`caps`];
//! - the domain model and the wire types: [`model`], [`protocol`];
//! - below them `ntp-proto` (the NTP core) and `ntp-filter-common` (what
//!   the XDP program shares).

pub mod agent;
pub mod caps;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod control;
pub mod filter;
pub mod metrics;
pub mod model;
pub mod net;
pub mod notify;
pub mod nts;
pub mod pool;
pub mod protocol;
pub mod server;
