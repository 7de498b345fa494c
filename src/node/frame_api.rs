//! The binary client and admin API: `ClientRequest` / `AdminRequest` frames (from
//! `ringraft-net`) translated into the node's requests, executed, and answered with
//! `ClientResponse` / `AdminResponse` frames carrying the same request id.
//!
//! Mapping rules: `shard = u32::MAX` means "route by key" (no WrongShard check); a `Default`
//! consistency uses the configured policy; a write's `session` becomes the exactly-once
//! `(client_id, seq)`; a missing key is `KeyNotFound` for a get (a delete of a missing key is
//! `Deleted { existed: false }`); errors are the one error type of `ringraft-net`, sent as they
//! are, each classified as not applied or outcome unknown.

use std::rc::Rc;

use ringraft_net::listener::Connection;
use ringraft_net::message as wire;

use crate::node::kv::{ApplyResult, Versioned, WriteOp};
use crate::node::request::{
    ClientError, ClientOp, ClientReply, ClientRequest, ClientResult, Consistency,
};
use crate::node::server::{self, CoreCtx, ANY_SHARD};
use crate::raft::{ConfChange, GroupId};

/// Most operations in one batch request.
pub const MAX_BATCH_OPS: usize = 1_024;

fn consistency(c: wire::Consistency, ctx: &CoreCtx) -> Result<Consistency, ClientError> {
    let wanted = match c {
        wire::Consistency::Default => return Ok(ctx.reads.default),
        wire::Consistency::Linearizable => Consistency::Linearizable,
        wire::Consistency::Lease => Consistency::Lease,
        wire::Consistency::Eventual => Consistency::Eventual,
    };
    if !ctx.reads.allow_override && wanted != ctx.reads.default {
        return Err(ClientError::InvalidRequest(format!(
            "consistency {} refused: raft.read_consistency.allow_client_override = false",
            wanted.name()
        )));
    }
    Ok(wanted)
}

fn session(s: Option<wire::Session>) -> (u64, u64) {
    s.map_or((0, 0), |s| (s.client_id, s.sequence))
}

/// Converts one wire operation into a node request.
pub fn to_request(
    op: wire::ClientOp,
    shard: u32,
    ctx: &CoreCtx,
) -> Result<ClientRequest, ClientError> {
    let shard = (shard != ANY_SHARD).then_some(shard as usize);
    let (client_id, seq, op) = match op {
        wire::ClientOp::Get {
            key,
            consistency: c,
        } => (
            0,
            0,
            ClientOp::Get {
                key,
                consistency: consistency(c, ctx)?,
            },
        ),
        wire::ClientOp::Scan {
            range,
            limit,
            consistency: c,
        } => match range {
            wire::ScanRange::Prefix(prefix) => (
                0,
                0,
                ClientOp::Scan {
                    prefix,
                    limit: limit as usize,
                    consistency: consistency(c, ctx)?,
                },
            ),
            wire::ScanRange::Range { .. } => {
                return Err(ClientError::InvalidRequest(
                    "range scans span shards; use a prefix scan (one shard)".into(),
                ))
            }
        },
        wire::ClientOp::LeaseList => (0, 0, ClientOp::LeaseList),
        wire::ClientOp::Watch { .. } => {
            return Err(ClientError::InvalidRequest(
                "a watch is a stream: send it alone, as a single command with its shard".into(),
            ))
        }
        write => {
            let Some((w, s)) = WriteOp::from_wire(write) else {
                return Err(ClientError::InvalidRequest("not a write".into()));
            };
            let (c, q) = session(s);
            (c, q, ClientOp::Write(w))
        }
    };
    Ok(ClientRequest {
        client_id,
        seq,
        op,
        shard,
    })
}

fn versioned(v: Versioned) -> wire::Versioned {
    wire::Versioned {
        value: v.value,
        version: v.version,
    }
}

