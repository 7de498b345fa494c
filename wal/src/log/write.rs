//! The write path of [`Wal`]: appends, truncations, purges and hard states become records in
//! the active segment (staged in `Pwrite` mode, copied into the map in `Mmap` mode), rolling to
//! the next prepared segment with a checkpoint when a record does not fit. Owned by the core's
//! thread (`&mut Wal`). Invariants: a call that fails wrote nothing, except a failure after
//! publishing, which poisons the log; records that add data leave the last
//! [`drop_reserve_bytes`] of each segment to Truncate and Purge records, so that entries can be
//! removed and space freed when no next segment can be had. A no-space failure of any write
//! (append, truncate, purge, hard state) is the same error ([`Error::is_no_space`], or
//! [`Error::LogFull`]): nothing written, retry once space is freed.

use std::sync::Arc;

use crate::durability::Lsn;
use crate::error::{Error, Result};
use crate::group_index::EntryLoc;
use crate::hard_state::{HardState, HARD_STATE_BYTES};
use crate::options::WriteMode;
use crate::record::{
    encode_header_parts, parts_len, record_bytes, RecordHeader, RecordKind,
    CHECKPOINT_PAYLOAD_BYTES, RECORD_ALIGN_BYTES, RECORD_HEADER_BYTES,
};
use crate::segment::{Segment, SEGMENT_HEADER_BYTES};

use super::{SegMeta, Wal, MAX_INDEX};

const ZERO_PAD: [u8; RECORD_ALIGN_BYTES] = [0u8; RECORD_ALIGN_BYTES];
/// Payload parts an append gathers on the stack (an entry's kind byte and data need two).
const INLINE_PAYLOAD_PARTS: usize = 4;

/// Truncate/Purge records the end of every segment keeps room for. Freeing space takes a Purge
/// record (durable before any segment is deleted), so without this reserve a full active
/// segment on a full disk would make the very purge that frees space fail for want of space.
/// 64 records of 48 bytes: a round of drops for every shard of a core several times over, and
/// 3 KiB of a 64 MiB segment.
pub const DROP_RESERVE_RECORDS: usize = 64;
/// Most of a segment's record space the drop reserve takes (small test segments): one eighth.
pub const DROP_RESERVE_MAX_FRACTION: usize = 8;

/// Bytes at the end of a segment of `segment_bytes` that only Truncate and Purge records use.
pub fn drop_reserve_bytes(segment_bytes: usize) -> usize {
    let capacity = segment_bytes.saturating_sub(SEGMENT_HEADER_BYTES);
    (DROP_RESERVE_RECORDS * record_bytes(0)).min(capacity / DROP_RESERVE_MAX_FRACTION)
}

