//! The node's configuration: a TOML file with the seed's keys (d-engine's three-node example) plus
//! ringraft's own runtime keys, overridden by environment variables, validated before start-up.
//!
//! Loading is three steps, each of which stops start-up with a message naming the key, the value
//! and what is allowed:
//! 1. The file is parsed as TOML (syntax errors name the line and column).
//! 2. Every environment variable `RINGRAFT__<SECTION>__<KEY>` overrides one value: the name after
//!    the prefix is split on `__`, lower-cased and used as a key path, so
//!    `RINGRAFT__RAFT__PERSISTENCE__STRATEGY=MemFirst` sets `raft.persistence.strategy` and
//!    `RINGRAFT__CLUSTER__NODE_ID=2` sets `cluster.node_id`. The value is read as a TOML value
//!    (`2`, `true`, `"x"`, `{ Batch = { threshold = 10, interval_ms = 5 } }`); anything that is
//!    not valid TOML is taken as a plain string (`MemFirst`). Each override is checked on its own,
//!    so an error names the variable that caused it.
//! 3. The merged table is deserialized with unknown keys refused (`deny_unknown_fields`) and then
//!    every number is range-checked ([`Config::validate`]).
//!
//! Defaults are tuned for the 2-core development machine: one core per node, no spinning, no
//! pinning, one flush worker. Invariants after [`Config::load`]: every value is inside its range,
//! `election_timeout_ms_min < election_timeout_ms_max`, `heartbeat_interval_ms` and
//! `lease_duration_ms` are below `election_timeout_ms_min`, this node is in `initial_cluster`
//! (unless it joins as a learner), member ids and addresses are unique.
//! Owned by the node.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Prefix of environment variables that override config values.
pub const ENV_PREFIX: &str = "RINGRAFT__";
/// Separator between key path segments in an environment variable name.
pub const ENV_SEPARATOR: &str = "__";
/// Largest config file read, in bytes.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

/// Member role as numbered in the seed's `initial_cluster` (d-engine's numbering).
pub const ROLE_LEADER: u8 = 0;
/// A voting member that starts as follower.
pub const ROLE_FOLLOWER: u8 = 1;
/// A candidate (never valid in a config file, listed for the numbering).
pub const ROLE_CANDIDATE: u8 = 2;
/// A non-voting member that receives the log.
pub const ROLE_LEARNER: u8 = 3;
/// Member status: joining the cluster, not yet caught up.
pub const STATUS_JOINING: u8 = 0;
/// Member status: catching up.
pub const STATUS_SYNCING: u8 = 1;
/// Member status: a full member.
pub const STATUS_ACTIVE: u8 = 2;

/// Allowed ranges, one named constant per limit.
pub mod limits {
    /// Node ids: 1 ..= this.
    pub const NODE_ID_MAX: u64 = 1 << 32;
    /// Members in `initial_cluster`.
    pub const MEMBERS_MAX: usize = 9;
    /// Election timeout bounds in ms.
    pub const ELECTION_TIMEOUT_MS_MIN: u64 = 20;
    /// Upper bound of election timeouts in ms.
    pub const ELECTION_TIMEOUT_MS_MAX: u64 = 60_000;
    /// Heartbeat interval bounds in ms.
    pub const HEARTBEAT_INTERVAL_MS_MIN: u64 = 1;
    /// Tick interval bounds in ms.
    pub const TICK_INTERVAL_MS_MIN: u64 = 1;
    /// Upper bound of the tick interval in ms.
    pub const TICK_INTERVAL_MS_MAX: u64 = 1_000;
    /// Lease bounds in ms.
    pub const LEASE_DURATION_MS_MIN: u64 = 1;
    /// Flush batch threshold bounds (records).
    pub const FLUSH_THRESHOLD_MAX: u64 = 1_000_000;
    /// Flush interval bound in ms.
    pub const FLUSH_INTERVAL_MS_MAX: u64 = 10_000;
    /// Buffered entries bound.
    pub const MAX_BUFFERED_ENTRIES_MAX: u64 = 10_000_000;
    /// Flush worker threads.
    pub const FLUSH_WORKERS_MAX: usize = 64;
    /// Entries per AppendEntries.
    pub const APPEND_BATCH_ENTRIES_MAX: usize = 100_000;
    /// Bytes per AppendEntries.
    pub const APPEND_BATCH_BYTES_MIN: usize = 4 << 10;
    /// Upper bound of bytes per AppendEntries.
    pub const APPEND_BATCH_BYTES_MAX: usize = 64 << 20;
    /// AppendEntries in flight per follower.
    pub const INFLIGHT_APPENDS_MAX: usize = 4_096;
    /// Proposals in flight per shard.
    pub const INFLIGHT_PROPOSALS_MAX: usize = 1_000_000;
    /// Socket buffer bounds in bytes (0 = kernel default).
    pub const SOCKET_BUFFER_BYTES_MAX: usize = 256 << 20;
    /// Frame size bounds in bytes.
    pub const FRAME_BYTES_MIN: usize = 4 << 10;
    /// Upper bound of a frame in bytes.
    pub const FRAME_BYTES_MAX: usize = 256 << 20;
    /// Connection count bound.
    pub const CONNECTIONS_MAX: usize = 100_000;
    /// Requests in flight per connection.
    pub const INFLIGHT_PER_CONNECTION_MAX: usize = 100_000;
    /// Timeouts in ms.
    pub const TIMEOUT_MS_MAX: u64 = 600_000;
    /// HTTP header bytes bounds.
    pub const HTTP_HEADER_BYTES_MIN: usize = 256;
    /// Upper bound of HTTP header bytes.
    pub const HTTP_HEADER_BYTES_MAX: usize = 1 << 20;
    /// Upper bound of HTTP body bytes.
    pub const HTTP_BODY_BYTES_MAX: usize = 64 << 20;
    /// Executors (cores) per node.
    pub const CORES_MAX: usize = 1_024;
    /// Shards (Raft groups) per node.
    pub const SHARDS_MAX: usize = 65_536;
    /// Spin before park, µs.
    pub const SPIN_US_MAX: u64 = 10_000;
    /// glommio io_memory per executor, bytes.
    pub const IO_MEMORY_BYTES_MIN: usize = 512 << 10;
    /// Upper bound of io_memory per executor.
    pub const IO_MEMORY_BYTES_MAX: usize = 1 << 30;
    /// Key size bound.
    pub const KEY_BYTES_MAX: usize = 64 << 10;
    /// Value size bound.
    pub const VALUE_BYTES_MAX: usize = 16 << 20;
    /// Scan result bound.
    pub const SCAN_LIMIT_MAX: usize = 1_000_000;
    /// Snapshot threshold bound (entries).
    pub const SNAPSHOT_ENTRIES_MAX: u64 = 1 << 40;
    /// WAL segment bounds.
    pub const SEGMENT_BYTES_MIN: u64 = 1 << 20;
    /// Upper bound of a WAL segment.
    pub const SEGMENT_BYTES_MAX: u64 = 4 << 30;
}

