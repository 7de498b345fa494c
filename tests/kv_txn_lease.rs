//! Transactions, leases and cluster-wide scans against real `ringraft server` processes on
//! loopback: a transaction over HTTP (through a follower) and through the client, a refusal
//! naming the keys per shard, hash tags co-locating keys, concurrent transfers whose sum never
//! changes (every read of both keys is one atomic transaction), a key with a TTL that vanishes
//! on every replica and not early after the leader is killed, and `/scan` merged across shards.
//!
//! Every wait is bounded; every process is killed by PID when the cluster is dropped.

mod client_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ringraft::client::{Client, Consistency, Txn, TxnCheck, TxnCompare, TxnOp, TxnOpResult};
use ringraft::node::http::{parse_response, write_request};
use ringraft::node::runtime::shard_of_key;
use serde_json::{json, Value};

use client_support::TestCluster;

/// (status, JSON body) of one HTTP call to `addr`.
fn http(addr: &str, method: &str, target: &str, body: &str) -> (u16, Value) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let mut out = Vec::new();
    write_request(&mut out, method, target, addr, &[], body.as_bytes());
    s.write_all(&out).unwrap();
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "{addr} closed before answering {method} {target}");
        raw.extend_from_slice(&chunk[..n]);
        if let Some(p) = parse_response(&raw, 1 << 20).unwrap() {
            let v = serde_json::from_slice(&p.body).unwrap_or(Value::Null);
            return (p.status, v);
        }
    }
}

fn value(v: &TxnOpResult) -> i64 {
    match v {
        TxnOpResult::Get(Some(v)) => String::from_utf8_lossy(&v.value).parse().unwrap(),
        other => panic!("{other:?}"),
    }
}

fn get(key: &str) -> TxnOp {
    TxnOp::Get { key: key.into() }
}

fn put(key: &str, v: i64) -> TxnOp {
    TxnOp::Put {
        key: key.into(),
        value: v.to_string().into_bytes(),
    }
}

/// A follower of shard 0 (a node other than `leader`).
fn follower(c: &TestCluster, leader: u64) -> String {
    c.address(if leader == 1 { 2 } else { 1 })
}

