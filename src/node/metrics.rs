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

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Buckets per histogram: upper bounds 1, 2, 4, … 2^(N-2), then +Inf.
pub const HISTOGRAM_BUCKETS: usize = 28;

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

/// The stages of a write, timed on the core that runs its shard (all in ns). On the leader a
/// write is *received* when its request reaches the request path of the node, *proposed* when
/// the Raft core appended it to the log, *locally durable* when the leader's own WAL sync
/// covering it completed, *committed* when the driver round that found it committed began (a
/// quorum's acknowledgements were stepped), *applied* when the store applied it and
/// *answered* when the answer was handed to the asking connection task. On a follower, an
/// append is *received* when the driver round that persists it began, *durable* when its WAL
/// sync completed and *acknowledged* when the acknowledgement was queued to the leader.
///
/// The leader sends its entries before it syncs them, so its own sync overlaps replication:
/// proposed → committed is then close to the slower of the two, not their sum, and
/// `commit_before_local_durable` counts the writes a follower quorum committed before the
/// leader's own sync finished.
#[derive(Debug, Default)]
pub struct StageMetrics {
    /// Received → proposed.
    pub received_to_proposed: FineHistogram,
    /// Proposed → locally durable (leader's own WAL sync). A write answered before its
    /// local sync completed is not in it: `commit_before_local_durable` counts it.
    pub proposed_to_local_durable: FineHistogram,
    /// Proposed → committed (quorum durable).
    pub proposed_to_committed: FineHistogram,
    /// Committed → applied.
    pub committed_to_applied: FineHistogram,
    /// Applied → answered.
    pub applied_to_answered: FineHistogram,
    /// Received → answered: the whole write on the node.
    pub received_to_answered: FineHistogram,
    /// Follower: append received → durable.
    pub append_received_to_durable: FineHistogram,
    /// Follower: durable → acknowledgement queued.
    pub append_durable_to_acked: FineHistogram,
    /// Writes committed before the leader's own WAL sync covering them completed.
    pub commit_before_local_durable: Counter,
}

/// Stage names and their histograms, in render order.
type StageField = fn(&StageMetrics) -> &FineHistogram;
/// Every stage of [`StageMetrics`]: label and field.
pub const STAGES: [(&str, StageField); 8] = [
    ("received_to_proposed", |s| &s.received_to_proposed),
    ("proposed_to_local_durable", |s| {
        &s.proposed_to_local_durable
    }),
    ("proposed_to_committed", |s| &s.proposed_to_committed),
    ("committed_to_applied", |s| &s.committed_to_applied),
    ("applied_to_answered", |s| &s.applied_to_answered),
    ("received_to_answered", |s| &s.received_to_answered),
    ("follower_append_to_durable", |s| {
        &s.append_received_to_durable
    }),
    ("follower_durable_to_acked", |s| &s.append_durable_to_acked),
];

/// Task queues of one executor whose statistics are kept; a queue with a larger index is
/// counted with the last one (a node creates one or two).
pub const MAX_TASK_QUEUES: usize = 4;
/// How often an executor's probe task wakes up to measure how late it runs (its scheduling
/// delay): ten wake-ups a second cost nothing measurable.
pub const EXECUTOR_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// Probes between two readings of the executor's own statistics (once a second).
pub const EXECUTOR_STATS_EVERY: u32 = 10;

