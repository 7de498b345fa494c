//! [`TlsError`]: why a TLS configuration could not be loaded (files, PEM, identities,
//! rustls). Only configuration loading returns it; per-connection TLS failures are
//! [`crate::NetError::Tls`].

use std::io;
use std::path::PathBuf;

use super::{IdentityError, MAX_PEM_FILE_BYTES};

/// Why a TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A file above [`MAX_PEM_FILE_BYTES`].
    #[error("{path}: {len} bytes is too large for a PEM file (max {MAX_PEM_FILE_BYTES})")]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// A private key readable by group or others.
    #[error(
        "{path}: private key has mode {mode:o}; it must be readable by its owner only (chmod 600)"
    )]
    KeyFileMode {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// PEM that does not parse, or holds nothing of the kind wanted.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A certificate without its key or the reverse.
    #[error("a certificate and its private key must be given together")]
    CertWithoutKey,
    /// Our own certificate names no usable identity.
    #[error("own certificate: {0}")]
    Identity(#[from] IdentityError),
    /// Our own certificate is for another cluster.
    #[error(
        "own certificate is for cluster {cert_cluster}, this endpoint is in cluster {cluster_id}"
    )]
    WrongCluster {
        /// Cluster in the certificate.
        cert_cluster: u64,
        /// Configured cluster.
        cluster_id: u64,
    },
    /// rustls refused the configuration (e.g. a key that does not match the certificate).
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA could not be used to verify client certificates.
    #[error("client verifier: {0}")]
    Verifier(String),
}
