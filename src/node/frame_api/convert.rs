//! Translation between the wire's client operations and outcomes and the node's requests and
//! results, in both directions (the second for requests a follower forwards to the leader).
//!
//! Mapping rules: `shard = u32::MAX` means "route by key" (no WrongShard check); a `Default`
//! consistency uses the configured policy; a write's `session` becomes the exactly-once
//! `(client_id, seq)`; a missing key is `KeyNotFound` for a get (a delete of a missing key is
//! `Deleted { existed: false }`); errors are the one error type of `ringraft-net`, sent as they
//! are, each classified as not applied or outcome unknown. Owned by the node.

use ringraft_net::message as wire;

use crate::node::kv::{ApplyResult, Versioned, WriteOp};
use crate::node::request::{
    ClientError, ClientOp, ClientReply, ClientRequest, ClientResult, Consistency,
};
use crate::node::server::{CoreCtx, ANY_SHARD};

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
pub(crate) fn to_request(
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
pub(crate) fn to_outcome(op: &ClientOp, r: ClientResult) -> wire::OpOutcome {
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
pub(crate) fn to_wire_request(req: ClientRequest) -> Result<wire::ClientRequest, ClientError> {
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
pub(crate) fn from_outcome(op: &wire::ClientOp, o: wire::OpOutcome) -> ClientResult {
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
