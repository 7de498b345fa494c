//! Real-process tests of the ringraft node: three `ringraft server` processes on loopback,
//! driven over HTTP (curl-style raw requests) and over the binary frame protocol.
//!
//! Each test uses its own port range and temporary directory, bounds every wait, and kills the
//! processes it started by PID (also on panic, through `Drop`). Timing claims (elect within 3 s,
//! fail over within 2 s) are asserted with those bounds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringraft_net::blocking_client::{BlockingClient, ClientConfig};
use ringraft_net::message::{self as wire, LocalIdentity, PeerRole};

const BIN: &str = env!("CARGO_BIN_EXE_ringraft");
/// The cluster tests run one at a time: they share two CPUs with everything else, and timing
/// bounds are part of what they assert.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
/// Longest time any single wait in these tests may take.
const WAIT_LIMIT: Duration = Duration::from_secs(15);

struct Node {
    id: u64,
    child: Option<Child>,
    config: PathBuf,
}

struct Cluster {
    dir: PathBuf,
    /// (client port, metrics port) of node i at index i - 1.
    ports: Vec<(u16, u16)>,
    nodes: Vec<Node>,
    /// Environment overrides given to every node.
    env: Vec<(String, String)>,
}

/// Ports the kernel reports free right now (loopback), `n` pairs: other test runs on this
/// machine (and other people's clusters) must not collide with ours.
fn free_ports(n: usize) -> Vec<(u16, u16)> {
    let listeners: Vec<std::net::TcpListener> = (0..2 * n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let p: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect();
    (0..n).map(|i| (p[2 * i], p[2 * i + 1])).collect()
}

fn config_text(dir: &Path, id: u64, ports: &[(u16, u16)], request_timeout_ms: u64) -> String {
    config_text_with(dir, id, ports, request_timeout_ms, "")
}

fn config_text_with(
    dir: &Path,
    id: u64,
    ports: &[(u16, u16)],
    request_timeout_ms: u64,
    extra: &str,
) -> String {
    let members: String = ports
        .iter()
        .enumerate()
        .map(|(i, (p, _))| {
            format!(
                "    {{ id = {}, address = \"127.0.0.1:{p}\", role = 1, status = 2 }},\n",
                i + 1
            )
        })
        .collect();
    format!(
        r#"[cluster]
node_id = {id}
listen_address = "127.0.0.1:{port}"
initial_cluster = [
{members}]
db_root_dir = "{db}"
log_dir = "{logs}"

[raft]
election_timeout_ms_min = 600
election_timeout_ms_max = 1200
heartbeat_interval_ms = 100
tick_interval_ms = 10

[raft.persistence]
strategy = "DiskFirst"
flush_policy = "Immediate"
segment_bytes = 4194304

[network]
request_timeout_ms = {request_timeout_ms}

[monitoring]
metrics_port = {mport}
{extra}
"#,
        port = ports[id as usize - 1].0,
        mport = ports[id as usize - 1].1,
        db = dir.join("db").display(),
        logs = dir.join("logs").display(),
    )
}

impl Cluster {
    fn new(name: &str, n: u64, request_timeout_ms: u64) -> Cluster {
        Cluster::new_with(name, n, request_timeout_ms, "", &[])
    }

    fn new_with(
        name: &str,
        n: u64,
        request_timeout_ms: u64,
        extra: &str,
        env: &[(&str, &str)],
    ) -> Cluster {
        let ports = free_ports(n as usize);
        let dir = std::env::temp_dir().join(format!("ringraft-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let nodes = (1..=n)
            .map(|id| {
                let config = dir.join(format!("n{id}.toml"));
                std::fs::write(
                    &config,
                    config_text_with(&dir, id, &ports, request_timeout_ms, extra),
                )
                .unwrap();
                Node {
                    id,
                    child: None,
                    config,
                }
            })
            .collect();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut c = Cluster {
            dir,
            ports,
            nodes,
            env,
        };
        for id in 1..=n {
            c.start(id);
        }
        c
    }

    fn start(&mut self, id: u64) {
        let node = &mut self.nodes[id as usize - 1];
        assert!(node.child.is_none(), "node {id} already running");
        let out = std::fs::File::create(self.dir.join(format!("n{id}.stderr"))).unwrap();
        let child = Command::new(BIN)
            .args(["server", "--config"])
            .arg(&node.config)
            .env("LOG_LEVEL", "info")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(out)
            .spawn()
            .unwrap();
        node.child = Some(child);
    }

    fn kill(&mut self, id: u64) {
        if let Some(mut c) = self.nodes[id as usize - 1].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status.
    fn terminate(&mut self, id: u64) -> std::process::ExitStatus {
        let mut c = self.nodes[id as usize - 1].child.take().expect("running");
        // SAFETY: plain kill(2) on the PID of a child we started and have not reaped.
        let rc = unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0);
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!("node {id} did not exit within {WAIT_LIMIT:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Adds (and starts) node `n + 1` as a learner joining the running cluster.
    fn add_learner(&mut self, request_timeout_ms: u64) -> u64 {
        let id = self.nodes.len() as u64 + 1;
        self.ports.extend(free_ports(1));
        let text = config_text(&self.dir, id, &self.ports, request_timeout_ms);
        let me = format!(
            "{{ id = {id}, address = \"127.0.0.1:{}\", role = 1, status = 2 }}",
            self.ports[id as usize - 1].0
        );
        let learner = me.replace("role = 1, status = 2", "role = 3, status = 0");
        assert!(text.contains(&me));
        let config = self.dir.join(format!("n{id}.toml"));
        std::fs::write(&config, text.replace(&me, &learner)).unwrap();
        self.nodes.push(Node {
            id,
            child: None,
            config,
        });
        self.start(id);
        id
    }

    fn client_addr(&self, id: u64) -> SocketAddr {
        format!("127.0.0.1:{}", self.ports[id as usize - 1].0)
            .parse()
            .unwrap()
    }

    fn metrics_addr(&self, id: u64) -> SocketAddr {
        format!("127.0.0.1:{}", self.ports[id as usize - 1].1)
            .parse()
            .unwrap()
    }

    fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.id)
            .collect()
    }

    /// The node that reports itself leader of shard 0 (among running nodes), if any.
    fn leader(&self) -> Option<u64> {
        for id in self.running() {
            if let Some((200, body)) = http(self.metrics_addr(id), "GET", "/status", None) {
                let v: serde_json::Value = serde_json::from_str(&body).ok()?;
                if v["shards"][0]["role"] == "Leader" {
                    return Some(id);
                }
            }
        }
        None
    }

    fn wait_leader(&self, limit: Duration) -> Option<(u64, Duration)> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(l) = self.leader() {
                return Some((l, t0.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn stderr_of(&self, id: u64) -> String {
        std::fs::read_to_string(self.dir.join(format!("n{id}.stderr"))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in self.running() {
            self.kill(id);
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("cluster files kept in {}", self.dir.display());
        }
    }
}

/// One HTTP/1.1 request on a fresh connection; `None` if the node could not be reached.
fn http(addr: SocketAddr, method: &str, target: &str, body: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(8))).ok()?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn put(addr: SocketAddr, key: &str, value: &str) -> Option<(u16, String)> {
    http(
        addr,
        "POST",
        "/put",
        Some(&format!(r#"{{"key": "{key}", "value": "{value}"}}"#)),
    )
}

fn get(addr: SocketAddr, key: &str, consistency: &str) -> Option<(u16, String)> {
    http(
        addr,
        "GET",
        &format!("/get?key={key}&consistency={consistency}"),
        None,
    )
}

fn value_of(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["value"].as_str().map(str::to_string)
}

/// Retries `f` until it returns Some or `limit` passes.
fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t0.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn net_client(addr: SocketAddr, client_id: u64) -> BlockingClient {
    let cfg = ClientConfig::new(LocalIdentity {
        cluster_id: 1,
        role: PeerRole::Client { client_id },
    });
    BlockingClient::connect(addr, cfg).unwrap()
}

fn net_call(c: &mut BlockingClient, op: wire::ClientOp) -> wire::OpOutcome {
    let req = wire::ClientRequest {
        shard: u32::MAX,
        command: wire::ClientCommand::Single(op),
    };
    match c.call(&req).unwrap() {
        wire::Message::ClientResponse(wire::ClientResponse {
            outcome: wire::ClientOutcome::Single(o),
            ..
        }) => o,
        other => panic!("unexpected answer {other:?}"),
    }
}

#[test]
fn three_nodes_elect_serve_fail_over_and_keep_acknowledged_writes() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new("cluster", 3, 5_000);

    // Three nodes form and elect within 3 s.
    let (leader, took) = c
        .wait_leader(Duration::from_secs(3))
        .unwrap_or_else(|| panic!("no leader within 3 s; stderr of n1: {}", c.stderr_of(1)));
    eprintln!("leader {leader} elected after {took:?}");
    let log = std::fs::read_to_string(c.dir.join(format!("logs/{leader}/d.log"))).unwrap();
    assert!(
        log.contains("Became leader"),
        "the seed's grep must find the leader"
    );

    // Writes via HTTP to every node (followers forward to the leader), reads per consistency.
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for id in 1..=3u64 {
        for i in 0..5 {
            let (k, v) = (format!("k{id}-{i}"), format!("v{id}-{i}"));
            let (status, body) = put(c.client_addr(id), &k, &v).unwrap();
            assert_eq!(status, 200, "put via node {id}: {body}");
            assert!(body.contains("\"ok\":true"), "{body}");
            acknowledged.push((k, v));
        }
    }
    for id in 1..=3u64 {
        for cons in ["linearizable", "lease"] {
            let (status, body) = get(c.client_addr(id), "k1-0", cons).unwrap();
            assert_eq!(status, 200, "{cons} get via node {id}: {body}");
            assert_eq!(value_of(&body).as_deref(), Some("v1-0"));
        }
        // Eventual reads see the write once the follower applied it.
        let seen = eventually(Duration::from_secs(3), || {
            let (s, b) = get(c.client_addr(id), "k3-4", "eventual")?;
            (s == 200 && value_of(&b).as_deref() == Some("v3-4")).then_some(())
        });
        assert!(seen.is_some(), "node {id} never applied k3-4");
    }
    let (status, _) = get(c.client_addr(leader), "missing-key", "linearizable").unwrap();
    assert_eq!(status, 404);
    let (status, body) = http(c.client_addr(1), "POST", "/put", Some("{not json")).unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("error"), "{body}");

    // The binary protocol: put and get through the leader, CAS, delete.
    let mut nc = net_client(c.client_addr(leader), 77);
    let o = net_call(
        &mut nc,
        wire::ClientOp::Put {
            key: b"net-key".to_vec(),
            value: b"net-value".to_vec(),
            session: Some(wire::Session {
                client_id: 77,
                sequence: 1,
            }),
        },
    );
    let version = match o {
        wire::OpOutcome::Ok(wire::OpReply::Written { version }) => version,
        o => panic!("{o:?}"),
    };
    // A retried write with the same session answers the first result, applied once.
    let again = net_call(
        &mut nc,
        wire::ClientOp::Put {
            key: b"net-key".to_vec(),
            value: b"net-value".to_vec(),
            session: Some(wire::Session {
                client_id: 77,
                sequence: 1,
            }),
        },
    );
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
            assert_eq!(h.node_id, leader);
            assert_eq!(h.address, c.client_addr(leader).to_string());
        }
        o => panic!("{o:?}"),
    }
    drop((nc, fc));

    // SIGKILL the leader: a new one is elected and writes succeed again within 2 s.
    let old = leader;
    let t0 = Instant::now();
    c.kill(old);
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
    let (new_leader, _) = c.wait_leader(Duration::from_secs(1)).unwrap();
    assert_ne!(new_leader, old);

    // The killed node restarts and catches up (it has the write made while it was down).
    c.start(old);
    let caught_up = eventually(Duration::from_secs(5), || {
        let (s, b) = get(c.client_addr(old), "after-failover", "eventual")?;
        (s == 200 && value_of(&b).as_deref() == Some("yes")).then_some(())
    });
    assert!(
        caught_up.is_some(),
        "node {old} did not catch up; stderr: {}",
        c.stderr_of(old)
    );

    // The whole cluster restarts (SIGKILL: no clean shutdown) and keeps every acknowledged write.
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        c.start(id);
    }
    let (leader, _) = c
        .wait_leader(Duration::from_secs(5))
        .expect("no leader after a whole-cluster restart");
    for (k, v) in &acknowledged {
        let (s, b) = get(c.client_addr(leader), k, "linearizable").unwrap();
        assert_eq!(s, 200, "{k} after restart: {b}");
        assert_eq!(value_of(&b).as_deref(), Some(v.as_str()), "{k}");
    }

    // SIGTERM: every node exits 0 (stop accepting, finish, sync).
    for id in 1..=3 {
        let st = c.terminate(id);
        assert!(
            st.success(),
            "node {id} exited with {st:?}: {}",
            c.stderr_of(id)
        );
    }
}

#[test]
fn a_minority_cannot_write() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new("minority", 3, 1_500);
    let (first, _) = c.wait_leader(Duration::from_secs(3)).expect("no leader");
    // The node offers leadership transfer over the admin frame (the target's votes carry the
    // transfer flag, so the followers grant them though they heard from a leader recently).
    let to = if first == 1 { 2 } else { 1 };
    let mut admin = net_client(c.client_addr(first), 78);
    match admin
        .call(&wire::AdminRequest::TransferLeadership { group: 0, to })
        .unwrap()
    {
        wire::Message::AdminResponse(wire::AdminResponse::Done { .. }) => {}
        other => panic!("transfer refused: {other:?}"),
    }
    let moved = eventually(Duration::from_secs(3), || {
        (c.leader() == Some(to)).then_some(())
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
            c.kill(id);
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
        (c.leader().is_none()).then_some(())
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
fn bad_configs_exit_nonzero_naming_key_value_and_allowed() {
    let dir = std::env::temp_dir().join(format!("ringraft-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = config_text(&dir, 1, &free_ports(1), 5_000);
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
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_cores_and_four_shards_route_across_cores_and_nodes_in_mem_first() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let c = Cluster::new_with(
        "cores",
        3,
        5_000,
        "[runtime]\ncores = 2\nshards_per_node = 4\n",
        // MemFirst (acknowledge on a quorum in memory) exercises the other durability mode.
        &[("RINGRAFT__RAFT__PERSISTENCE__STRATEGY", "MemFirst")],
    );
    // Every shard gets a leader.
    let all_led = eventually(Duration::from_secs(5), || {
        let mut led = [false; 4];
        for id in 1..=3 {
            let (_, body) = http(c.metrics_addr(id), "GET", "/status", None)?;
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
    let (_, body) = http(c.metrics_addr(1), "GET", "/status", None).unwrap();
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
    for i in 0..16u64 {
        let (k, val) = (format!("key-{i}"), format!("val-{i}"));
        let (s, b) = put(c.client_addr(1 + i % 3), &k, &val).unwrap();
        assert_eq!(s, 200, "{k}: {b}");
        let (s, b) = get(c.client_addr(1 + (i + 1) % 3), &k, "linearizable").unwrap();
        assert_eq!((s, value_of(&b)), (200, Some(val)), "{k}: {b}");
    }
}

#[test]
fn a_follower_far_behind_catches_up_from_a_snapshot_and_snapshots_survive_restart() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new_with(
        "snapshot",
        3,
        5_000,
        "",
        &[
            ("RINGRAFT__RAFT__SNAPSHOT_THRESHOLD_ENTRIES", "10"),
            ("RINGRAFT__RAFT__SNAPSHOT_RETAIN_ENTRIES", "2"),
        ],
    );
    // Small thresholds (see below): a snapshot every 10 entries, 2 entries kept behind it.
    let (leader, _) = c.wait_leader(Duration::from_secs(3)).expect("no leader");
    let lagging = (1..=3).find(|i| *i != leader).unwrap();
    c.kill(lagging);
    for i in 0..40 {
        let (s, b) = put(c.client_addr(leader), &format!("s{i}"), &format!("v{i}")).unwrap();
        assert_eq!(s, 200, "{b}");
    }
    // The leader compacted its log: its snapshot file exists.
    let snap = c.dir.join(format!("db/{leader}/core-0/shard-0.snap"));
    assert!(snap.exists(), "no snapshot file at {}", snap.display());
    c.start(lagging);
    let caught_up = eventually(Duration::from_secs(5), || {
        let (s, b) = get(c.client_addr(lagging), "s39", "eventual")?;
        (s == 200 && value_of(&b).as_deref() == Some("v39")).then_some(())
    });
    assert!(
        caught_up.is_some(),
        "node {lagging} did not catch up: {}",
        c.stderr_of(lagging)
    );
    let (s, b) = get(c.client_addr(lagging), "s0", "eventual").unwrap();
    assert_eq!((s, value_of(&b).as_deref()), (200, Some("v0")), "{b}");
    let log = std::fs::read_to_string(c.dir.join(format!("logs/{lagging}/d.log"))).unwrap();
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
    for id in 1..=3 {
        c.kill(id);
    }
    for id in 1..=3 {
        c.start(id);
    }
    let (leader, _) = c
        .wait_leader(Duration::from_secs(5))
        .expect("no leader after restart");
    for i in [0, 17, 39] {
        let (s, b) = get(c.client_addr(leader), &format!("s{i}"), "linearizable").unwrap();
        assert_eq!((s, value_of(&b)), (200, Some(format!("v{i}"))), "{b}");
    }
}

#[test]
fn writes_past_the_in_flight_bound_get_busy_not_queued() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new_with(
        "busy",
        3,
        1_500,
        "",
        &[("RINGRAFT__RAFT__MAX_INFLIGHT_PROPOSALS", "4")],
    );
    let (leader, _) = c.wait_leader(Duration::from_secs(3)).expect("no leader");
    let mut nc = net_client(c.client_addr(leader), 90);
    // Without its followers nothing commits, so accepted writes stay in flight: at most 4 may
    // wait; the rest of a pipelined burst must be refused with Busy at once, not queued.
    for id in 1..=3 {
        if id != leader {
            c.kill(id);
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
            c.start(id);
        }
    }
    let ok = eventually(Duration::from_secs(5), || {
        let l = c.leader()?;
        let (s, _) = put(c.client_addr(l), "after-busy", "1")?;
        (s == 200).then_some(())
    });
    assert!(
        ok.is_some(),
        "no write succeeded after the followers came back"
    );
}

#[test]
fn a_learner_joins_catches_up_and_is_promoted_to_voter() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut c = Cluster::new("learner", 3, 5_000);
    let (leader, _) = c.wait_leader(Duration::from_secs(3)).expect("no leader");
    for i in 0..10 {
        let (s, b) = put(c.client_addr(leader), &format!("l{i}"), "v").unwrap();
        assert_eq!(s, 200, "{b}");
    }
    let four = c.add_learner(5_000);
    // It asks to join, the leader adds it as a learner, and it receives the log.
    let caught_up = eventually(Duration::from_secs(8), || {
        let (s, b) = get(c.client_addr(four), "l9", "eventual")?;
        (s == 200 && value_of(&b).as_deref() == Some("v")).then_some(())
    });
    assert!(
        caught_up.is_some(),
        "learner did not catch up: {}",
        c.stderr_of(four)
    );
    let status = |c: &Cluster| -> serde_json::Value {
        let (_, b) = http(c.metrics_addr(leader), "GET", "/status", None).unwrap();
        serde_json::from_str::<serde_json::Value>(&b).unwrap()["shards"][0].clone()
    };
    assert_eq!(status(&c)["learners"], serde_json::json!([four]));
    // The seed's promote command, sent to a follower: forwarded to the leader, committed.
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let (s, b) = http(
        c.client_addr(follower),
        "POST",
        "/promote",
        Some(&format!(r#"{{"node_id": {four}}}"#)),
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
