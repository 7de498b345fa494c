//! Translation between the Raft core's messages (`crate::raft`) and the wire messages of
//! `ringraft-net`, in both directions, plus the bookkeeping that makes merged heartbeats carry
//! the core's per-group heartbeat *round* (which ReadIndex and the lease depend on).
//!
//! Heartbeat rounds: the wire's merged `Heartbeat` has no round field, but every frame has a
//! request id, and answers are matched to requests by it. So a core's merged heartbeat frame to a
//! peer gets a fresh request id `R` ([`HeartbeatRounds::register`] remembers `R -> [(group,
//! round)]`); the receiving node hands `R` to its Raft core as the round, the core echoes it in
//! its heartbeat answers, and the answers go back in a `HeartbeatResponse` frame whose request id
//! is `R`. The sender maps `R` back to each group's real round ([`HeartbeatRounds::resolve`]).
//! An unknown or evicted `R` resolves to round 0, which confirms nothing (rounds start at 1): a
//! lost mapping can only delay a read, never confirm one wrongly. At most
//! [`MAX_HEARTBEAT_BATCHES_REMEMBERED`] batches are remembered per peer.
//!
//! Other mappings: core `AppendResponse { index, reject }` travels as `AppendEntriesResponse`
//! with `match_index = index` (on a reject: the rejected `prev_index`, as the core defines it)
//! and `conflict = reject`'s hint. A core `InstallSnapshot` travels as one or more
//! `InstallSnapshot` chunks whose bytes are `membership_len u32 | membership | state-machine
//! snapshot`; the receiver reassembles them ([`SnapshotAssembly`]). A vote sent for a
//! leadership transfer carries RequestVote's `transfer` flag.
//! Owned by the node.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use ringraft_net::message as wire;
use ringraft_net::message::MessageRef;
use ringraft_net::{NetError, SendQueue};

use crate::raft::{
    Entry, EntryKind, GroupId, Membership, Message, MessageBody, NodeId, RejectHint, Snapshot,
    SnapshotMeta,
};

/// Heartbeat batches remembered per peer for round resolution.
pub const MAX_HEARTBEAT_BATCHES_REMEMBERED: usize = 256;
/// Snapshot reassemblies in progress per core (at most one per shard).
pub const MAX_SNAPSHOT_ASSEMBLIES: usize = 64;

/// Frame flags for a request (`false`) or a response (`true`).
pub fn frame_flags(response: bool) -> u16 {
    if response {
        ringraft_net::frame::FLAG_RESPONSE
    } else {
        0
    }
}

/// Queues any owned wire message on `q` as a request or as the response to `request_id`.
pub fn push_message(
    q: &mut SendQueue,
    request_id: u64,
    response: bool,
    m: &wire::Message,
) -> Result<usize, NetError> {
    q.push_message(frame_flags(response), request_id, m)
}

/// One registered heartbeat frame: its request id and the (group, round) pairs it carried.
type RoundBatch = (u64, Vec<(GroupId, u64)>);

/// The round bookkeeping of one core's merged heartbeats, per peer.
#[derive(Debug, Default)]
pub struct HeartbeatRounds {
    next_id: u64,
    id_base: u64,
    batches: HashMap<NodeId, VecDeque<RoundBatch>>,
}

impl HeartbeatRounds {
    /// Request ids of core `core` are `core << 48 | counter` (unique per node).
    pub fn new(core: usize) -> Self {
        Self {
            next_id: 1,
            id_base: (core as u64) << 48,
            batches: HashMap::new(),
        }
    }

    /// Remembers that the heartbeats of `groups` (group, real round) go to `peer` in one frame;
    /// returns the frame's request id.
    pub fn register(&mut self, peer: NodeId, groups: Vec<(GroupId, u64)>) -> u64 {
        let id = self.id_base | (self.next_id & ((1 << 48) - 1));
        self.next_id += 1;
        let q = self.batches.entry(peer).or_default();
        if q.len() == MAX_HEARTBEAT_BATCHES_REMEMBERED {
            q.pop_front();
        }
        q.push_back((id, groups));
        id
    }

    /// The real round of `group` in batch `id` sent to `peer`, or 0 if unknown.
    pub fn resolve(&self, peer: NodeId, id: u64, group: GroupId) -> u64 {
        self.batches
            .get(&peer)
            .and_then(|q| q.iter().rev().find(|(i, _)| *i == id))
            .and_then(|(_, gs)| gs.iter().find(|(g, _)| *g == group))
            .map_or(0, |(_, r)| *r)
    }
}

fn entry_to_wire(e: &Entry) -> wire::Entry {
    wire::Entry {
        term: e.term,
        index: e.index,
        kind: match e.kind {
            EntryKind::Normal => wire::EntryKind::Normal,
            EntryKind::Noop => wire::EntryKind::Noop,
            EntryKind::Config => wire::EntryKind::ConfigChange,
        },
        payload: e.data.to_vec(),
    }
}

