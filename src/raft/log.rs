//! The in-memory Raft log of one replica: the suffix of entries after the last compaction
//! point, plus the positions the core tracks on it. The whole log the core needs stays in memory
//! (bounded by the snapshot threshold plus `log_retain_entries` plus the uncommitted window), so
//! the core stays pure; the node persists what `Ready::entries` hands out and rebuilds the log on
//! restart with [`RaftLog::restore_from`].
//!
//! Invariants: `offset <= applied <= committed <= last_index`; `durable <= last_index`;
//! `unstable_from <= last_index + 1`; `entries[k].index == offset + 1 + k`; `configs` is sorted
//! by index and its first element is the configuration in effect at `offset`.

use std::collections::VecDeque;

use super::membership::Membership;
use super::message::{Entry, EntryKind, RejectHint, SnapshotMeta};

/// The log of one replica.
#[derive(Debug, Clone)]
pub struct RaftLog {
    /// Index of the last compacted entry (the entries start at `offset + 1`).
    offset: u64,
    /// Term of the entry at `offset`.
    offset_term: u64,
    entries: VecDeque<Entry>,
    committed: u64,
    /// Highest index handed to the driver for applying.
    applied: u64,
    /// First index not yet handed to the driver for persistence.
    unstable_from: u64,
    /// Highest index the driver reported durable (and still in this log).
    durable: u64,
    /// Configurations in the log: `(index, membership)`, oldest first.
    configs: Vec<(u64, Membership)>,
}

/// An AppendEntries that conflicts with committed entries: a safety violation by the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("append would overwrite committed entry {index}")]
pub struct CommittedConflict {
    /// The committed index the append disagrees with.
    pub index: u64,
}

impl RaftLog {
    /// An empty log starting after `meta` (the bootstrap or restored snapshot).
    pub fn new(meta: &SnapshotMeta) -> RaftLog {
        RaftLog {
            offset: meta.index,
            offset_term: meta.term,
            entries: VecDeque::new(),
            committed: meta.index,
            applied: meta.index,
            unstable_from: meta.index + 1,
            durable: meta.index,
            configs: vec![(meta.index, meta.membership.clone())],
        }
    }

    /// A log rebuilt from durable state: snapshot `meta`, then `entries` (which must follow it
    /// contiguously; entries at or before the snapshot are skipped), committed up to `commit`.
    /// Everything given is durable.
    pub fn restore_from(meta: &SnapshotMeta, entries: Vec<Entry>, commit: u64) -> RaftLog {
        let mut log = RaftLog::new(meta);
        for e in entries {
            if e.index <= log.offset {
                continue;
            }
            if e.index != log.last_index() + 1 {
                break;
            }
            log.push(e);
        }
        log.unstable_from = log.last_index() + 1;
        log.durable = log.last_index();
        log.committed = commit.clamp(log.offset, log.last_index());
        log
    }

    /// Index of the last compacted entry.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// First index held in memory.
    pub fn first_index(&self) -> u64 {
        self.offset + 1
    }
    /// Last index.
    pub fn last_index(&self) -> u64 {
        self.offset + self.entries.len() as u64
    }
    /// Term of the last entry.
    pub fn last_term(&self) -> u64 {
        self.entries.back().map_or(self.offset_term, |e| e.term)
    }
    /// Commit index.
    pub fn committed(&self) -> u64 {
        self.committed
    }
    /// Highest index handed out for applying.
    pub fn applied(&self) -> u64 {
        self.applied
    }
    /// Highest index known durable.
    pub fn durable(&self) -> u64 {
        self.durable
    }
    /// Latest configuration in the log.
    pub fn membership(&self) -> &Membership {
        &self.configs[self.configs.len() - 1].1
    }
    /// Index of the latest configuration.
    pub fn membership_index(&self) -> u64 {
        self.configs[self.configs.len() - 1].0
    }
    /// Configuration in effect at `index`.
    pub fn membership_at(&self, index: u64) -> &Membership {
        let mut m = &self.configs[0].1;
        for (i, c) in &self.configs {
            if *i <= index {
                m = c;
            }
        }
        m
    }

