//! The in-memory index of one Raft group inside the shared log: where each of its entries lives
//! (segment, offset, length), their terms and lsns, its first index and hard state. Rebuilt by
//! recovery from the records; updated by the `Wal` owner only.
//!
//! Invariants: indexes `[first_index, phantom_end)` are *phantom* entries — they existed when
//! the checkpoint that opened the first surviving segment was written, but live in purged
//! segments; only replay creates them, and later Truncate/Purge records must remove them all
//! (recovery checks this, so a live `Wal` never has phantoms). `entries[k]` holds index
//! `phantom_end + k`; lsns increase along `entries`; `last_index() == phantom_end +
//! entries.len() - 1` (so `first_index - 1` when the group's log is empty).

use std::collections::VecDeque;

use crate::durability::Lsn;
use crate::hard_state::HardState;

/// Where one entry lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EntryLoc {
    /// Segment sequence number.
    pub seq: u64,
    /// Offset of the record (header) in the segment.
    pub offset: u32,
    /// Payload length.
    pub len: u32,
    /// Entry term.
    pub term: u64,
    /// Record lsn.
    pub lsn: Lsn,
}

/// Index of one group.
#[derive(Clone, Debug)]
pub(crate) struct GroupIndex {
    pub first_index: u64,
    pub phantom_end: u64,
    pub entries: VecDeque<EntryLoc>,
    pub hard_state: Option<HardState>,
    /// Replay only: whether any positional record (entry, truncate, purge, checkpoint) was seen.
    pub positioned: bool,
}

impl Default for GroupIndex {
    fn default() -> Self {
        GroupIndex {
            first_index: 1,
            phantom_end: 1,
            entries: VecDeque::new(),
            hard_state: None,
            positioned: false,
        }
    }
}

impl GroupIndex {
    pub fn last_index(&self) -> u64 {
        self.phantom_end + self.entries.len() as u64 - 1
    }

    pub fn get(&self, index: u64) -> Option<&EntryLoc> {
        let k = index.checked_sub(self.phantom_end)?;
        self.entries.get(usize::try_from(k).ok()?)
    }

    /// Removes entries with index >= `index`.
    pub fn truncate(&mut self, index: u64) {
        if index >= self.phantom_end {
            let keep = usize::try_from(index - self.phantom_end).unwrap_or(usize::MAX);
            if keep < self.entries.len() {
                self.entries.truncate(keep);
            }
        } else {
            self.entries.clear();
            self.phantom_end = index.max(self.first_index);
        }
    }

    /// Drops entries below `index`; first index becomes `index` (if it grows).
    pub fn purge(&mut self, index: u64) {
        if index <= self.first_index {
            return;
        }
        self.first_index = index;
        if index > self.phantom_end {
            let drop = usize::try_from(index - self.phantom_end).unwrap_or(usize::MAX);
            if drop >= self.entries.len() {
                self.entries.clear();
            } else {
                self.entries.drain(..drop);
            }
            self.phantom_end = index;
        }
    }

    /// Highest index whose record is durable (`first_index - 1` when none).
    pub fn durable_index(&self, durable: Lsn) -> u64 {
        let n = self.entries.partition_point(|e| e.lsn <= durable);
        self.phantom_end + n as u64 - 1
    }

    /// Lowest segment seq this group still needs.
    pub fn oldest_seq(&self) -> Option<u64> {
        self.entries.front().map(|e| e.seq)
    }

    /// Highest index whose entry lives in a segment below `seq` (`first live index - 1` when
    /// none). Segment seqs never decrease along `entries` (appends go to the active segment).
    pub fn last_index_below_seq(&self, seq: u64) -> u64 {
        let n = self.entries.partition_point(|e| e.seq < seq);
        self.phantom_end + n as u64 - 1
    }
}
