//! A three-node cluster elects, serves HTTP and frame clients through every node (followers
//! forward writes), fails over when its leader is killed, brings a restarted node up to date,
//! keeps every acknowledged write across a whole-cluster SIGKILL, and exits 0 on SIGTERM.

use std::time::{Duration, Instant};

use ringraft_net::message as wire;

use crate::client_support::http::{eventually, get, http, put, value_of};
use crate::client_support::TestCluster;
use crate::{applied, net_call, net_client, serial, settings, WAIT_LIMIT};

#[test]
fn three_nodes_elect_serve_fail_over_and_keep_acknowledged_writes() {
    let _serial = serial();
    let mut c = TestCluster::start_with("cluster", 3, &settings(5_000));

    // Three nodes form and elect within 3 s.
    let (leader, took) = c
        .wait_status_leader(Duration::from_secs(3))
        .unwrap_or_else(|| panic!("no leader within 3 s; stderr of n1: {}", c.last_stderr(1)));
    eprintln!("leader {leader} elected after {took:?}");
    let log = c.log(leader);
    assert!(
        log.contains("Became leader"),
        "the seed's grep must find the leader"
    );

    // Writes via HTTP to every node (followers forward to the leader), reads per consistency.
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for id in 1..=3u16 {
        for i in 0..5 {
            let (k, v) = (format!("k{id}-{i}"), format!("v{id}-{i}"));
            let (status, body) = put(c.client_addr(id), &k, &v).unwrap();
            assert_eq!(status, 200, "put via node {id}: {body}");
            assert!(body.contains("\"ok\":true"), "{body}");
            acknowledged.push((k, v));
        }
    }
    for id in 1..=3u16 {
        for cons in ["linearizable", "lease"] {
            let (status, body) = get(c.client_addr(id), "k1-0", cons).unwrap();
            assert_eq!(status, 200, "{cons} get via node {id}: {body}");
            assert_eq!(value_of(&body).as_deref(), Some("v1-0"));
        }
        // Eventual reads see the write once the follower applied it.
        let seen = applied(&c, id, "k3-4", "v3-4", Duration::from_secs(3));
        assert!(seen, "node {id} never applied k3-4");
    }
    let (status, _) = get(c.client_addr(leader), "missing-key", "linearizable").unwrap();
    assert_eq!(status, 404);
    let (status, body) = http(c.client_addr(1), "POST", "/put", "{not json").unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("error"), "{body}");

    // The binary protocol: put and get through the leader, CAS, delete.
    let mut nc = net_client(c.client_addr(leader), 77);
    let session_put = || wire::ClientOp::Put {
        key: b"net-key".to_vec(),
        value: b"net-value".to_vec(),
        session: Some(wire::Session {
            client_id: 77,
            sequence: 1,
        }),
    };
    let o = net_call(&mut nc, session_put());
    let version = match o {
        wire::OpOutcome::Ok(wire::OpReply::Written { version }) => version,
        o => panic!("{o:?}"),
    };
    // A retried write with the same session answers the first result, applied once.
    let again = net_call(&mut nc, session_put());
    assert_eq!(
        again,
        wire::OpOutcome::Ok(wire::OpReply::Written { version })
    );
    let o = net_call(
        &mut nc,
        wire::ClientOp::Get {
            key: b"net-key".to_vec(),
            consistency: wire::Consistency::Linearizable,
        },
    );
    assert_eq!(
        o,
        wire::OpOutcome::Ok(wire::OpReply::Value(wire::Versioned {
            value: b"net-value".to_vec(),
            version
        }))
    );
    let o = net_call(
        &mut nc,
        wire::ClientOp::CompareAndSwap {
            key: b"net-key".to_vec(),
            expect: wire::CasExpect::Version(version),
            new_value: b"swapped".to_vec(),
            session: None,
        },
    );
    assert!(
        matches!(
            o,
            wire::OpOutcome::Ok(wire::OpReply::Cas { swapped: true, .. })
        ),
        "{o:?}"
    );
    acknowledged.push(("net-key".into(), "swapped".into()));
    // A follower answers a leader-only read with NotLeader and the leader's address.
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let mut fc = net_client(c.client_addr(follower), 78);
    let o = net_call(
        &mut fc,
        wire::ClientOp::Get {
            key: b"net-key".to_vec(),
            consistency: wire::Consistency::Linearizable,
        },
    );
    match o {
        wire::OpOutcome::Err(wire::ClientError::NotLeader { leader: Some(h) }) => {
            assert_eq!(h.node_id, u64::from(leader));
            assert_eq!(h.address, c.client_addr(leader).to_string());
        }
        o => panic!("{o:?}"),
    }
    drop((nc, fc));

    // SIGKILL the leader: a new one is elected and writes succeed again within 2 s.
    let old = leader;
    let t0 = Instant::now();
    c.kill_node(old);
    let survivor = (1..=3).find(|i| *i != old).unwrap();
    let ok = eventually(Duration::from_secs(2), || {
        let (s, _) = put(c.client_addr(survivor), "after-failover", "yes")?;
        (s == 200).then_some(())
    });
    let failover = t0.elapsed();
    assert!(
        ok.is_some(),
        "no successful write within 2 s of killing leader {old}"
    );
    eprintln!("write accepted {failover:?} after the leader was killed");
    acknowledged.push(("after-failover".into(), "yes".into()));
    let (new_leader, _) = c.wait_status_leader(Duration::from_secs(1)).unwrap();
    assert_ne!(new_leader, old);

    // The killed node restarts and catches up (it has the write made while it was down).
    c.start_node(old);
    assert!(
        applied(&c, old, "after-failover", "yes", Duration::from_secs(5)),
        "node {old} did not catch up; stderr: {}",
        c.last_stderr(old)
    );

    // The whole cluster restarts (SIGKILL: no clean shutdown) and keeps every acknowledged write.
    c.kill_all();
    c.start_all();
    let (leader, _) = c
        .wait_status_leader(Duration::from_secs(5))
        .expect("no leader after a whole-cluster restart");
    for (k, v) in &acknowledged {
        let (s, b) = get(c.client_addr(leader), k, "linearizable").unwrap();
        assert_eq!(s, 200, "{k} after restart: {b}");
        assert_eq!(value_of(&b).as_deref(), Some(v.as_str()), "{k}");
    }

    // SIGTERM: every node exits 0 (stop accepting, finish, sync).
    for id in 1..=3 {
        let st = c.terminate(id, WAIT_LIMIT);
        assert!(
            st.success(),
            "node {id} exited with {st:?}: {}",
            c.last_stderr(id)
        );
    }
}
