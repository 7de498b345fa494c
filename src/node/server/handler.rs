//! The protocol side of the listener and of dialed peer connections ([`NodeHandler`]): Raft
//! frames from peers are routed by group to their cores, client and admin frames are served as
//! tasks (at most `network.max_inflight_per_connection` per connection), HTTP is handed to the
//! HTTP server. Also the socket and connection settings derived from `[network]`.
//! Owned by the node's server.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

use ringraft_net::listener::{Connection, ConnectionConfig, Handler};
use ringraft_net::message::{self as wire, LocalIdentity, MessageRef, PeerRole};
use ringraft_net::socket::{KeepaliveOptions, SocketOptions};
use ringraft_net::tls::{CertIdentity, Role};
use ringraft_net::{DecoderConfig, Frame, SendQueueConfig};
use tracing::{debug, warn};

use crate::node::auth::{self, AuthError, Security};
use crate::node::config::Config;
use crate::node::metrics::ErrorKind;
use crate::node::wire::{inbound_from_wire, Inbound};
use crate::raft::NodeId;

use super::*;

/// The frame side of the listener (and of dialed peer connections).
pub(crate) struct NodeHandler {
    pub(super) ctx: Rc<CoreCtx>,
    /// Answers awaited on connections this node dialed (learner join), by request id.
    pub(crate) awaiting: RefCell<BTreeMap<u64, flume::Sender<wire::Message>>>,
    /// Client requests being served, per connection id (bounded by
    /// `network.max_inflight_per_connection`; past it the request is answered Busy).
    pub(super) inflight: RefCell<std::collections::HashMap<u64, usize>>,
    /// Itself, for the request tasks it spawns.
    pub(super) me: std::rc::Weak<NodeHandler>,
}

impl NodeHandler {
    fn route_raft(&self, from: NodeId, msgs: Vec<Inbound>) {
        let mut by_core: BTreeMap<usize, Vec<Inbound>> = BTreeMap::new();
        for m in msgs {
            by_core
                .entry(self.ctx.owner(m.group()))
                .or_default()
                .push(m);
        }
        for (core, msgs) in by_core {
            if core == self.ctx.core {
                self.ctx.st.borrow_mut().step_inbound(from, msgs);
            } else if self
                .ctx
                .mesh
                .try_send(core, CoreMsg::Peer { from, msgs })
                .is_err()
            {
                self.ctx.st.borrow().metrics.error(ErrorKind::Busy);
            }
        }
    }
}

impl NodeHandler {
    /// Checks that the connection's credentials allow the request (reads need `read`, writes
    /// `write`, admin requests other than a status `admin`) and moves its sessions into the
    /// client's own namespace.
    fn authorize_frame(&self, conn: &Connection, msg: &mut wire::Message) -> Result<(), AuthError> {
        let p = self.ctx.security.connection(conn.peer_identity())?;
        match msg {
            wire::Message::ClientRequest(req) => {
                let ops: &mut [wire::ClientOp] = match &mut req.command {
                    wire::ClientCommand::Single(op) => std::slice::from_mut(op),
                    wire::ClientCommand::Batch(ops) => ops,
                };
                // Reads (a watch among them) need the read role, anything else the write role.
                let write = ops.iter().any(wire::ClientOp::is_write);
                if write {
                    auth::require(&p, Role::Write, "a write")?;
                } else {
                    auth::require(&p, Role::Read, "a read")?;
                }
                // A node forwards the calls of its own clients: it authorized them and
                // namespaced their sessions already, so those pass unchanged (a retry of the
                // same write through another node keeps its session).
                let forwarded = matches!(conn.peer_identity(), Some(CertIdentity::Node { .. }));
                for op in ops.iter_mut().filter(|_| !forwarded) {
                    match op {
                        wire::ClientOp::Put { session, .. }
                        | wire::ClientOp::Delete { session, .. }
                        | wire::ClientOp::CompareAndSwap { session, .. }
                        | wire::ClientOp::Txn { session, .. }
                        | wire::ClientOp::PutLease { session, .. }
                        | wire::ClientOp::LeaseGrant { session, .. }
                        | wire::ClientOp::LeaseKeepAlive { session, .. }
                        | wire::ClientOp::LeaseRevoke { session, .. } => {
                            if let Some(s) = session {
                                s.client_id = auth::session_id(&p, s.client_id);
                            }
                        }
                        _ => {}
                    }
                }
                Ok(())
            }
            wire::Message::AdminRequest(wire::AdminRequest::ClusterStatus) => {
                auth::require(&p, Role::Read, "a cluster status")
            }
            _ => auth::require(
                &p,
                Role::Admin,
                "a membership change or leadership transfer",
            ),
        }
    }
}

