//! The time-sync loop: drives the sans-IO core (`ntp-proto`) with timers,
//! datagrams and control requests, and carries out what it asks for —
//! sending packets through [`Transport`] and adjusting the [`Clock`].

use std::{
    collections::HashMap,
    future::Future,
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use ntp_proto::{
    Action, SourceConfig, SourceId, SourceKind, SourceStatus, System, SystemConfig, SystemStatus,
};
use rand::SeedableRng as _;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use ntp_filter_common::SourceClass;

use crate::{
    cli::Mode,
    clock::Clock,
    filter::FilterMaps,
    net::Transport,
    resolve::{resolve, SourceSpec},
};

#[derive(Clone, Debug)]
pub struct PollSettings {
    pub minpoll: i8,
    pub maxpoll: i8,
    pub iburst: bool,
}

#[derive(Clone, Debug)]
pub struct SyncSettings {
    pub servers: Vec<SourceSpec>,
    pub peers: Vec<SourceSpec>,
    pub poll: PollSettings,
    pub system: SystemConfig,
    /// Where the frequency estimate is kept across restarts (only used when
    /// the clock is really adjusted).
    pub drift_file: Option<PathBuf>,
    pub ntp_port: u16,
    /// Send every request from this port instead of a random one.
    pub source_port: Option<u16>,
    pub mode: Mode,
}

/// What `ntp-agent status` asks the running agent.
pub enum ControlRequest {
    Status(oneshot::Sender<AgentReport>),
}

#[derive(Clone, Debug, Serialize)]
pub struct AgentReport {
    pub mode: Mode,
    pub clock: String,
    pub system: SystemStatus,
    pub sources: Vec<SourceStatus>,
}

const DRIFT_SAVE_INTERVAL: Duration = Duration::from_secs(3600);

pub async fn run(
    settings: SyncSettings,
    mut clock: Box<dyn Clock>,
    adjusting: bool,
    maps: Option<Arc<Mutex<FilterMaps>>>,
    mut control: mpsc::Receiver<ControlRequest>,
    stop: impl Future<Output = ()>,
) -> Result<()> {
    let start = Instant::now();
    let mono = |at: Instant| at.saturating_duration_since(start);
    let mut system = System::new(settings.system.clone());
    let mut kinds = HashMap::new();
    let mut names = Vec::new();
    for (spec, kind) in settings
        .servers
        .iter()
        .map(|s| (s, SourceKind::Server))
        .chain(settings.peers.iter().map(|s| (s, SourceKind::Peer)))
    {
        match spec {
            SourceSpec::Addr(addr) => {
                let id = system.add_source(
                    source_config(&settings.poll, *addr, kind),
                    mono(Instant::now()),
                );
                kinds.insert(id, kind);
            }
            SourceSpec::Name(name) => names.push(NamedSource {
                name: name.clone(),
                kind,
                sources: Vec::new(),
                next_resolve: Instant::now(),
            }),
        }
    }
    let (resolved_tx, mut resolved_rx) = mpsc::channel::<(usize, std::io::Result<Vec<IpAddr>>)>(16);
    let mut resolve_timer = tokio::time::interval(RESOLVE_CHECK);

    let drift_file = settings.drift_file.clone().filter(|_| adjusting);
    if let Some(path) = &drift_file {
        if let Some(ppm) = read_drift(path) {
            let action = system.set_frequency(ppm, mono(Instant::now()));
            if let Action::Clock(c) = action {
                clock.apply(&c)?;
            }
            tracing::info!(ppm, path = %path.display(), "frequency restored from drift file");
        }
    }

    let (to_core, mut from_net) = mpsc::channel(1024);
    let shared_port = match settings.source_port {
        Some(port) => Some(port),
        None if !settings.peers.is_empty() => Some(settings.ntp_port),
        None => None,
    };
    if settings.source_port.is_some()
        && !settings.peers.is_empty()
        && settings.source_port != Some(settings.ntp_port)
    {
        anyhow::bail!(
            "--source-port {} cannot be combined with --peer: symmetric peers talk from the NTP port {}",
            settings.source_port.unwrap_or_default(),
            settings.ntp_port
        );
    }
    let mut transport = Transport::new(
        settings.ntp_port,
        shared_port,
        settings.source_port.is_some(),
        maps,
        to_core,
    )?;
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut log = StateLog::default();
    let mut drift_timer = tokio::time::interval_at(
        tokio::time::Instant::now() + DRIFT_SAVE_INTERVAL,
        DRIFT_SAVE_INTERVAL,
    );
    tokio::pin!(stop);

    loop {
        let wake = system
            .next_wakeup()
            .unwrap_or_else(|| mono(Instant::now()) + Duration::from_secs(1));
        let sleep = tokio::time::sleep_until((start + wake).into());
        let actions = tokio::select! {
            _ = &mut stop => break,
            _ = sleep => system.handle_timers(mono(Instant::now()), clock.now(), &mut rng),
            Some(r) = from_net.recv() => {
                match r.source.or_else(|| system.source_by_address(r.from)) {
                    Some(id) => system.handle_packet(id, &r.data, r.at, mono(r.mono)),
                    None => {
                        tracing::debug!(from = %r.from, "datagram from an address that is no source; ignored");
                        Vec::new()
                    }
                }
            }
            Some(req) = control.recv() => {
                match req {
                    ControlRequest::Status(reply) => {
                        let _ = reply.send(report(&settings, &system, clock.as_ref(), mono(Instant::now())));
                    }
                }
                Vec::new()
            }
            _ = drift_timer.tick() => {
                save_drift(drift_file.as_ref(), &system);
                Vec::new()
            }
            _ = resolve_timer.tick() => {
                let now = Instant::now();
                let status = system.source_status(mono(now));
                for (index, named) in names.iter_mut().enumerate() {
                    if named.due(now, &status) {
                        named.next_resolve = now + RESOLVE_RETRY;
                        let (name, port, tx) = (named.name.clone(), settings.ntp_port, resolved_tx.clone());
                        tokio::spawn(async move {
                            let _ = tx.send((index, resolve(&name, port).await)).await;
                        });
                    }
                }
                Vec::new()
            }
            Some((index, result)) = resolved_rx.recv() => {
                let named = &mut names[index];
                match result {
                    Ok(addrs) => {
                        named.apply(addrs, &mut system, &mut kinds, &mut transport, &settings.poll, mono(Instant::now()));
                    }
                    Err(e) => tracing::warn!(name = %named.name, "cannot resolve: {e}; retrying in {}s", RESOLVE_RETRY.as_secs()),
                }
                Vec::new()
            }
        };
        for action in actions {
            match action {
                Action::Send {
                    source,
                    address,
                    packet,
                } => {
                    let sent = match kinds.get(&source) {
                        Some(SourceKind::Peer) => transport.send_to_peer(address, &packet).await,
                        _ => transport.send_to_server(source, address, &packet).await,
                    };
                    if let Err(e) = sent {
                        tracing::warn!(%address, "sending to source failed: {e:#}");
                    }
                }
                Action::Clock(c) => {
                    if let Err(e) = clock.apply(&c) {
                        tracing::error!("clock adjustment failed: {e:#}");
                    }
                }
            }
        }
        log.observe(&system, clock.as_ref(), mono(Instant::now()));
    }
    save_drift(drift_file.as_ref(), &system);
    Ok(())
}

fn source_config(poll: &PollSettings, addr: IpAddr, kind: SourceKind) -> SourceConfig {
    let base = match kind {
        SourceKind::Server => SourceConfig::server(addr),
        SourceKind::Peer => SourceConfig::peer(addr),
    };
    SourceConfig {
        minpoll: poll.minpoll,
        maxpoll: poll.maxpoll,
        iburst: poll.iburst,
        ..base
    }
}

/// How often names are checked, how soon a failed resolution is retried,
/// and how long a resolved name whose sources all went silent waits
/// before it is resolved again.
const RESOLVE_CHECK: Duration = Duration::from_secs(5);
const RESOLVE_RETRY: Duration = Duration::from_secs(30);
const RERESOLVE_SILENT: Duration = Duration::from_secs(600);

/// A `--server NAME` / `--peer NAME` and the sources it currently stands for.
struct NamedSource {
    name: String,
    kind: SourceKind,
    sources: Vec<(IpAddr, SourceId)>,
    next_resolve: Instant,
}

impl NamedSource {
    /// Unresolved names are retried; resolved ones only when every source
    /// they gave has become unreachable.
    fn due(&self, now: Instant, status: &[SourceStatus]) -> bool {
        if now < self.next_resolve {
            return false;
        }
        self.sources.is_empty()
            || self.sources.iter().all(|(_, id)| {
                status
                    .iter()
                    .any(|s| s.id == *id && s.reach == 0 && s.when.is_some())
            })
    }

    /// Adds the new addresses (to the core and the filter), then retires
    /// those the name no longer resolves to: add before remove.
    fn apply(
        &mut self,
        addrs: Vec<IpAddr>,
        system: &mut System,
        kinds: &mut HashMap<SourceId, SourceKind>,
        transport: &mut Transport,
        poll: &PollSettings,
        now: Duration,
    ) {
        let class = match self.kind {
            SourceKind::Server => SourceClass::Server,
            SourceKind::Peer => SourceClass::Peer,
        };
        let mut kept = Vec::new();
        for &addr in &addrs {
            if let Some(&(_, id)) = self.sources.iter().find(|(a, _)| *a == addr) {
                kept.push((addr, id));
                continue;
            }
            if system.source_by_address(addr).is_some() {
                tracing::warn!(name = %self.name, %addr, "address is already a source; not added twice");
                continue;
            }
            if let Err(e) = transport.admit(addr, class) {
                tracing::error!("{e:#}");
                continue;
            }
            let id = system.add_source(source_config(poll, addr, self.kind), now);
            kinds.insert(id, self.kind);
            tracing::info!(name = %self.name, %addr, "source added");
            kept.push((addr, id));
        }
        for &(addr, id) in &self.sources {
            if !kept.iter().any(|(_, k)| *k == id) {
                system.retire_source(id, now);
                kinds.remove(&id);
                if let Err(e) = transport.forget(id, addr) {
                    tracing::error!("{e:#}");
                }
                tracing::info!(name = %self.name, %addr, "source removed: the name no longer resolves to it");
            }
        }
        self.sources = kept;
        self.next_resolve = Instant::now() + RERESOLVE_SILENT;
    }
}

fn report(
    settings: &SyncSettings,
    system: &System,
    clock: &dyn Clock,
    now: Duration,
) -> AgentReport {
    AgentReport {
        mode: settings.mode,
        clock: clock.describe().to_owned(),
        system: system.status(clock.now()),
        sources: system.source_status(now),
    }
}

fn read_drift(path: &PathBuf) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    match text.split_whitespace().next()?.parse::<f64>() {
        Ok(ppm) if ppm.is_finite() && ppm.abs() <= 500.0 => Some(ppm),
        _ => {
            tracing::warn!(path = %path.display(), "drift file unreadable; starting from 0 ppm");
            None
        }
    }
}

