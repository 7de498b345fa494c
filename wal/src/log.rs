//! [`Wal`]: the shared write-ahead log of one core — the append path, the per-group reads,
//! truncation, purge, hard state, and the durability API. Owned by one thread (the core's
//! executor); `&mut self` methods never block on I/O except where documented (a roll whose next
//! segment is not prepared yet); `&self` reads of entries still staged write the stage out
//! first (`Pwrite` mode). Flush workers and the segment pool run on their own threads.
//!
//! Invariants: records are written in lsn order, each fully staged (`Pwrite`) or copied into
//! the map (`Mmap`) before it is published; a published byte is never written again while its segment lives; a segment is
//! deleted only when no group needs it, every purge record is durable, and the checkpoint at
//! the start of the first kept segment is durable.

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::durability::{stats_of, Durability, DurableWait, FlushReport, Lsn, Shared, WalStats};
use crate::error::{Error, Result};
use crate::flush_worker::FlushWorkers;
use crate::group_index::{EntryLoc, GroupIndex};
use crate::hard_state::{HardState, HARD_STATE_BYTES};
use crate::options::{WalOptions, WriteMode, FLUSH_REPORT_CAPACITY};
use crate::record::{
    decode, encode_header_parts, parts_len, record_bytes, Decoded, RecordHeader, RecordKind,
    CHECKPOINT_PAYLOAD_BYTES, RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES,
};
use crate::recovery::{recover, RecoveryReport, RepairReport};
use crate::segment::{SegConfig, Segment, SEGMENT_HEADER_BYTES};
use crate::segment_pool::SegmentPool;

/// Largest Raft index accepted (keeps index arithmetic far from overflow).
pub const MAX_INDEX: u64 = u64::MAX >> 2;
/// Name of the lock file in the WAL directory.
pub const LOCK_FILE: &str = "LOCK";
/// How long `open` keeps trying to take the directory lock.
pub const LOCK_WAIT_MS: u64 = 1000;
/// Pause between attempts to take the directory lock.
pub const LOCK_RETRY_MS: u64 = 5;
/// Payload parts an append gathers on the stack (an entry's kind byte and data need two).
const INLINE_PAYLOAD_PARTS: usize = 4;

const ZERO_PAD: [u8; RECORD_ALIGN_BYTES] = [0u8; RECORD_ALIGN_BYTES];

/// One entry read back, borrowing the map (zero-copy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// Raft index.
    pub index: u64,
    /// Raft term.
    pub term: u64,
    /// Payload bytes, straight from the memory map (CRC-checked).
    pub payload: &'a [u8],
}

/// A group that keeps one of the oldest segments alive (see [`Wal::pins`]): its oldest live
/// entry sits in segment `seq`, so no segment from `seq` on can be deleted until the group purges
/// (after a snapshot) at least through `last_index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentPin {
    /// Raft group.
    pub group: u64,
    /// Sequence number of the oldest segment holding one of the group's live entries.
    pub seq: u64,
    /// Index of the group's oldest live entry (in segment `seq`).
    pub first_index: u64,
    /// Highest index of the group held in the segments asked about: a purge past it (a
    /// snapshot at `last_index` or later) releases them as far as this group is concerned.
    pub last_index: u64,
}

struct SegMeta {
    seg: Arc<Segment>,
    /// Last lsn of the roll checkpoint at the start of this segment.
    checkpoint_end: Lsn,
}

/// The write-ahead log. See the crate docs for the design.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    shared: Arc<Shared>,
    req_tx: flume::Sender<()>,
    report_rx: flume::Receiver<FlushReport>,
    workers: FlushWorkers,
    pool: SegmentPool,
    segments: VecDeque<SegMeta>,
    active_off: usize,
    next_lsn: Lsn,
    groups: HashMap<u64, GroupIndex>,
    /// Lsn of the latest record that removed entries (Truncate or Purge).
    last_drop_lsn: Lsn,
    /// A deletion decided but waiting for durability: (first seq to keep, lsn that must be
    /// durable first).
    pending_reclaim: Option<(u64, Lsn)>,
    recovery: RecoveryReport,
    _lock: File,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("segments", &self.segments.len())
            .field("next_lsn", &self.next_lsn)
            .field("durable_lsn", &self.durable_lsn())
            .field("groups", &self.groups.len())
            .finish()
    }
}

