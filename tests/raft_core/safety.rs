//! Durability of a candidate's own vote, the clock-checked lease, and a healthy leader kept in
//! place when an old leader rejoins after a partition. Driven directly on the pure core with
//! explicit persistence and crashes (`raft_support`).

use std::collections::BTreeMap;

use crate::raft_support::{cfg, Disk, Net};
use ringraft::raft::config::TICK_NANOS_DEFAULT;
use ringraft::raft::*;

/// Every index committed on two replicas holds the same entry on both.
fn assert_committed_agree(net: &Net) {
    let mut seen: BTreeMap<u64, (NodeId, Entry)> = BTreeMap::new();
    for (id, entries) in &net.committed {
        for e in entries {
            if let Some((other, prev)) = seen.get(&e.index) {
                assert_eq!(
                    prev, e,
                    "index {}: node {other} committed {prev:?}, node {id} committed {e:?}",
                    e.index
                );
            } else {
                seen.insert(e.index, (*id, e.clone()));
            }
        }
    }
}

/// Five voters. Candidate 1's disk is slow: the four other voters grant their (durable) votes
/// before 1's own term and vote are on its disk. If it could lead now, it would append and
/// replicate entry X at (2, term 1), crash, come back in term 0, win term 1 again from the same
/// voters (they already voted for it in term 1) and append a different Y at (2, term 1): two
/// entries with the same index and term, each acknowledged by a quorum.
#[test]
fn a_candidate_leads_only_after_its_own_term_and_vote_are_durable() {
    let mut net = Net::new(5, |c| c.pre_vote = false);
    *net.sync.get_mut(&1).unwrap() = false;
    net.r(1).campaign();
    net.run();
    let won_before_durable = net.r(1).role() == Role::Leader;
    if won_before_durable {
        net.r(1).propose(b"X".to_vec()).unwrap();
        // X reaches 2 and 3 (durable there); 1's own disk still has nothing.
        net.run_with(|m| m.to == 4 || m.to == 5);
    }
    net.crash(1);
    net.restart(1);
    assert_eq!(
        net.r(1).term(),
        0,
        "nothing of term 1 was durable on node 1"
    );
    net.r(1).campaign();
    net.run();
    net.persist(1);
    net.run();
    assert_eq!(net.r(1).role(), Role::Leader);
    assert_eq!(net.r(1).term(), 1, "the same term again");
    *net.sync.get_mut(&1).unwrap() = true;
    net.r(1).propose(b"Y".to_vec()).unwrap();
    net.run();
    net.tick_all(3);
    assert_committed_agree(&net);
    assert!(
        !won_before_durable,
        "candidate became leader before its own vote was durable"
    );
}

/// A candidate whose disk lost its new term (and the tail of its log) in a crash comes back in
/// the previous term and campaigns for the same term again. A grant its previous incarnation
/// earned (with its longer log) must not count: it would win without a committed entry. Found
/// by the fuzzer (`raft_fuzz` seed 23828). Vote requests now leave only after the term is
/// durable, so no grant for a term the candidate can lose exists.
#[test]
fn a_restarted_candidate_cannot_use_grants_from_before_its_crash() {
    let mut net = Net::new(3, |c| {
        c.pre_vote = false;
        c.check_quorum = false;
        c.lease_read = false;
    });
    net.elect(1);
    // X reaches node 3 (durable) and node 2 (in memory only); 1 and 3 commit it.
    *net.sync.get_mut(&2).unwrap() = false;
    let x = net.r(1).propose(b"X".to_vec()).unwrap();
    net.run();
    assert_eq!(net.r(1).log().committed(), x);
    assert_eq!(net.r(2).log().last_index(), x);
    // Node 2 campaigns for term 2 with X in its log; node 3 grants; the grant is in flight.
    net.r(2).campaign();
    net.flush();
    net.persist(3);
    let before_crash: Vec<Message> = net.queue.drain(..).collect();
    for m in before_crash.iter().filter(|m| m.to == 3 || m.to == 1) {
        net.r(m.to).step(m.clone()).unwrap();
    }
    net.flush();
    net.persist(1);
    net.persist(3);
    let grants: Vec<Message> = net
        .queue
        .drain(..)
        .filter(|m| m.to == 2 && m.body == MessageBody::VoteResponse { reject: false })
        .collect();
    // Node 2 crashes: its disk has neither term 2 nor X.
    net.crash(2);
    net.restart(2);
    assert_eq!(net.r(2).term(), 1);
    assert!(net.r(2).log().last_index() < x);
    net.r(2).campaign();
    net.flush();
    net.queue.clear();
    net.persist(2);
    for g in grants {
        net.r(2).step(g).unwrap();
    }
    net.flush();
    assert_ne!(
        net.r(2).role(),
        Role::Leader,
        "won term {} without committed entry {x}",
        net.r(2).term()
    );
}

