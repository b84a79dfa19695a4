//! The domain model: what the operator configures and the agent works
//! from, independent of where it came from (command line, config file,
//! control socket) and of how it is carried out (maps, sockets, clock).

pub mod acl;
pub mod addr;
pub mod policy;
pub mod role;
pub mod seconds;
pub mod settings;
pub mod source;
pub mod text;
pub mod timestamps;

pub use acl::{AclRule, Cidr};
pub use policy::ModeOverride;
pub use role::Role;
pub use settings::{RateLimit, Settings};
pub use source::{PollSettings, SourceArg, SourceRole, SourceSpec};
pub use timestamps::{SourceStamps, Stamp, StampKind};

/// The same interface given twice is a typo, never a wish: refuse it.
pub fn no_iface_twice(ifaces: &[String]) -> Result<(), String> {
    for (i, iface) in ifaces.iter().enumerate() {
        if ifaces[..i].contains(iface) {
            return Err(format!(
                "--iface {iface} is given twice: give each interface once"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_interface_given_twice_is_refused() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(super::no_iface_twice(&v(&["wan0", "lan0"])), Ok(()));
        assert_eq!(
            super::no_iface_twice(&v(&["wan0", "lan0", "wan0"])).unwrap_err(),
            "--iface wan0 is given twice: give each interface once"
        );
    }
}
