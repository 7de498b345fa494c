//! Certificates and TLS connections for the tests of a secured cluster: a fresh CA that issues
//! each node's certificate (written where [`Security`] points the nodes), a tokens file of two
//! bearer tokens, client TLS configurations (with a certificate of this CA, of another CA, or
//! none), HTTPS requests and frame-protocol connections over TLS. Keys never leave the test's
//! temporary directory; key and tokens files are mode 0600, as a node requires.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ringraft_net::blocking_client::{BlockingClient, ClientConfig};
use ringraft_net::message::{LocalIdentity, PeerRole};
use ringraft_net::tls::certgen::CertAuthority;
use ringraft_net::tls::{self, Alpn, CertIdentity, Role, TlsConfig, TlsOptions};
use ringraft_net::NetError;

use super::config::Security;
use super::http::{parse_answer, request_text, ANSWER_TIMEOUT, CONNECT_TIMEOUT};

/// The cluster id every node certificate names.
pub const CLUSTER: u64 = 1;
/// A bearer token of the `write` role (user `writer`).
pub const WRITE_TOKEN: &str = "writer-token-0123456789abcdef";
/// A bearer token of the `admin` role (user `ops`).
pub const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
/// How long a frame-protocol client waits for an answer.
const FRAME_ANSWER_MS: u64 = 5_000;

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A CA and the files it issued.
pub struct Pki {
    pub ca: CertAuthority,
    /// Where the nodes find their files.
    pub security: Security,
}

impl Pki {
    /// A new CA in `dir` with certificates of nodes 1..=`nodes` of [`CLUSTER`] and a tokens
    /// file holding [`WRITE_TOKEN`] and [`ADMIN_TOKEN`].
    pub fn new(dir: &Path, nodes: u64) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        let ca = CertAuthority::generate("test cluster", 2).unwrap();
        write(&dir.join("ca.crt"), &ca.cert_pem(), 0o644);
        for n in 1..=nodes {
            let c = ca.issue_node(CLUSTER, n, &["127.0.0.1".into()]).unwrap();
            write(&dir.join(format!("node-{n}.crt")), &c.cert_pem, 0o644);
            write(&dir.join(format!("node-{n}.key")), &c.key_pem, 0o600);
        }
        let tokens_file = dir.join("tokens");
        write(
            &tokens_file,
            &format!("write writer {WRITE_TOKEN}\nadmin ops {ADMIN_TOKEN}\n"),
            0o600,
        );
        Pki {
            ca,
            security: Security {
                pki_dir: dir.to_path_buf(),
                tokens_file,
            },
        }
    }

    /// A client-side TLS config presenting `id` (issued by this CA, or by `other_ca`), trusting
    /// this CA, for cluster `cluster`.
    pub fn client(
        &self,
        cluster: u64,
        id: Option<CertIdentity>,
        other_ca: Option<&CertAuthority>,
    ) -> TlsConfig {
        let (cert, key) = match id {
            Some(id) => {
                let c = other_ca.unwrap_or(&self.ca).issue(&id, &[]).unwrap();
                (Some(c.cert_pem.into_bytes()), Some(c.key_pem.into_bytes()))
            }
            None => (None, None),
        };
        TlsConfig::new(TlsOptions {
            cluster_id: cluster,
            ca_pem: self.ca.cert_pem().into_bytes(),
            cert_chain_pem: cert,
            key_pem: key,
            require_client_cert: false,
        })
        .unwrap()
    }

    /// A client certificate of user `name` with `role`.
    pub fn user(&self, name: &str, role: Role) -> TlsConfig {
        let id = CertIdentity::Client {
            cluster_id: CLUSTER,
            name: name.into(),
            role,
        };
        self.client(CLUSTER, Some(id), None)
    }

    /// A certificate claiming node `node_id` of `cluster`, issued by this CA or `other_ca`.
    pub fn node(&self, cluster: u64, node_id: u64, other_ca: Option<&CertAuthority>) -> TlsConfig {
        let id = CertIdentity::Node {
            cluster_id: cluster,
            node_id,
        };
        self.client(cluster, Some(id), other_ca)
    }
}

/// One HTTPS request on a fresh connection; `token` adds `Authorization: Bearer`. `None` when
/// the handshake or the exchange failed (said on stderr).
pub fn https(
    addr: SocketAddr,
    tls_cfg: &TlsConfig,
    method: &str,
    target: &str,
    body: &str,
    token: Option<&str>,
) -> Option<(u16, String)> {
    let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).ok()?;
    tcp.set_read_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    tcp.set_write_timeout(Some(ANSWER_TIMEOUT)).ok()?;
    let (mut s, _) = match tls::connect_blocking(tcp, tls_cfg, Alpn::Http, None) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("TLS connect to {addr}: {e}");
            return None;
        }
    };
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(request_text(addr, method, target, body, &auth).as_bytes())
        .ok()?;
    let mut raw = Vec::new();
    if let Err(e) = s.read_to_end(&mut raw) {
        eprintln!("reading from {addr}: {e} after {} bytes", raw.len());
    }
    parse_answer(&raw)
}

/// Connects with the frame protocol claiming `role` in [`CLUSTER`], over TLS `tls_cfg`.
pub fn frame_connect(
    addr: SocketAddr,
    tls_cfg: TlsConfig,
    role: PeerRole,
) -> Result<BlockingClient, NetError> {
    let mut cfg = ClientConfig::new(LocalIdentity {
        cluster_id: CLUSTER,
        role,
    });
    cfg.tls = Some(tls_cfg);
    cfg.response_timeout_ms = FRAME_ANSWER_MS;
    BlockingClient::connect(addr, cfg)
}
