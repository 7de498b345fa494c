//! Recovery on open: find the segments, verify them, rebuild every group's index, and cut a
//! torn tail.
//!
//! Steps:
//! 1. List `*.wal` files (other names are ignored — `*.wal.free` files are purged segments kept
//!    for reuse; `*.wal.prep` leftovers of an interrupted preparation are deleted). Sequence
//!    numbers must be consecutive.
//! 2. Read each header. An all-zero header is a spare; spares may only follow the segments in
//!    use (a spare before a used segment is corruption, since a header is written only after all
//!    earlier segments are durable). Wrong magic, unknown version, bad header crc, a seq that
//!    differs from the file name, another owner id, or a size that differs from the header are
//!    errors naming the file.
//! 3. Scan records of each used segment from byte 64, each carrying the next lsn (a segment's
//!    header `first_lsn` must continue the previous segment exactly). An all-zero record header
//!    ends a segment (fresh segments are zero-filled; in a recycled one the writer puts 48 zero
//!    bytes after every batch of records). Anything else that does not verify is *invalid*, and
//!    recovery never guesses what it is:
//!    * in a *sealed* segment (one followed by a used segment) it is [`Error::Corrupt`] with
//!      file and offset: that data was durable;
//!    * in the *last* segment it is a torn tail only if no valid record of this segment follows
//!      it anywhere in the file (a record with a correct crc and an lsn >= the expected one; an
//!      old record left in a recycled file carries an lsn below the segment's first lsn and does
//!      not count). Then `TolerateTornTail` cuts there (zeroes the header position, fdatasyncs)
//!      and `Strict` reports [`Error::TornTail`]. Nothing after a torn record was ever reported
//!      durable: a sync covers all records before its target.
//!    * an invalid record *followed by a valid one* is [`Error::ValidAfterInvalid`]: either a
//!      synced record was damaged later (cutting would drop acknowledged records) or a crash
//!      wrote pages out of order; the bytes cannot tell which, so opening refuses. The way
//!      forward is explicit: [`crate::Wal::repair`] (exposed as `ringraft wal repair`) cuts the log at the
//!      first invalid record and reports everything it drops.
//! 4. Apply records in lsn order to the group indexes (Entry appends and must follow the last
//!    index, Truncate removes a suffix, Purge drops a prefix, HardState replaces, Checkpoint
//!    positions a group seen for the first time — its entries up to the checkpoint's last index
//!    lived in purged segments — or must agree with the replayed state). At the end no group may
//!    still need an entry from a purged segment.
//! 5. Delete spares (they never hold durable data; the pool prepares fresh ones) and fdatasync
//!    every used segment, because records found in the page cache after a process crash may
//!    never have been synced; only then is everything found reported durable.
//!
//! The same scan runs read-only for [`crate::Wal::inspect`] and [`crate::Wal::repair_plan`]:
//! files opened and mapped read-only, steps 1 and 5 delete nothing, nothing is cut or synced;
//! the reports say what open or repair would do.
//!
//! Every number read from disk is treated as hostile: lengths are checked against the segment
//! before use, lsn and index arithmetic is checked, and every failure is a typed error naming
//! the file and offset — never a panic. Every recovery returns a [`RecoveryReport`] for the
//! caller to log.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::group_index::{EntryLoc, GroupIndex};
use crate::hard_state::HardState;
use crate::log::MAX_INDEX;
use crate::options::{RecoveryMode, WalOptions, MAX_SEGMENT_BYTES};
use crate::record::{decode, find_valid_after, Decoded, RecordKind};
use crate::segment::{
    parse_segment_name, sync_dir, SegConfig, Segment, SegmentHeader, PREP_EXT, SEGMENT_EXT,
    SEGMENT_HEADER_BYTES,
};

