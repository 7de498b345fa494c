//! Behaviour tests of the WAL API: append/read/reopen, truncate, purge with segment deletion,
//! hard state, backpressure, async and blocking waits, several groups sharing one sync.

mod common;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use common::{payload, small_opts};
use ringraft_wal::{Error, FlushPolicy, HardState, Wal};

struct Flag(std::sync::atomic::AtomicBool, std::thread::Thread);
impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        self.1.unpark();
    }
}

/// Polls a future to completion on this thread with a waker that records wake-ups.
fn block_on<F: Future>(f: F) -> (F::Output, bool) {
    let flag = Arc::new(Flag(
        std::sync::atomic::AtomicBool::new(false),
        std::thread::current(),
    ));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return (v, flag.0.load(std::sync::atomic::Ordering::SeqCst));
        }
        std::thread::park_timeout(std::time::Duration::from_secs(5));
    }
}

#[test]
fn append_read_reopen_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts(16 * 1024);
    {
        let mut wal = Wal::open(dir.path(), opts.clone()).unwrap();
        for i in 1..=300u64 {
            for g in [1u64, 2, 3] {
                let lsn = wal
                    .append(g, i, 1 + i / 100, &payload(g, i, 1 + i / 100, 100))
                    .unwrap();
                assert_eq!(lsn, wal.last_lsn());
            }
        }
        assert!(wal.segment_count() > 3, "small segments must roll");
        wal.sync().unwrap();
        assert_eq!(wal.durable_lsn(), wal.last_lsn());
        assert_eq!(wal.durable_index(2), 300);
        let got: Vec<_> = wal
            .entries(2, 10, 20)
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        assert_eq!(got.len(), 10);
        for (k, e) in got.iter().enumerate() {
            let i = 10 + k as u64;
            assert_eq!(e.index, i);
            assert_eq!(e.payload, payload(2, i, 1 + i / 100, 100).as_slice());
        }
        wal.close().unwrap();
    }
    let wal = Wal::open(dir.path(), opts).unwrap();
    for g in [1u64, 2, 3] {
        assert_eq!(wal.first_index(g), 1);
        assert_eq!(wal.last_index(g), 300);
        for i in 1..=300 {
            let e = wal.entry(g, i).unwrap();
            assert_eq!(e.term, 1 + i / 100);
            assert_eq!(e.payload, payload(g, i, 1 + i / 100, 100).as_slice());
            assert_eq!(wal.term(g, i).unwrap(), 1 + i / 100);
        }
    }
    assert!(matches!(wal.entry(1, 301), Err(Error::Unavailable { .. })));
    assert_eq!(wal.durable_index(1), 300);
}

#[test]
fn append_checks_contiguity_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), small_opts(16 * 1024)).unwrap();
    assert!(matches!(
        wal.append(1, 2, 1, b"x"),
        Err(Error::NonContiguous { expected: 1, .. })
    ));
    wal.append(1, 1, 1, b"x").unwrap();
    assert!(matches!(
        wal.append(1, 3, 1, b"x"),
        Err(Error::NonContiguous { expected: 2, .. })
    ));
    assert!(matches!(
        wal.append(1, 2, 1, &[0u8; 2000]),
        Err(Error::PayloadTooLarge { .. })
    ));
    assert_eq!(wal.last_index(1), 1);
}

#[test]
fn truncate_is_durable_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts(16 * 1024);
    {
        let mut wal = Wal::open(dir.path(), opts.clone()).unwrap();
        for i in 1..=50 {
            wal.append(7, i, 1, &payload(7, i, 1, 40)).unwrap();
        }
        wal.truncate(7, 31).unwrap();
        assert_eq!(wal.last_index(7), 30);
        for i in 31..=40 {
            wal.append(7, i, 2, &payload(7, i, 2, 40)).unwrap();
        }
        assert!(matches!(wal.truncate(7, 0), Err(Error::Compacted { .. })));
        wal.sync().unwrap();
    }
    let wal = Wal::open(dir.path(), opts).unwrap();
    assert_eq!(wal.last_index(7), 40);
    assert_eq!(wal.term(7, 30).unwrap(), 1);
    assert_eq!(wal.term(7, 31).unwrap(), 2);
    assert_eq!(
        wal.entry(7, 35).unwrap().payload,
        payload(7, 35, 2, 40).as_slice()
    );
}

