//! Range and consistency checks of a parsed configuration ([`Config::validate`]). Each error
//! names the key, the value and what is allowed. After it passes: every value is inside its
//! range, election timeouts are ordered, heartbeat and lease are below the smallest election
//! timeout, this node is a member (unless it joins as a learner), member ids and addresses are
//! unique. Owned by the node's configuration.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use super::*;

impl Config {
    /// `[security]`: the TLS files come as a set, and plaintext on a non-loopback address needs
    /// `security.insecure = true`.
    fn validate_security(&self) -> Result<(), ConfigError> {
        let s = &self.security;
        let listen = parse_addr("cluster.listen_address", &self.cluster.listen_address)?;
        match (&s.ca_file, &s.cert_file, &s.key_file) {
            (Some(_), Some(_), Some(_)) => Ok(()),
            (None, None, None) => {
                if s.require_client_cert {
                    return Err(err(
                        "security.require_client_cert",
                        "true",
                        "false unless TLS is on (security.ca_file, cert_file, key_file)",
                    ));
                }
                if !listen.ip().is_loopback() && !s.insecure {
                    return Err(ConfigError(format!(
                        "`cluster.listen_address` = {:?} is not a loopback address and TLS is off: \
                         set security.ca_file, security.cert_file and security.key_file (see \
                         config/tls/), or `security.insecure = true` to serve plaintext anyway",
                        self.cluster.listen_address
                    )));
                }
                Ok(())
            }
            _ => Err(err(
                "security",
                "some of ca_file, cert_file, key_file",
                "all three of security.ca_file, security.cert_file and security.key_file, or none",
            )),
        }
    }

    /// Range and consistency checks; each error names the key, the value and what is allowed.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        self.validate_security()?;
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
        if c.peer_addresses.len() > MEMBERS_MAX {
            return Err(err(
                "cluster.peer_addresses",
                &format!("{} entries", c.peer_addresses.len()),
                &format!("at most {MEMBERS_MAX} entries"),
            ));
        }
        let mut peer_ids = BTreeSet::new();
        for (i, p) in c.peer_addresses.iter().enumerate() {
            let key = format!("cluster.peer_addresses[{i}]");
            range(&format!("{key}.id"), p.id, 1, NODE_ID_MAX)?;
            parse_addr(&format!("{key}.address"), &p.address)?;
            if p.id == c.node_id || ids.contains(&p.id) || !peer_ids.insert(p.id) {
                return Err(err(
                    &format!("{key}.id"),
                    &p.id.to_string(),
                    "a node listed once, neither this node nor one of initial_cluster",
                ));
            }
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
            "raft.snapshot_state_percent",
            r.snapshot_state_percent,
            0,
            SNAPSHOT_STATE_PERCENT_MAX,
        )?;
        range(
            "raft.snapshot_retain_entries",
            r.snapshot_retain_entries,
            0,
            SNAPSHOT_ENTRIES_MAX,
        )?;
        range(
            "raft.snapshot_write_mib_per_s",
            r.snapshot_write_mib_per_s,
            0,
            SNAPSHOT_WRITE_MIB_PER_S_MAX,
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
        range(
            "raft.persistence.wal_executor_sync_max_entries",
            p.wal_executor_sync_max_entries,
            0,
            super::defaults::MAX_WAL_EXECUTOR_SYNC_MAX_ENTRIES,
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
}

pub(super) fn err(key: &str, value: &str, allowed: &str) -> ConfigError {
    ConfigError(format!(
        "`{key}` = {value} is not allowed: must be {allowed}"
    ))
}

pub(super) fn range(key: &str, value: u64, min: u64, max: u64) -> Result<(), ConfigError> {
    if value < min || value > max {
        return Err(err(
            key,
            &value.to_string(),
            &format!("between {min} and {max}"),
        ));
    }
    Ok(())
}

pub(super) fn parse_addr(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    value.parse::<SocketAddr>().map_err(|_| {
        err(
            key,
            &format!("{value:?}"),
            "an IP address with a port, e.g. \"127.0.0.1:9081\"",
        )
    })
}
