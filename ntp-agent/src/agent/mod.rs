//! The agent's event loop: drives the sans-IO core (`ntp-proto`) with
//! timers, datagrams and control commands, and carries out what it asks
//! for — packets through [`Transport`], adjustments to the [`Clock`],
//! policy and source changes to the filter's maps.

mod commands;
mod drift;
mod names;
mod nts;
mod pools;
mod statelog;

use std::{
    collections::HashMap,
    future::Future,
    net::IpAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Result;
use ntp_proto::{
    Action, Frequency, NtpDuration, NtpInstant, SourceConfig, SourceId, SourceKind, System,
};
use rand::SeedableRng as _;
use tokio::sync::mpsc;

use self::{
    names::NamedSource,
    nts::{Incoming, NtsContext, NtsEntry, Outgoing},
    pools::PoolSource,
    statelog::StateLog,
};
use crate::{
    clock::Clock,
    control,
    filter::{links::Links, local_addrs, FilterMaps},
    model::{addr, PollSettings, Role, Settings, SourceArg, SourceRole, SourceSpec, SourceStamps},
    net::{resolve::resolve, Received, Sent, Transport},
    notify::Notifier,
    protocol::{
        AgentReport, AgentState, IgnoredCounters, ServerCounters, SourceName, SourceTimestamps,
    },
    server::{self, RateLimiter},
};

/// What a finished resolution was for.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Resolving {
    Name(String),
    Pool(String),
}

const DRIFT_SAVE_INTERVAL: Duration = Duration::from_secs(3600);

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

struct Agent {
    settings: Settings,
    start: Instant,
    system: System,
    kinds: HashMap<SourceId, SourceKind>,
    /// Kernel or user timestamps, per source (kept while it is in `kinds`).
    stamps: HashMap<SourceId, SourceStamps>,
    names: Vec<NamedSource>,
    transport: Transport,
    maps: Option<Arc<Mutex<FilterMaps>>>,
    /// The configured interfaces' state (with a filter).
    links: Option<Links>,
    clock: Box<dyn Clock>,
    limiter: RateLimiter,
    served: ServerCounters,
    ignored: IgnoredCounters,
    /// Sources whose last send failed, with why: logged once per change.
    send_failing: HashMap<IpAddr, String>,
    log: StateLog,
    rng: rand::rngs::StdRng,
    drift_file: Option<PathBuf>,
    resolved_tx: mpsc::Sender<(Resolving, std::io::Result<Vec<IpAddr>>)>,
    nts: Vec<NtsEntry>,
    nts_ctx: NtsContext,
    pools: Vec<PoolSource>,
}

/// The filter a running agent keeps current: its maps, and the configured
/// interfaces it is on.
pub struct Filter {
    pub maps: Arc<Mutex<FilterMaps>>,
    pub links: Links,
}

