//! The leader lease, in ticks of the leader's own monotonic tick counter.
//!
//! When a quorum acknowledged a heartbeat round sent at tick `s`, no other leader can be elected
//! before each of those followers' election timers ran `election_timeout_min_ticks` of *their*
//! ticks after receiving it (followers ignore vote requests while they heard from a leader that
//! recently, and a restarted replica waits one minimum timeout before voting). The leader may
//! therefore serve reads locally until `s + election_timeout_min - clock_drift_margin` of its own
//! ticks. The margin absorbs tick-rate differences between replicas: with rates within a factor
//! `(1 ± d)`, it must be at least `election_timeout_min × (1 − (1 − d)/(1 + d))`.
//! A leadership transfer ends the lease (the transferee is allowed to bypass the rule).

/// Lease state of a leader.
#[derive(Debug, Clone, Default)]
pub struct Lease {
    /// The lease is valid while the tick counter is below this.
    expire_tick: u64,
}

impl Lease {
    /// True if the lease covers tick `now`.
    pub fn is_valid(&self, now: u64) -> bool {
        now < self.expire_tick
    }
    /// A quorum acknowledged a round sent at `sent_tick`.
    pub fn extend(&mut self, sent_tick: u64, lease_ticks: u32) {
        self.expire_tick = self.expire_tick.max(sent_tick + u64::from(lease_ticks));
    }
    /// Ends the lease now.
    pub fn invalidate(&mut self) {
        self.expire_tick = 0;
    }
    /// Tick at which the lease ends.
    pub fn expire_tick(&self) -> u64 {
        self.expire_tick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_never_shrinks() {
        let mut l = Lease::default();
        assert!(!l.is_valid(0));
        l.extend(10, 7);
        assert!(l.is_valid(16) && !l.is_valid(17));
        l.extend(5, 7);
        assert_eq!(l.expire_tick(), 17);
        l.invalidate();
        assert!(!l.is_valid(0));
    }
}
