//! One NTS source's NTP side after a key establishment (RFC 8915 section
//! 5): wraps each request in a Unique Identifier, a cookie, placeholders
//! and an Authenticator, and lets a reply through only when its identifier
//! matches and its authenticator verifies under the server-to-client key.
//! What it lets through is the bare 48-byte header, for the RFC 5905
//! checks; nothing unauthenticated ever reaches them.

use super::aead::{AeadAlgorithm, AeadKey, KeyLengthError, NONCE_LEN};
use super::cookies::CookieJar;
use super::ext::{self, Authenticator, RawField};
use crate::packet::HEADER_LEN;
use rand::RngCore;
use serde::Serialize;

/// Requests stay below this size (IPv6's minimum MTU less the IPv6 and UDP
/// headers), dropping placeholders if need be: a fragmented request would
/// be dropped by many firewalls, ours included.
pub const MAX_REQUEST_LEN: usize = 1232;

/// The Kiss-o'-Death code of an NTS NAK (RFC 8915 section 5.7).
pub const NAK_CODE: [u8; 4] = *b"NTSN";

/// Why a reply was refused before the RFC 5905 checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
pub enum NtsReject {
    #[error("malformed extension fields")]
    Malformed,
    #[error("no NTS request of ours is waiting for an answer")]
    Unsolicited,
    #[error("unique identifier missing or not ours")]
    UniqueId,
    #[error("authenticator missing or not valid")]
    Auth,
    #[error("NTS NAK: the server cannot use our cookie")]
    Nak,
}

#[derive(Clone, Debug)]
struct Pending {
    unique_id: [u8; ext::UNIQUE_ID_LEN],
    /// Our request's transmit timestamp, which a NAK must echo.
    transmit: [u8; 8],
}

#[derive(Clone, Debug)]
pub struct NtsSession {
    c2s: AeadKey,
    s2c: AeadKey,
    jar: CookieJar,
    pending: Option<Pending>,
}

impl NtsSession {
    /// From the keys the TLS exporter gave and the KE's cookies.
    pub fn new(
        aead: AeadAlgorithm,
        c2s: &[u8],
        s2c: &[u8],
        cookies: Vec<Vec<u8>>,
    ) -> Result<Self, KeyLengthError> {
        Ok(Self {
            c2s: AeadKey::new(aead, c2s)?,
            s2c: AeadKey::new(aead, s2c)?,
            jar: CookieJar::new(cookies),
            pending: None,
        })
    }

    pub fn aead(&self) -> AeadAlgorithm {
        self.c2s.algorithm()
    }

    pub fn cookies(&self) -> usize {
        self.jar.len()
    }

    /// The request for `header` (a client-mode NTP header); `None` when no
    /// cookie is left: the caller needs a new key establishment and must
    /// not send the request unauthenticated.
    pub fn seal_request(
        &mut self,
        header: &[u8; HEADER_LEN],
        rng: &mut impl RngCore,
    ) -> Option<Vec<u8>> {
        let cookie = self.jar.take()?;
        let mut unique_id = [0u8; ext::UNIQUE_ID_LEN];
        rng.fill_bytes(&mut unique_id);
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);

        let mut out = Vec::with_capacity(MAX_REQUEST_LEN);
        out.extend_from_slice(header);
        ext::push_field(&mut out, ext::UNIQUE_IDENTIFIER, &unique_id);
        ext::push_field(&mut out, ext::NTS_COOKIE, &cookie);
        let auth_len = ext::field_len(4 + NONCE_LEN + super::aead::TAG_LEN);
        let placeholder = ext::field_len(cookie.len());
        let room = MAX_REQUEST_LEN.saturating_sub(out.len() + auth_len) / placeholder;
        for _ in 0..self.jar.placeholders_wanted().min(room) {
            ext::push_placeholder(&mut out, cookie.len());
        }
        let tag = self.c2s.seal(&nonce, &out, &[]);
        ext::push_authenticator(&mut out, &nonce, &tag);

