//! One upstream server (client mode) or symmetric peer: poll process, reach
//! register, RFC 5905 reply checks, Kiss-o'-Death handling and the clock filter.

use crate::filter::{ClockFilter, Sample, PHI};
use crate::packet::{KissCode, LeapIndicator, Mode, NtpPacket, RefId};
use crate::regress::SourceStats;
use crate::server::ServerState;
use crate::time::{NtpDuration, NtpInstant, NtpTimestamp};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::time::Duration;

/// Used to pick the era when checking for the leap-second window.
const ERA_PIVOT: Duration = Duration::from_secs(1_704_067_200); // 2024-01-01
const IBURST_INTERVAL: NtpDuration = NtpDuration::from_fixed(2 << 32);
/// Poll exponents the protocol allows at all.
const POLL_LIMITS: (i8, i8) = (-6, 17);
/// ntpd's poll-adjust hysteresis (LIMIT).
const POLL_COUNTER_LIMIT: i32 = 30;

/// 2^exponent seconds.
pub fn poll_interval(exponent: i8) -> NtpDuration {
    NtpDuration::from_seconds(f64::powi(2.0, exponent as i32))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceKind {
    /// Client/server mode (`u` in the status).
    Server,
    /// Symmetric active mode (`s` in the status).
    Peer,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SourceConfig {
    pub address: IpAddr,
    pub kind: SourceKind,
    /// log2 seconds.
    pub minpoll: i8,
    pub maxpoll: i8,
    /// Send the first `iburst_count` requests 2 s apart.
    pub iburst: bool,
    pub iburst_count: u8,
}

impl SourceConfig {
    pub fn server(address: IpAddr) -> Self {
        SourceConfig {
            address,
            kind: SourceKind::Server,
            minpoll: 6,
            maxpoll: 10,
            iburst: true,
            iburst_count: 8,
        }
    }

    pub fn peer(address: IpAddr) -> Self {
        SourceConfig {
            kind: SourceKind::Peer,
            ..Self::server(address)
        }
    }
}

/// Why a reply was not used; each has a counter in `RejectCounters`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RejectReason {
    Malformed,
    BadVersion,
    BadMode,
    /// Same transmit timestamp as the last accepted reply (replay).
    Duplicate,
    /// No request of ours is waiting for an answer.
    Unsolicited,
    /// Origin timestamp is not the transmit timestamp of our request.
    BogusOrigin,
    ZeroTimestamp,
    /// Kiss-o'-Death (stratum 0).
    Kod,
    /// Leap indicator 3: the server itself is not synchronised.
    Unsynchronized,
    /// Stratum 16 or above.
    BadStratum,
    RootDistance,
    /// The server is synchronised to us.
    Loop,
    /// Measurement straddles a leap second.
    LeapWindow,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectCounters {
    pub malformed: u64,
    pub bad_version: u64,
    pub bad_mode: u64,
    pub duplicate: u64,
    pub unsolicited: u64,
    pub bogus_origin: u64,
    pub zero_timestamp: u64,
    pub kod: u64,
    pub unsynchronized: u64,
    pub bad_stratum: u64,
    pub root_distance: u64,
    pub loop_detected: u64,
    pub leap_window: u64,
}

impl RejectCounters {
    fn count(&mut self, r: RejectReason) {
        let c = match r {
            RejectReason::Malformed => &mut self.malformed,
            RejectReason::BadVersion => &mut self.bad_version,
            RejectReason::BadMode => &mut self.bad_mode,
            RejectReason::Duplicate => &mut self.duplicate,
            RejectReason::Unsolicited => &mut self.unsolicited,
            RejectReason::BogusOrigin => &mut self.bogus_origin,
            RejectReason::ZeroTimestamp => &mut self.zero_timestamp,
            RejectReason::Kod => &mut self.kod,
            RejectReason::Unsynchronized => &mut self.unsynchronized,
            RejectReason::BadStratum => &mut self.bad_stratum,
            RejectReason::RootDistance => &mut self.root_distance,
            RejectReason::Loop => &mut self.loop_detected,
            RejectReason::LeapWindow => &mut self.leap_window,
        };
        *c += 1;
    }

    pub fn total(&self) -> u64 {
        self.malformed
            + self.bad_version
            + self.bad_mode
            + self.duplicate
            + self.unsolicited
            + self.bogus_origin
            + self.zero_timestamp
            + self.kod
            + self.unsynchronized
            + self.bad_stratum
            + self.root_distance
            + self.loop_detected
            + self.leap_window
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum KodState {
    #[default]
    None,
    /// RATE received `count` times; polling no faster than 2^min_poll s.
    RateLimited { count: u32, min_poll: i8 },
    /// DENY or RSTR: the source is no longer polled or used.
    Denied(KissCode),
}

/// Offset, delay and dispersion of one accepted exchange.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measurement {
    pub offset: NtpDuration,
    pub delay: NtpDuration,
    pub dispersion: NtpDuration,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ReceiveOutcome {
    Accepted(Measurement),
    Rejected(RejectReason),
    /// Valid KoD; the state change is already applied.
    Kod(KissCode),
}

/// What the checks need from the system.
#[derive(Clone, Debug, Default)]
pub struct CheckContext {
    pub max_root_distance: NtpDuration,
    /// Reference ids that identify this host; a server announcing one is synced to us.
    pub own_refids: Vec<RefId>,
    /// A leap second is armed: reject exchanges near midnight UTC.
    pub leap_armed: bool,
    /// Local clock precision.
    pub precision: NtpDuration,
}

#[derive(Clone, Copy, Debug)]
struct Outstanding {
    /// Transmit timestamp as put in the request (random in client mode).
    nonce: NtpTimestamp,
    /// Local clock reading when the request was sent.
    sent: NtpTimestamp,
}

#[derive(Clone, Debug)]
pub struct Source {
    cfg: SourceConfig,
    pub(crate) reach: u8,
    poll: i8,
    poll_counter: i32,
    poll_score: f64,
    next_poll: NtpInstant,
    iburst_left: u8,
    /// After the burst, intervals double from 4 s up to the poll interval so
    /// the first frequency estimate spans a growing baseline.
    ramp_exp: i8,
    outstanding: Option<Outstanding>,
    last_accepted_xmt: Option<NtpTimestamp>,
    /// Symmetric mode: transmit timestamp and our receive time of the peer's last packet.
    peer_xmt: NtpTimestamp,
    peer_rec: NtpTimestamp,
    pub(crate) filter: ClockFilter,
    /// Regression over this source's samples (kept across system peer
    /// changes: the samples belong to the source).
    pub(crate) stats: SourceStats,
    pub(crate) stratum: u8,
    pub(crate) refid: RefId,
    pub(crate) leap: LeapIndicator,
    pub(crate) root_delay: NtpDuration,
    pub(crate) root_dispersion: NtpDuration,
    pub(crate) last_reply: Option<NtpInstant>,
    counters: RejectCounters,
    kod: KodState,
}

impl Source {
    /// The first request goes out immediately (at `now`).
    pub fn new(cfg: SourceConfig, now: NtpInstant) -> Self {
        let minpoll = cfg.minpoll.clamp(POLL_LIMITS.0, POLL_LIMITS.1);
        let iburst_left = if cfg.iburst { cfg.iburst_count } else { 0 };
        Source {
            poll: minpoll,
            cfg,
            reach: 0,
            poll_counter: 0,
            poll_score: 0.0,
            next_poll: now,
            iburst_left,
            ramp_exp: if iburst_left > 0 { 2 } else { i8::MAX },
            outstanding: None,
            last_accepted_xmt: None,
            peer_xmt: NtpTimestamp::ZERO,
            peer_rec: NtpTimestamp::ZERO,
            filter: ClockFilter::new(),
            stats: SourceStats::new(),
            stratum: 16,
            refid: RefId::default(),
            leap: LeapIndicator::Unsynchronized,
            root_delay: NtpDuration::ZERO,
            root_dispersion: NtpDuration::ZERO,
            last_reply: None,
            counters: RejectCounters::default(),
            kod: KodState::None,
        }
    }

    pub fn config(&self) -> &SourceConfig {
        &self.cfg
    }

    pub fn reach(&self) -> u8 {
        self.reach
    }

    pub fn poll_exponent(&self) -> i8 {
        self.poll
    }

    pub fn counters(&self) -> &RejectCounters {
        &self.counters
    }

    pub fn kod_state(&self) -> KodState {
        self.kod
    }

    pub fn is_denied(&self) -> bool {
        matches!(self.kod, KodState::Denied(_))
    }

    /// Monotonic time of the next request; `None` once the source refused service.
    pub fn next_poll_at(&self) -> Option<NtpInstant> {
        (!self.is_denied()).then_some(self.next_poll)
    }

    fn effective_minpoll(&self) -> i8 {
        let base = self.cfg.minpoll.clamp(POLL_LIMITS.0, POLL_LIMITS.1);
        match self.kod {
            KodState::RateLimited { min_poll, .. } => base.max(min_poll),
            _ => base,
        }
    }

    fn effective_maxpoll(&self) -> i8 {
        self.cfg
            .maxpoll
            .clamp(POLL_LIMITS.0, POLL_LIMITS.1)
            .max(self.effective_minpoll())
    }

    /// Builds the next request. `clock` is the current reading of the local
    /// clock (the send time); `state` fills the header in symmetric mode.
    pub fn poll(
        &mut self,
        now: NtpInstant,
        clock: NtpTimestamp,
        rng: &mut impl RngCore,
        state: &ServerState,
    ) -> [u8; 48] {
        if self.outstanding.is_some() && self.iburst_left == 0 {
            // Previous request went unanswered: poll faster to notice recovery.
            self.adapt_poll(false);
        }
        self.reach <<= 1;
        let mut pkt = NtpPacket::new(Mode::Client);
        pkt.poll = self.poll;
        let nonce = match self.cfg.kind {
            SourceKind::Server => {
                // Random transmit timestamp: the reply's origin must echo it,
                // which an off-path attacker cannot guess.
                let mut n = rng.next_u64();
                if n == 0 {
                    n = 1;
                }
                NtpTimestamp::from_bits(n)
            }
            SourceKind::Peer => {
                pkt = state.header(Mode::SymmetricActive);
                pkt.poll = self.poll;
                pkt.origin_timestamp = self.peer_xmt;
                pkt.receive_timestamp = self.peer_rec;
                clock
            }
        };
        pkt.transmit_timestamp = nonce;
        self.outstanding = Some(Outstanding { nonce, sent: clock });

        let interval = if self.iburst_left > 0 {
            self.iburst_left -= 1;
            IBURST_INTERVAL
        } else if self.ramp_exp < self.poll {
            self.ramp_exp += 1;
            poll_interval(self.ramp_exp - 1)
        } else {
            // Up to 5% random spread so sources do not phase-lock.
            poll_interval(self.poll) * (1.0 - 0.05 * (rng.next_u32() as f64 / u32::MAX as f64))
        };
        self.next_poll = now + interval;
        pkt.encode()
    }

    /// ntpd-style poll adjustment: sustained stability raises the poll
    /// exponent, large offsets or missed replies lower it.
    pub fn adapt_poll(&mut self, stable: bool) {
        let p = self.poll as i32;
        if stable {
            self.poll_counter += p.max(1);
            if self.poll_counter > POLL_COUNTER_LIMIT {
                self.poll_counter = 0;
                if self.poll < self.effective_maxpoll() {
                    self.poll += 1;
                }
            }
        } else {
            self.poll_counter -= 2 * p.max(1);
            if self.poll_counter < -POLL_COUNTER_LIMIT {
                self.poll_counter = 0;
                if self.poll > self.effective_minpoll() {
                    self.poll -= 1;
                }
            }
        }
        self.poll = self
            .poll
            .clamp(self.effective_minpoll(), self.effective_maxpoll());
    }

    /// chrony-style adjustment for the source that disciplines the clock:
    /// `adj` is accumulated and the poll exponent moves when it reaches ±1.
    pub fn adjust_poll_score(&mut self, adj: f64) {
        self.poll_score += adj;
        if self.poll_score >= 1.0 {
            self.poll_score = 0.0;
            self.poll += 1;
        } else if self.poll_score <= -1.0 {
            self.poll_score = 0.0;
            self.poll -= 1;
        }
        self.poll = self
            .poll
            .clamp(self.effective_minpoll(), self.effective_maxpoll());
    }

    /// The request built by the last [`poll`](Self::poll) left at `sent`
    /// (local clock): the moment it was really handed to the network, which
    /// the caller knows better than the reading `poll` was given (that one
    /// comes before the socket is bound and the filter told of its port).
    /// The packet's transmit field is untouched: in client mode it is a
    /// nonce, and a peer already has the value we sent.
    pub fn transmitted(&mut self, sent: NtpTimestamp) {
        if let Some(o) = &mut self.outstanding {
            o.sent = sent;
        }
    }

    /// Our clock was stepped by `offset` seconds: keep pending local timestamps
    /// on the new timescale.
    pub fn clock_stepped(&mut self, d: NtpDuration) {
        if let Some(o) = &mut self.outstanding {
            o.sent = o.sent + d;
        }
        if !self.peer_rec.is_zero() {
            self.peer_rec = self.peer_rec + d;
        }
    }

    fn reject(&mut self, r: RejectReason) -> ReceiveOutcome {
        self.counters.count(r);
        ReceiveOutcome::Rejected(r)
    }

    /// Runs the RFC 5905 checks on a reply received at local clock reading
    /// `recv` (monotonic `now`) and, if it passes, returns the measurement.
    pub fn receive(
        &mut self,
        data: &[u8],
        recv: NtpTimestamp,
        now: NtpInstant,
        ctx: &CheckContext,
    ) -> ReceiveOutcome {
        let pkt = match NtpPacket::decode(data) {
            Ok(p) => p,
            Err(_) => return self.reject(RejectReason::Malformed),
        };
        if !(1..=4).contains(&pkt.version) {
            return self.reject(RejectReason::BadVersion);
        }
        let mode_ok = match self.cfg.kind {
            SourceKind::Server => pkt.mode == Mode::Server,
            SourceKind::Peer => {
                matches!(pkt.mode, Mode::SymmetricActive | Mode::SymmetricPassive)
            }
        };
        if !mode_ok {
            return self.reject(RejectReason::BadMode);
        }
        if self.last_accepted_xmt == Some(pkt.transmit_timestamp) {
            return self.reject(RejectReason::Duplicate);
        }
        if self.cfg.kind == SourceKind::Peer && !pkt.transmit_timestamp.is_zero() {
            // Remember the peer's packet so our next one lets it take a sample,
            // whether or not this one gives us a sample.
            self.peer_xmt = pkt.transmit_timestamp;
            self.peer_rec = recv;
        }
        let Some(out) = self.outstanding else {
            return self.reject(RejectReason::Unsolicited);
        };
        if pkt.origin_timestamp != out.nonce {
            return self.reject(RejectReason::BogusOrigin);
        }
        // Authentic answer to our request: it consumes the request.
        self.outstanding = None;
        if let Some(code) = pkt.kiss_code() {
            self.counters.count(RejectReason::Kod);
            self.handle_kod(code, now);
            return ReceiveOutcome::Kod(code);
        }
        if pkt.receive_timestamp.is_zero() || pkt.transmit_timestamp.is_zero() {
            return self.reject(RejectReason::ZeroTimestamp);
        }
        if pkt.stratum >= 16 {
            return self.reject(RejectReason::BadStratum);
        }
        if pkt.leap == LeapIndicator::Unsynchronized {
            return self.reject(RejectReason::Unsynchronized);
        }
        if pkt.stratum > 1 && ctx.own_refids.contains(&pkt.reference_id) {
            return self.reject(RejectReason::Loop);
        }
        if ctx.leap_armed {
            let secs = |t: NtpTimestamp| t.to_unix(ERA_PIVOT).as_secs_f64() % 86400.0;
            let near = |s: f64| !(2.0..=86398.0).contains(&s);
            if near(secs(out.sent)) || near(secs(recv)) {
                return self.reject(RejectReason::LeapWindow);
            }
        }

        let t1 = out.sent;
        let t2 = pkt.receive_timestamp;
        let t3 = pkt.transmit_timestamp;
        let t4 = recv;
        let offset =
            NtpDuration::from_fixed(((t2 - t1).to_fixed() >> 1) + ((t3 - t4).to_fixed() >> 1));
        let delay = ((t4 - t1) - (t3 - t2)).max(ctx.precision);
        let remote_precision =
            NtpDuration::from_seconds(f64::powi(2.0, pkt.precision.clamp(-30, 10) as i32));
        let dispersion = remote_precision + ctx.precision + PHI * (t4 - t1).abs();
        let root_delay = NtpDuration::from_seconds(pkt.root_delay.to_seconds());
        let root_dispersion = NtpDuration::from_seconds(pkt.root_dispersion.to_seconds());
        if (root_delay + delay) / 2.0 + root_dispersion + dispersion > ctx.max_root_distance {
            return self.reject(RejectReason::RootDistance);
        }

        self.last_accepted_xmt = Some(pkt.transmit_timestamp);
        self.reach |= 1;
        self.last_reply = Some(now);
        self.stratum = pkt.stratum;
        self.refid = pkt.reference_id;
        self.leap = pkt.leap;
        self.root_delay = root_delay;
        self.root_dispersion = root_dispersion;
        ReceiveOutcome::Accepted(Measurement {
            offset,
            delay,
            dispersion,
        })
    }

    pub(crate) fn add_sample(&mut self, s: Sample, precision: NtpDuration) {
        self.filter.add(s);
        self.stats
            .add(s.time, s.phase, s.delay, s.dispersion, precision);
    }

    fn handle_kod(&mut self, code: KissCode, now: NtpInstant) {
        match code {
            KissCode::Rate => {
                let (count, floor) = match self.kod {
                    KodState::RateLimited { count, min_poll } => (count, min_poll),
                    _ => (0, POLL_LIMITS.0),
                };
                // At least double the interval and never go back below it.
                let min_poll = (self.poll + 1).max(floor).min(POLL_LIMITS.1);
                self.kod = KodState::RateLimited {
                    count: count + 1,
                    min_poll,
                };
                self.poll = min_poll;
                self.poll_counter = 0;
                self.iburst_left = 0;
                self.ramp_exp = i8::MAX;
                self.next_poll = self.next_poll.max(now + poll_interval(self.poll));
            }
            KissCode::Deny | KissCode::Rstr => {
                self.kod = KodState::Denied(code);
                self.reach = 0;
                self.filter.clear();
                self.stats.clear();
            }
            KissCode::Other(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::NtpShort;
    use rand::SeedableRng;
    use std::net::Ipv4Addr;

    fn ctx() -> CheckContext {
        CheckContext {
            max_root_distance: NtpDuration::from_seconds(1.5),
            own_refids: vec![RefId([10, 0, 0, 99])],
            leap_armed: false,
            precision: NtpDuration::from_seconds(1e-9),
        }
    }

    fn mono(secs: f64) -> NtpInstant {
        NtpInstant::from_secs_f64(secs)
    }

    fn t(secs: f64) -> NtpTimestamp {
        NtpTimestamp::from_seconds_fraction(3_900_000_000, 0) + NtpDuration::from_seconds(secs)
    }

    fn setup(kind: SourceKind) -> (Source, NtpPacket, rand_chacha::ChaCha8Rng) {
        let addr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let cfg = SourceConfig {
            kind,
            ..SourceConfig::server(addr)
        };
        let mut src = Source::new(cfg, mono(0.0));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let req = src.poll(
            mono(0.0),
            t(0.0),
            &mut rng,
            &ServerState::unsynchronized(-20),
        );
        let req = NtpPacket::decode(&req).unwrap();
        let mut reply = NtpPacket::new(match kind {
            SourceKind::Server => Mode::Server,
            SourceKind::Peer => Mode::SymmetricPassive,
        });
        reply.stratum = 2;
        reply.precision = -20;
        reply.reference_id = RefId([192, 0, 2, 1]);
        reply.root_delay = NtpShort::from_seconds(0.01);
        reply.root_dispersion = NtpShort::from_seconds(0.01);
        reply.origin_timestamp = req.transmit_timestamp;
        // Server is 5 ms ahead, 2 ms round trip.
        reply.receive_timestamp = t(0.006);
        reply.transmit_timestamp = t(0.006001);
        (src, reply, rng)
    }

    fn recv(src: &mut Source, p: &NtpPacket) -> ReceiveOutcome {
        src.receive(&p.encode(), t(0.002001), mono(1.0), &ctx())
    }

    #[test]
    fn valid_reply_gives_measurement() {
        let (mut src, reply, _) = setup(SourceKind::Server);
        match recv(&mut src, &reply) {
            ReceiveOutcome::Accepted(m) => {
                assert!((m.offset.to_seconds() - 0.005).abs() < 1e-8, "{m:?}");
                assert!((m.delay.to_seconds() - 0.002).abs() < 1e-8);
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(src.reach(), 1);
        assert_eq!(src.counters().total(), 0);
    }

    #[test]
    fn the_real_send_time_replaces_the_poll_reading() {
        // The request really left 1 ms after the reading `poll` got (socket
        // set-up, filter write): the offset must not carry half of that.
        let (mut src, reply, _) = setup(SourceKind::Server);
        src.transmitted(t(0.001));
        match recv(&mut src, &reply) {
            ReceiveOutcome::Accepted(m) => {
                assert!((m.offset.to_seconds() - 0.0045).abs() < 1e-8, "{m:?}");
                assert!((m.delay.to_seconds() - 0.001).abs() < 1e-8, "{m:?}");
            }
            o => panic!("{o:?}"),
        }
        // The origin check still uses the nonce the packet carried.
        assert_eq!(src.counters().total(), 0);
    }

    #[test]
    fn request_uses_random_transmit_timestamp() {
        let (src, reply, _) = setup(SourceKind::Server);
        assert_ne!(reply.origin_timestamp, t(0.0));
        assert!(src.outstanding.is_some());
    }

    fn expect_reject(kind: SourceKind, f: impl FnOnce(&mut NtpPacket), r: RejectReason) {
        let (mut src, mut reply, _) = setup(kind);
        f(&mut reply);
        assert_eq!(recv(&mut src, &reply), ReceiveOutcome::Rejected(r));
        let mut expected = RejectCounters::default();
        expected.count(r);
        assert_eq!(*src.counters(), expected);
        assert_eq!(src.reach(), 0);
    }

    #[test]
    fn reject_bogus_origin() {
        expect_reject(
            SourceKind::Server,
            |p| p.origin_timestamp = t(0.0),
            RejectReason::BogusOrigin,
        );
    }

    #[test]
    fn reject_zero_timestamps() {
        expect_reject(
            SourceKind::Server,
            |p| p.receive_timestamp = NtpTimestamp::ZERO,
            RejectReason::ZeroTimestamp,
        );
        expect_reject(
            SourceKind::Server,
            |p| p.transmit_timestamp = NtpTimestamp::ZERO,
            RejectReason::ZeroTimestamp,
        );
    }

    #[test]
    fn reject_bad_mode() {
        expect_reject(
            SourceKind::Server,
            |p| p.mode = Mode::Client,
            RejectReason::BadMode,
        );
        expect_reject(
            SourceKind::Server,
            |p| p.mode = Mode::SymmetricPassive,
            RejectReason::BadMode,
        );
        expect_reject(
            SourceKind::Peer,
            |p| p.mode = Mode::Server,
            RejectReason::BadMode,
        );
    }

    #[test]
    fn reject_bad_version() {
        expect_reject(
            SourceKind::Server,
            |p| p.version = 0,
            RejectReason::BadVersion,
        );
        expect_reject(
            SourceKind::Server,
            |p| p.version = 5,
            RejectReason::BadVersion,
        );
        let (mut src, mut reply, _) = setup(SourceKind::Server);
        reply.version = 3;
        assert!(matches!(
            recv(&mut src, &reply),
            ReceiveOutcome::Accepted(_)
        ));
    }

    #[test]
    fn reject_stratum_and_leap() {
        expect_reject(
            SourceKind::Server,
            |p| p.stratum = 16,
            RejectReason::BadStratum,
        );
        expect_reject(
            SourceKind::Server,
            |p| p.leap = LeapIndicator::Unsynchronized,
            RejectReason::Unsynchronized,
        );
    }

    #[test]
    fn reject_root_distance() {
        expect_reject(
            SourceKind::Server,
            |p| p.root_dispersion = NtpShort::from_seconds(2.0),
            RejectReason::RootDistance,
        );
    }

    #[test]
    fn reject_loop() {
        expect_reject(
            SourceKind::Server,
            |p| p.reference_id = RefId([10, 0, 0, 99]),
            RejectReason::Loop,
        );
    }

    #[test]
    fn reject_malformed() {
        let (mut src, _, _) = setup(SourceKind::Server);
        assert_eq!(
            src.receive(&[0u8; 20], t(0.0), mono(1.0), &ctx()),
            ReceiveOutcome::Rejected(RejectReason::Malformed)
        );
    }

    #[test]
    fn reject_duplicate_and_unsolicited() {
        let (mut src, reply, mut rng) = setup(SourceKind::Server);
        assert!(matches!(
            recv(&mut src, &reply),
            ReceiveOutcome::Accepted(_)
        ));
        // Replay of the accepted reply.
        assert_eq!(
            recv(&mut src, &reply),
            ReceiveOutcome::Rejected(RejectReason::Duplicate)
        );
        // A different reply when nothing is outstanding.
        let mut other = reply;
        other.transmit_timestamp = t(0.5);
        assert_eq!(
            recv(&mut src, &other),
            ReceiveOutcome::Rejected(RejectReason::Unsolicited)
        );
        assert_eq!(src.counters().duplicate, 1);
        assert_eq!(src.counters().unsolicited, 1);
        // A new request makes the next answer acceptable again.
        let req = src.poll(
            mono(2.0),
            t(2.0),
            &mut rng,
            &ServerState::unsynchronized(-20),
        );
        let req = NtpPacket::decode(&req).unwrap();
        other.origin_timestamp = req.transmit_timestamp;
        other.receive_timestamp = t(2.006);
        other.transmit_timestamp = t(2.006);
        assert!(matches!(
            src.receive(&other.encode(), t(2.002), mono(3.0), &ctx()),
            ReceiveOutcome::Accepted(_)
        ));
    }

    #[test]
    fn reject_leap_window() {
        let (mut src, reply, _) = setup(SourceKind::Server);
        let mut c = ctx();
        c.leap_armed = true;
        // Receive time exactly at a UTC midnight.
        let midnight = NtpTimestamp::from_unix(Duration::from_secs(20_254 * 86_400));
        assert_eq!(
            src.receive(&reply.encode(), midnight, mono(1.0), &c),
            ReceiveOutcome::Rejected(RejectReason::LeapWindow)
        );
    }

    #[test]
    fn kod_rate_backs_off_and_deny_stops() {
        let (mut src, mut reply, mut rng) = setup(SourceKind::Server);
        let before = src.poll_exponent();
        reply.stratum = 0;
        reply.reference_id = RefId(*b"RATE");
        assert_eq!(recv(&mut src, &reply), ReceiveOutcome::Kod(KissCode::Rate));
        assert_eq!(src.poll_exponent(), before + 1);
        assert!(src.next_poll_at().unwrap() >= mono(64.0));
        // The backoff is respected by poll adaptation.
        for _ in 0..10 {
            src.adapt_poll(false);
        }
        assert_eq!(src.poll_exponent(), before + 1);
        assert_eq!(src.counters().kod, 1);

        let req = src.poll(
            mono(200.0),
            t(200.0),
            &mut rng,
            &ServerState::unsynchronized(-20),
        );
        reply.origin_timestamp = NtpPacket::decode(&req).unwrap().transmit_timestamp;
        reply.reference_id = RefId(*b"DENY");
        reply.transmit_timestamp = t(200.1);
        assert_eq!(recv(&mut src, &reply), ReceiveOutcome::Kod(KissCode::Deny));
        assert!(src.is_denied());
        assert_eq!(src.next_poll_at(), None);
    }

    #[test]
    fn kod_must_pass_origin_check() {
        let (mut src, mut reply, _) = setup(SourceKind::Server);
        reply.stratum = 0;
        reply.reference_id = RefId(*b"DENY");
        reply.origin_timestamp = t(1.0);
        assert_eq!(
            recv(&mut src, &reply),
            ReceiveOutcome::Rejected(RejectReason::BogusOrigin)
        );
        assert!(!src.is_denied());
    }

    #[test]
    fn symmetric_peer_exchange() {
        let (mut src, reply, mut rng) = setup(SourceKind::Peer);
        // Our request went out with the real time as transmit timestamp.
        assert_eq!(reply.origin_timestamp, t(0.0));
        match recv(&mut src, &reply) {
            ReceiveOutcome::Accepted(m) => assert!((m.offset.to_seconds() - 0.005).abs() < 1e-8),
            o => panic!("{o:?}"),
        }
        // Our next packet carries the peer's transmit and our receive time.
        let next = src.poll(
            mono(64.0),
            t(64.0),
            &mut rng,
            &ServerState::unsynchronized(-20),
        );
        let next = NtpPacket::decode(&next).unwrap();
        assert_eq!(next.mode, Mode::SymmetricActive);
        assert_eq!(next.origin_timestamp, reply.transmit_timestamp);
        assert_eq!(next.receive_timestamp, t(0.002001));
        assert_eq!(next.transmit_timestamp, t(64.0));
        // Mode 1 from the peer is accepted too.
        let mut p = reply;
        p.mode = Mode::SymmetricActive;
        p.origin_timestamp = t(64.0);
        p.receive_timestamp = t(64.006);
        p.transmit_timestamp = t(64.007);
        assert!(matches!(
            src.receive(&p.encode(), t(64.003), mono(65.0), &ctx()),
            ReceiveOutcome::Accepted(_)
        ));
    }

    #[test]
    fn reach_register_shifts() {
        let (mut src, _, mut rng) = setup(SourceKind::Server);
        src.reach = 0xff;
        for i in 0..8 {
            src.poll(
                mono(i as f64 * 64.0),
                t(0.0),
                &mut rng,
                &ServerState::unsynchronized(-20),
            );
        }
        assert_eq!(src.reach(), 0);
    }
}
