//! Durability state shared by the `Wal` owner, the flush workers and any number of waiters on
//! any threads: the appended / claimed / durable lsn counters, the list of segments that may
//! hold unsynced bytes, the registry of wakers waiting for an lsn, and the poisoned flag.
//!
//! In `Pwrite` mode it also holds the *stage*: records the owner appended but no worker has
//! written to the file yet, as chunks in file order (bounded by `max_staged_bytes`). A sync
//! first *drains* the stage — takes every chunk and `pwritev`s it, under `write_lock`, so that
//! drains complete in the order they took their chunks — then fdatasyncs.
//!
//! Invariants: `durable <= appended` and `claimed <= appended`; `durable` only grows, and only after
//! every byte of every record with lsn <= durable was synced by a sync that started after that
//! record was published (group commit: one sync covers every record appended before it began,
//! for every group, across segments). `pending` is true while a sync request sits in the
//! channel; owner and workers pair SeqCst stores and loads on `appended`/`pending` so that a
//! record is always either seen by a starting sync or followed by a new request, except a
//! *deferred* record (a hard state that only moves a commit index), which waits for the next
//! request anyone makes.
//!
//! A failed sync can never be masked: every claimed sync gets a ticket (claim order), and a
//! successful sync advances `durable` only once every sync with an earlier ticket has finished
//! successfully; the first failure poisons the log (under the same lock), after which no result
//! advances `durable` and every append and wait fails with [`Error::Poisoned`]. So when syncs
//! overlap on several workers, one that succeeds never publishes durability past data an
//! earlier, failing one was responsible for (the kernel may have dropped those pages and
//! reported the error to that sync only). Each worker also syncs through its own file
//! description (segment/), so a later sync hears of every writeback error too.
//!
//! Syncs may also run on a caller's thread, through the caller slot's own file description:
//! [`Durability::sync_here`] blocks for the write and the sync, [`Durability::sync_with`]
//! awaits the caller's fdatasync future (e.g. submitted through an executor's io_uring). Both
//! claim, complete and poison exactly as a worker's sync does; a caller's sync future dropped
//! mid-flight poisons the log, since its ticket could otherwise hold `durable` back forever.
//!
//! [`Durability`] is the public, cloneable handle: read `durable_lsn()` anywhere, `wait(lsn)` as a
//! future on any executor, `wait_blocking(lsn)` on a plain thread.
//!
//! Files: this one ([`Shared`]: counters, stage, sync claims and completion, the waiter
//! registry) and `wait.rs` (the public handle and the wait future).

mod wait;

pub use wait::{Durability, DurableWait};

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::Instant;

use crate::error::{Error, Result};
use crate::options::{FlushPolicy, WriteMode};
use crate::segment::Segment;

/// Bytes a stage chunk is allocated with (a chunk grows past it only for one larger record).
pub const STAGE_CHUNK_BYTES: usize = 256 << 10;
/// Empty chunk buffers kept for reuse.
pub const STAGE_SPARE_CHUNKS: usize = 4;

/// Staged records of one segment, contiguous in the file from `off`.
struct Chunk {
    seg: Arc<Segment>,
    off: usize,
    buf: Vec<u8>,
}

#[derive(Default)]
struct Stage {
    chunks: VecDeque<Chunk>,
    spare: Vec<Vec<u8>>,
}

/// Syncs in flight by ticket: `None` while running, `Some(target)` once succeeded.
#[derive(Default)]
struct Order {
    next_ticket: u64,
    running: BTreeMap<u64, Option<Lsn>>,
}

/// Log sequence number: position of a record in the shared log (1, 2, 3, ...).
pub type Lsn = u64;

/// One completed (or failed) sync, sent by a flush worker over the report channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlushReport {
    /// Durable lsn after this sync (on failure: the durable lsn before it).
    pub durable_lsn: Lsn,
    /// Records this sync made durable (0 on failure or when another sync got there first).
    pub records: u64,
    /// Wall time of the sync in microseconds.
    pub sync_us: u64,
    /// Error text when the sync failed (the WAL is poisoned then).
    pub error: Option<String>,
}

