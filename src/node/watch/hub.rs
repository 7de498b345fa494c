//! One shard's watch hub: its [`History`] and its registered watchers, owned by the shard's
//! core (no locks). Fed at apply: [`WatchHub::on_entry`] for every applied entry, then
//! [`WatchHub::flush`] once per apply round, which hands each watcher the matching events of
//! the round as one or more [`WatchBatch`]es (never splitting a revision) on its bounded
//! queue.
//!
//! Invariants: a watcher's `covered` only grows, and every batch it is sent holds exactly the
//! matching events in `(covered, through]`; so a client that resumes from `through + 1` of the
//! last batch it received misses nothing and sees nothing twice. A watcher whose queue is full
//! (by batches or bytes) when there is more for it is removed and its subscription carries the
//! reason ("too slow"); a progress-only batch is skipped instead. A gap in the applied indexes
//! (a snapshot was installed) resets the history at the snapshot's index and cancels, as
//! compacted, every watcher that had not covered it.

use std::borrow::Borrow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::events::{derive, events_of, shape_of, Applied};
use super::{event_bytes, History, WatchCancel, WatchEvent, WatchFilter};
use crate::node::limits::{
    WATCH_BATCH_MAX_BYTES, WATCH_BATCH_MAX_EVENTS, WATCH_MAX_PER_SHARD, WATCH_PROGRESS_INTERVAL_MS,
    WATCH_QUEUE_MAX_BATCHES, WATCH_QUEUE_MAX_BYTES,
};
use crate::node::request::{busy, ClientError};

/// Events for one watcher, in revision order, and the revision now covered.
#[derive(Debug, Clone)]
pub struct WatchBatch {
    /// Matching events (shared with the history).
    pub events: Vec<Arc<WatchEvent>>,
    /// Every matching event with `revision <= through` has now been queued.
    pub through: u64,
    /// Bytes charged for the events (released by the consumer as it takes the batch).
    pub bytes: usize,
}

/// What the hub and the consumer of one watcher share.
#[derive(Debug, Default)]
pub struct WatchShared {
    /// Event bytes waiting in the queue.
    pub queued_bytes: AtomicUsize,
    /// Why the hub ended the watch (set before it drops the queue's sender).
    pub cancel: Mutex<Option<WatchCancel>>,
}

impl WatchShared {
    /// Takes the cancel reason, if the hub set one.
    pub fn take_cancel(&self) -> Option<WatchCancel> {
        self.cancel.lock().ok().and_then(|mut c| c.take())
    }
}

/// The consumer's end of a watch: the bounded queue and the shared state. Dropping it ends
/// the watch (the hub removes the watcher on its next round).
#[derive(Debug)]
pub struct Subscription {
    /// Batches, in order.
    pub rx: flume::Receiver<WatchBatch>,
    /// Shared state.
    pub shared: Arc<WatchShared>,
    /// The revision the watch starts after (every matching event above it will be sent).
    pub covered: u64,
}

impl Subscription {
    /// Accounts for a batch taken off the queue.
    pub fn taken(&self, b: &WatchBatch) {
        let _ = self
            .shared
            .queued_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(b.bytes))
            });
    }
}

#[derive(Debug)]
struct Watcher {
    filter: WatchFilter,
    covered: u64,
    tx: flume::Sender<WatchBatch>,
    shared: Arc<WatchShared>,
    last_sent: Instant,
}

/// Queue bounds of one watcher (the limits' constants; smaller in tests).
#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    /// Batches.
    pub batches: usize,
    /// Event bytes.
    pub bytes: usize,
}

impl Default for QueueLimits {
    fn default() -> Self {
        QueueLimits {
            batches: WATCH_QUEUE_MAX_BATCHES,
            bytes: WATCH_QUEUE_MAX_BYTES,
        }
    }
}

/// The watch state of one shard.
#[derive(Debug)]
pub struct WatchHub {
    history: History,
    watchers: Vec<Watcher>,
    /// Events of the current apply round (since the last flush).
    round: Vec<Arc<WatchEvent>>,
    limits: QueueLimits,
    /// Watchers cancelled as too slow (for metrics and tests).
    pub cancelled_slow: u64,
}

impl Default for WatchHub {
    fn default() -> Self {
        Self::new(History::new(0), QueueLimits::default())
    }
}

