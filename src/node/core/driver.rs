//! The driver: the Ready loop of one core (send, persist to the WAL, hand durability to the
//! persist loop, apply, answer), the persist loop, the tick loop and the snapshot file writes.

use super::*;

/// One round of the driver: returns false when there was nothing to do.
async fn ready_round(st: &Rc<RefCell<CoreState>>) -> Result<bool, String> {
    let mr = {
        let mut s = st.borrow_mut();
        if !s.multi.has_ready() {
            return Ok(false);
        }
        // Heartbeat rounds started by `ready` are stamped with this time (the lease runs from
        // it), read before anything of the round is sent.
        s.multi.advance_clock(monotonic_nanos());
        s.round_started = Instant::now();
        let mr = s.multi.ready();
        // `has_ready` may report work that `ready` then finds nothing to do for (a leader whose
        // own entries are durable but cannot commit without a quorum): an empty round means
        // "idle", so the driver sleeps until the next kick instead of spinning.
        if mr.envelopes.is_empty()
            && mr.envelopes_after_persist.is_empty()
            && mr.groups.iter().all(|(_, rd)| rd.is_empty())
        {
            return Ok(false);
        }
        s.send_envelopes(&mr.envelopes);
        mr
    };
    let mut persisted = Vec::new();
    let mut appended = 0u64;
    let mut applies: Vec<(GroupId, Ready)> = Vec::with_capacity(mr.groups.len());
    for (g, mut rd) in mr.groups {
        if let Some(ss) = rd.soft_state {
            let s = st.borrow();
            if ss.role == Role::Leader {
                let term = s.multi.group(g).map_or(0, |r| r.term());
                info!(target: crate::node::logging::LEADERSHIP_TARGET, shard = g, term, node = s.node_id, "Became leader");
                s.metrics.leader_elections.inc();
            } else {
                info!(target: crate::node::logging::LEADERSHIP_TARGET, shard = g, role = ?ss.role, leader = ss.leader, "role changed");
            }
        }
        if let Some(snap) = rd.snapshot.take() {
            persist_snapshot(st, g, &snap).await?;
        }
        if !rd.entries.is_empty() {
            let first = rd.entries[0].index;
            {
                let mut s = st.borrow_mut();
                if s.wal.last_index(g) >= first {
                    let applied = s.shards.get(&g).map_or(0, |sh| sh.kv.applied_index());
                    check_truncation(first, applied).map_err(|v| format!("shard {g}: {v}"))?;
                    s.wal.truncate(g, first).map_err(|e| {
                        wal_failure(format!("shard {g}: WAL truncate at {first}"), &e)
                    })?;
                }
            }
            for e in &rd.entries {
                let payload = storage::entry_payload(e);
                append_with_backpressure(st, g, e.index, e.term, &payload).await?;
            }
            appended += rd.entries.len() as u64;
        }
        if let Some(hs) = rd.hard_state {
            let wal_hs = storage::to_wal_hard_state(&hs);
            loop {
                let r = st.borrow_mut().wal.set_hard_state(g, wal_hs);
                match r {
                    Ok(_) => break,
                    Err(e) if is_backpressure(&e) => wait_durable_now(st).await?,
                    Err(e) => return Err(wal_failure(format!("shard {g}: WAL hard state"), &e)),
                }
            }
        }
        // Reported once per Ready that persisted anything, in order, after it is durable.
        if let Some(p) = rd.persisted {
            persisted.push((g, p.0, p.1));
        }
        applies.push((g, rd));
    }
    let batch = {
        let s = st.borrow();
        PersistBatch {
            lsn: s.wal.last_lsn(),
            started: s.round_started,
            persisted,
            after: mr.envelopes_after_persist,
            appended,
        }
    };
    let tx = st.borrow().persist_tx.clone();
    if !batch.persisted.is_empty() || !batch.after.is_empty() {
        tx.send_async(batch)
            .await
            .map_err(|_| "the persist loop stopped".to_string())?;
    }
    let mut snapshots = Vec::new();
    {
        let mut s = st.borrow_mut();
        for (g, rd) in applies {
            snapshots.extend(s.apply_ready(g, rd)?);
            s.update_gauges(g);
        }
    }
    // One at a time and awaited: a shard's snapshot files are written in order.
    for w in snapshots {
        let written = write_snapshot_file(w.path.clone(), w.snap.clone()).await;
        st.borrow_mut().snapshot_written(&w, written);
    }
    Ok(true)
}

