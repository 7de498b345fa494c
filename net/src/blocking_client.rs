//! A blocking std::net client connection, for tools, tests and benchmarks.
//!
//! Same protocol as the node's connections: handshake first, then frames with request ids.
//! Many requests may be in flight: [`BlockingClient::send`] queues (batched into one write by
//! [`BlockingClient::flush`]) and returns the request id; [`BlockingClient::wait_for`] reads
//! until that id's response arrives, stashing other responses (at most
//! `max_stashed_responses`) for later `wait_for` calls. Every read waits at most
//! `response_timeout_ms`. Not for the node's hot path (it deserializes stashed responses);
//! [`BlockingClient::recv_with`] gives in-place access for benchmarks.
//!
//! With [`ClientConfig::tls`] set the connection runs over TLS: the server must present a node
//! certificate of the cluster signed by the configured CA (and of `expected_node_id`, when
//! set), and the client presents its own certificate if the config has one.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff::{Backoff, BackoffConfig};
use crate::decoder::{Decoder, DecoderConfig, Frame};
use crate::error::{ErrorKind, NetError};
use crate::frame::FrameHeader;
use crate::message::{ArchivedErrorFrame, Encode, ErrorCode, LocalIdentity, Message, MessageRef};
use crate::metrics::NetMetrics;
use crate::send_queue::{SendQueue, SendQueueConfig};
use crate::socket::{connect_std, SocketOptions};
use crate::tls::{self, Alpn, BlockingStream, CertIdentity, TlsConfig};

/// Default wait for one response.
pub const DEFAULT_RESPONSE_TIMEOUT_MS: u64 = 5_000;
/// Default bound on out-of-order responses kept for later `wait_for` calls.
pub const DEFAULT_MAX_STASHED_RESPONSES: usize = 4096;

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Our cluster and role (normally `PeerRole::Client`).
    pub local: LocalIdentity,
    /// Socket options.
    pub socket: SocketOptions,
    /// Receive limits.
    pub decoder: DecoderConfig,
    /// Send limits.
    pub send_queue: SendQueueConfig,
    /// Wait for one read.
    pub response_timeout_ms: u64,
    /// Bound on stashed out-of-order responses.
    pub max_stashed_responses: usize,
    /// Reconnect policy of [`BlockingClient::connect_with_backoff`].
    pub backoff: BackoffConfig,
    /// TLS (`None`: plaintext, the default).
    pub tls: Option<TlsConfig>,
    /// The node the client means to reach: checked against the server's certificate under
    /// TLS and against its handshake ack in plaintext (`None`: any node of the cluster).
    pub expected_node_id: Option<u64>,
}

impl ClientConfig {
    /// Defaults for identity `local`.
    pub fn new(local: LocalIdentity) -> Self {
        ClientConfig {
            local,
            socket: SocketOptions::default(),
            decoder: DecoderConfig::default(),
            send_queue: SendQueueConfig::default(),
            response_timeout_ms: DEFAULT_RESPONSE_TIMEOUT_MS,
            max_stashed_responses: DEFAULT_MAX_STASHED_RESPONSES,
            backoff: BackoffConfig::default(),
            tls: None,
            expected_node_id: None,
        }
    }
}

/// A received frame, deserialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedFrame {
    /// Header.
    pub header: FrameHeader,
    /// Message.
    pub message: Message,
}

fn refusal(err: &ArchivedErrorFrame) -> NetError {
    crate::listener::refusal_from(err)
}

fn owned(frame: &Frame<'_>) -> Result<OwnedFrame, NetError> {
    let message = frame
        .message
        .to_owned_message()
        .map_err(|e| NetError::Protocol(format!("validated frame failed to deserialize: {e}")))?;
    Ok(OwnedFrame {
        header: frame.header,
        message,
    })
}

/// A blocking, handshaken client connection.
#[derive(Debug)]
pub struct BlockingClient {
    stream: BlockingStream,
    server_identity: Option<CertIdentity>,
    dec: Decoder,
    queue: SendQueue,
    next_request_id: u64,
    peer_node_id: u64,
    stash: HashMap<u64, OwnedFrame>,
    cfg: ClientConfig,
    metrics: Arc<NetMetrics>,
}

impl BlockingClient {
    /// Connects (within the connect timeout) and handshakes.
    pub fn connect(addr: SocketAddr, cfg: ClientConfig) -> Result<Self, NetError> {
        Self::connect_with_metrics(addr, cfg, Arc::new(NetMetrics::new()))
    }

