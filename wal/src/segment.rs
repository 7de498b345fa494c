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

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::fault::{FaultInjector, WriteFault};
use crate::options::WriteMode;
use crate::record::RECORD_HEADER_BYTES;

/// Segment magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"RRAFTWAL";
/// Format version this build reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of the segment header; records start here.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// File name extension of segments.
pub const SEGMENT_EXT: &str = "wal";
/// Extension of segments being prepared (deleted by recovery).
pub const PREP_EXT: &str = "prep";
/// Extension of purged segments kept for reuse (`{seq:020}.wal.free`).
pub const FREE_EXT: &str = "free";
/// Chunk used to zero-fill files.
const ZERO_CHUNK_BYTES: usize = 1 << 20;

/// Path of segment `seq` in `dir`.
pub fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.{SEGMENT_EXT}"))
}

/// Parses a segment file name into its sequence number.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".wal")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Sequence number.
    pub seq: u64,
    /// First lsn.
    pub first_lsn: u64,
    /// Owner id.
    pub owner_id: u64,
    /// File size.
    pub segment_bytes: u64,
}

impl SegmentHeader {
    /// Encodes to 64 bytes.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut b = [0u8; SEGMENT_HEADER_BYTES];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[10..12].copy_from_slice(&(SEGMENT_HEADER_BYTES as u16).to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_lsn.to_le_bytes());
        b[32..40].copy_from_slice(&self.owner_id.to_le_bytes());
        b[40..48].copy_from_slice(&self.segment_bytes.to_le_bytes());
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes 64 bytes; `Ok(None)` for an all-zero (spare) header.
    pub fn decode(b: &[u8], path: &Path) -> Result<Option<SegmentHeader>> {
        if b.len() < SEGMENT_HEADER_BYTES {
            return Err(Error::Corrupt {
                path: path.into(),
                offset: 0,
                reason: format!("file of {} bytes is shorter than a header", b.len()),
            });
        }
        let b = &b[..SEGMENT_HEADER_BYTES];
        if b.iter().all(|&x| x == 0) {
            return Ok(None);
        }
        let mut magic = [0u8; 8];
        magic.copy_from_slice(&b[0..8]);
        if magic != SEGMENT_MAGIC {
            return Err(Error::BadMagic {
                path: path.into(),
                found: magic,
            });
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != FORMAT_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.into(),
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        let stored = u32::from_le_bytes([b[60], b[61], b[62], b[63]]);
        let actual = crc32fast::hash(&b[0..60]);
        if stored != actual {
            return Err(Error::Corrupt {
                path: path.into(),
                offset: 0,
                reason: format!(
                    "segment header crc mismatch (stored {stored:#010x}, computed {actual:#010x})"
                ),
            });
        }
        let hb = u16::from_le_bytes([b[10], b[11]]) as usize;
        if hb != SEGMENT_HEADER_BYTES {
            return Err(Error::Corrupt {
                path: path.into(),
                offset: 10,
                reason: format!("header_bytes {hb}, expected {SEGMENT_HEADER_BYTES}"),
            });
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Ok(Some(SegmentHeader {
            seq: word(16),
            first_lsn: word(24),
            owner_id: word(32),
            segment_bytes: word(40),
        }))
    }
}

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

/// fsyncs a directory so that creations, renames and unlinks in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    d.sync_all()
        .map_err(|e| Error::io("fsync directory", dir, e))
}

/// Creates `dir` and every missing ancestor, each made durable: after creating a directory its
/// parent is fsynced (oldest first), so a crash after the first boot never loses the directory
/// a durable file lives in. Returns the directories it fsynced (empty when `dir` existed).
pub fn create_dir_durable(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if d.as_os_str().is_empty() || d.exists() {
            break;
        }
        missing.push(d);
        cur = d.parent();
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let mut synced = Vec::with_capacity(missing.len());
    for d in missing.into_iter().rev() {
        let parent = match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
        synced.push(parent.to_path_buf());
    }
    Ok(synced)
}

/// Writes zeros over `[from, to)` of `file` with pwrite.
pub fn zero_range(file: &File, path: &Path, from: usize, to: usize) -> Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK_BYTES.min(to.saturating_sub(from)).max(1)];
    let mut off = from;
    while off < to {
        let n = (to - off).min(zeros.len());
        file.write_all_at(&zeros[..n], off as u64)
            .map_err(|e| Error::io("write zeros", path, e))?;
        off += n;
    }
    Ok(())
}

/// Path of a purged segment kept for reuse.
pub fn free_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.{SEGMENT_EXT}.{FREE_EXT}"))
}

const ZEROS: [u8; RECORD_HEADER_BYTES] = [0u8; RECORD_HEADER_BYTES];

