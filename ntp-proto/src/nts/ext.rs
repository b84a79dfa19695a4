//! NTP extension fields (RFC 7822) as NTS (RFC 8915 section 5) uses them:
//! Unique Identifier, NTS Cookie, Cookie Placeholder and the NTS
//! Authenticator with its encrypted fields.
//!
//! Parsing is bounded by the input and rejects, never panics on, lengths
//! that are short, unaligned or run past the end.

/// Extension field types (RFC 8915 section 7.5).
pub const UNIQUE_IDENTIFIER: u16 = 0x0104;
pub const NTS_COOKIE: u16 = 0x0204;
pub const COOKIE_PLACEHOLDER: u16 = 0x0304;
pub const AUTHENTICATOR: u16 = 0x0404;

/// RFC 7822's smallest extension field (header included).
pub const MIN_FIELD_LEN: usize = 16;
/// RFC 8915 section 5.3: at least 32 octets of randomness.
pub const UNIQUE_ID_LEN: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("extension field at byte {0}: header cut short")]
    Truncated(usize),
    #[error("extension field at byte {at}: length {len} is not a multiple of 4 of at least 16")]
    BadLength { at: usize, len: usize },
    #[error("extension field at byte {at}: length {len} runs past the packet's end")]
    PastEnd { at: usize, len: usize },
    #[error("authenticator: nonce or ciphertext lengths do not fit the field")]
    BadAuthenticator,
}

/// One extension field as found in a packet: its type, its body (value
/// without the 4-byte header, padding included) and where it starts, so
/// the authenticator's associated data can be cut at it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawField<'a> {
    pub field_type: u16,
    pub body: &'a [u8],
    /// Offset of the field's header in the slice that was parsed.
    pub start: usize,
}

/// Walks the extension fields of `data` (the bytes after the NTP header,
/// `base` being their offset in the packet, for the error messages and
/// `RawField::start`). Every byte must belong to a field: NTS packets carry
/// no legacy MAC.
pub fn parse_fields(data: &[u8], base: usize) -> Result<Vec<RawField<'_>>, FieldError> {
    let mut fields = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let rest = &data[at..];
        if rest.len() < 4 {
            return Err(FieldError::Truncated(base + at));
        }
        let field_type = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        if len < MIN_FIELD_LEN || !len.is_multiple_of(4) {
            return Err(FieldError::BadLength { at: base + at, len });
        }
        if len > rest.len() {
            return Err(FieldError::PastEnd { at: base + at, len });
        }
        fields.push(RawField {
            field_type,
            body: &rest[4..len],
            start: base + at,
        });
        at += len;
    }
    Ok(fields)
}

