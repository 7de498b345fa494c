//! TLS on the glommio listener and dialer, live on 127.0.0.1: mutual TLS between peers (each
//! side checks the other's certificate identity), refusals at the handshake (no certificate,
//! another CA, another cluster, a certificate for another node than claimed) with nothing
//! reaching the handler, the dialer refusing a server that is not the node it meant, HTTP
//! and frames on one TLS port, plaintext refused, and the blocking client over TLS.
//!
//! Refused peers are played two ways: through this crate's own dialer, and through a bare
//! rustls client (an attacker is not bound to our client code) that sends a handshake frame
//! and a Ping in its first flight. Every wait is bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

mod support;

use ringraft_net::blocking_client::{BlockingClient, ClientConfig};
use ringraft_net::error::{ErrorKind, NetError};
use ringraft_net::listener::{self, Connection, ConnectionConfig, Handler};
use ringraft_net::message::*;
use ringraft_net::metrics::NetMetrics;
use ringraft_net::tls::certgen::{CertAuthority, IssuedCert};
use ringraft_net::tls::{self, Alpn, CertIdentity, NetStream, Role, TlsConfig, TlsOptions};
use ringraft_net::Frame;
use rustls::HandshakeKind;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{frame_bytes, http_ok, on_executor, Server};

const CLUSTER: u64 = 11;
const OTHER_CLUSTER: u64 = 12;
const SERVER_NODE: u64 = 7;
const TEST_TIMEOUT_MS: u64 = 3_000;

/// Certificates for every test, generated once per process.
struct Pki {
    ca_pem: String,
    server: IssuedCert,
    node1: IssuedCert,
    node2: IssuedCert,
    admin: IssuedCert,
    other_ca_node1: IssuedCert,
    other_ca_server: IssuedCert,
    other_cluster_node1: IssuedCert,
}

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca = CertAuthority::generate("tls test", 2).unwrap();
        let other = CertAuthority::generate("tls test other", 2).unwrap();
        let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
        Pki {
            ca_pem: ca.cert_pem(),
            server: ca.issue_node(CLUSTER, SERVER_NODE, &hosts).unwrap(),
            node1: ca.issue_node(CLUSTER, 1, &hosts).unwrap(),
            node2: ca.issue_node(CLUSTER, 2, &hosts).unwrap(),
            admin: ca
                .issue(
                    &CertIdentity::Client {
                        cluster_id: CLUSTER,
                        name: "ops".into(),
                        role: Role::Admin,
                    },
                    &[],
                )
                .unwrap(),
            other_ca_node1: other.issue_node(CLUSTER, 1, &hosts).unwrap(),
            other_ca_server: other.issue_node(CLUSTER, SERVER_NODE, &hosts).unwrap(),
            other_cluster_node1: ca.issue_node(OTHER_CLUSTER, 1, &hosts).unwrap(),
        }
    })
}

fn tls_config(cert: Option<&IssuedCert>, require_client_cert: bool) -> TlsConfig {
    TlsConfig::new(TlsOptions {
        cluster_id: CLUSTER,
        ca_pem: pki().ca_pem.clone().into_bytes(),
        cert_chain_pem: cert.map(|c| c.cert_pem.clone().into_bytes()),
        key_pem: cert.map(|c| c.key_pem.clone().into_bytes()),
        require_client_cert,
    })
    .unwrap()
}

/// What the server's handler saw.
#[derive(Default)]
struct Seen {
    opens: AtomicU64,
    frames: AtomicU64,
    identities: Mutex<Vec<Option<CertIdentity>>>,
}

/// Echo handler standing in for the node: Ping → Pong, HTTP → who you are.
struct Recorder(Arc<Seen>);

impl Handler for Recorder {
    fn on_open(&self, conn: &Rc<Connection>) {
        assert!(conn.is_tls());
        self.0.opens.fetch_add(1, Ordering::SeqCst);
        self.0
            .identities
            .lock()
            .unwrap()
            .push(conn.peer_identity().cloned());
    }

    fn on_frame(&self, conn: &Rc<Connection>, frame: Frame<'_>) {
        self.0.frames.fetch_add(1, Ordering::SeqCst);
        if let MessageRef::Ping(p) = frame.message {
            let _ = conn.respond(
                frame.header.request_id,
                &Pong {
                    nonce: p.nonce.to_native(),
                    data: p.data.as_slice().to_vec(),
                },
            );
        }
    }

