//! The glommio listener, live on 127.0.0.1 (port 0): handshakes, pipelined requests matched by
//! id, HTTP sniffing, each bad-input class (error frame + close + metric, listener unaffected),
//! random bytes from many connections, the connection limit, and a glommio dialer.
//!
//! The request handler here is a test echo/ack handler (the node plugs in its own).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

mod support;

use ringraft_net::blocking_client::{BlockingClient, ClientConfig};
use ringraft_net::error::{ErrorKind, NetError};
use ringraft_net::frame::{payload_crc32, FrameHeader, HEADER_BYTES, PROTOCOL_VERSION};
use ringraft_net::listener::{self, Connection, Handler, ListenerConfig};
use ringraft_net::message::*;
use ringraft_net::metrics::NetMetrics;
use ringraft_net::{Frame, Kind};
use support::{frame_bytes, http_ok, on_executor, Server};

const CLUSTER: u64 = 0xC105_7E12;
const SERVER_NODE: u64 = 7;
const TEST_TIMEOUT_MS: u64 = 3_000;

/// Echo/ack handler standing in for the node.
struct TestHandler;

impl Handler for TestHandler {
    fn on_frame(&self, conn: &Rc<Connection>, frame: Frame<'_>) {
        let id = frame.header.request_id;
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

type TestServer = Server;

impl Server {
    fn start(max_connections: usize, max_frame_bytes: usize) -> Self {
        Self::start_with(move |cfg| {
            cfg.max_connections = max_connections;
            cfg.connection.decoder.max_frame_bytes = max_frame_bytes;
        })
    }

    fn start_with(tune: impl FnOnce(&mut ListenerConfig) + Send + 'static) -> Self {
        Server::spawn(
            "net-test-server",
            CLUSTER,
            SERVER_NODE,
            || TestHandler,
            tune,
        )
    }
}

fn client_cfg(cluster: u64) -> ClientConfig {
    let mut c = ClientConfig::new(LocalIdentity {
        cluster_id: cluster,
        role: PeerRole::Client { client_id: 42 },
    });
    c.response_timeout_ms = TEST_TIMEOUT_MS;
    c
}

fn client(server: &TestServer) -> BlockingClient {
    BlockingClient::connect(server.addr, client_cfg(CLUSTER)).unwrap()
}

fn assert_served(server: &TestServer) {
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
fn assert_pongs(c: &mut BlockingClient) {
    let pong = c.call(&Ping {
        nonce: 1,
        data: vec![],
    });
    assert!(matches!(pong, Ok(Message::Pong(_))), "{pong:?}");
}

fn reseal(frame: &mut [u8]) {
    let c = payload_crc32(&frame[..28]);
    frame[28..32].copy_from_slice(&c.to_le_bytes());
}

/// A raw, handshaken std connection (for sending bad bytes after the handshake).
fn raw_handshaken(server: &TestServer) -> TcpStream {
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
fn read_error_frames(mut s: TcpStream) -> Vec<ErrorFrame> {
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

#[test]
fn pipelined_requests_are_matched_by_request_id() {
    let server = TestServer::start(64, 1 << 20);
    let mut c = client(&server);
    assert_eq!(c.peer_node_id(), SERVER_NODE);
    let ids: Vec<u64> = (0..200u64)
        .map(|i| {
            c.send(&Ping {
                nonce: i,
                data: vec![i as u8; (i % 37) as usize],
            })
            .unwrap()
        })
        .collect();
    c.flush().unwrap();
    // Claim them in reverse order: all but the last are stashed, then served from the stash.
    for (i, id) in ids.iter().enumerate().rev() {
        let f = c.wait_for(*id).unwrap();
        assert!(f.header.is_response());
        match f.message {
            Message::Pong(p) => assert_eq!(p.nonce, i as u64),
            other => panic!("{other:?}"),
        }
    }
    // Raft and client messages through the same connection.
    let ae = AppendEntries {
        group: 1,
        term: 3,
        leader: 1,
        prev_index: 10,
        prev_term: 2,
        commit: 9,
        entries: (11..=14)
            .map(|i| Entry {
                term: 3,
                index: i,
                kind: EntryKind::Normal,
                payload: vec![1; 256],
            })
            .collect(),
    };
    match c.call(&ae).unwrap() {
        Message::AppendEntriesResponse(r) => {
            assert_eq!(r.match_index, 14);
            assert_eq!(r.from, SERVER_NODE);
        }
        other => panic!("{other:?}"),
    }
    let req = ClientRequest {
        shard: 0,
        command: ClientCommand::Single(ClientOp::Get {
            key: b"k".to_vec(),
            consistency: Consistency::Linearizable,
        }),
    };
    match c.call(&req).unwrap() {
        Message::ClientResponse(ClientResponse {
            outcome: ClientOutcome::Failed(ClientError::NotLeader { leader: Some(h) }),
            ..
        }) => assert_eq!(h.node_id, 2),
        other => panic!("{other:?}"),
    }
    // An unsupported kind gets a per-request error frame; the connection stays open.
    let tn = TimeoutNow {
        group: 1,
        term: 1,
        leader: 1,
    };
    assert!(matches!(
        c.call(&tn),
        Err(NetError::Refused {
            code: ErrorCode::Unsupported,
            ..
        })
    ));
    assert_pongs(&mut c);
    assert!(NetMetrics::get(&server.metrics.frames_in) >= 204);
}

#[test]
fn http_is_sniffed_on_the_same_port() {
    let server = TestServer::start(64, 1 << 20);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(TEST_TIMEOUT_MS)))
        .unwrap();
    s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
    assert!(NetMetrics::get(&server.metrics.http_connections) >= 1);
    assert_served(&server);
}

#[test]
fn handshake_refusals() {
    let server = TestServer::start(64, 1 << 20);
    // Another cluster.
    match BlockingClient::connect(server.addr, client_cfg(CLUSTER + 1)) {
        Err(NetError::Refused {
            code: ErrorCode::WrongCluster,
            message,
        }) => {
            assert!(message.contains("cluster"), "{message}")
        }
        other => panic!("expected WrongCluster, got {other:?}"),
    }
    // Another protocol version inside the handshake.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(TEST_TIMEOUT_MS)))
        .unwrap();
    let hs = Handshake {
        protocol_version: PROTOCOL_VERSION + 1,
        cluster_id: CLUSTER,
        role: PeerRole::Node { node_id: 3 },
    };
    s.write_all(&frame_bytes(&hs, 1)).unwrap();
    let errs = read_error_frames(s);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].code, ErrorCode::UnsupportedVersion);
    // Anything but a handshake first.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(TEST_TIMEOUT_MS)))
        .unwrap();
    s.write_all(&frame_bytes(
        &Ping {
            nonce: 1,
            data: vec![],
        },
        1,
    ))
    .unwrap();
    let errs = read_error_frames(s);
    assert_eq!(errs[0].code, ErrorCode::HandshakeRequired);
    assert_eq!(server.wait_errors(ErrorKind::HandshakeRefused, 3), 3);
    // A second handshake on an open connection closes it.
    let mut s = raw_handshaken(&server);
    let hs2 = LocalIdentity {
        cluster_id: CLUSTER,
        role: PeerRole::Client { client_id: 1 },
    }
    .handshake();
    s.write_all(&frame_bytes(&hs2, 2)).unwrap();
    assert_eq!(read_error_frames(s)[0].code, ErrorCode::HandshakeRequired);
    assert_served(&server);
}

/// Each bad-input class after a good handshake: error frame with the right code, the
/// connection is closed, the metric counts it, and the listener still serves others.
#[test]
fn bad_input_each_class() {
    let server = TestServer::start(64, 64 * 1024);
    let good = frame_bytes(
        &Ping {
            nonce: 5,
            data: vec![3; 100],
        },
        5,
    );

    let mut wrong_magic = good.clone();
    wrong_magic[0] = b'X';
    let mut crc = good.clone();
    crc[HEADER_BYTES + 2] ^= 0xFF;
    let mut oversize = good.clone();
    oversize[12..16].copy_from_slice(&(1u32 << 20).to_le_bytes());
    reseal(&mut oversize);
    let mut unknown = good.clone();
    unknown[6..8].copy_from_slice(&999u16.to_le_bytes());
    reseal(&mut unknown);
    let invalid = {
        let payload = [0xEEu8; 16];
        let h = FrameHeader {
            version: PROTOCOL_VERSION,
            kind: Kind::AppendEntries.as_u16(),
            flags: 0,
            payload_len: 16,
            request_id: 9,
            payload_crc32: payload_crc32(&payload),
        };
        let mut hdr = [0u8; HEADER_BYTES];
        h.write_to(&mut hdr);
        let mut v = hdr.to_vec();
        v.extend_from_slice(&payload);
        v
    };

    let cases: [(&str, Vec<u8>, ErrorCode, ErrorKind); 5] = [
        (
            "wrong magic",
            wrong_magic,
            ErrorCode::BadMagic,
            ErrorKind::BadMagic,
        ),
        (
            "crc mismatch",
            crc,
            ErrorCode::CrcMismatch,
            ErrorKind::CrcMismatch,
        ),
        (
            "oversize",
            oversize,
            ErrorCode::Oversize,
            ErrorKind::Oversize,
        ),
        (
            "unknown kind",
            unknown,
            ErrorCode::UnknownKind,
            ErrorKind::UnknownKind,
        ),
        (
            "invalid archive",
            invalid,
            ErrorCode::InvalidArchive,
            ErrorKind::InvalidArchive,
        ),
    ];
    for (name, bytes, code, kind) in cases {
        let before = server.errors(kind);
        let mut s = raw_handshaken(&server);
        s.write_all(&good).unwrap(); // a good frame first: served
        s.write_all(&bytes).unwrap();
        let errs = read_error_frames(s);
        assert_eq!(errs.len(), 1, "{name}: {errs:?}");
        assert_eq!(errs[0].code, code, "{name}");
        assert_eq!(server.wait_errors(kind, before + 1), before + 1, "{name}");
        assert_served(&server);
    }

    // Truncated: half a frame, then the client stops sending (half-close).
    let before = server.errors(ErrorKind::Truncated);
    let mut s = raw_handshaken(&server);
    s.write_all(&good[..good.len() / 2]).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let errs = read_error_frames(s);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].code, ErrorCode::Truncated);
    assert_eq!(
        server.wait_errors(ErrorKind::Truncated, before + 1),
        before + 1
    );

    // Garbage that is neither a frame nor HTTP, as the very first bytes.
    let before = server.errors(ErrorKind::BadMagic);
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(TEST_TIMEOUT_MS)))
        .unwrap();
    s.write_all(b"\x16\x03\x01\x02\x00 hello").unwrap();
    let errs = read_error_frames(s);
    assert_eq!(errs[0].code, ErrorCode::BadMagic);
    assert_eq!(
        server.wait_errors(ErrorKind::BadMagic, before + 1),
        before + 1
    );
    assert_served(&server);
    assert!(NetMetrics::get(&server.metrics.error_frames_sent) >= 7);
}