/// Converts the result of `op` into a wire outcome.
pub fn to_outcome(op: &ClientOp, r: ClientResult) -> wire::OpOutcome {
    let reply = match r {
        Err(e) => return wire::OpOutcome::Err(e),
        Ok(r) => r,
    };
    let ok = match reply {
        ClientReply::Eventual { reply, .. } => return to_outcome(op, Ok(*reply)),
        ClientReply::Value(Some(v)) => wire::OpReply::Value(versioned(v)),
        ClientReply::Value(None) => return wire::OpOutcome::Err(wire::ClientError::KeyNotFound),
        ClientReply::Scan(items) => {
            let limit = match op {
                ClientOp::Scan { limit, .. } => *limit,
                _ => usize::MAX,
            };
            wire::OpReply::Scan {
                more: items.len() >= limit,
                items: items
                    .into_iter()
                    .map(|(key, v)| wire::KeyValue {
                        key,
                        value: v.value,
                        version: v.version,
                    })
                    .collect(),
            }
        }
        ClientReply::Committed { index } => wire::OpReply::Written { version: index },
        ClientReply::Leases(l) => wire::OpReply::Leases(l),
        ClientReply::Applied(a) => match a {
            ApplyResult::Put { version } => wire::OpReply::Written { version },
            ApplyResult::Deleted { existed, version } => {
                wire::OpReply::Deleted { version, existed }
            }
            ApplyResult::Cas {
                swapped,
                version,
                current,
            } => {
                let current = if swapped {
                    match op {
                        ClientOp::Write(
                            WriteOp::CasValue { new, .. } | WriteOp::CasVersion { new, .. },
                        ) => Some(wire::Versioned {
                            value: new.clone(),
                            version,
                        }),
                        _ => None,
                    }
                } else {
                    current.map(|value| wire::Versioned { value, version })
                };
                wire::OpReply::Cas { swapped, current }
            }
            ApplyResult::Noop => wire::OpReply::Written { version: 0 },
            ApplyResult::Rejected(m) => {
                return wire::OpOutcome::Err(wire::ClientError::InvalidRequest(m))
            }
            ApplyResult::SessionExpired => {
                return wire::OpOutcome::Err(wire::ClientError::SessionExpired)
            }
            ApplyResult::Txn {
                succeeded,
                results,
                version,
            } => wire::OpReply::Txn {
                succeeded,
                results,
                version,
            },
            ApplyResult::Lease { id, ttl_ms, keys } => wire::OpReply::Lease { id, ttl_ms, keys },
        },
    };
    wire::OpOutcome::Ok(ok)
}

/// The wire form of a node request (what a follower forwards to the leader over the peer
/// link): the inverse of [`to_request`], the session carried in the write. A `Noop` has no
/// wire form (clients cannot send one) and is refused, not applied.
pub fn to_wire_request(req: ClientRequest) -> Result<wire::ClientRequest, ClientError> {
    let session = (req.client_id != 0).then_some(wire::Session {
        client_id: req.client_id,
        sequence: req.seq,
    });
    let c = |c: Consistency| match c {
        Consistency::Linearizable => wire::Consistency::Linearizable,
        Consistency::Lease => wire::Consistency::Lease,
        Consistency::Eventual => wire::Consistency::Eventual,
    };
    let op = match req.op {
        ClientOp::Get { key, consistency } => wire::ClientOp::Get {
            key,
            consistency: c(consistency),
        },
        ClientOp::Scan {
            prefix,
            limit,
            consistency,
        } => wire::ClientOp::Scan {
            range: wire::ScanRange::Prefix(prefix),
            limit: u32::try_from(limit).unwrap_or(u32::MAX),
            consistency: c(consistency),
        },
        ClientOp::LeaseList => wire::ClientOp::LeaseList,
        ClientOp::Write(w) => w.into_wire(session).ok_or_else(|| {
            ClientError::InvalidRequest("a write only a node proposes has no wire form".into())
        })?,
    };
    Ok(wire::ClientRequest {
        shard: req
            .shard
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(ANY_SHARD),
        command: wire::ClientCommand::Single(op),
    })
}

