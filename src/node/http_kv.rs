//! The HTTP routes of transactions, leases and cluster-wide scans, as pure translations (the
//! companion of [`crate::node::http_api`], which calls [`route`] first and [`reply_json`] for
//! the results these routes produce). No I/O here.
//!
//! - `POST /txn` `{"compare": [C…], "success": [O…], "failure": [O…]}`, where a compare `C` is
//!   `{"key": "k", "value": "v"|null}`, `{"key": "k", "version": N}` or
//!   `{"key": "k", "exists": bool}`, and an op `O` is `{"op": "put", "key", "value"}`,
//!   `{"op": "delete", "key"}` or `{"op": "get", "key"}` → `{"succeeded", "version",
//!   "results": [...]}`. All keys must live in one shard (hash tags: `{tag}`).
//! - `POST /lease/grant` `{"ttl_s": N[, "key": "k" | "shard": N]}` → `{"id", "ttl_s"}`
//! - `POST /lease/keepalive` / `POST /lease/revoke` `{"id": N}`
//! - `GET /lease/list[?shard=N]` → `{"leases": [{"id", "ttl_s", "remaining_ms", "keys"}]}`
//! - `GET /scan?prefix=p[&limit=N][&keys_only=true][&consistency=…][&shard=N]`: without
//!   `shard`, every shard is scanned and the pairs merged in key order, the limit applied
//!   after the merge.
//! - `POST /members/remove` `{"node_id": N}`, `POST /transfer-leader` `{"shard"?: N, "to"?: N}`.
//!
//! Writes may carry `"client_id"` and `"seq"` for exactly-once retries, as every write.

use serde::Deserialize;
use serde_json::{json, Value};

use ringraft_net::message::{LeaseInfo, Txn, TxnCheck, TxnCompare, TxnOp, TxnOpResult};

use crate::node::http::{Request, Response};
use crate::node::http_api::{bad, json_body as body, text, ApiCall, SCAN_LIMIT_DEFAULT};
use crate::node::kv::{ApplyResult, WriteOp};
use crate::node::limits::{MAX_TXN_COMPARES, MAX_TXN_OPS};
use crate::node::request::{ClientOp, ClientRequest};

