//! Client requests on one core: admission, proposing writes, starting reads at the chosen
//! consistency, membership changes, leadership transfer, and failing or sweeping what waits.
//!
//! Every proposed write, membership change and read is registered by the shared driver
//! ([`Driver::propose_write`], [`Driver::change_membership`], [`Driver::read_at`]); this file
//! admits them (sizes, the in-flight bounds) and turns refusals into client errors.
//!
//! Copies of a put's value on the leader (frame API): (1) the frame's archive is deserialized
//! into an owned `ClientOp`; (2) [`Command::encode_shared`] writes the command straight into
//! the entry's shared buffer, which the Raft log, the WAL append and the envelopes to followers
//! share; (3) the WAL copies it into its stage or map (the one copy durability needs); (4)
//! applying decodes the command and the store keeps the decoded value. From admission to the
//! WAL that is the encoding and the WAL's own copy (`tests/driver_copies.rs` counts it).
//! Besides these, each follower's append carries the value once more in its frame. The answer
//! path copies nothing of it: the frame API keeps only what an answer reads back (a scan's
//! limit, a CAS's new value), and the answer travels on a one-shot channel ([`Reply`]: one
//! allocation, where a bounded channel took a queue, a waiter hook and a lock per request).
//!
//! Write stages: a write carries when it reached the node (`received`, the first stage) and
//! when it was proposed; the shared driver times the rest ([`crate::node::driver`]: locally
//! durable in `on_durable`, committed, applied and answered in `apply`), each into the core's
//! own histograms (`CoreMetrics::stages`: relaxed atomic adds, no lock, no sharing across
//! cores).

use super::*;
use crate::node::driver::Driver;
use crate::raft::TransferError;

/// Admission of a write: key and values within this node's limits, and the whole encoded
/// command within what the log, the WAL's largest record and one frame can carry (so nothing
/// admitted can fail to be logged). Refusals are not applied.
pub fn admit(cmd: &Command, adm: &Admission) -> Result<(), ClientError> {
    let bytes = cmd.encoded_len();
    if bytes > adm.max_command_bytes {
        return Err(ClientError::TooLarge {
            bytes: bytes as u64,
            limit: adm.max_command_bytes as u64,
        });
    }
    cmd.check_sizes(adm.max_key_bytes, adm.max_value_bytes)
        .map_err(|e| ClientError::InvalidRequest(e.0))
}

impl CoreState {
    /// Starts a client operation on `group` (owned by this core); the answer goes to `reply`.
    /// `received` is when the request reached the node (a write's first stage).
    pub fn submit(
        &mut self,
        group: GroupId,
        client_id: u64,
        seq: u64,
        op: ClientOp,
        reply: Reply,
        received: Instant,
    ) {
        if let Some(f) = &self.fatal {
            let _ = reply.try_send(Err(ClientError::Unavailable(f.clone())));
            return;
        }
        let r = match op {
            ClientOp::Get {
                consistency: Consistency::Eventual,
                ..
            }
            | ClientOp::Scan {
                consistency: Consistency::Eventual,
                ..
            } => {
                self.metrics.reads[Consistency::Eventual.metric_index()].inc();
                let res = self
                    .read_local(group, &op)
                    .map(|r| self.eventual_reply(group, r));
                let _ = reply.try_send(res);
                return;
            }
            ClientOp::Get { consistency, .. } | ClientOp::Scan { consistency, .. } => {
                self.start_read(group, op, consistency, reply)
            }
            // Remaining times are the leader's: served under its lease.
            ClientOp::LeaseList => self.start_read(group, op, Consistency::Lease, reply),
            op => self.propose(group, client_id, seq, op, reply, received),
        };
        if let Err((e, reply)) = r {
            match &e {
                ClientError::NotLeader { .. } => self.metrics.error(ErrorKind::NotLeader),
                ClientError::Busy { .. } => self.metrics.error(ErrorKind::Busy),
                ClientError::InvalidRequest(_) | ClientError::TooLarge { .. } => {
                    self.metrics.error(ErrorKind::InvalidRequest)
                }
                _ => {}
            }
            let _ = reply.try_send(Err(e));
        }
        self.kick();
    }

