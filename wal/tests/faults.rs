//! Bad conditions: ENOSPC (a real full tmpfs when we may mount one, and an injected ENOSPC in
//! the file layer) comes back as an error with nothing lost, and writing resumes once space is
//! freed; a failed sync poisons the log and a reopen recovers what was durable.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{payload, small_opts};
use ringraft_wal::{Error, FaultInjector, Wal};

#[test]
fn injected_enospc_on_segment_preparation_then_resume() {
    let dir = tempfile::tempdir().unwrap();
    let fault = Arc::new(FaultInjector::new());
    let mut opts = small_opts(8 * 1024);
    opts.fault = Some(fault.clone());
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
    for k in 1..=i {
        assert_eq!(
            wal.entry(1, k).unwrap().payload,
            payload(1, k, 1, 200).as_slice()
        );
    }
}

#[test]
fn failed_sync_poisons_and_reopen_recovers_durable_data() {
    let dir = tempfile::tempdir().unwrap();
    let fault = Arc::new(FaultInjector::new());
    let mut opts = small_opts(64 * 1024);
    opts.fault = Some(fault.clone());
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
    for k in 1..=10 {
        assert_eq!(
            wal.entry(1, k).unwrap().payload,
            payload(1, k, 1, 50).as_slice()
        );
    }
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
    for k in 1..=i + 99 {
        assert_eq!(
            wal.entry(1, k).unwrap().payload,
            payload(1, k, 1, 500).as_slice()
        );
    }
}
