//! Raft messages between nodes: replication, elections, merged heartbeats, snapshots.
//!
//! These are the wire forms only; the Raft core (`ringraft::raft`) has its own pure types and
//! the node converts. Every message names its Raft `group` (one group per shard) except the
//! merged heartbeat, which carries many groups for one destination node. Received messages are
//! read in place as `Archived*` values: in particular [`ArchivedAppendEntries::entry_payloads`]
//! hands each entry's payload to the WAL as a `&[u8]` borrowed straight from the receive
//! buffer, with no copy and no deserialization.

use rkyv::{Archive, Deserialize, Serialize};

/// Node identifier.
pub type NodeId = u64;
/// Raft group (shard) identifier.
pub type GroupId = u64;

/// What a log entry carries.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum EntryKind {
    /// A state-machine command.
    Normal,
    /// A membership change.
    ConfigChange,
    /// The no-op a new leader appends.
    Noop,
}

/// One log entry.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct Entry {
    /// Term the entry was created in.
    pub term: u64,
    /// Log index.
    pub index: u64,
    /// Entry kind.
    pub kind: EntryKind,
    /// Opaque command bytes (the node's encoding), written to the WAL as-is.
    pub payload: Vec<u8>,
}

/// Leader → follower: replicate `entries` after (`prev_index`, `prev_term`).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct AppendEntries {
    /// Raft group.
    pub group: GroupId,
    /// Leader's term.
    pub term: u64,
    /// Leader's node id.
    pub leader: NodeId,
    /// Index of the entry just before `entries`.
    pub prev_index: u64,
    /// Term of that entry.
    pub prev_term: u64,
    /// Leader's commit index.
    pub commit: u64,
    /// Entries to append, in index order.
    pub entries: Vec<Entry>,
}

impl ArchivedAppendEntries {
    /// Number of entries.
    pub fn entry_count(&self) -> usize {
        self.entries.len()
    }

    /// The zero-copy path to the WAL: `(term, index, kind, payload)` of each entry, the payload
    /// borrowed in place from the validated receive buffer.
    pub fn entry_payloads(&self) -> impl Iterator<Item = (u64, u64, EntryKind, &[u8])> + '_ {
        self.entries.iter().map(|e| {
            let kind = match e.kind {
                ArchivedEntryKind::Normal => EntryKind::Normal,
                ArchivedEntryKind::ConfigChange => EntryKind::ConfigChange,
                ArchivedEntryKind::Noop => EntryKind::Noop,
            };
            (
                e.term.to_native(),
                e.index.to_native(),
                kind,
                e.payload.as_slice(),
            )
        })
    }
}

/// Where a follower's log diverges, so the leader can skip back a whole term at once.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct ConflictHint {
    /// First index of `conflict_term` in the follower's log (or its last index + 1 if short).
    pub conflict_index: u64,
    /// Term of the follower's entry at `prev_index` (0 if the follower's log is too short).
    pub conflict_term: u64,
}

/// Follower → leader: result of an AppendEntries.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct AppendEntriesResponse {
    /// Raft group.
    pub group: GroupId,
    /// Follower's term.
    pub term: u64,
    /// Follower's node id.
    pub from: NodeId,
    /// Whether the entries were appended.
    pub success: bool,
    /// Highest index known to match the leader's log (valid when `success`).
    pub match_index: u64,
    /// On rejection, where the logs diverge.
    pub conflict: Option<ConflictHint>,
}

/// Candidate → voter.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct RequestVote {
    /// Raft group.
    pub group: GroupId,
    /// Candidate's term.
    pub term: u64,
    /// Candidate's node id.
    pub candidate: NodeId,
    /// Index of the candidate's last entry.
    pub last_log_index: u64,
    /// Term of the candidate's last entry.
    pub last_log_term: u64,
    /// Sent because the leader handed leadership over: the voter grants it even though it
    /// heard from a leader recently.
    pub transfer: bool,
}

/// Voter → candidate.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct RequestVoteResponse {
    /// Raft group.
    pub group: GroupId,
    /// Voter's term.
    pub term: u64,
    /// Voter's node id.
    pub from: NodeId,
    /// Whether the vote was granted.
    pub granted: bool,
}

/// Pre-candidate → voter: "would you vote for me at `term`?" (does not bump terms).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct PreVote {
    /// Raft group.
    pub group: GroupId,
    /// The term the pre-candidate would campaign in.
    pub term: u64,
    /// Pre-candidate's node id.
    pub candidate: NodeId,
    /// Index of its last entry.
    pub last_log_index: u64,
    /// Term of its last entry.
    pub last_log_term: u64,
}

/// Voter → pre-candidate.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct PreVoteResponse {
    /// Raft group.
    pub group: GroupId,
    /// Voter's term.
    pub term: u64,
    /// Voter's node id.
    pub from: NodeId,
    /// Whether it would vote.
    pub granted: bool,
}

/// One group's heartbeat inside a merged [`Heartbeat`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct GroupHeartbeat {
    /// Raft group.
    pub group: GroupId,
    /// Leader's term in that group.
    pub term: u64,
    /// Commit index the follower may advance to (capped by its matched log).
    pub commit: u64,
}

/// Heartbeats for every group this node leads and the destination follows, in one message.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct Heartbeat {
    /// Sending (leader) node.
    pub from: NodeId,
    /// One record per group.
    pub groups: Vec<GroupHeartbeat>,
}