    /// Term at `index`, if known (the compaction point or an entry held in memory).
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.offset {
            return Some(self.offset_term);
        }
        self.entry(index).map(|e| e.term)
    }

    /// The entry at `index` if held.
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        if index <= self.offset {
            return None;
        }
        self.entries.get((index - self.offset - 1) as usize)
    }

    /// Entries in memory, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter()
    }

    /// Raft's "at least as up-to-date" comparison of a candidate's last entry with ours.
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        last_term > self.last_term()
            || (last_term == self.last_term() && last_index >= self.last_index())
    }

    fn push(&mut self, e: Entry) {
        if e.kind == EntryKind::Config {
            if let Ok(m) = Membership::decode(&e.data) {
                self.configs.push((e.index, m));
            }
        }
        self.entries.push_back(e);
    }

    /// Appends entries created by this replica as leader (contiguous after the last index).
    pub fn append(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for e in entries {
            debug_assert_eq!(e.index, self.last_index() + 1);
            self.push(e);
        }
    }

    /// Drops every entry at or after `index` (never committed ones).
    fn truncate_from(&mut self, index: u64) {
        debug_assert!(index > self.committed);
        let keep = index.saturating_sub(self.offset + 1) as usize;
        self.entries.truncate(keep);
        self.unstable_from = self.unstable_from.min(index);
        self.durable = self.durable.min(index - 1);
        while self.configs.len() > 1 && self.configs[self.configs.len() - 1].0 >= index {
            self.configs.pop();
        }
    }

    /// Follower side of AppendEntries. `Ok(Some(last_new))` if the log matched at
    /// `(prev_index, prev_term)` (entries appended, conflicting suffix replaced, commit advanced
    /// to `min(commit, last_new)`), `Ok(None)` if it did not match.
    pub fn maybe_append(
        &mut self,
        prev_index: u64,
        prev_term: u64,
        commit: u64,
        entries: Vec<Entry>,
    ) -> Result<Option<u64>, CommittedConflict> {
        if self.term(prev_index) != Some(prev_term) {
            return Ok(None);
        }
        // Malformed (non-contiguous) batches are treated as a mismatch, never appended.
        if entries
            .iter()
            .enumerate()
            .any(|(k, e)| e.index != prev_index + 1 + k as u64)
        {
            return Ok(None);
        }
        let last_new = prev_index + entries.len() as u64;
        let first_new = entries
            .iter()
            .position(|e| self.term(e.index) != Some(e.term));
        if let Some(k) = first_new {
            let at = entries[k].index;
            if at <= self.committed {
                return Err(CommittedConflict { index: at });
            }
            if at <= self.last_index() {
                self.truncate_from(at);
            }
            for e in entries.into_iter().skip(k) {
                self.push(e);
            }
        }
        self.commit_to(commit.min(last_new));
        Ok(Some(last_new))
    }

    /// The largest index `<= index` whose term is `<= term`, and that term (see [`RejectHint`]).
    pub fn find_conflict_by_term(&self, index: u64, term: u64) -> RejectHint {
        let mut i = index.min(self.last_index());
        while i > self.offset {
            match self.term(i) {
                Some(t) if t > term => i -= 1,
                Some(t) => return RejectHint { index: i, term: t },
                None => break,
            }
        }
        RejectHint {
            index: self.offset,
            term: self.offset_term,
        }
    }

    /// Advances the commit index (never backwards, never past the last index).
    pub fn commit_to(&mut self, index: u64) -> bool {
        let index = index.min(self.last_index());
        if index > self.committed {
            self.committed = index;
            true
        } else {
            false
        }
    }

    /// Up to `max_count` entries from `lo`, at most `max_bytes` (at least one entry). `None` if
    /// `lo` is compacted.
    pub fn slice(&self, lo: u64, max_count: usize, max_bytes: usize) -> Option<Vec<Entry>> {
        if lo <= self.offset {
            return None;
        }
        // Sized once for the most entries it can hold (bounded by `max_count` and the log):
        // growing from empty reallocated and copied it about log2(n) times per append.
        let held = self.last_index().saturating_sub(lo).saturating_add(1);
        let mut out =
            Vec::with_capacity(max_count.min(usize::try_from(held).unwrap_or(usize::MAX)));
        let mut bytes = 0usize;
        let mut i = lo;
        while i <= self.last_index() && out.len() < max_count {
            let Some(e) = self.entry(i) else { break };
            bytes += e.size_bytes();
            if !out.is_empty() && bytes > max_bytes {
                break;
            }
            out.push(e.clone());
            i += 1;
        }
        Some(out)
    }

    /// True if entries wait to be handed out for persistence.
    pub fn has_unstable(&self) -> bool {
        self.unstable_from <= self.last_index()
    }

    /// Hands out the entries not yet given to the driver for persistence.
    pub fn take_unstable(&mut self) -> Vec<Entry> {
        let lo = self.unstable_from.max(self.offset + 1);
        let out = self.held_range(lo, self.last_index());
        self.unstable_from = self.last_index() + 1;
        out
    }

    /// True if committed entries wait to be applied.
    pub fn has_next_committed(&self) -> bool {
        self.committed > self.applied
    }

    /// Hands out up to `max` committed, not yet applied entries.
    pub fn take_committed(&mut self, max: usize) -> Vec<Entry> {
        let hi = self.committed.min(self.applied + max as u64);
        let out = self.held_range(self.applied + 1, hi);
        self.applied += out.len() as u64;
        out
    }

    /// Clones of the entries held in memory with indexes in `lo..=hi` (those outside the
    /// log are skipped), in one allocation of the exact count.
    fn held_range(&self, lo: u64, hi: u64) -> Vec<Entry> {
        let lo = lo.max(self.offset + 1);
        let hi = hi.min(self.last_index());
        if lo > hi {
            return Vec::new();
        }
        // Positions in `entries`: `offset < lo <= hi <= last_index` keeps both in range.
        let (Ok(first), Ok(last)) = (
            usize::try_from(lo - self.offset - 1),
            usize::try_from(hi - self.offset - 1),
        ) else {
            return Vec::new();
        };
        self.entries.range(first..=last).cloned().collect()
    }

    /// The driver made everything up to `(index, term)` durable.
    pub fn on_persisted(&mut self, index: u64, term: u64) {
        if index < self.unstable_from && self.term(index) == Some(term) && index > self.durable {
            self.durable = index;
        }
    }

    /// Replaces the whole log by a snapshot (follower install).
    pub fn restore(&mut self, meta: &SnapshotMeta) {
        let durable = self.offset;
        *self = RaftLog::new(meta);
        self.durable = durable.min(meta.index);
        self.unstable_from = meta.index + 1;
    }

    /// Marks the snapshot at `index` durable (after the driver persisted an installed snapshot).
    pub fn snapshot_persisted(&mut self, index: u64) {
        if index == self.offset && self.durable < index {
            self.durable = index;
        }
    }

    /// Drops entries up to `index` (which must be applied) from memory.
    pub fn compact_to(&mut self, index: u64) {
        drop(self.compact_to_taking(index));
    }

    /// [`RaftLog::compact_to`], handing the entries it removes to the caller instead of
    /// freeing them (freeing a few hundred thousand entries takes milliseconds: the caller
    /// frees them where that stalls nothing). Only the entries kept are moved.
    pub fn compact_to_taking(&mut self, index: u64) -> VecDeque<Entry> {
        let index = index.min(self.applied);
        if index <= self.offset {
            return VecDeque::new();
        }
        let Some(term) = self.term(index) else {
            return VecDeque::new();
        };
        let drop = (index - self.offset) as usize;
        let kept = self.entries.split_off(drop);
        let removed = std::mem::replace(&mut self.entries, kept);
        self.offset = index;
        self.offset_term = term;
        self.unstable_from = self.unstable_from.max(index + 1);
        self.durable = self.durable.max(index.min(self.durable));
        while self.configs.len() > 1 && self.configs[1].0 <= index {
            self.configs.remove(0);
        }
        removed
    }

    /// Number of entries held in memory.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no entries are held in memory.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn e(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            kind: EntryKind::Normal,
            data: Arc::from(&b"x"[..]),
        }
    }

    #[test]
    fn append_conflict_and_hint() {
        let mut log = RaftLog::new(&SnapshotMeta::default());
        log.append([e(1, 1), e(2, 1), e(3, 2), e(4, 2)]);
        // mismatch at prev
        assert_eq!(log.maybe_append(4, 3, 0, vec![]).unwrap(), None);
        let hint = log.find_conflict_by_term(4, 1);
        assert_eq!(hint, RejectHint { index: 2, term: 1 });
        // conflicting suffix replaced
        assert_eq!(log.maybe_append(2, 1, 3, vec![e(3, 3)]).unwrap(), Some(3));
        assert_eq!(log.last_index(), 3);
        assert_eq!(log.term(3), Some(3));
        assert_eq!(log.committed(), 3);
        // committed conflict refused
        assert!(log.maybe_append(2, 1, 3, vec![e(3, 4)]).is_err());
        // stale duplicate does not truncate
        assert_eq!(log.maybe_append(1, 1, 3, vec![e(2, 1)]).unwrap(), Some(2));
        assert_eq!(log.last_index(), 3);
    }

    #[test]
    fn compaction_and_slices() {
        let mut log = RaftLog::new(&SnapshotMeta::default());
        log.append((1..=10).map(|i| e(i, 1)));
        assert_eq!(log.take_unstable().len(), 10);
        log.on_persisted(10, 1);
        assert_eq!(log.durable(), 10);
        log.commit_to(8);
        assert_eq!(log.take_committed(5).len(), 5);
        log.compact_to(8); // clamps to applied = 5
        assert_eq!(log.offset(), 5);
        assert!(log.slice(5, 10, 1 << 20).is_none());
        assert_eq!(log.slice(6, 2, 1 << 20).unwrap().len(), 2);
        assert_eq!(log.slice(6, 10, 1).unwrap().len(), 1);
        assert_eq!(log.term(5), Some(1));
    }

    #[test]
    fn handed_out_entries_are_the_held_range_in_one_exact_allocation() {
        // Every split of a compacted log: what is handed out matches the entries looked up one
        // by one, and the vector holding them was allocated once at its final size.
        for compact in [0u64, 3, 7] {
            for max in [1usize, 4, 100] {
                let mut log = RaftLog::new(&SnapshotMeta::default());
                log.append((1..=12).map(|i| e(i, 1)));
                log.commit_to(10);
                let first = log.take_committed(compact as usize);
                assert_eq!(first.capacity(), first.len());
                log.on_persisted(12, 1);
                log.compact_to(compact);
                let expect: Vec<u64> = (log.unstable_from.max(log.offset + 1)..=12).collect();
                let unstable = log.take_unstable();
                assert_eq!(unstable.iter().map(|e| e.index).collect::<Vec<_>>(), expect);
                assert_eq!(unstable.capacity(), unstable.len());
                let from = log.applied() + 1;
                let expect: Vec<u64> = (from..=10.min(log.applied() + max as u64))
                    .filter(|i| log.entry(*i).is_some())
                    .collect();
                let committed = log.take_committed(max);
                assert_eq!(
                    committed.iter().map(|e| e.index).collect::<Vec<_>>(),
                    expect
                );
                assert_eq!(committed.capacity(), committed.len());
                assert_eq!(log.applied(), from - 1 + expect.len() as u64);
                let s = log.slice(compact + 1, max, 1 << 20).unwrap();
                assert_eq!(s.len(), max.min((12 - compact) as usize));
                assert_eq!(s.capacity(), s.len(), "sized for what it can hold");
            }
        }
    }

    #[test]
    fn compaction_hands_back_exactly_the_entries_it_removes() {
        let mut log = RaftLog::new(&SnapshotMeta::default());
        log.append((1..=10).map(|i| e(i, 1)));
        log.take_unstable();
        log.on_persisted(10, 1);
        log.commit_to(10);
        log.take_committed(7);
        let removed = log.compact_to_taking(4);
        let idx: Vec<u64> = removed.iter().map(|e| e.index).collect();
        assert_eq!(idx, vec![1, 2, 3, 4]);
        assert_eq!(log.offset(), 4);
        assert_eq!(log.len(), 6);
        assert_eq!(log.slice(5, 11, 1 << 20).unwrap()[0].index, 5);
        // Clamped to applied (7); nothing past the offset: nothing removed.
        let idx: Vec<u64> = log.compact_to_taking(9).iter().map(|e| e.index).collect();
        assert_eq!(idx, vec![5, 6, 7]);
        assert!(log.compact_to_taking(7).is_empty());
        assert_eq!(log.term(7), Some(1));
        assert_eq!(log.last_index(), 10);
    }
}