/// Encodes a snapshot's wire bytes (membership then state-machine data).
pub fn snapshot_wire_bytes(s: &Snapshot) -> Vec<u8> {
    let m = s.meta.membership.encode();
    let mut out = Vec::with_capacity(4 + m.len() + s.data.len());
    out.extend_from_slice(&(m.len() as u32).to_le_bytes());
    out.extend_from_slice(&m);
    out.extend_from_slice(&s.data);
    out
}

/// Converts one core message of `group` to wire frames (heartbeats are handled separately, see
/// [`heartbeats_to_wire`]). `chunk_bytes` bounds snapshot chunks.
pub fn message_to_wire(group: GroupId, m: &Message, chunk_bytes: usize) -> Vec<wire::Message> {
    let (from, term) = (m.from, m.term);
    match &m.body {
        MessageBody::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => vec![wire::AppendEntries {
            group,
            term,
            leader: from,
            prev_index: *prev_index,
            prev_term: *prev_term,
            commit: *commit,
            entries: entries.iter().map(entry_to_wire).collect(),
        }
        .into()],
        MessageBody::AppendResponse { index, reject } => vec![wire::AppendEntriesResponse {
            group,
            term,
            from,
            success: reject.is_none(),
            match_index: *index,
            conflict: reject.map(|h| wire::ConflictHint {
                conflict_index: h.index,
                conflict_term: h.term,
            }),
        }
        .into()],
        MessageBody::Vote {
            last_index,
            last_term,
            transfer,
        } => vec![wire::RequestVote {
            group,
            term,
            candidate: from,
            last_log_index: *last_index,
            last_log_term: *last_term,
            transfer: *transfer,
        }
        .into()],
        MessageBody::VoteResponse { reject } => vec![wire::RequestVoteResponse {
            group,
            term,
            from,
            granted: !reject,
        }
        .into()],
        MessageBody::PreVote {
            last_index,
            last_term,
        } => vec![wire::PreVote {
            group,
            term,
            candidate: from,
            last_log_index: *last_index,
            last_log_term: *last_term,
        }
        .into()],
        MessageBody::PreVoteResponse { reject } => vec![wire::PreVoteResponse {
            group,
            term,
            from,
            granted: !reject,
        }
        .into()],
        MessageBody::TimeoutNow => vec![wire::TimeoutNow {
            group,
            term,
            leader: from,
        }
        .into()],
        MessageBody::InstallSnapshot { snapshot } => {
            let bytes = snapshot_wire_bytes(snapshot);
            let chunk = chunk_bytes.max(1);
            let n = bytes.len().div_ceil(chunk).max(1);
            (0..n)
                .map(|i| {
                    let lo = i * chunk;
                    let hi = (lo + chunk).min(bytes.len());
                    wire::InstallSnapshot {
                        group,
                        term,
                        leader: from,
                        last_included_index: snapshot.meta.index,
                        last_included_term: snapshot.meta.term,
                        offset: lo as u64,
                        data: bytes[lo..hi].to_vec(),
                        done: i + 1 == n,
                    }
                    .into()
                })
                .collect()
        }
        // Merged separately; a stray one is sent as its own merged frame by the caller.
        MessageBody::Heartbeat { .. } | MessageBody::HeartbeatResponse { .. } => Vec::new(),
    }
}

/// One merged heartbeat frame per destination: (message, group rounds to register).
pub fn heartbeats_to_wire(
    from: NodeId,
    hbs: &[crate::raft::multi::GroupHeartbeat],
) -> (wire::Heartbeat, Vec<(GroupId, u64)>) {
    (
        wire::Heartbeat {
            from,
            groups: hbs
                .iter()
                .map(|h| wire::GroupHeartbeat {
                    group: h.group,
                    term: h.term,
                    commit: h.commit,
                })
                .collect(),
        },
        hbs.iter().map(|h| (h.group, h.round)).collect(),
    )
}

/// Merged heartbeat answers, one frame per echoed round (= the request id of the heartbeat
/// frame they answer). `last_index` gives each group's last log index for the ack.
pub fn heartbeat_responses_to_wire(
    from: NodeId,
    rs: &[crate::raft::multi::GroupHeartbeatResponse],
    last_index: impl Fn(GroupId) -> u64,
) -> Vec<(u64, wire::HeartbeatResponse)> {
    let mut by_round: BTreeMap<u64, Vec<wire::GroupHeartbeatAck>> = BTreeMap::new();
    for r in rs {
        by_round
            .entry(r.round)
            .or_default()
            .push(wire::GroupHeartbeatAck {
                group: r.group,
                term: r.term,
                last_index: last_index(r.group),
            });
    }
    by_round
        .into_iter()
        .map(|(round, groups)| (round, wire::HeartbeatResponse { from, groups }))
        .collect()
}

