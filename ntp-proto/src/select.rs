//! RFC 5905 system process: intersection (Marzullo variant), cluster pruning and
//! combining. Works on plain candidate records so it can be tested in isolation.

use crate::time::NtpDuration;
use serde::{Deserialize, Serialize};

/// Cluster pruning stops at this many survivors (RFC 5905 NMIN).
pub const MIN_CLUSTER_SURVIVORS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Caller's index for the source.
    pub id: usize,
    pub offset: NtpDuration,
    /// Root distance (half-width of the correctness interval).
    pub root_distance: NtpDuration,
    pub jitter: NtpDuration,
    pub stratum: u8,
}

/// Per-source mark, as in `ntpq -p`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Tally {
    /// `*` the system peer.
    SystemPeer,
    /// `+` survivor, combined into the system offset.
    Candidate,
    /// `-` discarded by the cluster algorithm.
    Outlier,
    /// `x` falseticker: outside the majority intersection.
    Falseticker,
    /// ` ` not usable (unreachable, no samples, too far, KoD...).
    #[default]
    NotUsable,
}

impl Tally {
    pub fn as_char(self) -> char {
        match self {
            Tally::SystemPeer => '*',
            Tally::Candidate => '+',
            Tally::Outlier => '-',
            Tally::Falseticker => 'x',
            Tally::NotUsable => ' ',
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Selection {
    /// (candidate id, tally) for every input candidate.
    pub tallies: Vec<(usize, Tally)>,
    pub system_peer: usize,
    /// Ids of the survivors (system peer included), best first.
    pub survivors: Vec<usize>,
    /// Combined offset of the survivors.
    pub offset: NtpDuration,
    /// System jitter (combined selection and peer jitter).
    pub jitter: NtpDuration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SelectError {
    NoCandidates,
    NoMajority,
}

/// Runs intersection, clustering and combining. `max_distance` is the selection
/// threshold used to rank strata (RFC 5905 MAXDIST); `previous` keeps the old
/// system peer when it is still as good (avoids clock hopping).
pub fn select(
    candidates: &[Candidate],
    max_distance: NtpDuration,
    previous: Option<usize>,
) -> Result<Selection, SelectError> {
    let n = candidates.len();
    if n == 0 {
        return Err(SelectError::NoCandidates);
    }
    let (low, high) = intersection(candidates).ok_or(SelectError::NoMajority)?;

    let mut tallies: Vec<(usize, Tally)> = Vec::with_capacity(n);
    let mut survivors: Vec<Candidate> = Vec::new();
    for c in candidates {
        if c.offset + c.root_distance < low || c.offset - c.root_distance > high {
            tallies.push((c.id, Tally::Falseticker));
        } else {
            survivors.push(*c);
        }
    }
    if survivors.is_empty() {
        return Err(SelectError::NoMajority);
    }
    let merit = |c: &Candidate| max_distance * c.stratum as f64 + c.root_distance;
    survivors.sort_by_key(merit);

    // Cluster: drop the survivor contributing most selection jitter until that is
    // below the smallest peer jitter or only a few are left.
    while survivors.len() > MIN_CLUSTER_SURVIVORS {
        let m = survivors.len();
        let mut worst = 0;
        let mut worst_jitter = NtpDuration::from_fixed(-1);
        for (i, a) in survivors.iter().enumerate() {
            let sum: f64 = survivors
                .iter()
                .map(|b| (a.offset - b.offset).to_seconds().powi(2))
                .sum();
            let sj = NtpDuration::from_seconds((sum / (m - 1) as f64).sqrt());
            if sj > worst_jitter {
                worst_jitter = sj;
                worst = i;
            }
        }
        let min_peer_jitter = survivors
            .iter()
            .map(|c| c.jitter)
            .min()
            .unwrap_or(NtpDuration::ZERO);
        if worst_jitter <= min_peer_jitter {
            break;
        }
        tallies.push((survivors[worst].id, Tally::Outlier));
        survivors.remove(worst);
    }

    let mut sys = survivors[0];
    if let Some(prev) = previous.and_then(|p| survivors.iter().find(|c| c.id == p)) {
        if prev.stratum == sys.stratum {
            sys = *prev;
        }
    }

    let weight = |c: &Candidate| 1.0 / c.root_distance.to_seconds().max(1e-9);
    let (mut wsum, mut osum) = (0.0, 0.0);
    for c in &survivors {
        wsum += weight(c);
        osum += weight(c) * c.offset.to_seconds();
    }
    let offset = NtpDuration::from_seconds(osum / wsum);
    let mut sel_jitter = 0.0;
    for c in &survivors {
        sel_jitter += weight(c) * (c.offset - sys.offset).to_seconds().powi(2);
    }
    let jitter =
        NtpDuration::from_seconds((sel_jitter / wsum + sys.jitter.to_seconds().powi(2)).sqrt());

    for c in &survivors {
        let t = if c.id == sys.id {
            Tally::SystemPeer
        } else {
            Tally::Candidate
        };
        tallies.push((c.id, t));
    }
    Ok(Selection {
        tallies,
        system_peer: sys.id,
        survivors: survivors.iter().map(|c| c.id).collect(),
        offset,
        jitter,
    })
}

/// Smallest interval containing points from the intervals of a majority of the
/// candidates (RFC 5905 section 11.2.1, with midpoints).
pub fn intersection(candidates: &[Candidate]) -> Option<(NtpDuration, NtpDuration)> {
    let n = candidates.len();
    let mut ends: Vec<(NtpDuration, i32)> = Vec::with_capacity(3 * n);
    for c in candidates {
        ends.push((c.offset - c.root_distance, -1));
        ends.push((c.offset, 0));
        ends.push((c.offset + c.root_distance, 1));
    }
    ends.sort();
    let mut allow = 0;
    while 2 * allow < n {
        let mut found = 0;
        let mut chime = 0i64;
        let mut low = NtpDuration::from_fixed(i64::MAX);
        for &(v, t) in &ends {
            chime -= t as i64;
            if chime >= (n - allow) as i64 {
                low = v;
                break;
            }
            if t == 0 {
                found += 1;
            }
        }
        chime = 0;
        let mut high = NtpDuration::from_fixed(i64::MIN);
        for &(v, t) in ends.iter().rev() {
            chime += t as i64;
            if chime >= (n - allow) as i64 {
                high = v;
                break;
            }
            if t == 0 {
                found += 1;
            }
        }
        if found <= allow && low <= high {
            return Some((low, high));
        }
        allow += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: f64) -> NtpDuration {
        NtpDuration::from_seconds(s)
    }

    const MAXDIST: NtpDuration = NtpDuration::from_fixed(3 << 31);

    fn c(id: usize, offset: f64, dist: f64) -> Candidate {
        Candidate {
            id,
            offset: d(offset),
            root_distance: d(dist),
            jitter: d(1e-4),
            stratum: 1,
        }
    }

    fn tally(s: &Selection, id: usize) -> Tally {
        s.tallies.iter().find(|t| t.0 == id).unwrap().1
    }

    #[test]
    fn single_source() {
        let s = select(&[c(7, 0.01, 0.005)], MAXDIST, None).unwrap();
        assert_eq!(s.system_peer, 7);
        assert_eq!(tally(&s, 7), Tally::SystemPeer);
        assert!((s.offset - d(0.01)).abs() < d(1e-9));
    }

    #[test]
    fn falseticker_rejected() {
        let cands = [c(0, 0.0, 0.005), c(1, 0.001, 0.005), c(2, 0.050, 0.005)];
        let (lo, hi) = intersection(&cands).unwrap();
        assert!(
            lo <= d(0.001) && (d(0.0)..d(0.045)).contains(&hi),
            "{lo:?} {hi:?}"
        );
        let s = select(&cands, MAXDIST, None).unwrap();
        assert_eq!(tally(&s, 2), Tally::Falseticker);
        assert_ne!(s.system_peer, 2);
        assert!(s.offset.abs() < d(0.002));
        let plus = s.tallies.iter().filter(|t| t.1 == Tally::Candidate).count();
        assert_eq!(plus, 1);
    }

    #[test]
    fn two_disagreeing_sources_have_no_majority() {
        let cands = [c(0, 0.0, 0.005), c(1, 0.050, 0.005)];
        assert_eq!(select(&cands, MAXDIST, None), Err(SelectError::NoMajority));
        assert_eq!(select(&[], MAXDIST, None), Err(SelectError::NoCandidates));
    }

    #[test]
    fn overlapping_majority_with_two_falsetickers_of_five() {
        let cands = [
            c(0, 0.000, 0.01),
            c(1, 0.002, 0.01),
            c(2, -0.003, 0.01),
            c(3, 0.5, 0.01),
            c(4, -0.7, 0.01),
        ];
        let s = select(&cands, MAXDIST, None).unwrap();
        assert_eq!(tally(&s, 3), Tally::Falseticker);
        assert_eq!(tally(&s, 4), Tally::Falseticker);
        assert_eq!(s.survivors.len(), 3);
    }

    #[test]
    fn cluster_prunes_outlier() {
        // All intervals overlap, but one source is far from the tight group.
        let mut cands: Vec<Candidate> = (0..4).map(|i| c(i, i as f64 * 1e-5, 0.1)).collect();
        cands.push(c(9, 0.05, 0.1));
        let s = select(&cands, MAXDIST, None).unwrap();
        assert_eq!(tally(&s, 9), Tally::Outlier);
        assert!(s.offset.abs() < d(1e-4));
    }

    #[test]
    fn keeps_previous_system_peer() {
        let cands = [c(0, 0.0, 0.004), c(1, 0.0, 0.005)];
        assert_eq!(select(&cands, MAXDIST, None).unwrap().system_peer, 0);
        assert_eq!(select(&cands, MAXDIST, Some(1)).unwrap().system_peer, 1);
    }
}
