//! Hostile numbers from peers: every term, index and count a Raft message carries is checked
//! before the core acts on it. Each case here is one message a single connection claiming a
//! node id could send; before the checks, each one panicked the receiving replica (release
//! builds check overflow), and a term of `u64::MAX` was persisted and then overflowed at the
//! next election, again after every restart. Now each is refused with
//! `StepError::Invalid`, counted, and the group keeps working.

use crate::raft_support::{cfg, Net};
use ringraft::raft::*;

fn msg(from: NodeId, to: NodeId, term: u64, body: MessageBody) -> Message {
    Message {
        from,
        to,
        term,
        body,
    }
}

fn assert_invalid(res: Result<(), StepError>) {
    assert!(
        matches!(res, Err(StepError::Invalid(_))),
        "expected an invalid-message refusal, got {res:?}"
    );
}

/// The group still elects, replicates and commits after the hostile input.
fn still_works(net: &mut Net, leader: NodeId) {
    let before = net.r(leader).log().committed();
    net.r(leader).propose(b"after".to_vec()).unwrap();
    net.run();
    for id in 1..=3 {
        assert_eq!(net.r(id).log().committed(), before + 1, "node {id}");
    }
}

#[test]
fn append_response_with_match_index_u64_max_is_refused() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    let term = net.r(1).term();
    let bad = msg(
        2,
        1,
        term,
        MessageBody::AppendResponse {
            index: u64::MAX,
            reject: None,
        },
    );
    assert_invalid(net.r(1).step(bad));
    // Also an index just past the log (no overflow, but no Append the leader sent ends there).
    let last = net.r(1).log().last_index();
    let bad = msg(
        2,
        1,
        term,
        MessageBody::AppendResponse {
            index: last + 1,
            reject: None,
        },
    );
    assert_invalid(net.r(1).step(bad));
    assert_eq!(net.r(1).invalid_messages(), 2);
    assert_eq!(net.r(1).progress(2).unwrap().match_index, last);
    still_works(&mut net, 1);
}

#[test]
fn conflict_hint_at_u64_max_is_refused() {
    let mut net = Net::new(3, |_| {});
    // Node 1 wins, but node 3's answers are lost: its progress stays in Probe with a probe out.
    net.r(1).campaign();
    net.run_with(|m| m.from == 3 && matches!(m.body, MessageBody::AppendResponse { .. }));
    assert_eq!(net.r(1).role(), Role::Leader);
    let term = net.r(1).term();
    let rejected = net.r(1).progress(3).unwrap().next_index - 1;
    for hint in [
        RejectHint {
            index: u64::MAX,
            term: 0,
        },
        RejectHint {
            index: u64::MAX,
            term: u64::MAX,
        },
        RejectHint {
            index: rejected + 1,
            term: 0,
        },
    ] {
        let bad = msg(
            3,
            1,
            term,
            MessageBody::AppendResponse {
                index: rejected,
                reject: Some(hint),
            },
        );
        assert_invalid(net.r(1).step(bad));
    }
    assert_eq!(net.r(1).invalid_messages(), 3);
    net.tick_all(3);
    still_works(&mut net, 1);
}

#[test]
fn install_snapshot_at_u64_max_is_refused() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    let term = net.r(1).term();
    let snap = |index: u64, t: u64| Snapshot {
        meta: SnapshotMeta {
            index,
            term: t,
            membership: Membership::with_voters([1, 2, 3]),
        },
        data: b"x".to_vec().into(),
    };
    for s in [
        snap(u64::MAX, term),
        snap(MAX_INDEX + 1, term),
        snap(5, term + 1),
        snap(0, 1),
    ] {
        let bad = msg(1, 2, term, MessageBody::InstallSnapshot { snapshot: s });
        assert_invalid(net.r(2).step(bad));
    }
    assert_eq!(net.r(2).invalid_messages(), 4);
    assert!(net.r(2).snapshot().unwrap().meta.index < 5);
    still_works(&mut net, 1);
}

#[test]
fn term_u64_max_is_refused_never_persisted_and_elections_continue() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    let term = net.r(1).term();
    for t in [u64::MAX, MAX_TERM + 1] {
        for body in [
            MessageBody::Heartbeat {
                commit: 0,
                round: 0,
            },
            MessageBody::PreVote {
                last_index: 1,
                last_term: 1,
            },
            MessageBody::VoteResponse { reject: true },
            MessageBody::TimeoutNow,
        ] {
            assert_invalid(net.r(2).step(msg(3, 2, t, body)));
        }
    }
    assert_eq!(net.r(2).term(), term);
    assert_eq!(net.r(2).invalid_messages(), 8);
    // The leader dies: the others elect a new one (the old code panicked here at the next
    // pre-vote: term + 1 on a persisted u64::MAX).
    net.crash(1);
    net.tick_all(60);
    let leaders = net.leaders();
    assert_eq!(leaders.len(), 1);
    assert!(net.r(leaders[0]).term() > term);
    assert!(net.r(leaders[0]).term() < MAX_TERM);
}

