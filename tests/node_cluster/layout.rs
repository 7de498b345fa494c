//! How a node is laid out by its configuration: a bad file or environment override stops it
//! with the key, the value and what is allowed; two cores and four shards route every key to
//! its shard's core across nodes (in MemFirst mode).

use std::process::Command;
use std::time::Duration;

use crate::client_support::http::{eventually, get, http, put, value_of};
use crate::client_support::{Settings, TestCluster, BIN};
use crate::{serial, settings};

#[test]
fn bad_configs_exit_nonzero_naming_key_value_and_allowed() {
    // A good configuration (written, never started) that each case breaks in one place.
    let c = TestCluster::configure("badcfg", 1, &settings(5_000));
    let dir = c.dir.clone();
    let good = std::fs::read_to_string(c.config_path(1)).unwrap();
    let cases = [
        (
            good.replace(
                "flush_policy = \"Immediate\"",
                "flush_policy = \"Immediate\"\nflush_wrokers = 2",
            ),
            vec!["flush_wrokers", "flush_workers"],
        ),
        (
            good.replace(
                "election_timeout_ms_min = 600",
                "election_timeout_ms_min = 5",
            ),
            vec!["raft.election_timeout_ms_min", "5", "between 20 and"],
        ),
        (
            good.replace("strategy = \"DiskFirst\"", "strategy = \"Sometimes\""),
            vec![
                "raft.persistence.strategy",
                "Sometimes",
                "DiskFirst",
                "MemFirst",
            ],
        ),
        (
            good.replace("node_id = 1", "node_id = \"one\""),
            vec!["cluster.node_id", "one"],
        ),
    ];
    for (i, (text, needles)) in cases.iter().enumerate() {
        let path = dir.join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .args(["server", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success(), "case {i} started anyway");
        let err = String::from_utf8_lossy(&out.stderr);
        for n in needles {
            assert!(err.contains(n), "case {i}: {n:?} missing from: {err}");
        }
    }
    // An environment override is checked the same way and named.
    let path = dir.join("good.toml");
    std::fs::write(&path, &good).unwrap();
    let out = Command::new(BIN)
        .args(["server"])
        .env("CONFIG_PATH", &path)
        .env("RINGRAFT__RAFT__PERSISTENCE__FLUSH_WORKERS", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("raft.persistence.flush_workers") && err.contains("between 1 and"),
        "{err}"
    );
}

#[test]
fn two_cores_and_four_shards_route_across_cores_and_nodes_in_mem_first() {
    let _serial = serial();
    let set = Settings {
        cores: 2,
        shards: 4,
        ..settings(5_000)
    }
    // MemFirst (acknowledge on a quorum in memory) exercises the other durability mode.
    .with_env("RINGRAFT__RAFT__PERSISTENCE__STRATEGY", "MemFirst");
    let c = TestCluster::start_with("cores", 3, &set);
    // Every shard gets a leader.
    let all_led = eventually(Duration::from_secs(5), || {
        let mut led = [false; 4];
        for id in 1..=3 {
            let (_, body) = http(c.metrics_addr(id), "GET", "/status", "")?;
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            for s in v["shards"].as_array()? {
                if s["role"] == "Leader" {
                    led[s["shard"].as_u64()? as usize] = true;
                }
            }
        }
        led.iter().all(|l| *l).then_some(())
    });
    assert!(all_led.is_some(), "not every shard elected a leader");
    // Shards live on both cores (shard s on core s % 2).
    let (_, body) = http(c.metrics_addr(1), "GET", "/status", "").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["persistence"], "MemFirst");
    for s in v["shards"].as_array().unwrap() {
        assert_eq!(
            s["core"].as_u64().unwrap(),
            s["shard"].as_u64().unwrap() % 2,
            "{s}"
        );
    }
    // Keys spread over all shards; each written through one node and read through another.
    for i in 0..16u16 {
        let (k, val) = (format!("key-{i}"), format!("val-{i}"));
        let (s, b) = put(c.client_addr(1 + i % 3), &k, &val).unwrap();
        assert_eq!(s, 200, "{k}: {b}");
        let (s, b) = get(c.client_addr(1 + (i + 1) % 3), &k, "linearizable").unwrap();
        assert_eq!((s, value_of(&b)), (200, Some(val)), "{k}: {b}");
    }
}
