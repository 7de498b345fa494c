//! Forwarding a client call from a follower to the leader over the node's existing peer link.
//!
//! A node that does not lead a key's shard (HTTP surface only: frame clients follow the
//! not-leader hint themselves) sends the call to the leader as an ordinary `ClientRequest`
//! (or `AdminRequest::Promote`) frame on the link this core already keeps to that peer, with
//! a request id from this core's [`ForwardTable`]; the leader serves it exactly like a frame
//! client's request (same admission, same exactly-once session) and answers on the same link
//! with the same id. No connection is opened per request.
//!
//! Truth of the answer:
//! - no live link, or the link refused the frame before queueing it: nothing reached the
//!   leader, the caller answers with its own not-leader refusal (not applied);
//! - the table is full: refused here, `Busy` (not applied);
//! - the leader answered: its answer is the answer (a refusal before proposing stays *not
//!   applied*; a not-leader answer naming a newer leader is retried there once);
//! - the link closed, the answer was unreadable, or no answer came within the request timeout
//!   after the frame was handed to the link: `ForwardBroken`, *outcome unknown* (504), never a
//!   refusal.
//!
//! Invariant: every entry of the table is removed exactly once (answer, link closed, or the
//! waiter's guard on timeout), so the count and byte totals never drift. One table per core;
//! it lives in the core's context and is only touched on that core's thread.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use ringraft_net::listener::Connection;
use ringraft_net::message::{self as wire, MessageRef};
use tracing::debug;

use crate::node::config::Config;
use crate::node::frame_api;
use crate::node::kv::WriteOp;
use crate::node::request::{
    busy, ClientError, ClientOp, ClientReply, ClientRequest, ClientResult, LeaderHint,
};
use crate::node::server::CoreCtx;
use crate::raft::{GroupId, NodeId};

/// Most forwards one core keeps waiting for an answer: the leader admits at most
/// `network.max_inflight_per_connection` requests per link (default 1 024) and answers the rest
/// Busy, so more waiting here would only queue refusals. The smaller of the two applies.
pub(crate) const MAX_FORWARDS_IN_FLIGHT: usize = 1_024;
/// Most request bytes (keys and values) one core keeps in flight to leaders: bounds the memory
/// the forwarded frames hold in the link's send queue and the answers they wait for, so that a
/// burst of large writes through a follower cannot crowd out Raft traffic on the shared link.
pub(crate) const MAX_FORWARD_BYTES: usize = 32 << 20;
/// Bytes charged per forward on top of its keys and values (frame header, archive framing).
pub(crate) const FORWARD_OVERHEAD_BYTES: usize = 128;
/// First request id of forwards: far from the small ids other requests on a link use, so a
/// stray answer is never mistaken for one (answers are also matched by link and kind).
pub(crate) const FORWARD_ID_BASE: u64 = 1 << 62;
/// Leaders tried per call: the hinted one, then once more when it names a newer leader.
pub(crate) const MAX_FORWARD_ATTEMPTS: usize = 2;

/// The table is at its count or byte bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableFull;

struct Pending {
    conn: u64,
    bytes: usize,
    tx: flume::Sender<wire::Message>,
}

/// Forwards of one core waiting for the leader's answer, by request id; bounded in count and
/// bytes.
pub(crate) struct ForwardTable {
    max_count: usize,
    max_bytes: usize,
    next_id: u64,
    bytes: usize,
    entries: HashMap<u64, Pending>,
}

impl ForwardTable {
    /// An empty table admitting at most `max_count` forwards and `max_bytes` bytes at once.
    pub(crate) fn new(max_count: usize, max_bytes: usize) -> ForwardTable {
        ForwardTable {
            max_count,
            max_bytes,
            next_id: FORWARD_ID_BASE,
            bytes: 0,
            entries: HashMap::new(),
        }
    }

    /// The table of a node with this configuration: at most [`MAX_FORWARDS_IN_FLIGHT`] or the
    /// leader's per-link admission (`network.max_inflight_per_connection`), whichever is
    /// smaller, and [`MAX_FORWARD_BYTES`].
    pub(crate) fn for_config(cfg: &Config) -> ForwardTable {
        ForwardTable::new(
            MAX_FORWARDS_IN_FLIGHT.min(cfg.network.max_inflight_per_connection),
            MAX_FORWARD_BYTES,
        )
    }

