//! Certificate generation (rcgen): a cluster CA and the node and client certificates it
//! issues, each naming its [`CertIdentity`] in the SAN URI that [`crate::tls`] checks.
//!
//! Everything is in memory (PEM strings); writing files and their modes is the caller's job
//! (`ringraft certs`). Keys are ECDSA P-256. Node certificates carry both the serverAuth and
//! clientAuth usages (a node accepts and dials), plus the DNS names and IP addresses they are
//! reached by, so ordinary HTTPS clients (curl) can verify them by host name too. Client
//! certificates carry clientAuth only.

use std::net::IpAddr;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    Ia5String, IsCa, KeyPair, KeyUsagePurpose, SanType,
};

use super::identity::CertIdentity;

/// Default validity of generated certificates.
pub const DEFAULT_VALIDITY_DAYS: u32 = 365;
/// Backdating of `not_before`, so that peers whose clocks run a little behind accept a fresh
/// certificate.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(3600);

/// Why generation failed.
#[derive(Debug, thiserror::Error)]
pub enum CertGenError {
    /// rcgen refused the parameters or failed to sign.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A host name that cannot go in a certificate.
    #[error("invalid host name {0:?} for a certificate")]
    BadHost(String),
    /// The validity does not fit the calendar.
    #[error("validity of {0} days is out of range")]
    BadValidity(u32),
}

/// A certificate and its private key, PEM-encoded.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// Who the certificate names.
    pub identity: CertIdentity,
    /// The certificate (PEM).
    pub cert_pem: String,
    /// Its private key (PKCS#8 PEM): secret.
    pub key_pem: String,
}

/// A self-signed certificate authority that issues node and client certificates.
pub struct CertAuthority {
    cert: rcgen::Certificate,
    key: KeyPair,
    validity_days: u32,
}

impl std::fmt::Debug for CertAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAuthority")
            .field("validity_days", &self.validity_days)
            .finish_non_exhaustive()
    }
}

fn validity(days: u32) -> Result<(time::OffsetDateTime, time::OffsetDateTime), CertGenError> {
    let now = time::OffsetDateTime::now_utc();
    let not_before = now - CLOCK_SKEW_ALLOWANCE;
    let not_after = now
        .checked_add(time::Duration::days(i64::from(days)))
        .filter(|t| t.year() < 9999)
        .ok_or(CertGenError::BadValidity(days))?;
    Ok((not_before, not_after))
}

impl CertAuthority {
    /// Generates a new CA named after `label` (e.g. "ringraft cluster 1"), valid for
    /// `validity_days`; the certificates it issues get the same validity.
    pub fn generate(label: &str, validity_days: u32) -> Result<Self, CertGenError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("{label} CA"));
        dn.push(DnType::OrganizationName, "ringraft");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        (params.not_before, params.not_after) = validity(validity_days)?;
        let cert = params.self_signed(&key)?;
        Ok(CertAuthority {
            cert,
            key,
            validity_days,
        })
    }

    /// The CA certificate (PEM): what every node and client trusts.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA's private key (PEM): keep it offline; it signs every identity.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// Issues a node certificate for `node_id` of `cluster_id`, valid for `hosts` (each an IP
    /// address or a DNS name).
    pub fn issue_node(
        &self,
        cluster_id: u64,
        node_id: u64,
        hosts: &[String],
    ) -> Result<IssuedCert, CertGenError> {
        self.issue(
            &CertIdentity::Node {
                cluster_id,
                node_id,
            },
            hosts,
        )
    }

    /// Issues a certificate naming `identity`. Node certificates get server and client
    /// usage and `hosts` as SANs; client certificates get client usage only.
    pub fn issue(
        &self,
        identity: &CertIdentity,
        hosts: &[String],
    ) -> Result<IssuedCert, CertGenError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let uri = Ia5String::try_from(identity.to_uri())?;
        params.subject_alt_names.push(SanType::URI(uri));
        let mut dn = DistinguishedName::new();
        match identity {
            CertIdentity::Node {
                cluster_id,
                node_id,
            } => {
                dn.push(DnType::CommonName, format!("node-{node_id}"));
                dn.push(DnType::OrganizationalUnitName, "node");
                dn.push(
                    DnType::OrganizationName,
                    format!("ringraft cluster {cluster_id}"),
                );
                params.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
                for host in hosts {
                    params.subject_alt_names.push(match host.parse::<IpAddr>() {
                        Ok(ip) => SanType::IpAddress(ip),
                        Err(_) if valid_dns_name(host) => SanType::DnsName(
                            Ia5String::try_from(host.as_str())
                                .map_err(|_| CertGenError::BadHost(host.clone()))?,
                        ),
                        Err(_) => return Err(CertGenError::BadHost(host.clone())),
                    });
                }
            }
            CertIdentity::Client {
                cluster_id,
                name,
                role,
            } => {
                dn.push(DnType::CommonName, name.as_str());
                dn.push(DnType::OrganizationalUnitName, role.as_str());
                dn.push(
                    DnType::OrganizationName,
                    format!("ringraft cluster {cluster_id}"),
                );
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            }
        }
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = validity(self.validity_days)?;
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok(IssuedCert {
            identity: identity.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A DNS name for a certificate: dot-separated labels of 1 to 63 letters, digits and
/// hyphens (not at either end of a label), 253 bytes at most.
pub fn valid_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::identity::Role;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;

    #[test]
    fn issued_certificates_name_their_identity() {
        let ca = CertAuthority::generate("test", 30).unwrap();
        let node = ca
            .issue_node(7, 3, &["127.0.0.1".into(), "localhost".into()])
            .unwrap();
        let der = CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            CertIdentity::from_der(&der).unwrap(),
            CertIdentity::Node {
                cluster_id: 7,
                node_id: 3
            }
        );
        let id = CertIdentity::Client {
            cluster_id: 7,
            name: "ops".into(),
            role: Role::Write,
        };
        let client = ca.issue(&id, &[]).unwrap();
        let der = CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap();
        assert_eq!(CertIdentity::from_der(&der).unwrap(), id);
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
        assert_eq!(
            CertIdentity::from_der(&ca_der),
            Err(super::super::identity::IdentityError::Missing)
        );
        for bad in ["bad host", "a..b", "-a.b", "", "h\u{f6}st"] {
            assert!(ca.issue_node(7, 1, &[bad.into()]).is_err(), "{bad:?}");
        }
        assert!(ca
            .issue_node(7, 1, &["::1".into(), "node-1.example.org".into()])
            .is_ok());
    }
}
