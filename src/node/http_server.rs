//! HTTP connections: the client port's HTTP side (after the listener sniffed HTTP) and the
//! metrics port. One task per connection, requests served in order (HTTP/1.1 keep-alive and
//! pipelining), each bounded by the configured head and body limits (framing in `http`).
//!
//! A framing error is answered with its status (400, 411, 413, 417, 431, 505) and the connection
//! is then closed gracefully: the write side is shut, and whatever the client is still sending is
//! read and discarded for a bounded time, so the kernel closes with FIN rather than a reset that
//! could destroy the answer before the client reads it.
//!
//! Writes (and leader-only reads) that reach a node which does not lead the key's shard are
//! forwarded to the leader (one hop: the forwarded request carries `X-Ringraft-Forwarded`, and
//! a node never forwards such a request again), so the seed's `curl` commands work against any
//! node. If the leader cannot be reached the write was not sent and the client gets 503 with the
//! leader hint (not applied); if the forward breaks once the request was sent, the client gets
//! 504 with `"outcome": "unknown"`.
//! Owned by the node's HTTP surface.

use std::net::Shutdown;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use serde_json::json;
use tracing::debug;

use crate::node::http::{
    self, parse_request, HttpLimits, Parsed, Request, Response, CONTINUE_RESPONSE,
};
use crate::node::http_api::{self, ApiCall, Failure, FORWARDED_HEADER};
use crate::node::metrics::ErrorKind;
use crate::node::request::{ClientError, ClientReply};
use crate::node::server::{self, CoreCtx};
use crate::raft::{ConfChange, GroupId};

/// An idle keep-alive connection is closed after this long.
pub const HTTP_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Largest response body accepted from a leader when forwarding: a full scan page of large
/// values fits; anything larger is a broken leader, not an answer.
pub const MAX_FORWARDED_RESPONSE_BYTES: usize = 64 << 20;
/// Read chunk size.
pub const HTTP_READ_CHUNK_BYTES: usize = 16 << 10;
/// Longest time a closing connection keeps reading (and discarding) what the client still
/// sends, so that it sees the answer rather than a reset; bounded so a client cannot hold the
/// task open.
pub const LINGER_MS: u64 = 1_000;
/// Most bytes read and discarded while lingering: a refused body (413) up to this size is
/// drained, a larger one is cut off.
pub const LINGER_MAX_BYTES: usize = 4 << 20;

fn limits(ctx: &CoreCtx) -> HttpLimits {
    HttpLimits {
        max_header_bytes: ctx.cfg.network.http_max_header_bytes,
        max_body_bytes: ctx.cfg.network.http_max_body_bytes,
    }
}

/// Serves an HTTP connection of the client port; `first` are bytes already read by the sniffer.
pub async fn serve_client_http(ctx: Rc<CoreCtx>, stream: TcpStream, first: Vec<u8>) {
    serve_http(ctx, stream, first, false).await
}

/// Accepts and serves the metrics port (`/metrics`, `/health`, `/status`) until dropped.
pub async fn serve_metrics_port(ctx: Rc<CoreCtx>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let ctx = ctx.clone();
                glommio::spawn_local(serve_http(ctx, stream, Vec::new(), true)).detach();
            }
            Err(e) => {
                debug!("metrics accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

async fn serve_http(ctx: Rc<CoreCtx>, mut stream: TcpStream, mut buf: Vec<u8>, metrics_port: bool) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(HTTP_IDLE_TIMEOUT_MS)));
    let _ = stream.set_write_timeout(Some(Duration::from_millis(server::WRITE_TIMEOUT_MS)));
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
            crate::node::watch::http::serve_http_watch(ctx, stream, *req).await;
            return;
        }
        let mut resp = handle(&ctx, &req, metrics_port).await;
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
async fn linger_close(stream: TcpStream, chunk: &mut [u8]) {
    let _ = stream.shutdown(Shutdown::Write).await;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(LINGER_MS)));
    let mut stream = stream;
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
    stream: &mut TcpStream,
    resp: &Response,
    head_only: bool,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(resp.body.len() + 160);
    resp.write_to(&mut out, head_only);
    ctx.st.borrow().metrics.bytes_out.add(out.len() as u64);
    stream.write_all(&out).await?;
    stream.flush().await
}

