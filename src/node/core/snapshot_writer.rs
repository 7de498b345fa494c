//! The core's snapshot writer, owned by one core's executor.
//!
//! Snapshots never stop the shard: taking one is an O(1) clone of its store
//! ([`crate::node::driver::Driver::take_snapshot`]); the core's snapshot writer (one task per core, started on first
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

use super::driver::parts;
use crate::node::driver::SnapshotTaken;

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

/// The core's background worker, started on first use; `None` when it cannot run.
fn background_worker(st: &Rc<RefCell<CoreState>>) -> Option<storage::background::BackgroundWorker> {
    let mut s = st.borrow_mut();
    let core = s.core;
    s.snapshots.worker(core)
}

/// Runs `f` on the core's background worker ([`storage::background`]: a low-priority thread,
/// so bulk snapshot work never takes the CPU from a ready executor), or on glommio's blocking
/// pool when that thread cannot be started. `Err` when the worker stopped before answering.
async fn in_background<T: Send + 'static>(
    st: &Rc<RefCell<CoreState>>,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    match background_worker(st) {
        Some(w) => w
            .run(f)
            .await
            .ok_or_else(|| "the snapshot worker thread stopped".to_string()),
        None => Ok(glommio::executor().spawn_blocking(f).await),
    }
}

/// Drops `v` off the executor: freeing a large store or large bytes walks all of it. On the
/// core's background worker it is queued behind the jobs before it, with no answer awaited;
/// without the worker, glommio's blocking pool drops it.
pub(super) async fn drop_in_background<T: Send + 'static>(st: &Rc<RefCell<CoreState>>, v: T) {
    match background_worker(st) {
        Some(w) => w.drop_later(v).await,
        None => glommio::executor().spawn_blocking(move || drop(v)).await,
    }
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
                .and_then(|meta| s.snapshot_path(g).map(|path| (meta, path)))
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
    // The log holds its entries in index order.
    for e in raft
        .log()
        .entries()
        .skip_while(|e| e.index <= since)
        .take_while(|e| e.index <= index)
    {
        n += 1;
        bytes = bytes.saturating_add(e.data.len() as u64);
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

impl CoreState {
    /// Where shard `g`'s snapshot file lives on this core.
    pub(super) fn snapshot_path(&self, g: GroupId) -> Result<PathBuf, String> {
        self.local
            .get(&g)
            .map(|l| l.snapshot_path.clone())
            .ok_or_else(|| format!("shard {g}: unknown"))
    }
}

/// Encodes and writes a snapshot file atomically (temp file, fsync, rename) on glommio's
/// blocking thread pool, so a large snapshot never stalls the core's executor (its ticks,
/// heartbeats and lease reads).
pub(super) async fn write_snapshot_file(path: PathBuf, snap: Snapshot) -> std::io::Result<()> {
    glommio::executor()
        .spawn_blocking(move || storage::write_snapshot_file(&path, &snap))
        .await
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
