//! Protocol counters: bytes and frames in and out, connections, and one counter per
//! [`ErrorKind`].
//!
//! Plain relaxed atomics: counters are monotonic and only read for reporting, so no ordering
//! between them is promised. One [`NetMetrics`] is shared (via `Arc`) by a listener, its
//! connections and any clients that want to report into the same place; the node owns it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::ErrorKind;

/// Counters of one endpoint (a listener, a client, or a whole node).
#[derive(Debug, Default)]
pub struct NetMetrics {
    /// Payload + header bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_out: AtomicU64,
    /// Frames that passed all validation.
    pub frames_in: AtomicU64,
    /// Frames queued for sending.
    pub frames_out: AtomicU64,
    /// Connections accepted by a listener.
    pub connections_accepted: AtomicU64,
    /// Connections closed (for any reason).
    pub connections_closed: AtomicU64,
    /// Connections refused because the listener was at its connection limit.
    pub connections_rejected_limit: AtomicU64,
    /// Connections whose first bytes looked like HTTP and were handed to the HTTP handler.
    pub http_connections: AtomicU64,
    /// Error frames sent to peers.
    pub error_frames_sent: AtomicU64,
    errors: [AtomicU64; ErrorKind::COUNT],
}

impl NetMetrics {
    /// New zeroed counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one error of `kind`.
    pub fn count_error(&self, kind: ErrorKind) {
        self.errors[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Current count of errors of `kind`.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind.index()].load(Ordering::Relaxed)
    }

    /// Adds to a counter (relaxed).
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads a counter (relaxed).
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Every counter as `(name, value)`, errors as `errors_<kind>`, for reporting.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut out = vec![
            ("bytes_in".to_string(), Self::get(&self.bytes_in)),
            ("bytes_out".to_string(), Self::get(&self.bytes_out)),
            ("frames_in".to_string(), Self::get(&self.frames_in)),
            ("frames_out".to_string(), Self::get(&self.frames_out)),
            (
                "connections_accepted".to_string(),
                Self::get(&self.connections_accepted),
            ),
            (
                "connections_closed".to_string(),
                Self::get(&self.connections_closed),
            ),
            (
                "connections_rejected_limit".to_string(),
                Self::get(&self.connections_rejected_limit),
            ),
            (
                "http_connections".to_string(),
                Self::get(&self.http_connections),
            ),
            (
                "error_frames_sent".to_string(),
                Self::get(&self.error_frames_sent),
            ),
        ];
        for k in ErrorKind::ALL {
            out.push((format!("errors_{}", k.name()), self.errors(k)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_kind() {
        let m = NetMetrics::new();
        m.count_error(ErrorKind::CrcMismatch);
        m.count_error(ErrorKind::CrcMismatch);
        m.count_error(ErrorKind::Oversize);
        assert_eq!(m.errors(ErrorKind::CrcMismatch), 2);
        assert_eq!(m.errors(ErrorKind::Oversize), 1);
        assert_eq!(m.errors(ErrorKind::BadMagic), 0);
        let snap = m.snapshot();
        assert!(snap.contains(&("errors_crc_mismatch".to_string(), 2)));
    }
}
