//! Simulated storage of one node, the driver's [`Storage`] in the simulator: what is durable
//! (survives a crash) and what is only written, not yet fsynced (lost on a crash). The writes of
//! one driver round become one [`PendingWrite`] when the driver asks for its durability ticket;
//! an fsync makes the oldest pending writes durable in order, like a WAL. A snapshot taken
//! locally is its own pending write (durable at its fsync, like the node's snapshot file).
//!
//! Like the node's WAL, a hard state that keeps the term and vote of the last one written (it
//! only moves the commit index) is *deferred*: it is written in order but asks for no ticket of
//! its own. A round that wrote nothing else gets the last ticket already issued, so it waits
//! for no fsync, and the deferred write becomes durable only with the next write that does ask
//! for one; a crash before that loses it, and the node restarts with an older commit index.

use std::collections::{BTreeMap, VecDeque};

use crate::node::driver::{Storage, StorageError};
use crate::raft::{Entry, GroupId, HardState, RestartState, Snapshot};

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
    /// Drops the stored entries from `from` on.
    pub fn truncate(&mut self, from: u64) {
        // Entries are held in index order.
        let keep = self.entries.partition_point(|e| e.index < from);
        self.entries.truncate(keep);
    }

    /// Appends entries, replacing any stored suffix from the first one.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else { return };
        self.truncate(first.index);
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

    /// Last index held (entries, else the snapshot's).
    pub fn last_index(&self) -> u64 {
        self.entries
            .last()
            .map_or(self.snapshot.meta.index, |e| e.index)
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

/// One group's part of a pending write, applied in this order at the fsync.
#[derive(Debug, Clone, Default)]
pub struct GroupWrite {
    /// Snapshot to store first.
    pub snapshot: Option<Snapshot>,
    /// Entries from this index on are dropped.
    pub truncate: Option<u64>,
    /// Entries to append.
    pub entries: Vec<Entry>,
    /// Hard state.
    pub hard_state: Option<HardState>,
}

/// A written, not yet durable, set of writes of one node.
#[derive(Debug, Clone, Default)]
pub struct PendingWrite {
    /// Per group.
    pub groups: BTreeMap<GroupId, GroupWrite>,
}

/// Storage of one node.
#[derive(Debug, Clone, Default)]
pub struct NodeStorage {
    /// Durable, per group.
    pub durable: BTreeMap<GroupId, GroupStore>,
    /// Not yet durable, oldest first, with their tickets.
    pub pending: VecDeque<(u64, PendingWrite)>,
    /// Written since the last ticket.
    building: PendingWrite,
    /// Last index written per group (durable or not).
    written_last: BTreeMap<GroupId, u64>,
    /// Last ticket issued.
    issued: u64,
    /// Last ticket durable.
    durable_ticket: u64,
    /// Whether `building` holds a write that needs its own ticket (anything but a deferred
    /// hard state).
    building_required: bool,
    /// Hard states written deferred.
    pub deferred: u64,
    /// Crashes that lost a deferred hard state never made durable.
    pub deferred_lost: u64,
    /// TEST ONLY: defer every hard state, a new term or vote too (a planted fault: a vote can
    /// then be sent before it is durable and be cast again after a crash).
    pub defer_every_hard_state: bool,
}

impl NodeStorage {
    /// Empty storage; `defer_every_hard_state` plants the fault of that name.
    pub fn new(defer_every_hard_state: bool) -> NodeStorage {
        NodeStorage {
            defer_every_hard_state,
            ..NodeStorage::default()
        }
    }

    /// Makes the oldest pending write durable; returns false when nothing was pending.
    pub fn fsync_one(&mut self) -> bool {
        let Some((t, w)) = self.pending.pop_front() else {
            return false;
        };
        for (g, gw) in &w.groups {
            let store = self.durable.entry(*g).or_default();
            if let Some(s) = &gw.snapshot {
                store.install(s);
            }
            if let Some(from) = gw.truncate {
                store.truncate(from);
            }
            store.append(&gw.entries);
            if let Some(hs) = gw.hard_state {
                store.hard_state = hs;
            }
        }
        self.durable_ticket = t;
        true
    }

    /// The last ticket that is durable.
    pub fn durable_ticket(&self) -> u64 {
        self.durable_ticket
    }

    /// A crash: every pending write is lost.
    pub fn crash(&mut self) -> usize {
        let n = self.pending.len();
        if !self.building.groups.is_empty() {
            self.deferred_lost += 1;
        }
        self.pending.clear();
        self.building = PendingWrite::default();
        self.building_required = false;
        self.durable_ticket = self.issued;
        self.written_last = self
            .durable
            .iter()
            .map(|(g, s)| (*g, s.last_index()))
            .collect();
        n
    }

    /// The building write of group `g`, noting that it needs a ticket of its own.
    fn group(&mut self, g: GroupId) -> &mut GroupWrite {
        self.building_required = true;
        self.building.groups.entry(g).or_default()
    }

    /// The last hard state written for `g`, durable or not.
    fn last_hard_state(&self, g: GroupId) -> HardState {
        self.building
            .groups
            .get(&g)
            .and_then(|w| w.hard_state)
            .or_else(|| {
                self.pending
                    .iter()
                    .rev()
                    .find_map(|(_, w)| w.groups.get(&g).and_then(|w| w.hard_state))
            })
            .unwrap_or_else(|| {
                self.durable
                    .get(&g)
                    .map(|s| s.hard_state)
                    .unwrap_or_default()
            })
    }

    /// Seals what was written since the last ticket as one pending write.
    fn seal(&mut self) {
        if self.building.groups.is_empty() {
            return;
        }
        self.issued += 1;
        self.building_required = false;
        let w = std::mem::take(&mut self.building);
        self.pending.push_back((self.issued, w));
    }
}

impl Storage for NodeStorage {
    fn last_index(&self, g: GroupId) -> u64 {
        self.written_last
            .get(&g)
            .copied()
            .unwrap_or_else(|| self.durable.get(&g).map_or(0, GroupStore::last_index))
    }

    fn truncate(&mut self, g: GroupId, from: u64) -> Result<(), StorageError> {
        let w = self.group(g);
        w.entries.retain(|e| e.index < from);
        if w.entries.is_empty() {
            w.truncate = Some(w.truncate.map_or(from, |t| t.min(from)));
        }
        self.written_last.insert(g, from.saturating_sub(1));
        Ok(())
    }

    fn append(&mut self, g: GroupId, e: &Entry) -> Result<(), StorageError> {
        let w = self.group(g);
        w.entries.retain(|x| x.index < e.index);
        w.entries.push(e.clone());
        self.written_last.insert(g, e.index);
        Ok(())
    }

    fn set_hard_state(&mut self, g: GroupId, hs: &HardState) -> Result<(), StorageError> {
        let last = self.last_hard_state(g);
        if (last.term, last.vote) == (hs.term, hs.vote) || self.defer_every_hard_state {
            // Deferred: written in order, no ticket of its own.
            self.deferred += 1;
            self.building.groups.entry(g).or_default().hard_state = Some(*hs);
        } else {
            self.group(g).hard_state = Some(*hs);
        }
        Ok(())
    }

    fn install_snapshot(&mut self, g: GroupId, snap: &Snapshot) -> Result<(), StorageError> {
        let w = self.group(g);
        w.snapshot = Some(snap.clone());
        w.truncate = None;
        w.entries.clear();
        self.written_last.insert(g, snap.meta.index);
        Ok(())
    }

    fn snapshot_saved(&mut self, g: GroupId, snap: &Snapshot) -> Result<(), StorageError> {
        // Its own write, after everything written before it.
        self.seal();
        self.group(g).snapshot = Some(snap.clone());
        self.seal();
        Ok(())
    }

    fn ticket(&mut self) -> u64 {
        if self.building_required {
            self.seal();
        }
        self.issued
    }
}