/// One group's answer inside a [`HeartbeatResponse`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct GroupHeartbeatAck {
    /// Raft group.
    pub group: GroupId,
    /// Follower's term in that group (higher than the leader's = the leader steps down).
    pub term: u64,
    /// Follower's last log index (lets the leader spot lagging followers).
    pub last_index: u64,
}

/// Follower node → leader node: answers to a merged heartbeat.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct HeartbeatResponse {
    /// Answering (follower) node.
    pub from: NodeId,
    /// One record per group.
    pub groups: Vec<GroupHeartbeatAck>,
}

/// One chunk of a snapshot, sent in order by offset.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct InstallSnapshot {
    /// Raft group.
    pub group: GroupId,
    /// Leader's term.
    pub term: u64,
    /// Leader's node id.
    pub leader: NodeId,
    /// Last log index the snapshot covers.
    pub last_included_index: u64,
    /// Term of that entry.
    pub last_included_term: u64,
    /// Byte offset of `data` in the snapshot.
    pub offset: u64,
    /// Chunk bytes.
    pub data: Vec<u8>,
    /// Whether this is the last chunk.
    pub done: bool,
}

/// Follower → leader: a snapshot chunk was received (or rejected).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct InstallSnapshotResponse {
    /// Raft group.
    pub group: GroupId,
    /// Follower's term.
    pub term: u64,
    /// Follower's node id.
    pub from: NodeId,
    /// Offset the follower expects next (resume point).
    pub next_offset: u64,
    /// Whether the chunk was accepted.
    pub success: bool,
}

/// Leader → chosen successor: start an election now (leadership transfer).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct TimeoutNow {
    /// Raft group.
    pub group: GroupId,
    /// Leader's term.
    pub term: u64,
    /// Leader's node id.
    pub leader: NodeId,
}

/// One entry of an [`AppendEntriesRef`]: an [`Entry`] whose payload is borrowed, so the leader
/// encodes its log's shared bytes straight into the frame instead of copying each payload
/// into an owned `Vec` first. Archives exactly as [`Entry`] does (same archived type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// Term the entry was created in.
    pub term: u64,
    /// Log index.
    pub index: u64,
    /// Entry kind.
    pub kind: EntryKind,
    /// Command bytes, borrowed.
    pub payload: &'a [u8],
}

impl Archive for EntryRef<'_> {
    type Archived = ArchivedEntry;
    type Resolver = (EntryKindResolver, rkyv::vec::VecResolver);

    fn resolve(&self, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        rkyv::munge::munge!(let ArchivedEntry { term, index, kind, payload } = out);
        self.term.resolve((), term);
        self.index.resolve((), index);
        self.kind.resolve(resolver.0, kind);
        rkyv::vec::ArchivedVec::<u8>::resolve_from_len(self.payload.len(), resolver.1, payload);
    }
}

impl<S> Serialize<S> for EntryRef<'_>
where
    S: rkyv::rancor::Fallible + rkyv::ser::Allocator + rkyv::ser::Writer + ?Sized,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        Ok((
            self.kind.serialize(serializer)?,
            rkyv::vec::ArchivedVec::<u8>::serialize_from_slice(self.payload, serializer)?,
        ))
    }
}

/// An [`AppendEntries`] to encode from borrowed entries (`entries` yields them in index
/// order; cloned once to serialize, once to resolve). Archives exactly as [`AppendEntries`]
/// does, so a follower reads it as one: the encoded bytes are identical.
#[derive(Debug, Clone)]
pub struct AppendEntriesRef<I> {
    /// Raft group.
    pub group: GroupId,
    /// Leader's term.
    pub term: u64,
    /// Leader's node id.
    pub leader: NodeId,
    /// Index of the entry just before `entries`.
    pub prev_index: u64,
    /// Term of that entry.
    pub prev_term: u64,
    /// Leader's commit index.
    pub commit: u64,
    /// The entries, borrowed.
    pub entries: I,
}

impl<'a, I> Archive for AppendEntriesRef<I>
where
    I: ExactSizeIterator<Item = EntryRef<'a>> + Clone,
{
    type Archived = ArchivedAppendEntries;
    type Resolver = rkyv::vec::VecResolver;

    fn resolve(&self, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        rkyv::munge::munge!(let ArchivedAppendEntries {
            group, term, leader, prev_index, prev_term, commit, entries
        } = out);
        self.group.resolve((), group);
        self.term.resolve((), term);
        self.leader.resolve((), leader);
        self.prev_index.resolve((), prev_index);
        self.prev_term.resolve((), prev_term);
        self.commit.resolve((), commit);
        rkyv::vec::ArchivedVec::<ArchivedEntry>::resolve_from_len(
            self.entries.len(),
            resolver,
            entries,
        );
    }
}

impl<'a, I, S> Serialize<S> for AppendEntriesRef<I>
where
    I: ExactSizeIterator<Item = EntryRef<'a>> + Clone,
    S: rkyv::rancor::Fallible + rkyv::ser::Allocator + rkyv::ser::Writer + ?Sized,
{
    fn serialize(&self, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        rkyv::vec::ArchivedVec::<ArchivedEntry>::serialize_from_iter::<EntryRef<'a>, _, _>(
            self.entries.clone(),
            serializer,
        )
    }
}

impl<'a, I> super::Encode for AppendEntriesRef<I>
where
    I: ExactSizeIterator<Item = EntryRef<'a>> + Clone,
{
    const KIND: super::Kind = super::Kind::AppendEntries;
    fn encode_into(&self, out: &mut rkyv::util::AlignedVec<16>) -> Result<(), rkyv::rancor::Error> {
        rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(self, out).map(|_| ())
    }
}
