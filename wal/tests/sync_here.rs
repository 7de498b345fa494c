//! [`Durability::sync_here`]: the caller's own thread writes out and syncs everything
//! published, with no flush worker involved (the workers here never sync on their own: no
//! record asks for a sync and their interval outlasts the test); a failed sync there poisons
//! the log like a worker's.

mod common;

use std::sync::Arc;

use common::small_opts;
use ringraft_wal::{Error, FaultInjector, FlushPolicy, Wal, WalOptions};

fn opts() -> WalOptions {
    WalOptions {
        flush_policy: FlushPolicy::Batch {
            threshold: u64::MAX,
            interval_ms: 10_000,
        },
        ..small_opts(64 * 1024)
    }
}

#[test]
fn sync_here_makes_everything_published_durable_on_the_calling_thread() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut wal = Wal::open(dir.path(), opts()).unwrap();
        let d = wal.durability();
        // Across a roll: every segment holding published records is synced, in order.
        let mut last = 0;
        for i in 1..=400u64 {
            last = wal.append(1, i, 1, &[i as u8; 200]).unwrap();
        }
        assert!(wal.stats().rolls > 0);
        assert!(wal.durable_lsn() < last);
        d.sync_here().unwrap();
        assert_eq!(
            wal.durable_lsn(),
            last,
            "not durable when sync_here returned"
        );
        // Nothing new: a no-op.
        d.sync_here().unwrap();
        assert_eq!(wal.durable_lsn(), last);
    }
    let wal = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!(wal.last_index(1), 400);
}

#[test]
fn a_failed_sync_here_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let fault = Arc::new(FaultInjector::new());
    let o = WalOptions {
        fault: Some(fault.clone()),
        ..opts()
    };
    let mut wal = Wal::open(dir.path(), o).unwrap();
    let d = wal.durability();
    let ok = wal.append(1, 1, 1, b"a").unwrap();
    d.sync_here().unwrap();
    fault.fail_syncs_eio(1);
    let lost = wal.append(1, 2, 1, b"b").unwrap();
    assert!(matches!(d.sync_here(), Err(Error::Poisoned(_))));
    assert_eq!(wal.durable_lsn(), ok);
    assert!(wal.durable_lsn() < lost);
    assert!(matches!(wal.append(1, 3, 1, b"c"), Err(Error::Poisoned(_))));
}
