//! The node's async wrapper around the shared Ready loop ([`crate::node::driver`]): the driver
//! loop runs rounds when kicked, waiting where the node must (received snapshots' files written
//! off the executor thread before the WAL forgets what they cover, WAL backpressure); the
//! persist loop waits for each batch's WAL durability and hands it back to the driver; the tick
//! loop drives the Raft clocks. Locally taken snapshots go to the core's snapshot writer
//! ([`super::snapshot_writer`]). Each synchronous step borrows the core's state only for its
//! own duration, never across an `.await`.

use super::*;

use crate::node::driver::{note_acked, restore_store, Driver, PersistError, Round, Transport};
use crate::node::kv::PlantedFault;
use crate::node::storage::WalStorage;

use super::snapshot_writer::{
    drop_in_background, queue_snapshots, wait_snapshot_writes, write_snapshot_file,
};

/// The node's transport for one driver step: envelopes are collected and queued on the peer
/// links right after the step (`finish`), in the order the driver sent them.
pub(super) struct PeerOut<'a> {
    envs: Vec<Envelope>,
    changed: Vec<GroupId>,
    node_id: NodeId,
    listen: &'a str,
    peers: &'a BTreeMap<NodeId, PeerLink>,
}

impl Transport for PeerOut<'_> {
    fn send(&mut self, envs: Vec<Envelope>) {
        self.envs.extend(envs);
    }

    fn not_leader(&self, leader: NodeId) -> ClientError {
        let address = if leader == self.node_id {
            Some(self.listen.to_string())
        } else {
            self.peers.get(&leader).map(|p| p.address.clone())
        };
        let hint = (leader != 0)
            .then_some(address)
            .flatten()
            .map(|address| LeaderHint {
                node_id: leader,
                address,
            });
        ClientError::NotLeader { leader: hint }
    }

    fn membership_changed(&mut self, g: GroupId) {
        self.changed.push(g);
    }
}

/// What a step sent: envelopes to the peer links, membership changes to the link table.
pub(super) struct Sent {
    envs: Vec<Envelope>,
    changed: Vec<GroupId>,
}

impl PeerOut<'_> {
    pub(super) fn sent(self) -> Sent {
        Sent {
            envs: self.envs,
            changed: self.changed,
        }
    }
}

/// Lends the core's state to the driver, with the WAL storage and the peer transport.
pub(super) fn parts(s: &mut CoreState) -> (Driver<'_>, PeerOut<'_>, WalStorage<'_>) {
    let d = Driver::new(&mut s.multi, &mut s.shards, &mut s.reads, &s.metrics)
        .with_max_scan_results(s.cfg.state_machine.max_scan_results);
    let out = PeerOut {
        envs: Vec::new(),
        changed: Vec::new(),
        node_id: s.node_id,
        listen: &s.cfg.cluster.listen_address,
        peers: &s.peers,
    };
    (d, out, WalStorage::new(&mut s.wal))
}

/// Sends what a step sent.
pub(super) fn finish(s: &mut CoreState, sent: Sent) {
    if !sent.envs.is_empty() {
        s.send_envelopes(&sent.envs);
    }
    for g in sent.changed {
        s.refresh_peers(g);
    }
    // Configurations that reached the log in this step (appended from a leader, or in an
    // installed snapshot) carry member addresses before they are applied.
    s.refresh_changed_peers();
}