impl WatchHub {
    /// A hub over `history` with per-watcher queue bounds `limits`.
    pub fn new(history: History, limits: QueueLimits) -> Self {
        WatchHub {
            history,
            watchers: Vec::new(),
            round: Vec::new(),
            limits,
            cancelled_slow: 0,
        }
    }

    /// The history.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Watchers registered.
    pub fn watchers(&self) -> usize {
        self.watchers.len()
    }

    /// Catches up with the store's applied index: entries applied without being observed
    /// mean a snapshot was installed (or the node restarted from one), so the history starts
    /// over at `applied` and watchers that had not covered it are cancelled as compacted.
    pub fn sync(&mut self, applied: u64) {
        if applied <= self.history.last() {
            return;
        }
        if !self.watchers.is_empty() {
            self.flush_at(Instant::now());
        }
        self.round.clear();
        self.history.reset(applied);
        let oldest = self.history.oldest();
        self.watchers.retain(|w| {
            if w.covered >= applied {
                return true;
            }
            if let Ok(mut c) = w.shared.cancel.lock() {
                *c = Some(WatchCancel::Compacted { oldest });
            }
            false
        });
    }

    /// Records the entry at `index` (what applying it did, for a normal entry). A single-key
    /// change goes into the history as its command bytes (shared, not copied) and is decoded
    /// into an event only when some watcher is registered; with none, this allocates nothing.
    pub fn on_entry(&mut self, index: u64, applied: Option<Applied<'_>>) {
        self.sync(index.saturating_sub(1));
        let shape = applied.and_then(|a| shape_of(index, a.result, a.dropped).map(|s| (a, s)));
        if let Some((applied, shape)) = shape {
            if shape.single() {
                if !self.watchers.is_empty() {
                    let events = derive(index, shape, applied.data, None);
                    self.round.extend(events.into_iter().map(Arc::new));
                }
                self.history
                    .push_command(index, applied.data.clone(), shape);
            } else {
                let events: Vec<Arc<WatchEvent>> = events_of(index, applied)
                    .into_iter()
                    .map(Arc::new)
                    .collect();
                if !self.watchers.is_empty() {
                    self.round.extend(events.iter().cloned());
                }
                self.history.push_events(index, events);
            }
        }
        self.history.observe(index);
    }

    /// Hands the round's events to the watchers.
    pub fn flush(&mut self) {
        if self.watchers.is_empty() {
            self.round.clear();
            return;
        }
        self.flush_at(Instant::now());
    }

    fn flush_at(&mut self, now: Instant) {
        let round = std::mem::take(&mut self.round);
        let last = self.history.last();
        let limits = self.limits;
        let mut slow = 0;
        self.watchers.retain_mut(|w| {
            if w.tx.is_disconnected() {
                return false;
            }
            if w.covered >= last {
                return true;
            }
            let covered = w.covered;
            let events = round.iter().filter(|e| e.revision > covered);
            let keep = deliver(w, events, last, now, limits);
            slow += u64::from(!keep);
            keep
        });
        self.cancelled_slow += slow;
    }

    /// Registers a watcher of `filter` from revision `from` (0: from the next applied
    /// revision), with the store at `applied`. Its backlog (matching events from the history)
    /// is queued at once; the first batch always comes, empty if nothing matched, and says
    /// where the watch stands.
    pub fn register(
        &mut self,
        filter: WatchFilter,
        from: u64,
        applied: u64,
    ) -> Result<Subscription, WatchCancel> {
        self.sync(applied);
        self.flush_at(Instant::now());
        self.watchers.retain(|w| !w.tx.is_disconnected());
        if self.watchers.len() >= WATCH_MAX_PER_SHARD {
            return Err(WatchCancel::Failed(busy()));
        }
        let last = self.history.last();
        let start = if from == 0 {
            last.saturating_add(1)
        } else {
            from
        };
        let backlog = self
            .history
            .since(start)
            .map_err(|oldest| WatchCancel::Compacted { oldest })?;
        let (tx, rx) = flume::bounded(self.limits.batches);
        let shared = Arc::new(WatchShared::default());
        let covered = start - 1;
        let mut w = Watcher {
            filter,
            covered,
            tx,
            shared: shared.clone(),
            last_sent: Instant::now(),
        };
        // The backlog is at most the history; it is queued whole, even past the byte bound
        // (the events are the history's own, so this holds no extra memory).
        let limits = QueueLimits {
            batches: self.limits.batches,
            bytes: usize::MAX,
        };
        if !deliver(&mut w, backlog, last.max(covered), Instant::now(), limits) {
            return Err(WatchCancel::Failed(ClientError::Unavailable(
                "the watch's backlog does not fit its queue".into(),
            )));
        }
        if w.covered == covered {
            // Nothing was queued (no matching event held): acknowledge the registration with
            // where the watch stands.
            let through = last.max(covered);
            let b = WatchBatch {
                events: Vec::new(),
                through,
                bytes: 0,
            };
            if w.tx.try_send(b).is_ok() {
                w.covered = through;
            }
        }
        self.watchers.push(w);
        Ok(Subscription {
            rx,
            shared,
            covered,
        })
    }

