//! Steps 1, 3 and 4 of a round: take the Ready (decoding every received snapshot before any
//! I/O, sending what need not wait and applying the committed entries), persist it (resumable
//! on backpressure), and report it durable. With [`Driver::begin_deferred`] the caller decodes
//! the received snapshots itself, off the executor, between `begin` and `persist`; `persist`
//! installs a received snapshot only with its decoded store (the store swap is one step, so
//! the shard never serves a half-installed state) and hands the replaced store and the
//! received bytes back ([`Round::take_freed`]) for the caller to free off the executor too.

use tracing::debug;

use super::*;
use crate::node::kv::apply::check_truncation;
use crate::raft::{Message, MessageBody, Ready};

/// Where one group's persistence stands (a round resumes here after backpressure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Snapshot,
    Truncate,
    Entries(usize),
    HardState,
    Done,
}

#[derive(Debug)]
struct GroupRound {
    g: GroupId,
    rd: Ready,
    /// The store decoded from the received snapshot, installed with it.
    restored: Option<KvStore>,
    stage: Stage,
    /// The committed entries [`Driver::begin`] applied (moved out of `rd.committed_entries`,
    /// so [`Driver::apply`] does not apply them again).
    applied_early: Vec<Entry>,
    /// The store's applied index before the round applied anything: the truncation check's
    /// bound (the entries applied early are the log's new ones, written after the truncation).
    applied_before: u64,
}

/// One Ready round in progress.
#[derive(Debug)]
pub struct Round {
    groups: Vec<GroupRound>,
    after: Vec<Envelope>,
    /// The group `persist` is at.
    cursor: usize,
    persisted: Vec<(GroupId, u64, u64)>,
    appended: u64,
    /// When the round began, read only when it appended entries or commits entries a write
    /// waits for: the commit time of the writes it applies and the start of a follower's
    /// append.
    pub(super) started: Option<Instant>,
    pub(super) stats: RoundStats,
    /// What installing the round's received snapshots let go of (the replaced stores and the
    /// received bytes), for the caller to free where it likes ([`Round::take_freed`]).
    freed: Freed,
}

/// Memory a round let go of: freeing a large store walks every key, so the node hands this to
/// its blocking pool instead of freeing it on the executor.
#[derive(Debug, Default)]
pub struct Freed {
    /// Stores replaced by received snapshots.
    pub stores: Vec<KvStore>,
    /// Received snapshots' state bytes, once installed.
    pub bytes: Vec<std::sync::Arc<[u8]>>,
}

impl Freed {
    /// Whether there is nothing to free.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty() && self.bytes.is_empty()
    }
}

impl Round {
    /// Snapshots received from a leader in this round: the caller makes each durable (the node
    /// writes its file) before [`Driver::persist`] lets the log forget what it covers.
    pub fn received_snapshots(&self) -> impl Iterator<Item = (GroupId, &Snapshot)> {
        self.groups
            .iter()
            .filter(|gr| gr.stage == Stage::Snapshot)
            .filter_map(|gr| gr.rd.snapshot.as_ref().map(|s| (gr.g, s)))
    }

    /// The state bytes of the received snapshots whose store is not decoded yet (a round begun
    /// with [`Driver::begin_deferred`]): the caller decodes each ([`restore_store`]) where it
    /// likes and hands the store back with [`Round::set_restored`] before
    /// [`Driver::persist`].
    pub fn to_restore(&self) -> Vec<(GroupId, std::sync::Arc<[u8]>)> {
        self.groups
            .iter()
            .filter(|gr| gr.stage == Stage::Snapshot && gr.restored.is_none())
            .filter_map(|gr| gr.rd.snapshot.as_ref().map(|s| (gr.g, s.data.clone())))
            .collect()
    }

    /// The store decoded from group `g`'s received snapshot (see [`Round::to_restore`]).
    pub fn set_restored(&mut self, g: GroupId, kv: KvStore) {
        if let Some(gr) = self
            .groups
            .iter_mut()
            .find(|gr| gr.g == g && gr.stage == Stage::Snapshot && gr.rd.snapshot.is_some())
        {
            gr.restored = Some(kv);
        }
    }

    /// Takes what the round let go of so far (see [`Freed`]).
    pub fn take_freed(&mut self) -> Freed {
        std::mem::take(&mut self.freed)
    }

    /// The committed entries of the round, by group, in order (the simulator checks them),
    /// whether already applied by [`Driver::begin`] or left for [`Driver::apply`].
    pub fn committed(&self) -> impl Iterator<Item = (GroupId, &Entry)> {
        self.groups.iter().flat_map(|gr| {
            gr.applied_early
                .iter()
                .chain(&gr.rd.committed_entries)
                .map(move |e| (gr.g, e))
        })
    }