    /// Admits one forward of `bytes` on link `conn`: its request id and where its answer will
    /// arrive. Refused when the count or the bytes would pass their bound.
    pub(crate) fn admit(
        &mut self,
        conn: u64,
        bytes: usize,
    ) -> Result<(u64, flume::Receiver<wire::Message>), TableFull> {
        let total = self.bytes.checked_add(bytes).ok_or(TableFull)?;
        if self.entries.len() >= self.max_count || total > self.max_bytes {
            return Err(TableFull);
        }
        let mut id = self.next_id;
        while self.entries.contains_key(&id) {
            id = id.wrapping_add(1).max(FORWARD_ID_BASE);
        }
        self.next_id = id.wrapping_add(1).max(FORWARD_ID_BASE);
        let (tx, rx) = flume::bounded(1);
        self.entries.insert(id, Pending { conn, bytes, tx });
        self.bytes = total;
        Ok((id, rx))
    }

    fn take(&mut self, id: u64) -> Option<Pending> {
        let p = self.entries.remove(&id)?;
        self.bytes = self.bytes.saturating_sub(p.bytes);
        Some(p)
    }

    /// Delivers the answer `msg` to forward `id` if it was sent on link `conn`; whether it was
    /// one of ours.
    pub(crate) fn complete(&mut self, conn: u64, id: u64, msg: wire::Message) -> bool {
        match self.entries.get(&id) {
            Some(p) if p.conn == conn => {}
            _ => return false,
        }
        if let Some(p) = self.take(id) {
            let _ = p.tx.try_send(msg);
        }
        true
    }

    /// Forgets forward `id` (its waiter gave up, or the frame was never queued).
    pub(crate) fn cancel(&mut self, id: u64) {
        self.take(id);
    }

    /// Link `conn` closed: every forward sent on it is answered "broken" (its waiter sees the
    /// channel close). Returns how many.
    pub(crate) fn fail_link(&mut self, conn: u64) -> usize {
        let ids: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, p)| p.conn == conn)
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            self.take(*id);
        }
        ids.len()
    }

    /// Forwards waiting now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of the forwards waiting now.
    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.bytes
    }
}

/// Called for every response frame a peer link delivers: hands a `ClientResponse` or
/// `AdminResponse` to the forward waiting for it. Returns whether the frame was one.
pub(crate) fn on_response(ctx: &CoreCtx, conn: &Connection, id: u64, msg: &MessageRef<'_>) -> bool {
    if !matches!(
        msg,
        MessageRef::ClientResponse(_) | MessageRef::AdminResponse(_)
    ) {
        return false;
    }
    let mut t = ctx.forwards.borrow_mut();
    if t.entries.get(&id).is_none_or(|p| p.conn != conn.id()) {
        return false;
    }
    match msg.to_owned_message() {
        Ok(m) => t.complete(conn.id(), id, m),
        // An answer that does not deserialize: its waiter sees a broken forward.
        Err(e) => {
            debug!(id, "unreadable forwarded answer: {e}");
            t.cancel(id);
            true
        }
    }
}

/// Called when a link closes: its forwards become outcome unknown.
pub(crate) fn on_link_closed(ctx: &CoreCtx, conn: &Connection) {
    let n = ctx.forwards.borrow_mut().fail_link(conn.id());
    if n > 0 {
        debug!(
            forwards = n,
            "link to the leader closed with forwards in flight"
        );
    }
}

/// Removes a forward's entry when its waiter ends, however it ends.
struct EntryGuard<'a>(&'a CoreCtx, u64);

impl Drop for EntryGuard<'_> {
    fn drop(&mut self) {
        self.0.forwards.borrow_mut().cancel(self.1);
    }
}

/// Why a call could not be forwarded at all (nothing reached the leader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NotSent(pub String);

