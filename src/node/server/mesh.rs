//! What one core's tasks share ([`CoreCtx`]), the messages cores send each other ([`CoreMsg`])
//! and the routing of a request to the core that owns its shard. Invariant: a shard's state is
//! touched only on its owning core; another core hands it a message through the bounded mesh
//! (a full inbox answers Busy, never grows). Every wait for an answer is bounded by
//! `network.request_timeout_ms`. Owned by the node's server.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringraft_net::NetMetrics;
use tracing::debug;

use crate::node::config::Config;
use crate::node::core::{reply_channel, CoreState, Reply, ReplyReceiver};
use crate::node::http_api::ReadSettings;
use crate::node::metrics::{ErrorKind, NodeMetrics};
use crate::node::request::{busy, ClientError, ClientOp, ClientRequest, ClientResult};
use crate::node::runtime::{core_of_shard, shard_of_key, Mesh};
use crate::node::status::ShardReport;
use crate::node::wire::Inbound;
use crate::raft::{ConfChange, GroupId, NodeId};

/// Messages between cores.
pub(crate) enum CoreMsg {
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
        /// When the request reached the node (the first stage of a write).
        received: Instant,
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
        reply: crate::node::core::WatchReplyTx,
    },
}

/// What every task of one core shares.
pub struct CoreCtx {
    /// The core's state.
    pub(crate) st: Rc<RefCell<CoreState>>,
    /// Config.
    pub(crate) cfg: Arc<Config>,
    /// This core.
    pub(crate) core: usize,
    /// Inboxes of all cores.
    pub(crate) mesh: Mesh<CoreMsg>,
    /// Node metrics (all cores).
    pub(crate) metrics: Arc<NodeMetrics>,
    /// Wire metrics (all cores).
    pub(crate) net_metrics: Arc<NetMetrics>,
    /// Read policy.
    pub(crate) reads: ReadSettings,
    /// Set once shutdown began.
    pub(crate) stopping: Cell<bool>,
    /// Client requests being executed on this core.
    pub(crate) inflight: Cell<usize>,
    /// Calls this core forwarded to a leader, waiting for its answer.
    pub(crate) forwards: RefCell<crate::node::forward::ForwardTable>,
    /// TLS and client authentication.
    pub(crate) security: Arc<crate::node::auth::Security>,
}

impl CoreCtx {
    /// The shard owning `key`.
    pub(crate) fn shard_of(&self, key: &[u8]) -> GroupId {
        shard_of_key(key, self.cfg.runtime.shards_per_node) as GroupId
    }

    pub(super) fn owner(&self, g: GroupId) -> usize {
        core_of_shard(g as usize, self.cfg.runtime.cores)
    }
}

/// Runs one client request to completion: routes it to its shard's core and waits (bounded by
/// `network.request_timeout_ms`) for the answer.
pub(crate) async fn execute(ctx: &Rc<CoreCtx>, req: ClientRequest) -> ClientResult {
    start(ctx, req)?.wait(ctx).await
}

/// A client request handed to its core, waiting for the answer (see [`Started::wait`]).
/// Counted in the core's in-flight requests until dropped.
pub(crate) struct Started {
    rx: ReplyReceiver,
    _inflight: InflightGuard,
    /// When the request reached the node (its write's first stage).
    received: Instant,
}

impl Started {
    /// When the request reached the node.
    pub(crate) fn received(&self) -> Instant {
        self.received
    }

    /// Waits, bounded by `network.request_timeout_ms`, for the answer.
    pub(crate) async fn wait(self, ctx: &CoreCtx) -> ClientResult {
        let Started { rx, _inflight, .. } = self;
        wait_reply(ctx, rx).await
    }
}

