//! The façade the agent drives: owns the sources, runs selection after every
//! new sample, feeds the discipline and hands back packets to send and clock
//! actions to apply.
//!
//! Two clocks are passed in: `now` is monotonic time (an `NtpInstant` on the
//! caller's timescale, e.g. since agent
//! start; timers are expressed in it), `clock` / `recv` are readings of the
//! clock being disciplined, as NTP timestamps.

use crate::discipline::{ClockAction, ClockEstimate, Discipline, DisciplineConfig, UpdateOutcome};
use crate::filter::{Sample, PHI};
use crate::packet::{KissCode, LeapIndicator, RefId};
use crate::regress::MIN_SAMPLES;
use crate::select::{self, Candidate, SelectError, Tally};
use crate::server::ServerState;
use crate::source::{
    CheckContext, KodState, ReceiveOutcome, RejectCounters, Source, SourceConfig, SourceKind,
};
use crate::time::{Frequency, NtpDuration, NtpInstant, NtpTimestamp};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;

/// Regression samples the poll interval of the system peer aims for
/// (chrony's polltarget, whose default is 8). 16: in the simulation 8 lets
/// the poll reach 1024 s within half an hour and the 10 ms-jitter case
/// ends at 1.09× chrony's published mean RMS; 16 (more samples, a lower
/// poll between minpoll and maxpoll) brings it to 0.84× and 10 µs from
/// 0.76× to 0.38×.
const POLL_TARGET: f64 = 16.0;

/// Names one source for as long as it exists. `slot` indexes the system's
/// table and is reused after the source is retired; `serial` counts every
/// source ever added, so an id kept after its source left never reaches the
/// source that reuses the slot. Serialised as the serial: ids in status
/// output are unique over the agent's lifetime (0, 1, 2… for the sources
/// given at start). Equal ids have equal serials; an id read back from
/// the wire has no slot, and the system finds its source by serial.
#[derive(Clone, Copy, Debug)]
pub struct SourceId {
    slot: u32,
    serial: u64,
}

impl SourceId {
    /// For callers that build status records themselves (tests); the system
    /// refuses ids whose serial does not match the slot's source.
    pub const fn new(slot: u32, serial: u64) -> Self {
        SourceId { slot, serial }
    }

    pub const fn serial(self) -> u64 {
        self.serial
    }

    /// What a deserialised id carries instead of a slot.
    const NO_SLOT: u32 = u32::MAX;

    fn index(self) -> Option<usize> {
        (self.slot != Self::NO_SLOT).then_some(self.slot as usize)
    }
}

/// The serial alone names a source (the slot only finds it fast).
impl PartialEq for SourceId {
    fn eq(&self, other: &Self) -> bool {
        self.serial == other.serial
    }
}

impl Eq for SourceId {}

impl std::hash::Hash for SourceId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.serial.hash(h)
    }
}

impl Serialize for SourceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.serial)
    }
}

/// The inverse of `Serialize`: the serial, with no slot.
impl<'de> Deserialize<'de> for SourceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        u64::deserialize(d).map(|serial| SourceId::new(SourceId::NO_SLOT, serial))
    }
}

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.serial)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SystemConfig {
    pub discipline: DisciplineConfig,
    /// Sources farther than this (root distance, seconds) are not used.
    pub max_root_distance: NtpDuration,
    /// Reference ids of this host (its addresses); used for loop detection.
    pub own_refids: Vec<RefId>,
    /// log2 seconds of the local clock reading precision.
    pub precision: i8,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            discipline: DisciplineConfig::default(),
            max_root_distance: NtpDuration::from_seconds(1.5),
            own_refids: Vec::new(),
            precision: -20,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Send `packet` to the source (from port 123 for symmetric peers).
    Send {
        source: SourceId,
        address: IpAddr,
        packet: [u8; 48],
    },
    Clock(ClockAction),
}

/// Why the system is not synchronised.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum UnsyncReason {
    NoSources,
    WaitingForFirstSamples,
    NoReachableSources,
    /// Every source sent DENY/RSTR.
    SourcesRefuseService(KissCode),
    /// Sources disagree; no majority intersection.
    NoMajority,
    /// Reachable, but too far (root distance) or unsynchronised.
    NoSuitableSources,
    /// The measured offset exceeds the panic threshold; clock left alone.
    /// (Seconds: this is part of the status output.)
    PanicThreshold {
        offset: f64,
    },
}

