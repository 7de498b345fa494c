//! One shard's bounded in-memory history of watch events.
//!
//! The history keeps, per applied entry that changed something, a compact record: for a
//! single-key change (a put, a delete, a swapped compare-and-swap: nearly every write) the
//! entry's command bytes, shared with the log entry (a reference count, no copy), and its
//! [`Shape`]; for a transaction or a lease's deletes the events themselves. Events are decoded
//! from a record only when a watcher reads the history (a registration's backlog), so a shard
//! nobody watches pays no decoding and no allocation per write. What a record holds, and so
//! what it is charged, depends only on the log: the history is the same on every replica,
//! watched or not.
//!
//! Invariants: records are held in revision order; every event with `revision > floor` that
//! the shard applied since the history started is held (nothing above the floor is missing);
//! `last` is the highest revision (log index) observed, event or not. Bounded by
//! [`WATCH_HISTORY_MAX_EVENTS`] events and [`WATCH_HISTORY_MAX_BYTES`] bytes (a single-key
//! record is charged its command's bytes, which hold its key and value, plus
//! [`WATCH_EVENT_OVERHEAD_BYTES`]; derived events as [`event_bytes`]): the oldest records go
//! first and raise the floor, except the newest revision's, which is always kept (a single
//! event larger than the byte bound still reaches the watchers). A watch from a revision
//! `<= floor` is refused "compacted, the oldest is `floor + 1`". Owned by the shard's
//! [`super::WatchHub`].

use std::collections::VecDeque;
use std::sync::Arc;

use super::events::{derive, Shape};
use super::{event_bytes, WatchEvent};
use crate::node::limits::{
    WATCH_EVENT_OVERHEAD_BYTES, WATCH_HISTORY_MAX_BYTES, WATCH_HISTORY_MAX_EVENTS,
};

/// What one revision changed, as held.
#[derive(Debug)]
enum Change {
    /// A single-key change: its one event is derived from the command bytes when read.
    Command { data: Arc<[u8]>, shape: Shape },
    /// Events already derived (a transaction's, a lease's deletes, or pushed whole).
    Events(Vec<Arc<WatchEvent>>),
}

#[derive(Debug)]
struct Record {
    revision: u64,
    change: Change,
}

impl Record {
    /// Events the record stands for (charged against the count bound).
    fn count(&self) -> usize {
        match &self.change {
            Change::Command { .. } => 1,
            Change::Events(v) => v.len(),
        }
    }

    /// Bytes the record is charged.
    fn bytes(&self) -> usize {
        match &self.change {
            Change::Command { data, .. } => data.len().saturating_add(WATCH_EVENT_OVERHEAD_BYTES),
            Change::Events(v) => v.iter().map(|e| event_bytes(e)).sum(),
        }
    }

    /// The record's events (decoded now for a single-key change).
    fn events(&self) -> Vec<Arc<WatchEvent>> {
        match &self.change {
            Change::Command { data, shape } => derive(self.revision, *shape, data, None)
                .into_iter()
                .map(Arc::new)
                .collect(),
            Change::Events(v) => v.clone(),
        }
    }
}

/// The event ring of one shard.
#[derive(Debug, Default)]
pub struct History {
    ring: VecDeque<Record>,
    events: usize,
    bytes: usize,
    floor: u64,
    last: u64,
    max_events: usize,
    max_bytes: usize,
}

impl History {
    /// An empty history that starts after revision `start` (a snapshot's index, or 0).
    pub fn new(start: u64) -> Self {
        Self::with_limits(start, WATCH_HISTORY_MAX_EVENTS, WATCH_HISTORY_MAX_BYTES)
    }

    /// An empty history with other bounds (tests).
    pub fn with_limits(start: u64, max_events: usize, max_bytes: usize) -> Self {
        History {
            ring: VecDeque::new(),
            events: 0,
            bytes: 0,
            floor: start,
            last: start,
            max_events: max_events.max(1),
            max_bytes,
        }
    }

    /// Forgets everything: the history now starts after `start` (a snapshot was installed).
    pub fn reset(&mut self, start: u64) {
        self.ring.clear();
        self.events = 0;
        self.bytes = 0;
        self.floor = start;
        self.last = start;
    }

    /// The highest revision observed.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Every event above this revision is held.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The oldest revision a watch may start from.
    pub fn oldest(&self) -> u64 {
        self.floor.saturating_add(1)
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.events
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Bytes charged for the events held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records that the entry at `index` was applied (after its events were pushed).
    pub fn observe(&mut self, index: u64) {
        self.last = self.last.max(index);
    }

    /// Appends the single-key change of revision `revision`: its command bytes and shape
    /// (`shape.single()`; its event is derived when read).
    pub fn push_command(&mut self, revision: u64, data: Arc<[u8]>, shape: Shape) {
        debug_assert!(shape.single());
        self.push_record(Record {
            revision,
            change: Change::Command { data, shape },
        });
    }

    /// Appends one event.
    pub fn push(&mut self, e: Arc<WatchEvent>) {
        self.push_events(e.revision, vec![e]);
    }

    /// Appends the events of revision `revision` (all of that revision; none is a no-op).
    pub fn push_events(&mut self, revision: u64, events: Vec<Arc<WatchEvent>>) {
        debug_assert!(events.iter().all(|e| e.revision == revision));
        if events.is_empty() {
            return;
        }
        self.push_record(Record {
            revision,
            change: Change::Events(events),
        });
    }

    /// Appends a record (its revision must not be below the last one pushed), then drops the
    /// oldest records while over a bound, never the newest revision's.
    fn push_record(&mut self, r: Record) {
        debug_assert!(self.ring.back().is_none_or(|b| b.revision <= r.revision));
        let newest = r.revision;
        self.last = self.last.max(newest);
        self.events = self.events.saturating_add(r.count());
        self.bytes = self.bytes.saturating_add(r.bytes());
        self.ring.push_back(r);
        while self.events > self.max_events || self.bytes > self.max_bytes {
            match self.ring.front() {
                Some(f) if f.revision < newest => {}
                _ => break,
            }
            if let Some(old) = self.ring.pop_front() {
                self.events = self.events.saturating_sub(old.count());
                self.bytes = self.bytes.saturating_sub(old.bytes());
                self.floor = self.floor.max(old.revision);
            }
        }
    }

    /// The events with `revision >= from`, oldest first (single-key changes decoded as they
    /// are read); `Err(oldest)` when some of them were dropped (`from <= floor`).
    pub fn since(&self, from: u64) -> Result<impl Iterator<Item = Arc<WatchEvent>> + '_, u64> {
        if from <= self.floor {
            return Err(self.oldest());
        }
        let start = self.ring.partition_point(|r| r.revision < from);
        Ok(self.ring.range(start..).flat_map(Record::events))
    }
}
