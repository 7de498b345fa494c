//! The segment pool: one background thread that keeps the next segment ready and deletes purged
//! ones, so the append path never creates, zero-fills, maps, pre-faults or unlinks a file.
//!
//! The owner asks for segment `seq` ahead of time (`SegmentPool::request`); the thread
//! prepares it — recycling a purged segment file when it keeps one (zero the header, fdatasync,
//! rename: no fallocate, no zero-fill), else a fresh file (fallocate, zero-fill, fdatasync,
//! rename, directory fsync) — maps it with MAP_POPULATE and hands it back over a flume channel of capacity [`READY_CAPACITY`]. A roll
//! takes it with `try_recv`; only if preparation has not finished does the roll wait for it
//! (counted in `WalStats::roll_stalls`). A failed preparation (ENOSPC, ...) comes back as the
//! error; the next roll asks again, so writing resumes once space is freed. A purged segment
//! is renamed to `{seq}.wal.free` (kept for reuse, up to `recycle` files; recovery leaves
//! them alone and the pool picks them up again on open) or unlinked, and the directory fsynced
//! before the next one, oldest first, so a crash never leaves a hole in the sequence.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::durability::Shared;
use crate::error::{Error, Result};
use crate::segment::{free_path, sync_dir, SegConfig, Segment, FREE_EXT, SEGMENT_EXT};

/// Prepared segments waiting to be taken.
pub const READY_CAPACITY: usize = 1;
/// Commands queued to the pool thread (one prepare plus deletions).
pub const COMMAND_CAPACITY: usize = 4096;

enum Command {
    Prepare(u64),
    Delete(Arc<Segment>),
}

/// Handle of the pool thread (owned by the `Wal`).
pub(crate) struct SegmentPool {
    cmd_tx: Option<flume::Sender<Command>>,
    ready_rx: flume::Receiver<Result<Segment>>,
    requested: Option<u64>,
    thread: Option<JoinHandle<()>>,
}

impl SegmentPool {
    pub fn spawn(
        dir: PathBuf,
        cfg: SegConfig,
        recycle: usize,
        shared: Arc<Shared>,
    ) -> Result<SegmentPool> {
        let (cmd_tx, cmd_rx) = flume::bounded::<Command>(COMMAND_CAPACITY);
        let (ready_tx, ready_rx) = flume::bounded(READY_CAPACITY);
        let mut free = list_free(&dir)?;
        // Keep no more than allowed (e.g. after `recycle_segments` was lowered).
        while free.len() > recycle {
            if let Some(p) = free.pop() {
                std::fs::remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
            }
        }
        let thread = std::thread::Builder::new()
            .name("wal-segment-pool".into())
            .spawn(move || {
                for cmd in cmd_rx.iter() {
                    match cmd {
                        Command::Prepare(seq) => {
                            let r = prepare(&dir, seq, &cfg, &mut free, &shared);
                            if ready_tx.send(r).is_err() {
                                return;
                            }
                        }
                        Command::Delete(seg) => {
                            let (path, seq) = (seg.path.clone(), seg.seq);
                            drop(seg);
                            // A failed unlink or rename leaves an obsolete but consistent
                            // segment behind; recovery replays it harmlessly, so it is not fatal.
                            let done = if free.len() < recycle {
                                let to = free_path(&dir, seq);
                                let ok = std::fs::rename(&path, &to).is_ok();
                                if ok {
                                    free.push(to);
                                }
                                ok
                            } else {
                                std::fs::remove_file(&path).is_ok()
                            };
                            if done && sync_dir(&dir).is_ok() {
                                shared.segments_deleted.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            })
            .map_err(|e| Error::io("spawn segment pool", "", e))?;
        Ok(SegmentPool {
            cmd_tx: Some(cmd_tx),
            ready_rx,
            requested: None,
            thread: Some(thread),
        })
    }

    /// Asks for segment `seq` to be prepared (no-op if already asked).
    pub fn request(&mut self, seq: u64) -> Result<()> {
        if self.requested.is_some() {
            return Ok(());
        }
        self.send(Command::Prepare(seq))?;
        self.requested = Some(seq);
        Ok(())
    }

    /// Takes the prepared segment `seq`, waiting if it is not ready yet. Returns whether it had
    /// to wait.
    pub fn take(&mut self, seq: u64) -> Result<(Segment, bool)> {
        if self.requested != Some(seq) {
            self.requested = None;
            self.request(seq)?;
        }
        let (mut r, mut stalled) = match self.ready_rx.try_recv() {
            Ok(r) => (r, false),
            Err(_) => (self.wait_ready()?, true),
        };
        self.requested = None;
        if r.is_err() && !stalled {
            // A failure prepared ahead of time may be stale (space freed since): try once more now.
            self.request(seq)?;
            r = self.wait_ready()?;
            self.requested = None;
            stalled = true;
        }
        let seg = r?;
        if seg.seq != seq {
            return Err(Error::Corrupt {
                path: seg.path.clone(),
                offset: 0,
                reason: format!("segment pool prepared seq {} but {seq} was due", seg.seq),
            });
        }
        Ok((seg, stalled))
    }

    fn wait_ready(&self) -> Result<Result<Segment>> {
        self.ready_rx.recv().map_err(|_| Error::Closed)
    }

    /// Hands a purged segment to the thread for unmapping and deletion.
    pub fn delete(&mut self, seg: Arc<Segment>) -> Result<()> {
        self.send(Command::Delete(seg))
    }

    fn send(&self, cmd: Command) -> Result<()> {
        match &self.cmd_tx {
            Some(tx) => tx.send(cmd).map_err(|_| Error::Closed),
            None => Err(Error::Closed),
        }
    }
}

/// Purged segment files kept for reuse (`*.wal.free`).
fn list_free(dir: &std::path::Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    let suffix = format!(".{SEGMENT_EXT}.{FREE_EXT}");
    let mut v = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("read directory", dir, e))?;
        if ent
            .file_name()
            .to_str()
            .is_some_and(|n| n.ends_with(&suffix))
        {
            v.push(ent.path());
        }
    }
    v.sort();
    Ok(v)
}

/// Prepares segment `seq`: from a recycled file when one is kept, else fresh.
fn prepare(
    dir: &std::path::Path,
    seq: u64,
    cfg: &SegConfig,
    free: &mut Vec<PathBuf>,
    shared: &Shared,
) -> Result<Segment> {
    while let Some(p) = free.pop() {
        if let Some(seg) = Segment::recycle(dir, &p, seq, cfg)? {
            shared.segments_recycled.fetch_add(1, Ordering::Relaxed);
            return Ok(seg);
        }
    }
    Segment::prepare(dir, seq, cfg)
}

impl Drop for SegmentPool {
    fn drop(&mut self) {
        self.cmd_tx = None;
        // Unblock a pending send of a prepared segment.
        while self.ready_rx.try_recv().is_ok() {}
        if let Some(t) = self.thread.take() {
            // Drain again while joining: the thread may finish one more preparation.
            while !t.is_finished() {
                while self.ready_rx.try_recv().is_ok() {}
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let _ = t.join();
        }
    }
}