/// What recovery found, for logs and tests (`Display` gives one log line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments in use after recovery.
    pub segments: usize,
    /// Valid records replayed.
    pub records: u64,
    /// Bytes of those records (headers and padding included).
    pub bytes: u64,
    /// Lsn the log continues with.
    pub next_lsn: u64,
    /// Spare segments deleted.
    pub spares_deleted: usize,
    /// Where a torn tail was cut (file, offset) under `TolerateTornTail`.
    pub torn_tail: Option<(PathBuf, u64)>,
    /// Why the cut record was invalid.
    pub torn_tail_reason: Option<String>,
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WAL recovered: {} segments, {} records, {} bytes, next lsn {}, {} spares deleted",
            self.segments, self.records, self.bytes, self.next_lsn, self.spares_deleted
        )?;
        match (&self.torn_tail, &self.torn_tail_reason) {
            (Some((p, off)), reason) => write!(
                f,
                ", torn tail cut at {} offset {off} ({})",
                p.display(),
                reason.as_deref().unwrap_or("invalid record")
            ),
            (None, _) => write!(f, ", no torn tail"),
        }
    }
}

/// What [`crate::Wal::repair`] dropped (`Display` gives one log line).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Where the log was cut (file, offset of the first invalid record); `None` when nothing
    /// needed repair.
    pub cut: Option<(PathBuf, u64)>,
    /// Why that record was invalid.
    pub reason: Option<String>,
    /// First lsn dropped (every record from it on is gone).
    pub first_dropped_lsn: Option<u64>,
    /// Valid records found after the cut in the cut segment, now dropped (with their offsets
    /// and lsns).
    pub dropped_records: Vec<(u64, u64)>,
    /// Later segments deleted (they continued the log past the cut).
    pub dropped_segments: Vec<PathBuf>,
    /// What the repaired log holds.
    pub recovery: RecoveryReport,
}

impl std::fmt::Display for RepairReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.cut {
            None => write!(f, "WAL repair: nothing to repair; {}", self.recovery),
            Some((p, off)) => write!(
                f,
                "WAL repair: cut {} at offset {off} ({}); dropped every record from lsn {} on, \
                 including {} valid records after the cut in that segment and {} later segments; \
                 {}",
                p.display(),
                self.reason.as_deref().unwrap_or("invalid record"),
                self.first_dropped_lsn.unwrap_or(0),
                self.dropped_records.len(),
                self.dropped_segments.len(),
                self.recovery
            ),
        }
    }
}

pub(crate) struct Recovered {
    pub segments: Vec<Segment>,
    pub next_lsn: u64,
    pub groups: HashMap<u64, GroupIndex>,
    pub report: RecoveryReport,
}

struct Found {
    seq: u64,
    path: PathBuf,
}

