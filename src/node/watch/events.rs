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
//!
//! Two steps, so the apply path pays for events only when someone reads them: [`shape_of`]
//! tells from the result alone (no decoding, no allocation) whether the entry made events and
//! of which kind; [`derive`] decodes the command into them. A single-key change's events
//! depend on its command bytes and its [`Shape`] only, which is what the history keeps.

use std::sync::Arc;

use crate::node::kv::{ApplyResult, Command, WriteOp};
use ringraft_net::message::{TxnOp, TxnOpResult};

use super::{WatchEvent, WatchEventKind};

/// What applying one normal entry did, as far as a watch needs it.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    /// The entry's command bytes (shared with the log entry: the history keeps a reference).
    pub data: &'a Arc<[u8]>,
    /// The store's result.
    pub result: &'a ApplyResult,
    /// Keys the entry deleted through a lease ([`crate::node::kv::KvStore::take_dropped_keys`]).
    pub dropped: &'a [Vec<u8>],
}

/// Which events an entry that changed something makes, as told by the store's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A put of the command's key and value (plain or attached to a lease): one put event.
    Put,
    /// A delete of an existing key: one delete event.
    Deleted,
    /// A compare-and-swap that swapped: one put event of its new value.
    Cas,
    /// A transaction: the events of the branch it ran (needs the result's per-op results).
    Txn,
    /// A lease revoke or expiry that removed keys: one delete per key (needs the dropped keys).
    Lease,
}

impl Shape {
    /// Whether the events follow from the command bytes alone (one key, one event).
    pub fn single(self) -> bool {
        matches!(self, Shape::Put | Shape::Deleted | Shape::Cas)
    }
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

/// Whether the normal entry at `index` made events, and which kind; `None` when it changed
/// nothing. Reads only the result (no decoding).
pub fn shape_of(index: u64, result: &ApplyResult, dropped: &[Vec<u8>]) -> Option<Shape> {
    match result {
        ApplyResult::Put { version } if *version == index => Some(Shape::Put),
        ApplyResult::Deleted {
            existed: true,
            version,
        } if *version == index => Some(Shape::Deleted),
        ApplyResult::Cas {
            swapped: true,
            version,
            ..
        } if *version == index => Some(Shape::Cas),
        ApplyResult::Txn { version, .. } if *version == index => Some(Shape::Txn),
        ApplyResult::Lease { .. } if !dropped.is_empty() => Some(Shape::Lease),
        _ => None,
    }
}

/// The events of the normal entry at `index`.
pub fn events_of(index: u64, applied: Applied<'_>) -> Vec<WatchEvent> {
    match shape_of(index, applied.result, applied.dropped) {
        Some(shape) => derive(index, shape, applied.data, Some(applied)),
        None => Vec::new(),
    }
}

/// The events of the entry at `index` with command bytes `data` and shape `shape`. A
/// transaction or a lease's deletes need what applying it returned (`applied`); a single-key
/// shape does not (`None` is enough). Bytes that do not decode make no event (the store
/// applied them, so they did decode there).
pub fn derive(
    index: u64,
    shape: Shape,
    data: &[u8],
    applied: Option<Applied<'_>>,
) -> Vec<WatchEvent> {
    let Ok(cmd) = Command::decode(data) else {
        return Vec::new();
    };
    match (cmd.op, shape) {
        (WriteOp::Put { key, value }, Shape::Put)
        | (WriteOp::PutLease { key, value, .. }, Shape::Put) => vec![put(key, value, index)],
        (WriteOp::Delete { key }, Shape::Deleted) => vec![delete(key, index)],
        (WriteOp::CasValue { key, new, .. }, Shape::Cas)
        | (WriteOp::CasVersion { key, new, .. }, Shape::Cas) => vec![put(key, new, index)],
        (WriteOp::Txn(txn), Shape::Txn) => {
            let Some(ApplyResult::Txn {
                succeeded, results, ..
            }) = applied.map(|a| a.result)
            else {
                return Vec::new();
            };
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
        (WriteOp::LeaseRevoke { .. }, Shape::Lease)
        | (WriteOp::LeaseExpire { .. }, Shape::Lease) => applied
            .map(|a| a.dropped)
            .unwrap_or_default()
            .iter()
            .map(|k| delete(k.clone(), index))
            .collect(),
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
