//! Serving a watch: registration on the shard's core from whichever core holds the client's
//! connection ([`subscribe`]), the pump that turns the subscription's queue into stream items
//! with keep-alives ([`WatchPump`]), and the frame protocol stream ([`serve_frame_watch`]):
//! one `ClientResponse` with [`WatchReply::Events`] per batch, all carrying the watch request's
//! id, ended by one [`WatchReply::Cancelled`].
//!
//! Bounds: the subscription's queue is bounded by the hub; the stream waits while the
//! connection's send queue is above [`WATCH_CONNECTION_HIGH_WATER_BYTES`] (so the hub's queue
//! fills and cancels a watcher that does not read), and closes the connection after
//! [`WATCH_STALL_TIMEOUT_MS`] of no room.

use std::rc::Rc;
use std::time::{Duration, Instant};

use ringraft_net::listener::Connection;
use ringraft_net::message as wire;

use super::{Subscription, WatchCancel, WatchFilter, WatchReply};
use crate::node::limits::{
    MAX_KEY_BYTES, WATCH_CONNECTION_HIGH_WATER_BYTES, WATCH_PROGRESS_INTERVAL_MS,
    WATCH_STALL_TIMEOUT_MS,
};
use crate::node::request::{busy, ClientError};
use crate::node::runtime::core_of_shard;
use crate::node::server::{CoreCtx, CoreMsg};
use crate::raft::GroupId;

/// Checks a watch request: the shard exists, the filter's keys are within the key ceiling
/// and a single-key watch names a key.
pub fn check(ctx: &CoreCtx, shard: u32, filter: &WatchFilter) -> Result<GroupId, WatchCancel> {
    let bad = |m: String| Err(WatchCancel::Failed(ClientError::InvalidRequest(m)));
    if shard as usize >= ctx.cfg.runtime.shards_per_node {
        return Err(WatchCancel::Failed(ClientError::WrongShard { shard }));
    }
    match filter {
        WatchFilter::Key(k) if k.is_empty() => return bad("a key watch needs a key".into()),
        WatchFilter::Key(k) | WatchFilter::Prefix(k) if k.len() > MAX_KEY_BYTES => {
            return bad(format!("key over {MAX_KEY_BYTES} bytes"))
        }
        WatchFilter::Range { start, end }
            if start.len() > MAX_KEY_BYTES
                || end.as_ref().is_some_and(|e| e.len() > MAX_KEY_BYTES) =>
        {
            return bad(format!("range bound over {MAX_KEY_BYTES} bytes"))
        }
        _ => {}
    }
    Ok(shard as GroupId)
}

/// Registers a watcher on shard `g` (on its owning core: at once if that is this core, else
/// over the mesh, Busy when the inbox is full) and waits, within the request timeout, for it.
pub async fn subscribe(
    ctx: &Rc<CoreCtx>,
    g: GroupId,
    filter: WatchFilter,
    from: u64,
) -> Result<Subscription, WatchCancel> {
    if ctx.stopping.get() {
        return Err(WatchCancel::Failed(ClientError::Unavailable(
            "the node is shutting down".into(),
        )));
    }
    let (tx, rx) = flume::bounded(1);
    let owner = core_of_shard(g as usize, ctx.cfg.runtime.cores);
    if owner == ctx.core {
        ctx.st.borrow_mut().start_watch(g, filter, from, tx);
    } else {
        let msg = CoreMsg::Watch {
            group: g,
            filter,
            from,
            reply: tx,
        };
        ctx.mesh
            .try_send(owner, msg)
            .map_err(|_| WatchCancel::Failed(busy()))?;
    }
    let timeout = Duration::from_millis(ctx.cfg.network.request_timeout_ms);
    match glommio::timer::timeout(timeout, async { Ok(rx.recv_async().await.ok()) }).await {
        Ok(Some(r)) => r,
        Ok(None) => Err(WatchCancel::Failed(ClientError::Unavailable(
            "the shard's core stopped".into(),
        ))),
        Err(_) => Err(WatchCancel::Failed(ClientError::Timeout)),
    }
}

