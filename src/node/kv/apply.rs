//! Applying one committed entry to a shard's store, written once for the node's driver and the
//! simulator (which runs this code and the node's [`KvStore`]).
//!
//! Invariants checked here in every build, before anything changes: entries are applied in
//! order with no gap (`index == applied + 1`) and never beyond the commit index. A violation
//! is returned as an [`ApplyViolation`]; the node stops the core with its message, the
//! simulator reports it with the seed that replays it.

use super::{ApplyResult, KvStore};
use crate::raft::{Entry, EntryKind};

/// A broken apply invariant (a bug: the node must stop rather than diverge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyViolation(pub String);

impl std::fmt::Display for ApplyViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "apply invariant broken: {}", self.0)
    }
}

/// Applies the committed entry `e` (the log's commit index is `committed`) to `kv`. Returns the
/// result of a normal entry's command (`None` for no-op and configuration entries).
pub fn apply_entry(
    kv: &mut KvStore,
    e: &Entry,
    committed: u64,
) -> Result<Option<ApplyResult>, ApplyViolation> {
    let applied = kv.applied_index();
    if Some(e.index) != applied.checked_add(1) {
        return Err(ApplyViolation(format!(
            "entry {} handed to the state machine after applied index {applied} (gap or replay)",
            e.index
        )));
    }
    if e.index > committed {
        return Err(ApplyViolation(format!(
            "entry {} applied beyond the commit index {committed}",
            e.index
        )));
    }
    Ok(match e.kind {
        EntryKind::Normal => kv.apply(e.index, &e.data),
        EntryKind::Noop | EntryKind::Config => {
            kv.apply_empty(e.index);
            None
        }
    })
}

/// The one check before the log overwrites stored entries from `first` on: nothing the state
/// machine applied may be replaced.
pub fn check_truncation(first: u64, applied: u64) -> Result<(), ApplyViolation> {
    if first <= applied {
        return Err(ApplyViolation(format!(
            "the log would overwrite entries from {first}, but {applied} is already applied"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64) -> Entry {
        Entry {
            index,
            term: 1,
            kind: EntryKind::Noop,
            data: std::sync::Arc::from(&[][..]),
        }
    }

    #[test]
    fn gaps_replays_and_uncommitted_entries_are_refused() {
        let mut kv = KvStore::new();
        assert_eq!(apply_entry(&mut kv, &entry(1), 5), Ok(None));
        assert!(apply_entry(&mut kv, &entry(3), 5).is_err(), "gap");
        assert!(apply_entry(&mut kv, &entry(1), 5).is_err(), "replay");
        assert!(apply_entry(&mut kv, &entry(2), 1).is_err(), "beyond commit");
        assert_eq!(kv.applied_index(), 1);
        assert!(check_truncation(1, 1).is_err());
        assert!(check_truncation(2, 1).is_ok());
    }
}
