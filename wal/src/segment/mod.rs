//! One segment: a preallocated, zero-filled, fixed-size file, memory-mapped shared and
//! read-write, named by its sequence number (`{seq:020}.wal`, seq = 1, 2, 3, ...), holding a
//! 64-byte header and then records (record.rs). The header also carries the segment's first
//! lsn, so a segment is "named by its first index" in the header while its file name, which
//! must be fixed before the segment is used, is the sequence number.
//!
//! Header layout (little-endian):
//!
//! ```text
//! offset  size  field
//!      0     8  magic          b"RRAFTWAL"
//!      8     2  version        u16, FORMAT_VERSION (1)
//!     10     2  header_bytes   u16, 64
//!     12     4  reserved       zero
//!     16     8  seq            u64, must equal the number in the file name
//!     24     8  first_lsn      u64, lsn of the first record in this segment
//!     32     8  owner_id       u64, owner (node) id from the options
//!     40     8  segment_bytes  u64, file size
//!     48    12  reserved       zero
//!     60     4  crc32          crc32 over bytes 0..60
//! ```
//!
//! An all-zero header marks a *spare*: prepared but never activated (or activated but its header
//! never written, see below), which holds no durable data.
//!
//! Lifecycle and ownership: the segment pool thread prepares a spare — either fresh (create a
//! `.prep` file, fallocate — where ENOSPC surfaces —, write zeros so later overwrites need no
//! block allocation, fdatasync, rename, fsync the directory) or recycled from a purged segment
//! (`.free` file: zero its header, fdatasync, rename, fsync the directory; its old records stay
//! and are told apart by their lsn, see recovery.rs) — opens one file description per flush
//! worker (before any record is written, see `Segment::sync`) and maps it with MAP_POPULATE.
//! The `Wal` owner thread activates it and is the only writer of bytes `64..`, published through
//! `written`. The header of segment n+1 is written by a flush worker only after segment n is
//! sealed and fully synced; so a valid header proves every earlier segment is complete on disk,
//! and recovery may treat invalid bytes in any segment but the last as corruption. Published
//! bytes are never rewritten while the segment lives.
//!
//! Two write modes ([`WriteMode`]):
//! * `Pwrite` (default): the map is read-only. Records reach the file with `pwritev` from the
//!   flush worker (durability.rs stages them), followed by 48 zero bytes (the end marker: the
//!   next record's header position reads as "end" even in a recycled file), and become durable
//!   with `fdatasync`. Reading records through a `MAP_SHARED` map of a file written with
//!   `pwrite` is coherent on Linux: both are the same page-cache pages, so a read through the
//!   map sees every byte a completed `pwrite` wrote (`pwritten` says how far that is).
//! * `Mmap`: the owner copies records into the writable map (pages pre-faulted for write with
//!   MADV_POPULATE_WRITE when the segment is prepared) and flush workers `msync(MS_SYNC)` the
//!   range `[synced, written)`. Segments are always fresh (zero-filled), never recycled.
//!
//! Files: this one (the mapped segment: reads, writes, publication, sync), `header.rs` (the
//! header), `files.rs` (names, directory and file helpers), `create.rs` (fresh and recycled
//! spares).

mod create;
mod files;
mod header;

pub use files::{
    create_dir_durable, free_path, parse_segment_name, segment_path, sync_dir, zero_range,
    FREE_EXT, PREP_EXT, SEGMENT_EXT,
};
pub use header::{SegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_BYTES, SEGMENT_MAGIC};

use files::{pwritev_all, ZEROS};

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::fault::{FaultInjector, WriteFault};
use crate::options::WriteMode;
use crate::record::RECORD_HEADER_BYTES;

/// How segments are created and written; one per `Wal`, shared by its threads.
#[derive(Clone, Debug)]
pub struct SegConfig {
    /// File size.
    pub bytes: usize,
    /// Write mode.
    pub mode: WriteMode,
    /// MAP_POPULATE (and, in `Mmap` mode, MADV_POPULATE_WRITE) when mapping a new segment.
    pub prefault: bool,
    /// Flush workers (one sync file description each).
    pub workers: usize,
    /// Open the workers' file descriptions when mapping (recovery maps every segment without
    /// them, to stay far from the process's file limit, and opens them for the active one).
    pub open_sync_files: bool,
    /// Injected faults (tests only).
    pub fault: Option<Arc<FaultInjector>>,
}