    /// Groups of the round.
    pub fn groups(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.groups.iter().map(|gr| gr.g)
    }

    /// What the round did so far.
    pub fn stats(&self) -> RoundStats {
        self.stats
    }

    /// Groups in the round.
    pub(super) fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// The group and Ready of the `k`-th group (`k < len()`).
    pub(super) fn ready_mut(&mut self, k: usize) -> (GroupId, &mut Ready) {
        let gr = &mut self.groups[k];
        (gr.g, &mut gr.rd)
    }
}

impl Driver<'_> {
    /// Step 1: takes the next Ready of every group (`None` when there is nothing to do). Reads
    /// `now_nanos` (when given) into the Raft cores first: heartbeat rounds started by this Ready
    /// are stamped with it. Refuses the round (the core must stop) if a received snapshot's
    /// state-machine bytes do not decode; nothing has been written, sent or applied then. Then
    /// sends what need not wait and applies the committed entries of every group that did not
    /// receive a snapshot, answering the writes they decide; an apply invariant broken stops
    /// the core (the error).
    pub fn begin(
        &mut self,
        now_nanos: Option<u64>,
        net: &mut impl Transport,
    ) -> Result<Option<Round>, String> {
        self.begin_with(now_nanos, net, true)
    }

    /// [`Driver::begin`] without decoding the received snapshots: the caller decodes them off
    /// this thread ([`Round::to_restore`], [`Round::set_restored`]) before
    /// [`Driver::persist`], which refuses a received snapshot whose store it was not given. The
    /// shard keeps its old store (and serves from it) until `persist` installs the new one.
    pub fn begin_deferred(
        &mut self,
        now_nanos: Option<u64>,
        net: &mut impl Transport,
    ) -> Result<Option<Round>, String> {
        self.begin_with(now_nanos, net, false)
    }

    fn begin_with(
        &mut self,
        now_nanos: Option<u64>,
        net: &mut impl Transport,
        decode: bool,
    ) -> Result<Option<Round>, String> {
        if !self.multi.has_ready() {
            return Ok(None);
        }
        if let Some(t) = now_nanos {
            self.multi.advance_clock(t);
        }
        let mut mr = self.multi.ready();
        // `has_ready` may report work that `ready` then finds nothing to do for (a leader whose
        // own entries are durable but cannot commit without a quorum): an empty round means
        // "idle", so the caller sleeps until the next event instead of spinning.
        if mr.envelopes.is_empty()
            && mr.envelopes_after_persist.is_empty()
            && mr.groups.iter().all(|(_, rd)| rd.is_empty())
        {
            return Ok(None);
        }
        // Whether this round answers writes: their answers then go out before the round's
        // commit updates to followers (see `defer_commit_updates`).
        let answers = mr.groups.iter().any(|(g, rd)| {
            !rd.committed_entries.is_empty()
                && self.shards.get(g).is_some_and(|s| !s.writes.is_empty())
        });
        // The clock is read once, and only when a stage will be timed from it (the simulator
        // runs this path millions of times).
        let started =
            (answers || mr.groups.iter().any(|(_, rd)| !rd.entries.is_empty())).then(Instant::now);
        let mut stats = RoundStats::default();
        let mut groups = Vec::with_capacity(mr.groups.len());
        for (g, rd) in mr.groups {
            if let Some(ss) = rd.soft_state {
                let term = self.multi.group(g).map_or(0, |r| r.term());
                log_role_change(g, ss.role, ss.leader, term);
                if ss.role == Role::Leader {
                    stats.leaders_elected += 1;
                    self.metrics.leader_elections.inc();
                }
            }
            let restored = match &rd.snapshot {
                Some(s) if decode => Some(
                    restore_store(&s.data, self.faults.kv)
                        .map_err(|e| format!("shard {g}: snapshot from the leader refused: {e}"))?,
                ),
                _ => None,
            };
            let applied_before = self.shards.get(&g).map_or(0, |s| s.kv.applied_index());
            groups.push(GroupRound {
                g,
                rd,
                restored,
                stage: Stage::Snapshot,
                applied_early: Vec::new(),
                applied_before,
            });
        }
        let mut now = std::mem::take(&mut mr.envelopes);
        let mut after = mr.envelopes_after_persist;
        if self.faults.send_before_durable {
            now.append(&mut after);
        } else if answers {
            defer_commit_updates(&mut now, &mut after);
        }
        if !now.is_empty() {
            net.send(now);
        }
        // Committed entries are applied (and the writes they decide answered) now, before the
        // round's own appends are written: committed means held by a quorum (in DiskFirst the
        // leader counts itself only once its copy is durable), so neither applying nor
        // answering waits for this node's storage. A group that received a snapshot applies
        // after `persist` installed it (its entries follow the snapshot).
        for gr in &mut groups {
            if gr.rd.snapshot.is_some() || gr.rd.committed_entries.is_empty() {
                continue;
            }
            let entries = std::mem::take(&mut gr.rd.committed_entries);
            stats.applied += self.apply_entries(gr.g, &entries, started, net)?;
            gr.applied_early = entries;
            // Reads whose index is now applied are served at once too.
            self.serve_ready_reads(gr.g);
        }
        Ok(Some(Round {
            groups,
            after,
            cursor: 0,
            persisted: Vec::new(),
            appended: 0,
            started,
            stats,
            freed: Freed::default(),
        }))
    }

    /// Step 3: persists the round into `storage`, group by group: the received snapshot (its file
    /// is durable by now), a conflicting suffix truncated (never an applied entry), the entries,
    /// the hard state. Resumable: after [`PersistError::Backpressure`] call it again with the
    /// same round once the storage made progress durable. Returns the batch to hand to
    /// [`Driver::on_durable`] once the storage reached its ticket.
    pub fn persist(
        &mut self,
        round: &mut Round,
        storage: &mut impl Storage,
    ) -> Result<PersistBatch, PersistError> {
        while let Some(gr) = round.groups.get_mut(round.cursor) {
            let g = gr.g;
            loop {
                match gr.stage {
                    Stage::Snapshot => {
                        if let Some(snap) = &mut gr.rd.snapshot {
                            if gr.restored.is_none() {
                                return Err(failed(
                                    g,
                                    "received snapshot installed without its decoded store",
                                ));
                            }
                            storage
                                .install_snapshot(g, snap)
                                .map_err(|e| storage_err(g, "install snapshot", e))?;
                            let index = snap.meta.index;
                            round
                                .freed
                                .bytes
                                .push(std::mem::replace(&mut snap.data, Arc::from(&[][..])));
                            let kv = gr.restored.take();
                            if let (Some(shard), Some(kv)) = (self.shards.get_mut(&g), kv) {
                                round
                                    .freed
                                    .stores
                                    .push(std::mem::replace(&mut shard.kv, kv));
                                shard.fail_writes_through(index);
                                // The history cannot hold what the snapshot skipped: it starts
                                // over at the snapshot, cancelling watchers behind it.
                                shard.watch.sync(index);
                            }
                            if index > 0 {
                                round.stats.snapshots_installed += 1;
                                info!(
                                    shard = g,
                                    index,
                                    term = snap.meta.term,
                                    "installed snapshot"
                                );
                            }
                        }
                        gr.stage = Stage::Truncate;
                    }
                    Stage::Truncate => {
                        if let Some(first) = gr.rd.entries.first().map(|e| e.index) {
                            if storage.last_index(g) >= first {
                                // Entries applied early in this round are the new ones at
                                // these indexes, not the stored ones the truncation removes.
                                let applied = if gr.applied_early.is_empty() {
                                    self.shards.get(&g).map_or(0, |s| s.kv.applied_index())
                                } else {
                                    gr.applied_before
                                };
                                check_truncation(first, applied).map_err(|v| failed(g, v))?;
                                storage
                                    .truncate(g, first)
                                    .map_err(|e| storage_err(g, "truncate", e))?;
                            }
                        }
                        gr.stage = Stage::Entries(0);
                    }
                    Stage::Entries(i) => {
                        let Some(e) = gr.rd.entries.get(i) else {
                            round.appended += gr.rd.entries.len() as u64;
                            gr.stage = Stage::HardState;
                            continue;
                        };
                        storage.append(g, e).map_err(|err| {
                            storage_err(g, &format!("append of entry {}", e.index), err)
                        })?;
                        gr.stage = Stage::Entries(i + 1);
                    }
                    Stage::HardState => {
                        if let Some(hs) = &gr.rd.hard_state {
                            storage
                                .set_hard_state(g, hs)
                                .map_err(|e| storage_err(g, "hard state", e))?;
                        }
                        // Reported once per Ready that persisted anything, in order, once durable.
                        if let Some((i, t)) = gr.rd.persisted {
                            round.persisted.push((g, i, t));
                        }
                        gr.stage = Stage::Done;
                    }
                    Stage::Done => break,
                }
            }
            round.cursor += 1;
        }
        Ok(PersistBatch {
            ticket: storage.ticket(),
            started: round.started.filter(|_| round.appended > 0),
            persisted: std::mem::take(&mut round.persisted),
            after: std::mem::take(&mut round.after),
            appended: std::mem::take(&mut round.appended),
            sync_here: false,
        })
    }

    /// Step 4: the storage reached `batch`'s ticket: records the durability stages, reports the
    /// marks to the Raft cores in order and sends what waited for durability. A mark the core
    /// refuses is returned as an error after the rest are reported (the node logs it; the
    /// simulator reports a violation). [`Durable::follower`] is when a follower's appends in
    /// the batch became durable, for [`note_acked`] once their acknowledgements are
    /// queued.
    pub fn on_durable(&mut self, batch: PersistBatch, net: &mut impl Transport) -> Durable {
        let follower = self.note_durable(&batch);
        let mut refused = None;
        for (g, index, term) in batch.persisted {
            if let Err(e) = self.multi.on_persisted(g, index, term) {
                debug!(shard = g, "on_persisted: {e}");
                refused.get_or_insert(format!("shard {g}: on_persisted({index}, {term}): {e}"));
            }
        }
        let acks = !batch.after.is_empty();
        if acks {
            net.send(batch.after);
        }
        Durable {
            follower: follower.filter(|_| acks),
            refused,
        }
    }

    /// Records the durability stages of a batch: on a leader each waiting write it covers
    /// becomes locally durable (proposed → locally durable); on a follower the batch's appends
    /// went from received to durable. The clock is read once, only when a stage is timed.
    /// Returns when a follower's appends became durable.
    fn note_durable(&mut self, b: &PersistBatch) -> Option<Instant> {
        let st = &self.metrics.stages;
        let mut at = None;
        let mut follower = false;
        for &(g, index, _) in &b.persisted {
            if self.multi.group(g).map(|r| r.role()) != Some(Role::Leader) {
                follower |= b.appended > 0;
                continue;
            }
            let Some(shard) = self.shards.get_mut(&g) else {
                continue;
            };
            // Storage is durable in order: below the first write already marked durable every
            // write is marked too, so the walk stops there.
            for (_, w) in shard.writes.range_mut(..=index).rev() {
                if w.durable {
                    break;
                }
                w.durable = true;
                let now = *at.get_or_insert_with(Instant::now);
                st.proposed_to_local_durable.record_between(w.started, now);
            }
        }
        let started = b.started.filter(|_| follower)?;
        let now = *at.get_or_insert_with(Instant::now);
        st.append_received_to_durable.record_between(started, now);
        Some(now)
    }
}

