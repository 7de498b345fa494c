//! HTTP connections: the client port's HTTP side (after the listener sniffed HTTP) and the
//! metrics port. One task per connection, requests served in order (HTTP/1.1 keep-alive and
//! pipelining), each bounded by the configured head and body limits.
//!
//! Writes (and leader-only reads) that reach a node which does not lead the key's shard are
//! forwarded to the leader (one hop: the forwarded request carries `X-Ringraft-Forwarded`, and
//! a node never forwards such a request again), so the seed's `curl` commands work against any
//! node. If the leader is unknown or unreachable the client gets 503 with the leader hint.
//! Owned by the node (issue 6).

use std::rc::Rc;
use std::time::Duration;

use futures_lite::io::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use serde_json::json;
use tracing::debug;

use crate::node::http::{parse_request, HttpLimits, Parsed, Request, Response, CONTINUE_RESPONSE};
use crate::node::http_api::{self, ApiCall, FORWARDED_HEADER};
use crate::node::metrics::ErrorKind;
use crate::node::request::{ClientError, ClientReply};
use crate::node::server::{self, CoreCtx};
use crate::raft::{ConfChange, GroupId};

/// An idle keep-alive connection is closed after this long.
pub const HTTP_IDLE_TIMEOUT_MS: u64 = 30_000;
/// Largest response accepted from a leader when forwarding.
pub const MAX_FORWARDED_RESPONSE_BYTES: usize = 64 << 20;
/// Read chunk size.
pub const HTTP_READ_CHUNK_BYTES: usize = 16 << 10;

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
        let parsed = parse_request(&buf, &lim);
        let (req, used) = match parsed {
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
                let _ = write_response(&ctx, &mut stream, &e.to_response()).await;
                return;
            }
        };
        buf.drain(..used);
        sent_continue = false;
        let resp = handle(&ctx, &req, metrics_port).await;
        let close = resp.close || !req.keep_alive || ctx.stopping.get();
        let mut resp = resp;
        resp.close = close;
        if req.method == "HEAD" {
            resp.body.clear();
        }
        if write_response(&ctx, &mut stream, &resp).await.is_err() || close {
            let _ = stream.close().await;
            return;
        }
    }
}

async fn write_response(
    ctx: &CoreCtx,
    stream: &mut TcpStream,
    resp: &Response,
) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(resp.body.len() + 160);
    resp.write_to(&mut out);
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
            let op = c.op.clone();
            let r = server::execute(ctx, c).await;
            if let Err(ClientError::NotLeader { leader: Some(h) }) = &r {
                if !forwarded {
                    if let Some(resp) = forward(ctx, &h.address, req).await {
                        return resp;
                    }
                }
            }
            http_api::client_response(&op, &r)
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
    let mut all_ok = true;
    for g in 0..ctx.cfg.runtime.shards_per_node as GroupId {
        let r = server::change_membership(ctx, g, ConfChange::Promote(node_id)).await;
        if let Err(ClientError::NotLeader { leader: Some(h) }) = &r {
            if !forwarded && ctx.cfg.runtime.shards_per_node == 1 {
                if let Some(resp) = forward(ctx, &h.address, req).await {
                    return resp;
                }
            }
        }
        all_ok &= r.is_ok();
        results.push(match r {
            Ok(ClientReply::Committed { index }) => {
                json!({ "shard": g, "ok": true, "index": index })
            }
            Ok(_) => json!({ "shard": g, "ok": true }),
            Err(e) => json!({ "shard": g, "ok": false, "error": e.to_string() }),
        });
    }
    Response::json(
        if all_ok { 200 } else { 503 },
        &json!({ "node_id": node_id, "shards": results }),
    )
}

/// Sends `req` to the leader at `addr` and returns its answer. `None`: the request never
/// reached the leader (no connection, or it could not be written), so it was not applied and
/// the caller answers with the NotLeader hint. Once the request was written, every failure
/// (connection broken, timeout, unreadable answer) is answered 504 "outcome unknown": the
/// leader may have proposed the write, and it may commit.
async fn forward(ctx: &Rc<CoreCtx>, addr: &str, req: &Request) -> Option<Response> {
    forward_to(
        addr,
        Duration::from_millis(ctx.cfg.network.connect_timeout_ms),
        Duration::from_millis(ctx.cfg.network.request_timeout_ms),
        ctx.cfg.cluster.node_id,
        req,
    )
    .await
}

