//! A configured source: an address or a name, with poll settings of its
//! own where they differ from the global ones, NTS, and for a pool how many
//! addresses it gives. On the command line and the control socket it is
//! `ADDR[,minpoll=N][,maxpoll=N][,iburst|,noiburst][,nts[,nts-port=N]][,maxsources=N]`
//! (`--server 192.0.2.10,minpoll=4,noiburst`, `--server time.example,nts`);
//! the config file also takes a table (`{ address = "192.0.2.10", minpoll
//! = 4, iburst = false }`), whose values go through the same checks.

use std::{fmt, net::IpAddr, ops::RangeInclusive, str::FromStr};

use ntp_proto::SourceKind;

use super::addr;
use super::text::{integer, parse_integer, Integer};

/// An address or a host name, as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    Addr(IpAddr),
    Name(String),
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Addr(a) => a.fmt(f),
            Self::Name(n) => f.write_str(n),
        }
    }
}

impl FromStr for SourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(ip) = s.parse::<IpAddr>() {
            // One address, one source: `::ffff:192.0.2.11` is 192.0.2.11,
            // as it is one entry in the filter.
            let ip = addr::canonical(ip);
            if let Some(why) = addr::never_a_source(ip) {
                return Err(why.into());
            }
            return Ok(Self::Addr(ip));
        }
        if is_host_name(s) {
            return Ok(Self::Name(s.trim_end_matches('.').to_ascii_lowercase()));
        }
        Err("neither an IP address nor a host name".into())
    }
}

/// RFC 1123 host names; a numeric last label is rejected so that a
/// mistyped address (`192.0.2.300`) is an error, not a DNS query.
fn is_host_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    if s.is_empty() || s.len() > 253 {
        return false;
    }
    let labels: Vec<&str> = s.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    labels.iter().all(label_ok)
        && !labels
            .last()
            .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
}

super::text::serde_as_text!(SourceSpec);

/// `server` or `peer`, as in the commands that add them.
pub fn kind_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::Server => "server",
        SourceKind::Peer => "peer",
    }
}

/// A poll interval as the operator gives it (`--minpoll`, `minpoll=`):
/// log2 seconds, 3..=17 (8 s … 36 h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Poll(i8);

impl Poll {
    pub const RANGE: RangeInclusive<i8> = 3..=17;

    pub fn get(self) -> i8 {
        self.0
    }
}

/// `--minpoll`, `minpoll = N` and `minpoll=N` all check this range.
impl Integer for Poll {
    const RANGE: RangeInclusive<i64> = *Poll::RANGE.start() as i64..=*Poll::RANGE.end() as i64;
    const WHAT: &'static str = "a log2 interval";

    fn from_checked(n: i64) -> Self {
        Self(n as i8)
    }
}

impl FromStr for Poll {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_integer(s)
    }
}

/// From a config file's integer, through the check the flag uses.
impl<'de> serde::Deserialize<'de> for Poll {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        integer(d)
    }
}

impl fmt::Display for Poll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Poll settings for all sources (`--minpoll`, `--maxpoll`, `--no-iburst`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PollSettings {
    pub minpoll: i8,
    pub maxpoll: i8,
    pub iburst: bool,
}

/// A source's own options; `None` takes the global value (or none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceOptions {
    pub minpoll: Option<i8>,
    pub maxpoll: Option<i8>,
    pub iburst: Option<bool>,
    /// `nts`: authenticate with NTS (RFC 8915).
    pub nts: Option<bool>,
    /// `nts-port=N`: the NTS-KE port (default [`NTS_KE_PORT`]).
    pub nts_port: Option<u16>,
    /// `maxsources=N`: how many addresses a pool takes from its name.
    pub max_sources: Option<usize>,
}

/// The NTS-KE port when `nts-port` is not given (RFC 8915).
pub const NTS_KE_PORT: u16 = 4460;

/// `maxsources` a pool may ask for (chrony's bound).
pub const MAX_SOURCES_RANGE: RangeInclusive<usize> = 1..=16;

