//! Snapshots: the core asks for one (`Ready::snapshot_request`) once `snapshot_threshold_entries`
//! entries were applied past the last one; the driver builds the state-machine bytes and hands
//! them back with [`Raft::compact`], which keeps them (to send) and drops the log behind
//! `index - log_retain_entries`. A follower whose next entry is no longer in the leader's log gets
//! an InstallSnapshot; it replaces its log and state machine and answers after persisting it.

use super::core::Raft;
use super::message::{MessageBody, NodeId, Snapshot, SnapshotMeta};

/// Why a snapshot hand-back was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The index has not been handed out for applying yet.
    #[error("snapshot index {index} is past the applied index {applied}")]
    NotApplied {
        /// Requested.
        index: u64,
        /// Applied.
        applied: u64,
    },
    /// Not newer than the snapshot held.
    #[error("snapshot index {index} is not newer than {current}")]
    Stale {
        /// Requested.
        index: u64,
        /// Held.
        current: u64,
    },
    /// The entry at the index is no longer in memory.
    #[error("entry {0} is already compacted")]
    Compacted(u64),
}

impl Raft {
    /// The driver took a snapshot of the state machine at applied `index`: keep it for lagging
    /// followers and compact the log behind it.
    pub fn compact(
        &mut self,
        index: u64,
        data: impl Into<std::sync::Arc<[u8]>>,
    ) -> Result<(), SnapshotError> {
        self.compact_taking(index, data).map(drop)
    }

    /// [`Raft::compact`], handing the log entries it removes to the caller to free where it
    /// likes (see [`super::log::RaftLog::compact_to_taking`]).
    pub fn compact_taking(
        &mut self,
        index: u64,
        data: impl Into<std::sync::Arc<[u8]>>,
    ) -> Result<std::collections::VecDeque<super::message::Entry>, SnapshotError> {
        let meta = match self.snapshot_meta_at(index) {
            Ok(m) => m,
            Err(e) => {
                if matches!(e, SnapshotError::Stale { .. }) {
                    self.snapshot_requested = None;
                }
                return Err(e);
            }
        };
        self.snapshot = Some(Snapshot {
            meta,
            data: data.into(),
        });
        self.snapshot_requested = None;
        Ok(self
            .log
            .compact_to_taking(index.saturating_sub(self.cfg.log_retain_entries)))
    }

    /// The meta a snapshot of the state machine at applied `index` carries (what
    /// [`Raft::compact`] would record), refused as `compact` would refuse it; changes nothing.
    /// For a driver that writes the snapshot's file before handing it back.
    pub fn snapshot_meta_at(&self, index: u64) -> Result<SnapshotMeta, SnapshotError> {
        let applied = self.log.applied();
        if index > applied {
            return Err(SnapshotError::NotApplied { index, applied });
        }
        let current = self.snapshot.as_ref().map_or(0, |s| s.meta.index);
        if index <= current {
            return Err(SnapshotError::Stale { index, current });
        }
        let term = self
            .log
            .term(index)
            .ok_or(SnapshotError::Compacted(index))?;
        Ok(SnapshotMeta {
            index,
            term,
            membership: self.log.membership_at(index).clone(),
        })
    }

    /// The requested snapshot could not be taken (its file failed): the next applied entry
    /// asks for one again instead of never.
    pub fn snapshot_abandoned(&mut self) {
        self.snapshot_requested = None;
    }

    /// Applied entries past the last snapshot that trigger the next snapshot request (at least
    /// one). The node raises it with the state's size, so snapshots of a large state are taken
    /// less often (see `raft.snapshot_state_percent`).
    pub fn set_snapshot_threshold_entries(&mut self, entries: u64) {
        self.cfg.snapshot_threshold_entries = entries.max(1);
    }

    /// The current snapshot trigger, in applied entries past the last snapshot.
    pub fn snapshot_threshold_entries(&self) -> u64 {
        self.cfg.snapshot_threshold_entries
    }

    /// Drops the bytes of the held snapshot from memory when it is the one at a non-zero
    /// `index`, keeping its meta; returns them, for the caller to free where it likes. For a
    /// driver that keeps the bytes in a durable file: an InstallSnapshot of the held snapshot
    /// then carries empty bytes at a non-zero index, which that driver must fill from the file
    /// before sending (an empty snapshot at a non-zero index is never sent as it is).
    pub fn release_snapshot_data(&mut self, index: u64) -> Option<std::sync::Arc<[u8]>> {
        let held = self
            .snapshot
            .as_mut()
            .filter(|s| index > 0 && s.meta.index == index && !s.data.is_empty())?;
        Some(std::mem::take(&mut held.data))
    }

    /// Leader: sends the held snapshot to `to` (its next entry is compacted).
    pub(super) fn send_snapshot(&mut self, to: NodeId) {
        let usable = self
            .snapshot
            .as_ref()
            .filter(|s| s.meta.index >= self.log.offset())
            .cloned();
        let Some(pr) = self.prs.get_mut(&to) else {
            return;
        };
        let Some(snap) = usable else {
            // Nothing to send (cannot happen while compaction keeps a snapshot): stay paused
            // until the next heartbeat answer instead of retrying in a loop.
            pr.probe_sent = true;
            return;
        };
        pr.become_snapshot(snap.meta.index);
        self.send(to, MessageBody::InstallSnapshot { snapshot: snap });
    }

    /// Follower: InstallSnapshot from the leader.
    pub(super) fn handle_snapshot(&mut self, from: NodeId, snap: Snapshot) {
        let meta = &snap.meta;
        if meta.index <= self.log.committed() {
            let index = self.log.committed();
            self.send_ack(
                from,
                MessageBody::AppendResponse {
                    index,
                    reject: None,
                },
            );
            return;
        }
        if self.log.term(meta.index) == Some(meta.term) {
            // We hold the snapshot's last entry: everything up to it matches, just commit.
            self.log.commit_to(meta.index);
            self.send_ack(
                from,
                MessageBody::AppendResponse {
                    index: meta.index,
                    reject: None,
                },
            );
            return;
        }
        self.log.restore(meta);
        let index = meta.index;
        self.snapshot = Some(snap.clone());
        self.pending_snapshot = Some(snap);
        self.snapshot_requested = None;
        // Always after persist: the snapshot replaces the state machine.
        self.msgs_after_persist.push(super::message::Message {
            from: self.id,
            to: from,
            term: self.term,
            body: MessageBody::AppendResponse {
                index,
                reject: None,
            },
        });
    }
}
