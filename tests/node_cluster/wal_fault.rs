//! Real-process tests of how a `ringraft server` treats its write-ahead log failing: a node whose
//! WAL sync fails (injected with `RINGRAFT_WAL_FAULT_ENABLE=1 RINGRAFT_WAL_FAULT=...`) stops
//! acknowledging, says `WAL sync failed` and exits non-zero, and every write it acknowledged
//! before is there after a restart; a WAL that recovery refuses stops the start-up with the
//! operator's next step; a fault spec that does not parse refuses to start.
//!
//! One-node clusters of the shared harness; these tests run alongside each other, never alongside
//! the timed cluster tests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client_support::http::{eventually, get, put, value_of};
use crate::client_support::{Settings, TestCluster};
use crate::shared_turn;

/// Longest time any single wait in these tests may take.
const WAIT_LIMIT: Duration = Duration::from_secs(10);
/// Syncs the injected fault lets succeed before every later one fails.
const SYNCS_BEFORE_FAULT: u64 = 25;
/// Most writes attempted while waiting for the fault (far more than the syncs it allows).
const MAX_WRITES: usize = 200;

/// A one-node cluster with quick elections and a short request timeout; not started.
fn single(name: &str) -> TestCluster {
    TestCluster::configure(
        name,
        1,
        &Settings {
            election_timeout_ms: (150, 300),
            heartbeat_interval_ms: 50,
            tick_interval_ms: Some(10),
            lease_duration_ms: Some(100),
            flush_workers: Some(1),
            request_timeout_ms: 1000,
            ..Settings::default()
        },
    )
}

/// Starts the node with exactly `env` from the WAL fault variables (the harness removes the
/// test process's own values first), logging at info; returns the run number (for its stderr).
fn start(n: &mut TestCluster, env: &[(&str, &str)]) -> usize {
    let mut all = vec![("LOG_LEVEL", "info")];
    all.extend_from_slice(env);
    n.start_node_env(1, &all)
}

/// The value of `key` (linearizable), with the answer's status.
fn get_value(addr: SocketAddr, key: &str) -> Option<(u16, Option<String>)> {
    let (s, body) = get(addr, key, "linearizable")?;
    Some((s, value_of(&body)))
}

/// The first segment file of a WAL directory.
fn first_segment(dir: &Path) -> PathBuf {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segs.sort();
    segs.into_iter().next().expect("a segment file")
}

