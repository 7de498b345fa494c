//! The heartbeat rounds of merged heartbeats, and the merged heartbeat frames themselves.
//!
//! The wire's merged `Heartbeat` has no round field, but every frame has a request id, and
//! answers are matched to requests by it. So a core's merged heartbeat frame to a peer gets a
//! fresh request id `R` ([`HeartbeatRounds::register`] remembers `R -> [(group, round)]`); the
//! receiving node hands `R` to its Raft core as the round, the core echoes it in its heartbeat
//! answers, and the answers go back in a `HeartbeatResponse` frame whose request id is `R`. The
//! sender maps `R` back to each group's real round ([`HeartbeatRounds::resolve`]), which
//! ReadIndex and the leader lease depend on. An unknown or evicted `R` resolves to round 0,
//! which confirms nothing (rounds start at 1): a lost mapping can only delay a read, never
//! confirm one wrongly. At most [`MAX_HEARTBEAT_BATCHES_REMEMBERED`] batches are remembered
//! per peer. Owned by the node; one per core.

use std::collections::{BTreeMap, HashMap, VecDeque};

use ringraft_net::message as wire;

use crate::raft::{GroupId, NodeId};

/// Heartbeat batches remembered per peer for round resolution.
pub(crate) const MAX_HEARTBEAT_BATCHES_REMEMBERED: usize = 256;

/// One registered heartbeat frame: its request id and the (group, round) pairs it carried.
type RoundBatch = (u64, Vec<(GroupId, u64)>);

/// The round bookkeeping of one core's merged heartbeats, per peer.
#[derive(Debug, Default)]
pub(crate) struct HeartbeatRounds {
    next_id: u64,
    id_base: u64,
    batches: HashMap<NodeId, VecDeque<RoundBatch>>,
}

impl HeartbeatRounds {
    /// Request ids of core `core` are `core << 48 | counter` (unique per node).
    pub(crate) fn new(core: usize) -> Self {
        Self {
            next_id: 1,
            id_base: (core as u64) << 48,
            batches: HashMap::new(),
        }
    }

    /// Remembers that the heartbeats of `groups` (group, real round) go to `peer` in one frame;
    /// returns the frame's request id.
    pub(crate) fn register(&mut self, peer: NodeId, groups: Vec<(GroupId, u64)>) -> u64 {
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
    pub(crate) fn resolve(&self, peer: NodeId, id: u64, group: GroupId) -> u64 {
        self.batches
            .get(&peer)
            .and_then(|q| q.iter().rev().find(|(i, _)| *i == id))
            .and_then(|(_, gs)| gs.iter().find(|(g, _)| *g == group))
            .map_or(0, |(_, r)| *r)
    }
}

/// One merged heartbeat frame per destination: (message, group rounds to register).
pub(crate) fn heartbeats_to_wire(
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
pub(crate) fn heartbeat_responses_to_wire(
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