/// A per-source option's value as written: `iburst`, `noiburst` and
/// `iburst = true|false` are switches; `minpoll=4` and `minpoll = 4` are
/// numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptionValue {
    Switch(bool),
    Number(i64),
}

/// What an option takes.
enum Takes {
    /// `NAME` / `noNAME`; `NAME = true|false` in a table.
    Switch,
    /// `NAME=N`; `NAME = N` in a table; `what` names the unit in errors.
    Number {
        range: RangeInclusive<i64>,
        what: &'static str,
    },
}

/// One per-source option: its name, what it takes, and the field of
/// [`SourceOptions`] it fills.
struct SourceOption {
    name: &'static str,
    takes: Takes,
    get: fn(&SourceOptions) -> Option<OptionValue>,
    /// Called with a value of the kind `takes` says, inside its range.
    set: fn(&mut SourceOptions, OptionValue),
}

const POLL_OPTION: Takes = Takes::Number {
    range: <Poll as Integer>::RANGE,
    what: <Poll as Integer>::WHAT,
};

fn number(v: OptionValue) -> i64 {
    match v {
        OptionValue::Number(n) => n,
        OptionValue::Switch(b) => i64::from(b),
    }
}

fn switch(v: OptionValue) -> bool {
    matches!(v, OptionValue::Switch(true))
}

/// Every per-source option, the one place that knows them: the text form
/// (`--server`, `server add`, the control socket), the config file's
/// source tables, `Display` and the error messages all read this list, so
/// an option is added here (and a field in [`SourceOptions`]) and nowhere
/// else. Checks across options belong in [`SourceArg::new`].
const OPTIONS: &[SourceOption] = &[
    SourceOption {
        name: "minpoll",
        takes: POLL_OPTION,
        get: |o| o.minpoll.map(|n| OptionValue::Number(n.into())),
        set: |o, v| o.minpoll = i8::try_from(number(v)).ok(),
    },
    SourceOption {
        name: "maxpoll",
        takes: POLL_OPTION,
        get: |o| o.maxpoll.map(|n| OptionValue::Number(n.into())),
        set: |o, v| o.maxpoll = i8::try_from(number(v)).ok(),
    },
    SourceOption {
        name: "iburst",
        takes: Takes::Switch,
        get: |o| o.iburst.map(OptionValue::Switch),
        set: |o, v| o.iburst = Some(switch(v)),
    },
    SourceOption {
        name: "nts",
        takes: Takes::Switch,
        get: |o| o.nts.map(OptionValue::Switch),
        set: |o, v| o.nts = Some(switch(v)),
    },
    SourceOption {
        name: "nts-port",
        takes: Takes::Number {
            range: 1..=65535,
            what: "a TCP port",
        },
        get: |o| o.nts_port.map(|n| OptionValue::Number(n.into())),
        set: |o, v| o.nts_port = u16::try_from(number(v)).ok(),
    },
    SourceOption {
        name: "maxsources",
        takes: Takes::Number {
            range: *MAX_SOURCES_RANGE.start() as i64..=*MAX_SOURCES_RANGE.end() as i64,
            what: "a number of servers",
        },
        get: |o| o.max_sources.map(|n| OptionValue::Number(n as i64)),
        set: |o, v| o.max_sources = usize::try_from(number(v)).ok(),
    },
];

/// `minpoll=N, maxpoll=N, iburst or noiburst`.
fn text_forms() -> String {
    let forms: Vec<String> = OPTIONS
        .iter()
        .flat_map(|o| match o.takes {
            Takes::Switch => vec![o.name.to_string(), format!("no{}", o.name)],
            Takes::Number { .. } => vec![format!("{}=N", o.name)],
        })
        .collect();
    match forms.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => forms.join(""),
    }
}

/// `` `address`, `minpoll`, `maxpoll`, `iburst` ``.
fn table_keys() -> String {
    let keys: Vec<String> = std::iter::once("address")
        .chain(OPTIONS.iter().map(|o| o.name))
        .map(|k| format!("`{k}`"))
        .collect();
    keys.join(", ")
}