/// A configuration problem: the message names the key, the value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The whole node configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Membership and directories.
    pub cluster: ClusterConfig,
    /// Raft timing, reads, persistence, replication.
    #[serde(default)]
    pub raft: RaftConfig,
    /// Sockets and protocol bounds.
    #[serde(default)]
    pub network: NetworkConfig,
    /// The metrics endpoint.
    #[serde(default)]
    pub monitoring: MonitoringConfig,
    /// Thread-per-core layout (ringraft's own).
    #[serde(default)]
    pub runtime: RuntimeConfig,
    /// Per-shard key-value store limits (ringraft's own).
    #[serde(default)]
    pub state_machine: StateMachineConfig,
}

/// `[cluster]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id (1 ..= 2^32).
    pub node_id: u64,
    /// Address the node listens on for peers and clients (frames and HTTP on one port).
    pub listen_address: String,
    /// The members the cluster starts with.
    #[serde(default)]
    pub initial_cluster: Vec<MemberConfig>,
    /// Set to 1 to bootstrap a single-node cluster; otherwise the voters of `initial_cluster`.
    #[serde(default)]
    pub initial_cluster_size: Option<usize>,
    /// Cluster id carried in every handshake; peers of another cluster are refused.
    #[serde(default = "default_cluster_id")]
    pub cluster_id: u64,
    /// Root of the data directories (`<db_root_dir>/<node_id>/`).
    #[serde(default = "default_db_root_dir")]
    pub db_root_dir: PathBuf,
    /// Root of the log directories (`<log_dir>/<node_id>/d.log`).
    #[serde(default = "default_log_dir")]
    pub log_dir: PathBuf,
}

/// One `initial_cluster` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Node id.
    pub id: u64,
    /// Peer address (host:port).
    pub address: String,
    /// 1 = follower (voter), 3 = learner.
    pub role: u8,
    /// 0 = joining, 1 = syncing, 2 = active.
    pub status: u8,
}

/// `[raft]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftConfig {
    /// Smallest randomized election timeout.
    #[serde(alias = "election_timeout_min")]
    pub election_timeout_ms_min: u64,
    /// Largest randomized election timeout (exclusive).
    #[serde(alias = "election_timeout_max")]
    pub election_timeout_ms_max: u64,
    /// Leader heartbeat interval.
    #[serde(alias = "heartbeat_interval")]
    pub heartbeat_interval_ms: u64,
    /// Length of one Raft tick; timeouts are converted to ticks.
    pub tick_interval_ms: u64,
    /// Proposals accepted but not yet answered, per shard; past it clients get Busy.
    pub max_inflight_proposals: usize,
    /// Take a snapshot after this many applied entries past the last one.
    pub snapshot_threshold_entries: u64,
    /// Log entries kept in memory behind a snapshot, so a slightly lagging follower catches up
    /// from the log instead of receiving the whole snapshot.
    pub snapshot_retain_entries: u64,
    /// Reads.
    pub read_consistency: ReadConsistencyConfig,
    /// Durability.
    pub persistence: PersistenceConfig,
    /// AppendEntries batching.
    pub replication: ReplicationConfig,
}

/// `[raft.read_consistency]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReadConsistencyConfig {
    /// Policy of a read that does not name one.
    pub default_policy: ReadPolicy,
    /// Leader lease; must be below the smallest election timeout.
    pub lease_duration_ms: u64,
    /// Clock drift margin subtracted from the lease.
    pub clock_drift_ms: u64,
    /// Whether a request may choose its own policy.
    pub allow_client_override: bool,
}

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadPolicy {
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
pub struct PersistenceConfig {
    /// When a write is acknowledged.
    pub strategy: PersistenceStrategy,
    /// When the WAL syncs.
    pub flush_policy: FlushPolicy,
    /// Entries appended but not yet durable; past it appends push back.
    pub max_buffered_entries: u64,
    /// Flush worker threads.
    pub flush_workers: usize,
    /// WAL segment size.
    pub segment_bytes: u64,
    /// How WAL records reach the file: `"pwrite"` (staged, written with pwritev, fdatasync) or
    /// `"mmap"` (copied into a writable map, msync).
    pub wal_write_mode: WalWriteMode,
    /// Purged WAL segment files kept for reuse instead of deleted (each one `segment_bytes`
    /// on disk). Only the pwrite mode reuses them.
    pub wal_recycle_segments: u64,
}

/// `raft.persistence.wal_write_mode`: how WAL records reach the file (see `ringraft_wal::WriteMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WalWriteMode {
    /// Staged in memory, written with pwritev and made durable with fdatasync (measured fastest).
    #[default]
    Pwrite,
    /// Copied into a writable shared map and made durable with msync.
    Mmap,
}