impl Wal {
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
        let lsn = self.write_drop(group, from_index, RecordKind::Truncate)?;
        if let Some(g) = self.groups.get_mut(&group) {
            g.truncate(from_index);
        }
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
        let lsn = self.write_drop(group, first_index, RecordKind::Purge)?;
        self.groups.entry(group).or_default().purge(first_index);
        self.reclaim()?;
        Ok(lsn)
    }

    /// Writes a record that removes entries of `group` (Truncate from `index`, or Purge below
    /// it) and remembers its lsn: segments are deleted only once it is durable.
    fn write_drop(&mut self, group: u64, index: u64, kind: RecordKind) -> Result<Lsn> {
        self.check_backpressure(0)?;
        let (_, _, lsn) = self.write_record(
            RecordHeader {
                lsn: 0,
                group,
                term: 0,
                index,
                kind,
            },
            &[],
        )?;
        self.last_drop_lsn = lsn;
        Ok(lsn)
    }

    /// Stores the hard state of `group` (one CRC'd record: atomic, never torn). Returns its lsn.
    pub fn set_hard_state(&mut self, group: u64, hs: HardState) -> Result<Lsn> {
        self.write_hard_state(group, hs, false)
    }

    /// [`Wal::set_hard_state`] for a caller that needs only the term and the vote durable
    /// before it acts (Raft: a commit index may trail after a crash; the leader tells it
    /// again). When the group's last hard state has the same term and vote, the record is
    /// *deferred*: written like any other, but it asks for no sync and does not raise
    /// [`Wal::required_lsn`]; the next sync makes it durable with the records before it (one
    /// anyone asks for, or the flush workers' idle sync: under [`crate::FlushPolicy::Immediate`]
    /// within [`crate::flush_worker::IDLE_WAKE_MS`]). A crash before that recovers the previous
    /// commit index, never a torn or partial record. A new term or vote is never deferred.
    /// Returns the record's lsn.
    pub fn set_hard_state_deferred(&mut self, group: u64, hs: HardState) -> Result<Lsn> {
        let defer = self
            .groups
            .get(&group)
            .and_then(|g| g.hard_state)
            .is_some_and(|old| old.term == hs.term && old.vote == hs.vote);
        self.write_hard_state(group, hs, defer)
    }

    fn write_hard_state(&mut self, group: u64, hs: HardState, defer: bool) -> Result<Lsn> {
        self.check_writable()?;
        self.check_backpressure(HARD_STATE_BYTES)?;
        let (_, _, lsn) = self.write_record_parts_as(
            RecordHeader {
                lsn: 0,
                group,
                term: hs.term,
                index: hs.commit,
                kind: RecordKind::HardState,
            },
            &[&hs.encode()],
            defer,
        )?;
        self.groups.entry(group).or_default().hard_state = Some(hs);
        Ok(lsn)
    }

    fn check_writable(&self) -> Result<()> {
        self.shared.check_poisoned()
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
    /// Records that add data (entries, hard states) leave the segment's drop reserve free: they
    /// roll once it is all that is left, so a Truncate or Purge still fits the active segment
    /// when the next segment cannot be prepared (no space, or `max_segments` reached). Only a
    /// record larger than what a fresh segment holds besides the reserve eats into it.
    fn write_record(&mut self, h: RecordHeader, payload: &[u8]) -> Result<(u64, usize, Lsn)> {
        self.write_record_parts(h, &[payload])
    }

    /// [`Self::write_record`] of a payload given in consecutive parts.
    fn write_record_parts(
        &mut self,
        h: RecordHeader,
        parts: &[&[u8]],
    ) -> Result<(u64, usize, Lsn)> {
        self.write_record_parts_as(h, parts, false)
    }

    /// [`Self::write_record_parts`]; a `deferred` record asks for no sync (see
    /// [`Wal::set_hard_state_deferred`]). A roll's checkpoint records never are deferred.
    fn write_record_parts_as(
        &mut self,
        h: RecordHeader,
        parts: &[&[u8]],
        deferred: bool,
    ) -> Result<(u64, usize, Lsn)> {
        let need = record_bytes(parts_len(parts));
        let keep = match h.kind {
            RecordKind::Truncate | RecordKind::Purge => 0,
            _ => drop_reserve_bytes(self.opts.segment_bytes),
        };
        let room = self.active().len() - self.active_off;
        if need.saturating_add(keep) > room {
            self.roll(need)?;
        }
        Ok(self.write_in_active_as(h, parts, deferred))
    }

    pub(super) fn active(&self) -> &Arc<Segment> {
        match self.segments.back() {
            Some(m) => &m.seg,
            None => unreachable!("the log always has an active segment"),
        }
    }

    fn write_in_active(&mut self, h: RecordHeader, payload: &[&[u8]]) -> (u64, usize, Lsn) {
        self.write_in_active_as(h, payload, false)
    }

    fn write_in_active_as(
        &mut self,
        mut h: RecordHeader,
        payload: &[&[u8]],
        deferred: bool,
    ) -> (u64, usize, Lsn) {
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
        if deferred {
            self.shared.publish_deferred(lsn);
        } else {
            self.required_lsn = lsn;
            self.shared.publish(lsn);
        }
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
}
