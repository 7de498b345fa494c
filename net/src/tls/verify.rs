//! Certificate verifiers: rustls's chain checks plus ringraft's identity rule (the certificate
//! must name an identity of our cluster; a server must be a node). Used only inside
//! [`super::TlsConfig`]; a refusal fails the TLS handshake itself.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::CertIdentity;

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
pub(super) struct NodeServerVerifier {
    pub(super) roots: Arc<RootCertStore>,
    pub(super) provider: Arc<CryptoProvider>,
    pub(super) cluster_id: u64,
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
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.provider.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
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
pub(super) struct PeerClientVerifier {
    pub(super) inner: Arc<dyn ClientCertVerifier>,
    pub(super) cluster_id: u64,
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
