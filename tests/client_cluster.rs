//! The client library against real processes on loopback: every operation through the
//! blocking and the async client, exactly-once writes (a retried session is answered with its
//! first result), failover after SIGKILL of the leader, and a recorded history that
//! `ringraft check` accepts as linearizable.

mod client_support;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringraft::client::op::{interpret, to_request, Answer};
use ringraft::client::{
    AsyncClient, Client, ClientOp as Op, Consistency, Error, HistoryRecorder, Reply,
};
use ringraft_net::blocking_client::{BlockingClient, ClientConfig as NetConfig};
use ringraft_net::message::{LocalIdentity, Message, PeerRole, Session};

use client_support::{TestCluster, BIN};

#[test]
fn operations_sessions_and_async_client() {
    let c = TestCluster::start("ops", 3);
    let leader = c.wait_for_leader();
    let mut client = Client::connect(c.client_config()).unwrap();
    assert_eq!(client.topology().shard_count(), Some(1));

    // Put / get in every consistency / delete / cas / scan.
    let v1 = client.put("user:1", "ada").unwrap();
    let v2 = client.put("user:2", "grace").unwrap();
    assert!(v2 > v1, "versions are log indexes and grow");
    let got = client
        .get_with("user:1", Consistency::Linearizable)
        .unwrap()
        .unwrap();
    assert_eq!((got.value.as_slice(), got.version), (&b"ada"[..], v1));
    assert_eq!(
        client
            .get_with("user:2", Consistency::Lease)
            .unwrap()
            .unwrap()
            .value,
        b"grace"
    );
    assert!(client.get("user:3").unwrap().is_none());

    let r = client.cas("user:1", Some(b"ada"), "lovelace").unwrap();
    assert!(r.swapped);
    let r = client.cas("user:1", Some(b"ada"), "again").unwrap();
    assert!(!r.swapped);
    assert_eq!(r.current.unwrap().value, b"lovelace");
    let r = client.cas("user:9", None, "new").unwrap();
    assert!(r.swapped, "expected None = the key must be absent");
    let ver = client.get("user:9").unwrap().unwrap().version;
    assert!(!client.cas_version("user:9", ver + 1, "x").unwrap().swapped);
    assert!(client.cas_version("user:9", ver, "y").unwrap().swapped);

    let (items, more) = client
        .scan("user:", None, Consistency::Linearizable)
        .unwrap();
    let keys: Vec<&[u8]> = items.iter().map(|kv| kv.key.as_slice()).collect();
    assert_eq!(keys, vec![&b"user:1"[..], b"user:2", b"user:9"]);
    assert!(!more);
    let (items, more) = client.scan("user:", Some(2), Consistency::Lease).unwrap();
    assert_eq!((items.len(), more), (2, true));

    assert!(client.delete("user:2").unwrap());
    assert!(!client.delete("user:2").unwrap());
    assert!(client.get("user:2").unwrap().is_none());

    // Pipelined batch.
    let ops: Vec<Op> = (0..300)
        .map(|i| Op::Put {
            key: format!("batch:{i:04}").into_bytes(),
            value: format!("{i}").into_bytes(),
            session: None,
        })
        .collect();
    let results = client.execute_many(ops);
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(Reply::Written { .. }))));
    let (items, _) = client
        .scan("batch:", Some(1000), Consistency::Linearizable)
        .unwrap();
    assert_eq!(items.len(), 300);

    // Invalid requests are typed and final.
    let huge = vec![b'k'; 2 << 20];
    match client.put(&huge, "v") {
        Err(Error::InvalidRequest(_)) | Err(Error::Protocol { .. }) => {}
        other => panic!("an oversized key must be refused, got {other:?}"),
    }

    // Exactly-once: the same (client_id, sequence) sent twice is applied once and answered
    // with the first result; a new sequence is a new write.
    let net = NetConfig::new(LocalIdentity {
        cluster_id: 1,
        role: PeerRole::Client { client_id: 777 },
    });
    let mut raw = BlockingClient::connect(c.address(leader as u16).parse().unwrap(), net).unwrap();
    let session = Session {
        client_id: 777,
        sequence: 1,
    };
    let put = |v: &str| Op::Put {
        key: b"once".to_vec(),
        value: v.as_bytes().to_vec(),
        session: None,
    };
    let mut send = |op: &Op, s: Session| match raw.call(&to_request(op, 0, Some(s))).unwrap() {
        Message::ClientResponse(r) => match interpret(op, r.outcome) {
            Answer::Done(Reply::Written { version }) => version,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    let first = send(&put("a"), session);
    let retry = send(&put("a"), session);
    assert_eq!(
        first, retry,
        "a retried session is answered with its first result"
    );
    let second = send(
        &put("b"),
        Session {
            client_id: 777,
            sequence: 2,
        },
    );
    assert!(second > first);
    // Replaying sequence 1 with another value still changes nothing.
    assert_eq!(send(&put("zzz"), session), first);
    assert_eq!(client.get("once").unwrap().unwrap().value, b"b");

    // The async client: 200 concurrent puts from 50 tasks on one client, then reads.
    let cfg = c.client_config();
    let ex = glommio::LocalExecutorBuilder::default().make().unwrap();
    let n = ex.run(async move {
        let ac = AsyncClient::connect(cfg).await.unwrap();
        let tasks: Vec<_> = (0..50)
            .map(|t| {
                let ac = ac.clone();
                glommio::spawn_local(async move {
                    for i in 0..4 {
                        ac.put(format!("async:{t}:{i}"), format!("{}", t * 10 + i))
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let v = ac
            .get("async:49:3", Consistency::Linearizable)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.value, b"493");
        let r = ac.cas("async:0:0", Some(b"0"), "zero").await.unwrap();
        assert!(r.swapped);
        assert!(ac.delete("async:0:1").await.unwrap());
        let (items, more) = ac
            .scan("async:1:", 10, Consistency::Linearizable)
            .await
            .unwrap();
        assert_eq!((items.len(), more), (4, false));
        let v = ac
            .get("async:1:0", Consistency::Lease)
            .await
            .unwrap()
            .unwrap();
        assert!(
            ac.cas_version("async:1:0", v.version, "x")
                .await
                .unwrap()
                .swapped
        );
        ac.close();
        ac.metrics()
            .frames_out
            .load(std::sync::atomic::Ordering::Relaxed)
    });
    assert!(n >= 203, "every request went over the wire ({n} frames)");
    let (items, _) = client
        .scan("async:", Some(1000), Consistency::Linearizable)
        .unwrap();
    assert_eq!(items.len(), 199);
}

/// Writers keep going while the leader of shard 0 is SIGKILLed; every key holds a value that
/// was written, the status shows the dead node, and the recorded history is linearizable per
/// `ringraft check`. Four shards, so routing by key to each shard's leader is exercised too.
#[test]
fn failover_after_sigkill_of_the_leader_and_history_check() {
    // Four shards: keys route to different Raft groups, whose leaders may differ.
    let mut c = TestCluster::start_sharded("failover", 3, 4);
    let leader = c.wait_for_leader();
    let history = c.dir.join("history.jsonl");
    let recorder = Arc::new(HistoryRecorder::create(&history).unwrap());

    const WRITERS: usize = 3;
    const KEYS: usize = 8;
    let stop_at = Instant::now() + Duration::from_secs(6);
    let workers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let cfg = c.client_config();
            let rec = recorder.clone();
            std::thread::spawn(move || {
                let mut client = Client::new(cfg).unwrap().with_recorder(rec);
                let mut acked = Vec::new();
                let mut i = 0u64;
                while Instant::now() < stop_at {
                    let key = format!("k{}", (i as usize + w) % KEYS);
                    let value = format!("w{w}-{i}");
                    let op = match i % 3 {
                        0 | 1 => Op::Put {
                            key: key.clone().into_bytes(),
                            value: value.clone().into_bytes(),
                            session: None,
                        },
                        _ => Op::Get {
                            key: key.clone().into_bytes(),
                            consistency: Consistency::Linearizable,
                        },
                    };
                    match client.execute(op) {
                        Ok(Reply::Written { .. }) => acked.push((key, value, Instant::now())),
                        Ok(_) => {}
                        Err(e) => panic!("writer {w}: operation {i} failed: {e}"),
                    }
                    i += 1;
                    std::thread::sleep(Duration::from_millis(5));
                }
                acked
            })
        })
        .collect();

    std::thread::sleep(Duration::from_millis(1500));
    c.kill_node(leader as u16);
    let killed = Instant::now();

    let mut acked = Vec::new();
    for w in workers {
        acked.extend(w.join().expect("a writer failed"));
    }
    let after_kill = acked.iter().filter(|(_, _, t)| *t > killed).count();
    assert!(
        after_kill >= WRITERS,
        "writes succeed again after the leader died ({after_kill} acknowledged after the kill)"
    );

    // Every key holds a value some writer put (the history check below proves the order).
    let mut client = Client::connect(c.client_config()).unwrap();
    assert_eq!(client.topology().shard_count(), Some(4));
    let new_leader = client.cluster_status().unwrap().shards[0].leader.unwrap();
    assert_ne!(new_leader, leader, "a new leader was elected");
    let first_after = acked
        .iter()
        .filter(|(_, _, t)| *t > killed)
        .map(|(_, _, t)| t.duration_since(killed))
        .min()
        .unwrap();
    eprintln!("first acknowledged write {first_after:?} after the leader was killed");
    for k in 0..KEYS {
        let key = format!("k{k}");
        let v = client
            .get_with(&key, Consistency::Linearizable)
            .unwrap()
            .expect("every key was written");
        let value = String::from_utf8(v.value).unwrap();
        let (w, i) = value
            .strip_prefix('w')
            .and_then(|r| r.split_once('-'))
            .unwrap_or_else(|| panic!("{key} = {value:?} was never written"));
        let (w, i): (usize, usize) = (w.parse().unwrap(), i.parse().unwrap());
        assert!(
            (i + w) % KEYS == k && i % 3 != 2,
            "{key} = {value:?} was never written to this key"
        );
    }

    // A prefix scan covers every shard: the client scans each and merges in key order.
    let (items, more) = client.scan("k", None, Consistency::Linearizable).unwrap();
    let keys: Vec<String> = items
        .iter()
        .map(|kv| String::from_utf8(kv.key.clone()).unwrap())
        .collect();
    let want: Vec<String> = (0..KEYS).map(|k| format!("k{k}")).collect();
    assert_eq!((keys, more), (want, false), "keys of 4 shards, merged");
    let (items, more) = client.scan("k", Some(3), Consistency::Lease).unwrap();
    assert_eq!((items.len(), more), (3, true));

    // The CLI's status shows the dead node and the new leader.
    let (code, out, err) = c.cli(&["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(j["shards"][0]["leader"], new_leader);
    let dead = j["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["address"] == c.address(leader as u16).as_str())
        .unwrap();
    assert_eq!(dead["reachable"], false, "{out}");
    assert!(
        dead["error"].as_str().unwrap().contains("unreachable"),
        "{out}"
    );

    recorder.flush().unwrap();
    assert!(recorder.events() > 100, "{} events", recorder.events());
    drop(recorder);
    let out = Command::new(BIN)
        .arg("check")
        .arg(&history)
        .args(["--budget-ms", "20000"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "ringraft check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
