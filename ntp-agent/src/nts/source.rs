//! One NTS source's state in the agent: when to run a key establishment
//! (at start, when the cookies run out, after a NAK that no authenticated
//! reply contradicted, with backoff after failures), the session between
//! key establishments, and what status shows about it.
//!
//! The one rule it exists to keep: a request either leaves sealed or does
//! not leave. There is no path from here to an unauthenticated packet.

use std::{
    net::SocketAddr,
    time::{Instant, SystemTime},
};

use ntp_proto::nts::{KeBackoff, NtsReject, NtsSession};
use rand::RngCore;

use super::ke::{Established, KeFailure};
use crate::protocol::{NtsRejects, NtsStatus};

pub struct NtsSource {
    ke_host: String,
    ke_port: u16,
    session: Option<NtsSession>,
    backoff: KeBackoff,
    /// When the next key establishment is due; `None` while one runs or
    /// while none is needed.
    next_ke: Option<Instant>,
    /// A NAK came and no authenticated reply since: the next poll starts
    /// a key establishment instead (RFC 8915 section 5.7).
    nak_pending: bool,
    ke_running: bool,
    status: NtsStatus,
}

/// What a poll of an NTS source gives.
#[derive(Debug, PartialEq, Eq)]
pub enum Sealed {
    /// Send this to `to`.
    Send { to: SocketAddr, packet: Vec<u8> },
    /// Nothing to send: a key establishment is needed first.
    NeedKe,
}

impl NtsSource {
    pub fn new(ke_host: String, ke_port: u16, now: Instant) -> Self {
        Self {
            status: NtsStatus {
                ke_server: format_host_port(&ke_host, ke_port),
                ntp_server: None,
                cookies: 0,
                aead: None,
                last_ke: None,
                ke_successes: 0,
                ke_failures: 0,
                last_error: None,
                last_error_kind: None,
                rejects: NtsRejects::default(),
            },
            ke_host,
            ke_port,
            session: None,
            backoff: KeBackoff::default(),
            next_ke: Some(now),
            nak_pending: false,
            ke_running: false,
        }
    }

    pub fn ke_host(&self) -> &str {
        &self.ke_host
    }

    pub fn ke_port(&self) -> u16 {
        self.ke_port
    }

    /// When the event loop should start a key establishment (`None`: one
    /// is running or none is needed).
    pub fn ke_due_at(&self) -> Option<Instant> {
        self.next_ke
    }

    /// The event loop started one; no second one until it ends.
    pub fn ke_started(&mut self) {
        self.next_ke = None;
        self.ke_running = true;
    }