impl WalWriteMode {
    /// The WAL crate's mode.
    pub fn to_wal(self) -> ringraft_wal::WriteMode {
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
pub enum PersistenceStrategy {
    /// After a quorum has it durable and it is applied.
    DiskFirst,
    /// After a quorum has it in memory (weaker: a correlated crash can lose acknowledged writes).
    MemFirst,
}

/// When the WAL syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FlushPolicy {
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
pub struct ReplicationConfig {
    /// Most entries in one AppendEntries.
    pub append_entries_batch_threshold: usize,
    /// Most payload bytes in one AppendEntries.
    pub append_entries_max_bytes: usize,
    /// AppendEntries in flight per follower.
    pub max_inflight_appends: usize,
}

/// `[network]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// TCP_NODELAY on every socket.
    pub tcp_nodelay: bool,
    /// SO_SNDBUF (0 = kernel default).
    pub send_buffer_bytes: usize,
    /// SO_RCVBUF (0 = kernel default).
    pub recv_buffer_bytes: usize,
    /// TCP keepalive idle time (0 = off).
    pub tcp_keepalive_s: u64,
    /// Peer connect timeout.
    pub connect_timeout_ms: u64,
    /// Reconnect backoff, first delay.
    pub reconnect_backoff_ms_min: u64,
    /// Reconnect backoff, largest delay.
    pub reconnect_backoff_ms_max: u64,
    /// Largest frame accepted or sent.
    pub max_frame_bytes: usize,
    /// Client and peer connections accepted at once, per core.
    pub max_connections: usize,
    /// Requests in flight per connection; past it reading pauses.
    pub max_inflight_per_connection: usize,
    /// Client request deadline; past it the client gets Timeout.
    pub request_timeout_ms: u64,
    /// Largest HTTP request head.
    pub http_max_header_bytes: usize,
    /// Largest HTTP request body.
    pub http_max_body_bytes: usize,
}

/// `[monitoring]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitoringConfig {
    /// Serve `/metrics`, `/health`, `/status`.
    #[serde(alias = "prometheus_enabled")]
    pub metrics_enabled: bool,
    /// Port of the metrics endpoint (host of `listen_address`).
    #[serde(alias = "prometheus_port")]
    pub metrics_port: u16,
}

/// `[runtime]`: ringraft's thread-per-core layout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Executors (one thread each).
    pub cores: usize,
    /// Shards (Raft groups) per node; the key space is hashed into them; must be the same on
    /// every node of a cluster.
    pub shards_per_node: usize,
    /// Thread placement.
    pub placement: Placement,
    /// First CPU used with `Pinned` (executor i runs on CPU `first_cpu + i`).
    pub first_cpu: usize,
    /// Busy-poll this long before parking (0 = never spin; right for a shared 2-core machine).
    pub spin_before_park_us: u64,
    /// glommio io_uring registered memory per executor.
    pub io_memory_bytes: usize,
}

/// Where executor threads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placement {
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
pub struct StateMachineConfig {
    /// Largest key.
    pub max_key_bytes: usize,
    /// Largest value.
    pub max_value_bytes: usize,
    /// Most pairs one scan returns.
    pub max_scan_results: usize,
}

fn default_cluster_id() -> u64 {
    1
}
fn default_db_root_dir() -> PathBuf {
    PathBuf::from("./db")
}
fn default_log_dir() -> PathBuf {
    PathBuf::from("./logs")
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            election_timeout_ms_min: 600,
            election_timeout_ms_max: 1_200,
            heartbeat_interval_ms: 100,
            tick_interval_ms: 10,
            max_inflight_proposals: 10_000,
            snapshot_threshold_entries: 100_000,
            snapshot_retain_entries: 1_000,
            read_consistency: ReadConsistencyConfig::default(),
            persistence: PersistenceConfig::default(),
            replication: ReplicationConfig::default(),
        }
    }
}

impl Default for ReadConsistencyConfig {
    fn default() -> Self {
        Self {
            default_policy: ReadPolicy::LeaseRead,
            lease_duration_ms: 500,
            clock_drift_ms: 20,
            allow_client_override: true,
        }
    }
}

impl Default for PersistenceConfig {
    fn default() -> Self {
        Self {
            strategy: PersistenceStrategy::DiskFirst,
            flush_policy: FlushPolicy::Batch {
                threshold: 100,
                interval_ms: 20,
            },
            max_buffered_entries: 10_000,
            flush_workers: 1,
            segment_bytes: 64 << 20,
            wal_write_mode: WalWriteMode::Pwrite,
            wal_recycle_segments: ringraft_wal::options::DEFAULT_RECYCLE_SEGMENTS as u64,
        }
    }
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        Self {
            append_entries_batch_threshold: 5_000,
            append_entries_max_bytes: 4 << 20,
            max_inflight_appends: 64,
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            tcp_nodelay: true,
            send_buffer_bytes: 0,
            recv_buffer_bytes: 0,
            tcp_keepalive_s: 60,
            connect_timeout_ms: 500,
            reconnect_backoff_ms_min: 20,
            reconnect_backoff_ms_max: 500,
            max_frame_bytes: 16 << 20,
            max_connections: 1_024,
            max_inflight_per_connection: 1_024,
            request_timeout_ms: 5_000,
            http_max_header_bytes: 8 << 10,
            http_max_body_bytes: 1 << 20,
        }
    }
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            metrics_enabled: true,
            metrics_port: 8081,
        }
    }
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            cores: 1,
            shards_per_node: 1,
            placement: Placement::Unbound,
            first_cpu: 0,
            spin_before_park_us: 0,
            io_memory_bytes: 2 << 20,
        }
    }
}

