//! ringraft-net: ringraft's wire protocol — checksummed, 16-aligned rkyv frames over raw TCP.
//!
//! Layers, bottom up (the first four are runtime-agnostic, pure byte-buffer code):
//! - [`frame`]: the 32-byte header, written out byte by byte.
//! - [`message`]: every message type, its kind number, in-place validated views.
//! - [`decoder`]: bytes in (reusable aligned receive buffer) → validated frames out.
//! - [`send_queue`]: frames in → one batched, bounded write buffer out.
//! - [`sniff`]: tells a frame connection from HTTP by its first bytes.
//! - [`socket`] and [`backoff`]: socket options, connect with timeout, reconnect backoff.
//! - [`tls`]: mutual TLS for peers and TLS for clients (rustls), certificate identities, and
//!   certificate generation; off unless a [`tls::TlsConfig`] is given.
//! - [`listener`]: the glommio listener and connection driver the node plugs its handler into.
//! - [`blocking_client`]: a std::net client for tools, tests and benchmarks.
//!
//! Errors ([`error`]) are all countable by kind in [`metrics`].

pub mod backoff;
pub mod blocking_client;
pub mod decoder;
pub mod error;
pub mod frame;
pub mod listener;
pub mod message;
pub mod metrics;
pub mod send_queue;
pub mod sniff;
pub mod socket;
pub mod tls;

pub use decoder::{Decoder, DecoderConfig, Frame};
pub use error::{DecodeError, ErrorKind, NetError};
pub use frame::{FrameHeader, MAGIC, PROTOCOL_VERSION};
pub use message::{Encode, Kind, Message, MessageRef};
pub use metrics::NetMetrics;
pub use send_queue::{SendQueue, SendQueueConfig};
pub use sniff::{sniff, Protocol};
pub use tls::{CertIdentity, NetStream, Role, TlsConfig, TlsOptions};
