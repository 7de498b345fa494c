//! The listener tests' side of the harness: an echo/ack handler standing in for the node, a
//! plaintext test server running it, blocking clients, and raw-socket helpers for sending bad
//! bytes after a good handshake. Every read is bounded by [`TEST_TIMEOUT_MS`].

use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringraft_net::blocking_client::{BlockingClient, ClientConfig};
use ringraft_net::frame::payload_crc32;
use ringraft_net::listener::{Connection, Handler, ListenerConfig};
use ringraft_net::message::*;
use ringraft_net::{Frame, Kind};

use super::{frame_bytes, http_ok, Server};

pub const CLUSTER: u64 = 0xC105_7E12;
pub const SERVER_NODE: u64 = 7;
pub const TEST_TIMEOUT_MS: u64 = 3_000;

/// Frames the handler saw with the time of the socket read that completed them.
pub static FRAMES_WITH_READ_AT: AtomicU64 = AtomicU64::new(0);
/// Frames the handler saw without it (never, once a read fed the decoder).
pub static FRAMES_WITHOUT_READ_AT: AtomicU64 = AtomicU64::new(0);
/// Batches written, as reported to [`Handler::on_written`].
pub static BATCHES_WRITTEN: AtomicU64 = AtomicU64::new(0);
/// Batches reported written before they were queued (never).
pub static BATCHES_WRITTEN_BEFORE_QUEUED: AtomicU64 = AtomicU64::new(0);

/// Echo/ack handler standing in for the node.
pub struct TestHandler;

impl Handler for TestHandler {
    fn on_written(&self, _conn: &Rc<Connection>, queued: Instant, written: Instant) {
        BATCHES_WRITTEN.fetch_add(1, Ordering::Relaxed);
        if written < queued {
            BATCHES_WRITTEN_BEFORE_QUEUED.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_frame(&self, conn: &Rc<Connection>, frame: Frame<'_>) {
        let id = frame.header.request_id;
        match conn.last_read_at() {
            Some(at) if at <= Instant::now() => &FRAMES_WITH_READ_AT,
            _ => &FRAMES_WITHOUT_READ_AT,
        }
        .fetch_add(1, Ordering::Relaxed);
        match frame.message {
            MessageRef::Ping(p) => {
                let _ = conn.respond(
                    id,
                    &Pong {
                        nonce: p.nonce.to_native(),
                        data: p.data.as_slice().to_vec(),
                    },
                );
            }
            MessageRef::AppendEntries(ae) => {
                // The WAL path: payloads straight from the receive buffer.
                let mut last = ae.prev_index.to_native();
                let mut bytes = 0;
                for (_, index, _, payload) in ae.entry_payloads() {
                    last = index;
                    bytes += payload.len() as u64;
                }
                let _ = conn.respond(
                    id,
                    &AppendEntriesResponse {
                        group: ae.group.to_native(),
                        term: ae.term.to_native(),
                        from: SERVER_NODE,
                        success: true,
                        match_index: last,
                        conflict: (bytes == 0).then_some(ConflictHint {
                            conflict_index: 0,
                            conflict_term: 0,
                        }),
                    },
                );
            }
            MessageRef::ClientRequest(_) => {
                let _ = conn.respond(
                    id,
                    &ClientResponse {
                        outcome: ClientOutcome::Failed(ClientError::NotLeader {
                            leader: Some(LeaderHint {
                                node_id: 2,
                                address: "127.0.0.1:7002".into(),
                            }),
                        }),
                        eventual: None,
                    },
                );
            }
            other => {
                let _ = conn.send_error(
                    id,
                    ErrorCode::Unsupported,
                    format!("test handler does not serve {:?}", other.kind()),
                );
            }
        }
    }

    async fn on_http(&self, mut stream: glommio::net::TcpStream, first_bytes: Vec<u8>) {
        use futures_lite::io::AsyncWriteExt;
        let resp = http_ok(&format!("ok {}", first_bytes.len()));
        let _ = stream.write_all(resp.as_bytes()).await;
        let _ = stream.close().await;
    }
}

pub type TestServer = Server;

impl Server {
    pub fn start(max_connections: usize, max_frame_bytes: usize) -> Self {
        Self::start_with(move |cfg| {
            cfg.max_connections = max_connections;
            cfg.connection.decoder.max_frame_bytes = max_frame_bytes;
        })
    }

    pub fn start_with(tune: impl FnOnce(&mut ListenerConfig) + Send + 'static) -> Self {
        Server::spawn(
            "net-test-server",
            CLUSTER,
            SERVER_NODE,
            || TestHandler,
            tune,
        )
    }
}

pub fn client_cfg(cluster: u64) -> ClientConfig {
    let mut c = ClientConfig::new(LocalIdentity {
        cluster_id: cluster,
        role: PeerRole::Client { client_id: 42 },
    });
    c.response_timeout_ms = TEST_TIMEOUT_MS;
    c
}

pub fn client(server: &TestServer) -> BlockingClient {
    BlockingClient::connect(server.addr, client_cfg(CLUSTER)).unwrap()
}

pub fn assert_served(server: &TestServer) {
    let mut c = client(server);
    match c
        .call(&Ping {
            nonce: 99,
            data: b"still here".to_vec(),
        })
        .unwrap()
    {
        Message::Pong(p) => {
            assert_eq!(p.nonce, 99);
            assert_eq!(p.data, b"still here");
        }
        other => panic!("expected Pong, got {other:?}"),
    }
}

/// One empty Ping on `c` is answered by a Pong.
pub fn assert_pongs(c: &mut BlockingClient) {
    let pong = c.call(&Ping {
        nonce: 1,
        data: vec![],
    });
    assert!(matches!(pong, Ok(Message::Pong(_))), "{pong:?}");
}

pub fn reseal(frame: &mut [u8]) {
    let c = payload_crc32(&frame[..28]);
    frame[28..32].copy_from_slice(&c.to_le_bytes());
}

/// A raw, handshaken std connection (for sending bad bytes after the handshake).
pub fn raw_handshaken(server: &TestServer) -> TcpStream {
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(TEST_TIMEOUT_MS)))
        .unwrap();
    let hs = LocalIdentity {
        cluster_id: CLUSTER,
        role: PeerRole::Client { client_id: 1 },
    }
    .handshake();
    s.write_all(&frame_bytes(&hs, 1)).unwrap();
    let mut dec = ringraft_net::Decoder::new(Default::default());
    loop {
        let n = s.read(dec.read_buf()).unwrap();
        assert!(n > 0, "closed during handshake");
        dec.advance(n);
        if let Some(f) = dec.next_frame().unwrap() {
            assert_eq!(f.kind, Kind::HandshakeAck);
            break;
        }
    }
    s
}

/// Reads until EOF; returns the error frames received.
pub fn read_error_frames(mut s: TcpStream) -> Vec<ErrorFrame> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("server did not close the connection: {e}"),
        }
    }
    let mut dec = ringraft_net::Decoder::new(Default::default());
    dec.push(&all);
    let mut out = Vec::new();
    while let Ok(Some(f)) = dec.next_frame() {
        if let Ok(Message::Error(e)) = f.message.to_owned_message() {
            assert!(f.header.is_error());
            out.push(e);
        }
    }
    out
}
