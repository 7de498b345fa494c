//! Values derived from a validated configuration: parsed addresses, per-node directories, the
//! learner-join flag and timeouts converted to Raft ticks. Owned by the node's configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::validate::parse_addr;
use super::{Config, ConfigError, ROLE_LEARNER};

impl Config {
    /// The listen address, parsed (validated by [`Config::validate`]).
    pub(crate) fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        parse_addr("cluster.listen_address", &self.cluster.listen_address)
    }

    /// The metrics address: the host of `listen_address` with `metrics_port`.
    pub(crate) fn metrics_addr(&self) -> Result<SocketAddr, ConfigError> {
        let mut a = self.listen_addr()?;
        a.set_port(self.monitoring.metrics_port);
        Ok(a)
    }

    /// `<db_root_dir>/<node_id>`.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.cluster
            .db_root_dir
            .join(self.cluster.node_id.to_string())
    }

    /// `<log_dir>/<node_id>`.
    pub(crate) fn node_log_dir(&self) -> PathBuf {
        self.cluster.log_dir.join(self.cluster.node_id.to_string())
    }

    /// Whether this node starts as a learner that joins a running cluster.
    pub(crate) fn is_joining_learner(&self) -> bool {
        self.cluster
            .initial_cluster
            .iter()
            .any(|m| m.id == self.cluster.node_id && m.role == ROLE_LEARNER)
    }

    /// Election timeout bounds in ticks (at least 2 ticks apart).
    pub(crate) fn election_ticks(&self) -> (u64, u64) {
        let t = self.raft.tick_interval_ms;
        let min = (self.raft.election_timeout_ms_min / t).max(2);
        let max = (self.raft.election_timeout_ms_max / t).max(min + 1);
        (min, max)
    }

    /// Heartbeat interval in ticks (at least 1).
    pub(crate) fn heartbeat_ticks(&self) -> u64 {
        (self.raft.heartbeat_interval_ms / self.raft.tick_interval_ms).max(1)
    }
}
