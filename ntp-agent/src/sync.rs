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

use crate::{cli::Mode, clock::Clock, filter::FilterMaps, net::Transport};

#[derive(Clone, Debug)]
pub struct PollSettings {
    pub minpoll: i8,
    pub maxpoll: i8,
    pub iburst: bool,
}

#[derive(Clone, Debug)]
pub struct SyncSettings {
    pub servers: Vec<IpAddr>,
    pub peers: Vec<IpAddr>,
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
    for (&addr, kind) in settings
        .servers
        .iter()
        .map(|a| (a, SourceKind::Server))
        .chain(settings.peers.iter().map(|a| (a, SourceKind::Peer)))
    {
        let base = match kind {
            SourceKind::Server => SourceConfig::server(addr),
            SourceKind::Peer => SourceConfig::peer(addr),
        };
        let cfg = SourceConfig {
            minpoll: settings.poll.minpoll,
            maxpoll: settings.poll.maxpoll,
            iburst: settings.poll.iburst,
            ..base
        };
        kinds.insert(system.add_source(cfg, mono(Instant::now())), kind);
    }

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