/// Statistics of one core's glommio executor, accumulated by [`sample_executor`] from the
/// executor's own counters (which it resets on every reading).
#[derive(Debug, Default)]
pub struct ExecutorMetrics {
    /// Tasks polled.
    pub tasks_executed: Counter,
    /// Times the scheduler picked a task queue to run.
    pub scheduler_runs: Counter,
    /// Time spent running tasks, ns.
    pub runtime_ns: Counter,
    /// Time running tasks plus polling for I/O, ns.
    pub total_runtime_ns: Counter,
    /// Share of wall time spent running tasks over the last reading, per mille.
    pub busy_permille: Gauge,
    /// Per task queue (by queue index): time run, ns.
    pub queue_runtime_ns: [Counter; MAX_TASK_QUEUES],
    /// Per task queue: times selected to run.
    pub queue_selected: [Counter; MAX_TASK_QUEUES],
    /// File reads and writes the reactor submitted (io_uring), and their bytes.
    pub file_reads: Counter,
    /// Bytes read from files.
    pub file_bytes_read: Counter,
    /// File writes submitted.
    pub file_writes: Counter,
    /// Bytes written to files.
    pub file_bytes_written: Counter,
    /// How late the probe task ran after its timer was due: the delay a task waits for the
    /// executor, ns.
    pub wakeup_delay: FineHistogram,
}

