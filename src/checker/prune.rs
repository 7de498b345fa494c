//! Setting aside pending writes nobody observed, before the search of one key.
//!
//! A pending operation (timed out, crashed: outcome unknown) may take effect at any time after
//! its call or never, so the search must try it at every point of the rest of the key's
//! history and also leave it out. With k such writes concurrent with everything after them,
//! that is up to 2^k subsets times their placements: a fault that times out a burst of writes
//! on one hot key makes the search exponential, although most of those writes were never read
//! by anybody.
//!
//! A pending write whose resulting value is never observed can be dropped without changing the
//! verdict. Let `w` be a pending put/write/cas that sets the key to `v`, or a pending delete
//! (sets it absent, `v` = absent), and say no operation of the key observes `v`: no read/get
//! returned `v`, no cas expected `v`, and the key has no append (an append extends the value,
//! so a later read would observe `v` through it). Then:
//! - If the history without `w` is linearizable, so is the history with it: a pending
//!   operation may be left out of a linearization.
//! - If the history with `w` has a linearization that places `w`, the state right after `w` is
//!   `v`. The next operation placed after `w` cannot be a read (it would return `v`), a cas
//!   (its compare would need `v`) or an append (there are none), so it is a put/write/delete
//!   that overwrites the value regardless of what it was, or there is none. Removing `w` then
//!   leaves every other operation's input state, and so every result, unchanged: the order
//!   without `w` is a linearization of the history without `w`.
//!
//! The argument holds for every model over one key's value ([`super::model`]: register, kv,
//! and the unknown-initial wrapper, where the overwrite pins the value either way). Completed
//! writes are never dropped: they must be placed, and their placement constrains reads.
//!
//! Invariants: only pending operations are dropped; the kept operations keep their order.
//! Owned by the checker.

use std::collections::HashSet;

use super::history::{Op, Operation};

/// The value a write-like operation leaves in the key (Some(None) = absent), or None for an
/// operation that does not overwrite the value (reads, appends).
fn written(op: &Op) -> Option<Option<&str>> {
    match op {
        Op::Write { value } | Op::Put { value } => Some(Some(value.as_str())),
        Op::Cas { new, .. } => Some(Some(new.as_str())),
        Op::Delete => Some(None),
        Op::Read { .. } | Op::Get { .. } | Op::Append { .. } => None,
    }
}

/// Splits one key's operations into the ones the search needs and the number of pending writes
/// set aside because their value is never observed (see the module documentation).
pub fn drop_unobserved_pending(ops: &[Operation]) -> (Vec<Operation>, usize) {
    if ops.iter().any(|o| matches!(o.op, Op::Append { .. })) {
        return (ops.to_vec(), 0);
    }
    let mut observed: HashSet<Option<&str>> = HashSet::new();
    for o in ops {
        match &o.op {
            Op::Read { observed: v } | Op::Get { observed: v } => {
                observed.insert(v.as_deref());
            }
            Op::Cas { expected, .. } => {
                observed.insert(expected.as_deref());
            }
            Op::Write { .. } | Op::Put { .. } | Op::Delete | Op::Append { .. } => {}
        }
    }
    let droppable =
        |o: &Operation| !o.is_completed() && written(&o.op).is_some_and(|v| !observed.contains(&v));
    let kept: Vec<Operation> = ops.iter().filter(|o| !droppable(o)).cloned().collect();
    let dropped = ops.len() - kept.len();
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(i: usize, op: Op, done: bool) -> Operation {
        Operation {
            index: i,
            process: i as u64,
            key: Some("k".into()),
            op,
            call: 2 * i as u64,
            ret: done.then_some(2 * i as u64 + 1),
            call_line: i,
            return_line: None,
        }
    }
    fn put(v: &str) -> Op {
        Op::Put { value: v.into() }
    }
    fn get(v: Option<&str>) -> Op {
        Op::Get {
            observed: v.map(String::from),
        }
    }

    #[test]
    fn only_pending_writes_of_values_nobody_saw_are_dropped() {
        let ops = vec![
            op(0, put("a"), false),   // pending, read below: kept
            op(1, put("b"), false),   // pending, never read: dropped
            op(2, put("c"), true),    // completed, never read: kept
            op(3, Op::Delete, false), // pending; absent is read below: kept
            op(
                4,
                Op::Cas {
                    expected: Some("c".into()),
                    new: "d".into(),
                },
                false,
            ), // pending cas to a value never read: dropped
            op(
                5,
                Op::Cas {
                    expected: Some("e".into()),
                    new: "a".into(),
                },
                false,
            ), // pending cas to a value read below: kept; its expected value "e" is observed
            op(6, put("e"), false),   // pending, "e" is compared by the cas: kept
            op(7, get(Some("a")), true),
            op(8, get(None), true),
        ];
        let (kept, dropped) = drop_unobserved_pending(&ops);
        assert_eq!(dropped, 2);
        let idx: Vec<usize> = kept.iter().map(|o| o.index).collect();
        assert_eq!(idx, vec![0, 2, 3, 5, 6, 7, 8]);
        // Without the read of absent, the pending delete goes too.
        let (_, dropped) = drop_unobserved_pending(&ops[..8]);
        assert_eq!(dropped, 3);
    }

    #[test]
    fn a_key_with_appends_is_left_alone() {
        let ops = vec![
            op(0, put("a"), false),
            op(1, Op::Append { value: "x".into() }, true),
            op(2, get(Some("ax")), true),
        ];
        let (kept, dropped) = drop_unobserved_pending(&ops);
        assert_eq!((kept.len(), dropped), (3, 0));
    }
}
