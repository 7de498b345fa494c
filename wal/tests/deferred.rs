//! Deferred hard states ([`Wal::set_hard_state_deferred`]): a hard state that only moves the
//! commit index asks for no sync and does not raise `required_lsn`; a new term or vote always
//! does; a deferred record becomes durable with the next sync anyone asks for.

mod common;

use std::time::Duration;

use common::small_opts;
use ringraft_wal::{FlushPolicy, HardState, Wal, WalOptions};

/// Long enough for a flush worker to pick up a request that should not exist.
const QUIET: Duration = Duration::from_millis(100);

fn hs(term: u64, vote: u64, commit: u64) -> HardState {
    HardState { term, vote, commit }
}

#[test]
fn only_a_commit_move_is_deferred() {
    let dir = tempfile::tempdir().unwrap();
    // Every record but a deferred one asks for a sync at once (threshold 1); the workers' idle
    // sync (the interval) does not come during the test.
    let opts = WalOptions {
        flush_policy: FlushPolicy::Batch {
            threshold: 1,
            interval_ms: 10_000,
        },
        ..small_opts(256 * 1024)
    };
    let mut wal = Wal::open(dir.path(), opts).unwrap();
    // The group's first hard state is never deferred (there is no term or vote to keep).
    let first = wal.set_hard_state_deferred(1, hs(1, 2, 0)).unwrap();
    assert_eq!(wal.required_lsn(), first);
    let e1 = wal.append(1, 1, 1, b"a").unwrap();
    assert_eq!(wal.required_lsn(), e1);
    wal.sync().unwrap();
    // Requests still queued from the appends above are served (they find nothing new).
    std::thread::sleep(QUIET);
    let syncs = wal.stats().syncs;
    // Same term and vote, commit moves: deferred.
    let c1 = wal.set_hard_state_deferred(1, hs(1, 2, 1)).unwrap();
    assert_eq!(wal.last_lsn(), c1);
    assert_eq!(
        wal.required_lsn(),
        e1,
        "a commit-only hard state raised required_lsn"
    );
    // No sync was asked for: the record stays not durable while nobody asks.
    std::thread::sleep(QUIET);
    assert_eq!(
        wal.durable_lsn(),
        e1,
        "a deferred record was synced on its own"
    );
    assert_eq!(wal.stats().syncs, syncs);
    // A new term, or a new vote in the same term, is required at once.
    let t2 = wal.set_hard_state_deferred(1, hs(2, 0, 1)).unwrap();
    assert_eq!(wal.required_lsn(), t2);
    let v2 = wal.set_hard_state_deferred(1, hs(2, 3, 1)).unwrap();
    assert_eq!(wal.required_lsn(), v2);
    // Another group's first hard state is not deferred either.
    let g2 = wal.set_hard_state_deferred(2, hs(2, 3, 0)).unwrap();
    assert_eq!(wal.required_lsn(), g2);
    // A plain set_hard_state is always required.
    let plain = wal.set_hard_state(2, hs(2, 3, 5)).unwrap();
    assert_eq!(wal.required_lsn(), plain);
}

#[test]
fn a_deferred_commit_is_durable_with_the_next_sync_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut wal = Wal::open(dir.path(), small_opts(256 * 1024)).unwrap();
        wal.set_hard_state(1, hs(3, 1, 0)).unwrap();
        wal.append(1, 1, 3, b"a").unwrap();
        wal.sync().unwrap();
        let c = wal.set_hard_state_deferred(1, hs(3, 1, 1)).unwrap();
        // The next required record's sync (asked for by the Immediate policy, not by a flush)
        // covers the deferred record before it.
        let e2 = wal.append(1, 2, 3, b"b").unwrap();
        assert_eq!(wal.required_lsn(), e2);
        let waited = wal
            .durability()
            .wait_blocking_timeout(e2, Some(Duration::from_secs(5)));
        assert!(matches!(waited, Some(Ok(()))), "{waited:?}");
        assert!(wal.durable_lsn() >= c);
    }
    let wal = Wal::open(dir.path(), small_opts(256 * 1024)).unwrap();
    assert_eq!(wal.hard_state(1), Some(hs(3, 1, 1)));
    assert_eq!(wal.last_index(1), 2);
}
