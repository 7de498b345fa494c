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

pub mod certgen;
pub mod identity;

use std::fmt;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, ClientConfig, CommonState, DigitallySignedStruct, DistinguishedName,
    OtherError, RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

pub use identity::{CertIdentity, IdentityError, Role};

use crate::error::NetError;
use crate::message::{ErrorCode, ErrorFrame, PeerRole};

/// ALPN protocol id of ringraft frames over TLS.
pub const ALPN_FRAMES: &[u8] = b"ringraft/1";
/// ALPN protocol id of HTTP/1.1 over TLS.
pub const ALPN_HTTP: &[u8] = b"http/1.1";
/// First byte of every TLS record carrying a handshake (a ClientHello starts with it).
pub const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// Largest PEM file read (certificate chains and keys are a few KiB; this bounds a mistake
/// such as pointing the config at a log file).
pub const MAX_PEM_FILE_BYTES: u64 = 1024 * 1024;

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

struct TlsInner {
    cluster_id: u64,
    own: Option<CertIdentity>,
    require_client_cert: bool,
    server: Option<Arc<ServerConfig>>,
    client_frames: Arc<ClientConfig>,
    client_http: Arc<ClientConfig>,
}

/// A loaded TLS configuration: what listeners, dialers and blocking clients use.
#[derive(Clone)]
pub struct TlsConfig {
    inner: Arc<TlsInner>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("cluster_id", &self.inner.cluster_id)
            .field("own", &self.inner.own)
            .field("require_client_cert", &self.inner.require_client_cert)
            .finish_non_exhaustive()
    }
}

/// Which application protocol a client connection will speak (its ALPN offer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alpn {
    /// ringraft frames.
    Frames,
    /// HTTP/1.1.
    Http,
}

fn pem_certs(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
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

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfig {
    /// Builds the configuration; checks that our own certificate (if any) names an identity of
    /// `cluster_id` and that the key matches it.
    pub fn new(opts: TlsOptions) -> Result<TlsConfig, TlsError> {
        let provider = provider();
        let mut roots = RootCertStore::empty();
        for ca in pem_certs("CA", &opts.ca_pem)? {
            roots.add(ca)?;
        }
        let roots = Arc::new(roots);
        let own_cert = match (&opts.cert_chain_pem, &opts.key_pem) {
            (Some(chain), Some(key)) => {
                let chain = pem_certs("certificate", chain)?;
                let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Pem {
                    what: "private key",
                    reason: e.to_string(),
                })?;
                Some((chain, key))
            }
            (None, None) => None,
            _ => return Err(TlsError::CertWithoutKey),
        };
        let own = match &own_cert {
            Some((chain, _)) => {
                let id = CertIdentity::from_der(&chain[0])?;
                if id.cluster_id() != opts.cluster_id {
                    return Err(TlsError::WrongCluster {
                        cert_cluster: id.cluster_id(),
                        cluster_id: opts.cluster_id,
                    });
                }
                Some(id)
            }
            None => None,
        };

        let server = match &own_cert {
            Some((chain, key)) => {
                let builder =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone());
                let builder = if opts.require_client_cert {
                    builder
                } else {
                    builder.allow_unauthenticated()
                };
                let webpki = builder
                    .build()
                    .map_err(|e| TlsError::Verifier(e.to_string()))?;
                let verifier = Arc::new(PeerClientVerifier {
                    inner: webpki,
                    cluster_id: opts.cluster_id,
                });
                let mut cfg = ServerConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()?
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain.clone(), key.clone_key())?;
                cfg.alpn_protocols = vec![ALPN_FRAMES.to_vec(), ALPN_HTTP.to_vec()];
                Some(Arc::new(cfg))
            }
            None => None,
        };

        let verifier = Arc::new(NodeServerVerifier {
            roots,
            provider: provider.clone(),
            cluster_id: opts.cluster_id,
        });
        let client = |alpn: &[u8]| -> Result<Arc<ClientConfig>, TlsError> {
            let builder = ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()?
                .dangerous()
                .with_custom_certificate_verifier(verifier.clone());
            let mut cfg = match &own_cert {
                Some((chain, key)) => {
                    builder.with_client_auth_cert(chain.clone(), key.clone_key())?
                }
                None => builder.with_no_client_auth(),
            };
            cfg.alpn_protocols = vec![alpn.to_vec()];
            Ok(Arc::new(cfg))
        };
        let client_frames = client(ALPN_FRAMES)?;
        let client_http = client(ALPN_HTTP)?;
        Ok(TlsConfig {
            inner: Arc::new(TlsInner {
                cluster_id: opts.cluster_id,
                own,
                require_client_cert: opts.require_client_cert,
                server,
                client_frames,
                client_http,
            }),
        })
    }

    /// [`TlsOptions::from_pem_files`] then [`TlsConfig::new`].
    pub fn from_pem_files(
        cluster_id: u64,
        ca: &Path,
        cert_and_key: Option<(&Path, &Path)>,
        require_client_cert: bool,
    ) -> Result<TlsConfig, TlsError> {
        TlsConfig::new(TlsOptions::from_pem_files(
            cluster_id,
            ca,
            cert_and_key,
            require_client_cert,
        )?)
    }

    /// The cluster peers must belong to.
    pub fn cluster_id(&self) -> u64 {
        self.inner.cluster_id
    }

    /// The identity our own certificate names (`None`: no certificate, client only).
    pub fn own_identity(&self) -> Option<&CertIdentity> {
        self.inner.own.as_ref()
    }

    /// Whether acceptors refuse clients without a certificate.
    pub fn require_client_cert(&self) -> bool {
        self.inner.require_client_cert
    }

    /// The rustls server configuration (`None` without an own certificate: cannot accept).
    pub fn server_config(&self) -> Option<&Arc<ServerConfig>> {
        self.inner.server.as_ref()
    }

    /// The rustls client configuration offering `alpn`.
    pub fn client_config(&self, alpn: Alpn) -> &Arc<ClientConfig> {
        match alpn {
            Alpn::Frames => &self.inner.client_frames,
            Alpn::Http => &self.inner.client_http,
        }
    }
}