/// An inbound Raft message, decoded from the wire, addressed to a group of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A complete core message.
    Raft(GroupId, Message),
    /// A heartbeat answer whose round must be resolved by the core that sent the heartbeat
    /// (batch id = the frame's request id).
    HeartbeatAck {
        /// Group.
        group: GroupId,
        /// Sender.
        from: NodeId,
        /// Follower's term.
        term: u64,
        /// Request id of the answered heartbeat frame.
        batch: u64,
    },
    /// A snapshot chunk, reassembled by [`SnapshotAssembly`] on the owning core.
    SnapshotChunk {
        /// Group.
        group: GroupId,
        /// Leader.
        from: NodeId,
        /// Leader's term.
        term: u64,
        /// Last included index.
        index: u64,
        /// Last included term.
        index_term: u64,
        /// Offset of the chunk.
        offset: u64,
        /// Bytes.
        data: Vec<u8>,
        /// Last chunk.
        done: bool,
    },
}

impl Inbound {
    /// The group it is for.
    pub fn group(&self) -> GroupId {
        match self {
            Inbound::Raft(g, _) => *g,
            Inbound::HeartbeatAck { group, .. } | Inbound::SnapshotChunk { group, .. } => *group,
        }
    }
}

/// Decodes a validated wire message from peer `from_node` (its handshake identity) addressed to
/// this node `me`. `request_id` is the frame's. Non-Raft kinds return an error message.
pub fn inbound_from_wire(
    me: NodeId,
    from_node: NodeId,
    msg: &MessageRef<'_>,
    request_id: u64,
) -> Result<Vec<Inbound>, String> {
    let mk = |group: u64, from: u64, term: u64, body: MessageBody| {
        Inbound::Raft(
            group,
            Message {
                from,
                to: me,
                term,
                body,
            },
        )
    };
    let check_from = |claimed: u64| -> Result<u64, String> {
        if claimed == from_node {
            Ok(claimed)
        } else {
            Err(format!(
                "message claims to come from node {claimed} on the connection of node {from_node}"
            ))
        }
    };
    Ok(match msg {
        MessageRef::AppendEntries(a) => {
            let from = check_from(a.leader.to_native())?;
            let entries = a
                .entry_payloads()
                .map(|(term, index, kind, payload)| Entry {
                    index,
                    term,
                    kind: match kind {
                        wire::EntryKind::Normal => EntryKind::Normal,
                        wire::EntryKind::Noop => EntryKind::Noop,
                        wire::EntryKind::ConfigChange => EntryKind::Config,
                    },
                    data: Arc::from(payload),
                })
                .collect();
            vec![mk(
                a.group.to_native(),
                from,
                a.term.to_native(),
                MessageBody::Append {
                    prev_index: a.prev_index.to_native(),
                    prev_term: a.prev_term.to_native(),
                    entries,
                    commit: a.commit.to_native(),
                },
            )]
        }
        MessageRef::AppendEntriesResponse(r) => {
            let from = check_from(r.from.to_native())?;
            let index = r.match_index.to_native();
            let reject = if r.success {
                None
            } else {
                Some(match r.conflict.as_ref() {
                    Some(c) => RejectHint {
                        index: c.conflict_index.to_native(),
                        term: c.conflict_term.to_native(),
                    },
                    None => RejectHint {
                        index: index.saturating_sub(1),
                        term: 0,
                    },
                })
            };
            vec![mk(
                r.group.to_native(),
                from,
                r.term.to_native(),
                MessageBody::AppendResponse { index, reject },
            )]
        }
        MessageRef::RequestVote(v) => {
            let from = check_from(v.candidate.to_native())?;
            vec![mk(
                v.group.to_native(),
                from,
                v.term.to_native(),
                MessageBody::Vote {
                    last_index: v.last_log_index.to_native(),
                    last_term: v.last_log_term.to_native(),
                    transfer: v.transfer,
                },
            )]
        }
        MessageRef::RequestVoteResponse(v) => {
            let from = check_from(v.from.to_native())?;
            vec![mk(
                v.group.to_native(),
                from,
                v.term.to_native(),
                MessageBody::VoteResponse { reject: !v.granted },
            )]
        }
        MessageRef::PreVote(v) => {
            let from = check_from(v.candidate.to_native())?;
            vec![mk(
                v.group.to_native(),
                from,
                v.term.to_native(),
                MessageBody::PreVote {
                    last_index: v.last_log_index.to_native(),
                    last_term: v.last_log_term.to_native(),
                },
            )]
        }
        MessageRef::PreVoteResponse(v) => {
            let from = check_from(v.from.to_native())?;
            vec![mk(
                v.group.to_native(),
                from,
                v.term.to_native(),
                MessageBody::PreVoteResponse { reject: !v.granted },
            )]
        }
        MessageRef::Heartbeat(h) => {
            let from = check_from(h.from.to_native())?;
            h.groups
                .iter()
                .map(|g| {
                    mk(
                        g.group.to_native(),
                        from,
                        g.term.to_native(),
                        MessageBody::Heartbeat {
                            commit: g.commit.to_native(),
                            round: request_id,
                        },
                    )
                })
                .collect()
        }
        MessageRef::HeartbeatResponse(h) => {
            let from = check_from(h.from.to_native())?;
            h.groups
                .iter()
                .map(|g| Inbound::HeartbeatAck {
                    group: g.group.to_native(),
                    from,
                    term: g.term.to_native(),
                    batch: request_id,
                })
                .collect()
        }
        MessageRef::InstallSnapshot(s) => {
            let from = check_from(s.leader.to_native())?;
            vec![Inbound::SnapshotChunk {
                group: s.group.to_native(),
                from,
                term: s.term.to_native(),
                index: s.last_included_index.to_native(),
                index_term: s.last_included_term.to_native(),
                offset: s.offset.to_native(),
                data: s.data.as_slice().to_vec(),
                done: s.done,
            }]
        }
        MessageRef::TimeoutNow(t) => {
            let from = check_from(t.leader.to_native())?;
            vec![mk(
                t.group.to_native(),
                from,
                t.term.to_native(),
                MessageBody::TimeoutNow,
            )]
        }
        other => {
            return Err(format!(
                "{:?} is not a Raft message between nodes",
                other.kind()
            ))
        }
    })
}

