//! One log line per state change, never one per packet.

use std::{collections::HashMap, time::Duration};

use ntp_proto::{SourceId, System};

use crate::clock::Clock;

#[derive(Default)]
pub struct StateLog {
    synchronized: Option<bool>,
    reason: Option<String>,
    tallies: HashMap<SourceId, char>,
    reachable: HashMap<SourceId, bool>,
    kod: HashMap<SourceId, String>,
    steps: u32,
}

impl StateLog {
    pub fn observe(&mut self, system: &System, clock: &dyn Clock, now: Duration) {
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
