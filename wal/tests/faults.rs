//! Bad conditions: ENOSPC (a real full tmpfs when we may mount one, and an injected ENOSPC in
//! the file layer) comes back as an error with nothing lost, and writing resumes once space is
//! freed; a failed sync poisons the log and a reopen recovers what was durable.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{payload, small_opts};
use ringraft_wal::{Error, FaultInjector, Wal, WalOptions};

/// A fresh directory, a fault injector, and small-segment options that use it.
fn faulty(segment_bytes: usize) -> (tempfile::TempDir, Arc<FaultInjector>, WalOptions) {
    let fault = Arc::new(FaultInjector::new());
    let mut opts = small_opts(segment_bytes);
    opts.fault = Some(fault.clone());
    (tempfile::tempdir().unwrap(), fault, opts)
}

/// Entries 1..=`last` of group 1 read back as written (`len`-byte payloads, term 1).
fn assert_payloads(wal: &Wal, last: u64, len: usize) {
    for k in 1..=last {
        assert_eq!(
            wal.entry(1, k).unwrap().payload,
            payload(1, k, 1, len).as_slice(),
            "entry {k}"
        );
    }
}

#[test]
fn injected_enospc_on_segment_preparation_then_resume() {
    let (dir, fault, opts) = faulty(8 * 1024);
    let mut wal = Wal::open(dir.path(), opts.clone()).unwrap();
    // Let the first spare be prepared, then fail every later preparation.
    let mut i = 1;
    while wal.segment_count() < 2 {
        wal.append(1, i, 1, &payload(1, i, 1, 200)).unwrap();
        i += 1;
    }
    fault.fail_prepares_enospc(u32::MAX);
    let err = loop {
        match wal.append(1, i, 1, &payload(1, i, 1, 200)) {
            Ok(_) => i += 1,
            Err(e) => break e,
        }
    };
    assert!(err.is_no_space(), "{err}");
    let last = i - 1;
    // Nothing lost or half-written: the log ends at the last successful append, and the same
    // append fails the same way while space is short.
    assert_eq!(wal.last_index(1), last);
    assert!(wal
        .append(1, i, 1, &payload(1, i, 1, 200))
        .unwrap_err()
        .is_no_space());
    wal.sync().unwrap();
    fault.fail_prepares_enospc(0);
    wal.append(1, i, 1, &payload(1, i, 1, 200)).unwrap();
    wal.close().unwrap();
    let wal = Wal::open(dir.path(), small_opts(8 * 1024)).unwrap();
    assert_eq!(wal.last_index(1), i);
    assert_payloads(&wal, i, 200);
}

