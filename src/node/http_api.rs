//! The HTTP API of the client port (the seed's commands) and of the metrics port, as pure
//! translations: an HTTP [`Request`] becomes an [`ApiCall`], a [`ClientResult`] becomes a
//! [`Response`]. No I/O here, so every route and every error message is unit-tested.
//!
//! Client port routes (JSON bodies, UTF-8 keys and values):
//! - `POST /put` `{"key": "k", "value": "v"}` → `{"ok": true, "version": N}`
//! - `GET /get?key=k[&consistency=linearizable|lease|eventual]` → `{"key","value","version"}`,
//!   404 `{"error": "key not found"}` when absent
//! - `POST /delete` `{"key": "k"}` or `DELETE /delete?key=k` → `{"ok": true, "existed": bool}`
//! - `POST /cas` `{"key", "expected": "v"|null, "new"}` or `{"key", "expected_version": N, "new"}`
//!   → `{"swapped": bool, "version": N, "current": "v"|null}`
//! - `GET /scan?prefix=p[&limit=N][&consistency=…]&shard=N` (one shard); without `shard=`,
//!   every shard merged, and `POST /txn`, `/lease/*`, `/members/remove`, `/transfer-leader`:
//!   see [`crate::node::http_kv`]
//! - `POST /put` also takes `"ttl_s": N` (a lease granted for the key; the answer names it:
//!   `{"ok": true, "version": N, "lease": ID}`) or `"lease": ID`
//! - `POST /promote` `{"node_id": 4}` → membership change (learner to voter)
//! - `GET /status`, `GET /health`, `GET /metrics` (also on the metrics port)
//!
//! Writes may carry `"client_id"` and `"seq"` for exactly-once retries.
//!
//! Failures become statuses in one place, [`http_status`] and [`failure_json`]: a write is answered *not applied*
//! (`"applied": false`, 4xx or 503) only when the node refused it before proposing it; when it
//! may have been applied the answer is 504 with `"outcome": "unknown"`.
//! Owned by the node's HTTP surface.

use serde::Deserialize;
use serde_json::json;

use crate::node::http::{Request, Response};
use crate::node::kv::{ApplyResult, WriteOp};
use crate::node::request::{
    ClientError, ClientOp, ClientReply, ClientRequest, ClientResult, Consistency, ErrorClass,
};

/// Default and largest `limit` of `/scan`.
pub(crate) const SCAN_LIMIT_DEFAULT: usize = 1_000;

/// What an HTTP request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiCall {
    /// A key-value operation.
    Client(ClientRequest),
    /// Promote a learner to voter.
    Promote {
        /// The learner.
        node_id: u64,
    },
    /// `/status` (JSON).
    Status,
    /// `/health`.
    Health,
    /// `/metrics` (Prometheus text).
    Metrics,
    /// Grant a lease in the shard of `key` (or `shard`, or shard 0).
    LeaseGrant {
        /// Time to live.
        ttl_ms: u64,
        /// A key whose shard the lease lives in.
        key: Option<Vec<u8>>,
        /// The shard, when no key is given.
        shard: Option<usize>,
        /// Session client id.
        client_id: u64,
        /// Session sequence.
        seq: u64,
    },
    /// The same request on every shard (`shard=N` added), answers merged
    /// ([`crate::node::http_kv::merge_bodies`]).
    FanOut {
        /// Most scan pairs after the merge.
        limit: usize,
        /// Drop the values.
        keys_only: bool,
    },
    /// Remove a member from every shard (the leader hands leadership away first).
    RemoveMember {
        /// The member.
        node_id: u64,
        /// Only this shard (a forwarded per-shard part).
        shard: Option<u32>,
    },
    /// Hand leadership of `shard` (every shard: `None`) to `to` (any up-to-date voter: `None`).
    TransferLeader {
        /// The shard.
        shard: Option<u32>,
        /// The target voter.
        to: Option<u64>,
    },
}

