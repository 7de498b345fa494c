//! The WAL's error type. Every failure that can come from the disk, the file system or the caller
//! is a variant here (never a panic); errors about files name the file, and errors about corrupt
//! bytes name the file and the byte offset. Owned by the `wal` crate.

use std::io;
use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the WAL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed (`op` names the call, `path` the file or directory).
    /// ENOSPC shows up here; see [`Error::is_no_space`].
    #[error("{op} failed on {path}: {source}")]
    Io {
        /// The operation that failed, e.g. `"fallocate"`, `"msync"`.
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The file does not start with the segment magic.
    #[error("{path}: bad magic {found:02x?}: not a ringraft WAL segment")]
    BadMagic {
        /// The offending file.
        path: PathBuf,
        /// The first eight bytes found.
        found: [u8; 8],
    },
    /// The segment was written by a format version this build does not read.
    #[error(
        "{path}: unsupported WAL format version {found} (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// The offending file.
        path: PathBuf,
        /// The version in the header.
        found: u16,
        /// The version this build reads and writes.
        supported: u16,
    },
    /// The segment belongs to another owner (node) than the one opening it.
    #[error("{path}: segment belongs to owner {found}, expected owner {expected}")]
    OwnerMismatch {
        /// The offending file.
        path: PathBuf,
        /// Owner id in the header.
        found: u64,
        /// Owner id in the options.
        expected: u64,
    },
    /// Bytes that should be valid are not: a sealed segment, a header, or a record read back.
    #[error("{path}: corrupt at byte offset {offset}: {reason}")]
    Corrupt {
        /// The offending file.
        path: PathBuf,
        /// Byte offset of the bad header or record inside the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// An invalid record followed by a valid one of the same segment: not a torn tail (a synced
    /// record may have been damaged, and cutting would drop the acknowledged records after
    /// it), so opening refuses. Inspect the file; `Wal::repair` (`ringraft wal repair`) cuts
    /// the log at `offset` and reports every record it drops.
    #[error(
        "{path}: invalid record at byte offset {offset} ({reason}) but a valid record (lsn \
         {valid_lsn}) follows at offset {valid_offset}: refusing to guess; repair the log \
         explicitly (ringraft wal repair) to cut it there and drop what follows"
    )]
    ValidAfterInvalid {
        /// The segment.
        path: PathBuf,
        /// Offset of the invalid record.
        offset: u64,
        /// What is wrong with it.
        reason: String,
        /// Offset of the first valid record after it.
        valid_offset: u64,
        /// Its lsn.
        valid_lsn: u64,
    },
    /// Strict recovery found an invalid tail in the last segment (TolerateTornTail would cut it).
    #[error(
        "{path}: torn tail at byte offset {offset} (strict recovery refuses to cut it): {reason}"
    )]
    TornTail {
        /// The last segment.
        path: PathBuf,
        /// Offset of the first invalid record.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// More than `max_buffered_entries` records are appended but not durable yet. Nothing was
    /// written; a sync has been requested. Wait for durability (e.g. of [`crate::Wal::last_lsn`])
    /// and retry.
    #[error("backpressure: {buffered} records not yet durable (max_buffered_entries = {max})")]
    Backpressure {
        /// Records appended but not yet durable.
        buffered: u64,
        /// The configured limit.
        max: u64,
    },
    /// An append whose index does not directly follow the group's last index.
    #[error("group {group}: append of index {index}, expected index {expected}")]
    NonContiguous {
        /// Raft group.
        group: u64,
        /// Index given.
        index: u64,
        /// Index the log expects next.
        expected: u64,
    },
    /// The index lies below the group's first index (purged).
    #[error("group {group}: index {index} is compacted (first index is {first_index})")]
    Compacted {
        /// Raft group.
        group: u64,
        /// Index asked for.
        index: u64,
        /// The group's first index.
        first_index: u64,
    },
    /// The index lies beyond the group's last index.
    #[error("group {group}: index {index} is not in the log (last index is {last_index})")]
    Unavailable {
        /// Raft group.
        group: u64,
        /// Index asked for.
        index: u64,
        /// The group's last index.
        last_index: u64,
    },
    /// A payload larger than `max_payload_bytes`.
    #[error("payload of {len} bytes exceeds max_payload_bytes = {max}")]
    PayloadTooLarge {
        /// Payload length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// A fresh segment cannot hold the roll checkpoint (one record per group) plus the record.
    #[error("segment of {segment_bytes} bytes cannot hold {needed} bytes (checkpoint of all groups + record); raise segment_bytes")]
    SegmentTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Configured segment size.
        segment_bytes: usize,
    },
    /// `max_segments` live segments exist; purge before appending more.
    #[error("log is full: {segments} live segments (max_segments); purge before appending")]
    LogFull {
        /// Live segments.
        segments: usize,
    },
    /// An earlier sync or record write failed; the kernel may have dropped the dirty pages, so
    /// the WAL refuses further writes and waits, and durability never advances again. Stop
    /// acknowledging; reopen to recover from what is on disk.
    #[error("WAL failed earlier and refuses further writes (reopen it): {0}")]
    Poisoned(String),
    /// The WAL was closed (dropped) before the awaited position became durable.
    #[error("WAL closed before the position became durable")]
    Closed,
    /// More concurrent durability waiters than `max_waiters`.
    #[error("too many durability waiters (max_waiters = {max})")]
    TooManyWaiters {
        /// Configured maximum.
        max: usize,
    },
    /// Another process (or another `Wal` in this one) holds the directory lock.
    #[error("WAL directory {path} is locked by another user")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// Options that cannot work.
    #[error("invalid WAL options: {0}")]
    InvalidOptions(String),
}

impl Error {
    /// True when the error is ENOSPC (no space left on the device).
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.raw_os_error() == Some(libc::ENOSPC))
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