#[test]
fn a_candidate_asks_for_votes_only_once_its_term_is_durable_then_wins() {
    let mut net = Net::new(5, |_| {});
    *net.sync.get_mut(&1).unwrap() = false;
    net.r(1).campaign();
    net.run();
    assert_eq!(net.r(1).role(), Role::Candidate);
    for v in 2..=5 {
        assert_ne!(
            net.r(v).vote(),
            1,
            "vote requested before the term was durable"
        );
    }
    assert!(
        net.r(1).log().entries().next().is_none(),
        "nothing appended"
    );
    net.persist(1);
    net.run();
    assert_eq!(net.r(1).role(), Role::Leader);
    net.persist(1);
    net.run();
    assert_eq!(net.r(5).log().committed(), 1);
}

/// Advances the clock by `ticks` tick lengths and ticks only `who`, delivering only among them.
fn tick_some(net: &mut Net, who: &[NodeId], ticks: usize) {
    let who = who.to_vec();
    for _ in 0..ticks {
        net.now += TICK_NANOS_DEFAULT;
        let now = net.now;
        for id in &who {
            net.r(*id).tick_at(now);
        }
        net.run_with(|m| !who.contains(&m.from) || !who.contains(&m.to));
    }
}

fn lease_read_served_locally(net: &mut Net, id: NodeId, ctx: u64) -> bool {
    let now = net.now;
    net.r(id).read_at(ctx, ReadMode::Lease, now).unwrap();
    // Nothing is delivered: only a read answered from the lease completes.
    net.flush();
    net.queue.clear();
    net.reads
        .get(&id)
        .is_some_and(|r| r.iter().any(|s| s.ctx == ctx))
}

/// The leader's process stops (SIGSTOP, a stalled executor) for longer than an election timeout
/// while the others elect a new leader and commit a write. On resume, before its tick driver
/// caught up, its tick lease still looks valid; the clock-checked lease must refuse the read.
#[test]
fn a_leader_stalled_past_an_election_refuses_lease_reads_on_resume() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    net.tick_all(2);
    assert!(lease_read_served_locally(&mut net, 1, 1), "lease works");
    // Node 1 is stopped: it neither ticks nor receives; 2 and 3 carry on without it.
    tick_some(&mut net, &[2, 3], 40);
    let new = net
        .leaders()
        .into_iter()
        .find(|&l| l != 1)
        .expect("new leader");
    net.r(new).propose(b"newer".to_vec()).unwrap();
    net.run_with(|m| m.to == 1 || m.from == 1);
    // Resume: node 1 still believes it leads, and its tick counter did not move.
    assert_eq!(net.r(1).role(), Role::Leader);
    assert!(
        net.r(1).lease_valid(),
        "the tick lease alone would serve it"
    );
    let now = net.now;
    assert!(!net.r(1).lease_valid_at(now));
    assert!(
        !lease_read_served_locally(&mut net, 1, 2),
        "stale lease read served after a stall"
    );
}

#[test]
fn after_a_stall_a_fresh_quorum_round_restores_the_lease() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    net.tick_all(2);
    // Every process stalls (a paused VM): nobody ticks, the clock runs past the lease.
    net.now += 30 * TICK_NANOS_DEFAULT;
    assert!(!lease_read_served_locally(&mut net, 1, 1));
    // The refused read became a ReadIndex round; once a quorum answers it, it is served and
    // the lease runs again from the round's (fresh) send time.
    let now = net.now;
    net.r(1).read_at(2, ReadMode::Lease, now).unwrap();
    net.run();
    assert!(net.reads[&1].iter().any(|s| s.ctx == 2));
    let now = net.now;
    assert!(net.r(1).lease_valid_at(now));
    assert!(lease_read_served_locally(&mut net, 1, 3));
}

