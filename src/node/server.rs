//! The running node: start-up (config, logging, layout check, one executor per core), each
//! core's tasks (driver, persist loop, clock, inbox, peer dialer, listener, metrics endpoint),
//! request routing between cores, and orderly shutdown.
//!
//! Per core: the listener accepts on `listen_address` with SO_REUSEPORT (every core accepts), so
//! a connection may land on a core that does not own the shard it asks for; such a request is
//! forwarded over the mesh to the owning core and answered on the original connection. Peer
//! traffic is routed the same way, by group. Core 0 also serves the metrics port.
//!
//! Shutdown (SIGTERM/SIGINT): the main thread tells every core to stop; a core stops accepting
//! (the listener and its connections' reads end), waits up to [`DRAIN_TIMEOUT_MS`] for requests
//! in flight to be answered, syncs its WAL, and returns. The process then exits 0. A core that
//! fails (WAL error, port in use) makes the process exit non-zero with the reason on stderr and
//! in the log.
//! Owned by the node.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use ringraft_net::listener::{self, Connection, ConnectionConfig, Handler, ListenerConfig};
use ringraft_net::message::{self as wire, LocalIdentity, MessageRef, PeerRole};
use ringraft_net::socket::{KeepaliveOptions, SocketOptions};
use ringraft_net::{DecoderConfig, Frame, NetMetrics, SendQueueConfig};
use tracing::{debug, error, info, warn};

use crate::node::config::Config;
use crate::node::core::{self as node_core, CoreState, Reply};
use crate::node::http_api::ReadSettings;
use crate::node::metrics::{ErrorKind, NodeMetrics};
use crate::node::request::{busy, ClientError, ClientOp, ClientRequest, ClientResult, Consistency};
use crate::node::runtime::{self, core_of_shard, shard_of_key, shards_of_core, Event, Mesh};
use crate::node::status::ShardReport;
use crate::node::wire::{inbound_from_wire, Inbound};
use crate::raft::{ConfChange, GroupId, NodeId};

/// Longest wait for a port still held by a node that just died.
pub const PORT_PROBE_WAIT_MS: u64 = 5_000;
/// Longest wait for requests in flight at shutdown.
pub const DRAIN_TIMEOUT_MS: u64 = 2_000;
/// Longest wait for the handshake of a connection.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 2_000;
/// Bound on one blocked socket write.
pub const WRITE_TIMEOUT_MS: u64 = 5_000;
/// Pause between join attempts of a learner not yet accepted by every shard.
pub const JOIN_RETRY_MS: u64 = 1_000;
/// Pause between address re-announcements of an accepted learner.
pub const JOIN_REANNOUNCE_MS: u64 = 30_000;
/// Shard value in a client frame meaning "route by key, I do not know the shard".
pub const ANY_SHARD: u32 = u32::MAX;

/// Messages between cores.
pub enum CoreMsg {
    /// A client operation for a shard of the receiving core.
    Client {
        /// Shard.
        group: GroupId,
        /// Session.
        client_id: u64,
        /// Session sequence.
        seq: u64,
        /// Operation.
        op: ClientOp,
        /// Answer.
        reply: Reply,
    },
    /// Raft traffic from a peer for groups of the receiving core.
    Peer {
        /// Sending node.
        from: NodeId,
        /// Messages.
        msgs: Vec<Inbound>,
    },
    /// A membership change on one group.
    Membership {
        /// Group.
        group: GroupId,
        /// Change.
        change: ConfChange,
        /// Answer.
        reply: Reply,
    },
    /// Hand leadership of one group to another voter.
    Transfer {
        /// Group.
        group: GroupId,
        /// Target voter.
        to: NodeId,
        /// Answer.
        reply: Reply,
    },
    /// A peer address learned (learner join).
    Address {
        /// Node.
        node: NodeId,
        /// Its address.
        address: String,
    },
    /// Per-shard status of the receiving core.
    Status {
        /// Answer.
        reply: flume::Sender<Vec<ShardReport>>,
    },
    /// Register a watcher on a shard of the receiving core.
    Watch {
        /// Shard.
        group: GroupId,
        /// Keys followed.
        filter: crate::node::watch::WatchFilter,
        /// First revision (0 = from now).
        from: u64,
        /// Answer.
        reply: node_core::WatchReplyTx,
    },
}