/// Why a snapshot chunk from a peer was refused. Every refusal drops nothing but the chunk,
/// except where noted (the transfer it broke is dropped and its bytes released: the leader
/// resends the whole snapshot).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotChunkError {
    /// A new transfer while [`MAX_SNAPSHOT_ASSEMBLIES`] are in progress on this core.
    #[error("more than {MAX_SNAPSHOT_ASSEMBLIES} snapshot transfers in progress")]
    TooManyTransfers,
    /// A chunk past offset 0 for a shard with no transfer in progress.
    #[error("snapshot chunk at offset {offset} without its start")]
    NoStart {
        /// Offset of the chunk.
        offset: u64,
    },
    /// A chunk from another leader than the one whose transfer is in progress.
    #[error(
        "snapshot chunk from node {from} while node {current} is sending this shard's snapshot"
    )]
    OtherLeader {
        /// Sender of the chunk.
        from: NodeId,
        /// Sender of the transfer in progress.
        current: NodeId,
    },
    /// A chunk for another index, or not at the next offset (the transfer is dropped).
    #[error("snapshot chunk for index {index} at offset {offset} does not continue the transfer (index {expected_index}, offset {expected_offset})")]
    Discontinuous {
        /// Index of the chunk.
        index: u64,
        /// Offset of the chunk.
        offset: u64,
        /// Index of the transfer.
        expected_index: u64,
        /// Bytes received so far.
        expected_offset: u64,
    },
    /// `offset + len` does not fit in 64 bits.
    #[error("snapshot chunk at offset {offset} with {len} bytes overflows")]
    Overflow {
        /// Offset of the chunk.
        offset: u64,
        /// Length of the chunk.
        len: u64,
    },
    /// The snapshot would exceed the largest one accepted (the transfer is dropped).
    #[error("snapshot of at least {bytes} bytes is larger than the {max} accepted")]
    TooLarge {
        /// Bytes the chunk would bring the transfer to.
        bytes: u64,
        /// Largest snapshot accepted.
        max: u64,
    },
    /// The node's transfers together would buffer more than their budget (the transfer is
    /// dropped; the leader retries later).
    #[error("snapshot transfers would buffer {bytes} more bytes on this node, over the {max} bytes all may hold")]
    NodeBudget {
        /// Bytes asked for.
        bytes: u64,
        /// The node's budget ([`MAX_SNAPSHOT_ASSEMBLY_BYTES`]).
        max: u64,
    },
    /// The reassembled bytes are not a snapshot (bad membership prefix).
    #[error("snapshot: {0}")]
    Malformed(String),
}

/// Bytes every snapshot transfer of one node may buffer together: two snapshots of the largest
/// size a follower accepts from a leader ([`crate::node::core::MAX_SNAPSHOT_BYTES`]), so one
/// full-size transfer can always proceed next to another, whatever the number of cores and
/// shards (64 transfers of the largest size would be 64 GiB).
pub const MAX_SNAPSHOT_ASSEMBLY_BYTES: usize = 2 * crate::node::core::MAX_SNAPSHOT_BYTES;

