//! Transport security: mutual TLS (rustls, `ring` provider) for peers, TLS with optional
//! client certificates for clients, on the same port as plaintext would use.
//!
//! Trust model. Every node and client trusts one CA (PEM). A certificate names who it is by
//! one SAN URI ([`identity`]): `ringraft://cluster/<c>/node/<n>` or
//! `ringraft://cluster/<c>/client/<name>/role/<role>`. The checks, all on both sides:
//! - Acceptor: a client certificate must chain to the CA (clientAuth usage) and name an
//!   identity of this cluster, or the TLS handshake fails. Certificates are optional unless
//!   `require_client_cert`; but a connection whose frame handshake claims
//!   `PeerRole::Node { id }` must have presented the certificate of node `id` of this cluster
//!   ([`check_claim`]), or it gets an `Unauthenticated` error frame and is closed before any
//!   frame reaches the handler.
//! - Dialer: the server's certificate must chain to the CA (serverAuth usage) and name a node
//!   of this cluster (checked inside the TLS handshake); when the dialer knows which node it
//!   meant, that node id too (checked right after the handshake, before a byte is sent).
//!   Host names are not checked: the identity URI is what names a node.
//!
//! Frames and HTTP share the port: the server offers ALPN `ringraft/1` and `http/1.1`, and the
//! listener tells them apart by the first decrypted bytes exactly as it does in plaintext
//! ([`crate::sniff`]), so clients without ALPN work too. A plaintext connection to a TLS
//! listener is answered in plaintext (an `Unauthenticated` error frame, or an HTTP 400) and
//! closed. Plaintext stays the default: with no [`TlsConfig`] nothing here runs.
//!
//! [`TlsConfig`] is built once per process from PEM (files or bytes), is cheap to clone
//! (`Arc`), and is `Send + Sync`; [`NetStream`] is the per-connection stream the glommio
//! listener and dialer drive, plaintext or TLS.
//!
//! Modules: [`pem`] (inputs), [`config`] (the loaded configuration), `verify` (certificate
//! verifiers), [`claims`] (identity checks after the handshake), [`handshake`] (TLS handshakes),
//! [`stream`] (connection streams), [`identity`] (the SAN URI), [`certgen`] (issuing
//! certificates).

pub mod certgen;
pub mod claims;
pub mod config;
pub mod error;
pub mod handshake;
pub mod identity;
pub mod pem;
pub mod stream;
mod verify;

pub use claims::{check_claim, peer_identity};
pub use config::{Alpn, TlsConfig};
pub use error::TlsError;
pub use handshake::{accept, connect, connect_blocking, tls_io_error, BlockingTlsStream};
pub use identity::{CertIdentity, IdentityError, Role};
pub use pem::TlsOptions;
pub use stream::{BlockingStream, NetStream};

/// ALPN protocol id of ringraft frames over TLS.
pub const ALPN_FRAMES: &[u8] = b"ringraft/1";
/// ALPN protocol id of HTTP/1.1 over TLS.
pub const ALPN_HTTP: &[u8] = b"http/1.1";
/// First byte of every TLS record carrying a handshake (a ClientHello starts with it).
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// Largest PEM file read (certificate chains and keys are a few KiB; this bounds a mistake
/// such as pointing the config at a log file).
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;