/// What every task of one core shares.
pub struct CoreCtx {
    /// The core's state.
    pub st: Rc<RefCell<CoreState>>,
    /// Config.
    pub cfg: Arc<Config>,
    /// This core.
    pub core: usize,
    /// Inboxes of all cores.
    pub mesh: Mesh<CoreMsg>,
    /// Node metrics (all cores).
    pub metrics: Arc<NodeMetrics>,
    /// Wire metrics (all cores).
    pub net_metrics: Arc<NetMetrics>,
    /// Read policy.
    pub reads: ReadSettings,
    /// Set once shutdown began.
    pub stopping: Cell<bool>,
    /// Client requests being executed on this core.
    pub inflight: Cell<usize>,
}

impl CoreCtx {
    /// The shard owning `key`.
    pub fn shard_of(&self, key: &[u8]) -> GroupId {
        shard_of_key(key, self.cfg.runtime.shards_per_node) as GroupId
    }

    fn owner(&self, g: GroupId) -> usize {
        core_of_shard(g as usize, self.cfg.runtime.cores)
    }
}

/// Runs one client request to completion: routes it to its shard's core and waits (bounded by
/// `network.request_timeout_ms`) for the answer.
pub async fn execute(ctx: &Rc<CoreCtx>, req: ClientRequest) -> ClientResult {
    if ctx.stopping.get() {
        return Err(ClientError::Unavailable("the node is shutting down".into()));
    }
    let g = match (&req.op, req.shard) {
        // A scan reads the one shard it names: prefixes span shards, and the client scans
        // each and merges.
        (ClientOp::Scan { .. }, Some(s)) if s < ctx.cfg.runtime.shards_per_node => s as GroupId,
        (ClientOp::Scan { .. }, Some(s)) => {
            return Err(ClientError::WrongShard { shard: s as u32 })
        }
        (_, shard) => {
            let g = ctx.shard_of(req.op.routing_key());
            if shard.is_some_and(|s| s as GroupId != g) {
                return Err(ClientError::WrongShard { shard: g as u32 });
            }
            g
        }
    };
    ctx.inflight.set(ctx.inflight.get() + 1);
    let _guard = InflightGuard(ctx.clone());
    ask_owner(ctx, g, |reply| CoreMsg::Client {
        group: g,
        client_id: req.client_id,
        seq: req.seq,
        op: req.op,
        reply,
    })
    .await
}

/// Hands the message `make(reply)` to the core owning group `g` (this core: at once; another:
/// through its inbox, Busy when full) and waits, bounded by the request timeout, for the answer.
async fn ask_owner(
    ctx: &Rc<CoreCtx>,
    g: GroupId,
    make: impl FnOnce(Reply) -> CoreMsg,
) -> ClientResult {
    let (tx, rx) = flume::bounded(1);
    let owner = ctx.owner(g);
    let msg = make(tx);
    if owner == ctx.core {
        handle(&mut ctx.st.borrow_mut(), msg);
    } else {
        ctx.mesh.try_send(owner, msg).map_err(|e| {
            debug!(core = owner, "busy: core inbox: {e:?}");
            busy()
        })?;
    }
    wait_reply(ctx, rx).await
}

struct InflightGuard(Rc<CoreCtx>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.set(self.0.inflight.get().saturating_sub(1));
    }
}

async fn wait_reply(ctx: &CoreCtx, rx: flume::Receiver<ClientResult>) -> ClientResult {
    let timeout = Duration::from_millis(ctx.cfg.network.request_timeout_ms);
    match glommio::timer::timeout(timeout, async { Ok(rx.recv_async().await.ok()) }).await {
        Ok(Some(r)) => r,
        // The core dropped the request without answering (it stopped): a write may have been
        // proposed.
        Ok(None) => Err(ClientError::LeadershipLost),
        Err(_) => {
            ctx.st.borrow().metrics.error(ErrorKind::Timeout);
            Err(ClientError::Timeout)
        }
    }
}

/// Starts a membership change on group `g` (routed to its core) and waits for it to commit.
pub async fn change_membership(ctx: &Rc<CoreCtx>, g: GroupId, change: ConfChange) -> ClientResult {
    ask_owner(ctx, g, |reply| CoreMsg::Membership {
        group: g,
        change,
        reply,
    })
    .await
}

