//! What one applied log entry changed, as watch events: derived from the entry's command, the
//! result the store returned and the keys the store reports it deleted through a lease, so it
//! runs the same on every replica.
//!
//! Rules: a put (plain or attached to a lease) is an event; a compare-and-swap that swapped is
//! a put event; a delete of a key that existed is a delete event; a transaction's puts and
//! deletes of existing keys are events at the transaction's revision, in the order of its
//! branch's ops (its gets are none); a lease revoke or expiry is one delete event per attached
//! key it removed, in key order; a lease grant or keep-alive, a failed compare-and-swap, a
//! delete of a missing key, a no-op, a rejected command and a retried session write answered
//! from the session table (its result carries the version of the first application, not this
//! entry's index; a retried revoke deletes nothing) change nothing and are no event. The match
//! over the write operations is exhaustive on purpose: a new operation does not compile until
//! it says which events it makes.

use crate::node::kv::{ApplyResult, Command, WriteOp};
use ringraft_net::message::{TxnOp, TxnOpResult};

use super::{WatchEvent, WatchEventKind};

/// What applying one normal entry did, as far as a watch needs it.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    /// The entry's command bytes.
    pub data: &'a [u8],
    /// The store's result.
    pub result: &'a ApplyResult,
    /// Keys the entry deleted through a lease ([`crate::node::kv::KvStore::take_dropped_keys`]).
    pub dropped: &'a [Vec<u8>],
}

fn put(key: Vec<u8>, value: Vec<u8>, index: u64) -> WatchEvent {
    WatchEvent {
        kind: WatchEventKind::Put,
        key,
        value,
        version: index,
        revision: index,
    }
}

fn delete(key: Vec<u8>, index: u64) -> WatchEvent {
    WatchEvent {
        kind: WatchEventKind::Delete,
        key,
        value: Vec::new(),
        version: 0,
        revision: index,
    }
}

/// The events of the normal entry at `index`.
pub fn events_of(index: u64, applied: Applied<'_>) -> Vec<WatchEvent> {
    let Applied {
        data,
        result,
        dropped,
    } = applied;
    let changed = match result {
        ApplyResult::Put { version }
        | ApplyResult::Deleted {
            existed: true,
            version,
        }
        | ApplyResult::Cas {
            swapped: true,
            version,
            ..
        }
        | ApplyResult::Txn { version, .. } => *version == index,
        ApplyResult::Lease { .. } => !dropped.is_empty(),
        _ => false,
    };
    if !changed {
        return Vec::new();
    }
    let Ok(cmd) = Command::decode(data) else {
        return Vec::new();
    };
    match (cmd.op, result) {
        (WriteOp::Put { key, value }, ApplyResult::Put { .. })
        | (WriteOp::PutLease { key, value, .. }, ApplyResult::Put { .. }) => {
            vec![put(key, value, index)]
        }
        (WriteOp::Delete { key }, ApplyResult::Deleted { .. }) => vec![delete(key, index)],
        (WriteOp::CasValue { key, new, .. }, ApplyResult::Cas { .. })
        | (WriteOp::CasVersion { key, new, .. }, ApplyResult::Cas { .. }) => {
            vec![put(key, new, index)]
        }
        (
            WriteOp::Txn(txn),
            ApplyResult::Txn {
                succeeded, results, ..
            },
        ) => {
            let ops = if *succeeded { txn.success } else { txn.failure };
            ops.into_iter()
                .zip(results)
                .filter_map(|(op, r)| match (op, r) {
                    (TxnOp::Put { key, value }, TxnOpResult::Put { .. }) => {
                        Some(put(key, value, index))
                    }
                    (TxnOp::Delete { key }, TxnOpResult::Deleted { existed: true }) => {
                        Some(delete(key, index))
                    }
                    _ => None,
                })
                .collect()
        }
        (WriteOp::LeaseRevoke { .. }, ApplyResult::Lease { .. })
        | (WriteOp::LeaseExpire { .. }, ApplyResult::Lease { .. }) => {
            dropped.iter().map(|k| delete(k.clone(), index)).collect()
        }
        (WriteOp::Put { .. }, _)
        | (WriteOp::PutLease { .. }, _)
        | (WriteOp::Delete { .. }, _)
        | (WriteOp::CasValue { .. }, _)
        | (WriteOp::CasVersion { .. }, _)
        | (WriteOp::Txn(_), _)
        | (WriteOp::LeaseRevoke { .. }, _)
        | (WriteOp::LeaseExpire { .. }, _)
        | (WriteOp::LeaseGrant { .. }, _)
        | (WriteOp::LeaseKeepAlive { .. }, _)
        | (WriteOp::Noop, _) => Vec::new(),
    }
}
