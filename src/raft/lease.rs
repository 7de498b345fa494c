//! The leader lease, kept on two clocks: the leader's own tick counter and the driver's monotonic
//! clock (nanoseconds, handed in by the driver; the core never reads a clock).
//!
//! When a quorum acknowledged a heartbeat round sent at tick `s` (monotonic time `s_ns`), no
//! other leader can be elected before each of those followers' election timers ran
//! `election_timeout_min_ticks` of *their* ticks after receiving it (followers ignore vote
//! requests while they heard from a leader that recently, and a restarted replica waits one
//! minimum timeout before voting). A follower's ticks never run ahead of real time (a late tick
//! driver delivers missed ticks late, never early), so that is at least
//! `election_timeout_min_ticks × tick_nanos` of real time after `s_ns`. The lease ends at
//! `s + lease_ticks` ticks and at `s_ns + lease_ticks × tick_nanos` nanoseconds, where
//! `lease_ticks = election_timeout_min − clock_drift_margin`; the margin absorbs clock-rate
//! differences between replicas: with rates within a factor `(1 ± d)`, it must be at least
//! `election_timeout_min × (1 − (1 − d)/(1 + d))`.
//!
//! Why both clocks: ticks alone stop when the leader's process stops (SIGSTOP, a long stall of
//! its executor) while the followers' clocks keep running; on resume the tick counter still
//! says "inside the lease" until the tick driver catches up. A read checked against the
//! monotonic clock at read time (`Raft::read_at`) sees the real elapsed time. The tick check
//! stays for drivers that do not hand in time (`Raft::read`).
//! A leadership transfer ends the lease (the transferee is allowed to bypass the rule).

/// Lease state of a leader.
#[derive(Debug, Clone, Default)]
pub struct Lease {
    /// The lease is valid while the tick counter is below this.
    expire_tick: u64,
    /// The lease is valid while the driver's monotonic clock (ns) is below this.
    expire_nanos: u64,
}

impl Lease {
    /// True if the lease covers tick `now`.
    pub fn is_valid(&self, now: u64) -> bool {
        now < self.expire_tick
    }
    /// True if the lease covers monotonic time `now_nanos`.
    pub fn is_valid_at(&self, now_nanos: u64) -> bool {
        now_nanos < self.expire_nanos
    }
    /// A quorum acknowledged a round sent at `sent_tick` / `sent_nanos`.
    pub fn extend(&mut self, sent_tick: u64, lease_ticks: u32, sent_nanos: u64, lease_nanos: u64) {
        self.expire_tick = self
            .expire_tick
            .max(sent_tick.saturating_add(u64::from(lease_ticks)));
        self.expire_nanos = self
            .expire_nanos
            .max(sent_nanos.saturating_add(lease_nanos));
    }
    /// Ends the lease now.
    pub fn invalidate(&mut self) {
        self.expire_tick = 0;
        self.expire_nanos = 0;
    }
    /// Tick at which the lease ends.
    pub fn expire_tick(&self) -> u64 {
        self.expire_tick
    }
    /// Monotonic time (ns) at which the lease ends.
    pub fn expire_nanos(&self) -> u64 {
        self.expire_nanos
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_never_shrinks() {
        let mut l = Lease::default();
        assert!(!l.is_valid(0));
        assert!(!l.is_valid_at(0));
        l.extend(10, 7, 1_000, 700);
        assert!(l.is_valid(16) && !l.is_valid(17));
        assert!(l.is_valid_at(1_699) && !l.is_valid_at(1_700));
        l.extend(5, 7, 500, 700);
        assert_eq!((l.expire_tick(), l.expire_nanos()), (17, 1_700));
        l.extend(u64::MAX, 7, u64::MAX, 700);
        assert_eq!((l.expire_tick(), l.expire_nanos()), (u64::MAX, u64::MAX));
        l.invalidate();
        assert!(!l.is_valid(0) && !l.is_valid_at(0));
    }
}
