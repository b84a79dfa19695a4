//! `--pool NAME`: up to `maxsources` addresses from one name, and which
//! of them to replace, like chrony: a member that stays unreachable or
//! keeps being a falseticker is swapped for a fresh address from a new
//! resolution, at most one replacement per poll interval. The event loop
//! does the resolving and adds the new source (core and filter) before it
//! removes the old one.
//!
//! Everything kept here is bounded: the members by `maxsources`, the
//! addresses recently given up by [`RECENTLY_REMOVED`], whatever the
//! number of replacements.

use std::{
    collections::VecDeque,
    net::IpAddr,
    time::{Duration, Instant},
};

/// `maxsources` when not given (chrony's default).
pub const DEFAULT_MAX_SOURCES: usize = 4;
/// chrony's upper bound for `maxsources`.
pub const MAX_SOURCES_LIMIT: usize = 16;
/// Addresses given up lately, not taken again while a name still offers
/// others (a round-robin name returns the dead one again soon).
pub const RECENTLY_REMOVED: usize = 32;
/// A member is judged only after this many of its polls: a full reach
/// register of misses, or that long a falseticker.
pub const POLLS_BEFORE_JUDGING: u32 = 8;

/// How a member is doing, from the core's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    pub addr: IpAddr,
    pub reach: u8,
    pub falseticker: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Member {
    addr: IpAddr,
    joined: Instant,
    /// Since when it has been a falseticker without a break.
    falseticker_since: Option<Instant>,
}

#[derive(Debug)]
pub struct Pool {
    pub name: String,
    pub max_sources: usize,
    members: Vec<Member>,
    recently_removed: VecDeque<IpAddr>,
    last_replacement: Option<Instant>,
}

impl Pool {
    pub fn new(name: String, max_sources: usize) -> Self {
        Self {
            name,
            max_sources: max_sources.clamp(1, MAX_SOURCES_LIMIT),
            members: Vec::new(),
            recently_removed: VecDeque::new(),
            last_replacement: None,
        }
    }

    pub fn members(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.members.iter().map(|m| m.addr)
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Takes addresses from a resolution until the pool is full: none it
    /// has, none `taken` (another source already), recently removed ones
    /// only when nothing else is left. Returns the ones to add.
    pub fn fill(
        &mut self,
        resolved: &[IpAddr],
        taken: impl Fn(IpAddr) -> bool,
        now: Instant,
    ) -> Vec<IpAddr> {
        let mut added = Vec::new();
        for fresh_only in [true, false] {
            for &addr in resolved {
                if self.members.len() >= self.max_sources {
                    return added;
                }
                let known = self.members.iter().any(|m| m.addr == addr);
                let stale = self.recently_removed.contains(&addr);
                if known || taken(addr) || (fresh_only && stale) {
                    continue;
                }
                self.members.push(Member {
                    addr,
                    joined: now,
                    falseticker_since: None,
                });
                added.push(addr);
            }
        }
        added
    }

    /// The member to replace now, if any: unreachable after
    /// [`POLLS_BEFORE_JUDGING`] polls, or a falseticker for that long; at
    /// most one per `poll` interval. The caller resolves the name again
    /// and calls [`Pool::replace`].
    pub fn due_replacement(
        &mut self,
        health: &[Health],
        poll: Duration,
        now: Instant,
    ) -> Option<IpAddr> {
        let judged_after = poll * POLLS_BEFORE_JUDGING;
        for m in &mut self.members {
            let h = health.iter().find(|h| h.addr == m.addr);
            match h {
                Some(h) if h.falseticker => {
                    m.falseticker_since.get_or_insert(now);
                }
                _ => m.falseticker_since = None,
            }
        }
        if self
            .last_replacement
            .is_some_and(|t| now.saturating_duration_since(t) < poll)
        {
            return None;
        }
        self.members
            .iter()
            .find(|m| {
                let old_enough = now.saturating_duration_since(m.joined) >= judged_after;
                let unreachable = health
                    .iter()
                    .find(|h| h.addr == m.addr)
                    .is_none_or(|h| h.reach == 0);
                let false_long = m
                    .falseticker_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= judged_after);
                old_enough && (unreachable || false_long)
            })
            .map(|m| m.addr)
    }

    /// Replaces `old` with an address from `resolved` (add it first, then
    /// remove `old`). Returns the new address, or `None` when the name
    /// offers nothing new: `old` then stays, to be tried again next
    /// interval.
    pub fn replace(
        &mut self,
        old: IpAddr,
        resolved: &[IpAddr],
        taken: impl Fn(IpAddr) -> bool,
        now: Instant,
    ) -> Option<IpAddr> {
        let at = self.members.iter().position(|m| m.addr == old)?;
        self.last_replacement = Some(now);
        let new = resolved.iter().copied().find(|&a| {
            a != old
                && !self.members.iter().any(|m| m.addr == a)
                && !self.recently_removed.contains(&a)
                && !taken(a)
        })?;
        self.members[at] = Member {
            addr: new,
            joined: now,
            falseticker_since: None,
        };
        if self.recently_removed.len() == RECENTLY_REMOVED {
            self.recently_removed.pop_front();
        }
        self.recently_removed.push_back(old);
        Some(new)
    }