fn padded(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// Appends one field whose body is `body` zero-padded to a multiple of 4
/// and to RFC 7822's minimum length.
pub fn push_field(out: &mut Vec<u8>, field_type: u16, body: &[u8]) {
    let len = padded(4 + body.len()).max(MIN_FIELD_LEN);
    out.extend_from_slice(&field_type.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(body);
    out.resize(out.len() + len - 4 - body.len(), 0);
}

/// The size `push_field` gives a field with a body of `body_len` bytes.
pub fn field_len(body_len: usize) -> usize {
    padded(4 + body_len).max(MIN_FIELD_LEN)
}

/// A placeholder asks for one more cookie; its body must be as long as the
/// cookie sent with it (RFC 8915 section 5.5), its content is ignored.
pub fn push_placeholder(out: &mut Vec<u8>, cookie_len: usize) {
    let len = field_len(cookie_len);
    out.extend_from_slice(&COOKIE_PLACEHOLDER.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.resize(out.len() + len - 4, 0);
}

/// The Authenticator's body: nonce and ciphertext (which starts with the
/// 16-byte SIV tag), each padded to a multiple of 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Authenticator<'a> {
    pub nonce: &'a [u8],
    pub ciphertext: &'a [u8],
}

impl<'a> Authenticator<'a> {
    pub fn parse(body: &'a [u8]) -> Result<Self, FieldError> {
        if body.len() < 4 {
            return Err(FieldError::BadAuthenticator);
        }
        let nonce_len = u16::from_be_bytes([body[0], body[1]]) as usize;
        let ct_len = u16::from_be_bytes([body[2], body[3]]) as usize;
        let nonce_end = 4 + padded(nonce_len);
        let ct_end = nonce_end + padded(ct_len);
        if ct_end > body.len() {
            return Err(FieldError::BadAuthenticator);
        }
        Ok(Authenticator {
            nonce: &body[4..4 + nonce_len],
            ciphertext: &body[nonce_end..nonce_end + ct_len],
        })
    }
}

/// Appends an Authenticator field holding `nonce` and `ciphertext`.
pub fn push_authenticator(out: &mut Vec<u8>, nonce: &[u8], ciphertext: &[u8]) {
    let mut body = Vec::with_capacity(4 + padded(nonce.len()) + padded(ciphertext.len()));
    body.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
    body.extend_from_slice(&(ciphertext.len() as u16).to_be_bytes());
    body.extend_from_slice(nonce);
    body.resize(4 + padded(nonce.len()), 0);
    body.extend_from_slice(ciphertext);
    body.resize(4 + padded(nonce.len()) + padded(ciphertext.len()), 0);
    push_field(out, AUTHENTICATOR, &body);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn fields_round_trip() {
        let mut out = Vec::new();
        push_field(&mut out, UNIQUE_IDENTIFIER, &[7u8; 32]);
        push_field(&mut out, NTS_COOKIE, &[1, 2, 3, 4, 5]);
        push_placeholder(&mut out, 5);
        push_authenticator(&mut out, &[9u8; 16], &[8u8; 21]);
        let fields = parse_fields(&out, 48).unwrap();
        let types: Vec<u16> = fields.iter().map(|f| f.field_type).collect();
        assert_eq!(
            types,
            [
                UNIQUE_IDENTIFIER,
                NTS_COOKIE,
                COOKIE_PLACEHOLDER,
                AUTHENTICATOR
            ]
        );
        assert_eq!(fields[0].start, 48);
        assert_eq!(fields[0].body, &[7u8; 32]);
        // Short bodies are padded up to the 16-byte minimum.
        assert_eq!(fields[1].body.len(), 12);
        assert_eq!(&fields[1].body[..5], &[1, 2, 3, 4, 5]);
        assert_eq!(fields[2].body.len(), fields[1].body.len());
        let auth = Authenticator::parse(fields[3].body).unwrap();
        assert_eq!(auth.nonce, &[9u8; 16]);
        assert_eq!(auth.ciphertext, &[8u8; 21]);
        assert_eq!(
            fields[3].start,
            48 + 36 + 16 + 16,
            "offsets let the authenticator's associated data be cut"
        );
    }

    #[test]
    fn bogus_lengths_are_rejected() {
        let mut good = Vec::new();
        push_field(&mut good, NTS_COOKIE, &[1u8; 12]);
        let mut bad = good.clone();
        bad[3] = 15; // not a multiple of 4
        assert_eq!(
            parse_fields(&bad, 48),
            Err(FieldError::BadLength { at: 48, len: 15 })
        );
        bad[3] = 12; // below the minimum
        assert!(matches!(
            parse_fields(&bad, 48),
            Err(FieldError::BadLength { .. })
        ));
        bad[2] = 0x01; // 268 bytes in a 16-byte buffer
        bad[3] = 0x0c;
        assert_eq!(
            parse_fields(&bad, 48),
            Err(FieldError::PastEnd { at: 48, len: 268 })
        );
        bad[2] = 0;
        bad[3] = 0; // zero length must not loop forever
        assert!(parse_fields(&bad, 0).is_err());
        let mut tail = good.clone();
        tail.extend_from_slice(&[0, 1]);
        assert_eq!(parse_fields(&tail, 48), Err(FieldError::Truncated(64)));
        // Authenticator lengths beyond the body.
        for body in [
            &[0u8, 16, 0, 16][..],
            &[0, 0, 0xff, 0xff, 0, 0, 0, 0][..],
            &[0, 3][..],
        ] {
            assert_eq!(
                Authenticator::parse(body),
                Err(FieldError::BadAuthenticator)
            );
        }
    }

    /// Property: any bytes either parse into fields that tile the input
    /// exactly, or are rejected; nothing panics.
    #[test]
    fn random_input_never_panics_and_parsed_fields_tile_the_input() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(12);
        let mut accepted = 0;
        for _ in 0..50_000 {
            // Mostly well-formed fields, then one kind of damage, or none.
            let mut buf = Vec::new();
            for _ in 0..rng.gen_range(0..6) {
                let body: Vec<u8> = (0..rng.gen_range(0..40)).map(|_| rng.gen()).collect();
                push_field(&mut buf, rng.gen(), &body);
            }
            match rng.gen_range(0..4) {
                0 if !buf.is_empty() => {
                    let at = rng.gen_range(0..buf.len());
                    buf[at] = rng.gen();
                }
                1 if !buf.is_empty() => buf.truncate(rng.gen_range(0..buf.len())),
                2 => buf.extend((0..rng.gen_range(1..20)).map(|_| rng.gen::<u8>())),
                _ => {}
            }
            if let Ok(fields) = parse_fields(&buf, 0) {
                accepted += 1;
                let mut next = 0;
                for f in &fields {
                    assert_eq!(f.start, next);
                    next += 4 + f.body.len();
                    if f.field_type == AUTHENTICATOR {
                        let _ = Authenticator::parse(f.body);
                    }
                }
                assert_eq!(next, buf.len());
            }
        }
        assert!(accepted > 1000, "the generator rarely made valid fields");
    }
}