/// One item of a watch stream.
#[derive(Debug)]
pub enum StreamItem {
    /// Events (possibly none: progress or keep-alive) covering through `through`.
    Events {
        /// Events, in revision order.
        events: Vec<wire::WatchEvent>,
        /// Revision covered.
        through: u64,
    },
    /// The end, with its reason.
    End(WatchCancel),
}

/// Turns a subscription's queue into stream items: every batch, a keep-alive after
/// [`WATCH_PROGRESS_INTERVAL_MS`] of silence, and the end (the hub's reason, or "stopped").
#[derive(Debug)]
pub struct WatchPump {
    sub: Subscription,
    through: u64,
    done: bool,
}

impl WatchPump {
    /// A pump over `sub`.
    pub fn new(sub: Subscription) -> Self {
        let through = sub.covered;
        WatchPump {
            sub,
            through,
            done: false,
        }
    }

    /// The revision covered by what the pump handed out.
    pub fn through(&self) -> u64 {
        self.through
    }

    /// The next item; `None` after the end was handed out.
    pub async fn next(&mut self, ctx: &CoreCtx) -> Option<StreamItem> {
        if self.done {
            return None;
        }
        if ctx.stopping.get() {
            self.done = true;
            return Some(StreamItem::End(WatchCancel::Failed(
                ClientError::Unavailable("the node is shutting down".into()),
            )));
        }
        let wait = Duration::from_millis(WATCH_PROGRESS_INTERVAL_MS);
        let rx = self.sub.rx.clone();
        let got = glommio::timer::timeout(wait, async { Ok(rx.recv_async().await) }).await;
        Some(match got {
            Ok(Ok(b)) => {
                self.sub.taken(&b);
                self.through = self.through.max(b.through);
                StreamItem::Events {
                    events: b.events.iter().map(|e| (**e).clone()).collect(),
                    through: b.through,
                }
            }
            Ok(Err(_)) => {
                self.done = true;
                StreamItem::End(self.sub.shared.take_cancel().unwrap_or_else(|| {
                    WatchCancel::Failed(ClientError::Unavailable(
                        "the shard stopped serving watches on this node".into(),
                    ))
                }))
            }
            Err(_) => StreamItem::Events {
                events: Vec::new(),
                through: self.through,
            },
        })
    }
}

/// Waits until `conn` can take more bytes; false when it closed or stayed full for
/// [`WATCH_STALL_TIMEOUT_MS`] (then it is closed: the client is not reading).
async fn room(conn: &Connection) -> bool {
    let started = Instant::now();
    while conn.queued_bytes() > WATCH_CONNECTION_HIGH_WATER_BYTES {
        if conn.is_closing() {
            return false;
        }
        if started.elapsed() >= Duration::from_millis(WATCH_STALL_TIMEOUT_MS) {
            conn.close();
            return false;
        }
        glommio::timer::sleep(Duration::from_millis(2)).await;
    }
    !conn.is_closing()
}

fn respond(conn: &Connection, id: u64, reply: WatchReply) -> bool {
    let resp = wire::ClientResponse {
        outcome: wire::ClientOutcome::Watch(reply),
        // A watch's staleness is its `through` revision, carried by every batch.
        eventual: None,
    };
    conn.respond(id, &resp).is_ok()
}

/// Serves a frame protocol watch (request `id` on `conn`) until it ends or the connection
/// closes.
pub async fn serve_frame_watch(
    ctx: &Rc<CoreCtx>,
    conn: &Rc<Connection>,
    id: u64,
    shard: u32,
    filter: WatchFilter,
    from: u64,
) {
    let g = match check(ctx, shard, &filter) {
        Ok(g) => g,
        Err(c) => {
            respond(conn, id, WatchReply::Cancelled(c));
            return;
        }
    };
    let sub = match subscribe(ctx, g, filter, from).await {
        Ok(s) => s,
        Err(c) => {
            respond(conn, id, WatchReply::Cancelled(c));
            return;
        }
    };
    let mut pump = WatchPump::new(sub);
    while let Some(item) = pump.next(ctx).await {
        if !room(conn).await {
            return;
        }
        let reply = match item {
            StreamItem::Events { events, through } => WatchReply::Events { events, through },
            StreamItem::End(c) => WatchReply::Cancelled(c),
        };
        if !respond(conn, id, reply) {
            return;
        }
    }
}
