//! Simulated storage of one node: what is durable (survives a crash) and what is only written,
//! not yet fsynced (lost on a crash). A `Ready` round becomes one [`PendingWrite`]; an fsync makes
//! the oldest pending writes durable in order, like a WAL.

use std::collections::{BTreeMap, VecDeque};

use crate::raft::{Entry, Envelope, GroupId, HardState, RestartState, Snapshot};

/// Durable state of one group on one node.
#[derive(Debug, Clone, Default)]
pub struct GroupStore {
    /// Last durable hard state.
    pub hard_state: HardState,
    /// Last durable snapshot.
    pub snapshot: Snapshot,
    /// Durable entries after the snapshot.
    pub entries: Vec<Entry>,
}

impl GroupStore {
    /// Appends entries, replacing any stored suffix from the first one.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        self.entries.retain(|e| e.index < first.index);
        self.entries.extend(entries.iter().cloned());
    }

    /// Installs a snapshot: entries it covers are dropped.
    pub fn install(&mut self, snap: &Snapshot) {
        if snap.meta.index < self.snapshot.meta.index {
            return;
        }
        let keep_after = snap.meta.index;
        let consistent = self
            .entries
            .iter()
            .any(|e| e.index == snap.meta.index && e.term == snap.meta.term);
        if consistent {
            self.entries.retain(|e| e.index > keep_after);
        } else {
            self.entries.clear();
        }
        self.snapshot = snap.clone();
    }

    /// State for `Raft::restart`.
    pub fn restart_state(&self) -> RestartState {
        RestartState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

/// One group's part of a pending write.
#[derive(Debug, Clone, Default)]
pub struct GroupWrite {
    /// Snapshot to store first.
    pub snapshot: Option<Snapshot>,
    /// Entries to append.
    pub entries: Vec<Entry>,
    /// Hard state.
    pub hard_state: Option<HardState>,
    /// `on_persisted` mark.
    pub mark: Option<(u64, u64)>,
}

/// A written, not yet durable, `Ready` round of one node.
#[derive(Debug, Clone, Default)]
pub struct PendingWrite {
    /// Per group.
    pub groups: BTreeMap<GroupId, GroupWrite>,
    /// Envelopes to send once durable.
    pub after: Vec<Envelope>,
}

/// Storage of one node.
#[derive(Debug, Clone, Default)]
pub struct NodeStorage {
    /// Durable, per group.
    pub durable: BTreeMap<GroupId, GroupStore>,
    /// Not yet durable, oldest first.
    pub pending: VecDeque<PendingWrite>,
}

impl NodeStorage {
    /// Makes the oldest pending write durable; returns it (to send its envelopes and report marks).
    pub fn fsync_one(&mut self) -> Option<PendingWrite> {
        let w = self.pending.pop_front()?;
        for (g, gw) in &w.groups {
            let store = self.durable.entry(*g).or_default();
            if let Some(s) = &gw.snapshot {
                store.install(s);
            }
            store.append(&gw.entries);
            if let Some(hs) = gw.hard_state {
                store.hard_state = hs;
            }
        }
        Some(w)
    }

    /// A crash: every pending write is lost.
    pub fn crash(&mut self) -> usize {
        let n = self.pending.len();
        self.pending.clear();
        n
    }
}