/// A mapped segment. Shared (`Arc`) between the owner, flush workers and the pool thread.
pub struct Segment {
    /// Sequence number (file name).
    pub seq: u64,
    /// Path of the file.
    pub path: PathBuf,
    file: File,
    map: MmapRaw,
    mode: WriteMode,
    /// One file description per flush worker, opened before any record is written and dropped
    /// once the segment is sealed and durable (see `Segment::sync`).
    sync_files: Box<[Mutex<Option<File>>]>,
    /// First lsn (set at activation, before any record is published).
    first_lsn: AtomicU64,
    owner_id: AtomicU64,
    /// Bytes published by the owner (header region included).
    written: AtomicUsize,
    /// Bytes in the file's page cache (`Pwrite` mode; equals `written` in `Mmap` mode).
    pwritten: AtomicUsize,
    /// Bytes known durable.
    synced: AtomicUsize,
    /// No more records will be appended.
    sealed: AtomicBool,
    /// Whether the header is written (guarded so only one worker writes it).
    header_written: Mutex<bool>,
    fault: Option<Arc<FaultInjector>>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("seq", &self.seq)
            .field("path", &self.path)
            .field("written", &self.written.load(Ordering::Relaxed))
            .field("synced", &self.synced.load(Ordering::Relaxed))
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Segment {
    /// Maps an existing file of `bytes` bytes (read-only in `Pwrite` mode) and opens the
    /// flush workers' file descriptions.
    pub fn map(
        seq: u64,
        path: PathBuf,
        file: File,
        bytes: usize,
        cfg: &SegConfig,
    ) -> Result<Segment> {
        let mut opts = MmapOptions::new();
        opts.len(bytes);
        if cfg.prefault {
            opts.populate();
        }
        let map = match cfg.mode {
            WriteMode::Pwrite => opts.map_raw_read_only(&file),
            WriteMode::Mmap => opts.map_raw(&file),
        }
        .map_err(|e| Error::io("mmap", &path, e))?;
        let n = if cfg.mode == WriteMode::Pwrite {
            cfg.workers
        } else {
            0
        };
        let sync_files: Vec<Mutex<Option<File>>> = (0..n).map(|_| Mutex::new(None)).collect();
        let seg = Segment {
            seq,
            path,
            file,
            map,
            mode: cfg.mode,
            sync_files: sync_files.into_boxed_slice(),
            first_lsn: AtomicU64::new(0),
            owner_id: AtomicU64::new(0),
            written: AtomicUsize::new(SEGMENT_HEADER_BYTES),
            pwritten: AtomicUsize::new(SEGMENT_HEADER_BYTES),
            synced: AtomicUsize::new(0),
            sealed: AtomicBool::new(false),
            header_written: Mutex::new(false),
            fault: cfg.fault.clone(),
        };
        if cfg.open_sync_files {
            seg.open_sync_files()?;
        }
        Ok(seg)
    }

    /// Opens the flush workers' file descriptions that are not open yet.
    pub(crate) fn open_sync_files(&self) -> Result<()> {
        for slot in self.sync_files.iter() {
            let mut s = lock(slot);
            if s.is_none() {
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&self.path)
                    .map_err(|e| Error::io("open segment for sync", &self.path, e))?;
                *s = Some(f);
            }
        }
        Ok(())
    }

    /// Size of the mapping.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false (segments are never empty); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The write mode.
    pub fn mode(&self) -> WriteMode {
        self.mode
    }