/// The node result of `op` (as sent on the wire) from the wire outcome the leader answered a
/// forwarded request with: the inverse of [`to_outcome`]. A reply that does not fit the op is
/// an unreadable answer (outcome unknown for a write).
pub fn from_outcome(op: &wire::ClientOp, o: wire::OpOutcome) -> ClientResult {
    let reply = match o {
        wire::OpOutcome::Err(ClientError::KeyNotFound)
            if matches!(op, wire::ClientOp::Get { .. }) =>
        {
            return Ok(ClientReply::Value(None))
        }
        wire::OpOutcome::Err(e) => return Err(e),
        wire::OpOutcome::Ok(r) => r,
    };
    match (op, reply) {
        (wire::ClientOp::Get { .. }, wire::OpReply::Value(v)) => {
            Ok(ClientReply::Value(Some(Versioned {
                value: v.value,
                version: v.version,
            })))
        }
        (wire::ClientOp::Scan { .. }, wire::OpReply::Scan { items, .. }) => Ok(ClientReply::Scan(
            items
                .into_iter()
                .map(|kv| {
                    (
                        kv.key,
                        Versioned {
                            value: kv.value,
                            version: kv.version,
                        },
                    )
                })
                .collect(),
        )),
        (wire::ClientOp::Put { .. }, wire::OpReply::Written { version }) => {
            Ok(ClientReply::Applied(ApplyResult::Put { version }))
        }
        (wire::ClientOp::Delete { .. }, wire::OpReply::Deleted { version, existed }) => {
            Ok(ClientReply::Applied(ApplyResult::Deleted {
                existed,
                version,
            }))
        }
        (wire::ClientOp::CompareAndSwap { .. }, wire::OpReply::Cas { swapped, current }) => {
            Ok(ClientReply::Applied(ApplyResult::Cas {
                swapped,
                version: current.as_ref().map_or(0, |c| c.version),
                current: if swapped {
                    None
                } else {
                    current.map(|c| c.value)
                },
            }))
        }
        (
            wire::ClientOp::Txn { .. },
            wire::OpReply::Txn {
                succeeded,
                results,
                version,
            },
        ) => Ok(ClientReply::Applied(ApplyResult::Txn {
            succeeded,
            results,
            version,
        })),
        (
            wire::ClientOp::LeaseGrant { .. }
            | wire::ClientOp::LeaseKeepAlive { .. }
            | wire::ClientOp::LeaseRevoke { .. },
            wire::OpReply::Lease { id, ttl_ms, keys },
        ) => Ok(ClientReply::Applied(ApplyResult::Lease {
            id,
            ttl_ms,
            keys,
        })),
        (wire::ClientOp::PutLease { .. }, wire::OpReply::Written { version }) => {
            Ok(ClientReply::Applied(ApplyResult::Put { version }))
        }
        (wire::ClientOp::LeaseList, wire::OpReply::Leases(l)) => Ok(ClientReply::Leases(l)),
        (_, r) => Err(ClientError::ForwardBroken(format!(
            "the leader answered a {} with {}",
            if op.is_write() { "write" } else { "read" },
            match r {
                wire::OpReply::Written { .. } => "a write result",
                wire::OpReply::Value(_) => "a value",
                wire::OpReply::Deleted { .. } => "a delete result",
                wire::OpReply::Cas { .. } => "a compare-and-swap result",
                wire::OpReply::Scan { .. } => "a scan result",
                wire::OpReply::Txn { .. } => "a transaction result",
                wire::OpReply::Lease { .. } => "a lease result",
                wire::OpReply::Leases(_) => "a lease list",
            }
        ))),
    }
}

/// Runs one operation; also returns the staleness of an eventual read it served.
async fn run_op(
    ctx: &Rc<CoreCtx>,
    op: wire::ClientOp,
    shard: u32,
) -> (wire::OpOutcome, Option<wire::EventualRead>) {
    match to_request(op, shard, ctx) {
        Ok(req) => {
            // The answer reads back only a scan's limit and a CAS's new value: any other op
            // (a put carries its key and value) is stood in for by a data-free one, uncopied.
            let op = match &req.op {
                ClientOp::Scan { .. }
                | ClientOp::Write(WriteOp::CasValue { .. } | WriteOp::CasVersion { .. }) => {
                    req.op.clone()
                }
                _ => ClientOp::Write(WriteOp::Noop),
            };
            let r = server::execute(ctx, req).await;
            let eventual = match &r {
                Ok(ClientReply::Eventual { read, .. }) => Some(*read),
                _ => None,
            };
            (to_outcome(&op, r), eventual)
        }
        Err(e) => (wire::OpOutcome::Err(e), None),
    }
}