/// `pwritev` of all `parts` at `off`, retrying short writes.
fn pwritev_all(file: &File, mut off: usize, parts: &[&[u8]]) -> std::io::Result<()> {
    let mut bufs: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    while !bufs.is_empty() {
        let iov: Vec<libc::iovec> = bufs
            .iter()
            .take(IOV_MAX)
            .map(|b| libc::iovec {
                iov_base: b.as_ptr() as *mut libc::c_void,
                iov_len: b.len(),
            })
            .collect();
        let at = libc::off_t::try_from(off).map_err(|_| std::io::Error::other("offset"))?;
        // SAFETY: every iovec points at a live slice of `bufs` for the duration of the call; the
        // kernel only reads them.
        let n = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), iov.len() as i32, at) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(std::io::Error::from(std::io::ErrorKind::WriteZero));
        }
        let mut n = n as usize;
        off += n;
        while n > 0 {
            let first = bufs[0].len();
            if n >= first {
                bufs.remove(0);
                n -= first;
            } else {
                bufs[0] = &bufs[0][n..];
                n = 0;
            }
        }
    }
    Ok(())
}

/// Most iovecs handed to one `pwritev` (Linux's UIO_MAXIOV).
const IOV_MAX: usize = 1024;

impl Segment {
    /// Prepares a fresh spare segment `seq` in `dir`: see the module docs. On failure the
    /// partial file is removed, so a later attempt (after space is freed) starts clean.
    pub fn prepare(dir: &Path, seq: u64, cfg: &SegConfig) -> Result<Segment> {
        let tmp = dir.join(format!("{seq:020}.{SEGMENT_EXT}.{PREP_EXT}"));
        let path = segment_path(dir, seq);
        let bytes = cfg.bytes;
        let result = (|| -> Result<File> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(|e| Error::io("create segment", &tmp, e))?;
            if let Some(f) = &cfg.fault {
                f.check_prepare()
                    .map_err(|e| Error::io("fallocate", &tmp, e))?;
            }
            // SAFETY: plain syscall on an fd we own; no memory is passed.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, bytes as libc::off_t) };
            if rc != 0 {
                return Err(Error::io(
                    "fallocate",
                    &tmp,
                    std::io::Error::last_os_error(),
                ));
            }
            zero_range(&file, &tmp, 0, bytes)?;
            file.sync_data()
                .map_err(|e| Error::io("fdatasync", &tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))?;
            sync_dir(dir)?;
            Ok(file)
        })();
        let file = match result {
            Ok(f) => f,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        Segment::open_new(seq, path, file, cfg)
    }

    /// Turns the purged segment file `free` into spare segment `seq`: zero its header (durably,
    /// before the rename, so a crash can never leave an old header under a new name), rename,
    /// fsync the directory. Its old records stay; they carry lsns below the new segment's first
    /// lsn, and the end marker written after each batch of records hides them. `Ok(None)` when
    /// the file does not have the configured size (it is deleted then).
    pub fn recycle(dir: &Path, free: &Path, seq: u64, cfg: &SegConfig) -> Result<Option<Segment>> {
        let path = segment_path(dir, seq);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(free)
            .map_err(|e| Error::io("open recycled segment", free, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat recycled segment", free, e))?
            .len();
        if len != cfg.bytes as u64 {
            drop(file);
            std::fs::remove_file(free).map_err(|e| Error::io("remove", free, e))?;
            sync_dir(dir)?;
            return Ok(None);
        }
        zero_range(&file, free, 0, SEGMENT_HEADER_BYTES)?;
        file.sync_data()
            .map_err(|e| Error::io("fdatasync", free, e))?;
        std::fs::rename(free, &path).map_err(|e| Error::io("rename", &path, e))?;
        sync_dir(dir)?;
        Segment::open_new(seq, path, file, cfg).map(Some)
    }

    fn open_new(seq: u64, path: PathBuf, file: File, cfg: &SegConfig) -> Result<Segment> {
        let seg = Segment::map(seq, path, file, cfg.bytes, cfg)?;
        if cfg.prefault && cfg.mode == WriteMode::Mmap {
            seg.prefault_write();
        }
        Ok(seg)
    }

    /// Pool thread, before hand-off (`Mmap` mode): takes the write fault of every page now
    /// (MADV_POPULATE_WRITE, or touching each page where the kernel lacks it), so that appends
    /// do not pay ext4's `page_mkwrite` (~10 µs a page). The pages become dirty zeros.
    fn prefault_write(&self) {
        if self.map.advise(memmap2::Advice::PopulateWrite).is_ok() {
            return;
        }
        let page = crate::options::SEGMENT_ALIGN_BYTES;
        let base = self.map.as_mut_ptr();
        for off in (0..self.map.len()).step_by(page) {
            // SAFETY: `off` is inside the (writable, `Mmap` mode) mapping; the segment is not
            // shared with any other thread yet, and the byte is rewritten with its own value.
            unsafe {
                let p = base.add(off);
                std::ptr::write_volatile(p, std::ptr::read_volatile(p));
            }
        }
    }

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