fn write(op: WriteOp, client_id: u64, seq: u64, shard: Option<usize>) -> ApiCall {
    ApiCall::Client(ClientRequest {
        client_id,
        seq,
        op: ClientOp::Write(op),
        shard,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TxnBody {
    #[serde(default)]
    compare: Vec<serde_json::Map<String, Value>>,
    #[serde(default)]
    success: Vec<serde_json::Map<String, Value>>,
    #[serde(default)]
    failure: Vec<serde_json::Map<String, Value>>,
    #[serde(default)]
    client_id: u64,
    #[serde(default)]
    seq: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    ttl_s: u64,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    shard: Option<usize>,
    #[serde(default)]
    client_id: u64,
    #[serde(default)]
    seq: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseIdBody {
    id: u64,
    #[serde(default)]
    client_id: u64,
    #[serde(default)]
    seq: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoveBody {
    node_id: u64,
    #[serde(default)]
    shard: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferBody {
    #[serde(default)]
    shard: Option<u32>,
    #[serde(default)]
    to: Option<u64>,
}

fn string_field(
    m: &serde_json::Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Vec<u8>, String> {
    match m.get(name) {
        Some(Value::String(s)) => Ok(s.clone().into_bytes()),
        Some(other) => Err(format!("{at}: \"{name}\" must be a string, not {other}")),
        None => Err(format!("{at}: \"{name}\" is missing")),
    }
}

fn key_field(m: &serde_json::Map<String, Value>, at: &str) -> Result<Vec<u8>, String> {
    let k = string_field(m, "key", at)?;
    if k.is_empty() {
        return Err(format!("{at}: key must not be empty"));
    }
    Ok(k)
}

fn only(m: &serde_json::Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), String> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "{at}: unknown field \"{k}\" (allowed: {})",
            allowed.join(", ")
        )),
        None => Ok(()),
    }
}

fn parse_compare(m: &serde_json::Map<String, Value>, i: usize) -> Result<TxnCompare, String> {
    let at = format!("compare[{i}]");
    only(m, &["key", "value", "version", "exists"], &at)?;
    let key = key_field(m, &at)?;
    let given: Vec<&str> = ["value", "version", "exists"]
        .into_iter()
        .filter(|f| m.contains_key(*f))
        .collect();
    if given.len() != 1 {
        return Err(format!(
            "{at}: give exactly one of \"value\" (string or null), \"version\" (number) or \
             \"exists\" (bool)"
        ));
    }
    let check = match (given[0], &m[given[0]]) {
        ("value", Value::Null) => TxnCheck::Value(None),
        ("value", Value::String(s)) => TxnCheck::Value(Some(s.clone().into_bytes())),
        ("version", Value::Number(n)) if n.as_u64().is_some() => {
            TxnCheck::Version(n.as_u64().unwrap_or(0))
        }
        ("exists", Value::Bool(b)) => TxnCheck::Exists(*b),
        (f, v) => return Err(format!("{at}: \"{f}\" has the wrong type ({v})")),
    };
    Ok(TxnCompare { key, check })
}

fn parse_op(m: &serde_json::Map<String, Value>, at: &str) -> Result<TxnOp, String> {
    let kind = string_field(m, "op", at)?;
    let key = key_field(m, at)?;
    match kind.as_slice() {
        b"put" => {
            only(m, &["op", "key", "value"], at)?;
            Ok(TxnOp::Put {
                key,
                value: string_field(m, "value", at)?,
            })
        }
        b"delete" => {
            only(m, &["op", "key"], at)?;
            Ok(TxnOp::Delete { key })
        }
        b"get" => {
            only(m, &["op", "key"], at)?;
            Ok(TxnOp::Get { key })
        }
        other => Err(format!(
            "{at}: op {:?} is not put, delete or get",
            String::from_utf8_lossy(other)
        )),
    }
}

/// The transaction of a `/txn` body, checked for shape and counts.
pub(crate) fn parse_txn(raw: &[u8]) -> Result<(Txn, u64, u64), String> {
    let b: TxnBody = serde_json::from_slice(raw).map_err(|e| {
        format!(
            "POST /txn: body is not the expected JSON {{\"compare\": [...], \"success\": [...], \
             \"failure\": [...]}}: {e}"
        )
    })?;
    if b.compare.len() > MAX_TXN_COMPARES {
        return Err(format!(
            "a transaction holds at most {MAX_TXN_COMPARES} compares, not {}",
            b.compare.len()
        ));
    }
    if b.success.len() > MAX_TXN_OPS || b.failure.len() > MAX_TXN_OPS {
        return Err(format!(
            "a transaction branch holds at most {MAX_TXN_OPS} ops"
        ));
    }
    if b.success.is_empty() && b.failure.is_empty() {
        return Err("a transaction needs at least one op in success or failure".into());
    }
    let compares = b
        .compare
        .iter()
        .enumerate()
        .map(|(i, m)| parse_compare(m, i))
        .collect::<Result<_, _>>()?;
    let ops = |v: &[serde_json::Map<String, Value>], name: &str| {
        v.iter()
            .enumerate()
            .map(|(i, m)| parse_op(m, &format!("{name}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok((
        Txn {
            compares,
            success: ops(&b.success, "success")?,
            failure: ops(&b.failure, "failure")?,
        },
        b.client_id,
        b.seq,
    ))
}

fn shard_param(req: &Request) -> Result<Option<usize>, Response> {
    match req.query_param("shard") {
        None => Ok(None),
        Some(raw) => String::from_utf8_lossy(raw)
            .parse::<usize>()
            .map(Some)
            .map_err(|_| bad("shard= must be a shard number")),
    }
}

fn bool_param(req: &Request, name: &str) -> Result<bool, Response> {
    match req
        .query_param(name)
        .map(String::from_utf8_lossy)
        .as_deref()
    {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(o) => Err(bad(format!("{name}={o:?}: must be true or false"))),
    }
}

/// The limit of `/scan` (1 to [`SCAN_LIMIT_DEFAULT`]).
pub(crate) fn scan_limit(req: &Request) -> Result<usize, Response> {
    match req.query_param("limit").map(String::from_utf8_lossy) {
        None => Ok(SCAN_LIMIT_DEFAULT),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=SCAN_LIMIT_DEFAULT).contains(n))
            .ok_or_else(|| {
                bad(format!(
                    "limit={l:?} is not allowed: must be between 1 and {SCAN_LIMIT_DEFAULT}"
                ))
            }),
    }
}

/// Routes of this module: `None` when the path is not one of them.
pub(crate) fn route(req: &Request) -> Option<Result<ApiCall, Response>> {
    let m = req.method.as_str();
    Some(match (m, req.path.as_str()) {
        ("POST", "/txn") => parse_txn(&req.body)
            .map(|(t, c, s)| write(WriteOp::Txn(t), c, s, None))
            .map_err(bad),
        ("POST", "/lease/grant") => {
            body::<GrantBody>(req, r#"{"ttl_s": N, "key"?: "…", "shard"?: N}"#).map(|b| {
                ApiCall::LeaseGrant {
                    ttl_ms: b.ttl_s.saturating_mul(1_000),
                    key: b.key.map(String::into_bytes),
                    shard: b.shard,
                    client_id: b.client_id,
                    seq: b.seq,
                }
            })
        }
        ("POST", "/lease/keepalive") => body::<LeaseIdBody>(req, r#"{"id": N}"#).map(|b| {
            write(
                WriteOp::LeaseKeepAlive { id: b.id },
                b.client_id,
                b.seq,
                None,
            )
        }),
        ("POST", "/lease/revoke") => body::<LeaseIdBody>(req, r#"{"id": N}"#)
            .map(|b| write(WriteOp::LeaseRevoke { id: b.id }, b.client_id, b.seq, None)),
        ("GET" | "HEAD", "/lease/list") => shard_param(req).map(|s| match s {
            Some(s) => ApiCall::Client(ClientRequest {
                client_id: 0,
                seq: 0,
                op: ClientOp::LeaseList,
                shard: Some(s),
            }),
            None => ApiCall::FanOut {
                limit: usize::MAX,
                keys_only: false,
            },
        }),
        ("GET" | "HEAD", "/scan") => match shard_param(req) {
            // One shard: the plain route of `http_api`.
            Ok(Some(_)) => return None,
            Err(r) => Err(r),
            Ok(None) => scan_limit(req).and_then(|limit| {
                Ok(ApiCall::FanOut {
                    limit,
                    keys_only: bool_param(req, "keys_only")?,
                })
            }),
        },
        ("POST", "/members/remove") => {
            body::<RemoveBody>(req, r#"{"node_id": N}"#).map(|b| ApiCall::RemoveMember {
                node_id: b.node_id,
                shard: b.shard,
            })
        }
        ("POST", "/transfer-leader") => body::<TransferBody>(req, r#"{"shard"?: N, "to"?: N}"#)
            .map(|b| ApiCall::TransferLeader {
                shard: b.shard,
                to: b.to,
            }),
        (_, "/txn" | "/lease/grant" | "/lease/keepalive" | "/lease/revoke" | "/lease/list") => Err(
            Response::error(405, &format!("method {m} is not allowed on {}", req.path)),
        ),
        (_, "/members/remove" | "/transfer-leader") => Err(Response::error(
            405,
            &format!("method {m} is not allowed on {}", req.path),
        )),
        _ => return None,
    })
}

/// The JSON of a transaction's or a lease's result (status 200), `None` for other results.
pub(crate) fn reply_json(r: &ApplyResult) -> Option<Value> {
    Some(match r {
        ApplyResult::Txn {
            succeeded,
            results,
            version,
        } => json!({
            "succeeded": succeeded,
            "version": version,
            "results": results.iter().map(txn_result_json).collect::<Vec<_>>(),
        }),
        ApplyResult::Lease { id, ttl_ms, keys } => json!({
            "ok": true,
            "id": id,
            "ttl_s": ttl_ms / 1_000,
            "keys": keys,
        }),
        _ => return None,
    })
}

fn txn_result_json(r: &TxnOpResult) -> Value {
    match r {
        TxnOpResult::Put { version } => json!({ "op": "put", "version": version }),
        TxnOpResult::Deleted { existed } => json!({ "op": "delete", "existed": existed }),
        TxnOpResult::Get(None) => json!({ "op": "get", "found": false }),
        TxnOpResult::Get(Some(v)) => json!({
            "op": "get", "found": true, "value": text(&v.value), "version": v.version,
        }),
        TxnOpResult::GetOmitted { version } => json!({
            "op": "get", "found": true, "omitted": true, "version": version,
        }),
    }
}

/// The JSON of one shard's leases.
pub(crate) fn leases_json(l: &[LeaseInfo]) -> Value {
    json!({
        "leases": l.iter().map(|i| json!({
            "id": i.id,
            "ttl_s": i.ttl_ms / 1_000,
            "remaining_ms": i.remaining_ms,
            "keys": i.keys,
        })).collect::<Vec<_>>()
    })
}

/// Merges the bodies of per-shard `/scan` (or `/lease/list`) answers: scan pairs in key order,
/// at most `limit`, `"more"` when a shard was cut short or the merge dropped pairs; values
/// dropped when `keys_only`. Leases are concatenated in id order.
pub(crate) fn merge_bodies(bodies: Vec<Value>, limit: usize, keys_only: bool) -> Value {
    let mut leases: Vec<Value> = Vec::new();
    let mut items: Vec<Value> = Vec::new();
    let mut more = false;
    for b in bodies {
        if let Some(Value::Array(l)) = b.get("leases") {
            leases.extend(l.iter().cloned());
        }
        if let Some(Value::Array(i)) = b.get("items") {
            more |= i.len() >= limit;
            items.extend(i.iter().cloned());
        }
    }
    if !leases.is_empty() || items.is_empty() && limit == usize::MAX {
        leases.sort_by_key(|l| l.get("id").and_then(Value::as_u64));
        return json!({ "leases": leases });
    }
    items.sort_by(|a, b| {
        let k = |v: &Value| {
            v.get("key")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        k(a).cmp(&k(b))
    });
    if items.len() > limit {
        items.truncate(limit);
        more = true;
    }
    if keys_only {
        for i in &mut items {
            if let Some(o) = i.as_object_mut() {
                o.remove("value");
            }
        }
    }
    json!({ "items": items, "more": more })
}

/// The sub-request of a fan-out for `shard`: the same request with `shard=N` added.
pub(crate) fn shard_request(req: &Request, shard: usize) -> Request {
    let mut sub = req.clone();
    let sep = if sub.target.contains('?') { '&' } else { '?' };
    sub.target = format!("{}{sep}shard={shard}", sub.target);
    sub.query
        .push((b"shard".to_vec(), shard.to_string().into_bytes()));
    sub
}

/// Resolves a `LeaseGrant` call into the client write it is: the lease lives in the shard of
/// its `key` (by `shard_of`), else in `shard`, else in shard 0; its id is picked at execution
/// ([`crate::node::kv::route::route_write`]). Other calls pass unchanged.
pub(crate) fn lease_grant_call(call: ApiCall, shard_of: impl Fn(&[u8]) -> usize) -> ApiCall {
    match call {
        ApiCall::LeaseGrant {
            ttl_ms,
            key,
            shard,
            client_id,
            seq,
        } => write(
            WriteOp::LeaseGrant { id: 0, ttl_ms },
            client_id,
            seq,
            Some(key.map(|k| shard_of(&k)).or(shard).unwrap_or(0)),
        ),
        other => other,
    }
}

#[cfg(test)]
mod tests;
