//! A peer's wire frame to the core messages it carries. The frame was validated by the
//! decoder; here its claimed sender must be the connection's handshake identity and its
//! destination this node, and a Raft kind is the only kind accepted. Heartbeat answers come
//! out unresolved ([`Inbound::HeartbeatAck`]: the core that sent the heartbeat maps the
//! frame's request id back to its round) and snapshot chunks unassembled
//! ([`Inbound::SnapshotChunk`]: the owning core reassembles them). Owned by the node.

use std::sync::Arc;

use ringraft_net::message as wire;
use ringraft_net::message::MessageRef;

use crate::raft::{Entry, EntryKind, GroupId, Message, MessageBody, NodeId, RejectHint};

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
    pub(crate) fn group(&self) -> GroupId {
        match self {
            Inbound::Raft(g, _) => *g,
            Inbound::HeartbeatAck { group, .. } | Inbound::SnapshotChunk { group, .. } => *group,
        }
    }
}

/// Decodes a validated wire message from peer `from_node` (its handshake identity) addressed to
/// this node `me`. `request_id` is the frame's. Non-Raft kinds return an error message.
pub(crate) fn inbound_from_wire(
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
