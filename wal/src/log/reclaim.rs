//! Space reclaim of [`Wal`]: deleting whole segments no group needs once that is safe, and
//! naming the groups that pin the oldest segments. Segments go from the oldest only; a
//! deletion waits until every record that removed entries, and the checkpoint opening the
//! first kept segment, are durable.

use super::{SegmentPin, Wal};
use crate::error::Result;

impl Wal {
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
}