/// Samples the running executor's statistics into `m` forever: every
/// [`EXECUTOR_PROBE_INTERVAL`] it records how late it woke up, and every
/// [`EXECUTOR_STATS_EVERY`] probes it adds the executor's counters. Spawn one per core, on
/// that core's executor.
pub async fn sample_executor(m: Arc<CoreMetrics>) {
    let ex = &m.executor;
    let mut last = std::time::Instant::now();
    let mut probes = 0u32;
    loop {
        let due = std::time::Instant::now() + EXECUTOR_PROBE_INTERVAL;
        glommio::timer::sleep(EXECUTOR_PROBE_INTERVAL).await;
        let now = std::time::Instant::now();
        ex.wakeup_delay.record_between(due, now);
        probes += 1;
        if probes < EXECUTOR_STATS_EVERY {
            continue;
        }
        probes = 0;
        let e = glommio::executor();
        let st = e.executor_stats();
        ex.tasks_executed.add(st.tasks_executed());
        ex.scheduler_runs.add(st.scheduler_runs());
        let run = st.executor_runtime().as_nanos() as u64;
        ex.runtime_ns.add(run);
        ex.total_runtime_ns
            .add(st.total_runtime().as_nanos() as u64);
        let wall = now.saturating_duration_since(last).as_nanos().max(1) as u64;
        ex.busy_permille.set(
            run.saturating_mul(1000)
                .checked_div(wall)
                .unwrap_or(0)
                .min(1000),
        );
        last = now;
        for q in e.all_task_queue_stats(Vec::new()) {
            let i = q.index().index().min(MAX_TASK_QUEUES - 1);
            ex.queue_runtime_ns[i].add(q.runtime().as_nanos() as u64);
            ex.queue_selected[i].add(q.queue_selected());
        }
        let io = e.io_stats().all_rings();
        let (reads, read_bytes) = io.file_reads();
        let (writes, write_bytes) = io.file_writes();
        ex.file_reads.add(reads);
        ex.file_bytes_read.add(read_bytes);
        ex.file_writes.add(writes);
        ex.file_bytes_written.add(write_bytes);
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

/// Selects one histogram of a core.
type HistogramField = fn(&CoreMetrics) -> &Histogram;
/// Selects one gauge of a shard.
type GaugeField = fn(&ShardGauges) -> u64;

/// Writes the bucket, sum and count lines of one fine histogram (ns, rendered in seconds).
fn render_fine(o: &mut String, name: &str, labels: &str, b: &[u64; FINE_BUCKETS], sum_ns: u64) {
    let mut cum = 0;
    for (i, c) in b.iter().enumerate() {
        cum += c;
        match FineHistogram::bound(i) {
            Some(ns) => {
                let _ = writeln!(
                    o,
                    "{name}_bucket{{{labels},le=\"{}\"}} {cum}",
                    ns as f64 / 1e9
                );
            }
            None => {
                let _ = writeln!(o, "{name}_bucket{{{labels},le=\"+Inf\"}} {cum}");
            }
        }
    }
    let _ = writeln!(o, "{name}_sum{{{labels}}} {}", sum_ns as f64 / 1e9);
    let _ = writeln!(o, "{name}_count{{{labels}}} {cum}");
}

/// Every metric of a node: one [`CoreMetrics`] per core, one [`ShardGauges`] per shard.
#[derive(Debug)]
pub struct NodeMetrics {
    /// This node's id.
    pub node_id: u64,
    /// Indexed by core.
    pub cores: Vec<Arc<CoreMetrics>>,
    /// Indexed by shard.
    pub shards: Vec<Arc<ShardGauges>>,
    /// Start time, for uptime.
    pub started: std::time::Instant,
}

impl NodeMetrics {
    /// Zeroed metrics for `cores` cores and `shards` shards.
    pub fn new(node_id: u64, cores: usize, shards: usize) -> Self {
        Self {
            node_id,
            cores: (0..cores).map(|_| Arc::default()).collect(),
            shards: (0..shards).map(|_| Arc::default()).collect(),
            started: std::time::Instant::now(),
        }
    }

    fn sum(&self, f: impl Fn(&CoreMetrics) -> u64) -> u64 {
        self.cores.iter().map(|c| f(c)).sum()
    }

    fn hist_sum(
        &self,
        f: impl Fn(&CoreMetrics) -> &Histogram,
    ) -> ([u64; HISTOGRAM_BUCKETS], u64, u64) {
        let mut b = [0u64; HISTOGRAM_BUCKETS];
        let (mut s, mut n) = (0, 0);
        for c in &self.cores {
            let (cb, cs, cn) = f(c).snapshot();
            for (acc, x) in b.iter_mut().zip(cb) {
                *acc += x;
            }
            s += cs;
            n += cn;
        }
        (b, s, n)
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut o = String::with_capacity(8 << 10);
        let node = self.node_id;
        let counter = |o: &mut String, name: &str, help: &str, v: u64| {
            let _ = write!(
                o,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name}{{node=\"{node}\"}} {v}\n"
            );
        };
        counter(
            &mut o,
            "ringraft_proposals_total",
            "Client proposals accepted into the log.",
            self.sum(|c| c.proposals.get()),
        );
        counter(
            &mut o,
            "ringraft_entries_committed_total",
            "Log entries committed.",
            self.sum(|c| c.entries_committed.get()),
        );
        counter(
            &mut o,
            "ringraft_entries_applied_total",
            "Log entries applied to the state machine.",
            self.sum(|c| c.entries_applied.get()),
        );
        counter(
            &mut o,
            "ringraft_leader_elections_total",
            "Elections won by shards of this node.",
            self.sum(|c| c.leader_elections.get()),
        );
        counter(
            &mut o,
            "ringraft_raft_invalid_messages_total",
            "Raft messages from peers refused as invalid (no honest peer sends them).",
            self.sum(|c| c.raft_invalid_messages.get()),
        );
        counter(
            &mut o,
            "ringraft_wal_reclaim_snapshots_total",
            "Shards compacted early because they pinned the oldest WAL segments.",
            self.sum(|c| c.wal_reclaim_snapshots.get()),
        );
        counter(
            &mut o,
            "ringraft_wal_no_space_waits_total",
            "WAL writes that found no space for the next segment and waited to retry.",
            self.sum(|c| c.wal_no_space_waits.get()),
        );
        counter(
            &mut o,
            "ringraft_snapshot_chunks_refused_total",
            "Snapshot chunks from peers refused (bad offset or length, over a size bound).",
            self.sum(|c| c.snapshot_chunks_refused.get()),
        );
        counter(
            &mut o,
            "ringraft_bytes_in_total",
            "Bytes received on client and peer connections.",
            self.sum(|c| c.bytes_in.get()),
        );
        counter(
            &mut o,
            "ringraft_bytes_out_total",
            "Bytes sent on client and peer connections.",
            self.sum(|c| c.bytes_out.get()),
        );
        counter(
            &mut o,
            "ringraft_frames_in_total",
            "Frames received.",
            self.sum(|c| c.frames_in.get()),
        );
        counter(
            &mut o,
            "ringraft_frames_out_total",
            "Frames sent.",
            self.sum(|c| c.frames_out.get()),
        );
        counter(
            &mut o,
            "ringraft_connections_accepted_total",
            "Connections accepted.",
            self.sum(|c| c.connections_accepted.get()),
        );
        let _ = write!(
            o,
            "# HELP ringraft_connections_open Connections open now.\n# TYPE ringraft_connections_open gauge\nringraft_connections_open{{node=\"{node}\"}} {}\n",
            self.sum(|c| c.connections_open.get())
        );
        let _ = writeln!(o, "# HELP ringraft_reads_total Reads served, by consistency.\n# TYPE ringraft_reads_total counter");
        for (i, name) in ["linearizable", "lease", "eventual"].iter().enumerate() {
            let _ = writeln!(
                o,
                "ringraft_reads_total{{node=\"{node}\",consistency=\"{name}\"}} {}",
                self.sum(|c| c.reads[i].get())
            );
        }
        let _ = writeln!(
            o,
            "# HELP ringraft_errors_total Errors, by kind.\n# TYPE ringraft_errors_total counter"
        );
        for (i, k) in ErrorKind::ALL.iter().enumerate() {
            let _ = writeln!(
                o,
                "ringraft_errors_total{{node=\"{node}\",kind=\"{}\"}} {}",
                k.label(),
                self.sum(|c| c.errors[i].get())
            );
        }
        let hists: [(&str, &str, f64, HistogramField); 5] = [
            (
                "ringraft_commit_latency_seconds",
                "Write latency from proposal to apply.",
                1e-6,
                |c| &c.commit_latency_us,
            ),
            (
                "ringraft_read_latency_seconds",
                "Read latency.",
                1e-6,
                |c| &c.read_latency_us,
            ),
            (
                "ringraft_fsync_latency_seconds",
                "WAL sync latency.",
                1e-6,
                |c| &c.fsync_latency_us,
            ),
            (
                "ringraft_fsync_batch_entries",
                "Entries made durable by one WAL sync.",
                1.0,
                |c| &c.fsync_batch_entries,
            ),
            (
                "ringraft_snapshot_take_seconds",
                "Time the executor spent taking a shard's snapshot, its bytes built off the executor (the core serves nothing meanwhile).",
                1e-6,
                |c| &c.snapshot_take_us,
            ),
        ];
        for (name, help, scale, f) in hists {
            let (b, s, n) = self.hist_sum(f);
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} histogram");
            let mut cum = 0;
            for (i, c) in b.iter().enumerate() {
                cum += c;
                if i + 1 == HISTOGRAM_BUCKETS {
                    let _ = writeln!(o, "{name}_bucket{{node=\"{node}\",le=\"+Inf\"}} {cum}");
                } else {
                    let le = (1u64 << i) as f64 * scale;
                    let _ = writeln!(o, "{name}_bucket{{node=\"{node}\",le=\"{le}\"}} {cum}");
                }
            }
            let _ = writeln!(o, "{name}_sum{{node=\"{node}\"}} {}", s as f64 * scale);
            let _ = writeln!(o, "{name}_count{{node=\"{node}\"}} {n}");
        }
        self.render_stages(&mut o);
        self.render_executors(&mut o);
        let gauges: [(&str, &str, GaugeField); 8] = [
            ("ringraft_shard_term", "Current Raft term.", |g| {
                g.term.get()
            }),
            (
                "ringraft_shard_role",
                "Role: 0 follower, 1 candidate, 2 leader, 3 learner.",
                |g| g.role.get(),
            ),
            (
                "ringraft_shard_leader_id",
                "Known leader (0 = none).",
                |g| g.leader_id.get(),
            ),
            ("ringraft_shard_commit_index", "Commit index.", |g| {
                g.commit_index.get()
            }),
            ("ringraft_shard_applied_index", "Applied index.", |g| {
                g.applied_index.get()
            }),
            ("ringraft_shard_last_index", "Last log index.", |g| {
                g.last_index.get()
            }),
            ("ringraft_shard_durable_index", "Durable WAL index.", |g| {
                g.durable_index.get()
            }),
            ("ringraft_shard_keys", "Keys in the state machine.", |g| {
                g.keys.get()
            }),
        ];
        for (name, help, f) in gauges {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} gauge");
            for (i, g) in self.shards.iter().enumerate() {
                let _ = writeln!(o, "{name}{{node=\"{node}\",shard=\"{i}\"}} {}", f(g));
            }
        }
        let _ = write!(
            o,
            "# HELP ringraft_uptime_seconds Seconds since start.\n# TYPE ringraft_uptime_seconds gauge\nringraft_uptime_seconds{{node=\"{node}\"}} {}\n",
            self.started.elapsed().as_secs()
        );
        o
    }

    /// The write stages: one histogram family, `stage` labelled, summed over cores.
    fn render_stages(&self, o: &mut String) {
        let node = self.node_id;
        let name = "ringraft_write_stage_seconds";
        let _ = writeln!(
            o,
            "# HELP {name} Time a write spends in each stage (leader: received, proposed, locally durable, committed, applied, answered; follower: append received, durable, acknowledged).\n# TYPE {name} histogram"
        );
        for (stage, f) in STAGES {
            let mut b = [0u64; FINE_BUCKETS];
            let mut sum = 0u64;
            for c in &self.cores {
                let (cb, cs) = f(&c.stages).snapshot();
                for (acc, x) in b.iter_mut().zip(cb) {
                    *acc += x;
                }
                sum += cs;
            }
            render_fine(
                o,
                name,
                &format!("node=\"{node}\",stage=\"{stage}\""),
                &b,
                sum,
            );
        }
        let name = "ringraft_write_commit_before_local_durable_total";
        let _ = write!(
            o,
            "# HELP {name} Writes a follower quorum committed before the leader's own WAL sync covering them completed.\n# TYPE {name} counter\n{name}{{node=\"{node}\"}} {}\n",
            self.sum(|c| c.stages.commit_before_local_durable.get())
        );
    }

    /// Every core's executor statistics, `core` labelled.
    fn render_executors(&self, o: &mut String) {
        let node = self.node_id;
        type ExecField = fn(&ExecutorMetrics) -> u64;
        let per_core: [(&str, &str, &str, f64, ExecField); 9] = [
            ("ringraft_executor_tasks_total", "counter", "Tasks the core's executor polled.", 1.0, |e| e.tasks_executed.get()),
            ("ringraft_executor_scheduler_runs_total", "counter", "Times the executor's scheduler picked a task queue.", 1.0, |e| e.scheduler_runs.get()),
            ("ringraft_executor_runtime_seconds_total", "counter", "Time the executor spent running tasks.", 1e9, |e| e.runtime_ns.get()),
            ("ringraft_executor_total_runtime_seconds_total", "counter", "Time the executor spent running tasks and polling for I/O.", 1e9, |e| e.total_runtime_ns.get()),
            ("ringraft_executor_busy_ratio", "gauge", "Share of wall time the executor ran tasks, over the last second.", 1e3, |e| e.busy_permille.get()),
            ("ringraft_executor_file_reads_total", "counter", "File reads the executor's io_uring reactor submitted (the WAL uses its own system calls).", 1.0, |e| e.file_reads.get()),
            ("ringraft_executor_file_read_bytes_total", "counter", "Bytes of those file reads.", 1.0, |e| e.file_bytes_read.get()),
            ("ringraft_executor_file_writes_total", "counter", "File writes the executor's io_uring reactor submitted (the WAL uses its own system calls).", 1.0, |e| e.file_writes.get()),
            ("ringraft_executor_file_write_bytes_total", "counter", "Bytes of those file writes.", 1.0, |e| e.file_bytes_written.get()),
        ];
        for (name, kind, help, scale, f) in per_core {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (core, c) in self.cores.iter().enumerate() {
                let v = f(&c.executor);
                if scale == 1.0 {
                    let _ = writeln!(o, "{name}{{node=\"{node}\",core=\"{core}\"}} {v}");
                } else {
                    let _ = writeln!(
                        o,
                        "{name}{{node=\"{node}\",core=\"{core}\"}} {}",
                        v as f64 / scale
                    );
                }
            }
        }
        for (name, help, scale, pick) in [
            (
                "ringraft_task_queue_runtime_seconds_total",
                "Time each task queue of the executor ran.",
                1e9,
                0,
            ),
            (
                "ringraft_task_queue_selected_total",
                "Times each task queue was picked to run (runtime / selected = time per turn).",
                1.0,
                1,
            ),
        ] {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
            for (core, c) in self.cores.iter().enumerate() {
                for q in 0..MAX_TASK_QUEUES {
                    let v = if pick == 0 {
                        c.executor.queue_runtime_ns[q].get()
                    } else {
                        c.executor.queue_selected[q].get()
                    };
                    if v == 0 {
                        continue;
                    }
                    let _ = writeln!(
                        o,
                        "{name}{{node=\"{node}\",core=\"{core}\",queue=\"{q}\"}} {}",
                        v as f64 / scale
                    );
                }
            }
        }
        let name = "ringraft_executor_wakeup_delay_seconds";
        let _ = writeln!(
            o,
            "# HELP {name} How late the executor's probe task ran after its timer was due: how long a ready task waits for the executor.\n# TYPE {name} histogram"
        );
        for (core, c) in self.cores.iter().enumerate() {
            let (b, sum) = c.executor.wakeup_delay.snapshot();
            render_fine(
                o,
                name,
                &format!("node=\"{node}\",core=\"{core}\""),
                &b,
                sum,
            );
        }
    }

    /// Per-shard state as JSON (for `/status`).
    pub fn shards_json(&self) -> serde_json::Value {
        serde_json::Value::Array(
            self.shards
                .iter()
                .enumerate()
                .map(|(i, g)| {
                    serde_json::json!({
                        "shard": i,
                        "role": RoleGauge::name(g.role.get()),
                        "term": g.term.get(),
                        "leader_id": g.leader_id.get(),
                        "commit_index": g.commit_index.get(),
                        "applied_index": g.applied_index.get(),
                        "last_index": g.last_index.get(),
                        "durable_index": g.durable_index.get(),
                        "keys": g.keys.get(),
                    })
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(Histogram::bucket_of(0), 0);
        assert_eq!(Histogram::bucket_of(1), 0);
        assert_eq!(Histogram::bucket_of(2), 1);
        assert_eq!(Histogram::bucket_of(3), 2);
        assert_eq!(Histogram::bucket_of(4), 2);
        assert_eq!(Histogram::bucket_of(5), 3);
        assert_eq!(Histogram::bucket_of(1 << 20), 20);
        assert_eq!(Histogram::bucket_of(u64::MAX), HISTOGRAM_BUCKETS - 1);
    }

    #[test]
    fn quantiles_from_buckets() {
        let h = Histogram::default();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.quantile_upper(0.5), 64);
        assert_eq!(h.quantile_upper(0.99), 128);
        assert_eq!(h.snapshot().2, 100);
        assert_eq!(h.snapshot().1, 5050);
    }

    #[test]
    fn renders_prometheus_text_summed_over_cores() {
        let m = NodeMetrics::new(3, 2, 2);
        m.cores[0].proposals.add(5);
        m.cores[1].proposals.add(7);
        m.cores[1].error(ErrorKind::Busy);
        m.cores[0].raft_invalid_messages.set(2);
        m.cores[1].raft_invalid_messages.set(1);
        m.cores[0].commit_latency_us.record(300);
        m.cores[1].commit_latency_us.record(3);
        m.shards[1].term.set(4);
        m.shards[1].role.set(RoleGauge::Leader as u64);
        let t = m.render();
        assert!(
            t.contains("ringraft_proposals_total{node=\"3\"} 12\n"),
            "{t}"
        );
        assert!(t.contains("ringraft_errors_total{node=\"3\",kind=\"busy\"} 1\n"));
        assert!(
            t.contains("ringraft_raft_invalid_messages_total{node=\"3\"} 3\n"),
            "{t}"
        );
        assert!(t.contains("ringraft_shard_term{node=\"3\",shard=\"1\"} 4\n"));
        assert!(t.contains("ringraft_shard_role{node=\"3\",shard=\"1\"} 2\n"));
        assert!(t.contains("ringraft_commit_latency_seconds_count{node=\"3\"} 2\n"));
        assert!(t.contains("ringraft_commit_latency_seconds_bucket{node=\"3\",le=\"+Inf\"} 2\n"));
        assert!(
            t.contains("ringraft_commit_latency_seconds_bucket{node=\"3\",le=\"0.000004\"} 1\n"),
            "{t}"
        );
        // Every sample line is `name{labels} number`.
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
        let s = m.shards_json();
        assert_eq!(s[1]["role"], "leader");
        assert_eq!(s[1]["term"], 4);
    }

    #[test]
    fn fine_buckets_bound_what_they_hold() {
        // Every value lies in the first bucket whose bound is at least the value.
        let mut v = 1u64;
        while v < 1 << 36 {
            for x in [v.saturating_sub(1), v, v + 1, v + v / 3, v + v / 2 + 7] {
                let i = FineHistogram::bucket_of(x);
                if let Some(b) = FineHistogram::bound(i) {
                    assert!(x <= b, "{x} in bucket {i} bounded by {b}");
                }
                if i > 0 {
                    let below = FineHistogram::bound(i - 1).unwrap();
                    assert!(x > below, "{x} belongs below {below}");
                }
            }
            v = v * 5 / 4 + 1;
        }
        assert_eq!(FineHistogram::bound(1), Some(160));
        assert_eq!(FineHistogram::bucket_of(160), 1);
        assert_eq!(FineHistogram::bucket_of(161), 2);
        assert_eq!(FineHistogram::bucket_of(u64::MAX), FINE_BUCKETS - 1);
        assert_eq!(FineHistogram::bound(FINE_BUCKETS - 1), None);
    }

    #[test]
    fn renders_stages_and_executor_per_core() {
        let m = NodeMetrics::new(2, 2, 1);
        m.cores[0].stages.proposed_to_local_durable.record(200);
        m.cores[1].stages.proposed_to_local_durable.record(150);
        m.cores[1].stages.commit_before_local_durable.inc();
        m.cores[1].executor.tasks_executed.add(9);
        m.cores[0].executor.busy_permille.set(250);
        m.cores[1].executor.wakeup_delay.record(1_000_000);
        let t = m.render();
        let s = "ringraft_write_stage_seconds";
        assert!(
            t.contains(&format!("{s}_bucket{{node=\"2\",stage=\"proposed_to_local_durable\",le=\"0.00000016\"}} 1\n")),
            "{t}"
        );
        assert!(t.contains(&format!(
            "{s}_bucket{{node=\"2\",stage=\"proposed_to_local_durable\",le=\"0.000000224\"}} 2\n"
        )));
        assert!(t.contains(&format!(
            "{s}_count{{node=\"2\",stage=\"proposed_to_local_durable\"}} 2\n"
        )));
        assert!(t.contains(&format!(
            "{s}_count{{node=\"2\",stage=\"committed_to_applied\"}} 0\n"
        )));
        assert!(t.contains("ringraft_write_commit_before_local_durable_total{node=\"2\"} 1\n"));
        assert!(t.contains("ringraft_executor_tasks_total{node=\"2\",core=\"1\"} 9\n"));
        assert!(t.contains("ringraft_executor_busy_ratio{node=\"2\",core=\"0\"} 0.25\n"));
        assert!(
            t.contains("ringraft_executor_wakeup_delay_seconds_count{node=\"2\",core=\"1\"} 1\n")
        );
        for line in t.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = line.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn gauge_never_underflows() {
        let g = Gauge::default();
        g.dec();
        assert_eq!(g.get(), 0);
        g.inc();
        g.inc();
        g.dec();
        assert_eq!(g.get(), 1);
    }
}