/// Moves the round's commit updates (Appends without entries: a follower told a commit index
/// it has not seen, or a probe) from the envelopes sent now to those sent once the round is
/// durable, in destination order. Used when the round answers writes: the updates wake the
/// peers' connection writers, which would otherwise run (and write to their sockets) before
/// the answers' request tasks and their connection writers. Delaying a message is always
/// safe in Raft; nothing waits on a commit update but a follower's apply.
pub(super) fn defer_commit_updates(now: &mut Vec<Envelope>, after: &mut Vec<Envelope>) {
    let is_update =
        |m: &Message| matches!(&m.body, MessageBody::Append { entries, .. } if entries.is_empty());
    let mut moved = false;
    for e in now.iter_mut() {
        if !e.messages.iter().any(|(_, m)| is_update(m)) {
            continue;
        }
        let (updates, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut e.messages)
            .into_iter()
            .partition(|(_, m)| is_update(m));
        e.messages = rest;
        moved = true;
        match after.iter_mut().find(|a| a.to == e.to) {
            Some(a) => a.messages.extend(updates),
            None => after.push(Envelope {
                from: e.from,
                to: e.to,
                messages: updates,
                heartbeats: Vec::new(),
                heartbeat_responses: Vec::new(),
            }),
        }
    }
    if moved {
        now.retain(|e| e.message_count() > 0);
        after.sort_by_key(|e| e.to);
    }
}

/// Records a follower's durable → acknowledged stage once the acknowledgements that waited for
/// durability (`durable`: [`Durable::follower`]) are queued on the network.
pub fn note_acked(metrics: &CoreMetrics, durable: Option<Instant>) {
    if let Some(at) = durable {
        metrics
            .stages
            .append_durable_to_acked
            .record_between(at, Instant::now());
    }
}

/// What [`Driver::on_durable`] found.
#[derive(Debug, Default)]
pub struct Durable {
    /// When a follower's appends of the batch became durable (their acknowledgements were
    /// just sent).
    pub follower: Option<Instant>,
    /// The first durability mark a Raft core refused.
    pub refused: Option<String>,
}