/// Read policy settings the API needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadSettings {
    /// Consistency of a read that names none.
    pub(crate) default: Consistency,
    /// Whether a request may name one.
    pub(crate) allow_override: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    key: String,
    value: String,
    /// Attach the key to a new lease with this time to live (seconds).
    #[serde(default)]
    ttl_s: Option<u64>,
    /// Attach the key to this existing lease.
    #[serde(default)]
    lease: Option<u64>,
    #[serde(default)]
    client_id: u64,
    #[serde(default)]
    seq: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    key: String,
    #[serde(default)]
    client_id: u64,
    #[serde(default)]
    seq: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CasBody {
    key: String,
    #[serde(default)]
    expected: Option<String>,
    #[serde(default)]
    expected_version: Option<u64>,
    new: String,
    #[serde(default)]
    client_id: u64,
    #[serde(default)]
    seq: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromoteBody {
    node_id: u64,
}

/// A 400 answer saying `msg`.
pub(crate) fn bad(msg: impl Into<String>) -> Response {
    Response::error(400, &msg.into())
}

/// The request's JSON body as a `T`, or a 400 answer naming the expected `shape`.
pub(crate) fn json_body<T: for<'de> Deserialize<'de>>(
    req: &Request,
    shape: &str,
) -> Result<T, Response> {
    serde_json::from_slice(&req.body).map_err(|e| {
        bad(format!(
            "{} {}: body is not the expected JSON {shape}: {e}",
            req.method, req.path
        ))
    })
}

fn consistency(req: &Request, reads: &ReadSettings) -> Result<Consistency, Response> {
    match req.query_param("consistency") {
        None => Ok(reads.default),
        Some(raw) => {
            let c = String::from_utf8_lossy(raw);
            let parsed = Consistency::parse(&c).ok_or_else(|| {
                bad(format!(
                    "consistency={c:?} is not allowed: must be linearizable, lease or eventual"
                ))
            })?;
            if !reads.allow_override && parsed != reads.default {
                return Err(bad(format!(
                    "consistency={c:?}: this cluster has raft.read_consistency.allow_client_override = false; every read is {}",
                    reads.default.name()
                )));
            }
            Ok(parsed)
        }
    }
}

fn key_param(req: &Request, name: &str) -> Result<Vec<u8>, Response> {
    match req.query_param(name) {
        Some(k) if !k.is_empty() => Ok(k.to_vec()),
        _ => Err(bad(format!(
            "{} {}: missing query parameter {name}=",
            req.method, req.path
        ))),
    }
}

fn client(op: ClientOp, client_id: u64, seq: u64) -> ApiCall {
    ApiCall::Client(ClientRequest {
        client_id,
        seq,
        op,
        shard: None,
    })
}

/// Maps a request of the client port to a call, or to the error response to send.
pub(crate) fn route(req: &Request, reads: &ReadSettings) -> Result<ApiCall, Response> {
    if let Some(r) = crate::node::http_kv::route(req) {
        return r;
    }
    let m = req.method.as_str();
    match (m, req.path.as_str()) {
        ("POST" | "PUT", "/put") => {
            let b: PutBody = json_body(req, r#"{"key": "…", "value": "…"}"#)?;
            if b.key.is_empty() {
                return Err(bad("key must not be empty"));
            }
            let (key, value) = (b.key.into_bytes(), b.value.into_bytes());
            let op = match (b.ttl_s, b.lease) {
                (None, None) => WriteOp::Put { key, value },
                (Some(_), Some(_)) => return Err(bad("give either ttl_s or lease, not both")),
                (Some(ttl), None) => WriteOp::PutLease {
                    key,
                    value,
                    lease: 0,
                    ttl_ms: ttl.saturating_mul(1_000).max(1),
                },
                (None, Some(lease)) => WriteOp::PutLease {
                    key,
                    value,
                    lease,
                    ttl_ms: 0,
                },
            };
            Ok(client(ClientOp::Write(op), b.client_id, b.seq))
        }
        ("GET" | "HEAD", "/get") => Ok(client(
            ClientOp::Get {
                key: key_param(req, "key")?,
                consistency: consistency(req, reads)?,
            },
            0,
            0,
        )),
        ("POST", "/delete") => {
            let b: KeyBody = json_body(req, r#"{"key": "…"}"#)?;
            if b.key.is_empty() {
                return Err(bad("key must not be empty"));
            }
            Ok(client(
                ClientOp::Write(WriteOp::Delete {
                    key: b.key.into_bytes(),
                }),
                b.client_id,
                b.seq,
            ))
        }
        ("DELETE", "/delete") => Ok(client(
            ClientOp::Write(WriteOp::Delete {
                key: key_param(req, "key")?,
            }),
            0,
            0,
        )),
        ("POST", "/cas") => {
            let b: CasBody = json_body(
                req,
                r#"{"key": "…", "expected": "…"|null, "new": "…"} or {"key": "…", "expected_version": N, "new": "…"}"#,
            )?;
            if b.key.is_empty() {
                return Err(bad("key must not be empty"));
            }
            let op = match (b.expected, b.expected_version) {
                (Some(_), Some(_)) => {
                    return Err(bad("give either expected or expected_version, not both"))
                }
                (_, Some(v)) => ClientOp::Write(WriteOp::CasVersion {
                    key: b.key.into_bytes(),
                    expected_version: v,
                    new: b.new.into_bytes(),
                }),
                (e, None) => ClientOp::Write(WriteOp::CasValue {
                    key: b.key.into_bytes(),
                    expected: e.map(String::into_bytes),
                    new: b.new.into_bytes(),
                }),
            };
            Ok(client(op, b.client_id, b.seq))
        }
        ("GET", "/scan") => {
            let prefix = req.query_param("prefix").unwrap_or_default().to_vec();
            let limit = match req.query_param("limit").map(String::from_utf8_lossy) {
                None => SCAN_LIMIT_DEFAULT,
                Some(l) => l
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=SCAN_LIMIT_DEFAULT).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "limit={l:?} is not allowed: must be between 1 and {SCAN_LIMIT_DEFAULT}"
                        ))
                    })?,
            };
            let mut call = client(
                ClientOp::Scan {
                    prefix,
                    limit,
                    consistency: consistency(req, reads)?,
                },
                0,
                0,
            );
            // Only with `shard=N` (checked by the fan-out route); without it every shard is
            // scanned.
            if let (ApiCall::Client(c), Some(s)) = (&mut call, req.query_param("shard")) {
                c.shard = String::from_utf8_lossy(s).parse().ok();
            }
            Ok(call)
        }
        ("POST", "/promote") => {
            let b: PromoteBody = json_body(req, r#"{"node_id": N}"#)?;
            Ok(ApiCall::Promote { node_id: b.node_id })
        }
        ("GET" | "HEAD", "/status") => Ok(ApiCall::Status),
        ("GET" | "HEAD", "/health") => Ok(ApiCall::Health),
        ("GET" | "HEAD", "/metrics") => Ok(ApiCall::Metrics),
        (_, "/put" | "/get" | "/delete" | "/cas" | "/scan" | "/promote" | "/status" | "/health" | "/metrics") => {
            Err(Response::error(405, &format!("method {m} is not allowed on {}", req.path)))
        }
        _ => Err(Response::error(
            404,
            &format!(
                "no route {} {}; routes: POST /put, GET /get, POST /delete, POST /cas, GET /scan, POST /txn, POST /lease/grant|keepalive|revoke, GET /lease/list, POST /promote, POST /members/remove, POST /transfer-leader, GET /status, /health, /metrics",
                m, req.path
            ),
        )),
    }
}