/// Serves one client or admin request frame and queues the answer on `conn`.
pub async fn serve_request(ctx: &Rc<CoreCtx>, conn: &Rc<Connection>, id: u64, msg: wire::Message) {
    match msg {
        wire::Message::ClientRequest(wire::ClientRequest {
            shard,
            command: wire::ClientCommand::Single(wire::ClientOp::Watch { filter, from }),
        }) => {
            crate::node::watch::serve::serve_frame_watch(ctx, conn, id, shard, filter, from).await;
        }
        wire::Message::ClientRequest(req) => {
            let mut eventual: Option<wire::EventualRead> = None;
            let outcome = match req.command {
                wire::ClientCommand::Single(op) => {
                    let (o, ev) = run_op(ctx, op, req.shard).await;
                    eventual = ev;
                    wire::ClientOutcome::Single(o)
                }
                wire::ClientCommand::Batch(ops) if ops.is_empty() || ops.len() > MAX_BATCH_OPS => {
                    wire::ClientOutcome::Failed(wire::ClientError::InvalidRequest(format!(
                        "a batch holds 1 to {MAX_BATCH_OPS} operations, not {}",
                        ops.len()
                    )))
                }
                wire::ClientCommand::Batch(ops) => {
                    let mut out = Vec::with_capacity(ops.len());
                    for op in ops {
                        let (o, ev) = run_op(ctx, op, req.shard).await;
                        eventual = match (eventual, ev) {
                            (Some(a), Some(b)) => Some(a.merge(b)),
                            (a, b) => a.or(b),
                        };
                        out.push(o);
                    }
                    wire::ClientOutcome::Batch(out)
                }
            };
            let _ = conn.respond(id, &wire::ClientResponse { outcome, eventual });
        }
        wire::Message::AdminRequest(req) => {
            let resp = serve_admin(ctx, req).await;
            let _ = conn.respond(id, &resp);
        }
        other => {
            let _ = conn.send_error(
                id,
                wire::ErrorCode::Unsupported,
                format!("{:?} is not a request", other.kind()),
            );
        }
    }
}

fn done_or_failed(r: ClientResult) -> wire::AdminResponse {
    match r {
        Ok(ClientReply::Committed { index }) => wire::AdminResponse::Done { index },
        Ok(_) => wire::AdminResponse::Done { index: 0 },
        Err(e) => wire::AdminResponse::Failed(e),
    }
}

async fn serve_admin(ctx: &Rc<CoreCtx>, req: wire::AdminRequest) -> wire::AdminResponse {
    let shards = ctx.cfg.runtime.shards_per_node as GroupId;
    let check = |g: GroupId| -> Result<(), wire::AdminResponse> {
        if g >= shards {
            return Err(wire::AdminResponse::Failed(wire::ClientError::WrongShard {
                shard: g as u32,
            }));
        }
        Ok(())
    };
    match req {
        wire::AdminRequest::ClusterStatus => {
            let shards = server::cluster_status(ctx).await;
            let s = ctx.st.borrow();
            let mut nodes = vec![wire::NodeStatus {
                node_id: s.node_id,
                address: ctx.cfg.cluster.listen_address.clone(),
                reachable: true,
            }];
            for (id, l) in &s.peers {
                nodes.push(wire::NodeStatus {
                    node_id: *id,
                    address: l.address.clone(),
                    reachable: l.conn.as_ref().is_some_and(|c| !c.is_closing()),
                });
            }
            let shard_status = shards.iter().map(|r| r.to_wire()).collect();
            wire::AdminResponse::Status(wire::ClusterStatus {
                reporter: s.node_id,
                nodes,
                shards: shard_status,
            })
        }
        wire::AdminRequest::AddLearner {
            group,
            node_id,
            address,
        } => {
            if let Err(r) = check(group) {
                return r;
            }
            // The address travels in the configuration entry (every replica records it from
            // there), in the canonical form of the socket address so that one member has one
            // spelling.
            let Ok(sock) = address.parse::<std::net::SocketAddr>() else {
                return wire::AdminResponse::Failed(wire::ClientError::InvalidRequest(format!(
                    "learner address {address:?} is not host:port"
                )));
            };
            if let Err(why) = server::check_member_address(ctx, node_id, &sock.to_string()) {
                return wire::AdminResponse::Failed(wire::ClientError::InvalidRequest(why));
            }
            let change = ConfChange::AddLearner(node_id, Some(sock.to_string()));
            done_or_failed(server::change_membership(ctx, group, change).await)
        }
        wire::AdminRequest::Promote { group, node_id } => {
            if let Err(r) = check(group) {
                return r;
            }
            done_or_failed(
                server::change_membership(ctx, group, ConfChange::Promote(node_id)).await,
            )
        }
        wire::AdminRequest::Remove { group, node_id } => {
            if let Err(r) = check(group) {
                return r;
            }
            done_or_failed(server::change_membership(ctx, group, ConfChange::Remove(node_id)).await)
        }
        wire::AdminRequest::TransferLeadership { group, to } => {
            if let Err(r) = check(group) {
                return r;
            }
            done_or_failed(server::transfer_leadership(ctx, group, to).await)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