/// The negative control for fault suites: with the unsafe knob the stalled leader serves it.
#[test]
fn unsafe_lease_ignore_clock_serves_the_stale_read() {
    let mut net = Net::new(3, |c| c.unsafe_lease_ignore_clock = true);
    net.elect(1);
    net.tick_all(2);
    tick_some(&mut net, &[2, 3], 40);
    assert!(net.leaders().iter().any(|&l| l != 1));
    assert!(lease_read_served_locally(&mut net, 1, 9));
    // Without any lease at all (never confirmed), it still serves: the knob checks nothing.
    let mut fresh = Net::new(3, |c| c.unsafe_lease_ignore_clock = true);
    fresh.elect(1);
    fresh.now += 1_000 * TICK_NANOS_DEFAULT;
    assert!(lease_read_served_locally(&mut fresh, 1, 1));
}

/// How the links of the isolated old leader (node 1) come back.
#[derive(Debug, Clone, Copy)]
enum Heal {
    /// All at once.
    AllAtOnce,
    /// Its own messages flow `lag` ticks before the others' reach it.
    OutboundFirst,
    /// The others' messages reach it `lag` ticks before its own flow.
    InboundFirst,
    /// Both directions to the follower come back `lag` ticks before those to the new leader:
    /// the old leader learns the new term from the follower but does not hear from the leader,
    /// times out and pre-votes in a term above the leader's.
    FollowerFirst,
}

/// Partition isolating the leader for `iso` ticks; the other two elect a new leader and keep
/// committing; the old leader takes writes it can never commit, steps down and keeps timing out
/// alone. Its links then come back as `heal` says, and with `buffered` everything the links
/// held is delivered late (TCP delivers what was queued before the cut). The new leader must
/// stay leader in the same term throughout, and in the end every node must follow it.
fn heal_keeps_the_leader(
    seed: u64,
    iso: usize,
    lag: usize,
    heal: Heal,
    buffered: bool,
) -> Result<(), String> {
    let mut net = Net::new(3, |c| c.seed = c.seed.wrapping_mul(seed + 1));
    net.elect(1);
    for i in 0..5u8 {
        net.r(1).propose(vec![i]).unwrap();
    }
    net.run();
    for i in 0..10u8 {
        net.r(1).propose(vec![100 + i]).unwrap();
    }
    let mut held: Vec<Message> = Vec::new();
    let mut new_leader = None;
    let mut term = 0;
    for t in 0..iso + lag + 300 {
        // Is the link from -> to open at tick t?
        let open = |from: NodeId, to: NodeId| -> bool {
            if from != 1 && to != 1 {
                return true;
            }
            if t < iso {
                return false;
            }
            let late = t < iso + lag;
            let peer = if from == 1 { to } else { from };
            match heal {
                Heal::AllAtOnce => true,
                Heal::OutboundFirst => from == 1 || !late,
                Heal::InboundFirst => to == 1 || !late,
                Heal::FollowerFirst => Some(peer) != new_leader || !late,
            }
        };
        if !held.is_empty() {
            for m in std::mem::take(&mut held) {
                if open(m.from, m.to) {
                    net.r(m.to).step(m).unwrap();
                } else {
                    held.push(m);
                }
            }
        }
        net.now += TICK_NANOS_DEFAULT;
        let now = net.now;
        for r in net.rafts.values_mut() {
            r.tick_at(now);
        }
        for _ in 0..100 {
            net.flush();
            if net.queue.is_empty() {
                break;
            }
            for m in std::mem::take(&mut net.queue) {
                if open(m.from, m.to) {
                    net.r(m.to).step(m).unwrap();
                } else if buffered {
                    held.push(m);
                }
            }
        }
        if t % 7 == 0 {
            if let Some(l) = net.leaders().into_iter().find(|&l| l != 1) {
                let _ = net.r(l).propose(vec![t as u8]);
            }
        }
        if t + 1 == iso {
            let Some(l) = net.leaders().into_iter().find(|&l| l != 1) else {
                return Err(format!("seed {seed}: no new leader after {iso} ticks"));
            };
            new_leader = Some(l);
            term = net.r(l).term();
        }
        if let Some(l) = new_leader {
            let r = net.r(l);
            if r.role() != Role::Leader || r.term() != term {
                return Err(format!(
                    "seed {seed}: leader {l} of term {term} is {:?} in term {} {} ticks after the heal",
                    r.role(),
                    r.term(),
                    (t + 1).saturating_sub(iso)
                ));
            }
        }
    }
    let leader = new_leader.ok_or("no new leader")?;
    for id in 1..=3 {
        let r = net.r(id);
        if r.leader() != leader || r.term() != term {
            return Err(format!(
                "seed {seed}: node {id} follows {} in term {}",
                r.leader(),
                r.term()
            ));
        }
    }
    assert_committed_agree(&net);
    Ok(())
}