    /// The whole mapping. Only for recovery, before any writer exists.
    pub(crate) fn all_bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len()` bytes long and lives as long as `self`; during recovery
        // no thread writes to it.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.map.len()) }
    }

    /// Published bytes `[off, off+len)`, which must be in the page cache already (`pwritten`).
    pub(crate) fn bytes(&self, off: usize, len: usize) -> &[u8] {
        assert!(
            off >= SEGMENT_HEADER_BYTES
                && off
                    .checked_add(len)
                    .is_some_and(|end| end <= self.pwritten.load(Ordering::Acquire)),
            "read of unwritten segment bytes"
        );
        // SAFETY: the range is inside the mapping (checked against `pwritten` <= len) and its
        // bytes are in the page cache (written through the map, or by a completed pwrite, which
        // the shared map sees); published bytes are never written again while the segment
        // lives, and the header region (written by workers) is excluded.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(off), len) }
    }

    /// Owner only, `Mmap` mode: copies `parts` one after another at `off` (unpublished space),
    /// followed by the end marker (48 zero bytes, where they fit), so that a segment written in
    /// this mode after one recycled in `Pwrite` mode still ends cleanly.
    pub(crate) fn write_parts(&self, off: usize, parts: &[&[u8]]) {
        assert!(self.mode == WriteMode::Mmap, "map writes in pwrite mode");
        let total: usize = parts.iter().map(|p| p.len()).sum();
        assert!(
            off >= self.written.load(Ordering::Relaxed) && off + total <= self.map.len(),
            "write outside the unpublished part of the segment"
        );
        let marker = RECORD_HEADER_BYTES.min(self.map.len() - (off + total));
        let mut at = off;
        for p in parts.iter().copied().chain([&ZEROS[..marker]]) {
            // SAFETY: [at, at+p.len()) lies inside the writable mapping (asserted) and beyond
            // `written`, which no reader touches; only the owner thread writes there.
            unsafe {
                std::ptr::copy_nonoverlapping(p.as_ptr(), self.map.as_mut_ptr().add(at), p.len())
            };
            at += p.len();
        }
    }

    /// Flush worker, `Pwrite` mode: writes `bytes` (staged records) at `off` followed by the end
    /// marker, and advances `pwritten`. Callers serialise calls (file order).
    pub(crate) fn pwrite_records(&self, off: usize, bytes: &[u8]) -> Result<()> {
        let end = off + bytes.len();
        let marker = RECORD_HEADER_BYTES.min(self.map.len().saturating_sub(end));
        let err = |e| Error::io("pwrite", &self.path, e);
        match self
            .fault
            .as_ref()
            .map_or(WriteFault::None, |f| f.check_write())
        {
            WriteFault::None => {}
            WriteFault::NoSpace => {
                return Err(err(std::io::Error::from_raw_os_error(libc::ENOSPC)));
            }
            WriteFault::Short => {
                let half = &bytes[..bytes.len() / 2];
                pwritev_all(&self.file, off, &[half]).map_err(err)?;
                return Err(err(std::io::Error::from_raw_os_error(libc::EIO)));
            }
        }
        pwritev_all(&self.file, off, &[bytes, &ZEROS[..marker]]).map_err(err)?;
        self.pwritten.fetch_max(end, Ordering::AcqRel);
        Ok(())
    }

    /// Owner only: publishes bytes up to `off` (`Mmap` mode: they are in the map already).
    pub(crate) fn publish(&self, off: usize) {
        self.written.store(off, Ordering::Release);
        if self.mode == WriteMode::Mmap {
            self.pwritten.store(off, Ordering::Release);
        }
    }

    /// Published byte count.
    pub fn written(&self) -> usize {
        self.written.load(Ordering::Acquire)
    }

    /// Bytes in the page cache (readable through the map).
    pub fn pwritten(&self) -> usize {
        self.pwritten.load(Ordering::Acquire)
    }

    /// Durable byte count.
    pub fn synced(&self) -> usize {
        self.synced.load(Ordering::Acquire)
    }

    /// First lsn (0 while spare).
    pub fn first_lsn(&self) -> u64 {
        self.first_lsn.load(Ordering::Acquire)
    }

    /// Owner: marks the segment as taking no more records.
    pub(crate) fn seal(&self) {
        self.sealed.store(true, Ordering::Release);
    }

    /// Whether sealed.
    pub fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    /// Owner: activates a spare at `first_lsn`; the header itself is written by a flush worker
    /// once every earlier segment is durable (see module docs).
    pub(crate) fn activate(&self, first_lsn: u64, owner_id: u64) {
        self.first_lsn.store(first_lsn, Ordering::Release);
        self.owner_id.store(owner_id, Ordering::Release);
    }

    /// Recovery: the segment is already activated on disk with `written` bytes, all durable.
    pub(crate) fn restore(&self, first_lsn: u64, owner_id: u64, written: usize) {
        self.activate(first_lsn, owner_id);
        self.written.store(written, Ordering::Release);
        self.pwritten.store(written, Ordering::Release);
        self.synced.store(written, Ordering::Release);
        *lock(&self.header_written) = true;
    }

    /// Writes the header if not yet done. Called by flush workers once every earlier segment is
    /// durable, and by open for the very first segment.
    pub(crate) fn ensure_header(&self) -> Result<()> {
        let mut done = lock(&self.header_written);
        if *done {
            return Ok(());
        }
        let h = SegmentHeader {
            seq: self.seq,
            first_lsn: self.first_lsn(),
            owner_id: self.owner_id.load(Ordering::Acquire),
            segment_bytes: self.map.len() as u64,
        }
        .encode();
        match self.mode {
            WriteMode::Pwrite => pwritev_all(&self.file, 0, &[&h])
                .map_err(|e| Error::io("pwrite header", &self.path, e))?,
            // SAFETY: bytes 0..64 are inside the writable mapping; the owner never writes the
            // header region and readers never read it while the segment is live; the mutex
            // makes this the only writer.
            WriteMode::Mmap => unsafe {
                std::ptr::copy_nonoverlapping(h.as_ptr(), self.map.as_mut_ptr(), h.len());
            },
        }
        *done = true;
        Ok(())
    }

    /// Makes everything written so far durable and advances `synced`. `Pwrite` mode:
    /// `fdatasync` through worker `worker`'s own file description. Since Linux 4.13 a writeback
    /// error is reported once to *every* open file description of the file, so each worker sees
    /// every error that struck pages of this segment after the segment was created — one worker
    /// can never consume the error another's sync needed to see. `Mmap` mode: msync of
    /// `[synced, written)` (the caller serialises these: msync goes through the map's one file
    /// description).
    pub(crate) fn sync(&self, worker: usize) -> Result<()> {
        let to = self.pwritten();
        let from = self.synced();
        if from >= to {
            return Ok(());
        }
        let op = match self.mode {
            WriteMode::Pwrite => "fdatasync",
            WriteMode::Mmap => "msync",
        };
        if let Some(f) = &self.fault {
            f.check_sync().map_err(|e| Error::io(op, &self.path, e))?;
        }
        match self.mode {
            WriteMode::Pwrite => {
                let slot = self.sync_files.get(worker);
                let own = slot.and_then(|s| lock(s).take());
                let r = match &own {
                    Some(f) => f.sync_data(),
                    None => self.file.sync_data(),
                };
                if let (Some(s), Some(f)) = (slot, own) {
                    *lock(s) = Some(f);
                }
                r.map_err(|e| Error::io(op, &self.path, e))?;
            }
            WriteMode::Mmap => {
                // The end marker after the last record is synced with it.
                let from = from.min(to);
                let end = to.saturating_add(RECORD_HEADER_BYTES).min(self.map.len());
                self.map
                    .flush_range(from, end - from)
                    .map_err(|e| Error::io(op, &self.path, e))?;
            }
        }
        self.synced.fetch_max(to, Ordering::AcqRel);
        Ok(())
    }

    /// `Pwrite` mode: like [`Segment::sync`] through slot `slot`'s own file description, but
    /// the fdatasync is the caller's future `fdatasync(fd)` (e.g. one submitted through the
    /// caller executor's io_uring), so the calling thread keeps running while it is in flight.
    /// `fd` stays open until that future resolves or is dropped; the future must not close it
    /// (an I/O layer that takes ownership of an fd gets a `dup`). The slot's file description
    /// is taken out of the slot for the duration, so a concurrent sync through the same slot
    /// falls back to the segment's main file description, as [`Segment::sync`] does.
    pub(crate) async fn sync_with<F, Fut>(&self, slot: usize, fdatasync: &mut F) -> Result<()>
    where
        F: FnMut(std::os::fd::RawFd) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>>,
    {
        use std::os::fd::AsRawFd;
        debug_assert_eq!(self.mode, WriteMode::Pwrite);
        let to = self.pwritten();
        let from = self.synced();
        if from >= to {
            return Ok(());
        }
        if let Some(f) = &self.fault {
            f.check_sync()
                .map_err(|e| Error::io("fdatasync", &self.path, e))?;
        }
        let slot_ref = self.sync_files.get(slot);
        // Put back into its slot when this future finishes or is dropped (a dropped future's
        // sync may still be in flight in the kernel, which holds its own file reference).
        struct Back<'a> {
            slot: Option<&'a Mutex<Option<File>>>,
            file: Option<File>,
        }
        impl Drop for Back<'_> {
            fn drop(&mut self) {
                if let (Some(s), Some(f)) = (self.slot, self.file.take()) {
                    *lock(s) = Some(f);
                }
            }
        }
        let own = Back {
            slot: slot_ref,
            file: slot_ref.and_then(|s| lock(s).take()),
        };
        let fd = match &own.file {
            Some(f) => f.as_raw_fd(),
            None => self.file.as_raw_fd(),
        };
        let r = fdatasync(fd).await;
        drop(own);
        r.map_err(|e| Error::io("fdatasync", &self.path, e))?;
        self.synced.fetch_max(to, Ordering::AcqRel);
        Ok(())
    }

    /// Drops the workers' file descriptions (the segment is sealed and durable: no more writes,
    /// so no more writeback errors to hear about).
    pub(crate) fn release_sync_files(&self) {
        for s in self.sync_files.iter() {
            lock(s).take();
        }
    }

    /// fdatasync of the whole file (used by recovery).
    pub(crate) fn sync_file(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", &self.path, e))
    }

    /// Recovery and repair: zeroes `[from, from + 48)` (the record header position where the
    /// log now ends, so it reads as "end") plus each range in `also`, and fdatasyncs. Must not be
    /// called while readers exist.
    pub(crate) fn zero_tail(&self, from: usize, also: &[(usize, usize)]) -> Result<()> {
        let len = self.map.len();
        let end = from.saturating_add(RECORD_HEADER_BYTES).min(len);
        zero_range(&self.file, &self.path, from.min(len), end)?;
        for &(a, b) in also {
            zero_range(&self.file, &self.path, a.min(len), b.min(len))?;
        }
        self.sync_file()
    }
}