#[test]
fn random_bytes_from_many_connections_do_not_hurt_the_listener() {
    let server = TestServer::start(64, 64 * 1024);
    let seed: u64 = std::env::var("NET_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0xBADB_17E5);
    println!("random_bytes seed {seed} (set NET_TEST_SEED to reproduce)");
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let good = frame_bytes(
        &Ping {
            nonce: 1,
            data: vec![9; 64],
        },
        3,
    );
    for round in 0..40 {
        let len = (next() % 3000) as usize + 1;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        match round % 4 {
            // Pure noise.
            0 => {}
            // Noise behind a valid magic.
            1 => bytes[..4.min(len)].copy_from_slice(&ringraft_net::MAGIC[..4.min(len)]),
            // A good handshake, then a good frame with bytes flipped.
            _ => {
                let mut s = raw_handshaken(&server);
                let mut f = good.clone();
                for _ in 0..(1 + next() % 4) {
                    let i = (next() as usize) % f.len();
                    f[i] ^= (next() as u8) | 1;
                }
                f.extend_from_slice(&bytes);
                let _ = s.write_all(&f);
                let _ = s.shutdown(std::net::Shutdown::Write);
                read_error_frames(s);
                continue;
            }
        }
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(TEST_TIMEOUT_MS)))
            .unwrap();
        let _ = s.write_all(&bytes);
        let _ = s.shutdown(std::net::Shutdown::Write);
        read_error_frames(s);
    }
    assert_served(&server);
    let total: u64 = ErrorKind::ALL.iter().map(|k| server.errors(*k)).sum();
    assert!(
        total >= 30,
        "errors counted: {:?}",
        server.metrics.snapshot()
    );
    assert!(NetMetrics::get(&server.metrics.connections_closed) >= 40);
}

