//! The node's security on real processes (loopback, bounded time, every process killed by PID):
//! a 3-node mutual-TLS cluster serves HTTPS put/get and fails over when its leader is killed;
//! peers without a valid certificate, with another cluster's or another CA's certificate, or
//! with a certificate of another node id are refused at the handshake; clients are authorized
//! by role (certificate or bearer token); AddLearner cannot rewrite a voter's address; a tokens
//! file readable by others stops start-up.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringraft_net::blocking_client::{BlockingClient, ClientConfig};
use ringraft_net::message::{self as wire, LocalIdentity, PeerRole};
use ringraft_net::tls::certgen::CertAuthority;
use ringraft_net::tls::{self, Alpn, CertIdentity, Role, TlsConfig, TlsOptions};
use ringraft_net::NetError;

const CLUSTER: u64 = 1;
const WRITE_TOKEN: &str = "writer-token-0123456789abcdef";
const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> Dir {
    let d = std::env::temp_dir().join(format!("ringraft-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Dir(d)
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// PEM material, in memory and on disk.
struct Pki {
    ca: CertAuthority,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca = CertAuthority::generate("test cluster", 2).unwrap();
        write(&dir.join("ca.crt"), &ca.cert_pem(), 0o644);
        let pki = Pki { ca };
        for n in 1..=3 {
            let c = pki
                .ca
                .issue_node(CLUSTER, n, &["127.0.0.1".into()])
                .unwrap();
            write(&dir.join(format!("node-{n}.crt")), &c.cert_pem, 0o644);
            write(&dir.join(format!("node-{n}.key")), &c.key_pem, 0o600);
        }
        write(
            &dir.join("tokens"),
            &format!("write writer {WRITE_TOKEN}\nadmin ops {ADMIN_TOKEN}\n"),
            0o600,
        );
        pki
    }

    /// A client-side TLS config presenting `id` (issued by this CA, or by `other_ca`), trusting
    /// this CA, for cluster `cluster`.
    fn client(
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

    fn user(&self, name: &str, role: Role) -> TlsConfig {
        self.client(
            CLUSTER,
            Some(CertIdentity::Client {
                cluster_id: CLUSTER,
                name: name.into(),
                role,
            }),
            None,
        )
    }
}

fn free_ports(n: usize) -> Vec<(u16, u16)> {
    let ls: Vec<TcpListener> = (0..2 * n)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let ports: Vec<u16> = ls.iter().map(|l| l.local_addr().unwrap().port()).collect();
    (0..n).map(|i| (ports[2 * i], ports[2 * i + 1])).collect()
}

fn config_text(dir: &Path, pki: &Path, id: u64, ports: &[(u16, u16)], tokens: &Path) -> String {
    let members: String = ports
        .iter()
        .enumerate()
        .map(|(i, (p, _))| {
            format!(
                "    {{ id = {}, address = \"127.0.0.1:{p}\", role = 1, status = 2 }},\n",
                i + 1
            )
        })
        .collect();
    format!(
        r#"[cluster]
node_id = {id}
listen_address = "127.0.0.1:{port}"
initial_cluster = [
{members}]
db_root_dir = "{db}"
log_dir = "{logs}"

[raft]
election_timeout_ms_min = 400
election_timeout_ms_max = 800
heartbeat_interval_ms = 50
tick_interval_ms = 10

[raft.read_consistency]
lease_duration_ms = 200

[raft.persistence]
flush_policy = "Immediate"
segment_bytes = 4194304

[monitoring]
metrics_port = {mport}

[security]
ca_file = "{pki}/ca.crt"
cert_file = "{pki}/node-{id}.crt"
key_file = "{pki}/node-{id}.key"
tokens_file = "{tokens}"
"#,
        port = ports[id as usize - 1].0,
        mport = ports[id as usize - 1].1,
        db = dir.join("db").display(),
        logs = dir.join("logs").display(),
        pki = pki.display(),
        tokens = tokens.display(),
    )
}

struct Cluster {
    dir: PathBuf,
    ports: Vec<(u16, u16)>,
    procs: Vec<Option<Child>>,
}

impl Cluster {
    fn start(dir: &Path, pki: &Path) -> Cluster {
        let ports = free_ports(3);
        let mut c = Cluster {
            dir: dir.to_path_buf(),
            ports,
            procs: Vec::new(),
        };
        for id in 1..=3u64 {
            let path = dir.join(format!("n{id}.toml"));
            std::fs::write(
                &path,
                config_text(dir, pki, id, &c.ports, &pki.join("tokens")),
            )
            .unwrap();
            let child = Command::new(env!("CARGO_BIN_EXE_ringraft"))
                .args(["server", "--config"])
                .arg(&path)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            c.procs.push(Some(child));
        }
        c
    }

    fn addr(&self, id: u64) -> SocketAddr {
        format!("127.0.0.1:{}", self.ports[id as usize - 1].0)
            .parse()
            .unwrap()
    }

    fn metrics(&self, id: u64) -> SocketAddr {
        format!("127.0.0.1:{}", self.ports[id as usize - 1].1)
            .parse()
            .unwrap()
    }

    fn kill(&mut self, id: u64) {
        if let Some(mut p) = self.procs[id as usize - 1].take() {
            let _ = p.kill();
            let _ = p.wait();
        }
    }

    fn leader(&self, limit: Duration) -> Option<u64> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            for id in 1..=3u64 {
                if self.procs[id as usize - 1].is_none() {
                    continue;
                }
                if let Some((200, body)) = http_plain(self.metrics(id), "/status") {
                    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                    if v["shards"][0]["role"] == "Leader" {
                        return Some(id);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in self.procs.iter_mut().flatten() {
            let _ = p.kill();
            let _ = p.wait();
        }
        let _ = &self.dir;
    }
}

fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(raw).to_string();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn request_text(addr: SocketAddr, method: &str, target: &str, body: &str, auth: &str) -> String {
    format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Plain HTTP GET (the metrics port).
fn http_plain(addr: SocketAddr, target: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(request_text(addr, "GET", target, "", "").as_bytes())
        .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    parse_response(&raw)
}

/// HTTPS request; `token` adds `Authorization: Bearer`.
fn https(
    addr: SocketAddr,
    tls_cfg: &TlsConfig,
    method: &str,
    target: &str,
    body: &str,
    token: Option<&str>,
) -> Option<(u16, String)> {
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    tcp.set_read_timeout(Some(Duration::from_secs(8))).ok()?;
    tcp.set_write_timeout(Some(Duration::from_secs(8))).ok()?;
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
    parse_response(&raw)
}

fn put_body(key: &str, value: &str) -> String {
    format!(r#"{{"key": "{key}", "value": "{value}"}}"#)
}

/// Connects with the frame protocol claiming `role`, over TLS `tls_cfg`.
fn frame_connect(
    addr: SocketAddr,
    tls_cfg: TlsConfig,
    role: PeerRole,
) -> Result<BlockingClient, NetError> {
    let mut cfg = ClientConfig::new(LocalIdentity {
        cluster_id: CLUSTER,
        role,
    });
    cfg.tls = Some(tls_cfg);
    cfg.response_timeout_ms = 5_000;
    BlockingClient::connect(addr, cfg)
}

fn eventually<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn tls_cluster_authenticates_peers_and_clients_serves_and_fails_over() {
    let d = temp_dir("cluster");
    let pki_dir = d.0.join("pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    let pki = Pki::new(&pki_dir);
    let mut c = Cluster::start(&d.0, &pki_dir);
    let leader = c.leader(Duration::from_secs(15)).expect("a leader");
    let admin = pki.user("ops", Role::Admin);
    let writer = pki.user("app", Role::Write);
    let reader = pki.user("viewer", Role::Read);
    let anonymous = pki.client(CLUSTER, None, None);

    // Writes and reads over HTTPS with a client certificate, through any node.
    let (s, b) = eventually(Duration::from_secs(10), || {
        https(
            c.addr(leader),
            &writer,
            "POST",
            "/put",
            &put_body("k1", "v1"),
            None,
        )
        .filter(|(s, _)| *s == 200)
    })
    .expect("put over TLS");
    assert_eq!(s, 200, "{b}");
    let (s, b) = https(c.addr(leader), &reader, "GET", "/get?key=k1", "", None).unwrap();
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("\"v1\""), "{b}");

    // Sessions are per client: the same (client_id, seq) from another client is a new write,
    // not a replay of the first one's.
    let session_put =
        |v: &str| format!(r#"{{"key": "s", "value": "{v}", "client_id": 5, "seq": 1}}"#);
    let (s, b) = https(
        c.addr(leader),
        &writer,
        "POST",
        "/put",
        &session_put("a"),
        None,
    )
    .unwrap();
    assert_eq!(s, 200, "{b}");
    let (s, b) = https(
        c.addr(leader),
        &anonymous,
        "POST",
        "/put",
        &session_put("b"),
        Some(WRITE_TOKEN),
    )
    .unwrap();
    assert_eq!(s, 200, "{b}");
    let (s, b) = https(c.addr(leader), &reader, "GET", "/get?key=s", "", None).unwrap();
    assert_eq!(s, 200, "{b}");
    assert!(
        b.contains("\"b\""),
        "another client's session was replayed: {b}"
    );

    // A write sent to a follower is forwarded to the leader over TLS, for the same client.
    let follower = (1..=3).find(|i| *i != leader).unwrap();
    let (s, b) = https(
        c.addr(follower),
        &writer,
        "POST",
        "/put",
        &put_body("f", "1"),
        None,
    )
    .unwrap();
    assert_eq!(s, 200, "{b}");
    let (s, b) = https(
        c.addr(follower),
        &reader,
        "POST",
        "/put",
        &put_body("f", "2"),
        None,
    )
    .unwrap();
    assert_eq!(s, 403, "{b}");

    // Roles: a reader cannot write, a writer cannot promote; a write token can write but not
    // promote; no credentials at all is 401.
    let (s, b) = https(
        c.addr(leader),
        &reader,
        "POST",
        "/put",
        &put_body("k", "x"),
        None,
    )
    .unwrap();
    assert_eq!(s, 403, "{b}");
    let promote = r#"{"node_id": 3}"#;
    let (s, b) = https(c.addr(leader), &writer, "POST", "/promote", promote, None).unwrap();
    assert_eq!(s, 403, "{b}");
    let (s, b) = https(
        c.addr(leader),
        &anonymous,
        "POST",
        "/put",
        &put_body("k2", "v2"),
        Some(WRITE_TOKEN),
    )
    .unwrap();
    assert_eq!(s, 200, "{b}");
    let (s, b) = https(
        c.addr(leader),
        &anonymous,
        "POST",
        "/promote",
        promote,
        Some(WRITE_TOKEN),
    )
    .unwrap();
    assert_eq!(s, 403, "{b}");
    let (s, b) = https(
        c.addr(leader),
        &anonymous,
        "POST",
        "/promote",
        promote,
        None,
    )
    .unwrap();
    assert_eq!(s, 401, "{b}");
    let (s, b) = https(
        c.addr(leader),
        &anonymous,
        "POST",
        "/promote",
        promote,
        Some("nope-nope-nope-nope"),
    )
    .unwrap();
    assert_eq!(s, 401, "{b}");

    // A watch is a read: without credentials it is refused (401) before any stream starts;
    // a reader passes the role check and gets the watch's own answer (here: no such shard),
    // and over frames a reader's watch opens with its first batch.
    let (s, b) = https(
        c.addr(leader),
        &anonymous,
        "GET",
        "/watch?prefix=",
        "",
        None,
    )
    .unwrap();
    assert_eq!(s, 401, "{b}");
    let (s, b) = https(c.addr(leader), &reader, "GET", "/watch?shard=999", "", None).unwrap();
    assert_eq!(s, 400, "{b}");
    let mut r = frame_connect(
        c.addr(leader),
        reader.clone(),
        PeerRole::Client { client_id: 11 },
    )
    .unwrap();
    let got = r
        .call(&wire::ClientRequest {
            shard: 0,
            command: wire::ClientCommand::Single(wire::ClientOp::Watch {
                filter: wire::WatchFilter::Prefix(Vec::new()),
                from: 0,
            }),
        })
        .unwrap();
    assert!(
        matches!(
            &got,
            wire::Message::ClientResponse(wire::ClientResponse {
                outcome: wire::ClientOutcome::Watch(wire::WatchReply::Events { .. }),
                ..
            })
        ),
        "{got:?}"
    );
    drop(r);

    // Frames: a write client cannot remove a voter; an admin client can ask, but AddLearner
    // for an existing voter at another address is refused and the voter keeps its address.
    let voter = (1..=3).find(|i| *i != leader).unwrap();
    let mut w = frame_connect(c.addr(leader), writer, PeerRole::Client { client_id: 9 }).unwrap();
    let got = w.call(&wire::AdminRequest::Remove {
        group: 0,
        node_id: voter,
    });
    assert!(
        matches!(
            &got,
            Err(NetError::Refused {
                code: wire::ErrorCode::Forbidden,
                ..
            })
        ),
        "{got:?}"
    );
    let mut a = frame_connect(
        c.addr(leader),
        admin.clone(),
        PeerRole::Client { client_id: 10 },
    )
    .unwrap();
    let got = a
        .call(&wire::AdminRequest::AddLearner {
            group: 0,
            node_id: voter,
            address: "127.0.0.1:1".into(),
        })
        .unwrap();
    match got {
        wire::Message::AdminResponse(wire::AdminResponse::Failed(
            wire::ClientError::InvalidRequest(m),
        )) => assert!(m.contains("already a member"), "{m}"),
        other => panic!("AddLearner for a voter at another address: {other:?}"),
    }
    let (s, b) = https(c.addr(leader), &admin, "GET", "/status", "", None).unwrap();
    assert_eq!(s, 200, "{b}");
    assert!(b.contains(&c.addr(voter).to_string()), "{b}");

    // Peers: claiming a node id needs that node's certificate of this cluster and CA.
    let claim = PeerRole::Node { node_id: voter };
    let wrong_node = pki.client(
        CLUSTER,
        Some(CertIdentity::Node {
            cluster_id: CLUSTER,
            node_id: leader,
        }),
        None,
    );
    let no_cert = frame_connect(c.addr(leader), anonymous.clone(), claim);
    assert!(
        no_cert.is_err(),
        "a peer without a certificate was accepted"
    );
    let other_node = frame_connect(c.addr(leader), wrong_node, claim);
    assert!(
        other_node.is_err(),
        "a peer with another node's certificate was accepted"
    );
    let other_cluster = pki.client(
        7,
        Some(CertIdentity::Node {
            cluster_id: 7,
            node_id: voter,
        }),
        None,
    );
    assert!(
        frame_connect(c.addr(leader), other_cluster, claim).is_err(),
        "a peer with another cluster's certificate was accepted"
    );
    let rogue = CertAuthority::generate("rogue", 2).unwrap();
    let rogue_cert = pki.client(
        CLUSTER,
        Some(CertIdentity::Node {
            cluster_id: CLUSTER,
            node_id: voter,
        }),
        Some(&rogue),
    );
    assert!(
        frame_connect(c.addr(leader), rogue_cert, claim).is_err(),
        "a peer with a certificate of another CA was accepted"
    );

    // Refusals are counted.
    let (_, m) = http_plain(c.metrics(leader), "/metrics").unwrap();
    let count = |kind: &str| -> u64 {
        let needle = format!("kind=\"{kind}\"}} ");
        m.lines()
            .find(|l| l.starts_with("ringraft_errors_total") && l.contains(&needle))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    };
    assert!(count("unauthenticated") >= 2, "{m}");
    assert!(count("forbidden") >= 3, "{m}");

    // Failover: kill the leader; the others elect a new one over TLS and keep the data.
    c.kill(leader);
    let new_leader = c.leader(Duration::from_secs(15)).expect("a new leader");
    assert_ne!(new_leader, leader);
    let (s, b) = eventually(Duration::from_secs(10), || {
        https(
            c.addr(new_leader),
            &admin,
            "POST",
            "/put",
            &put_body("k3", "v3"),
            None,
        )
        .filter(|(s, _)| *s == 200)
    })
    .expect("put after failover");
    assert_eq!(s, 200, "{b}");
    let (s, b) = https(c.addr(new_leader), &admin, "GET", "/get?key=k1", "", None).unwrap();
    assert_eq!(s, 200, "{b}");
    assert!(b.contains("\"v1\""), "{b}");
}

#[test]
fn a_tokens_file_readable_by_others_stops_start_up() {
    let d = temp_dir("tokens");
    let pki_dir = d.0.join("pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    let _pki = Pki::new(&pki_dir);
    let tokens = pki_dir.join("tokens");
    std::fs::set_permissions(&tokens, std::fs::Permissions::from_mode(0o640)).unwrap();
    let ports = free_ports(3);
    let path = d.0.join("n1.toml");
    std::fs::write(&path, config_text(&d.0, &pki_dir, 1, &ports, &tokens)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(["server", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("a node with a group-readable tokens file kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(status.code(), Some(2), "{err}");
    assert!(
        err.contains("tokens_file") && err.contains("0640") && err.contains("chmod 600"),
        "{err}"
    );
}
