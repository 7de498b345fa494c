//! The glommio side: a listener that sniffs, handshakes and drives frame connections, and a
//! dialer for outgoing peer connections. The node plugs in its own [`Handler`].
//!
//! Per accepted connection (one local task each, on the accepting executor):
//! 0. With [`ConnectionConfig::tls`] set: the TLS handshake ([`crate::tls::accept`]) within
//!    `handshake_timeout_ms`; a refused or missing certificate (or plaintext) ends the
//!    connection here, before any frame is read. Everything below then runs over TLS.
//! 1. Sniff the first bytes ([`crate::sniff`]): HTTP goes to [`Handler::on_http_stream`] with
//!    the bytes already read; anything that is neither HTTP nor a frame gets an error frame
//!    and is closed.
//! 2. Handshake: the first frame must be a valid [`Handshake`] of our cluster and version,
//!    within `handshake_timeout_ms`, and under TLS its claimed role must match the certificate
//!    ([`crate::tls::check_claim`]); otherwise an error frame, then close.
//! 3. Steady state: a reader decodes frames into the reusable aligned buffer and calls
//!    [`Handler::on_frame`] with each validated in-place frame; a writer drains the
//!    connection's bounded [`SendQueue`] in batches, one write per batch. Any decode error
//!    (oversize, bad magic, CRC, invalid archive, unknown kind, truncation) is counted, reported
//!    to the peer in an error frame, and closes this connection only; the listener keeps going.
//!
//! Bounds: `max_connections` live connections per listener (extra ones get an error frame),
//! the decoder's `max_frame_bytes`, the send queue's byte/frame limits, `write_timeout_ms` on
//! every socket write (a peer that stops reading cannot pin a connection forever).
//!
//! Dialing ([`dial_node`]) mirrors this: TLS handshake (the server's certificate must name the
//! node meant), frame handshake, then the same reader and writer.
//!
//! Everything here runs on one glommio executor: connections are `Rc`, never shared across
//! threads; only [`NetMetrics`] (atomics) is shared.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use futures_lite::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use rkyv::util::AlignedVec;

use crate::backoff::Backoff;
use crate::decoder::{Decoder, DecoderConfig, Frame};
use crate::error::{ErrorKind, NetError};
use crate::frame::{FLAG_ERROR, FLAG_RESPONSE};
use crate::message::{
    check_handshake, Encode, ErrorCode, ErrorFrame, Kind, LocalIdentity, MessageRef, PeerRole,
};
use crate::metrics::NetMetrics;
use crate::send_queue::{encode_frame, SendQueue, SendQueueConfig};
use crate::sniff::{sniff, Protocol, SNIFF_BYTES};
use crate::socket::{bind_listener, connect_glommio, SocketOptions};
use crate::tls::{self, Alpn, CertIdentity, NetStream, TlsConfig, TLS_HANDSHAKE_RECORD};

/// Default bound on live connections per listener.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default time for the first bytes and the handshake to arrive.
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: u64 = 2_000;
/// Default bound on one blocked socket write.
pub const DEFAULT_WRITE_TIMEOUT_MS: u64 = 5_000;
/// Pause after a failed `accept` (e.g. out of descriptors) before trying again.
pub const ACCEPT_ERROR_PAUSE_MS: u64 = 10;

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// Settings of every connection (accepted or dialed).
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Our cluster and role.
    pub local: LocalIdentity,
    /// Socket options.
    pub socket: SocketOptions,
    /// Receive limits.
    pub decoder: DecoderConfig,
    /// Send limits.
    pub send_queue: SendQueueConfig,
    /// Time for the first bytes and the handshake.
    pub handshake_timeout_ms: u64,
    /// Bound on one blocked write.
    pub write_timeout_ms: u64,
    /// Close a handshaken connection that sends nothing for this long (`None`: never; peers
    /// that go silent are still caught by TCP keepalive).
    pub read_idle_timeout_ms: Option<u64>,
    /// TLS for every accepted and dialed connection (`None`: plaintext, the default).
    pub tls: Option<TlsConfig>,
}

impl ConnectionConfig {
    /// Defaults for an endpoint with identity `local`.
    pub fn new(local: LocalIdentity) -> Self {
        ConnectionConfig {
            local,
            socket: SocketOptions::default(),
            decoder: DecoderConfig::default(),
            send_queue: SendQueueConfig::default(),
            handshake_timeout_ms: DEFAULT_HANDSHAKE_TIMEOUT_MS,
            write_timeout_ms: DEFAULT_WRITE_TIMEOUT_MS,
            read_idle_timeout_ms: None,
            tls: None,
        }
    }
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Settings of accepted connections.
    pub connection: ConnectionConfig,
    /// Bound on live connections.
    pub max_connections: usize,
}

