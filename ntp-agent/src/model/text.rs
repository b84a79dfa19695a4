//! Values written as text (`192.0.2.0/24`, `time.example.net,minpoll=4`,
//! `client`): serde reads them with the very parser the command line uses
//! and writes them the way they are typed, so a value from the config
//! file or the control socket is checked by the same code as the flag.

/// `Serialize` with `Display` and `Deserialize` with `FromStr` for each
/// type named.
macro_rules! serde_as_text {
    ($($t:ty),* $(,)?) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
pub(crate) use serde_as_text;

use std::{
    num::{NonZeroU16, NonZeroU32},
    ops::RangeInclusive,
};

/// Deserializes one of a clap `ValueEnum`'s names, matched as
/// `--flag NAME` matches it (`#[serde(deserialize_with = "value_enum")]`).
pub fn value_enum<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: clap::ValueEnum,
{
    let text = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
    T::from_str(&text, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        serde::de::Error::custom(format!(
            "invalid value '{text}': expected {}",
            names.join(", ")
        ))
    })
}

/// An integer setting's type and the values it takes. The flag's parser
/// ([`parse_integer`]) and the config file's ([`integer`]) both check
/// [`Integer::RANGE`], so `ntp-port = -1` in the file and `--ntp-port=0`
/// both say the range, for the same reason.
pub trait Integer: Sized {
    const RANGE: RangeInclusive<i64>;
    /// What the number is, for errors: `an integer`, `a log2 interval`.
    const WHAT: &'static str = "an integer";
    /// `n` is inside [`Integer::RANGE`].
    fn from_checked(n: i64) -> Self;

    fn from_i64(n: i64) -> Result<Self, String> {
        if Self::RANGE.contains(&n) {
            Ok(Self::from_checked(n))
        } else {
            Err(format!(
                "expected {} in {}..={}, not {n}",
                Self::WHAT,
                Self::RANGE.start(),
                Self::RANGE.end()
            ))
        }
    }
}

macro_rules! integer_in_range {
    ($($t:ty => $range:expr, $from:expr;)*) => {$(
        impl Integer for $t {
            const RANGE: RangeInclusive<i64> = $range;
            fn from_checked(n: i64) -> Self {
                let from: fn(i64) -> Option<Self> = $from;
                from(n).expect("checked against RANGE")
            }
        }
    )*};
}

integer_in_range! {
    NonZeroU16 => 1..=u16::MAX as i64, |n| u16::try_from(n).ok().and_then(NonZeroU16::new);
    NonZeroU32 => 1..=u32::MAX as i64, |n| u32::try_from(n).ok().and_then(NonZeroU32::new);
    u32 => 0..=u32::MAX as i64, |n| u32::try_from(n).ok();
}

/// The flag's parser (`value_parser = parse_integer::<T>`).
pub fn parse_integer<T: Integer>(s: &str) -> Result<T, String> {
    let n = s.trim().parse::<i64>().map_err(|_| {
        format!(
            "expected {} in {}..={}, not {s:?}",
            T::WHAT,
            T::RANGE.start(),
            T::RANGE.end()
        )
    })?;
    T::from_i64(n)
}

/// The config file's parser (`#[serde(deserialize_with = "integer")]`).
pub fn integer<'de, D: serde::Deserializer<'de>, T: Integer>(d: D) -> Result<T, D::Error> {
    let n = <i64 as serde::Deserialize>::deserialize(d)?;
    T::from_i64(n).map_err(serde::de::Error::custom)
}

/// [`integer`] for an optional setting.
pub fn some_integer<'de, D: serde::Deserializer<'de>, T: Integer>(
    d: D,
) -> Result<Option<T>, D::Error> {
    integer(d).map(Some)
}

#[cfg(test)]
mod tests {
    use crate::model::Role;

    #[derive(serde::Deserialize, Debug)]
    struct Holder {
        #[serde(deserialize_with = "super::value_enum")]
        role: Role,
    }

    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "kebab-case")]
    struct Numbers {
        #[serde(deserialize_with = "super::integer")]
        ntp_port: std::num::NonZeroU16,
    }

    /// Issue #14 item 15: a negative number for an unsigned setting says
    /// the key and the range (at 6ba3db4: "unexpected argument '-1' found").
    #[test]
    fn out_of_range_integers_name_the_range() {
        let e = toml::from_str::<Numbers>("ntp-port = -1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ntp-port"), "{e}");
        assert!(
            e.contains("expected an integer in 1..=65535, not -1"),
            "{e}"
        );
        let n: Numbers = toml::from_str("ntp-port = 65535\n").unwrap();
        assert_eq!(n.ntp_port.get(), 65535);
        for (text, why) in [
            ("0", "not 0"),
            ("65536", "not 65536"),
            ("-1", "not -1"),
            ("x", "not \"x\""),
        ] {
            let e = super::parse_integer::<std::num::NonZeroU16>(text).unwrap_err();
            assert_eq!(e, format!("expected an integer in 1..=65535, {why}"));
        }
        assert_eq!(super::parse_integer::<u32>("0"), Ok(0));
    }

    #[test]
    fn value_enums_read_the_flags_names_and_name_the_choices() {
        let h: Holder = serde_json::from_str(r#"{"role":"server"}"#).unwrap();
        assert_eq!(h.role, Role::Server);
        let e = serde_json::from_str::<Holder>(r#"{"role":"Server"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("invalid value 'Server': expected client, server"),
            "{e}"
        );
    }
}
