//! The batch of actions the core hands to its driver ([`Ready`]) and the read results.
//!
//! The driver must process a `Ready` in this order:
//! 1. send `messages` (they do not depend on local durability: a leader's appends go out before
//!    its own fsync);
//! 2. persist `snapshot` (if any: it replaces every stored entry, unless the stored log holds
//!    the snapshot's last entry `(index, term)`, in which case only the entries up to it go),
//!    then `entries` (truncating any stored entry at or after `entries[0].index`), then
//!    `hard_state`, in one durable write;
//! 3. send `messages_after_persist` (vote requests and answers, snapshot acknowledgements, and in
//!    DiskFirst the followers' acknowledgements), then call `Raft::on_persisted(persisted)` if
//!    set;
//! 4. apply `snapshot` and then `committed_entries` to the state machine (may overlap with 2–3);
//! 5. answer `read_states` once the state machine applied their index; fail `reads_dropped`;
//! 6. if `snapshot_request` is set, build a snapshot at or after that index when convenient and
//!    hand it back with `Raft::compact`.

use super::message::{Entry, HardState, Message, NodeId, Snapshot};

/// A linearizable read that may be served once the state machine applied `index`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    /// Driver's request id.
    pub ctx: u64,
    /// Apply up to here, then read.
    pub index: u64,
}

/// The role of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// PreVote in progress.
    PreCandidate,
    /// Vote in progress.
    Candidate,
    /// Leads its term.
    Leader,
}

/// Volatile state, reported when it changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftState {
    /// Known leader.
    pub leader: NodeId,
    /// This replica's role.
    pub role: Role,
}

/// Actions for the driver. See the module documentation for the processing order.
#[derive(Debug, Default)]
pub struct Ready {
    /// Role or leader changed.
    pub soft_state: Option<SoftState>,
    /// Hard state to persist, if it changed.
    pub hard_state: Option<HardState>,
    /// Snapshot to persist and restore into the state machine.
    pub snapshot: Option<Snapshot>,
    /// Entries to persist.
    pub entries: Vec<Entry>,
    /// Send now.
    pub messages: Vec<Message>,
    /// Send after the persistence above is durable.
    pub messages_after_persist: Vec<Message>,
    /// Set when this `Ready` asked for persistence (hard state, snapshot or entries): the
    /// last `(index, term)` of the log handed out so far. Once durable, report it with
    /// `Raft::on_persisted` — exactly once per such `Ready`, in order (the core counts the
    /// calls: a candidate's own vote counts only after the `Ready` carrying it is durable, and
    /// it cannot become leader before, whatever the other voters answered).
    pub persisted: Option<(u64, u64)>,
    /// Apply these, in order.
    pub committed_entries: Vec<Entry>,
    /// Reads ready once applied up to their index.
    pub read_states: Vec<ReadState>,
    /// Reads that will never complete here (leadership lost); the client may retry elsewhere.
    pub reads_dropped: Vec<u64>,
    /// Please snapshot the state machine at an applied index >= this.
    pub snapshot_request: Option<u64>,
}

impl Ready {
    /// True if there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.soft_state.is_none()
            && self.hard_state.is_none()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.messages_after_persist.is_empty()
            && self.persisted.is_none()
            && self.committed_entries.is_empty()
            && self.read_states.is_empty()
            && self.reads_dropped.is_empty()
            && self.snapshot_request.is_none()
    }
}
