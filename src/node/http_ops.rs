//! The HTTP calls that span shards or change the cluster, executed on a node: the fan-out of
//! `/scan` and `/lease/list` over every shard, `POST /members/remove` and
//! `POST /transfer-leader`.
//!
//! A fan-out runs the same request once per shard (`shard=N` added) through the node's own
//! handler, so each part is routed, executed or forwarded to that shard's leader exactly like
//! a single-shard request; the answers are merged by [`http_kv::merge_bodies`]. A membership
//! call works shard by shard: the change is proposed where this node leads and forwarded over
//! the peer link to the shard's leader as an admin request where another node does. Removing the node that leads a
//! shard first hands that shard's leadership to another voter, then removes it. Every wait is
//! bounded by [`OPS_DEADLINE`]; an answer per shard says what became of it.

use std::rc::Rc;
use std::time::{Duration, Instant};

use ringraft_net::tls::CertIdentity;
use serde_json::{json, Value};

use crate::node::forward;
use crate::node::http::{Request, Response};
use crate::node::http_api;
use crate::node::http_kv;
use crate::node::http_server;
use crate::node::request::{ClientError, ClientReply, LeaderHint};
use crate::node::server::{self, CoreCtx};
use crate::raft::{ConfChange, GroupId};
use ringraft_net::message as wire;

/// Longest a membership call or leadership transfer waits for leadership to settle per shard.
pub(crate) const OPS_DEADLINE: Duration = Duration::from_secs(10);
/// Pause between attempts while leadership moves or another change is pending.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Runs `req` on every shard and merges the answers (the first non-200 answer is returned as
/// it is, naming its shard). Each part is authorized again with the caller's certificate.
pub(crate) async fn fan_out(
    ctx: &Rc<CoreCtx>,
    req: &Request,
    limit: usize,
    keys_only: bool,
    cert: Option<&CertIdentity>,
) -> Response {
    let mut bodies = Vec::new();
    for s in 0..ctx.cfg.runtime.shards_per_node {
        let sub = http_kv::shard_request(req, s);
        let resp = Box::pin(http_server::handle(ctx, &sub, false, cert)).await;
        if resp.status != 200 {
            return resp;
        }
        match serde_json::from_slice::<Value>(&resp.body) {
            Ok(v) => bodies.push(v),
            Err(e) => {
                return Response::error(502, &format!("shard {s} answered unreadable JSON: {e}"))
            }
        }
    }
    Response::json(200, &http_kv::merge_bodies(bodies, limit, keys_only))
}

/// Shards a per-shard call covers: `only`, or every shard.
fn shards(ctx: &CoreCtx, only: Option<u32>) -> Result<Vec<GroupId>, Response> {
    let n = ctx.cfg.runtime.shards_per_node as GroupId;
    match only {
        Some(s) if GroupId::from(s) >= n => Err(Response::error(
            400,
            &format!("shard {s} does not exist; this cluster has {n} shards"),
        )),
        Some(s) => Ok(vec![GroupId::from(s)]),
        None => Ok((0..n).collect()),
    }
}

fn failed_part(g: GroupId, e: &ClientError) -> (u16, Value) {
    let (s, mut body) = http_api::failure_json(e, true);
    body["shard"] = json!(g);
    body["ok"] = json!(false);
    (s, body)
}

fn answer(parts: Vec<(u16, Value)>, extra: Value) -> Response {
    // Any unknown outcome makes the whole answer unknown; otherwise the first refusal stands.
    let mut status = 200;
    for (s, _) in &parts {
        if status == 200 || *s == 504 {
            status = *s;
        }
    }
    let mut body = extra;
    body["shards"] = Value::Array(parts.into_iter().map(|(_, v)| v).collect());
    Response::json(status, &body)
}

async fn report(ctx: &Rc<CoreCtx>, g: GroupId) -> Option<crate::node::status::ShardReport> {
    server::cluster_status(ctx)
        .await
        .into_iter()
        .find(|r| r.shard == g)
}