fn seg_config(opts: &WalOptions) -> SegConfig {
    SegConfig {
        bytes: opts.segment_bytes,
        mode: opts.write_mode,
        prefault: opts.prefault,
        workers: opts.flush_workers,
        open_sync_files: true,
        fault: opts.fault.clone(),
    }
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open lock file", &path, e))?;
    // A forked child holds a copy of the descriptor (and so the lock) until it execs and the
    // close-on-exec flag drops it; retry for a short, bounded time before reporting `Locked`.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(LOCK_WAIT_MS);
    loop {
        // SAFETY: plain syscall on an fd we own.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(Error::io("flock", &path, e));
        }
        if std::time::Instant::now() >= deadline {
            return Err(Error::Locked { path: dir.into() });
        }
        std::thread::sleep(std::time::Duration::from_millis(LOCK_RETRY_MS));
    }
    Ok(f)
}

impl Wal {
    /// Opens (recovering) or creates the log in `dir`.
    pub fn open(dir: impl AsRef<Path>, opts: WalOptions) -> Result<Wal> {
        opts.validate()?;
        let dir = dir.as_ref().to_path_buf();
        // Durably: on a first boot the directory (and its missing parents) must survive a crash
        // as surely as the segments written into it.
        crate::segment::create_dir_durable(&dir)?;
        let lock = lock_dir(&dir)?;
        let cfg = seg_config(&opts);
        let rec = recover(&dir, &opts, &cfg)?;
        let mut segments: VecDeque<SegMeta> = rec
            .segments
            .into_iter()
            .map(|s| {
                let first = s.first_lsn();
                SegMeta {
                    seg: Arc::new(s),
                    checkpoint_end: first.saturating_sub(1),
                }
            })
            .collect();
        let mut next_lsn = rec.next_lsn;
        if segments.is_empty() {
            let seg = Segment::prepare(&dir, 1, &cfg)?;
            seg.activate(1, opts.owner_id);
            seg.ensure_header()?;
            seg.sync(0)?;
            next_lsn = 1;
            segments.push_back(SegMeta {
                seg: Arc::new(seg),
                checkpoint_end: 0,
            });
        }
        let (req_tx, req_rx) = flume::bounded(opts.flush_workers);
        let (report_tx, report_rx) = flume::bounded(FLUSH_REPORT_CAPACITY);
        let shared = Arc::new(Shared::new(
            opts.flush_policy,
            opts.write_mode,
            opts.max_staged_bytes,
            opts.max_waiters,
            opts.wait_spin_us,
            next_lsn - 1,
            req_tx.clone(),
            report_tx,
        ));
        let active = match segments.back() {
            Some(m) => m.seg.clone(),
            None => unreachable!("a segment was created above"),
        };
        shared.add_segment(active.clone());
        let workers = FlushWorkers::spawn(
            opts.flush_workers,
            shared.clone(),
            req_rx,
            opts.worker_spin_us,
        )?;
        let recycle = match opts.write_mode {
            WriteMode::Pwrite => opts.recycle_segments,
            WriteMode::Mmap => 0,
        };
        let mut pool = SegmentPool::spawn(dir.clone(), cfg, recycle, shared.clone())?;
        pool.request(active.seq + 1)?;
        Ok(Wal {
            dir,
            active_off: active.written(),
            opts,
            shared,
            req_tx,
            report_rx,
            workers,
            pool,
            segments,
            next_lsn,
            groups: rec.groups,
            last_drop_lsn: 0,
            pending_reclaim: None,
            recovery: rec.report,
            _lock: lock,
        })
    }

    /// Repairs the log in `dir` without opening it: cuts it at the first invalid record (in
    /// any segment), drops every record after it (zeroing valid ones that follow in that
    /// segment, deleting later segments) and returns a report saying exactly what was
    /// dropped. A log that needs no repair is left unchanged. This is the documented way
    /// forward after [`Error::ValidAfterInvalid`] or a corrupt sealed segment; it may drop
    /// acknowledged records, so it is never done implicitly.
    pub fn repair(dir: impl AsRef<Path>, opts: &WalOptions) -> Result<RepairReport> {
        opts.validate()?;
        let dir = dir.as_ref();
        let _lock = lock_dir(dir)?;
        crate::recovery::repair(dir, opts, &seg_config(opts))
    }