/// Maps the routes of the metrics port (only `/metrics`, `/health`, `/status`).
pub(crate) fn route_metrics_port(req: &Request) -> Result<ApiCall, Response> {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET" | "HEAD", "/metrics") => Ok(ApiCall::Metrics),
        ("GET" | "HEAD", "/health") => Ok(ApiCall::Health),
        ("GET" | "HEAD", "/status") => Ok(ApiCall::Status),
        (m, "/metrics" | "/health" | "/status") => Err(Response::error(
            405,
            &format!("method {m} is not allowed on {}", req.path),
        )),
        (m, p) => Err(Response::error(
            404,
            &format!("no route {m} {p}; this port serves GET /metrics, /health, /status"),
        )),
    }
}

/// A key or value as JSON text (invalid UTF-8 replaced).
pub(crate) fn text(b: &[u8]) -> serde_json::Value {
    json!(String::from_utf8_lossy(b))
}

/// The HTTP status of an error. Not-applied refusals are 4xx/503 (safe to retry); every
/// outcome-unknown error is 504, never 503, and its body says the outcome is unknown.
pub(crate) fn http_status(e: &ClientError) -> u16 {
    match e {
        ClientError::NotLeader { .. } | ClientError::Unavailable(_) | ClientError::Superseded => {
            503
        }
        ClientError::WrongShard { .. } => 421,
        ClientError::Busy { .. } => 429,
        ClientError::InvalidRequest(_) => 400,
        ClientError::TooLarge { .. } => 413,
        ClientError::KeyNotFound => 404,
        ClientError::Timeout
        | ClientError::LeadershipLost
        | ClientError::ForwardBroken(_)
        | ClientError::SessionExpired => 504,
    }
}

