//! Node metrics: counters, gauges and fixed-bucket histograms, rendered as Prometheus text.
//!
//! Ownership keeps the thread-per-core rule: every core owns one [`CoreMetrics`] and one
//! [`ShardGauges`] per shard it runs, and is the only writer of them (relaxed atomic stores and
//! adds, no locks, no read-modify-write contention across cores). The metrics endpoint only reads
//! (relaxed loads) and sums over cores when it renders. Values read mid-update may be off by the
//! in-flight update; that is fine for monitoring and never affects the data path.
//!
//! Histograms use fixed power-of-two buckets ([`HISTOGRAM_BUCKETS`] of them), so recording is one
//! `leading_zeros` and two atomic adds, memory is constant, and buckets map directly to Prometheus
//! cumulative `le` buckets.
//! Owned by the node.
//!
//! Pieces: [`primitives`] (counter, gauge and the two histogram kinds), [`stages`] (where a
//! write's time goes), [`executor`] (each core's glommio executor, sampled by a task) and
//! [`exposition`] (the node-wide sums, rendered as Prometheus text and as the /status JSON of
//! the shards); this file holds the per-core and per-shard sets and the error kinds.

pub mod executor;
pub mod exposition;
pub mod primitives;
pub mod stages;

pub use executor::{
    sample_executor, ExecutorMetrics, EXECUTOR_PROBE_INTERVAL, EXECUTOR_STATS_EVERY,
    MAX_TASK_QUEUES,
};
pub use exposition::NodeMetrics;
pub use primitives::{
    Counter, FineHistogram, Gauge, Histogram, FINE_BUCKETS, FINE_MIN_SHIFT, FINE_OCTAVES,
    FINE_SUB_BUCKETS, HISTOGRAM_BUCKETS,
};
pub use stages::{StageMetrics, STAGES};

/// Kinds of errors counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed HTTP request.
    HttpBadRequest,
    /// A frame failed length, CRC or archive checks.
    FrameDecode,
    /// A WAL append, sync or read failed.
    WalIo,
    /// A peer connection failed or broke.
    PeerConnection,
    /// A client request was refused: not leader.
    NotLeader,
    /// A client request was refused: over a bound.
    Busy,
    /// A client request timed out.
    Timeout,
    /// A client request was invalid.
    InvalidRequest,
    /// A connection was refused at the connection limit.
    ConnectionLimit,
    /// A request without valid credentials was refused (401 / Unauthenticated frame).
    Unauthenticated,
    /// A request whose role does not allow it was refused (403 / Forbidden frame).
    Forbidden,
}

impl ErrorKind {
    /// Every kind, in render order.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::HttpBadRequest,
        ErrorKind::FrameDecode,
        ErrorKind::WalIo,
        ErrorKind::PeerConnection,
        ErrorKind::NotLeader,
        ErrorKind::Busy,
        ErrorKind::Timeout,
        ErrorKind::InvalidRequest,
        ErrorKind::ConnectionLimit,
        ErrorKind::Unauthenticated,
        ErrorKind::Forbidden,
    ];

    /// Label value.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::HttpBadRequest => "http_bad_request",
            ErrorKind::FrameDecode => "frame_decode",
            ErrorKind::WalIo => "wal_io",
            ErrorKind::PeerConnection => "peer_connection",
            ErrorKind::NotLeader => "not_leader",
            ErrorKind::Busy => "busy",
            ErrorKind::Timeout => "timeout",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::ConnectionLimit => "connection_limit",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Forbidden => "forbidden",
        }
    }
}

/// Role of a shard's replica, as a gauge value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleGauge {
    /// Follower.
    Follower = 0,
    /// Candidate or pre-candidate.
    Candidate = 1,
    /// Leader.
    Leader = 2,
    /// Learner.
    Learner = 3,
}

impl RoleGauge {
    /// Name for /status.
    pub fn name(v: u64) -> &'static str {
        match v {
            0 => "follower",
            1 => "candidate",
            2 => "leader",
            3 => "learner",
            _ => "unknown",
        }
    }
}

/// Per-shard gauges, written by the shard's core.
#[derive(Debug, Default)]
pub struct ShardGauges {
    /// Current term.
    pub term: Gauge,
    /// Role (see [`RoleGauge`]).
    pub role: Gauge,
    /// Known leader id (0 = none).
    pub leader_id: Gauge,
    /// Commit index.
    pub commit_index: Gauge,
    /// Applied index.
    pub applied_index: Gauge,
    /// Last log index.
    pub last_index: Gauge,
    /// Durable index of the local WAL.
    pub durable_index: Gauge,
    /// Keys in the state machine.
    pub keys: Gauge,
}

/// Per-core counters and histograms, written by that core.
#[derive(Debug, Default)]
pub struct CoreMetrics {
    /// Client proposals accepted into the log.
    pub proposals: Counter,
    /// Entries committed.
    pub entries_committed: Counter,
    /// Entries applied.
    pub entries_applied: Counter,
    /// Reads served, by consistency: [linearizable, lease, eventual].
    pub reads: [Counter; 3],
    /// Propose-to-apply latency of writes, µs.
    pub commit_latency_us: Histogram,
    /// Time the core's executor spent taking a shard's snapshot (freezing its state; the bytes
    /// are built off the executor), µs (the core serves nothing meanwhile).
    pub snapshot_take_us: Histogram,
    /// Where a write's time goes, stage by stage.
    pub stages: StageMetrics,
    /// This core's executor.
    pub executor: ExecutorMetrics,
    /// Read latency, µs.
    pub read_latency_us: Histogram,
    /// WAL sync latency, µs.
    pub fsync_latency_us: Histogram,
    /// Entries made durable per WAL sync.
    pub fsync_batch_entries: Histogram,
    /// Bytes received.
    pub bytes_in: Counter,
    /// Bytes sent.
    pub bytes_out: Counter,
    /// Frames received.
    pub frames_in: Counter,
    /// Frames sent.
    pub frames_out: Counter,
    /// Connections accepted.
    pub connections_accepted: Counter,
    /// Connections open now.
    pub connections_open: Gauge,
    /// Errors by kind (index = position in [`ErrorKind::ALL`]).
    pub errors: [Counter; ErrorKind::ALL.len()],
    /// Leader elections won on this core.
    pub leader_elections: Counter,
    /// Raft messages from peers this core's groups refused as invalid (a term, index or field
    /// relation no honest peer sends): the core's running total, set by the core after each
    /// refusal (`MultiRaft::invalid_messages`).
    pub raft_invalid_messages: Gauge,
    /// Shards compacted early because they pinned the oldest WAL segments.
    pub wal_reclaim_snapshots: Counter,
    /// Waits of a WAL write that found no space for its next segment (retried, not fatal).
    pub wal_no_space_waits: Counter,
    /// Snapshot chunks from peers refused (hostile offsets or lengths, over a size bound).
    pub snapshot_chunks_refused: Counter,
}

impl CoreMetrics {
    /// Counts one error.
    pub fn error(&self, kind: ErrorKind) {
        if let Some(i) = ErrorKind::ALL.iter().position(|k| *k == kind) {
            self.errors[i].inc();
        }
    }
}

#[cfg(test)]
mod tests;