    /// Marks a locally served (eventual) read's reply as possibly stale.
    fn eventual_reply(&self, group: GroupId, reply: ClientReply) -> ClientReply {
        let applied_index = self.shards.get(&group).map_or(0, |s| s.kv.applied_index());
        let leader = self
            .multi
            .group(group)
            .is_some_and(|r| r.role() == Role::Leader);
        let read = ringraft_net::message::EventualRead {
            applied_index,
            leader,
        };
        ClientReply::Eventual {
            reply: Box::new(reply),
            read,
        }
    }

    pub(super) fn read_local(&self, group: GroupId, op: &ClientOp) -> ClientResult {
        let shard = self.shards.get(&group).ok_or(ClientError::WrongShard {
            shard: group as u32,
        })?;
        crate::node::driver::read_local(shard, op, self.cfg.state_machine.max_scan_results)
    }

    pub(super) fn start_read(
        &mut self,
        group: GroupId,
        op: ClientOp,
        consistency: Consistency,
        reply: Reply,
    ) -> Result<(), (ClientError, Reply)> {
        if self.reads.len() >= self.cfg.raft.max_inflight_proposals {
            debug!(
                reads = self.reads.len(),
                "busy: raft.max_inflight_proposals reads in flight on this core"
            );
            return Err((busy(), reply));
        }
        if self.multi.group(group).is_none() {
            return Err((
                ClientError::WrongShard {
                    shard: group as u32,
                },
                reply,
            ));
        }
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let mode = match consistency {
            Consistency::Lease => ReadMode::Lease,
            _ => ReadMode::ReadIndex,
        };
        // The clock is read now, not taken from the last tick: a leader whose executor or
        // process stalled past its lease refuses lease reads at once on resume, before its tick
        // loop runs again.
        let now = Some(monotonic_nanos());
        match self.driver().read_at(group, ctx, op, mode, now, reply) {
            Ok(()) => {
                self.metrics.reads[consistency.metric_index()].inc();
                Ok(())
            }
            Err((ReadError::NotLeader { leader }, reply)) => Err((self.not_leader(leader), reply)),
            Err((ReadError::TooManyReads, reply)) => Err((busy(), reply)),
        }
    }

    pub(super) fn propose(
        &mut self,
        group: GroupId,
        client_id: u64,
        seq: u64,
        op: ClientOp,
        reply: Reply,
        received: Instant,
    ) -> Result<(), (ClientError, Reply)> {
        let ClientOp::Write(op) = op else {
            return Err((ClientError::InvalidRequest("not a write".into()), reply));
        };
        let cmd = Command { client_id, seq, op };
        if !self.shards.contains_key(&group) || self.multi.group(group).is_none() {
            return Err((
                ClientError::WrongShard {
                    shard: group as u32,
                },
                reply,
            ));
        }
        if let Err(e) = admit(&cmd, &self.admission) {
            return Err((e, reply));
        }
        let inflight: usize = self.shards.values().map(|s| s.writes.len()).sum();
        if inflight >= self.cfg.raft.max_inflight_proposals {
            debug!(
                inflight,
                "busy: raft.max_inflight_proposals writes in flight on this core"
            );
            return Err((busy(), reply));
        }
        match self
            .driver()
            .propose_write(group, cmd.encode_shared(), reply, Some(received))
        {
            Ok(_) => Ok(()),
            Err((ProposeError::NotLeader { leader }, reply)) => {
                Err((self.not_leader(leader), reply))
            }
            Err((ProposeError::TooManyUncommitted, reply)) => Err((busy(), reply)),
            Err((e, reply)) => Err((ClientError::Unavailable(e.to_string()), reply)),
        }
    }