/// One round of the driver: returns false when there was nothing to do.
async fn ready_round(st: &Rc<RefCell<CoreState>>) -> Result<bool, String> {
    let mut round: Round = {
        let mut s = st.borrow_mut();
        let (mut d, mut out, _) = parts(&mut s);
        let Some(round) = d.begin_deferred(Some(monotonic_nanos()), &mut out)? else {
            return Ok(false);
        };
        let sent = out.sent();
        finish(&mut s, sent);
        round
    };
    // Received snapshots' files are durable before the WAL forgets anything they cover.
    let received: Vec<(GroupId, Snapshot)> = round
        .received_snapshots()
        .map(|(g, snap)| (g, snap.clone()))
        .collect();
    if !received.is_empty() {
        wait_snapshot_writes(st).await;
    }
    // Their stores are decoded on the blocking pool (a large state takes seconds to decode):
    // the shard keeps serving from its old store until `persist` swaps the new one in, and no
    // entry after a snapshot is applied before that. Bytes that do not decode stop the core
    // before anything is written for them.
    for (g, data) in round.to_restore() {
        let kv = glommio::executor()
            .spawn_blocking(move || restore_store(&data, PlantedFault::default()))
            .await
            .map_err(|e| format!("shard {g}: snapshot from the leader refused: {e}"))?;
        round.set_restored(g, kv);
    }
    let mut received_at = Vec::with_capacity(received.len());
    for (g, snap) in received {
        received_at.push((g, snap.meta.index));
        let path = st.borrow().snapshot_path(g)?;
        write_snapshot_file(path.clone(), snap)
            .await
            .map_err(|e| format!("shard {g}: cannot write snapshot {}: {e}", path.display()))?;
    }
    let mut released = Vec::new();
    // Their files are durable: the log's copies of their bytes are released (the file serves
    // lagging followers if this node leads later).
    if !received_at.is_empty() {
        let mut s = st.borrow_mut();
        for (g, at) in received_at {
            if let Some(r) = s.multi.group_mut(g) {
                released.extend(r.release_snapshot_data(at));
            }
        }
    }
    let mut batch = loop {
        let r = {
            let mut s = st.borrow_mut();
            let (mut d, _, mut wal) = parts(&mut s);
            d.persist(&mut round, &mut wal)
        };
        match r {
            Ok(b) => break b,
            Err(PersistError::Backpressure) => wait_durable_now(st).await?,
            Err(PersistError::NoSpace(e)) => super::reclaim::wait_for_space(st, &e).await?,
            Err(PersistError::Failed(e)) => return Err(e),
        }
    };
    // The stores the received snapshots replaced and their bytes are freed off the executor
    // (freeing a large store walks every key), without holding up the next round.
    let mut freed = round.take_freed();
    freed.bytes.extend(released);
    if !freed.is_empty() {
        let st = st.clone();
        glommio::spawn_local(async move { drop_in_background(&st, freed).await }).detach();
    }
    if !batch.is_empty() {
        wal_sync_plan(&st.borrow(), &mut batch);
        let tx = st.borrow().persist_tx.clone();
        tx.send_async(batch)
            .await
            .map_err(|_| "the persist loop stopped".to_string())?;
    }
    let snapshots = {
        let mut s = st.borrow_mut();
        let (mut d, mut out, _) = parts(&mut s);
        let mut taken = d.apply(&mut round, &mut out)?;
        let sent = out.sent();
        finish(&mut s, sent);
        for g in round.groups() {
            s.update_gauges(g);
        }
        taken.extend(s.reclaim_wal());
        taken
    };
    // Built and written by the snapshot writer, in order, while the rounds go on.
    queue_snapshots(st, snapshots).await;
    Ok(true)
}

