//! The safety properties the simulator checks after every step, over every replica of every
//! group: at most one leader per term; log matching (an `(index, term)` pair identifies one entry
//! and one predecessor term everywhere, so equal entries imply equal prefixes); leader
//! completeness (a leader holds every entry any replica ever reported committed); state machine
//! safety (the same entry is applied at each index everywhere); the commit index of a replica
//! never goes back during one incarnation, and committed entries never change.

use std::collections::HashMap;

use crate::raft::{Entry, EntryKind, GroupId, NodeId, Raft, Role};

/// A broken safety property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// FNV-1a hash of an entry's kind and payload.
pub fn entry_hash(e: &Entry) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let kind = match e.kind {
        EntryKind::Normal => 1u8,
        EntryKind::Noop => 2,
        EntryKind::Config => 3,
    };
    for b in std::iter::once(&kind).chain(e.data.iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Everything the checker remembers across steps.
#[derive(Debug, Default)]
pub struct Invariants {
    leaders: HashMap<(GroupId, u64), NodeId>,
    /// `(group, index, term)` → `(hash, previous entry's term)`.
    entries: HashMap<(GroupId, u64, u64), (u64, u64)>,
    /// Per group and index, the committed entry `(term, hash)`.
    committed: HashMap<(GroupId, u64), (u64, u64)>,
    /// Per group and index, the term of the first replica seen holding it committed (at least
    /// the term in which it was committed).
    commit_terms: HashMap<(GroupId, u64), u64>,
    /// Per group, highest index known committed.
    committed_max: HashMap<GroupId, u64>,
    /// Per group and index, the applied `(term, hash)`.
    applied: HashMap<(GroupId, u64), (u64, u64)>,
    /// Last commit index per `(node, incarnation, group)`.
    commits: HashMap<(NodeId, u64, GroupId), u64>,
    /// Checks performed.
    pub checks: u64,
}

impl Invariants {
    /// Highest index known committed in `group`.
    pub fn committed_len(&self, group: GroupId) -> u64 {
        self.committed_max.get(&group).copied().unwrap_or(0)
    }

    /// Checks one replica. `incarnation` changes on every restart.
    pub fn check_replica(
        &mut self,
        group: GroupId,
        incarnation: u64,
        r: &Raft,
    ) -> Result<(), Violation> {
        self.checks += 1;
        let id = r.id();
        let log = r.log();
        // One leader per term.
        if r.role() == Role::Leader {
            let prev = *self.leaders.entry((group, r.term())).or_insert(id);
            if prev != id {
                return Err(Violation(format!(
                    "group {group}: two leaders in term {}: {prev} and {id}",
                    r.term()
                )));
            }
        }
        // Commit never goes back within an incarnation.
        let c = self.commits.entry((id, incarnation, group)).or_insert(0);
        if log.committed() < *c {
            return Err(Violation(format!(
                "group {group} node {id}: commit went back from {} to {}",
                c,
                log.committed()
            )));
        }
        *c = log.committed();
        // Log matching: every (index, term) pair maps to one entry and one predecessor term.
        let mut prev_term = log.term(log.offset()).unwrap_or(0);
        for e in log.entries() {
            let h = entry_hash(e);
            let got = *self
                .entries
                .entry((group, e.index, e.term))
                .or_insert((h, prev_term));
            if got != (h, prev_term) {
                return Err(Violation(format!(
                    "group {group} node {id}: log matching broken at index {} term {}",
                    e.index, e.term
                )));
            }
            prev_term = e.term;
        }
        // Committed entries: record new ones, compare known ones.
        for e in log.entries() {
            if e.index > log.committed() {
                break;
            }
            let h = (e.term, entry_hash(e));
            let got = *self.committed.entry((group, e.index)).or_insert(h);
            self.commit_terms
                .entry((group, e.index))
                .or_insert(r.term());
            if got != h {
                return Err(Violation(format!(
                    "group {group} node {id}: committed entry {} differs (term {} vs {})",
                    e.index, e.term, got.0
                )));
            }
        }
        let max = self.committed_max.entry(group).or_insert(0);
        *max = (*max).max(log.committed());
        let known = *max;
        // Leader completeness: a leader of a later term than the one an entry was committed in
        // holds that entry (unless compacted).
        if r.role() == Role::Leader {
            for i in log.first_index()..=known {
                let Some(want) = self.committed.get(&(group, i)) else {
                    continue;
                };
                let commit_term = self
                    .commit_terms
                    .get(&(group, i))
                    .copied()
                    .unwrap_or(u64::MAX);
                if commit_term >= r.term() {
                    continue;
                }
                let got = log.entry(i).map(|e| (e.term, entry_hash(e)));
                if got != Some(*want) {
                    return Err(Violation(format!(
                        "group {group} term {}: leader {id} does not hold entry {i} committed in term {commit_term}",
                        r.term()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Records that `node` applied entry `e` of `group`.
    pub fn check_apply(
        &mut self,
        group: GroupId,
        node: NodeId,
        e: &Entry,
    ) -> Result<(), Violation> {
        let h = (e.term, entry_hash(e));
        let got = *self.applied.entry((group, e.index)).or_insert(h);
        if got != h {
            return Err(Violation(format!(
                "group {group} node {node}: applied a different entry at index {} (term {} vs {})",
                e.index, e.term, got.0
            )));
        }
        Ok(())
    }
}