/// A certificate that chains to the CA but names no identity this endpoint accepts.
#[derive(Debug)]
struct CertRefused(String);

impl fmt::Display for CertRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CertRefused {}

fn refuse_cert(why: String) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(CertRefused(
        why,
    )))))
}

/// The identity of a certificate that already chained to the CA, if it is of `cluster_id`
/// (and a node, when `node_only`).
fn identity_for(
    der: &CertificateDer<'_>,
    cluster_id: u64,
    node_only: bool,
) -> Result<CertIdentity, rustls::Error> {
    let id = CertIdentity::from_der(der).map_err(|e| refuse_cert(e.to_string()))?;
    if id.cluster_id() != cluster_id {
        return Err(refuse_cert(format!(
            "certificate names {id}, this endpoint is in cluster {cluster_id}"
        )));
    }
    if node_only && id.node_id().is_none() {
        return Err(refuse_cert(format!(
            "certificate names {id}, a node was expected"
        )));
    }
    Ok(id)
}

/// Dialer side: the server must be a node of our cluster whose certificate chains to the CA.
#[derive(Debug)]
struct NodeServerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
    cluster_id: u64,
}

impl ServerCertVerifier for NodeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        identity_for(end_entity, self.cluster_id, true)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Acceptor side: webpki's chain check (clientAuth usage), then the identity must be of our
/// cluster. Whether a certificate is required at all is webpki's `allow_unauthenticated`.
#[derive(Debug)]
struct PeerClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    cluster_id: u64,
}

impl ClientCertVerifier for PeerClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        identity_for(end_entity, self.cluster_id, false)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The identity of the verified certificate the peer presented (`None`: none presented).
pub fn peer_identity(state: &CommonState) -> Option<CertIdentity> {
    let der = state.peer_certificates()?.first()?;
    CertIdentity::from_der(der).ok()
}

/// Judges a frame handshake's claimed role against the certificate the peer presented on a
/// TLS connection: a claim to be node `n` needs the certificate of node `n`. Clients may
/// present any certificate of the cluster, or none (the node decides what an unauthenticated
/// or a node-certified client may do). The cluster was already checked by the TLS handshake.
pub fn check_claim(claim: PeerRole, cert: Option<&CertIdentity>) -> Result<(), ErrorFrame> {
    match (claim, cert) {
        (PeerRole::Client { .. }, _) => Ok(()),
        (
            PeerRole::Node { node_id },
            Some(CertIdentity::Node {
                node_id: cert_id, ..
            }),
        ) if *cert_id == node_id => Ok(()),
        (PeerRole::Node { node_id }, Some(other)) => Err(ErrorFrame {
            code: ErrorCode::Unauthenticated,
            message: format!("handshake claims node {node_id}, but the certificate names {other}"),
        }),
        (PeerRole::Node { node_id }, None) => Err(ErrorFrame {
            code: ErrorCode::Unauthenticated,
            message: format!(
                "handshake claims node {node_id}, but no certificate was presented; peers need \
                 their node certificate"
            ),
        }),
    }
}

