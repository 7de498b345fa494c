//! Raft benchmark: CPU time per committed entry of a 3-node in-memory cluster run by the node's
//! own Ready loop ([`ringraft::node::driver`]: send, persist, send after persist, apply into the
//! node's key-value store, answer) over the simulator's in-memory storage (every round made
//! durable at once) and an in-memory hand-over of envelopes, at proposal batch sizes 1, 64 and
//! 1024, plus Raft messages per commit round and per entry. Baseline in the same run: appending
//! each entry (a shared payload, as the core does) to three in-memory logs: the least any
//! replication must do. Each figure is the median of `RUNS` runs. Writes Markdown to `--out`.
//!
//! `cargo run --release --example raft_bench -- --out benches/reports/raft.md`

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::sync::Arc;

use ringraft::node::driver::{Driver, PendingRead, PersistBatch, Shard};
use ringraft::node::kv::{Command, KvStore, WriteOp};
use ringraft::node::metrics::CoreMetrics;
use ringraft::raft::{Config, Entry, EntryKind, Envelope, Membership, MultiRaft, NodeId, Role};
use ringraft::sim::storage::NodeStorage;

/// Value bytes per entry's put command.
const PAYLOAD_BYTES: usize = 128;
/// Entries committed per measured run.
const ENTRIES_PER_RUN: u64 = 200_000;
/// Runs per figure (median reported).
const RUNS: usize = 5;
/// Batch sizes measured.
const BATCHES: [u64; 3] = [1, 64, 1024];
/// The one group of the cluster.
const GROUP: u64 = 1;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_THREAD_CPUTIME_ID is supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// One node: the driver's state and the in-memory storage.
struct Node {
    multi: MultiRaft,
    shards: BTreeMap<u64, Shard>,
    reads: HashMap<u64, PendingRead>,
    metrics: CoreMetrics,
    storage: NodeStorage,
}

impl Node {
    fn driver(&mut self) -> Driver<'_> {
        Driver::new(
            &mut self.multi,
            &mut self.shards,
            &mut self.reads,
            &self.metrics,
        )
    }

    /// One driver round, made durable at once; returns false when there was nothing to do.
    fn round(&mut self, net: &mut Vec<Envelope>) -> bool {
        let mut d = Driver::new(
            &mut self.multi,
            &mut self.shards,
            &mut self.reads,
            &self.metrics,
        );
        let Some(mut round) = d.begin(None, net).expect("round") else {
            return false;
        };
        let batch: PersistBatch = d.persist(&mut round, &mut self.storage).expect("persist");
        while self.storage.fsync_one() {}
        let durable = d.on_durable(batch, net);
        assert!(durable.refused.is_none(), "durable: {:?}", durable.refused);
        d.apply(&mut round, net).expect("apply");
        true
    }
}

struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    queue: VecDeque<Envelope>,
    messages: u64,
    applied: u64,
}

impl Cluster {
    fn new(batch: u64) -> Cluster {
        let mut nodes = BTreeMap::new();
        for id in 1..=3 {
            let mut c = Config::new(id);
            c.max_entries_per_msg = 4096;
            c.max_uncommitted_entries = (batch * 4).max(8192);
            c.max_committed_entries_per_ready = 1 << 16;
            c.snapshot_threshold_entries = u64::MAX / 2;
            let raft =
                ringraft::raft::Raft::new(c, Membership::with_voters([1, 2, 3])).expect("config");
            let mut multi = MultiRaft::new(id);
            multi.add_group(GROUP, raft).expect("group");
            let mut shards = BTreeMap::new();
            shards.insert(GROUP, Shard::new(KvStore::new()));
            nodes.insert(
                id,
                Node {
                    multi,
                    shards,
                    reads: HashMap::new(),
                    metrics: CoreMetrics::default(),
                    storage: NodeStorage::default(),
                },
            );
        }
        let mut c = Cluster {
            nodes,
            queue: VecDeque::new(),
            messages: 0,
            applied: 0,
        };
        if let Some(r) = c.nodes.get_mut(&1).and_then(|n| n.multi.group_mut(GROUP)) {
            r.campaign();
        }
        c.settle();
        c
    }

    fn settle(&mut self) {
        loop {
            let mut any = false;
            let mut net = Vec::new();
            for node in self.nodes.values_mut() {
                while node.round(&mut net) {
                    any = true;
                }
            }
            self.queue.extend(net);
            if self.queue.is_empty() && !any {
                self.applied = self.nodes[&1].shards[&GROUP].kv().applied_index();
                return;
            }
            while let Some(env) = self.queue.pop_front() {
                self.messages += env.message_count() as u64;
                if let Some(n) = self.nodes.get_mut(&env.to) {
                    let _ = n.multi.step(env);
                }
            }
        }
    }
}