#[test]
fn a_healed_old_leader_does_not_disturb_the_new_one() {
    let mut failures = Vec::new();
    let mut rng = ringraft::raft::rng::Rng::new(13);
    for seed in 0..40 {
        // Cuts of one to ten election timeouts; link lags of up to three.
        let iso = 45 + rng.below(150) as usize;
        let lag = 1 + rng.below(60) as usize;
        for heal in [
            Heal::AllAtOnce,
            Heal::OutboundFirst,
            Heal::InboundFirst,
            Heal::FollowerFirst,
        ] {
            for buffered in [false, true] {
                if let Err(e) = heal_keeps_the_leader(seed, iso, lag, heal, buffered) {
                    failures.push(format!(
                        "{e} (iso {iso}, lag {lag}, {heal:?}, buffered: {buffered})"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A learner's address travels in its configuration entry: every replica (the learner too)
/// records it once the entry is in its log and applied, a different address for the member is
/// refused, and replicas restarted from their durable snapshot (replica 2) or log (replica 3)
/// still know it.
#[test]
fn member_address_reaches_every_replica_and_survives_restart() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    let c4 = cfg(4);
    net.rafts
        .insert(4, Raft::new(c4.clone(), Membership::default()).unwrap());
    net.cfgs.insert(4, c4);
    net.disks.insert(4, Disk::default());
    net.sync.insert(4, true);
    let addr = "127.0.0.1:7004".to_string();
    let index = net
        .r(1)
        .propose_conf_change(ConfChange::AddLearner(4, Some(addr.clone())))
        .unwrap();
    net.run();
    net.tick_all(5);
    for id in 1..=4 {
        assert!(net.r(id).log().applied() >= index, "replica {id} applied");
        assert_eq!(
            net.r(id).membership().address(4),
            Some(addr.as_str()),
            "replica {id}"
        );
    }
    assert_eq!(
        net.r(1)
            .propose_conf_change(ConfChange::AddLearner(4, Some("127.0.0.1:1".into()))),
        Err(ProposeError::Membership(MembershipError::AddressConflict {
            id: 4,
            recorded: addr.clone()
        }))
    );
    assert_eq!(
        net.r(1)
            .propose_conf_change(ConfChange::AddLearner(4, Some(addr.clone()))),
        Err(ProposeError::Membership(MembershipError::AlreadyMember(4)))
    );
    // Replica 2 compacts past the entry and keeps only the snapshot on disk.
    let applied = net.r(2).log().applied();
    net.r(2).compact(applied, Vec::<u8>::new()).unwrap();
    let snap = net.r(2).snapshot().cloned().unwrap();
    assert_eq!(snap.meta.membership.address(4), Some(addr.as_str()));
    let disk = net.disks.get_mut(&2).unwrap();
    disk.entries.retain(|e| e.index > snap.meta.index);
    disk.snapshot = snap;
    for id in [2, 3] {
        net.crash(id);
        net.restart(id);
        assert_eq!(
            net.r(id).membership().address(4),
            Some(addr.as_str()),
            "replica {id} after restart"
        );
    }
}
