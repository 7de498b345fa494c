//! Configuration of one Raft group replica: every limit of the core is a named constant here
//! with a default, and [`Config::validate`] rejects combinations that would be unsafe (a lease
//! that is not shorter than the election timeout minus the clock-drift margin, zero-sized
//! windows). Owned by the Raft core; the node builds one `Config` per group.

use super::message::NodeId;

/// Default lower bound of the randomized election timeout, in ticks.
pub const ELECTION_TIMEOUT_MIN_TICKS_DEFAULT: u32 = 10;
/// Default upper bound (exclusive) of the randomized election timeout, in ticks.
pub const ELECTION_TIMEOUT_MAX_TICKS_DEFAULT: u32 = 20;
/// Default leader heartbeat interval, in ticks.
pub const HEARTBEAT_INTERVAL_TICKS_DEFAULT: u32 = 2;
/// Default clock-drift margin subtracted from the election timeout to get the lease, in ticks.
pub const CLOCK_DRIFT_MARGIN_TICKS_DEFAULT: u32 = 3;
/// Default length of one tick in the driver's monotonic clock, in nanoseconds (10 ms). The lease
/// in real time is `lease_ticks() × tick_nanos`; a driver whose ticks are longer must say so, or
/// its leases are shorter than they could be (never longer: see [`Config::tick_nanos`]).
pub const TICK_NANOS_DEFAULT: u64 = 10_000_000;
/// Default maximum number of AppendEntries messages in flight to one follower.
pub const MAX_INFLIGHT_MSGS_DEFAULT: usize = 256;
/// Default maximum number of entries in one AppendEntries message.
pub const MAX_ENTRIES_PER_MSG_DEFAULT: usize = 1024;
/// Default maximum payload bytes in one AppendEntries message (at least one entry is always sent).
pub const MAX_BYTES_PER_MSG_DEFAULT: usize = 1 << 20;
/// Default maximum number of appended but uncommitted entries at the leader (proposal backpressure).
pub const MAX_UNCOMMITTED_ENTRIES_DEFAULT: u64 = 8192;
/// Default maximum number of committed entries handed out in one `Ready`.
pub const MAX_COMMITTED_ENTRIES_PER_READY_DEFAULT: usize = 4096;
/// Default maximum number of read requests waiting at the leader.
pub const MAX_PENDING_READS_DEFAULT: usize = 4096;
/// Default maximum number of heartbeat (read/lease) rounds in flight.
pub const MAX_READ_ROUNDS_IN_FLIGHT_DEFAULT: usize = 64;
/// Default number of applied entries past the last snapshot after which the core asks for a new one.
pub const SNAPSHOT_THRESHOLD_ENTRIES_DEFAULT: u64 = 10_000;
/// Default number of entries kept in memory behind a snapshot (so slightly lagging followers
/// catch up from the log instead of needing the snapshot).
pub const LOG_RETAIN_ENTRIES_DEFAULT: u64 = 1_000;
/// Default ticks after which an unanswered InstallSnapshot is sent again.
pub const SNAPSHOT_RETRY_TICKS_DEFAULT: u32 = 40;

/// When a replica acknowledges entries (and the leader counts itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge only entries that are on disk: a follower's AppendResponse goes out only
    /// after the driver persisted the entries (`Ready::messages_after_persist`), and the leader
    /// counts itself in the commit quorum only for entries reported by `Raft::on_persisted`.
    /// A committed entry survives any crash of any minority and any crash of all nodes.
    DiskFirst,
    /// Acknowledge entries as soon as they are in memory. Explicitly weaker: an entry is
    /// committed when a quorum holds it *in memory*. If nodes whose acknowledgements formed
    /// that quorum crash before their fsync, the entry can be gone from every surviving disk;
    /// a new leader is then elected without it and overwrites it, so a write the client was
    /// told is committed is lost (and may have been applied on a node that did not crash).
    /// One crash of a quorum member before fsync plus a leader change is enough. Votes and
    /// terms are still persisted before any vote is answered in this mode.
    MemFirst,
}

