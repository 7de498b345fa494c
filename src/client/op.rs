//! The operations a client runs and the replies it gets. An operation is the wire's own
//! [`ClientOp`], the one vocabulary of the key-value API; the client sends it in a
//! [`ClientRequest`] ([`to_request`]) to the shard its routing key (or lease id) names, or to
//! the one a per-shard call names, and reads the [`ClientOutcome`] back into a [`Reply`]
//! ([`interpret`]).
//!
//! Invariants: a write ([`ClientOp::is_write`]) always travels with the client's own session,
//! which replaces whatever session the caller put in the op; the same session is sent on every
//! retry of one operation, so the node's session table applies it once. A missing key is not
//! an error: a get answers [`Reply::Value`]`(None)`, a delete [`Reply::Deleted`] with
//! `existed: false`. A watch is a stream, not an operation ([`crate::client::watch`]).
//! Owned by the client.

use ringraft_net::message::{
    lease_shard, ClientCommand, ClientError as WireError, ClientOp, ClientOutcome, ClientRequest,
    Consistency, KeyValue, LeaseInfo, OpOutcome, OpReply, Session, TxnOpResult, Versioned,
};

use crate::client::error::Error;
use crate::client::topology::Topology;

/// Refuses a watch handed to `execute`: a watch is a stream of answers, run by
/// [`crate::client::watch::Watch`].
pub(crate) fn refuse_watch(op: &ClientOp) -> Result<(), Error> {
    match op {
        ClientOp::Watch { .. } => Err(Error::InvalidRequest(
            "a watch is a stream, not one operation: use client::watch::Watch".into(),
        )),
        _ => Ok(()),
    }
}

/// The error for a reply of the wrong kind to a `what` call.
pub(crate) fn unexpected(what: &str, reply: &Reply) -> Error {
    Error::Protocol {
        address: String::new(),
        message: format!("{what} got the reply {reply:?}"),
    }
}

/// The shard `op` goes to: `explicit` when the caller names one (a per-shard scan or lease
/// list), else the shard a lease operation's id names, else its routing key's.
pub(crate) fn shard_of(op: &ClientOp, explicit: Option<u32>, topo: &Topology) -> u32 {
    match (explicit, op) {
        (Some(s), _) => s,
        (
            None,
            ClientOp::LeaseGrant { id, .. }
            | ClientOp::LeaseKeepAlive { id, .. }
            | ClientOp::LeaseRevoke { id, .. },
        ) => lease_shard(*id),
        (None, _) => topo.shard_of(op.routing_key()),
    }
}

/// The read consistency of a read.
pub(crate) fn consistency(op: &ClientOp) -> Option<Consistency> {
    match op {
        ClientOp::Get { consistency, .. } | ClientOp::Scan { consistency, .. } => {
            Some(*consistency)
        }
        _ => None,
    }
}

/// Short name for messages and benchmark output.
pub(crate) fn name(op: &ClientOp) -> &'static str {
    match op {
        ClientOp::Put { .. } | ClientOp::PutLease { .. } => "put",
        ClientOp::Get { .. } => "get",
        ClientOp::Delete { .. } => "delete",
        ClientOp::CompareAndSwap { .. } => "cas",
        ClientOp::Scan { .. } => "scan",
        ClientOp::Txn { .. } => "txn",
        ClientOp::LeaseGrant { .. } => "lease grant",
        ClientOp::LeaseKeepAlive { .. } => "lease keepalive",
        ClientOp::LeaseRevoke { .. } => "lease revoke",
        ClientOp::LeaseList => "lease list",
        ClientOp::Watch { .. } => "watch",
    }
}

/// The wire request of `op` for shard `shard`; a write carries `session` (and only it).
pub fn to_request(op: &ClientOp, shard: u32, session: Option<Session>) -> ClientRequest {
    let mut op = op.clone();
    match &mut op {
        ClientOp::Put { session: s, .. }
        | ClientOp::Delete { session: s, .. }
        | ClientOp::CompareAndSwap { session: s, .. }
        | ClientOp::Txn { session: s, .. }
        | ClientOp::PutLease { session: s, .. }
        | ClientOp::LeaseGrant { session: s, .. }
        | ClientOp::LeaseKeepAlive { session: s, .. }
        | ClientOp::LeaseRevoke { session: s, .. } => *s = session,
        ClientOp::Get { .. }
        | ClientOp::Scan { .. }
        | ClientOp::LeaseList
        | ClientOp::Watch { .. } => {}
    }
    ClientRequest {
        shard,
        command: ClientCommand::Single(op),
    }
}

