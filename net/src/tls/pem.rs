//! [`TlsOptions`]: the PEM inputs of a TLS configuration, and their bounded, permission-checked
//! reading from files. Invariants: no PEM file above [`MAX_PEM_FILE_BYTES`] is read into
//! memory, and a private key readable by group or others is refused. Owned by the process
//! that configures TLS (node startup, CLI, tools).

use std::fmt;
use std::io::Read;
use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::{TlsError, MAX_PEM_FILE_BYTES};

/// What a [`TlsConfig`] is built from.
#[derive(Clone)]
pub struct TlsOptions {
    /// Cluster every peer certificate must name.
    pub cluster_id: u64,
    /// PEM of the CA certificate(s) to trust.
    pub ca_pem: Vec<u8>,
    /// PEM of our certificate chain, leaf first (nodes: required to accept; clients:
    /// optional, presented to servers that ask).
    pub cert_chain_pem: Option<Vec<u8>>,
    /// PEM of the private key of the leaf.
    pub key_pem: Option<Vec<u8>>,
    /// Acceptors: refuse clients that present no certificate (peers always need one).
    pub require_client_cert: bool,
}

impl fmt::Debug for TlsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsOptions")
            .field("cluster_id", &self.cluster_id)
            .field("has_cert", &self.cert_chain_pem.is_some())
            .field("require_client_cert", &self.require_client_cert)
            .finish_non_exhaustive()
    }
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, TlsError> {
    let io_err = |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(io_err)?;
    let len = f.metadata().map_err(io_err)?.len();
    if len > MAX_PEM_FILE_BYTES {
        return Err(TlsError::FileTooLarge {
            path: path.to_path_buf(),
            len,
        });
    }
    let mut buf = Vec::with_capacity(len as usize);
    Read::by_ref(&mut f)
        .take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io_err)?;
    if buf.len() as u64 > MAX_PEM_FILE_BYTES {
        return Err(TlsError::FileTooLarge {
            path: path.to_path_buf(),
            len: buf.len() as u64,
        });
    }
    Ok(buf)
}

/// Reads a private key file, refusing one that group or others may read.
fn read_key_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyFileMode {
            path: path.to_path_buf(),
            mode,
        });
    }
    read_bounded(path)
}

impl TlsOptions {
    /// Reads the CA, and optionally a certificate chain and its key, from PEM files. The key
    /// file must not be readable by group or others.
    pub fn from_pem_files(
        cluster_id: u64,
        ca: &Path,
        cert_and_key: Option<(&Path, &Path)>,
        require_client_cert: bool,
    ) -> Result<Self, TlsError> {
        let ca_pem = read_bounded(ca)?;
        let (cert_chain_pem, key_pem) = match cert_and_key {
            Some((cert, key)) => (Some(read_bounded(cert)?), Some(read_key_file(key)?)),
            None => (None, None),
        };
        Ok(TlsOptions {
            cluster_id,
            ca_pem,
            cert_chain_pem,
            key_pem,
            require_client_cert,
        })
    }
}

/// Every certificate in `pem`, at least one.
pub(super) fn pem_certs(
    what: &'static str,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}