impl SourceOptions {
    /// Sets option `name` of source `of` to `value` (written as
    /// `written`, for errors), checked against what it takes. `Ok(false)`
    /// for an unknown name; an error if the value is of the wrong kind or
    /// out of range, or the option was already set.
    fn set(
        &mut self,
        name: &str,
        value: OptionValue,
        written: &str,
        of: &str,
    ) -> Result<bool, String> {
        let Some(option) = OPTIONS.iter().find(|o| o.name == name) else {
            return Ok(false);
        };
        match (&option.takes, value) {
            (Takes::Switch, OptionValue::Switch(_)) => {}
            (Takes::Number { range, what }, OptionValue::Number(n)) => {
                if !range.contains(&n) {
                    return Err(format!(
                        "{written}: expected {what} in {}..={}, not {n}",
                        range.start(),
                        range.end()
                    ));
                }
            }
            (Takes::Switch, OptionValue::Number(_)) => return Ok(false),
            (Takes::Number { what, .. }, OptionValue::Switch(_)) => {
                return Err(format!("{written}: expected {what} (`{name}=N`)"))
            }
        }
        if (option.get)(self).is_some() {
            return Err(format!("{name} is given twice for {of}"));
        }
        (option.set)(self, value);
        Ok(true)
    }

    /// One option of the text form: `minpoll=4`, `iburst`, `noiburst`.
    fn set_text(&mut self, option: &str, of: &str) -> Result<bool, String> {
        match option.split_once('=') {
            Some((name, text)) => {
                let n = text.parse::<i64>().map_err(|_| {
                    let what = match OPTIONS.iter().find(|o| o.name == name).map(|o| &o.takes) {
                        Some(Takes::Number { what, .. }) => what,
                        _ => {
                            return format!(
                                "unknown source option {option:?}: expected {}",
                                text_forms()
                            )
                        }
                    };
                    format!("{option}: expected {what}, not {text:?}")
                })?;
                self.set(name, OptionValue::Number(n), option, of)
            }
            None => match self.set(option, OptionValue::Switch(true), option, of)? {
                true => Ok(true),
                false => match option.strip_prefix("no") {
                    Some(name)
                        if OPTIONS
                            .iter()
                            .any(|o| o.name == name && matches!(o.takes, Takes::Switch)) =>
                    {
                        self.set(name, OptionValue::Switch(false), option, of)
                    }
                    _ => Ok(false),
                },
            },
        }
    }
}

/// As the text form writes them: `,minpoll=4,noiburst`.
impl fmt::Display for SourceOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for option in OPTIONS {
            match (option.get)(self) {
                Some(OptionValue::Number(n)) => write!(f, ",{}={n}", option.name)?,
                Some(OptionValue::Switch(true)) => write!(f, ",{}", option.name)?,
                Some(OptionValue::Switch(false)) => write!(f, ",no{}", option.name)?,
                None => {}
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceArg {
    pub spec: SourceSpec,
    pub options: SourceOptions,
}

impl SourceArg {
    /// Refuses a source whose own options contradict each other.
    pub fn new(spec: SourceSpec, options: SourceOptions) -> Result<Self, String> {
        if let (Some(min), Some(max)) = (options.minpoll, options.maxpoll) {
            if min > max {
                return Err(format!(
                    "{spec}: minpoll {min} is larger than maxpoll {max}"
                ));
            }
        }
        Ok(Self { spec, options })
    }

    /// This source's effective poll settings; an error (naming the source)
    /// when its interval bounds cross, e.g. its own `minpoll=12` against the
    /// global `--maxpoll 10`.
    pub fn poll_settings(&self, global: &PollSettings) -> Result<PollSettings, String> {
        let own = &self.options;
        let p = PollSettings {
            minpoll: own.minpoll.unwrap_or(global.minpoll),
            maxpoll: own.maxpoll.unwrap_or(global.maxpoll),
            iburst: own.iburst.unwrap_or(global.iburst),
        };
        if p.minpoll > p.maxpoll {
            let origin = |own: Option<i8>| if own.is_some() { "its" } else { "the global" };
            return Err(format!(
                "{}: minpoll {} ({}) is larger than maxpoll {} ({})",
                self.spec,
                p.minpoll,
                origin(own.minpoll),
                p.maxpoll,
                origin(own.maxpoll)
            ));
        }
        Ok(p)
    }
}

/// What a [`SourceArg`] is given as: `--server`, `--peer` or `--pool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SourceRole {
    Server,
    Peer,
    Pool,
}

impl SourceRole {
    /// As in the commands that add them (`server add`, `pool add`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Peer => "peer",
            Self::Pool => "pool",
        }
    }

    /// How the core talks to what it gives: a pool gives servers.
    pub fn kind(self) -> SourceKind {
        match self {
            Self::Server | Self::Pool => SourceKind::Server,
            Self::Peer => SourceKind::Peer,
        }
    }
}

