//! Who a certificate names: the identity format every ringraft certificate carries, and the
//! parser that reads it back out of a peer's certificate.
//!
//! The identity is one SAN URI (the subject's CN/OU are set too, for humans, but never read):
//! - a node: `ringraft://cluster/<cluster_id>/node/<node_id>`
//! - a client: `ringraft://cluster/<cluster_id>/client/<name>/role/<read|write|admin>`
//!
//! Ids are canonical decimal `u64` (no sign, no leading zeros); client names are 1 to
//! [`MAX_CLIENT_NAME_BYTES`] bytes of `[A-Za-z0-9._-]`. A certificate must carry exactly one
//! `ringraft://` URI: none, two, or one that does not parse is refused, so a certificate can
//! never be read as two identities. Pure code over DER bytes; callers verify the chain first.

use std::fmt;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Scheme and authority every identity URI starts with.
pub const URI_PREFIX: &str = "ringraft://cluster/";
/// Longest client name (keeps identities short enough for logs and session tables).
pub const MAX_CLIENT_NAME_BYTES: usize = 64;

/// What a client certificate allows; the node maps it to the operations it permits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Reads only.
    Read,
    /// Reads and writes.
    Write,
    /// Everything, including membership changes, leadership transfer and snapshots.
    Admin,
}

impl Role {
    /// The role's name in certificates and configs.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    /// Parses `read`, `write` or `admin`.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "write" => Some(Role::Write),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity a verified certificate names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CertIdentity {
    /// A node of a cluster.
    Node {
        /// Cluster it belongs to.
        cluster_id: u64,
        /// Its node id.
        node_id: u64,
    },
    /// A client (tool, application, operator) of a cluster.
    Client {
        /// Cluster it may talk to.
        cluster_id: u64,
        /// Its name (unique per cluster by the issuer's convention).
        name: String,
        /// What it may do.
        role: Role,
    },
}

impl CertIdentity {
    /// The cluster the certificate is for.
    pub fn cluster_id(&self) -> u64 {
        match self {
            CertIdentity::Node { cluster_id, .. } | CertIdentity::Client { cluster_id, .. } => {
                *cluster_id
            }
        }
    }

    /// The node id, for a node certificate.
    pub fn node_id(&self) -> Option<u64> {
        match self {
            CertIdentity::Node { node_id, .. } => Some(*node_id),
            CertIdentity::Client { .. } => None,
        }
    }

    /// The role, for a client certificate (a node certificate carries no role: the node
    /// decides what its peers may do).
    pub fn role(&self) -> Option<Role> {
        match self {
            CertIdentity::Client { role, .. } => Some(*role),
            CertIdentity::Node { .. } => None,
        }
    }

    /// The SAN URI that encodes this identity.
    pub fn to_uri(&self) -> String {
        match self {
            CertIdentity::Node {
                cluster_id,
                node_id,
            } => format!("{URI_PREFIX}{cluster_id}/node/{node_id}"),
            CertIdentity::Client {
                cluster_id,
                name,
                role,
            } => format!("{URI_PREFIX}{cluster_id}/client/{name}/role/{role}"),
        }
    }

    /// Parses an identity URI (exact format, canonical numbers).
    pub fn parse_uri(uri: &str) -> Result<CertIdentity, IdentityError> {
        let bad = || IdentityError::Malformed(uri.to_string());
        let rest = uri.strip_prefix(URI_PREFIX).ok_or_else(bad)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            [cluster, "node", node] => Ok(CertIdentity::Node {
                cluster_id: parse_id(cluster).ok_or_else(bad)?,
                node_id: parse_id(node).ok_or_else(bad)?,
            }),
            [cluster, "client", name, "role", role] => {
                if !valid_client_name(name) {
                    return Err(bad());
                }
                Ok(CertIdentity::Client {
                    cluster_id: parse_id(cluster).ok_or_else(bad)?,
                    name: (*name).to_string(),
                    role: Role::parse(role).ok_or_else(bad)?,
                })
            }
            _ => Err(bad()),
        }
    }

    /// Reads the identity out of a DER certificate (chain verification is the caller's).
    pub fn from_der(der: &[u8]) -> Result<CertIdentity, IdentityError> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?
            .ok_or(IdentityError::Missing)?;
        let mut found = None;
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if uri.starts_with("ringraft:") {
                    if found.is_some() {
                        return Err(IdentityError::Ambiguous);
                    }
                    found = Some(CertIdentity::parse_uri(uri)?);
                }
            }
        }
        found.ok_or(IdentityError::Missing)
    }
}

impl fmt::Display for CertIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertIdentity::Node {
                cluster_id,
                node_id,
            } => write!(f, "node {node_id} of cluster {cluster_id}"),
            CertIdentity::Client {
                cluster_id,
                name,
                role,
            } => write!(f, "client {name:?} ({role}) of cluster {cluster_id}"),
        }
    }
}

/// Why a certificate names no usable identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The certificate does not parse.
    #[error("certificate does not parse: {0}")]
    BadCertificate(String),
    /// No `ringraft://` SAN URI.
    #[error("certificate names no ringraft identity (no ringraft:// SAN URI)")]
    Missing,
    /// More than one `ringraft://` SAN URI.
    #[error("certificate names more than one ringraft identity")]
    Ambiguous,
    /// A `ringraft://` URI that is not in the identity format.
    #[error("malformed ringraft identity URI {0:?}")]
    Malformed(String),
}

/// Canonical decimal u64: digits only, no leading zero unless the number is 0.
fn parse_id(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Whether `name` is a valid client name.
pub fn valid_client_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CLIENT_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_round_trip() {
        let ids = [
            CertIdentity::Node {
                cluster_id: 1,
                node_id: 3,
            },
            CertIdentity::Node {
                cluster_id: u64::MAX,
                node_id: 0,
            },
            CertIdentity::Client {
                cluster_id: 9,
                name: "ops-bot_1.a".into(),
                role: Role::Admin,
            },
        ];
        for id in ids {
            assert_eq!(CertIdentity::parse_uri(&id.to_uri()), Ok(id));
        }
    }

    #[test]
    fn malformed_uris_are_refused() {
        for uri in [
            "ringraft://cluster/1/node/",
            "ringraft://cluster/01/node/2",
            "ringraft://cluster/1/node/+2",
            "ringraft://cluster/1/node/2/",
            "ringraft://cluster/1/node/18446744073709551616",
            "ringraft://cluster/1/client/a/role/root",
            "ringraft://cluster/1/client//role/read",
            "ringraft://cluster/1/client/a b/role/read",
            "ringraft://cluster/1/Node/2",
            "https://cluster/1/node/2",
        ] {
            assert!(CertIdentity::parse_uri(uri).is_err(), "{uri}");
        }
    }
}