#[test]
fn connection_limit_refuses_with_an_error_frame() {
    let server = TestServer::start(2, 1 << 20);
    let a = client(&server);
    let b = client(&server);
    match BlockingClient::connect(server.addr, client_cfg(CLUSTER)) {
        Err(NetError::Refused {
            code: ErrorCode::TooManyConnections,
            ..
        }) => {}
        other => panic!("expected TooManyConnections, got {other:?}"),
    }
    assert_eq!(
        NetMetrics::get(&server.metrics.connections_rejected_limit),
        1
    );
    drop(a);
    drop(b);
    // Slots free up once the server notices the closes.
    let mut served = false;
    for _ in 0..100 {
        if let Ok(mut c) = BlockingClient::connect(server.addr, client_cfg(CLUSTER)) {
            if c.call(&Ping {
                nonce: 1,
                data: vec![],
            })
            .is_ok()
            {
                served = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(served);
}

/// A glommio node dialing another: handshake, request, response via its handler.
#[test]
fn glommio_dialer_round_trip_and_backoff() {
    use std::cell::RefCell;
    let server = TestServer::start(64, 1 << 20);
    let addr = server.addr;
    let got = on_executor("net-test-dialer", move || async move {
        struct Collect(RefCell<Vec<(u64, u64)>>);
        impl Handler for Collect {
            fn on_frame(&self, _c: &Rc<Connection>, f: Frame<'_>) {
                if let MessageRef::Pong(p) = f.message {
                    self.0
                        .borrow_mut()
                        .push((f.header.request_id, p.nonce.to_native()));
                }
            }
        }
        let h = Rc::new(Collect(RefCell::new(Vec::new())));
        let metrics = Arc::new(NetMetrics::new());
        let cfg = listener::ConnectionConfig::new(LocalIdentity {
            cluster_id: CLUSTER,
            role: PeerRole::Node { node_id: 1 },
        });
        let conn = listener::dial(addr, &cfg, h.clone(), metrics.clone())
            .await
            .unwrap();
        assert_eq!(
            conn.peer(),
            PeerRole::Node {
                node_id: SERVER_NODE
            }
        );
        for i in 0..50u64 {
            conn.send_request(
                1000 + i,
                &Ping {
                    nonce: i,
                    data: vec![],
                },
            )
            .unwrap();
        }
        for _ in 0..300 {
            if h.0.borrow().len() == 50 {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        conn.close();
        // Dialing a closed port gives up after the configured attempts.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let mut backoff =
            ringraft_net::backoff::Backoff::new(ringraft_net::backoff::BackoffConfig {
                initial_ms: 1,
                max_ms: 4,
                max_attempts: Some(3),
                seed: 1,
            });
        let r =
            listener::dial_with_backoff(dead, &cfg, h.clone(), metrics.clone(), &mut backoff).await;
        assert!(r.is_err());
        assert_eq!(backoff.attempts(), 3);
        // A refusal is final and not retried.
        let other = listener::ConnectionConfig::new(LocalIdentity {
            cluster_id: CLUSTER + 1,
            role: PeerRole::Node { node_id: 1 },
        });
        let mut backoff = ringraft_net::backoff::Backoff::new(Default::default());
        let r = listener::dial_with_backoff(addr, &other, h.clone(), metrics, &mut backoff).await;
        assert!(matches!(
            r,
            Err(NetError::Refused {
                code: ErrorCode::WrongCluster,
                ..
            })
        ));
        assert_eq!(backoff.attempts(), 0);
        let v = h.0.borrow().clone();
        v
    });
    assert_eq!(got.len(), 50);
    for (id, nonce) in got {
        assert_eq!(id, 1000 + nonce);
    }
}

#[test]
fn silent_connections_time_out() {
    let server = TestServer::start_with(|cfg| {
        cfg.connection.handshake_timeout_ms = 500;
        cfg.connection.read_idle_timeout_ms = Some(300);
    });
    // No handshake at all: closed after the handshake timeout, nothing sent back.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(TEST_TIMEOUT_MS)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(s.read(&mut buf).unwrap(), 0);
    // Handshaken, then idle past the idle timeout: closed.
    let mut c = client(&server);
    std::thread::sleep(Duration::from_millis(1_000));
    assert!(c
        .call(&Ping {
            nonce: 1,
            data: vec![]
        })
        .is_err());
    assert!(
        server.wait_errors(ErrorKind::Timeout, 2) >= 2,
        "{:?}",
        server.metrics.snapshot()
    );
    assert_served(&server);
}

#[test]
fn blocking_connect_with_backoff() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cfg = client_cfg(CLUSTER);
    cfg.socket.connect_timeout_ms = 200;
    cfg.backoff = ringraft_net::backoff::BackoffConfig {
        initial_ms: 1,
        max_ms: 4,
        max_attempts: Some(3),
        seed: 1,
    };
    let t = std::time::Instant::now();
    assert!(matches!(
        BlockingClient::connect_with_backoff(dead, cfg.clone()),
        Err(NetError::Io(_))
    ));
    assert!(t.elapsed() < Duration::from_secs(3));
    let server = TestServer::start(8, 1 << 20);
    let mut c = BlockingClient::connect_with_backoff(server.addr, cfg.clone()).unwrap();
    assert_pongs(&mut c);
    // A refusal is final, not retried until the attempts run out.
    let mut other = cfg;
    other.local.cluster_id = CLUSTER + 9;
    other.backoff.max_attempts = None;
    assert!(matches!(
        BlockingClient::connect_with_backoff(server.addr, other),
        Err(NetError::Refused {
            code: ErrorCode::WrongCluster,
            ..
        })
    ));
}
