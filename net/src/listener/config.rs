//! Connection and listener settings: the limits and timeouts every accepted or dialed
//! connection runs under, with their defaults. Plain data, owned by whoever starts a listener
//! or dials (the node builds one per endpoint); nothing here does I/O.

use std::time::Duration;

use crate::decoder::DecoderConfig;
use crate::message::LocalIdentity;
use crate::send_queue::SendQueueConfig;
use crate::socket::SocketOptions;
use crate::tls::TlsConfig;

/// Default bound on live connections per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default time for the first bytes and the handshake to arrive.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 2_000;
/// Default bound on one blocked socket write.
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 5_000;
/// Pause after a failed `accept` (e.g. out of descriptors) before trying again.
pub const ACCEPT_ERROR_PAUSE_MS: u64 = 10;

/// Settings of every connection (accepted or dialed).
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Our cluster and role.
    pub local: LocalIdentity,
    /// Socket options.
    pub socket: SocketOptions,
    /// Receive limits.
    pub decoder: DecoderConfig,
    /// Send limits.
    pub send_queue: SendQueueConfig,
    /// Time for the first bytes and the handshake.
    pub handshake_timeout_ms: u64,
    /// Bound on one blocked write.
    pub write_timeout_ms: u64,
    /// Close a handshaken connection that sends nothing for this long (`None`: never; peers
    /// that go silent are still caught by TCP keepalive).
    pub read_idle_timeout_ms: Option<u64>,
    /// TLS for every accepted and dialed connection (`None`: plaintext, the default).
    pub tls: Option<TlsConfig>,
}

impl ConnectionConfig {
    /// Defaults for an endpoint with identity `local`.
    pub fn new(local: LocalIdentity) -> Self {
        ConnectionConfig {
            local,
            socket: SocketOptions::default(),
            decoder: DecoderConfig::default(),
            send_queue: SendQueueConfig::default(),
            handshake_timeout_ms: DEFAULT_HANDSHAKE_TIMEOUT_MS,
            write_timeout_ms: DEFAULT_WRITE_TIMEOUT_MS,
            read_idle_timeout_ms: None,
            tls: None,
        }
    }
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Settings of accepted connections.
    pub connection: ConnectionConfig,
    /// Bound on live connections.
    pub max_connections: usize,
}

impl ListenerConfig {
    /// Defaults for an endpoint with identity `local`.
    pub fn new(local: LocalIdentity) -> Self {
        ListenerConfig {
            connection: ConnectionConfig::new(local),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// The read timeout of a handshaken connection (`None`: never time out).
pub(super) fn idle_timeout(cfg: &ConnectionConfig) -> Option<Duration> {
    cfg.read_idle_timeout_ms
        .map(|ms| Duration::from_millis(ms.max(1)))
}