struct Sample {
    ns_per_entry: f64,
    msgs_per_round: f64,
    msgs_per_entry: f64,
}

fn run_raft(batch: u64) -> Sample {
    let mut c = Cluster::new(batch);
    let leader_ok = c.nodes[&1]
        .multi
        .group(GROUP)
        .is_some_and(|r| r.role() == Role::Leader);
    assert!(leader_ok, "no leader");
    let cmd = Command {
        client_id: 0,
        seq: 0,
        op: WriteOp::Put {
            key: b"k".to_vec(),
            value: vec![7u8; PAYLOAD_BYTES],
        },
    };
    let start_applied = c.applied;
    let start_msgs = c.messages;
    let rounds = ENTRIES_PER_RUN / batch;
    let t0 = thread_cpu_ns();
    for _ in 0..rounds {
        if let Some(n) = c.nodes.get_mut(&1) {
            let mut d = n.driver();
            for _ in 0..batch {
                // Answers are dropped: the bench counts applied entries.
                let (tx, _rx) = ringraft::node::driver::reply_channel();
                // Encoded per write into the entry's shared buffer, as the node's core does.
                let _ = d.propose(GROUP, cmd.encode_shared(), tx);
            }
        }
        c.settle();
    }
    let ns = thread_cpu_ns() - t0;
    let entries = c.applied - start_applied;
    assert!(entries >= rounds * batch, "only {entries} committed");
    let msgs = (c.messages - start_msgs) as f64;
    Sample {
        ns_per_entry: ns as f64 / entries as f64,
        msgs_per_round: msgs / rounds as f64,
        msgs_per_entry: msgs / entries as f64,
    }
}

fn run_baseline() -> f64 {
    let payload: Arc<[u8]> = Arc::from(vec![7u8; PAYLOAD_BYTES]);
    let mut logs: [Vec<Entry>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    let t0 = thread_cpu_ns();
    for i in 0..ENTRIES_PER_RUN {
        for log in logs.iter_mut() {
            log.push(Entry {
                index: i + 1,
                term: 1,
                kind: EntryKind::Normal,
                data: payload.clone(),
            });
        }
    }
    let ns = thread_cpu_ns() - t0;
    std::hint::black_box(&logs);
    ns as f64 / ENTRIES_PER_RUN as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let baseline = median((0..RUNS).map(|_| run_baseline()).collect());
    let mut rows = Vec::new();
    for b in BATCHES {
        let samples: Vec<Sample> = (0..RUNS).map(|_| run_raft(b)).collect();
        let ns = median(samples.iter().map(|s| s.ns_per_entry).collect());
        let per_round = median(samples.iter().map(|s| s.msgs_per_round).collect());
        let per_entry = median(samples.iter().map(|s| s.msgs_per_entry).collect());
        println!("batch {b:>5}: {ns:>9.1} ns/entry, {per_round:.2} msgs/commit round, {per_entry:.4} msgs/entry");
        rows.push((b, ns, per_round, per_entry));
    }
    println!("baseline: {baseline:.1} ns/entry (append a shared entry to 3 in-memory logs)");
    let mut md = String::new();
    md.push_str("# Raft core benchmark (`make bench-raft`)\n\n");
    md.push_str(&format!(
        "3-node cluster in one thread, each node run by the node's own driver (send, persist, \
         send after persist, apply into the key-value store, answer) over in-memory storage made \
         durable at once (DiskFirst path, no real disk), in-memory hand-over of messages. \
         {ENTRIES_PER_RUN} put entries with {PAYLOAD_BYTES} B values per run; thread CPU time; \
         median of {RUNS} runs. A commit round = propose a batch at the leader, then deliver \
         until quiet (everything committed, applied and acknowledged).\n\n"
    ));
    md.push_str("| batch | ns/entry (CPU, all 3 replicas) | messages per commit round | messages per entry |\n");
    md.push_str("|---:|---:|---:|---:|\n");
    for (b, ns, r, e) in &rows {
        md.push_str(&format!("| {b} | {ns:.1} | {r:.2} | {e:.4} |\n"));
    }
    md.push_str(&format!(
        "\nBaseline (same run): appending each entry (shared payload) to three in-memory `Vec` logs, no \
         Raft, costs {baseline:.1} ns/entry. The difference is the cost of consensus bookkeeping \
         (progress, commit counting, messages, Ready hand-off) plus the driver's storage and \
         apply per entry.\n"
    ));
    match out {
        Some(path) => {
            if let Some(dir) = std::path::Path::new(&path).parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            match std::fs::File::create(&path).and_then(|mut f| f.write_all(md.as_bytes())) {
                Ok(()) => println!("wrote {path}"),
                Err(e) => {
                    eprintln!("raft_bench: cannot write {path}: {e}");
                    std::process::exit(1);
                }
            }
        }
        None => print!("{md}"),
    }
}
