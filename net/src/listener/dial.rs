//! Outgoing connections: TCP connect, the TLS handshake (the server's certificate must name
//! the node meant), the frame handshake, then the same reader and writer as accepted
//! connections on a local task. Retrying with backoff stops at errors that retrying the same
//! address cannot fix (refusals, certificates, the wrong node).

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::io::AsyncWriteExt;
use rkyv::util::AlignedVec;

use crate::backoff::Backoff;
use crate::decoder::Decoder;
use crate::error::NetError;
use crate::message::{ErrorCode, MessageRef, PeerRole};
use crate::metrics::NetMetrics;
use crate::send_queue::encode_frame;
use crate::socket::connect_glommio;
use crate::tls::{self, Alpn, CertIdentity, NetStream};

use super::config::idle_timeout;
use super::direct::{fill_until_frame, to_io};
use super::drive::run_connection;
use super::{Connection, ConnectionConfig, Handler};

/// Dials `addr`, handshakes as `cfg.local`, and drives the connection on a local task.
/// Answers and requests from the peer arrive in `handler.on_frame`. A refusal (other cluster,
/// unsupported version) is [`NetError::Refused`]. Same as [`dial_node`] with no expected
/// node: under TLS any node of the cluster is accepted.
pub async fn dial<H: Handler>(
    addr: SocketAddr,
    cfg: &ConnectionConfig,
    handler: Rc<H>,
    metrics: Arc<NetMetrics>,
) -> Result<Rc<Connection>, NetError> {
    dial_node(addr, None, cfg, handler, metrics).await
}

/// Like [`dial`], and the node reached must be `expected_node` (when given): under TLS its
/// certificate must name it (checked right after the TLS handshake, before anything is sent);
/// in plaintext its handshake ack must. Reaching another node is [`NetError::WrongPeer`].
/// Under TLS a refused certificate on either side is [`NetError::Tls`].
pub async fn dial_node<H: Handler>(
    addr: SocketAddr,
    expected_node: Option<u64>,
    cfg: &ConnectionConfig,
    handler: Rc<H>,
    metrics: Arc<NetMetrics>,
) -> Result<Rc<Connection>, NetError> {
    let (stream, dec, node_id) = match handshake(addr, expected_node, cfg, &metrics).await {
        Ok(v) => v,
        Err(e) => {
            metrics.count_error(e.kind());
            return Err(e);
        }
    };
    let conn = Rc::new(Connection::new(
        addr,
        PeerRole::Node { node_id },
        &stream,
        cfg,
        metrics,
    ));
    handler.on_open(&conn);
    let driven = conn.clone();
    glommio::spawn_local(async move {
        let metrics = driven.metrics.clone();
        run_connection(stream, dec, driven, handler).await;
        NetMetrics::add(&metrics.connections_closed, 1);
    })
    .detach();
    Ok(conn)
}

