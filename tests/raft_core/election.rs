//! Elections: a leader by timeout (with its no-op committed), PreVote keeping a partitioned
//! node's term still (and without it, the term rising), CheckQuorum stepping a lone leader down,
//! votes ignored while the leader is alive, and leadership transfer.

use ringraft::raft::*;

use crate::raft_support::Net;

#[test]
fn elects_one_leader_by_timeout_with_noop_and_commits_it() {
    let mut net = Net::new(3, |_| {});
    net.tick_all(25);
    let l = net.leaders();
    assert_eq!(l.len(), 1);
    let l = l[0];
    let term = net.r(l).term();
    for id in 1..=3 {
        let r = net.r(id);
        assert_eq!(r.term(), term);
        assert_eq!(r.log().committed(), 1);
        assert_eq!(r.log().entry(1).unwrap().kind, EntryKind::Noop);
    }
}

#[test]
fn prevote_keeps_a_partitioned_node_from_raising_terms() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    let term = net.r(1).term();
    // Node 3 is cut off and times out many times: with PreVote its term does not move.
    for _ in 0..100 {
        net.r(3).tick();
        net.run_with(|m| m.from == 3 || m.to == 3);
    }
    assert_eq!(net.r(3).term(), term);
    // After healing it rejoins without disrupting the leader.
    net.tick_all(5);
    assert_eq!(net.r(1).role(), Role::Leader);
    assert_eq!(net.r(1).term(), term);
}

#[test]
fn without_prevote_a_partitioned_node_raises_its_term() {
    let mut net = Net::new(3, |c| {
        c.pre_vote = false;
    });
    net.elect(1);
    let term = net.r(1).term();
    for _ in 0..100 {
        net.r(3).tick();
        net.run_with(|m| m.from == 3 || m.to == 3);
    }
    assert!(net.r(3).term() > term);
}

#[test]
fn check_quorum_leader_steps_down_alone() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    for _ in 0..30 {
        net.r(1).tick();
        net.run_with(|m| m.from == 1 || m.to == 1);
    }
    assert_eq!(net.r(1).role(), Role::Follower);
}

#[test]
fn followers_ignore_votes_while_the_leader_is_alive() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    let term = net.r(1).term();
    // A disruptive node forces a campaign (no PreVote): the others ignore it.
    net.r(3)
        .step(Message {
            from: 1,
            to: 3,
            term,
            body: MessageBody::Heartbeat {
                commit: 0,
                round: 0,
            },
        })
        .unwrap();
    net.r(2)
        .step(Message {
            from: 3,
            to: 2,
            term: term + 1,
            body: MessageBody::Vote {
                last_index: 99,
                last_term: term,
                transfer: false,
            },
        })
        .unwrap();
    assert_eq!(
        net.r(2).term(),
        term,
        "vote request inside the lease must be ignored"
    );
}

#[test]
fn leadership_transfer() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    net.r(1).propose(b"x".to_vec()).unwrap();
    net.run_with(|m| m.to == 3);
    net.r(1).transfer_leadership(3).unwrap();
    assert!(!net.r(1).lease_valid());
    assert_eq!(
        net.r(1).propose(b"y".to_vec()),
        Err(ProposeError::TransferInProgress)
    );
    net.run();
    assert_eq!(net.r(3).role(), Role::Leader);
    assert_eq!(net.r(1).role(), Role::Follower);
    assert_eq!(
        net.r(1).transfer_leadership(2),
        Err(TransferError::NotLeader)
    );
}
