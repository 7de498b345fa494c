//! [`Durability::sync_with`]: the caller writes out everything published and awaits its own
//! fdatasync future per segment (here: glommio's, submitted through the executor's io_uring,
//! or a future the test completes by hand). The flush workers here never sync on their own:
//! no record asks for a sync and their interval outlasts the test. Checks that such a sync
//! makes records durable and readable after reopen, and that a failing one poisons the log
//! and is never masked by a later sync's success.

mod common;

use std::cell::Cell;
use std::future::Future;
use std::os::fd::RawFd;
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

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

/// A plain, blocking fdatasync (for the futures completed by hand).
fn blocking_fdatasync(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: `fd` is open while the future is alive (the WAL's contract).
    if unsafe { libc::fdatasync(fd) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[test]
fn sync_with_through_io_uring_makes_everything_durable_and_it_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let (last, calls) = glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let mut wal = Wal::open(&path, opts()).unwrap();
            let d = wal.durability();
            // Across rolls: every segment holding published records is synced, in order.
            let mut last = 0;
            for i in 1..=400u64 {
                last = wal.append(1, i, 1, &[i as u8; 200]).unwrap();
            }
            // The first segment plus one per roll.
            let segments = wal.stats().rolls + 1;
            assert!(segments > 1);
            assert!(wal.durable_lsn() < last);
            let calls = Rc::new(Cell::new(0u64));
            let c = calls.clone();
            d.sync_with(|fd| {
                c.set(c.get() + 1);
                ringraft_wal::ring::fdatasync(fd)
            })
            .await
            .unwrap();
            assert_eq!(
                wal.durable_lsn(),
                last,
                "not durable when sync_with returned"
            );
            assert!(
                calls.get() >= segments,
                "{} fdatasyncs for {segments} segments",
                calls.get()
            );
            // Nothing new: no sync at all.
            let before = calls.get();
            let c = calls.clone();
            d.sync_with(|fd| {
                c.set(c.get() + 1);
                ringraft_wal::ring::fdatasync(fd)
            })
            .await
            .unwrap();
            assert_eq!(calls.get(), before);
            assert_eq!(d.stats().caller_syncs, 1);
            assert_eq!(d.stats().syncs, 1);
            (last, calls.get())
        })
        .unwrap()
        .join()
        .unwrap();
    assert!(calls > 0);
    let wal = Wal::open(dir.path(), opts()).unwrap();
    assert_eq!(wal.last_index(1), 400);
    assert_eq!(wal.durable_lsn(), last);
    let got: Vec<_> = wal.entries(1, 400, 401).unwrap().collect();
    assert_eq!(got.len(), 1);
}

fn poll_once<F: Future>(f: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

/// Sync A claims record 1 and its fdatasync stays in flight; sync B claims record 2 and
/// succeeds; A then fails. Nothing may become durable: B's success must not publish past A's
/// ticket, and A's failure poisons the log for good.
#[test]
fn a_failed_fdatasync_poisons_and_is_not_masked_by_a_later_success() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), opts()).unwrap();
    let d = wal.durability();
    let first = wal.append(1, 1, 1, b"one").unwrap();
    let (a_tx, a_rx) = flume::bounded::<std::io::Result<()>>(1);
    let mut a = pin!(d.sync_with(|_fd| {
        let rx = a_rx.clone();
        async move { rx.recv_async().await.unwrap_or(Ok(())) }
    }));
    assert!(
        poll_once(a.as_mut()).is_pending(),
        "A's fdatasync is in flight"
    );
    let second = wal.append(1, 2, 1, b"two").unwrap();
    let b = pin!(d.sync_with(|fd| std::future::ready(blocking_fdatasync(fd))));
    let mut b = b;
    assert!(matches!(poll_once(b.as_mut()), Poll::Ready(Ok(()))));
    assert!(
        wal.durable_lsn() < first,
        "B's success published durability past A's running sync"
    );
    a_tx.send(Err(std::io::Error::from_raw_os_error(libc::EIO)))
        .unwrap();
    assert!(matches!(
        poll_once(a.as_mut()),
        Poll::Ready(Err(Error::Poisoned(_)))
    ));
    assert!(wal.durable_lsn() < first);
    let mut w = pin!(d.wait(second));
    assert!(matches!(
        poll_once(w.as_mut()),
        Poll::Ready(Err(Error::Poisoned(_)))
    ));
    assert!(matches!(wal.append(1, 3, 1, b"c"), Err(Error::Poisoned(_))));
    // A later sync succeeds at nothing.
    let mut c = pin!(d.sync_with(|fd| std::future::ready(blocking_fdatasync(fd))));
    assert!(matches!(
        poll_once(c.as_mut()),
        Poll::Ready(Err(Error::Poisoned(_)))
    ));
    assert!(wal.durable_lsn() < first);
    assert_eq!(d.stats().syncs_failed, 1);
}

/// An injected EIO on the caller's sync poisons the log like a worker's failed sync.
#[test]
fn an_injected_sync_failure_in_sync_with_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let fault = Arc::new(FaultInjector::new());
    let o = WalOptions {
        fault: Some(fault.clone()),
        ..opts()
    };
    let mut wal = Wal::open(dir.path(), o).unwrap();
    let d = wal.durability();
    let ok = wal.append(1, 1, 1, b"a").unwrap();
    let mut s = pin!(d.sync_with(|fd| std::future::ready(blocking_fdatasync(fd))));
    assert!(matches!(poll_once(s.as_mut()), Poll::Ready(Ok(()))));
    assert_eq!(wal.durable_lsn(), ok);
    fault.fail_syncs_eio(1);
    let lost = wal.append(1, 2, 1, b"b").unwrap();
    let mut s = pin!(d.sync_with(|fd| std::future::ready(blocking_fdatasync(fd))));
    assert!(matches!(
        poll_once(s.as_mut()),
        Poll::Ready(Err(Error::Poisoned(_)))
    ));
    assert_eq!(wal.durable_lsn(), ok);
    assert!(wal.durable_lsn() < lost);
    assert!(matches!(wal.append(1, 3, 1, b"c"), Err(Error::Poisoned(_))));
}

/// A caller's sync dropped while its fdatasync is in flight poisons the log instead of
/// leaving its ticket running forever (which would hold every later sync's durability back).
#[test]
fn a_sync_with_dropped_mid_flight_poisons_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), opts()).unwrap();
    let d = wal.durability();
    let lsn = wal.append(1, 1, 1, b"a").unwrap();
    {
        let mut s = pin!(d.sync_with(|_fd| std::future::pending::<std::io::Result<()>>()));
        assert!(poll_once(s.as_mut()).is_pending());
    }
    assert!(wal.durable_lsn() < lsn);
    let mut w = pin!(d.wait(lsn));
    assert!(matches!(
        poll_once(w.as_mut()),
        Poll::Ready(Err(Error::Poisoned(_)))
    ));
}