#[test]
fn a_failed_wal_sync_stops_acks_exits_nonzero_and_keeps_every_acknowledged_write() {
    let _turn = shared_turn();
    let t0 = Instant::now();
    let mut n = single("wal-fault");
    let spec = format!("fsync_fail_after={SYNCS_BEFORE_FAULT}");
    let run = start(
        &mut n,
        &[
            ("RINGRAFT_WAL_FAULT_ENABLE", "1"),
            ("RINGRAFT_WAL_FAULT", &spec),
        ],
    );
    let addr = n.client_addr(1);
    // The single node elects itself; the first write that succeeds says it serves.
    let first = eventually(WAIT_LIMIT, || match put(addr, "w-0", "v-0") {
        Some((200, _)) => Some(()),
        _ => None,
    });
    assert!(
        first.is_some(),
        "the node never accepted a write:\n{}",
        n.stderr(1, run)
    );
    // One writer, one write at a time: every 200 is an acknowledgement; the first answer that
    // is not one marks the failure, after which nothing may be acknowledged any more.
    let mut acked = vec![0usize];
    let mut failed_at = None;
    let mut acked_after_failure = Vec::new();
    let writes_until = Instant::now() + WAIT_LIMIT;
    for i in 1..MAX_WRITES {
        if Instant::now() > writes_until {
            break;
        }
        match put(addr, &format!("w-{i}"), &format!("v-{i}")) {
            Some((200, _)) if failed_at.is_none() => acked.push(i),
            Some((200, _)) => acked_after_failure.push(i),
            _ => {
                failed_at.get_or_insert(i);
            }
        }
        if failed_at.is_some() && n.has_exited(1) {
            break;
        }
    }
    let failed_at = failed_at.unwrap_or_else(|| {
        panic!(
            "{} writes acknowledged and none failed (within {WAIT_LIMIT:?}) although only \
             {SYNCS_BEFORE_FAULT} syncs could succeed",
            acked.len()
        )
    });
    assert!(
        acked_after_failure.is_empty(),
        "writes {acked_after_failure:?} acknowledged after write {failed_at} failed"
    );
    let status = n
        .wait_exit(1, WAIT_LIMIT)
        .expect("the node exits by itself after its WAL sync failed");
    assert!(!status.success(), "exit status {status:?}");
    assert_eq!(
        status.code(),
        Some(1),
        "a fatal error exits 1, not a panic (101)"
    );
    let err = n.stderr(1, run);
    assert!(err.contains("WAL sync failed"), "stderr: {err}");
    eprintln!("fault run stderr: {}", err.trim());
    let log = n.log(1);
    assert!(log.contains("WAL sync failed"), "log: {log}");
    assert!(
        log.contains("WAL fault injection is ON"),
        "the start-up warns that faults are injected: {log}"
    );
    assert!(
        acked.len() >= 2 && acked.len() < SYNCS_BEFORE_FAULT as usize,
        "{} writes acknowledged with {SYNCS_BEFORE_FAULT} good syncs",
        acked.len()
    );

    // Restart with the spec still set but without the enabling flag: no fault is injected, and
    // every acknowledged write is there.
    let run = start(&mut n, &[("RINGRAFT_WAL_FAULT", "fsync_fail_after=0")]);
    for &i in &acked {
        let got = eventually(WAIT_LIMIT, || match get_value(addr, &format!("w-{i}")) {
            Some((200, v)) => Some(v),
            _ => None,
        });
        assert_eq!(
            got,
            Some(Some(format!("v-{i}"))),
            "acknowledged write w-{i} after restart:\n{}",
            n.stderr(1, run)
        );
    }
    for i in 0..5 {
        let r = put(addr, &format!("after-{i}"), "x");
        assert!(
            matches!(r, Some((200, _))),
            "without the enabling flag no fault is injected: {r:?}"
        );
    }
    let log = n.log(1);
    assert!(
        log.contains("WAL recovered"),
        "the recovery report is logged: {log}"
    );
    assert!(n.terminate(1, WAIT_LIMIT).success());

    // A record damaged in the middle of the log (valid records follow it): the node refuses to
    // start, names the file and the offset, and tells the operator what to run.
    let seg = first_segment(&n.wal_dir(1));
    let mut bytes = std::fs::read(&seg).unwrap();
    // Byte 72: the lsn field of the first record (records start after the 64-byte header).
    bytes[72] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    let run = start(&mut n, &[]);
    let status = n
        .wait_exit(1, WAIT_LIMIT)
        .expect("a node with a corrupt WAL exits by itself");
    assert!(!status.success());
    let err = n.stderr(1, run);
    assert!(
        err.contains(&seg.display().to_string()),
        "names the file: {err}"
    );
    assert!(err.contains("offset 64"), "names the offset: {err}");
    assert!(
        err.contains("ringraft wal inspect") && err.contains("ringraft wal repair"),
        "tells the operator what to run: {err}"
    );
    eprintln!("corrupt run stderr: {}", err.trim());
    eprintln!(
        "acknowledged {} writes, first failure at write {failed_at}, {:?} in all",
        acked.len(),
        t0.elapsed()
    );
}

#[test]
fn a_fault_spec_that_does_not_parse_refuses_to_start() {
    let _turn = shared_turn();
    let mut n = single("wal-fault-spec");
    let run = start(
        &mut n,
        &[
            ("RINGRAFT_WAL_FAULT_ENABLE", "1"),
            ("RINGRAFT_WAL_FAULT", "fsync_fail_sometimes=3"),
        ],
    );
    let status = n.wait_exit(1, WAIT_LIMIT).expect("exits by itself");
    assert_eq!(status.code(), Some(2));
    let err = n.stderr(1, run);
    assert!(
        err.contains("RINGRAFT_WAL_FAULT") && err.contains("fsync_fail_sometimes"),
        "{err}"
    );
}