    /// Scans the log in `dir` as open would, without changing anything and without taking
    /// the directory lock: files are opened and mapped read-only; a torn tail is reported
    /// (under `TolerateTornTail`) but not cut; spares are not deleted; nothing is synced.
    /// Returns what open would recover, or the error open would refuse with (file and offset).
    /// A log being written concurrently may show a torn tail that is only a write in flight.
    pub fn inspect(dir: impl AsRef<Path>, opts: &WalOptions) -> Result<RecoveryReport> {
        opts.validate()?;
        crate::recovery::inspect(dir.as_ref(), opts, &seg_config(opts))
    }

    /// What [`Wal::repair`] would cut and drop in `dir`, computed read-only like
    /// [`Wal::inspect`] (a dry run: nothing is changed).
    pub fn repair_plan(dir: impl AsRef<Path>, opts: &WalOptions) -> Result<RepairReport> {
        opts.validate()?;
        crate::recovery::repair_plan(dir.as_ref(), opts, &seg_config(opts))
    }

    // ----- writes -------------------------------------------------------------------------

    /// Appends the entry `index` (which must be the group's last index + 1) of `group`. Stages
    /// it (or, in `Mmap` mode, copies it into the map) and returns its lsn at once; durability
    /// is asked for separately ([`Wal::wait_durable`]). Fails with [`Error::Backpressure`]
    /// (nothing written) when `max_buffered_entries` records are not yet durable or the stage
    /// is full, and with [`Error::Poisoned`] after any failed sync or write.
    pub fn append(&mut self, group: u64, index: u64, term: u64, payload: &[u8]) -> Result<Lsn> {
        self.append_parts(group, index, term, &[payload])
    }

    /// [`Wal::append`] of a payload given as consecutive `parts` (a gathered write: the record
    /// is the same as for their concatenation, which the caller need not build). The parts are
    /// copied once, into the stage or the map.
    pub fn append_parts(
        &mut self,
        group: u64,
        index: u64,
        term: u64,
        parts: &[&[u8]],
    ) -> Result<Lsn> {
        self.check_writable()?;
        let payload_len = parts_len(parts);
        if payload_len > self.opts.max_payload_bytes {
            return Err(Error::PayloadTooLarge {
                len: payload_len,
                max: self.opts.max_payload_bytes,
            });
        }
        let expected = self.groups.get(&group).map_or(1, |g| g.last_index() + 1);
        if index != expected || index > MAX_INDEX {
            return Err(Error::NonContiguous {
                group,
                index,
                expected,
            });
        }
        self.check_backpressure(payload_len)?;
        let (seq, off, lsn) = self.write_record_parts(
            RecordHeader {
                lsn: 0,
                group,
                term,
                index,
                kind: RecordKind::Entry,
            },
            parts,
        )?;
        self.groups
            .entry(group)
            .or_default()
            .entries
            .push_back(EntryLoc {
                seq,
                offset: off as u32,
                len: payload_len as u32,
                term,
                lsn,
            });
        Ok(lsn)
    }

    /// Durably removes the entries of `group` with index >= `from_index` (a Truncate record).
    /// Returns the lsn to wait for; a no-op (nothing to remove) returns the last lsn.
    pub fn truncate(&mut self, group: u64, from_index: u64) -> Result<Lsn> {
        self.check_writable()?;
        let Some(g) = self.groups.get(&group) else {
            return Ok(self.last_lsn());
        };
        if from_index < g.first_index {
            return Err(Error::Compacted {
                group,
                index: from_index,
                first_index: g.first_index,
            });
        }
        if from_index > g.last_index() {
            return Ok(self.last_lsn());
        }
        self.check_backpressure(0)?;
        let (_, _, lsn) = self.write_record(
            RecordHeader {
                lsn: 0,
                group,
                term: 0,
                index: from_index,
                kind: RecordKind::Truncate,
            },
            &[],
        )?;
        if let Some(g) = self.groups.get_mut(&group) {
            g.truncate(from_index);
        }
        self.last_drop_lsn = lsn;
        Ok(lsn)
    }