#[test]
fn purge_deletes_whole_segments_and_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts(8 * 1024);
    let hs = HardState {
        term: 4,
        vote: 2,
        commit: 390,
    };
    {
        let mut wal = Wal::open(dir.path(), opts.clone()).unwrap();
        wal.set_hard_state(1, hs).unwrap();
        for i in 1..=400 {
            wal.append(1, i, 4, &payload(1, i, 4, 64)).unwrap();
            wal.append(2, i, 4, &payload(2, i, 4, 64)).unwrap();
        }
        wal.sync().unwrap();
        let before = wal.segment_count();
        wal.purge(1, 380).unwrap();
        assert_eq!(
            wal.segment_count(),
            before,
            "group 2 still needs every segment"
        );
        let lsn = wal.purge(2, 390).unwrap();
        wal.wait_durable_blocking_for_test(lsn);
        wal.reclaim().unwrap();
        assert!(
            wal.segment_count() < before / 4,
            "segments {} of {before} left",
            wal.segment_count()
        );
        assert!(matches!(wal.entry(1, 379), Err(Error::Compacted { .. })));
        assert_eq!(
            wal.entry(1, 380).unwrap().payload,
            payload(1, 380, 4, 64).as_slice()
        );
        // A purge past the end leaves an empty log that continues at the purge point.
        wal.purge(3, 1000).unwrap();
        assert_eq!(wal.last_index(3), 999);
        wal.append(3, 1000, 5, b"after snapshot").unwrap();
        wal.sync().unwrap();
        // Give the pool thread a moment to unlink, then count files.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let files = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".wal")
            })
            .count();
        assert!(files <= wal.segment_count() + 1, "{files} files on disk");
    }
    let wal = Wal::open(dir.path(), opts).unwrap();
    assert_eq!(wal.hard_state(1), Some(hs));
    assert_eq!(wal.first_index(1), 380);
    assert_eq!(wal.first_index(2), 390);
    assert_eq!(wal.last_index(2), 400);
    assert_eq!(wal.first_index(3), 1000);
    assert_eq!(wal.entry(3, 1000).unwrap().payload, b"after snapshot");
}

trait WaitExt {
    fn wait_durable_blocking_for_test(&self, lsn: u64);
}
impl WaitExt for Wal {
    fn wait_durable_blocking_for_test(&self, lsn: u64) {
        self.flush();
        self.durability().wait_blocking(lsn).unwrap();
    }
}

#[test]
fn hard_state_last_one_wins_across_rolls() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts(8 * 1024);
    {
        let mut wal = Wal::open(dir.path(), opts.clone()).unwrap();
        for t in 1..=200u64 {
            for g in 0..5u64 {
                wal.set_hard_state(
                    g,
                    HardState {
                        term: t,
                        vote: g,
                        commit: t * 10 + g,
                    },
                )
                .unwrap();
            }
        }
        wal.sync().unwrap();
    }
    let wal = Wal::open(dir.path(), opts).unwrap();
    for g in 0..5u64 {
        assert_eq!(
            wal.hard_state(g),
            Some(HardState {
                term: 200,
                vote: g,
                commit: 2000 + g
            })
        );
    }
}

#[test]
fn backpressure_then_resume() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small_opts(64 * 1024);
    opts.max_buffered_entries = 8;
    opts.flush_policy = FlushPolicy::Batch {
        threshold: 1000,
        interval_ms: 10_000,
    };
    let mut wal = Wal::open(dir.path(), opts).unwrap();
    for i in 1..=8 {
        wal.append(1, i, 1, b"abc").unwrap();
    }
    match wal.append(1, 9, 1, b"abc") {
        Err(Error::Backpressure {
            buffered: 8,
            max: 8,
        }) => {}
        other => panic!("expected backpressure, got {other:?}"),
    }
    assert_eq!(wal.last_index(1), 8, "nothing written under backpressure");
    // Backpressure requested a sync; once it lands, appends go on.
    wal.durability().wait_blocking(8).unwrap();
    wal.append(1, 9, 1, b"abc").unwrap();
}

#[test]
fn async_wait_is_woken_by_a_worker_and_one_sync_covers_many_groups() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small_opts(64 * 1024);
    opts.flush_policy = FlushPolicy::Batch {
        threshold: 1_000_000,
        interval_ms: 10_000,
    };
    opts.flush_workers = 1;
    let mut wal = Wal::open(dir.path(), opts).unwrap();
    let syncs0 = wal.stats().syncs;
    let mut last = 0;
    for g in 0..50u64 {
        last = wal.append(g, 1, 1, &payload(g, 1, 1, 32)).unwrap();
    }
    let fut = wal.wait_durable(last);
    let reports = wal.flush_reports();
    // Nothing is due under this policy until asked.
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert_eq!(wal.durable_lsn(), 0);
    let d = wal.durability();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        d.flush();
    });
    let (r, woken) = block_on(fut);
    r.unwrap();
    assert!(woken, "the future completed through its waker");
    t.join().unwrap();
    assert_eq!(wal.stats().syncs - syncs0, 1, "one sync for 50 groups");
    for g in 0..50u64 {
        assert_eq!(wal.durable_index(g), 1);
    }
    let rep = reports
        .recv_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    assert_eq!(rep.durable_lsn, last);
    assert_eq!(rep.records, 50);
}

