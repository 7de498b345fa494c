//! The operations a client runs and the replies it gets, in owned, user-facing form, and their
//! translation to and from the wire messages of `ringraft-net`.
//!
//! Invariants: a write ([`Op::is_write`]) always travels with a [`Session`]; the same session
//! is sent on every retry of one operation, so the node's session table applies it once. A
//! missing key is not an error: a get answers [`Reply::Value`]`(None)`, a delete
//! [`Reply::Deleted`] with `existed: false`. Owned by the client.

use ringraft_net::message::{
    lease_shard, CasExpect, ClientCommand, ClientError as WireError, ClientOp, ClientOutcome,
    ClientRequest, Consistency, KeyValue, LeaseInfo, OpOutcome, OpReply, ScanRange, Session, Txn,
    TxnOpResult, Versioned,
};

/// One key-value operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Set `key` to `value`.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Read `key`.
    Get {
        /// Key.
        key: Vec<u8>,
        /// Read consistency (`Default`: the cluster's configured policy).
        consistency: Consistency,
    },
    /// Remove `key`.
    Delete {
        /// Key.
        key: Vec<u8>,
    },
    /// Set `key` to `new_value` if `expect` holds.
    Cas {
        /// Key.
        key: Vec<u8>,
        /// The condition (current value or version).
        expect: CasExpect,
        /// Value stored when the condition holds.
        new_value: Vec<u8>,
    },
    /// Keys starting with `prefix` in one shard, in key order, at most `limit`. The clients'
    /// `scan` runs one per shard and merges them ([`merge_scans`]).
    Scan {
        /// Prefix.
        prefix: Vec<u8>,
        /// Most pairs.
        limit: u32,
        /// Read consistency.
        consistency: Consistency,
        /// The shard to scan (`None`: the shard the prefix itself hashes to).
        shard: Option<u32>,
    },
    /// A transaction on keys of one shard (one log entry).
    Txn(Txn),
    /// Set `key` to `value` attached to lease `lease` (granted first when `ttl_ms > 0`).
    PutLease {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Lease id (its shard must be the key's).
        lease: u64,
        /// Grant the lease with this time to live first (0: it must exist).
        ttl_ms: u64,
    },
    /// Grant lease `id` (its top bits name its shard) for `ttl_ms`.
    LeaseGrant {
        /// Lease id ([`ringraft_net::message::lease_id`]).
        id: u64,
        /// Time to live.
        ttl_ms: u64,
    },
    /// Restart lease `id`'s time to live.
    LeaseKeepAlive {
        /// Lease id.
        id: u64,
    },
    /// Revoke lease `id` (deleting its keys).
    LeaseRevoke {
        /// Lease id.
        id: u64,
    },
    /// The leases of `shard`.
    LeaseList {
        /// Shard.
        shard: u32,
    },
}