/// No space for the next WAL segment (injected: the first two preparations succeed, the next
/// ten fail with ENOSPC, then space is back) is not fatal: nothing was written, so the node
/// waits and retries the roll, keeps running, acknowledges every write once space is back, and
/// every acknowledged write survives a restart.
#[test]
fn no_space_for_the_next_wal_segment_is_waited_out_not_fatal() {
    let _turn = shared_turn();
    const WRITES: usize = 100;
    let mut n = single("wal-nospace");
    let config = n.config_path(1);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("segment_bytes = 4194304", "segment_bytes = 1048576");
    std::fs::write(&config, text).unwrap();
    let run = start(
        &mut n,
        &[
            ("RINGRAFT_WAL_FAULT_ENABLE", "1"),
            (
                "RINGRAFT_WAL_FAULT",
                "prepare_enospc_after=2,prepare_enospc_for=10",
            ),
        ],
    );
    let addr = n.client_addr(1);
    // 100 writes of 32 KiB fill three 1 MiB segments: the roll into the third finds no space.
    let value = "v".repeat(32 << 10);
    for i in 0..WRITES {
        let t0 = Instant::now();
        loop {
            if let Some((200, _)) = put(addr, &format!("s-{i}"), &value) {
                break;
            }
            assert!(
                !n.has_exited(1),
                "the node exited at write {i}:\n{}",
                n.stderr(1, run)
            );
            assert!(
                t0.elapsed() < WAIT_LIMIT,
                "write {i} not acknowledged within {WAIT_LIMIT:?}:\n{}",
                n.stderr(1, run)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let log = n.log(1);
    assert!(
        log.contains("no space for its next segment"),
        "the roll found no space (the fault was hit): {log}"
    );
    assert!(!log.contains("WAL sync failed"), "{log}");
    assert!(n.terminate(1, WAIT_LIMIT).success());
    let run = start(&mut n, &[]);
    for i in 0..WRITES {
        let got = eventually(WAIT_LIMIT, || match get_value(addr, &format!("s-{i}")) {
            Some((200, v)) => Some(v),
            _ => None,
        });
        assert_eq!(
            got.flatten().as_deref(),
            Some(value.as_str()),
            "write s-{i} after restart:\n{}",
            n.stderr(1, run)
        );
    }
    assert!(n.terminate(1, WAIT_LIMIT).success());
}

/// A shard that stays below its snapshot threshold keeps the oldest WAL segment alive; past
/// `RECLAIM_AFTER_SEGMENTS` (32) live segments the core compacts the shards pinning the oldest
/// ones early, so the log stays bounded instead of growing until the disk fills, and every
/// write survives a restart (from the early snapshot plus the log after it). The snapshot file
/// is written unthrottled (`snapshot_write_mib_per_s = 0`): the bound's slack of 3 segments is
/// what arrives while the early snapshot is written at disk speed.
#[test]
fn shards_pinning_old_wal_segments_are_compacted_early() {
    let _turn = shared_turn();
    const WRITES: usize = 650;
    const KEYS: usize = 40;
    const BOUND: usize = 32;
    let mut n = single("wal-reclaim");
    let text = std::fs::read_to_string(n.config_path(1))
        .unwrap()
        .replace("segment_bytes = 4194304", "segment_bytes = 1048576")
        .replace("[raft]\n", "[raft]\nsnapshot_write_mib_per_s = 0\n");
    std::fs::write(n.config_path(1), text).unwrap();
    let run = start(&mut n, &[]);
    let addr = n.client_addr(1);
    let live = |dir: &Path| {
        std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "wal"))
                })
                .count()
            })
            .unwrap_or(0)
    };
    // 650 writes of 64 KiB: about 42 segments of 1 MiB, all of one shard's log, far below
    // the default snapshot threshold (100 000 entries).
    let mut most = 0;
    for i in 0..WRITES {
        let value = format!("{i:06}{}", "v".repeat(64 << 10));
        let ok = eventually(WAIT_LIMIT, || {
            match put(addr, &format!("r-{}", i % KEYS), &value) {
                Some((200, _)) => Some(()),
                _ => None,
            }
        });
        assert!(ok.is_some(), "write {i}:\n{}", n.stderr(1, run));
        most = most.max(live(&n.wal_dir(1)));
    }
    let log = n.log(1);
    assert!(
        log.contains("compacting a shard early"),
        "the core compacted the pinning shard: {log}"
    );
    assert!(
        most <= BOUND + 3,
        "{most} live WAL segments at most (compaction starts past {BOUND})"
    );
    assert!(n.terminate(1, WAIT_LIMIT).success());
    let run = start(&mut n, &[]);
    for k in 0..KEYS {
        let last = (0..WRITES).rev().find(|i| i % KEYS == k).unwrap();
        let got = eventually(WAIT_LIMIT, || match get_value(addr, &format!("r-{k}")) {
            Some((200, v)) => Some(v),
            _ => None,
        });
        let got = got.flatten().unwrap_or_default();
        assert!(
            got.starts_with(&format!("{last:06}")),
            "r-{k} after restart holds write {:?}, not {last}:\n{}",
            got.get(..6),
            n.stderr(1, run)
        );
    }
    assert!(n.terminate(1, WAIT_LIMIT).success());
}
