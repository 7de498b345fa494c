//! One live, handshaken connection: who the peer is, its bounded send queue, and the flag that
//! wakes its writer. Created only after a successful handshake (accepted or dialed) and shared
//! as `Rc` on its executor between the handler and the connection's reader and writer tasks.
//! Invariant: once closing, nothing more is queued; the writer flushes what is and ends.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Instant;

use crate::error::NetError;
use crate::frame::FLAG_RESPONSE;
use crate::message::{Encode, ErrorCode, ErrorFrame, PeerRole};
use crate::metrics::NetMetrics;
use crate::send_queue::SendQueue;
use crate::tls::{CertIdentity, NetStream};

use super::ConnectionConfig;

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Wakes the writer task when frames are queued or the connection is closing.
#[derive(Default)]
pub(super) struct Notify {
    flagged: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    fn notify(&self) {
        self.flagged.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub(super) async fn wait(&self) {
        futures_lite::future::poll_fn(|cx| {
            if self.flagged.replace(false) {
                Poll::Ready(())
            } else {
                self.waker.set(Some(cx.waker().clone()));
                Poll::Pending
            }
        })
        .await
    }
}

/// One live, handshaken connection: its identity and its bounded send queue.
pub struct Connection {
    id: u64,
    peer_addr: SocketAddr,
    peer: PeerRole,
    tls: bool,
    identity: Option<CertIdentity>,
    pub(super) queue: RefCell<SendQueue>,
    pub(super) wake: Notify,
    closing: Cell<bool>,
    close_reason: RefCell<Option<NetError>>,
    pub(super) metrics: Arc<NetMetrics>,
    /// When the last socket read that fed the decoder completed (`None` before the first).
    read_at: Cell<Option<Instant>>,
    /// When the oldest frame still waiting in the send queue was queued (`None`: nothing
    /// queued since the writer last took a batch).
    queued_at: Cell<Option<Instant>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("peer_addr", &self.peer_addr)
            .field("peer", &self.peer)
            .field("tls", &self.tls)
            .field("identity", &self.identity)
            .field("closing", &self.closing.get())
            .finish()
    }
}

impl Connection {
    pub(super) fn new(
        peer_addr: SocketAddr,
        peer: PeerRole,
        stream: &NetStream,
        cfg: &ConnectionConfig,
        metrics: Arc<NetMetrics>,
    ) -> Self {
        Connection {
            id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
            peer_addr,
            peer,
            tls: stream.is_tls(),
            identity: stream.peer_identity().cloned(),
            queue: RefCell::new(SendQueue::new(cfg.send_queue)),
            wake: Notify::default(),
            closing: Cell::new(false),
            close_reason: RefCell::new(None),
            metrics,
            read_at: Cell::new(None),
            queued_at: Cell::new(None),
        }
    }

    /// When the socket read that completed the frame being handled returned: a handler reads
    /// it in [`super::Handler::on_frame`] to time what follows the frame's arrival.
    pub fn last_read_at(&self) -> Option<Instant> {
        self.read_at.get()
    }

    pub(super) fn set_read_at(&self, at: Instant) {
        self.read_at.set(Some(at));
    }

    /// Takes when the oldest frame of the batch the writer is about to send was queued.
    pub(super) fn take_queued_at(&self) -> Option<Instant> {
        self.queued_at.take()
    }

    /// Process-unique connection id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Remote address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// Who the peer said it is in its handshake (or, dialing, the node that acked). Under TLS
    /// a `Node` claim was checked against the peer's certificate.
    pub fn peer(&self) -> PeerRole {
        self.peer
    }

    /// Whether the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The identity of the peer's verified certificate (`None`: plaintext, or a TLS client
    /// that presented none). This, not [`Connection::peer`], is what authorization should use.
    pub fn peer_identity(&self) -> Option<&CertIdentity> {
        self.identity.as_ref()
    }

    /// Frames waiting to be written.
    pub fn queued_frames(&self) -> usize {
        self.queue.borrow().queued_frames()
    }

    /// Bytes waiting to be written.
    pub fn queued_bytes(&self) -> usize {
        self.queue.borrow().queued_bytes()
    }

    /// Whether the connection is closing or closed.
    pub fn is_closing(&self) -> bool {
        self.closing.get()
    }

    /// Why the connection closed, if it closed on an error.
    pub fn close_reason(&self) -> Option<String> {
        self.close_reason.borrow().as_ref().map(|e| e.to_string())
    }

    fn push<M: Encode>(&self, flags: u16, request_id: u64, msg: &M) -> Result<usize, NetError> {
        let r = self.queue.borrow_mut().push(flags, request_id, msg);
        self.account(r)
    }

    /// Counts a queued frame (and wakes the writer) or the error that refused it.
    fn account(&self, r: Result<usize, NetError>) -> Result<usize, NetError> {
        match r {
            Ok(n) => {
                NetMetrics::add(&self.metrics.frames_out, 1);
                if self.queued_at.get().is_none() {
                    self.queued_at.set(Some(Instant::now()));
                }
                self.wake.notify();
                Ok(n)
            }
            Err(e) => {
                self.metrics.count_error(e.kind());
                Err(e)
            }
        }
    }

    /// Queues a request; the answer arrives in [`Handler::on_frame`] with the same request id.
    /// `SendQueueFull` is backpressure: retry later or drop.
    pub fn send_request<M: Encode>(&self, request_id: u64, msg: &M) -> Result<usize, NetError> {
        self.push(0, request_id, msg)
    }

    /// Queues the response to `request_id`.
    pub fn respond<M: Encode>(&self, request_id: u64, msg: &M) -> Result<usize, NetError> {
        self.push(FLAG_RESPONSE, request_id, msg)
    }

    /// Queues an owned [`crate::message::Message`] of any kind (flags 0 = request,
    /// [`FLAG_RESPONSE`] = response).
    pub fn send_message(
        &self,
        flags: u16,
        request_id: u64,
        msg: &crate::message::Message,
    ) -> Result<usize, NetError> {
        let r = self.queue.borrow_mut().push_message(flags, request_id, msg);
        self.account(r)
    }

    /// Queues a frame encoded once for several connections (see [`SendQueue::push_encoded`]).
    pub fn send_encoded(&self, frame: &[u8]) -> Result<usize, NetError> {
        let r = self.queue.borrow_mut().push_encoded(frame);
        self.account(r)
    }

    /// Queues an error frame answering `request_id` (uses the queue's small reserve).
    pub fn send_error(
        &self,
        request_id: u64,
        code: ErrorCode,
        message: String,
    ) -> Result<usize, NetError> {
        let r = self
            .queue
            .borrow_mut()
            .push_error(request_id, &ErrorFrame { code, message });
        if r.is_ok() {
            NetMetrics::add(&self.metrics.frames_out, 1);
            NetMetrics::add(&self.metrics.error_frames_sent, 1);
            self.wake.notify();
        }
        r
    }

    /// Flushes what is queued, then closes. Further sends fail with `Closed`.
    pub fn close(&self) {
        self.closing.set(true);
        self.queue.borrow_mut().close();
        self.wake.notify();
    }

    pub(super) fn set_reason(&self, e: NetError) {
        let mut r = self.close_reason.borrow_mut();
        if r.is_none() {
            *r = Some(e);
        }
    }
}
