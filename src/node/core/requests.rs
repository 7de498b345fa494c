//! Client requests on one core: admission, proposing writes, starting reads at the chosen
//! consistency, membership changes, leadership transfer, and failing or sweeping what waits.
//!
//! Copies of a put's value on the leader, counted by reading the path (frame API): (1) the
//! frame's archive is deserialized into an owned `ClientOp`; (2) [`Command::encode`] writes the
//! command bytes; (3) `Raft::propose` turns that `Vec` into the entry's `Arc<[u8]>`; (4)
//! `storage::entry_payload` prefixes the entry kind byte; (5) the WAL copies the payload into
//! its segment (the one copy durability needs); (6) applying decodes the command and the store
//! keeps the decoded value. Six copies, against a target of the WAL write and one more:
//! encoding straight from the archived frame into the entry's shared buffer and a WAL append
//! that takes the kind byte and the data separately would remove (1), (3) and (4). Besides
//! these, each follower's append carries the value once more in its frame. The answer path
//! copies nothing of it: the frame API keeps only what an answer reads back (a scan's limit, a
//! CAS's new value), and the answer travels on a one-shot channel ([`Reply`]: one allocation,
//! where a bounded channel took a queue, a waiter hook and a lock per request).
//!
//! Write stages: a write carries when it reached the node and when it was proposed; the
//! persist loop marks it locally durable ([`CoreState::note_durable`]) and the apply stage
//! answers it ([`answer_write`]), each recording its stage into the core's own histograms
//! (`CoreMetrics::stages`: relaxed atomic adds, no lock, no sharing across cores). A write
//! answered before the leader's own sync covering it completed is counted, not timed, for
//! that stage.

use super::*;
use crate::node::metrics::CoreMetrics as Metrics;
use crate::raft::TransferError;

/// Where an answer goes: a one-shot channel to the asking task (which may live on another
/// core). One allocation per request, a lock-free hand-over, and the asker is woken once.
#[derive(Debug)]
pub struct Reply(futures_channel::oneshot::Sender<ClientResult>);

/// The asking side of a [`Reply`]: a future of the answer (`Err` when the core dropped the
/// request without answering).
pub type ReplyReceiver = futures_channel::oneshot::Receiver<ClientResult>;

/// A new one-shot answer channel.
pub fn reply_channel() -> (Reply, ReplyReceiver) {
    let (tx, rx) = futures_channel::oneshot::channel();
    (Reply(tx), rx)
}

impl Reply {
    /// Hands over the answer; `Err` gives it back when the asker is gone.
    pub fn try_send(self, r: ClientResult) -> Result<(), ClientResult> {
        self.0.send(r)
    }

    /// The asker gave up (timed out or its connection closed).
    pub fn is_disconnected(&self) -> bool {
        self.0.is_canceled()
    }
}