    /// Declares the entries of `group` below `first_index` unneeded (after a snapshot): the
    /// group's first index becomes `first_index` (it may exceed the last index + 1: the log of
    /// the group is then empty and the next append is `first_index`). Whole segments that no
    /// group needs any more are deleted once that is safe (now, or at a later purge / roll /
    /// [`Wal::reclaim`]). Returns the lsn of the Purge record (or the last lsn for a no-op).
    pub fn purge(&mut self, group: u64, first_index: u64) -> Result<Lsn> {
        self.check_writable()?;
        if first_index > MAX_INDEX {
            return Err(Error::Unavailable {
                group,
                index: first_index,
                last_index: MAX_INDEX,
            });
        }
        let current = self.groups.get(&group).map_or(1, |g| g.first_index);
        if first_index <= current {
            self.reclaim()?;
            return Ok(self.last_lsn());
        }
        self.check_backpressure(0)?;
        let (_, _, lsn) = self.write_record(
            RecordHeader {
                lsn: 0,
                group,
                term: 0,
                index: first_index,
                kind: RecordKind::Purge,
            },
            &[],
        )?;
        self.groups.entry(group).or_default().purge(first_index);
        self.last_drop_lsn = lsn;
        self.reclaim()?;
        Ok(lsn)
    }

    /// Stores the hard state of `group` (one CRC'd record: atomic, never torn). Returns its lsn.
    pub fn set_hard_state(&mut self, group: u64, hs: HardState) -> Result<Lsn> {
        self.check_writable()?;
        self.check_backpressure(HARD_STATE_BYTES)?;
        let (_, _, lsn) = self.write_record(
            RecordHeader {
                lsn: 0,
                group,
                term: hs.term,
                index: hs.commit,
                kind: RecordKind::HardState,
            },
            &hs.encode(),
        )?;
        self.groups.entry(group).or_default().hard_state = Some(hs);
        Ok(lsn)
    }

    /// Deletes whole segments that no group needs, when it is safe: every record that removed
    /// entries (Truncate, Purge) up to now, and the checkpoint opening the first kept segment,
    /// must be durable first — else a crash could bring back a state that needs the deleted
    /// bytes. A deletion that must wait is remembered and done by a later call once durable.
    /// Purge, truncate-free rolls and this method call it; call it after a durable wait to
    /// reclaim space sooner.
    pub fn reclaim(&mut self) -> Result<()> {
        let durable = self.shared.durable();
        if let Some((keep_seq, need)) = self.pending_reclaim {
            if durable < need {
                return Ok(());
            }
            self.pending_reclaim = None;
            self.delete_before(keep_seq)?;
        }
        let (Some(front), Some(back)) = (self.segments.front(), self.segments.back()) else {
            return Ok(());
        };
        let (front_seq, active_seq) = (front.seg.seq, back.seg.seq);
        let needed = self
            .groups
            .values()
            .filter_map(|g| g.oldest_seq())
            .min()
            .unwrap_or(active_seq)
            .min(active_seq);
        if needed <= front_seq {
            return Ok(());
        }
        let keep = &self.segments[(needed - front_seq) as usize];
        let need = self
            .last_drop_lsn
            .max(keep.checkpoint_end)
            .max(keep.seg.first_lsn());
        if durable >= need {
            self.delete_before(needed)
        } else {
            self.pending_reclaim = Some((needed, need));
            Ok(())
        }
    }

