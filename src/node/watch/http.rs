//! `GET /watch` on the client port: a watch as a chunked HTTP response of JSON lines (or of
//! server-sent events with `Accept: text/event-stream` or `format=sse`).
//!
//! Query: one of `key=K`, `prefix=P` (the default, empty: every key) or `start=S[&end=E]`;
//! `shard=N` to watch one shard only (a key watch uses the key's shard); `from=R` (every
//! watched shard from revision R; 0 or absent: from now) or `from=S:R,S:R` (per shard, the
//! form a resuming client sends: revisions are per shard). Before the stream starts, a
//! compacted revision is answered `410` with `{"error": "compacted, the oldest revision is R",
//! "oldest": R, "shard": S}` and other refusals with their usual status. Lines:
//! `{"shard":0,"type":"put","key":"k","value":"v","version":12,"revision":12}`, progress
//! `{"shard":0,"progress":12}` (at least every second: a keep-alive), and a shard's end
//! `{"shard":0,"cancelled":"too_slow","resume_from":13,"error":"..."}`. The response ends when
//! every shard's stream ended or the client goes away.
//!
//! Bounds: one forwarding task per shard feeds a bounded channel; a client that does not read
//! blocks the writer (bounded by the connection's write timeout), the hub's queue fills and
//! the shard's watcher is cancelled "too slow".

use std::collections::BTreeMap;
use std::rc::Rc;

use futures_lite::io::AsyncWriteExt;
use ringraft_net::tls::NetStream;
use serde_json::{json, Value};

use super::serve::{check, subscribe, StreamItem, WatchPump};
use super::{WatchCancel, WatchEventKind, WatchFilter};
use crate::node::http::{Request, Response};
use crate::node::http_api::http_status;
use crate::node::runtime::shard_of_key;
use crate::node::server::CoreCtx;

/// Items buffered between the shards' forwarding tasks and the writer, per watched shard.
pub const HTTP_WATCH_BUFFER_PER_SHARD: usize = 4;

/// A parsed `/watch` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpWatch {
    /// Keys followed.
    pub filter: WatchFilter,
    /// Shards watched and the revision each starts from.
    pub from: BTreeMap<u32, u64>,
    /// Server-sent events instead of JSON lines.
    pub sse: bool,
}

fn num(b: &[u8], what: &str) -> Result<u64, String> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("{what} is not a number"))
}

/// Parses a `/watch` request for a node with `shards` shards.
pub fn parse(req: &Request, shards: usize) -> Result<HttpWatch, String> {
    let filter = match (
        req.query_param("key"),
        req.query_param("prefix"),
        req.query_param("start"),
    ) {
        (Some(k), None, None) => WatchFilter::Key(k.to_vec()),
        (None, p, None) => WatchFilter::Prefix(p.unwrap_or_default().to_vec()),
        (None, None, Some(s)) => WatchFilter::Range {
            start: s.to_vec(),
            end: req.query_param("end").map(<[u8]>::to_vec),
        },
        _ => return Err("give one of key=, prefix= or start= (with end=)".into()),
    };
    let all: Vec<u32> = match (&filter, req.query_param("shard")) {
        (_, Some(s)) => {
            let s = num(s, "shard")?;
            if s >= shards as u64 {
                return Err(format!("shard {s} does not exist (the node has {shards})"));
            }
            vec![s as u32]
        }
        (WatchFilter::Key(k), None) => vec![shard_of_key(k, shards) as u32],
        _ => (0..shards as u32).collect(),
    };
    let mut from: BTreeMap<u32, u64> = all.iter().map(|&s| (s, 0)).collect();
    if let Some(f) = req.query_param("from") {
        if f.contains(&b':') {
            for part in f.split(|&b| b == b',').filter(|p| !p.is_empty()) {
                let mut it = part.splitn(2, |&b| b == b':');
                let s = num(it.next().unwrap_or_default(), "from's shard")?;
                let r = num(it.next().unwrap_or_default(), "from's revision")?;
                match from.get_mut(&(s as u32)) {
                    Some(slot) if s <= u64::from(u32::MAX) => *slot = r,
                    _ => return Err(format!("from names shard {s}, which is not watched")),
                }
            }
        } else {
            let r = num(f, "from")?;
            from.values_mut().for_each(|v| *v = r);
        }
    }
    let sse = req.query_param("format") == Some(b"sse")
        || req
            .header("accept")
            .is_some_and(|a| a.contains("text/event-stream"));
    Ok(HttpWatch { filter, from, sse })
}

fn text(b: &[u8]) -> Value {
    json!(String::from_utf8_lossy(b))
}