// A snapshot accepted from a leader must also be one the node can read back from its file, and
// the node's budget is far below what the per-core transfer count alone would allow.
const _: () = assert!(
    MAX_SNAPSHOT_ASSEMBLY_BYTES < MAX_SNAPSHOT_ASSEMBLIES * crate::node::core::MAX_SNAPSHOT_BYTES
);
const _: () = assert!(
    crate::node::core::MAX_SNAPSHOT_BYTES as u64 <= crate::node::storage::MAX_SNAPSHOT_FILE_BYTES
);

/// Buffer bytes reserved by the snapshot transfers of one node (shared by its cores).
#[derive(Debug)]
pub struct AssemblyBudget {
    used: std::sync::atomic::AtomicUsize,
    max: usize,
}

impl AssemblyBudget {
    /// A budget of `max` bytes.
    pub fn new(max: usize) -> AssemblyBudget {
        AssemblyBudget {
            used: std::sync::atomic::AtomicUsize::new(0),
            max,
        }
    }

    /// The budget of this node (process): [`MAX_SNAPSHOT_ASSEMBLY_BYTES`], shared by every core.
    pub fn node() -> Arc<AssemblyBudget> {
        static NODE: std::sync::OnceLock<Arc<AssemblyBudget>> = std::sync::OnceLock::new();
        NODE.get_or_init(|| Arc::new(AssemblyBudget::new(MAX_SNAPSHOT_ASSEMBLY_BYTES)))
            .clone()
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.used.load(std::sync::atomic::Ordering::Acquire)
    }

    fn try_reserve(&self, n: usize) -> bool {
        use std::sync::atomic::Ordering;
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.max)
            })
            .is_ok()
    }

    fn release(&self, n: usize) {
        use std::sync::atomic::Ordering;
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }
}

/// One snapshot transfer in progress.
#[derive(Debug)]
struct Transfer {
    from: NodeId,
    index: u64,
    buf: Vec<u8>,
    /// Bytes charged to the budget for `buf`.
    reserved: usize,
}

/// Reassembles snapshot chunks, at most one transfer per shard (a transfer that starts replaces
/// the shard's previous one) and [`MAX_SNAPSHOT_ASSEMBLIES`] per core, each at most the
/// `max_bytes` given, all of a node's together at most its [`AssemblyBudget`]. Every offset and
/// length is checked (no overflow, no gap, bounds before allocation).
#[derive(Debug)]
pub struct SnapshotAssembly {
    parts: HashMap<GroupId, Transfer>,
    budget: Arc<AssemblyBudget>,
}

impl Default for SnapshotAssembly {
    /// An assembly charging the node's budget ([`AssemblyBudget::node`]).
    fn default() -> Self {
        SnapshotAssembly::with_budget(AssemblyBudget::node())
    }
}

impl Drop for SnapshotAssembly {
    fn drop(&mut self) {
        for t in self.parts.values() {
            self.budget.release(t.reserved);
        }
    }
}

impl SnapshotAssembly {
    /// An assembly charging `budget`.
    pub fn with_budget(budget: Arc<AssemblyBudget>) -> SnapshotAssembly {
        SnapshotAssembly {
            parts: HashMap::new(),
            budget,
        }
    }

    /// Transfers in progress.
    pub fn transfers(&self) -> usize {
        self.parts.len()
    }

    fn drop_transfer(&mut self, group: GroupId) {
        if let Some(t) = self.parts.remove(&group) {
            self.budget.release(t.reserved);
        }
    }

