//! The glommio listener, live on 127.0.0.1 (port 0), serving: pipelined requests matched by
//! id, HTTP sniffed on the frame port, a glommio dialer, and the blocking client's connect
//! with backoff. Refusals and bad input are in `listener_refusals.rs`.
//!
//! The request handler here is a test echo/ack handler (the node plugs in its own).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

mod support;

use ringraft_net::blocking_client::BlockingClient;
use ringraft_net::error::NetError;
use ringraft_net::listener::{self, Connection, Handler};
use ringraft_net::message::*;
use ringraft_net::metrics::NetMetrics;
use ringraft_net::Frame;
use support::echo::*;
use support::on_executor;

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
    // Every frame knew when the read that completed it returned; every answer batch written
    // was reported, never before it was queued.
    use std::sync::atomic::Ordering::Relaxed;
    assert!(FRAMES_WITH_READ_AT.load(Relaxed) >= 204);
    assert_eq!(FRAMES_WITHOUT_READ_AT.load(Relaxed), 0);
    assert!(BATCHES_WRITTEN.load(Relaxed) >= 5);
    assert_eq!(BATCHES_WRITTEN_BEFORE_QUEUED.load(Relaxed), 0);
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