/// Successful result of one operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// A put applied at this version (the log index that wrote it).
    Written {
        /// New version.
        version: u64,
    },
    /// A get's result (`None`: the key does not exist).
    Value(Option<Versioned>),
    /// A delete's result.
    Deleted {
        /// Whether the key existed.
        existed: bool,
        /// Version of the delete (0 when the key did not exist).
        version: u64,
    },
    /// A compare-and-swap's result.
    Cas {
        /// Whether the swap happened.
        swapped: bool,
        /// The value after the operation (`None`: absent).
        current: Option<Versioned>,
    },
    /// A scan's pairs.
    Scan {
        /// Pairs in key order.
        items: Vec<KeyValue>,
        /// Whether the limit cut the result short.
        more: bool,
    },
    /// A transaction's result.
    Txn {
        /// Whether every compare held (the success branch ran).
        succeeded: bool,
        /// Results of the branch's ops, in order.
        results: Vec<TxnOpResult>,
        /// The transaction's log index.
        version: u64,
    },
    /// A lease granted, kept alive or revoked.
    Lease {
        /// Lease id.
        id: u64,
        /// Time to live.
        ttl_ms: u64,
        /// Keys attached (revoke: keys deleted).
        keys: u32,
    },
    /// One shard's leases.
    Leases(Vec<LeaseInfo>),
}

/// Merges per-shard scan results into one answer: pairs in key order, at most `limit`, and
/// `more` when any shard was cut short or the merge dropped pairs.
pub(crate) fn merge_scans(parts: Vec<(Vec<KeyValue>, bool)>, limit: u32) -> (Vec<KeyValue>, bool) {
    let mut more = parts.iter().any(|(_, m)| *m);
    let mut items: Vec<KeyValue> = parts.into_iter().flat_map(|(i, _)| i).collect();
    items.sort_by(|a, b| a.key.cmp(&b.key));
    let limit = limit as usize;
    if items.len() > limit {
        items.truncate(limit);
        more = true;
    }
    (items, more)
}

/// What one attempt's answer means for the operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The operation completed.
    Done(Reply),
    /// The node reported a typed failure.
    Failed(WireError),
    /// The answer does not fit the request.
    Malformed(String),
}