        let mut transmit = [0u8; 8];
        transmit.copy_from_slice(&header[40..48]);
        self.pending = Some(Pending {
            unique_id,
            transmit,
        });
        Some(out)
    }

    /// Checks a reply. `Ok` gives the header to run the RFC 5905 checks
    /// on, and the cookies it carried are in the jar.
    pub fn open_reply(&mut self, data: &[u8]) -> Result<[u8; HEADER_LEN], NtsReject> {
        if data.len() < HEADER_LEN {
            return Err(NtsReject::Malformed);
        }
        let fields =
            ext::parse_fields(&data[HEADER_LEN..], HEADER_LEN).map_err(|_| NtsReject::Malformed)?;
        let pending = self.pending.as_ref().ok_or(NtsReject::Unsolicited)?;
        let auth_at = fields
            .iter()
            .position(|f| f.field_type == ext::AUTHENTICATOR);
        // Only fields the authenticator covers count.
        let covered = &fields[..auth_at.unwrap_or(fields.len())];
        let mut ids = covered
            .iter()
            .filter(|f| f.field_type == ext::UNIQUE_IDENTIFIER);
        match (ids.next(), ids.next()) {
            (Some(f), None) if f.body == pending.unique_id => {}
            _ => return Err(NtsReject::UniqueId),
        }
        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&data[..HEADER_LEN]);
        let Some(auth_at) = auth_at else {
            // A NAK is the one answer without an authenticator: a KoD
            // NTSN echoing our identifier and transmit timestamp.
            let kod = header[1] == 0 && header[12..16] == NAK_CODE && header[0] & 7 == 4;
            if kod && header[24..32] == pending.transmit {
                return Err(NtsReject::Nak);
            }
            return Err(NtsReject::Auth);
        };
        let auth: &RawField = &fields[auth_at];
        let sealed = Authenticator::parse(auth.body).map_err(|_| NtsReject::Auth)?;
        let plaintext = self
            .s2c
            .open(sealed.nonce, &data[..auth.start], sealed.ciphertext)
            .ok_or(NtsReject::Auth)?;
        let inner = ext::parse_fields(&plaintext, 0).map_err(|_| NtsReject::Malformed)?;
        self.pending = None;
        for f in inner {
            if f.field_type == ext::NTS_COOKIE {
                self.jar.add(f.body.to_vec());
            }
        }
        Ok(header)
    }

    /// Forget the outstanding request (e.g. the next poll replaced it).
    pub fn clear_pending(&mut self) {
        self.pending = None;
    }
}

/// The server side of an exchange, as far as a test or a benchmark needs
/// one: opens a request sealed by [`NtsSession`] and seals a reply carrying
/// `new_cookies`. (An NTS server on the router is out of scope.)
#[doc(hidden)]
pub mod test_server {
    use super::*;

    /// The request's unique identifier, cookie and placeholder count, once
    /// its authenticator verified under `c2s`.
    pub struct OpenedRequest {
        pub unique_id: Vec<u8>,
        pub cookie: Vec<u8>,
        pub placeholders: usize,
    }

    pub fn open_request(c2s: &AeadKey, data: &[u8]) -> Option<OpenedRequest> {
        let fields = ext::parse_fields(data.get(HEADER_LEN..)?, HEADER_LEN).ok()?;
        let auth = fields.iter().find(|f| f.field_type == ext::AUTHENTICATOR)?;
        let sealed = Authenticator::parse(auth.body).ok()?;
        c2s.open(sealed.nonce, &data[..auth.start], sealed.ciphertext)?;
        let body = |t| {
            fields
                .iter()
                .find(|f| f.field_type == t)
                .map(|f| f.body.to_vec())
        };
        Some(OpenedRequest {
            unique_id: body(ext::UNIQUE_IDENTIFIER)?,
            cookie: body(ext::NTS_COOKIE)?,
            placeholders: fields
                .iter()
                .filter(|f| f.field_type == ext::COOKIE_PLACEHOLDER)
                .count(),
        })
    }

