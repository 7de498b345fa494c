//! Input the core must refuse or merge: a message for another node, from itself, or rewriting
//! committed entries is refused without panic; heartbeats of many groups to one node travel in
//! one envelope.

use std::collections::BTreeMap;

use ringraft::raft::*;

use crate::raft_support::{cfg, Net};

#[test]
fn bad_input_is_refused_without_panic() {
    let mut net = Net::new(3, |_| {});
    net.elect(1);
    let term = net.r(1).term();
    let m = Message {
        from: 2,
        to: 3,
        term,
        body: MessageBody::TimeoutNow,
    };
    assert!(matches!(
        net.r(1).step(m),
        Err(StepError::WrongRecipient { .. })
    ));
    let m = Message {
        from: 1,
        to: 1,
        term,
        body: MessageBody::TimeoutNow,
    };
    assert_eq!(net.r(1).step(m), Err(StepError::FromSelf));
    // A stale or hostile append below the commit index cannot touch committed entries: it is
    // answered with the commit index and the log is unchanged.
    let bad = Entry {
        index: 1,
        term,
        kind: EntryKind::Normal,
        data: b"z".to_vec().into(),
    };
    let m = Message {
        from: 1,
        to: 2,
        term,
        body: MessageBody::Append {
            prev_index: 0,
            prev_term: 0,
            entries: vec![bad],
            commit: 1,
        },
    };
    net.r(2).step(m).unwrap();
    let rd = net.r(2).ready();
    let ack = rd
        .messages_after_persist
        .iter()
        .find(|m| m.to == 1)
        .unwrap();
    assert_eq!(
        ack.body,
        MessageBody::AppendResponse {
            index: 1,
            reject: None
        }
    );
    assert_eq!(net.r(2).log().entry(1).unwrap().kind, EntryKind::Noop);
}

#[test]
fn multi_raft_merges_heartbeats_per_node() {
    let groups = 50u64;
    let mut nodes: BTreeMap<NodeId, MultiRaft> = BTreeMap::new();
    for id in 1..=3 {
        let mut m = MultiRaft::new(id);
        for g in 1..=groups {
            let mut c = cfg(id);
            c.seed = id * 1000 + g;
            m.add_group(g, Raft::new(c, Membership::with_voters([1, 2, 3])).unwrap())
                .unwrap();
        }
        nodes.insert(id, m);
    }
    for g in 1..=groups {
        nodes.get_mut(&1).unwrap().group_mut(g).unwrap().campaign();
    }
    let mut envelopes_per_round = Vec::new();
    for round in 0..40 {
        if round >= 10 {
            for m in nodes.values_mut() {
                m.tick();
            }
        }
        let mut inflight = Vec::new();
        for m in nodes.values_mut() {
            while m.has_ready() {
                let rd = m.ready();
                for (g, r) in &rd.groups {
                    if let Some((i, t)) = r.persisted {
                        m.on_persisted(*g, i, t).unwrap();
                    }
                }
                inflight.extend(rd.envelopes);
                inflight.extend(rd.envelopes_after_persist);
            }
        }
        envelopes_per_round.push(inflight.clone());
        for env in inflight {
            nodes.get_mut(&env.to).unwrap().step(env).unwrap();
        }
    }
    for g in 1..=groups {
        assert_eq!(nodes[&1].group(g).unwrap().role(), Role::Leader);
    }
    // A heartbeat round for 50 groups: one envelope per peer carrying 50 merged heartbeats.
    let hb: Vec<&Envelope> = envelopes_per_round
        .iter()
        .flatten()
        .filter(|e| e.from == 1 && e.heartbeats.len() == groups as usize)
        .collect();
    assert!(!hb.is_empty(), "heartbeats were not merged");
    assert!(hb
        .iter()
        .all(|e| e.messages.is_empty() || e.message_count() > groups as usize));
    let mut m = MultiRaft::new(9);
    let bad = Envelope {
        from: 1,
        to: 8,
        messages: vec![],
        heartbeats: vec![],
        heartbeat_responses: vec![],
    };
    assert!(m.step(bad).is_err());
}