#[test]
fn a_restarted_replica_with_a_poisoned_term_stops_campaigning_instead_of_panicking() {
    // Durable state written by a build that accepted any term.
    let mut c = cfg(1);
    c.pre_vote = false;
    for term in [u64::MAX, MAX_TERM] {
        let state = RestartState {
            hard_state: HardState {
                term,
                vote: 0,
                commit: 0,
            },
            snapshot: Snapshot {
                meta: SnapshotMeta {
                    index: 0,
                    term: 0,
                    membership: Membership::with_voters([1, 2, 3]),
                },
                data: Vec::new().into(),
            },
            entries: Vec::new(),
        };
        for pre_vote in [true, false] {
            c.pre_vote = pre_vote;
            let mut r = Raft::restart(c.clone(), state.clone()).unwrap();
            for _ in 0..200 {
                r.tick();
                let _ = r.ready();
            }
            assert_eq!(r.term(), term);
            assert_eq!(r.role(), Role::Follower);
        }
    }
}

#[test]
fn log_terms_above_the_message_term_and_broken_batches_are_refused() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    let term = net.r(1).term();
    let e = |index: u64, t: u64| Entry {
        index,
        term: t,
        kind: EntryKind::Normal,
        data: b"e".to_vec().into(),
    };
    let app = |prev_index: u64, prev_term: u64, entries: Vec<Entry>| MessageBody::Append {
        prev_index,
        prev_term,
        entries,
        commit: 0,
    };
    let bad = [
        // An entry newer than the sender's term.
        app(1, term, vec![e(2, term + 1)]),
        // A previous term newer than the sender's term.
        app(1, term + 1, vec![]),
        // Gaps, and terms that go down.
        app(1, term, vec![e(3, term)]),
        app(1, term, vec![e(2, term), e(3, term - 1)]),
        // Indexes that would overflow.
        app(u64::MAX - 1, term, vec![e(u64::MAX, term), e(0, term)]),
        app(MAX_INDEX, term, vec![e(MAX_INDEX + 1, term)]),
        app(u64::MAX, term, vec![]),
        // A candidate claiming a last entry newer than its own term wins every log comparison.
        MessageBody::Vote {
            last_index: 1,
            last_term: u64::MAX,
            transfer: false,
        },
        MessageBody::PreVote {
            last_index: u64::MAX,
            last_term: 1,
        },
        MessageBody::Heartbeat {
            commit: u64::MAX,
            round: 1,
        },
    ];
    let n = bad.len() as u64;
    for body in bad {
        assert_invalid(net.r(2).step(msg(1, 2, term, body)));
    }
    assert_eq!(net.r(2).invalid_messages(), n);
    assert_eq!(net.r(2).log().last_index(), 1);
    still_works(&mut net, 1);
}

#[test]
fn a_heartbeat_answer_for_a_round_never_started_confirms_nothing() {
    let mut net = Net::new(3, |c| c.lease_read = false);
    net.elect(1);
    let term = net.r(1).term();
    let forged = msg(
        2,
        1,
        term,
        MessageBody::HeartbeatResponse { round: u64::MAX },
    );
    assert_invalid(net.r(1).step(forged));
    // A ReadIndex read must still wait for a real quorum round: with every answer lost it is
    // never served (before the check, the forged round confirmed every later round at once).
    net.r(1).read(7, ReadMode::ReadIndex).unwrap();
    net.run_with(|m| m.to == 1);
    assert!(net.reads.get(&1).is_none_or(|r| r.is_empty()));
    net.run();
    net.r(1).tick();
    net.tick_all(2);
    assert_eq!(net.reads[&1].iter().filter(|r| r.ctx == 7).count(), 1);
}

#[test]
fn multi_raft_counts_refusals_and_misaddressed_envelope_content() {
    let mut node = MultiRaft::new(2);
    for g in 1..=2 {
        node.add_group(
            g,
            Raft::new(cfg(2), Membership::with_voters([1, 2, 3])).unwrap(),
        )
        .unwrap();
    }
    let env = Envelope {
        from: 1,
        to: 2,
        messages: vec![
            (1, msg(1, 2, u64::MAX, MessageBody::TimeoutNow)),
            // Claims to come from node 3 inside node 1's envelope.
            (2, msg(3, 2, 1, MessageBody::TimeoutNow)),
        ],
        heartbeats: vec![ringraft::raft::multi::GroupHeartbeat {
            group: 2,
            term: 1,
            commit: u64::MAX,
            round: 1,
        }],
        heartbeat_responses: vec![],
    };
    assert!(node.step(env).is_err());
    assert_eq!(node.invalid_messages(), 3);
    node.remove_group(1);
    assert_eq!(node.invalid_messages(), 3, "counts survive group removal");
    assert_eq!(node.group(2).unwrap().term(), 0);
}
