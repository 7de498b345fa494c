//! Tests of the KV routes beyond put/get: transactions, leases and scans parsed from real
//! requests (the request builders are the HTTP API tests'), and scans of many shards merged.

use super::*;
use crate::node::http_api::tests::{post, req};

#[test]
fn txn_json_routes_with_every_compare_and_op_kind() {
    let body = r#"{"compare": [{"key": "a", "value": "1"}, {"key": "b", "version": 4},
        {"key": "c", "exists": false}, {"key": "d", "value": null}],
        "success": [{"op": "put", "key": "a", "value": "2"}, {"op": "delete", "key": "b"}],
        "failure": [{"op": "get", "key": "a"}], "client_id": 3, "seq": 9}"#;
    let call = route(&post("/txn", body)).unwrap().unwrap();
    let ApiCall::Client(c) = call else {
        panic!("{call:?}")
    };
    assert_eq!((c.client_id, c.seq), (3, 9));
    let ClientOp::Write(WriteOp::Txn(t)) = c.op else {
        panic!("{:?}", c.op)
    };
    assert_eq!(
        t.compares
            .iter()
            .map(|c| c.check.clone())
            .collect::<Vec<_>>(),
        [
            TxnCheck::Value(Some(b"1".to_vec())),
            TxnCheck::Version(4),
            TxnCheck::Exists(false),
            TxnCheck::Value(None)
        ]
    );
    assert_eq!(t.success.len(), 2);
    assert_eq!(t.failure, [TxnOp::Get { key: b"a".to_vec() }]);
    for (bad_body, needle) in [
        (
            r#"{"compare": [{"key": "a", "value": "1", "version": 2}], "success": [{"op": "get", "key": "a"}]}"#,
            "exactly one",
        ),
        (r#"{"success": [{"op": "swap", "key": "a"}]}"#, "swap"),
        (r#"{"success": []}"#, "at least one op"),
        (
            r#"{"success": [{"op": "put", "key": "", "value": "v"}]}"#,
            "empty",
        ),
        (
            r#"{"success": [{"op": "get", "key": "a", "x": 1}]}"#,
            "unknown field",
        ),
    ] {
        let r = route(&post("/txn", bad_body)).unwrap().unwrap_err();
        assert_eq!(r.status, 400);
        let m = String::from_utf8(r.body).unwrap();
        assert!(m.contains(needle), "{m}");
    }
}

#[test]
fn lease_and_scan_routes() {
    let g = route(&post("/lease/grant", r#"{"ttl_s": 5, "key": "k"}"#))
        .unwrap()
        .unwrap();
    match lease_grant_call(g, |_| 3) {
        ApiCall::Client(c) => {
            assert_eq!(c.shard, Some(3));
            assert_eq!(
                c.op,
                ClientOp::Write(WriteOp::LeaseGrant {
                    id: 0,
                    ttl_ms: 5_000
                })
            );
        }
        o => panic!("{o:?}"),
    }
    let k = route(&post("/lease/revoke", r#"{"id": 77}"#))
        .unwrap()
        .unwrap();
    assert!(
        matches!(k, ApiCall::Client(c) if c.op == ClientOp::Write(WriteOp::LeaseRevoke { id: 77 }))
    );
    assert!(matches!(
        route(&req("GET /lease/list HTTP/1.1\r\n\r\n"))
            .unwrap()
            .unwrap(),
        ApiCall::FanOut { .. }
    ));
    assert!(matches!(
        route(&req(
            "GET /scan?prefix=a&limit=3&keys_only=true HTTP/1.1\r\n\r\n"
        ))
        .unwrap()
        .unwrap(),
        ApiCall::FanOut {
            limit: 3,
            keys_only: true
        }
    ));
    // With a shard the plain single-shard route answers.
    assert!(route(&req("GET /scan?prefix=a&shard=1 HTTP/1.1\r\n\r\n")).is_none());
    let sub = shard_request(&req("GET /scan?prefix=a HTTP/1.1\r\n\r\n"), 2);
    assert_eq!(sub.target, "/scan?prefix=a&shard=2");
    assert_eq!(sub.query_param("shard"), Some(&b"2"[..]));
}

#[test]
fn scans_merge_in_key_order_with_the_limit_after_the_merge() {
    let part = |keys: &[&str]| json!({ "items": keys.iter().map(|k| json!({"key": k, "value": "v", "version": 1})).collect::<Vec<_>>() });
    let m = merge_bodies(vec![part(&["a", "d"]), part(&["b", "c"])], 3, true);
    let keys: Vec<&str> = m["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["a", "b", "c"]);
    assert_eq!(m["more"], json!(true));
    assert!(m["items"][0].get("value").is_none(), "keys only");
    let m = merge_bodies(vec![part(&["b"]), part(&["a"])], 10, false);
    assert_eq!(m["more"], json!(false));
    assert_eq!(m["items"][0]["value"], json!("v"));
}