/// Starts handing leadership of group `g` to voter `to` (routed to the group's core); answered
/// once the transfer started.
pub async fn transfer_leadership(ctx: &Rc<CoreCtx>, g: GroupId, to: NodeId) -> ClientResult {
    ask_owner(ctx, g, |reply| CoreMsg::Transfer {
        group: g,
        to,
        reply,
    })
    .await
}

/// Per-shard status of every core.
pub async fn cluster_status(ctx: &Rc<CoreCtx>) -> Vec<ShardReport> {
    let mut out = ctx.st.borrow().status();
    for c in 0..ctx.mesh.cores() {
        if c == ctx.core {
            continue;
        }
        let (tx, rx) = flume::bounded(1);
        if ctx.mesh.try_send(c, CoreMsg::Status { reply: tx }).is_ok() {
            let got = glommio::timer::timeout(Duration::from_millis(500), async {
                Ok(rx.recv_async().await.ok())
            })
            .await;
            if let Ok(Some(v)) = got {
                out.extend(v);
            }
        }
    }
    out.sort_by_key(|v| v.shard);
    out
}

/// Sends a learned address to every core.
pub fn broadcast_address(ctx: &Rc<CoreCtx>, node: NodeId, address: &str) {
    ctx.st.borrow_mut().learn_address(node, address.to_string());
    for c in 0..ctx.mesh.cores() {
        if c != ctx.core {
            let _ = ctx.mesh.try_send(
                c,
                CoreMsg::Address {
                    node,
                    address: address.to_string(),
                },
            );
        }
    }
}

async fn inbox_loop(ctx: Rc<CoreCtx>, rx: flume::Receiver<CoreMsg>) {
    while let Ok(m) = rx.recv_async().await {
        handle(&mut ctx.st.borrow_mut(), m);
    }
}

/// Carries out one message on the core that owns its shard.
fn handle(s: &mut CoreState, m: CoreMsg) {
    match m {
        CoreMsg::Client {
            group,
            client_id,
            seq,
            op,
            reply,
        } => s.submit(group, client_id, seq, op, reply),
        CoreMsg::Peer { from, msgs } => s.step_inbound(from, msgs),
        CoreMsg::Membership {
            group,
            change,
            reply,
        } => s.change_membership(group, change, reply),
        CoreMsg::Transfer { group, to, reply } => s.transfer_leadership(group, to, reply),
        CoreMsg::Address { node, address } => s.learn_address(node, address),
        CoreMsg::Status { reply } => {
            let _ = reply.try_send(s.status());
        }
        CoreMsg::Watch {
            group,
            filter,
            from,
            reply,
        } => s.start_watch(group, filter, from, reply),
    }
}

/// The frame side of the listener (and of dialed peer connections).
pub struct NodeHandler {
    ctx: Rc<CoreCtx>,
    /// Answers awaited on connections this node dialed (learner join), by request id.
    pub awaiting: RefCell<BTreeMap<u64, flume::Sender<wire::Message>>>,
    /// Client requests being served, per connection id (bounded by
    /// `network.max_inflight_per_connection`; past it the request is answered Busy).
    inflight: RefCell<std::collections::HashMap<u64, usize>>,
    /// Itself, for the request tasks it spawns.
    me: std::rc::Weak<NodeHandler>,
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

impl Handler for NodeHandler {
    fn on_open(&self, conn: &Rc<Connection>) {
        let m = self.ctx.st.borrow().metrics.clone();
        m.connections_accepted.inc();
        m.connections_open.inc();
        debug!(peer = ?conn.peer(), addr = %conn.peer_addr(), "connection open");
    }

    fn on_close(&self, conn: &Rc<Connection>) {
        self.ctx.st.borrow().metrics.connections_open.dec();
        self.inflight.borrow_mut().remove(&conn.id());
        if let Some(r) = conn.close_reason() {
            debug!(peer = ?conn.peer(), "connection closed: {r}");
        }
    }