    /// Drops a member the operator or the event loop gave up on.
    pub fn remove(&mut self, addr: IpAddr) {
        self.members.retain(|m| m.addr != addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> IpAddr {
        IpAddr::from([198, 51, 100, n])
    }

    const POLL: Duration = Duration::from_secs(64);

    #[test]
    fn fills_to_maxsources_skipping_what_is_taken() {
        let t0 = Instant::now();
        let mut p = Pool::new("pool.test".into(), 3);
        let added = p.fill(&[a(1), a(2), a(3), a(4), a(5)], |x| x == a(2), t0);
        assert_eq!(added, [a(1), a(3), a(4)]);
        assert!(p.fill(&[a(5)], |_| false, t0).is_empty(), "full");
        assert_eq!(Pool::new("x".into(), 0).max_sources, 1);
        assert_eq!(Pool::new("x".into(), 99).max_sources, MAX_SOURCES_LIMIT);
    }

    #[test]
    fn dead_member_replaced_after_eight_polls_one_per_interval() {
        let t0 = Instant::now();
        let mut p = Pool::new("pool.test".into(), 3);
        p.fill(&[a(1), a(2), a(3)], |_| false, t0);
        let health = |dead: &[IpAddr]| -> Vec<Health> {
            [a(1), a(2), a(3), a(4), a(5)]
                .iter()
                .map(|&addr| Health {
                    addr,
                    reach: if dead.contains(&addr) { 0 } else { 0o377 },
                    falseticker: false,
                })
                .collect()
        };
        let dead = [a(2), a(3)];
        // Too young to judge.
        assert_eq!(p.due_replacement(&health(&dead), POLL, t0 + POLL * 7), None);
        let t = t0 + POLL * 8;
        assert_eq!(p.due_replacement(&health(&dead), POLL, t), Some(a(2)));
        let resolved = [a(1), a(2), a(3), a(4), a(5)];
        assert_eq!(p.replace(a(2), &resolved, |_| false, t), Some(a(4)));
        // The other dead one waits for the next interval.
        assert_eq!(p.due_replacement(&health(&dead), POLL, t + POLL / 2), None);
        assert_eq!(
            p.due_replacement(&health(&dead), POLL, t + POLL),
            Some(a(3))
        );
        assert_eq!(p.replace(a(3), &resolved, |_| false, t + POLL), Some(a(5)));
        assert_eq!(p.members().collect::<Vec<_>>(), [a(1), a(4), a(5)]);
        // A name offering nothing new keeps the member.
        let t = t + POLL * 20;
        assert_eq!(p.due_replacement(&health(&[a(5)]), POLL, t), Some(a(5)));
        assert_eq!(p.replace(a(5), &[a(2), a(3), a(5)], |_| false, t), None);
        assert_eq!(p.len(), 3);
    }

    #[test]
    fn persistent_falseticker_is_replaced_a_passing_one_not() {
        let t0 = Instant::now();
        let mut p = Pool::new("pool.test".into(), 2);
        p.fill(&[a(1), a(2)], |_| false, t0);
        let h = |ft: bool| {
            vec![
                Health {
                    addr: a(1),
                    reach: 0o377,
                    falseticker: false,
                },
                Health {
                    addr: a(2),
                    reach: 0o377,
                    falseticker: ft,
                },
            ]
        };
        let t = t0 + POLL * 8;
        assert_eq!(p.due_replacement(&h(true), POLL, t), None, "just marked");
        assert_eq!(
            p.due_replacement(&h(false), POLL, t + POLL * 4),
            None,
            "recovered"
        );
        assert_eq!(p.due_replacement(&h(true), POLL, t + POLL * 5), None);
        assert_eq!(p.due_replacement(&h(true), POLL, t + POLL * 13), Some(a(2)));
    }

    /// 10,000 replacements from a name that keeps offering new addresses:
    /// the pool's own state stays within its bounds.
    #[test]
    fn memory_stays_bounded_over_ten_thousand_replacements() {
        let t0 = Instant::now();
        let mut p = Pool::new("pool.test".into(), 4);
        let addr = |i: u32| IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
        p.fill(&[addr(0), addr(1), addr(2), addr(3)], |_| false, t0);
        let mut t = t0;
        for next in 4..10_004 {
            t += POLL * 9;
            let health: Vec<Health> = p
                .members()
                .map(|addr| Health {
                    addr,
                    reach: 0,
                    falseticker: false,
                })
                .collect();
            let old = p.due_replacement(&health, POLL, t).expect("a dead member");
            let resolved = [addr(next), addr(next + 1)];
            let new = p
                .replace(old, &resolved, |_| false, t)
                .expect("something new");
            assert_eq!(new, addr(next));
        }
        assert_eq!(p.len(), 4);
        assert_eq!(p.recently_removed.len(), RECENTLY_REMOVED);
        assert!(p.members.capacity() <= 8 && p.recently_removed.capacity() <= 64);
    }
}