/// Sends `msg` to `leader` on this core's link and waits for the answer. `Err(NotSent)` when
/// nothing was handed to the link; otherwise the answer or the outcome-unknown error.
async fn exchange<M: ringraft_net::message::Encode>(
    ctx: &CoreCtx,
    leader: NodeId,
    msg: &M,
    bytes: usize,
) -> Result<Result<wire::Message, ClientError>, NotSent> {
    let conn = ctx
        .st
        .borrow()
        .peers
        .get(&leader)
        .and_then(|l| l.conn.clone())
        .filter(|c| !c.is_closing())
        .ok_or_else(|| NotSent(format!("no open link to node {leader}")))?;
    let admitted = ctx
        .forwards
        .borrow_mut()
        .admit(conn.id(), bytes.saturating_add(FORWARD_OVERHEAD_BYTES));
    let Ok((id, rx)) = admitted else {
        return Ok(Err(busy()));
    };
    let _guard = EntryGuard(ctx, id);
    if let Err(e) = conn.send_request(id, msg) {
        return Err(NotSent(format!(
            "the link to node {leader} refused the frame: {e}"
        )));
    }
    let ms = ctx.cfg.network.request_timeout_ms;
    let got = crate::node::deadline::within(Duration::from_millis(ms), rx.recv_async()).await;
    Ok(match got {
        Some(Ok(m)) => Ok(m),
        Some(Err(_)) => Err(ClientError::ForwardBroken(format!(
            "the link to the leader (node {leader}) closed before its answer"
        ))),
        None => Err(ClientError::ForwardBroken(format!(
            "no answer from the leader (node {leader}) within {ms} ms"
        ))),
    })
}

/// A newer leader named by a not-leader answer, if it is worth one more try.
fn newer_leader(r: &ClientResult, tried: NodeId, me: NodeId) -> Option<LeaderHint> {
    match r {
        Err(ClientError::NotLeader { leader: Some(h) })
            if h.node_id != tried && h.node_id != me =>
        {
            Some(h.clone())
        }
        _ => None,
    }
}

/// Bytes of the values a call carries (its key is counted apart).
fn value_len(op: &ClientOp) -> usize {
    match op {
        ClientOp::Write(WriteOp::Put { value, .. }) => value.len(),
        ClientOp::Write(WriteOp::CasValue { expected, new, .. }) => new
            .len()
            .saturating_add(expected.as_ref().map_or(0, Vec::len)),
        ClientOp::Write(WriteOp::CasVersion { new, .. }) => new.len(),
        _ => 0,
    }
}

/// Forwards a key-value call to `leader`. `Err(NotSent)`: nothing reached any leader (the
/// caller answers with its own not-leader refusal).
pub(crate) async fn forward_client(
    ctx: &Rc<CoreCtx>,
    leader: &LeaderHint,
    req: ClientRequest,
) -> Result<ClientResult, NotSent> {
    let bytes = req
        .op
        .routing_key()
        .len()
        .saturating_add(value_len(&req.op));
    let msg = frame_api::to_wire_request(req).map_err(|e| NotSent(e.to_string()))?;
    let wire::ClientCommand::Single(op) = &msg.command else {
        return Err(NotSent("a forward carries one operation".into()));
    };
    let me = ctx.cfg.cluster.node_id;
    let mut target = leader.node_id;
    let mut answer = client_answer(op, exchange(ctx, target, &msg, bytes).await?);
    for _ in 1..MAX_FORWARD_ATTEMPTS {
        let Some(h) = newer_leader(&answer, target, me) else {
            break;
        };
        target = h.node_id;
        match exchange(ctx, target, &msg, bytes).await {
            Ok(a) => answer = client_answer(op, a),
            // Nothing reached the newer leader: the first leader's refusal stands.
            Err(NotSent(why)) => {
                debug!(leader = target, "forward not sent: {why}");
                break;
            }
        }
    }
    Ok(answer)
}

/// The node result of a forwarded key-value call from what the leader's link delivered.
fn client_answer(op: &wire::ClientOp, got: Result<wire::Message, ClientError>) -> ClientResult {
    match got? {
        wire::Message::ClientResponse(resp) => match resp.outcome {
            wire::ClientOutcome::Single(o) => frame_api::from_outcome(op, o),
            wire::ClientOutcome::Failed(e) => Err(e),
            wire::ClientOutcome::Batch(_) => Err(ClientError::ForwardBroken(
                "the leader answered a single call with a batch".into(),
            )),
            wire::ClientOutcome::Watch(_) => Err(ClientError::ForwardBroken(
                "the leader answered a single call with a watch stream".into(),
            )),
        },
        other => Err(ClientError::ForwardBroken(format!(
            "the leader answered with a {:?} frame",
            other.kind()
        ))),
    }
}