    fn on_frame(&self, conn: &Rc<Connection>, frame: Frame<'_>) {
        let id = frame.header.request_id;
        if frame.header.flags & ringraft_net::frame::FLAG_RESPONSE != 0 {
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
                let msg = match frame.message.to_owned_message() {
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
                    };
                    let _ = conn.respond(id, &resp);
                    return;
                }
                let (ctx, conn, handler) = (self.ctx.clone(), conn.clone(), self.me.clone());
                glommio::spawn_local(async move {
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

    fn on_http(
        &self,
        stream: glommio::net::TcpStream,
        first_bytes: Vec<u8>,
    ) -> impl std::future::Future<Output = ()> {
        let ctx = self.ctx.clone();
        async move {
            crate::node::http_server::serve_client_http(ctx, stream, first_bytes).await;
        }
    }
}

/// Socket options from `[network]`.
pub fn socket_options(cfg: &Config) -> SocketOptions {
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

/// Connection settings from the config.
pub fn connection_config(cfg: &Config) -> ConnectionConfig {
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

/// Keeps one outgoing connection per peer: dials (with backoff) whenever asked.
async fn dialer_loop(ctx: Rc<CoreCtx>, handler: Rc<NodeHandler>, rx: flume::Receiver<NodeId>) {
    let cfg = connection_config(&ctx.cfg);
    let dialing: Rc<RefCell<std::collections::BTreeSet<NodeId>>> = Rc::default();
    while let Ok(peer) = rx.recv_async().await {
        if ctx.stopping.get() {
            return;
        }
        if !dialing.borrow_mut().insert(peer) {
            continue;
        }
        let (ctx, handler, cfg, dialing) =
            (ctx.clone(), handler.clone(), cfg.clone(), dialing.clone());
        glommio::spawn_local(async move {
            let mut backoff =
                ringraft_net::backoff::Backoff::new(ringraft_net::backoff::BackoffConfig {
                    initial_ms: ctx.cfg.network.reconnect_backoff_ms_min,
                    max_ms: ctx.cfg.network.reconnect_backoff_ms_max,
                    max_attempts: None,
                    seed: ctx.cfg.cluster.node_id ^ peer,
                });
            loop {
                if ctx.stopping.get() {
                    break;
                }
                let live = ctx
                    .st
                    .borrow()
                    .peers
                    .get(&peer)
                    .and_then(|p| p.conn.as_ref().map(|c| !c.is_closing()))
                    .unwrap_or(false);
                if live {
                    break;
                }
                let addr = ctx.st.borrow().peers.get(&peer).map(|p| p.address.clone());
                let Some(Ok(sock)) = addr.map(|a| a.parse::<std::net::SocketAddr>()) else {
                    warn!(peer, "no usable address; not dialing");
                    break;
                };
                match listener::dial(sock, &cfg, handler.clone(), ctx.net_metrics.clone()).await {
                    Ok(conn) => {
                        info!(peer, %sock, "connected to peer");
                        if let Some(l) = ctx.st.borrow_mut().peers.get_mut(&peer) {
                            l.conn = Some(conn);
                        }
                        break;
                    }
                    Err(e) => {
                        ctx.st.borrow().metrics.error(ErrorKind::PeerConnection);
                        debug!(peer, %sock, "dial failed: {e}");
                        let d = backoff.next_delay().unwrap_or(Duration::from_millis(500));
                        glommio::timer::sleep(d).await;
                    }
                }
            }
            dialing.borrow_mut().remove(&peer);
        })
        .detach();
    }
}

/// Watches peer links and redials closed ones.
async fn link_watch_loop(ctx: Rc<CoreCtx>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(
            ctx.cfg.network.reconnect_backoff_ms_min.max(10),
        ))
        .await;
        if ctx.stopping.get() {
            return;
        }
        let s = &mut *ctx.st.borrow_mut();
        let mut redial = Vec::new();
        for (id, l) in s.peers.iter_mut() {
            let dead = l.conn.as_ref().is_none_or(|c| c.is_closing());
            if dead {
                l.conn = None;
                redial.push(*id);
            }
        }
        for id in redial {
            let _ = s.dial_tx.try_send(id);
        }
    }
}

/// A learner announces itself to every voter of `initial_cluster` until one leader accepted it
/// for every shard (AddLearner), and keeps re-announcing its address so a later leader knows it.
async fn join_loop(ctx: Rc<CoreCtx>, handler: Rc<NodeHandler>) {
    let cfg = connection_config(&ctx.cfg);
    let me = ctx.cfg.cluster.node_id;
    let voters: Vec<(NodeId, String)> = ctx
        .cfg
        .cluster
        .initial_cluster
        .iter()
        .filter(|m| m.role == crate::node::config::ROLE_FOLLOWER)
        .map(|m| (m.id, m.address.clone()))
        .collect();
    let mut next_id: u64 = 1;
    loop {
        let mut accepted = 0usize;
        for (voter, address) in &voters {
            let Ok(sock) = address.parse::<std::net::SocketAddr>() else {
                continue;
            };
            let Ok(conn) =
                listener::dial(sock, &cfg, handler.clone(), ctx.net_metrics.clone()).await
            else {
                continue;
            };
            for g in 0..ctx.cfg.runtime.shards_per_node as GroupId {
                let req = wire::AdminRequest::AddLearner {
                    group: g,
                    node_id: me,
                    address: ctx.cfg.cluster.listen_address.clone(),
                };
                let (tx, rx) = flume::bounded(1);
                next_id += 1;
                handler.awaiting.borrow_mut().insert(next_id, tx);
                if conn.send_request(next_id, &req).is_err() {
                    continue;
                }
                let got =
                    glommio::timer::timeout(Duration::from_millis(JOIN_RETRY_MS * 3), async {
                        Ok(rx.recv_async().await.ok())
                    })
                    .await;
                handler.awaiting.borrow_mut().remove(&next_id);
                if let Ok(Some(wire::Message::AdminResponse(r))) = got {
                    debug!(voter, shard = g, "join answer: {r:?}");
                    if matches!(r, wire::AdminResponse::Done { .. }) {
                        accepted += 1;
                    }
                }
            }
            conn.close();
        }
        // Until every shard accepted us, retry soon; afterwards re-announce the address now
        // and then (voters keep learned addresses in memory only).
        let every_shard = accepted >= ctx.cfg.runtime.shards_per_node;
        let pause = if every_shard {
            JOIN_REANNOUNCE_MS
        } else {
            JOIN_RETRY_MS
        };
        glommio::timer::sleep(Duration::from_millis(pause)).await;
        if ctx.stopping.get() {
            return;
        }
    }
}

/// Everything one core runs, until `stop_rx` fires.
async fn core_main(
    cfg: Arc<Config>,
    core: usize,
    mesh: Mesh<CoreMsg>,
    inbox: flume::Receiver<CoreMsg>,
    stop_rx: flume::Receiver<()>,
    metrics: Arc<NodeMetrics>,
    net_metrics: Arc<NetMetrics>,
) -> Result<(), String> {
    let groups: Vec<GroupId> = shards_of_core(core, cfg.runtime.cores, cfg.runtime.shards_per_node)
        .into_iter()
        .map(|g| g as GroupId)
        .collect();
    let core_metrics = metrics.cores[core].clone();
    let (st, chans) = CoreState::open(cfg.clone(), core, &groups, core_metrics, &metrics.shards)?;
    let durability = st.durability();
    let st = Rc::new(RefCell::new(st));
    let ctx = Rc::new(CoreCtx {
        st: st.clone(),
        cfg: cfg.clone(),
        core,
        mesh,
        metrics: metrics.clone(),
        net_metrics: net_metrics.clone(),
        reads: ReadSettings {
            default: Consistency::from_policy(cfg.raft.read_consistency.default_policy),
            allow_override: cfg.raft.read_consistency.allow_client_override,
        },
        stopping: Cell::new(false),
        inflight: Cell::new(0),
    });
    let handler = Rc::new_cyclic(|me| NodeHandler {
        ctx: ctx.clone(),
        awaiting: RefCell::new(BTreeMap::new()),
        inflight: RefCell::new(std::collections::HashMap::new()),
        me: me.clone(),
    });
    let listen = cfg.listen_addr().map_err(|e| e.0)?;
    let sock_opts = socket_options(&cfg);
    let tcp = listener::bind(listen, &sock_opts)
        .map_err(|e| format!("cannot listen on {listen} (cluster.listen_address): {e}"))?;
    let metrics_listener = if core == 0 && cfg.monitoring.metrics_enabled {
        let addr = cfg.metrics_addr().map_err(|e| e.0)?;
        Some(
            listener::bind(addr, &sock_opts)
                .map_err(|e| format!("cannot listen on {addr} (monitoring.metrics_port): {e}"))?,
        )
    } else {
        None
    };

    let mut tasks = vec![
        glommio::spawn_local(node_core::drive(st.clone(), chans.kick_rx)),
        glommio::spawn_local(node_core::persist_loop(
            st.clone(),
            chans.persist_rx,
            durability,
        )),
        glommio::spawn_local(node_core::tick_loop(
            st.clone(),
            Duration::from_millis(cfg.raft.tick_interval_ms),
        )),
        glommio::spawn_local(inbox_loop(ctx.clone(), inbox)),
        glommio::spawn_local(dialer_loop(ctx.clone(), handler.clone(), chans.dial_rx)),
        glommio::spawn_local(link_watch_loop(ctx.clone())),
    ];
    if core == 0 && cfg.is_joining_learner() {
        tasks.push(glommio::spawn_local(join_loop(
            ctx.clone(),
            handler.clone(),
        )));
    }
    {
        let s = st.borrow();
        for id in s.peers.keys() {
            let _ = s.dial_tx.try_send(*id);
        }
        s.kick();
    }
    let (listener_stop_tx, listener_stop_rx) = flume::bounded::<()>(1);
    let mut lcfg = ListenerConfig::new(LocalIdentity {
        cluster_id: cfg.cluster.cluster_id,
        role: PeerRole::Node {
            node_id: cfg.cluster.node_id,
        },
    });
    lcfg.connection = connection_config(&cfg);
    lcfg.max_connections = cfg.network.max_connections;
    let serve = glommio::spawn_local(listener::serve(
        tcp,
        Rc::new(lcfg),
        handler.clone(),
        net_metrics.clone(),
        async move {
            let _ = listener_stop_rx.recv_async().await;
        },
    ));
    let metrics_task = metrics_listener.map(|l| {
        glommio::spawn_local(crate::node::http_server::serve_metrics_port(ctx.clone(), l))
    });
    info!(core, shards = ?groups, %listen, "core started");

    // Run until told to stop, or until the core failed.
    loop {
        let stop = glommio::timer::timeout(Duration::from_millis(200), async {
            Ok(stop_rx.recv_async().await.ok())
        })
        .await;
        if stop.is_ok() {
            break;
        }
        let fatal = st.borrow().fatal.clone();
        if let Some(f) = fatal {
            ctx.stopping.set(true);
            let _ = listener_stop_tx.try_send(());
            return Err(f);
        }
    }
    info!(
        core,
        "stopping: no new connections, draining requests in flight"
    );
    ctx.stopping.set(true);
    let _ = listener_stop_tx.try_send(());
    serve.await;
    drop(metrics_task);
    let deadline = std::time::Instant::now() + Duration::from_millis(DRAIN_TIMEOUT_MS);
    while (ctx.inflight.get() > 0 || st.borrow().waiting() > 0)
        && std::time::Instant::now() < deadline
    {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    st.borrow_mut().fail_all("the node is shutting down");
    let synced = node_core::sync_wal(&st).await;
    for l in st.borrow_mut().peers.values_mut() {
        if let Some(c) = l.conn.take() {
            c.close();
        }
    }
    drop(tasks);
    synced.map_err(|e| format!("core {core}: final WAL sync: {e}"))?;
    info!(core, "stopped");
    Ok(())
}

/// A panic anywhere (a bug) stops the whole process at once with exit status 101: a node with
/// a dead core must not keep answering as if it were healthy (crash-stop is what Raft assumes).
fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        error!("panic: {info}");
        default(info);
        std::process::exit(101);
    }));
}

/// Checks that no other process listens on our ports, waiting up to [`PORT_PROBE_WAIT_MS`]: a
/// node killed a moment ago can hold its listening socket a little longer than its process
/// lives (its io_uring instance is torn down asynchronously by the kernel). The cores bind with SO_REUSEPORT (every
/// core accepts on the same port), which would otherwise let a second node process silently
/// share the port with a stale one and lose half of the connections to it.
fn probe_ports(cfg: &Config) -> Result<(), String> {
    let mut addrs = vec![(
        cfg.listen_addr().map_err(|e| e.0)?,
        "cluster.listen_address",
    )];
    if cfg.monitoring.metrics_enabled {
        addrs.push((
            cfg.metrics_addr().map_err(|e| e.0)?,
            "monitoring.metrics_port",
        ));
    }
    for (addr, key) in addrs {
        let deadline = std::time::Instant::now() + Duration::from_millis(PORT_PROBE_WAIT_MS);
        loop {
            match std::net::TcpListener::bind(addr) {
                Ok(_) => break,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    return Err(format!(
                        "cannot listen on {addr} ({key}): {e}; is another node running?"
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Starts the node and runs it until a termination signal or a fatal error.
pub fn run(cfg: Config) -> ExitCode {
    let cfg = Arc::new(cfg);
    let log_dir = cfg.node_log_dir();
    let log_path = match crate::node::logging::init(&log_dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ringraft server: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = crate::node::storage::check_layout(&cfg) {
        eprintln!("ringraft server: {e}");
        error!("{e}");
        return ExitCode::from(2);
    }
    match crate::node::storage::wal_fault_from_env() {
        Ok(None) => {}
        Ok(Some(_)) => warn!(
            "WAL fault injection is ON ({}=1, {}={:?}): WAL writes and syncs will fail on purpose; never run a real node like this",
            crate::node::storage::WAL_FAULT_ENABLE_ENV,
            ringraft_wal::fault::FAULT_ENV,
            std::env::var(ringraft_wal::fault::FAULT_ENV).unwrap_or_default()
        ),
        Err(e) => {
            eprintln!("ringraft server: {e}");
            error!("{e}");
            return ExitCode::from(2);
        }
    }
    install_panic_hook();
    if let Err(e) = probe_ports(&cfg) {
        eprintln!("ringraft server: {e}");
        error!("{e}");
        return ExitCode::from(2);
    }
    if let Err(e) = runtime::block_termination_signals() {
        eprintln!("ringraft server: cannot block signals: {e}");
        return ExitCode::from(2);
    }
    let cores = cfg.runtime.cores;
    let metrics = Arc::new(NodeMetrics::new(
        cfg.cluster.node_id,
        cores,
        cfg.runtime.shards_per_node,
    ));
    let net_metrics = Arc::new(NetMetrics::new());
    let (mesh, inboxes) = Mesh::<CoreMsg>::new(cores, runtime::CORE_INBOX_CAPACITY);
    let (events_tx, events_rx) = flume::bounded(runtime::EVENT_CHANNEL_CAPACITY);
    if let Err(e) = runtime::spawn_signal_waiter(events_tx.clone()) {
        eprintln!("ringraft server: cannot watch signals: {e}");
        return ExitCode::from(2);
    }
    let mut stops = Vec::new();
    let mut handles = Vec::new();
    for (core, inbox) in inboxes.into_iter().enumerate() {
        let (stop_tx, stop_rx) = flume::bounded(1);
        stops.push(stop_tx);
        let (cfg, mesh, metrics, net_metrics) = (
            cfg.clone(),
            mesh.clone(),
            metrics.clone(),
            net_metrics.clone(),
        );
        match runtime::spawn_core(core, &cfg.runtime.clone(), events_tx.clone(), move || {
            core_main(cfg, core, mesh, inbox, stop_rx, metrics, net_metrics)
        }) {
            Ok(h) => handles.push(h),
            Err(e) => {
                eprintln!("ringraft server: {e}");
                error!("{e}");
                for s in &stops {
                    let _ = s.try_send(());
                }
                return ExitCode::from(2);
            }
        }
    }
    drop(mesh);
    info!(
        node = cfg.cluster.node_id,
        listen = %cfg.cluster.listen_address,
        cores,
        shards = cfg.runtime.shards_per_node,
        log = %log_path.display(),
        "ringraft node started"
    );
    let mut failure: Option<String> = None;
    let mut exited = 0;
    while exited < cores {
        match events_rx.recv() {
            Ok(Event::Signal(sig)) => {
                info!(signal = sig, "termination signal: shutting down");
                for s in &stops {
                    let _ = s.try_send(());
                }
            }
            Ok(Event::CoreExited { core, result }) => {
                exited += 1;
                if let Err(e) = result {
                    error!(core, "core failed: {e}");
                    eprintln!("ringraft server: {e}");
                    failure.get_or_insert(e);
                    for s in &stops {
                        let _ = s.try_send(());
                    }
                }
            }
            Err(_) => break,
        }
    }
    for h in handles {
        let _ = h.join();
    }
    match failure {
        None => {
            info!("ringraft node stopped cleanly");
            ExitCode::SUCCESS
        }
        Some(_) => ExitCode::from(1),
    }
}
