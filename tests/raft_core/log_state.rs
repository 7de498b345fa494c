//! The replicated state beyond one term: membership changes one at a time, snapshot requests,
//! compaction and install on a follower far behind, and restart from durable state.

use ringraft::raft::*;

use crate::raft_support::{cfg, Net};

#[test]
fn membership_one_change_at_a_time() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    let mut c4 = cfg(4);
    c4.seed = 4;
    net.add_replica(c4, Membership::default());
    net.r(1)
        .propose_conf_change(ConfChange::AddLearner(4, None))
        .unwrap();
    assert_eq!(
        net.r(1).propose_conf_change(ConfChange::Promote(4)),
        Err(ProposeError::ConfChangePending)
    );
    net.run();
    assert_eq!(net.r(4).membership().learners.len(), 1);
    assert_eq!(net.r(4).log().committed(), net.r(1).log().committed());
    assert!(!net.r(4).campaign_is_possible());
    net.r(1)
        .propose_conf_change(ConfChange::Promote(4))
        .unwrap();
    net.run();
    assert_eq!(net.r(2).membership().voters.len(), 4);
    // Remove the leader itself: it steps down once the change commits.
    net.r(1).propose_conf_change(ConfChange::Remove(1)).unwrap();
    net.run();
    assert_eq!(net.r(1).role(), Role::Follower);
    assert!(!net.r(2).membership().is_voter(1));
    assert!(matches!(
        net.r(2).propose_conf_change(ConfChange::Promote(9)),
        Err(ProposeError::NotLeader { .. })
    ));
}

#[test]
fn snapshot_request_compaction_and_install() {
    let mut net = Net::new(3, |c| {
        c.snapshot_threshold_entries = 10;
        c.log_retain_entries = 0;
    });
    net.elect(1);
    for i in 0..30u8 {
        net.r(1).propose(vec![i]).unwrap();
        net.run_with(|m| m.to == 3 || m.from == 3);
    }
    let at = net.snapshot_requests[&1];
    assert!(at >= 10);
    net.r(1).compact(at, b"state".to_vec()).unwrap();
    assert!(net.r(1).log().first_index() > at);
    assert!(matches!(
        net.r(1).compact(at, b"s".to_vec()),
        Err(SnapshotError::Stale { .. })
    ));
    assert!(matches!(
        net.r(1).compact(1000, b"s".to_vec()),
        Err(SnapshotError::NotApplied { .. })
    ));
    // Node 3 is far behind: it gets the snapshot, then the rest of the log.
    net.tick_all(3);
    assert_eq!(net.r(3).log().committed(), 31);
    assert_eq!(&net.r(3).snapshot().unwrap().data[..], b"state");
    assert_eq!(net.r(3).log().offset(), at);
}

#[test]
fn restart_from_durable_state() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    net.r(1).propose(b"a".to_vec()).unwrap();
    net.run();
    let r2 = net.r(2);
    let state = RestartState {
        hard_state: r2.hard_state(),
        snapshot: r2.snapshot().unwrap().clone(),
        entries: r2.log().entries().cloned().collect(),
    };
    let mut back = Raft::restart(cfg(2), state).unwrap();
    assert_eq!(back.term(), net.r(1).term());
    assert_eq!(back.log().last_index(), 2);
    // Committed entries are handed out again for the state machine to rebuild.
    let rd = back.ready();
    assert_eq!(rd.committed_entries.len(), 2);
}

trait CampaignCheck {
    fn campaign_is_possible(&self) -> bool;
}
impl CampaignCheck for Raft {
    fn campaign_is_possible(&self) -> bool {
        self.promotable()
    }
}
