//! The node's async wrapper around the shared Ready loop ([`crate::node::driver`]): the driver
//! loop runs rounds when kicked, waiting where the node must (received snapshots' files written
//! off the executor thread before the WAL forgets what they cover, WAL backpressure); the
//! persist loop waits for each batch's WAL durability and hands it back to the driver; the tick
//! loop drives the Raft clocks; the snapshot writer builds and writes locally taken snapshots.
//! Each synchronous step borrows the core's state only for its own duration, never across an
//! `.await`.
//!
//! Snapshots never stop the shard: taking one is an O(1) clone of its store
//! ([`Driver::take_snapshot`]); the core's snapshot writer (one task per core, started on first
//! use) then streams the frozen store straight into the snapshot file on the core's
//! low-priority background thread ([`storage::background`], so the serialization only uses CPU
//! the executors leave idle; [`storage::write_store_snapshot_file`]: the serialized state is
//! never held in memory), and once the file is durable compacts the in-memory log at its index
//! keeping only the meta and lets the WAL forget what it covers ([`compact_written`], on the
//! executor, short: the entries it removes are freed a chunk at a time by their own task,
//! [`free_gradually`], not in one go). The writer takes its jobs one at a time, in order, so a
//! shard's snapshot files are written in order; a received snapshot's file is written only
//! after every earlier local job finished ([`wait_snapshot_writes`]), so an older local file
//! never replaces it. Meanwhile the driver loop keeps running rounds.
//!
//! Once a snapshot's file is durable (taken here or received from the leader) the Raft log
//! releases its in-memory copy of the bytes ([`crate::raft::Raft::release_snapshot_data`]):
//! the file is then the only serialized copy, and an InstallSnapshot to a lagging follower
//! reads it back on the blocking pool ([`storage::fill_released`]). After each local snapshot
//! the shard's trigger is rescaled with the state's size ([`scaled_snapshot_threshold`],
//! `raft.snapshot_state_percent`), so a large state is serialized less often and the
//! snapshot work per write does not grow with the number of keys.

use super::*;
use std::collections::VecDeque;
use std::rc::Weak;

