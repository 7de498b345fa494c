//! What a leader without a quorum does: it acknowledges no write and steps down (reads that
//! need a quorum fail, eventual reads still answer), and a burst of writes past its in-flight
//! bound is refused as Busy at once instead of queued.

use std::time::{Duration, Instant};

use ringraft_net::message as wire;

use crate::client_support::http::{eventually, get, put, value_of};
use crate::client_support::TestCluster;
use crate::{net_client, serial, settings};

#[test]
fn a_minority_cannot_write() {
    let _serial = serial();
    let mut c = TestCluster::start_with("minority", 3, &settings(1_500));
    let (first, _) = c
        .wait_status_leader(Duration::from_secs(3))
        .expect("no leader");
    // The node offers leadership transfer over the admin frame (the target's votes carry the
    // transfer flag, so the followers grant them though they heard from a leader recently).
    let to = if first == 1 { 2 } else { 1 };
    let mut admin = net_client(c.client_addr(first), 78);
    match admin
        .call(&wire::AdminRequest::TransferLeadership {
            group: 0,
            to: to.into(),
        })
        .unwrap()
    {
        wire::Message::AdminResponse(wire::AdminResponse::Done { .. }) => {}
        other => panic!("transfer refused: {other:?}"),
    }
    let moved = eventually(Duration::from_secs(3), || {
        (c.status_leader() == Some(to)).then_some(())
    });
    assert!(
        moved.is_some(),
        "leadership did not move from {first} to {to}"
    );
    let leader = to;
    let (s, _) = put(c.client_addr(leader), "before", "1").unwrap();
    assert_eq!(s, 200);
    // Keep only one node (the old leader: it must not accept writes on its own).
    for id in 1..=3 {
        if id != leader {
            c.kill_node(id);
        }
    }
    let t0 = Instant::now();
    for i in 0..3 {
        let r = put(c.client_addr(leader), &format!("minority-{i}"), "x");
        if let Some((s, body)) = r {
            assert!(s >= 500, "a lone node acknowledged a write: {s} {body}");
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(10));
    // It stepped down (CheckQuorum) and reports no leader.
    let stepped_down = eventually(Duration::from_secs(3), || {
        (c.status_leader().is_none()).then_some(())
    });
    assert!(
        stepped_down.is_some(),
        "the lone node still claims leadership"
    );
    // Reads that need a quorum fail too; an eventual read still answers locally.
    let (s, _) = get(c.client_addr(leader), "before", "linearizable").unwrap();
    assert!(s >= 500, "linearizable read without a quorum answered {s}");
    let (s, b) = get(c.client_addr(leader), "before", "eventual").unwrap();
    assert_eq!((s, value_of(&b).as_deref()), (200, Some("1")));
}

#[test]
fn writes_past_the_in_flight_bound_get_busy_not_queued() {
    let _serial = serial();
    let set = settings(1_500).with_env("RINGRAFT__RAFT__MAX_INFLIGHT_PROPOSALS", "4");
    let mut c = TestCluster::start_with("busy", 3, &set);
    let (leader, _) = c
        .wait_status_leader(Duration::from_secs(3))
        .expect("no leader");
    let mut nc = net_client(c.client_addr(leader), 90);
    // Without its followers nothing commits, so accepted writes stay in flight: at most 4 may
    // wait; the rest of a pipelined burst must be refused with Busy at once, not queued.
    for id in 1..=3 {
        if id != leader {
            c.kill_node(id);
        }
    }
    let ids: Vec<u64> = (0..200u32)
        .map(|i| {
            let req = wire::ClientRequest {
                shard: u32::MAX,
                command: wire::ClientCommand::Single(wire::ClientOp::Put {
                    key: format!("busy-{i}").into_bytes(),
                    value: vec![7; 256],
                    session: None,
                }),
            };
            nc.send(&req).unwrap()
        })
        .collect();
    nc.flush().unwrap();
    let (mut busy, mut other) = (0, 0);
    for id in ids {
        match nc.wait_for(id).unwrap().message {
            wire::Message::ClientResponse(wire::ClientResponse {
                outcome: wire::ClientOutcome::Single(o),
                ..
            }) => match o {
                wire::OpOutcome::Ok(r) => {
                    panic!("a write was acknowledged without a quorum: {r:?}")
                }
                wire::OpOutcome::Err(wire::ClientError::Busy { .. }) => busy += 1,
                // Timed out (in flight when the deadline came) or refused after stepping down.
                wire::OpOutcome::Err(
                    wire::ClientError::Timeout | wire::ClientError::NotLeader { .. },
                ) => other += 1,
                o => panic!("unexpected outcome {o:?}"),
            },
            m => panic!("unexpected answer {m:?}"),
        }
    }
    eprintln!("{busy} busy, {other} timed out or not leader");
    assert!(
        busy >= 150,
        "only {busy} of 200 writes past a bound of 4 were refused as Busy"
    );
    // With its followers back, the node serves normally again.
    for id in 1..=3 {
        if id != leader {
            c.start_node(id);
        }
    }
    let ok = eventually(Duration::from_secs(5), || {
        let l = c.status_leader()?;
        let (s, _) = put(c.client_addr(l), "after-busy", "1")?;
        (s == 200).then_some(())
    });
    assert!(
        ok.is_some(),
        "no write succeeded after the followers came back"
    );
}
