//! Reads: ReadIndex batching into one round, waiting for the term's first commit and dropped
//! on step-down; lease reads served locally until the lease expires; a config with an unsafe
//! lease refused.

use ringraft::raft::*;

use crate::raft_support::Net;

#[test]
fn read_index_batches_reads_into_one_round() {
    let mut net = Net::new(3, |c| c.lease_read = false);
    net.elect(1);
    net.sent = 0;
    for ctx in 0..100 {
        net.r(1).read(ctx, ReadMode::ReadIndex).unwrap();
    }
    net.run();
    let reads = &net.reads[&1];
    assert_eq!(reads.len(), 100);
    assert!(reads.iter().all(|r| r.index == 1));
    // One heartbeat per follower and one answer each.
    assert_eq!(net.sent, 4);
    // A follower refuses, naming the leader.
    assert_eq!(
        net.r(2).read(1, ReadMode::ReadIndex),
        Err(ReadError::NotLeader { leader: 1 })
    );
}

#[test]
fn read_index_waits_for_the_leaders_first_commit_and_fails_on_step_down() {
    let mut net = Net::new(3, |c| c.lease_read = false);
    net.r(1).campaign();
    // Deliver votes but not the no-op's acknowledgements.
    net.run_with(|m| matches!(m.body, MessageBody::AppendResponse { .. }));
    assert_eq!(net.r(1).role(), Role::Leader);
    net.r(1).read(5, ReadMode::ReadIndex).unwrap();
    net.run_with(|m| matches!(m.body, MessageBody::AppendResponse { .. }));
    assert!(
        net.reads.get(&1).is_none_or(|r| r.is_empty()),
        "no read before the term's first commit"
    );
    // Isolated, it steps down: the read is reported dropped.
    for _ in 0..30 {
        net.r(1).tick();
        net.run_with(|m| m.from == 1 || m.to == 1);
    }
    assert_eq!(net.dropped[&1], vec![5]);
}

#[test]
fn lease_reads_are_local_until_the_lease_expires() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    net.tick_all(2); // one heartbeat round confirms the lease
    assert!(net.r(1).lease_valid());
    net.sent = 0;
    net.r(1).read(1, ReadMode::Lease).unwrap();
    net.run();
    assert_eq!(net.sent, 0, "lease read needs no messages");
    assert_eq!(net.reads[&1].len(), 1);
    // Cut off: the lease runs out before anyone could elect a new leader.
    let c = net.r(1).config().clone();
    for _ in 0..c.lease_ticks() + 1 {
        net.r(1).tick();
        net.run_with(|m| m.from == 1 || m.to == 1);
    }
    assert!(!net.r(1).lease_valid());
    assert!(c.lease_ticks() < c.election_timeout_min_ticks);
}

#[test]
fn config_validation_rejects_an_unsafe_lease() {
    let mut c = Config::new(1);
    c.clock_drift_margin_ticks = c.election_timeout_min_ticks;
    assert!(c.validate().is_err());
    let mut c = Config::new(1);
    c.check_quorum = false;
    assert!(c.validate().is_err());
    let mut c = Config::new(1);
    c.max_inflight_msgs = 0;
    assert!(Raft::new(c, Membership::with_voters([1])).is_err());
}
