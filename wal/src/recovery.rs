//! Recovery on open: find the segments, verify them, rebuild every group's index, and cut a
//! torn tail.
//!
//! Steps:
//! 1. List `*.wal` files (other names are ignored; `*.wal.prep` leftovers of an interrupted
//!    preparation are deleted). Sequence numbers must be consecutive.
//! 2. Read each header. An all-zero header is a spare; spares may only follow the segments in
//!    use (a spare before a used segment is corruption, since a header is written only after all
//!    earlier segments are durable). Wrong magic, unknown version, bad header crc, a seq that
//!    differs from the file name, another owner id, or a size that differs from the header are
//!    errors naming the file.
//! 3. Scan records of each used segment from byte 64, each carrying the next lsn (a segment's
//!    header `first_lsn` must continue the previous segment exactly). An all-zero record header
//!    ends a segment. An invalid record in a *sealed* segment (one followed by a used segment)
//!    is [`Error::Corrupt`] with file and offset: that data was durable, dropping it silently
//!    would lose acknowledged entries. An invalid record in the *last* used segment is a torn
//!    write: `Strict` reports [`Error::TornTail`]; `TolerateTornTail` cuts there, zeroes the
//!    rest of the segment (so stale bytes can never be read as records later) and fdatasyncs.
//!    Nothing after a torn record was ever reported durable: a sync covers all records before
//!    its target, so a durable record implies every earlier byte was durable.
//! 4. Apply records in lsn order to the group indexes (Entry appends and must follow the last
//!    index, Truncate removes a suffix, Purge drops a prefix, HardState replaces, Checkpoint
//!    positions a group seen for the first time — its entries up to the checkpoint's last index
//!    lived in purged segments — or must agree with the replayed state). At the end no group may
//!    still need an entry from a purged segment.
//! 5. Delete spares (they never hold durable data; the pool prepares fresh ones) and fdatasync
//!    every used segment, because records found in the page cache after a process crash may
//!    never have been synced; only then is everything found reported durable.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::group_index::{EntryLoc, GroupIndex};
use crate::hard_state::HardState;
use crate::log::MAX_INDEX;
use crate::options::{RecoveryMode, WalOptions, MAX_SEGMENT_BYTES};
use crate::record::{decode, Decoded, RecordKind};
use crate::segment::{
    parse_segment_name, sync_dir, Segment, SegmentHeader, PREP_EXT, SEGMENT_EXT,
    SEGMENT_HEADER_BYTES,
};

/// What recovery found, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments in use after recovery.
    pub segments: usize,
    /// Valid records replayed.
    pub records: u64,
    /// Spare segments deleted.
    pub spares_deleted: usize,
    /// Where a torn tail was cut (file, offset) under `TolerateTornTail`.
    pub torn_tail: Option<(PathBuf, u64)>,
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

fn list(dir: &Path) -> Result<Vec<Found>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    let mut found = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("read directory", dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(&format!(".{SEGMENT_EXT}.{PREP_EXT}")) {
            std::fs::remove_file(ent.path()).map_err(|e| Error::io("remove", ent.path(), e))?;
            continue;
        }
        if let Some(seq) = parse_segment_name(name) {
            found.push(Found {
                seq,
                path: ent.path(),
            });
        }
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

pub(crate) fn recover(dir: &Path, opts: &WalOptions) -> Result<Recovered> {
    let found = list(dir)?;
    let mut used: Vec<(Segment, SegmentHeader)> = Vec::new();
    let mut spares: Vec<PathBuf> = Vec::new();
    for f in found {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
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
        let seg = Segment::map(f.seq, f.path.clone(), file, len, false, opts.fault.clone())?;
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
    let n_used = used.len();
    for (i, (seg, h)) in used.iter().enumerate() {
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
                            if header.index != g.last_index() + 1 {
                                return Err(bad(format!(
                                    "group {} entry index {} does not follow last index {}",
                                    header.group,
                                    header.index,
                                    g.last_index()
                                )));
                            }
                            g.entries.push_back(EntryLoc {
                                seq: seg.seq,
                                offset: off as u32,
                                len: payload_len as u32,
                                term: header.term,
                                lsn: header.lsn,
                            });
                        }
                        RecordKind::Truncate => g.truncate(header.index),
                        RecordKind::Purge => g.purge(header.index),
                        RecordKind::Checkpoint => {
                            let mut w = [0u8; 8];
                            w.copy_from_slice(&bytes[payload_off..payload_off + 8]);
                            let last = u64::from_le_bytes(w);
                            let first = header.index;
                            if first == 0 || last > MAX_INDEX || last.saturating_add(1) < first {
                                return Err(bad(format!(
                                    "group {} checkpoint first {first} last {last}",
                                    header.group
                                )));
                            }
                            if !g.positioned {
                                // Replay starts here: entries first..=last lived in segments
                                // purged since (phantoms until later records remove them).
                                g.first_index = first;
                                g.phantom_end = last + 1;
                            } else if g.last_index() != last || first < g.first_index {
                                return Err(bad(format!(
                                    "group {} checkpoint says first {first} last {last}, \
                                     replay has first {} last {}",
                                    header.group,
                                    g.first_index,
                                    g.last_index()
                                )));
                            } else {
                                g.purge(first);
                            }
                        }
                        RecordKind::HardState => {
                            let p = &bytes[payload_off..payload_off + payload_len];
                            match HardState::decode(p) {
                                Some(hs) => g.hard_state = Some(hs),
                                None => return Err(bad("hard state payload length".into())),
                            }
                        }
                    }
                    if header.kind != RecordKind::HardState {
                        g.positioned = true;
                    }
                    report.records += 1;
                    next_lsn += 1;
                    off += total;
                }
            }
        }
        if let Some((at, reason)) = cut {
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
            seg.zero_tail(at)?;
            report.torn_tail = Some((seg.path.clone(), at as u64));
            off = at;
        }
        seg.restore(h.first_lsn, h.owner_id, off);
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
    report.segments = segments.len();
    Ok(Recovered {
        segments,
        next_lsn,
        groups,
        report,
    })
}