use crate::node::driver::{
    note_acked, restore_store, Driver, PersistError, Round, SnapshotTaken, Transport,
};
use crate::node::kv::PlantedFault;
use crate::node::storage::WalStorage;

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
    let received_at: Vec<(GroupId, u64)> =
        received.iter().map(|(g, s)| (*g, s.meta.index)).collect();
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
    for (g, snap) in received {
        let path = snapshot_path(st, g)?;
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
    let batch = loop {
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
    let mut batch = batch;
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

/// Most jobs waiting for a core's snapshot writer. Each shard has at most one threshold
/// snapshot and one early compaction in flight (a shard already waiting is not compacted
/// again), plus a few barriers, so this is reached only with thousands of shards on one core;
/// then the driver waits for room.
pub const MAX_SNAPSHOT_JOBS: usize = 1_024;

/// A job of the snapshot writer.
enum SnapshotJob {
    /// Build, compact and write a taken snapshot.
    Taken(Box<SnapshotTaken>),
    /// Answer once every earlier job is done.
    Barrier(flume::Sender<()>),
}

/// The core's snapshot writer: its job queue (the task starts with the first job), the
/// shards with a snapshot taken whose file is not written yet, and the low-priority thread
/// that does the bulk work (started on first use; `Err` once it could not be started, then
/// glommio's blocking pool does it).
#[derive(Default)]
pub struct SnapshotWriter {
    tx: Option<flume::Sender<SnapshotJob>>,
    pending: BTreeMap<GroupId, usize>,
    worker: Option<Result<storage::background::BackgroundWorker, ()>>,
}

impl SnapshotWriter {
    /// The core's background worker, started on first use; `None` when it cannot run.
    fn worker(&mut self, core: usize) -> Option<storage::background::BackgroundWorker> {
        self.worker
            .get_or_insert_with(|| {
                storage::background::BackgroundWorker::start(
                    &format!("ringraft-bg-{core}"),
                    storage::background::BACKGROUND_NICE,
                )
                .map_err(|e| {
                    warn!(
                        core,
                        "cannot start the snapshot worker thread ({e}): the blocking pool does its work"
                    )
                })
            })
            .as_ref()
            .ok()
            .cloned()
    }

    /// Whether shard `g` has a snapshot taken whose file is not written yet.
    pub(super) fn is_pending(&self, g: GroupId) -> bool {
        self.pending.contains_key(&g)
    }

    fn done(&mut self, g: GroupId) {
        if let Some(n) = self.pending.get_mut(&g) {
            *n -= 1;
            if *n == 0 {
                self.pending.remove(&g);
            }
        }
    }

    /// The job queue, starting the writer task on first use.
    fn sender(&mut self, st: &Rc<RefCell<CoreState>>) -> flume::Sender<SnapshotJob> {
        self.tx
            .get_or_insert_with(|| {
                let (tx, rx) = flume::bounded(MAX_SNAPSHOT_JOBS);
                glommio::spawn_local(snapshot_writer(Rc::downgrade(st), rx)).detach();
                tx
            })
            .clone()
    }
}

/// Hands taken snapshots to the core's snapshot writer, in order.
pub(super) async fn queue_snapshots(st: &Rc<RefCell<CoreState>>, taken: Vec<SnapshotTaken>) {
    if taken.is_empty() {
        return;
    }
    let tx = {
        let mut s = st.borrow_mut();
        for t in &taken {
            *s.snapshots.pending.entry(t.group).or_default() += 1;
        }
        s.snapshots.sender(st)
    };
    for t in taken {
        // The writer holds only a weak reference: it runs as long as the core does.
        let _ = tx.send_async(SnapshotJob::Taken(Box::new(t))).await;
    }
}

/// Runs `f` on the core's background worker ([`storage::background`]: a low-priority thread,
/// so bulk snapshot work never takes the CPU from a ready executor), or on glommio's blocking
/// pool when that thread cannot be started. `Err` when the worker stopped before answering.
async fn in_background<T: Send + 'static>(
    st: &Rc<RefCell<CoreState>>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let worker = {
        let mut s = st.borrow_mut();
        let core = s.core;
        s.snapshots.worker(core)
    };
    match worker {
        Some(w) => w
            .run(f)
            .await
            .ok_or_else(|| "the snapshot worker thread stopped".to_string()),
        None => Ok(glommio::executor().spawn_blocking(f).await),
    }
}

/// Drops `v` off the executor ([`in_background`]): freeing a large store or large bytes walks
/// all of it.
async fn drop_in_background<T: Send + 'static>(st: &Rc<RefCell<CoreState>>, v: T) {
    let _ = in_background(st, move || drop(v)).await;
}

/// Waits until every snapshot job queued so far is done (its file written and the WAL told).
pub(super) async fn wait_snapshot_writes(st: &Rc<RefCell<CoreState>>) {
    let Some(tx) = st.borrow().snapshots.tx.clone() else {
        return;
    };
    let (done_tx, done_rx) = flume::bounded(1);
    if tx.send_async(SnapshotJob::Barrier(done_tx)).await.is_ok() {
        let _ = done_rx.recv_async().await;
    }
}