    /// The shared driver over this core's state, for registering a request.
    fn driver(&mut self) -> Driver<'_> {
        Driver::new(
            &mut self.multi,
            &mut self.shards,
            &mut self.reads,
            &self.metrics,
        )
    }

    /// Starts handing leadership of group `g` to voter `to`; answered at once (the transfer
    /// then runs: the target campaigns with the transfer flag on its votes).
    pub fn transfer_leadership(&mut self, g: GroupId, to: NodeId, reply: Reply) {
        let Some(raft) = self.multi.group_mut(g) else {
            let _ = reply.try_send(Err(ClientError::WrongShard { shard: g as u32 }));
            return;
        };
        let leader = raft.leader();
        let answer = match raft.transfer_leadership(to) {
            Ok(()) | Err(TransferError::ToSelf) => Ok(ClientReply::Committed { index: 0 }),
            Err(TransferError::NotLeader) => Err(self.not_leader(leader)),
            Err(e @ TransferError::NotVoter(_)) => Err(ClientError::InvalidRequest(e.to_string())),
        };
        if answer.is_ok() {
            info!(shard = g, to, "leadership transfer started");
        }
        let _ = reply.try_send(answer);
        self.kick();
    }

    /// Starts a membership change on group `g` (answered once its entry is applied; a learner
    /// that is already a member counts as done).
    pub fn change_membership(&mut self, g: GroupId, change: ConfChange, reply: Reply) {
        if self.multi.group(g).is_none() {
            let _ = reply.try_send(Err(ClientError::WrongShard { shard: g as u32 }));
            return;
        }
        match self.driver().change_membership(g, change.clone(), reply) {
            Ok(index) => {
                info!(shard = g, ?change, index, "membership change proposed");
                // A new member's address is in the entry just appended: link to it now, so the
                // leader reaches it from its first append on.
                self.refresh_peers(g);
            }
            Err((ProposeError::NotLeader { leader }, reply)) => {
                let _ = reply.try_send(Err(self.not_leader(leader)));
            }
            Err((ProposeError::Membership(MembershipError::AlreadyMember(_)), reply)) => {
                let _ = reply.try_send(Ok(ClientReply::Committed { index: 0 }));
            }
            Err((ProposeError::Membership(e @ MembershipError::AddressConflict { .. }), reply)) => {
                warn!(shard = g, ?change, "membership change refused: {e}");
                let _ = reply.try_send(Err(ClientError::InvalidRequest(e.to_string())));
            }
            Err((ProposeError::ConfChangePending, reply)) => {
                debug!(shard = g, "busy: another membership change is in progress");
                let _ = reply.try_send(Err(busy()));
            }
            Err((e, reply)) => {
                let _ = reply.try_send(Err(ClientError::InvalidRequest(e.to_string())));
            }
        }
        self.kick();
    }

    /// Fails every waiting request (shutdown or a fatal error).
    pub fn fail_all(&mut self, why: &str) {
        for s in self.shards.values_mut() {
            s.read_queue.clear();
            // Proposed writes may still commit (another leader can carry them on).
            for (_, w) in std::mem::take(&mut s.writes) {
                let _ = w.reply.try_send(Err(ClientError::LeadershipLost));
            }
        }
        for (_, r) in self.reads.drain() {
            let _ = r
                .reply
                .try_send(Err(ClientError::Unavailable(why.to_string())));
        }
    }

    /// Drops waiting requests whose asker gave up (timed out), freeing their slots.
    pub fn sweep_abandoned(&mut self) {
        self.reads.retain(|_, r| !r.reply.is_disconnected());
        let reads = &self.reads;
        for s in self.shards.values_mut() {
            s.writes.retain(|_, w| !w.reply.is_disconnected());
            s.read_queue.retain(|(_, ctx)| reads.contains_key(ctx));
        }
    }

    /// Requests waiting on this core.
    pub fn waiting(&self) -> usize {
        self.reads.len() + self.shards.values().map(|s| s.writes.len()).sum::<usize>()
    }
}
