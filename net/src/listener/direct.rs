//! Frame I/O straight on a stream, before a [`super::Connection`] exists: reading until the
//! first frame is complete and writing one error frame then closing. Used by the acceptor's
//! sniff/handshake stage and by the dialer's handshake; bounded by the decoder's and send
//! queue's frame limits like everything else.

use std::io;

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use rkyv::util::AlignedVec;

use crate::decoder::Decoder;
use crate::error::NetError;
use crate::frame::{FLAG_ERROR, FLAG_RESPONSE};
use crate::message::{ErrorCode, ErrorFrame};
use crate::metrics::NetMetrics;
use crate::send_queue::encode_frame;

use super::ConnectionConfig;

/// Encodes and writes one error frame straight to a stream (before a connection exists).
pub(super) async fn write_error_now<W: AsyncWrite + Unpin>(
    stream: &mut W,
    request_id: u64,
    code: ErrorCode,
    message: String,
    cfg: &ConnectionConfig,
    metrics: &NetMetrics,
) {
    let mut out = AlignedVec::<16>::new();
    let frame = ErrorFrame { code, message };
    if encode_frame(
        &mut out,
        FLAG_RESPONSE | FLAG_ERROR,
        request_id,
        &frame,
        cfg.send_queue.max_frame_bytes,
    )
    .is_ok()
        && stream.write_all(out.as_slice()).await.is_ok()
    {
        NetMetrics::add(&metrics.error_frames_sent, 1);
        NetMetrics::add(&metrics.frames_out, 1);
        NetMetrics::add(&metrics.bytes_out, out.len() as u64);
        let _ = stream.flush().await;
    }
    let _ = stream.close().await;
}

/// Reads until the decoder has a frame (or an error) ready.
pub(super) async fn fill_until_frame<R: AsyncRead + Unpin>(
    stream: &mut R,
    dec: &mut Decoder,
    metrics: &NetMetrics,
) -> Result<(), NetError> {
    while !dec.frame_ready() {
        let n = stream.read(dec.read_buf()).await?;
        if n == 0 {
            return Err(match dec.finish() {
                Err(e) => e.into(),
                Ok(()) => NetError::Closed,
            });
        }
        NetMetrics::add(&metrics.bytes_in, n as u64);
        dec.advance(n);
    }
    Ok(())
}

pub(super) fn to_io(e: glommio::GlommioError<()>) -> io::Error {
    io::Error::from(e)
}

/// Counts `e` and, where the peer can still be told, the matching error frame code.
pub(super) fn decode_failure_code(e: &NetError) -> Option<ErrorCode> {
    match e {
        NetError::Decode(d) => Some(d.code()),
        _ => None,
    }
}
