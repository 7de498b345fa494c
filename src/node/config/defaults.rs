//! Default values of every configuration section, tuned for the 2-core development machine:
//! one core per node, no spinning, no pinning, one flush worker. Each default is inside the range
//! [`super::validate`] allows. Owned by the node's configuration.

use std::path::PathBuf;

use super::schema::*;

/// Default `raft.persistence.wal_executor_sync_max_entries`: 0, every sync on the flush workers.
/// Measured on the 2-core development machine (three nodes, a shared disk; `benches/ab_write.sh`
/// alternating against the flush workers, same-run medians). Syncing one-entry rounds on the
/// executor, blocking it, cut one write in flight's p50 by ~45 µs (follower append to durable
/// ~240 → ~195 µs) but a slow fdatasync stalled the executor's network too: p99 ~4.7 → ~12 ms,
/// throughput at 100 in flight down by a quarter. Through the executor's io_uring
/// (`wal_executor_sync = "io_uring"`) the tails stayed at the workers' level or better and one
/// write in flight's p50 moved between −8 % and +5 % (within the noise of a shared box), but
/// throughput at 100 in flight fell by 8–25 % in every run: the write-out and the ring's own
/// work land on the executor, the busiest thread, and glommio's fdatasync still goes through
/// a kernel io-wq worker, so it saves no thread wake-up over a flush worker.
pub(crate) const DEFAULT_WAL_EXECUTOR_SYNC_MAX_ENTRIES: u64 = 0;
/// Largest `raft.persistence.wal_executor_sync_max_entries`: a round this large already
/// spends longer writing than a worker hand-off costs, and blocking the executor for it would
/// stall the network of every shard of the core.
pub(crate) const MAX_WAL_EXECUTOR_SYNC_MAX_ENTRIES: u64 = 1_000;

pub(super) fn default_cluster_id() -> u64 {
    1
}
pub(super) fn default_db_root_dir() -> PathBuf {
    PathBuf::from("./db")
}
pub(super) fn default_log_dir() -> PathBuf {
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
            snapshot_state_percent: 25,
            snapshot_retain_entries: 1_000,
            read_consistency: ReadConsistencyConfig::default(),
            persistence: PersistenceConfig::default(),
            replication: ReplicationConfig::default(),
            snapshot_write_mib_per_s: 128,
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
            wal_executor_sync_max_entries: DEFAULT_WAL_EXECUTOR_SYNC_MAX_ENTRIES,
            wal_executor_sync: WalExecutorSync::default(),
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