    /// Adds a chunk; returns the core message once the last chunk arrived. A chunk at offset 0
    /// starts a transfer (replacing the shard's previous one); later chunks must continue it
    /// exactly (same leader, same index, next offset).
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &mut self,
        me: NodeId,
        group: GroupId,
        from: NodeId,
        term: u64,
        index: u64,
        index_term: u64,
        offset: u64,
        data: &[u8],
        done: bool,
        max_bytes: usize,
    ) -> Result<Option<Message>, SnapshotChunkError> {
        let len = data.len() as u64;
        let end = offset
            .checked_add(len)
            .ok_or(SnapshotChunkError::Overflow { offset, len })?;
        if offset == 0 {
            self.drop_transfer(group);
            if self.parts.len() >= MAX_SNAPSHOT_ASSEMBLIES {
                return Err(SnapshotChunkError::TooManyTransfers);
            }
            self.parts.insert(
                group,
                Transfer {
                    from,
                    index,
                    buf: Vec::new(),
                    reserved: 0,
                },
            );
        }
        let Some(t) = self.parts.get(&group) else {
            return Err(SnapshotChunkError::NoStart { offset });
        };
        if t.from != from {
            return Err(SnapshotChunkError::OtherLeader {
                from,
                current: t.from,
            });
        }
        if t.index != index || t.buf.len() as u64 != offset {
            let e = SnapshotChunkError::Discontinuous {
                index,
                offset,
                expected_index: t.index,
                expected_offset: t.buf.len() as u64,
            };
            self.drop_transfer(group);
            return Err(e);
        }
        if end > max_bytes as u64 {
            self.drop_transfer(group);
            return Err(SnapshotChunkError::TooLarge {
                bytes: end,
                max: max_bytes as u64,
            });
        }
        // `end <= max_bytes`, so it fits a usize. Grow geometrically (capped at `max_bytes`)
        // while the budget allows, else exactly; every byte of capacity is charged first.
        let need = end as usize;
        let budget = self.budget.clone();
        let Some(t) = self.parts.get_mut(&group) else {
            return Err(SnapshotChunkError::NoStart { offset });
        };
        if need > t.reserved {
            let wanted = need.max(t.reserved.saturating_mul(2)).min(max_bytes);
            let target = if budget.try_reserve(wanted - t.reserved) {
                wanted
            } else if budget.try_reserve(need - t.reserved) {
                need
            } else {
                let e = SnapshotChunkError::NodeBudget {
                    bytes: (need - t.reserved) as u64,
                    max: budget.max as u64,
                };
                self.drop_transfer(group);
                return Err(e);
            };
            t.buf.reserve_exact(target - t.buf.len());
            t.reserved = target;
        }
        t.buf.extend_from_slice(data);
        if !done {
            return Ok(None);
        }
        let bytes = match self.parts.remove(&group) {
            Some(t) => {
                budget.release(t.reserved);
                t.buf
            }
            None => return Err(SnapshotChunkError::NoStart { offset }),
        };
        let malformed = |m: &str| SnapshotChunkError::Malformed(m.to_string());
        let mlen = bytes
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| malformed("shorter than its membership length"))?;
        let mend = mlen
            .checked_add(4)
            .ok_or_else(|| malformed("membership length overflows"))?;
        let mbytes = bytes
            .get(4..mend)
            .ok_or_else(|| malformed("shorter than its membership"))?;
        let membership = Membership::decode(mbytes)
            .map_err(|e| SnapshotChunkError::Malformed(format!("membership: {e}")))?;
        Ok(Some(Message {
            from,
            to: me,
            term,
            body: MessageBody::InstallSnapshot {
                snapshot: Snapshot {
                    meta: SnapshotMeta {
                        index,
                        term: index_term,
                        membership,
                    },
                    data: Arc::from(&bytes[mend..]),
                },
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringraft_net::{Decoder, DecoderConfig, SendQueueConfig};

    /// Sends `m` through a real send queue and decoder and hands the validated view to `f`.
    fn round_trip(m: &wire::Message, request_id: u64, f: impl FnOnce(MessageRef<'_>)) {
        let mut q = SendQueue::new(SendQueueConfig::default());
        push_message(&mut q, request_id, false, m).unwrap();
        let batch = q.take_batch().unwrap();
        let mut d = Decoder::new(DecoderConfig::default());
        assert_eq!(d.push(batch.as_slice()), batch.len());
        let frame = d.next_frame().unwrap().unwrap();
        assert_eq!(frame.header.request_id, request_id);
        f(frame.message);
    }

    fn msg(from: u64, to: u64, term: u64, body: MessageBody) -> Message {
        Message {
            from,
            to,
            term,
            body,
        }
    }

    fn through_wire(group: u64, m: &Message) -> Vec<Inbound> {
        let mut out = Vec::new();
        for w in message_to_wire(group, m, 1 << 20) {
            round_trip(&w, 0, |r| {
                out.extend(inbound_from_wire(m.to, m.from, &r, 0).unwrap())
            });
        }
        out
    }

    #[test]
    fn raft_messages_survive_the_wire() {
        let entries = vec![
            Entry {
                index: 5,
                term: 2,
                kind: EntryKind::Normal,
                data: Arc::from(&b"cmd"[..]),
            },
            Entry {
                index: 6,
                term: 2,
                kind: EntryKind::Config,
                data: Arc::from(&b"cfg"[..]),
            },
        ];
        let cases = vec![
            MessageBody::Append {
                prev_index: 4,
                prev_term: 1,
                entries,
                commit: 3,
            },
            MessageBody::AppendResponse {
                index: 6,
                reject: None,
            },
            MessageBody::AppendResponse {
                index: 9,
                reject: Some(RejectHint { index: 4, term: 1 }),
            },
            MessageBody::Vote {
                last_index: 3,
                last_term: 2,
                transfer: false,
            },
            MessageBody::Vote {
                last_index: 3,
                last_term: 2,
                transfer: true,
            },
            MessageBody::VoteResponse { reject: true },
            MessageBody::PreVote {
                last_index: 3,
                last_term: 2,
            },
            MessageBody::PreVoteResponse { reject: false },
            MessageBody::TimeoutNow,
        ];
        for body in cases {
            let m = msg(1, 2, 7, body);
            assert_eq!(through_wire(9, &m), vec![Inbound::Raft(9, m.clone())]);
        }
    }

    #[test]
    fn snapshots_are_chunked_and_reassembled() {
        let snap = Snapshot {
            meta: SnapshotMeta {
                index: 40,
                term: 3,
                membership: Membership::with_voters([1, 2, 3]),
            },
            data: Arc::from(vec![7u8; 1000]),
        };
        let m = msg(1, 2, 5, MessageBody::InstallSnapshot { snapshot: snap });
        let frames = message_to_wire(3, &m, 300);
        assert_eq!(frames.len(), 4);
        let mut asm = SnapshotAssembly::default();
        let mut done = None;
        for w in frames {
            let mut inbound = Vec::new();
            round_trip(&w, 0, |r| inbound = inbound_from_wire(2, 1, &r, 0).unwrap());
            for inb in inbound {
                if let Inbound::SnapshotChunk {
                    group,
                    from,
                    term,
                    index,
                    index_term,
                    offset,
                    data,
                    done: d,
                } = inb
                {
                    if let Some(msg) = asm
                        .add(
                            2,
                            group,
                            from,
                            term,
                            index,
                            index_term,
                            offset,
                            &data,
                            d,
                            1 << 20,
                        )
                        .unwrap()
                    {
                        done = Some(msg);
                    }
                }
            }
        }
        assert_eq!(done, Some(m));
        // A chunk that does not continue a transfer is refused.
        assert!(asm
            .add(2, 3, 1, 5, 40, 3, 300, b"x", true, 1 << 20)
            .is_err());
    }

    /// A valid snapshot body (membership prefix + state) of `state` bytes.
    fn snapshot_bytes(state: usize) -> Vec<u8> {
        let m = Membership::with_voters([1, 2, 3]).encode();
        let mut b = (m.len() as u32).to_le_bytes().to_vec();
        b.extend_from_slice(&m);
        b.extend(std::iter::repeat_n(5u8, state));
        b
    }

    #[test]
    fn hostile_snapshot_chunks_are_refused_with_typed_errors_and_bounded_memory() {
        use SnapshotChunkError as E;
        let budget = Arc::new(AssemblyBudget::new(1_000));
        let mut asm = SnapshotAssembly::with_budget(budget.clone());
        let add = |asm: &mut SnapshotAssembly, g: u64, from: u64, off: u64, data: &[u8], done| {
            asm.add(2, g, from, 5, 40, 3, off, data, done, 600)
        };
        // Offset + length past u64: refused before anything is touched.
        assert_eq!(
            add(&mut asm, 1, 1, u64::MAX - 1, b"abcd", false),
            Err(E::Overflow {
                offset: u64::MAX - 1,
                len: 4
            })
        );
        // A chunk with no start.
        assert_eq!(
            add(&mut asm, 1, 1, 10, b"x", false),
            Err(E::NoStart { offset: 10 })
        );
        // A gap drops the transfer and its bytes.
        add(&mut asm, 1, 1, 0, &[0; 10], false).unwrap();
        assert!(budget.used() >= 10);
        assert!(matches!(
            add(&mut asm, 1, 1, 20, b"x", false),
            Err(E::Discontinuous {
                expected_offset: 10,
                ..
            })
        ));
        assert_eq!((asm.transfers(), budget.used()), (0, 0));
        // Another index in the middle of a transfer drops it too.
        add(&mut asm, 1, 1, 0, &[0; 10], false).unwrap();
        assert!(matches!(
            asm.add(2, 1, 1, 5, 41, 3, 10, b"x", false, 600),
            Err(E::Discontinuous {
                expected_index: 40,
                ..
            })
        ));
        assert_eq!(budget.used(), 0);
        // Another leader cannot continue (or cancel) a shard's transfer.
        add(&mut asm, 1, 1, 0, &[0; 10], false).unwrap();
        assert_eq!(
            add(&mut asm, 1, 9, 10, b"x", false),
            Err(E::OtherLeader {
                from: 9,
                current: 1
            })
        );
        assert_eq!(asm.transfers(), 1);
        // Larger than the largest snapshot accepted (600 here): dropped, bytes released.
        add(&mut asm, 1, 1, 10, &[0; 400], false).unwrap();
        assert_eq!(
            add(&mut asm, 1, 1, 410, &[0; 400], false),
            Err(E::TooLarge {
                bytes: 810,
                max: 600
            })
        );
        assert_eq!((asm.transfers(), budget.used()), (0, 0));
        // One transfer per shard: a new start replaces the old one, whose bytes are released.
        add(&mut asm, 1, 1, 0, &[0; 300], false).unwrap();
        add(&mut asm, 1, 3, 0, &[0; 300], false).unwrap();
        assert_eq!(asm.transfers(), 1);
        assert!(budget.used() <= 600, "{}", budget.used());
        // The node's budget (1000) bounds all transfers together.
        add(&mut asm, 2, 1, 0, &[0; 500], false).unwrap();
        assert!(matches!(
            add(&mut asm, 4, 1, 0, &[0; 300], false),
            Err(E::NodeBudget { .. })
        ));
        assert!(budget.used() <= 1_000);
        // A peer sharing the budget (another core) is bounded by the same bytes.
        let mut other = SnapshotAssembly::with_budget(budget.clone());
        assert!(matches!(
            other.add(2, 7, 1, 5, 40, 3, 0, &[0; 300], false, 600),
            Err(E::NodeBudget { .. })
        ));
        // Finishing a transfer releases its bytes; the refused one can start now.
        let body = snapshot_bytes(100);
        let done = add(&mut asm, 1, 3, 0, &body, true).unwrap();
        assert!(matches!(
            done,
            Some(Message {
                body: MessageBody::InstallSnapshot { .. },
                ..
            })
        ));
        drop(asm);
        assert_eq!(budget.used(), 0, "dropping an assembly releases its bytes");
        // A hostile membership length never panics or over-reads.
        let mut asm = SnapshotAssembly::with_budget(budget.clone());
        let mut bad = u32::MAX.to_le_bytes().to_vec();
        bad.extend_from_slice(b"short");
        assert!(matches!(
            asm.add(2, 1, 1, 5, 40, 3, 0, &bad, true, 600),
            Err(E::Malformed(_))
        ));
        assert!(matches!(
            asm.add(2, 1, 1, 5, 40, 3, 0, b"ab", true, 600),
            Err(E::Malformed(_))
        ));
        // At most MAX_SNAPSHOT_ASSEMBLIES transfers per core.
        for g in 0..MAX_SNAPSHOT_ASSEMBLIES as u64 {
            asm.add(2, g, 1, 5, 40, 3, 0, b"x", false, 600).unwrap();
        }
        assert_eq!(
            asm.add(2, 1_000, 1, 5, 40, 3, 0, b"x", false, 600),
            Err(E::TooManyTransfers)
        );
        drop(asm);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn every_core_of_a_node_shares_one_budget() {
        let (a, b) = (SnapshotAssembly::default(), SnapshotAssembly::default());
        assert!(Arc::ptr_eq(&a.budget, &b.budget));
        assert_eq!(a.budget.max, MAX_SNAPSHOT_ASSEMBLY_BYTES);
    }

    #[test]
    fn heartbeat_rounds_resolve_through_request_ids() {
        let mut rounds = HeartbeatRounds::new(1);
        let hbs = [
            crate::raft::multi::GroupHeartbeat {
                group: 1,
                term: 4,
                commit: 10,
                round: 17,
            },
            crate::raft::multi::GroupHeartbeat {
                group: 3,
                term: 4,
                commit: 11,
                round: 5,
            },
        ];
        let (frame, groups) = heartbeats_to_wire(1, &hbs);
        let id = rounds.register(2, groups);
        assert_eq!(id >> 48, 1);
        // The follower feeds the request id to its core as the round ...
        let mut follower_msgs = Vec::new();
        round_trip(&frame.into(), id, |r| {
            follower_msgs = inbound_from_wire(2, 1, &r, id).unwrap();
        });
        assert!(matches!(
            &follower_msgs[0],
            Inbound::Raft(1, Message { body: MessageBody::Heartbeat { commit: 10, round }, .. }) if *round == id
        ));
        // ... whose echo comes back in a response frame with that request id.
        let echoes = [
            crate::raft::multi::GroupHeartbeatResponse {
                group: 1,
                term: 4,
                round: id,
            },
            crate::raft::multi::GroupHeartbeatResponse {
                group: 3,
                term: 4,
                round: id,
            },
        ];
        let frames = heartbeat_responses_to_wire(2, &echoes, |_| 99);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].0, id);
        round_trip(&frames[0].1.clone().into(), frames[0].0, |r| {
            let acks = inbound_from_wire(1, 2, &r, frames[0].0).unwrap();
            let resolved: Vec<u64> = acks
                .iter()
                .map(|a| match a {
                    Inbound::HeartbeatAck {
                        group, from, batch, ..
                    } => rounds.resolve(*from, *batch, *group),
                    o => panic!("{o:?}"),
                })
                .collect();
            assert_eq!(resolved, vec![17, 5]);
        });
        // Unknown batches resolve to 0 (confirms nothing).
        assert_eq!(rounds.resolve(2, 12345, 1), 0);
        assert_eq!(rounds.resolve(3, id, 1), 0);
    }

    #[test]
    fn spoofed_sender_is_refused() {
        let m = msg(5, 2, 1, MessageBody::TimeoutNow);
        let w = &message_to_wire(1, &m, 1024)[0];
        round_trip(w, 0, |r| {
            assert!(inbound_from_wire(2, 1, &r, 0)
                .unwrap_err()
                .contains("claims"));
        });
    }
}