/// Configuration of one replica of one group.
#[derive(Debug, Clone)]
pub struct Config {
    /// This replica's node id (non-zero).
    pub id: NodeId,
    /// Seed of the replica's random generator (election timeouts).
    pub seed: u64,
    /// Randomized election timeout lower bound, in ticks.
    pub election_timeout_min_ticks: u32,
    /// Randomized election timeout upper bound (exclusive), in ticks.
    pub election_timeout_max_ticks: u32,
    /// Leader heartbeat interval, in ticks.
    pub heartbeat_interval_ticks: u32,
    /// Run a PreVote round before incrementing the term.
    pub pre_vote: bool,
    /// Leader steps down when it has not heard from a quorum for one election timeout, and
    /// followers ignore vote requests while they heard from a leader within the minimum
    /// election timeout (required for lease reads).
    pub check_quorum: bool,
    /// Serve `ReadMode::Lease` reads from the leader lease (falls back to ReadIndex otherwise).
    pub lease_read: bool,
    /// Ticks of clock drift between replicas that the lease tolerates.
    pub clock_drift_margin_ticks: u32,
    /// Nominal length of one tick in the driver's monotonic clock (ns): the driver calls `tick`
    /// at most once per `tick_nanos` of real time (late ticks are delivered late, never early).
    /// Used only by the clock-checked lease (`Raft::read_at`).
    pub tick_nanos: u64,
    /// Per-follower in-flight AppendEntries window.
    pub max_inflight_msgs: usize,
    /// Maximum entries per AppendEntries message.
    pub max_entries_per_msg: usize,
    /// Maximum payload bytes per AppendEntries message.
    pub max_bytes_per_msg: usize,
    /// Maximum uncommitted entries at the leader before proposals are refused.
    pub max_uncommitted_entries: u64,
    /// Maximum committed entries per `Ready`.
    pub max_committed_entries_per_ready: usize,
    /// Maximum waiting read requests.
    pub max_pending_reads: usize,
    /// Maximum heartbeat rounds in flight.
    pub max_read_rounds_in_flight: usize,
    /// Applied entries past the last snapshot that trigger a snapshot request.
    pub snapshot_threshold_entries: u64,
    /// Entries kept behind a snapshot when compacting.
    pub log_retain_entries: u64,
    /// Ticks after which an unanswered snapshot is resent.
    pub snapshot_retry_ticks: u32,
    /// Acknowledgement durability.
    pub durability: Durability,
    /// TEST ONLY: breaks Raft on purpose by letting a leader commit an entry of a previous term
    /// by counting replicas (the Raft paper's figure 8). Used to show that the simulator and
    /// scenario checks catch a safety violation. Never set this outside tests.
    pub unsafe_commit_previous_term: bool,
    /// TEST ONLY: breaks Raft on purpose by granting votes without the log up-to-date check.
    pub unsafe_skip_vote_log_check: bool,
    /// TEST ONLY: breaks linearizability on purpose by serving every `ReadMode::Lease` read of a
    /// leader (that committed in its term) locally, checking neither the monotonic clock nor the
    /// tick lease: a paused or partitioned old leader then answers stale reads. A negative
    /// control for fault suites. Never set this outside tests.
    pub unsafe_lease_ignore_clock: bool,
}

impl Config {
    /// A configuration with every default for replica `id`.
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            seed: id,
            election_timeout_min_ticks: ELECTION_TIMEOUT_MIN_TICKS_DEFAULT,
            election_timeout_max_ticks: ELECTION_TIMEOUT_MAX_TICKS_DEFAULT,
            heartbeat_interval_ticks: HEARTBEAT_INTERVAL_TICKS_DEFAULT,
            pre_vote: true,
            check_quorum: true,
            lease_read: true,
            clock_drift_margin_ticks: CLOCK_DRIFT_MARGIN_TICKS_DEFAULT,
            tick_nanos: TICK_NANOS_DEFAULT,
            max_inflight_msgs: MAX_INFLIGHT_MSGS_DEFAULT,
            max_entries_per_msg: MAX_ENTRIES_PER_MSG_DEFAULT,
            max_bytes_per_msg: MAX_BYTES_PER_MSG_DEFAULT,
            max_uncommitted_entries: MAX_UNCOMMITTED_ENTRIES_DEFAULT,
            max_committed_entries_per_ready: MAX_COMMITTED_ENTRIES_PER_READY_DEFAULT,
            max_pending_reads: MAX_PENDING_READS_DEFAULT,
            max_read_rounds_in_flight: MAX_READ_ROUNDS_IN_FLIGHT_DEFAULT,
            snapshot_threshold_entries: SNAPSHOT_THRESHOLD_ENTRIES_DEFAULT,
            log_retain_entries: LOG_RETAIN_ENTRIES_DEFAULT,
            snapshot_retry_ticks: SNAPSHOT_RETRY_TICKS_DEFAULT,
            durability: Durability::DiskFirst,
            unsafe_commit_previous_term: false,
            unsafe_skip_vote_log_check: false,
            unsafe_lease_ignore_clock: false,
        }
    }

    /// Lease length in ticks: the minimum election timeout minus the clock-drift margin.
    pub fn lease_ticks(&self) -> u32 {
        self.election_timeout_min_ticks
            .saturating_sub(self.clock_drift_margin_ticks)
    }

    /// Lease length in the driver's monotonic clock: `lease_ticks() × tick_nanos` nanoseconds.
    pub fn lease_nanos(&self) -> u64 {
        u64::from(self.lease_ticks()).saturating_mul(self.tick_nanos)
    }

    /// Checks every bound; returns the first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &'static str| Err(ConfigError(what));
        if self.id == 0 {
            return bad("id must be non-zero");
        }
        if self.heartbeat_interval_ticks == 0 {
            return bad("heartbeat_interval_ticks must be at least 1");
        }
        if self.election_timeout_min_ticks <= self.heartbeat_interval_ticks {
            return bad("election_timeout_min_ticks must exceed heartbeat_interval_ticks");
        }
        if self.election_timeout_max_ticks <= self.election_timeout_min_ticks {
            return bad("election_timeout_max_ticks must exceed election_timeout_min_ticks");
        }
        if self.lease_read && !self.check_quorum {
            return bad("lease_read requires check_quorum");
        }
        if self.lease_read && self.lease_ticks() == 0 {
            return bad("lease_read needs election_timeout_min_ticks > clock_drift_margin_ticks");
        }
        if self.tick_nanos == 0 {
            return bad("tick_nanos must be at least 1");
        }
        if self.max_inflight_msgs == 0
            || self.max_entries_per_msg == 0
            || self.max_bytes_per_msg == 0
            || self.max_uncommitted_entries == 0
            || self.max_committed_entries_per_ready == 0
            || self.max_pending_reads == 0
            || self.max_read_rounds_in_flight == 0
            || self.snapshot_threshold_entries == 0
            || self.snapshot_retry_ticks == 0
        {
            return bad("every window, batch and queue limit must be at least 1");
        }
        Ok(())
    }
}

/// A rejected configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid raft config: {0}")]
pub struct ConfigError(pub &'static str);
