//! Linearizable reads: ReadIndex and the lease path.
//!
//! Every leader heartbeat broadcast is a numbered *round*. Reads that arrive are parked in
//! `waiting`; the next round (started at once by `Raft::ready`, or by the heartbeat timer) takes
//! all of them with the commit index at that moment, so many reads share one round trip. When a
//! quorum of voters echoed round `r` (or a later one), every read of rounds `<= r` is ready at
//! its recorded index, and the lease is extended from the tick round `r` was sent (see
//! [`super::lease`]; rounds also record the driver's monotonic time for the clock-checked
//! lease of [`Raft::read_at`]). Reads wait until the leader committed an entry of its term (its no-op), so
//! the commit index it records is at least every previously committed index.
//! Bounds: `max_pending_reads` reads, `max_read_rounds_in_flight` rounds.

use std::collections::VecDeque;

use super::core::{Raft, StepError};
use super::message::{MessageBody, NodeId};
use super::ready::{ReadState, Role};
use super::validate::InvalidMessage;

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
    /// The driver's monotonic time when the round started (never later than the real send).
    sent_nanos: u64,
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
    /// `reads_dropped` if leadership is lost first). A `Lease` read is checked against the tick
    /// lease only: drivers that can read a monotonic clock use [`Raft::read_at`].
    pub fn read(&mut self, ctx: u64, mode: ReadMode) -> Result<(), ReadError> {
        let lease_ok = self.lease_valid();
        self.read_with(ctx, mode, lease_ok)
    }

    /// Like [`Raft::read`], with the driver's monotonic time `now_nanos` read just before the
    /// call: a `Lease` read is served locally only if the lease also covers `now_nanos`, so a
    /// leader that was stalled (stopped process, blocked executor) longer than its lease refuses
    /// it, even before its tick driver caught up, until a fresh quorum round confirms it again.
    /// Also advances the core's clock like [`Raft::advance_clock`].
    pub fn read_at(&mut self, ctx: u64, mode: ReadMode, now_nanos: u64) -> Result<(), ReadError> {
        self.advance_clock(now_nanos);
        let lease_ok = self.lease_valid_at(now_nanos);
        self.read_with(ctx, mode, lease_ok)
    }

    fn read_with(&mut self, ctx: u64, mode: ReadMode, lease_ok: bool) -> Result<(), ReadError> {
        if self.role != Role::Leader {
            return Err(ReadError::NotLeader {
                leader: self.leader,
            });
        }
        if self.reads.pending >= self.cfg.max_pending_reads {
            return Err(ReadError::TooManyReads);
        }
        let unsafe_serve = self.cfg.unsafe_lease_ignore_clock && self.committed_in_term();
        if mode == ReadMode::Lease && (lease_ok || unsafe_serve) {
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
                sent_nanos: self.now_nanos,
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

    /// Leader: answer to a heartbeat. Refuses (and counts) a round this leader never started:
    /// it would confirm reads and extend the lease for rounds not yet sent.
    pub(super) fn handle_heartbeat_response(
        &mut self,
        from: NodeId,
        round: u64,
    ) -> Result<(), StepError> {
        if round > self.reads.last_round {
            let last = self.reads.last_round;
            return Err(self.refuse(InvalidMessage::UnknownRound { round, last }));
        }
        let last = self.log.last_index();
        let Some(pr) = self.prs.get_mut(&from) else {
            return Ok(());
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
        Ok(())
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
            lease_from = Some((r.sent_tick, r.sent_nanos));
        }
        if let Some((tick, nanos)) = lease_from {
            if !self.lease_disabled && self.cfg.lease_read {
                self.lease
                    .extend(tick, self.cfg.lease_ticks(), nanos, self.cfg.lease_nanos());
            }
        }
    }
}