impl Default for StateMachineConfig {
    fn default() -> Self {
        Self {
            max_key_bytes: 4 << 10,
            max_value_bytes: 1 << 20,
            max_scan_results: 10_000,
        }
    }
}

impl Config {
    /// Reads `path`, applies the `RINGRAFT__…` variables of the process environment, validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let meta = std::fs::metadata(path).map_err(|e| {
            ConfigError(format!("config file {}: cannot read: {e}", path.display()))
        })?;
        if meta.len() > MAX_CONFIG_FILE_BYTES {
            return Err(ConfigError(format!(
                "config file {}: {} bytes, the limit is {MAX_CONFIG_FILE_BYTES}",
                path.display(),
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!("config file {}: cannot read: {e}", path.display()))
        })?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::from_toml_with_env(&text, &env)
            .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.0)))
    }

    /// Parses `text`, applies the overrides among `env` (name, value pairs; names without the
    /// `RINGRAFT__` prefix are ignored) and validates.
    pub fn from_toml_with_env(text: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text)
            .map_err(|e| ConfigError(format!("not valid TOML: {}", e.to_string().trim())))?;
        // The file alone must be well-typed, so an error is attributed to the file...
        let mut config: Config = deserialize(&table)?;
        let mut overrides: Vec<&(String, String)> = env
            .iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        overrides.sort();
        // ...and then to each environment variable in turn.
        for (name, value) in overrides {
            apply_override(&mut table, name, value)?;
            config = deserialize(&table).map_err(|e| {
                ConfigError(format!("environment variable {name}={value:?}: {}", e.0))
            })?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Range and consistency checks; each error names the key, the value and what is allowed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use limits::*;
        let c = &self.cluster;
        range("cluster.node_id", c.node_id, 1, NODE_ID_MAX)?;
        range("cluster.cluster_id", c.cluster_id, 1, u64::MAX)?;
        parse_addr("cluster.listen_address", &c.listen_address)?;
        if c.initial_cluster.len() > MEMBERS_MAX {
            return Err(err(
                "cluster.initial_cluster",
                &format!("{} members", c.initial_cluster.len()),
                &format!("at most {MEMBERS_MAX} members"),
            ));
        }
        let mut ids = BTreeSet::new();
        let mut addrs = BTreeSet::new();
        for (i, m) in c.initial_cluster.iter().enumerate() {
            let key = format!("cluster.initial_cluster[{i}]");
            range(&format!("{key}.id"), m.id, 1, NODE_ID_MAX)?;
            let addr = parse_addr(&format!("{key}.address"), &m.address)?;
            if m.role != ROLE_FOLLOWER && m.role != ROLE_LEARNER {
                return Err(err(
                    &format!("{key}.role"),
                    &m.role.to_string(),
                    "1 (follower, a voter) or 3 (learner)",
                ));
            }
            if m.status > STATUS_ACTIVE {
                return Err(err(
                    &format!("{key}.status"),
                    &m.status.to_string(),
                    "0 (joining), 1 (syncing) or 2 (active)",
                ));
            }
            if !ids.insert(m.id) {
                return Err(err(&format!("{key}.id"), &m.id.to_string(), "a unique id"));
            }
            if !addrs.insert(addr) {
                return Err(err(
                    &format!("{key}.address"),
                    &m.address,
                    "a unique address",
                ));
            }
        }
        let voters = c
            .initial_cluster
            .iter()
            .filter(|m| m.role == ROLE_FOLLOWER)
            .count();
        if let Some(n) = c.initial_cluster_size {
            range(
                "cluster.initial_cluster_size",
                n as u64,
                1,
                MEMBERS_MAX as u64,
            )?;
            if !c.initial_cluster.is_empty() && n != voters && n != 1 {
                return Err(err(
                    "cluster.initial_cluster_size",
                    &n.to_string(),
                    &format!("1 or the number of voters in initial_cluster ({voters})"),
                ));
            }
        }
        if !c.initial_cluster.is_empty() && !ids.contains(&c.node_id) {
            return Err(err(
                "cluster.node_id",
                &c.node_id.to_string(),
                &format!("one of the initial_cluster ids {ids:?}"),
            ));
        }
        if voters == 0 && !c.initial_cluster.is_empty() {
            return Err(err(
                "cluster.initial_cluster",
                "no member with role = 1",
                "at least one voter (role = 1)",
            ));
        }

        let r = &self.raft;
        range(
            "raft.election_timeout_ms_min",
            r.election_timeout_ms_min,
            ELECTION_TIMEOUT_MS_MIN,
            ELECTION_TIMEOUT_MS_MAX,
        )?;
        range(
            "raft.election_timeout_ms_max",
            r.election_timeout_ms_max,
            r.election_timeout_ms_min + 1,
            ELECTION_TIMEOUT_MS_MAX,
        )?;
        range(
            "raft.heartbeat_interval_ms",
            r.heartbeat_interval_ms,
            HEARTBEAT_INTERVAL_MS_MIN,
            r.election_timeout_ms_min / 2,
        )?;
        range(
            "raft.tick_interval_ms",
            r.tick_interval_ms,
            TICK_INTERVAL_MS_MIN,
            TICK_INTERVAL_MS_MAX.min(r.heartbeat_interval_ms),
        )?;
        range(
            "raft.max_inflight_proposals",
            r.max_inflight_proposals as u64,
            1,
            INFLIGHT_PROPOSALS_MAX as u64,
        )?;
        range(
            "raft.snapshot_threshold_entries",
            r.snapshot_threshold_entries,
            1,
            SNAPSHOT_ENTRIES_MAX,
        )?;
        range(
            "raft.snapshot_retain_entries",
            r.snapshot_retain_entries,
            0,
            SNAPSHOT_ENTRIES_MAX,
        )?;
        let rc = &r.read_consistency;
        range(
            "raft.read_consistency.lease_duration_ms",
            rc.lease_duration_ms,
            LEASE_DURATION_MS_MIN,
            r.election_timeout_ms_min - 1,
        )?;
        range(
            "raft.read_consistency.clock_drift_ms",
            rc.clock_drift_ms,
            0,
            rc.lease_duration_ms - 1,
        )?;
        let p = &r.persistence;
        if let FlushPolicy::Batch {
            threshold,
            interval_ms,
        } = p.flush_policy
        {
            range(
                "raft.persistence.flush_policy.Batch.threshold",
                threshold,
                1,
                FLUSH_THRESHOLD_MAX,
            )?;
            range(
                "raft.persistence.flush_policy.Batch.interval_ms",
                interval_ms,
                1,
                FLUSH_INTERVAL_MS_MAX,
            )?;
        }
        range(
            "raft.persistence.max_buffered_entries",
            p.max_buffered_entries,
            1,
            MAX_BUFFERED_ENTRIES_MAX,
        )?;
        range(
            "raft.persistence.flush_workers",
            p.flush_workers as u64,
            1,
            FLUSH_WORKERS_MAX as u64,
        )?;
        range(
            "raft.persistence.segment_bytes",
            p.segment_bytes,
            SEGMENT_BYTES_MIN,
            SEGMENT_BYTES_MAX,
        )?;
        range(
            "raft.persistence.wal_recycle_segments",
            p.wal_recycle_segments,
            0,
            ringraft_wal::options::MAX_RECYCLE_SEGMENTS as u64,
        )?;
        let rp = &r.replication;
        range(
            "raft.replication.append_entries_batch_threshold",
            rp.append_entries_batch_threshold as u64,
            1,
            APPEND_BATCH_ENTRIES_MAX as u64,
        )?;
        range(
            "raft.replication.append_entries_max_bytes",
            rp.append_entries_max_bytes as u64,
            APPEND_BATCH_BYTES_MIN as u64,
            APPEND_BATCH_BYTES_MAX.min(self.network.max_frame_bytes / 2) as u64,
        )?;
        range(
            "raft.replication.max_inflight_appends",
            rp.max_inflight_appends as u64,
            1,
            INFLIGHT_APPENDS_MAX as u64,
        )?;

        let n = &self.network;
        let buf = SOCKET_BUFFER_BYTES_MAX as u64;
        range(
            "network.send_buffer_bytes",
            n.send_buffer_bytes as u64,
            0,
            buf,
        )?;
        range(
            "network.recv_buffer_bytes",
            n.recv_buffer_bytes as u64,
            0,
            buf,
        )?;
        range("network.tcp_keepalive_s", n.tcp_keepalive_s, 0, 86_400)?;
        range(
            "network.connect_timeout_ms",
            n.connect_timeout_ms,
            1,
            TIMEOUT_MS_MAX,
        )?;
        range(
            "network.reconnect_backoff_ms_min",
            n.reconnect_backoff_ms_min,
            1,
            TIMEOUT_MS_MAX,
        )?;
        range(
            "network.reconnect_backoff_ms_max",
            n.reconnect_backoff_ms_max,
            n.reconnect_backoff_ms_min,
            TIMEOUT_MS_MAX,
        )?;
        range(
            "network.max_frame_bytes",
            n.max_frame_bytes as u64,
            FRAME_BYTES_MIN as u64,
            FRAME_BYTES_MAX as u64,
        )?;
        range(
            "network.max_connections",
            n.max_connections as u64,
            1,
            CONNECTIONS_MAX as u64,
        )?;
        range(
            "network.max_inflight_per_connection",
            n.max_inflight_per_connection as u64,
            1,
            INFLIGHT_PER_CONNECTION_MAX as u64,
        )?;
        range(
            "network.request_timeout_ms",
            n.request_timeout_ms,
            1,
            TIMEOUT_MS_MAX,
        )?;
        range(
            "network.http_max_header_bytes",
            n.http_max_header_bytes as u64,
            HTTP_HEADER_BYTES_MIN as u64,
            HTTP_HEADER_BYTES_MAX as u64,
        )?;
        range(
            "network.http_max_body_bytes",
            n.http_max_body_bytes as u64,
            1,
            HTTP_BODY_BYTES_MAX as u64,
        )?;

        if self.monitoring.metrics_enabled {
            range(
                "monitoring.metrics_port",
                u64::from(self.monitoring.metrics_port),
                1,
                65_535,
            )?;
            let listen = parse_addr("cluster.listen_address", &c.listen_address)?;
            if listen.port() == self.monitoring.metrics_port {
                return Err(err(
                    "monitoring.metrics_port",
                    &self.monitoring.metrics_port.to_string(),
                    "a port other than the one of cluster.listen_address",
                ));
            }
        }

        let rt = &self.runtime;
        range("runtime.cores", rt.cores as u64, 1, CORES_MAX as u64)?;
        range(
            "runtime.shards_per_node",
            rt.shards_per_node as u64,
            1,
            SHARDS_MAX as u64,
        )?;
        range(
            "runtime.spin_before_park_us",
            rt.spin_before_park_us,
            0,
            SPIN_US_MAX,
        )?;
        range(
            "runtime.io_memory_bytes",
            rt.io_memory_bytes as u64,
            IO_MEMORY_BYTES_MIN as u64,
            IO_MEMORY_BYTES_MAX as u64,
        )?;
        if rt.placement == Placement::Pinned {
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            if rt.first_cpu + rt.cores > cpus {
                return Err(err(
                    "runtime.first_cpu",
                    &rt.first_cpu.to_string(),
                    &format!(
                        "first_cpu + cores ({}) <= the {cpus} CPUs of this machine with placement = \"Pinned\"",
                        rt.first_cpu + rt.cores
                    ),
                ));
            }
        }

        let s = &self.state_machine;
        range(
            "state_machine.max_key_bytes",
            s.max_key_bytes as u64,
            1,
            KEY_BYTES_MAX as u64,
        )?;
        range(
            "state_machine.max_value_bytes",
            s.max_value_bytes as u64,
            0,
            VALUE_BYTES_MAX.min(n.max_frame_bytes / 2) as u64,
        )?;
        range(
            "state_machine.max_scan_results",
            s.max_scan_results as u64,
            1,
            SCAN_LIMIT_MAX as u64,
        )?;
        Ok(())
    }

    /// The listen address, parsed (validated by [`Config::validate`]).
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr("cluster.listen_address", &self.cluster.listen_address)
    }

    /// The metrics address: the host of `listen_address` with `metrics_port`.
    pub fn metrics_addr(&self) -> Result<SocketAddr, ConfigError> {
        let mut a = self.listen_addr()?;
        a.set_port(self.monitoring.metrics_port);
        Ok(a)
    }

    /// `<db_root_dir>/<node_id>`.
    pub fn data_dir(&self) -> PathBuf {
        self.cluster
            .db_root_dir
            .join(self.cluster.node_id.to_string())
    }

    /// `<log_dir>/<node_id>`.
    pub fn node_log_dir(&self) -> PathBuf {
        self.cluster.log_dir.join(self.cluster.node_id.to_string())
    }

    /// Whether this node starts as a learner that joins a running cluster.
    pub fn is_joining_learner(&self) -> bool {
        self.cluster
            .initial_cluster
            .iter()
            .any(|m| m.id == self.cluster.node_id && m.role == ROLE_LEARNER)
    }

    /// Election timeout bounds in ticks (at least 2 ticks apart).
    pub fn election_ticks(&self) -> (u64, u64) {
        let t = self.raft.tick_interval_ms;
        let min = (self.raft.election_timeout_ms_min / t).max(2);
        let max = (self.raft.election_timeout_ms_max / t).max(min + 1);
        (min, max)
    }

    /// Heartbeat interval in ticks (at least 1).
    pub fn heartbeat_ticks(&self) -> u64 {
        (self.raft.heartbeat_interval_ms / self.raft.tick_interval_ms).max(1)
    }
}

