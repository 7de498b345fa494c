//! The TOML schema of the node configuration: one struct per section, unknown keys refused.
//! Values are checked by [`super::validate`], not here; defaults live in [`super::defaults`].
//! Owned by the node's configuration.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::defaults::{default_cluster_id, default_db_root_dir, default_log_dir};
use super::validate::err;

/// The whole node configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Membership and directories.
    pub(crate) cluster: ClusterConfig,
    /// Raft timing, reads, persistence, replication.
    #[serde(default)]
    pub(crate) raft: RaftConfig,
    /// Sockets and protocol bounds.
    #[serde(default)]
    pub(crate) network: NetworkConfig,
    /// The metrics endpoint.
    #[serde(default)]
    pub(crate) monitoring: MonitoringConfig,
    /// Thread-per-core layout (ringraft's own).
    #[serde(default)]
    pub(crate) runtime: RuntimeConfig,
    /// Per-shard key-value store limits (ringraft's own).
    #[serde(default)]
    pub(crate) state_machine: StateMachineConfig,
    /// TLS and client authentication (ringraft's own).
    #[serde(default)]
    pub(crate) security: SecurityConfig,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ClusterConfig {
    /// This node's id (1 ..= 2^32).
    pub(crate) node_id: u64,
    /// Address the node listens on for peers and clients (frames and HTTP on one port).
    pub(crate) listen_address: String,
    /// The members the cluster starts with.
    #[serde(default)]
    pub(crate) initial_cluster: Vec<MemberConfig>,
    /// Set to 1 to bootstrap a single-node cluster; otherwise the voters of `initial_cluster`.
    #[serde(default)]
    pub(crate) initial_cluster_size: Option<usize>,
    /// Cluster id carried in every handshake; peers of another cluster are refused.
    #[serde(default = "default_cluster_id")]
    pub(crate) cluster_id: u64,
    /// Root of the data directories (`<db_root_dir>/<node_id>/`).
    #[serde(default = "default_db_root_dir")]
    pub(crate) db_root_dir: PathBuf,
    /// Root of the log directories (`<log_dir>/<node_id>/d.log`).
    #[serde(default = "default_log_dir")]
    pub(crate) log_dir: PathBuf,
    /// Addresses this node dials for members that join later (not in `initial_cluster`), in
    /// place of the address such a member announces: a route only this node knows (a proxy, a
    /// NAT). Empty by default.
    #[serde(default)]
    pub(crate) peer_addresses: Vec<PeerAddressConfig>,
}

/// One `peer_addresses` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PeerAddressConfig {
    /// Node id.
    pub(crate) id: u64,
    /// The address this node dials for it (host:port).
    pub(crate) address: String,
}

/// One `initial_cluster` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MemberConfig {
    /// Node id.
    pub(crate) id: u64,
    /// Peer address (host:port).
    pub(crate) address: String,
    /// 1 = follower (voter), 3 = learner.
    pub(crate) role: u8,
    /// 0 = joining, 1 = syncing, 2 = active.
    pub(crate) status: u8,
}

/// `[raft]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RaftConfig {
    /// Smallest randomized election timeout.
    #[serde(alias = "election_timeout_min")]
    pub(crate) election_timeout_ms_min: u64,
    /// Largest randomized election timeout (exclusive).
    #[serde(alias = "election_timeout_max")]
    pub(crate) election_timeout_ms_max: u64,
    /// Leader heartbeat interval.
    #[serde(alias = "heartbeat_interval")]
    pub(crate) heartbeat_interval_ms: u64,
    /// Length of one Raft tick; timeouts are converted to ticks.
    pub(crate) tick_interval_ms: u64,
    /// Proposals accepted but not yet answered, per shard; past it clients get Busy.
    pub(crate) max_inflight_proposals: usize,
    /// Take a snapshot after this many applied entries past the last one.
    pub(crate) snapshot_threshold_entries: u64,
    /// A snapshot also waits until the log since the last one holds about this percent of the
    /// last snapshot's size in bytes (0: the entry count alone decides), so the snapshot work
    /// per write stays constant as the state grows.
    pub(crate) snapshot_state_percent: u64,
    /// Log entries kept in memory behind a snapshot, so a slightly lagging follower catches up
    /// from the log instead of receiving the whole snapshot.
    pub(crate) snapshot_retain_entries: u64,
    /// Reads.
    pub(crate) read_consistency: ReadConsistencyConfig,
    /// Durability.
    pub(crate) persistence: PersistenceConfig,
    /// AppendEntries batching.
    pub(crate) replication: ReplicationConfig,
    /// Most MiB a second a locally taken snapshot's file is written at (0: as fast as the
    /// device takes them), so a large state's file leaves the device to the WAL's syncs.
    pub(crate) snapshot_write_mib_per_s: u64,
}

