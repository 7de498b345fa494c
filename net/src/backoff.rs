//! Bounded exponential backoff with seeded jitter, for reconnecting to peers.
//!
//! Delay of attempt `n` (0-based) is `min(initial_ms * 2^n, max_ms)`, then "equal jitter":
//! half of it fixed plus a pseudo-random part of up to the other half, from a seeded
//! xorshift generator so runs are reproducible. After `max_attempts` (if set) it gives up.
//! Pure: the caller sleeps (std or glommio timer). Owned by one dialer.

use std::time::Duration;

/// Default first delay.
pub const DEFAULT_BACKOFF_INITIAL_MS: u64 = 20;
/// Default delay cap.
pub const DEFAULT_BACKOFF_MAX_MS: u64 = 2_000;

/// Backoff parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// First delay.
    pub initial_ms: u64,
    /// Largest delay.
    pub max_ms: u64,
    /// Attempts before giving up (`None`: never give up).
    pub max_attempts: Option<u32>,
    /// Jitter seed.
    pub seed: u64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            initial_ms: DEFAULT_BACKOFF_INITIAL_MS,
            max_ms: DEFAULT_BACKOFF_MAX_MS,
            max_attempts: None,
            seed: 0x5EED_0FBA_C0FF,
        }
    }
}

/// Backoff state of one dialer.
#[derive(Debug, Clone)]
pub struct Backoff {
    cfg: BackoffConfig,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// Fresh state.
    pub fn new(cfg: BackoffConfig) -> Self {
        Backoff {
            cfg,
            attempt: 0,
            rng: cfg.seed | 1,
        }
    }

    /// Attempts made since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Forget failures (call after a successful connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn next_rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// Delay before the next attempt, or `None` when attempts are exhausted.
    pub fn next_delay(&mut self) -> Option<Duration> {
        if let Some(max) = self.cfg.max_attempts {
            if self.attempt >= max {
                return None;
            }
        }
        let shift = self.attempt.min(32);
        let base = self
            .cfg
            .initial_ms
            .saturating_mul(1u64 << shift)
            .min(self.cfg.max_ms);
        self.attempt = self.attempt.saturating_add(1);
        let half = base / 2;
        let jitter = if half == 0 {
            0
        } else {
            self.next_rand() % (half + 1)
        };
        Some(Duration::from_millis(base - half + jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_gives_up() {
        let mut b = Backoff::new(BackoffConfig {
            initial_ms: 10,
            max_ms: 100,
            max_attempts: Some(8),
            seed: 7,
        });
        let d: Vec<u64> = std::iter::from_fn(|| b.next_delay())
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(d.len(), 8);
        let bases = [10, 20, 40, 80, 100, 100, 100, 100];
        for (got, base) in d.iter().zip(bases) {
            assert!(*got >= base - base / 2 && *got <= base, "{got} vs {base}");
        }
        assert_eq!(b.next_delay(), None);
        b.reset();
        assert!(b.next_delay().is_some());
    }
}