/// Answers a write that left the log and records its last stages (committed → applied →
/// answered, and the whole write on this node).
pub(super) fn answer_write(
    m: &Metrics,
    w: PendingWrite,
    answer: ClientResult,
    committed: Instant,
    applied: Option<Instant>,
) {
    let st = &m.stages;
    let applied = applied.unwrap_or(committed);
    st.proposed_to_committed
        .record_between(w.started, committed);
    st.committed_to_applied.record_between(committed, applied);
    if !w.durable {
        st.commit_before_local_durable.inc();
    }
    let _ = w.reply.try_send(answer);
    let answered = Instant::now();
    st.applied_to_answered.record_between(applied, answered);
    st.received_to_answered.record_between(w.received, answered);
}

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
    /// `received` is when the request reached the node (its first stage).
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
                let res = self.read_local(group, &op);
                let _ = reply.try_send(res);
                return;
            }
            ClientOp::Get { consistency, .. } | ClientOp::Scan { consistency, .. } => {
                self.start_read(group, op, consistency, reply)
            }
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

    pub(super) fn read_local(&self, group: GroupId, op: &ClientOp) -> ClientResult {
        let shard = self.shards.get(&group).ok_or(ClientError::WrongShard {
            shard: group as u32,
        })?;
        Ok(match op {
            ClientOp::Get { key, .. } => ClientReply::Value(shard.kv.get(key).cloned()),
            ClientOp::Scan { prefix, limit, .. } => ClientReply::Scan(shard.kv.scan_prefix(
                prefix,
                (*limit).min(self.cfg.state_machine.max_scan_results),
            )),
            _ => return Err(ClientError::InvalidRequest("not a read".into())),
        })
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
        let Some(raft) = self.multi.group_mut(group) else {
            return Err((
                ClientError::WrongShard {
                    shard: group as u32,
                },
                reply,
            ));
        };
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let mode = match consistency {
            Consistency::Lease => ReadMode::Lease,
            _ => ReadMode::ReadIndex,
        };
        // The clock is read now, not taken from the last tick: a leader whose executor or
        // process stalled past its lease refuses lease reads at once on resume, before its tick
        // loop runs again.
        match raft.read_at(ctx, mode, monotonic_nanos()) {
            Ok(()) => {
                self.metrics.reads[consistency.metric_index()].inc();
                self.reads.insert(
                    ctx,
                    PendingRead {
                        group,
                        op,
                        reply,
                        started: Instant::now(),
                        index: None,
                    },
                );
                Ok(())
            }
            Err(ReadError::NotLeader { leader }) => Err((self.not_leader(leader), reply)),
            Err(ReadError::TooManyReads) => Err((busy(), reply)),
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
        if !self.shards.contains_key(&group) {
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
        let Some(raft) = self.multi.group_mut(group) else {
            return Err((
                ClientError::WrongShard {
                    shard: group as u32,
                },
                reply,
            ));
        };
        let term = raft.term();
        match raft.propose(cmd.encode()) {
            Ok(index) => {
                self.metrics.proposals.inc();
                if let Some(shard) = self.shards.get_mut(&group) {
                    shard.add_write(index, term, reply, received);
                    if let Some(w) = shard.writes.get(&index) {
                        self.metrics
                            .stages
                            .received_to_proposed
                            .record_between(received, w.started);
                    }
                }
                Ok(())
            }
            Err(ProposeError::NotLeader { leader }) => Err((self.not_leader(leader), reply)),
            Err(ProposeError::TooManyUncommitted) => Err((busy(), reply)),
            Err(e) => Err((ClientError::Unavailable(e.to_string()), reply)),
        }
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
        let Some(raft) = self.multi.group_mut(g) else {
            let _ = reply.try_send(Err(ClientError::WrongShard { shard: g as u32 }));
            return;
        };
        let term = raft.term();
        match raft.propose_conf_change(change) {
            Ok(index) => {
                info!(shard = g, ?change, index, "membership change proposed");
                if let Some(shard) = self.shards.get_mut(&g) {
                    shard.add_write(index, term, reply, Instant::now());
                }
            }
            Err(ProposeError::NotLeader { leader }) => {
                let _ = reply.try_send(Err(self.not_leader(leader)));
            }
            Err(ProposeError::Membership(MembershipError::AlreadyMember(_))) => {
                let _ = reply.try_send(Ok(ClientReply::Committed { index: 0 }));
            }
            Err(ProposeError::ConfChangePending) => {
                debug!(shard = g, "busy: another membership change is in progress");
                let _ = reply.try_send(Err(busy()));
            }
            Err(e) => {
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

    /// Records the durability stages of a persisted batch, made durable at `at`: on a leader
    /// each waiting write it covers becomes locally durable (proposed → locally durable); on
    /// a follower the batch's appends went from received to durable. Returns `Some(at)` when
    /// the batch carried a follower's appends (whose acknowledgement the persist loop sends
    /// next).
    pub(super) fn note_durable(&mut self, b: &PersistBatch, at: Instant) -> Option<Instant> {
        let st = &self.metrics.stages;
        let mut follower = false;
        for &(g, index, _) in &b.persisted {
            let leader = self
                .multi
                .group(g)
                .is_some_and(|r| r.role() == Role::Leader);
            if !leader {
                follower |= b.appended > 0;
                continue;
            }
            let Some(shard) = self.shards.get_mut(&g) else {
                continue;
            };
            // The WAL is durable in order: below the first write already marked durable,
            // every write is marked too, so the walk stops there.
            for (_, w) in shard.writes.range_mut(..=index).rev() {
                if w.durable {
                    break;
                }
                w.durable = true;
                st.proposed_to_local_durable.record_between(w.started, at);
            }
        }
        if follower {
            st.append_received_to_durable.record_between(b.started, at);
            return Some(at);
        }
        None
    }

    /// Records a follower's durable → acknowledged stage once the persist loop queued what
    /// waited for durability (`sent`: there was something).
    pub(super) fn note_acked(&self, durable: Option<Instant>, sent: bool) {
        if let (Some(at), true) = (durable, sent) {
            self.metrics
                .stages
                .append_durable_to_acked
                .record_between(at, Instant::now());
        }
    }

    /// Requests waiting on this core.
    pub fn waiting(&self) -> usize {
        self.reads.len() + self.shards.values().map(|s| s.writes.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod stage_tests {
    use super::*;
    use crate::node::kv::WriteOp;

    /// A put through a real single-node core (driver, persist loop, clock, WAL on disk) passes
    /// every leader stage once, and, as a lone node can only commit what it made durable, its
    /// local sync comes before the commit.
    #[test]
    fn a_put_on_a_real_core_records_every_leader_stage() {
        let dir = std::env::temp_dir().join(format!("ringraft-stages-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let text = format!(
            "[cluster]\nnode_id = 1\nlisten_address = \"127.0.0.1:9181\"\ninitial_cluster_size = 1\n\
             db_root_dir = \"{}\"\n[raft]\nelection_timeout_ms_min = 60\n\
             election_timeout_ms_max = 120\nheartbeat_interval_ms = 20\ntick_interval_ms = 5\n\
             [raft.read_consistency]\nlease_duration_ms = 40\n",
            dir.display()
        );
        let cfg = Arc::new(Config::from_toml_with_env(&text, &[]).unwrap());
        let metrics = Arc::new(CoreMetrics::default());
        let gauges = vec![Arc::new(ShardGauges::default())];
        let m = metrics.clone();
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .unwrap();
        let answer = ex.run(async move {
            let (st, chans) = CoreState::open(cfg, 0, &[0], m, &gauges).unwrap();
            let durability = st.durability();
            let st = Rc::new(RefCell::new(st));
            glommio::spawn_local(super::super::drive(st.clone(), chans.kick_rx)).detach();
            glommio::spawn_local(super::super::persist_loop(
                st.clone(),
                chans.persist_rx,
                durability,
            ))
            .detach();
            glommio::spawn_local(super::super::tick_loop(
                st.clone(),
                Duration::from_millis(5),
            ))
            .detach();
            let deadline = Instant::now() + Duration::from_secs(10);
            while st.borrow().multi.group(0).map(|r| r.role()) != Some(Role::Leader) {
                assert!(Instant::now() < deadline, "no leader within 10 s");
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            let (tx, rx) = reply_channel();
            let op = ClientOp::Write(WriteOp::Put {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            });
            st.borrow_mut().submit(0, 0, 0, op, tx, Instant::now());
            let got =
                glommio::timer::timeout(Duration::from_secs(10), async { Ok(rx.await.ok()) }).await;
            st.borrow_mut().fail_all("test over");
            got
        });
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            matches!(answer, Ok(Some(Ok(ClientReply::Applied(_))))),
            "{answer:?}"
        );
        let s = &metrics.stages;
        for (name, h) in [
            ("received_to_proposed", &s.received_to_proposed),
            ("proposed_to_local_durable", &s.proposed_to_local_durable),
            ("proposed_to_committed", &s.proposed_to_committed),
            ("committed_to_applied", &s.committed_to_applied),
            ("applied_to_answered", &s.applied_to_answered),
            ("received_to_answered", &s.received_to_answered),
        ] {
            assert_eq!(h.count(), 1, "{name}");
        }
        assert_eq!(s.commit_before_local_durable.get(), 0);
        assert_eq!(s.append_received_to_durable.count(), 0);
        assert_eq!(s.append_durable_to_acked.count(), 0);
    }
}
