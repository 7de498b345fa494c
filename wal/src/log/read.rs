//! The read path of [`Wal`]: per-group positions and terms from the in-memory index, and
//! entries zero-copy from the segment maps, CRC-checked as read. A read of an entry still
//! staged (`Pwrite` mode) writes the stage out first, on the reading thread.

use crate::error::{Error, Result};
use crate::group_index::EntryLoc;
use crate::hard_state::HardState;
use crate::record::{decode, record_bytes, Decoded, RecordKind};

use super::{Entry, Wal};

impl Wal {
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
