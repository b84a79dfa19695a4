//! Server mode: answering NTP clients (mode 3) with mode 4, limited per
//! client by a token bucket like chrony's `ratelimit`. Modes 6 and 7
//! (control, private) are never answered, in any mode.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use ntp_proto::{build_kod_rate, build_reply, Mode, NtpPacket, NtpTimestamp, ServerState};

use crate::model::RateLimit;

/// What to do with one client request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Answer,
    /// Over the limit: tell the client once (KoD RATE), then say nothing
    /// until its bucket refills.
    KissOfDeath,
    Ignore,
}

struct Bucket {
    tokens: f64,
    last: Instant,
    kod_sent: bool,
}

pub struct RateLimiter {
    limit: RateLimit,
    clients: HashMap<IpAddr, Bucket>,
}

/// Bound on remembered clients, so a spoofed-source flood cannot grow the
/// table without limit.
const MAX_CLIENTS: usize = 16_384;

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            clients: HashMap::new(),
        }
    }

    pub fn check(&mut self, client: IpAddr, now: Instant) -> Decision {
        if self.clients.len() >= MAX_CLIENTS && !self.clients.contains_key(&client) {
            self.forget_idle(now);
        }
        let burst = f64::from(self.limit.burst.max(1));
        let per_token = self.limit.interval.as_secs_f64().max(1e-3);
        let bucket = self.clients.entry(client).or_insert(Bucket {
            tokens: burst,
            last: now,
            kod_sent: false,
        });
        let refill = now.saturating_duration_since(bucket.last).as_secs_f64() / per_token;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.kod_sent = false;
            Decision::Answer
        } else if !bucket.kod_sent {
            bucket.kod_sent = true;
            Decision::KissOfDeath
        } else {
            Decision::Ignore
        }
    }

    /// Drops clients whose buckets are full again; if that frees nothing,
    /// the oldest half.
    fn forget_idle(&mut self, now: Instant) {
        let full_after = self
            .limit
            .interval
            .checked_mul(self.limit.burst.max(1))
            .unwrap_or(Duration::MAX);
        self.clients
            .retain(|_, b| now.saturating_duration_since(b.last) < full_after);
        if self.clients.len() >= MAX_CLIENTS {
            let mut ages: Vec<Instant> = self.clients.values().map(|b| b.last).collect();
            ages.sort();
            let cutoff = ages[ages.len() / 2];
            self.clients.retain(|_, b| b.last > cutoff);
        }
    }
}

/// A client's request: a well-formed mode-3 packet, or `None` for
/// anything else. Decided before the rate limiter is charged, so garbage
/// (which gets no reply anyway) cannot spend a client's tokens or its one
/// KoD RATE.
pub fn client_request(data: &[u8]) -> Option<NtpPacket> {
    NtpPacket::decode(data)
        .ok()
        .filter(|req| req.mode == Mode::Client)
}

/// The reply to a client's request, or `None` when it gets none (rate
/// limited, or the core has nothing to say).
pub fn answer(
    req: &NtpPacket,
    decision: Decision,
    state: &ServerState,
    received: NtpTimestamp,
    now: NtpTimestamp,
) -> Option<[u8; 48]> {
    match decision {
        Decision::Answer => build_reply(req, state, received, now).map(|p| p.encode()),
        Decision::KissOfDeath => Some(build_kod_rate(req, state).encode()),
        Decision::Ignore => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 99));

    #[test]
    fn burst_then_one_kod_then_silence_then_refill() {
        let mut rl = RateLimiter::new(RateLimit {
            burst: 3,
            interval: Duration::from_secs(2),
        });
        let t0 = Instant::now();
        let decisions: Vec<_> = (0..6).map(|_| rl.check(CLIENT, t0)).collect();
        assert_eq!(
            decisions,
            [
                Decision::Answer,
                Decision::Answer,
                Decision::Answer,
                Decision::KissOfDeath,
                Decision::Ignore,
                Decision::Ignore
            ]
        );
        assert_eq!(
            rl.check(CLIENT, t0 + Duration::from_secs(2)),
            Decision::Answer
        );
        let other: IpAddr = "192.0.2.98".parse().unwrap();
        assert_eq!(
            rl.check(other, t0),
            Decision::Answer,
            "limits are per client"
        );
    }

    #[test]
    fn table_stays_bounded() {
        let mut rl = RateLimiter::new(RateLimit {
            burst: 8,
            interval: Duration::from_secs(2),
        });
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let ip = IpAddr::V6(std::net::Ipv6Addr::from(
                0x2001_0db8_u128 << 96 | u128::from(i),
            ));
            rl.check(ip, t0 + Duration::from_micros(u64::from(i)));
        }
        assert!(rl.clients.len() <= MAX_CLIENTS);
    }

    #[test]
    fn only_well_formed_client_requests_are_answered() {
        let state = ServerState::unsynchronized(-20);
        let now = NtpTimestamp::from_seconds_fraction(3_950_000_000, 0);
        let mut req = NtpPacket::decode(&[0x23; 48]).unwrap(); // v4, mode 3
        req.transmit_timestamp = now;
        let req = client_request(&req.encode()).unwrap();
        let reply = answer(&req, Decision::Answer, &state, now, now).unwrap();
        let reply = NtpPacket::decode(&reply).unwrap();
        assert_eq!(reply.mode, Mode::Server);
        assert_eq!(reply.origin_timestamp, now);
        assert_eq!(reply.stratum, 16, "unsynchronised servers say so");
        for mode in [0x26u8, 0x27] {
            // mode 6 (control) and 7 (private)
            assert_eq!(client_request(&[mode; 48]), None);
        }
        // Too short, and a header followed by a trailer that is neither an
        // extension field nor a MAC.
        assert_eq!(client_request(&[0x23; 47]), None);
        assert_eq!(client_request(&[0x23; 51]), None);
    }
}
