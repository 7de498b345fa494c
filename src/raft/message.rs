//! The plain data the core consumes and produces: log entries, hard state, snapshot metadata and
//! the [`Message`] enum exchanged between replicas of one group. These are NOT wire types: the
//! node converts them to and from the `ringraft-net` frames. Every message carries the sender's
//! term; a message from a lower term is answered (so a stale leader learns the new term) or
//! dropped, a higher term makes the receiver step down first (except PreVote traffic).

use std::sync::Arc;

use super::membership::Membership;

/// A replica (node) id. `0` means "none".
pub type NodeId = u64;
/// The "no node" id.
pub const NO_NODE: NodeId = 0;

/// What an entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A state-machine command (opaque bytes).
    Normal,
    /// The empty entry each new leader appends at the start of its term.
    Noop,
    /// A membership change: `data` is the whole new configuration, `Membership::encode`.
    Config,
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the log, from 1.
    pub index: u64,
    /// Term of the leader that created it.
    pub term: u64,
    /// Kind of payload.
    pub kind: EntryKind,
    /// Payload bytes (shared, cheap to clone into many messages).
    pub data: Arc<[u8]>,
}

impl Entry {
    /// Payload size used for message byte limits.
    pub fn size_bytes(&self) -> usize {
        self.data.len() + 24
    }
}

/// State that must be durable before the replica answers votes: current term, vote, commit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Candidate voted for in `term` (`NO_NODE` if none).
    pub vote: NodeId,
    /// Highest index known committed (persisting it is an optimisation, not needed for safety).
    pub commit: u64,
}

/// Snapshot metadata: the last entry the snapshot covers and the configuration at that point.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    /// Last included index.
    pub index: u64,
    /// Term of the last included entry.
    pub term: u64,
    /// Membership in effect at `index`.
    pub membership: Membership,
}

/// A state-machine snapshot: metadata plus the bytes the state machine produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Metadata.
    pub meta: SnapshotMeta,
    /// State-machine bytes (opaque to the core).
    pub data: Arc<[u8]>,
}

/// The conflict hint of a rejected AppendEntries: the follower's largest index `index`
/// (at most the leader's `prev_index`) whose term `term` is not greater than the leader's
/// `prev_term`. The leader skips back to the matching point in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RejectHint {
    /// Hint index.
    pub index: u64,
    /// Follower's term at `index` (0 if unknown).
    pub term: u64,
}

/// A message between two replicas of the same group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Sender.
    pub from: NodeId,
    /// Receiver.
    pub to: NodeId,
    /// Sender's term (for PreVote: the term the pre-candidate would campaign in).
    pub term: u64,
    /// What it says.
    pub body: MessageBody,
}

/// The message kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageBody {
    /// Would you vote for me at `term`? (does not change anyone's term)
    PreVote {
        /// Candidate's last log index.
        last_index: u64,
        /// Candidate's last log term.
        last_term: u64,
    },
    /// Answer to PreVote.
    PreVoteResponse {
        /// True if not granted.
        reject: bool,
    },
    /// RequestVote.
    Vote {
        /// Candidate's last log index.
        last_index: u64,
        /// Candidate's last log term.
        last_term: u64,
        /// Sent because of a leadership transfer: bypasses the "recently heard from a leader" rule.
        transfer: bool,
    },
    /// Answer to Vote (sent only after the vote is durable).
    VoteResponse {
        /// True if not granted.
        reject: bool,
    },
    /// AppendEntries.
    Append {
        /// Index of the entry before `entries`.
        prev_index: u64,
        /// Its term.
        prev_term: u64,
        /// Entries to append (may be empty: a probe or a commit update).
        entries: Vec<Entry>,
        /// Leader's commit index.
        commit: u64,
    },
    /// Answer to Append and InstallSnapshot.
    AppendResponse {
        /// On success the highest index known to match (and be durable in DiskFirst);
        /// on reject the rejected `prev_index`.
        index: u64,
        /// Set on reject.
        reject: Option<RejectHint>,
    },
    /// Leader heartbeat: carries a commit index safe for this follower and a round number
    /// used by ReadIndex and the lease.
    Heartbeat {
        /// min(follower's match, leader's commit).
        commit: u64,
        /// Heartbeat round, echoed back.
        round: u64,
    },
    /// Answer to Heartbeat.
    HeartbeatResponse {
        /// Echoed round.
        round: u64,
    },
    /// InstallSnapshot for a follower behind the leader's compacted log.
    InstallSnapshot {
        /// The snapshot.
        snapshot: Snapshot,
    },
    /// Leadership transfer: campaign now, skipping PreVote.
    TimeoutNow,
}

impl MessageBody {
    /// A short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            MessageBody::PreVote { .. } => "PreVote",
            MessageBody::PreVoteResponse { .. } => "PreVoteResp",
            MessageBody::Vote { .. } => "Vote",
            MessageBody::VoteResponse { .. } => "VoteResp",
            MessageBody::Append { .. } => "App",
            MessageBody::AppendResponse { .. } => "AppResp",
            MessageBody::Heartbeat { .. } => "Heartbeat",
            MessageBody::HeartbeatResponse { .. } => "HeartbeatResp",
            MessageBody::InstallSnapshot { .. } => "Snapshot",
            MessageBody::TimeoutNow => "TimeoutNow",
        }
    }
}