/// Lists the segment files of `dir`; deletes `*.wal.prep` leftovers unless `read_only`.
fn list(dir: &Path, read_only: bool) -> Result<Vec<Found>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    let mut found = Vec::new();
    let mut removed = false;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("read directory", dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(&format!(".{SEGMENT_EXT}.{PREP_EXT}")) {
            if read_only {
                continue;
            }
            std::fs::remove_file(ent.path()).map_err(|e| Error::io("remove", ent.path(), e))?;
            removed = true;
            continue;
        }
        if let Some(seq) = parse_segment_name(name) {
            found.push(Found {
                seq,
                path: ent.path(),
            });
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    found.sort_by_key(|f| f.seq);
    for w in found.windows(2) {
        if w[1].seq != w[0].seq + 1 {
            return Err(Error::Corrupt {
                path: w[1].path.clone(),
                offset: 0,
                reason: format!("segment sequence jumps from {} to {}", w[0].seq, w[1].seq),
            });
        }
    }
    Ok(found)
}

pub(crate) fn recover(dir: &Path, opts: &WalOptions, cfg: &SegConfig) -> Result<Recovered> {
    recover_inner(dir, opts, cfg, None, false)
}

/// Runs the recovery scan of `dir` without changing anything: files are opened and mapped
/// read-only, a torn tail is reported (under `TolerateTornTail`) but not cut, spares and
/// leftovers are not deleted, nothing is synced. The report's `spares_deleted` is 0.
pub(crate) fn inspect(dir: &Path, opts: &WalOptions, cfg: &SegConfig) -> Result<RecoveryReport> {
    Ok(recover_inner(dir, opts, cfg, None, true)?.report)
}

/// What [`repair`] would do to `dir`, computed without changing anything (see [`inspect`]).
pub(crate) fn repair_plan(dir: &Path, opts: &WalOptions, cfg: &SegConfig) -> Result<RepairReport> {
    let mut rep = RepairReport::default();
    let rec = recover_inner(dir, opts, cfg, Some(&mut rep), true)?;
    rep.recovery = rec.report;
    Ok(rep)
}

/// Repairs the log in `dir` (the caller holds the directory lock): cuts it at the first invalid
/// record, wherever it is, drops everything after (valid records after it in that segment are
/// zeroed, later segments deleted, last first) and says what it dropped. A log that needs no
/// repair is left unchanged. Errors that cutting cannot fix (wrong owner, bad headers, records
/// that contradict each other) are returned as they are.
pub(crate) fn repair(dir: &Path, opts: &WalOptions, cfg: &SegConfig) -> Result<RepairReport> {
    let mut rep = RepairReport::default();
    let rec = recover_inner(dir, opts, cfg, Some(&mut rep), false)?;
    rep.recovery = rec.report;
    Ok(rep)
}

/// The recovery scan. `read_only`: open and map every file read-only and skip every write,
/// delete and sync (the reports say what would be cut and dropped).
fn recover_inner(
    dir: &Path,
    opts: &WalOptions,
    cfg: &SegConfig,
    mut repair: Option<&mut RepairReport>,
    read_only: bool,
) -> Result<Recovered> {
    let mut cfg = SegConfig {
        prefault: false,
        open_sync_files: false,
        ..cfg.clone()
    };
    if read_only {
        // A read-only map, whatever the configured write mode.
        cfg.mode = crate::options::WriteMode::Pwrite;
        cfg.workers = 0;
    }
    let found = list(dir, read_only)?;
    let mut used: Vec<(Segment, SegmentHeader)> = Vec::new();
    let mut spares: Vec<PathBuf> = Vec::new();
    for f in found {
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(&f.path)
            .map_err(|e| Error::io("open segment", &f.path, e))?;
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat segment", &f.path, e))?
            .len() as usize;
        if !(SEGMENT_HEADER_BYTES..=MAX_SEGMENT_BYTES).contains(&len) {
            return Err(Error::Corrupt {
                path: f.path.clone(),
                offset: 0,
                reason: format!(
                    "file of {len} bytes is not a segment ({SEGMENT_HEADER_BYTES}..={MAX_SEGMENT_BYTES} bytes)"
                ),
            });
        }
        let seg = Segment::map(f.seq, f.path.clone(), file, len, &cfg)?;
        let header = SegmentHeader::decode(seg.all_bytes(), &f.path)?;
        match header {
            None => spares.push(f.path),
            Some(h) => {
                if let Some(first_spare) = spares.first() {
                    return Err(Error::Corrupt {
                        path: first_spare.clone(),
                        offset: 0,
                        reason: format!(
                            "segment header missing although later segment {} is in use",
                            f.path.display()
                        ),
                    });
                }
                if h.seq != f.seq {
                    return Err(Error::Corrupt {
                        path: f.path,
                        offset: 16,
                        reason: format!("header seq {} differs from the file name", h.seq),
                    });
                }
                if h.owner_id != opts.owner_id {
                    return Err(Error::OwnerMismatch {
                        path: f.path,
                        found: h.owner_id,
                        expected: opts.owner_id,
                    });
                }
                if h.segment_bytes != len as u64 {
                    return Err(Error::Corrupt {
                        path: f.path,
                        offset: 40,
                        reason: format!("header says {} bytes, file has {len}", h.segment_bytes),
                    });
                }
                if h.first_lsn == 0 {
                    return Err(Error::Corrupt {
                        path: f.path,
                        offset: 24,
                        reason: "first lsn 0".into(),
                    });
                }
                used.push((seg, h));
            }
        }
    }

    let mut groups: HashMap<u64, GroupIndex> = HashMap::new();
    let mut report = RecoveryReport::default();
    let mut next_lsn = used.first().map(|(_, h)| h.first_lsn).unwrap_or(1);
    let mut n_used = used.len();
    let mut i = 0;
    while i < n_used {
        let (seg, h) = &used[i];
        let is_last = i + 1 == n_used;
        if h.first_lsn != next_lsn {
            return Err(Error::Corrupt {
                path: seg.path.clone(),
                offset: 24,
                reason: format!(
                    "first lsn {} does not continue the previous segment (expected {next_lsn})",
                    h.first_lsn
                ),
            });
        }
        let bytes = seg.all_bytes();
        let mut off = SEGMENT_HEADER_BYTES;
        let mut cut: Option<(usize, String)> = None;
        loop {
            match decode(bytes, off, next_lsn) {
                Decoded::End => break,
                Decoded::Invalid(reason) => {
                    cut = Some((off, reason));
                    break;
                }
                Decoded::Record {
                    header,
                    payload_off,
                    payload_len,
                    total,
                } => {
                    apply(
                        &mut groups,
                        seg,
                        off,
                        &header,
                        &bytes[payload_off..payload_off + payload_len],
                    )?;
                    report.records += 1;
                    report.bytes += total as u64;
                    next_lsn = next_lsn.checked_add(1).ok_or_else(|| Error::Corrupt {
                        path: seg.path.clone(),
                        offset: off as u64,
                        reason: "lsn overflow".into(),
                    })?;
                    off += total;
                }
            }
        }
        if let Some((at, reason)) = cut {
            let follower = find_valid_after(bytes, at, next_lsn);
            if let Some(rep) = repair.as_deref_mut() {
                // Cut here; drop every valid record after it and every later segment.
                let mut also = Vec::new();
                let mut from = at;
                while let Some((voff, vlsn, vtotal)) = find_valid_after(bytes, from, next_lsn) {
                    rep.dropped_records.push((voff as u64, vlsn));
                    also.push((voff, voff + vtotal));
                    from = voff + vtotal - crate::record::RECORD_ALIGN_BYTES;
                }
                if !read_only {
                    seg.zero_tail(at, &also)?;
                }
                rep.cut = Some((seg.path.clone(), at as u64));
                rep.reason = Some(reason.clone());
                rep.first_dropped_lsn = Some(next_lsn);
                report.torn_tail = Some((seg.path.clone(), at as u64));
                report.torn_tail_reason = Some(reason);
                seg.restore(h.first_lsn, h.owner_id, at);
                let later: Vec<(Segment, SegmentHeader)> = used.drain(i + 1..).collect();
                for (later, _) in later.into_iter().rev() {
                    let path = later.path.clone();
                    drop(later);
                    if !read_only {
                        std::fs::remove_file(&path).map_err(|e| Error::io("remove", &path, e))?;
                        sync_dir(dir)?;
                    }
                    rep.dropped_segments.insert(0, path);
                }
                n_used = used.len();
                i += 1;
                continue;
            }
            if let Some((voff, vlsn, _)) = follower {
                return Err(Error::ValidAfterInvalid {
                    path: seg.path.clone(),
                    offset: at as u64,
                    reason,
                    valid_offset: voff as u64,
                    valid_lsn: vlsn,
                });
            }
            if !is_last {
                return Err(Error::Corrupt {
                    path: seg.path.clone(),
                    offset: at as u64,
                    reason: format!("{reason} (in a sealed segment)"),
                });
            }
            if opts.recovery_mode == RecoveryMode::Strict {
                return Err(Error::TornTail {
                    path: seg.path.clone(),
                    offset: at as u64,
                    reason,
                });
            }
            if !read_only {
                seg.zero_tail(at, &[])?;
            }
            report.torn_tail = Some((seg.path.clone(), at as u64));
            report.torn_tail_reason = Some(reason);
            off = at;
        }
        seg.restore(h.first_lsn, h.owner_id, off);
        i += 1;
    }

    if let Some((first_seg, _)) = used.first() {
        let mut ids: Vec<&u64> = groups.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let g = &groups[id];
            if g.phantom_end > g.first_index {
                return Err(Error::Corrupt {
                    path: first_seg.path.clone(),
                    offset: 0,
                    reason: format!(
                        "group {id} needs entries {}..{} that lie before the first segment",
                        g.first_index, g.phantom_end
                    ),
                });
            }
        }
    }
    if read_only {
        report.segments = used.len();
        report.next_lsn = next_lsn;
        return Ok(Recovered {
            segments: used.into_iter().map(|(seg, _)| seg).collect(),
            next_lsn,
            groups,
            report,
        });
    }
    for path in &spares {
        std::fs::remove_file(path).map_err(|e| Error::io("remove spare segment", path, e))?;
        report.spares_deleted += 1;
    }
    if !spares.is_empty() {
        sync_dir(dir)?;
    }
    let mut segments = Vec::with_capacity(used.len());
    for (seg, _) in used {
        seg.sync_file()?;
        segments.push(seg);
    }
    for s in segments.iter().take(segments.len().saturating_sub(1)) {
        s.seal();
    }
    if let Some(active) = segments.last() {
        active.open_sync_files()?;
    }
    report.segments = segments.len();
    report.next_lsn = next_lsn;
    Ok(Recovered {
        segments,
        next_lsn,
        groups,
        report,
    })
}

