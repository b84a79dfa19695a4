//! The domain model: what the operator configures and the agent works
//! from, independent of where it came from (command line, config file,
//! control socket) and of how it is carried out (maps, sockets, clock).

pub mod acl;
pub mod policy;
pub mod role;
pub mod seconds;
pub mod settings;
pub mod source;
pub mod text;

pub use acl::{AclRule, Cidr};
pub use policy::ModeOverride;
pub use role::Role;
pub use settings::{RateLimit, Settings};
pub use source::{PollSettings, SourceArg, SourceRole, SourceSpec};