    async fn on_http_stream(&self, mut stream: NetStream, first_bytes: Vec<u8>) {
        use futures_lite::io::AsyncWriteExt;
        let who = match stream.peer_identity() {
            Some(id) => id.to_string(),
            None => "anonymous".into(),
        };
        let alpn = String::from_utf8_lossy(stream.alpn().unwrap_or(b"none")).into_owned();
        let line = String::from_utf8_lossy(&first_bytes)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        let body = format!("tls={} alpn={alpn} who={who} line={line}", stream.is_tls());
        let resp = http_ok(&body);
        let _ = stream.write_all(resp.as_bytes()).await;
        let _ = stream.close().await;
    }
}

/// The test listener over TLS, with what its handler saw.
struct TlsServer {
    server: Server,
    seen: Arc<Seen>,
}

impl std::ops::Deref for TlsServer {
    type Target = Server;

    fn deref(&self) -> &Server {
        &self.server
    }
}

impl TlsServer {
    fn start(tls: TlsConfig) -> Self {
        let seen = Arc::new(Seen::default());
        let sn = seen.clone();
        let server = Server::spawn(
            "tls-test-server",
            CLUSTER,
            SERVER_NODE,
            move || Recorder(sn),
            move |cfg| cfg.connection.tls = Some(tls),
        );
        TlsServer { server, seen }
    }

    fn opens(&self) -> u64 {
        self.seen.opens.load(Ordering::SeqCst)
    }

    fn frames(&self) -> u64 {
        self.seen.frames.load(Ordering::SeqCst)
    }
}

struct PongCount(Rc<std::cell::Cell<u64>>);

impl Handler for PongCount {
    fn on_frame(&self, _c: &Rc<Connection>, f: Frame<'_>) {
        if let MessageRef::Pong(_) = f.message {
            self.0.set(self.0.get() + 1);
        }
    }
}

/// What one glommio dial as node `claim` with `cert` to `addr` (expecting `expected`) gave:
/// the node id reached and whether a Ping came back, or the error.
fn dial(
    addr: SocketAddr,
    claim: u64,
    cert: Option<&'static IssuedCert>,
    expected: Option<u64>,
) -> Result<(Option<CertIdentity>, u64), NetError> {
    on_executor("tls-test-dialer", move || async move {
        let mut cfg = ConnectionConfig::new(LocalIdentity {
            cluster_id: CLUSTER,
            role: PeerRole::Node { node_id: claim },
        });
        cfg.handshake_timeout_ms = TEST_TIMEOUT_MS;
        cfg.tls = Some(tls_config(cert, false));
        let pongs = Rc::new(std::cell::Cell::new(0));
        let h = Rc::new(PongCount(pongs.clone()));
        let metrics = Arc::new(NetMetrics::new());
        let conn = listener::dial_node(addr, expected, &cfg, h, metrics).await?;
        assert!(conn.is_tls());
        conn.send_request(
            5,
            &Ping {
                nonce: 1,
                data: b"over tls".to_vec(),
            },
        )?;
        for _ in 0..300 {
            if pongs.get() > 0 || conn.is_closing() {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        let reached = conn.peer_identity().cloned();
        conn.close();
        Ok((reached, pongs.get()))
    })
}

/// How a bare rustls client fared.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// The server acked the frame handshake as this node.
    Acked(u64),
    /// The server refused the frame handshake with this code.
    Refused(ErrorCode),
    /// The TLS layer failed (alert, bad certificate) or the server closed.
    TlsFailed,
}

/// A bare rustls client (webpki server verification by IP SAN, trusting `trust_pem`) that
/// presents `cert`, then sends a handshake claiming `claim` and a Ping in one flight.
fn bare_attempt(addr: SocketAddr, cert: Option<&IssuedCert>, claim: PeerRole) -> Outcome {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki().ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let cfg = match cert {
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(TEST_TIMEOUT_MS)))
        .unwrap();
    tcp.set_write_timeout(Some(Duration::from_millis(TEST_TIMEOUT_MS)))
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let mut flight = frame_bytes(
        &LocalIdentity {
            cluster_id: CLUSTER,
            role: claim,
        }
        .handshake(),
        1,
    );
    flight.extend(frame_bytes(
        &Ping {
            nonce: 9,
            data: vec![1; 16],
        },
        2,
    ));
    if s.write_all(&flight).and_then(|()| s.flush()).is_err() {
        return Outcome::TlsFailed;
    }
    let mut dec = ringraft_net::Decoder::new(Default::default());
    loop {
        let n = match s.read(dec.read_buf()) {
            Ok(0) | Err(_) => return Outcome::TlsFailed,
            Ok(n) => n,
        };
        dec.advance(n);
        if let Ok(Some(f)) = dec.next_frame() {
            return match f.message {
                MessageRef::HandshakeAck(a) => Outcome::Acked(a.node_id.to_native()),
                MessageRef::Error(e) => Outcome::Refused(
                    rkyv::deserialize::<ErrorCode, rkyv::rancor::Error>(&e.code).unwrap(),
                ),
                other => panic!("unexpected first frame {:?}", other.kind()),
            };
        }
    }
}

