//! NTS Key Establishment records (RFC 8915 section 4): the request a
//! client sends over TLS and an incremental, bounded parser of the
//! server's answer. The TLS connection itself is the caller's.

use super::aead::AeadAlgorithm;
use serde::Serialize;
use std::fmt;

/// The TCP port NTS-KE servers listen on (IANA).
pub const DEFAULT_KE_PORT: u16 = 4460;
/// The ALPN protocol id of NTS-KE.
pub const ALPN: &[u8] = b"ntske/1";
/// NTPv4 in the Next Protocol record.
pub const NEXT_PROTOCOL_NTPV4: u16 = 0;

/// The most cookies a client keeps (RFC 8915 section 6 suggests 8).
pub const MAX_COOKIES: usize = 8;
/// Longer cookies are refused: seven placeholders of their size would
/// make a request too large for one unfragmented datagram.
pub const MAX_COOKIE_LEN: usize = 256;
/// A whole response larger than this is refused (8 cookies of the largest
/// size and every other record fit easily).
pub const MAX_RESPONSE_LEN: usize = 8192;
/// Host names are at most 253 characters (RFC 1035); addresses fewer.
const MAX_SERVER_LEN: usize = 255;

const CRITICAL: u16 = 0x8000;

/// Record types (RFC 8915 section 4.1).
mod record_type {
    pub const END_OF_MESSAGE: u16 = 0;
    pub const NEXT_PROTOCOL: u16 = 1;
    pub const ERROR: u16 = 2;
    pub const WARNING: u16 = 3;
    pub const AEAD: u16 = 4;
    pub const NEW_COOKIE: u16 = 5;
    pub const SERVER: u16 = 6;
    pub const PORT: u16 = 7;
}

/// One NTS-KE record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    EndOfMessage,
    NextProtocol(Vec<u16>),
    Error(u16),
    Warning(u16),
    Aead(Vec<u16>),
    NewCookie(Vec<u8>),
    /// NTPv4 Server Negotiation: a host name or an address, in ASCII.
    Server(String),
    /// NTPv4 Port Negotiation.
    Port(u16),
    Unknown {
        critical: bool,
        record_type: u16,
        body: Vec<u8>,
    },
}

fn u16_list(body: &[u8]) -> Option<Vec<u16>> {
    body.len().is_multiple_of(2).then(|| {
        body.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect()
    })
}

fn one_u16(body: &[u8]) -> Option<u16> {
    (body.len() == 2).then(|| u16::from_be_bytes([body[0], body[1]]))
}

impl Record {
    /// Appends the record; `critical` sets the C bit.
    pub fn encode(&self, critical: bool, out: &mut Vec<u8>) {
        let list = |v: &[u16]| v.iter().flat_map(|x| x.to_be_bytes()).collect::<Vec<u8>>();
        let (record_type, body): (u16, Vec<u8>) = match self {
            Record::EndOfMessage => (record_type::END_OF_MESSAGE, Vec::new()),
            Record::NextProtocol(v) => (record_type::NEXT_PROTOCOL, list(v)),
            Record::Error(c) => (record_type::ERROR, c.to_be_bytes().to_vec()),
            Record::Warning(c) => (record_type::WARNING, c.to_be_bytes().to_vec()),
            Record::Aead(v) => (record_type::AEAD, list(v)),
            Record::NewCookie(c) => (record_type::NEW_COOKIE, c.clone()),
            Record::Server(s) => (record_type::SERVER, s.as_bytes().to_vec()),
            Record::Port(p) => (record_type::PORT, p.to_be_bytes().to_vec()),
            Record::Unknown {
                record_type, body, ..
            } => (*record_type & !CRITICAL, body.clone()),
        };
        let flagged = record_type | if critical { CRITICAL } else { 0 };
        out.extend_from_slice(&flagged.to_be_bytes());
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
    }

