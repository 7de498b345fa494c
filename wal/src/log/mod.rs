//! [`Wal`]: the shared write-ahead log of one core — the append path, the per-group reads,
//! truncation, purge, hard state, and the durability API. Owned by one thread (the core's
//! executor); `&mut self` methods never block on I/O except where documented (a roll whose next
//! segment is not prepared yet); `&self` reads of entries still staged write the stage out
//! first (`Pwrite` mode). Flush workers and the segment pool run on their own threads.
//!
//! Invariants: records are written in lsn order, each fully staged (`Pwrite`) or copied into
//! the map (`Mmap`) before it is published; a published byte is never written again while its segment lives; a segment is
//! deleted only when no group needs it, every purge record is durable, and the checkpoint at
//! the start of the first kept segment is durable.
//!
//! Files: this one (the type, open, lock, close), `write.rs` (appends, truncate, purge, hard
//! state, rolls), `read.rs` (index and entry reads), `durable.rs` (durable positions and
//! waits), `reclaim.rs` (segment deletion and pins).

mod durable;
mod read;
mod reclaim;
mod write;

pub use read::Entries;
pub use write::{drop_reserve_bytes, DROP_RESERVE_MAX_FRACTION, DROP_RESERVE_RECORDS};

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::durability::{FlushReport, Lsn, Shared};
use crate::error::{Error, Result};
use crate::flush_worker::FlushWorkers;
use crate::group_index::GroupIndex;
use crate::options::{WalOptions, WriteMode, FLUSH_REPORT_CAPACITY};
use crate::recovery::{recover, RecoveryReport, RepairReport};
use crate::segment::{SegConfig, Segment};
use crate::segment_pool::SegmentPool;

/// Largest Raft index accepted (keeps index arithmetic far from overflow).
pub const MAX_INDEX: u64 = u64::MAX >> 2;
/// Name of the lock file in the WAL directory.
pub const LOCK_FILE: &str = "LOCK";
/// How long `open` keeps trying to take the directory lock.
pub const LOCK_WAIT_MS: u64 = 1000;
/// Pause between attempts to take the directory lock.
pub const LOCK_RETRY_MS: u64 = 5;

/// One entry read back, borrowing the map (zero-copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Raft index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// Payload bytes, straight from the memory map (CRC-checked).
    pub payload: &'a [u8],
}

/// A group that keeps one of the oldest segments alive (see [`Wal::pins`]): its oldest live
/// entry sits in segment `seq`, so no segment from `seq` on can be deleted until the group purges
/// (after a snapshot) at least through `last_index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentPin {
    /// Raft group.
    pub group: u64,
    /// Sequence number of the oldest segment holding one of the group's live entries.
    pub seq: u64,
    /// Index of the group's oldest live entry (in segment `seq`).
    pub first_index: u64,
    /// Highest index of the group held in the segments asked about: a purge past it (a
    /// snapshot at `last_index` or later) releases them as far as this group is concerned.
    pub last_index: u64,
}

struct SegMeta {
    seg: Arc<Segment>,
    /// Last lsn of the roll checkpoint at the start of this segment.
    checkpoint_end: Lsn,
}

/// The write-ahead log. See the crate docs for the design.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    shared: Arc<Shared>,
    req_tx: flume::Sender<()>,
    report_rx: flume::Receiver<FlushReport>,
    workers: FlushWorkers,
    pool: SegmentPool,
    segments: VecDeque<SegMeta>,
    active_off: usize,
    next_lsn: Lsn,
    /// Lsn of the latest record that is not deferred ([`Wal::required_lsn`]).
    required_lsn: Lsn,
    groups: HashMap<u64, GroupIndex>,
    /// Lsn of the latest record that removed entries (Truncate or Purge).
    last_drop_lsn: Lsn,
    /// A deletion decided but waiting for durability: (first seq to keep, lsn that must be
    /// durable first).
    pending_reclaim: Option<(u64, Lsn)>,
    recovery: RecoveryReport,
    _lock: File,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("next_lsn", &self.next_lsn)
            .field("durable_lsn", &self.durable_lsn())
            .field("groups", &self.groups.len())
            .finish()
    }
}

fn seg_config(opts: &WalOptions) -> SegConfig {
    SegConfig {
        bytes: opts.segment_bytes,
        mode: opts.write_mode,
        prefault: opts.prefault,
        // One sync file description per flush worker, and one for syncs run on the owner's
        // thread (`Durability::sync_here`).
        workers: opts.flush_workers + 1,
        open_sync_files: true,
        fault: opts.fault.clone(),
    }
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    // A forked child holds a copy of the descriptor (and so the lock) until it execs and the
    // close-on-exec flag drops it; retry for a short, bounded time before reporting `Locked`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(LOCK_WAIT_MS);
    loop {
        // SAFETY: plain syscall on an fd we own.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(Error::io("flock", &path, e));
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Locked { path: dir.into() });
        }
        std::thread::sleep(std::time::Duration::from_millis(LOCK_RETRY_MS));
    }
    Ok(f)
}