/// How many entries of the filter's sources table
/// ([`ntp_filter_common::MAX_SOURCES`]) a source given as `role` holds
/// at most: a pool one per member it may take (`maxsources`), anything
/// else one (an NTS server is the address its key establishment names,
/// which replaces nothing in the table; a name is counted once, and the
/// addresses it resolves to beyond the table's room are left out).
pub fn filter_entries(arg: &SourceArg, role: SourceRole) -> usize {
    match role {
        SourceRole::Pool => arg
            .options
            .max_sources
            .unwrap_or(crate::pool::DEFAULT_MAX_SOURCES),
        SourceRole::Server | SourceRole::Peer => 1,
    }
}

/// The refusal when `n` sources would not fit in the filter, or `None`.
/// The same line for `check-config`, `run` and `server|peer|pool add`.
pub fn too_many_sources(n: usize) -> Option<String> {
    let max = ntp_filter_common::MAX_SOURCES as usize;
    (n > max).then(|| {
        format!(
            "{n} sources configured; the filter holds at most {max} (servers + peers + pool members, maxsources each; an NTS server or a name counts once)"
        )
    })
}

impl SourceArg {
    /// `nts` (with `nts-port=N`): the TCP port of its key establishment.
    /// `None`: plain NTP.
    pub fn nts_ke_port(&self) -> Option<u16> {
        (self.options.nts == Some(true)).then(|| self.options.nts_port.unwrap_or(NTS_KE_PORT))
    }

    /// The options that only some kinds of source take: `nts` not on a
    /// peer (NTS has no symmetric mode) nor a pool (each member would need
    /// a KE of its own, not done), `nts-port` only with `nts`, `maxsources`
    /// only on a pool, and a pool is a name.
    pub fn check_role(&self, role: SourceRole) -> Result<(), String> {
        let spec = &self.spec;
        if self.options.nts_port.is_some() && self.nts_ke_port().is_none() {
            return Err(format!("{spec}: nts-port=N needs nts"));
        }
        if role == SourceRole::Peer && self.nts_ke_port().is_some() {
            return Err(format!(
                "{spec}: nts on a peer: NTS has no symmetric mode (use --server {spec},nts)"
            ));
        }
        if role != SourceRole::Pool && self.options.max_sources.is_some() {
            return Err(format!("{spec}: maxsources=N is for --pool only"));
        }
        if role == SourceRole::Pool {
            if let SourceSpec::Addr(a) = spec {
                return Err(format!(
                    "{a}: a pool is a host name (use --server {a} for one address)"
                ));
            }
            if self.nts_ke_port().is_some() {
                return Err(format!(
                    "{spec}: nts on a pool is not supported: give its servers as --server HOST,nts"
                ));
            }
        }
        Ok(())
    }
}

impl From<SourceSpec> for SourceArg {
    fn from(spec: SourceSpec) -> Self {
        Self {
            spec,
            options: SourceOptions::default(),
        }
    }
}

