//! The glommio listener, live on 127.0.0.1 (port 0), refusing: handshake refusals, each
//! bad-input class (error frame + close + metric, listener unaffected), random bytes from many
//! connections, the connection limit, and silent connections timing out.
//!
//! The request handler here is a test echo/ack handler (the node plugs in its own).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

mod support;

use ringraft_net::blocking_client::BlockingClient;
use ringraft_net::error::{ErrorKind, NetError};
use ringraft_net::frame::{payload_crc32, FrameHeader, HEADER_BYTES, PROTOCOL_VERSION};
use ringraft_net::message::*;
use ringraft_net::metrics::NetMetrics;
use ringraft_net::Kind;
use support::echo::*;
use support::frame_bytes;

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