/// `[raft.read_consistency]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ReadConsistencyConfig {
    /// Policy of a read that does not name one.
    pub(crate) default_policy: ReadPolicy,
    /// Leader lease; must be below the smallest election timeout.
    pub(crate) lease_duration_ms: u64,
    /// Clock drift margin subtracted from the lease.
    pub(crate) clock_drift_ms: u64,
    /// Whether a request may choose its own policy.
    pub(crate) allow_client_override: bool,
}

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum ReadPolicy {
    /// Served by the leader while its lease holds.
    LeaseRead,
    /// Confirmed by a quorum (ReadIndex).
    LinearizableRead,
    /// Local state of whichever node is asked.
    EventualConsistency,
}

/// `[raft.persistence]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct PersistenceConfig {
    /// When a write is acknowledged.
    pub(crate) strategy: PersistenceStrategy,
    /// When the WAL syncs.
    pub(crate) flush_policy: FlushPolicy,
    /// Entries appended but not yet durable; past it appends push back.
    pub(crate) max_buffered_entries: u64,
    /// Flush worker threads.
    pub(crate) flush_workers: usize,
    /// WAL segment size.
    pub(crate) segment_bytes: u64,
    /// How WAL records reach the file: `"pwrite"` (staged, written with pwritev, fdatasync) or
    /// `"mmap"` (copied into a writable map, msync).
    pub(crate) wal_write_mode: WalWriteMode,
    /// Purged WAL segment files kept for reuse instead of deleted (each one `segment_bytes`
    /// on disk). Only the pwrite mode reuses them.
    pub(crate) wal_recycle_segments: u64,
    /// Largest round (entries appended) whose WAL write and fdatasync the core's executor does
    /// itself (how: `wal_executor_sync`), when nothing else waits to be persisted; larger
    /// rounds, and every round while another waits, go to the flush workers. Syncing on the
    /// executor saves the thread hand-offs of a worker sync (worker woken, executor woken
    /// back); on a busy core the workers keep the write-out off the executor. 0: always the
    /// workers.
    pub(crate) wal_executor_sync_max_entries: u64,
    /// How the executor syncs the rounds `wal_executor_sync_max_entries` gives it:
    /// `"io_uring"` submits the fdatasync through the executor's io_uring and keeps serving
    /// (the network, other shards) while it is in flight; `"blocking"` calls fdatasync on the
    /// executor thread, which stops until the disk answers.
    pub(crate) wal_executor_sync: WalExecutorSync,
}

impl PersistenceConfig {
    /// Whether the core's executor syncs small rounds itself (`wal_executor_sync_max_entries`
    /// set, with the Immediate flush policy it applies to).
    pub(crate) fn executor_syncs(&self) -> bool {
        self.wal_executor_sync_max_entries > 0
            && matches!(self.flush_policy, FlushPolicy::Immediate)
    }
}

/// `raft.persistence.wal_executor_sync`: how the executor makes its own rounds durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub(crate) enum WalExecutorSync {
    /// fdatasync submitted through the executor's io_uring; the executor keeps running.
    #[default]
    #[serde(rename = "io_uring")]
    IoUring,
    /// fdatasync called on the executor thread, blocking it.
    #[serde(rename = "blocking")]
    Blocking,
}

/// `raft.persistence.wal_write_mode`: how WAL records reach the file (see `ringraft_wal::WriteMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum WalWriteMode {
    /// Staged in memory, written with pwritev and made durable with fdatasync (measured fastest).
    #[default]
    Pwrite,
    /// Copied into a writable shared map and made durable with msync.
    Mmap,
}

impl WalWriteMode {
    /// The WAL crate's mode.
    pub(crate) fn to_wal(self) -> ringraft_wal::WriteMode {
        match self {
            WalWriteMode::Pwrite => ringraft_wal::WriteMode::Pwrite,
            WalWriteMode::Mmap => ringraft_wal::WriteMode::Mmap,
        }
    }
}

impl<'de> Deserialize<'de> for WalWriteMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match ringraft_wal::WriteMode::parse(&s) {
            Some(ringraft_wal::WriteMode::Pwrite) => Ok(WalWriteMode::Pwrite),
            Some(ringraft_wal::WriteMode::Mmap) => Ok(WalWriteMode::Mmap),
            None => Err(serde::de::Error::custom(err(
                "raft.persistence.wal_write_mode",
                &format!("{s:?}"),
                "\"pwrite\" or \"mmap\"",
            ))),
        }
    }
}

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum PersistenceStrategy {
    /// After a quorum has it durable and it is applied.
    DiskFirst,
    /// After a quorum has it in memory (weaker: a correlated crash can lose acknowledged writes).
    MemFirst,
}

