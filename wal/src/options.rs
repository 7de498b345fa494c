//! Configuration of a [`crate::Wal`]: every limit is a named constant (the default) and a field.
//! [`WalOptions::validate`] rejects combinations that cannot work before anything touches the
//! disk. Owned by the `wal` crate.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::fault::FaultInjector;
use crate::record::RECORD_HEADER_BYTES;
use crate::segment::SEGMENT_HEADER_BYTES;

/// Default size of one segment file: 64 MiB.
pub const DEFAULT_SEGMENT_BYTES: usize = 64 << 20;
/// Smallest segment allowed (one page).
pub const MIN_SEGMENT_BYTES: usize = 4096;
/// Largest segment allowed (record offsets are stored as u32).
pub const MAX_SEGMENT_BYTES: usize = 1 << 31;
/// Segment sizes must be a multiple of this (the page size; mmap and msync work in pages).
pub const SEGMENT_ALIGN_BYTES: usize = 4096;
/// Default bound on records appended but not yet durable.
pub const DEFAULT_MAX_BUFFERED_ENTRIES: u64 = 65_536;
/// Default number of flush worker threads.
pub const DEFAULT_FLUSH_WORKERS: usize = 2;
/// Upper bound on flush worker threads.
pub const MAX_FLUSH_WORKERS: usize = 64;
/// Default largest payload of one record: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// Default bound on live segment files (64 GiB of log at the default segment size).
pub const DEFAULT_MAX_SEGMENTS: usize = 1024;
/// Default bound on futures/threads waiting for durability at the same time.
pub const DEFAULT_MAX_WAITERS: usize = 65_536;
/// Default `Batch` threshold (records).
pub const DEFAULT_BATCH_THRESHOLD: u64 = 100;
/// Default `Batch` interval (milliseconds).
pub const DEFAULT_BATCH_INTERVAL_MS: u64 = 20;
/// Largest `Batch` interval accepted (a waiter never waits longer than this for a sync to start).
pub const MAX_BATCH_INTERVAL_MS: u64 = 10_000;
/// Largest spin allowed for workers and blocking waiters (microseconds).
pub const MAX_SPIN_US: u64 = 10_000;
/// Capacity of the flush-report channel (reports are cumulative; a full channel drops new ones).
pub const FLUSH_REPORT_CAPACITY: usize = 1024;
/// Default bound on record bytes staged in memory but not yet written to the file
/// ([`WriteMode::Pwrite`]); beyond it `append` returns backpressure. 64 MiB: one default segment,
/// far more than a sync ever has to write at once, small next to the node's memory.
pub const DEFAULT_MAX_STAGED_BYTES: usize = 64 << 20;
/// Default number of purged segment files kept for reuse instead of deleted (each is one
/// `segment_bytes` file on disk; reusing it skips fallocate and zero-filling).
pub const DEFAULT_RECYCLE_SEGMENTS: usize = 4;
/// Upper bound on recycled files kept.
pub const MAX_RECYCLE_SEGMENTS: usize = 64;

/// How appended records reach the file and stable storage. Reads always go through the
/// memory map in both modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Records are staged in memory by `append` and written with `pwritev` by the flush worker
    /// that syncs them, then made durable with `fdatasync` (each worker through its own file
    /// description). The segment map is read-only. Measured fastest here (see `make bench-wal`):
    /// a dirty page written with `write()` syncs ~3× faster than one dirtied through a map.
    #[default]
    Pwrite,
    /// Records are copied into a shared writable map by `append` and made durable with
    /// `msync(MS_SYNC)`. Syncs are serialised (one file description for every msync).
    Mmap,
}

impl WriteMode {
    /// Parses `"pwrite"` or `"mmap"` (the node's `raft.persistence.wal_write_mode`).
    pub fn parse(s: &str) -> Option<WriteMode> {
        match s {
            "pwrite" => Some(WriteMode::Pwrite),
            "mmap" => Some(WriteMode::Mmap),
            _ => None,
        }
    }
}

/// When the flush workers sync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Start a sync as soon as anything is appended and no sync request is pending; records
    /// appended while a sync runs are covered by the next one (group commit).
    Immediate,
    /// Start a sync once `threshold` records wait, or `interval_ms` after the last sync started,
    /// whichever comes first. [`crate::Wal::flush`] forces one at any time.
    Batch {
        /// Records waiting that trigger a sync.
        threshold: u64,
        /// Longest time a record waits for a sync to start (milliseconds).
        interval_ms: u64,
    },
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy::Batch {
            threshold: DEFAULT_BATCH_THRESHOLD,
            interval_ms: DEFAULT_BATCH_INTERVAL_MS,
        }
    }
}

/// What recovery does with an invalid tail in the last segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Any invalid byte is an error ([`Error::TornTail`] in the last segment).
    Strict,
    /// Cut the last segment at its first invalid record (a write torn by a crash; nothing
    /// there was ever reported durable) and zero the rest. Invalid data in a sealed segment is
    /// still an error.
    #[default]
    TolerateTornTail,
}