    /// Decodes one record from the start of `data`: the record, whether its
    /// C bit was set, and its size; `Ok(None)` when `data` does not hold a
    /// whole record yet.
    pub fn decode(data: &[u8]) -> Result<Option<(Record, bool, usize)>, KeError> {
        if data.len() < 4 {
            return Ok(None);
        }
        let raw_type = u16::from_be_bytes([data[0], data[1]]);
        let len = u16::from_be_bytes([data[2], data[3]]) as usize;
        if data.len() < 4 + len {
            return Ok(None);
        }
        let critical = raw_type & CRITICAL != 0;
        let record_type = raw_type & !CRITICAL;
        let body = &data[4..4 + len];
        let malformed = || KeError::Malformed(record_name(record_type));
        let record = match record_type {
            record_type::END_OF_MESSAGE if body.is_empty() => Record::EndOfMessage,
            record_type::NEXT_PROTOCOL => {
                Record::NextProtocol(u16_list(body).ok_or_else(malformed)?)
            }
            record_type::ERROR => Record::Error(one_u16(body).ok_or_else(malformed)?),
            record_type::WARNING => Record::Warning(one_u16(body).ok_or_else(malformed)?),
            record_type::AEAD => Record::Aead(u16_list(body).ok_or_else(malformed)?),
            record_type::NEW_COOKIE => Record::NewCookie(body.to_vec()),
            record_type::SERVER => {
                let s = std::str::from_utf8(body)
                    .ok()
                    .filter(|s| s.is_ascii() && !s.is_empty() && s.len() <= MAX_SERVER_LEN)
                    .ok_or_else(malformed)?;
                Record::Server(s.to_owned())
            }
            record_type::PORT => Record::Port(one_u16(body).ok_or_else(malformed)?),
            record_type::END_OF_MESSAGE => return Err(malformed()),
            _ => Record::Unknown {
                critical,
                record_type,
                body: body.to_vec(),
            },
        };
        Ok(Some((record, critical, 4 + len)))
    }
}

fn record_name(t: u16) -> &'static str {
    match t {
        record_type::END_OF_MESSAGE => "End of Message",
        record_type::NEXT_PROTOCOL => "Next Protocol",
        record_type::ERROR => "Error",
        record_type::WARNING => "Warning",
        record_type::AEAD => "AEAD Algorithm",
        record_type::NEW_COOKIE => "New Cookie",
        record_type::SERVER => "NTPv4 Server",
        record_type::PORT => "NTPv4 Port",
        _ => "unknown",
    }
}

/// The client's request: NTPv4, the AEADs we speak, end (RFC 8915
/// section 4.1.1: Next Protocol and End of Message are critical).
pub fn client_request() -> Vec<u8> {
    let mut out = Vec::new();
    Record::NextProtocol(vec![NEXT_PROTOCOL_NTPV4]).encode(true, &mut out);
    Record::Aead(AeadAlgorithm::OFFERED.iter().map(|a| a.id()).collect()).encode(true, &mut out);
    Record::EndOfMessage.encode(true, &mut out);
    out
}

/// What a successful key establishment gives: the AEAD, the first cookies
/// and where to send NTP (None: the KE server's own address and port 123).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeResponse {
    pub aead: AeadAlgorithm,
    pub cookies: Vec<Vec<u8>>,
    pub server: Option<String>,
    pub port: Option<u16>,
    /// Warning codes the server sent (logged, not fatal).
    pub warnings: Vec<u16>,
}