    /// Cancels every watcher with `why` (the core is stopping).
    pub fn cancel_all(&mut self, why: WatchCancel) {
        for w in self.watchers.drain(..) {
            if let Ok(mut c) = w.shared.cancel.lock() {
                *c = Some(why.clone());
            }
        }
    }
}

/// Queues for `w` the events of `events` (revision order, all above `w.covered`) that match
/// its filter, in batches within the batch bounds, the last one covering through `last`.
/// Returns false when the watcher was cancelled as too slow.
fn deliver<E: Borrow<Arc<WatchEvent>>>(
    w: &mut Watcher,
    events: impl Iterator<Item = E>,
    last: u64,
    now: Instant,
    limits: QueueLimits,
) -> bool {
    let Watcher {
        filter,
        covered,
        tx,
        shared,
        last_sent,
    } = w;
    let mut q = Queue {
        tx,
        shared,
        covered,
        last_sent,
        now,
        limits,
    };
    let mut batch: Vec<Arc<WatchEvent>> = Vec::new();
    let mut bytes = 0usize;
    for e in events {
        let e = e.borrow();
        if !filter.matches(&e.key) {
            continue;
        }
        let rev_changes = batch.last().is_some_and(|b| b.revision != e.revision);
        if rev_changes && (batch.len() >= WATCH_BATCH_MAX_EVENTS || bytes >= WATCH_BATCH_MAX_BYTES)
        {
            let through = batch.last().map_or(*q.covered, |b| b.revision);
            if !q.send(std::mem::take(&mut batch), bytes, through) {
                return false;
            }
            bytes = 0;
        }
        bytes = bytes.saturating_add(event_bytes(e));
        batch.push(e.clone());
    }
    if batch.is_empty() {
        let idle = now.saturating_duration_since(*q.last_sent)
            >= Duration::from_millis(WATCH_PROGRESS_INTERVAL_MS);
        if idle && !q.tx.is_full() {
            // Progress only: skipped (not a cancel) when the queue has no room.
            let _ = q.send(batch, 0, last);
        }
        return true;
    }
    q.send(batch, bytes, last)
}

/// The sending side of one watcher, borrowed apart from its filter.
struct Queue<'a> {
    tx: &'a flume::Sender<WatchBatch>,
    shared: &'a WatchShared,
    covered: &'a mut u64,
    last_sent: &'a mut Instant,
    now: Instant,
    limits: QueueLimits,
}

impl Queue<'_> {
    /// Queues one batch; false (and the watcher's cancel reason set) when the queue is full.
    fn send(&mut self, events: Vec<Arc<WatchEvent>>, bytes: usize, through: u64) -> bool {
        let queued = self.shared.queued_bytes.load(Ordering::Relaxed);
        let over_bytes = queued > 0 && queued.saturating_add(bytes) > self.limits.bytes;
        if over_bytes || self.tx.len() >= self.limits.batches {
            if let Ok(mut c) = self.shared.cancel.lock() {
                *c = Some(WatchCancel::TooSlow(format!(
                    "the watcher's queue is full ({} batches, {queued} bytes waiting; bounds {} \
                     batches, {} bytes); resume from revision {}",
                    self.tx.len(),
                    self.limits.batches,
                    self.limits.bytes,
                    self.covered.saturating_add(1)
                )));
            }
            return false;
        }
        self.shared.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        let b = WatchBatch {
            events,
            through,
            bytes,
        };
        match self.tx.try_send(b) {
            Ok(()) => {
                *self.covered = through;
                *self.last_sent = self.now;
                true
            }
            Err(_) => {
                self.shared.queued_bytes.fetch_sub(bytes, Ordering::Relaxed);
                false
            }
        }
    }
}