#[test]
fn transactions_over_http_and_client_and_scans_across_shards() {
    let c = TestCluster::start_sharded("txn", 3, 2);
    let leader = c.wait_for_leader();
    let mut client = Client::connect(c.client_config()).unwrap();

    // Two keys in different shards: a transaction over both is refused, naming both.
    let (a, b) = (
        "acct-a",
        (0..64)
            .map(|i| format!("acct-{i}"))
            .find(|k| shard_of_key(k.as_bytes(), 2) != shard_of_key(b"acct-a", 2))
            .unwrap(),
    );
    let body = json!({"success": [{"op": "put", "key": a, "value": "1"},
                                  {"op": "put", "key": b, "value": "1"}]});
    let (st, v) = http(&follower(&c, leader), "POST", "/txn", &body.to_string());
    assert_eq!(st, 400, "{v}");
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains(a) && msg.contains(&b) && msg.contains("hash tag"),
        "{msg}"
    );
    assert_eq!(v["applied"], json!(false));

    // With a common hash tag they share a shard; set both atomically if both are absent,
    // through a follower (forwarded to the shard's leader).
    let (ta, tb) = ("{acct}a", "{acct}b");
    let body = json!({
        "compare": [{"key": ta, "exists": false}, {"key": tb, "value": null}],
        "success": [{"op": "put", "key": ta, "value": "100"}, {"op": "put", "key": tb, "value": "0"}],
        "failure": [{"op": "get", "key": ta}],
    });
    let (st, v) = http(&follower(&c, leader), "POST", "/txn", &body.to_string());
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["succeeded"], json!(true), "{v}");
    let version = v["version"].as_u64().unwrap();
    // Run again: the compares fail, the failure branch reads.
    let (st, v) = http(&c.address(3), "POST", "/txn", &body.to_string());
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["succeeded"], json!(false));
    assert_eq!(
        v["results"][0],
        json!({"op": "get", "found": true, "value": "100", "version": version})
    );

    // The client: version compare, then both keys read in one step.
    let r = client
        .txn(Txn {
            compares: vec![TxnCompare {
                key: ta.into(),
                check: TxnCheck::Version(version),
            }],
            success: vec![put(ta, 60), put(tb, 40), get(ta), get(tb)],
            failure: vec![],
        })
        .unwrap();
    assert!(r.succeeded);
    assert_eq!((value(&r.results[2]), value(&r.results[3])), (60, 40));

    // The CLI reads the same JSON from a file; exit 1 when the compares did not hold.
    let file = c.dir.join("txn.json");
    std::fs::write(
        &file,
        json!({"compare": [{"key": ta, "value": "60"}],
        "success": [{"op": "get", "key": tb}]})
        .to_string(),
    )
    .unwrap();
    let (code, out, err) = c.cli(&["txn", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"value\":\"40\""), "{out}");
    std::fs::write(
        &file,
        json!({"compare": [{"key": ta, "value": "61"}],
        "success": [{"op": "get", "key": tb}]})
        .to_string(),
    )
    .unwrap();
    assert_eq!(c.cli(&["txn", file.to_str().unwrap()]).0, 1);

    // Scans across both shards, merged in key order, the limit after the merge.
    for i in 0..10 {
        client.put(format!("scan/{i}"), format!("v{i}")).unwrap();
    }
    let shards: std::collections::BTreeSet<usize> = (0..10)
        .map(|i| shard_of_key(format!("scan/{i}").as_bytes(), 2))
        .collect();
    assert_eq!(shards.len(), 2, "the keys span both shards");
    let (st, v) = http(
        &c.address(2),
        "GET",
        "/scan?prefix=scan/&limit=4&keys_only=true&consistency=linearizable",
        "",
    );
    assert_eq!(st, 200, "{v}");
    let keys: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["scan/0", "scan/1", "scan/2", "scan/3"]);
    assert_eq!(v["more"], json!(true));
    assert!(v["items"][0].get("value").is_none());
    let (code, out, _) = c.cli(&["scan", "--prefix", "scan/", "--limit", "3", "--keys-only"]);
    assert_eq!(code, 0);
    assert_eq!(out, "scan/0\nscan/1\nscan/2\n");
}