/// Why a key establishment failed on the protocol level.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum KeError {
    #[error("the server sent an Error record: {}", error_name(*.0))]
    ServerError(u16),
    #[error("malformed {0} record")]
    Malformed(&'static str),
    #[error("the server does not offer NTPv4")]
    NoNtpv4,
    #[error("the server chose no AEAD algorithm we offered")]
    NoAead,
    #[error("the server sent no cookies")]
    NoCookies,
    #[error("a cookie of {0} bytes is larger than {MAX_COOKIE_LEN}")]
    CookieTooLong(usize),
    #[error("{0} record sent twice")]
    Duplicate(&'static str),
    #[error("unknown critical record type {0}")]
    UnknownCritical(u16),
    #[error("response larger than {MAX_RESPONSE_LEN} bytes")]
    TooLong,
    #[error("the connection closed before End of Message")]
    Truncated,
}

fn error_name(code: u16) -> String {
    match code {
        0 => "unrecognized critical record (0)".into(),
        1 => "bad request (1)".into(),
        2 => "internal server error (2)".into(),
        n => format!("code {n}"),
    }
}

/// Collects the server's records as the TLS stream delivers them.
#[derive(Debug, Default)]
pub struct ResponseParser {
    buf: Vec<u8>,
    seen: usize,
    next_protocol: Option<Vec<u16>>,
    aead: Option<Vec<u16>>,
    cookies: Vec<Vec<u8>>,
    server: Option<String>,
    port: Option<u16>,
    warnings: Vec<u16>,
}

impl ResponseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes read from the connection; `Ok(Some)` once End of
    /// Message arrived (anything after it is ignored).
    pub fn push(&mut self, data: &[u8]) -> Result<Option<KeResponse>, KeError> {
        self.seen += data.len();
        if self.seen > MAX_RESPONSE_LEN {
            return Err(KeError::TooLong);
        }
        self.buf.extend_from_slice(data);
        let mut at = 0;
        while let Some((record, critical, used)) = Record::decode(&self.buf[at..])? {
            at += used;
            if self.take(record, critical)? {
                return self.finish().map(Some);
            }
        }
        self.buf.drain(..at);
        Ok(None)
    }

    /// The connection ended: an error unless End of Message came.
    pub fn eof(&self) -> KeError {
        KeError::Truncated
    }

    /// Returns true at End of Message.
    fn take(&mut self, record: Record, critical: bool) -> Result<bool, KeError> {
        match record {
            Record::EndOfMessage => return Ok(true),
            Record::Error(code) => return Err(KeError::ServerError(code)),
            Record::Warning(code) => self.warnings.push(code),
            Record::NextProtocol(v) => {
                if self.next_protocol.replace(v).is_some() {
                    return Err(KeError::Duplicate("Next Protocol"));
                }
            }
            Record::Aead(v) => {
                if self.aead.replace(v).is_some() {
                    return Err(KeError::Duplicate("AEAD Algorithm"));
                }
            }
            Record::NewCookie(c) => {
                if c.len() > MAX_COOKIE_LEN {
                    return Err(KeError::CookieTooLong(c.len()));
                }
                if c.is_empty() {
                    return Err(KeError::Malformed("New Cookie"));
                }
                // Extra cookies beyond what we keep are dropped, not refused.
                if self.cookies.len() < MAX_COOKIES {
                    self.cookies.push(c);
                }
            }
            Record::Server(s) => {
                if self.server.replace(s).is_some() {
                    return Err(KeError::Duplicate("NTPv4 Server"));
                }
            }
            Record::Port(p) => {
                if self.port.replace(p).is_some() {
                    return Err(KeError::Duplicate("NTPv4 Port"));
                }
            }
            Record::Unknown { record_type, .. } if critical => {
                return Err(KeError::UnknownCritical(record_type))
            }
            Record::Unknown { .. } => {}
        }
        Ok(false)
    }

    fn finish(&mut self) -> Result<KeResponse, KeError> {
        // The server must pick exactly one protocol and one AEAD, from
        // what we offered (RFC 8915 sections 4.1.2 and 4.1.5).
        match self.next_protocol.as_deref() {
            Some([NEXT_PROTOCOL_NTPV4]) => {}
            _ => return Err(KeError::NoNtpv4),
        }
        let aead = match self.aead.as_deref() {
            Some([id]) => AeadAlgorithm::from_id(*id).ok_or(KeError::NoAead)?,
            _ => return Err(KeError::NoAead),
        };
        if self.cookies.is_empty() {
            return Err(KeError::NoCookies);
        }
        Ok(KeResponse {
            aead,
            cookies: std::mem::take(&mut self.cookies),
            server: self.server.take(),
            port: self.port,
            warnings: std::mem::take(&mut self.warnings),
        })
    }
}

