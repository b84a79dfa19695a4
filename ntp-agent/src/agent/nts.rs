//! NTS sources in the event loop. A source given with `nts` has no core
//! source until a key establishment names its NTP server (which may be
//! another address and port than the KE host); then the server joins the
//! filter and the core, and every request to it is sealed and every reply
//! opened here, between the core and the sockets. A request that cannot
//! be sealed is not sent: there is no unauthenticated path.
//!
//! Key establishments run as tasks of their own (TLS over TCP, up to
//! [`KE_TIMEOUT`]); the loop only starts them and takes their results.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Instant, SystemTime},
};

use anyhow::{bail, Result};
use ntp_filter_common::SourceClass;
use ntp_proto::{SourceId, SourceKind};
use rand::Rng as _;
use rustls::ClientConfig;
use tokio::sync::mpsc;

use super::{source_config, Agent};
use crate::{
    model::PollSettings,
    nts::{
        ke::{self, Established, KeFailure, KE_TIMEOUT},
        source::{NtsSource, Sealed},
    },
    protocol::NtsReport,
};

/// The end of one key establishment, for the entry that started it.
pub struct KeDone {
    token: u64,
    result: Result<Established, KeFailure>,
}

/// One `--server HOST,nts`.
pub struct NtsEntry {
    /// Tells a finished key establishment which entry it was for (the
    /// entry may have been deleted and re-added meanwhile).
    token: u64,
    /// As configured: the KE host.
    pub host: String,
    poll: PollSettings,
    state: NtsSource,
    /// The core source and where its NTP goes, once a key establishment
    /// named the server.
    core: Option<(SourceId, SocketAddr)>,
}

/// What the loop needs for NTS: whom to trust and where results arrive.
pub struct NtsContext {
    tls: Arc<ClientConfig>,
    done_tx: mpsc::Sender<KeDone>,
    next_token: u64,
}

impl NtsContext {
    pub fn new(tls: Arc<ClientConfig>, done_tx: mpsc::Sender<KeDone>) -> Self {
        Self {
            tls,
            done_tx,
            next_token: 0,
        }
    }
}

/// What to do with a request the core wants sent.
pub enum Outgoing {
    /// Not an NTS source: send the core's packet as it is.
    Plain,
    /// Send this sealed packet there.
    Sealed(SocketAddr, Vec<u8>),
    /// Nothing may leave (no session yet, cookies gone, NAK).
    Withheld,
}

/// What to give the core of a datagram from a source.
pub enum Incoming {
    Plain,
    /// The authenticated header.
    Authentic([u8; 48]),
    /// Refused (counted by reason in the source's NTS status).
    Refused,
}

impl Agent {
    /// Adds `--server HOST,nts[,nts-port=N]`; its first key establishment
    /// starts at once.
    pub(super) fn add_nts(&mut self, host: String, ke_port: u16, poll: PollSettings) -> Result<()> {
        if self.nts.iter().any(|e| e.host == host) {
            bail!("{host} is already a source");
        }
        let token = self.nts_ctx.next_token;
        self.nts_ctx.next_token += 1;
        self.nts.push(NtsEntry {
            token,
            state: NtsSource::new(host.clone(), ke_port, Instant::now()),
            host,
            poll,
            core: None,
        });
        self.start_due_kes();
        Ok(())
    }

    /// Removes an NTS source: its core source and filter entry go, a
    /// key establishment still running is ignored when it ends.
    pub(super) fn remove_nts(&mut self, host: &str) -> Result<bool> {
        let Some(i) = self.nts.iter().position(|e| e.host == host) else {
            return Ok(false);
        };
        let entry = self.nts.remove(i);
        if let Some((id, to)) = entry.core {
            self.retire(id, to.ip())?;
            self.write_server_ports(None);
        }
        Ok(true)
    }

    fn nts_index(&self, id: SourceId) -> Option<usize> {
        self.nts
            .iter()
            .position(|e| e.core.is_some_and(|(c, _)| c == id))
    }

    /// Starts every key establishment that is due.
    pub(super) fn start_due_kes(&mut self) {
        let now = Instant::now();
        for e in &mut self.nts {
            if e.state.ke_due_at().is_none_or(|at| at > now) {
                continue;
            }
            e.state.ke_started();
            let (tls, tx, token) = (
                self.nts_ctx.tls.clone(),
                self.nts_ctx.done_tx.clone(),
                e.token,
            );
            let (host, port, ntp_port) =
                (e.host.clone(), e.state.ke_port(), self.settings.ntp_port);
            tokio::spawn(async move {
                let result = ke::establish(tls, &host, port, ntp_port, KE_TIMEOUT).await;
                let _ = tx.send(KeDone { token, result }).await;
            });
        }
    }

