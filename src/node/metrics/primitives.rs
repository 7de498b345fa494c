//! The metric primitives: a counter, a gauge, a power-of-two histogram and a fine
//! (log-linear, nanosecond) histogram. Each has one writer (the owning core) and any number of
//! readers; all are relaxed atomics with a constant footprint. Owned by the node's metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets per histogram: upper bounds 1, 2, 4, … 2^(N-2), then +Inf.
pub const HISTOGRAM_BUCKETS: usize = 28;

/// A monotonically increasing counter (one writer).
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down (one writer).
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Subtracts one (saturating at 0).
    pub fn dec(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }
}

/// A histogram with power-of-two buckets.
#[derive(Debug)]
pub struct Histogram {
    buckets: [AtomicU64; HISTOGRAM_BUCKETS],
    sum: AtomicU64,
    count: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Bucket index of `v`: the smallest i with v <= 2^i, or the +Inf bucket.
    pub fn bucket_of(v: u64) -> usize {
        if v <= 1 {
            return 0;
        }
        let i = (64 - (v - 1).leading_zeros()) as usize;
        i.min(HISTOGRAM_BUCKETS - 1)
    }

    /// Records one value.
    pub fn record(&self, v: u64) {
        self.buckets[Self::bucket_of(v)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(v, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// (per-bucket counts, sum, count).
    pub fn snapshot(&self) -> ([u64; HISTOGRAM_BUCKETS], u64, u64) {
        (
            std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            self.sum.load(Ordering::Relaxed),
            self.count.load(Ordering::Relaxed),
        )
    }

    /// An upper estimate of the q-quantile (0..=1): the bound of the bucket holding it.
    pub fn quantile_upper(&self, q: f64) -> u64 {
        let (b, _, n) = self.snapshot();
        if n == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in b.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return 1u64 << i.min(63);
            }
        }
        u64::MAX
    }
}

/// Sub-buckets per power of two of a [`FineHistogram`]: bounds 1.25, 1.5, 1.75 and 2 times
/// the power, so a quantile read from it is within 25 % (interpolated: far closer), fine
/// enough to tell the stages of a half-millisecond write apart.
pub const FINE_SUB_BUCKETS: usize = 4;
/// The smallest bound of a [`FineHistogram`] is 2^FINE_MIN_SHIFT ns (128 ns): below that a
/// stage costs nothing worth telling apart.
pub const FINE_MIN_SHIFT: u32 = 7;
/// Powers of two a [`FineHistogram`] spans above its smallest bound: up to 2^35 ns (34 s),
/// past the longest request timeout.
pub const FINE_OCTAVES: usize = 28;
/// Buckets of a [`FineHistogram`]: one up to 2^FINE_MIN_SHIFT, the sub-buckets of every
/// octave, and +Inf.
pub const FINE_BUCKETS: usize = 2 + FINE_OCTAVES * FINE_SUB_BUCKETS;

/// A histogram of nanoseconds with [`FINE_SUB_BUCKETS`] log-linear buckets per power of two
/// (one writer: the owning core). Recording is a `leading_zeros`, a shift and two relaxed adds.
#[derive(Debug)]
pub struct FineHistogram {
    buckets: [AtomicU64; FINE_BUCKETS],
    sum: AtomicU64,
}

impl Default for FineHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
        }
    }
}

impl FineHistogram {
    /// Bucket index of `v`: the first bucket whose bound is at least `v`, or +Inf.
    pub fn bucket_of(v: u64) -> usize {
        if v <= 1 << FINE_MIN_SHIFT {
            return 0;
        }
        // 2^k < v <= 2^(k+1), k >= FINE_MIN_SHIFT.
        let k = 63 - (v - 1).leading_zeros();
        let octave = (k - FINE_MIN_SHIFT) as usize;
        let sub = ((v - 1 - (1u64 << k)) >> (k - 2)) as usize;
        (1 + octave * FINE_SUB_BUCKETS + sub).min(FINE_BUCKETS - 1)
    }

    /// Upper bound (ns) of bucket `i`; `None` for +Inf.
    pub fn bound(i: usize) -> Option<u64> {
        if i == 0 {
            return Some(1 << FINE_MIN_SHIFT);
        }
        if i >= FINE_BUCKETS - 1 {
            return None;
        }
        let octave = (i - 1) / FINE_SUB_BUCKETS;
        let sub = (i - 1) % FINE_SUB_BUCKETS;
        let k = FINE_MIN_SHIFT as usize + octave;
        Some((1u64 << k) + ((sub as u64 + 1) << (k - 2)))
    }

    /// Records `ns`.
    pub fn record(&self, ns: u64) {
        self.buckets[Self::bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(ns, Ordering::Relaxed);
    }

    /// Records the time from `from` to `to` (0 when `to` is earlier).
    pub fn record_between(&self, from: std::time::Instant, to: std::time::Instant) {
        self.record(to.saturating_duration_since(from).as_nanos() as u64);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// (per-bucket counts, sum of ns).
    pub fn snapshot(&self) -> ([u64; FINE_BUCKETS], u64) {
        (
            std::array::from_fn(|i| self.buckets[i].load(Ordering::Relaxed)),
            self.sum.load(Ordering::Relaxed),
        )
    }
}
