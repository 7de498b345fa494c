//! Step 5 of a round: committed entries into the shard's store (through the shared
//! [`crate::node::kv::apply::apply_entry`] checks), waiting writes answered, reads served once
//! their index is applied, and requested snapshots taken in memory.

use tracing::{debug, warn};

use super::*;
use crate::node::kv::apply::apply_entry;
use crate::node::watch::events::Applied;
use crate::raft::EntryKind;

impl Driver<'_> {
    /// Applies the round's committed entries and answers what they decide. Returns the snapshots
    /// taken in memory, whose files the caller writes (then [`Storage::snapshot_saved`]). An
    /// apply invariant broken stops the core (the error).
    pub fn apply(
        &mut self,
        round: &mut Round,
        net: &mut impl Transport,
    ) -> Result<Vec<SnapshotTaken>, String> {
        let mut snapshots = Vec::new();
        for k in 0..round.group_count() {
            let (g, rd) = round.ready_mut(k);
            let committed_entries = std::mem::take(&mut rd.committed_entries);
            let read_states = std::mem::take(&mut rd.read_states);
            let reads_dropped = std::mem::take(&mut rd.reads_dropped);
            let snapshot_request = rd.snapshot_request.take();
            let applied = self.apply_entries(g, &committed_entries, round.started, net)?;
            round.stats.applied += applied;
            round.ready_mut(k).1.committed_entries = committed_entries;
            for rs in &read_states {
                if let Some(r) = self.reads.get_mut(&rs.ctx) {
                    r.index = Some(rs.index);
                    if let Some(shard) = self.shards.get_mut(&r.group) {
                        shard.read_queue.insert((rs.index, rs.ctx));
                    }
                }
            }
            if !reads_dropped.is_empty() {
                let leader = self.multi.group(g).map_or(0, |r| r.leader());
                let answer = net.not_leader(leader);
                for ctx in &reads_dropped {
                    if let Some(r) = self.reads.remove(ctx) {
                        let _ = r.reply.try_send(Err(answer.clone()));
                    }
                }
            }
            self.serve_ready_reads(g);
            if snapshot_request.is_some() {
                if let Some(w) = self.take_snapshot(g) {
                    round.stats.snapshots_taken += 1;
                    snapshots.push(w);
                }
            }
        }
        Ok(snapshots)
    }

    /// Applies `entries` of group `g`, answering the writes they decide; the round that found
    /// them committed began at `round_started`. Returns how many.
    pub(super) fn apply_entries(
        &mut self,
        g: GroupId,
        entries: &[Entry],
        round_started: Option<Instant>,
        net: &mut impl Transport,
    ) -> Result<u64, String> {
        if entries.is_empty() {
            return Ok(0);
        }
        let committed = self.multi.group(g).map_or(0, |r| r.log().committed());
        let Some(shard) = self.shards.get_mut(&g) else {
            return Ok(0);
        };
        let mut membership_changed = false;
        self.metrics.entries_committed.add(entries.len() as u64);
        for e in entries {
            let result =
                apply_entry(&mut shard.kv, e, committed).map_err(|v| format!("shard {g}: {v}"))?;
            // The watch history sees every entry (a gap means a snapshot was installed); its
            // events come from the command, its result and the keys a lease took with it.
            let dropped = shard.kv.take_dropped_keys();
            shard.watch.on_entry(
                e.index,
                result.as_ref().map(|r| Applied {
                    data: &e.data,
                    result: r,
                    dropped: &dropped,
                }),
            );
            membership_changed |= e.kind == EntryKind::Config;
            // The clock is read once per entry that decides a write, and never otherwise (the
            // simulator runs this path millions of times).
            let applied_at = shard
                .writes
                .first_key_value()
                .filter(|(&i, _)| i <= e.index)
                .map(|_| Instant::now());
            // Writes proposed at or below this index are decided now.
            while let Some(entry) = shard.writes.first_entry() {
                let i = *entry.key();
                if i > e.index {
                    break;
                }
                let w = entry.remove();
                let same_entry =
                    i == e.index && (w.term == e.term || self.faults.answer_ignores_term);
                let answer = if same_entry {
                    match (&result, e.kind) {
                        (Some(r), _) => Ok(ClientReply::Applied(r.clone())),
                        (None, EntryKind::Config) => Ok(ClientReply::Committed { index: i }),
                        (None, _) => Err(ClientError::Superseded),
                    }
                } else if i == e.index {
                    // Another term's entry committed at the write's index: the write's own entry
                    // can never commit.
                    Err(ClientError::Superseded)
                } else {
                    // The write's index was passed without this core seeing its entry applied
                    // (a snapshot covered it): it may be in the snapshot.
                    Err(ClientError::LeadershipLost)
                };
                let Some(applied_at) = applied_at else {
                    let _ = w.reply.try_send(answer);
                    continue;
                };
                self.metrics
                    .commit_latency_us
                    .record(applied_at.saturating_duration_since(w.started).as_micros() as u64);
                if same_entry {
                    answer_write(self.metrics, w, answer, round_started, applied_at);
                } else {
                    let _ = w.reply.try_send(answer);
                }
            }
        }
        self.metrics.entries_applied.add(entries.len() as u64);
        shard.watch.flush();
        if membership_changed {
            net.membership_changed(g);
        }
        Ok(entries.len() as u64)
    }

    /// Serves the queued reads of `g` whose read index is applied.
    pub fn serve_ready_reads(&mut self, g: GroupId) {
        let Some(shard) = self.shards.get_mut(&g) else {
            return;
        };
        if shard.read_queue.is_empty() {
            return;
        }
        let now = Instant::now();
        let applied = shard.kv.applied_index();
        while let Some(&(index, ctx)) = shard.read_queue.first() {
            if index > applied {
                return;
            }
            shard.read_queue.remove(&(index, ctx));
            if let Some(r) = self.reads.remove(&ctx) {
                let res = read_local(shard, &r.op, self.max_scan_results);
                self.metrics
                    .read_latency_us
                    .record(now.saturating_duration_since(r.started).as_micros() as u64);
                let _ = r.reply.try_send(res);
            }
        }
    }

    /// Freezes the shard's store at its applied index: an O(1) clone (the shard keeps
    /// applying). The caller builds its bytes and hands them to [`Driver::compact_taken`].
    pub fn take_snapshot(&mut self, g: GroupId) -> Option<SnapshotTaken> {
        let t0 = Instant::now();
        let state = self.shards.get(&g)?.kv.clone();
        self.metrics
            .snapshot_take_us
            .record(t0.elapsed().as_micros() as u64);
        Some(SnapshotTaken { group: g, state })
    }

    /// The bytes `data` of a snapshot taken of `g` at `index` are built: compacts the shard's log at its
    /// index (in memory); the caller writes the returned snapshot's file before the log
    /// forgets anything. `None` when the log has moved past it (a newer snapshot, taken or
    /// received meanwhile): nothing to write.
    pub fn compact_taken(
        &mut self,
        g: GroupId,
        index: u64,
        data: std::sync::Arc<[u8]>,
    ) -> Option<SnapshotWrite> {
        let raft = self.multi.group_mut(g)?;
        if let Err(e) = raft.compact(index, data) {
            debug!(shard = g, "snapshot at {index} not taken: {e}");
            return None;
        }
        let snap = raft.snapshot().cloned()?;
        Some(SnapshotWrite { group: g, snap })
    }

    /// After a locally taken snapshot's file is durable (or failed to be written): the log drops
    /// what it covers.
    pub fn snapshot_written(
        &mut self,
        w: &SnapshotWrite,
        written: Result<(), String>,
        storage: &mut impl Storage,
    ) {
        let index = w.snap.meta.index;
        match written.and_then(|()| {
            storage
                .snapshot_saved(w.group, &w.snap)
                .map_err(|e| format!("{e:?}"))
        }) {
            Ok(()) => info!(shard = w.group, index, "snapshot taken"),
            Err(e) => {
                self.metrics.error(crate::node::metrics::ErrorKind::WalIo);
                warn!(shard = w.group, "snapshot at {index}: {e}");
            }
        }
    }
}

/// Answers a write whose own entry was applied at `applied` and records its last stages:
/// proposed → committed (the round that found it committed began at `committed`; `None`
/// when that round read no clock, then the apply time stands in), committed → applied,
/// applied → answered and the whole write on this node; a write answered before the leader's
/// own storage made it durable is counted, its local-durable stage left untimed.
fn answer_write(
    m: &CoreMetrics,
    w: PendingWrite,
    answer: ClientResult,
    committed: Option<Instant>,
    applied: Instant,
) {
    let st = &m.stages;
    let committed = committed.unwrap_or(applied);
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