#[test]
fn failed_sync_poisons_and_reopen_recovers_durable_data() {
    let (dir, fault, opts) = faulty(64 * 1024);
    let mut wal = Wal::open(dir.path(), opts).unwrap();
    for i in 1..=10 {
        wal.append(1, i, 1, &payload(1, i, 1, 50)).unwrap();
    }
    wal.sync().unwrap();
    fault.fail_syncs_eio(1);
    let lsn = wal.append(1, 11, 1, &payload(1, 11, 1, 50)).unwrap();
    wal.flush();
    match wal.durability().wait_blocking(lsn) {
        Err(Error::Poisoned(reason)) => assert!(reason.contains("sync"), "{reason}"),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    assert!(matches!(
        wal.append(1, 12, 1, b"x"),
        Err(Error::Poisoned(_))
    ));
    assert!(wal.durable_lsn() >= 10 && wal.durable_lsn() < lsn);
    drop(wal);
    let wal = Wal::open(dir.path(), small_opts(64 * 1024)).unwrap();
    assert!(wal.last_index(1) >= 10);
    assert_payloads(&wal, 10, 50);
}

struct Mount(PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn mount_tmpfs(at: &Path, size: &str) -> Option<Mount> {
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(at)
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    ok.then(|| Mount(at.to_path_buf()))
}

#[test]
fn real_enospc_on_a_full_tmpfs_then_resume_after_freeing_space() {
    let base = tempfile::tempdir().unwrap();
    let Some(_mount) = mount_tmpfs(base.path(), "320k") else {
        eprintln!(
            "SKIPPED: cannot mount tmpfs here (not root?); the injected-ENOSPC test covers it"
        );
        return;
    };
    let dir = base.path().join("wal");
    let filler = base.path().join("filler");
    std::fs::write(&filler, vec![7u8; 96 * 1024]).unwrap();
    let opts = small_opts(64 * 1024);
    let mut wal = Wal::open(&dir, opts.clone()).unwrap();
    let mut i = 1u64;
    let err = loop {
        match wal.append(1, i, 1, &payload(1, i, 1, 500)) {
            Ok(_) => i += 1,
            Err(e) => break e,
        }
        assert!(i < 100_000, "never ran out of space");
    };
    assert!(err.is_no_space(), "expected ENOSPC, got {err}");
    let last = i - 1;
    assert!(last > 100, "only {last} entries fit");
    assert_eq!(wal.last_index(1), last);
    wal.sync().unwrap();
    std::fs::remove_file(&filler).unwrap();
    // The freed 96 KiB hold one more 64 KiB segment (~118 records of 500 bytes).
    for k in i..i + 100 {
        wal.append(1, k, 1, &payload(1, k, 1, 500)).unwrap();
    }
    wal.close().unwrap();
    let wal = Wal::open(&dir, opts).unwrap();
    assert_eq!(wal.last_index(1), i + 99);
    assert_payloads(&wal, i + 99, 500);
}

/// Two flush workers: a sync fails (slowly) while a later one, on the other worker, succeeds.
/// The later success must not make anything durable past the failed sync's data: waiting for
/// it reports the poison, and `durable_lsn` never reaches the failed sync's records.
#[test]
fn a_failed_sync_is_never_masked_by_a_concurrent_successful_one() {
    let (dir, fault, mut opts) = faulty(64 * 1024);
    opts.flush_workers = 2;
    let mut wal = Wal::open(dir.path(), opts).unwrap();
    for i in 1..=5 {
        wal.append(1, i, 1, &payload(1, i, 1, 40)).unwrap();
    }
    wal.sync().unwrap();
    let durable_before = wal.durable_lsn();
    fault.delay_failing_syncs_ms(300);
    fault.fail_syncs_eio(1);
    let l1 = wal.append(1, 6, 1, &payload(1, 6, 1, 40)).unwrap();
    wal.flush();
    // The first worker is now inside its (failing, delayed) sync; the second takes the next.
    std::thread::sleep(std::time::Duration::from_millis(50));
    let l2 = wal.append(1, 7, 1, &payload(1, 7, 1, 40)).unwrap();
    wal.flush();
    match wal.durability().wait_blocking(l2) {
        Err(Error::Poisoned(_)) => {}
        other => panic!("a sync after a failed one made lsn {l2} durable: {other:?}"),
    }
    assert!(
        wal.durable_lsn() < l1,
        "durable {} reached the failed sync's lsn {l1}",
        wal.durable_lsn()
    );
    assert_eq!(wal.durable_lsn(), durable_before);
    assert_eq!(wal.stats().syncs_failed, 1);
    drop(wal);
    let wal = Wal::open(dir.path(), small_opts(64 * 1024)).unwrap();
    assert_payloads(&wal, 5, 40);
}

/// With a fault plan (as the node and the chaos suite enable it), after the first failed sync,
/// short write or ENOSPC on a write: no append, hard state or sync succeeds any more,
/// durability never moves again, and every record acknowledged durable before the error is
/// intact after reopening.
#[test]
fn after_a_write_or_sync_error_nothing_is_acknowledged_and_acknowledged_records_survive() {
    for spec in [
        "fsync_fail_after=37",
        "short_write_after=23",
        "enospc_after=11",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = small_opts(16 * 1024);
        opts.flush_workers = 2;
        opts.fault = Some(Arc::new(FaultInjector::from_spec(spec).unwrap()));
        let mut wal = Wal::open(dir.path(), opts).unwrap();
        let mut acked = 0u64;
        let mut i = 1u64;
        let err = loop {
            assert!(i < 10_000, "{spec}: the fault never fired");
            let n = 1 + i % 3;
            let mut last = 0;
            let mut failed = None;
            for _ in 0..n {
                match wal.append(1, i, 1, &payload(1, i, 1, 90)) {
                    Ok(l) => {
                        last = l;
                        i += 1;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(e) = failed {
                break e;
            }
            wal.flush();
            match wal.durability().wait_blocking(last) {
                Ok(()) => acked = i - 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, Error::Poisoned(_)), "{spec}: {err}");
        let durable = wal.durable_lsn();
        for _ in 0..3 {
            let next = wal.last_index(1) + 1;
            assert!(matches!(
                wal.append(1, next, 1, b"x"),
                Err(Error::Poisoned(_))
            ));
            assert!(matches!(
                wal.set_hard_state(1, ringraft_wal::HardState::default()),
                Err(Error::Poisoned(_))
            ));
            assert!(matches!(wal.sync(), Err(Error::Poisoned(_))));
            assert_eq!(wal.durable_lsn(), durable, "{spec}: durability moved");
        }
        drop(wal);
        let wal = Wal::open(dir.path(), small_opts(16 * 1024)).unwrap();
        assert!(
            wal.last_index(1) >= acked,
            "{spec}: lost acknowledged records"
        );
        for k in 1..=acked {
            assert_eq!(
                wal.entry(1, k).unwrap().payload,
                payload(1, k, 1, 90).as_slice(),
                "{spec}: entry {k}"
            );
        }
        eprintln!(
            "{spec}: {acked} acknowledged, {} recovered; {}",
            wal.last_index(1),
            wal.recovery_report()
        );
    }
}

/// Fills `wal` (group 1, entries from index `*i`) until not even an empty entry fits the active
/// segment and no next segment can be prepared; returns the last append's error. Every
/// preparation after the call fails.
fn fill_until_no_space(wal: &mut Wal, fault: &FaultInjector, i: &mut u64) -> Error {
    while wal.segment_count() < 3 {
        wal.append(1, *i, 1, &payload(1, *i, 1, 200)).unwrap();
        *i += 1;
    }
    fault.fail_prepares_enospc(u32::MAX);
    // 200-byte entries, then empty ones (as small as a Truncate or Purge record) for the rest.
    for len in [200, 0] {
        while wal.append(1, *i, 1, &payload(1, *i, 1, len)).is_ok() {
            *i += 1;
        }
    }
    wal.append(1, *i, 1, &[]).unwrap_err()
}

/// The disk is full and the active segment has no room for another entry: the purge that frees
/// space still succeeds (it writes into the segment's drop reserve), the segments behind it are
/// deleted, and appends resume in a recycled file while preparing a fresh one still fails.
#[test]
fn purge_frees_space_when_no_segment_can_be_prepared() {
    let (dir, fault, opts) = faulty(8 * 1024);
    let mut wal = Wal::open(dir.path(), opts).unwrap();
    let mut i = 1;
    let err = fill_until_no_space(&mut wal, &fault, &mut i);
    assert!(err.is_no_space(), "{err}");
    let full = wal.segment_count();
    wal.sync().unwrap();
    // A truncate of the newest entry and a purge of all but it both fit the reserve.
    wal.truncate(1, i - 1).unwrap();
    wal.purge(1, i - 2).unwrap();
    wal.sync().unwrap();
    wal.reclaim().unwrap();
    assert!(
        wal.segment_count() < full,
        "{} live segments, {full} before the purge",
        wal.segment_count()
    );
    assert_eq!((wal.first_index(1), wal.last_index(1)), (i - 2, i - 2));
    // Fresh preparations still fail; the purged files are reused instead.
    let mut k = i - 1;
    while wal.stats().rolls < 4 {
        wal.append(1, k, 2, &payload(1, k, 2, 200)).unwrap();
        k += 1;
    }
    wal.close().unwrap();
    let wal = Wal::open(dir.path(), small_opts(8 * 1024)).unwrap();
    assert_eq!((wal.first_index(1), wal.last_index(1)), (i - 2, k - 1));
    assert_eq!(wal.entry(1, k - 1).unwrap().term, 2);
}

/// Once the reserve is used up too, truncate and purge fail like append does without space:
/// the no-space error, nothing written (positions and the last lsn unchanged), and they
/// succeed once space is back.
#[test]
fn truncate_and_purge_without_space_fail_typed_and_write_nothing() {
    let (dir, fault, opts) = faulty(8 * 1024);
    let mut wal = Wal::open(dir.path(), opts).unwrap();
    let mut i = 1;
    fill_until_no_space(&mut wal, &fault, &mut i);
    let last = i - 1;
    // Purge one entry at a time until even the reserve is full.
    let err = loop {
        let first = wal.first_index(1);
        assert!(first < last, "the reserve never filled up");
        match wal.purge(1, first + 1) {
            Ok(_) => {}
            Err(e) => break e,
        }
    };
    assert!(err.is_no_space(), "purge: {err}");
    let (first, lsn) = (wal.first_index(1), wal.last_lsn());
    let err = wal.truncate(1, last).unwrap_err();
    assert!(err.is_no_space(), "truncate: {err}");
    let err = wal.purge(1, first + 1).unwrap_err();
    assert!(err.is_no_space(), "purge: {err}");
    assert_eq!(
        (wal.first_index(1), wal.last_index(1), wal.last_lsn()),
        (first, last, lsn),
        "a failed truncate or purge wrote nothing"
    );
    fault.fail_prepares_enospc(0);
    wal.truncate(1, last).unwrap();
    wal.purge(1, first + 1).unwrap();
    wal.close().unwrap();
    let wal = Wal::open(dir.path(), small_opts(8 * 1024)).unwrap();
    assert_eq!(
        (wal.first_index(1), wal.last_index(1)),
        (first + 1, last - 1)
    );
}
