use crate::clock::SimClock;
use ntp_proto::time::NTP_UNIX_OFFSET;
use ntp_proto::{
    build_kod, build_reply, Action, ClockAction, KissCode, LeapIndicator, Mode, NtpDuration,
    NtpInstant, NtpPacket, NtpTimestamp, RefId, ServerState, SourceConfig, SourceId, SourceStatus,
    System, SystemConfig, SystemStatus,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr};

/// 2026-01-01T00:00:00Z, the UTC midnight the simulation is anchored to.
const MIDNIGHT_UNIX: u64 = 1_767_225_600;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NetworkSpec {
    /// Fixed one-way delay, seconds.
    pub base_delay: f64,
    /// Mean of the exponential extra delay per direction, seconds.
    pub jitter: f64,
    /// Extra delay client->server minus server->client, seconds.
    pub asymmetry: f64,
    /// Probability a packet is lost.
    pub loss: f64,
}

/// Where the client's timestamps come from. The latencies happen either
/// way; with kernel timestamps they stay out of T1 and T4.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StampingSpec {
    /// From the core's T1 reading to the request leaving (socket bind and
    /// connect, the filter write), seconds.
    pub send_setup: f64,
    /// Mean of the exponential time from a reply's arrival to the task
    /// reading the clock (wake-up latency), seconds.
    pub wakeup: f64,
    /// T1 when the request really left, T4 when the reply arrived.
    pub kernel: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum KodSpec {
    /// Answer DENY to every request from `from` on.
    Deny { from: f64 },
    /// Answer RATE to requests closer than `min_interval` to the previous one.
    Rate { min_interval: f64 },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServerSpec {
    /// Constant error of the server's clock (falseticker), seconds.
    pub offset: f64,
    /// Stop answering from this time on.
    pub silent_from: Option<f64>,
    pub kod: Option<KodSpec>,
    pub stratum: u8,
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            offset: 0.0,
            silent_from: None,
            kod: None,
            stratum: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Target {
    Server(usize),
    /// Symmetric active association with another simulated client.
    Peer(usize),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClientSpec {
    pub initial_offset: f64,
    /// Intrinsic frequency error, ppm.
    pub freq_error_ppm: f64,
    pub targets: Vec<Target>,
    pub system: SystemConfig,
    pub minpoll: i8,
    pub maxpoll: i8,
    pub iburst: bool,
}

impl Default for ClientSpec {
    fn default() -> Self {
        ClientSpec {
            initial_offset: 0.1,
            freq_error_ppm: 100.0,
            targets: vec![Target::Server(0)],
            system: SystemConfig::default(),
            minpoll: 6,
            maxpoll: 10,
            iburst: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scenario {
    pub name: String,
    pub seed: u64,
    /// Simulated seconds.
    pub duration: f64,
    /// Std dev of the per-second random walk of each clock's frequency (s/s).
    pub wander: f64,
    pub network: NetworkSpec,
    /// The client's timestamping (default: exact, no latencies).
    pub stamping: StampingSpec,
    pub servers: Vec<ServerSpec>,
    pub clients: Vec<ClientSpec>,
    /// True time of an inserted leap second (UTC midnight).
    pub leap_at: Option<f64>,
    /// How long before the leap servers announce it, seconds.
    pub leap_announce: f64,
    /// |error| limit for "synchronised" (clknetsim definition), seconds.
    pub time_limit: f64,
    /// |frequency error| limit for "synchronised", s/s.
    pub freq_limit: f64,
    /// Keep the per-second time series in the report.
    pub keep_series: bool,
    /// Unix time of the UTC midnight at simulation time `leap_at` (or 1e6 s
    /// without a leap); moves the whole run in calendar time.
    pub midnight_unix: u64,
}

impl Scenario {
    /// chrony's default test: 0.1 s offset, 100 ppm, 100 us delay and jitter,
    /// wander 1e-9, one server, default config.
    pub fn chrony_default(seed: u64) -> Self {
        Scenario {
            name: "chrony default".into(),
            seed,
            duration: 3.0 * 3600.0,
            wander: 1e-9,
            network: NetworkSpec {
                base_delay: 1e-4,
                jitter: 1e-4,
                asymmetry: 0.0,
                loss: 0.0,
            },
            stamping: StampingSpec::default(),
            servers: vec![ServerSpec::default()],
            clients: vec![ClientSpec::default()],
            leap_at: None,
            leap_announce: 3600.0,
            time_limit: 1e-3,
            freq_limit: 5e-4,
            keep_series: false,
            midnight_unix: MIDNIGHT_UNIX,
        }
    }

    pub fn with_jitter(seed: u64, jitter: f64) -> Self {
        let mut s = Self::chrony_default(seed);
        s.name = format!("jitter {} ms", jitter * 1e3);
        s.network.jitter = jitter;
        s.time_limit = (jitter * 5.0).max(1e-3);
        s
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct SeriesPoint {
    pub t: f64,
    pub error: f64,
    pub freq_error: f64,
    pub synchronized: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ClientReport {
    /// Time after which error and frequency error stayed within the limits.
    pub sync_time: Option<f64>,
    pub max_error_after_sync: f64,
    pub rms_error_after_sync: f64,
    pub freq_rms_after_sync: f64,
    /// Final error, seconds.
    pub final_error: f64,
    /// Did the core report "synchronized" at the end / at any time.
    pub synchronized_at_end: bool,
    pub ever_synchronized: bool,
    pub steps: u32,
    pub step_offsets: Vec<f64>,
    pub leap_actions: Vec<(f64, LeapIndicator)>,
    pub leaps_applied: u32,
    pub status: SystemStatus,
    pub sources: Vec<SourceStatus>,
    pub max_poll_seen: Vec<i8>,
    pub series: Vec<SeriesPoint>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub scenario: String,
    pub seed: u64,
    pub clients: Vec<ClientReport>,
}

#[derive(Clone, Copy, Debug)]
enum EvKind {
    Sample,
    Timer {
        client: usize,
    },
    ToServer {
        server: usize,
        client: usize,
        source: SourceId,
    },
    ToClient {
        client: usize,
        source: SourceId,
    },
}

#[derive(Debug)]
struct Ev {
    t: f64,
    seq: u64,
    kind: EvKind,
    data: [u8; 48],
}

impl PartialEq for Ev {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Ev {}
impl PartialOrd for Ev {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Ev {
    // Reversed: BinaryHeap pops the earliest event.
    fn cmp(&self, o: &Self) -> Ordering {
        o.t.total_cmp(&self.t).then(o.seq.cmp(&self.seq))
    }
}

struct Client {
    sys: System,
    clock: SimClock,
    timer_at: Option<f64>,
    addr: IpAddr,
    series: Vec<SeriesPoint>,
    steps: Vec<f64>,
    leap_actions: Vec<(f64, LeapIndicator)>,
    max_poll: Vec<i8>,
}

struct Sim<'a> {
    sc: &'a Scenario,
    rng: ChaCha8Rng,
    heap: BinaryHeap<Ev>,
    seq: u64,
    clients: Vec<Client>,
    base: NtpTimestamp,
    last_request: HashMap<(usize, usize), f64>,
}

fn server_addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1))
}

fn client_addr(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, i as u8 + 1))
}

impl<'a> Sim<'a> {
    fn push(&mut self, t: f64, kind: EvKind, data: [u8; 48]) {
        self.seq += 1;
        self.heap.push(Ev {
            t,
            seq: self.seq,
            kind,
            data,
        });
    }

    fn utc(&self, t: f64) -> f64 {
        match self.sc.leap_at {
            Some(m) if t >= m => t - 1.0,
            _ => t,
        }
    }

    fn stamp(&self, sim_seconds: f64) -> NtpTimestamp {
        self.base + NtpDuration::from_seconds(sim_seconds)
    }

    fn delay(&mut self, up: bool) -> Option<f64> {
        let n = &self.sc.network;
        if n.loss > 0.0 && self.rng.gen::<f64>() < n.loss {
            return None;
        }
        let u: f64 = self.rng.gen();
        let asym = if up {
            n.asymmetry / 2.0
        } else {
            -n.asymmetry / 2.0
        };
        Some((n.base_delay + asym - n.jitter * (1.0 - u).ln()).max(1e-7))
    }

    fn gauss(&mut self) -> f64 {
        let u1: f64 = self.rng.gen::<f64>().max(1e-300);
        let u2: f64 = self.rng.gen();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    fn apply(&mut self, c: usize, t: f64, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send {
                    source,
                    address,
                    packet,
                } => {
                    // The request leaves after its set-up; with kernel
                    // timestamps the core learns that moment as T1.
                    let setup = self.sc.stamping.send_setup;
                    let t = t + setup;
                    if self.sc.stamping.kernel && setup > 0.0 {
                        let cl = &mut self.clients[c];
                        let now = cl.clock.advance(t - setup);
                        let left = now + setup * (1.0 + cl.clock.frequency_error());
                        let at = self.stamp(left);
                        self.clients[c].sys.transmitted(source, at);
                    }
                    let Some(d) = self.delay(true) else { continue };
                    let sidx = (0..self.sc.servers.len()).find(|&i| server_addr(i) == address);
                    if let Some(server) = sidx {
                        self.push(
                            t + d,
                            EvKind::ToServer {
                                server,
                                client: c,
                                source,
                            },
                            packet,
                        );
                    } else if let Some(peer) =
                        (0..self.clients.len()).find(|&i| client_addr(i) == address)
                    {
                        let from = self.clients[c].addr;
                        if let Some(src) = self.clients[peer].sys.source_by_address(from) {
                            self.push(
                                t + d,
                                EvKind::ToClient {
                                    client: peer,
                                    source: src,
                                },
                                packet,
                            );
                        }
                    }
                }
                Action::Clock(ca) => {
                    let cl = &mut self.clients[c];
                    cl.clock.advance(t);
                    match ca {
                        ClockAction::SetFrequency(f) => cl.clock.rate = f.ratio(),
                        ClockAction::Step(offset) => {
                            cl.clock.e += offset.to_seconds();
                            cl.steps.push(offset.to_seconds());
                        }
                        ClockAction::SetLeap(l) => {
                            cl.clock.leap = l;
                            cl.leap_actions.push((t, l));
                        }
                    }
                }
            }
        }
        self.reschedule(c, t);
    }

    fn reschedule(&mut self, c: usize, t: f64) {
        if let Some(w) = self.clients[c].sys.next_wakeup() {
            // A hair late so the core sees the deadline as passed.
            let w = w.as_secs_f64().max(t) + 1e-6;
            let cur = self.clients[c].timer_at;
            if cur.is_none_or(|x| w < x) {
                self.clients[c].timer_at = Some(w);
                self.push(w, EvKind::Timer { client: c }, [0; 48]);
            }
        }
    }

    fn server_reply(&mut self, s: usize, c: usize, t: f64, data: &[u8; 48]) -> Option<[u8; 48]> {
        let spec = &self.sc.servers[s];
        if spec.silent_from.is_some_and(|x| t >= x) {
            return None;
        }
        let req = NtpPacket::decode(data).ok()?;
        if req.mode != Mode::Client {
            return None;
        }
        let reading = self.stamp(self.utc(t) + spec.offset);
        let leap = match self.sc.leap_at {
            Some(m) if t < m && t >= m - self.sc.leap_announce => LeapIndicator::InsertSecond,
            _ => LeapIndicator::NoWarning,
        };
        let state = ServerState {
            leap,
            stratum: spec.stratum,
            precision: -20,
            root_delay: NtpDuration::ZERO,
            root_dispersion: NtpDuration::from_seconds(1e-5),
            reference_id: RefId(*b"GPS\0"),
            reference_time: reading,
        };
        match &spec.kod {
            Some(KodSpec::Deny { from }) if t >= *from => {
                return Some(build_kod(&req, &state, KissCode::Deny).encode());
            }
            Some(KodSpec::Rate { min_interval }) => {
                let last = self.last_request.insert((s, c), t);
                if last.is_some_and(|l| t - l < *min_interval) {
                    return Some(build_kod(&req, &state, KissCode::Rate).encode());
                }
            }
            _ => {}
        }
        let reply = build_reply(
            &req,
            &state,
            reading,
            reading + NtpDuration::from_seconds(1e-6),
        )?;
        Some(reply.encode())
    }

    fn run(mut self) -> Report {
        let sc = self.sc;
        // Half-second phase: never sample exactly at a leap instant.
        self.push(0.5, EvKind::Sample, [0; 48]);
        for c in 0..self.clients.len() {
            self.reschedule(c, 0.0);
        }
        while let Some(ev) = self.heap.pop() {
            let t = ev.t;
            if t > sc.duration {
                break;
            }
            match ev.kind {
                EvKind::Sample => {
                    let utc = self.utc(t);
                    for c in 0..self.clients.len() {
                        let g = self.gauss();
                        let cl = &mut self.clients[c];
                        let reading = cl.clock.advance(t);
                        cl.clock.f0 += g * sc.wander;
                        let synced = cl.sys.is_synchronized();
                        cl.series.push(SeriesPoint {
                            t,
                            error: reading - utc,
                            freq_error: cl.clock.frequency_error(),
                            synchronized: synced,
                        });
                        for (i, st) in cl
                            .sys
                            .source_status(NtpInstant::from_secs_f64(t))
                            .iter()
                            .enumerate()
                        {
                            let p = st.poll.trailing_zeros() as i8;
                            if cl.max_poll[i] < p {
                                cl.max_poll[i] = p;
                            }
                        }
                    }
                    self.push(t + 1.0, EvKind::Sample, [0; 48]);
                }
                EvKind::Timer { client } => {
                    if self.clients[client].timer_at != Some(t) {
                        continue;
                    }
                    self.clients[client].timer_at = None;
                    let reading = self.clients[client].clock.advance(t);
                    let stamp = self.stamp(reading);
                    let mut rng = ChaCha8Rng::seed_from_u64(self.rng.gen());
                    let actions = self.clients[client].sys.handle_timers(
                        NtpInstant::from_secs_f64(t),
                        stamp,
                        &mut rng,
                    );
                    self.apply(client, t, actions);
                }
                EvKind::ToServer {
                    server,
                    client,
                    source,
                } => {
                    if let Some(reply) = self.server_reply(server, client, t, &ev.data) {
                        if let Some(d) = self.delay(false) {
                            self.push(t + d, EvKind::ToClient { client, source }, reply);
                        }
                    }
                }
                EvKind::ToClient { client, source } => {
                    let mut reading = self.clients[client].clock.advance(t);
                    let wakeup = self.sc.stamping.wakeup;
                    if wakeup > 0.0 && !self.sc.stamping.kernel {
                        // The user-space T4: read when the task got to it.
                        let late = -wakeup * (1.0 - self.rng.gen::<f64>()).ln();
                        reading += late * (1.0 + self.clients[client].clock.frequency_error());
                    }
                    let stamp = self.stamp(reading);
                    let actions = self.clients[client].sys.handle_packet(
                        source,
                        &ev.data,
                        stamp,
                        NtpInstant::from_secs_f64(t),
                    );
                    self.apply(client, t, actions);
                }
            }
        }
        let end = sc.duration;
        let mut reports = Vec::new();
        for cl in &mut self.clients {
            let reading = cl.clock.advance(end);
            let stamp = self.base + NtpDuration::from_seconds(reading);
            reports.push(summarize(sc, cl, stamp, end));
        }
        Report {
            scenario: sc.name.clone(),
            seed: sc.seed,
            clients: reports,
        }
    }
}

fn summarize(sc: &Scenario, cl: &mut Client, stamp: NtpTimestamp, end: f64) -> ClientReport {
    let s = &cl.series;
    let bad = s
        .iter()
        .rposition(|p| p.error.abs() > sc.time_limit || p.freq_error.abs() > sc.freq_limit);
    let sync_idx = match bad {
        None => Some(0),
        Some(i) if i + 1 < s.len() => Some(i + 1),
        Some(_) => None,
    };
    let (mut max, mut sq, mut fsq, mut n) = (0.0f64, 0.0, 0.0, 0usize);
    if let Some(i) = sync_idx {
        for p in &s[i..] {
            max = max.max(p.error.abs());
            sq += p.error * p.error;
            fsq += p.freq_error * p.freq_error;
            n += 1;
        }
    }
    let nf = n.max(1) as f64;
    ClientReport {
        sync_time: sync_idx.map(|i| s[i].t),
        max_error_after_sync: if n > 0 { max } else { f64::NAN },
        rms_error_after_sync: if n > 0 { (sq / nf).sqrt() } else { f64::NAN },
        freq_rms_after_sync: if n > 0 { (fsq / nf).sqrt() } else { f64::NAN },
        final_error: s.last().map(|p| p.error).unwrap_or(f64::NAN),
        synchronized_at_end: cl.sys.is_synchronized(),
        ever_synchronized: s.iter().any(|p| p.synchronized),
        steps: cl.steps.len() as u32,
        step_offsets: cl.steps.clone(),
        leap_actions: cl.leap_actions.clone(),
        leaps_applied: cl.clock.leaps_applied,
        status: cl.sys.status(stamp),
        sources: cl.sys.source_status(NtpInstant::from_secs_f64(end)),
        max_poll_seen: cl.max_poll.clone(),
        series: if sc.keep_series {
            std::mem::take(&mut cl.series)
        } else {
            Vec::new()
        },
    }
}

/// Runs a scenario to completion.
pub fn run(sc: &Scenario) -> Report {
    let midnight = sc.leap_at.unwrap_or(1e6).round();
    let base_unix = sc.midnight_unix as i64 - midnight as i64;
    let base = NtpTimestamp::from_bits(((base_unix as u64 + NTP_UNIX_OFFSET) & 0xffff_ffff) << 32);
    let mut rng = ChaCha8Rng::seed_from_u64(sc.seed);
    let mut clients = Vec::new();
    for (i, spec) in sc.clients.iter().enumerate() {
        let mut sys_cfg = spec.system.clone();
        sys_cfg.own_refids.push(RefId::from_ip(client_addr(i)));
        let mut sys = System::new(sys_cfg);
        // Stagger start so peers do not poll in lockstep.
        let start = NtpInstant::from_secs_f64(rng.gen::<f64>() * 0.5);
        for tg in &spec.targets {
            let addr = match tg {
                Target::Server(s) => server_addr(*s),
                Target::Peer(p) => client_addr(*p),
            };
            let mut cfg = match tg {
                Target::Server(_) => SourceConfig::server(addr),
                Target::Peer(_) => SourceConfig::peer(addr),
            };
            cfg.minpoll = spec.minpoll;
            cfg.maxpoll = spec.maxpoll;
            cfg.iburst = spec.iburst;
            sys.add_source(cfg, start);
        }
        clients.push(Client {
            sys,
            clock: SimClock::new(spec.initial_offset, spec.freq_error_ppm * 1e-6, midnight),
            timer_at: None,
            addr: client_addr(i),
            series: Vec::new(),
            steps: Vec::new(),
            leap_actions: Vec::new(),
            max_poll: vec![i8::MIN; spec.targets.len()],
        });
    }
    let sim = Sim {
        sc,
        rng,
        heap: BinaryHeap::new(),
        seq: 0,
        clients,
        base,
        last_request: HashMap::new(),
    };
    sim.run()
}

impl Scenario {
    /// Three servers, the third 50 ms off.
    pub fn falseticker(seed: u64) -> Self {
        let mut s = Self::chrony_default(seed);
        s.name = "falseticker".into();
        s.servers = vec![
            ServerSpec::default(),
            ServerSpec::default(),
            ServerSpec {
                offset: 0.05,
                ..Default::default()
            },
        ];
        s.clients[0].targets = (0..3).map(Target::Server).collect();
        s
    }

    /// Server 0 goes silent after one hour; optionally a second, healthy server.
    pub fn silent(seed: u64, second_server: bool) -> Self {
        let mut s = Self::chrony_default(seed);
        s.name = if second_server {
            "silent server + healthy server".into()
        } else {
            "silent only server".into()
        };
        s.servers = vec![ServerSpec {
            silent_from: Some(3600.0),
            ..Default::default()
        }];
        if second_server {
            s.servers.push(ServerSpec::default());
            s.clients[0].targets = vec![Target::Server(0), Target::Server(1)];
        }
        s
    }

    /// A server answering RATE to requests closer than 200 s.
    pub fn kod_rate(seed: u64) -> Self {
        let mut s = Self::chrony_default(seed);
        s.name = "KoD RATE".into();
        s.servers[0].kod = Some(KodSpec::Rate {
            min_interval: 200.0,
        });
        s
    }

    /// Server 0 answers DENY after 30 minutes; optionally a second server.
    pub fn kod_deny(seed: u64, second_server: bool) -> Self {
        let mut s = Self::silent(seed, second_server);
        s.name = if second_server {
            "KoD DENY + healthy server".into()
        } else {
            "KoD DENY only server".into()
        };
        s.servers[0].silent_from = None;
        s.servers[0].kod = Some(KodSpec::Deny { from: 1800.0 });
        s
    }

    /// Leap second inserted two hours in, announced one hour before.
    pub fn leap_second(seed: u64) -> Self {
        let mut s = Self::chrony_default(seed);
        s.name = "leap second".into();
        s.servers.push(ServerSpec::default());
        s.servers.push(ServerSpec::default());
        s.clients[0].targets = (0..3).map(Target::Server).collect();
        s.leap_at = Some(7200.0);
        s
    }

    pub fn initial_offset(seed: u64, offset: f64, allow_panic_step: bool) -> Self {
        let mut s = Self::chrony_default(seed);
        s.name = format!(
            "initial offset {offset} s{}",
            if allow_panic_step {
                " (panic step allowed)"
            } else {
                ""
            }
        );
        s.clients[0].initial_offset = offset;
        s.clients[0].system.discipline.allow_panic_step_at_start = allow_panic_step;
        s
    }

    /// Start-up as in the real-time bench: 5 ms off, a 20 ppm clock, a
    /// quiet LAN (50 µs base delay, 25 µs mean jitter each way), iburst,
    /// polling every 16 s; the per-second series is kept.
    pub fn startup(seed: u64) -> Self {
        let mut s = Self::chrony_default(seed);
        s.name = "start-up 5 ms".into();
        s.duration = 3600.0;
        s.network.base_delay = 5e-5;
        s.network.jitter = 2.5e-5;
        s.clients[0].initial_offset = 0.005;
        s.clients[0].freq_error_ppm = 20.0;
        s.clients[0].minpoll = 4;
        s.clients[0].maxpoll = 4;
        s.keep_series = true;
        s
    }

    /// Client 0 syncs to a server and peers with client 1, which only has the peer.
    pub fn symmetric_peers(seed: u64) -> Self {
        let mut s = Self::chrony_default(seed);
        s.name = "symmetric peers".into();
        s.clients = vec![
            ClientSpec {
                targets: vec![Target::Server(0), Target::Peer(1)],
                ..Default::default()
            },
            ClientSpec {
                initial_offset: -0.05,
                freq_error_ppm: -40.0,
                targets: vec![Target::Peer(0)],
                ..Default::default()
            },
        ];
        s
    }

    /// The default scenario running across the NTP era rollover (2036-02-07).
    pub fn era_rollover(seed: u64) -> Self {
        let mut s = Self::chrony_default(seed);
        s.name = "across 2036 era rollover".into();
        let rollover_unix = (1u64 << 32) - NTP_UNIX_OFFSET;
        s.midnight_unix = rollover_unix - 5400 + 1_000_000;
        s
    }

    /// Every scenario of the acceptance suite, for reports.
    pub fn all(seed: u64) -> Vec<Scenario> {
        vec![
            Self::chrony_default(seed),
            Self::with_jitter(seed, 1e-5),
            Self::with_jitter(seed, 1e-3),
            Self::with_jitter(seed, 1e-2),
            Self::falseticker(seed),
            Self::silent(seed, true),
            Self::silent(seed, false),
            Self::kod_rate(seed),
            Self::kod_deny(seed, true),
            Self::kod_deny(seed, false),
            Self::leap_second(seed),
            Self::initial_offset(seed, 2.0, false),
            Self::initial_offset(seed, 2000.0, false),
            Self::initial_offset(seed, 2000.0, true),
            Self::symmetric_peers(seed),
            Self::era_rollover(seed),
        ]
    }
}

impl Report {
    /// One line per client.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (i, c) in self.clients.iter().enumerate() {
            let tallies: String = c.sources.iter().map(|s| s.tally).collect();
            out.push_str(&format!(
                "{:<36} c{} sync {:>7} max {:>9.1} us rms {:>8.1} us freq-rms {:>8.2e} steps {} synced {} tally [{}] reason {}\n",
                self.scenario,
                i,
                c.sync_time.map(|t| format!("{t:.0} s")).unwrap_or("never".into()),
                c.max_error_after_sync * 1e6,
                c.rms_error_after_sync * 1e6,
                c.freq_rms_after_sync,
                c.steps,
                c.synchronized_at_end,
                tallies,
                c.status.reason.as_deref().unwrap_or("-"),
            ));
        }
        out
    }
}