/// Interprets the response to a single-op request for `op`.
pub fn interpret(op: &ClientOp, outcome: ClientOutcome) -> Answer {
    let one = match outcome {
        ClientOutcome::Single(o) => o,
        ClientOutcome::Failed(e) => return Answer::Failed(e),
        ClientOutcome::Watch(_) => {
            return Answer::Malformed("a watch stream answered a single operation".into())
        }
        ClientOutcome::Batch(v) => {
            return Answer::Malformed(format!(
                "a batch of {} outcomes answered a single operation",
                v.len()
            ))
        }
    };
    let reply = match (op, one) {
        (ClientOp::Get { .. }, OpOutcome::Err(WireError::KeyNotFound)) => Reply::Value(None),
        (ClientOp::Scan { .. }, OpOutcome::Err(WireError::KeyNotFound)) => Reply::Scan {
            items: Vec::new(),
            more: false,
        },
        (ClientOp::Delete { .. }, OpOutcome::Err(WireError::KeyNotFound)) => Reply::Deleted {
            existed: false,
            version: 0,
        },
        (_, OpOutcome::Err(e)) => return Answer::Failed(e),
        (
            ClientOp::Put { .. } | ClientOp::PutLease { .. },
            OpOutcome::Ok(OpReply::Written { version }),
        ) => Reply::Written { version },
        (ClientOp::Get { .. }, OpOutcome::Ok(OpReply::Value(v))) => Reply::Value(Some(v)),
        (ClientOp::Delete { .. }, OpOutcome::Ok(OpReply::Deleted { version, existed })) => {
            Reply::Deleted { existed, version }
        }
        (ClientOp::CompareAndSwap { .. }, OpOutcome::Ok(OpReply::Cas { swapped, current })) => {
            Reply::Cas { swapped, current }
        }
        (ClientOp::Scan { .. }, OpOutcome::Ok(OpReply::Scan { items, more })) => {
            Reply::Scan { items, more }
        }
        (
            ClientOp::Txn { .. },
            OpOutcome::Ok(OpReply::Txn {
                succeeded,
                results,
                version,
            }),
        ) => Reply::Txn {
            succeeded,
            results,
            version,
        },
        (
            ClientOp::LeaseGrant { .. }
            | ClientOp::LeaseKeepAlive { .. }
            | ClientOp::LeaseRevoke { .. },
            OpOutcome::Ok(OpReply::Lease { id, ttl_ms, keys }),
        ) => Reply::Lease { id, ttl_ms, keys },
        (ClientOp::LeaseList, OpOutcome::Ok(OpReply::Leases(l))) => Reply::Leases(l),
        (op, OpOutcome::Ok(other)) => {
            return Answer::Malformed(format!("{} was answered with {other:?}", name(op)))
        }
    };
    Answer::Done(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringraft_net::message::LeaderHint;

    #[test]
    fn writes_carry_the_session_and_reads_do_not() {
        let s = Session {
            client_id: 7,
            sequence: 3,
        };
        // A session the caller put in is replaced by the client's.
        let put = ClientOp::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            session: Some(Session {
                client_id: 1,
                sequence: 1,
            }),
        };
        assert!(put.is_write());
        match to_request(&put, 2, Some(s)).command {
            ClientCommand::Single(ClientOp::Put { session, .. }) => assert_eq!(session, Some(s)),
            other => panic!("{other:?}"),
        }
        let get = ClientOp::Get {
            key: b"k".to_vec(),
            consistency: Consistency::Lease,
        };
        assert!(!get.is_write());
        assert_eq!(to_request(&get, 1, None).shard, 1);
    }

    #[test]
    fn scans_of_all_shards_merge_in_key_order() {
        let kv = |k: &str| KeyValue {
            key: k.as_bytes().to_vec(),
            value: Vec::new(),
            version: 1,
        };
        let (items, more) = merge_scans(
            vec![
                (vec![kv("a"), kv("d")], false),
                (vec![kv("b"), kv("c")], false),
            ],
            3,
        );
        let keys: Vec<_> = items.iter().map(|i| i.key.clone()).collect();
        assert_eq!(keys, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        assert!(more, "the merge cut one pair");
        assert!(!merge_scans(vec![(vec![kv("a")], false)], 3).1);
    }

    #[test]
    fn missing_keys_are_replies_not_errors() {
        let get = ClientOp::Get {
            key: b"k".to_vec(),
            consistency: Consistency::Default,
        };
        let nf = ClientOutcome::Single(OpOutcome::Err(WireError::KeyNotFound));
        assert_eq!(
            interpret(&get, nf.clone()),
            Answer::Done(Reply::Value(None))
        );
        let del = ClientOp::Delete {
            key: b"k".to_vec(),
            session: None,
        };
        assert_eq!(
            interpret(&del, nf),
            Answer::Done(Reply::Deleted {
                existed: false,
                version: 0
            })
        );
        let put = ClientOp::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            session: None,
        };
        let nl = WireError::NotLeader {
            leader: Some(LeaderHint {
                node_id: 2,
                address: "127.0.0.1:9082".into(),
            }),
        };
        assert_eq!(
            interpret(&put, ClientOutcome::Failed(nl.clone())),
            Answer::Failed(nl.clone())
        );
        assert!(nl.to_string().contains("127.0.0.1:9082"));
        assert!(matches!(
            interpret(
                &put,
                ClientOutcome::Single(OpOutcome::Ok(OpReply::Scan {
                    items: vec![],
                    more: false
                }))
            ),
            Answer::Malformed(_)
        ));
    }
}