/// The JSON of a cancel, for shard `shard` whose stream covered through `through`.
pub fn cancel_json(shard: u32, c: &WatchCancel, through: u64) -> Value {
    match c {
        WatchCancel::Compacted { oldest } => json!({
            "shard": shard, "cancelled": "compacted", "oldest": oldest, "error": c.to_string()
        }),
        WatchCancel::TooSlow(_) => json!({
            "shard": shard, "cancelled": "too_slow", "resume_from": through.saturating_add(1),
            "error": c.to_string()
        }),
        WatchCancel::Failed(_) => json!({
            "shard": shard, "cancelled": "failed", "resume_from": through.saturating_add(1),
            "error": c.to_string()
        }),
    }
}

/// The lines of one stream item of shard `shard`.
pub fn item_lines(shard: u32, item: &StreamItem, through: u64) -> Vec<Value> {
    match item {
        StreamItem::Events { events, through } if events.is_empty() => {
            vec![json!({"shard": shard, "progress": through})]
        }
        StreamItem::Events { events, .. } => events
            .iter()
            .map(|e| {
                json!({
                    "shard": shard,
                    "type": match e.kind { WatchEventKind::Put => "put", WatchEventKind::Delete => "delete" },
                    "key": text(&e.key),
                    "value": text(&e.value),
                    "version": e.version,
                    "revision": e.revision,
                })
            })
            .collect(),
        StreamItem::End(c) => vec![cancel_json(shard, c, through)],
    }
}

async fn write_chunk(stream: &mut NetStream, body: &[u8]) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(body.len() + 16);
    out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
    stream.write_all(&out).await?;
    stream.flush().await
}

async fn refuse(ctx: &CoreCtx, stream: &mut NetStream, mut resp: Response) {
    resp.close = true;
    let mut out = Vec::new();
    resp.write_to(&mut out, false);
    ctx.st.borrow().metrics.bytes_out.add(out.len() as u64);
    let _ = stream.write_all(&out).await;
    let _ = stream.flush().await;
}

/// Serves `GET /watch` on `stream` until the watch ends or the client goes away; the
/// connection is not reused afterwards.
pub async fn serve_http_watch(ctx: Rc<CoreCtx>, mut stream: NetStream, req: Request) {
    let w = match parse(&req, ctx.cfg.runtime.shards_per_node) {
        Ok(w) => w,
        Err(m) => return refuse(&ctx, &mut stream, Response::error(400, &m)).await,
    };
    let mut pumps = Vec::new();
    for (&shard, &from) in &w.from {
        let sub = match check(&ctx, shard, &w.filter) {
            Ok(g) => subscribe(&ctx, g, w.filter.clone(), from).await,
            Err(c) => Err(c),
        };
        match sub {
            Ok(s) => pumps.push((shard, WatchPump::new(s))),
            Err(c) => {
                let (status, mut body) = match &c {
                    WatchCancel::Compacted { .. } => (410, cancel_json(shard, &c, 0)),
                    WatchCancel::Failed(e) => (http_status(e), cancel_json(shard, &c, 0)),
                    WatchCancel::TooSlow(_) => (503, cancel_json(shard, &c, 0)),
                };
                if let Some(o) = body.as_object_mut() {
                    o.remove("resume_from");
                }
                return refuse(&ctx, &mut stream, Response::json(status, &body)).await;
            }
        }
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\n\
         Cache-Control: no-cache\r\nConnection: close\r\n\r\n",
        if w.sse {
            "text/event-stream"
        } else {
            "application/x-ndjson"
        }
    );
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let (tx, rx) = flume::bounded(
        HTTP_WATCH_BUFFER_PER_SHARD
            .saturating_mul(pumps.len())
            .max(1),
    );
    let mut open = pumps.len();
    for (shard, mut pump) in pumps {
        let (ctx, tx) = (ctx.clone(), tx.clone());
        glommio::spawn_local(async move {
            while let Some(item) = pump.next(&ctx).await {
                let through = pump.through();
                if tx.send_async((shard, item, through)).await.is_err() {
                    return;
                }
            }
        })
        .detach();
    }
    drop(tx);
    while open > 0 {
        let Ok((shard, item, through)) = rx.recv_async().await else {
            break;
        };
        open -= usize::from(matches!(item, StreamItem::End(_)));
        let mut body = Vec::new();
        for line in item_lines(shard, &item, through) {
            if w.sse {
                body.extend_from_slice(b"data: ");
            }
            body.extend_from_slice(line.to_string().as_bytes());
            body.extend_from_slice(if w.sse { b"\n\n" } else { b"\n" });
        }
        ctx.st.borrow().metrics.bytes_out.add(body.len() as u64);
        if write_chunk(&mut stream, &body).await.is_err() {
            return;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let _ = stream.flush().await;
}