    /// Like [`BlockingClient::connect`], counting into shared metrics.
    pub fn connect_with_metrics(
        addr: SocketAddr,
        cfg: ClientConfig,
        metrics: Arc<NetMetrics>,
    ) -> Result<Self, NetError> {
        let r = Self::connect_inner(addr, cfg, metrics.clone());
        if let Err(e) = &r {
            metrics.count_error(e.kind());
        }
        r
    }

    fn connect_inner(
        addr: SocketAddr,
        cfg: ClientConfig,
        metrics: Arc<NetMetrics>,
    ) -> Result<Self, NetError> {
        let tcp = connect_std(addr, &cfg.socket)?;
        tcp.set_read_timeout(Some(Duration::from_millis(cfg.response_timeout_ms.max(1))))?;
        tcp.set_write_timeout(Some(Duration::from_millis(cfg.response_timeout_ms.max(1))))?;
        let (stream, server_identity) = match &cfg.tls {
            None => (BlockingStream::Plain(tcp), None),
            Some(t) => {
                let (s, id) = tls::connect_blocking(tcp, t, Alpn::Frames, cfg.expected_node_id)?;
                (BlockingStream::Tls(Box::new(s)), Some(id))
            }
        };
        let mut client = BlockingClient {
            stream,
            server_identity,
            dec: Decoder::new(cfg.decoder),
            queue: SendQueue::new(cfg.send_queue),
            next_request_id: 1,
            peer_node_id: 0,
            stash: HashMap::new(),
            cfg,
            metrics,
        };
        let hs = client.cfg.local.handshake();
        let id = client.send(&hs)?;
        client.flush()?;
        let cluster = client.cfg.local.cluster_id;
        let node = client.recv_with(|frame| match frame.message {
            MessageRef::HandshakeAck(ack) if frame.header.request_id == id => {
                if ack.cluster_id.to_native() == cluster {
                    Ok(ack.node_id.to_native())
                } else {
                    Err(NetError::Refused {
                        code: ErrorCode::WrongCluster,
                        message: format!("acked for cluster {:#x}", ack.cluster_id.to_native()),
                    })
                }
            }
            MessageRef::Error(err) => Err(refusal(err)),
            other => Err(NetError::Protocol(format!(
                "expected HandshakeAck, got {:?}",
                other.kind()
            ))),
        })??;
        if let Some(expected) = client.cfg.expected_node_id {
            if node != expected {
                return Err(NetError::WrongPeer {
                    expected,
                    found: node,
                });
            }
        }
        client.peer_node_id = node;
        Ok(client)
    }

    /// Connects with bounded exponential backoff between attempts; refusals are final.
    pub fn connect_with_backoff(addr: SocketAddr, cfg: ClientConfig) -> Result<Self, NetError> {
        let mut backoff = Backoff::new(cfg.backoff);
        loop {
            match Self::connect(addr, cfg.clone()) {
                Ok(c) => return Ok(c),
                Err(
                    e @ (NetError::Refused { .. } | NetError::Tls(_) | NetError::WrongPeer { .. }),
                ) => return Err(e),
                Err(e) => match backoff.next_delay() {
                    Some(d) => std::thread::sleep(d),
                    None => return Err(e),
                },
            }
        }
    }

    /// Node id from the server's handshake ack.
    pub fn peer_node_id(&self) -> u64 {
        self.peer_node_id
    }

    /// Counters of this client.
    pub fn metrics(&self) -> &Arc<NetMetrics> {
        &self.metrics
    }