#[test]
fn valid_peer_handshakes_and_exchanges_a_frame() {
    let server = TlsServer::start(tls_config(Some(&pki().server), false));
    let (reached, pongs) = dial(server.addr, 1, Some(&pki().node1), Some(SERVER_NODE)).unwrap();
    assert_eq!(
        reached,
        Some(CertIdentity::Node {
            cluster_id: CLUSTER,
            node_id: SERVER_NODE
        })
    );
    assert_eq!(pongs, 1);
    assert_eq!(server.opens(), 1);
    assert_eq!(server.frames(), 1);
    assert_eq!(
        server.seen.identities.lock().unwrap()[0],
        Some(CertIdentity::Node {
            cluster_id: CLUSTER,
            node_id: 1
        })
    );
    // The bare client with the same certificate is accepted too (positive control of the
    // refusal table below).
    assert_eq!(
        bare_attempt(
            server.addr,
            Some(&pki().node1),
            PeerRole::Node { node_id: 1 }
        ),
        Outcome::Acked(SERVER_NODE)
    );
}

#[test]
fn peers_without_a_valid_certificate_are_refused_at_the_handshake() {
    let server = TlsServer::start(tls_config(Some(&pki().server), false));
    let node = |n| PeerRole::Node { node_id: n };
    let p = pki();
    // (what, certificate presented, claimed role, expected outcome)
    let cases: [(&str, Option<&IssuedCert>, PeerRole, Outcome); 4] = [
        (
            "no certificate",
            None,
            node(1),
            Outcome::Refused(ErrorCode::Unauthenticated),
        ),
        (
            "another CA",
            Some(&p.other_ca_node1),
            node(1),
            Outcome::TlsFailed,
        ),
        (
            "another cluster",
            Some(&p.other_cluster_node1),
            node(1),
            Outcome::TlsFailed,
        ),
        (
            "another node id",
            Some(&p.node2),
            node(3),
            Outcome::Refused(ErrorCode::Unauthenticated),
        ),
    ];
    let mut tls_failures = 0;
    for (what, cert, claim, want) in cases {
        if want == Outcome::TlsFailed {
            tls_failures += 1;
        }
        assert_eq!(bare_attempt(server.addr, cert, claim), want, "{what}");
        assert_eq!(server.opens(), 0, "{what}: a connection opened");
        assert_eq!(server.frames(), 0, "{what}: a frame reached the handler");
    }
    assert!(server.wait_errors(ErrorKind::Tls, tls_failures) >= tls_failures);

    // The same through this crate's dialer.
    let r = dial(server.addr, 1, None, None);
    assert!(
        matches!(
            r,
            Err(NetError::Refused {
                code: ErrorCode::Unauthenticated,
                ..
            })
        ),
        "{r:?}"
    );
    let r = dial(server.addr, 3, Some(&p.node2), None);
    assert!(
        matches!(
            r,
            Err(NetError::Refused {
                code: ErrorCode::Unauthenticated,
                ..
            })
        ),
        "{r:?}"
    );
    let r = dial(server.addr, 1, Some(&p.other_ca_node1), None);
    assert!(matches!(r, Err(NetError::Tls(_))), "{r:?}");
    assert_eq!(server.opens(), 0);
    assert_eq!(server.frames(), 0);
}

#[test]
fn required_client_certificates_refuse_anonymous_clients() {
    let server = TlsServer::start(tls_config(Some(&pki().server), true));
    let client = PeerRole::Client { client_id: 4 };
    assert_eq!(bare_attempt(server.addr, None, client), Outcome::TlsFailed);
    assert_eq!(
        bare_attempt(server.addr, Some(&pki().admin), client),
        Outcome::Acked(SERVER_NODE)
    );
    assert_eq!(server.frames(), 1);
}

#[test]
fn dialer_refuses_a_server_that_is_not_the_node_it_meant() {
    let server = TlsServer::start(tls_config(Some(&pki().server), false));
    let r = dial(server.addr, 1, Some(&pki().node1), Some(SERVER_NODE + 1));
    assert!(
        matches!(
            r,
            Err(NetError::WrongPeer {
                expected: 8,
                found: SERVER_NODE
            })
        ),
        "{r:?}"
    );
    // A server whose certificate comes from another CA is refused whatever node it names.
    let impostor = TlsServer::start(tls_config(Some(&pki().other_ca_server), false));
    let r = dial(impostor.addr, 1, Some(&pki().node1), Some(SERVER_NODE));
    assert!(matches!(r, Err(NetError::Tls(_))), "{r:?}");
    // Neither server saw a frame.
    assert_eq!(server.frames() + impostor.frames(), 0);
    assert_eq!(server.opens() + impostor.opens(), 0);

    // The blocking client checks the same.
    let mut cfg = client_cfg(Some(&pki().admin));
    cfg.expected_node_id = Some(SERVER_NODE + 1);
    let r = BlockingClient::connect(server.addr, cfg);
    assert!(matches!(r, Err(NetError::WrongPeer { .. })), "{r:?}");
}