    /// A key establishment succeeded: the new session replaces the old
    /// one. Returns the NTP server it names, for the filter and the core
    /// (which may differ from the one before: add the new, then remove
    /// the old).
    pub fn ke_succeeded(&mut self, done: Established, wall: SystemTime) -> SocketAddr {
        let to = SocketAddr::new(done.ntp_addr, done.ntp_port);
        self.backoff.succeeded();
        self.ke_running = false;
        self.nak_pending = false;
        self.next_ke = None;
        let s = &mut self.status;
        s.ntp_server = Some(to);
        s.aead = Some(done.aead.name().to_owned());
        s.last_ke = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs());
        s.ke_successes += 1;
        s.last_error = None;
        s.last_error_kind = None;
        s.cookies = done.session.cookies();
        self.session = Some(done.session);
        to
    }

    /// A key establishment failed: retry after the backoff. The session
    /// (if any cookies are left) stays usable meanwhile.
    pub fn ke_failed(&mut self, err: &KeFailure, now: Instant, spread: f64) {
        let wait = self.backoff.failed(spread);
        self.ke_running = false;
        self.next_ke = Some(now + wait);
        self.status.ke_failures += 1;
        self.status.last_error = Some(err.to_string());
        self.status.last_error_kind = Some(err.kind());
    }

    /// Schedules a key establishment now unless one runs or waits for
    /// its backoff.
    fn need_ke(&mut self, now: Instant) {
        if self.next_ke.is_none() && !self.ke_running {
            self.next_ke = Some(now);
        }
    }

    /// Wraps the core's request `header` for sending; never hands out an
    /// unauthenticated packet.
    pub fn seal(&mut self, header: &[u8; 48], rng: &mut impl RngCore, now: Instant) -> Sealed {
        if self.nak_pending {
            // The server did not take our cookie, and nothing authentic
            // said otherwise since: new keys and cookies first.
            self.session = None;
            self.nak_pending = false;
            self.status.cookies = 0;
            self.need_ke(now);
            return Sealed::NeedKe;
        }
        let (Some(session), Some(to)) = (self.session.as_mut(), self.status.ntp_server) else {
            return Sealed::NeedKe;
        };
        match session.seal_request(header, rng) {
            Some(packet) => {
                self.status.cookies = session.cookies();
                Sealed::Send { to, packet }
            }
            None => {
                self.session = None;
                self.status.cookies = 0;
                self.need_ke(now);
                Sealed::NeedKe
            }
        }
    }

    /// Checks a reply; `Some(header)` only when it is authentic, for the
    /// RFC 5905 checks. Every refusal is counted by reason.
    pub fn open(&mut self, data: &[u8]) -> Option<[u8; 48]> {
        let session = self.session.as_mut()?;
        let result = session.open_reply(data);
        self.status.cookies = session.cookies();
        let r = &mut self.status.rejects;
        match result {
            Ok(header) => {
                self.nak_pending = false;
                Some(header)
            }
            Err(e) => {
                *match e {
                    NtsReject::Auth => &mut r.nts_auth,
                    NtsReject::Nak => {
                        self.nak_pending = true;
                        &mut r.nts_nak
                    }
                    NtsReject::UniqueId => &mut r.nts_unique_id,
                    NtsReject::Unsolicited => &mut r.nts_unsolicited,
                    NtsReject::Malformed => &mut r.nts_malformed,
                } += 1;
                None
            }
        }
    }

    pub fn status(&self) -> &NtsStatus {
        &self.status
    }

    /// Why this source cannot be used yet, for status: the last KE error
    /// while there is no session.
    pub fn reason(&self) -> Option<String> {
        match (&self.session, &self.status.last_error) {
            (None, Some(e)) => Some(format!("NTS-KE with {} failed: {e}", self.status.ke_server)),
            (None, None) => Some(format!("NTS-KE with {} pending", self.status.ke_server)),
            _ => None,
        }
    }
}

