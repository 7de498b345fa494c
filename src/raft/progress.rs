//! The leader's view of one follower: match/next indexes, the replication state machine
//! (Probe → Replicate, or Snapshot) and the bounded window of AppendEntries in flight.
//!
//! Probe: one Append at a time until the follower answers (finding the match point).
//! Replicate: Appends are pipelined, `next` advances optimistically, at most
//! `max_inflight_msgs` unacknowledged messages. Snapshot: waiting for an InstallSnapshot answer.
//! Invariant: `match_index < next_index`.

use std::collections::VecDeque;

/// Replication state of one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressState {
    /// Finding the match point, one message at a time.
    Probe,
    /// Pipelining appends.
    Replicate,
    /// An InstallSnapshot of this index is outstanding.
    Snapshot {
        /// Snapshot index sent.
        index: u64,
    },
}

/// The in-flight window: last index of each unacknowledged Append, oldest first.
#[derive(Debug, Clone)]
pub struct Inflights {
    last_indexes: VecDeque<u64>,
    capacity: usize,
}

impl Inflights {
    /// An empty window of `capacity` messages.
    pub fn new(capacity: usize) -> Inflights {
        Inflights {
            last_indexes: VecDeque::with_capacity(capacity.min(1024)),
            capacity,
        }
    }
    /// True if no more appends may be sent.
    pub fn full(&self) -> bool {
        self.last_indexes.len() >= self.capacity
    }
    /// Number in flight.
    pub fn len(&self) -> usize {
        self.last_indexes.len()
    }
    /// True if none in flight.
    pub fn is_empty(&self) -> bool {
        self.last_indexes.is_empty()
    }
    fn add(&mut self, last: u64) {
        self.last_indexes.push_back(last);
    }
    /// Frees every message whose entries are all acknowledged by `index`.
    pub fn free_to(&mut self, index: u64) {
        while self.last_indexes.front().is_some_and(|&l| l <= index) {
            self.last_indexes.pop_front();
        }
    }
    /// Frees the oldest message (a heartbeat answer proves the follower is alive).
    pub fn free_first(&mut self) {
        self.last_indexes.pop_front();
    }
    fn reset(&mut self) {
        self.last_indexes.clear();
    }
}

/// The leader's record of one follower.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Highest index known replicated (and durable, in DiskFirst) on the follower.
    pub match_index: u64,
    /// Next index to send.
    pub next_index: u64,
    /// Replication state.
    pub state: ProgressState,
    /// Probe state: a probe is outstanding, wait for its answer.
    pub probe_sent: bool,
    /// Pipelined appends in flight.
    pub inflights: Inflights,
    /// Heard from since the last CheckQuorum.
    pub recent_active: bool,
    /// Highest heartbeat round the follower acknowledged.
    pub acked_round: u64,
    /// Ticks since the outstanding snapshot was sent.
    pub snapshot_elapsed_ticks: u32,
    /// Highest commit index sent to this follower.
    pub sent_commit: u64,
}

impl Progress {
    /// A follower about to be probed from `next_index`.
    pub fn new(next_index: u64, max_inflight: usize) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: ProgressState::Probe,
            probe_sent: false,
            inflights: Inflights::new(max_inflight),
            recent_active: false,
            acked_round: 0,
            snapshot_elapsed_ticks: 0,
            sent_commit: 0,
        }
    }

    /// Back to probing from after the match (or after an acknowledged snapshot).
    pub fn become_probe(&mut self) {
        if let ProgressState::Snapshot { index } = self.state {
            self.next_index = (self.match_index + 1).max(index + 1);
        } else {
            self.next_index = self.match_index + 1;
        }
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// Start pipelining after the match.
    pub fn become_replicate(&mut self) {
        self.next_index = self.match_index + 1;
        self.state = ProgressState::Replicate;
        self.probe_sent = false;
        self.inflights.reset();
    }

    /// An InstallSnapshot of `index` was sent.
    pub fn become_snapshot(&mut self, index: u64) {
        self.state = ProgressState::Snapshot { index };
        self.probe_sent = false;
        self.snapshot_elapsed_ticks = 0;
        self.inflights.reset();
    }

    /// True if nothing may be sent now.
    pub fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => self.inflights.full(),
            ProgressState::Snapshot { .. } => true,
        }
    }

    /// Records that an Append ending at `last` (`count` entries) was sent.
    pub fn sent_entries(&mut self, last: u64, count: usize) {
        match self.state {
            ProgressState::Replicate => {
                if count > 0 {
                    self.next_index = last + 1;
                    self.inflights.add(last);
                }
            }
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot { .. } => {}
        }
    }

    /// A successful answer up to `index`; true if the match advanced.
    pub fn maybe_update(&mut self, index: u64) -> bool {
        let updated = index > self.match_index;
        if updated {
            self.match_index = index;
            self.probe_sent = false;
        }
        self.next_index = self.next_index.max(index + 1);
        updated
    }

    /// A rejection of `rejected` (the prev index sent) with the leader's computed probe point
    /// `probe_at`; false if the rejection is stale.
    pub fn maybe_decrease_to(&mut self, rejected: u64, probe_at: u64) -> bool {
        if self.state == ProgressState::Replicate {
            if rejected <= self.match_index {
                return false;
            }
            self.next_index = self.match_index + 1;
            return true;
        }
        if self.next_index == 0 || self.next_index - 1 != rejected {
            return false;
        }
        self.next_index = (probe_at + 1)
            .min(rejected)
            .max(self.match_index + 1)
            .max(1);
        self.probe_sent = false;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_pauses_and_frees() {
        let mut p = Progress::new(1, 2);
        p.maybe_update(0);
        p.become_replicate();
        p.sent_entries(5, 5);
        assert!(!p.is_paused());
        p.sent_entries(9, 4);
        assert!(p.is_paused());
        assert_eq!(p.next_index, 10);
        p.maybe_update(5);
        p.inflights.free_to(5);
        assert!(!p.is_paused());
    }

    #[test]
    fn probe_rejections() {
        let mut p = Progress::new(11, 4);
        p.sent_entries(10, 0);
        assert!(p.is_paused());
        assert!(!p.maybe_decrease_to(7, 3)); // stale
        assert!(p.maybe_decrease_to(10, 4));
        assert_eq!(p.next_index, 5);
        // A hint at or past the rejected index still moves back by one.
        p.sent_entries(4, 0);
        assert!(p.maybe_decrease_to(4, 9));
        assert_eq!(p.next_index, 4);
        assert!(!p.is_paused());
    }
}
