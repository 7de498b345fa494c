//! Tests of the HTTP API's routing: the seed's commands and every route's parameters parsed
//! from real requests into calls, refusals with their status, and answers rendered. Its request
//! builders serve the KV route tests too.

use super::*;
use crate::node::http::{parse_request, HttpLimits, Parsed};
use crate::node::kv::Versioned;

/// The request `raw` parsed as a node parses it (must be complete and valid).
pub(crate) fn req(raw: &str) -> Request {
    match parse_request(raw.as_bytes(), &HttpLimits::default()).unwrap() {
        Parsed::Complete(r, _) => *r,
        p => panic!("{p:?}"),
    }
}

/// A JSON `POST` of `body` to `path`.
pub(crate) fn post(path: &str, body: &str) -> Request {
    req(&format!(
        "POST {path} HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

const READS: ReadSettings = ReadSettings {
    default: Consistency::Lease,
    allow_override: true,
};

fn op(call: ApiCall) -> ClientOp {
    match call {
        ApiCall::Client(c) => c.op,
        other => panic!("{other:?}"),
    }
}

#[test]
fn seed_commands_route() {
    let put = post("/put", r#"{"key": "test-key", "value": "test-value"}"#);
    assert_eq!(
        op(route(&put, &READS).unwrap()),
        ClientOp::Write(WriteOp::Put {
            key: b"test-key".to_vec(),
            value: b"test-value".to_vec()
        })
    );
    let get = req("GET /get?key=test-key HTTP/1.1\r\n\r\n");
    assert_eq!(
        op(route(&get, &READS).unwrap()),
        ClientOp::Get {
            key: b"test-key".to_vec(),
            consistency: Consistency::Lease
        }
    );
    let get = req("GET /get?key=test-key&consistency=linearizable HTTP/1.1\r\n\r\n");
    assert!(matches!(
        op(route(&get, &READS).unwrap()),
        ClientOp::Get {
            consistency: Consistency::Linearizable,
            ..
        }
    ));
    let promote = post("/promote", r#"{"node_id": 4}"#);
    assert_eq!(
        route(&promote, &READS).unwrap(),
        ApiCall::Promote { node_id: 4 }
    );
}

#[test]
fn sessions_and_cas_route() {
    let put = post(
        "/put",
        r#"{"key": "k", "value": "v", "client_id": 9, "seq": 3}"#,
    );
    match route(&put, &READS).unwrap() {
        ApiCall::Client(c) => assert_eq!((c.client_id, c.seq), (9, 3)),
        o => panic!("{o:?}"),
    }
    let cas = post("/cas", r#"{"key": "k", "expected": null, "new": "a"}"#);
    assert_eq!(
        op(route(&cas, &READS).unwrap()),
        ClientOp::Write(WriteOp::CasValue {
            key: b"k".to_vec(),
            expected: None,
            new: b"a".to_vec()
        })
    );
    let cas = post("/cas", r#"{"key": "k", "expected_version": 7, "new": "a"}"#);
    assert!(matches!(
        op(route(&cas, &READS).unwrap()),
        ClientOp::Write(WriteOp::CasVersion {
            expected_version: 7,
            ..
        })
    ));
    let cas = post(
        "/cas",
        r#"{"key": "k", "expected": "x", "expected_version": 7, "new": "a"}"#,
    );
    assert_eq!(route(&cas, &READS).unwrap_err().status, 400);
}

#[test]
fn bad_requests_explain() {
    let cases = [
        (post("/put", "{not json"), 400, "expected JSON"),
        (post("/put", r#"{"key": "k"}"#), 400, "value"),
        (post("/put", r#"{"key": "", "value": "v"}"#), 400, "empty"),
        (
            post("/put", r#"{"key": "k", "value": "v", "extra": 1}"#),
            400,
            "extra",
        ),
        (req("GET /get HTTP/1.1\r\n\r\n"), 400, "key="),
        (
            req("GET /get?key=a&consistency=maybe HTTP/1.1\r\n\r\n"),
            400,
            "maybe",
        ),
        (req("GET /scan?limit=0 HTTP/1.1\r\n\r\n"), 400, "limit"),
        (req("GET /put HTTP/1.1\r\n\r\n"), 405, "GET"),
        (req("GET /nowhere HTTP/1.1\r\n\r\n"), 404, "/nowhere"),
    ];
    for (r, status, needle) in cases {
        let resp = route(&r, &READS).unwrap_err();
        assert_eq!(resp.status, status, "{} {}", r.method, r.path);
        let body = String::from_utf8(resp.body).unwrap();
        assert!(body.contains(needle), "{body}");
    }
}

#[test]
fn override_can_be_disabled() {
    let strict = ReadSettings {
        default: Consistency::Linearizable,
        allow_override: false,
    };
    let get = req("GET /get?key=a&consistency=eventual HTTP/1.1\r\n\r\n");
    let r = route(&get, &strict).unwrap_err();
    assert!(String::from_utf8(r.body)
        .unwrap()
        .contains("allow_client_override"));
    let get = req("GET /get?key=a&consistency=linearizable HTTP/1.1\r\n\r\n");
    assert!(route(&get, &strict).is_ok());
}

#[test]
fn metrics_port_routes() {
    assert_eq!(
        route_metrics_port(&req("GET /metrics HTTP/1.1\r\n\r\n")).unwrap(),
        ApiCall::Metrics
    );
    assert_eq!(
        route_metrics_port(&req("GET /put HTTP/1.1\r\n\r\n"))
            .unwrap_err()
            .status,
        404
    );
    assert_eq!(
        route_metrics_port(&req("POST /status HTTP/1.1\r\n\r\n"))
            .unwrap_err()
            .status,
        405
    );
}

fn body(r: &Response) -> serde_json::Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[test]
fn eventual_reads_say_they_may_be_stale() {
    let inner = ClientReply::Value(Some(Versioned {
        value: b"v".to_vec(),
        version: 5,
    }));
    let read = ringraft_net::message::EventualRead {
        applied_index: 41,
        leader: false,
    };
    let r = client_response(
        b"k",
        false,
        &Ok(ClientReply::Eventual {
            reply: Box::new(inner.clone()),
            read,
        }),
    );
    let plain = client_response(b"k", false, &Ok(inner));
    assert_eq!((r.status, body(&r)), (plain.status, body(&plain)));
    for h in [
        ("X-Ringraft-Consistency", "eventual"),
        ("X-Ringraft-Applied-Index", "41"),
        ("X-Ringraft-Served-By-Leader", "false"),
    ] {
        assert!(
            r.headers.contains(&(h.0, h.1.to_string())),
            "{h:?} in {:?}",
            r.headers
        );
    }
    assert!(plain
        .headers
        .iter()
        .all(|(n, _)| !n.starts_with("X-Ringraft-Consistency")));
}

#[test]
fn responses() {
    let r = client_response(
        b"k",
        false,
        &Ok(ClientReply::Value(Some(Versioned {
            value: b"v".to_vec(),
            version: 5,
        }))),
    );
    assert_eq!(r.status, 200);
    assert_eq!(body(&r), json!({"key": "k", "value": "v", "version": 5}));
    assert_eq!(
        client_response(b"k", false, &Ok(ClientReply::Value(None))).status,
        404
    );
    let r = client_response(
        b"k",
        true,
        &Ok(ClientReply::Applied(ApplyResult::Put { version: 9 })),
    );
    assert_eq!(body(&r), json!({"ok": true, "version": 9}));
    let r = client_response(
        b"k",
        true,
        &Ok(ClientReply::Applied(ApplyResult::Cas {
            swapped: false,
            version: 3,
            current: Some(b"x".to_vec()),
        })),
    );
    assert_eq!(r.status, 409);
}

/// The whole mapping, one row per failure: status and body of a write, status of a read.
#[test]
fn write_failures_say_applied_false_or_outcome_unknown() {
    let not_leader = ClientError::NotLeader {
        leader: Some(crate::node::request::LeaderHint {
            node_id: 2,
            address: "127.0.0.1:9082".into(),
        }),
    };
    let errs = [
        not_leader.clone(),
        ClientError::WrongShard { shard: 3 },
        ClientError::Busy { retry_after_ms: 10 },
        ClientError::InvalidRequest("x".into()),
        ClientError::TooLarge {
            bytes: 10,
            limit: 5,
        },
        ClientError::Unavailable("x".into()),
        ClientError::Superseded,
        ClientError::Timeout,
        ClientError::LeadershipLost,
        ClientError::ForwardBroken("x".into()),
        ClientError::SessionExpired,
    ];
    let table: Vec<(u16, Option<bool>, Option<String>, u16)> = errs
        .iter()
        .map(|f| {
            let (ws, wb) = failure_json(f, true);
            let (rs, rb) = failure_json(f, false);
            assert!(wb["error"].is_string() && rb["error"].is_string());
            assert!(rb.get("applied").is_none() && rb.get("outcome").is_none());
            (
                ws,
                wb.get("applied").and_then(|v| v.as_bool()),
                wb.get("outcome")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
                rs,
            )
        })
        .collect();
    assert_eq!(
        table,
        vec![
            (503, Some(false), None, 503),            // NotLeader
            (421, Some(false), None, 421),            // WrongShard
            (429, Some(false), None, 429),            // Busy
            (400, Some(false), None, 400),            // InvalidRequest
            (413, Some(false), None, 413),            // TooLarge
            (503, Some(false), None, 503),            // Unavailable (refused before proposal)
            (503, Some(false), None, 503),            // Superseded
            (504, None, Some("unknown".into()), 504), // Timeout
            (504, None, Some("unknown".into()), 504), // LeadershipLost
            (504, None, Some("unknown".into()), 504), // ForwardBroken
            (504, None, Some("unknown".into()), 504), // SessionExpired
        ]
    );
    // Never a 503 for an unknown outcome, never "applied" and "outcome" together.
    for f in &errs {
        let (s, b) = failure_json(f, true);
        assert_eq!(f.outcome_unknown(), s == 504);
        assert!(b.get("applied").is_none() || b.get("outcome").is_none());
        assert!(b["error"].as_str().unwrap().contains("unknown") || !f.outcome_unknown());
    }
    let r = failure_response(&not_leader, true);
    let b = body(&r);
    assert_eq!(b["leader_id"], 2);
    assert_eq!(b["leader_address"], "127.0.0.1:9082");
    assert!(r
        .headers
        .contains(&("X-Ringraft-Leader", "127.0.0.1:9082".to_string())));
    assert!(r.headers.contains(&("Retry-After", "1".to_string())));
    let r = client_response(
        b"k",
        true,
        &Ok(ClientReply::Applied(ApplyResult::SessionExpired)),
    );
    assert_eq!(
        (r.status, body(&r)["outcome"].as_str()),
        (504, Some("unknown"))
    );
    let r = client_response(
        b"k",
        true,
        &Ok(ClientReply::Applied(ApplyResult::Rejected(
            "too big".into(),
        ))),
    );
    assert_eq!(
        (r.status, body(&r)["applied"].as_bool()),
        (400, Some(false))
    );
}

#[test]
fn binary_keys_route() {
    let get = req("GET /get?key=%FF%00k HTTP/1.1\r\n\r\n");
    assert_eq!(
        op(route(&get, &READS).unwrap()),
        ClientOp::Get {
            key: vec![0xff, 0, b'k'],
            consistency: Consistency::Lease
        }
    );
    let scan = req("GET /scan?prefix=a%2Fb&limit=5&shard=0 HTTP/1.1\r\n\r\n");
    assert!(matches!(
        op(route(&scan, &READS).unwrap()),
        ClientOp::Scan { prefix, limit: 5, .. } if prefix == b"a/b"
    ));
}