/// Counters, readable at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Syncs completed.
    pub syncs: u64,
    /// Times a roll had to wait for the next segment to be prepared.
    pub roll_stalls: u64,
    /// Segments activated.
    pub rolls: u64,
    /// Segments deleted (or kept for reuse) by purge.
    pub segments_deleted: u64,
    /// Segments prepared from a recycled file (no fallocate, no zero-fill).
    pub segments_recycled: u64,
    /// Syncs or writes that failed (the first one poisons the log).
    pub syncs_failed: u64,
    /// Syncs claimed by a caller rather than a flush worker ([`Durability::sync_here`],
    /// [`Durability::sync_with`]).
    pub caller_syncs: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

pub(crate) struct Shared {
    pub policy: FlushPolicy,
    pub mode: WriteMode,
    pub max_staged_bytes: usize,
    stage: Mutex<Stage>,
    /// Staged bytes not yet written (readable without the stage lock).
    staged_bytes: std::sync::atomic::AtomicUsize,
    /// Serialises drains (file order of pwrites) — and, in `Mmap` mode, msyncs.
    write_lock: Mutex<()>,
    order: Mutex<Order>,
    pub max_waiters: usize,
    pub wait_spin_us: u64,
    /// Sync file description slot of syncs run on a caller's thread
    /// ([`Durability::sync_here`]): the one after the flush workers' slots.
    pub caller_slot: usize,
    /// Highest lsn published by the owner.
    pub appended: AtomicU64,
    /// Highest lsn a started sync covers.
    pub claimed: AtomicU64,
    /// Highest durable lsn.
    pub durable: AtomicU64,
    /// A sync request is queued.
    pub pending: AtomicBool,
    pub shutdown: AtomicBool,
    closed: AtomicBool,
    poisoned: AtomicBool,
    poison_reason: Mutex<Option<String>>,
    /// Segments that may still have unsynced bytes, oldest first.
    segments: Mutex<Vec<Arc<Segment>>>,
    waiters: Mutex<BTreeMap<(Lsn, u64), Waker>>,
    next_waiter_id: AtomicU64,
    req_tx: flume::Sender<()>,
    report_tx: flume::Sender<FlushReport>,
    pub syncs: AtomicU64,
    pub roll_stalls: AtomicU64,
    pub rolls: AtomicU64,
    pub segments_deleted: AtomicU64,
    pub segments_recycled: AtomicU64,
    pub syncs_failed: AtomicU64,
    pub caller_syncs: AtomicU64,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        policy: FlushPolicy,
        mode: WriteMode,
        max_staged_bytes: usize,
        max_waiters: usize,
        wait_spin_us: u64,
        caller_slot: usize,
        durable: Lsn,
        req_tx: flume::Sender<()>,
        report_tx: flume::Sender<FlushReport>,
    ) -> Shared {
        Shared {
            policy,
            mode,
            max_staged_bytes,
            stage: Mutex::new(Stage::default()),
            staged_bytes: std::sync::atomic::AtomicUsize::new(0),
            write_lock: Mutex::new(()),
            order: Mutex::new(Order::default()),
            max_waiters,
            wait_spin_us,
            caller_slot,
            appended: AtomicU64::new(durable),
            claimed: AtomicU64::new(durable),
            durable: AtomicU64::new(durable),
            pending: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            poison_reason: Mutex::new(None),
            segments: Mutex::new(Vec::new()),
            waiters: Mutex::new(BTreeMap::new()),
            next_waiter_id: AtomicU64::new(0),
            req_tx,
            report_tx,
            syncs: AtomicU64::new(0),
            roll_stalls: AtomicU64::new(0),
            rolls: AtomicU64::new(0),
            segments_deleted: AtomicU64::new(0),
            segments_recycled: AtomicU64::new(0),
            syncs_failed: AtomicU64::new(0),
            caller_syncs: AtomicU64::new(0),
        }
    }

    pub fn durable(&self) -> Lsn {
        self.durable.load(Ordering::Acquire)
    }

    pub fn poisoned(&self) -> Option<String> {
        if self.poisoned.load(Ordering::Acquire) {
            Some(lock(&self.poison_reason).clone().unwrap_or_default())
        } else {
            None
        }
    }

    /// Owner: registers a segment that will receive records (before any is published in it).
    pub fn add_segment(&self, seg: Arc<Segment>) {
        lock(&self.segments).push(seg);
    }

    /// Owner: forgets a segment (purged); it must be fully durable.
    pub fn remove_segment(&self, seq: u64) {
        lock(&self.segments).retain(|s| s.seq != seq);
    }

    /// Owner: publishes `lsn` and asks for a sync if the policy (or `force`) wants one.
    pub fn publish(&self, lsn: Lsn) {
        self.appended.store(lsn, Ordering::SeqCst);
        self.maybe_request(false);
    }

    /// Owner: publishes `lsn` without asking for a sync: a deferred record, made durable by
    /// the next sync someone asks for (every sync covers everything published before it).
    pub fn publish_deferred(&self, lsn: Lsn) {
        self.appended.store(lsn, Ordering::SeqCst);
    }

    /// Asks the workers for a sync when one is due (always when `force`).
    pub fn maybe_request(&self, force: bool) {
        let appended = self.appended.load(Ordering::SeqCst);
        let claimed = self.claimed.load(Ordering::SeqCst);
        if appended <= claimed {
            return;
        }
        let due = force
            || match self.policy {
                FlushPolicy::Immediate => true,
                FlushPolicy::Batch { threshold, .. } => appended - claimed >= threshold,
            };
        if due && !self.pending.load(Ordering::SeqCst) && !self.pending.swap(true, Ordering::SeqCst)
        {
            // The channel holds at most one request while `pending` is set; a full channel can
            // only mean a request is already queued, which covers this one.
            let _ = self.req_tx.try_send(());
        }
    }

    /// Owner, `Pwrite` mode: stages `parts` (one record, contiguous) to be written at `off` of
    /// `seg`. The caller checked [`Shared::stage_room`].
    pub fn stage(&self, seg: &Arc<Segment>, off: usize, parts: &[&[u8]]) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut st = lock(&self.stage);
        let fits = st.chunks.back().is_some_and(|c| {
            Arc::ptr_eq(&c.seg, seg)
                && c.off + c.buf.len() == off
                && c.buf.len() + total <= c.buf.capacity().max(STAGE_CHUNK_BYTES)
        });
        if !fits {
            let mut buf = st.spare.pop().unwrap_or_default();
            buf.clear();
            buf.reserve(STAGE_CHUNK_BYTES.max(total));
            st.chunks.push_back(Chunk {
                seg: seg.clone(),
                off,
                buf,
            });
        }
        if let Some(c) = st.chunks.back_mut() {
            for p in parts {
                c.buf.extend_from_slice(p);
            }
        }
        self.staged_bytes.fetch_add(total, Ordering::AcqRel);
    }

    /// Owner: whether `bytes` more may be staged now.
    pub fn stage_room(&self, bytes: usize) -> bool {
        self.staged_bytes.load(Ordering::Acquire) + bytes <= self.max_staged_bytes
    }

    /// Writes every staged chunk to its file (in file order, serialised with other drains), so
    /// that a following fdatasync covers them and the map shows them. Flush workers call it
    /// before syncing; the owner before reading staged records.
    pub fn drain(&self) -> Result<()> {
        if self.mode != WriteMode::Pwrite {
            return Ok(());
        }
        let _w = lock(&self.write_lock);
        // A drain that failed earlier lost its chunks: writing later ones (and, worse, the
        // header of a later segment) would leave a hole in the log.
        if let Some(reason) = self.poisoned() {
            return Err(Error::Poisoned(reason));
        }
        let chunks = std::mem::take(&mut lock(&self.stage).chunks);
        let mut done = Vec::with_capacity(chunks.len());
        let mut result = Ok(());
        for c in chunks {
            if result.is_ok() {
                result = c.seg.pwrite_records(c.off, &c.buf);
            }
            self.staged_bytes.fetch_sub(c.buf.len(), Ordering::AcqRel);
            done.push(c.buf);
        }
        if let Err(e) = &result {
            // Poisoned before the write lock is released, so no later drain writes past the
            // lost bytes.
            self.mark_poisoned(e);
        }
        let mut st = lock(&self.stage);
        for buf in done {
            if st.spare.len() < STAGE_SPARE_CHUNKS && buf.capacity() <= 4 * STAGE_CHUNK_BYTES {
                st.spare.push(buf);
            }
        }
        result
    }

    /// Worker: claims the sync of everything published now and takes a ticket; `None` when
    /// another sync in flight already covers it.
    pub fn claim(&self) -> Option<(u64, Lsn)> {
        let mut order = lock(&self.order);
        self.pending.store(false, Ordering::SeqCst);
        let target = self.appended.load(Ordering::SeqCst);
        let prev = self.claimed.fetch_max(target, Ordering::SeqCst);
        if target <= prev {
            return None;
        }
        let ticket = order.next_ticket;
        order.next_ticket += 1;
        order.running.insert(ticket, None);
        Some((ticket, target))
    }

    /// Worker: writes out the stage, then syncs every segment holding records up to `target`,
    /// oldest first, writing a segment's header only once all earlier segments are durable.
    pub fn sync_to(&self, target: Lsn, worker: usize) -> Result<()> {
        let segs = self.segments_to_sync(target)?;
        let _serial = (self.mode == WriteMode::Mmap).then(|| lock(&self.write_lock));
        for seg in &segs {
            // Every earlier segment in the list was synced completely by this loop (they are
            // sealed, since a later one exists), so the header may be written now.
            seg.ensure_header()?;
            seg.sync(worker)?;
        }
        self.forget_synced_segments();
        Ok(())
    }

    /// Writes out the stage, then lists the segments a sync up to `target` covers, oldest
    /// first: every one holding records with lsn <= `target`.
    fn segments_to_sync(&self, target: Lsn) -> Result<Vec<Arc<Segment>>> {
        self.drain()?;
        Ok(lock(&self.segments)
            .iter()
            .take_while(|seg| {
                let first = seg.first_lsn();
                first != 0 && first <= target
            })
            .cloned()
            .collect())
    }

    /// Fails with [`Error::Poisoned`] once a write or sync failed.
    pub fn check_poisoned(&self) -> Result<()> {
        match self.poisoned() {
            Some(reason) => Err(Error::Poisoned(reason)),
            None => Ok(()),
        }
    }

    /// Drops the leading segments that are sealed and fully synced from the sync list (and
    /// their sync file descriptions: no more writes, so no more writeback errors to hear).
    fn forget_synced_segments(&self) {
        let mut list = lock(&self.segments);
        let keep_from = list
            .iter()
            .position(|s| !(s.is_sealed() && s.synced() >= s.written()))
            .unwrap_or(list.len());
        for s in list.drain(..keep_from) {
            s.release_sync_files();
        }
    }

    /// Caller: [`Shared::sync_to`] through the caller slot, with each segment's fdatasync the
    /// caller's future (`Pwrite` mode). The stage is written out and headers are written on the
    /// calling thread (page-cache copies); only the fdatasyncs are awaited. In `Mmap` mode the
    /// msyncs run on the calling thread, serialised with other syncs as `sync_to` does.
    async fn sync_to_with<F, Fut>(&self, target: Lsn, fdatasync: &mut F) -> Result<()>
    where
        F: FnMut(std::os::fd::RawFd) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>>,
    {
        if self.mode == WriteMode::Mmap {
            return self.sync_to(target, self.caller_slot);
        }
        for seg in &self.segments_to_sync(target)? {
            // Every earlier segment in the list was synced completely by this loop (awaited to
            // its end before this one starts), so the header may be written now.
            seg.ensure_header()?;
            seg.sync_with(self.caller_slot, fdatasync).await?;
        }
        self.forget_synced_segments();
        Ok(())
    }

    /// Caller: claims everything published and makes it durable with the caller's fdatasync
    /// future (see [`Durability::sync_with`]). Claim order, completion and poisoning are those
    /// of a flush worker's [`Shared::run_sync`]; a claimed sync whose future is dropped before
    /// it finished poisons the log (nobody can tell whether it would have succeeded, and
    /// durability may not advance past its ticket otherwise).
    pub async fn run_sync_with<F, Fut>(&self, mut fdatasync: F)
    where
        F: FnMut(std::os::fd::RawFd) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>>,
    {
        if self.shutdown.load(Ordering::Acquire) || self.poisoned().is_some() {
            return;
        }
        let Some((ticket, target)) = self.claim() else {
            return;
        };
        struct Claimed<'a> {
            shared: &'a Shared,
            ticket: Option<u64>,
        }
        impl Drop for Claimed<'_> {
            fn drop(&mut self) {
                if let Some(t) = self.ticket.take() {
                    let e = Error::io(
                        "fdatasync",
                        "",
                        std::io::Error::other("sync abandoned before it finished"),
                    );
                    self.shared.poison(&e, Some(t));
                }
            }
        }
        let mut claimed = Claimed {
            shared: self,
            ticket: Some(ticket),
        };
        self.caller_syncs.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        let r = self.sync_to_with(target, &mut fdatasync).await;
        claimed.ticket = None;
        match r {
            Ok(()) => self.complete(ticket, target, t0.elapsed().as_micros() as u64),
            Err(e) => self.poison(&e, Some(ticket)),
        }
    }

    /// Worker `worker`: claims everything published and syncs it (one group commit).
    /// Returns false when the WAL is poisoned or shut down.
    pub fn run_sync(&self, worker: usize) -> bool {
        if self.shutdown.load(Ordering::Acquire) || self.poisoned().is_some() {
            return false;
        }
        let Some((ticket, target)) = self.claim() else {
            return true;
        };
        if worker == self.caller_slot {
            self.caller_syncs.fetch_add(1, Ordering::Relaxed);
        }
        let t0 = Instant::now();
        match self.sync_to(target, worker) {
            Ok(()) => {
                self.complete(ticket, target, t0.elapsed().as_micros() as u64);
                true
            }
            Err(e) => {
                self.poison(&e, Some(ticket));
                false
            }
        }
    }

    /// Worker: records a successful sync; advances `durable` over every leading ticket that
    /// has succeeded (never past a sync still running or failed) and wakes the waiters.
    pub fn complete(&self, ticket: u64, target: Lsn, sync_us: u64) {
        let (before, after) = {
            let mut order = lock(&self.order);
            if self.poisoned.load(Ordering::SeqCst) {
                order.running.remove(&ticket);
                return;
            }
            order.running.insert(ticket, Some(target));
            let mut upto = 0;
            while let Some(entry) = order.running.first_entry() {
                match *entry.get() {
                    Some(t) => {
                        upto = upto.max(t);
                        entry.remove();
                    }
                    None => break,
                }
            }
            let before = self.durable.fetch_max(upto, Ordering::SeqCst);
            (before, before.max(upto))
        };
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if after > before {
            self.wake_upto(after);
        }
        let _ = self.report_tx.try_send(FlushReport {
            durable_lsn: after,
            records: after.saturating_sub(before),
            sync_us,
            error: None,
        });
    }

    /// A write or sync failed: the WAL refuses further writes and no later result advances
    /// durability; every waiter gets the error.
    pub fn poison(&self, err: &Error, ticket: Option<u64>) {
        self.syncs_failed.fetch_add(1, Ordering::Relaxed);
        self.mark_poisoned(err);
        if let Some(t) = ticket {
            lock(&self.order).running.remove(&t);
        }
        self.wake_all();
        let _ = self.report_tx.try_send(FlushReport {
            durable_lsn: self.durable(),
            records: 0,
            sync_us: 0,
            error: Some(err.to_string()),
        });
    }

    /// Sets the poisoned flag (first reason wins), under the lock `complete` checks it under.
    fn mark_poisoned(&self, err: &Error) {
        let _order = lock(&self.order);
        let mut reason = lock(&self.poison_reason);
        if reason.is_none() {
            *reason = Some(err.to_string());
        }
        self.poisoned.store(true, Ordering::SeqCst);
    }

    /// Owner drop: waiters that are not yet satisfied get `Closed`.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    fn wake_upto(&self, durable: Lsn) {
        let woken: Vec<Waker> = {
            let mut w = lock(&self.waiters);
            let rest = w.split_off(&(durable.saturating_add(1), 0));
            std::mem::replace(&mut *w, rest).into_values().collect()
        };
        for waker in woken {
            waker.wake();
        }
    }

    fn wake_all(&self) {
        let woken: Vec<Waker> = std::mem::take(&mut *lock(&self.waiters))
            .into_values()
            .collect();
        for waker in woken {
            waker.wake();
        }
    }

    /// Waiter: `Ready` when `lsn` is durable or can never become durable.
    fn poll_lsn(&self, lsn: Lsn, id: &mut Option<u64>, waker: &Waker) -> Poll<Result<()>> {
        if let Some(r) = self.check(lsn) {
            return Poll::Ready(r);
        }
        {
            let mut w = lock(&self.waiters);
            let key_id = match id {
                Some(i) => *i,
                None => {
                    if w.len() >= self.max_waiters {
                        return Poll::Ready(Err(Error::TooManyWaiters {
                            max: self.max_waiters,
                        }));
                    }
                    let i = self.next_waiter_id.fetch_add(1, Ordering::Relaxed);
                    *id = Some(i);
                    i
                }
            };
            w.insert((lsn, key_id), waker.clone());
        }
        // Re-check after registering: a worker that advanced `durable` before our insert has
        // already drained the registry.
        if let Some(r) = self.check(lsn) {
            self.forget(lsn, *id);
            return Poll::Ready(r);
        }
        Poll::Pending
    }

    fn check(&self, lsn: Lsn) -> Option<Result<()>> {
        if self.durable() >= lsn {
            return Some(Ok(()));
        }
        if let Some(reason) = self.poisoned() {
            return Some(Err(Error::Poisoned(reason)));
        }
        if self.closed.load(Ordering::SeqCst) {
            return Some(Err(Error::Closed));
        }
        None
    }

    fn forget(&self, lsn: Lsn, id: Option<u64>) {
        if let Some(i) = id {
            lock(&self.waiters).remove(&(lsn, i));
        }
    }
}

pub(crate) fn stats_of(shared: &Shared) -> WalStats {
    WalStats {
        syncs: shared.syncs.load(Ordering::Relaxed),
        roll_stalls: shared.roll_stalls.load(Ordering::Relaxed),
        rolls: shared.rolls.load(Ordering::Relaxed),
        segments_deleted: shared.segments_deleted.load(Ordering::Relaxed),
        segments_recycled: shared.segments_recycled.load(Ordering::Relaxed),
        syncs_failed: shared.syncs_failed.load(Ordering::Relaxed),
        caller_syncs: shared.caller_syncs.load(Ordering::Relaxed),
    }
}