/// `POST /members/remove`: removes `node_id` from every shard (or `only`).
pub(crate) async fn remove_member(ctx: &Rc<CoreCtx>, node_id: u64, only: Option<u32>) -> Response {
    let groups = match shards(ctx, only) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let me = ctx.cfg.cluster.node_id;
    let mut parts = Vec::new();
    for g in groups {
        let deadline = Instant::now() + OPS_DEADLINE;
        let part = loop {
            if Instant::now() >= deadline {
                break failed_part(g, &ClientError::Timeout);
            }
            // The leader being removed hands the shard to another voter first.
            if node_id == me {
                if let Some(r) = report(ctx, g).await {
                    if r.role == "Leader" {
                        let Some(to) = r.voters.iter().copied().find(|v| *v != me) else {
                            break failed_part(
                                g,
                                &ClientError::InvalidRequest(format!(
                                    "node {me} is the last voter of shard {g}; add and promote \
                                     another node first"
                                )),
                            );
                        };
                        let _ = server::transfer_leadership(ctx, g, to).await;
                        glommio::timer::sleep(RETRY_PAUSE * 3).await;
                        continue;
                    }
                }
            }
            match server::change_membership(ctx, g, ConfChange::Remove(node_id)).await {
                Ok(ClientReply::Committed { index }) => {
                    break (200, json!({ "shard": g, "ok": true, "index": index }))
                }
                Ok(_) => break (200, json!({ "shard": g, "ok": true })),
                Err(ClientError::NotLeader { leader: Some(h) }) => {
                    // Over the peer link to the shard's leader; when the node to remove is
                    // that leader, it is first asked to hand the shard to another voter.
                    let removing_leader = h.node_id == node_id;
                    let msg = if removing_leader {
                        let voters = report(ctx, g).await.map(|r| r.voters).unwrap_or_default();
                        let Some(to) = voters.into_iter().find(|v| *v != node_id) else {
                            break failed_part(
                                g,
                                &ClientError::InvalidRequest(format!(
                                    "node {node_id} is the last voter of shard {g}; add and \
                                     promote another node first"
                                )),
                            );
                        };
                        wire::AdminRequest::TransferLeadership { group: g, to }
                    } else {
                        wire::AdminRequest::Remove { group: g, node_id }
                    };
                    match forward::forward_admin(ctx, &h, msg).await {
                        Ok(Ok(_)) if removing_leader => {
                            glommio::timer::sleep(RETRY_PAUSE * 3).await
                        }
                        Ok(Ok(ClientReply::Committed { index })) => {
                            break (200, json!({ "shard": g, "ok": true, "index": index }))
                        }
                        Ok(Ok(_)) => break (200, json!({ "shard": g, "ok": true })),
                        Ok(Err(ClientError::NotLeader { .. } | ClientError::Busy { .. }))
                        | Err(_) => glommio::timer::sleep(RETRY_PAUSE).await,
                        Ok(Err(e)) => break failed_part(g, &e),
                    }
                }
                Err(ClientError::NotLeader { .. } | ClientError::Busy { .. }) => {
                    glommio::timer::sleep(RETRY_PAUSE).await
                }
                Err(e) => break failed_part(g, &e),
            }
        };
        parts.push(part);
    }
    answer(parts, json!({ "node_id": node_id }))
}

/// `POST /transfer-leader`: hands leadership of every shard (or `only`) to `to` (any other
/// voter when `None`).
pub(crate) async fn transfer_leader(
    ctx: &Rc<CoreCtx>,
    only: Option<u32>,
    to: Option<u64>,
) -> Response {
    let groups = match shards(ctx, only) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let me = ctx.cfg.cluster.node_id;
    let mut parts = Vec::new();
    for g in groups {
        let Some(rep) = report(ctx, g).await else {
            parts.push(failed_part(g, &ClientError::WrongShard { shard: g as u32 }));
            continue;
        };
        let target = match to {
            Some(t) => t,
            None => match rep.voters.iter().copied().find(|v| *v != rep.leader_id) {
                Some(t) => t,
                None => {
                    parts.push(failed_part(
                        g,
                        &ClientError::InvalidRequest(format!(
                            "shard {g} has no other voter to lead it"
                        )),
                    ));
                    continue;
                }
            },
        };
        if rep.role != "Leader" {
            if rep.leader_id == target {
                parts.push((200, json!({ "shard": g, "ok": true, "leader": target })));
                continue;
            }
            let Some(address) = rep.leader_address.clone().filter(|_| rep.leader_id != 0) else {
                parts.push(failed_part(g, &ClientError::NotLeader { leader: None }));
                continue;
            };
            let leader = LeaderHint {
                node_id: rep.leader_id,
                address,
            };
            let msg = wire::AdminRequest::TransferLeadership {
                group: g,
                to: target,
            };
            match forward::forward_admin(ctx, &leader, msg).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    parts.push(failed_part(g, &e));
                    continue;
                }
                Err(forward::NotSent(why)) => {
                    parts.push(failed_part(
                        g,
                        &ClientError::Unavailable(format!(
                            "the leader (node {}) is unreachable: {why}",
                            rep.leader_id
                        )),
                    ));
                    continue;
                }
            }
        } else if target == me {
            parts.push((200, json!({ "shard": g, "ok": true, "leader": me })));
            continue;
        } else if let Err(e) = server::transfer_leadership(ctx, g, target).await {
            parts.push(failed_part(g, &e));
            continue;
        }
        // Wait (bounded) until the shard has the new leader, so the answer is the outcome.
        let deadline = Instant::now() + OPS_DEADLINE;
        let part = loop {
            match report(ctx, g).await {
                Some(r) if r.leader_id == target => {
                    break (200, json!({ "shard": g, "ok": true, "leader": target }))
                }
                // The transfer started and may still complete: the outcome is unknown.
                _ if Instant::now() >= deadline => break failed_part(g, &ClientError::Timeout),
                _ => glommio::timer::sleep(RETRY_PAUSE).await,
            }
        };
        parts.push(part);
    }
    answer(parts, json!({}))
}
