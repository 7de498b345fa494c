//! Tests of the frame API's translations: a forwarded call round-trips to the result the
//! leader had, and every node result maps to its wire outcome.

use ringraft_net::message as wire;

use super::*;
use crate::node::kv::{ApplyResult, Versioned};
use crate::node::request::{ClientError, ClientRequest, ClientResult, Consistency};
use crate::node::server::ANY_SHARD;

/// A forwarded call comes back as the result the leader had: node op → wire → leader
/// result → wire outcome → node result.
#[test]
fn forwarded_results_round_trip() {
    let key = b"k".to_vec();
    let cases: Vec<(ClientOp, ClientResult)> = vec![
        (
            ClientOp::Write(WriteOp::Put {
                key: key.clone(),
                value: b"v".to_vec(),
            }),
            Ok(ClientReply::Applied(ApplyResult::Put { version: 4 })),
        ),
        (
            ClientOp::Write(WriteOp::Delete { key: key.clone() }),
            Ok(ClientReply::Applied(ApplyResult::Deleted {
                existed: true,
                version: 5,
            })),
        ),
        (
            ClientOp::Write(WriteOp::CasValue {
                key: key.clone(),
                expected: Some(b"a".to_vec()),
                new: b"b".to_vec(),
            }),
            Ok(ClientReply::Applied(ApplyResult::Cas {
                swapped: false,
                version: 3,
                current: Some(b"x".to_vec()),
            })),
        ),
        (
            ClientOp::Write(WriteOp::CasVersion {
                key: key.clone(),
                expected_version: 3,
                new: b"b".to_vec(),
            }),
            Ok(ClientReply::Applied(ApplyResult::Cas {
                swapped: true,
                version: 9,
                current: None,
            })),
        ),
        (
            ClientOp::Get {
                key: key.clone(),
                consistency: Consistency::Linearizable,
            },
            Ok(ClientReply::Value(None)),
        ),
        (
            ClientOp::Get {
                key: key.clone(),
                consistency: Consistency::Lease,
            },
            Ok(ClientReply::Value(Some(Versioned {
                value: b"v".to_vec(),
                version: 2,
            }))),
        ),
        (
            ClientOp::Scan {
                prefix: key.clone(),
                limit: 10,
                consistency: Consistency::Lease,
            },
            Ok(ClientReply::Scan(vec![(
                key.clone(),
                Versioned {
                    value: b"v".to_vec(),
                    version: 2,
                },
            )])),
        ),
        (
            ClientOp::Write(WriteOp::Put {
                key: key.clone(),
                value: b"v".to_vec(),
            }),
            Err(ClientError::Timeout),
        ),
    ];
    for (op, result) in cases {
        let req = ClientRequest {
            client_id: 7,
            seq: 8,
            op: op.clone(),
            shard: None,
        };
        let w = to_wire_request(req).unwrap();
        assert_eq!(w.shard, ANY_SHARD);
        let wire::ClientCommand::Single(wop) = w.command else {
            panic!("single")
        };
        if op.is_write() {
            let (back, session) = WriteOp::from_wire(wop.clone()).unwrap();
            assert_eq!(ClientOp::Write(back), op);
            assert_eq!(
                session,
                Some(wire::Session {
                    client_id: 7,
                    sequence: 8
                })
            );
        }
        let outcome = to_outcome(&op, result.clone());
        assert_eq!(from_outcome(&wop, outcome), result, "{op:?}");
    }
    // A reply that does not fit the op is outcome unknown, never a success.
    let put = wire::ClientOp::Put {
        key,
        value: Vec::new(),
        session: None,
    };
    let r = from_outcome(
        &put,
        wire::OpOutcome::Ok(wire::OpReply::Scan {
            items: Vec::new(),
            more: false,
        }),
    );
    assert!(r.unwrap_err().outcome_unknown());
    assert!(to_wire_request(ClientRequest {
        client_id: 0,
        seq: 0,
        op: ClientOp::Write(WriteOp::Noop),
        shard: None
    })
    .is_err());
}

#[test]
fn outcomes_map_results() {
    let put = ClientOp::Write(WriteOp::Put {
        key: b"k".to_vec(),
        value: b"v".to_vec(),
    });
    assert_eq!(
        to_outcome(
            &put,
            Ok(ClientReply::Applied(ApplyResult::Put { version: 4 }))
        ),
        wire::OpOutcome::Ok(wire::OpReply::Written { version: 4 })
    );
    let get = ClientOp::Get {
        key: b"k".to_vec(),
        consistency: Consistency::Lease,
    };
    assert_eq!(
        to_outcome(&get, Ok(ClientReply::Value(None))),
        wire::OpOutcome::Err(wire::ClientError::KeyNotFound)
    );
    let cas = ClientOp::Write(WriteOp::CasValue {
        key: b"k".to_vec(),
        expected: None,
        new: b"n".to_vec(),
    });
    assert_eq!(
        to_outcome(
            &cas,
            Ok(ClientReply::Applied(ApplyResult::Cas {
                swapped: true,
                version: 9,
                current: None
            }))
        ),
        wire::OpOutcome::Ok(wire::OpReply::Cas {
            swapped: true,
            current: Some(wire::Versioned {
                value: b"n".to_vec(),
                version: 9
            })
        })
    );
    assert_eq!(
        to_outcome(
            &put,
            Err(ClientError::NotLeader {
                leader: Some(wire::LeaderHint {
                    node_id: 2,
                    address: "127.0.0.1:9082".into()
                })
            })
        ),
        wire::OpOutcome::Err(wire::ClientError::NotLeader {
            leader: Some(wire::LeaderHint {
                node_id: 2,
                address: "127.0.0.1:9082".into()
            })
        })
    );
    assert_eq!(
        to_outcome(&put, Err(crate::node::request::busy())),
        wire::OpOutcome::Err(wire::ClientError::Busy {
            retry_after_ms: crate::node::request::BUSY_RETRY_AFTER_MS
        })
    );
}

/// The size of the future a four-argument async fn returns, from its type alone (never called).
fn future_bytes4<A, B, C, D, F: std::future::Future>(_f: impl FnOnce(A, B, C, D) -> F) -> usize {
    std::mem::size_of::<F>()
}

/// The same for an async method taking `self` and one argument.
fn future_bytes2<A, B, F: std::future::Future>(_f: impl FnOnce(A, B) -> F) -> usize {
    std::mem::size_of::<F>()
}

/// Every client request runs as its own task, whose allocation holds the request's future:
/// it must stay within what the allocator's per-thread cache serves (chunks up to 1032 bytes
/// in glibc), with room for the task's header and the spawning closure's captures.
#[test]
fn a_request_task_stays_small() {
    let serve = future_bytes4(serve_request);
    assert!(
        serve <= MAX_REQUEST_FUTURE_BYTES,
        "a request's future takes {serve} bytes (at most {MAX_REQUEST_FUTURE_BYTES})"
    );
    // What the wait holds: the answer's receiver and the deadline, not the request.
    let wait = future_bytes2(crate::node::server::Started::wait);
    assert!(wait <= 256, "the wait for an answer takes {wait} bytes");
}
