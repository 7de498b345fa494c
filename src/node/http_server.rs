//! HTTP connections: the client port's HTTP side (after the listener sniffed HTTP) and the
//! metrics port. One task per connection, requests served in order (HTTP/1.1 keep-alive and
//! pipelining), each bounded by the configured head and body limits (framing in `http`).
//!
//! A framing error is answered with its status (400, 411, 413, 417, 431, 505) and the connection
//! is then closed gracefully: the write side is shut, and whatever the client is still sending is
//! read and discarded for a bounded time, so the kernel closes with FIN rather than a reset that
//! could destroy the answer before the client reads it.
//!
//! Writes (and leader-only reads, and promotions) that reach a node which does not lead the
//! key's shard are forwarded to the leader over this core's existing peer link (`forward`):
//! one hop, since the leader serves a forwarded call like a frame client's and never forwards
//! it again; so the seed's `curl` commands work against any node. If nothing could be handed
//! to the link the client gets 503 with the leader hint (not applied); if the forward breaks or
//! times out once it was handed over, the client gets 504 with `"outcome": "unknown"`.
//! Owned by the node's HTTP surface.

use std::net::Shutdown;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpListener;
use serde_json::json;
use tracing::debug;

use ringraft_net::tls::{CertIdentity, NetStream, Role};

use crate::node::auth::{self, AuthError, Principal};
use crate::node::forward::{self, NotSent};
use crate::node::http::{parse_request, HttpLimits, Parsed, Request, Response, CONTINUE_RESPONSE};
use crate::node::http_api::{self, ApiCall};
use crate::node::metrics::ErrorKind;
use crate::node::request::{ClientError, ClientReply, ClientResult};
use crate::node::server::{self, CoreCtx};
use crate::raft::{ConfChange, GroupId};

/// An idle keep-alive connection is closed after this long.
pub(crate) const HTTP_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Read chunk size.
pub(crate) const HTTP_READ_CHUNK_BYTES: usize = 16 << 10;
/// Longest time a closing connection keeps reading (and discarding) what the client still
/// sends, so that it sees the answer rather than a reset; bounded so a client cannot hold the
/// task open.
pub(crate) const LINGER_MS: u64 = 1_000;
/// Most bytes read and discarded while lingering: a refused body (413) up to this size is
/// drained, a larger one is cut off.
pub(crate) const LINGER_MAX_BYTES: usize = 4 << 20;

fn limits(ctx: &CoreCtx) -> HttpLimits {
    HttpLimits {
        max_header_bytes: ctx.cfg.network.http_max_header_bytes,
        max_body_bytes: ctx.cfg.network.http_max_body_bytes,
    }
}

/// Serves an HTTP connection of the client port (plaintext or TLS); `first` are bytes already
/// read by the sniffer.
pub(crate) async fn serve_client_http(ctx: Rc<CoreCtx>, stream: NetStream, first: Vec<u8>) {
    serve_http(ctx, stream, first, false).await
}

/// Accepts and serves the metrics port (`/metrics`, `/health`, `/status`) until dropped.
pub(crate) async fn serve_metrics_port(ctx: Rc<CoreCtx>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let ctx = ctx.clone();
                glommio::spawn_local(serve_http(ctx, NetStream::plain(stream), Vec::new(), true))
                    .detach();
            }
            Err(e) => {
                debug!("metrics accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_http(ctx: Rc<CoreCtx>, mut stream: NetStream, mut buf: Vec<u8>, metrics_port: bool) {
    let _ = stream
        .tcp()
        .set_read_timeout(Some(Duration::from_millis(HTTP_IDLE_TIMEOUT_MS)));
    let _ = stream
        .tcp()
        .set_write_timeout(Some(Duration::from_millis(server::WRITE_TIMEOUT_MS)));
    let cert = stream.peer_identity().cloned();
    let lim = limits(&ctx);
    let mut chunk = vec![0u8; HTTP_READ_CHUNK_BYTES];
    let mut sent_continue = false;
    loop {
        let (req, used) = match parse_request(&buf, &lim) {
            Ok(Parsed::Complete(r, n)) => (r, n),
            Ok(Parsed::Partial { expect_continue }) => {
                if expect_continue && !sent_continue {
                    sent_continue = true;
                    if stream.write_all(CONTINUE_RESPONSE).await.is_err() {
                        return;
                    }
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        ctx.st.borrow().metrics.bytes_in.add(n as u64);
                        buf.extend_from_slice(&chunk[..n]);
                        continue;
                    }
                }
            }
            Err(e) => {
                ctx.st.borrow().metrics.error(ErrorKind::HttpBadRequest);
                if write_response(&ctx, &mut stream, &e.to_response(), false)
                    .await
                    .is_ok()
                {
                    linger_close(stream, &mut chunk).await;
                }
                return;
            }
        };
        buf.drain(..used);
        sent_continue = false;
        if !metrics_port && req.method == "GET" && req.path == "/watch" {
            // A watch streams until it ends, so it owns the connection; it is a read.
            match authorize_role(&ctx, &req, cert.as_ref(), Role::Read, "a watch") {
                Ok(_) => {
                    crate::node::watch::http::serve_http_watch(ctx, stream, *req).await;
                    return;
                }
                Err(mut resp) => {
                    resp.close |= !req.keep_alive || ctx.stopping.get();
                    if write_response(&ctx, &mut stream, &resp, false)
                        .await
                        .is_err()
                        || resp.close
                    {
                        return;
                    }
                    continue;
                }
            }
        }
        let mut resp = handle(&ctx, &req, metrics_port, cert.as_ref()).await;
        resp.close |= !req.keep_alive || ctx.stopping.get();
        let head_only = req.method == "HEAD";
        if write_response(&ctx, &mut stream, &resp, head_only)
            .await
            .is_err()
        {
            return;
        }
        if resp.close {
            linger_close(stream, &mut chunk).await;
            return;
        }
    }
}