/// The snapshot writer of one core: takes its jobs one at a time, in order (see the module
/// docs). Stops with the core.
async fn snapshot_writer(st: Weak<RefCell<CoreState>>, rx: flume::Receiver<SnapshotJob>) {
    while let Ok(job) = rx.recv_async().await {
        let t = match job {
            SnapshotJob::Barrier(done) => {
                let _ = done.send(());
                continue;
            }
            SnapshotJob::Taken(t) => t,
        };
        let Some(st) = st.upgrade() else { return };
        let (g, index) = (t.group, t.state.applied_index());
        let state = t.state;
        let plan = {
            let s = st.borrow();
            if s.fatal.is_some() {
                return;
            }
            s.multi
                .group(g)
                .ok_or_else(|| format!("shard {g}: unknown"))
                .and_then(|r| r.snapshot_meta_at(index).map_err(|e| e.to_string()))
                .and_then(|meta| snapshot_path(&st, g).map(|path| (meta, path)))
        };
        let (meta, path) = match plan {
            Ok(p) => p,
            Err(e) => {
                // A newer snapshot (received meanwhile) already covers it: nothing to write.
                debug!(shard = g, "snapshot at {index} not taken: {e}");
                drop_in_background(&st, state).await;
                st.borrow_mut().snapshots.done(g);
                continue;
            }
        };
        // Streamed into its file off the executor, from the frozen store (no serialized copy
        // in memory), at most at the configured rate; the frozen store is dropped there too
        // (freeing the nodes the live store no longer shares).
        let shown = path.display().to_string();
        let rate = st
            .borrow()
            .cfg
            .raft
            .snapshot_write_mib_per_s
            .saturating_mul(1 << 20);
        let written = in_background(&st, move || {
            let r = storage::write_store_snapshot_file(&path, &meta, &state, rate);
            drop(state);
            r
        })
        .await
        .and_then(|r| r.map_err(|e| format!("cannot write {shown}: {e}")));
        // The file is durable: the log is compacted at its index keeping only the meta (the
        // file serves lagging followers, see `storage::fill_released`), then the WAL forgets
        // what it covers. The bytes the log held so far are freed off the executor below.
        let (previous, compacted) = {
            let mut s = st.borrow_mut();
            if s.fatal.is_some() {
                return;
            }
            match written {
                Ok(len) => {
                    rescale_snapshot_trigger(&mut s, g, index, len as usize);
                    compact_written(&mut s, g, index)
                }
                Err(e) => {
                    s.metrics.error(ErrorKind::WalIo);
                    warn!(shard = g, "snapshot at {index}: {e}");
                    if let Some(r) = s.multi.group_mut(g) {
                        r.snapshot_abandoned();
                    }
                    (None, VecDeque::new())
                }
            }
        };
        // The entries the compaction removed are freed on the executor a chunk at a time, so
        // the rounds go on meanwhile.
        if !compacted.is_empty() {
            glommio::spawn_local(free_gradually(compacted)).detach();
        }
        if let Some(p) = previous {
            drop_in_background(&st, p).await;
        }
        st.borrow_mut().snapshots.done(g);
    }
}

/// The file of the snapshot taken of `g` at `index` is durable: compacts the shard's log at
/// that index keeping only the snapshot's meta (the file holds its bytes), then lets the WAL
/// forget what it covers. Returns the bytes of the snapshot it replaced and the log entries it
/// removed, for the caller to free without stalling the executor (a compaction removes the
/// hundreds of thousands of entries since the last snapshot). Nothing happens when the log
/// moved past `index` meanwhile (a newer snapshot, taken or received).
fn compact_written(
    s: &mut CoreState,
    g: GroupId,
    index: u64,
) -> (Option<Arc<[u8]>>, VecDeque<crate::raft::Entry>) {
    let Some(raft) = s.multi.group_mut(g) else {
        return (None, VecDeque::new());
    };
    let previous = raft.snapshot().map(|p| p.data.clone());
    let compacted = match raft.compact_taking(index, Arc::<[u8]>::from(&[][..])) {
        Ok(c) => c,
        Err(e) => {
            debug!(shard = g, "snapshot at {index} not taken: {e}");
            return (None, VecDeque::new());
        }
    };
    let Some(snap) = raft.snapshot().cloned() else {
        return (previous, compacted);
    };
    let w = crate::node::driver::SnapshotWrite { group: g, snap };
    let (mut d, _, mut wal) = parts(s);
    d.snapshot_written(&w, Ok(()), &mut wal);
    (previous, compacted)
}

/// Items freed between two pauses by [`free_gradually`]: a few hundred microseconds of frees.
pub const FREE_CHUNK_ITEMS: usize = 4_096;
/// Pause between two chunks of [`free_gradually`]: a timer, so the executor polls the network
/// and runs every ready task between two chunks.
pub const FREE_PAUSE: Duration = Duration::from_micros(50);