fn format_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::KeFailureKind as FailureKind;
    use ntp_proto::nts::{session::test_server, AeadAlgorithm, AeadKey};
    use rand::SeedableRng;
    use std::time::Duration;

    const ALG: AeadAlgorithm = AeadAlgorithm::AesSivCmac256;

    fn established(cookies: usize, port: u16) -> Established {
        Established {
            session: NtsSession::new(
                ALG,
                &[1; 32],
                &[2; 32],
                (0..cookies).map(|i| vec![i as u8; 64]).collect(),
            )
            .unwrap(),
            aead: ALG,
            ntp_addr: "192.0.2.11".parse().unwrap(),
            ntp_port: port,
            ke_addr: "192.0.2.10:4460".parse().unwrap(),
            bytes_sent: 0,
            bytes_received: 0,
            elapsed: Duration::ZERO,
            warnings: Vec::new(),
        }
    }

    fn refused() -> KeFailure {
        KeFailure::Connect {
            addr: "192.0.2.10:4460".parse().unwrap(),
            err: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        }
    }

    fn reply_to(packet: &[u8], nak: bool) -> Vec<u8> {
        let opened =
            test_server::open_request(&AeadKey::new(ALG, &[1; 32]).unwrap(), packet).unwrap();
        let mut h = [0u8; 48];
        h[0] = 0x24;
        h[1] = if nak { 0 } else { 2 };
        h[24..32].copy_from_slice(&packet[40..48]);
        if nak {
            h[12..16].copy_from_slice(b"NTSN");
            let mut out = h.to_vec();
            ntp_proto::nts::ext::push_field(
                &mut out,
                ntp_proto::nts::ext::UNIQUE_IDENTIFIER,
                &opened.unique_id,
            );
            return out;
        }
        let cookies = vec![vec![9; 64]; 1 + opened.placeholders];
        test_server::seal_reply(
            &AeadKey::new(ALG, &[2; 32]).unwrap(),
            &h,
            &opened.unique_id,
            &cookies,
            &[4; 16],
        )
    }

    #[test]
    fn never_sends_without_a_session_and_backs_off_on_failure() {
        let t0 = Instant::now();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut s = NtsSource::new("192.0.2.10".into(), 4460, t0);
        assert_eq!(s.ke_due_at(), Some(t0), "the first KE is due at once");
        assert_eq!(s.seal(&[0x23; 48], &mut rng, t0), Sealed::NeedKe);
        s.ke_started();
        assert_eq!(s.ke_due_at(), None);
        s.ke_failed(&refused(), t0, 0.0);
        assert_eq!(s.ke_due_at(), Some(t0 + Duration::from_secs(8)));
        assert_eq!(s.status().last_error_kind, Some(FailureKind::Refused));
        assert!(s
            .reason()
            .unwrap()
            .starts_with("NTS-KE with 192.0.2.10:4460 failed: connecting to"));
        // Polls while failing never produce a packet, and do not pull the
        // retry forward.
        for _ in 0..5 {
            assert_eq!(s.seal(&[0x23; 48], &mut rng, t0), Sealed::NeedKe);
        }
        assert_eq!(s.ke_due_at(), Some(t0 + Duration::from_secs(8)));
        s.ke_started();
        s.ke_failed(&refused(), t0, 0.0);
        assert_eq!(s.ke_due_at(), Some(t0 + Duration::from_secs(16)));
        assert_eq!(s.status().ke_failures, 2);
    }

    #[test]
    fn exchange_then_cookies_run_out_then_new_ke() {
        let t0 = Instant::now();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let mut s = NtsSource::new("nts.test".into(), 4460, t0);
        s.ke_started();
        let to = s.ke_succeeded(established(2, 10123), SystemTime::now());
        assert_eq!(to, "192.0.2.11:10123".parse().unwrap());
        assert_eq!(s.reason(), None);
        let Sealed::Send { to: dst, packet } = s.seal(&[0x23; 48], &mut rng, t0) else {
            panic!("a cookie was there")
        };
        assert_eq!(dst, to);
        assert!(packet.len() > 48);
        // A forged plain reply is refused and counted.
        let mut plain = [0u8; 48];
        plain[24..32].copy_from_slice(&packet[40..48]);
        assert_eq!(s.open(&plain), None);
        assert_eq!(s.status().rejects.nts_unique_id, 1);
        assert!(s.open(&reply_to(&packet, false)).is_some());
        assert_eq!(s.status().cookies, 8);
        // Unanswered requests use the cookies up; then a KE, not a packet.
        for _ in 0..8 {
            assert!(matches!(
                s.seal(&[0x23; 48], &mut rng, t0),
                Sealed::Send { .. }
            ));
        }
        assert_eq!(s.seal(&[0x23; 48], &mut rng, t0), Sealed::NeedKe);
        assert_eq!(s.ke_due_at(), Some(t0));
    }

    #[test]
    fn nak_leads_to_a_new_ke_at_the_next_poll() {
        let t0 = Instant::now();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut s = NtsSource::new("nts.test".into(), 4460, t0);
        s.ke_started();
        s.ke_succeeded(established(8, 123), SystemTime::now());
        let Sealed::Send { packet, .. } = s.seal(&[0x23; 48], &mut rng, t0) else {
            panic!()
        };
        assert_eq!(s.open(&reply_to(&packet, true)), None);
        assert_eq!(s.status().rejects.nts_nak, 1);
        assert_eq!(s.seal(&[0x23; 48], &mut rng, t0), Sealed::NeedKe);
        assert_eq!(s.ke_due_at(), Some(t0));
        // A NAK followed by an authentic reply is forgotten.
        s.ke_started();
        s.ke_succeeded(established(8, 123), SystemTime::now());
        let Sealed::Send { packet, .. } = s.seal(&[0x23; 48], &mut rng, t0) else {
            panic!()
        };
        assert_eq!(s.open(&reply_to(&packet, true)), None);
        assert!(s.open(&reply_to(&packet, false)).is_some());
        assert!(matches!(
            s.seal(&[0x23; 48], &mut rng, t0),
            Sealed::Send { .. }
        ));
    }
}