    fn delete_before(&mut self, keep_seq: u64) -> Result<()> {
        let active_seq = self.active().seq;
        while let Some(m) = self.segments.front() {
            if m.seg.seq >= keep_seq || m.seg.seq >= active_seq {
                break;
            }
            if let Some(m) = self.segments.pop_front() {
                self.shared.remove_segment(m.seg.seq);
                self.pool.delete(m.seg)?;
            }
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        match self.shared.poisoned() {
            Some(reason) => Err(Error::Poisoned(reason)),
            None => Ok(()),
        }
    }

    fn check_backpressure(&self, payload_len: usize) -> Result<()> {
        let buffered = (self.next_lsn - 1).saturating_sub(self.shared.durable());
        if buffered >= self.opts.max_buffered_entries
            || (self.opts.write_mode == WriteMode::Pwrite
                && !self.shared.stage_room(record_bytes(payload_len)))
        {
            self.shared.maybe_request(true);
            return Err(Error::Backpressure {
                buffered,
                max: self.opts.max_buffered_entries,
            });
        }
        Ok(())
    }

    /// Writes one record (rolling first if it does not fit); returns (seq, offset, lsn).
    fn write_record(&mut self, h: RecordHeader, payload: &[u8]) -> Result<(u64, usize, Lsn)> {
        self.write_record_parts(h, &[payload])
    }

    /// [`Self::write_record`] of a payload given in consecutive parts.
    fn write_record_parts(
        &mut self,
        h: RecordHeader,
        parts: &[&[u8]],
    ) -> Result<(u64, usize, Lsn)> {
        let need = record_bytes(parts_len(parts));
        let room = self.active().len() - self.active_off;
        if need > room {
            self.roll(need)?;
        }
        Ok(self.write_in_active(h, parts))
    }

    fn active(&self) -> &Arc<Segment> {
        match self.segments.back() {
            Some(m) => &m.seg,
            None => unreachable!("the log always has an active segment"),
        }
    }

    fn write_in_active(&mut self, mut h: RecordHeader, payload: &[&[u8]]) -> (u64, usize, Lsn) {
        let lsn = self.next_lsn;
        h.lsn = lsn;
        let payload_len = parts_len(payload);
        let need = record_bytes(payload_len);
        let pad = need - RECORD_HEADER_BYTES - payload_len;
        let hdr = encode_header_parts(&h, payload);
        let off = self.active_off;
        let seg = self.active();
        // Header, payload parts and padding, gathered on the stack (a longer list, which no
        // caller here makes, goes through a vector).
        let mut inline: [&[u8]; INLINE_PAYLOAD_PARTS + 2] = [&[]; INLINE_PAYLOAD_PARTS + 2];
        let heap: Vec<&[u8]>;
        let parts: &[&[u8]] = if payload.len() <= INLINE_PAYLOAD_PARTS {
            inline[0] = &hdr;
            inline[1..=payload.len()].copy_from_slice(payload);
            inline[payload.len() + 1] = &ZERO_PAD[..pad];
            &inline[..payload.len() + 2]
        } else {
            heap = std::iter::once(&hdr[..])
                .chain(payload.iter().copied())
                .chain(std::iter::once(&ZERO_PAD[..pad]))
                .collect();
            &heap
        };
        match self.opts.write_mode {
            WriteMode::Mmap => seg.write_parts(off, parts),
            WriteMode::Pwrite => self.shared.stage(seg, off, parts),
        }
        seg.publish(off + need);
        let seq = seg.seq;
        self.active_off = off + need;
        self.next_lsn = lsn + 1;
        self.shared.publish(lsn);
        (seq, off, lsn)
    }

    /// Switches to the next (prepared) segment and writes the checkpoint: the hard state and
    /// first index of every group, so that older segments can be deleted without losing them.
    fn roll(&mut self, need: usize) -> Result<()> {
        self.reclaim()?;
        if self.segments.len() >= self.opts.max_segments {
            return Err(Error::LogFull {
                segments: self.segments.len(),
            });
        }
        let mut ids: Vec<u64> = self.groups.keys().copied().collect();
        ids.sort_unstable();
        let checkpoint: usize = self
            .groups
            .values()
            .map(|g| {
                g.hard_state.map_or(0, |_| record_bytes(HARD_STATE_BYTES))
                    + record_bytes(CHECKPOINT_PAYLOAD_BYTES)
            })
            .sum();
        let capacity = self.opts.segment_bytes - SEGMENT_HEADER_BYTES;
        if checkpoint + need > capacity {
            return Err(Error::SegmentTooSmall {
                needed: checkpoint + need + SEGMENT_HEADER_BYTES,
                segment_bytes: self.opts.segment_bytes,
            });
        }
        let next_seq = self.active().seq + 1;
        let (seg, stalled) = self.pool.take(next_seq)?;
        if stalled {
            self.shared
                .roll_stalls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let seg = Arc::new(seg);
        seg.activate(self.next_lsn, self.opts.owner_id);
        self.active().seal();
        self.shared.add_segment(seg.clone());
        self.segments.push_back(SegMeta {
            seg,
            checkpoint_end: 0,
        });
        self.active_off = SEGMENT_HEADER_BYTES;
        // Failure here only means the pool is gone (drop); the next roll asks again.
        let _ = self.pool.request(next_seq + 1);
        for id in ids {
            let Some(g) = self.groups.get(&id) else {
                continue;
            };
            let (hs, first, last) = (g.hard_state, g.first_index, g.last_index());
            let h = RecordHeader {
                lsn: 0,
                group: id,
                term: 0,
                index: first,
                kind: RecordKind::Checkpoint,
            };
            self.write_in_active(h, &[&last.to_le_bytes()]);
            if let Some(hs) = hs {
                let h = RecordHeader {
                    lsn: 0,
                    group: id,
                    term: hs.term,
                    index: hs.commit,
                    kind: RecordKind::HardState,
                };
                self.write_in_active(h, &[&hs.encode()]);
            }
        }
        let end = self.next_lsn - 1;
        if let Some(m) = self.segments.back_mut() {
            m.checkpoint_end = end;
        }
        self.shared
            .rolls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    // ----- reads --------------------------------------------------------------------------

    /// First index of `group` (1 for an unknown group).
    pub fn first_index(&self, group: u64) -> u64 {
        self.groups.get(&group).map_or(1, |g| g.first_index)
    }

    /// Last index of `group` (`first_index - 1` when its log is empty; 0 for an unknown group).
    pub fn last_index(&self, group: u64) -> u64 {
        self.groups.get(&group).map_or(0, |g| g.last_index())
    }

    /// Hard state of `group`, if one was ever set.
    pub fn hard_state(&self, group: u64) -> Option<HardState> {
        self.groups.get(&group).and_then(|g| g.hard_state)
    }

    /// Groups known to the log (ascending).
    pub fn groups(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.groups.keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn loc(&self, group: u64, index: u64) -> Result<&EntryLoc> {
        let g = self.groups.get(&group);
        let first = g.map_or(1, |g| g.first_index);
        let last = g.map_or(0, |g| g.last_index());
        if index < first {
            return Err(Error::Compacted {
                group,
                index,
                first_index: first,
            });
        }
        match g.and_then(|g| g.get(index)) {
            Some(l) => Ok(l),
            None => Err(Error::Unavailable {
                group,
                index,
                last_index: last,
            }),
        }
    }

    /// Term of entry `index` of `group` (from memory, no disk read).
    pub fn term(&self, group: u64, index: u64) -> Result<u64> {
        Ok(self.loc(group, index)?.term)
    }

    /// Entry `index` of `group`, zero-copy from the map, CRC-checked.
    pub fn entry(&self, group: u64, index: u64) -> Result<Entry<'_>> {
        let loc = *self.loc(group, index)?;
        self.read(group, index, &loc)
    }

    /// Entries `lo..hi` of `group`, zero-copy, each CRC-checked as it is yielded.
    pub fn entries(&self, group: u64, lo: u64, hi: u64) -> Result<Entries<'_>> {
        if lo < hi {
            self.loc(group, lo)?;
            self.loc(group, hi - 1)?;
        }
        Ok(Entries {
            wal: self,
            group,
            next: lo,
            end: hi.max(lo),
        })
    }

    fn read(&self, group: u64, index: u64, loc: &EntryLoc) -> Result<Entry<'_>> {
        let front = self.segments.front().map_or(0, |m| m.seg.seq);
        let m = loc
            .seq
            .checked_sub(front)
            .and_then(|k| self.segments.get(k as usize));
        let Some(m) = m else {
            return Err(Error::Unavailable {
                group,
                index,
                last_index: self.last_index(group),
            });
        };
        let off = loc.offset as usize;
        let total = record_bytes(loc.len as usize);
        if off + total > m.seg.pwritten() {
            // Still staged (appended, not yet written by a flush worker): write it out now.
            if let Err(e) = self.shared.drain() {
                self.shared.poison(&e, None);
                return Err(e);
            }
        }
        let bytes = m.seg.bytes(off, total);
        let corrupt = |reason: String| Error::Corrupt {
            path: m.seg.path.clone(),
            offset: off as u64,
            reason,
        };
        match decode(bytes, 0, loc.lsn) {
            Decoded::Record {
                header,
                payload_off,
                payload_len,
                ..
            } => {
                if header.kind != RecordKind::Entry
                    || header.group != group
                    || header.index != index
                    || header.term != loc.term
                {
                    return Err(corrupt(format!(
                        "record {header:?} is not entry {index} of group {group}"
                    )));
                }
                Ok(Entry {
                    index,
                    term: header.term,
                    payload: &bytes[payload_off..payload_off + payload_len],
                })
            }
            Decoded::End => Err(corrupt("zero bytes where a record was written".into())),
            Decoded::Invalid(reason) => Err(corrupt(reason)),
        }
    }

    // ----- durability ---------------------------------------------------------------------

    /// Highest lsn appended (staged or in the map; not necessarily durable).
    pub fn last_lsn(&self) -> Lsn {
        self.next_lsn - 1
    }

    /// Highest durable lsn (readable any time, also through [`Wal::durability`]).
    pub fn durable_lsn(&self) -> Lsn {
        self.shared.durable()
    }

    /// Highest durable index of `group` (`first_index - 1` when none).
    pub fn durable_index(&self, group: u64) -> u64 {
        let durable = self.shared.durable();
        self.groups
            .get(&group)
            .map_or(0, |g| g.durable_index(durable))
    }

    /// Asks for a sync of everything appended so far (whatever the policy); returns the lsn it
    /// covers. Does not wait.
    pub fn flush(&self) -> Lsn {
        self.shared.maybe_request(true);
        self.last_lsn()
    }

    /// Future resolving when `lsn` is durable; pollable by any executor, does not borrow `self`.
    pub fn wait_durable(&self, lsn: Lsn) -> DurableWait {
        self.durability().wait(lsn)
    }

    /// Flushes and blocks the calling thread until everything appended so far is durable. For
    /// plain threads and tests; an executor thread should await [`Wal::wait_durable`] instead.
    pub fn sync(&self) -> Result<()> {
        let lsn = self.flush();
        self.durability().wait_blocking(lsn)
    }

    /// Cloneable handle on the durable position (for other threads and tasks).
    pub fn durability(&self) -> Durability {
        Durability {
            shared: self.shared.clone(),
        }
    }

    /// Receiver of flush reports (one per completed or failed sync; cumulative, so dropped
    /// reports on a full channel lose nothing: `durable_lsn()` is the truth).
    pub fn flush_reports(&self) -> flume::Receiver<FlushReport> {
        self.report_rx.clone()
    }

    /// Counters.
    pub fn stats(&self) -> WalStats {
        stats_of(&self.shared)
    }

    /// What recovery found when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Live segment files.
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Bytes the live segment files take on disk (each is preallocated to `segment_bytes`).
    pub fn live_bytes(&self) -> u64 {
        (self.segments.len() as u64).saturating_mul(self.opts.segment_bytes as u64)
    }

    /// The groups that keep the `oldest` oldest live segments alive (never counting the active
    /// segment), oldest segment first, then by group id. Space is reclaimed from the oldest
    /// segment only, so a group that appends rarely and never purges (a quiet shard that does
    /// not reach its snapshot threshold) pins every later segment however busy the others
    /// are: its owner should compact (snapshot and [`Wal::purge`]) the groups listed here.
    /// Reads memory only: O(groups · log entries-per-group).
    pub fn pins(&self, oldest: usize) -> Vec<SegmentPin> {
        let (Some(front), Some(back)) = (self.segments.front(), self.segments.back()) else {
            return Vec::new();
        };
        let limit = front
            .seg
            .seq
            .saturating_add(oldest as u64)
            .min(back.seg.seq);
        let mut v: Vec<SegmentPin> = self
            .groups
            .iter()
            .filter_map(|(&group, g)| {
                let first = g.entries.front()?;
                (first.seq < limit).then(|| SegmentPin {
                    group,
                    seq: first.seq,
                    first_index: g.phantom_end,
                    last_index: g.last_index_below_seq(limit),
                })
            })
            .collect();
        v.sort_unstable_by_key(|p| (p.seq, p.group));
        v
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Syncs everything and closes, reporting a failed final sync (a plain drop cannot).
    pub fn close(self) -> Result<()> {
        self.sync()
    }
}

/// Longest a drop waits for its final sync.
pub const DROP_SYNC_TIMEOUT_MS: u64 = 10_000;

impl Drop for Wal {
    /// A graceful close: syncs what was appended (bounded by [`DROP_SYNC_TIMEOUT_MS`]; skipped
    /// when poisoned), then stops the workers and the pool. A process that dies without
    /// dropping keeps exactly what was durable, plus possibly more.
    fn drop(&mut self) {
        if self.shared.poisoned().is_none() {
            let lsn = self.flush();
            let _ = self.durability().wait_blocking_timeout(
                lsn,
                Some(std::time::Duration::from_millis(DROP_SYNC_TIMEOUT_MS)),
            );
        }
        self.shared
            .shutdown
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.workers.join(&self.req_tx);
        self.shared.close();
    }
}

/// Iterator over entries of one group, yielding `Result<Entry>` (CRC-checked, zero-copy).
pub struct Entries<'a> {
    wal: &'a Wal,
    group: u64,
    next: u64,
    end: u64,
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<Entry<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.end {
            return None;
        }
        let i = self.next;
        self.next += 1;
        Some(self.wal.entry(self.group, i))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = (self.end - self.next) as usize;
        (n, Some(n))
    }
}
