//! File-level helpers of segments: names (`{seq:020}.wal`, `.prep`, `.free`), durable
//! directory operations, zero-filling, and `pwritev` of record parts with short-write retry.
//! Stateless; used by the segment itself, the segment pool and recovery.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::record::RECORD_HEADER_BYTES;

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

pub(super) const ZEROS: [u8; RECORD_HEADER_BYTES] = [0u8; RECORD_HEADER_BYTES];

/// `pwritev` of all `parts` at `off`, retrying short writes.
pub(super) fn pwritev_all(file: &File, mut off: usize, parts: &[&[u8]]) -> std::io::Result<()> {
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
