//! The client CLI against real processes: exit codes (missing key → 1, unreachable cluster → 2
//! with a message a person understands), put/get/delete/cas/scan, `status --json`, `members`.

mod client_support;

use std::time::{Duration, Instant};

use client_support::{free_ports, run_cli, TestCluster};

#[test]
fn unreachable_cluster_exits_2_with_a_clear_message() {
    // Nothing listens on these ports.
    let p = free_ports(2);
    let (a, b) = (format!("127.0.0.1:{}", p[0]), format!("127.0.0.1:{}", p[1]));
    let started = Instant::now();
    let (code, stdout, stderr) = run_cli(&format!("{a},{b}"), &["get", "k"]);
    assert_eq!(code, 2, "stderr: {stderr}");
    assert!(stdout.is_empty());
    assert!(stderr.contains("cannot reach the cluster"), "{stderr}");
    assert!(stderr.contains(&a), "{stderr}");
    assert!(stderr.contains("is the cluster running?"), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a dead cluster must be reported promptly"
    );
    let (code, _, stderr) = run_cli(&a, &["status", "--json"]);
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = run_cli("not-an-endpoint", &["put", "k", "v"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("not-an-endpoint"), "{stderr}");
}

#[test]
fn cli_commands_against_a_cluster() {
    let c = TestCluster::start("cli", 3);
    let leader = c.wait_for_leader();

    assert_eq!(c.cli(&["put", "fruit:apple", "red"]).0, 0);
    assert_eq!(c.cli(&["put", "fruit:banana", "yellow"]).0, 0);
    assert_eq!(c.cli(&["put", "veg:leek", "green"]).0, 0);
    for consistency in ["linearizable", "lease", "eventual"] {
        let (code, out, err) = c.cli(&["get", "fruit:apple", "--consistency", consistency]);
        if consistency == "eventual" && out.is_empty() {
            // A follower may not have applied the put yet; eventual reads may be stale.
            assert_eq!(code, 1, "{err}");
            continue;
        }
        assert_eq!((code, out.as_str()), (0, "red\n"), "{consistency}: {err}");
    }

    let (code, out, err) = c.cli(&["get", "no-such-key"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("not found"), "{err}");

    let (code, _, err) = c.cli(&["cas", "fruit:apple", "red", "green"]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = c.cli(&["cas", "fruit:apple", "red", "blue"]);
    assert_eq!(code, 1, "the condition no longer holds");
    assert!(err.contains("green"), "{err}");
    assert_eq!(c.cli(&["get", "fruit:apple"]).1, "green\n");
    let (code, _, err) = c.cli(&["cas", "--by-version", "fresh", "0", "new"]);
    assert_eq!(code, 0, "version 0 = absent: {err}");
    let (code, _, _) = c.cli(&["cas", "--by-version", "fresh", "zero", "new"]);
    assert_eq!(code, 2);

    let (code, out, _) = c.cli(&["scan", "fruit:"]);
    assert_eq!(code, 0);
    assert_eq!(out, "fruit:apple\tgreen\nfruit:banana\tyellow\n");

    assert_eq!(c.cli(&["delete", "fruit:banana"]).0, 0);
    assert_eq!(c.cli(&["delete", "fruit:banana"]).0, 1);
    assert_eq!(c.cli(&["get", "fruit:banana"]).0, 1);

    let (code, out, err) = c.cli(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(j["nodes"].as_array().unwrap().len(), 3);
    assert!(j["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["reachable"] == true));
    let shard = &j["shards"][0];
    assert_eq!(shard["leader"], leader);
    assert!(shard["term"].as_u64().unwrap() >= 1);
    assert!(shard["commit_index"].as_u64().unwrap() >= 5);
    assert_eq!(shard["followers"].as_array().unwrap().len(), 2);
    assert!(shard["followers"][0]["lag"].is_u64());

    let (code, out, _) = c.cli(&["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("SHARD") && out.contains("LEADER"), "{out}");
    let (code, out, _) = c.cli(&["members"]);
    assert_eq!(code, 0);
    assert_eq!(out.matches("voter").count(), 3, "{out}");

    // The bench runs against the same cluster and reports the agreed JSON line.
    let (code, out, err) = c.cli(&[
        "bench",
        "mixed",
        "--total",
        "300",
        "--warmup",
        "0",
        "--inflight",
        "8",
        "--connections",
        "2",
        "--key-space",
        "50",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(j["op"], "mixed");
    assert_eq!(j["total"], 300);
    assert_eq!(j["ok"], 300);
    assert!(j["p50_us"].as_f64().unwrap() > 0.0);
    assert!(j["p99_us"].as_f64().unwrap() >= j["p50_us"].as_f64().unwrap());
}
