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
//! Lifecycle and ownership: the segment pool thread prepares a spare (create `.prep` file,
//! fallocate — where ENOSPC surfaces —, write zeros so later overwrites need no block
//! allocation, fdatasync, rename, fsync the directory, map with MAP_POPULATE and take every
//! page's write fault up front with MADV_POPULATE_WRITE), the `Wal` owner
//! thread activates it and is the only writer of bytes `64..`, published through `written`.
//! The header of segment n+1 is written by a flush worker only after segment n is sealed and
//! fully synced; so a valid header proves every earlier segment is complete on disk, and
//! recovery may treat invalid bytes in any segment but the last as corruption. Flush workers
//! msync ranges `[synced, written)`. Published bytes are never rewritten while the segment lives.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use memmap2::{MmapOptions, MmapRaw};

use crate::error::{Error, Result};
use crate::fault::FaultInjector;

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

/// A mapped segment. Shared (`Arc`) between the owner, flush workers and the pool thread.
pub struct Segment {
    /// Sequence number (file name).
    pub seq: u64,
    /// Path of the file.
    pub path: PathBuf,
    file: File,
    map: MmapRaw,
    /// First lsn (set at activation, before any record is published).
    first_lsn: AtomicU64,
    owner_id: AtomicU64,
    /// Bytes published by the owner (header region included).
    written: AtomicUsize,
    /// Bytes known durable.
    synced: AtomicUsize,
    /// No more records will be appended.
    sealed: AtomicBool,
    /// Whether the header is in the map (guarded so only one worker writes it).
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

/// fsyncs a directory so that creations, renames and unlinks in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| Error::io("open directory", dir, e))?;
    d.sync_all()
        .map_err(|e| Error::io("fsync directory", dir, e))
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

impl Segment {
    /// Prepares spare segment `seq` of `bytes` bytes in `dir`: see the module docs. On failure the
    /// partial file is removed, so a later attempt (after space is freed) starts clean.
    pub fn prepare(
        dir: &Path,
        seq: u64,
        bytes: usize,
        prefault: bool,
        fault: Option<Arc<FaultInjector>>,
    ) -> Result<Segment> {
        let tmp = dir.join(format!("{seq:020}.{SEGMENT_EXT}.{PREP_EXT}"));
        let path = segment_path(dir, seq);
        let result = (|| -> Result<File> {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .map_err(|e| Error::io("create segment", &tmp, e))?;
            if let Some(f) = &fault {
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
        let seg = Segment::map(seq, path, file, bytes, prefault, fault)?;
        if prefault {
            seg.prefault_write();
        }
        Ok(seg)
    }

    /// Pool thread, before hand-off: takes the write fault of every page now (MADV_POPULATE_WRITE,
    /// or touching each page where the kernel lacks it), so that appends do not pay ext4's
    /// `page_mkwrite` (~10 µs a page, measured: ~0.8 µs per 256-byte record). The pages become
    /// dirty zeros; background writeback may write some of them before records land there,
    /// which costs bandwidth but never correctness (a page always holds its current content).
    fn prefault_write(&self) {
        if self.map.advise(memmap2::Advice::PopulateWrite).is_ok() {
            return;
        }
        let page = crate::options::SEGMENT_ALIGN_BYTES;
        let base = self.map.as_mut_ptr();
        for off in (0..self.map.len()).step_by(page) {
            // SAFETY: `off` is inside the mapping; the segment is not shared with any other
            // thread yet (it is being prepared), and the byte is rewritten with its own value.
            unsafe {
                let p = base.add(off);
                std::ptr::write_volatile(p, std::ptr::read_volatile(p));
            }
        }
    }

    /// Maps an existing file of `bytes` bytes.
    pub fn map(
        seq: u64,
        path: PathBuf,
        file: File,
        bytes: usize,
        prefault: bool,
        fault: Option<Arc<FaultInjector>>,
    ) -> Result<Segment> {
        let mut opts = MmapOptions::new();
        opts.len(bytes);
        if prefault {
            opts.populate();
        }
        let map = opts
            .map_raw(&file)
            .map_err(|e| Error::io("mmap", &path, e))?;
        Ok(Segment {
            seq,
            path,
            file,
            map,
            first_lsn: AtomicU64::new(0),
            owner_id: AtomicU64::new(0),
            written: AtomicUsize::new(SEGMENT_HEADER_BYTES),
            synced: AtomicUsize::new(0),
            sealed: AtomicBool::new(false),
            header_written: Mutex::new(false),
            fault,
        })
    }

    /// Size of the mapping.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Always false (segments are never empty); for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// The whole mapping. Only for recovery, before any writer exists.
    pub(crate) fn all_bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len()` bytes long and lives as long as `self`; during recovery
        // no thread writes to it.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.map.len()) }
    }

    /// Published bytes `[off, off+len)`.
    pub(crate) fn bytes(&self, off: usize, len: usize) -> &[u8] {
        assert!(
            off >= SEGMENT_HEADER_BYTES && off + len <= self.written.load(Ordering::Acquire),
            "read of unpublished segment bytes"
        );
        // SAFETY: the range is inside the mapping (asserted against `written` <= len) and was
        // published by the owner; published bytes are never written again while the segment
        // lives, and the header region (written by workers) is excluded.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(off), len) }
    }

    /// Owner only: copies `parts` one after another at `off` (unpublished space).
    pub(crate) fn write_parts(&self, off: usize, parts: &[&[u8]]) {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        assert!(
            off >= self.written.load(Ordering::Relaxed) && off + total <= self.map.len(),
            "write outside the unpublished part of the segment"
        );
        let mut at = off;
        for p in parts {
            // SAFETY: [at, at+p.len()) lies inside the mapping (asserted) and beyond `written`,
            // which no reader touches; only the owner thread writes there.
            unsafe {
                std::ptr::copy_nonoverlapping(p.as_ptr(), self.map.as_mut_ptr().add(at), p.len())
            };
            at += p.len();
        }
    }

    /// Owner only: publishes bytes up to `off`.
    pub(crate) fn publish(&self, off: usize) {
        self.written.store(off, Ordering::Release);
    }

    /// Published byte count.
    pub fn written(&self) -> usize {
        self.written.load(Ordering::Acquire)
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
        self.synced.store(written, Ordering::Release);
        if let Ok(mut h) = self.header_written.lock() {
            *h = true;
        }
    }

    /// Writes the header into the map if not yet done. Called by flush workers once every
    /// earlier segment is durable, and by open for the very first segment.
    pub(crate) fn ensure_header(&self) {
        let mut done = match self.header_written.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if *done {
            return;
        }
        let h = SegmentHeader {
            seq: self.seq,
            first_lsn: self.first_lsn(),
            owner_id: self.owner_id.load(Ordering::Acquire),
            segment_bytes: self.map.len() as u64,
        }
        .encode();
        // SAFETY: bytes 0..64 are inside the mapping; the owner never writes the header region
        // and readers never read it while the segment is live; the mutex makes this the only
        // writer.
        unsafe {
            std::ptr::copy_nonoverlapping(h.as_ptr(), self.map.as_mut_ptr(), h.len());
        }
        *done = true;
    }

    /// Makes `[synced, written)` durable (msync MS_SYNC) and advances `synced`.
    pub(crate) fn sync(&self) -> Result<()> {
        let to = self.written();
        let from = self.synced();
        if from >= to {
            return Ok(());
        }
        if let Some(f) = &self.fault {
            f.check_sync()
                .map_err(|e| Error::io("msync", &self.path, e))?;
        }
        self.map
            .flush_range(from, to - from)
            .map_err(|e| Error::io("msync", &self.path, e))?;
        self.synced.fetch_max(to, Ordering::AcqRel);
        Ok(())
    }

    /// fdatasync of the whole file (used by recovery).
    pub(crate) fn sync_file(&self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::io("fdatasync", &self.path, e))
    }
}

impl Segment {
    /// Recovery: zeroes `[from, end of nonzero data)` with pwrite and fdatasyncs, so a cut tail
    /// can never be mistaken for records later. Must not be called while readers exist.
    pub(crate) fn zero_tail(&self, from: usize) -> Result<()> {
        let bytes = self.all_bytes();
        let Some(last_nonzero) = bytes[from.min(bytes.len())..].iter().rposition(|&b| b != 0)
        else {
            return Ok(());
        };
        let to = from + last_nonzero + 1;
        zero_range(&self.file, &self.path, from, to)?;
        self.sync_file()
    }
}