/// Concurrent transfers between two keys: each writer reads both, then moves an amount with a
/// transaction that compares both versions (retrying when another writer got in first). A
/// reader takes both values in one transaction (one log index) over and over: every such
/// snapshot sums to the initial total, and so does the end state.
#[test]
fn concurrent_transfers_keep_the_sum() {
    const TOTAL: i64 = 1_000;
    const WRITERS: usize = 4;
    const TRANSFERS: usize = 15;
    let c = TestCluster::start("txnsum", 3);
    c.wait_for_leader();
    let (ka, kb) = ("{bank}alice", "{bank}bob");
    let mut client = Client::connect(c.client_config()).unwrap();
    client.put(ka, TOTAL.to_string()).unwrap();
    client.put(kb, "0").unwrap();
    let read_both = |cl: &mut Client| {
        let r = cl
            .txn(Txn {
                compares: vec![],
                success: vec![get(ka), get(kb)],
                failure: vec![],
            })
            .unwrap();
        let ver = |x: &TxnOpResult| match x {
            TxnOpResult::Get(Some(v)) => v.version,
            o => panic!("{o:?}"),
        };
        (
            value(&r.results[0]),
            value(&r.results[1]),
            ver(&r.results[0]),
            ver(&r.results[1]),
        )
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let cfg = c.client_config();
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut cl = Client::connect(cfg).unwrap();
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (a, b, _, _) = read_both(&mut cl);
                assert_eq!(a + b, TOTAL, "a transaction saw a half-done transfer");
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let cfg = c.client_config();
            std::thread::spawn(move || {
                let mut cl = Client::connect(cfg).unwrap();
                let mut conflicts = 0;
                for t in 0..TRANSFERS {
                    loop {
                        let (a, b, va, vb) = read_both(&mut cl);
                        let amount = ((w * 7 + t * 3) % 50) as i64 + 1;
                        let (from, to) = if (w + t) % 2 == 0 { (a, b) } else { (b, a) };
                        let (na, nb) = if (w + t) % 2 == 0 {
                            (from - amount, to + amount)
                        } else {
                            (to + amount, from - amount)
                        };
                        let r = cl
                            .txn(Txn {
                                compares: vec![
                                    TxnCompare {
                                        key: ka.into(),
                                        check: TxnCheck::Version(va),
                                    },
                                    TxnCompare {
                                        key: kb.into(),
                                        check: TxnCheck::Version(vb),
                                    },
                                ],
                                success: vec![put(ka, na), put(kb, nb)],
                                failure: vec![],
                            })
                            .unwrap();
                        if r.succeeded {
                            break;
                        }
                        conflicts += 1;
                    }
                }
                conflicts
            })
        })
        .collect();
    let conflicts: usize = writers.into_iter().map(|h| h.join().unwrap()).sum();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads = reader.join().unwrap();
    let (a, b, _, _) = read_both(&mut client);
    assert_eq!(a + b, TOTAL);
    assert_ne!(a, TOTAL, "transfers happened");
    eprintln!(
        "{} transfers, {conflicts} compare conflicts retried, {reads} atomic reads",
        WRITERS * TRANSFERS
    );
    // Plain gets agree with the transactional read.
    let ga = client
        .get_with(ka, Consistency::Linearizable)
        .unwrap()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ga.value).parse::<i64>().unwrap(),
        a
    );
}

/// Eventual read of `key` on node `id` (its own state, no forwarding).
fn present_on(c: &TestCluster, id: u16, key: &str) -> bool {
    let (st, v) = http(
        &c.address(id),
        "GET",
        &format!("/get?key={key}&consistency=eventual"),
        "",
    );
    assert!(st == 200 || st == 404, "{st} {v}");
    st == 200
}