/// Routes one client request to its shard's core and hands it over, without waiting: what a
/// request task holds across its wait is then only the answer's receiver (the request's own
/// bytes went to the core), which keeps every request task's allocation small.
pub(crate) fn start(ctx: &Rc<CoreCtx>, req: ClientRequest) -> Result<Started, ClientError> {
    if ctx.stopping.get() {
        return Err(ClientError::Unavailable("the node is shutting down".into()));
    }
    let mut req = req;
    let g = match (&mut req.op, req.shard) {
        // A write's shard: its key's, its lease's, or the one its transaction's keys share.
        (ClientOp::Write(w), shard) => {
            crate::node::kv::route::route_write(w, shard, ctx.cfg.runtime.shards_per_node)?
                as GroupId
        }
        // A scan reads the one shard it names: prefixes span shards, and the client scans
        // each and merges. A lease list names its shard the same way.
        (ClientOp::Scan { .. } | ClientOp::LeaseList, Some(s))
            if s < ctx.cfg.runtime.shards_per_node =>
        {
            s as GroupId
        }
        (ClientOp::Scan { .. } | ClientOp::LeaseList, Some(s)) => {
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
    let received = Instant::now();
    ctx.inflight.set(ctx.inflight.get() + 1);
    let guard = InflightGuard(ctx.clone());
    let rx = hand_to_owner(ctx, g, |reply| CoreMsg::Client {
        group: g,
        client_id: req.client_id,
        seq: req.seq,
        op: req.op,
        reply,
        received,
    })?;
    Ok(Started {
        rx,
        _inflight: guard,
        received,
    })
}

/// Hands the message `make(reply)` to the core owning group `g` (this core: at once; another:
/// through its inbox, Busy when full) and returns the receiver of its answer.
fn hand_to_owner(
    ctx: &Rc<CoreCtx>,
    g: GroupId,
    make: impl FnOnce(Reply) -> CoreMsg,
) -> Result<ReplyReceiver, ClientError> {
    let (tx, rx) = reply_channel();
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
    Ok(rx)
}

/// Hands the message `make(reply)` to the core owning group `g` and waits, bounded by the
/// request timeout, for the answer.
async fn ask_owner(
    ctx: &Rc<CoreCtx>,
    g: GroupId,
    make: impl FnOnce(Reply) -> CoreMsg,
) -> ClientResult {
    let rx = hand_to_owner(ctx, g, make)?;
    wait_reply(ctx, rx).await
}

struct InflightGuard(Rc<CoreCtx>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.set(self.0.inflight.get().saturating_sub(1));
    }
}

async fn wait_reply(ctx: &CoreCtx, rx: ReplyReceiver) -> ClientResult {
    let timeout = Duration::from_millis(ctx.cfg.network.request_timeout_ms);
    match crate::node::deadline::within(timeout, rx).await {
        Some(Ok(r)) => r,
        // The core dropped the request without answering (it stopped): a write may have been
        // proposed.
        Some(Err(_)) => Err(ClientError::LeadershipLost),
        None => {
            ctx.st.borrow().metrics.error(ErrorKind::Timeout);
            Err(ClientError::Timeout)
        }
    }
}

/// Starts a membership change on group `g` (routed to its core) and waits for it to commit.
pub(crate) async fn change_membership(
    ctx: &Rc<CoreCtx>,
    g: GroupId,
    change: ConfChange,
) -> ClientResult {
    ask_owner(ctx, g, |reply| CoreMsg::Membership {
        group: g,
        change,
        reply,
    })
    .await
}

/// Starts handing leadership of group `g` to voter `to` (routed to the group's core); answered
/// once the transfer started.
pub(crate) async fn transfer_leadership(ctx: &Rc<CoreCtx>, g: GroupId, to: NodeId) -> ClientResult {
    ask_owner(ctx, g, |reply| CoreMsg::Transfer {
        group: g,
        to,
        reply,
    })
    .await
}

/// Per-shard status of every core.
pub(crate) async fn cluster_status(ctx: &Rc<CoreCtx>) -> Vec<ShardReport> {
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

pub(super) async fn inbox_loop(ctx: Rc<CoreCtx>, rx: flume::Receiver<CoreMsg>) {
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
            received,
        } => s.submit(group, client_id, seq, op, reply, received),
        CoreMsg::Peer { from, msgs } => s.step_inbound(from, msgs),
        CoreMsg::Membership {
            group,
            change,
            reply,
        } => s.change_membership(group, change, reply),
        CoreMsg::Transfer { group, to, reply } => s.transfer_leadership(group, to, reply),
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