/// The HTTP status and JSON body of a failure: `{"error": …}`, plus for a write (`write`: the
/// call could change state, a key-value write or a membership change) either
/// `"applied": false` (not applied) or `"outcome": "unknown"` as the error's class says
/// ([`ClientError::class`]), plus the leader hint of a not-leader answer. A read has no outcome
/// to report. The single place where errors become statuses and bodies.
pub(crate) fn failure_json(err: &ClientError, write: bool) -> (u16, serde_json::Value) {
    let mut body = json!({ "error": err.to_string() });
    if write {
        match err.class() {
            ErrorClass::NotApplied => body["applied"] = json!(false),
            ErrorClass::OutcomeUnknown => body["outcome"] = json!("unknown"),
        }
    }
    match err {
        ClientError::NotLeader { leader } => {
            body["leader_id"] = json!(leader.as_ref().map_or(0, |h| h.node_id));
            if let Some(h) = leader {
                body["leader_address"] = json!(h.address);
            }
        }
        ClientError::WrongShard { shard } => body["shard"] = json!(shard),
        _ => {}
    }
    (http_status(err), body)
}

/// The response to a failure: [`failure_json`] plus `Retry-After` on a refusal worth retrying
/// soon and `X-Ringraft-Leader` on a not-leader answer.
pub(crate) fn failure_response(err: &ClientError, write: bool) -> Response {
    let (status, body) = failure_json(err, write);
    let mut r = Response::json(status, &body);
    if let ClientError::NotLeader { leader: Some(h) } = err {
        r.headers.push(("X-Ringraft-Leader", h.address.clone()));
    }
    if matches!(
        err,
        ClientError::Busy { .. } | ClientError::NotLeader { .. }
    ) {
        r.headers.push(("Retry-After", "1".to_string()));
    }
    r
}

/// The response to a key-value call; `key` is the call's key (or scan prefix), `write` whether
/// it goes through the log.
pub(crate) fn client_response(key: &[u8], write: bool, result: &ClientResult) -> Response {
    match result {
        Err(e) => failure_response(e, write),
        Ok(ClientReply::Eventual { reply, read }) => {
            let mut r = client_response(key, write, &Ok((**reply).clone()));
            r.headers.extend([
                ("X-Ringraft-Consistency", "eventual".to_string()),
                ("X-Ringraft-Applied-Index", read.applied_index.to_string()),
                ("X-Ringraft-Served-By-Leader", read.leader.to_string()),
            ]);
            r
        }
        Ok(ClientReply::Value(Some(v))) => Response::json(
            200,
            &json!({ "key": text(key), "value": text(&v.value), "version": v.version }),
        ),
        Ok(ClientReply::Value(None)) => {
            Response::json(404, &json!({ "error": "key not found", "key": text(key) }))
        }
        Ok(ClientReply::Scan(items)) => Response::json(
            200,
            &json!({
                "items": items
                    .iter()
                    .map(|(k, v)| json!({ "key": text(k), "value": text(&v.value), "version": v.version }))
                    .collect::<Vec<_>>()
            }),
        ),
        Ok(ClientReply::Committed { index }) => {
            Response::json(200, &json!({ "ok": true, "index": index }))
        }
        Ok(ClientReply::Leases(l)) => Response::json(200, &crate::node::http_kv::leases_json(l)),
        Ok(ClientReply::Applied(a)) => match a {
            ApplyResult::Put { version } => {
                Response::json(200, &json!({ "ok": true, "version": version }))
            }
            ApplyResult::Deleted { existed, version } => Response::json(
                200,
                &json!({ "ok": true, "existed": existed, "version": version }),
            ),
            ApplyResult::Cas {
                swapped,
                version,
                current,
            } => Response::json(
                if *swapped { 200 } else { 409 },
                &json!({
                    "swapped": swapped,
                    "version": version,
                    "current": current.as_deref().map(text),
                }),
            ),
            ApplyResult::Noop => Response::json(200, &json!({ "ok": true })),
            // Applied as a deterministic refusal: the data is unchanged, now and on replay.
            ApplyResult::Rejected(msg) => Response::json(
                400,
                &json!({ "error": format!("rejected: {msg}"), "applied": false }),
            ),
            // The state machine's answer to a retry whose recorded result it no longer keeps.
            ApplyResult::SessionExpired => failure_response(&ClientError::SessionExpired, true),
            r @ (ApplyResult::Txn { .. } | ApplyResult::Lease { .. }) => Response::json(
                200,
                &crate::node::http_kv::reply_json(r).unwrap_or_default(),
            ),
        },
    }
}

mod put_lease;

pub(crate) use put_lease::{grant_put_lease, put_lease_response, set_put_lease};

#[cfg(test)]
pub(crate) mod tests;
