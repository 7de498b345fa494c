//! Who a client is and what it may do: the node's transport security (the loaded TLS
//! configuration) and client authentication (certificates and bearer tokens) mapped to a role.
//!
//! Credentials, in order: a client certificate (its SAN names `…/client/<name>/role/<role>`, or a
//! node, which counts as `admin`), then an `Authorization: Bearer <token>` header matched
//! against the tokens file (`security.tokens_file`, lines `<role> <name> <token>`). Frame
//! clients authenticate by certificate only (the frame protocol has no token field).
//! Roles are ordered `read` < `write` < `admin`: reads need `read`, writes `write`, membership
//! changes, leadership transfer and snapshots `admin`.
//!
//! Authentication is *required* when TLS is on or a tokens file is configured; without either
//! (the loopback development cluster) every request is anonymous `admin`, as before. A request
//! without credentials gets 401 (HTTP) or an `Unauthenticated` error frame; with too small a
//! role 403 or a `Forbidden` error frame; both are counted in `/metrics`.
//!
//! Sessions are per authenticated client: a request's session client id is replaced by a hash
//! of (client name, client id) before it reaches the state machine, so one client can neither
//! replay nor expire another's sessions. Anonymous requests keep their id.
//!
//! Invariants: the tokens file is refused at start unless only its owner may read it; it holds
//! at most [`MAX_TOKENS`] tokens of at least [`MIN_TOKEN_BYTES`] bytes each; a token is
//! compared in time independent of where it differs. Owned by the node's server.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ringraft_net::tls::identity::valid_client_name;
use ringraft_net::tls::{CertIdentity, Role, TlsConfig};

use crate::node::config::Config;

/// Largest tokens file read, in bytes.
pub(crate) const MAX_TOKENS_FILE_BYTES: u64 = 1 << 20;
/// Most tokens in the tokens file (each is checked on every token request).
pub(crate) const MAX_TOKENS: usize = 10_000;
/// Shortest token accepted: 16 bytes keeps guessing out of reach.
pub(crate) const MIN_TOKEN_BYTES: usize = 16;

/// One configured bearer token.
struct Token {
    name: String,
    role: Role,
    secret: Vec<u8>,
}

/// The node's security settings, loaded once at start.
pub(crate) struct Security {
    tls: Option<TlsConfig>,
    tokens: Vec<Token>,
    required: bool,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("tokens", &self.tokens.len())
            .field("required", &self.required)
            .finish()
    }
}

/// An authenticated (or, when authentication is off, anonymous) client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Principal {
    /// Its name (`None`: anonymous; authentication is off).
    pub(crate) name: Option<String>,
    /// What it may do.
    pub(crate) role: Role,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthError {
    /// No (valid) credentials: HTTP 401.
    Unauthenticated(String),
    /// Credentials whose role does not allow the request: HTTP 403.
    Forbidden(String),
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuthError::Unauthenticated(m) | AuthError::Forbidden(m) => f.write_str(m),
        }
    }
}

impl Security {
    /// Loads the TLS material and the tokens file named by `[security]`; every error names the
    /// key and the file.
    pub(crate) fn load(cfg: &Config) -> Result<Security, String> {
        let s = &cfg.security;
        let tls = match (&s.ca_file, &s.cert_file, &s.key_file) {
            (Some(ca), Some(cert), Some(key)) => Some(
                TlsConfig::from_pem_files(
                    cfg.cluster.cluster_id,
                    ca,
                    Some((cert, key)),
                    s.require_client_cert,
                )
                .map_err(|e| format!("security (TLS files): {e}"))?,
            ),
            _ => None,
        };
        if let Some(t) = &tls {
            let own = t.own_identity().and_then(|i| i.node_id());
            if own != Some(cfg.cluster.node_id) {
                return Err(format!(
                    "security.cert_file {}: the certificate names {}, not node {} of cluster {}",
                    s.cert_file
                        .as_deref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                    t.own_identity()
                        .map(|i| i.to_string())
                        .unwrap_or_else(|| "nothing".into()),
                    cfg.cluster.node_id,
                    cfg.cluster.cluster_id
                ));
            }
        }
        let tokens = match &s.tokens_file {
            Some(p) => load_tokens(p)?,
            None => Vec::new(),
        };
        let required = tls.is_some() || s.tokens_file.is_some();
        Ok(Security {
            tls,
            tokens,
            required,
        })
    }

    /// The TLS configuration listeners and dialers use (`None`: plaintext).
    pub(crate) fn tls(&self) -> Option<&TlsConfig> {
        self.tls.as_ref()
    }

    /// Whether requests need credentials.
    pub(crate) fn required(&self) -> bool {
        self.required
    }

    /// The principal a verified certificate names (nodes are `admin`).
    fn cert_principal(&self, cert: Option<&CertIdentity>) -> Option<Principal> {
        match cert? {
            CertIdentity::Node { node_id, .. } => Some(Principal {
                name: Some(format!("node/{node_id}")),
                role: Role::Admin,
            }),
            CertIdentity::Client { name, role, .. } => Some(Principal {
                name: Some(format!("client/{name}")),
                role: *role,
            }),
        }
    }

    /// The principal of a connection that presented `cert` (or none): the certificate's, or
    /// anonymous `admin` when authentication is off.
    pub(crate) fn connection(&self, cert: Option<&CertIdentity>) -> Result<Principal, AuthError> {
        if let Some(p) = self.cert_principal(cert) {
            return Ok(p);
        }
        if !self.required {
            return Ok(Principal {
                name: None,
                role: Role::Admin,
            });
        }
        Err(AuthError::Unauthenticated(
            "authentication required: present a client certificate (or, over HTTP, \
             `Authorization: Bearer <token>`)"
                .into(),
        ))
    }

