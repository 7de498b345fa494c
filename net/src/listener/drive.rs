//! Steady state of a handshaken connection: a reader that decodes frames into the reusable
//! aligned buffer and hands each to [`Handler::on_frame`], and a writer that drains the
//! connection's send queue in batches, one write and flush per batch. Either ending ends
//! both; a decode error is answered with an error frame, flushed, and closes this connection
//! only.

use std::io;
use std::rc::Rc;
use std::time::Instant;

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::decoder::Decoder;
use crate::error::{ErrorKind, NetError};
use crate::message::{ErrorCode, Kind};
use crate::metrics::NetMetrics;
use crate::tls::{self, NetStream};

use super::{Connection, Handler};

/// Steady state of a handshaken connection: reader and writer until either ends.
pub(super) async fn run_connection<H: Handler>(
    stream: NetStream,
    mut dec: Decoder,
    conn: Rc<Connection>,
    handler: Rc<H>,
) {
    let (mut rd, mut wr) = futures_lite::io::split(stream);
    {
        let reader = async {
            if let Some(e) = read_loop(&mut rd, &mut dec, &conn, &*handler).await {
                conn.set_reason(e);
            }
            // Let the writer flush what is queued (e.g. the error frame), then it ends us.
            conn.close();
            futures_lite::future::pending::<()>().await
        };
        let writer = write_loop(&mut wr, &conn, &*handler);
        futures_lite::future::or(reader, writer).await;
    }
    let _ = wr.close().await;
    conn.close();
    handler.on_close(&conn);
}

async fn read_loop<R: AsyncRead + Unpin, H: Handler>(
    rd: &mut R,
    dec: &mut Decoder,
    conn: &Rc<Connection>,
    handler: &H,
) -> Option<NetError> {
    let metrics = conn.metrics.clone();
    loop {
        loop {
            match dec.next_frame() {
                Ok(Some(frame)) => {
                    NetMetrics::add(&metrics.frames_in, 1);
                    if frame.kind == Kind::Handshake {
                        metrics.count_error(ErrorKind::Protocol);
                        let id = frame.header.request_id;
                        let msg = "second handshake on an open connection".to_string();
                        let _ = conn.send_error(id, ErrorCode::HandshakeRequired, msg.clone());
                        return Some(NetError::Protocol(msg));
                    }
                    handler.on_frame(conn, frame);
                    if conn.is_closing() {
                        return None;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    metrics.count_error(e.kind());
                    let _ = conn.send_error(0, e.code(), e.to_string());
                    return Some(e.into());
                }
            }
        }
        match rd.read(dec.read_buf()).await {
            Ok(0) => {
                return match dec.finish() {
                    Ok(()) => None,
                    Err(e) => {
                        metrics.count_error(e.kind());
                        let _ = conn.send_error(0, e.code(), e.to_string());
                        Some(e.into())
                    }
                };
            }
            Ok(n) => {
                conn.set_read_at(Instant::now());
                NetMetrics::add(&metrics.bytes_in, n as u64);
                dec.advance(n);
            }
            Err(e) => {
                let e = tls::tls_io_error(e);
                metrics.count_error(e.kind());
                return Some(e);
            }
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin, H: Handler>(
    wr: &mut W,
    conn: &Rc<Connection>,
    handler: &H,
) {
    loop {
        let batch = conn.queue.borrow_mut().take_batch();
        // Frames queued from now on belong to the next batch.
        let queued = batch.as_ref().and_then(|_| conn.take_queued_at());
        match batch {
            // The flush matters under TLS (records the socket did not take yet stay in the TLS
            // layer); on plain TCP it is a no-op.
            Some(buf) => match write_and_flush(wr, buf.as_slice()).await {
                Ok(()) => {
                    if let Some(q) = queued {
                        handler.on_written(conn, q, Instant::now());
                    }
                    NetMetrics::add(&conn.metrics.bytes_out, buf.len() as u64);
                    conn.queue.borrow_mut().recycle(buf);
                }
                Err(e) => {
                    let e = tls::tls_io_error(e);
                    conn.metrics.count_error(e.kind());
                    conn.set_reason(e);
                    conn.close();
                    return;
                }
            },
            None => {
                if conn.is_closing() {
                    let _ = wr.flush().await;
                    return;
                }
                conn.wake.wait().await;
            }
        }
    }
}

async fn write_and_flush<W: AsyncWrite + Unpin>(wr: &mut W, buf: &[u8]) -> io::Result<()> {
    wr.write_all(buf).await?;
    wr.flush().await
}
