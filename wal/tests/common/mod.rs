//! Helpers shared by the WAL integration tests: small-segment options, a deterministic payload
//! function and a tiny seeded PRNG.

#![allow(dead_code)]

use ringraft_wal::{FlushPolicy, WalOptions};

/// Options with small segments so tests roll, checkpoint and purge often.
pub fn small_opts(segment_bytes: usize) -> WalOptions {
    WalOptions {
        segment_bytes,
        max_payload_bytes: 1024,
        flush_policy: FlushPolicy::Immediate,
        flush_workers: 2,
        prefault: true,
        ..WalOptions::default()
    }
}

/// Deterministic payload of entry (group, index, term), `len` bytes.
pub fn payload(group: u64, index: u64, term: u64, len: usize) -> Vec<u8> {
    let mut x = group
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(index.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(term.wrapping_mul(0x94D0_49BB_1331_11EB))
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// xorshift64* PRNG for tests (seeded, printable seed).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Seed from RINGRAFT_WAL_SEED or a fixed default; printed so failures can be replayed.
pub fn seed(default: u64) -> u64 {
    let s = std::env::var("RINGRAFT_WAL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    eprintln!("seed = {s} (set RINGRAFT_WAL_SEED to replay)");
    s
}