#[test]
fn second_open_of_a_locked_directory_fails() {
    let dir = tempfile::tempdir().unwrap();
    let _wal = Wal::open(dir.path(), small_opts(16 * 1024)).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), small_opts(16 * 1024)),
        Err(Error::Locked { .. })
    ));
}

#[test]
fn invalid_options_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = small_opts(16 * 1024);
    o.segment_bytes = 5000;
    assert!(matches!(
        Wal::open(dir.path(), o),
        Err(Error::InvalidOptions(_))
    ));
    let mut o = small_opts(16 * 1024);
    o.flush_workers = 0;
    assert!(matches!(
        Wal::open(dir.path(), o),
        Err(Error::InvalidOptions(_))
    ));
}

#[test]
fn log_full_at_max_segments_until_purged() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small_opts(8 * 1024);
    opts.max_segments = 3;
    let mut wal = Wal::open(dir.path(), opts).unwrap();
    let mut i = 1;
    let err = loop {
        match wal.append(1, i, 1, &payload(1, i, 1, 200)) {
            Ok(_) => i += 1,
            Err(e) => break e,
        }
        assert!(i < 10_000, "never full");
    };
    assert!(matches!(err, Error::LogFull { segments: 3 }), "{err}");
    assert_eq!(wal.segment_count(), 3);
    let lsn = wal.purge(1, i).unwrap();
    wal.flush();
    wal.durability().wait_blocking(lsn).unwrap();
    wal.append(1, i, 1, &payload(1, i, 1, 200)).unwrap();
    assert!(wal.segment_count() <= 2, "{} segments", wal.segment_count());
}

#[test]
fn immediate_policy_never_loses_a_sync_request() {
    // Under Immediate every record must become durable without any explicit flush: a lost
    // request (owner and worker racing on the pending flag) would leave a waiter hanging.
    let dir = tempfile::tempdir().unwrap();
    let mut opts = small_opts(256 * 1024);
    opts.flush_policy = FlushPolicy::Immediate;
    let mut wal = Wal::open(dir.path(), opts).unwrap();
    let d = wal.durability();
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let waiter = std::thread::spawn(move || {
        let mut n = 0;
        for lsn in rx {
            match d.wait_blocking_timeout(lsn, Some(std::time::Duration::from_secs(5))) {
                Some(Ok(())) => n += 1,
                other => panic!("lsn {lsn} not durable in 5 s: {other:?}"),
            }
        }
        n
    });
    for i in 1..=3000u64 {
        let lsn = wal.append(1, i, 1, b"x").unwrap();
        if i % 7 == 0 {
            tx.send(lsn).unwrap();
        }
        if i % 500 == 0 {
            std::thread::yield_now();
        }
    }
    drop(tx);
    assert_eq!(waiter.join().unwrap(), 3000 / 7);
}

#[test]
fn append_parts_writes_the_record_of_the_concatenation() {
    // A gathered append (kind byte and data as separate parts, or more parts than are gathered
    // on the stack) reads back, and recovers after a reopen, as the concatenated payload, in
    // both write modes.
    for mode in [
        ringraft_wal::WriteMode::Pwrite,
        ringraft_wal::WriteMode::Mmap,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let opts = ringraft_wal::WalOptions {
            write_mode: mode,
            ..small_opts(16 * 1024)
        };
        let whole = |i: u64| payload(1, i, 1, 37 + i as usize);
        {
            let mut wal = Wal::open(dir.path(), opts.clone()).unwrap();
            for i in 1..=200u64 {
                let p = whole(i);
                let cut = (i as usize) % p.len();
                let lsn = if i % 2 == 0 {
                    wal.append_parts(1, i, 1, &[&p[..1], &p[1..cut.max(1)], &p[cut.max(1)..]])
                } else {
                    let parts: Vec<&[u8]> = p.chunks(5).collect();
                    wal.append_parts(1, i, 1, &parts)
                }
                .unwrap();
                assert_eq!(lsn, wal.last_lsn());
                assert_eq!(wal.entry(1, i).unwrap().payload, p.as_slice());
            }
            assert!(wal.segment_count() > 1, "small segments must roll");
            wal.sync().unwrap();
            wal.close().unwrap();
        }
        let wal = Wal::open(dir.path(), opts).unwrap();
        assert_eq!(wal.last_index(1), 200);
        for i in 1..=200 {
            assert_eq!(wal.entry(1, i).unwrap().payload, whole(i).as_slice());
        }
    }
}