impl Wal {
    /// Opens (recovering) or creates the log in `dir`.
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Wal> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        // Durably: on a first boot the directory (and its missing parents) must survive a crash
        // as surely as the segments written into it.
        crate::segment::create_dir_durable(&dir)?;
        let lock = lock_dir(&dir)?;
        let cfg = seg_config(&opts);
        let rec = recover(&dir, &opts, &cfg)?;
        let mut segments: VecDeque<SegMeta> = rec
            .segments
            .into_iter()
            .map(|s| {
                let first = s.first_lsn();
                SegMeta {
                    seg: Arc::new(s),
                    checkpoint_end: first.saturating_sub(1),
                }
            })
            .collect();
        let mut next_lsn = rec.next_lsn;
        if segments.is_empty() {
            let seg = Segment::prepare(&dir, 1, &cfg)?;
            seg.activate(1, opts.owner_id);
            seg.ensure_header()?;
            seg.sync(0)?;
            next_lsn = 1;
            segments.push_back(SegMeta {
                seg: Arc::new(seg),
                checkpoint_end: 0,
            });
        }
        let (req_tx, req_rx) = flume::bounded(opts.flush_workers);
        let (report_tx, report_rx) = flume::bounded(FLUSH_REPORT_CAPACITY);
        let shared = Arc::new(Shared::new(
            opts.flush_policy,
            opts.write_mode,
            opts.max_staged_bytes,
            opts.max_waiters,
            opts.wait_spin_us,
            opts.flush_workers,
            next_lsn - 1,
            req_tx.clone(),
            report_tx,
        ));
        let active = match segments.back() {
            Some(m) => m.seg.clone(),
            None => unreachable!("a segment was created above"),
        };
        shared.add_segment(active.clone());
        let workers = FlushWorkers::spawn(
            opts.flush_workers,
            shared.clone(),
            req_rx,
            opts.worker_spin_us,
        )?;
        let recycle = match opts.write_mode {
            WriteMode::Pwrite => opts.recycle_segments,
            WriteMode::Mmap => 0,
        };
        let mut pool = SegmentPool::spawn(dir.clone(), cfg, recycle, shared.clone())?;
        pool.request(active.seq + 1)?;
        Ok(Wal {
            dir,
            active_off: active.written(),
            opts,
            shared,
            req_tx,
            report_rx,
            workers,
            pool,
            segments,
            next_lsn,
            required_lsn: next_lsn - 1,
            groups: rec.groups,
            last_drop_lsn: 0,
            pending_reclaim: None,
            recovery: rec.report,
            _lock: lock,
        })
    }

    /// Repairs the log in `dir` without opening it: cuts it at the first invalid record (in
    /// any segment), drops every record after it (zeroing valid ones that follow in that
    /// segment, deleting later segments) and returns a report saying exactly what was
    /// dropped. A log that needs no repair is left unchanged. This is the documented way
    /// forward after [`Error::ValidAfterInvalid`] or a corrupt sealed segment; it may drop
    /// acknowledged records, so it is never done implicitly.
    pub fn repair(dir: impl AsRef<Path>, opts: &WalOptions) -> Result<RepairReport> {
        opts.validate()?;
        let dir = dir.as_ref();
        let _lock = lock_dir(dir)?;
        crate::recovery::repair(dir, opts, &seg_config(opts))
    }

    /// Scans the log in `dir` as open would, without changing anything and without taking
    /// the directory lock: files are opened and mapped read-only; a torn tail is reported
    /// (under `TolerateTornTail`) but not cut; spares are not deleted; nothing is synced.
    /// Returns what open would recover, or the error open would refuse with (file and offset).
    /// A log being written concurrently may show a torn tail that is only a write in flight.
    pub fn inspect(dir: impl AsRef<Path>, opts: &WalOptions) -> Result<RecoveryReport> {
        opts.validate()?;
        crate::recovery::inspect(dir.as_ref(), opts, &seg_config(opts))
    }

    /// What [`Wal::repair`] would cut and drop in `dir`, computed read-only like
    /// [`Wal::inspect`] (a dry run: nothing is changed).
    pub fn repair_plan(dir: impl AsRef<Path>, opts: &WalOptions) -> Result<RepairReport> {
        opts.validate()?;
        crate::recovery::repair_plan(dir.as_ref(), opts, &seg_config(opts))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Syncs everything and closes, reporting a failed final sync (a plain drop cannot).
    pub fn close(self) -> Result<()> {
        self.sync()
    }
}

/// Longest a drop waits for its final sync.
pub const DROP_SYNC_TIMEOUT_MS: u64 = 10_000;

impl Drop for Wal {
    /// A graceful close: syncs what was appended (bounded by [`DROP_SYNC_TIMEOUT_MS`]; skipped
    /// when poisoned), then stops the workers and the pool. A process that dies without
    /// dropping keeps exactly what was durable, plus possibly more.
    fn drop(&mut self) {
        if self.shared.poisoned().is_none() {
            let lsn = self.flush();
            let _ = self.durability().wait_blocking_timeout(
                lsn,
                Some(std::time::Duration::from_millis(DROP_SYNC_TIMEOUT_MS)),
            );
        }
        self.shared
            .shutdown
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.workers.join(&self.req_tx);
        self.shared.close();
    }
}