/// Frees `items` on the executor [`FREE_CHUNK_ITEMS`] at a time, pausing [`FREE_PAUSE`]
/// between chunks: freeing a large compacted log in one go would hold the executor for
/// milliseconds, while a chunk takes a fraction of one. Spawned as its own task.
pub(super) async fn free_gradually<T>(mut items: VecDeque<T>) {
    while !items.is_empty() {
        let n = items.len().min(FREE_CHUNK_ITEMS);
        items.drain(..n);
        if !items.is_empty() {
            glommio::timer::sleep(FREE_PAUSE).await;
        }
    }
}

/// Bytes a log entry costs beyond its data (its WAL record header and its in-memory entry),
/// counted when the log since a snapshot is weighed against the state's size.
pub const LOG_ENTRY_OVERHEAD_BYTES: u64 = 48;

/// The snapshot trigger of a shard whose state serializes to `state_bytes`: at least
/// `base_entries` applied entries, and enough entries that the log since the last snapshot
/// holds about `percent` of the state's bytes, entries weighing what the last
/// `log_entries` entries (`log_bytes` of data) weighed on average. So the bytes serialized
/// per byte of log (the snapshot work per write) stay bounded however large the state grows,
/// while a small state keeps the plain entry count. Bounded by the config's entry limit.
pub fn scaled_snapshot_threshold(
    base_entries: u64,
    percent: u64,
    state_bytes: u64,
    log_entries: u64,
    log_bytes: u64,
) -> u64 {
    if percent == 0 || log_entries == 0 {
        return base_entries;
    }
    let per_entry = (log_bytes / log_entries).saturating_add(LOG_ENTRY_OVERHEAD_BYTES);
    let want = (state_bytes / 100)
        .saturating_mul(percent)
        .div_ceil(per_entry.max(1));
    want.clamp(
        base_entries,
        crate::node::config::limits::SNAPSHOT_ENTRIES_MAX,
    )
}

/// After a snapshot of `g` at `index` serialized to `state_bytes`: sets the shard's next
/// snapshot trigger ([`scaled_snapshot_threshold`]) from the entries it covers since the last
/// one. Called before the log is compacted, so those entries are still in memory.
fn rescale_snapshot_trigger(s: &mut CoreState, g: GroupId, index: u64, state_bytes: usize) {
    let base = s.cfg.raft.snapshot_threshold_entries;
    let percent = s.cfg.raft.snapshot_state_percent;
    let Some(raft) = s.multi.group_mut(g) else {
        return;
    };
    let since = raft.snapshot().map_or(0, |p| p.meta.index);
    let (mut n, mut bytes) = (0u64, 0u64);
    for e in raft.log().entries() {
        if e.index > since && e.index <= index {
            n += 1;
            bytes = bytes.saturating_add(e.data.len() as u64);
        }
    }
    let t = scaled_snapshot_threshold(base, percent, state_bytes as u64, n, bytes);
    if t != raft.snapshot_threshold_entries() {
        debug!(
            shard = g,
            entries = t,
            state_bytes,
            "snapshot trigger rescaled"
        );
        raft.set_snapshot_threshold_entries(t);
    }
}

fn snapshot_path(st: &Rc<RefCell<CoreState>>, g: GroupId) -> Result<PathBuf, String> {
    st.borrow()
        .local
        .get(&g)
        .map(|l| l.snapshot_path.clone())
        .ok_or_else(|| format!("shard {g}: unknown"))
}

