//! What one applied log entry changed, as watch events: derived from the entry's command and
//! the result the store returned, so it runs the same on every replica.
//!
//! Rules: a put is an event; a compare-and-swap that swapped is a put event; a delete of a key
//! that existed is a delete event; a failed compare-and-swap, a delete of a missing key, a
//! no-op, a rejected command and a retried session write answered from the session table
//! (its result carries the version of the first application, not this entry's index) change
//! nothing and are no event. The match over the write operations is exhaustive on purpose:
//! a new operation does not compile until it says which events it makes.

use crate::node::kv::{ApplyResult, Command, WriteOp};

use super::{WatchEvent, WatchEventKind};

fn put(key: Vec<u8>, value: Vec<u8>, index: u64) -> WatchEvent {
    WatchEvent {
        kind: WatchEventKind::Put,
        key,
        value,
        version: index,
        revision: index,
    }
}

/// The events of the normal entry at `index` with command bytes `data`, which applied with
/// `result`.
pub fn events_of(index: u64, data: &[u8], result: &ApplyResult) -> Vec<WatchEvent> {
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
        } => *version == index,
        _ => false,
    };
    if !changed {
        return Vec::new();
    }
    let Ok(cmd) = Command::decode(data) else {
        return Vec::new();
    };
    match (cmd.op, result) {
        (WriteOp::Put { key, value }, ApplyResult::Put { .. }) => vec![put(key, value, index)],
        (WriteOp::Delete { key }, ApplyResult::Deleted { .. }) => vec![WatchEvent {
            kind: WatchEventKind::Delete,
            key,
            value: Vec::new(),
            version: 0,
            revision: index,
        }],
        (WriteOp::CasValue { key, new, .. }, ApplyResult::Cas { .. })
        | (WriteOp::CasVersion { key, new, .. }, ApplyResult::Cas { .. }) => {
            vec![put(key, new, index)]
        }
        (WriteOp::Put { .. }, _)
        | (WriteOp::Delete { .. }, _)
        | (WriteOp::CasValue { .. }, _)
        | (WriteOp::CasVersion { .. }, _)
        | (WriteOp::Noop, _) => Vec::new(),
    }
}