/// A snapshot taken in memory whose file is still to be written.
#[derive(Debug)]
pub(super) struct SnapshotWrite {
    pub(super) g: GroupId,
    pub(super) path: PathBuf,
    pub(super) snap: Snapshot,
}

/// Encodes and writes a snapshot file atomically (temp file, fsync, rename) on glommio's
/// blocking thread pool, so a large snapshot never stalls the core's executor (its ticks,
/// heartbeats and lease reads).
async fn write_snapshot_file(path: PathBuf, snap: Snapshot) -> std::io::Result<()> {
    glommio::executor()
        .spawn_blocking(move || storage::write_atomically(&path, &storage::encode_snapshot(&snap)))
        .await
}

/// The message of a failed WAL call. A write or sync failure (an I/O error, or the log poisoned
/// by an earlier one) means acknowledged-durability can no longer be promised: it is reported as
/// `WAL sync failed`, the phrase operators and the fault tests look for, and stops the node.
fn wal_failure(what: String, e: &ringraft_wal::Error) -> String {
    match e {
        ringraft_wal::Error::Io { .. } | ringraft_wal::Error::Poisoned(_) => {
            format!("WAL sync failed: {what}: {e}")
        }
        _ => format!("{what}: {e}"),
    }
}

fn is_backpressure(e: &ringraft_wal::Error) -> bool {
    matches!(e, ringraft_wal::Error::Backpressure { .. })
}

async fn wait_durable_now(st: &Rc<RefCell<CoreState>>) -> Result<(), String> {
    let w = {
        let s = st.borrow();
        let lsn = s.wal.flush();
        s.wal.wait_durable(lsn)
    };
    w.await.map_err(|e| format!("WAL sync failed: {e}"))
}

async fn append_with_backpressure(
    st: &Rc<RefCell<CoreState>>,
    g: GroupId,
    index: u64,
    term: u64,
    payload: &[u8],
) -> Result<(), String> {
    loop {
        let r = st.borrow_mut().wal.append(g, index, term, payload);
        match r {
            Ok(_) => return Ok(()),
            Err(e) if is_backpressure(&e) => wait_durable_now(st).await?,
            Err(e) => {
                return Err(wal_failure(
                    format!("shard {g}: WAL append of entry {index}"),
                    &e,
                ))
            }
        }
    }
}

async fn persist_snapshot(
    st: &Rc<RefCell<CoreState>>,
    g: GroupId,
    snap: &Snapshot,
) -> Result<(), String> {
    let path = st
        .borrow()
        .shards
        .get(&g)
        .map(|s| s.snapshot_path.clone())
        .ok_or_else(|| format!("shard {g}: unknown"))?;
    // The file is written and fsynced (off the executor thread) before the WAL forgets
    // anything it covers.
    write_snapshot_file(path.clone(), snap.clone())
        .await
        .map_err(|e| format!("shard {g}: cannot write snapshot {}: {e}", path.display()))?;
    let mut s = st.borrow_mut();
    let first = s.wal.first_index(g);
    if s.wal.last_index(g) >= first {
        s.wal
            .truncate(g, first)
            .map_err(|e| wal_failure(format!("shard {g}: WAL truncate for snapshot"), &e))?;
    }
    if snap.meta.index > 0 {
        s.wal
            .purge(g, snap.meta.index + 1)
            .map_err(|e| wal_failure(format!("shard {g}: WAL purge for snapshot"), &e))?;
    }
    let kv = if snap.data.is_empty() {
        KvStore::new()
    } else {
        KvStore::restore(&snap.data)
            .map_err(|e| format!("shard {g}: snapshot from the leader: {e}"))?
    };
    if let Some(shard) = s.shards.get_mut(&g) {
        shard.kv = kv;
        shard.fail_writes_through(snap.meta.index);
    }
    if snap.meta.index > 0 {
        info!(
            shard = g,
            index = snap.meta.index,
            term = snap.meta.term,
            "installed snapshot"
        );
    }
    Ok(())
}

/// The driver loop: runs ready rounds whenever something happened (a kick).
pub async fn drive(st: Rc<RefCell<CoreState>>, kick_rx: flume::Receiver<()>) {
    while kick_rx.recv_async().await.is_ok() {
        loop {
            match ready_round(&st).await {
                Ok(true) => glommio::yield_if_needed().await,
                Ok(false) => break,
                Err(e) => {
                    error!("core stopped: {e}");
                    let mut s = st.borrow_mut();
                    s.metrics.error(ErrorKind::WalIo);
                    s.fail_all(&e);
                    s.fatal.get_or_insert(e);
                    return;
                }
            }
        }
    }
}