/// Connects, runs the TLS handshake (when configured) and the frame handshake: the stream
/// ready for steady state, its decoder (which may already hold frames) and the node reached.
async fn handshake(
    addr: SocketAddr,
    expected_node: Option<u64>,
    cfg: &ConnectionConfig,
    metrics: &NetMetrics,
) -> Result<(NetStream, Decoder, u64), NetError> {
    let tcp = connect_glommio(addr, &cfg.socket).await?;
    tcp.set_write_timeout(Some(Duration::from_millis(cfg.write_timeout_ms.max(1))))
        .map_err(to_io)?;
    tcp.set_read_timeout(Some(Duration::from_millis(cfg.handshake_timeout_ms.max(1))))
        .map_err(to_io)?;
    let mut stream = match &cfg.tls {
        None => NetStream::plain(tcp),
        Some(tls) => {
            let timeout = Duration::from_millis(cfg.handshake_timeout_ms.max(1));
            tls::connect(tcp, addr, tls, Alpn::Frames, expected_node, timeout).await?
        }
    };
    let mut out = AlignedVec::<16>::new();
    encode_frame(
        &mut out,
        0,
        1,
        &cfg.local.handshake(),
        cfg.send_queue.max_frame_bytes,
    )?;
    stream
        .write_all(out.as_slice())
        .await
        .map_err(tls::tls_io_error)?;
    stream.flush().await.map_err(tls::tls_io_error)?;
    NetMetrics::add(&metrics.frames_out, 1);
    NetMetrics::add(&metrics.bytes_out, out.len() as u64);
    let mut dec = Decoder::new(cfg.decoder);
    fill_until_frame(&mut stream, &mut dec, metrics)
        .await
        .map_err(|e| match e {
            NetError::Io(io) => tls::tls_io_error(io),
            other => other,
        })?;
    let node_id = match dec.next_frame()? {
        Some(frame) => {
            NetMetrics::add(&metrics.frames_in, 1);
            match frame.message {
                MessageRef::HandshakeAck(ack) => {
                    if ack.cluster_id.to_native() != cfg.local.cluster_id {
                        return Err(NetError::Refused {
                            code: ErrorCode::WrongCluster,
                            message: format!(
                                "peer acked for cluster {:#x}",
                                ack.cluster_id.to_native()
                            ),
                        });
                    }
                    let node_id = ack.node_id.to_native();
                    // Under TLS the certificate already named the node; the ack must agree.
                    let meant = stream
                        .peer_identity()
                        .and_then(CertIdentity::node_id)
                        .or(expected_node);
                    if let Some(expected) = meant {
                        if node_id != expected {
                            return Err(NetError::WrongPeer {
                                expected,
                                found: node_id,
                            });
                        }
                    }
                    node_id
                }
                MessageRef::Error(err) => {
                    return Err(refusal_from(err));
                }
                other => {
                    return Err(NetError::Protocol(format!(
                        "expected HandshakeAck, got {:?}",
                        other.kind()
                    )))
                }
            }
        }
        None => return Err(NetError::Closed),
    };
    stream
        .tcp()
        .set_read_timeout(idle_timeout(cfg))
        .map_err(to_io)?;
    Ok((stream, dec, node_id))
}

/// Dials with bounded exponential backoff between attempts. Refusals are final (retrying a
/// wrong cluster or version cannot succeed); other errors are retried until `backoff` gives up.
pub async fn dial_with_backoff<H: Handler>(
    addr: SocketAddr,
    cfg: &ConnectionConfig,
    handler: Rc<H>,
    metrics: Arc<NetMetrics>,
    backoff: &mut Backoff,
) -> Result<Rc<Connection>, NetError> {
    dial_node_with_backoff(addr, None, cfg, handler, metrics, backoff).await
}

/// [`dial_node`] with bounded exponential backoff. Refusals, refused certificates and
/// reaching the wrong node are final (retrying the same address cannot fix them).
pub async fn dial_node_with_backoff<H: Handler>(
    addr: SocketAddr,
    expected_node: Option<u64>,
    cfg: &ConnectionConfig,
    handler: Rc<H>,
    metrics: Arc<NetMetrics>,
    backoff: &mut Backoff,
) -> Result<Rc<Connection>, NetError> {
    loop {
        match dial_node(addr, expected_node, cfg, handler.clone(), metrics.clone()).await {
            Ok(c) => {
                backoff.reset();
                return Ok(c);
            }
            Err(e @ (NetError::Refused { .. } | NetError::Tls(_) | NetError::WrongPeer { .. })) => {
                return Err(e)
            }
            Err(e) => match backoff.next_delay() {
                Some(d) => glommio::timer::sleep(d).await,
                None => return Err(e),
            },
        }
    }
}

/// Converts a received error frame into [`NetError::Refused`].
pub fn refusal_from(err: &crate::message::ArchivedErrorFrame) -> NetError {
    let code = rkyv::deserialize::<ErrorCode, rkyv::rancor::Error>(&err.code)
        .unwrap_or(ErrorCode::Unsupported);
    NetError::Refused {
        code,
        message: err.message.as_str().to_string(),
    }
}
