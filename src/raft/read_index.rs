//! Linearizable reads: ReadIndex and the lease path.
//!
//! Every leader heartbeat broadcast is a numbered *round*. Reads that arrive are parked in
//! `waiting`; the next round (started at once by `Raft::ready`, or by the heartbeat timer) takes
//! all of them with the commit index at that moment, so many reads share one round trip. When a
//! quorum of voters echoed round `r` (or a later one), every read of rounds `<= r` is ready at
//! its recorded index, and the lease is extended from the tick round `r` was sent (see
//! [`super::lease`]). Reads wait until the leader committed an entry of its term (its no-op), so
//! the commit index it records is at least every previously committed index.
//! Bounds: `max_pending_reads` reads, `max_read_rounds_in_flight` rounds.

use std::collections::VecDeque;

use super::core::Raft;
use super::message::{MessageBody, NodeId};
use super::ready::{ReadState, Role};

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Confirm leadership with a heartbeat quorum.
    ReadIndex,
    /// Serve from the leader lease if valid, else fall back to ReadIndex.
    Lease,
}

/// Why a read was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// Only the leader serves linearizable reads.
    #[error("not the leader (leader hint: {leader})")]
    NotLeader {
        /// Known leader or 0.
        leader: NodeId,
    },
    /// Too many reads waiting: back off.
    #[error("too many pending reads")]
    TooManyReads,
}

#[derive(Debug, Clone)]
struct Round {
    id: u64,
    sent_tick: u64,
    index: u64,
    reads: Vec<u64>,
}

/// Heartbeat rounds in flight and reads waiting for one.
#[derive(Debug, Clone, Default)]
pub struct ReadRounds {
    last_round: u64,
    rounds: VecDeque<Round>,
    waiting: Vec<u64>,
    pending: usize,
}

impl ReadRounds {
    /// Drops everything; returns the reads that will never complete.
    pub(super) fn clear(&mut self) -> Vec<u64> {
        let mut out = std::mem::take(&mut self.waiting);
        for r in self.rounds.drain(..) {
            out.extend(r.reads);
        }
        self.pending = 0;
        out
    }
    /// True if reads wait for a round.
    pub(super) fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }
    /// Heartbeat rounds in flight.
    pub fn rounds_in_flight(&self) -> usize {
        self.rounds.len()
    }
    /// Reads waiting or in flight.
    pub fn pending(&self) -> usize {
        self.pending
    }
}

impl Raft {
    /// Requests a linearizable read identified by `ctx`; the answer comes as a `ReadState` (or in
    /// `reads_dropped` if leadership is lost first).
    pub fn read(&mut self, ctx: u64, mode: ReadMode) -> Result<(), ReadError> {
        if self.role != Role::Leader {
            return Err(ReadError::NotLeader {
                leader: self.leader,
            });
        }
        if self.reads.pending >= self.cfg.max_pending_reads {
            return Err(ReadError::TooManyReads);
        }
        if mode == ReadMode::Lease && self.lease_valid() {
            self.read_states.push(ReadState {
                ctx,
                index: self.log.committed(),
            });
            return Ok(());
        }
        self.reads.waiting.push(ctx);
        self.reads.pending += 1;
        Ok(())
    }

    /// Leader: starts a round now if reads wait and one can be started.
    pub(super) fn maybe_start_read_round(&mut self) {
        if self.reads.has_waiting()
            && self.committed_in_term()
            && self.reads.rounds.len() < self.cfg.max_read_rounds_in_flight
        {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    /// Leader: a heartbeat to every follower, as a new round when allowed.
    pub(super) fn broadcast_heartbeat(&mut self) {
        let round = if self.reads.rounds.len() < self.cfg.max_read_rounds_in_flight {
            self.reads.last_round += 1;
            let reads = if self.committed_in_term() {
                std::mem::take(&mut self.reads.waiting)
            } else {
                Vec::new()
            };
            self.reads.rounds.push_back(Round {
                id: self.reads.last_round,
                sent_tick: self.ticks,
                index: self.log.committed(),
                reads,
            });
            self.reads.last_round
        } else {
            self.reads.last_round
        };
        let committed = self.log.committed();
        let targets: Vec<(NodeId, u64)> = self
            .prs
            .iter()
            .map(|(id, p)| (*id, p.match_index.min(committed)))
            .collect();
        for (to, commit) in targets {
            if let Some(p) = self.prs.get_mut(&to) {
                p.sent_commit = p.sent_commit.max(commit);
            }
            self.send(to, MessageBody::Heartbeat { commit, round });
        }
        self.confirm_rounds();
    }

    /// Leader: answer to a heartbeat.
    pub(super) fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) {
        let last = self.log.last_index();
        let Some(pr) = self.prs.get_mut(&from) else {
            return;
        };
        pr.recent_active = true;
        pr.acked_round = pr.acked_round.max(round);
        pr.probe_sent = false;
        if pr.inflights.full() {
            pr.inflights.free_first();
        }
        let behind = pr.match_index < last;
        self.confirm_rounds();
        if behind {
            self.maybe_send_append(from, true);
        }
    }

    fn confirm_rounds(&mut self) {
        let m = self.log.membership();
        let q = m.quorum();
        if q == 0 {
            return;
        }
        let mut acks: Vec<u64> = m
            .voters
            .iter()
            .map(|v| {
                if *v == self.id {
                    u64::MAX
                } else {
                    self.prs.get(v).map_or(0, |p| p.acked_round)
                }
            })
            .collect();
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = acks[q - 1];
        let mut lease_from = None;
        while self.reads.rounds.front().is_some_and(|r| r.id <= confirmed) {
            let Some(r) = self.reads.rounds.pop_front() else {
                break;
            };
            self.reads.pending -= r.reads.len();
            for ctx in r.reads {
                self.read_states.push(ReadState {
                    ctx,
                    index: r.index,
                });
            }
            lease_from = Some(r.sent_tick);
        }
        if let Some(sent) = lease_from {
            if !self.lease_disabled && self.cfg.lease_read {
                self.lease.extend(sent, self.cfg.lease_ticks());
            }
        }
    }
}
