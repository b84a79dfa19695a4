//! ntp-agent: loads the ntp-filter XDP program, keeps its maps in step with
//! the configuration and the box's addresses, and reports its state.

pub mod caps;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod detach;
pub mod filter;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod nts;
pub mod policy;
pub mod resolve;
pub mod run;
pub mod server;
pub mod source_arg;
pub mod status;
pub mod sync;