async fn forward_to(
    addr: &str,
    connect_timeout: Duration,
    timeout: Duration,
    node_id: u64,
    req: &Request,
) -> Option<Response> {
    let sock: std::net::SocketAddr = addr.parse().ok()?;
    let mut stream = TcpStream::connect_timeout(sock, connect_timeout)
        .await
        .ok()?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let mut out = format!(
        "{} {} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{FORWARDED_HEADER}: {}\r\nConnection: close\r\n\r\n",
        req.method,
        req.target,
        req.body.len(),
        node_id
    )
    .into_bytes();
    out.extend_from_slice(&req.body);
    stream.write_all(&out).await.ok()?;
    let broken = |why: String| {
        debug!(leader = addr, "forward broke after sending: {why}");
        let e = ClientError::ForwardBroken(format!("leader {addr}: {why}"));
        http_api::client_response_error(&e)
    };
    let mut raw = Vec::new();
    let mut chunk = vec![0u8; HTTP_READ_CHUNK_BYTES];
    loop {
        match stream.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                if raw.len() > MAX_FORWARDED_RESPONSE_BYTES {
                    return Some(broken(format!(
                        "answer over {MAX_FORWARDED_RESPONSE_BYTES} bytes"
                    )));
                }
            }
            Err(e) => return Some(broken(e.to_string())),
        }
    }
    Some(match parse_response(&raw) {
        Some((status, body)) => {
            debug!(leader = addr, status, "forwarded to the leader");
            let mut r = Response::json(status, &serde_json::Value::Null);
            r.body = body;
            r.headers.push(("X-Ringraft-Served-By", addr.to_string()));
            r
        }
        None => broken(format!("no complete HTTP answer ({} bytes)", raw.len())),
    })
}

/// Status code and body of a complete HTTP response.
fn parse_response(raw: &[u8]) -> Option<(u16, Vec<u8>)> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split(' ').nth(1)?.parse::<u16>().ok()?;
    Some((status, raw[end + 4..].to_vec()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forwarded_responses() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
        assert_eq!(parse_response(raw), Some((200, b"{\"ok\":true}".to_vec())));
        assert_eq!(parse_response(b"garbage"), None);
        assert_eq!(parse_response(b"HTTP/1.1 abc\r\n\r\n"), None);
    }

    /// A leader that receives a forwarded write and dies (closes) before answering: the
    /// follower must answer "outcome unknown" (504), never 503 "not leader".
    #[test]
    fn a_forward_broken_after_sending_is_outcome_unknown() {
        let leader = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = leader.local_addr().unwrap().to_string();
        let got = std::thread::spawn(move || {
            use std::io::Read;
            let (mut s, _) = leader.accept().unwrap();
            let mut buf = [0u8; 4096];
            let mut seen = Vec::new();
            while !seen.windows(2).any(|w| w == b"}") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            seen
            // `s` drops here: the connection closes without an answer.
        });
        let req = Request {
            method: "POST".into(),
            target: "/put".into(),
            path: "/put".into(),
            query: Vec::new(),
            headers: Vec::new(),
            body: br#"{"key":"k","value":"v"}"#.to_vec(),
            keep_alive: false,
        };
        let resp = glommio::LocalExecutorBuilder::default()
            .spawn(move || async move {
                forward_to(
                    &addr,
                    Duration::from_secs(2),
                    Duration::from_secs(5),
                    2,
                    &req,
                )
                .await
            })
            .unwrap()
            .join()
            .unwrap()
            .expect("the request was sent: an answer is due");
        assert!(String::from_utf8_lossy(&got.join().unwrap()).contains("/put"));
        assert_eq!(resp.status, 504);
        let body = String::from_utf8_lossy(&resp.body);
        assert!(body.contains("unknown"), "{body}");
    }
}
