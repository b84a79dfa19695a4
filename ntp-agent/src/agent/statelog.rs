//! One log line per state change, never one per packet; the same changes
//! become systemd's STATUS= line.

use std::collections::{HashMap, HashSet};

use ntp_proto::{NtpInstant, SourceId, System, SystemStatus};

use crate::{clock::Clock, notify::SyncState};

#[derive(Default)]
pub struct StateLog {
    synchronized: Option<bool>,
    reason: Option<String>,
    tallies: HashMap<SourceId, char>,
    reachable: HashMap<SourceId, bool>,
    kod: HashMap<SourceId, String>,
    steps: u32,
    state: Option<SyncState>,
}

impl StateLog {
    /// Logs what changed since the last call; returns the sync state for
    /// the service manager when it changed.
    pub fn observe(
        &mut self,
        system: &System,
        clock: &dyn Clock,
        now: NtpInstant,
    ) -> Option<SyncState> {
        let status = system.status(clock.now());
        let state = sync_state(system, &status, now);
        let changed = self.state.as_ref() != Some(&state);
        self.state = Some(state.clone());
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
        let sources = system.source_status(now);
        for s in &sources {
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
        // Retired sources leave with their last states (ids are never
        // reused, so these would otherwise grow with every source ever
        // added).
        if self.tracked() > sources.len() {
            let live: HashSet<SourceId> = sources.iter().map(|s| s.id).collect();
            self.reachable.retain(|id, _| live.contains(id));
            self.tallies.retain(|id, _| live.contains(id));
            self.kod.retain(|id, _| live.contains(id));
        }
        changed.then_some(state)
    }

    /// Sources whose last states are kept.
    pub fn tracked(&self) -> usize {
        self.reachable
            .len()
            .max(self.tallies.len())
            .max(self.kod.len())
    }
}

/// Synchronized to which source (the system peer's address), or why not.
pub fn sync_state(system: &System, status: &SystemStatus, now: NtpInstant) -> SyncState {
    if status.synchronized {
        let to = status
            .system_peer
            .and_then(|id| system.source_status(now).into_iter().find(|s| s.id == id))
            .map(|s| s.remote)
            .unwrap_or_else(|| status.refid.clone());
        SyncState::Synchronized {
            to,
            stratum: status.stratum,
        }
    } else {
        SyncState::Unsynchronized {
            reason: status.reason.clone().unwrap_or_else(|| "unknown".into()),
        }
    }
}