impl Op {
    /// The key that picks the shard.
    pub fn routing_key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. }
            | Op::Get { key, .. }
            | Op::Delete { key }
            | Op::Cas { key, .. }
            | Op::PutLease { key, .. } => key,
            Op::Scan { prefix, .. } => prefix,
            Op::Txn(t) => t.keys().next().unwrap_or(&[]),
            Op::LeaseGrant { .. }
            | Op::LeaseKeepAlive { .. }
            | Op::LeaseRevoke { .. }
            | Op::LeaseList { .. } => &[],
        }
    }

    /// Whether the operation goes through the Raft log (and carries a session).
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Op::Get { .. } | Op::Scan { .. } | Op::LeaseList { .. }
        )
    }

    /// The shard the operation goes to: a scan's explicit shard, else the routing key's.
    pub fn shard(&self, topo: &crate::client::topology::Topology) -> u32 {
        match self {
            Op::Scan { shard: Some(s), .. } | Op::LeaseList { shard: s } => *s,
            Op::LeaseGrant { id, .. } | Op::LeaseKeepAlive { id } | Op::LeaseRevoke { id } => {
                lease_shard(*id)
            }
            _ => topo.shard_of(self.routing_key()),
        }
    }

    /// The read consistency, for reads.
    pub fn consistency(&self) -> Option<Consistency> {
        match self {
            Op::Get { consistency, .. } | Op::Scan { consistency, .. } => Some(*consistency),
            _ => None,
        }
    }

    /// Short name for messages and benchmark output.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Put { .. } => "put",
            Op::Get { .. } => "get",
            Op::Delete { .. } => "delete",
            Op::Cas { .. } => "cas",
            Op::Scan { .. } => "scan",
            Op::Txn(_) => "txn",
            Op::PutLease { .. } => "put",
            Op::LeaseGrant { .. } => "lease grant",
            Op::LeaseKeepAlive { .. } => "lease keepalive",
            Op::LeaseRevoke { .. } => "lease revoke",
            Op::LeaseList { .. } => "lease list",
        }
    }

    /// The wire request for shard `shard`, with `session` on writes.
    pub fn to_request(&self, shard: u32, session: Option<Session>) -> ClientRequest {
        let op = match self.clone() {
            Op::Put { key, value } => ClientOp::Put {
                key,
                value,
                session,
            },
            Op::Get { key, consistency } => ClientOp::Get { key, consistency },
            Op::Delete { key } => ClientOp::Delete { key, session },
            Op::Cas {
                key,
                expect,
                new_value,
            } => ClientOp::CompareAndSwap {
                key,
                expect,
                new_value,
                session,
            },
            Op::Scan {
                prefix,
                limit,
                consistency,
                ..
            } => ClientOp::Scan {
                range: ScanRange::Prefix(prefix),
                limit,
                consistency,
            },
            Op::Txn(txn) => ClientOp::Txn { txn, session },
            Op::PutLease {
                key,
                value,
                lease,
                ttl_ms,
            } => ClientOp::PutLease {
                key,
                value,
                lease,
                ttl_ms,
                session,
            },
            Op::LeaseGrant { id, ttl_ms } => ClientOp::LeaseGrant {
                id,
                ttl_ms,
                session,
            },
            Op::LeaseKeepAlive { id } => ClientOp::LeaseKeepAlive { id, session },
            Op::LeaseRevoke { id } => ClientOp::LeaseRevoke { id, session },
            Op::LeaseList { .. } => ClientOp::LeaseList,
        };
        ClientRequest {
            shard,
            command: ClientCommand::Single(op),
        }
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
pub fn merge_scans(parts: Vec<(Vec<KeyValue>, bool)>, limit: u32) -> (Vec<KeyValue>, bool) {
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
pub fn interpret(op: &Op, outcome: ClientOutcome) -> Answer {
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
    match (op, one) {
        (Op::Get { .. }, OpOutcome::Err(WireError::KeyNotFound)) => {
            Answer::Done(Reply::Value(None))
        }
        (Op::Scan { .. }, OpOutcome::Err(WireError::KeyNotFound)) => Answer::Done(Reply::Scan {
            items: Vec::new(),
            more: false,
        }),
        (Op::Delete { .. }, OpOutcome::Err(WireError::KeyNotFound)) => {
            Answer::Done(Reply::Deleted {
                existed: false,
                version: 0,
            })
        }
        (_, OpOutcome::Err(e)) => Answer::Failed(e),
        (Op::Put { .. }, OpOutcome::Ok(OpReply::Written { version })) => {
            Answer::Done(Reply::Written { version })
        }
        (Op::Get { .. }, OpOutcome::Ok(OpReply::Value(v))) => Answer::Done(Reply::Value(Some(v))),
        (Op::Delete { .. }, OpOutcome::Ok(OpReply::Deleted { version, existed })) => {
            Answer::Done(Reply::Deleted { existed, version })
        }
        (Op::Cas { .. }, OpOutcome::Ok(OpReply::Cas { swapped, current })) => {
            Answer::Done(Reply::Cas { swapped, current })
        }
        (Op::Scan { .. }, OpOutcome::Ok(OpReply::Scan { items, more })) => {
            Answer::Done(Reply::Scan { items, more })
        }
        (
            Op::Txn(_),
            OpOutcome::Ok(OpReply::Txn {
                succeeded,
                results,
                version,
            }),
        ) => Answer::Done(Reply::Txn {
            succeeded,
            results,
            version,
        }),
        (Op::PutLease { .. }, OpOutcome::Ok(OpReply::Written { version })) => {
            Answer::Done(Reply::Written { version })
        }
        (
            Op::LeaseGrant { .. } | Op::LeaseKeepAlive { .. } | Op::LeaseRevoke { .. },
            OpOutcome::Ok(OpReply::Lease { id, ttl_ms, keys }),
        ) => Answer::Done(Reply::Lease { id, ttl_ms, keys }),
        (Op::LeaseList { .. }, OpOutcome::Ok(OpReply::Leases(l))) => Answer::Done(Reply::Leases(l)),
        (op, OpOutcome::Ok(other)) => {
            Answer::Malformed(format!("{} was answered with {other:?}", op.name()))
        }
    }
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
        let put = Op::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        assert!(put.is_write());
        match put.to_request(2, Some(s)).command {
            ClientCommand::Single(ClientOp::Put { session, .. }) => assert_eq!(session, Some(s)),
            other => panic!("{other:?}"),
        }
        let get = Op::Get {
            key: b"k".to_vec(),
            consistency: Consistency::Lease,
        };
        assert!(!get.is_write());
        assert_eq!(get.to_request(1, None).shard, 1);
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
        let get = Op::Get {
            key: b"k".to_vec(),
            consistency: Consistency::Default,
        };
        let nf = ClientOutcome::Single(OpOutcome::Err(WireError::KeyNotFound));
        assert_eq!(
            interpret(&get, nf.clone()),
            Answer::Done(Reply::Value(None))
        );
        let del = Op::Delete { key: b"k".to_vec() };
        assert_eq!(
            interpret(&del, nf),
            Answer::Done(Reply::Deleted {
                existed: false,
                version: 0
            })
        );
        let put = Op::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
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
