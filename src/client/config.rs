//! Client settings: where the cluster is, how long to wait, how often to retry, how much to keep in
//! flight. Every limit is a named constant with its default here; [`ClientConfig`] is plain data
//! shared by the blocking [`crate::client::Client`] and the glommio
//! [`crate::client::AsyncClient`]. Owned by the client.

use std::time::Duration;

/// The three local nodes of `config/n1.toml … n3.toml`.
pub(crate) const DEFAULT_ENDPOINTS: [&str; 3] =
    ["127.0.0.1:9081", "127.0.0.1:9082", "127.0.0.1:9083"];
/// Cluster id the nodes use unless configured otherwise (`cluster.cluster_id`).
pub(crate) const DEFAULT_CLUSTER_ID: u64 = 1;
/// Time to establish one TCP connection and its handshake.
pub(crate) const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 500;
/// Time one attempt waits for its response before it counts as lost.
pub(crate) const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 3_000;
/// Time one operation may take over all its attempts.
pub(crate) const DEFAULT_OPERATION_TIMEOUT_MS: u64 = 10_000;
/// Attempts one operation may make (the retry budget; the first try counts).
pub(crate) const DEFAULT_MAX_ATTEMPTS: u32 = 40;
/// First pause between attempts that found no leader or lost a connection.
pub(crate) const DEFAULT_BACKOFF_MS_MIN: u64 = 5;
/// Longest pause between attempts.
pub(crate) const DEFAULT_BACKOFF_MS_MAX: u64 = 400;
/// Longest pause a node's `Busy { retry_after_ms }` is honoured with.
pub(crate) const BUSY_RETRY_AFTER_MS_MAX: u64 = 1_000;
/// Requests in flight on one connection at most (pipelined, matched by request id).
pub(crate) const DEFAULT_MAX_INFLIGHT_PER_CONNECTION: usize = 1_024;
/// A node that failed to connect is skipped for this long when another candidate exists.
pub(crate) const DEFAULT_DOWN_NODE_COOLDOWN_MS: u64 = 1_000;
/// Most pairs one scan asks for.
pub(crate) const DEFAULT_SCAN_LIMIT: u32 = 1_000;
/// Most endpoints a client accepts (configured plus learned nodes).
pub(crate) const MAX_ENDPOINTS: usize = 64;

/// Settings of one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Nodes to start from, `host:port` (the nodes' client port; more are learned).
    pub endpoints: Vec<String>,
    /// Cluster id sent in the handshake.
    pub cluster_id: u64,
    /// Client id for exactly-once writes; `None` picks a random one per client.
    pub client_id: Option<u64>,
    /// Connect plus handshake timeout.
    pub connect_timeout_ms: u64,
    /// Wait for one attempt's response.
    pub request_timeout_ms: u64,
    /// Wait for one operation over all its attempts.
    pub operation_timeout_ms: u64,
    /// Attempts per operation (retry budget; at least 1).
    pub max_attempts: u32,
    /// First retry pause.
    pub backoff_ms_min: u64,
    /// Longest retry pause.
    pub backoff_ms_max: u64,
    /// Requests in flight per connection at most.
    pub max_inflight_per_connection: usize,
    /// How long a node that refused a connection is avoided.
    pub down_node_cooldown_ms: u64,
    /// Send eventual reads to any node (round robin) instead of the shard's leader.
    pub spread_eventual_reads: bool,
    /// TLS to the nodes (`None`: plaintext).
    pub tls: Option<ClientTls>,
}

/// A client's TLS files: the cluster CA, and optionally a client certificate (its SAN names
/// the client's role) with its key (owner-only file mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM of the CA the nodes' certificates chain to.
    pub(crate) ca_file: std::path::PathBuf,
    /// PEM of the client certificate.
    pub(crate) cert_file: Option<std::path::PathBuf>,
    /// PEM of its private key.
    pub(crate) key_file: Option<std::path::PathBuf>,
}

impl ClientTls {
    /// Loads the files for cluster `cluster_id`.
    pub(crate) fn load(&self, cluster_id: u64) -> Result<ringraft_net::tls::TlsConfig, String> {
        let pair = match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => Some((c.as_path(), k.as_path())),
            (None, None) => None,
            _ => {
                return Err(
                    "tls: a client certificate needs its key file, and a key its certificate"
                        .into(),
                )
            }
        };
        ringraft_net::tls::TlsConfig::from_pem_files(cluster_id, &self.ca_file, pair, false)
            .map_err(|e| format!("tls: {e}"))
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoints: DEFAULT_ENDPOINTS.iter().map(|s| s.to_string()).collect(),
            cluster_id: DEFAULT_CLUSTER_ID,
            client_id: None,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            request_timeout_ms: DEFAULT_REQUEST_TIMEOUT_MS,
            operation_timeout_ms: DEFAULT_OPERATION_TIMEOUT_MS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff_ms_min: DEFAULT_BACKOFF_MS_MIN,
            backoff_ms_max: DEFAULT_BACKOFF_MS_MAX,
            max_inflight_per_connection: DEFAULT_MAX_INFLIGHT_PER_CONNECTION,
            down_node_cooldown_ms: DEFAULT_DOWN_NODE_COOLDOWN_MS,
            spread_eventual_reads: true,
            tls: None,
        }
    }
}

impl ClientConfig {
    /// Defaults with these endpoints.
    pub fn with_endpoints<S: AsRef<str>>(endpoints: &[S]) -> Self {
        ClientConfig {
            endpoints: endpoints.iter().map(|s| s.as_ref().to_string()).collect(),
            ..ClientConfig::default()
        }
    }

    /// Checks every field; the message names the field, the value and what is allowed.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("endpoints: empty; give at least one node as host:port".into());
        }
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(format!(
                "endpoints: {} given, at most {MAX_ENDPOINTS} allowed",
                self.endpoints.len()
            ));
        }
        for e in &self.endpoints {
            let ok = e
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !ok {
                return Err(format!(
                    "endpoint {e:?}: not host:port (e.g. 127.0.0.1:9081)"
                ));
            }
        }
        let positive = [
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("request_timeout_ms", self.request_timeout_ms),
            ("operation_timeout_ms", self.operation_timeout_ms),
            ("max_attempts", u64::from(self.max_attempts)),
            ("backoff_ms_min", self.backoff_ms_min),
            (
                "max_inflight_per_connection",
                self.max_inflight_per_connection as u64,
            ),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name}: 0; must be at least 1"));
            }
        }
        if self.backoff_ms_max < self.backoff_ms_min {
            return Err(format!(
                "backoff_ms_max: {} is below backoff_ms_min {}",
                self.backoff_ms_max, self.backoff_ms_min
            ));
        }
        Ok(())
    }

    /// Per-attempt response wait.
    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// Whole-operation deadline.
    pub(crate) fn operation_timeout(&self) -> Duration {
        Duration::from_millis(self.operation_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(ClientConfig::default().validate(), Ok(()));
        let bad = ClientConfig::with_endpoints(&["localhost"]);
        assert!(bad.validate().unwrap_err().contains("localhost"));
        let bad = ClientConfig {
            max_attempts: 0,
            ..ClientConfig::default()
        };
        assert!(bad.validate().unwrap_err().starts_with("max_attempts"));
        let bad = ClientConfig {
            endpoints: vec![],
            ..ClientConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