/// Runs until `stop` completes. `notify` learns when the loop is up, each
/// sync state change, and the stop; it is pinged from the loop itself when
/// systemd's watchdog is on, so a stuck loop gets the service restarted.
pub async fn run(
    settings: Settings,
    clock: Box<dyn Clock>,
    adjusting: bool,
    filter: Option<Filter>,
    mut control: mpsc::Receiver<control::Call>,
    stop: impl Future<Output = ()>,
    mut notify: Notifier,
) -> Result<()> {
    // `--source-port` against peers is refused by `cmd::run::check`,
    // before the filter is attached.
    let (maps, links) = filter.map(|f| (f.maps, f.links)).unzip();
    let (to_agent, mut from_net) = mpsc::channel(1024);
    let (resolved_tx, mut resolved_rx) = mpsc::channel(16);
    let (ke_tx, mut ke_rx) = mpsc::channel(16);
    let tls = Arc::new(crate::nts::trust::client_config(&settings.nts_ca, true)?);
    let transport = Transport::new(
        settings.ntp_port,
        settings.source_port,
        maps.clone(),
        to_agent,
    )?;
    let mut agent = Agent {
        start: Instant::now(),
        system: System::new(settings.system.clone()),
        kinds: HashMap::new(),
        stamps: HashMap::new(),
        names: Vec::new(),
        transport,
        maps,
        links,
        clock,
        limiter: RateLimiter::new(settings.rate_limit),
        served: ServerCounters::default(),
        ignored: IgnoredCounters::default(),
        send_failing: HashMap::new(),
        log: StateLog::default(),
        rng: rand::rngs::StdRng::from_entropy(),
        drift_file: settings.drift_file.clone().filter(|_| adjusting),
        resolved_tx,
        nts: Vec::new(),
        nts_ctx: NtsContext::new(tls, ke_tx),
        pools: Vec::new(),
        settings,
    };
    agent.add_configured_sources()?;
    agent.restore_drift()?;

    let mut resolve_timer = tokio::time::interval(names::RESOLVE_CHECK);
    // Key establishments are due after backoffs; a second is plenty finer
    // than the shortest (8 s).
    let mut ke_timer = tokio::time::interval(Duration::from_secs(1));
    let mut drift_timer = tokio::time::interval_at(
        tokio::time::Instant::now() + DRIFT_SAVE_INTERVAL,
        DRIFT_SAVE_INTERVAL,
    );
    let mut watchdog = notify.watchdog_interval().map(tokio::time::interval);
    tokio::pin!(stop);
    // Said only now that every socket is bound: tests and operators take
    // this line to mean the NTP port answers (logged earlier, a request sent
    // on seeing it could find no socket yet).
    tracing::info!(
        clock = agent.clock.describe(),
        "running; SIGTERM or Ctrl-C stops the agent and leaves the filter enforcing"
    );
    let now = agent.mono(Instant::now());
    let status = agent.system.status(agent.clock.now());
    notify.loop_started(statelog::sync_state(&agent.system, &status, now));
    loop {
        let wake = agent
            .system
            .next_wakeup()
            .unwrap_or_else(|| agent.mono(Instant::now()) + NtpDuration::from_seconds(1.0));
        let sleep = tokio::time::sleep_until((agent.start + wake.as_duration()).into());
        tokio::select! {
            _ = &mut stop => {
                notify.stopping();
                break;
            }
            _ = tick(watchdog.as_mut()) => notify.watchdog(),
            _ = sleep => {
                let actions = agent.system.handle_timers(agent.mono(Instant::now()), agent.clock.now(), &mut agent.rng);
                agent.execute(actions).await;
            }
            Some(r) = from_net.recv() => agent.on_datagram(r).await,
            Some(req) = control.recv() => match req {
                control::Call::Status(reply) => {
                    let _ = reply.send(agent.report());
                }
                control::Call::Change(cmd, reply) => {
                    let _ = reply.send(agent.on_command(cmd).map_err(|e| format!("{e:#}")));
                }
            },
            _ = drift_timer.tick() => drift::save_drift(agent.drift_file.as_ref(), &agent.system),
            _ = resolve_timer.tick() => {
                agent.resolve_due_names();
                agent.resolve_due_pools();
            }
            Some((what, result)) = resolved_rx.recv() => match what {
                Resolving::Name(name) => agent.on_resolved(&name, result),
                Resolving::Pool(name) => agent.on_pool_resolved(&name, result),
            },
            _ = ke_timer.tick() => agent.start_due_kes(),
            Some(done) = ke_rx.recv() => agent.on_ke_done(done),
        }
        if let Some(state) = agent.log.observe(
            &agent.system,
            agent.clock.as_ref(),
            agent.mono(Instant::now()),
        ) {
            notify.sync_changed(state);
        }
    }
    drift::save_drift(agent.drift_file.as_ref(), &agent.system);
    Ok(())
}

