//! Many Raft groups on one node ([`MultiRaft`]): one tick drives every group, and all messages a
//! `ready()` round produces for the same destination node travel in one [`Envelope`], with
//! heartbeats and heartbeat answers in a compact per-group form (so N groups cost one message per
//! peer per heartbeat interval, not N). Envelopes whose content depends on durability are kept
//! apart (`envelopes_after_persist`): send them after persisting every group's `Ready`.
//! Bound: at most [`MAX_GROUPS_PER_NODE`] groups.

use std::collections::BTreeMap;

use super::core::{Raft, StepError};
use super::message::{Message, MessageBody, NodeId};
use super::ready::Ready;

/// A Raft group id.
pub type GroupId = u64;
/// Maximum groups one `MultiRaft` hosts.
pub const MAX_GROUPS_PER_NODE: usize = 4096;

/// A heartbeat of one group, merged into an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupHeartbeat {
    /// Group.
    pub group: GroupId,
    /// Leader's term.
    pub term: u64,
    /// Commit index safe for the receiver.
    pub commit: u64,
    /// Heartbeat round.
    pub round: u64,
}

/// A heartbeat answer of one group, merged into an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupHeartbeatResponse {
    /// Group.
    pub group: GroupId,
    /// Follower's term.
    pub term: u64,
    /// Echoed round.
    pub round: u64,
}

/// Everything one node sends another in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Sending node.
    pub from: NodeId,
    /// Receiving node.
    pub to: NodeId,
    /// Non-heartbeat messages, by group.
    pub messages: Vec<(GroupId, Message)>,
    /// Merged heartbeats.
    pub heartbeats: Vec<GroupHeartbeat>,
    /// Merged heartbeat answers.
    pub heartbeat_responses: Vec<GroupHeartbeatResponse>,
}

impl Envelope {
    fn new(from: NodeId, to: NodeId) -> Envelope {
        Envelope {
            from,
            to,
            messages: Vec::new(),
            heartbeats: Vec::new(),
            heartbeat_responses: Vec::new(),
        }
    }
    /// Number of Raft messages inside (merged heartbeats count one each).
    pub fn message_count(&self) -> usize {
        self.messages.len() + self.heartbeats.len() + self.heartbeat_responses.len()
    }
}

/// Errors of the multi-group layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultiError {
    /// No such group here.
    #[error("unknown group {0}")]
    UnknownGroup(GroupId),
    /// Group already hosted.
    #[error("group {0} already exists")]
    GroupExists(GroupId),
    /// Too many groups.
    #[error("more than {MAX_GROUPS_PER_NODE} groups")]
    TooManyGroups,
    /// Envelope addressed elsewhere.
    #[error("envelope for node {0}")]
    WrongNode(NodeId),
    /// A group refused a message.
    #[error("group {0}: {1}")]
    Step(GroupId, StepError),
    /// A message inside the envelope names another sender or receiver than the envelope.
    #[error("group {group}: message from {from} to {to} inside an envelope from {env_from}")]
    Misaddressed {
        /// Group.
        group: GroupId,
        /// The message's sender.
        from: NodeId,
        /// The message's receiver.
        to: NodeId,
        /// The envelope's sender.
        env_from: NodeId,
    },
}

/// The output of one `MultiRaft::ready` round.
#[derive(Debug, Default)]
pub struct MultiReady {
    /// Per-group actions (their `messages` fields are empty: the messages are in the envelopes).
    pub groups: Vec<(GroupId, Ready)>,
    /// Send now.
    pub envelopes: Vec<Envelope>,
    /// Send after every group's persistence is durable.
    pub envelopes_after_persist: Vec<Envelope>,
}

/// The groups hosted by one node.
#[derive(Debug)]
pub struct MultiRaft {
    node_id: NodeId,
    groups: BTreeMap<GroupId, Raft>,
    /// Invalid messages counted by groups since removed, and mis-addressed envelope content.
    invalid_other: u64,
}