fn deserialize(table: &toml::Table) -> Result<Config, ConfigError> {
    toml::Value::Table(table.clone())
        .try_into::<Config>()
        .map_err(|e| ConfigError(one_line(&e.to_string())))
}

fn one_line(msg: &str) -> String {
    msg.trim().replace('\n', " ")
}

/// Sets the key path named by an environment variable in `table`.
fn apply_override(table: &mut toml::Table, name: &str, raw: &str) -> Result<(), ConfigError> {
    let rest = &name[ENV_PREFIX.len()..];
    let path: Vec<String> = rest
        .split(ENV_SEPARATOR)
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(|s| s.is_empty()) {
        return Err(ConfigError(format!(
            "environment variable {name}: not a key path; allowed: {ENV_PREFIX}<SECTION>__<KEY>, e.g. RINGRAFT__RAFT__PERSISTENCE__STRATEGY"
        )));
    }
    let value = parse_env_value(raw);
    let mut cur = table;
    for seg in &path[..path.len() - 1] {
        let entry = cur
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            other => {
                return Err(ConfigError(format!(
                    "environment variable {name}: `{seg}` is a {} in the file, not a section",
                    other.type_str()
                )))
            }
        };
    }
    if let Some(last) = path.last() {
        cur.insert(last.clone(), value);
    }
    Ok(())
}

