//! Allowed ranges of the configuration values, one named constant per limit; [`super::validate`]
//! checks every value against them. Owned by the node's configuration.

/// Node ids: 1 ..= this.
pub(crate) const NODE_ID_MAX: u64 = 1 << 32;
/// Members in `initial_cluster`.
pub(crate) const MEMBERS_MAX: usize = 9;
/// Election timeout bounds in ms.
pub(crate) const ELECTION_TIMEOUT_MS_MIN: u64 = 20;
/// Upper bound of election timeouts in ms.
pub(crate) const ELECTION_TIMEOUT_MS_MAX: u64 = 60_000;
/// Heartbeat interval bounds in ms.
pub(crate) const HEARTBEAT_INTERVAL_MS_MIN: u64 = 1;
/// Tick interval bounds in ms.
pub(crate) const TICK_INTERVAL_MS_MIN: u64 = 1;
/// Upper bound of the tick interval in ms.
pub(crate) const TICK_INTERVAL_MS_MAX: u64 = 1_000;
/// Lease bounds in ms.
pub(crate) const LEASE_DURATION_MS_MIN: u64 = 1;
/// Flush batch threshold bounds (records).
pub(crate) const FLUSH_THRESHOLD_MAX: u64 = 1_000_000;
/// Flush interval bound in ms.
pub(crate) const FLUSH_INTERVAL_MS_MAX: u64 = 10_000;
/// Buffered entries bound.
pub(crate) const MAX_BUFFERED_ENTRIES_MAX: u64 = 10_000_000;
/// Flush worker threads.
pub(crate) const FLUSH_WORKERS_MAX: usize = 64;
/// Entries per AppendEntries.
pub(crate) const APPEND_BATCH_ENTRIES_MAX: usize = 100_000;
/// Bytes per AppendEntries.
pub(crate) const APPEND_BATCH_BYTES_MIN: usize = 4 << 10;
/// Upper bound of bytes per AppendEntries.
pub(crate) const APPEND_BATCH_BYTES_MAX: usize = 64 << 20;
/// AppendEntries in flight per follower.
pub(crate) const INFLIGHT_APPENDS_MAX: usize = 4_096;
/// Proposals in flight per shard.
pub(crate) const INFLIGHT_PROPOSALS_MAX: usize = 1_000_000;
/// Socket buffer bounds in bytes (0 = kernel default).
pub(crate) const SOCKET_BUFFER_BYTES_MAX: usize = 256 << 20;
/// Frame size bounds in bytes.
pub(crate) const FRAME_BYTES_MIN: usize = 4 << 10;
/// Upper bound of a frame in bytes.
pub(crate) const FRAME_BYTES_MAX: usize = 256 << 20;
/// Connection count bound.
pub(crate) const CONNECTIONS_MAX: usize = 100_000;
/// Requests in flight per connection.
pub(crate) const INFLIGHT_PER_CONNECTION_MAX: usize = 100_000;
/// Timeouts in ms.
pub(crate) const TIMEOUT_MS_MAX: u64 = 600_000;
/// HTTP header bytes bounds.
pub(crate) const HTTP_HEADER_BYTES_MIN: usize = 256;
/// Upper bound of HTTP header bytes.
pub(crate) const HTTP_HEADER_BYTES_MAX: usize = 1 << 20;
/// Upper bound of HTTP body bytes.
pub(crate) const HTTP_BODY_BYTES_MAX: usize = 64 << 20;
/// Executors (cores) per node.
pub(crate) const CORES_MAX: usize = 1_024;
/// Shards (Raft groups) per node.
pub(crate) const SHARDS_MAX: usize = 65_536;
/// Spin before park, µs.
pub(crate) const SPIN_US_MAX: u64 = 10_000;
/// glommio io_memory per executor, bytes.
pub(crate) const IO_MEMORY_BYTES_MIN: usize = 512 << 10;
/// Upper bound of io_memory per executor.
pub(crate) const IO_MEMORY_BYTES_MAX: usize = 1 << 30;
/// Key size bound.
pub(crate) const KEY_BYTES_MAX: usize = 64 << 10;
/// Value size bound.
pub(crate) const VALUE_BYTES_MAX: usize = 16 << 20;
/// Scan result bound.
pub(crate) const SCAN_LIMIT_MAX: usize = 1_000_000;
/// Snapshot threshold bound (entries).
pub(crate) const SNAPSHOT_ENTRIES_MAX: u64 = 1 << 40;
/// Bound of `raft.snapshot_state_percent`: past 100 the log kept in memory between two
/// snapshots would outgrow the state it replays onto.
pub(crate) const SNAPSHOT_STATE_PERCENT_MAX: u64 = 100;
/// Bound of `raft.snapshot_write_mib_per_s` (1 TiB/s, past any device: a typo, not a limit),
/// so the rate in bytes a second never overflows.
pub(crate) const SNAPSHOT_WRITE_MIB_PER_S_MAX: u64 = 1 << 20;
/// WAL segment bounds.
pub(crate) const SEGMENT_BYTES_MIN: u64 = 1 << 20;
/// Upper bound of a WAL segment.
pub(crate) const SEGMENT_BYTES_MAX: u64 = 4 << 30;
