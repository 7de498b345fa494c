//! Making spare segments: a fresh file (fallocate — where ENOSPC surfaces —, zero-fill,
//! fdatasync, rename, directory fsync) or a recycled purged one (zero the header durably,
//! rename, directory fsync), then mapped. Runs on the segment pool thread only; a failure
//! leaves no partial file under a segment name.

use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use super::files::{segment_path, sync_dir, zero_range, PREP_EXT, SEGMENT_EXT};
use super::{SegConfig, Segment, SEGMENT_HEADER_BYTES};
use crate::error::{Error, Result};
use crate::options::WriteMode;

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
}
