//! The apply stage of the driver: committed entries into the shard's store (through the
//! shared [`crate::node::kv::apply::apply_entry`] checks), waiting writes answered, reads
//! served once their index is applied, and in-memory snapshots taken.

use super::*;

impl CoreState {
    pub(super) fn apply_ready(
        &mut self,
        g: GroupId,
        rd: Ready,
    ) -> Result<Option<SnapshotWrite>, String> {
        let now = Instant::now();
        let leader = self.multi.group(g).map_or(0, |r| r.leader());
        let committed = self.multi.group(g).map_or(0, |r| r.log().committed());
        let not_leader = self.not_leader(leader);
        let Some(shard) = self.shards.get_mut(&g) else {
            return Ok(None);
        };
        let mut membership_changed = false;
        for e in &rd.committed_entries {
            self.metrics.entries_committed.inc();
            let result =
                apply_entry(&mut shard.kv, e, committed).map_err(|v| format!("shard {g}: {v}"))?;
            shard
                .watch
                .on_entry(e.index, result.as_ref().map(|r| (&e.data[..], r)));
            membership_changed |= e.kind == EntryKind::Config;
            self.metrics.entries_applied.inc();
            // Writes proposed at or below this index are decided now.
            while let Some((&i, _)) = shard.writes.first_key_value() {
                if i > e.index {
                    break;
                }
                let Some(w) = shard.writes.remove(&i) else {
                    break;
                };
                let answer = if i == e.index && w.term == e.term {
                    match (&result, e.kind) {
                        (Some(r), _) => Ok(ClientReply::Applied(r.clone())),
                        (None, EntryKind::Config) => Ok(ClientReply::Committed { index: i }),
                        (None, _) => Err(ClientError::Superseded),
                    }
                } else if i == e.index {
                    // Another term's entry committed at the write's index: the write's own
                    // entry can never commit.
                    Err(ClientError::Superseded)
                } else {
                    // The write's index was passed without this core seeing its entry
                    // applied (a snapshot covered it): it may be in the snapshot.
                    Err(ClientError::LeadershipLost)
                };
                self.metrics
                    .commit_latency_us
                    .record(now.duration_since(w.started).as_micros() as u64);
                let _ = w.reply.try_send(answer);
            }
        }
        if let Some(shard) = self.shards.get_mut(&g) {
            shard.watch.flush();
        }
        if membership_changed {
            self.refresh_peers(g);
        }
        for rs in &rd.read_states {
            if let Some(r) = self.reads.get_mut(&rs.ctx) {
                r.index = Some(rs.index);
                if let Some(shard) = self.shards.get_mut(&r.group) {
                    shard.read_queue.insert((rs.index, rs.ctx));
                }
            }
        }
        for ctx in &rd.reads_dropped {
            if let Some(r) = self.reads.remove(ctx) {
                let _ = r.reply.try_send(Err(not_leader.clone()));
            }
        }
        self.serve_ready_reads(g);
        Ok(rd.snapshot_request.and_then(|_| self.take_snapshot(g)))
    }

    pub(super) fn serve_ready_reads(&mut self, g: GroupId) {
        let now = Instant::now();
        loop {
            let Some(shard) = self.shards.get_mut(&g) else {
                return;
            };
            let applied = shard.kv.applied_index();
            match shard.read_queue.first() {
                Some(&(index, ctx)) if index <= applied => {
                    shard.read_queue.remove(&(index, ctx));
                    if let Some(r) = self.reads.remove(&ctx) {
                        let res = self.read_local(g, &r.op);
                        self.metrics
                            .read_latency_us
                            .record(now.duration_since(r.started).as_micros() as u64);
                        let _ = r.reply.try_send(res);
                    }
                }
                _ => return,
            }
        }
    }

    /// Compacts the shard's log at its applied index (in memory); the file is written by the
    /// driver, off the executor thread, before the WAL forgets anything.
    pub(super) fn take_snapshot(&mut self, g: GroupId) -> Option<SnapshotWrite> {
        let shard = self.shards.get(&g)?;
        let index = shard.kv.applied_index();
        let data = shard.kv.snapshot();
        let path = shard.snapshot_path.clone();
        let raft = self.multi.group_mut(g)?;
        if let Err(e) = raft.compact(index, data) {
            debug!(shard = g, "snapshot at {index} not taken: {e}");
            return None;
        }
        let snap = raft.snapshot().cloned()?;
        Some(SnapshotWrite { g, path, snap })
    }

    /// After a snapshot file is durable: the WAL drops what it covers.
    pub(super) fn snapshot_written(&mut self, w: &SnapshotWrite, written: std::io::Result<()>) {
        let index = w.snap.meta.index;
        match written {
            Ok(()) => {
                if let Err(e) = self.wal.purge(w.g, index + 1) {
                    warn!(shard = w.g, "WAL purge after snapshot at {index}: {e}");
                }
                info!(shard = w.g, index, "snapshot taken");
            }
            Err(e) => {
                self.metrics.error(ErrorKind::WalIo);
                warn!(
                    shard = w.g,
                    "cannot write snapshot {}: {e}",
                    w.path.display()
                );
            }
        }
    }
}