impl fmt::Display for UnsyncReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnsyncReason::NoSources => write!(f, "no sources configured"),
            UnsyncReason::WaitingForFirstSamples => write!(f, "waiting for first samples"),
            UnsyncReason::NoReachableSources => write!(f, "no reachable sources"),
            UnsyncReason::SourcesRefuseService(c) => {
                write!(f, "source refuses service (KoD {c})")
            }
            UnsyncReason::NoMajority => write!(f, "no majority agreement (falsetickers)"),
            UnsyncReason::NoSuitableSources => {
                write!(f, "no suitable sources (distance or stratum)")
            }
            UnsyncReason::PanicThreshold { offset } => {
                write!(
                    f,
                    "offset {offset:.3} s exceeds panic threshold, clock not set"
                )
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    pub id: SourceId,
    pub remote: String,
    /// As displayed: dotted quad, or a 4-character code at stratum 0/1.
    pub refid: String,
    pub stratum: u8,
    /// `u` server, `s` symmetric peer.
    pub kind: char,
    /// Seconds since the last accepted reply.
    pub when: Option<u64>,
    /// Poll interval, seconds.
    pub poll: u64,
    /// Reach register (display it in octal).
    pub reach: u8,
    pub delay_ms: Option<f64>,
    pub offset_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub tally: char,
    pub tally_kind: Tally,
    pub rejects: RejectCounters,
    pub kod: KodState,
    /// "reachable", "unreachable" or e.g. "unreachable: KoD DENY".
    pub state: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemStatus {
    pub synchronized: bool,
    pub reason: Option<String>,
    pub reason_kind: Option<UnsyncReason>,
    pub stratum: u8,
    pub system_peer: Option<SourceId>,
    pub refid: String,
    pub offset_ms: f64,
    pub jitter_ms: f64,
    pub root_delay_ms: f64,
    pub root_dispersion_ms: f64,
    pub leap: LeapIndicator,
    /// Long-term frequency estimate (for the drift file), ppm.
    pub frequency_ppm: f64,
    /// Currently requested frequency including slew, ppm.
    pub applied_frequency_ppm: f64,
    pub clock_updates: u32,
    pub clock_steps: u32,
}

#[derive(Clone, Debug)]
struct SourceSlot {
    serial: u64,
    source: Source,
    tally: Tally,
    sent: u32,
}

#[derive(Clone, Debug)]
pub struct System {
    cfg: SystemConfig,
    /// `None`: free (its source was retired), reused by the next source.
    slots: Vec<Option<SourceSlot>>,
    free: Vec<usize>,
    next_serial: u64,
    discipline: Discipline,
    started: bool,
    system_peer: Option<usize>,
    survivors: Vec<usize>,
    offset: NtpDuration,
    jitter: NtpDuration,
    reason: Option<UnsyncReason>,
    panic: Option<NtpDuration>,
    leap: LeapIndicator,
    reference_time: NtpTimestamp,
    /// Root distance of each survivor at the last selection (combining
    /// weight).
    distances: Vec<(usize, NtpDuration)>,
}

impl System {
    pub fn new(cfg: SystemConfig) -> Self {
        System {
            discipline: Discipline::new(cfg.discipline.clone()),
            cfg,
            slots: Vec::new(),
            free: Vec::new(),
            next_serial: 0,
            started: false,
            system_peer: None,
            survivors: Vec::new(),
            offset: NtpDuration::ZERO,
            jitter: NtpDuration::ZERO,
            reason: Some(UnsyncReason::NoSources),
            panic: None,
            leap: LeapIndicator::NoWarning,
            reference_time: NtpTimestamp::ZERO,
            distances: Vec::new(),
        }
    }

    pub fn config(&self) -> &SystemConfig {
        &self.cfg
    }

    /// Adds a server or peer; its first request is due immediately.
    pub fn add_source(&mut self, cfg: SourceConfig, now: NtpInstant) -> SourceId {
        let serial = self.next_serial;
        self.next_serial += 1;
        let slot = SourceSlot {
            serial,
            source: Source::new(cfg, now),
            tally: Tally::NotUsable,
            sent: 0,
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(slot);
                i
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        };
        if self.reason == Some(UnsyncReason::NoSources) {
            self.reason = Some(UnsyncReason::WaitingForFirstSamples);
        }
        self.id_of(index, serial)
    }

    fn id_of(&self, index: usize, serial: u64) -> SourceId {
        // Slots never outnumber the sources alive at once.
        SourceId::new(index as u32, serial)
    }

    /// The id of the source in slot `index` (which must be occupied).
    fn id_at(&self, index: usize) -> SourceId {
        let serial = self.slots[index].as_ref().map_or(u64::MAX, |s| s.serial);
        self.id_of(index, serial)
    }

    /// The slot holding the source `id` names, if it still exists.
    fn index_of(&self, id: SourceId) -> Option<usize> {
        let i = match id.index() {
            Some(i) => i,
            None => self
                .slots
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| s.serial == id.serial))?,
        };
        self.slots
            .get(i)?
            .as_ref()
            .filter(|s| s.serial == id.serial)
            .map(|_| i)
    }

    fn slot(&self, id: SourceId) -> Option<&SourceSlot> {
        self.slots[self.index_of(id)?].as_ref()
    }

    /// Slot `i` as selection and the system peer refer to it: always
    /// occupied, because retiring a source clears every reference to its slot.
    fn at(&self, i: usize) -> &SourceSlot {
        self.slots[i]
            .as_ref()
            .expect("referenced slots are occupied")
    }

    fn at_mut(&mut self, i: usize) -> &mut SourceSlot {
        self.slots[i]
            .as_mut()
            .expect("referenced slots are occupied")
    }

    /// The slots of the source table, free ones included: the most
    /// sources there ever were at once (retired sources' slots are reused).
    pub fn slot_count(&self) -> usize {
        self.slots.len()
    }

    pub fn source(&self, id: SourceId) -> Option<&Source> {
        self.slot(id).map(|s| &s.source)
    }

    /// Stops using a source for good: no more polls, packets from it are
    /// ignored, it leaves selection and status, and its slot is freed for
    /// the next source (its id never names that one).
    pub fn retire_source(&mut self, id: SourceId, now: NtpInstant) {
        let Some(i) = self.index_of(id) else {
            return;
        };
        self.slots[i] = None;
        self.free.push(i);
        if self.system_peer == Some(i) {
            self.system_peer = None;
        }
        self.survivors.retain(|&s| s != i);
        self.distances.retain(|&(s, _)| s != i);
        self.reselect(now);
    }

    /// Source configured for this address, to route incoming packets.
    pub fn source_by_address(&self, addr: IpAddr) -> Option<SourceId> {
        self.slots
            .iter()
            .position(|s| {
                s.as_ref()
                    .is_some_and(|s| s.source.config().address == addr)
            })
            .map(|i| self.id_at(i))
    }

    fn active_slots(&self) -> impl Iterator<Item = &SourceSlot> {
        self.slots.iter().flatten()
    }

    /// Long-term frequency estimate, for the drift file.
    pub fn frequency(&self) -> Frequency {
        self.discipline.frequency()
    }

    /// Monotonic time of the last clock update (refused panic-threshold
    /// offsets are no update), for "how stale is our time".
    pub fn last_clock_update(&self) -> Option<NtpInstant> {
        self.discipline.last_update()
    }

    /// Seed the frequency estimate (e.g. from the drift file).
    pub fn set_frequency(&mut self, freq: Frequency, now: NtpInstant) -> Action {
        Action::Clock(self.discipline.set_frequency(now, freq))
    }

    pub fn is_synchronized(&self) -> bool {
        self.reason.is_none()
    }

    /// Monotonic time at which `handle_timers` must next be called.
    pub fn next_wakeup(&self) -> Option<NtpInstant> {
        if !self.started {
            return Some(NtpInstant::ZERO);
        }
        self.active_slots()
            .filter_map(|s| s.source.next_poll_at())
            .chain(self.discipline.next_timer())
            .min()
    }

    /// Sends due requests and ends finished slews.
    pub fn handle_timers(
        &mut self,
        now: NtpInstant,
        clock: NtpTimestamp,
        rng: &mut impl RngCore,
    ) -> Vec<Action> {
        let t = now;
        let mut actions = Vec::new();
        if !self.started {
            self.started = true;
            actions.push(Action::Clock(self.discipline.initial_action()));
        }
        if let Some(a) = self.discipline.handle_timer(t) {
            actions.push(Action::Clock(a));
        }
        let state = self.server_state(clock);
        let mut polled = false;
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            if slot.source.next_poll_at().is_some_and(|at| at <= t) {
                let packet = slot.source.poll(t, clock, rng, &state);
                slot.sent += 1;
                polled = true;
                actions.push(Action::Send {
                    source: SourceId::new(i as u32, slot.serial),
                    address: slot.source.config().address,
                    packet,
                });
            }
        }
        if polled {
            self.reselect(t);
        }
        actions
    }

    /// The request last sent to `id` left when the disciplined clock read
    /// `sent` (T1, taken right at the send; see [`Source::transmitted`]).
    pub fn transmitted(&mut self, id: SourceId, sent: NtpTimestamp) {
        if let Some(i) = self.index_of(id) {
            self.at_mut(i).source.transmitted(sent);
        }
    }

    /// Processes a packet from source `id`, received when the disciplined clock
    /// read `recv` (monotonic `now`).
    pub fn handle_packet(
        &mut self,
        id: SourceId,
        data: &[u8],
        recv: NtpTimestamp,
        now: NtpInstant,
    ) -> Vec<Action> {
        let t = now;
        let precision = self.precision();
        let ctx = CheckContext {
            max_root_distance: self.cfg.max_root_distance,
            own_refids: self.cfg.own_refids.clone(),
            leap_armed: matches!(
                self.leap,
                LeapIndicator::InsertSecond | LeapIndicator::DeleteSecond
            ),
            precision,
        };
        let proj = self.discipline.projection(t);
        let Some(i) = self.index_of(id) else {
            return Vec::new();
        };
        let slot = self.at_mut(i);
        let m = match slot.source.receive(data, recv, t, &ctx) {
            ReceiveOutcome::Accepted(m) => m,
            ReceiveOutcome::Kod(_) => {
                self.reselect(t);
                return Vec::new();
            }
            ReceiveOutcome::Rejected(_) => return Vec::new(),
        };
        slot.source.add_sample(
            Sample {
                time: t,
                phase: m.offset + proj.correction,
                offset: m.offset,
                delay: m.delay,
                dispersion: m.dispersion,
            },
            precision,
        );
        let out = slot.source.filter.output(&proj, precision);
        let jitter = out.map_or(NtpDuration::ZERO, |o| o.jitter);
        let stable = m.offset.abs() < jitter * 4.0;

        self.reselect(t);
        let mut actions = Vec::new();
        if self.system_peer == Some(i) {
            let est = self.clock_estimate(t);
            let (outcome, clock) = self.discipline.update(t, est);
            match outcome {
                UpdateOutcome::PanicRefused { offset } => {
                    self.panic = Some(offset);
                }
                UpdateOutcome::Step { offset } => {
                    self.panic = None;
                    for s in self.slots.iter_mut().flatten() {
                        s.source.clock_stepped(offset);
                    }
                }
                UpdateOutcome::Slew { .. } => self.panic = None,
            }
            if self.panic.is_none() {
                self.reference_time = recv;
            }
            actions.extend(clock.into_iter().map(Action::Clock));
            self.update_reason();
            // chrony: keep about POLL_TARGET samples in the regression; fewer
            // means the clock wanders faster than we sample it.
            let n = self.at(i).source.stats.estimate().map_or(0, |e| e.samples) as f64;
            let mut adj = (n / POLL_TARGET - 1.0) / POLL_TARGET;
            if n < POLL_TARGET {
                adj *= 2.0;
            }
            self.at_mut(i).source.adjust_poll_score(adj);
        } else {
            self.at_mut(i).source.adapt_poll(stable);
        }
        if let Some(a) = self.vote_leap() {
            actions.push(Action::Clock(a));
        }
        actions
    }

    /// The survivors' estimates combined (chrony's combine_sources): phases
    /// weighted by 1 / root distance, frequencies by 1 / their variance.
    /// A source without a regression yet (fewer than `MIN_SAMPLES`
    /// samples) contributes its clock filter's chosen sample and no
    /// frequency.
    fn clock_estimate(&self, t: NtpInstant) -> ClockEstimate {
        let proj = self.discipline.projection(t);
        let precision = self.precision();
        let (mut wsum, mut psum) = (0.0, 0.0);
        let mut parts = Vec::new();
        let (mut fw, mut fsum, mut inv_skew2) = (0.0, 0.0, 0.0);
        for &(i, dist) in &self.distances {
            let src = &self.at(i).source;
            let (phase, sd) = match src.stats.estimate() {
                Some(e) => {
                    let elapsed = (t - e.time).to_seconds().max(0.0);
                    let w = 1.0 / (e.frequency_sd * e.frequency_sd);
                    fw += w;
                    fsum += w * e.frequency.ratio();
                    inv_skew2 += 1.0 / (e.skew * e.skew);
                    (
                        e.phase_at(t).to_seconds(),
                        e.offset_sd + elapsed * e.frequency_sd,
                    )
                }
                None => match src.filter.output(&proj, precision) {
                    Some(o) => (
                        (o.offset + proj.correction).to_seconds(),
                        o.jitter.to_seconds(),
                    ),
                    None => continue,
                },
            };
            let w = 1.0 / dist.to_seconds().max(1e-9);
            wsum += w;
            psum += w * phase;
            parts.push((w, phase, sd));
        }
        if wsum == 0.0 {
            return ClockEstimate {
                phase: proj.correction,
                offset_sd: 0.0,
                frequency: None,
            };
        }
        let phase = psum / wsum;
        let var = parts
            .iter()
            .map(|(w, p, sd)| w * (sd * sd + (p - phase).powi(2)))
            .sum::<f64>()
            / wsum;
        ClockEstimate {
            phase: NtpDuration::from_seconds(phase),
            offset_sd: var.sqrt(),
            frequency: (fw > 0.0)
                .then(|| (Frequency::from_ratio(fsum / fw), 1.0 / inv_skew2.sqrt())),
        }
    }

    fn precision(&self) -> NtpDuration {
        NtpDuration::from_seconds(f64::powi(2.0, self.cfg.precision as i32))
    }

    fn reselect(&mut self, t: NtpInstant) {
        let proj = self.discipline.projection(t);
        let precision = self.precision();
        let mut cands = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(slot) = slot else { continue };
            slot.tally = Tally::NotUsable;
            let s = &slot.source;
            if s.is_denied() || s.reach == 0 || s.stratum >= 16 {
                continue;
            }
            let Some(out) = s.filter.output(&proj, precision) else {
                continue;
            };
            let dist =
                (s.root_delay + out.delay) / 2.0 + s.root_dispersion + out.dispersion + out.jitter;
            // Start-up: like chrony, a source with enough samples for a
            // regression is selectable although its filter is not full
            // yet (the empty stages' 16 s each would hold the first clock
            // update back until the fourth sample). Its distance for
            // intersection and weighting stays the RFC 5905 one.
            let gate = if s.filter.len() >= MIN_SAMPLES {
                (s.root_delay + out.delay) / 2.0
                    + s.root_dispersion
                    + out.held_dispersion
                    + out.jitter
            } else {
                dist
            };
            if gate > self.cfg.max_root_distance {
                continue;
            }
            cands.push(Candidate {
                id: i,
                offset: out.offset,
                root_distance: dist,
                jitter: out.jitter,
                stratum: s.stratum,
            });
        }
        match select::select(&cands, self.cfg.max_root_distance, self.system_peer) {
            Ok(mut sel) => {
                // A source that missed its last poll should not discipline the
                // clock while a responsive survivor exists.
                let stale = |i: usize| self.at(i).source.reach & 0b11 == 0;
                if stale(sel.system_peer) {
                    if let Some(&fresh) = sel.survivors.iter().find(|&&i| !stale(i)) {
                        for t in &mut sel.tallies {
                            if t.0 == sel.system_peer {
                                t.1 = Tally::Candidate;
                            } else if t.0 == fresh {
                                t.1 = Tally::SystemPeer;
                            }
                        }
                        sel.system_peer = fresh;
                    }
                }
                for (i, tally) in sel.tallies {
                    self.at_mut(i).tally = tally;
                }
                self.system_peer = Some(sel.system_peer);
                self.distances = sel
                    .survivors
                    .iter()
                    .filter_map(|&s| cands.iter().find(|c| c.id == s))
                    .map(|c| (c.id, c.root_distance))
                    .collect();
                self.survivors = sel.survivors;
                self.offset = sel.offset;
                self.jitter = sel.jitter;
            }
            Err(e) => {
                if e == SelectError::NoMajority {
                    for c in &cands {
                        self.at_mut(c.id).tally = Tally::Falseticker;
                    }
                }
                self.system_peer = None;
                self.survivors.clear();
                self.distances.clear();
            }
        }
        self.update_reason();
    }

    fn update_reason(&mut self) {
        self.reason = if self.active_slots().next().is_none() {
            Some(UnsyncReason::NoSources)
        } else if let Some(offset) = self.panic {
            Some(UnsyncReason::PanicThreshold {
                offset: offset.to_seconds(),
            })
        } else if self.system_peer.is_some() {
            if self.discipline.updates() > 0 {
                None
            } else {
                Some(UnsyncReason::WaitingForFirstSamples)
            }
        } else if self.active_slots().any(|s| s.tally == Tally::Falseticker) {
            Some(UnsyncReason::NoMajority)
        } else if let Some(code) = self.all_denied() {
            Some(UnsyncReason::SourcesRefuseService(code))
        } else if self.active_slots().any(|s| {
            !s.source.is_denied()
                && (s.source.reach != 0 || (s.source.last_reply.is_none() && s.sent < 8))
                && s.source.filter.len() < 4
        }) {
            Some(UnsyncReason::WaitingForFirstSamples)
        } else if self
            .active_slots()
            .any(|s| !s.source.is_denied() && s.source.reach != 0)
        {
            Some(UnsyncReason::NoSuitableSources)
        } else {
            Some(UnsyncReason::NoReachableSources)
        };
    }

    fn all_denied(&self) -> Option<KissCode> {
        let mut code = None;
        for s in self.active_slots() {
            match s.source.kod_state() {
                KodState::Denied(c) => code = Some(c),
                _ => return None,
            }
        }
        code
    }

    /// Majority of the survivors decides the leap indicator handed to the clock.
    fn vote_leap(&mut self) -> Option<ClockAction> {
        if !self.is_synchronized() || self.survivors.is_empty() {
            return None;
        }
        let n = self.survivors.len();
        let count = |l: LeapIndicator| {
            self.survivors
                .iter()
                .filter(|&&i| self.at(i).source.leap == l)
                .count()
        };
        let vote = if 2 * count(LeapIndicator::InsertSecond) > n {
            LeapIndicator::InsertSecond
        } else if 2 * count(LeapIndicator::DeleteSecond) > n {
            LeapIndicator::DeleteSecond
        } else {
            LeapIndicator::NoWarning
        };
        if vote != self.leap {
            self.leap = vote;
            Some(ClockAction::SetLeap(vote))
        } else {
            None
        }
    }

    /// System variables as a server (and symmetric peer) announces them.
    pub fn server_state(&self, clock: NtpTimestamp) -> ServerState {
        let Some(sp) = self.system_peer.filter(|_| self.is_synchronized()) else {
            return ServerState::unsynchronized(self.cfg.precision);
        };
        let src = &self.at(sp).source;
        let latest = src.filter.latest();
        let delay = latest.map_or(NtpDuration::ZERO, |s| s.delay);
        let disp = latest.map_or(NtpDuration::ZERO, |s| s.dispersion);
        let age = (clock - self.reference_time).non_negative();
        ServerState {
            leap: self.leap,
            stratum: src.stratum.saturating_add(1).min(16),
            precision: self.cfg.precision,
            root_delay: src.root_delay + delay,
            root_dispersion: src.root_dispersion
                + disp
                + self.jitter
                + self.discipline.last_offset().abs()
                + PHI * age,
            reference_id: RefId::from_ip(src.config().address),
            reference_time: self.reference_time,
        }
    }

    pub fn status(&self, clock: NtpTimestamp) -> SystemStatus {
        let st = self.server_state(clock);
        SystemStatus {
            synchronized: self.is_synchronized(),
            reason: self.reason.map(|r| r.to_string()),
            reason_kind: self.reason,
            stratum: st.stratum,
            system_peer: self.system_peer.map(|i| self.id_at(i)),
            refid: st.reference_id.display(st.stratum),
            offset_ms: self.offset.to_millis_f64(),
            jitter_ms: self.jitter.to_millis_f64(),
            root_delay_ms: st.root_delay.to_millis_f64(),
            root_dispersion_ms: st.root_dispersion.to_millis_f64(),
            leap: st.leap,
            frequency_ppm: self.discipline.frequency().ppm(),
            applied_frequency_ppm: self.discipline.applied_frequency().ppm(),
            clock_updates: self.discipline.updates(),
            clock_steps: self.discipline.steps(),
        }
    }

    pub fn source_status(&self, now: NtpInstant) -> Vec<SourceStatus> {
        let t = now;
        let proj = self.discipline.projection(t);
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| Some((i, slot.as_ref()?)))
            .map(|(i, slot)| {
                let s = &slot.source;
                let out = s.filter.output(&proj, self.precision());
                let state = match s.kod_state() {
                    KodState::Denied(c) => format!("unreachable: KoD {c}"),
                    _ if s.reach == 0 => "unreachable".to_string(),
                    KodState::RateLimited { .. } => "reachable (KoD RATE)".to_string(),
                    KodState::None => "reachable".to_string(),
                };
                SourceStatus {
                    id: SourceId::new(i as u32, slot.serial),
                    remote: s.config().address.to_string(),
                    refid: s.refid.display(s.stratum),
                    stratum: s.stratum,
                    kind: match s.config().kind {
                        SourceKind::Server => 'u',
                        SourceKind::Peer => 's',
                    },
                    when: s.last_reply.map(|r| (t - r).to_seconds().max(0.0) as u64),
                    poll: 1u64 << s.poll_exponent().clamp(0, 17),
                    reach: s.reach,
                    delay_ms: out.map(|o| o.delay.to_millis_f64()),
                    offset_ms: out.map(|o| o.offset.to_millis_f64()),
                    jitter_ms: out.map(|o| o.jitter.to_millis_f64()),
                    tally: slot.tally.as_char(),
                    tally_kind: slot.tally,
                    rejects: *s.counters(),
                    kod: s.kod_state(),
                    state,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Mode, NtpPacket};
    use crate::server::build_reply;

    fn mono(s: f64) -> NtpInstant {
        NtpInstant::from_secs_f64(s)
    }
    use rand::SeedableRng;
    use std::net::Ipv4Addr;

    const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

    fn server_state() -> ServerState {
        ServerState {
            leap: LeapIndicator::NoWarning,
            stratum: 1,
            precision: -20,
            root_delay: NtpDuration::ZERO,
            root_dispersion: NtpDuration::from_seconds(1e-5),
            reference_id: RefId(*b"GPS\0"),
            reference_time: NtpTimestamp::ZERO,
        }
    }

    /// Drives one system against a perfect server whose clock is `offset` ahead,
    /// with a fixed 1 ms round trip; the local clock is never adjusted.
    fn exchange(sys: &mut System, n: usize, offset: f64) -> Vec<Action> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let base = NtpTimestamp::from_seconds_fraction(3_950_000_000, 0);
        let mut all = Vec::new();
        let mut t = 0.0;
        let mut sent = 0;
        while sent < n {
            t = sys.next_wakeup().unwrap().as_secs_f64().max(t);
            let clock = base + NtpDuration::from_seconds(t);
            for a in sys.handle_timers(mono(t), clock, &mut rng) {
                let Action::Send { source, packet, .. } = a else {
                    all.push(a);
                    continue;
                };
                sent += 1;
                let req = NtpPacket::decode(&packet).unwrap();
                let srv = clock + NtpDuration::from_seconds(offset + 0.0005);
                let reply = build_reply(&req, &server_state(), srv, srv).unwrap();
                let recv = clock + NtpDuration::from_seconds(0.001);
                all.extend(sys.handle_packet(source, &reply.encode(), recv, mono(t + 0.001)));
            }
        }
        all
    }

    /// Polls every source in `sys` until `until` (monotonic seconds), each
    /// answered with no offset unless `answers` says no.
    fn run_until(sys: &mut System, until: f64, answers: impl Fn(IpAddr) -> bool) -> Vec<Action> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let base = NtpTimestamp::from_seconds_fraction(3_950_000_000, 0);
        let mut all = Vec::new();
        loop {
            let t = sys.next_wakeup().unwrap().as_secs_f64();
            if t > until {
                return all;
            }
            let clock = base + NtpDuration::from_seconds(t);
            for a in sys.handle_timers(mono(t), clock, &mut rng) {
                let Action::Send {
                    source,
                    packet,
                    address,
                } = a
                else {
                    all.push(a);
                    continue;
                };
                if !answers(address) {
                    continue;
                }
                let req = NtpPacket::decode(&packet).unwrap();
                let srv = clock + NtpDuration::from_seconds(0.0005);
                let reply = build_reply(&req, &server_state(), srv, srv).unwrap();
                let recv = clock + NtpDuration::from_seconds(0.001);
                all.extend(sys.handle_packet(source, &reply.encode(), recv, mono(t + 0.001)));
            }
        }
    }

    #[test]
    fn a_change_of_system_peer_keeps_the_new_peers_regression() {
        let other = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let mut sys = System::new(SystemConfig::default());
        sys.add_source(SourceConfig::server(SERVER), NtpInstant::ZERO);
        sys.add_source(SourceConfig::server(other), NtpInstant::ZERO);
        run_until(&mut sys, 300.0, |_| true);
        assert!(sys.is_synchronized());
        let first = sys.system_peer.unwrap();
        let first_addr = sys.at(first).source.config().address;
        let second = 1 - first;
        let samples =
            |sys: &System, i: usize| sys.at(i).source.stats.estimate().map_or(0, |e| e.samples);
        let before = samples(&sys, second);
        assert!(before > MIN_SAMPLES, "{before}");
        let updates = sys.discipline.updates();
        // The system peer stops answering; the other source takes over.
        run_until(&mut sys, 600.0, |a| a != first_addr);
        assert_eq!(sys.system_peer, Some(second));
        assert!(sys.discipline.updates() > updates);
        // Its regression went on from the samples it had, not from zero.
        let after = samples(&sys, second);
        assert!(after > before, "before {before}, after {after}");
        assert!(sys.discipline.skew() < 1e-3);
    }

    #[test]
    fn single_server_synchronizes() {
        let mut sys = System::new(SystemConfig::default());
        let id = sys.add_source(SourceConfig::server(SERVER), NtpInstant::ZERO);
        assert_eq!(sys.source_by_address(SERVER), Some(id));
        let st = sys.status(NtpTimestamp::ZERO);
        assert_eq!(st.reason_kind, Some(UnsyncReason::WaitingForFirstSamples));
        assert_eq!(st.stratum, 16);
        assert_eq!(sys.last_clock_update(), None);

        let actions = exchange(&mut sys, 2, 0.01);
        assert!(
            !sys.is_synchronized(),
            "needs three samples (a regression's minimum) first"
        );
        assert!(matches!(
            actions[0],
            Action::Clock(ClockAction::SetFrequency { .. })
        ));
        let actions = exchange(&mut sys, 1, 0.01);
        assert!(sys.is_synchronized());
        assert!(sys
            .last_clock_update()
            .is_some_and(|t| t > NtpInstant::ZERO));
        assert!(actions
            .iter()
            .any(|a| matches!(a, Action::Clock(ClockAction::SetFrequency(f)) if f.ppm() > 0.0)));
        let st = sys.status(NtpTimestamp::ZERO);
        assert_eq!(st.stratum, 2);
        assert_eq!(st.refid, "192.0.2.1");
        assert_eq!(st.system_peer, Some(id));
        let src = &sys.source_status(mono((20) as f64))[0];
        assert_eq!(src.tally, '*');
        assert_eq!(src.kind, 'u');
        assert_eq!(src.refid, "GPS");
        assert!(src.reach > 0);
        assert!((src.delay_ms.unwrap() - 1.0).abs() < 0.01);
        // Serializes for the agent's JSON output.
        let json = serde_json::to_string(&(st, sys.source_status(NtpInstant::ZERO))).unwrap();
        assert!(json.contains("\"synchronized\":true"));

        // As a server now: stratum 2, refid = our source's address.
        let s = sys.server_state(NtpTimestamp::ZERO);
        assert_eq!(s.stratum, 2);
        assert_eq!(s.reference_id, RefId([192, 0, 2, 1]));
        let mut req = NtpPacket::new(Mode::Client);
        req.transmit_timestamp = NtpTimestamp::from_bits(42);
        let reply = build_reply(&req, &s, NtpTimestamp::ZERO, NtpTimestamp::ZERO).unwrap();
        assert_eq!(reply.origin_timestamp, NtpTimestamp::from_bits(42));
    }

    #[test]
    fn large_offset_steps_and_frequency_seed() {
        let mut sys = System::new(SystemConfig::default());
        assert!(matches!(
            sys.set_frequency(Frequency::from_ppm(-12.5), NtpInstant::ZERO),
            Action::Clock(ClockAction::SetFrequency(f)) if (f.ppm() + 12.5).abs() < 1e-9
        ));
        assert!((sys.frequency().ppm() + 12.5).abs() < 1e-9);
        sys.add_source(SourceConfig::server(SERVER), NtpInstant::ZERO);
        // The first clock update (third sample) steps; this test's server
        // ignores the step, so later samples would step again.
        let actions = exchange(&mut sys, 3, 0.5);
        let steps: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Clock(ClockAction::Step(offset)) => Some(offset.to_seconds()),
                _ => None,
            })
            .collect();
        assert_eq!(steps.len(), 1);
        assert!((steps[0] - 0.5).abs() < 1e-3);
    }

    #[test]
    fn panic_threshold_reported() {
        let mut sys = System::new(SystemConfig::default());
        sys.add_source(SourceConfig::server(SERVER), NtpInstant::ZERO);
        let actions = exchange(&mut sys, 6, 5000.0);
        assert!(!actions
            .iter()
            .any(|a| matches!(a, Action::Clock(ClockAction::Step { .. }))));
        assert!(!sys.is_synchronized());
        assert_eq!(
            sys.last_clock_update(),
            None,
            "a refused offset is no update"
        );
        let st = sys.status(NtpTimestamp::ZERO);
        assert!(matches!(
            st.reason_kind,
            Some(UnsyncReason::PanicThreshold { .. })
        ));
    }

    #[test]
    fn ipv6_refid_is_md5_prefix() {
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(RefId::from_ip(a), RefId([0x39, 0xab, 0x9b, 0x37]));
    }

    #[test]
    fn no_sources_reason() {
        let sys = System::new(SystemConfig::default());
        assert_eq!(
            sys.status(NtpTimestamp::ZERO).reason.as_deref(),
            Some("no sources configured")
        );
        assert_eq!(sys.next_wakeup(), Some(NtpInstant::ZERO));
    }

    #[test]
    fn retired_source_leaves_polling_selection_and_status() {
        let mut sys = System::new(SystemConfig::default());
        let id = sys.add_source(SourceConfig::server(SERVER), NtpInstant::ZERO);
        exchange(&mut sys, 6, 0.01);
        assert!(sys.is_synchronized());
        sys.retire_source(id, mono((100) as f64));
        assert!(!sys.is_synchronized());
        assert_eq!(sys.source_by_address(SERVER), None);
        assert!(sys.source_status(mono((100) as f64)).is_empty());
        assert_eq!(
            sys.status(NtpTimestamp::ZERO).reason_kind,
            Some(UnsyncReason::NoSources)
        );
        // The slot is reused, but the old id does not name the new source.
        let again = sys.add_source(SourceConfig::server(SERVER), mono((100) as f64));
        assert_ne!(again, id);
        assert_eq!(again.index(), id.index());
        assert_eq!(sys.source_by_address(SERVER), Some(again));
        assert!(sys.source(id).is_none());
        assert!(sys.source(again).is_some());
        // An id read back from status output names the same source.
        let json = serde_json::to_string(&again).unwrap();
        let read: SourceId = serde_json::from_str(&json).unwrap();
        assert_eq!((read, read.index()), (again, None));
        assert!(sys.source(read).is_some());
        let stale: SourceId = serde_json::from_str(&serde_json::to_string(&id).unwrap()).unwrap();
        assert!(sys.source(stale).is_none());
        // A reply routed by the stale id is ignored, not given to the new source.
        let mut reply = NtpPacket::new(Mode::Server);
        reply.transmit_timestamp = NtpTimestamp::from_bits(1);
        assert!(sys
            .handle_packet(id, &reply.encode(), NtpTimestamp::ZERO, mono((101) as f64))
            .is_empty());
        assert_eq!(sys.source(again).unwrap().counters().total(), 0);
        sys.retire_source(id, mono((101) as f64));
        assert!(sys.source(again).is_some(), "a stale id retires nothing");
        let json = serde_json::to_string(&sys.source_status(mono((101) as f64))).unwrap();
        assert!(
            json.contains(&format!("\"id\":{}", again.serial())),
            "{json}"
        );
    }

    #[test]
    fn retired_slots_are_reused_so_churn_stays_bounded() {
        let mut sys = System::new(SystemConfig::default());
        let keep = sys.add_source(SourceConfig::server(SERVER), NtpInstant::ZERO);
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let mut last = keep;
        for i in 0..12_000u64 {
            let now = mono((i) as f64);
            let id = sys.add_source(SourceConfig::server(other), now);
            assert_ne!(id, last);
            assert_eq!(id.serial(), i + 1);
            sys.retire_source(id, now);
            last = id;
        }
        assert_eq!(
            sys.slots.len(),
            2,
            "one slot for the kept source, one reused"
        );
        assert!(sys.free.len() <= 1);
        assert_eq!(sys.source_by_address(SERVER), Some(keep));
        assert_eq!(sys.source_status(NtpInstant::ZERO).len(), 1);
    }
}