/// The persist loop: waits for each batch to be durable, then reports it to the Raft core and
/// sends what had to wait for durability.
pub async fn persist_loop(
    st: Rc<RefCell<CoreState>>,
    rx: flume::Receiver<PersistBatch>,
    durability: ringraft_wal::Durability,
) {
    while let Ok(b) = rx.recv_async().await {
        let t0 = Instant::now();
        if let Err(e) = durability.wait(b.lsn).await {
            let msg = format!("WAL sync failed: {e}");
            error!("{msg}");
            let mut s = st.borrow_mut();
            s.metrics.error(ErrorKind::WalIo);
            s.fail_all(&msg);
            s.fatal.get_or_insert(msg);
            return;
        }
        let mut s = st.borrow_mut();
        if b.appended > 0 {
            s.metrics
                .fsync_latency_us
                .record(t0.elapsed().as_micros() as u64);
            s.metrics.fsync_batch_entries.record(b.appended);
        }
        debug!(
            lsn = b.lsn,
            waited_us = t0.elapsed().as_micros() as u64,
            after = b.after.len(),
            "persisted"
        );
        let follower_durable = s.note_durable(&b, Instant::now());
        for (g, index, term) in b.persisted {
            if let Err(e) = s.multi.on_persisted(g, index, term) {
                debug!(shard = g, "on_persisted: {e}");
            }
        }
        s.send_envelopes(&b.after);
        s.note_acked(follower_durable, !b.after.is_empty());
        s.kick();
    }
}

/// Most ticks delivered per wake-up of the tick loop. A late wake-up (a stalled executor, a
/// stopped process) delivers up to this many and skips the rest of the missed ticks.
///
/// Why skip instead of catching up: the tick loop may run before the tasks that read the peer
/// sockets, so a burst of missed ticks would run a follower's election timer past its timeout
/// while the leader's heartbeats still wait unread in its socket, and start an election no
/// real silence justified. Skipping only makes ticks slower than real time, which every timer
/// tolerates: a follower's election timeout and its vote-ignoring window then last longer in
/// real time (the direction the leader lease relies on), and a leader's own lease is checked
/// against the monotonic clock at read time (`Raft::read_at`), not against its ticks.
pub const MAX_TICKS_PER_WAKEUP: u64 = 2;

/// The clock: Raft ticks follow the monotonic clock, at most one per `tick_interval_ms` of real
/// time (never early), each handed the monotonic time [`monotonic_nanos`] it was delivered at.
/// When the executor was late, at most [`MAX_TICKS_PER_WAKEUP`] ticks are delivered and the
/// other missed ones are skipped. Every 100 delivered ticks abandoned requests are swept.
pub async fn tick_loop(st: Rc<RefCell<CoreState>>, tick: Duration) {
    let start = Instant::now();
    let tick_us = tick.as_micros().max(1) as u64;
    // Tick slots accounted for (delivered or skipped), and ticks delivered.
    let mut done: u64 = 0;
    let mut delivered: u64 = 0;
    loop {
        let next = Duration::from_micros((done + 1) * tick_us);
        let now = start.elapsed();
        if next > now {
            glommio::timer::sleep(next - now).await;
        }
        let due = start.elapsed().as_micros() as u64 / tick_us;
        let mut s = st.borrow_mut();
        if s.fatal.is_some() {
            return;
        }
        let missed = due.saturating_sub(done).max(1);
        let n = ticks_to_deliver(missed);
        if n < missed {
            debug!(
                missed,
                delivered = n,
                "tick loop woke late; skipped the other missed ticks"
            );
        }
        let now_ns = monotonic_nanos();
        for _ in 0..n {
            s.multi.tick_at(now_ns);
            delivered += 1;
            if delivered.is_multiple_of(100) {
                s.sweep_abandoned();
            }
        }
        done += missed;
        s.kick();
    }
}

/// Ticks delivered on a wake-up that found `missed` tick slots due.
pub(super) fn ticks_to_deliver(missed: u64) -> u64 {
    missed.min(MAX_TICKS_PER_WAKEUP)
}

/// Syncs the WAL (shutdown).
pub async fn sync_wal(st: &Rc<RefCell<CoreState>>) -> Result<(), String> {
    wait_durable_now(st).await
}