    /// A key establishment ended. On success the server it names joins
    /// the filter and the core before a server it replaces leaves them.
    pub(super) fn on_ke_done(&mut self, done: KeDone) {
        let Some(i) = self.nts.iter().position(|e| e.token == done.token) else {
            return;
        };
        let ke_server = self.nts[i].state.status().ke_server.clone();
        let established = match done.result {
            Ok(est) => est,
            Err(err) => return self.ke_failed(i, &err),
        };
        let to = SocketAddr::new(established.ntp_addr, established.ntp_port);
        let old = self.nts[i].core;
        let conflict = old.is_none_or(|(_, o)| o.ip() != to.ip())
            && self.system.source_by_address(to.ip()).is_some();
        if conflict {
            return self.ke_failed(i, &KeFailure::Conflict(to));
        }
        tracing::info!(
            server = %ke_server,
            aead = established.aead.name(),
            cookies = established.session.cookies(),
            ntp_server = %to,
            ms = format!("{:.1}", established.elapsed.as_secs_f64() * 1e3),
            "NTS-KE succeeded"
        );
        self.nts[i]
            .state
            .ke_succeeded(established, SystemTime::now());
        match old {
            Some((_, o)) if o == to => {}
            Some((id, o)) if o.ip() == to.ip() => {
                // Same server, another port: the next request's entry
                // carries it; the program must take replies from it first.
                self.write_server_ports(Some(to.port()));
                self.nts[i].core = Some((id, to));
                self.write_server_ports(None);
            }
            _ => {
                self.write_server_ports(Some(to.port()));
                // Added before the old server leaves, unless the filter's
                // table is full: then the old one (which this key
                // establishment no longer names) leaves first.
                let mut old = old;
                if self.transport.filter_room() == 0 {
                    if let Some((old_id, o)) = old.take() {
                        self.nts[i].core = None;
                        if let Err(e) = self.retire(old_id, o.ip()) {
                            tracing::error!("{e:#}");
                        }
                    }
                }
                if let Err(e) = self
                    .transport
                    .admit(to.ip(), SourceClass::Server, to.port())
                {
                    tracing::error!("{e:#}");
                    return;
                }
                let now = self.mono(Instant::now());
                let cfg = source_config(&self.nts[i].poll, to.ip(), SourceKind::Server);
                let id = self.system.add_source(cfg, now);
                self.kinds.insert(id, SourceKind::Server);
                self.nts[i].core = Some((id, to));
                if let Some((old_id, o)) = old {
                    tracing::info!(server = %ke_server, from = %o, to = %to, "NTS: the NTP server moved");
                    if let Err(e) = self.retire(old_id, o.ip()) {
                        tracing::error!("{e:#}");
                    }
                }
                self.write_server_ports(None);
            }
        }
    }

    fn ke_failed(&mut self, i: usize, err: &KeFailure) {
        let spread = self.rng.gen_range(-1.0..=1.0);
        let e = &mut self.nts[i];
        e.state.ke_failed(err, Instant::now(), spread);
        let retry = e
            .state
            .ke_due_at()
            .map(|at| at.saturating_duration_since(Instant::now()).as_secs());
        tracing::warn!(
            server = %e.state.status().ke_server,
            kind = err.kind().name(),
            retry_in_s = retry,
            "NTS-KE failed: {err}"
        );
    }

    /// The core wants `packet` sent to source `id`.
    pub(super) fn seal_for(&mut self, id: SourceId, packet: &[u8; 48]) -> Outgoing {
        let Some(i) = self.nts_index(id) else {
            return Outgoing::Plain;
        };
        let sealed = self.nts[i]
            .state
            .seal(packet, &mut self.rng, Instant::now());
        match sealed {
            Sealed::Send { to, packet } => Outgoing::Sealed(to, packet),
            Sealed::NeedKe => {
                self.start_due_kes();
                Outgoing::Withheld
            }
        }
    }

    /// A datagram from source `id`: an NTS source's is opened first.
    pub(super) fn open_for(&mut self, id: SourceId, data: &[u8]) -> Incoming {
        let Some(i) = self.nts_index(id) else {
            return Incoming::Plain;
        };
        match self.nts[i].state.open(data) {
            Some(header) => Incoming::Authentic(header),
            None => Incoming::Refused,
        }
    }

    /// Tells the filter which ports servers answer from besides the NTP
    /// port: those of the NTS servers, and `extra` (one about to join).
    fn write_server_ports(&self, extra: Option<u16>) {
        let Some(maps) = &self.maps else {
            return;
        };
        let ports: Vec<u16> = self
            .nts
            .iter()
            .filter_map(|e| e.core.map(|(_, to)| to.port()))
            .chain(extra)
            .collect();
        match maps
            .lock()
            .expect("maps lock poisoned")
            .set_server_ports(&ports)
        {
            Ok(left_out) if !left_out.is_empty() => tracing::warn!(
                ?left_out,
                "more NTP server ports than the filter holds ({}): replies from these pass the NIC unfiltered (NTS still authenticates them)",
                ntp_filter_common::MAX_SERVER_PORTS
            ),
            Ok(_) => {}
            Err(e) => tracing::error!("writing the server ports to the filter: {e:#}"),
        }
    }

    pub(super) fn nts_reports(&self) -> Vec<NtsReport> {
        self.nts
            .iter()
            .map(|e| NtsReport {
                host: e.host.clone(),
                source: e.core.map(|(id, _)| id),
                reason: e.state.reason(),
                nts: e.state.status().clone(),
            })
            .collect()
    }
}