#[test]
fn ttl_keys_vanish_on_every_replica_and_never_early_after_a_leader_kill() {
    const TTL_MS: u64 = 3_000;
    let mut c = TestCluster::start("lease", 3);
    let leader = c.wait_for_leader();
    let mut client = Client::connect(c.client_config()).unwrap();

    // Lease grant / attach / keepalive / list / revoke through the CLI and HTTP.
    let (code, out, err) = c.cli(&["lease", "grant", "30", "--key", "held"]);
    assert_eq!(code, 0, "{err}");
    let id: u64 = out.trim().parse().unwrap();
    assert_eq!(
        c.cli(&["put", "held", "x", "--lease", &id.to_string()]).0,
        0
    );
    let (st, v) = http(
        &follower(&c, leader),
        "POST",
        "/lease/keepalive",
        &json!({"id": id}).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = http(&c.address(3), "GET", "/lease/list", "");
    assert_eq!(st, 200, "{v}");
    let l = v["leases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == json!(id))
        .unwrap()
        .clone();
    assert_eq!(
        (l["ttl_s"].as_u64(), l["keys"].as_u64()),
        (Some(30), Some(1))
    );
    assert!(l["remaining_ms"].as_u64().unwrap() <= 30_000);
    let (code, out, _) = c.cli(&["lease", "revoke", &id.to_string()]);
    assert_eq!(code, 0);
    assert!(out.contains("1 keys deleted"), "{out}");
    assert!(
        client.get("held").unwrap().is_none(),
        "revoke deleted the key"
    );

    // A key with a TTL (HTTP `ttl_s`), and one through the client.
    let (st, v) = http(
        &follower(&c, leader),
        "POST",
        "/put",
        &json!({"key": "eph", "value": "1", "ttl_s": 3}).to_string(),
    );
    assert_eq!(st, 200, "{v}");
    let put_at = Instant::now();
    client.put_ttl("eph2", "2", TTL_MS).unwrap();
    for id in 1..=3 {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !present_on(&c, id, "eph") {
            assert!(Instant::now() < deadline, "node {id} never applied the put");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    // Kill the leader a second in: the next leader restarts every TTL from full.
    std::thread::sleep(Duration::from_millis(1_000));
    c.kill_node(leader as u16);
    let alive: Vec<u16> = (1..=3).filter(|i| *i as u64 != leader).collect();
    // Past the original deadline the keys are still there (a new leader needs an election,
    // then a full TTL).
    let original_deadline = put_at + Duration::from_millis(TTL_MS + 300);
    std::thread::sleep(original_deadline.saturating_duration_since(Instant::now()));
    let mut cfg = c.client_config();
    cfg.endpoints = alive.iter().map(|i| c.address(*i)).collect();
    let mut alive_client = Client::connect(cfg).unwrap();
    for k in ["eph", "eph2"] {
        assert!(
            alive_client
                .get_with(k, Consistency::Linearizable)
                .unwrap()
                .is_some(),
            "{k} expired early, before a full TTL on the new leader"
        );
    }
    // Then they vanish on every live replica.
    let deadline = Instant::now() + Duration::from_secs(15);
    for id in &alive {
        for k in ["eph", "eph2"] {
            while present_on(&c, *id, k) {
                assert!(Instant::now() < deadline, "{k} never expired on node {id}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let (st, v) = http(&c.address(alive[0]), "GET", "/lease/list", "");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["leases"], json!([]), "expired leases are gone");
}

/// Resident memory (KiB) and CPU ticks (user + system) of process `pid`.
fn rss_and_cpu(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime), counted from after the command name.
    let cpu = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    (rss, cpu)
}

/// Idle CPU (ticks over `secs`) of `pid`.
fn idle_cpu(pid: u32, secs: u64) -> u64 {
    let (_, a) = rss_and_cpu(pid);
    std::thread::sleep(Duration::from_secs(secs));
    rss_and_cpu(pid).1 - a
}

/// The cost of 10,000 leases (one key each) on a one-node cluster: resident memory and idle
/// CPU per second, against the same node before the leases (same run). Prints the figures;
/// run with `cargo test --release --test kv_txn_lease -- --ignored --nocapture`.
#[test]
#[ignore]
fn cost_of_ten_thousand_leases() {
    const LEASES: usize = 10_000;
    const IDLE_S: u64 = 10;
    let c = TestCluster::start("leasecost", 1);
    c.wait_for_leader();
    let pid = c.children[0].as_ref().unwrap().id();
    let mut client = Client::connect(c.client_config()).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let (rss0, _) = rss_and_cpu(pid);
    let cpu0 = idle_cpu(pid, IDLE_S);
    for i in 0..LEASES {
        client
            .put_ttl(format!("lease-key-{i:05}"), "v", 3_600_000)
            .unwrap();
    }
    std::thread::sleep(Duration::from_secs(2));
    let (rss1, _) = rss_and_cpu(pid);
    let cpu1 = idle_cpu(pid, IDLE_S);
    let (st, v) = http(&c.address(1), "GET", "/lease/list", "");
    assert_eq!(st, 200);
    assert_eq!(v["leases"].as_array().unwrap().len(), LEASES);
    let hz = 100.0; // USER_HZ on Linux
    println!(
        "10,000 leases: RSS {rss0} KiB -> {rss1} KiB (+{} KiB, {:.0} B per lease with its key); \
         idle CPU {:.2}% -> {:.2}% of one core",
        rss1.saturating_sub(rss0),
        (rss1.saturating_sub(rss0) * 1024) as f64 / LEASES as f64,
        cpu0 as f64 / hz / IDLE_S as f64 * 100.0,
        cpu1 as f64 / hz / IDLE_S as f64 * 100.0,
    );
}