fn client_cfg(cert: Option<&IssuedCert>) -> ClientConfig {
    let mut c = ClientConfig::new(LocalIdentity {
        cluster_id: CLUSTER,
        role: PeerRole::Client { client_id: 42 },
    });
    c.response_timeout_ms = TEST_TIMEOUT_MS;
    c.tls = Some(tls_config(cert, false));
    c
}

#[test]
fn blocking_client_over_tls_with_and_without_a_client_certificate() {
    let server = TlsServer::start(tls_config(Some(&pki().server), false));
    for cert in [Some(&pki().admin), None] {
        let mut cfg = client_cfg(cert);
        cfg.expected_node_id = Some(SERVER_NODE);
        let mut c = BlockingClient::connect(server.addr, cfg).unwrap();
        assert!(c.is_tls());
        assert_eq!(c.server_identity().and_then(|i| i.node_id()), Some(7));
        let ids: Vec<u64> = (0..20u64)
            .map(|i| {
                c.send(&Ping {
                    nonce: i,
                    data: vec![i as u8; 1000],
                })
                .unwrap()
            })
            .collect();
        c.flush().unwrap();
        for (i, id) in ids.into_iter().enumerate() {
            match c.wait_for(id).unwrap().message {
                Message::Pong(p) => assert_eq!(p.nonce, i as u64),
                other => panic!("{other:?}"),
            }
        }
    }
    let ids = server.seen.identities.lock().unwrap().clone();
    assert_eq!(
        ids,
        vec![
            Some(CertIdentity::Client {
                cluster_id: CLUSTER,
                name: "ops".into(),
                role: Role::Admin
            }),
            None
        ]
    );
}

fn http_get(stream: &mut impl ReadWrite, path: &str) -> String {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).unwrap();
    stream.flush().unwrap();
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => resp.extend_from_slice(&buf[..n]),
            // A peer that closes without close_notify: the bytes before it still count.
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&resp).into_owned()
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

#[test]
fn http_over_tls_shares_the_port_with_frames() {
    let server = TlsServer::start(tls_config(Some(&pki().server), false));
    let tls = tls_config(Some(&pki().admin), false);
    // The second connection resumes the first one's session: the client's identity must
    // survive resumption.
    for want in [HandshakeKind::Full, HandshakeKind::Resumed] {
        let tcp = TcpStream::connect(server.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_millis(TEST_TIMEOUT_MS)))
            .unwrap();
        let (mut s, reached) =
            tls::connect_blocking(tcp, &tls, Alpn::Http, Some(SERVER_NODE)).unwrap();
        assert_eq!(reached.node_id(), Some(SERVER_NODE));
        assert_eq!(s.conn.handshake_kind(), Some(want));
        let resp = http_get(&mut s, "/whoami");
        assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
        assert!(
            resp.ends_with(
                "tls=true alpn=http/1.1 who=client \"ops\" (admin) of cluster 11 \
                 line=GET /whoami HTTP/1.1"
            ),
            "{want:?}: {resp}"
        );
    }
    // Frames on the same port, same server.
    let mut c = BlockingClient::connect(server.addr, client_cfg(None)).unwrap();
    assert!(matches!(
        c.call(&Ping {
            nonce: 3,
            data: vec![]
        })
        .unwrap(),
        Message::Pong(Pong { nonce: 3, .. })
    ));
    assert_eq!(
        ringraft_net::metrics::NetMetrics::get(&server.metrics.http_connections),
        2
    );
}

#[test]
fn plaintext_to_a_tls_listener_is_refused_in_plaintext() {
    let server = TlsServer::start(tls_config(Some(&pki().server), false));
    let mut cfg = client_cfg(None);
    cfg.tls = None;
    let r = BlockingClient::connect(server.addr, cfg);
    assert!(
        matches!(
            r,
            Err(NetError::Refused {
                code: ErrorCode::Unauthenticated,
                ..
            })
        ),
        "{r:?}"
    );
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(TEST_TIMEOUT_MS)))
        .unwrap();
    let resp = http_get(&mut tcp, "/status");
    assert!(resp.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{resp}");
    assert!(resp.contains("requires TLS"), "{resp}");
    assert_eq!(server.opens(), 0);
    assert!(server.wait_errors(ErrorKind::Tls, 2) >= 2);
}