impl MultiRaft {
    /// No groups yet.
    pub fn new(node_id: NodeId) -> MultiRaft {
        MultiRaft {
            node_id,
            groups: BTreeMap::new(),
            invalid_other: 0,
        }
    }
    /// This node.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }
    /// Hosts `raft` as group `group`.
    pub fn add_group(&mut self, group: GroupId, raft: Raft) -> Result<(), MultiError> {
        if self.groups.contains_key(&group) {
            return Err(MultiError::GroupExists(group));
        }
        if self.groups.len() >= MAX_GROUPS_PER_NODE {
            return Err(MultiError::TooManyGroups);
        }
        self.groups.insert(group, raft);
        Ok(())
    }
    /// Stops hosting a group.
    pub fn remove_group(&mut self, group: GroupId) -> Option<Raft> {
        let r = self.groups.remove(&group)?;
        self.invalid_other = self.invalid_other.saturating_add(r.invalid_messages());
        Some(r)
    }
    /// A group.
    pub fn group(&self, group: GroupId) -> Option<&Raft> {
        self.groups.get(&group)
    }
    /// A group, mutably.
    pub fn group_mut(&mut self, group: GroupId) -> Option<&mut Raft> {
        self.groups.get_mut(&group)
    }
    /// Every group.
    pub fn groups(&self) -> impl Iterator<Item = (GroupId, &Raft)> {
        self.groups.iter().map(|(g, r)| (*g, r))
    }
    /// Ticks every group.
    pub fn tick(&mut self) {
        for r in self.groups.values_mut() {
            r.tick();
        }
    }
    /// Reports the driver's monotonic time (ns) to every group (see [`Raft::advance_clock`]).
    pub fn advance_clock(&mut self, now_nanos: u64) {
        for r in self.groups.values_mut() {
            r.advance_clock(now_nanos);
        }
    }
    /// [`MultiRaft::advance_clock`] then [`MultiRaft::tick`].
    pub fn tick_at(&mut self, now_nanos: u64) {
        for r in self.groups.values_mut() {
            r.tick_at(now_nanos);
        }
    }
    /// Peer messages refused as invalid by any group (including groups removed since) and
    /// envelopes whose messages name other nodes than the envelope (the node exports it as a
    /// metric).
    pub fn invalid_messages(&self) -> u64 {
        self.invalid_other
            + self
                .groups
                .values()
                .map(Raft::invalid_messages)
                .sum::<u64>()
    }

    /// Delivers an envelope to its groups. Every message is tried; the first error is returned.
    pub fn step(&mut self, env: Envelope) -> Result<(), MultiError> {
        if env.to != self.node_id {
            return Err(MultiError::WrongNode(env.to));
        }
        let mut first_err = None;
        let (from, to) = (env.from, env.to);
        let unpacked = env
            .heartbeats
            .into_iter()
            .map(|h| {
                (
                    h.group,
                    Message {
                        from,
                        to,
                        term: h.term,
                        body: MessageBody::Heartbeat {
                            commit: h.commit,
                            round: h.round,
                        },
                    },
                )
            })
            .chain(env.heartbeat_responses.into_iter().map(|h| {
                (
                    h.group,
                    Message {
                        from,
                        to,
                        term: h.term,
                        body: MessageBody::HeartbeatResponse { round: h.round },
                    },
                )
            }))
            .chain(env.messages);
        for (g, m) in unpacked {
            if m.from != from || m.to != to {
                self.invalid_other = self.invalid_other.saturating_add(1);
                first_err.get_or_insert(MultiError::Misaddressed {
                    group: g,
                    from: m.from,
                    to: m.to,
                    env_from: from,
                });
                continue;
            }
            let res = match self.groups.get_mut(&g) {
                Some(r) => r.step(m).map_err(|e| MultiError::Step(g, e)),
                None => Err(MultiError::UnknownGroup(g)),
            };
            if let Err(e) = res {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// True if any group has work.
    pub fn has_ready(&self) -> bool {
        self.groups.values().any(Raft::has_ready)
    }

    /// Collects every group's `Ready` and merges their messages per destination node.
    pub fn ready(&mut self) -> MultiReady {
        // One envelope per destination, found by a scan: a node has a handful of peers, and
        // a short vector costs one allocation where a map costs one per node.
        let mut now: Vec<Envelope> = Vec::new();
        let mut later: Vec<Envelope> = Vec::new();
        let mut out = MultiReady::default();
        let me = self.node_id;
        for (g, r) in self.groups.iter_mut() {
            if !r.has_ready() {
                continue;
            }
            let mut rd = r.ready();
            for (msgs, map) in [
                (std::mem::take(&mut rd.messages), &mut now),
                (std::mem::take(&mut rd.messages_after_persist), &mut later),
            ] {
                for m in msgs {
                    let env = match map.iter().position(|e| e.to == m.to) {
                        Some(i) => &mut map[i],
                        None => {
                            map.push(Envelope::new(me, m.to));
                            let last = map.len() - 1;
                            &mut map[last]
                        }
                    };
                    match m.body {
                        MessageBody::Heartbeat { commit, round } => {
                            env.heartbeats.push(GroupHeartbeat {
                                group: *g,
                                term: m.term,
                                commit,
                                round,
                            })
                        }
                        MessageBody::HeartbeatResponse { round } => {
                            env.heartbeat_responses.push(GroupHeartbeatResponse {
                                group: *g,
                                term: m.term,
                                round,
                            })
                        }
                        _ => env.messages.push((*g, m)),
                    }
                }
            }
            out.groups.push((*g, rd));
        }
        // In destination order, as before (deterministic runs depend on it).
        now.sort_by_key(|e| e.to);
        later.sort_by_key(|e| e.to);
        out.envelopes = now;
        out.envelopes_after_persist = later;
        out
    }

    /// The driver persisted group `group`'s `Ready` up to its `persisted` `(index, term)`
    /// (once per such `Ready`, in order).
    pub fn on_persisted(
        &mut self,
        group: GroupId,
        index: u64,
        term: u64,
    ) -> Result<(), MultiError> {
        self.groups
            .get_mut(&group)
            .ok_or(MultiError::UnknownGroup(group))?
            .on_persisted(index, term);
        Ok(())
    }
}