impl ListenerConfig {
    /// Defaults for an endpoint with identity `local`.
    pub fn new(local: LocalIdentity) -> Self {
        ListenerConfig {
            connection: ConnectionConfig::new(local),
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// What the node plugs into the listener (and into dialed connections).
pub trait Handler: 'static {
    /// A connection finished its handshake.
    fn on_open(&self, _conn: &Rc<Connection>) {}

    /// A validated frame arrived (requests and responses alike; match responses to requests by
    /// `frame.header.request_id`). The frame borrows the receive buffer: anything needed later
    /// (e.g. AppendEntries payloads for the WAL) must be used or copied before returning.
    /// Answer with [`Connection::respond`].
    fn on_frame(&self, conn: &Rc<Connection>, frame: Frame<'_>);

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

/// Wakes the writer task when frames are queued or the connection is closing.
#[derive(Default)]
struct Notify {
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

    async fn wait(&self) {
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
    queue: RefCell<SendQueue>,
    wake: Notify,
    closing: Cell<bool>,
    close_reason: RefCell<Option<NetError>>,
    metrics: Arc<NetMetrics>,
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
    fn new(
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
        }
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

    fn set_reason(&self, e: NetError) {
        let mut r = self.close_reason.borrow_mut();
        if r.is_none() {
            *r = Some(e);
        }
    }
}

/// Binds a glommio listener with `opts` (must run inside a glommio executor).
pub fn bind(addr: SocketAddr, opts: &SocketOptions) -> io::Result<TcpListener> {
    let std_listener = bind_listener(addr, opts)?;
    // SAFETY: the descriptor comes from a freshly bound and listening socket whose ownership
    // `into_raw_fd` gives up; glommio's listener becomes its only owner and closes it on drop.
    Ok(unsafe { TcpListener::from_raw_fd(std_listener.into_raw_fd()) })
}

/// Accepts and drives connections until `shutdown` completes. Each connection runs as its own
/// local task; a failing connection never stops the listener.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    cfg: Rc<ListenerConfig>,
    handler: Rc<H>,
    metrics: Arc<NetMetrics>,
    shutdown: impl Future<Output = ()>,
) {
    let live = Rc::new(Cell::new(0usize));
    let accept_loop = async {
        loop {
            let stream = match listener.accept().await {
                Ok(s) => s,
                Err(_) => {
                    metrics.count_error(ErrorKind::Io);
                    glommio::timer::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                    continue;
                }
            };
            NetMetrics::add(&metrics.connections_accepted, 1);
            let (cfg, handler, metrics, live) =
                (cfg.clone(), handler.clone(), metrics.clone(), live.clone());
            if live.get() >= cfg.max_connections {
                NetMetrics::add(&metrics.connections_rejected_limit, 1);
                if cfg.connection.tls.is_some() {
                    // A plaintext error frame would only garble a TLS client's handshake, and a
                    // TLS handshake costs what the limit is there to save: just close.
                    drop(stream);
                    NetMetrics::add(&metrics.connections_closed, 1);
                    continue;
                }
                glommio::spawn_local(async move {
                    let mut stream = stream;
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(
                        cfg.connection.write_timeout_ms.max(1),
                    )));
                    let message = format!("connection limit {} reached", cfg.max_connections);
                    write_error_now(
                        &mut stream,
                        0,
                        ErrorCode::TooManyConnections,
                        message,
                        &cfg.connection,
                        &metrics,
                    )
                    .await;
                    NetMetrics::add(&metrics.connections_closed, 1);
                })
                .detach();
                continue;
            }
            live.set(live.get() + 1);
            glommio::spawn_local(async move {
                serve_accepted(stream, &cfg.connection, handler, metrics.clone()).await;
                NetMetrics::add(&metrics.connections_closed, 1);
                live.set(live.get() - 1);
            })
            .detach();
        }
    };
    futures_lite::future::or(accept_loop, shutdown).await
}

/// Encodes and writes one error frame straight to a stream (before a connection exists).
async fn write_error_now<W: AsyncWrite + Unpin>(
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
async fn fill_until_frame<R: AsyncRead + Unpin>(
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

fn idle_timeout(cfg: &ConnectionConfig) -> Option<Duration> {
    cfg.read_idle_timeout_ms
        .map(|ms| Duration::from_millis(ms.max(1)))
}

fn to_io(e: glommio::GlommioError<()>) -> io::Error {
    io::Error::from(e)
}

/// Counts `e` and, where the peer can still be told, the matching error frame code.
fn decode_failure_code(e: &NetError) -> Option<ErrorCode> {
    match e {
        NetError::Decode(d) => Some(d.code()),
        _ => None,
    }
}

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

async fn serve_accepted<H: Handler>(
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
    let r = dial_inner(addr, expected_node, cfg, handler, metrics.clone()).await;
    if let Err(e) = &r {
        metrics.count_error(e.kind());
    }
    r
}

async fn dial_inner<H: Handler>(
    addr: SocketAddr,
    expected_node: Option<u64>,
    cfg: &ConnectionConfig,
    handler: Rc<H>,
    metrics: Arc<NetMetrics>,
) -> Result<Rc<Connection>, NetError> {
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
    fill_until_frame(&mut stream, &mut dec, &metrics)
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

/// Steady state of a handshaken connection: reader and writer until either ends.
async fn run_connection<H: Handler>(
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
        let writer = write_loop(&mut wr, &conn);
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

async fn write_loop<W: AsyncWrite + Unpin>(wr: &mut W, conn: &Connection) {
    loop {
        let batch = conn.queue.borrow_mut().take_batch();
        match batch {
            // The flush matters under TLS (records the socket did not take yet stay in the TLS
            // layer); on plain TCP it is a no-op.
            Some(buf) => match write_and_flush(wr, buf.as_slice()).await {
                Ok(()) => {
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