    /// The principal of one HTTP request: the connection's certificate, else its bearer token,
    /// else anonymous (authentication off) or 401.
    pub(crate) fn http(
        &self,
        cert: Option<&CertIdentity>,
        authorization: Option<&str>,
    ) -> Result<Principal, AuthError> {
        if let Some(p) = self.cert_principal(cert) {
            return Ok(p);
        }
        if let Some(h) = authorization {
            let Some(token) = h.strip_prefix("Bearer ") else {
                return Err(AuthError::Unauthenticated(
                    "the Authorization header must be `Bearer <token>`".into(),
                ));
            };
            return self
                .token(token.trim().as_bytes())
                .ok_or_else(|| AuthError::Unauthenticated("unknown bearer token".into()));
        }
        self.connection(None)
    }

    fn token(&self, given: &[u8]) -> Option<Principal> {
        let mut found = None;
        for t in &self.tokens {
            if constant_time_eq(&t.secret, given) && found.is_none() {
                found = Some(Principal {
                    name: Some(format!("token/{}", t.name)),
                    role: t.role,
                });
            }
        }
        found
    }
}

/// Refuses `p` unless its role is at least `need`.
pub(crate) fn require(p: &Principal, need: Role, what: &str) -> Result<(), AuthError> {
    if p.role >= need {
        return Ok(());
    }
    Err(AuthError::Forbidden(format!(
        "{what} needs role `{need}`; {} has role `{}`",
        p.name.as_deref().unwrap_or("this client"),
        p.role
    )))
}

/// The session client id a request of `p` runs under: anonymous requests and requests without
/// a session (id 0) keep theirs; an authenticated client's id is mixed with its name, so two
/// clients never share a session (FNV-1a, never 0).
pub(crate) fn session_id(p: &Principal, client_id: u64) -> u64 {
    let Some(name) = &p.name else {
        return client_id;
    };
    if client_id == 0 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes().chain([0u8]).chain(client_id.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h.max(1)
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads the tokens file: refused when group or others may read it, when too large, or when a
/// line is not `<role> <name> <token>`.
fn load_tokens(path: &Path) -> Result<Vec<Token>, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("security.tokens_file {shown}: cannot read: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "security.tokens_file {shown}: mode {mode:04o} lets group or others read the tokens; \
             allowed: owner only (run `chmod 600 {shown}`)"
        ));
    }
    if meta.len() > MAX_TOKENS_FILE_BYTES {
        return Err(format!(
            "security.tokens_file {shown}: {} bytes, the limit is {MAX_TOKENS_FILE_BYTES}",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("security.tokens_file {shown}: cannot read: {e}"))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("security.tokens_file {shown} line {}: {why}", i + 1);
        let parts: Vec<&str> = line.split_whitespace().collect();
        let [role, name, token] = parts[..] else {
            return Err(bad("expected `<role> <name> <token>`"));
        };
        let role = Role::parse(role).ok_or_else(|| bad("role must be read, write or admin"))?;
        if !valid_client_name(name) {
            return Err(bad("name must be 1-64 of a-z, 0-9, '-', '_', '.'"));
        }
        if token.len() < MIN_TOKEN_BYTES {
            return Err(bad(&format!("token shorter than {MIN_TOKEN_BYTES} bytes")));
        }
        if out.len() >= MAX_TOKENS {
            return Err(bad(&format!("more than {MAX_TOKENS} tokens")));
        }
        out.push(Token {
            name: name.to_string(),
            role,
            secret: token.as_bytes().to_vec(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(name: &str, role: Role) -> Principal {
        Principal {
            name: Some(name.into()),
            role,
        }
    }

    #[test]
    fn roles_are_ordered_and_required() {
        let w = principal("client/w", Role::Write);
        assert!(require(&w, Role::Read, "a read").is_ok());
        assert!(require(&w, Role::Write, "a write").is_ok());
        assert!(matches!(
            require(&w, Role::Admin, "a promote"),
            Err(AuthError::Forbidden(_))
        ));
    }

    #[test]
    fn sessions_are_per_client() {
        let a = principal("client/a", Role::Write);
        let b = principal("client/b", Role::Write);
        assert_ne!(session_id(&a, 7), session_id(&b, 7));
        assert_eq!(session_id(&a, 7), session_id(&a, 7));
        assert_eq!(session_id(&a, 0), 0);
        let anon = Principal {
            name: None,
            role: Role::Admin,
        };
        assert_eq!(session_id(&anon, 7), 7);
    }

    #[test]
    fn tokens_file_mode_and_lines_are_checked() {
        let dir = std::env::temp_dir().join(format!("ringraft-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("tokens");
        std::fs::write(&p, "admin ops 0123456789abcdef0123\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_tokens(&p).err().unwrap();
        assert!(e.contains("0644") && e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let t = load_tokens(&p).unwrap();
        let s = Security {
            tls: None,
            tokens: t,
            required: true,
        };
        assert_eq!(
            s.http(None, Some("Bearer 0123456789abcdef0123"))
                .unwrap()
                .role,
            Role::Admin
        );
        assert!(matches!(
            s.http(None, Some("Bearer 0123456789abcdef0124")),
            Err(AuthError::Unauthenticated(_))
        ));
        assert!(matches!(
            s.http(None, None),
            Err(AuthError::Unauthenticated(_))
        ));
        std::fs::write(&p, "admin ops short\n").unwrap();
        assert!(load_tokens(&p).err().unwrap().contains("shorter"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