/// Applies one valid record (at `off` of `seg`) to the group indexes.
fn apply(
    groups: &mut HashMap<u64, GroupIndex>,
    seg: &Segment,
    off: usize,
    header: &crate::record::RecordHeader,
    payload: &[u8],
) -> Result<()> {
    let g = groups.entry(header.group).or_default();
    let bad = |reason: String| Error::Corrupt {
        path: seg.path.clone(),
        offset: off as u64,
        reason,
    };
    if header.kind != RecordKind::HardState && header.index > MAX_INDEX {
        return Err(bad(format!(
            "group {} index {} above the largest index {MAX_INDEX}",
            header.group, header.index
        )));
    }
    match header.kind {
        RecordKind::Entry => {
            let next = g.last_index().checked_add(1);
            if Some(header.index) != next {
                return Err(bad(format!(
                    "group {} entry index {} does not follow last index {}",
                    header.group,
                    header.index,
                    g.last_index()
                )));
            }
            let (Ok(offset), Ok(len)) = (u32::try_from(off), u32::try_from(payload.len())) else {
                return Err(bad("record offset or length beyond u32".into()));
            };
            g.entries.push_back(EntryLoc {
                seq: seg.seq,
                offset,
                len,
                term: header.term,
                lsn: header.lsn,
            });
        }
        RecordKind::Truncate => g.truncate(header.index),
        RecordKind::Purge => g.purge(header.index),
        RecordKind::Checkpoint => {
            let mut w = [0u8; 8];
            match payload.get(0..8) {
                Some(p) => w.copy_from_slice(p),
                None => return Err(bad("checkpoint payload length".into())),
            }
            let last = u64::from_le_bytes(w);
            let first = header.index;
            if first == 0 || last > MAX_INDEX || last.saturating_add(1) < first {
                return Err(bad(format!(
                    "group {} checkpoint first {first} last {last}",
                    header.group
                )));
            }
            if !g.positioned {
                // Replay starts here: entries first..=last lived in segments purged since
                // (phantoms until later records remove them).
                g.first_index = first;
                g.phantom_end = last + 1;
            } else if g.last_index() != last || first < g.first_index {
                return Err(bad(format!(
                    "group {} checkpoint says first {first} last {last}, replay has first {} last {}",
                    header.group,
                    g.first_index,
                    g.last_index()
                )));
            } else {
                g.purge(first);
            }
        }
        RecordKind::HardState => match HardState::decode(payload) {
            Some(hs) => g.hard_state = Some(hs),
            None => return Err(bad("hard state payload length".into())),
        },
    }
    if header.kind != RecordKind::HardState {
        g.positioned = true;
    }
    Ok(())
}
