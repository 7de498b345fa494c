//! Node routing benchmark: what forwarding a request to the core that owns its shard costs.
//!
//! Starts a three-node cluster on loopback (each node: 2 cores, 2 shards, so shard s lives on
//! core s) from the release binary next to this example, then, over one binary-protocol
//! connection per node (which the kernel hands to one of that node's cores), times eventual
//! reads of keys of shard 0 and of shard 1 — for one of them the accepting core owns the shard,
//! for the other the request crosses to the other core and back. The difference of the medians
//! is the cost of a cross-core hop. A write baseline (DiskFirst, 1 in flight) is measured in the
//! same run. Writes a Markdown report (`--out FILE`, default benches/reports/node.md).
//!
//! Run: `make bench-node` (builds the binary first).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringraft::node::runtime::shard_of_key;
use ringraft_net::blocking_client::{BlockingClient, ClientConfig};
use ringraft_net::message::{self as wire, LocalIdentity, PeerRole};

/// Requests timed per class (after warm-up).
const SAMPLES: usize = 3_000;
/// Untimed requests first.
const WARMUP: usize = 300;
/// Value size of the write baseline.
const VALUE_BYTES: usize = 256;

struct Nodes(Vec<Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    ls.iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect()
}

fn median_us(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1e6
}

fn p99_us(mut v: Vec<Duration>) -> f64 {
    v.sort();
    v[v.len() * 99 / 100].as_secs_f64() * 1e6
}

