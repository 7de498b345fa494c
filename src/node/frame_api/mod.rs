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

/// Runs one operation; also returns the staleness of an eventual read it served.
async fn run_op(
    ctx: &Rc<CoreCtx>,
    op: wire::ClientOp,
    shard: u32,
) -> (wire::OpOutcome, Option<wire::EventualRead>) {
    match to_request(op, shard, ctx) {
        Ok(req) => {
            // The answer reads back only a scan's limit and a CAS's new value: any other op
            // (a put carries its key and value) is stood in for by a data-free one, uncopied.
            let op = match &req.op {
                ClientOp::Scan { .. }
                | ClientOp::Write(WriteOp::CasValue { .. } | WriteOp::CasVersion { .. }) => {
                    req.op.clone()
                }
                _ => ClientOp::Write(WriteOp::Noop),
            };
            let r = server::execute(ctx, req).await;
            let eventual = match &r {
                Ok(ClientReply::Eventual { read, .. }) => Some(*read),
                _ => None,
            };
            (to_outcome(&op, r), eventual)
        }
        Err(e) => (wire::OpOutcome::Err(e), None),
    }
}

/// Serves one client or admin request frame and queues the answer on `conn`.
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
            crate::node::watch::serve::serve_frame_watch(ctx, conn, id, shard, filter, from).await;
        }
        wire::Message::ClientRequest(req) => {
            let mut eventual: Option<wire::EventualRead> = None;
            let outcome = match req.command {
                wire::ClientCommand::Single(op) => {
                    let (o, ev) = run_op(ctx, op, req.shard).await;
                    eventual = ev;
                    wire::ClientOutcome::Single(o)
                }
                wire::ClientCommand::Batch(ops) if ops.is_empty() || ops.len() > MAX_BATCH_OPS => {
                    wire::ClientOutcome::Failed(wire::ClientError::InvalidRequest(format!(
                        "a batch holds 1 to {MAX_BATCH_OPS} operations, not {}",
                        ops.len()
                    )))
                }
                wire::ClientCommand::Batch(ops) => {
                    let mut out = Vec::with_capacity(ops.len());
                    for op in ops {
                        let (o, ev) = run_op(ctx, op, req.shard).await;
                        eventual = match (eventual, ev) {
                            (Some(a), Some(b)) => Some(a.merge(b)),
                            (a, b) => a.or(b),
                        };
                        out.push(o);
                    }
                    wire::ClientOutcome::Batch(out)
                }
            };
            let _ = conn.respond(id, &wire::ClientResponse { outcome, eventual });
        }
        wire::Message::AdminRequest(req) => {
            let resp = admin::serve_admin(ctx, req).await;
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

#[cfg(test)]
mod tests;