/// Checks the node a dialer reached: the certificate must name a node (of our cluster: the
/// verifier checked that), and `expected` if given.
fn check_reached(
    cert: Option<CertIdentity>,
    expected: Option<u64>,
) -> Result<CertIdentity, NetError> {
    let id = cert.ok_or_else(|| NetError::Tls("server presented no certificate".into()))?;
    match (expected, id.node_id()) {
        (Some(want), Some(got)) if want != got => Err(NetError::WrongPeer {
            expected: want,
            found: got,
        }),
        (_, Some(_)) => Ok(id),
        (_, None) => Err(NetError::Tls(format!("server certificate names {id}"))),
    }
}

/// Maps an I/O error out of a TLS stream: rustls failures (bad certificate, alert) become
/// [`NetError::Tls`], the rest stays [`NetError::Io`].
pub fn tls_io_error(e: io::Error) -> NetError {
    let is_tls = e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>());
    if is_tls {
        NetError::Tls(e.to_string())
    } else {
        NetError::Io(e)
    }
}

fn server_name(addr: SocketAddr) -> ServerName<'static> {
    ServerName::IpAddress(addr.ip().into())
}

/// Bounds `fut` by `timeout`.
async fn within<T>(
    timeout: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = Result<T, NetError>>,
) -> Result<T, NetError> {
    futures_lite::future::or(fut, async {
        glommio::timer::sleep(timeout).await;
        Err(NetError::Timeout(what))
    })
    .await
}

/// Runs the server side of the TLS handshake on an accepted socket, within `timeout`.
pub async fn accept(
    tcp: TcpStream,
    tls: &TlsConfig,
    timeout: Duration,
) -> Result<NetStream, NetError> {
    let server = tls
        .server_config()
        .ok_or_else(|| NetError::Tls("this endpoint has no certificate to serve TLS with".into()))?
        .clone();
    let acceptor = futures_rustls::TlsAcceptor::from(server);
    let stream = within(timeout, "TLS handshake", async {
        acceptor.accept(tcp).await.map_err(tls_io_error)
    })
    .await?;
    let identity = peer_identity(stream.get_ref().1);
    Ok(NetStream {
        inner: StreamInner::Tls(Box::new(stream.into())),
        identity,
    })
}

/// Runs the client side of the TLS handshake on a connected socket, within `timeout`, and
/// checks that the server is a node of our cluster (node `expected_node` if given).
pub async fn connect(
    tcp: TcpStream,
    addr: SocketAddr,
    tls: &TlsConfig,
    alpn: Alpn,
    expected_node: Option<u64>,
    timeout: Duration,
) -> Result<NetStream, NetError> {
    let connector = futures_rustls::TlsConnector::from(tls.client_config(alpn).clone());
    let stream = within(timeout, "TLS handshake", async {
        connector
            .connect(server_name(addr), tcp)
            .await
            .map_err(tls_io_error)
    })
    .await?;
    let identity = check_reached(peer_identity(stream.get_ref().1), expected_node)?;
    Ok(NetStream {
        inner: StreamInner::Tls(Box::new(stream.into())),
        identity: Some(identity),
    })
}

/// A blocking TLS client stream over std's TCP.
pub type BlockingTlsStream = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

/// Blocking client side of the TLS handshake on a connected std socket (its read and write
/// timeouts bound each step), then the same server check as [`connect`]. Returns the stream
/// and the identity of the node reached.
pub fn connect_blocking(
    mut tcp: std::net::TcpStream,
    tls: &TlsConfig,
    alpn: Alpn,
    expected_node: Option<u64>,
) -> Result<(BlockingTlsStream, CertIdentity), NetError> {
    let addr = tcp.peer_addr()?;
    let mut conn =
        rustls::ClientConnection::new(tls.client_config(alpn).clone(), server_name(addr))
            .map_err(|e| NetError::Tls(e.to_string()))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(tls_io_error)?;
    }
    let identity = check_reached(peer_identity(&conn), expected_node)?;
    Ok((rustls::StreamOwned::new(conn, tcp), identity))
}

