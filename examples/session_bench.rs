//! Micro benchmark of the exactly-once session table: the cost of [`Sessions::admit`] per plain
//! write once the table is full (every write records one result and evicts the oldest), with
//! `CLIENTS` clients writing in turn, with and without a clone of the table held (a snapshot
//! being taken: the copy-on-write cost). Every figure is the median of `ROUNDS` rounds.
//!
//! Usage: `cargo run --release --example session_bench [CLIENTS] [ROUNDS]` (defaults 4
//! clients, as the cluster benchmark's 4 connections, and 5 rounds).

use std::time::Instant;

use ringraft::node::kv::session::{Lookup, Sessions};
use ringraft::node::kv::ApplyResult;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let clients: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(4).max(1);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);
    // Past the table's count bound, so that the timed writes each evict one result.
    const FILL: u64 = 150_000;
    const TIMED: u64 = 400_000;
    let (mut plain, mut frozen_runs, mut retry) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let mut t = Sessions::new();
        let mut seqs = vec![0u64; clients as usize];
        let mut index = 0u64;
        let mut write = |t: &mut Sessions, n: u64| {
            for _ in 0..n {
                index += 1;
                let c = index % clients;
                seqs[c as usize] += 1;
                let r = ApplyResult::Put { version: index };
                let got = t.admit(c + 1, seqs[c as usize], &r);
                assert_eq!(got, Lookup::New);
            }
        };
        write(&mut t, FILL);
        let s = Instant::now();
        write(&mut t, TIMED);
        plain.push(s.elapsed().as_nanos() as f64 / TIMED as f64);
        // A clone held every 10 000 writes (a snapshot each time).
        let mut held = Vec::new();
        let s = Instant::now();
        for _ in 0..TIMED / 10_000 {
            held.push(t.clone());
            write(&mut t, 10_000);
        }
        frozen_runs.push(s.elapsed().as_nanos() as f64 / TIMED as f64);
        drop(held);
        // Retries of recent writes: answered from the table.
        let s = Instant::now();
        let mut found = 0u64;
        for i in 0..TIMED {
            let c = i % clients;
            let seq = seqs[c as usize] - (i % 1000);
            let r = ApplyResult::Put { version: 0 };
            if matches!(t.admit(c + 1, seq, &r), Lookup::Recorded(_)) {
                found += 1;
            }
        }
        retry.push(s.elapsed().as_nanos() as f64 / TIMED as f64);
        assert_eq!(found, TIMED);
    }
    println!(
        "clients {clients}: admit ns/write {:.1}, with clones held {:.1}, retry {:.1}; median of {rounds}",
        median(plain),
        median(frozen_runs),
        median(retry)
    );
}