/// An environment value as TOML (numbers, booleans, inline tables, quoted strings), else a string.
fn parse_env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn err(key: &str, value: &str, allowed: &str) -> ConfigError {
    ConfigError(format!(
        "`{key}` = {value} is not allowed: must be {allowed}"
    ))
}

fn range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(err(
            key,
            &value.to_string(),
            &format!("between {min} and {max}"),
        ));
    }
    Ok(())
}

fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse::<SocketAddr>().map_err(|_| {
        err(
            key,
            &format!("{value:?}"),
            "an IP address with a port, e.g. \"127.0.0.1:9081\"",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
[cluster]
node_id = 1
listen_address = "127.0.0.1:9081"
initial_cluster = [
    { id = 1, address = "127.0.0.1:9081", role = 1, status = 2 },
    { id = 2, address = "127.0.0.1:9082", role = 1, status = 2 },
    { id = 3, address = "127.0.0.1:9083", role = 1, status = 2 },
]

[raft.read_consistency]
default_policy = "LeaseRead"
lease_duration_ms = 500

[raft.persistence]
strategy = "DiskFirst"
flush_policy = { Batch = { threshold = 100, interval_ms = 20 } }
max_buffered_entries = 10000
flush_workers = 4
"#;

    fn load(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, &[])
    }

    fn load_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        Config::from_toml_with_env(text, &env)
    }

    #[test]
    fn wal_write_mode_and_recycling_are_validated() {
        let c = load(BASE).unwrap();
        assert_eq!(c.raft.persistence.wal_write_mode, WalWriteMode::Pwrite);
        let with =
            |line: &str| BASE.replace("flush_workers = 4", &format!("flush_workers = 4\n{line}"));
        let c = load(&with("wal_write_mode = \"mmap\"")).unwrap();
        assert_eq!(c.raft.persistence.wal_write_mode, WalWriteMode::Mmap);
        assert_eq!(
            crate::node::storage::wal_options(&c).write_mode,
            ringraft_wal::WriteMode::Mmap
        );
        let c = load_env(
            BASE,
            &[("RINGRAFT__RAFT__PERSISTENCE__WAL_WRITE_MODE", "pwrite")],
        )
        .unwrap();
        assert_eq!(c.raft.persistence.wal_write_mode, WalWriteMode::Pwrite);
        let e = load(&with("wal_write_mode = \"fsync\"")).unwrap_err().0;
        assert!(e.contains("raft.persistence.wal_write_mode"), "{e}");
        assert!(
            e.contains("fsync") && e.contains("\"pwrite\" or \"mmap\""),
            "{e}"
        );
        let c = load(&with("wal_recycle_segments = 0")).unwrap();
        assert_eq!(crate::node::storage::wal_options(&c).recycle_segments, 0);
        let e = load(&with("wal_recycle_segments = 65")).unwrap_err().0;
        assert!(e.contains("raft.persistence.wal_recycle_segments"), "{e}");
    }

    #[test]
    fn seed_config_loads_with_its_values() {
        let c = load(BASE).unwrap();
        assert_eq!(c.cluster.node_id, 1);
        assert_eq!(c.cluster.initial_cluster.len(), 3);
        assert_eq!(
            c.raft.read_consistency.default_policy,
            ReadPolicy::LeaseRead
        );
        assert_eq!(c.raft.persistence.strategy, PersistenceStrategy::DiskFirst);
        assert_eq!(
            c.raft.persistence.flush_policy,
            FlushPolicy::Batch {
                threshold: 100,
                interval_ms: 20
            }
        );
        assert_eq!(c.raft.persistence.flush_workers, 4);
        assert_eq!(c.data_dir(), PathBuf::from("./db/1"));
        assert_eq!(c.node_log_dir(), PathBuf::from("./logs/1"));
    }

    #[test]
    fn immediate_flush_policy_parses() {
        let text = BASE.replace(
            "flush_policy = { Batch = { threshold = 100, interval_ms = 20 } }",
            "flush_policy = \"Immediate\"",
        );
        assert_eq!(
            load(&text).unwrap().raft.persistence.flush_policy,
            FlushPolicy::Immediate
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let text = BASE.replace("flush_workers = 4", "flush_workers = 4\nflush_wrokers = 2");
        let e = load(&text).unwrap_err().0;
        assert!(e.contains("flush_wrokers"), "{e}");
        assert!(e.contains("flush_workers"), "allowed keys listed: {e}");
        assert!(e.contains("raft.persistence"), "{e}");
    }

    #[test]
    fn unknown_section_is_named() {
        let e = load(&format!("{BASE}\n[bogus]\nx = 1\n")).unwrap_err().0;
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn wrong_type_names_key_and_value() {
        let text = BASE.replace("node_id = 1", "node_id = \"one\"");
        let e = load(&text).unwrap_err().0;
        assert!(e.contains("cluster.node_id"), "{e}");
        assert!(e.contains("one"), "{e}");
        assert!(e.contains("u64"), "{e}");
    }

    #[test]
    fn unknown_enum_variant_lists_allowed() {
        let text = BASE.replace("\"DiskFirst\"", "\"DiskLast\"");
        let e = load(&text).unwrap_err().0;
        assert!(e.contains("DiskLast"), "{e}");
        assert!(e.contains("DiskFirst") && e.contains("MemFirst"), "{e}");
        assert!(e.contains("raft.persistence.strategy"), "{e}");
    }

    #[test]
    fn out_of_range_values_name_key_value_and_range() {
        let cases = [
            (
                "flush_workers = 4",
                "flush_workers = 0",
                "raft.persistence.flush_workers",
                "0",
            ),
            (
                "max_buffered_entries = 10000",
                "max_buffered_entries = 0",
                "raft.persistence.max_buffered_entries",
                "0",
            ),
            (
                "lease_duration_ms = 500",
                "lease_duration_ms = 5000",
                "raft.read_consistency.lease_duration_ms",
                "5000",
            ),
            (
                "threshold = 100",
                "threshold = 0",
                "raft.persistence.flush_policy.Batch.threshold",
                "0",
            ),
            ("node_id = 1", "node_id = 0", "cluster.node_id", "0"),
        ];
        for (from, to, key, value) in cases {
            let e = load(&BASE.replace(from, to)).unwrap_err().0;
            assert!(e.contains(key), "{to}: {e}");
            assert!(e.contains(&format!("= {value} ")), "{to}: {e}");
            assert!(e.contains("between"), "{to}: {e}");
        }
    }

    #[test]
    fn runtime_and_timing_ranges_checked() {
        let e = load(&format!("{BASE}\n[runtime]\ncores = 0\n"))
            .unwrap_err()
            .0;
        assert!(
            e.contains("runtime.cores") && e.contains("between 1 and"),
            "{e}"
        );
        let e = load(&format!(
            "{BASE}\n[raft]\nelection_timeout_ms_min = 500\nelection_timeout_ms_max = 400\n"
        ));
        let e2 = e.unwrap_err().0;
        assert!(e2.contains("raft.election_timeout_ms_max"), "{e2}");
        let e = load(&format!("{BASE}\n[raft]\nheartbeat_interval_ms = 400\n"))
            .unwrap_err()
            .0;
        assert!(
            e.contains("raft.heartbeat_interval_ms") && e.contains("400"),
            "{e}"
        );
    }

    #[test]
    fn seed_key_aliases_accepted() {
        let c = load(&format!(
            "{BASE}\n[raft]\nelection_timeout_min = 700\nelection_timeout_max = 1400\n"
        ))
        .unwrap();
        assert_eq!(c.raft.election_timeout_ms_min, 700);
        assert_eq!(c.raft.election_timeout_ms_max, 1400);
    }

    #[test]
    fn member_checks() {
        let text = BASE.replace(
            "{ id = 3, address = \"127.0.0.1:9083\", role = 1",
            "{ id = 3, address = \"127.0.0.1:9083\", role = 7",
        );
        let e = load(&text).unwrap_err().0;
        assert!(
            e.contains("initial_cluster[2].role") && e.contains("= 7"),
            "{e}"
        );
        let text = BASE.replace("127.0.0.1:9083\", role", "127.0.0.1:9082\", role");
        let e = load(&text).unwrap_err().0;
        assert!(e.contains("initial_cluster[2].address"), "{e}");
        let text = BASE.replace("node_id = 1", "node_id = 9");
        let e = load(&text).unwrap_err().0;
        assert!(e.contains("cluster.node_id") && e.contains("9"), "{e}");
        let text = BASE.replace(
            "listen_address = \"127.0.0.1:9081\"",
            "listen_address = \"nowhere\"",
        );
        let e = load(&text).unwrap_err().0;
        assert!(
            e.contains("cluster.listen_address") && e.contains("nowhere"),
            "{e}"
        );
    }

    #[test]
    fn env_overrides_file_values() {
        let c = load_env(
            BASE,
            &[
                ("RINGRAFT__RAFT__PERSISTENCE__STRATEGY", "MemFirst"),
                ("RINGRAFT__CLUSTER__NODE_ID", "2"),
                ("RINGRAFT__RUNTIME__CORES", "2"),
                (
                    "RINGRAFT__RAFT__PERSISTENCE__FLUSH_POLICY",
                    "{ Batch = { threshold = 7, interval_ms = 3 } }",
                ),
                ("UNRELATED", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.raft.persistence.strategy, PersistenceStrategy::MemFirst);
        assert_eq!(c.cluster.node_id, 2);
        assert_eq!(c.runtime.cores, 2);
        assert_eq!(
            c.raft.persistence.flush_policy,
            FlushPolicy::Batch {
                threshold: 7,
                interval_ms: 3
            }
        );
    }

    #[test]
    fn bad_env_override_names_the_variable() {
        let e = load_env(
            BASE,
            &[("RINGRAFT__RAFT__PERSISTENCE__STRATEGY", "Sometimes")],
        )
        .unwrap_err()
        .0;
        assert!(e.contains("RINGRAFT__RAFT__PERSISTENCE__STRATEGY"), "{e}");
        assert!(e.contains("Sometimes") && e.contains("MemFirst"), "{e}");
        let e = load_env(BASE, &[("RINGRAFT__RAFT__NOPE", "1")])
            .unwrap_err()
            .0;
        assert!(
            e.contains("RINGRAFT__RAFT__NOPE") && e.contains("nope"),
            "{e}"
        );
        let e = load_env(BASE, &[("RINGRAFT__CLUSTER__NODE_ID", "x")])
            .unwrap_err()
            .0;
        assert!(
            e.contains("RINGRAFT__CLUSTER__NODE_ID") && e.contains("u64"),
            "{e}"
        );
        let e = load_env(BASE, &[("RINGRAFT____X", "1")]).unwrap_err().0;
        assert!(e.contains("not a key path"), "{e}");
    }

    #[test]
    fn syntax_error_reports_position() {
        let e = load("[cluster\nnode_id = 1").unwrap_err().0;
        assert!(e.contains("not valid TOML") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn missing_required_key_is_named() {
        let e = load("[cluster]\nnode_id = 1\n").unwrap_err().0;
        assert!(e.contains("listen_address"), "{e}");
    }

    #[test]
    fn ticks_derived_from_ms() {
        let c = load(BASE).unwrap();
        assert_eq!(c.election_ticks(), (60, 120));
        assert_eq!(c.heartbeat_ticks(), 10);
    }

    #[test]
    fn shipped_configs_are_valid() {
        let files = [
            include_str!("../../config/n1.toml"),
            include_str!("../../config/n2.toml"),
            include_str!("../../config/n3.toml"),
            include_str!("../../config/n4.toml"),
            include_str!("../../config/n5.toml"),
            include_str!("../../config/single.toml"),
        ];
        for (i, text) in files.iter().enumerate() {
            let c = load(text).unwrap_or_else(|e| panic!("config {i}: {e}"));
            assert_eq!(c.runtime.cores, 1);
        }
        assert!(load(files[3]).unwrap().is_joining_learner());
        // The many-core reference pins 16 executors; on a smaller machine only unpinned.
        let reference = include_str!("../../config/reference.toml");
        let c = load_env(reference, &[("RINGRAFT__RUNTIME__PLACEMENT", "Unbound")]).unwrap();
        assert_eq!(c.runtime.cores, 16);
        assert_eq!(c.runtime.shards_per_node, 64);
    }
}