    pub fn seal_reply(
        s2c: &AeadKey,
        header: &[u8; HEADER_LEN],
        unique_id: &[u8],
        new_cookies: &[Vec<u8>],
        nonce: &[u8],
    ) -> Vec<u8> {
        let mut out = header.to_vec();
        ext::push_field(&mut out, ext::UNIQUE_IDENTIFIER, unique_id);
        let mut plaintext = Vec::new();
        for c in new_cookies {
            ext::push_field(&mut plaintext, ext::NTS_COOKIE, c);
        }
        let sealed = s2c.seal(nonce, &out, &plaintext);
        ext::push_authenticator(&mut out, nonce, &sealed);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::test_server::{open_request, seal_reply};
    use super::*;
    use crate::packet::{Mode, NtpPacket, RefId};
    use crate::time::NtpTimestamp;
    use rand::{Rng, SeedableRng};

    const ALG: AeadAlgorithm = AeadAlgorithm::AesSivCmac256;

    fn keys() -> (AeadKey, AeadKey) {
        (
            AeadKey::new(ALG, &[1; 32]).unwrap(),
            AeadKey::new(ALG, &[2; 32]).unwrap(),
        )
    }

    fn session(cookies: usize) -> NtsSession {
        NtsSession::new(
            ALG,
            &[1; 32],
            &[2; 32],
            (0..cookies).map(|i| vec![i as u8; 100]).collect(),
        )
        .unwrap()
    }

    fn request_header(xmt: u64) -> [u8; HEADER_LEN] {
        let mut p = NtpPacket::new(Mode::Client);
        p.transmit_timestamp = NtpTimestamp::from_bits(xmt);
        p.encode()
    }

    fn reply_header(origin: u64) -> [u8; HEADER_LEN] {
        let mut p = NtpPacket::new(Mode::Server);
        p.stratum = 2;
        p.origin_timestamp = NtpTimestamp::from_bits(origin);
        p.receive_timestamp = NtpTimestamp::from_bits(origin + 1);
        p.transmit_timestamp = NtpTimestamp::from_bits(origin + 2);
        p.encode()
    }

    /// What a server would answer to `request` (with one fresh cookie per
    /// cookie spent and per placeholder).
    fn answer(request: &[u8]) -> Vec<u8> {
        let (c2s, s2c) = keys();
        let opened = open_request(&c2s, request).expect("request verifies");
        let xmt = u64::from_be_bytes(request[40..48].try_into().unwrap());
        let cookies: Vec<Vec<u8>> = (0..=opened.placeholders)
            .map(|i| vec![0xc0 + i as u8; 100])
            .collect();
        seal_reply(
            &s2c,
            &reply_header(xmt),
            &opened.unique_id,
            &cookies,
            &[5; 16],
        )
    }

    #[test]
    fn exchange_verifies_and_refills_the_jar() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut s = session(1);
        let req = s.seal_request(&request_header(42), &mut rng).unwrap();
        assert_eq!(s.cookies(), 0);
        let opened = open_request(&keys().0, &req).unwrap();
        assert_eq!(opened.cookie, vec![0; 100]);
        assert_eq!(opened.placeholders, 7, "an empty jar asks for seven more");
        assert!(req.len() <= MAX_REQUEST_LEN);
        let header = s.open_reply(&answer(&req)).unwrap();
        assert_eq!(header, reply_header(42));
        assert_eq!(s.cookies(), 8);
        // A replay of the same reply finds nothing outstanding.
        assert_eq!(s.open_reply(&answer(&req)), Err(NtsReject::Unsolicited));
        // A full jar asks for no placeholders.
        let req = s.seal_request(&request_header(43), &mut rng).unwrap();
        assert_eq!(open_request(&keys().0, &req).unwrap().placeholders, 0);
    }

