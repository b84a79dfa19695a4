//! One module per subcommand: what `main` dispatches to.

pub mod change;
pub mod check_config;
pub mod detach;
pub mod run;
pub mod status;
