//! Micro benchmark of one shard's state machine: the cost of [`KvStore::apply`] per put, and of
//! taking a snapshot (clone, serialization), at a given number of distinct keys. Run twice
//! (two builds) to compare store layouts; every figure is the median of `ROUNDS` rounds.
//!
//! Usage: `cargo run --release --example kv_apply_bench [KEYS] [ROUNDS]`
//! (defaults 1000000 keys, 3 rounds). Keys are 8 bytes, values 256 bytes, as in the cluster
//! benchmarks; writes carry a session (4 clients, as the benchmark's 4 connections). Also
//! prints the process's resident memory per key after the load and after the overwrites
//! (the data, the session table and the allocator's slack; read from `/proc/self/statm`).

use std::time::Instant;

use ringraft::node::kv::{Command, KvStore, WriteOp};

/// Encoded put of key number `k` by client `1 + k % 4`, at that client's sequence `seq`.
fn put(k: u64, seq: u64) -> Vec<u8> {
    let key = format!("{:08}", k % 100_000_000).into_bytes();
    Command {
        client_id: 1 + k % 4,
        seq,
        op: WriteOp::Put {
            key,
            value: vec![b'v'; 256],
        },
    }
    .encode()
}

/// Resident bytes of this process (0 where `/proc/self/statm` cannot be read).
fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let keys: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let (mut load, mut over, mut over_frozen, mut clone, mut encode) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut mem_load, mut mem_over) = (Vec::new(), Vec::new());
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..rounds {
        // Commands are encoded before the clock starts: only applying is timed.
        let fill: Vec<Vec<u8>> = (0..keys).map(|k| put(k, k / 4 + 1)).collect();
        let mut kv = KvStore::new();
        let rss0 = rss_bytes();
        let t = Instant::now();
        for (i, c) in fill.iter().enumerate() {
            kv.apply(i as u64 + 1, c);
        }
        load.push(t.elapsed().as_nanos() as f64 / keys as f64);
        drop(fill);
        mem_load.push(rss_bytes().saturating_sub(rss0) as f64 / keys as f64);
        let mut index = keys;
        let mut seq = keys / 4 + 1;
        let mut overwrite = |kv: &mut KvStore, n: u64| -> f64 {
            let cmds: Vec<Vec<u8>> = (0..n)
                .map(|_| {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    seq += 1;
                    put((rng % keys) / 4 * 4, seq)
                })
                .collect();
            let t = Instant::now();
            for c in &cmds {
                index += 1;
                kv.apply(index, c);
            }
            t.elapsed().as_nanos() as f64 / n as f64
        };
        let n = keys.min(200_000);
        over.push(overwrite(&mut kv, n));
        mem_over.push(rss_bytes().saturating_sub(rss0) as f64 / keys as f64);
        let t = Instant::now();
        let frozen = kv.clone();
        clone.push(t.elapsed().as_secs_f64() * 1e3);
        // Writes while a snapshot is held: the copy-on-write cost, if any.
        over_frozen.push(overwrite(&mut kv, n));
        let t = Instant::now();
        let bytes = frozen.snapshot();
        encode.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(bytes.len() as u64 > keys * 256);
        drop(frozen);
    }
    println!(
        "keys {keys}: apply ns/put load {:.0}, overwrite {:.0}, overwrite with a snapshot held {:.0}; clone {:.3} ms; serialize {:.0} ms; resident bytes/key after load {:.0}, after overwrites {:.0} (first round: later rounds reuse freed memory); median of {rounds}",
        median(load),
        median(over),
        median(over_frozen),
        median(clone),
        median(encode),
        mem_load[0],
        mem_over[0]
    );
}
