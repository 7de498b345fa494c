//! ringraft-wal: the write-ahead log of a ringraft node — segmented, memory-mapped, CRC-checked,
//! with batched fsync by flush worker threads and one shared log per core for many Raft groups.
//!
//! # Design
//!
//! * **One shared log per core, not one log per group.** A node runs many Raft groups per
//!   core. Every record carries its group id, and [`Wal`] keeps a per-group in-memory index
//!   (entry → segment, offset, term, lsn). One sync therefore makes the appends of *every*
//!   group durable at once: with N active groups, a per-group log would need N fsyncs (or N
//!   concurrent ones competing for the same device queue) for what the shared log does with
//!   one, and would keep N sets of preallocated files and mappings. raft-engine (TiKV) and
//!   Redpanda batch fsyncs across groups the same way. The price: a group's entries interleave
//!   with others', so reads go through the index (a memory lookup), and a segment can be
//!   deleted only when *no* group needs it any more (see purge below).
//! * **Segments** ([`segment`]): preallocated fixed-size files (default 64 MiB), fallocated and
//!   zero-filled when fresh so that writes never allocate blocks (no ENOSPC or SIGBUS, no
//!   extent conversion in the fsync), and memory-mapped shared (read-only in the default write
//!   mode) for reads: recovery scans and zero-copy entry reads. The file name is the segment's
//!   sequence number (fixed before use); the header carries its first lsn. The next segment is
//!   prepared and mapped by the segment pool thread ([`segment_pool`]) before it is needed, so
//!   an append never creates, zero-fills or maps a file (a roll waits only if the pool has not
//!   finished, counted in [`WalStats::roll_stalls`]). Purged segments are **recycled**: renamed
//!   to `*.wal.free` and reused for a later segment (header zeroed, no fallocate, no zero-fill;
//!   up to `recycle_segments` files kept, the rest unlinked), all on the pool thread.
//! * **Write modes** ([`WriteMode`], `WalOptions::write_mode`), chosen by measurement
//!   (`make bench-wal`: one 300-byte record made durable p50 ~80–90 µs with pwrite+fdatasync vs
//!   ~260–290 µs through a map + msync on this ext4/virtio box; 3 writers ~145 vs ~620 µs):
//!   - `Pwrite` (default): [`Wal::append`] encodes the record and copies it into an in-memory
//!     *stage* (no syscall); the flush worker that syncs it writes the staged bytes with one
//!     `pwritev` per segment run (followed by 48 zero bytes, the end marker that recycled files
//!     need) and then `fdatasync`s. Reads go through the map: on Linux a `MAP_SHARED` map and
//!     `pwrite` to the same file share the page cache, so the map shows every byte a completed
//!     pwrite wrote. Reading an entry that is still staged first writes the stage out (on the
//!     reading thread; a node reads fresh entries from its own memory, so this is rare).
//!   - `Mmap`: `append` copies the record into a writable shared map; workers `msync` the dirty
//!     range. (The kernel write-protects a page again once msync cleaned it, so the first write
//!     to each page after a sync takes a fault, and the sync itself costs ~3× a fdatasync after
//!     `pwrite` here.) Segments are never recycled in this mode.
//!
//!   Either way append publishes the record with two atomic stores and returns its lsn: no
//!   lock held across I/O, no allocation on the hot path (apart from the index's amortised
//!   VecDeque growth and stage chunks, which are reused); the only syscall is an occasional
//!   futex wake of a flush worker when a sync becomes due. Durability is asked for separately.
//! * **Flush workers** ([`flush_worker`]): `flush_workers` threads make records durable with
//!   group commit: a sync claims everything published when it starts (all groups, all
//!   segments), writes out the stage and syncs. [`FlushPolicy::Immediate`] requests a sync
//!   whenever records wait and none is queued; [`FlushPolicy::Batch`] when `threshold` records
//!   wait or `interval_ms` passed. Syncs may overlap on several workers, but durability advances
//!   in claim order only, and each worker syncs through its own file description, so a failed
//!   sync can never be masked by a concurrent successful one ([`durability`]). Results come back
//!   over flume ([`Wal::flush_reports`]) and through the durable lsn.
//! * **Waiting without blocking the executor** ([`durability`]): [`Wal::durable_lsn`] /
//!   [`Wal::durable_index`] can be read at any time; [`Wal::wait_durable`] returns a future any
//!   executor (glommio included) can poll — its waker is woken from the worker thread;
//!   [`Durability::sync_with`] lets an async caller run the sync itself with its own
//!   fdatasync future ([`ring::fdatasync`] on glommio: through the executor's io_uring);
//!   [`Durability::wait_blocking`] serves plain threads.
//! * **Backpressure**: when `max_buffered_entries` records are appended but not durable, or the
//!   stage holds `max_staged_bytes`, append returns [`Error::Backpressure`] without writing
//!   anything (and requests a sync); the caller awaits durability and retries. Memory never
//!   grows past the bounds.
//! * **Raft operations**: reads by index range are zero-copy slices borrowing the `Wal`
//!   ([`Wal::entries`], CRC-checked as read); [`Wal::term`], [`Wal::first_index`],
//!   [`Wal::last_index`] come from memory. [`Wal::truncate`] appends a Truncate record (the
//!   suffix removal is durable with it and survives reopen). [`Wal::purge`] appends a Purge
//!   record and deletes whole segments no group needs, once every Truncate/Purge record so far
//!   and the checkpoint at the start of the first kept segment are durable ([`Wal::reclaim`]).
//!   Space comes back from the oldest segment only, so one group that never purges pins every
//!   later segment: [`Wal::pins`] names the groups holding the oldest segments (and the index
//!   through which each must purge), so the owner can compact them early.
//! * **Hard state** ([`hard_state`]): (term, vote, commit) per group is a record in the log —
//!   atomic and never torn because it is one CRC-checked record, durable with the same sync as
//!   the entries. Each segment roll re-writes every group's hard state and position (first and
//!   last index: a Checkpoint record) at the start of the new segment, so deleting old segments
//!   never loses them, and a replay that starts there knows which entries lived before it (they
//!   must all be removed by later Truncate/Purge records, else recovery reports corruption).
//! * **Recovery never guesses** ([`recovery`]): scan, verify every CRC; an invalid record at the
//!   end of the last segment with nothing valid after it is a torn tail, cut
//!   ([`RecoveryMode::TolerateTornTail`]) or refused ([`RecoveryMode::Strict`]); invalid data in
//!   a sealed segment, or an invalid record followed by a valid one anywhere
//!   ([`Error::ValidAfterInvalid`]), makes open refuse with file and offset. The way forward is
//!   explicit: [`Wal::repair`] cuts at the first invalid record and reports every record and
//!   segment it drops ([`RepairReport`]); [`Wal::inspect`] and [`Wal::repair_plan`] run the same
//!   scan read-only (no lock, nothing cut, deleted or synced: `ringraft wal inspect`, and
//!   `ringraft wal repair` without `--yes`). Every open returns a [`RecoveryReport`]
//!   ([`Wal::recovery_report`], `Display` for the log). Old records left in a recycled file
//!   carry lsns below the segment's first lsn and are never taken for new ones. Soundness: the
//!   header of segment n+1 is written only after segment n is fully durable, so only the last
//!   segment can hold bytes that were never synced. Every number read from disk is checked
//!   before use (typed errors, no panic; a fuzz test flips bytes and forges fields).
//! * **Errors** ([`error`]): ENOSPC surfaces when a segment is prepared (fallocate), is returned
//!   by the append that needed the segment with nothing written, and the next roll retries, so
//!   writing resumes once space is freed. Truncate and purge fail the same way (nothing
//!   written) only once the *drop reserve* at the end of the active segment is used up: entries
//!   and hard states never write into the last [`log::drop_reserve_bytes`] of a segment, so the
//!   Purge record that frees space fits even when no new segment can be prepared. A failed
//!   sync or record write poisons the log ([`Error::Poisoned`]): every later append, sync and
//!   wait fails, and durability never advances again (after a failed fsync the kernel may
//!   have dropped the dirty pages, so the only safe way on is to stop acknowledging, reopen
//!   and recover from the disk).
//! * **Fault injection** ([`fault`]): failing syncs, short writes and ENOSPC on writes or
//!   segment preparation, only through an explicit `WalOptions::fault` (a spec string, e.g.
//!   from `RINGRAFT_WAL_FAULT` when the node is told to read it); never on by default.
//! * **Close**: dropping a [`Wal`] syncs what was appended (bounded wait), stops the threads and
//!   releases the directory lock; [`Wal::close`] does the same and reports a failed sync. A
//!   process that dies keeps what was durable (and possibly more).
//!
//! # On-disk format
//!
//! A directory holds `LOCK` (flock'ed while open) and segment files `{seq:020}.wal`
//! (seq = 1, 2, ...). All integers little-endian.
//!
//! Segment header, bytes 0..64 of each segment:
//!
//! ```text
//! offset  size  field
//!      0     8  magic          b"RRAFTWAL"
//!      8     2  version        u16 = 1
//!     10     2  header_bytes   u16 = 64
//!     12     4  reserved       zero
//!     16     8  seq            u64, equals the file name
//!     24     8  first_lsn      u64, lsn of the segment's first record
//!     32     8  owner_id       u64, WalOptions::owner_id (node id)
//!     40     8  segment_bytes  u64, file size
//!     48    12  reserved       zero
//!     60     4  crc32          over bytes 0..60
//! ```
//!
//! An all-zero header is a spare (prepared, holds nothing durable). A recycled spare keeps its
//! old records after the zeroed header. Records follow from byte 64, back to back, each padded
//! to a multiple of 8:
//!
//! ```text
//! offset  size  field
//!      0     4  payload_len  u32
//!      4     4  crc32        over bytes 0..4 and 8..end (header, payload, padding)
//!      8     8  lsn          u64, 1, 2, 3, ... over the whole log, no gaps
//!     16     8  group        u64, Raft group id
//!     24     8  term         u64
//!     32     8  index        u64
//!     40     1  kind         1 Entry, 2 Truncate (index = first removed),
//!                            3 HardState (payload 24 bytes: term, vote, commit; term and
//!                            index fields = term and commit), 4 Purge (index = new first index),
//!                            5 Checkpoint (index = first index, payload 8 bytes = last index)
//!     41     7  reserved     zero
//!     48     n  payload
//!   48+n     p  zero padding to a multiple of 8
//! ```
//!
//! A record position whose 48 header bytes are all zero ends the segment's records (the writer
//! leaves 48 zero bytes after its last record, so this holds in recycled files too). A record
//! belongs to the segment only if its lsn is the next one expected (at least the header's
//! `first_lsn`).
//!
//! # Bounds
//! Records not yet durable: `max_buffered_entries`. Staged bytes not yet written:
//! `max_staged_bytes` (plus at most one roll checkpoint). Recycled files: `recycle_segments`.
//! Live segments: `max_segments` (the in-memory
//! index holds 40 bytes per live entry, so it is bounded by the retained log). Waiters:
//! `max_waiters`. Flush requests: a channel of `flush_workers` slots. Flush reports: a channel of
//! [`options::FLUSH_REPORT_CAPACITY`] (full = newer reports dropped; they are cumulative).
//! Payload: `max_payload_bytes`.
//!
//! # Files
//! `options.rs` (limits), `error.rs`, `record.rs` (record format), `segment/` (files, header,
//! map), `segment_pool.rs` (preparer/deleter thread), `flush_worker.rs` (sync threads),
//! `durability.rs` (durable position, waiters), `group_index.rs` (per-group index),
//! `hard_state.rs`, `recovery.rs` (recovery and repair), `fault.rs` (fault injection),
//! `log/` ([`Wal`]: open, writes, reads, durability, reclaim).

pub mod durability;
pub mod error;
pub mod fault;
pub mod flush_worker;
mod group_index;
pub mod hard_state;
pub mod log;
pub mod options;
pub mod record;
pub mod recovery;
pub mod ring;
pub mod segment;
pub mod segment_pool;

pub use durability::{Durability, DurableWait, FlushReport, Lsn, WalStats};
pub use error::{Error, Result};
pub use fault::FaultInjector;
pub use hard_state::HardState;
pub use log::{Entries, Entry, SegmentPin, Wal, MAX_INDEX};
pub use options::{FlushPolicy, RecoveryMode, WalOptions, WriteMode};
pub use recovery::{RecoveryReport, RepairReport};