/// Forwards the promotion of `node_id` in `group` to `leader` (see [`forward_client`]).
pub(crate) async fn forward_promote(
    ctx: &Rc<CoreCtx>,
    leader: &LeaderHint,
    group: GroupId,
    node_id: NodeId,
) -> Result<ClientResult, NotSent> {
    forward_admin(ctx, leader, wire::AdminRequest::Promote { group, node_id }).await
}

/// Forwards an admin request for one shard (a membership change, a leadership transfer) to
/// `leader`, which runs it like an admin frame: `Committed` with the log index when it was
/// done, the leader's refusal, or outcome unknown when the link broke after sending.
pub(crate) async fn forward_admin(
    ctx: &Rc<CoreCtx>,
    leader: &LeaderHint,
    msg: wire::AdminRequest,
) -> Result<ClientResult, NotSent> {
    Ok(match exchange(ctx, leader.node_id, &msg, 0).await? {
        Err(e) => Err(e),
        Ok(wire::Message::AdminResponse(wire::AdminResponse::Done { index })) => {
            Ok(ClientReply::Committed { index })
        }
        Ok(wire::Message::AdminResponse(wire::AdminResponse::Failed(e))) => Err(e),
        Ok(other) => Err(ClientError::ForwardBroken(format!(
            "the leader answered an admin request with {:?}",
            other.kind()
        ))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pong() -> wire::Message {
        wire::Message::Pong(wire::Pong {
            nonce: 1,
            data: Vec::new(),
        })
    }

    #[test]
    fn the_table_is_bounded_in_count_and_bytes() {
        let mut t = ForwardTable::new(3, 1_000);
        let a = t.admit(7, 400).unwrap();
        let b = t.admit(7, 400).unwrap();
        assert_ne!(a.0, b.0);
        assert!(a.0 >= FORWARD_ID_BASE);
        // 400 + 400 + 201 bytes would pass 1 000: refused, and nothing is counted.
        assert_eq!(t.admit(7, 201).unwrap_err(), TableFull);
        assert_eq!((t.len(), t.bytes()), (2, 800));
        let c = t.admit(8, 200).unwrap();
        // The count bound: a fourth is refused even though it is empty.
        assert_eq!(t.admit(8, 0).unwrap_err(), TableFull);
        assert_eq!(t.admit(8, usize::MAX).unwrap_err(), TableFull);
        // An answer on the wrong link is not ours; on the right one it is delivered once.
        assert!(!t.complete(8, a.0, pong()));
        assert!(t.complete(7, a.0, pong()));
        assert!(!t.complete(7, a.0, pong()));
        assert_eq!(a.1.try_recv().unwrap(), pong());
        assert_eq!((t.len(), t.bytes()), (2, 600));
        // A closed link fails only its own forwards; their waiters see the channel close.
        assert_eq!(t.fail_link(7), 1);
        assert!(matches!(
            b.1.try_recv(),
            Err(flume::TryRecvError::Disconnected)
        ));
        assert!(c.1.try_recv().is_err() && !c.1.is_disconnected());
        t.cancel(c.0);
        t.cancel(c.0);
        assert_eq!(t.len(), 0);
        assert_eq!(t.bytes(), 0);
        // Room again after the entries left.
        for _ in 0..3 {
            t.admit(9, 300).unwrap();
        }
        assert_eq!(t.admit(9, 1).unwrap_err(), TableFull);
    }

    #[test]
    fn only_a_newer_leader_is_retried() {
        let hint = |n| {
            Err(ClientError::NotLeader {
                leader: Some(LeaderHint {
                    node_id: n,
                    address: "127.0.0.1:1".into(),
                }),
            })
        };
        assert_eq!(newer_leader(&hint(3), 2, 1).map(|h| h.node_id), Some(3));
        assert!(newer_leader(&hint(2), 2, 1).is_none());
        assert!(newer_leader(&hint(1), 2, 1).is_none());
        assert!(newer_leader(&Err(ClientError::Timeout), 2, 1).is_none());
    }
}