/// The next tick of `timer`, or never.
async fn tick(timer: Option<&mut tokio::time::Interval>) {
    match timer {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

impl Agent {
    fn mono(&self, at: Instant) -> NtpInstant {
        NtpInstant::from_duration(at.saturating_duration_since(self.start))
    }

    fn add_configured_sources(&mut self) -> Result<()> {
        let s = &self.settings;
        let specs: Vec<(SourceArg, SourceRole)> =
            (s.servers.iter().map(|a| (a, SourceRole::Server)))
                .chain(s.peers.iter().map(|a| (a, SourceRole::Peer)))
                .chain(s.pools.iter().map(|a| (a, SourceRole::Pool)))
                .map(|(a, r)| (a.clone(), r))
                .collect();
        // Stale negotiated ports from an agent before this one go.
        if let Some(maps) = &self.maps {
            maps.lock()
                .expect("maps lock poisoned")
                .set_server_ports(&[])?;
        }
        for (spec, role) in specs {
            self.add_source(spec, role, false)?;
        }
        self.update_ntp_port()
    }

    /// Adds a source by address (now), by name (when it resolves), an NTS
    /// source (when its key establishment names the server) or a pool.
    /// `admit`: also enter it in the filter (sources added at run time;
    /// start-up ones are already there from the initial reconcile).
    fn add_source(&mut self, arg: SourceArg, role: SourceRole, admit: bool) -> Result<()> {
        arg.check_role(role).map_err(anyhow::Error::msg)?;
        let poll = arg
            .poll_settings(&self.settings.poll)
            .map_err(anyhow::Error::msg)?;
        let kind = role.kind();
        if role == SourceRole::Pool {
            return self.add_pool(&arg, poll);
        }
        if let Some(ke_port) = arg.nts_ke_port() {
            return self.add_nts(arg.spec.to_string(), ke_port, poll);
        }
        match arg.spec {
            SourceSpec::Addr(addr) => {
                if self.system.source_by_address(addr).is_some() {
                    anyhow::bail!("{addr} is already a source");
                }
                if let Some(why) = addr::refuse_source(addr, &local_addrs::own_addresses()?) {
                    anyhow::bail!("{why}");
                }
                if admit {
                    self.transport
                        .admit(addr, names::class_of(kind), self.settings.ntp_port)?;
                }
                let now = self.mono(Instant::now());
                let id = self
                    .system
                    .add_source(source_config(&poll, addr, kind), now);
                self.kinds.insert(id, kind);
            }
            SourceSpec::Name(name) => {
                if self.names.iter().any(|n| n.name == name) {
                    anyhow::bail!("{name} is already a source");
                }
                self.names.push(NamedSource::new(name, kind, poll));
            }
        }
        Ok(())
    }

    fn restore_drift(&mut self) -> Result<()> {
        let Some(path) = &self.drift_file else {
            return Ok(());
        };
        if let Some(ppm) = drift::read_drift(path) {
            let freq = Frequency::from_ppm(ppm);
            if let Action::Clock(c) = self.system.set_frequency(freq, self.mono(Instant::now())) {
                self.clock.apply(&c)?;
            }
            tracing::info!(ppm, path = %path.display(), "frequency restored from drift file");
        }
        Ok(())
    }

    fn has_peers(&self) -> bool {
        self.kinds.values().any(|k| *k == SourceKind::Peer)
            || self.names.iter().any(|n| n.kind == SourceKind::Peer)
    }

    /// The NTP port is open exactly while peers or server mode need it.
    fn update_ntp_port(&mut self) -> Result<()> {
        if self.has_peers() || self.settings.role == Role::Server {
            self.transport.open_ntp_port()
        } else {
            self.transport.close_ntp_port();
            Ok(())
        }
    }

    async fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send {
                    source,
                    address,
                    packet,
                } => {
                    let ntp = std::net::SocketAddr::new(address, self.transport.ntp_port());
                    let sent = match self.kinds.get(&source) {
                        Some(SourceKind::Peer) => {
                            self.transport.send_from_ntp_port(ntp, &packet, None).await
                        }
                        _ => match self.seal_for(source, &packet) {
                            Outgoing::Plain => {
                                self.transport.send_to_server(source, ntp, &packet).await
                            }
                            Outgoing::Sealed(to, sealed) => {
                                self.transport.send_to_server(source, to, &sealed).await
                            }
                            Outgoing::Withheld => {
                                tracing::debug!(%address, "NTS: no session; request not sent");
                                continue;
                            }
                        },
                    };
                    // Said once when sending starts failing (or fails
                    // differently) and once when it works again, not at
                    // every poll.
                    match sent {
                        Err(e) => {
                            let why = format!("{e:#}");
                            if self.send_failing.get(&address) != Some(&why) {
                                tracing::warn!(%address, "sending to source failed: {why} (said again only when this changes)");
                                self.send_failing.insert(address, why);
                            }
                        }
                        Ok(sent) => {
                            self.transmitted(source, sent);
                            if self.send_failing.remove(&address).is_some() {
                                tracing::info!(%address, "sending to source works again");
                            }
                        }
                    }
                }
                Action::Clock(c) => {
                    if let Err(e) = self.clock.apply(&c) {
                        tracing::error!("clock adjustment failed: {e:#}");
                    }
                }
            }
        }
    }

    /// T1 of the request to `source` is the moment it left, in the
    /// disciplined clock's time (the virtual one under `--no-clock-adjust`).
    fn transmitted(&mut self, source: SourceId, sent: Sent) {
        let t1 = sent.at.at + self.clock.correction_at(sent.mono);
        self.system.transmitted(source, t1);
        if self.stamps.len() > self.kinds.len() {
            let kinds = &self.kinds;
            self.stamps.retain(|id, _| kinds.contains_key(id));
        }
        self.stamps.entry(source).or_default().tx.record(&sent.at);
    }

    async fn on_datagram(&mut self, mut r: Received) {
        // Sockets timestamp with system time; the core works in the
        // disciplined clock's time.
        r.at.at = r.at.at + self.clock.correction_at(r.mono);
        let mode = r.data.first().map(|b| b & 7);
        if addr::embeds_ipv4(r.from.ip()) {
            // Neither the IPv4 host it names nor a client to answer (the
            // filter drops these at the NIC; this covers the interfaces it
            // is not on).
            self.ignored.ipv4_mapped_source += 1;
            tracing::debug!(from = %r.from, ?mode, "datagram from an IPv6 address embedding IPv4; ignored");
            return;
        }
        if r.on_ntp_port && mode == Some(3) {
            self.serve_client(r).await;
            return;
        }
        match r
            .source
            .or_else(|| self.system.source_by_address(r.from.ip()))
        {
            Some(id) => {
                let now = self.mono(r.mono);
                let actions = match self.open_for(id, &r.data) {
                    Incoming::Plain => self.system.handle_packet(id, &r.data, r.at.at, now),
                    Incoming::Authentic(header) => {
                        self.system.handle_packet(id, &header, r.at.at, now)
                    }
                    Incoming::Refused => {
                        tracing::debug!(from = %r.from, "NTS: reply refused");
                        return;
                    }
                };
                if self.kinds.contains_key(&id) {
                    self.stamps.entry(id).or_default().rx.record(&r.at);
                }
                self.execute(actions).await;
            }
            None => {
                tracing::debug!(from = %r.from, ?mode, "datagram from an address that is no source; ignored");
            }
        }
    }

    async fn serve_client(&mut self, r: Received) {
        if self.settings.role != Role::Server {
            self.served.not_serving += 1;
            return;
        }
        // Decode before charging the limiter: garbage must not spend the
        // client's tokens or its one KoD RATE.
        let Some(req) = server::client_request(&r.data) else {
            self.served.malformed += 1;
            return;
        };
        let decision = self.limiter.check(r.from.ip(), r.mono);
        let state = self.system.server_state(self.clock.now());
        let Some(reply) = server::answer(&req, decision, &state, r.at.at, self.clock.now()) else {
            if decision == server::Decision::Ignore {
                self.served.rate_ignored += 1;
            }
            return;
        };
        match decision {
            server::Decision::Answer => self.served.answered += 1,
            server::Decision::KissOfDeath => {
                self.served.rate_kod += 1;
                tracing::info!(client = %r.from.ip(), "client over its rate limit: KoD RATE sent, further requests ignored until it slows down");
            }
            server::Decision::Ignore => {}
        }
        // T3 is taken again right before the send (a KoD keeps its own).
        let correction = self.clock.correction_at(Instant::now());
        let t3 = move |system_now| system_now + correction;
        let late_t3: Option<&(dyn Fn(_) -> _ + Sync)> =
            (decision == server::Decision::Answer).then_some(&t3);
        if let Err(e) = self
            .transport
            .send_from_ntp_port(r.from, &reply, late_t3)
            .await
        {
            tracing::debug!(client = %r.from, "reply failed: {e:#}");
        }
    }

    fn resolve_due_names(&mut self) {
        let now = Instant::now();
        let status = self.system.source_status(self.mono(now));
        for named in &mut self.names {
            if named.due(now, &status) {
                named.next_resolve = now + names::RESOLVE_RETRY;
                let (name, port, tx) = (
                    named.name.clone(),
                    self.settings.ntp_port,
                    self.resolved_tx.clone(),
                );
                tokio::spawn(async move {
                    let result = resolve(&name, port).await;
                    let _ = tx.send((Resolving::Name(name), result)).await;
                });
            }
        }
    }

    fn on_resolved(&mut self, name: &str, result: std::io::Result<Vec<IpAddr>>) {
        let now = self.mono(Instant::now());
        // The name may have been deleted while it was being resolved.
        let Some(named) = self.names.iter_mut().find(|n| n.name == name) else {
            return;
        };
        match result {
            Ok(addrs) => named.apply(
                addrs,
                &mut self.system,
                &mut self.kinds,
                &mut self.transport,
                now,
            ),
            Err(e) => tracing::warn!(
                name,
                "cannot resolve: {e}; retrying in {}s",
                names::RESOLVE_RETRY.as_secs()
            ),
        }
    }

    fn report(&self) -> AgentReport {
        let now = self.mono(Instant::now());
        AgentReport {
            role: self.settings.role,
            clock: self.clock.describe().to_owned(),
            clock_correction_ms: self.clock.correction().map(|s| s * 1e3),
            system: self.system.status(self.clock.now()),
            last_update_age_s: self
                .system
                .last_clock_update()
                .map(|t| (now - t).to_seconds().max(0.0)),
            sources: self.system.source_status(now),
            source_names: self
                .names
                .iter()
                .flat_map(|n| n.sources.iter().map(|&(_, id)| (id, n.name.as_str())))
                .chain(self.pool_member_names())
                .map(|(id, name)| SourceName {
                    id,
                    name: name.to_owned(),
                })
                .collect(),
            server: self.served.clone(),
            nts: self.nts_reports(),
            pools: self.pool_reports(),
            timestamps: self
                .stamps
                .iter()
                .filter(|(id, _)| self.kinds.contains_key(id))
                .map(|(&id, &stamps)| SourceTimestamps { id, stamps })
                .collect(),
            ignored: self.ignored.clone(),
            interfaces: self.links.as_ref().map_or_else(Vec::new, |l| {
                // Looked at now: `status` right after a `detach` says so.
                l.check();
                l.report()
            }),
            state: AgentState {
                sources_committed: self.committed_sources(),
                core_slots: self.system.slot_count(),
                core_sources: self.system.source_status(now).len(),
                kinds: self.kinds.len(),
                timestamps: self.stamps.len(),
                send_failing: self.send_failing.len(),
                logged_states: self.log.tracked(),
                request_sockets: self.transport.request_sockets(),
            },
        }
    }

    /// Takes a source out of the core and the filter (after whatever
    /// replaces it went in).
    fn retire(&mut self, id: SourceId, addr: IpAddr) -> Result<()> {
        self.system.retire_source(id, self.mono(Instant::now()));
        self.kinds.remove(&id);
        self.stamps.remove(&id);
        self.send_failing.remove(&addr);
        self.transport.forget(id, addr)
    }
}