impl Handler for NodeHandler {
    fn on_open(&self, conn: &Rc<Connection>) {
        let m = self.ctx.st.borrow().metrics.clone();
        m.connections_accepted.inc();
        m.connections_open.inc();
        debug!(peer = ?conn.peer(), addr = %conn.peer_addr(), "connection open");
    }

    fn on_written(
        &self,
        conn: &Rc<Connection>,
        queued: std::time::Instant,
        written: std::time::Instant,
    ) {
        if matches!(conn.peer(), PeerRole::Client { .. }) {
            self.ctx
                .st
                .borrow()
                .metrics
                .stages
                .reply_queued_to_written
                .record_between(queued, written);
        }
    }

    fn on_close(&self, conn: &Rc<Connection>) {
        self.ctx.st.borrow().metrics.connections_open.dec();
        self.inflight.borrow_mut().remove(&conn.id());
        crate::node::forward::on_link_closed(&self.ctx, conn);
        if let Some(r) = conn.close_reason() {
            debug!(peer = ?conn.peer(), "connection closed: {r}");
        }
    }

    fn on_frame(&self, conn: &Rc<Connection>, frame: Frame<'_>) {
        let id = frame.header.request_id;
        if frame.header.flags & ringraft_net::frame::FLAG_RESPONSE != 0 {
            if crate::node::forward::on_response(&self.ctx, conn, id, &frame.message) {
                return;
            }
            if let Some(tx) = self.awaiting.borrow_mut().remove(&id) {
                if let Ok(m) = frame.message.to_owned_message() {
                    let _ = tx.try_send(m);
                }
                return;
            }
        }
        match (conn.peer(), frame.message) {
            (_, MessageRef::Ping(p)) => {
                let pong = wire::Pong {
                    nonce: p.nonce.to_native(),
                    data: p.data.as_slice().to_vec(),
                };
                let _ = conn.respond(id, &pong);
            }
            (_, MessageRef::Error(e)) => {
                warn!(peer = ?conn.peer(), "peer reported an error: {}", e.message.as_str());
            }
            (_, MessageRef::ClientRequest(_)) | (_, MessageRef::AdminRequest(_)) => {
                let mut msg = match frame.message.to_owned_message() {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = conn.send_error(
                            id,
                            wire::ErrorCode::InvalidArchive,
                            format!("cannot read the request: {e}"),
                        );
                        return;
                    }
                };
                if let Err(e) = self.authorize_frame(conn, &mut msg) {
                    let (code, kind) = match e {
                        AuthError::Unauthenticated(_) => {
                            (wire::ErrorCode::Unauthenticated, ErrorKind::Unauthenticated)
                        }
                        AuthError::Forbidden(_) => {
                            (wire::ErrorCode::Forbidden, ErrorKind::Forbidden)
                        }
                    };
                    self.ctx.st.borrow().metrics.error(kind);
                    debug!(peer = ?conn.peer(), "request refused: {e}");
                    let _ = conn.send_error(id, code, e.to_string());
                    return;
                }
                let busy = {
                    let mut per_conn = self.inflight.borrow_mut();
                    let n = per_conn.entry(conn.id()).or_insert(0);
                    if *n >= self.ctx.cfg.network.max_inflight_per_connection {
                        true
                    } else {
                        *n += 1;
                        false
                    }
                };
                if busy {
                    self.ctx.st.borrow().metrics.error(ErrorKind::Busy);
                    let resp = wire::ClientResponse {
                        outcome: wire::ClientOutcome::Failed(wire::ClientError::Busy {
                            retry_after_ms: 10,
                        }),
                        eventual: None,
                    };
                    let _ = conn.respond(id, &resp);
                    return;
                }
                let (ctx, conn, handler) = (self.ctx.clone(), conn.clone(), self.me.clone());
                let read_at = conn.last_read_at();
                glommio::spawn_local(async move {
                    if let Some(at) = read_at {
                        ctx.st
                            .borrow()
                            .metrics
                            .stages
                            .frame_read_to_served
                            .record_between(at, std::time::Instant::now());
                    }
                    crate::node::frame_api::serve_request(&ctx, &conn, id, msg).await;
                    if let Some(h) = handler.upgrade() {
                        if let Some(n) = h.inflight.borrow_mut().get_mut(&conn.id()) {
                            *n = n.saturating_sub(1);
                        }
                    }
                })
                .detach();
            }
            (PeerRole::Node { node_id }, m) => {
                let me = self.ctx.cfg.cluster.node_id;
                match inbound_from_wire(me, node_id, &m, id) {
                    Ok(msgs) => self.route_raft(node_id, msgs),
                    Err(e) => {
                        self.ctx.st.borrow().metrics.error(ErrorKind::FrameDecode);
                        debug!(node_id, "unexpected frame from a peer: {e}");
                    }
                }
            }
            (PeerRole::Client { .. }, m) => {
                let _ = conn.send_error(
                    id,
                    wire::ErrorCode::Unsupported,
                    format!("{:?} is not served to clients", m.kind()),
                );
            }
        }
    }

    fn on_http_stream(
        &self,
        stream: ringraft_net::tls::NetStream,
        first_bytes: Vec<u8>,
    ) -> impl std::future::Future<Output = ()> {
        let ctx = self.ctx.clone();
        async move {
            crate::node::http_server::serve_client_http(ctx, stream, first_bytes).await;
        }
    }
}

