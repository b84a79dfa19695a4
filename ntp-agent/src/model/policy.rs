//! The allowed-mode table per source class, from the operating role and
//! the operator's overrides (`--allow-modes`).

use std::{fmt, str::FromStr};

use ntp_filter_common::{client_policy, mode_bit, server_policy, ModeMask, SourceClass};

use super::Role;

/// `class=modes` from the command line, e.g. `peer=1,2,4`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModeOverride {
    pub class: SourceClass,
    pub mask: ModeMask,
}

impl FromStr for ModeOverride {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (class, modes) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected CLASS=MODES, e.g. server=4 or peer=1,2"))?;
        let class = match class.trim() {
            "server" => SourceClass::Server,
            "peer" => SourceClass::Peer,
            "other" => SourceClass::Other,
            c => {
                return Err(format!(
                    "unknown class {c:?}: expected server, peer or other"
                ))
            }
        };
        let mut mask = 0;
        for m in modes.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            match m.parse::<u8>() {
                Ok(mode) if mode <= 7 => mask |= mode_bit(mode),
                _ => return Err(format!("mode {m:?} is not an NTP mode 0..7")),
            }
        }
        Ok(Self { class, mask })
    }
}

/// The NTP modes in a mask, lowest first.
pub fn modes_in(mask: ModeMask) -> Vec<u8> {
    (0..8u8).filter(|m| mask & mode_bit(*m) != 0).collect()
}

/// `1,2,4`.
fn list(mask: ModeMask) -> String {
    let modes: Vec<String> = modes_in(mask).iter().map(u8::to_string).collect();
    modes.join(",")
}

/// As given: `peer=1,2,4`, `other=`.
impl fmt::Display for ModeOverride {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.class.name(), list(self.mask))
    }
}

super::text::serde_as_text!(ModeOverride);

/// Modes as a list, for display.
pub struct Modes(pub ModeMask);

impl fmt::Display for Modes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            f.write_str("none")
        } else {
            f.write_str(&list(self.0))
        }
    }
}

pub fn table(role: Role, overrides: &[ModeOverride]) -> [ModeMask; SourceClass::COUNT] {
    let mut masks = [0; SourceClass::COUNT];
    for class in SourceClass::ALL {
        masks[class as usize] = match role {
            Role::Client => client_policy(class),
            Role::Server => server_policy(class),
        };
    }
    for o in overrides {
        masks[o.class as usize] = o.mask;
    }
    masks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_role_is_the_notes_table() {
        let t = table(Role::Client, &[]);
        assert_eq!(t[SourceClass::Server as usize], mode_bit(4));
        assert_eq!(t[SourceClass::Peer as usize], mode_bit(1) | mode_bit(2));
        assert_eq!(t[SourceClass::Other as usize], 0);
    }

    #[test]
    fn the_server_role_adds_mode_3_everywhere() {
        let t = table(Role::Server, &[]);
        for class in SourceClass::ALL {
            assert_ne!(t[class as usize] & mode_bit(3), 0, "{class:?}");
        }
    }

    #[test]
    fn overrides_replace_a_class() {
        let o: ModeOverride = "peer=1,2,4".parse().unwrap();
        let t = table(Role::Client, &[o]);
        assert_eq!(
            t[SourceClass::Peer as usize],
            mode_bit(1) | mode_bit(2) | mode_bit(4)
        );
        assert_eq!("other=".parse::<ModeOverride>().unwrap().mask, 0);
        for text in ["peer=1,2,4", "other=", "server=3,4"] {
            assert_eq!(text.parse::<ModeOverride>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn bad_overrides_name_the_problem() {
        assert!("peer"
            .parse::<ModeOverride>()
            .unwrap_err()
            .contains("CLASS=MODES"));
        assert!("client=4"
            .parse::<ModeOverride>()
            .unwrap_err()
            .contains("unknown class"));
        assert!("server=8"
            .parse::<ModeOverride>()
            .unwrap_err()
            .contains("\"8\""));
    }
}
