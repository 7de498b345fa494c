//! Nodes that missed the log catch up: a follower far behind installs the leader's snapshot
//! (and both keep their snapshots across a restart), and a learner joins, receives the log and
//! is promoted to voter.

use std::time::Duration;

use crate::client_support::http::{get, http, put, value_of};
use crate::client_support::TestCluster;
use crate::{applied, serial, settings};

#[test]
fn a_follower_far_behind_catches_up_from_a_snapshot_and_snapshots_survive_restart() {
    let _serial = serial();
    let set = settings(5_000)
        .with_env("RINGRAFT__RAFT__SNAPSHOT_THRESHOLD_ENTRIES", "10")
        .with_env("RINGRAFT__RAFT__SNAPSHOT_RETAIN_ENTRIES", "2");
    let mut c = TestCluster::start_with("snapshot", 3, &set);
    // Small thresholds (see below): a snapshot every 10 entries, 2 entries kept behind it.
    let (leader, _) = c
        .wait_status_leader(Duration::from_secs(3))
        .expect("no leader");
    let lagging = (1..=3).find(|i| *i != leader).unwrap();
    c.kill_node(lagging);
    for i in 0..40 {
        let (s, b) = put(c.client_addr(leader), &format!("s{i}"), &format!("v{i}")).unwrap();
        assert_eq!(s, 200, "{b}");
    }
    // The leader compacted its log: its snapshot file exists.
    let snap = c.dir.join(format!("db/{leader}/core-0/shard-0.snap"));
    assert!(snap.exists(), "no snapshot file at {}", snap.display());
    c.start_node(lagging);
    assert!(
        applied(&c, lagging, "s39", "v39", Duration::from_secs(5)),
        "node {lagging} did not catch up: {}",
        c.last_stderr(lagging)
    );
    let (s, b) = get(c.client_addr(lagging), "s0", "eventual").unwrap();
    assert_eq!((s, value_of(&b).as_deref()), (200, Some("v0")), "{b}");
    let log = c.log(lagging);
    assert!(
        log.contains("installed snapshot"),
        "node {lagging} caught up without a snapshot"
    );
    let lagging_snap = c.dir.join(format!("db/{lagging}/core-0/shard-0.snap"));
    assert!(
        lagging_snap.exists(),
        "the follower did not persist the snapshot it installed"
    );
    // Restart everything: state comes back from snapshot files plus the WAL tail.
    c.kill_all();
    c.start_all();
    let (leader, _) = c
        .wait_status_leader(Duration::from_secs(5))
        .expect("no leader after restart");
    for i in [0, 17, 39] {
        let (s, b) = get(c.client_addr(leader), &format!("s{i}"), "linearizable").unwrap();
        assert_eq!((s, value_of(&b)), (200, Some(format!("v{i}"))), "{b}");
    }
}

#[test]
fn a_learner_joins_catches_up_and_is_promoted_to_voter() {
    let _serial = serial();
    let mut c = TestCluster::start_with("learner", 3, &settings(5_000));
    let (leader, _) = c
        .wait_status_leader(Duration::from_secs(3))
        .expect("no leader");
    for i in 0..10 {
        let (s, b) = put(c.client_addr(leader), &format!("l{i}"), "v").unwrap();
        assert_eq!(s, 200, "{b}");
    }
    let four = c.add_learner();
    // It asks to join, the leader adds it as a learner, and it receives the log.
    assert!(
        applied(&c, four, "l9", "v", Duration::from_secs(8)),
        "learner did not catch up: {}",
        c.last_stderr(four)
    );
    let status = |c: &TestCluster| -> serde_json::Value {
        let (_, b) = http(c.metrics_addr(leader), "GET", "/status", "").unwrap();
        serde_json::from_str::<serde_json::Value>(&b).unwrap()["shards"][0].clone()
    };
    assert_eq!(status(&c)["learners"], serde_json::json!([four]));
    // The seed's promote command, sent to a follower: forwarded to the leader, committed.
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let (s, b) = http(
        c.client_addr(follower),
        "POST",
        "/promote",
        &format!(r#"{{"node_id": {four}}}"#),
    )
    .unwrap();
    assert_eq!(s, 200, "{b}");
    let shard = status(&c);
    assert_eq!(shard["voters"], serde_json::json!([1, 2, 3, four]));
    assert_eq!(shard["learners"], serde_json::json!([]));
    // Four voters: writes still commit (quorum 3).
    let (s, b) = put(c.client_addr(four), "after-promote", "1").unwrap();
    assert_eq!(s, 200, "{b}");
}