/// Socket options from `[network]`.
pub(crate) fn socket_options(cfg: &Config) -> SocketOptions {
    let n = &cfg.network;
    SocketOptions {
        nodelay: n.tcp_nodelay,
        reuse_address: true,
        reuse_port: true,
        recv_buffer_bytes: (n.recv_buffer_bytes > 0).then_some(n.recv_buffer_bytes),
        send_buffer_bytes: (n.send_buffer_bytes > 0).then_some(n.send_buffer_bytes),
        keepalive: (n.tcp_keepalive_s > 0).then(|| KeepaliveOptions {
            idle_ms: n.tcp_keepalive_s * 1000,
            ..KeepaliveOptions::default()
        }),
        connect_timeout_ms: n.connect_timeout_ms,
        ..SocketOptions::default()
    }
}

/// Connection settings from the config, with TLS when `security` has it.
pub(crate) fn node_connection_config(cfg: &Config, security: &Security) -> ConnectionConfig {
    let mut c = connection_config(cfg);
    c.tls = security.tls().cloned();
    c
}

/// Connection settings from the config (plaintext).
pub(crate) fn connection_config(cfg: &Config) -> ConnectionConfig {
    let mut c = ConnectionConfig::new(LocalIdentity {
        cluster_id: cfg.cluster.cluster_id,
        role: PeerRole::Node {
            node_id: cfg.cluster.node_id,
        },
    });
    c.socket = socket_options(cfg);
    c.decoder = DecoderConfig {
        max_frame_bytes: cfg.network.max_frame_bytes,
        ..DecoderConfig::default()
    };
    c.send_queue = SendQueueConfig {
        max_frame_bytes: cfg.network.max_frame_bytes,
        max_queued_bytes: (cfg.network.max_frame_bytes * 2).max(4 << 20),
        ..SendQueueConfig::default()
    };
    c.handshake_timeout_ms = HANDSHAKE_TIMEOUT_MS;
    c.write_timeout_ms = WRITE_TIMEOUT_MS;
    c
}
