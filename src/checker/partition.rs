//! Splitting a history per key (P-compositionality: a history of independent keys is
//! linearizable iff each key's sub-history is), and checking the parts on worker threads.
//!
//! Invariants: every operation lands in exactly one part; parts keep the history's order;
//! results come back in key order whatever order the threads finish in; at most
//! [`CHECK_THREADS_MAX`] threads. Owned by the checker.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::history::Operation;

/// Most worker threads one check uses.
pub const CHECK_THREADS_MAX: usize = 8;

/// The operations of one key.
#[derive(Debug, Clone)]
pub struct Partition {
    /// The key (None = the history's single register).
    pub key: Option<String>,
    /// Its operations, in history order.
    pub ops: Vec<Operation>,
}

/// Splits operations per key, in key order.
pub fn split_by_key(ops: &[Operation]) -> Vec<Partition> {
    let mut parts: BTreeMap<Option<String>, Vec<Operation>> = BTreeMap::new();
    for op in ops {
        parts.entry(op.key.clone()).or_default().push(op.clone());
    }
    parts
        .into_iter()
        .map(|(key, ops)| Partition { key, ops })
        .collect()
}

/// Runs `work` on every part, on up to `threads` threads (clamped to 1..=CHECK_THREADS_MAX),
/// biggest parts first; returns the results in part order.
pub fn run_parallel<T, F>(parts: &[&Partition], threads: usize, work: F) -> Vec<T>
where
    T: Send,
    F: Fn(&Partition) -> T + Sync,
{
    let threads = threads.clamp(1, CHECK_THREADS_MAX).min(parts.len().max(1));
    let mut order: Vec<usize> = (0..parts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(parts[i].ops.len()));
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..parts.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&i) = order.get(k) else {
                    break;
                };
                let r = work(parts[i]);
                let mut guard = results.lock().unwrap_or_else(|p| p.into_inner());
                guard[i] = Some(r);
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::history::Op;

    #[test]
    fn splits_and_keeps_order() {
        let ops: Vec<Operation> = ["b", "a", "b"]
            .iter()
            .enumerate()
            .map(|(i, k)| Operation {
                index: i,
                process: 0,
                key: Some(k.to_string()),
                op: Op::Delete,
                call: i as u64,
                ret: Some(i as u64),
                call_line: i,
                return_line: None,
            })
            .collect();
        let parts = split_by_key(&ops);
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].key.as_deref(), Some("a"));
        assert_eq!(
            parts[1].ops.iter().map(|o| o.index).collect::<Vec<_>>(),
            vec![0, 2]
        );
        let refs: Vec<&Partition> = parts.iter().collect();
        let sizes = run_parallel(&refs, 4, |p| p.ops.len());
        assert_eq!(sizes, vec![1, 2]);
    }
}
