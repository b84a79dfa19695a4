//! The agent's operating role. On the command line, in the config file and
//! in `status` it is called the mode (`--mode client|server`, `"mode"`); in
//! code it is the role, so it is never mistaken for an NTP packet mode, an
//! XDP attach mode or a class's allowed modes.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sync the clock, never serve: the router note's client mode.
    Client,
    /// Also answer NTP clients (mode 3 accepted from any address).
    Server,
}

impl Role {
    /// The name operators use (`client`, `server`).
    pub fn name(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Server => "server",
        }
    }
}

impl<'de> serde::Deserialize<'de> for Role {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::text::value_enum(d)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
