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

#[cfg(test)]
mod tests {
    use crate::model::Role;

    #[derive(serde::Deserialize, Debug)]
    struct Holder {
        #[serde(deserialize_with = "super::value_enum")]
        role: Role,
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
