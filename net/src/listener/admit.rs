//! Admission of one accepted connection, steps 0 to 2 of the listener: the TLS handshake
//! (when configured), sniffing frames from HTTP, and the frame handshake. Only a connection
//! that passes all three becomes a [`Connection`] and reaches [`Handler::on_open`]; every
//! refusal is counted and, where the peer can still read it, answered before closing.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::decoder::Decoder;
use crate::error::{ErrorKind, NetError};
use crate::message::{check_handshake, ErrorCode, ErrorFrame, MessageRef};
use crate::metrics::NetMetrics;
use crate::sniff::{sniff, Protocol, SNIFF_BYTES};
use crate::tls::{self, NetStream, TlsConfig, TLS_HANDSHAKE_RECORD};

use super::config::idle_timeout;
use super::direct::{decode_failure_code, fill_until_frame, write_error_now};
use super::drive::run_connection;
use super::{Connection, ConnectionConfig, Handler};

/// What a plaintext connection to a TLS listener is told, in words.
const TLS_REQUIRED: &str = "this listener requires TLS";

/// Under TLS: refuses plaintext (answered in plaintext) and runs the TLS handshake. `None`
/// when the connection is over (counted).
async fn accept_tls(
    tcp: TcpStream,
    tls: &TlsConfig,
    cfg: &ConnectionConfig,
    metrics: &NetMetrics,
) -> Option<NetStream> {
    let timeout = Duration::from_millis(cfg.handshake_timeout_ms.max(1));
    let mut first = [0u8; 1];
    let peeked = futures_lite::future::or(async { Some(tcp.peek(&mut first).await) }, async {
        glommio::timer::sleep(timeout).await;
        None
    })
    .await;
    match peeked {
        Some(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Some(Ok(1)) => {
            metrics.count_error(ErrorKind::Tls);
            let mut tcp = tcp;
            if first[0] == crate::frame::MAGIC[0] {
                let msg = TLS_REQUIRED.to_string();
                write_error_now(&mut tcp, 0, ErrorCode::Unauthenticated, msg, cfg, metrics).await;
            } else if first[0].is_ascii_uppercase() {
                let body = format!("{TLS_REQUIRED} (use https)\n");
                let resp = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tcp.write_all(resp.as_bytes()).await;
                let _ = tcp.close().await;
            }
            return None;
        }
        Some(Ok(_)) => return None,
        Some(Err(e)) => {
            metrics.count_error(NetError::from(io::Error::from(e)).kind());
            return None;
        }
        None => {
            metrics.count_error(ErrorKind::Timeout);
            return None;
        }
    }
    match tls::accept(tcp, tls, timeout).await {
        Ok(s) => Some(s),
        Err(e) => {
            metrics.count_error(e.kind());
            None
        }
    }
}

pub(super) async fn serve_accepted<H: Handler>(
    tcp: TcpStream,
    cfg: &ConnectionConfig,
    handler: Rc<H>,
    metrics: Arc<NetMetrics>,
) {
    let peer_addr = tcp
        .peer_addr()
        .unwrap_or(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)));
    let _ = tcp.set_nodelay(cfg.socket.nodelay);
    let _ = tcp.set_write_timeout(Some(Duration::from_millis(cfg.write_timeout_ms.max(1))));
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(cfg.handshake_timeout_ms.max(1))));
    let mut stream = match &cfg.tls {
        None => NetStream::plain(tcp),
        Some(tls) => match accept_tls(tcp, tls, cfg, &metrics).await {
            Some(s) => s,
            None => return,
        },
    };
    let mut dec = Decoder::new(cfg.decoder);

    // 1. Sniff.
    let protocol = loop {
        let p = sniff(dec.pending());
        if p != Protocol::Incomplete || dec.pending_bytes() >= SNIFF_BYTES {
            break p;
        }
        match stream.read(dec.read_buf()).await {
            Ok(0) => return,
            Ok(n) => {
                NetMetrics::add(&metrics.bytes_in, n as u64);
                dec.advance(n);
            }
            Err(e) => {
                metrics.count_error(tls::tls_io_error(e).kind());
                return;
            }
        }
    };
    match protocol {
        Protocol::Frame => {}
        Protocol::Http => {
            NetMetrics::add(&metrics.http_connections, 1);
            let _ = stream.tcp().set_read_timeout(None);
            let first = dec.pending().to_vec();
            handler.on_http_stream(stream, first).await;
            return;
        }
        Protocol::Unknown | Protocol::Incomplete => {
            metrics.count_error(ErrorKind::BadMagic);
            let msg = "not a ringraft frame connection (bad magic) nor HTTP".to_string();
            write_error_now(&mut stream, 0, ErrorCode::BadMagic, msg, cfg, &metrics).await;
            return;
        }
    }

    // 2. Handshake: the first frame must be a valid handshake.
    if let Err(e) = fill_until_frame(&mut stream, &mut dec, &metrics).await {
        metrics.count_error(e.kind());
        if let Some(code) = decode_failure_code(&e) {
            write_error_now(&mut stream, 0, code, e.to_string(), cfg, &metrics).await;
        }
        return;
    }
    let verdict = match dec.next_frame() {
        Ok(Some(frame)) => {
            NetMetrics::add(&metrics.frames_in, 1);
            let id = frame.header.request_id;
            match frame.message {
                MessageRef::Handshake(hs) => match check_handshake(&cfg.local, hs) {
                    Ok(role) if stream.is_tls() => {
                        match tls::check_claim(role, stream.peer_identity()) {
                            Ok(()) => Ok((id, role)),
                            Err(refusal) => Err((id, refusal)),
                        }
                    }
                    Ok(role) => Ok((id, role)),
                    Err(refusal) => Err((id, refusal)),
                },
                other => Err((
                    id,
                    ErrorFrame {
                        code: ErrorCode::HandshakeRequired,
                        message: format!("first frame must be a Handshake, got {:?}", other.kind()),
                    },
                )),
            }
        }
        Ok(None) => Err((
            0,
            ErrorFrame {
                code: ErrorCode::HandshakeRequired,
                message: "no handshake".into(),
            },
        )),
        Err(e) => {
            metrics.count_error(e.kind());
            let code = e.code();
            write_error_now(&mut stream, 0, code, e.to_string(), cfg, &metrics).await;
            return;
        }
    };
    let (hs_id, role) = match verdict {
        Ok(v) => v,
        Err((id, refusal)) => {
            metrics.count_error(ErrorKind::HandshakeRefused);
            write_error_now(
                &mut stream,
                id,
                refusal.code,
                refusal.message,
                cfg,
                &metrics,
            )
            .await;
            return;
        }
    };
    let _ = stream.tcp().set_read_timeout(idle_timeout(cfg));
    let conn = Rc::new(Connection::new(
        peer_addr,
        role,
        &stream,
        cfg,
        metrics.clone(),
    ));
    if conn.respond(hs_id, &cfg.local.ack()).is_err() {
        return;
    }
    handler.on_open(&conn);
    run_connection(stream, dec, conn, handler).await;
}