/// Options of a [`crate::Wal`]. `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct WalOptions {
    /// Size of each preallocated segment file.
    pub segment_bytes: usize,
    /// When syncs start.
    pub flush_policy: FlushPolicy,
    /// Records appended but not durable beyond which `append` returns [`Error::Backpressure`].
    pub max_buffered_entries: u64,
    /// Flush worker threads (syncs may overlap; each covers everything appended before it began).
    pub flush_workers: usize,
    /// Largest record payload.
    pub max_payload_bytes: usize,
    /// Largest number of live segment files; a roll beyond it returns [`Error::LogFull`].
    pub max_segments: usize,
    /// Largest number of concurrent durability waiters.
    pub max_waiters: usize,
    /// Recovery behaviour on open.
    pub recovery_mode: RecoveryMode,
    /// Id of the owner (node) written into each segment header and checked on open.
    pub owner_id: u64,
    /// Map new segments with MAP_POPULATE (pre-faulted page tables) on the preparer thread.
    pub prefault: bool,
    /// Flush workers spin this long for a new request before parking (0 = park at once).
    /// Trades CPU for a lower wake-up latency.
    pub worker_spin_us: u64,
    /// Blocking waiters spin this long on the durable position before parking (0 = park at once).
    pub wait_spin_us: u64,
    /// Test hook: injected failures in the file layer (None in production).
    pub fault: Option<Arc<FaultInjector>>,
    /// How appends reach stable storage.
    pub write_mode: WriteMode,
    /// Bound on staged, not yet written record bytes ([`WriteMode::Pwrite`]).
    pub max_staged_bytes: usize,
    /// Purged segment files kept for reuse (0 = always delete, always prepare fresh files).
    pub recycle_segments: usize,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            flush_policy: FlushPolicy::default(),
            max_buffered_entries: DEFAULT_MAX_BUFFERED_ENTRIES,
            flush_workers: DEFAULT_FLUSH_WORKERS,
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            max_segments: DEFAULT_MAX_SEGMENTS,
            max_waiters: DEFAULT_MAX_WAITERS,
            recovery_mode: RecoveryMode::default(),
            owner_id: 0,
            prefault: true,
            worker_spin_us: 0,
            wait_spin_us: 0,
            fault: None,
            write_mode: WriteMode::default(),
            max_staged_bytes: DEFAULT_MAX_STAGED_BYTES,
            recycle_segments: DEFAULT_RECYCLE_SEGMENTS,
        }
    }
}

impl WalOptions {
    /// Checks the options; every rejection says which field and why.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidOptions(m));
        if self.segment_bytes < MIN_SEGMENT_BYTES || self.segment_bytes > MAX_SEGMENT_BYTES {
            return bad(format!(
                "segment_bytes = {} outside [{MIN_SEGMENT_BYTES}, {MAX_SEGMENT_BYTES}]",
                self.segment_bytes
            ));
        }
        if !self.segment_bytes.is_multiple_of(SEGMENT_ALIGN_BYTES) {
            return bad(format!(
                "segment_bytes = {} is not a multiple of {SEGMENT_ALIGN_BYTES}",
                self.segment_bytes
            ));
        }
        let room = self.segment_bytes - SEGMENT_HEADER_BYTES - RECORD_HEADER_BYTES;
        if self.max_payload_bytes > room {
            return bad(format!(
                "max_payload_bytes = {} does not fit a segment of {} bytes (at most {room})",
                self.max_payload_bytes, self.segment_bytes
            ));
        }
        if self.max_buffered_entries == 0 {
            return bad("max_buffered_entries must be at least 1".into());
        }
        if self.flush_workers == 0 || self.flush_workers > MAX_FLUSH_WORKERS {
            return bad(format!(
                "flush_workers = {} outside [1, {MAX_FLUSH_WORKERS}]",
                self.flush_workers
            ));
        }
        if self.max_segments < 2 {
            return bad("max_segments must be at least 2".into());
        }
        if self.max_waiters == 0 {
            return bad("max_waiters must be at least 1".into());
        }
        if let FlushPolicy::Batch {
            threshold,
            interval_ms,
        } = self.flush_policy
        {
            if threshold == 0 {
                return bad("flush_policy Batch threshold must be at least 1".into());
            }
            if interval_ms == 0 || interval_ms > MAX_BATCH_INTERVAL_MS {
                return bad(format!(
                    "flush_policy Batch interval_ms = {interval_ms} outside [1, {MAX_BATCH_INTERVAL_MS}]"
                ));
            }
        }
        let largest = crate::record::record_bytes(self.max_payload_bytes);
        if self.max_staged_bytes < largest {
            return bad(format!(
                "max_staged_bytes = {} cannot hold the largest record ({largest} bytes)",
                self.max_staged_bytes
            ));
        }
        if self.recycle_segments > MAX_RECYCLE_SEGMENTS {
            return bad(format!(
                "recycle_segments = {} above {MAX_RECYCLE_SEGMENTS}",
                self.recycle_segments
            ));
        }
        if self.worker_spin_us > MAX_SPIN_US || self.wait_spin_us > MAX_SPIN_US {
            return bad(format!("spin times are limited to {MAX_SPIN_US} µs"));
        }
        Ok(())
    }
}
