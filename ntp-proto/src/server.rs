//! Building server-mode (mode 4) replies from the system state.

use crate::packet::{KissCode, LeapIndicator, Mode, NtpPacket, RefId};
use crate::time::{NtpDuration, NtpShort, NtpTimestamp};
use serde::Serialize;

/// What a server tells its clients about itself (RFC 5905 system variables).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ServerState {
    pub leap: LeapIndicator,
    pub stratum: u8,
    pub precision: i8,
    pub root_delay: NtpDuration,
    pub root_dispersion: NtpDuration,
    pub reference_id: RefId,
    pub reference_time: NtpTimestamp,
}

impl ServerState {
    /// Not synchronised: leap 3, stratum 16, refid "INIT".
    pub fn unsynchronized(precision: i8) -> Self {
        ServerState {
            leap: LeapIndicator::Unsynchronized,
            stratum: 16,
            precision,
            root_delay: NtpDuration::ZERO,
            root_dispersion: NtpDuration::ZERO,
            reference_id: RefId(*b"INIT"),
            reference_time: NtpTimestamp::ZERO,
        }
    }

    /// A header carrying this state, timestamps left zero.
    pub fn header(&self, mode: Mode) -> NtpPacket {
        let mut p = NtpPacket::new(mode);
        p.leap = self.leap;
        p.stratum = self.stratum;
        p.precision = self.precision;
        p.root_delay = NtpShort::from_seconds(self.root_delay.to_seconds());
        p.root_dispersion = NtpShort::from_seconds(self.root_dispersion.to_seconds());
        p.reference_id = self.reference_id;
        p.reference_timestamp = self.reference_time;
        p
    }
}

/// Mode 4 reply to a mode 3 request received at local time `receive`, to be
/// sent at `transmit`. Returns `None` for anything that is not a client request.
pub fn build_reply(
    request: &NtpPacket,
    state: &ServerState,
    receive: NtpTimestamp,
    transmit: NtpTimestamp,
) -> Option<NtpPacket> {
    if request.mode != Mode::Client || !(1..=4).contains(&request.version) {
        return None;
    }
    let mut p = state.header(Mode::Server);
    p.version = request.version;
    p.poll = request.poll;
    p.origin_timestamp = request.transmit_timestamp;
    p.receive_timestamp = receive;
    p.transmit_timestamp = transmit;
    if state.stratum >= 16 || state.leap == LeapIndicator::Unsynchronized {
        p.leap = LeapIndicator::Unsynchronized;
        p.stratum = 16;
    }
    Some(p)
}

/// Kiss-o'-Death RATE answer to a request (the client must slow down).
pub fn build_kod_rate(request: &NtpPacket, state: &ServerState) -> NtpPacket {
    build_kod(request, state, KissCode::Rate)
}

/// Kiss-o'-Death with any code; timestamps other than origin are the request's,
/// so nothing about our clock leaks.
pub fn build_kod(request: &NtpPacket, state: &ServerState, code: KissCode) -> NtpPacket {
    let mut p = NtpPacket::new(Mode::Server);
    p.version = request.version.clamp(1, 4);
    p.leap = LeapIndicator::Unsynchronized;
    p.stratum = 0;
    p.poll = request.poll;
    p.precision = state.precision;
    p.reference_id = code.to_refid();
    p.origin_timestamp = request.transmit_timestamp;
    p.receive_timestamp = request.transmit_timestamp;
    p.transmit_timestamp = request.transmit_timestamp;
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> NtpPacket {
        let mut r = NtpPacket::new(Mode::Client);
        r.poll = 6;
        r.transmit_timestamp = NtpTimestamp::from_bits(0x1122_3344_5566_7788);
        r
    }

    #[test]
    fn reply_echoes_transmit_as_origin() {
        let state = ServerState {
            leap: LeapIndicator::NoWarning,
            stratum: 2,
            precision: -24,
            root_delay: NtpDuration::from_seconds(0.01),
            root_dispersion: NtpDuration::from_seconds(0.002),
            reference_id: RefId([192, 0, 2, 7]),
            reference_time: NtpTimestamp::from_bits(99),
        };
        let rx = NtpTimestamp::from_bits(1000);
        let tx = NtpTimestamp::from_bits(2000);
        let p = build_reply(&request(), &state, rx, tx).unwrap();
        assert_eq!(p.mode, Mode::Server);
        assert_eq!(p.origin_timestamp, request().transmit_timestamp);
        assert_eq!(p.receive_timestamp, rx);
        assert_eq!(p.transmit_timestamp, tx);
        assert_eq!(p.stratum, 2);
        assert_eq!(p.reference_id, RefId([192, 0, 2, 7]));
        assert_eq!(p.poll, 6);
        assert!((p.root_delay.to_seconds() - 0.01).abs() < 1e-4);
        let mut not_client = request();
        not_client.mode = Mode::Server;
        assert!(build_reply(&not_client, &state, rx, tx).is_none());
    }

    #[test]
    fn unsynchronized_reply() {
        let st = ServerState::unsynchronized(-20);
        let p = build_reply(
            &request(),
            &st,
            NtpTimestamp::from_bits(1),
            NtpTimestamp::from_bits(2),
        )
        .unwrap();
        assert_eq!(p.leap, LeapIndicator::Unsynchronized);
        assert_eq!(p.stratum, 16);
    }

    #[test]
    fn kod_rate() {
        let p = build_kod_rate(&request(), &ServerState::unsynchronized(-20));
        assert_eq!(p.stratum, 0);
        assert_eq!(p.kiss_code(), Some(KissCode::Rate));
        assert_eq!(p.origin_timestamp, request().transmit_timestamp);
    }
}