async fn wait_durable_now(st: &Rc<RefCell<CoreState>>) -> Result<(), String> {
    let w = {
        let s = st.borrow();
        let lsn = s.wal.flush();
        s.wal.wait_durable(lsn)
    };
    w.await.map_err(|e| format!("WAL sync failed: {e}"))
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

/// With `raft.persistence.wal_executor_sync_max_entries` set (Immediate flush policy only; the
/// WAL then asks for no sync on append): decides who makes a round's batch durable, once the
/// round's records are all staged, and only when the batch waits for something not yet
/// durable (a round that only moved a commit index waits for nothing).
///
/// A round of up to that many entries while no other batch waits to be persisted is synced on
/// this executor (no worker woken, no wake-up back): with `wal_executor_sync = "io_uring"` it
/// asks the core's ring syncer ([`ring_syncer`]), whose next sync starts after this call and
/// so covers the round (a request already queued covers it too); with `"blocking"` the persist
/// loop syncs it, blocking the executor. Otherwise a flush worker is asked now (one sync covers
/// the round), so a busy core keeps the write-out and the syncs off its executor.
fn wal_sync_plan(s: &CoreState, batch: &mut PersistBatch) {
    let p = &s.cfg.raft.persistence;
    if !p.executor_syncs() || batch.ticket() <= s.wal.durable_lsn() {
        return;
    }
    let quiet = batch.appended() <= p.wal_executor_sync_max_entries && s.persist_tx.is_empty();
    if quiet {
        if let Some(tx) = &s.ring_sync_tx {
            // Full: a request is queued, and the sync it starts covers this round. Gone: the
            // syncer stopped on a poisoned log, which the persist loop's wait reports.
            let _ = tx.try_send(());
            return;
        }
    }
    batch.set_sync_here(quiet);
    if !quiet {
        s.wal.flush();
    }
}

/// The persist loop: waits for each batch to be durable, then reports it to the Raft core and
/// sends what had to wait for durability. A batch [`wal_sync_plan`] gave to the executor
/// (`wal_executor_sync = "blocking"`) is written out and fdatasynced here first, blocking the
/// executor. With `"io_uring"` (and executor syncs on) the loop starts the core's
/// [`ring_syncer`] and only waits.
pub async fn persist_loop(
    st: Rc<RefCell<CoreState>>,
    rx: flume::Receiver<PersistBatch>,
    durability: ringraft_wal::Durability,
) {
    {
        let mut s = st.borrow_mut();
        let p = &s.cfg.raft.persistence;
        if p.executor_syncs()
            && p.wal_executor_sync == crate::node::config::WalExecutorSync::IoUring
        {
            // One request queued at most: one queued covers every round published before
            // the syncer takes it.
            let (tx, sync_rx) = flume::bounded(1);
            s.ring_sync_tx = Some(tx);
            glommio::spawn_local(ring_syncer(durability.clone(), sync_rx)).detach();
        }
    }
    while let Ok(b) = rx.recv_async().await {
        let t0 = Instant::now();
        let synced = if b.sync_here() && durability.durable_lsn() < b.ticket() {
            durability.sync_here()
        } else {
            Ok(())
        };
        if let Err(e) = match synced {
            Ok(()) => durability.wait(b.ticket()).await,
            Err(e) => Err(e),
        } {
            let msg = format!("WAL sync failed: {e}");
            error!("{msg}");
            let mut s = st.borrow_mut();
            s.metrics.error(ErrorKind::WalIo);
            s.fail_all(&msg);
            s.fatal.get_or_insert(msg);
            s.ring_sync_tx = None;
            return;
        }
        let mut s = st.borrow_mut();
        if b.appended() > 0 {
            s.metrics
                .fsync_latency_us
                .record(t0.elapsed().as_micros() as u64);
            s.metrics.fsync_batch_entries.record(b.appended());
        }
        debug!(
            lsn = b.ticket(),
            waited_us = t0.elapsed().as_micros() as u64,
            after = b.after_len(),
            "persisted"
        );
        let (sent, follower) = {
            let (mut d, mut out, _) = parts(&mut s);
            let durable = d.on_durable(b, &mut out);
            if let Some(e) = durable.refused {
                debug!("{e}");
            }
            (out.sent(), durable.follower)
        };
        finish(&mut s, sent);
        note_acked(&s.metrics, follower);
        s.kick();
    }
    st.borrow_mut().ring_sync_tx = None;
}

/// The core's io_uring syncer (`wal_executor_sync = "io_uring"`): on each request, claims
/// everything published and makes it durable with the fdatasync submitted through this
/// executor's io_uring ([`ringraft_wal::Durability::sync_with`]); every other task of the core
/// (network, other shards, timers, the persist loop) runs while the disk syncs. Requests that
/// arrive meanwhile start the next sync as soon as this one ends (like a flush worker's, back
/// to back). Stops when the requests' sender is dropped or the log is poisoned (the persist
/// loop's wait then reports the failure and stops the core).
async fn ring_syncer(durability: ringraft_wal::Durability, rx: flume::Receiver<()>) {
    while rx.recv_async().await.is_ok() {
        if let Err(e) = durability.sync_with(ringraft_wal::ring::fdatasync).await {
            debug!("WAL sync through io_uring failed: {e}");
            return;
        }
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
