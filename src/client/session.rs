//! Exactly-once identity of a client's writes: a client id (random unless configured) and a
//! sequence number that increases by one per write operation, never per attempt. Every retry of
//! one write carries the same `(client_id, sequence)`, so the node's bounded session table
//! answers it with the first result instead of applying it twice. Owned by the client.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use ringraft_net::message::Session;

static CLIENTS_MADE: AtomicU64 = AtomicU64::new(0);

/// SplitMix64 finalizer: spreads the bits of `x`.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A client id unlikely to collide with another process's: wall clock, process id and a
/// per-process counter, mixed. Never 0 (0 means "no session" on the wire).
pub(crate) fn random_client_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = CLIENTS_MADE.fetch_add(1, Ordering::Relaxed);
    let id = mix64(nanos ^ mix64(u64::from(std::process::id())) ^ mix64(n.wrapping_add(1)));
    id.max(1)
}

/// Hands out the sessions of one client.
#[derive(Debug)]
pub(crate) struct Sessions {
    client_id: u64,
    next: AtomicU64,
}

impl Sessions {
    /// Sessions of `client_id` (`None`: a random id), starting at sequence 1.
    pub(crate) fn new(client_id: Option<u64>) -> Self {
        Sessions {
            client_id: client_id
                .filter(|c| *c != 0)
                .unwrap_or_else(random_client_id),
            next: AtomicU64::new(1),
        }
    }

    /// The client id.
    pub(crate) fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The session of the next write.
    pub(crate) fn next(&self) -> Session {
        Session {
            client_id: self.client_id,
            sequence: self.next.fetch_add(1, Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_increase_and_ids_differ() {
        let s = Sessions::new(Some(42));
        assert_eq!(s.client_id(), 42);
        assert_eq!(s.next().sequence, 1);
        assert_eq!(s.next().sequence, 2);
        let a = Sessions::new(None).client_id();
        let b = Sessions::new(None).client_id();
        assert_ne!(a, b);
        assert_ne!(a, 0);
        assert_ne!(Sessions::new(Some(0)).client_id(), 0);
    }
}