/// When the WAL syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum FlushPolicy {
    /// Sync as soon as anything is waiting.
    Immediate,
    /// Sync when `threshold` records wait or `interval_ms` passed, whichever is first.
    Batch {
        /// Records.
        threshold: u64,
        /// Milliseconds.
        interval_ms: u64,
    },
}

/// `[raft.replication]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ReplicationConfig {
    /// Most entries in one AppendEntries.
    pub(crate) append_entries_batch_threshold: usize,
    /// Most payload bytes in one AppendEntries.
    pub(crate) append_entries_max_bytes: usize,
    /// AppendEntries in flight per follower.
    pub(crate) max_inflight_appends: usize,
}

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct NetworkConfig {
    /// TCP_NODELAY on every socket.
    pub(crate) tcp_nodelay: bool,
    /// SO_SNDBUF (0 = kernel default).
    pub(crate) send_buffer_bytes: usize,
    /// SO_RCVBUF (0 = kernel default).
    pub(crate) recv_buffer_bytes: usize,
    /// TCP keepalive idle time (0 = off).
    pub(crate) tcp_keepalive_s: u64,
    /// Peer connect timeout.
    pub(crate) connect_timeout_ms: u64,
    /// Reconnect backoff, first delay.
    pub(crate) reconnect_backoff_ms_min: u64,
    /// Reconnect backoff, largest delay.
    pub(crate) reconnect_backoff_ms_max: u64,
    /// Largest frame accepted or sent.
    pub(crate) max_frame_bytes: usize,
    /// Client and peer connections accepted at once, per core.
    pub(crate) max_connections: usize,
    /// Requests in flight per connection; past it reading pauses.
    pub(crate) max_inflight_per_connection: usize,
    /// Client request deadline; past it the client gets Timeout.
    pub(crate) request_timeout_ms: u64,
    /// Largest HTTP request head.
    pub(crate) http_max_header_bytes: usize,
    /// Largest HTTP request body.
    pub(crate) http_max_body_bytes: usize,
}

/// `[monitoring]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MonitoringConfig {
    /// Serve `/metrics`, `/health`, `/status`.
    #[serde(alias = "prometheus_enabled")]
    pub(crate) metrics_enabled: bool,
    /// Port of the metrics endpoint (host of `listen_address`).
    #[serde(alias = "prometheus_port")]
    pub(crate) metrics_port: u16,
}

/// `[runtime]`: ringraft's thread-per-core layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RuntimeConfig {
    /// Executors (one thread each).
    pub(crate) cores: usize,
    /// Shards (Raft groups) per node; the key space is hashed into them; must be the same on
    /// every node of a cluster.
    pub(crate) shards_per_node: usize,
    /// Thread placement.
    pub(crate) placement: Placement,
    /// First CPU used with `Pinned` (executor i runs on CPU `first_cpu + i`).
    pub(crate) first_cpu: usize,
    /// Busy-poll this long before parking (0 = never spin; right for a shared 2-core machine).
    pub(crate) spin_before_park_us: u64,
    /// glommio io_uring registered memory per executor.
    pub(crate) io_memory_bytes: usize,
}

/// Where executor threads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Placement {
    /// Let the kernel schedule threads.
    Unbound,
    /// Pin executor i to CPU `first_cpu + i`.
    Pinned,
}

/// `[state_machine]`: what this node admits (checked before a write is proposed) and how many
/// pairs a scan returns. Limits that change how a write is *applied* are not configurable:
/// they are constants of [`crate::node::limits`], equal on every replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct StateMachineConfig {
    /// Largest key.
    pub(crate) max_key_bytes: usize,
    /// Largest value.
    pub(crate) max_value_bytes: usize,
    /// Most pairs one scan returns.
    pub(crate) max_scan_results: usize,
}

/// `[security]`: TLS on the node's port (frames and HTTP) and on every connection it dials, and
/// client credentials. Paths are relative to the working directory, like `db_root_dir`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SecurityConfig {
    /// PEM of the CA every peer and client certificate must chain to.
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM of this node's certificate (it must name this node and cluster).
    pub(crate) cert_file: Option<PathBuf>,
    /// PEM of its private key (owner-only file mode).
    pub(crate) key_file: Option<PathBuf>,
    /// Refuse TLS clients that present no certificate (peers always need one).
    pub(crate) require_client_cert: bool,
    /// Bearer tokens for HTTP clients: lines `<role> <name> <token>`; owner-only file mode.
    pub(crate) tokens_file: Option<PathBuf>,
    /// Allow plaintext on a non-loopback `listen_address` (logged as a warning at every start).
    pub(crate) insecure: bool,
}