enum StreamInner {
    Plain(TcpStream),
    Tls(Box<futures_rustls::TlsStream<TcpStream>>),
}

/// One connection's byte stream on a glommio executor: plaintext TCP or TLS over it. What
/// [`crate::listener::Handler::on_http_stream`] gets, with the peer's verified identity.
pub struct NetStream {
    inner: StreamInner,
    identity: Option<CertIdentity>,
}

impl fmt::Debug for NetStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetStream")
            .field("tls", &self.is_tls())
            .field("identity", &self.identity)
            .finish()
    }
}

impl NetStream {
    /// A plaintext stream.
    pub fn plain(tcp: TcpStream) -> NetStream {
        NetStream {
            inner: StreamInner::Plain(tcp),
            identity: None,
        }
    }

    /// Whether the stream is TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, StreamInner::Tls(_))
    }

    /// The identity of the certificate the peer presented and the TLS handshake verified
    /// (`None`: plaintext, or a TLS client without a certificate).
    pub fn peer_identity(&self) -> Option<&CertIdentity> {
        self.identity.as_ref()
    }

    /// The ALPN protocol agreed in the TLS handshake, if any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match &self.inner {
            StreamInner::Plain(_) => None,
            StreamInner::Tls(s) => s.get_ref().1.alpn_protocol(),
        }
    }

    /// The TCP socket underneath (for timeouts and addresses; never read or write it
    /// directly under TLS).
    pub fn tcp(&self) -> &TcpStream {
        match &self.inner {
            StreamInner::Plain(s) => s,
            StreamInner::Tls(s) => s.get_ref().0,
        }
    }

    /// The plaintext socket, or the TLS stream back.
    pub fn into_plain(self) -> Result<TcpStream, Box<NetStream>> {
        match self.inner {
            StreamInner::Plain(s) => Ok(s),
            inner @ StreamInner::Tls(_) => Err(Box::new(NetStream {
                inner,
                identity: self.identity,
            })),
        }
    }
}

impl AsyncRead for NetStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            StreamInner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            StreamInner::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for NetStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            StreamInner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            StreamInner::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            StreamInner::Plain(s) => Pin::new(s).poll_flush(cx),
            StreamInner::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            StreamInner::Plain(s) => Pin::new(s).poll_close(cx),
            StreamInner::Tls(s) => Pin::new(s.as_mut()).poll_close(cx),
        }
    }
}

/// A blocking client stream: plaintext or TLS (what [`crate::blocking_client`] reads and
/// writes).
#[derive(Debug)]
pub enum BlockingStream {
    /// Plaintext.
    Plain(std::net::TcpStream),
    /// TLS.
    Tls(Box<BlockingTlsStream>),
}

impl BlockingStream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &std::net::TcpStream {
        match self {
            BlockingStream::Plain(s) => s,
            BlockingStream::Tls(s) => s.get_ref(),
        }
    }
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(s) => s.read(buf),
            BlockingStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BlockingStream::Plain(s) => s.write(buf),
            BlockingStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            BlockingStream::Plain(s) => s.flush(),
            BlockingStream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_claims_need_the_matching_node_certificate() {
        let node = |n| CertIdentity::Node {
            cluster_id: 1,
            node_id: n,
        };
        let client = CertIdentity::Client {
            cluster_id: 1,
            name: "a".into(),
            role: Role::Admin,
        };
        assert!(check_claim(PeerRole::Node { node_id: 2 }, Some(&node(2))).is_ok());
        for cert in [Some(&node(3)), Some(&client), None] {
            let e = check_claim(PeerRole::Node { node_id: 2 }, cert).unwrap_err();
            assert_eq!(e.code, ErrorCode::Unauthenticated);
        }
        for cert in [Some(&node(3)), Some(&client), None] {
            assert!(check_claim(PeerRole::Client { client_id: 9 }, cert).is_ok());
        }
    }

    #[test]
    fn dialer_checks_the_node_it_reached() {
        let node = |n| CertIdentity::Node {
            cluster_id: 1,
            node_id: n,
        };
        assert!(check_reached(Some(node(2)), Some(2)).is_ok());
        assert!(check_reached(Some(node(2)), None).is_ok());
        assert!(matches!(
            check_reached(Some(node(3)), Some(2)),
            Err(NetError::WrongPeer {
                expected: 2,
                found: 3
            })
        ));
        assert!(check_reached(None, None).is_err());
    }
}
