//! Benchmark workloads: which operation each request is, on which key, with which value.
//!
//! Keys are the key index in decimal, zero-padded to exactly `key_size` bytes (so every key of a
//! run has the same size and `key_space` distinct keys exist); values are `value_size` bytes of
//! a pattern derived from the request number. Randomness is a seeded SplitMix64 stream per
//! worker, so a run is reproducible from its `--seed`. Owned by the client.

use ringraft_net::message::Consistency;

use crate::client::session::mix64;
use crate::client::ClientOp;

/// Key space of the hot-key workload unless `--key-space` says otherwise.
pub(crate) const HOT_KEY_SPACE: u64 = 8;
/// Key space of the other workloads unless `--key-space` says otherwise.
pub(crate) const DEFAULT_KEY_SPACE: u64 = 10_000;
/// Largest key or value size accepted.
pub(crate) const MAX_ITEM_BYTES: usize = 1 << 20;

/// What the benchmark sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum WorkloadKind {
    /// Puts only.
    Put,
    /// Gets only (keys are loaded first).
    Get,
    /// Gets and puts, `--read-ratio` of them gets.
    Mixed,
    /// Mixed on a tiny key space: every request contends for the same few keys.
    HotKey,
}

impl WorkloadKind {
    /// Name in reports.
    pub(crate) fn name(self) -> &'static str {
        match self {
            WorkloadKind::Put => "put",
            WorkloadKind::Get => "get",
            WorkloadKind::Mixed => "mixed",
            WorkloadKind::HotKey => "hot-key",
        }
    }

    /// Whether keys must exist before the measurement (reads would find nothing otherwise).
    pub(crate) fn needs_preload(self) -> bool {
        !matches!(self, WorkloadKind::Put)
    }
}

/// A seeded random stream (SplitMix64).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// Stream number `stream` of `seed`.
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        Rng(mix64(seed ^ mix64(stream.wrapping_add(0x5151))))
    }

    /// Next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }

    /// Uniform in `[0, n)` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n.max(1))) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// A validated workload.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    /// Kind.
    pub(crate) kind: WorkloadKind,
    /// Consistency of reads.
    pub(crate) consistency: Consistency,
    /// Fraction of reads (mixed, hot-key).
    pub(crate) read_ratio: f64,
    /// Key size in bytes.
    pub(crate) key_size: usize,
    /// Value size in bytes.
    pub(crate) value_size: usize,
    /// Distinct keys.
    pub(crate) key_space: u64,
}

impl Workload {
    /// Checks sizes and ratios; the message names the option.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return Err(format!(
                "--read-ratio {}: must be between 0 and 1",
                self.read_ratio
            ));
        }
        if self.key_space == 0 {
            return Err("--key-space 0: must be at least 1".into());
        }
        if self.key_size == 0 || self.key_size > MAX_ITEM_BYTES {
            return Err(format!(
                "--key-size {}: must be 1 to {MAX_ITEM_BYTES}",
                self.key_size
            ));
        }
        if self.value_size > MAX_ITEM_BYTES {
            return Err(format!(
                "--value-size {}: must be at most {MAX_ITEM_BYTES}",
                self.value_size
            ));
        }
        let digits = (self.key_space - 1).max(1).ilog10() as usize + 1;
        if digits > self.key_size {
            return Err(format!(
                "--key-size {} cannot hold {} distinct keys (needs {digits} bytes)",
                self.key_size, self.key_space
            ));
        }
        Ok(())
    }

    /// Key number `i`, `key_size` bytes.
    pub(crate) fn key(&self, i: u64) -> Vec<u8> {
        format!("{i:0width$}", width = self.key_size).into_bytes()
    }

    /// A value for request `n`.
    pub(crate) fn value(&self, n: u64) -> Vec<u8> {
        (0..self.value_size as u64)
            .map(|j| b'a' + ((n + j) % 26) as u8)
            .collect()
    }

    /// The put that loads key `i`.
    pub(crate) fn load_op(&self, i: u64) -> ClientOp {
        ClientOp::Put {
            key: self.key(i),
            value: self.value(i),
            session: None,
        }
    }

    /// The next measured request.
    pub(crate) fn next_op(&self, rng: &mut Rng, n: u64) -> ClientOp {
        let key = self.key(rng.below(self.key_space));
        let read = match self.kind {
            WorkloadKind::Put => false,
            WorkloadKind::Get => true,
            WorkloadKind::Mixed | WorkloadKind::HotKey => rng.unit() < self.read_ratio,
        };
        if read {
            ClientOp::Get {
                key,
                consistency: self.consistency,
            }
        } else {
            ClientOp::Put {
                key,
                value: self.value(n),
                session: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(kind: WorkloadKind) -> Workload {
        Workload {
            kind,
            consistency: Consistency::Lease,
            read_ratio: 0.25,
            key_size: 8,
            value_size: 256,
            key_space: 1000,
        }
    }

    #[test]
    fn keys_and_values_have_the_asked_sizes() {
        let wl = w(WorkloadKind::Put);
        assert_eq!(wl.validate(), Ok(()));
        assert_eq!(wl.key(42), b"00000042");
        assert_eq!(wl.value(3).len(), 256);
        assert!(wl.value(3).iter().all(u8::is_ascii_lowercase));
        let small = Workload {
            key_size: 2,
            ..wl.clone()
        };
        assert!(small.validate().unwrap_err().contains("--key-size"));
    }

    #[test]
    fn mixed_reads_follow_the_ratio_and_are_reproducible() {
        let wl = w(WorkloadKind::Mixed);
        let mut a = Rng::new(7, 0);
        let ops: Vec<ClientOp> = (0..4000).map(|n| wl.next_op(&mut a, n)).collect();
        let reads = ops.iter().filter(|o| !o.is_write()).count();
        assert!((800..1200).contains(&reads), "{reads} reads of 4000");
        let mut b = Rng::new(7, 0);
        let again: Vec<ClientOp> = (0..4000).map(|n| wl.next_op(&mut b, n)).collect();
        assert_eq!(ops, again);
        assert!(ops
            .iter()
            .all(|o| o.routing_key().len() == 8 && o.routing_key() < &b"00001000"[..]));
    }
}