/// Encodes and writes a snapshot file atomically (temp file, fsync, rename) on glommio's
/// blocking thread pool, so a large snapshot never stalls the core's executor (its ticks,
/// heartbeats and lease reads).
async fn write_snapshot_file(path: PathBuf, snap: Snapshot) -> std::io::Result<()> {
    glommio::executor()
        .spawn_blocking(move || storage::write_snapshot_file(&path, &snap))
        .await
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
    let max = p.wal_executor_sync_max_entries;
    if max == 0
        || !matches!(p.flush_policy, crate::node::config::FlushPolicy::Immediate)
        || batch.ticket() <= s.wal.durable_lsn()
    {
        return;
    }
    let quiet = batch.appended() <= max && s.persist_tx.is_empty();
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
        if p.wal_executor_sync_max_entries > 0
            && matches!(p.flush_policy, crate::node::config::FlushPolicy::Immediate)
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
        if let Err(e) = durability.sync_with(ring_fdatasync).await {
            debug!("WAL sync through io_uring failed: {e}");
            return;
        }
    }
}

/// fdatasync of a WAL segment's descriptor through this executor's io_uring. glommio's file
/// takes ownership of the descriptor it wraps, so it gets a duplicate (same open file
/// description, so the sync hears of every writeback error the WAL's own description would);
/// dropping it queues the close on the ring, with no wait and no extra syscall here.
async fn ring_fdatasync(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    use std::os::fd::FromRawFd;
    // SAFETY: the WAL keeps `fd` open while this future runs (`Durability::sync_with`).
    let dup = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `dup` is a fresh descriptor owned by nobody else; the file closes it.
    let file = unsafe { glommio::io::BufferedFile::from_raw_fd(dup) };
    file.fdatasync().await.map_err(std::io::Error::from)
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

#[cfg(test)]
mod trigger_tests {
    use super::*;

    #[test]
    fn snapshot_trigger_scales_with_the_state_and_keeps_the_entry_floor() {
        // A small state keeps the configured entry count.
        assert_eq!(
            scaled_snapshot_threshold(100_000, 50, 3_000_000, 100_000, 27_000_000),
            100_000
        );
        // 1M keys (~290 MB) with ~270-byte entries: half the state is ~455k entries.
        let t = scaled_snapshot_threshold(100_000, 50, 290_000_000, 100_000, 27_000_000);
        assert_eq!(t, 145_000_000u64.div_ceil(270 + LOG_ENTRY_OVERHEAD_BYTES));
        // Ten times the state, ten times the entries: bytes serialized per write stay flat.
        let t10 = scaled_snapshot_threshold(100_000, 50, 2_900_000_000, 100_000, 27_000_000);
        assert!(t10.abs_diff(10 * t) <= 10, "{t10} vs {t}");
        // 0 percent, or nothing measured yet: the entry count alone.
        assert_eq!(scaled_snapshot_threshold(7, 0, 290_000_000, 10, 2_700), 7);
        assert_eq!(scaled_snapshot_threshold(7, 50, 290_000_000, 0, 0), 7);
        // Hostile sizes saturate at the config's bound instead of overflowing.
        assert_eq!(
            scaled_snapshot_threshold(1, 100, u64::MAX, 1, 0),
            crate::node::config::limits::SNAPSHOT_ENTRIES_MAX
        );
    }
}

#[cfg(test)]
mod free_tests {
    use super::*;
    use std::cell::Cell;

    /// Counts its drops.
    struct Counted(Rc<Cell<usize>>);

    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    #[test]
    fn a_compacted_log_is_freed_a_chunk_at_a_time_letting_other_tasks_run() {
        let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .make()
            .unwrap();
        ex.run(async {
            let freed = Rc::new(Cell::new(0));
            let total = 3 * FREE_CHUNK_ITEMS + 5;
            let items: VecDeque<Counted> = (0..total).map(|_| Counted(freed.clone())).collect();
            glommio::spawn_local(free_gradually(items)).detach();
            // The freeing task runs its first chunk, then pauses: this task runs before the
            // rest is freed.
            futures_lite::future::yield_now().await;
            assert_eq!(freed.get(), FREE_CHUNK_ITEMS, "one chunk, then a pause");
            let deadline = Instant::now() + Duration::from_secs(5);
            while freed.get() < total {
                assert!(
                    Instant::now() < deadline,
                    "freed {} of {total}",
                    freed.get()
                );
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
            assert_eq!(freed.get(), total);
        });
    }
}
