//! The [`Handler`] trait: what the node plugs into accepted and dialed connections. The
//! listener calls it on the connection's own task, one call at a time per connection; a
//! handler never blocks (it queues answers on the [`Connection`]). Owned by the node.

use std::future::Future;
use std::rc::Rc;
use std::time::Instant;

use futures_lite::io::AsyncWriteExt;
use glommio::net::TcpStream;

use super::Connection;
use crate::decoder::Frame;
use crate::tls::NetStream;

/// What the node plugs into the listener (and into dialed connections).
pub trait Handler: 'static {
    /// A connection finished its handshake.
    fn on_open(&self, _conn: &Rc<Connection>) {}

    /// A validated frame arrived (requests and responses alike; match responses to requests by
    /// `frame.header.request_id`). The frame borrows the receive buffer: anything needed later
    /// (e.g. AppendEntries payloads for the WAL) must be used or copied before returning.
    /// Answer with [`Connection::respond`].
    fn on_frame(&self, conn: &Rc<Connection>, frame: Frame<'_>);

    /// A batch of queued frames was written to the socket (and flushed): its oldest frame was
    /// queued at `queued`, the write completed at `written`. Called on the writer's task; the
    /// default does nothing.
    fn on_written(&self, _conn: &Rc<Connection>, _queued: Instant, _written: Instant) {}

    /// The connection closed (`conn.close_reason()` tells why, `None` = orderly).
    fn on_close(&self, _conn: &Rc<Connection>) {}

    /// The connection speaks plaintext HTTP: serve it. `first_bytes` were already read from
    /// `stream`. The default closes it. Only called by the default [`Handler::on_http_stream`].
    fn on_http(&self, stream: TcpStream, first_bytes: Vec<u8>) -> impl Future<Output = ()> {
        drop((stream, first_bytes));
        std::future::ready(())
    }

    /// The connection speaks HTTP, plaintext or TLS: serve it. `first_bytes` were already read
    /// (decrypted) from `stream`; `stream.peer_identity()` is the client's verified
    /// certificate identity, if it presented one. The default hands plaintext to
    /// [`Handler::on_http`] and closes TLS connections.
    fn on_http_stream(&self, stream: NetStream, first_bytes: Vec<u8>) -> impl Future<Output = ()> {
        async move {
            match stream.into_plain() {
                Ok(tcp) => self.on_http(tcp, first_bytes).await,
                Err(mut tls) => {
                    let _ = tls.close().await;
                }
            }
        }
    }
}
