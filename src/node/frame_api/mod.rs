//! The binary client and admin API: `ClientRequest` / `AdminRequest` frames (from
//! `ringraft-net`) translated into the node's requests ([`convert`]), executed, and answered
//! with `ClientResponse` / `AdminResponse` frames carrying the same request id. A batch runs
//! its operations in order, each with its own outcome, and holds at most [`MAX_BATCH_OPS`];
//! a watch is served as a stream by the watch hub; admin requests (membership, leadership,
//! status) are in [`admin`]. Owned by the node.

use std::rc::Rc;

use ringraft_net::listener::Connection;
use ringraft_net::message as wire;

use crate::node::kv::WriteOp;
use crate::node::request::{ClientOp, ClientReply};
use crate::node::server::{self, CoreCtx};

mod admin;
mod convert;

pub(crate) use convert::{from_outcome, to_outcome, to_request, to_wire_request};

/// Most operations in one batch request.
pub(crate) const MAX_BATCH_OPS: usize = 1_024;

/// Most bytes the future of one request ([`serve_request`]) may take: each request runs as
/// its own task, and a task allocation above 1032 bytes misses glibc's per-thread cache (the
/// slow path of malloc and free, per request); the rest is left to the task's header and the
/// spawning closure.
#[cfg(test)]
pub(crate) const MAX_REQUEST_FUTURE_BYTES: usize = 896;

/// What one operation came to: its outcome, the staleness of an eventual read it served and
/// when it reached the node (`None`: refused before it was handed to its core).
type OpDone = (
    wire::OpOutcome,
    Option<wire::EventualRead>,
    Option<std::time::Instant>,
);

/// Runs one operation; also returns the staleness of an eventual read it served. The
/// operation is converted and handed to its core at once (not at the first poll), so the
/// returned future holds only what the wait and the answer need: the answer's receiver and
/// the op the answer reads back.
fn run_op(
    ctx: &Rc<CoreCtx>,
    op: wire::ClientOp,
    shard: u32,
) -> impl std::future::Future<Output = OpDone> + '_ {
    let started = to_request(op, shard, ctx).map(|req| {
        // The answer reads back only a scan's limit and a CAS's new value: any other op
        // (a put carries its key and value) is stood in for by a data-free one, uncopied.
        let op = match &req.op {
            ClientOp::Scan { .. }
            | ClientOp::Write(WriteOp::CasValue { .. } | WriteOp::CasVersion { .. }) => {
                req.op.clone()
            }
            _ => ClientOp::Write(WriteOp::Noop),
        };
        (op, server::start(ctx, req))
    });
    async move {
        let (op, started) = match started {
            Ok(s) => s,
            Err(e) => return (wire::OpOutcome::Err(e), None, None),
        };
        let (r, received) = match started {
            Ok(s) => {
                let received = s.received();
                (s.wait(ctx).await, Some(received))
            }
            Err(e) => (Err(e), None),
        };
        let eventual = match &r {
            Ok(ClientReply::Eventual { read, .. }) => Some(*read),
            _ => None,
        };
        (to_outcome(&op, r), eventual, received)
    }
}

/// Serves one client or admin request frame and queues the answer on `conn`. The frequent
/// case, one operation, is awaited in place; watches, batches and admin requests are boxed,
/// so every request task's allocation is sized for the one-operation case.
pub(crate) async fn serve_request(
    ctx: &Rc<CoreCtx>,
    conn: &Rc<Connection>,
    id: u64,
    msg: wire::Message,
) {
    match msg {
        wire::Message::ClientRequest(wire::ClientRequest {
            shard,
            command: wire::ClientCommand::Single(wire::ClientOp::Watch { filter, from }),
        }) => {
            Box::pin(crate::node::watch::serve::serve_frame_watch(
                ctx, conn, id, shard, filter, from,
            ))
            .await;
        }
        wire::Message::ClientRequest(wire::ClientRequest {
            shard,
            command: wire::ClientCommand::Single(op),
        }) => {
            let (o, eventual, received) = run_op(ctx, op, shard).await;
            let outcome = wire::ClientOutcome::Single(o);
            let _ = conn.respond(id, &wire::ClientResponse { outcome, eventual });
            if let Some(received) = received {
                let queued = std::time::Instant::now();
                ctx.st
                    .borrow()
                    .metrics
                    .stages
                    .received_to_reply_queued
                    .record_between(received, queued);
            }
        }
        wire::Message::ClientRequest(wire::ClientRequest {
            shard,
            command: wire::ClientCommand::Batch(ops),
        }) => {
            let resp = Box::pin(serve_batch(ctx, ops, shard)).await;
            let _ = conn.respond(id, &resp);
        }
        wire::Message::AdminRequest(req) => {
            let resp = Box::pin(admin::serve_admin(ctx, req)).await;
            let _ = conn.respond(id, &resp);
        }
        other => {
            let _ = conn.send_error(
                id,
                wire::ErrorCode::Unsupported,
                format!("{:?} is not a request", other.kind()),
            );
        }
    }
}

/// Runs a batch's operations in order, each with its own outcome.
async fn serve_batch(
    ctx: &Rc<CoreCtx>,
    ops: Vec<wire::ClientOp>,
    shard: u32,
) -> wire::ClientResponse {
    if ops.is_empty() || ops.len() > MAX_BATCH_OPS {
        let outcome = wire::ClientOutcome::Failed(wire::ClientError::InvalidRequest(format!(
            "a batch holds 1 to {MAX_BATCH_OPS} operations, not {}",
            ops.len()
        )));
        return wire::ClientResponse {
            outcome,
            eventual: None,
        };
    }
    let mut eventual: Option<wire::EventualRead> = None;
    let mut out = Vec::with_capacity(ops.len());
    for op in ops {
        let (o, ev, _) = run_op(ctx, op, shard).await;
        eventual = match (eventual, ev) {
            (Some(a), Some(b)) => Some(a.merge(b)),
            (a, b) => a.or(b),
        };
        out.push(o);
    }
    wire::ClientResponse {
        outcome: wire::ClientOutcome::Batch(out),
        eventual,
    }
}

#[cfg(test)]
mod tests;