impl fmt::Display for KeResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {} cookies", self.aead, self.cookies.len())?;
        if let Some(s) = &self.server {
            write!(f, ", NTP server {s}")?;
        }
        if let Some(p) = self.port {
            write!(f, ", NTP port {p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn response(records: &[(Record, bool)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (r, c) in records {
            r.encode(*c, &mut out);
        }
        out
    }

    fn good() -> Vec<(Record, bool)> {
        vec![
            (Record::NextProtocol(vec![0]), true),
            (Record::Aead(vec![15]), true),
            (Record::NewCookie(vec![1; 100]), false),
            (Record::NewCookie(vec![2; 100]), false),
            (Record::Server("192.0.2.11".into()), true),
            (Record::Port(10123), true),
            (Record::Warning(7), false),
            (Record::EndOfMessage, true),
        ]
    }

    #[test]
    fn every_record_round_trips_with_its_critical_bit() {
        for (record, critical) in [
            (Record::EndOfMessage, true),
            (Record::NextProtocol(vec![0, 0x8001]), true),
            (Record::Error(2), true),
            (Record::Warning(9), false),
            (Record::Aead(vec![15, 17]), false),
            (Record::NewCookie(vec![0xaa; 80]), false),
            (Record::Server("time.example.net".into()), true),
            (Record::Port(4123), false),
            (
                Record::Unknown {
                    critical: true,
                    record_type: 0x4000,
                    body: vec![1, 2, 3],
                },
                true,
            ),
        ] {
            let mut out = Vec::new();
            record.encode(critical, &mut out);
            let (back, c, used) = Record::decode(&out).unwrap().unwrap();
            assert_eq!((back, c, used), (record.clone(), critical, out.len()));
            // A prefix is "not yet", not an error.
            assert_eq!(Record::decode(&out[..out.len() - 1]), Ok(None));
        }
    }

    #[test]
    fn request_is_what_rfc8915_asks() {
        assert_eq!(
            client_request(),
            [
                0x80, 1, 0, 2, 0, 0, // critical Next Protocol: NTPv4
                0x80, 4, 0, 4, 0, 15, 0, 17, // AEAD: SIV-CMAC-256, -512
                0x80, 0, 0, 0, // critical End of Message
            ]
        );
    }

    #[test]
    fn response_parsed_in_any_chunking() {
        let bytes = response(&good());
        for chunk in [1, 3, 7, bytes.len()] {
            let mut p = ResponseParser::new();
            let mut done = None;
            for piece in bytes.chunks(chunk) {
                if let Some(r) = p.push(piece).unwrap() {
                    done = Some(r);
                }
            }
            let r = done.expect("End of Message seen");
            assert_eq!(r.aead, AeadAlgorithm::AesSivCmac256);
            assert_eq!(r.cookies, vec![vec![1; 100], vec![2; 100]]);
            assert_eq!(r.server.as_deref(), Some("192.0.2.11"));
            assert_eq!(r.port, Some(10123));
            assert_eq!(r.warnings, vec![7]);
        }
    }

    fn fails(records: Vec<(Record, bool)>) -> KeError {
        ResponseParser::new()
            .push(&response(&records))
            .expect_err("refused")
    }

    #[test]
    fn bad_responses_are_named() {
        let without = |i: usize| {
            let mut r = good();
            r.remove(i);
            r
        };
        assert_eq!(fails(without(0)), KeError::NoNtpv4);
        assert_eq!(fails(without(1)), KeError::NoAead);
        let mut r = good();
        r[0] = (Record::NextProtocol(vec![1]), true);
        assert_eq!(fails(r), KeError::NoNtpv4);
        let mut r = good();
        r[1] = (Record::Aead(vec![30]), true);
        assert_eq!(fails(r), KeError::NoAead);
        let mut r = good();
        r[1] = (Record::Aead(vec![15, 17]), true);
        assert_eq!(fails(r), KeError::NoAead);
        let mut r = good();
        r.retain(|(rec, _)| !matches!(rec, Record::NewCookie(_)));
        assert_eq!(fails(r), KeError::NoCookies);
        let mut r = good();
        r.insert(0, (Record::Error(1), true));
        assert_eq!(
            fails(r).to_string(),
            "the server sent an Error record: bad request (1)"
        );
        let mut r = good();
        r.insert(
            0,
            (
                Record::Unknown {
                    critical: true,
                    record_type: 99,
                    body: vec![],
                },
                true,
            ),
        );
        assert_eq!(fails(r), KeError::UnknownCritical(99));
        let mut r = good();
        r.insert(0, (Record::Port(1), false));
        assert_eq!(fails(r), KeError::Duplicate("NTPv4 Port"));
        let mut r = good();
        r.insert(0, (Record::NewCookie(vec![0; MAX_COOKIE_LEN + 1]), false));
        assert_eq!(fails(r), KeError::CookieTooLong(MAX_COOKIE_LEN + 1));
        // Unknown non-critical records are skipped.
        let mut r = good();
        r.insert(
            0,
            (
                Record::Unknown {
                    critical: false,
                    record_type: 99,
                    body: vec![5],
                },
                false,
            ),
        );
        assert!(ResponseParser::new().push(&response(&r)).unwrap().is_some());
        // Body lengths that do not fit the record type.
        for raw in [
            &[0x80, 7, 0, 3, 0, 0, 0][..],
            &[0x80, 1, 0, 1, 0][..],
            &[0x80, 0, 0, 1, 0][..],
            &[0x80, 6, 0, 0][..],
            &[0, 6, 0, 2, 0xff, 0xfe][..],
        ] {
            assert!(
                matches!(ResponseParser::new().push(raw), Err(KeError::Malformed(_))),
                "{raw:?}"
            );
        }
    }

    #[test]
    fn cookies_beyond_eight_are_dropped_and_size_is_bounded() {
        let mut r = good();
        for i in 0..20 {
            r.insert(2, (Record::NewCookie(vec![i; 50]), false));
        }
        let got = ResponseParser::new().push(&response(&r)).unwrap().unwrap();
        assert_eq!(got.cookies.len(), MAX_COOKIES);
        // An endless stream of records stops at the size bound.
        let mut p = ResponseParser::new();
        let filler = response(&[(Record::Warning(1), false)]);
        let mut err = None;
        for _ in 0..MAX_RESPONSE_LEN {
            if let Err(e) = p.push(&filler) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(KeError::TooLong));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4460);
        let valid = response(&good());
        for i in 0..20_000 {
            let mut bytes = if i % 2 == 0 {
                valid.clone()
            } else {
                (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect()
            };
            if !bytes.is_empty() {
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(0..bytes.len());
                    bytes[at] = rng.gen();
                }
            }
            let mut p = ResponseParser::new();
            for piece in bytes.chunks(rng.gen_range(1..40)) {
                if p.push(piece).is_err() {
                    break;
                }
            }
        }
    }
}