impl fmt::Display for SourceArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.spec, self.options)
    }
}

impl FromStr for SourceArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(',');
        let target = parts.next().unwrap_or_default().trim();
        let spec: SourceSpec = target.parse().map_err(|e| format!("{target:?}: {e}"))?;
        let mut options = SourceOptions::default();
        for option in parts.map(str::trim) {
            let known = options.set_text(option, &spec.to_string())?;
            if !known {
                return Err(format!(
                    "unknown source option {option:?}: expected {}",
                    text_forms()
                ));
            }
        }
        Self::new(spec, options)
    }
}

impl serde::Serialize for SourceArg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The text form, or (in the config file) a table `{ address = …,
/// minpoll = …, iburst = … }` whose keys are the text form's options.
impl<'de> serde::Deserialize<'de> for SourceArg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SourceVisitor)
    }
}

struct SourceVisitor;

impl SourceVisitor {
    fn not<E: serde::de::Error>(what: &str) -> E {
        E::custom(format!(
            "expected {}, not a {what}",
            SourceVisitor::EXPECTING
        ))
    }

    const EXPECTING: &'static str = "an address, a name or a table { address = …, <option> = … }";
}

impl<'de> serde::de::Visitor<'de> for SourceVisitor {
    type Value = SourceArg;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(Self::EXPECTING)
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<SourceArg, E> {
        s.parse().map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<SourceArg, E> {
        Err(Self::not("integer"))
    }

    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<SourceArg, E> {
        Err(Self::not("integer"))
    }

    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<SourceArg, E> {
        Err(Self::not("float"))
    }

    fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<SourceArg, E> {
        Err(Self::not("boolean"))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, _: A) -> Result<SourceArg, A::Error> {
        Err(Self::not("array"))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<SourceArg, A::Error> {
        use serde::de::Error as _;
        let mut address = None;
        let mut options = SourceOptions::default();
        while let Some(key) = map.next_key::<String>()? {
            let value: Scalar = map.next_value()?;
            if key == "address" {
                match value {
                    Scalar::Text(a) => address = Some(a),
                    other => {
                        return Err(A::Error::custom(format!(
                            "`address` must be a string, not {other}"
                        )))
                    }
                }
                continue;
            }
            let takes = OPTIONS.iter().find(|o| o.name == key).map(|o| &o.takes);
            let value = match (takes, value) {
                (None, _) => {
                    return Err(A::Error::custom(format!(
                        "unknown key `{key}` in a source table, expected one of {}",
                        table_keys()
                    )))
                }
                (Some(Takes::Switch), Scalar::Bool(b)) => OptionValue::Switch(b),
                (Some(Takes::Number { .. }), Scalar::Int(n)) => OptionValue::Number(n),
                (Some(Takes::Switch), other) => {
                    return Err(A::Error::custom(format!(
                        "`{key}` must be true or false, not {other}"
                    )))
                }
                (Some(Takes::Number { what, .. }), other) => {
                    return Err(A::Error::custom(format!(
                        "`{key}` must be an integer ({what}), not {other}"
                    )))
                }
            };
            let written = match value {
                OptionValue::Number(n) => format!("{key}={n}"),
                OptionValue::Switch(b) => format!("{key} = {b}"),
            };
            options
                .set(&key, value, &written, "this source table")
                .map_err(A::Error::custom)?;
        }
        let address = address.ok_or_else(|| A::Error::custom("a source table needs `address`"))?;
        let spec: SourceSpec = address
            .parse()
            .map_err(|e| A::Error::custom(format!("{address:?}: {e}")))?;
        SourceArg::new(spec, options).map_err(A::Error::custom)
    }
}

/// One value of a source table, whatever its type, so that a wrong type
/// gets a message naming the key.
enum Scalar {
    Text(String),
    Int(i64),
    Bool(bool),
    Other(&'static str),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Text(s) => write!(f, "{s:?}"),
            Scalar::Int(n) => write!(f, "{n}"),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Other(what) => write!(f, "a {what}"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value")
            }
            fn visit_str<E>(self, s: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(s.to_owned()))
            }
            fn visit_i64<E>(self, n: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(n))
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Scalar, E> {
                Ok(i64::try_from(n).map_or(Scalar::Other("integer"), Scalar::Int))
            }
            fn visit_bool<E>(self, b: bool) -> Result<Scalar, E> {
                Ok(Scalar::Bool(b))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Scalar, E> {
                Ok(Scalar::Other("float"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("array"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut a: A) -> Result<Scalar, A::Error> {
                while a
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Scalar::Other("table"))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GLOBAL: PollSettings = PollSettings {
        minpoll: 6,
        maxpoll: 10,
        iburst: true,
    };

    #[test]
    fn addresses_names_and_mistakes() {
        assert_eq!(
            "192.0.2.10".parse(),
            Ok(SourceSpec::Addr("192.0.2.10".parse().unwrap()))
        );
        assert_eq!(
            "2001:db8::10".parse(),
            Ok(SourceSpec::Addr("2001:db8::10".parse().unwrap()))
        );
        assert_eq!(
            "Time.Example.NET.".parse(),
            Ok(SourceSpec::Name("time.example.net".into()))
        );
        assert_eq!(
            "::ffff:192.0.2.11".parse(),
            Ok(SourceSpec::Addr("192.0.2.11".parse().unwrap())),
            "an IPv4-mapped address is the IPv4 source"
        );
        for bad in [
            "0.0.0.0",
            "::",
            "127.0.0.1",
            "::ffff:127.0.0.1",
            "224.0.1.1",
            "fe80::1",
            "255.255.255.255",
            "192.0.2.300",
            "2001:db8::zz",
            "-bad.example",
            "a..b",
            "",
            "under_score.example",
        ] {
            assert!(bad.parse::<SourceSpec>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn options_parse_and_round_trip() {
        for s in [
            "192.0.2.10",
            "2001:db8::10,minpoll=4",
            "time.example.net,minpoll=4,maxpoll=8,noiburst",
            "192.0.2.10,iburst",
            "time.example.net,maxpoll=8,nts",
            "192.0.2.10,nts,nts-port=4461",
            "pool.example.net,iburst,maxsources=6",
        ] {
            let a: SourceArg = s.parse().unwrap();
            assert_eq!(a.to_string(), s);
        }
        let a: SourceArg = "192.0.2.10,maxpoll=8,noiburst".parse().unwrap();
        assert_eq!(
            a.poll_settings(&GLOBAL),
            Ok(PollSettings {
                minpoll: 6,
                maxpoll: 8,
                iburst: false
            })
        );
    }

    /// Each option in [`OPTIONS`] means the same in the text form and in a
    /// config file's table, is written back as given, and is refused out
    /// of range or as the wrong kind by both.
    #[test]
    fn every_option_reads_alike_as_text_and_as_a_table() {
        #[derive(serde::Deserialize)]
        struct File {
            server: Vec<SourceArg>,
        }
        let table = |body: &str| {
            toml::from_str::<File>(&format!("[[server]]\naddress = \"192.0.2.10\"\n{body}\n"))
                .map(|f| f.server[0].clone())
                .map_err(|e| e.message().to_string())
        };
        for option in OPTIONS {
            let name = option.name;
            let cases: Vec<(String, String)> = match &option.takes {
                Takes::Switch => vec![
                    (name.to_string(), format!("{name} = true")),
                    (format!("no{name}"), format!("{name} = false")),
                ],
                Takes::Number { range, .. } => vec![
                    (
                        format!("{name}={}", range.start()),
                        format!("{name} = {}", range.start()),
                    ),
                    (
                        format!("{name}={}", range.end()),
                        format!("{name} = {}", range.end()),
                    ),
                ],
            };
            for (text, toml_line) in cases {
                let written = format!("192.0.2.10,{text}");
                let from_text: SourceArg = written.parse().unwrap();
                assert_eq!(table(&toml_line).unwrap(), from_text, "{text}");
                assert_eq!(from_text.to_string(), written);
                assert!((option.get)(&from_text.options).is_some(), "{text}");
            }
            match &option.takes {
                Takes::Switch => {
                    assert!(format!("192.0.2.10,{name}=1").parse::<SourceArg>().is_err());
                    assert!(table(&format!("{name} = 1")).unwrap_err().contains(name));
                }
                Takes::Number { range, .. } => {
                    let over = range.end() + 1;
                    let text = format!("192.0.2.10,{name}={over}").parse::<SourceArg>();
                    let file = table(&format!("{name} = {over}")).unwrap_err();
                    let text = text.unwrap_err();
                    assert!(text.contains(&format!("{name}={over}: expected")), "{text}");
                    assert!(file.contains(&format!("{name}={over}: expected")), "{file}");
                    assert!(format!("192.0.2.10,{name}").parse::<SourceArg>().is_err());
                    assert!(table(&format!("{name} = true")).unwrap_err().contains(name));
                }
            }
        }
    }

    #[test]
    fn mistakes_are_named() {
        let err = |s: &str| s.parse::<SourceArg>().unwrap_err();
        assert!(err("192.0.2.300").contains("neither an IP address"));
        assert!(
            err("192.0.2.10,minpoll=2").contains("minpoll=2: expected a log2 interval in 3..=17")
        );
        assert!(err("192.0.2.10,maxpol=8").contains("unknown source option \"maxpol=8\""));
        assert!(err("192.0.2.10,iburst=yes").contains("unknown source option"));
        assert!(err("192.0.2.10,minpoll=4,minpoll=5").contains("minpoll is given twice"));
        assert!(
            err("192.0.2.10,minpoll=9,maxpoll=8").contains("minpoll 9 is larger than maxpoll 8")
        );
        let crossing: SourceArg = "192.0.2.10,minpoll=12".parse().unwrap();
        assert_eq!(
            crossing.poll_settings(&GLOBAL).unwrap_err(),
            "192.0.2.10: minpoll 12 (its) is larger than maxpoll 10 (the global)"
        );
        assert!(err("192.0.2.10,nts,nts-port=0").contains("nts-port=0: expected a TCP port"));
        assert!(err("192.0.2.10,nts,nts").contains("nts is given twice"));
        assert!(err("p.example,maxsources=17")
            .contains("maxsources=17: expected a number of servers in 1..=16"));
    }

    #[test]
    fn options_by_role() {
        let arg = |s: &str| s.parse::<SourceArg>().unwrap();
        let role = |s: &str, r| arg(s).check_role(r);
        assert_eq!(
            role("192.0.2.20,nts", SourceRole::Peer).unwrap_err(),
            "192.0.2.20: nts on a peer: NTS has no symmetric mode (use --server 192.0.2.20,nts)"
        );
        assert!(role("192.0.2.10,nts-port=4461", SourceRole::Server)
            .unwrap_err()
            .contains("nts-port=N needs nts"));
        assert!(role("t.example,maxsources=2", SourceRole::Server)
            .unwrap_err()
            .contains("maxsources=N is for --pool only"));
        assert!(role("192.0.2.1", SourceRole::Pool)
            .unwrap_err()
            .contains("a pool is a host name"));
        assert!(role("p.example,nts,maxsources=2", SourceRole::Pool)
            .unwrap_err()
            .contains("nts on a pool is not supported"));
        role("p.example,maxsources=2", SourceRole::Pool).unwrap();
        role("192.0.2.10,nts,nts-port=4461", SourceRole::Server).unwrap();
        assert_eq!(arg("192.0.2.10,nts").nts_ke_port(), Some(NTS_KE_PORT));
        assert_eq!(
            arg("192.0.2.10,nts,nts-port=4461").nts_ke_port(),
            Some(4461)
        );
        assert_eq!(arg("192.0.2.10,nonts").nts_ke_port(), None);
    }
}