fn save_drift(path: Option<&PathBuf>, system: &System) {
    let Some(path) = path else { return };
    if !system.is_synchronized() {
        return;
    }
    let write = || -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{:.6}\n", system.frequency_ppm()))?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    };
    if let Err(e) = write().with_context(|| format!("writing drift file {}", path.display())) {
        tracing::warn!("{e:#}");
    }
}

/// One log line per state change, never one per packet.
#[derive(Default)]
struct StateLog {
    synchronized: Option<bool>,
    reason: Option<String>,
    tallies: HashMap<SourceId, char>,
    reachable: HashMap<SourceId, bool>,
    kod: HashMap<SourceId, String>,
    steps: u32,
}

impl StateLog {
    fn observe(&mut self, system: &System, clock: &dyn Clock, now: Duration) {
        let status = system.status(clock.now());
        if self.synchronized != Some(status.synchronized) || self.reason != status.reason {
            if status.synchronized {
                tracing::info!(stratum = status.stratum, refid = %status.refid, "synchronized");
            } else {
                tracing::info!(
                    reason = status.reason.as_deref().unwrap_or("-"),
                    "not synchronized"
                );
            }
            self.synchronized = Some(status.synchronized);
            self.reason = status.reason.clone();
        }
        if status.clock_steps != self.steps {
            tracing::warn!(
                steps = status.clock_steps,
                "clock step requested by the discipline"
            );
            self.steps = status.clock_steps;
        }
        for s in system.source_status(now) {
            let reachable = s.reach != 0;
            let before = self.reachable.insert(s.id, reachable);
            // A source starts unreachable; only a change is news.
            if before.unwrap_or(false) != reachable {
                tracing::info!(source = %s.remote, state = %s.state, "source {}", if reachable { "reachable" } else { "unreachable" });
            }
            if self.tallies.insert(s.id, s.tally) != Some(s.tally) && s.tally != ' ' {
                let what = match s.tally {
                    '*' => "selected",
                    '+' => "combined",
                    '-' => "outlier",
                    'x' => "falseticker",
                    _ => "candidate",
                };
                tracing::info!(source = %s.remote, "source {what}");
            }
            let kod = format!("{:?}", s.kod);
            if self.kod.get(&s.id) != Some(&kod) {
                if self.kod.contains_key(&s.id) {
                    tracing::warn!(source = %s.remote, kod = %kod, "kiss-o'-death");
                }
                self.kod.insert(s.id, kod);
            }
        }
    }
}
