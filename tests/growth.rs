//! Growing and shrinking a live cluster of real `ringraft server` processes on loopback, with
//! a client writing throughout: 1 → 3 (a single node, two learners join, both promoted; node 1
//! never restarts), 3 → 5 (two more learners, `POST /promote`), then `ringraft members remove`
//! of a follower, `POST /members/remove` of the current leader (it hands leadership over
//! first) and `ringraft transfer-leader`. At the end every acknowledged write is read back,
//! linearizably and on every remaining replica.
//!
//! Ports come from the kernel, files from a fresh temporary directory; every wait is bounded
//! and every process is killed by PID when the test ends (also on panic).

mod client_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringraft::client::{Client, ClientConfig, Consistency};
use ringraft::node::http::{parse_response, write_request};
use serde_json::{json, Value};

use client_support::{free_ports, run_cli, BIN};

/// Longest any single wait of this test may take.
const WAIT: Duration = Duration::from_secs(20);

struct Nodes {
    dir: PathBuf,
    /// Client port of node i at index i - 1.
    ports: Vec<u16>,
    metrics: Vec<u16>,
    children: Vec<Option<Child>>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in self.children.iter_mut() {
            if let Some(mut c) = c.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Nodes {
    fn addr(&self, id: usize) -> String {
        format!("127.0.0.1:{}", self.ports[id - 1])
    }

    /// Starts node `id`: alone (`voters` empty) or as a learner joining `voters`.
    fn start(&mut self, id: usize, voters: &[usize]) {
        let mut members: Vec<(usize, u8)> = voters.iter().map(|v| (*v, 1)).collect();
        if !voters.is_empty() {
            members.push((id, 3));
        }
        self.start_with(id, &members);
    }

    /// Starts node `id` with `initial_cluster` = `members` as (id, role) (role 1: voter, 3:
    /// learner); alone when `members` is empty.
    fn start_with(&mut self, id: usize, members: &[(usize, u8)]) {
        let mut cluster = String::new();
        if members.is_empty() {
            cluster.push_str("initial_cluster_size = 1\n");
        } else {
            cluster.push_str("initial_cluster = [\n");
            for (m, role) in members {
                let status = if *role == 1 { 2 } else { 0 };
                cluster.push_str(&format!(
                    "  {{ id = {m}, address = \"{}\", role = {role}, status = {status} }},\n",
                    self.addr(*m)
                ));
            }
            cluster.push_str("]\n");
        }
        let text = format!(
            "[cluster]\nnode_id = {id}\nlisten_address = \"{addr}\"\n{cluster}\
             db_root_dir = \"{db}\"\nlog_dir = \"{logs}\"\n\n\
             [raft]\nelection_timeout_ms_min = 300\nelection_timeout_ms_max = 600\nheartbeat_interval_ms = 50\n\n[raft.read_consistency]\nlease_duration_ms = 200\n\n\
             [raft.persistence]\nstrategy = \"DiskFirst\"\nflush_policy = \"Immediate\"\nsegment_bytes = 4194304\n\n\
             [network]\nrequest_timeout_ms = 3000\n\n[monitoring]\nmetrics_port = {m}\n\n\
             [runtime]\ncores = 1\nshards_per_node = 1\n",
            addr = self.addr(id),
            m = self.metrics[id - 1],
            db = self.dir.join("db").display(),
            logs = self.dir.join("logs").display(),
        );
        let path = self.dir.join(format!("n{id}.toml"));
        std::fs::write(&path, text).unwrap();
        let child = Command::new(BIN)
            .args(["server", "--config"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children[id - 1] = Some(child);
    }
}

fn http(addr: &str, method: &str, target: &str, body: &str) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    let mut out = Vec::new();
    write_request(&mut out, method, target, addr, &[], body.as_bytes());
    s.write_all(&out).ok()?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&chunk[..n]);
        if let Some(p) = parse_response(&raw, 1 << 20).ok()? {
            return Some((
                p.status,
                serde_json::from_slice(&p.body).unwrap_or(Value::Null),
            ));
        }
    }
}

/// `/status` of node `id`: (its role in shard 0, the voters, the learners, its leader).
fn shard0(n: &Nodes, id: usize) -> Option<(String, Vec<u64>, Vec<u64>, u64)> {
    let (_, v) = http(&n.addr(id), "GET", "/status", "")?;
    let s = &v["shards"][0];
    let ids = |k: &str| -> Vec<u64> {
        s[k].as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    Some((
        s["role"].as_str()?.to_string(),
        ids("voters"),
        ids("learners"),
        s["leader_id"].as_u64()?,
    ))
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Promotes learner `id` through node `via` (retried while it catches up).
fn promote(n: &Nodes, via: usize, id: usize) {
    wait_until(&format!("node {id} promoted"), || {
        matches!(
            http(
                &n.addr(via),
                "POST",
                "/promote",
                &json!({ "node_id": id }).to_string()
            ),
            Some((200, _))
        )
    });
}

fn voters(n: &Nodes, id: usize) -> Vec<u64> {
    shard0(n, id).map(|s| s.1).unwrap_or_default()
}

#[test]
fn grow_1_to_3_to_5_then_remove_members_and_move_leadership_with_writes_throughout() {
    let dir = std::env::temp_dir().join(format!("ringraft-growth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = free_ports(10);
    let mut n = Nodes {
        dir,
        ports: p[..5].to_vec(),
        metrics: p[5..].to_vec(),
        children: (0..5).map(|_| None).collect(),
    };
    let started = Instant::now();

    // 1: a single node.
    n.start(1, &[]);
    wait_until("node 1 leads", || {
        shard0(&n, 1).is_some_and(|s| s.0 == "Leader")
    });

    // A writer runs throughout, recording what was acknowledged.
    let endpoints: Vec<String> = (1..=5).map(|i| n.addr(i)).collect();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let mut cfg = ClientConfig::with_endpoints(&endpoints);
        cfg.down_node_cooldown_ms = 200;
        std::thread::spawn(move || {
            let mut c = Client::new(cfg).unwrap();
            let mut i = 0u64;
            let mut failures = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = format!("w{i:05}");
                match c.put(&k, format!("{i}")) {
                    Ok(_) => acked.lock().unwrap().push(k),
                    Err(_) => failures += 1,
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            failures
        })
    };

    // 1 -> 3: two learners join node 1 (which keeps running), then both are promoted.
    n.start(2, &[1]);
    n.start(3, &[1, 2]);
    wait_until("nodes 2 and 3 join as learners", || {
        shard0(&n, 1).is_some_and(|s| s.2.contains(&2) && s.2.contains(&3))
    });
    promote(&n, 1, 2);
    promote(&n, 1, 3);
    wait_until("three voters", || voters(&n, 1).len() == 3);
    let one_to_three = started.elapsed();

    // 3 -> 5.
    n.start(4, &[1, 2, 3]);
    n.start(5, &[1, 2, 3, 4]);
    wait_until("nodes 4 and 5 join as learners", || {
        shard0(&n, 1).is_some_and(|s| s.2.contains(&4) && s.2.contains(&5))
    });
    promote(&n, 2, 4);
    promote(&n, 3, 5);
    wait_until("five voters", || voters(&n, 1).len() == 5);

    // Remove a follower with the CLI.
    let leader = shard0(&n, 1).unwrap().3 as usize;
    let victim = (2..=5).rev().find(|i| *i != leader).unwrap();
    let eps = endpoints.join(",");
    let (code, out, err) = run_cli(&eps, &["members", "remove", &victim.to_string()]);
    assert_eq!(code, 0, "{out} {err}");
    let alive: Vec<usize> = (1..=5).filter(|i| *i != victim).collect();
    wait_until("the follower is removed", || {
        !voters(&n, alive[0]).contains(&(victim as u64))
    });
    // An operator stops a removed node.
    if let Some(mut c) = n.children[victim - 1].take() {
        let _ = c.kill();
        let _ = c.wait();
    }

    // Remove the leader itself: it hands leadership to another voter first.
    let leader = shard0(&n, alive[0]).unwrap().3 as usize;
    let (st, v) = http(
        &n.addr(leader),
        "POST",
        "/members/remove",
        &json!({ "node_id": leader }).to_string(),
    )
    .unwrap();
    assert_eq!(st, 200, "{v}");
    let rest: Vec<usize> = alive.iter().copied().filter(|i| *i != leader).collect();
    wait_until("the old leader is removed and another leads", || {
        shard0(&n, rest[0])
            .is_some_and(|s| !s.1.contains(&(leader as u64)) && s.3 != 0 && s.3 != leader as u64)
    });

    if let Some(mut c) = n.children[leader - 1].take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    stop.store(true, Ordering::Relaxed);
    let failures = writer.join().unwrap();

    // Move leadership explicitly with the CLI (after the writer stopped).
    let now = shard0(&n, rest[0]).unwrap().3;
    let to = rest.iter().copied().find(|i| *i as u64 != now).unwrap();
    // The members left.
    let members: Vec<String> = rest.iter().map(|i| n.addr(*i)).collect();
    let (code, out, err) = run_cli(
        &members.join(","),
        &["transfer-leader", "--to", &to.to_string()],
    );
    assert_eq!(code, 0, "{out} {err}");
    wait_until("the new leader", || {
        shard0(&n, rest[0]).is_some_and(|s| s.3 == to as u64)
    });

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "writes kept flowing: {} acknowledged",
        acked.len()
    );

    // Nothing acknowledged is lost: linearizable reads through the remaining members, and the
    // last acknowledged write present on every remaining replica's own state.
    let mut cfg =
        ClientConfig::with_endpoints(&rest.iter().map(|i| n.addr(*i)).collect::<Vec<_>>());
    cfg.operation_timeout_ms = 10_000;
    let mut c = Client::connect(cfg).unwrap();
    let (items, _) = c
        .scan("w", Some(100_000), Consistency::Linearizable)
        .unwrap();
    let have: std::collections::HashSet<Vec<u8>> = items.into_iter().map(|kv| kv.key).collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|k| !have.contains(k.as_bytes()))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    let last = acked.last().unwrap();
    for id in &rest {
        wait_until(&format!("node {id} has the last write"), || {
            matches!(
                http(
                    &n.addr(*id),
                    "GET",
                    &format!("/get?key={last}&consistency=eventual"),
                    ""
                ),
                Some((200, _))
            )
        });
    }
    eprintln!(
        "1->3 in {one_to_three:?}; whole test {:?}; {} writes acknowledged, {failures} failed \
         (retried by the client budget, not lost)",
        started.elapsed(),
        acked.len()
    );
}

/// A node that joins through one member only is reached by a leader that never heard from it:
/// three voters bootstrap; node 4 names only the leader A in its config (so it announces itself
/// to A alone and knows no other member's address); leadership then moves to B, which learned
/// node 4's address only from the replicated configuration entry (and node 4 learned B's the
/// same way). A write through B must reach node 4's own state.
#[test]
fn a_joined_node_is_reached_by_a_leader_it_never_announced_itself_to() {
    let dir = std::env::temp_dir().join(format!("ringraft-join-addr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let p = free_ports(8);
    let mut n = Nodes {
        dir,
        ports: p[..4].to_vec(),
        metrics: p[4..].to_vec(),
        children: (0..4).map(|_| None).collect(),
    };
    let voters3 = [(1, 1), (2, 1), (3, 1)];
    for i in 1..=3 {
        n.start_with(i, &voters3);
    }
    let mut a = 0;
    wait_until("a leader", || {
        a = shard0(&n, 1).map_or(0, |s| s.3 as usize);
        a != 0 && shard0(&n, a).is_some_and(|s| s.0 == "Leader")
    });
    let b = (1..=3).find(|i| *i != a).unwrap();
    let eps: Vec<String> = (1..=3).map(|i| n.addr(i)).collect();
    let mut cfg = ClientConfig::with_endpoints(&eps);
    cfg.operation_timeout_ms = 10_000;
    let mut c = Client::connect(cfg).unwrap();
    c.put("before", "1").unwrap();

    n.start(4, &[a]);
    wait_until("node 4 joins as a learner through A", || {
        shard0(&n, a).is_some_and(|s| s.2.contains(&4))
    });
    // Node 4 holds the configuration entry (it knows B's address only from there): a learner
    // with an empty log knows no member but A and could not answer a new leader yet.
    wait_until("node 4 has its configuration entry", || {
        shard0(&n, 4).is_some_and(|s| s.2.contains(&4))
    });
    let (code, out, err) = run_cli(&eps.join(","), &["transfer-leader", "--to", &b.to_string()]);
    assert_eq!(code, 0, "{out} {err}");
    wait_until("B leads", || shard0(&n, b).is_some_and(|s| s.0 == "Leader"));
    c.put("after", "through-b").unwrap();
    wait_until("node 4 has the write made under B", || {
        http(&n.addr(4), "GET", "/get?key=after&consistency=eventual", "")
            .is_some_and(|(st, v)| st == 200 && v["value"] == "through-b")
    });
}