/// Shuts the write side, then reads and discards what the client still sends (bounded by
/// [`LINGER_MS`] and [`LINGER_MAX_BYTES`]) before the socket is dropped.
async fn linger_close(mut stream: NetStream, chunk: &mut [u8]) {
    if stream.is_tls() {
        let _ = stream.close().await;
    } else {
        let _ = stream.tcp().shutdown(Shutdown::Write).await;
    }
    let _ = stream
        .tcp()
        .set_read_timeout(Some(Duration::from_millis(LINGER_MS)));
    let drain = async {
        let mut left = LINGER_MAX_BYTES;
        while left > 0 {
            match stream.read(chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
        Ok(())
    };
    let _ = glommio::timer::timeout(Duration::from_millis(LINGER_MS), drain).await;
}

async fn write_response(
    ctx: &CoreCtx,
    stream: &mut NetStream,
    resp: &Response,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(resp.body.len() + 160);
    resp.write_to(&mut out, head_only);
    ctx.st.borrow().metrics.bytes_out.add(out.len() as u64);
    stream.write_all(&out).await?;
    stream.flush().await
}

pub(crate) async fn handle(
    ctx: &Rc<CoreCtx>,
    req: &Request,
    metrics_port: bool,
    cert: Option<&CertIdentity>,
) -> Response {
    let routed = if metrics_port {
        http_api::route_metrics_port(req)
    } else {
        http_api::route(req, &ctx.reads)
    };
    let call = match routed {
        Ok(c) => c,
        Err(resp) => {
            if resp.status == 400 {
                ctx.st.borrow().metrics.error(ErrorKind::HttpBadRequest);
            }
            return resp;
        }
    };
    let call = crate::node::http_kv::lease_grant_call(call, |k| ctx.shard_of(k) as usize);
    // The metrics port serves only metrics, health and status (no state changes): open.
    let principal = if metrics_port {
        Principal {
            name: None,
            role: Role::Read,
        }
    } else {
        match authorize(ctx, req, cert, &call) {
            Ok(p) => p,
            Err(resp) => return resp,
        }
    };
    match call {
        ApiCall::Client(mut c) => {
            c.client_id = auth::session_id(&principal, c.client_id);
            let lease =
                http_api::grant_put_lease(&mut c.op, c.client_id, c.seq, |k| ctx.shard_of(k));
            let write = c.op.is_write();
            // The key is kept for the reply; the value moves on to the shard uncopied.
            let key = c.op.routing_key().to_vec();
            let respond = |r: &ClientResult| match lease {
                Some(id) => http_api::put_lease_response(&key, id, r),
                None => http_api::client_response(&key, write, r),
            };
            let r = server::execute(ctx, c).await;
            if let Err(ClientError::NotLeader { leader: Some(h) }) = &r {
                // The request is still at hand: route it again (only on this path) rather
                // than copy every value before a local attempt. The local attempt was not
                // applied, so a lease the put grants keeps the id chosen above.
                if let Ok(ApiCall::Client(mut again)) = http_api::route(req, &ctx.reads) {
                    again.client_id = auth::session_id(&principal, again.client_id);
                    if let Some(id) = lease {
                        http_api::set_put_lease(&mut again.op, id);
                    }
                    match forward::forward_client(ctx, h, again).await {
                        Ok(fr) => return respond(&fr),
                        Err(NotSent(why)) => debug!(leader = h.node_id, "forward not sent: {why}"),
                    }
                }
            }
            respond(&r)
        }
        ApiCall::Promote { node_id } => promote(ctx, node_id).await,
        ApiCall::FanOut { limit, keys_only } => {
            crate::node::http_ops::fan_out(ctx, req, limit, keys_only, cert).await
        }
        ApiCall::RemoveMember { node_id, shard } => {
            crate::node::http_ops::remove_member(ctx, node_id, shard).await
        }
        ApiCall::TransferLeader { shard, to } => {
            crate::node::http_ops::transfer_leader(ctx, shard, to).await
        }
        // Turned into a `Client` call above.
        ApiCall::LeaseGrant { .. } => Response::error(500, "lease grant was not resolved"),
        ApiCall::Status => Response::json(200, &status_json(ctx).await),
        ApiCall::Health => {
            let fatal = ctx.st.borrow().fatal.clone();
            match fatal {
                None => Response::json(
                    200,
                    &json!({ "status": "ok", "node_id": ctx.cfg.cluster.node_id }),
                ),
                Some(f) => Response::json(503, &json!({ "status": "failed", "error": f })),
            }
        }
        ApiCall::Metrics => {
            let mut text = ctx.metrics.render();
            for (name, v) in ctx.net_metrics.snapshot() {
                let name: String = name
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                text.push_str(&format!(
                    "# TYPE ringraft_net_{name} counter\nringraft_net_{name}{{node=\"{}\"}} {v}\n",
                    ctx.cfg.cluster.node_id
                ));
            }
            Response::text(200, "text/plain; version=0.0.4", text)
        }
    }
}

/// Promotes `node_id` in every shard; a shard this node does not lead is forwarded to its
/// leader over the peer link.
async fn promote(ctx: &Rc<CoreCtx>, node_id: u64) -> Response {
    let mut results = Vec::new();
    let mut status = 200;
    for g in 0..ctx.cfg.runtime.shards_per_node as GroupId {
        let mut r = server::change_membership(ctx, g, ConfChange::Promote(node_id)).await;
        if let Err(ClientError::NotLeader { leader: Some(h) }) = &r {
            match forward::forward_promote(ctx, h, g, node_id).await {
                Ok(fr) => r = fr,
                Err(NotSent(why)) => debug!(leader = h.node_id, "forward not sent: {why}"),
            }
        }
        results.push(match r {
            Ok(ClientReply::Committed { index }) => {
                json!({ "shard": g, "ok": true, "index": index })
            }
            Ok(_) => json!({ "shard": g, "ok": true }),
            Err(e) => {
                let (s, mut body) = http_api::failure_json(&e, true);
                // Any unknown outcome makes the whole answer unknown; otherwise the first
                // refusal's status stands.
                if status == 200 || s == 504 {
                    status = s;
                }
                body["shard"] = json!(g);
                body["ok"] = json!(false);
                body
            }
        });
    }
    Response::json(status, &json!({ "node_id": node_id, "shards": results }))
}

async fn status_json(ctx: &Rc<CoreCtx>) -> serde_json::Value {
    let shards = server::cluster_status(ctx).await;
    let s = ctx.st.borrow();
    let peers: Vec<serde_json::Value> = s
        .peers
        .iter()
        .map(|(id, l)| {
            json!({
                "node_id": id,
                "address": l.address,
                "connected": l.conn.as_ref().is_some_and(|c| !c.is_closing()),
            })
        })
        .collect();
    json!({
        "node_id": ctx.cfg.cluster.node_id,
        "listen_address": ctx.cfg.cluster.listen_address,
        "cores": ctx.cfg.runtime.cores,
        "shards_per_node": ctx.cfg.runtime.shards_per_node,
        "persistence": format!("{:?}", ctx.cfg.raft.persistence.strategy),
        "uptime_s": ctx.metrics.started.elapsed().as_secs(),
        "peers": peers,
        "shards": shards,
    })
}

/// The principal of `req` and whether it may make `call`: reads need `read`, writes `write`,
/// everything else (membership, transfer, snapshots and any call added later) `admin`; refusals
/// are 401 (no valid credentials, with `WWW-Authenticate: Bearer`) or 403, counted in /metrics.
fn authorize(
    ctx: &CoreCtx,
    req: &Request,
    cert: Option<&CertIdentity>,
    call: &ApiCall,
) -> Result<Principal, Response> {
    let (need, what) = match call {
        ApiCall::Client(c) if c.op.is_write() => (Role::Write, "a write"),
        ApiCall::LeaseGrant { .. } => (Role::Write, "a write"),
        ApiCall::Client(_)
        | ApiCall::FanOut { .. }
        | ApiCall::Status
        | ApiCall::Health
        | ApiCall::Metrics => (Role::Read, "a read"),
        ApiCall::Promote { .. } | ApiCall::RemoveMember { .. } => {
            (Role::Admin, "a membership change")
        }
        ApiCall::TransferLeader { .. } => (Role::Admin, "a leadership transfer"),
    };
    authorize_role(ctx, req, cert, need, what)
}

/// The principal of `req`, if it holds role `need` (`what` names the call in a refusal).
fn authorize_role(
    ctx: &CoreCtx,
    req: &Request,
    cert: Option<&CertIdentity>,
    need: Role,
    what: &str,
) -> Result<Principal, Response> {
    let refused = |e: AuthError| {
        let (status, kind) = match e {
            AuthError::Unauthenticated(_) => (401, ErrorKind::Unauthenticated),
            AuthError::Forbidden(_) => (403, ErrorKind::Forbidden),
        };
        ctx.st.borrow().metrics.error(kind);
        let mut r = Response::error(status, &e.to_string());
        if status == 401 {
            r.headers.push(("WWW-Authenticate", "Bearer".to_string()));
        }
        r
    };
    let p = ctx
        .security
        .http(cert, req.header("authorization"))
        .map_err(refused)?;
    auth::require(&p, need, what).map_err(refused)?;
    Ok(p)
}