    /// Local socket address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.stream.tcp().local_addr()
    }

    /// Whether the connection runs over TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.stream, BlockingStream::Tls(_))
    }

    /// The identity the server's verified certificate names (`None` in plaintext).
    pub fn server_identity(&self) -> Option<&CertIdentity> {
        self.server_identity.as_ref()
    }

    /// Queues a request and returns its request id; flushes first if the queue is full.
    pub fn send<M: Encode>(&mut self, msg: &M) -> Result<u64, NetError> {
        let id = self.next_request_id;
        self.next_request_id = self.next_request_id.wrapping_add(1).max(1);
        match self.queue.push_request(id, msg) {
            Ok(_) => {}
            Err(NetError::SendQueueFull { .. }) => {
                self.flush()?;
                self.queue.push_request(id, msg)?;
            }
            Err(e) => return Err(e),
        }
        NetMetrics::add(&self.metrics.frames_out, 1);
        Ok(id)
    }

    /// Queues a one-way message (request id 0: no response expected).
    pub fn send_oneway<M: Encode>(&mut self, msg: &M) -> Result<(), NetError> {
        match self.queue.push_request(0, msg) {
            Ok(_) => {}
            Err(NetError::SendQueueFull { .. }) => {
                self.flush()?;
                self.queue.push_request(0, msg)?;
            }
            Err(e) => return Err(e),
        }
        NetMetrics::add(&self.metrics.frames_out, 1);
        Ok(())
    }

    /// Writes every queued frame in one write.
    pub fn flush(&mut self) -> Result<(), NetError> {
        if let Some(buf) = self.queue.take_batch() {
            let r = self
                .stream
                .write_all(buf.as_slice())
                .and_then(|()| self.stream.flush());
            NetMetrics::add(&self.metrics.bytes_out, buf.len() as u64);
            self.queue.recycle(buf);
            r.map_err(tls::tls_io_error)?;
        }
        Ok(())
    }

    /// Writes raw bytes (for tests of bad input).
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), NetError> {
        self.flush()?;
        self.stream
            .write_all(bytes)
            .and_then(|()| self.stream.flush())
            .map_err(tls::tls_io_error)?;
        Ok(())
    }

    fn fill(&mut self) -> Result<(), NetError> {
        while !self.dec.frame_ready() {
            let n = match self.stream.read(self.dec.read_buf()) {
                Ok(n) => n,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    self.metrics.count_error(ErrorKind::Timeout);
                    return Err(NetError::Timeout("waiting for a response"));
                }
                Err(e) => return Err(tls::tls_io_error(e)),
            };
            if n == 0 {
                return Err(match self.dec.finish() {
                    Err(e) => e.into(),
                    Ok(()) => NetError::Closed,
                });
            }
            NetMetrics::add(&self.metrics.bytes_in, n as u64);
            self.dec.advance(n);
        }
        Ok(())
    }

    /// Reads the next frame off the wire (ignoring the stash) and passes it, in place, to `f`.
    pub fn recv_with<T>(&mut self, f: impl FnOnce(Frame<'_>) -> T) -> Result<T, NetError> {
        self.fill()?;
        match self.dec.next_frame() {
            Ok(Some(frame)) => {
                NetMetrics::add(&self.metrics.frames_in, 1);
                Ok(f(frame))
            }
            Ok(None) => Err(NetError::Protocol("frame_ready without a frame".into())),
            Err(e) => {
                self.metrics.count_error(e.kind());
                Err(e.into())
            }
        }
    }

    /// Next frame: a stashed one first (lowest request id), else off the wire.
    pub fn recv(&mut self) -> Result<OwnedFrame, NetError> {
        if let Some(&id) = self.stash.keys().min() {
            if let Some(f) = self.stash.remove(&id) {
                return Ok(f);
            }
        }
        self.recv_with(|f| owned(&f))?
    }

    /// Waits for the response to `request_id`, stashing others. A connection-level error
    /// frame (request id 0) is returned as [`NetError::Refused`].
    pub fn wait_for(&mut self, request_id: u64) -> Result<OwnedFrame, NetError> {
        if let Some(f) = self.stash.remove(&request_id) {
            return Ok(f);
        }
        loop {
            let frame = self.recv_with(|f| owned(&f))??;
            let id = frame.header.request_id;
            if id == request_id {
                return Ok(frame);
            }
            if id == 0 && frame.header.is_error() {
                if let Message::Error(e) = frame.message {
                    return Err(NetError::Refused {
                        code: e.code,
                        message: e.message,
                    });
                }
            }
            if self.stash.len() >= self.cfg.max_stashed_responses {
                return Err(NetError::Protocol(format!(
                    "more than {} unclaimed responses",
                    self.cfg.max_stashed_responses
                )));
            }
            self.stash.insert(id, frame);
        }
    }

    /// Sends one request and waits for its response; an error frame becomes `Refused`.
    pub fn call<M: Encode>(&mut self, msg: &M) -> Result<Message, NetError> {
        let id = self.send(msg)?;
        self.flush()?;
        let frame = self.wait_for(id)?;
        match frame.message {
            Message::Error(e) => Err(NetError::Refused {
                code: e.code,
                message: e.message,
            }),
            m => Ok(m),
        }
    }

    /// Reads until the server closes the connection, returning the frames it sent (e.g. the
    /// error frame before a close). Bounded by the read timeout.
    pub fn drain_until_close(&mut self) -> (Vec<OwnedFrame>, NetError) {
        let mut frames = Vec::new();
        loop {
            match self.recv_with(|f| owned(&f)) {
                Ok(Ok(f)) => frames.push(f),
                Ok(Err(e)) | Err(e) => return (frames, e),
            }
        }
    }
}