async fn handle(ctx: &Rc<CoreCtx>, req: &Request, metrics_port: bool) -> Response {
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
    let forwarded = req.header(FORWARDED_HEADER).is_some();
    match call {
        ApiCall::Client(c) => {
            let write = c.op.is_write();
            // The key is kept for the reply; the value moves on to the shard uncopied.
            let key = c.op.routing_key().to_vec();
            let r = server::execute(ctx, c).await;
            if let Err(ClientError::NotLeader { leader: Some(h) }) = &r {
                let addr = &h.address;
                if !forwarded {
                    if let Some(resp) = forward_or_fail(ctx, addr, req, write).await {
                        return resp;
                    }
                }
            }
            http_api::client_response(&key, write, &r)
        }
        ApiCall::Promote { node_id } => promote(ctx, req, node_id, forwarded).await,
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

async fn promote(ctx: &Rc<CoreCtx>, req: &Request, node_id: u64, forwarded: bool) -> Response {
    let mut results = Vec::new();
    let mut status = 200;
    for g in 0..ctx.cfg.runtime.shards_per_node as GroupId {
        let r = server::change_membership(ctx, g, ConfChange::Promote(node_id)).await;
        if let Err(ClientError::NotLeader { leader: Some(h) }) = &r {
            let addr = &h.address;
            if !forwarded && ctx.cfg.runtime.shards_per_node == 1 {
                if let Some(resp) = forward_or_fail(ctx, addr, req, true).await {
                    return resp;
                }
            }
        }
        results.push(match r {
            Ok(ClientReply::Committed { index }) => {
                json!({ "shard": g, "ok": true, "index": index })
            }
            Ok(_) => json!({ "shard": g, "ok": true }),
            Err(e) => {
                let (s, mut body) = http_api::http_status(&Failure::Node(&e), true);
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

/// What became of a request forwarded to the leader.
enum Forwarded {
    /// The leader answered; its answer is passed on.
    Answer(Response),
    /// Nothing was sent (no connection): the request was not executed by the leader.
    NotSent(String),
    /// The request was (at least partly) sent, then the exchange broke: the leader may have
    /// executed it.
    Broken(String),
}

/// Forwards `req` to the leader at `addr`: `Some` answer to send (the leader's, or 504 when the
/// forward broke after sending), `None` when nothing was sent (the caller answers with its own
/// not-leader error).
async fn forward_or_fail(
    ctx: &Rc<CoreCtx>,
    addr: &str,
    req: &Request,
    write: bool,
) -> Option<Response> {
    match forward(ctx, addr, req).await {
        Forwarded::Answer(resp) => Some(resp),
        Forwarded::NotSent(why) => {
            debug!(leader = addr, "forward not sent: {why}");
            None
        }
        Forwarded::Broken(why) => {
            debug!(leader = addr, "forward broke: {why}");
            Some(http_api::failure_response(
                &Failure::ForwardBroken {
                    leader: addr,
                    why: &why,
                },
                write,
            ))
        }
    }
}

async fn forward(ctx: &Rc<CoreCtx>, addr: &str, req: &Request) -> Forwarded {
    let Ok(sock) = addr.parse::<std::net::SocketAddr>() else {
        return Forwarded::NotSent(format!("leader address {addr:?} is not a socket address"));
    };
    let timeout = Duration::from_millis(ctx.cfg.network.request_timeout_ms);
    let mut stream = match TcpStream::connect_timeout(
        sock,
        Duration::from_millis(ctx.cfg.network.connect_timeout_ms),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => return Forwarded::NotSent(format!("connect failed: {e}")),
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    // A HEAD is forwarded as GET so the answer carries its body and is framed by its length;
    // the body is dropped when the answer is written.
    let method = if req.method == "HEAD" {
        "GET"
    } else {
        req.method.as_str()
    };
    let me = ctx.cfg.cluster.node_id.to_string();
    let mut out = Vec::with_capacity(req.body.len() + 256);
    http::write_request(
        &mut out,
        method,
        &req.target,
        addr,
        &[(FORWARDED_HEADER, &me)],
        &req.body,
    );
    if let Err(e) = stream.write_all(&out).await {
        return Forwarded::Broken(format!("sending failed: {e}"));
    }
    let mut raw = Vec::new();
    let mut chunk = vec![0u8; HTTP_READ_CHUNK_BYTES];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => {
                return Forwarded::Broken(
                    "the leader closed the connection before answering".into(),
                )
            }
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) => return Forwarded::Broken(format!("no answer: {e}")),
        }
        match http::parse_response(&raw, MAX_FORWARDED_RESPONSE_BYTES) {
            Ok(None) => {}
            Ok(Some(p)) => {
                debug!(leader = addr, status = p.status, "forwarded to the leader");
                let mut r = Response::text(p.status, p.content_type, String::new());
                r.body = p.body;
                r.headers.push(("X-Ringraft-Served-By", addr.to_string()));
                return Forwarded::Answer(r);
            }
            Err(e) => return Forwarded::Broken(format!("unreadable answer: {e}")),
        }
    }
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
