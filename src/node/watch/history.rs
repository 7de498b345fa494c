//! One shard's bounded in-memory history of watch events.
//!
//! Invariants: events are held in revision order; every event with `revision > floor` that
//! the shard applied since the history started is held (nothing above the floor is missing);
//! `last` is the highest revision (log index) observed, event or not. Bounded by
//! [`WATCH_HISTORY_MAX_EVENTS`] and [`WATCH_HISTORY_MAX_BYTES`]: the oldest events go first
//! and raise the floor, except the newest revision's, which are always kept (a single event
//! larger than the byte bound still reaches the watchers). A watch from a revision `<= floor`
//! is refused "compacted, the oldest is `floor + 1`". Owned by the shard's [`super::WatchHub`].

use std::collections::VecDeque;
use std::sync::Arc;

use super::{event_bytes, WatchEvent};
use crate::node::limits::{WATCH_HISTORY_MAX_BYTES, WATCH_HISTORY_MAX_EVENTS};

/// The event ring of one shard.
#[derive(Debug, Default)]
pub struct History {
    ring: VecDeque<Arc<WatchEvent>>,
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
        self.ring.len()
    }

    /// Whether no event is held.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// Bytes charged for the events held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records that the entry at `index` was applied (after its events were pushed).
    pub fn observe(&mut self, index: u64) {
        self.last = self.last.max(index);
    }

    /// Appends an event (its revision must not be below the last one pushed), then drops the
    /// oldest events while over a bound.
    pub fn push(&mut self, e: Arc<WatchEvent>) {
        debug_assert!(self.ring.back().is_none_or(|b| b.revision <= e.revision));
        self.last = self.last.max(e.revision);
        self.bytes = self.bytes.saturating_add(event_bytes(&e));
        let newest = e.revision;
        self.ring.push_back(e);
        while self.ring.len() > self.max_events || self.bytes > self.max_bytes {
            match self.ring.front() {
                Some(f) if f.revision < newest => {}
                _ => break,
            }
            if let Some(old) = self.ring.pop_front() {
                self.bytes = self.bytes.saturating_sub(event_bytes(&old));
                self.floor = self.floor.max(old.revision);
            }
        }
    }

    /// The events with `revision >= from`, oldest first; `Err(oldest)` when some of them were
    /// dropped (`from <= floor`).
    pub fn since(&self, from: u64) -> Result<impl Iterator<Item = &Arc<WatchEvent>> + '_, u64> {
        if from <= self.floor {
            return Err(self.oldest());
        }
        let start = self.ring.partition_point(|e| e.revision < from);
        Ok(self.ring.range(start..))
    }
}
