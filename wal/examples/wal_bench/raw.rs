//! Raw baselines: the same framed bytes made durable on one thread, with no WAL around them, in
//! the four ways Linux offers, on a preallocated, zero-filled, synced file like a WAL segment.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use ringraft_wal::record::record_bytes;

use crate::measure::{cpu_now, Run};
use crate::PAYLOAD_BYTES;

/// How a raw baseline makes its bytes durable.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Raw {
    /// `pwrite` + `fdatasync`.
    Pwrite,
    /// `memcpy` into a shared map + `msync(MS_SYNC)` of the range.
    Msync,
    /// `pwrite` + `sync_file_range(WAIT_BEFORE|WRITE|WAIT_AFTER)` + `fdatasync`.
    SyncFileRange,
    /// `O_DIRECT` `pwrite` of the 4 KiB blocks covering the batch + `fdatasync`.
    Direct,
}

impl Raw {
    pub fn name(self) -> &'static str {
        match self {
            Raw::Pwrite => "raw pwrite+fdatasync (baseline)",
            Raw::Msync => "raw memcpy+msync",
            Raw::SyncFileRange => "raw pwrite+sync_file_range+fdatasync",
            Raw::Direct => "raw O_DIRECT pwrite+fdatasync",
        }
    }
}

/// Alignment of O_DIRECT buffers, offsets and lengths (covers 512 and 4096 byte sectors).
const DIRECT_ALIGN: usize = 4096;
const BASELINE_FILE_BYTES: u64 = 64 << 20;

/// One raw baseline run: batches of `batch` framed records made durable the `raw` way for
/// `secs` seconds, on a file of its own in `dir` (removed after).
pub fn baseline_run(dir: &Path, batch: usize, secs: f64, raw: Raw) -> Result<Run, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let path = dir.join(format!("baseline-{:?}.dat", std::thread::current().id()));
    let mut f: File = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| e.to_string())?;
    // Preallocate with zeros like the WAL's segments, so both overwrite allocated blocks.
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..(BASELINE_FILE_BYTES >> 20) {
        f.write_all(&zeros).map_err(|e| e.to_string())?;
    }
    f.sync_all().map_err(|e| e.to_string())?;
    f.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let rec = record_bytes(PAYLOAD_BYTES);
    let buf = vec![0x5Au8; rec * batch];
    let mut pos = 0u64;
    // SAFETY: the file is ours, exclusively, for the whole run, and is not resized.
    let mut map = if raw == Raw::Msync {
        Some(unsafe { memmap2::MmapMut::map_mut(&f) }.map_err(|e| e.to_string())?)
    } else {
        None
    };
    let direct = if raw == Raw::Direct {
        use std::os::unix::fs::OpenOptionsExt;
        Some(
            OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT)
                .open(&path)
                .map_err(|e| format!("O_DIRECT open: {e}"))?,
        )
    } else {
        None
    };
    // The O_DIRECT writer keeps the partly filled last block in an aligned buffer.
    let mut block = AlignedBuf::new(buf.len() + 2 * DIRECT_ALIGN);
    let mut one = |f: &mut File, pos: &mut u64| -> Result<(), String> {
        use std::os::unix::fs::FileExt;
        use std::os::unix::io::AsRawFd;
        if *pos + buf.len() as u64 > BASELINE_FILE_BYTES {
            *pos = 0;
            block.clear();
        }
        let at = *pos as usize;
        match raw {
            Raw::Msync => {
                if let Some(m) = map.as_mut() {
                    m[at..at + buf.len()].copy_from_slice(&buf);
                    m.flush_range(at, buf.len()).map_err(|e| e.to_string())?;
                }
            }
            Raw::Pwrite => {
                f.write_all_at(&buf, *pos).map_err(|e| e.to_string())?;
                f.sync_data().map_err(|e| e.to_string())?;
            }
            Raw::SyncFileRange => {
                f.write_all_at(&buf, *pos).map_err(|e| e.to_string())?;
                // SAFETY: plain syscall on an fd we own.
                let rc = unsafe {
                    libc::sync_file_range(
                        f.as_raw_fd(),
                        *pos as i64,
                        buf.len() as i64,
                        libc::SYNC_FILE_RANGE_WAIT_BEFORE
                            | libc::SYNC_FILE_RANGE_WRITE
                            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                    )
                };
                if rc != 0 {
                    return Err(std::io::Error::last_os_error().to_string());
                }
                f.sync_data().map_err(|e| e.to_string())?;
            }
            Raw::Direct => {
                let Some(d) = direct.as_ref() else {
                    return Err("no O_DIRECT file".into());
                };
                let start = at - at % DIRECT_ALIGN;
                let end = (at + buf.len()).div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
                let data = block.bytes_mut(end - start);
                data[at - start..at - start + buf.len()].copy_from_slice(&buf);
                d.write_all_at(data, start as u64)
                    .map_err(|e| format!("O_DIRECT pwrite: {e}"))?;
                d.sync_data().map_err(|e| e.to_string())?;
                // Keep the last, partly filled block for the next write.
                let keep_from = (at + buf.len()) - (at + buf.len()) % DIRECT_ALIGN;
                block.shift(keep_from - start);
            }
        }
        *pos += buf.len() as u64;
        Ok(())
    };
    for _ in 0..20 {
        one(&mut f, &mut pos)?;
    }
    let mut run = Run::default();
    let cpu0 = cpu_now();
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs);
    while start.elapsed() < limit {
        let t0 = Instant::now();
        one(&mut f, &mut pos)?;
        let ns = t0.elapsed().as_nanos() as u64;
        run.wait_ns.push(ns);
        run.batch_ns.push(ns);
        run.records += batch as u64;
        run.batches += 1;
        run.syncs += 1;
    }
    run.secs = start.elapsed().as_secs_f64();
    let cpu1 = cpu_now();
    run.cpu_process_us = cpu1.process_us - cpu0.process_us;
    run.cpu_thread_us = cpu1.thread_us - cpu0.thread_us;
    drop(map);
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(run)
}

/// A zeroed buffer aligned to [`DIRECT_ALIGN`] for O_DIRECT writes.
struct AlignedBuf {
    mem: Vec<u8>,
    start: usize,
    cap: usize,
}

impl AlignedBuf {
    fn new(cap: usize) -> AlignedBuf {
        let cap = cap.div_ceil(DIRECT_ALIGN) * DIRECT_ALIGN;
        let mem = vec![0u8; cap + DIRECT_ALIGN];
        let start = mem.as_ptr().align_offset(DIRECT_ALIGN);
        AlignedBuf { mem, start, cap }
    }
    fn bytes_mut(&mut self, len: usize) -> &mut [u8] {
        &mut self.mem[self.start..self.start + len.min(self.cap)]
    }
    /// Moves the block at `from` (one DIRECT_ALIGN block) to the front and zeroes the rest.
    fn shift(&mut self, from: usize) {
        let s = self.start;
        self.mem.copy_within(s + from..s + from + DIRECT_ALIGN, s);
        self.mem[s + DIRECT_ALIGN..s + self.cap].fill(0);
    }
    fn clear(&mut self) {
        let s = self.start;
        self.mem[s..s + self.cap].fill(0);
    }
}
