//! [`TlsConfig`]: the loaded, verified TLS configuration (rustls server and client configs
//! with ringraft's certificate verifiers). Built once per process, cheap to clone (`Arc`),
//! `Send + Sync`; its own certificate (if any) names an identity of its cluster.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::PrivateKeyDer;

use super::pem::pem_certs;
use super::verify::{NodeServerVerifier, PeerClientVerifier};
use super::{CertIdentity, TlsError, TlsOptions, ALPN_FRAMES, ALPN_HTTP};

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
