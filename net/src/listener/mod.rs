//! The glommio side: a listener that sniffs, handshakes and drives frame connections, and a
//! dialer for outgoing peer connections. The node plugs in its own [`Handler`].
//!
//! Per accepted connection (one local task each, on the accepting executor):
//! 0. With [`ConnectionConfig::tls`] set: the TLS handshake ([`crate::tls::accept`]) within
//!    `handshake_timeout_ms`; a refused or missing certificate (or plaintext) ends the
//!    connection here, before any frame is read. Everything below then runs over TLS.
//! 1. Sniff the first bytes ([`crate::sniff`]): HTTP goes to [`Handler::on_http_stream`] with
//!    the bytes already read; anything that is neither HTTP nor a frame gets an error frame
//!    and is closed.
//! 2. Handshake: the first frame must be a valid [`Handshake`] of our cluster and version,
//!    within `handshake_timeout_ms`, and under TLS its claimed role must match the certificate
//!    ([`crate::tls::check_claim`]); otherwise an error frame, then close.
//! 3. Steady state: a reader decodes frames into the reusable aligned buffer and calls
//!    [`Handler::on_frame`] with each validated in-place frame; a writer drains the
//!    connection's bounded [`SendQueue`] in batches, one write per batch. Any decode error
//!    (oversize, bad magic, CRC, invalid archive, unknown kind, truncation) is counted, reported
//!    to the peer in an error frame, and closes this connection only; the listener keeps going.
//!
//! Bounds: `max_connections` live connections per listener (extra ones get an error frame),
//! the decoder's `max_frame_bytes`, the send queue's byte/frame limits, `write_timeout_ms` on
//! every socket write (a peer that stops reading cannot pin a connection forever).
//!
//! Dialing ([`dial_node`]) mirrors this: TLS handshake (the server's certificate must name the
//! node meant), frame handshake, then the same reader and writer.
//!
//! Everything here runs on one glommio executor: connections are `Rc`, never shared across
//! threads; only [`NetMetrics`] (atomics) is shared.
//!
//! Modules: [`config`] (settings), [`handler`] (the node's hooks), [`conn`] (a live
//! connection), `accept` (the accept loop), `admit` (TLS, sniff, handshake of one accepted
//! connection), `dial` (outgoing connections), `drive` (reader and writer), `direct` (frame
//! I/O before a connection exists).

mod accept;
mod admit;
pub mod config;
pub mod conn;
mod dial;
mod direct;
mod drive;
pub mod handler;

pub use accept::{bind, serve};
pub use config::{
    ConnectionConfig, ListenerConfig, ACCEPT_ERROR_PAUSE_MS, DEFAULT_HANDSHAKE_TIMEOUT_MS,
    DEFAULT_MAX_CONNECTIONS, DEFAULT_WRITE_TIMEOUT_MS,
};
pub use conn::Connection;
pub use dial::{dial, dial_node, dial_node_with_backoff, dial_with_backoff, refusal_from};
pub use handler::Handler;