fn call(c: &mut BlockingClient, op: wire::ClientOp) -> Result<wire::OpOutcome, String> {
    let req = wire::ClientRequest {
        shard: u32::MAX,
        command: wire::ClientCommand::Single(op),
    };
    match c.call(&req).map_err(|e| e.to_string())? {
        wire::Message::ClientResponse(wire::ClientResponse {
            outcome: wire::ClientOutcome::Single(o),
            ..
        }) => Ok(o),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

fn main() -> Result<(), String> {
    let out = std::env::args()
        .skip_while(|a| a != "--out")
        .nth(1)
        .unwrap_or_else(|| "benches/reports/node.md".into());
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let bin: PathBuf = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("ringraft"))
        .ok_or("cannot locate the ringraft binary")?;
    let dir = std::env::temp_dir().join(format!("ringraft-node-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let ports = free_ports(6);
    let members: String = (0..3)
        .map(|i| {
            format!(
                "{{ id = {}, address = \"127.0.0.1:{}\", role = 1, status = 2 }},",
                i + 1,
                ports[i]
            )
        })
        .collect();
    let mut nodes = Nodes(Vec::new());
    for i in 0..3 {
        let cfg = format!(
            "[cluster]\nnode_id = {}\nlisten_address = \"127.0.0.1:{}\"\ninitial_cluster = [{members}]\ndb_root_dir = \"{}\"\nlog_dir = \"{}\"\n[raft.persistence]\nflush_policy = \"Immediate\"\nsegment_bytes = 16777216\n[monitoring]\nmetrics_port = {}\n[runtime]\ncores = 2\nshards_per_node = 2\n",
            i + 1,
            ports[i],
            dir.join("db").display(),
            dir.join("logs").display(),
            ports[3 + i]
        );
        let path = dir.join(format!("n{}.toml", i + 1));
        std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
        let child = Command::new(&bin)
            .args(["server", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        nodes.0.push(child);
    }
    // Keys of each shard.
    let keys: Vec<Vec<Vec<u8>>> = (0..2)
        .map(|s| {
            (0..10_000u32)
                .map(|i| format!("bench-{i:04}").into_bytes())
                .filter(|k| shard_of_key(k, 2) == s)
                .take(32)
                .collect()
        })
        .collect();
    // Write every key once (through whichever node leads its shard), retrying until elected.
    let t0 = Instant::now();
    let mut clients: Vec<BlockingClient> = Vec::new();
    for (i, p) in ports.iter().take(3).enumerate() {
        let addr = format!("127.0.0.1:{p}")
            .parse()
            .map_err(|e| format!("{e}"))?;
        let cfg = ClientConfig::new(LocalIdentity {
            cluster_id: 1,
            role: PeerRole::Client {
                client_id: 1_000 + i as u64,
            },
        });
        let c = loop {
            match BlockingClient::connect(addr, cfg.clone()) {
                Ok(c) => break c,
                Err(_) if t0.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => return Err(format!("node {} unreachable: {e}", i + 1)),
            }
        };
        clients.push(c);
    }
    let value = vec![b'x'; VALUE_BYTES];
    let mut write_lat = Vec::new();
    for k in keys.iter().flatten() {
        loop {
            let mut done = false;
            for c in clients.iter_mut() {
                let t = Instant::now();
                let o = call(
                    c,
                    wire::ClientOp::Put {
                        key: k.clone(),
                        value: value.clone(),
                        session: None,
                    },
                )?;
                if matches!(o, wire::OpOutcome::Ok(_)) {
                    write_lat.push(t.elapsed());
                    done = true;
                    break;
                }
            }
            if done {
                break;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                return Err("no leader accepted writes within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // Eventual reads of each shard through each node's connection.
    let mut rows = Vec::new();
    let mut cross_costs = Vec::new();
    for (n, c) in clients.iter_mut().enumerate() {
        let mut med = [0.0f64; 2];
        let mut p99 = [0.0f64; 2];
        for (s, ks) in keys.iter().enumerate() {
            let mut lat = Vec::with_capacity(SAMPLES);
            for i in 0..WARMUP + SAMPLES {
                let t = Instant::now();
                let o = call(
                    c,
                    wire::ClientOp::Get {
                        key: ks[i % ks.len()].clone(),
                        consistency: wire::Consistency::Eventual,
                    },
                )?;
                if !matches!(o, wire::OpOutcome::Ok(_)) {
                    return Err(format!("read failed: {o:?}"));
                }
                if i >= WARMUP {
                    lat.push(t.elapsed());
                }
            }
            med[s] = median_us(lat.clone());
            p99[s] = p99_us(lat);
        }
        let (local, remote) = if med[0] <= med[1] { (0, 1) } else { (1, 0) };
        cross_costs.push(med[remote] - med[local]);
        rows.push(format!(
            "| node {} | shard {local}: {:.1} / {:.1} | shard {remote}: {:.1} / {:.1} | {:+.1} |",
            n + 1,
            med[local],
            p99[local],
            med[remote],
            p99[remote],
            med[remote] - med[local]
        ));
    }
    cross_costs.sort_by(f64::total_cmp);
    let report = format!(
        "# ringraft node routing benchmark\n\n\
         Three nodes on loopback, each with 2 cores and 2 shards (shard s on core s); one binary\n\
         connection per node, lands on one core. Eventual reads (no Raft round), {SAMPLES} timed\n\
         per cell after {WARMUP} warm-up; median / p99 in µs. The faster shard is the one owned by\n\
         the accepting core; the other crosses cores (flume mesh) and back.\n\n\
         | connection | owning core (median / p99 µs) | other core (median / p99 µs) | cross-core cost (µs) |\n\
         |---|---|---|---|\n{}\n\n\
         Median cross-core cost over the nodes: **{:.1} µs**.\n\n\
         Baseline in the same run: DiskFirst writes, one in flight, {VALUE_BYTES}-byte values, {} writes:\n\
         median **{:.1} µs**, p99 {:.1} µs.\n",
        rows.join("\n"),
        cross_costs[cross_costs.len() / 2],
        write_lat.len(),
        median_us(write_lat.clone()),
        p99_us(write_lat),
    );
    if let Some(parent) = std::path::Path::new(&out).parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    std::fs::write(&out, &report).map_err(|e| e.to_string())?;
    print!("{report}");
    drop(nodes);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