    #[test]
    fn no_cookie_no_request() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let mut s = session(1);
        assert!(s.seal_request(&request_header(1), &mut rng).is_some());
        assert_eq!(s.seal_request(&request_header(2), &mut rng), None);
    }

    #[test]
    fn forged_and_tampered_replies_are_refused() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut s = session(4);
        let req = s.seal_request(&request_header(7), &mut rng).unwrap();
        let good = answer(&req);

        // An on-path forger's plain reply: right origin, no NTS at all.
        assert_eq!(s.open_reply(&reply_header(7)), Err(NtsReject::UniqueId));
        // ... or copying our unique identifier but unable to authenticate.
        let mut forged = reply_header(7).to_vec();
        ext::push_field(&mut forged, ext::UNIQUE_IDENTIFIER, &req[52..84]);
        assert_eq!(s.open_reply(&forged), Err(NtsReject::Auth));
        let (_, s2c) = keys();
        let wrong_key = AeadKey::new(ALG, &[9; 32]).unwrap();
        let opened = open_request(&keys().0, &req).unwrap();
        let forged = seal_reply(
            &wrong_key,
            &reply_header(7),
            &opened.unique_id,
            &[],
            &[5; 16],
        );
        assert_eq!(s.open_reply(&forged), Err(NtsReject::Auth));
        // Someone else's identifier.
        let other = seal_reply(&s2c, &reply_header(7), &[3; 32], &[], &[5; 16]);
        assert_eq!(s.open_reply(&other), Err(NtsReject::UniqueId));
        // Any flipped bit in the header or the fields.
        for at in [1, 30, 45, 60, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            assert!(s.open_reply(&bad).is_err(), "bit flip at {at} accepted");
        }
        // Bogus lengths.
        let mut bad = good.clone();
        bad[51] = 0x21;
        assert_eq!(s.open_reply(&bad), Err(NtsReject::Malformed));
        assert_eq!(s.open_reply(&good[..40]), Err(NtsReject::Malformed));
        // After all that, the real answer still gets through.
        assert!(s.open_reply(&good).is_ok());
    }

    #[test]
    fn nak_is_recognised_only_when_it_answers_our_request() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut s = session(2);
        let req = s.seal_request(&request_header(99), &mut rng).unwrap();
        let nak = |origin: u64| {
            let mut p = NtpPacket::new(Mode::Server);
            p.stratum = 0;
            p.reference_id = RefId(NAK_CODE);
            p.origin_timestamp = NtpTimestamp::from_bits(origin);
            let mut out = p.encode().to_vec();
            ext::push_field(&mut out, ext::UNIQUE_IDENTIFIER, &req[52..84]);
            out
        };
        assert_eq!(s.open_reply(&nak(99)), Err(NtsReject::Nak));
        assert_eq!(s.open_reply(&nak(98)), Err(NtsReject::Auth));
        // A NAK does not consume the request: the genuine reply still counts.
        assert!(s.open_reply(&answer(&req)).is_ok());
    }

    #[test]
    fn large_cookies_keep_requests_unfragmented() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut s = NtsSession::new(ALG, &[1; 32], &[2; 32], vec![vec![7; 256]]).unwrap();
        let req = s.seal_request(&request_header(1), &mut rng).unwrap();
        assert!(req.len() <= MAX_REQUEST_LEN, "{}", req.len());
        let opened = open_request(&keys().0, &req).unwrap();
        assert!(opened.placeholders >= 3, "{}", opened.placeholders);
    }

    /// Property: random mutations of a valid reply never panic and are
    /// accepted only when they leave the packet unchanged.
    #[test]
    fn mutated_replies_never_panic() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        let mut s = session(8);
        let req = s.seal_request(&request_header(5), &mut rng).unwrap();
        let good = answer(&req);
        for _ in 0..5_000 {
            let mut bad = good.clone();
            match rng.gen_range(0..3) {
                0 => {
                    let at = rng.gen_range(0..bad.len());
                    bad[at] = rng.gen();
                }
                1 => bad.truncate(rng.gen_range(0..bad.len())),
                _ => bad.extend((0..rng.gen_range(1..40)).map(|_| rng.gen::<u8>())),
            }
            let mut probe = s.clone();
            if probe.open_reply(&bad).is_ok() {
                // Only bytes after the authenticator are not covered; they
                // must never change what we hand on.
                assert_eq!(
                    &bad[..good.len().min(bad.len())],
                    &good[..good.len().min(bad.len())]
                );
            }
        }
    }
}
