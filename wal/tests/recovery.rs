//! Recovery tests: torn tails and bit flips at arbitrary offsets keep exactly a valid prefix
//! (TolerateTornTail) or are refused with file and offset (Strict); corruption in a sealed
//! segment, wrong magic, unknown version and foreign owner are clear errors naming the file.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{payload, small_opts, Rng};
use ringraft_wal::record::record_bytes;
use ringraft_wal::segment::{segment_path, SEGMENT_HEADER_BYTES};
use ringraft_wal::{Error, RecoveryMode, Wal, WalOptions};

const SEG: usize = 64 * 1024;
const N: u64 = 120;

fn len_of(i: u64) -> usize {
    (i as usize * 37) % 200
}

/// Writes N entries of group 1 into one segment; returns the record start offsets (plus end).
fn write_single_segment(dir: &Path) -> Vec<usize> {
    let mut wal = Wal::open(dir, small_opts(SEG)).unwrap();
    let mut offs = vec![SEGMENT_HEADER_BYTES];
    for i in 1..=N {
        wal.append(1, i, 1, &payload(1, i, 1, len_of(i))).unwrap();
        let last = *offs.last().unwrap();
        offs.push(last + record_bytes(len_of(i)));
    }
    assert_eq!(wal.segment_count(), 1);
    wal.close().unwrap();
    offs
}

fn opts(mode: RecoveryMode) -> WalOptions {
    WalOptions {
        recovery_mode: mode,
        ..small_opts(SEG)
    }
}

fn check_prefix(wal: &Wal, keep: u64) {
    assert_eq!(wal.last_index(1), keep, "records kept");
    for i in 1..=keep {
        assert_eq!(
            wal.entry(1, i).unwrap().payload,
            payload(1, i, 1, len_of(i)).as_slice()
        );
    }
}

/// A fresh log of one segment ([`write_single_segment`]): its directory, record offsets, the
/// segment's path and its pristine bytes (to restore between damage rounds).
fn single_segment_fixture() -> (tempfile::TempDir, Vec<usize>, std::path::PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let offs = write_single_segment(dir.path());
    let path = segment_path(dir.path(), 1);
    let pristine = std::fs::read(&path).unwrap();
    (dir, offs, path, pristine)
}

/// A flipped bit in the last record (or just past it) is a torn tail: cut, reported, and the
/// cut is permanent. A flipped bit in any earlier record is followed by valid records, which
/// may have been acknowledged: opening refuses in both modes, naming the file, the bad record
/// and the valid one after it, and nothing is dropped until `Wal::repair` is called, which
/// reports exactly the records it drops.
#[test]
fn bit_flips_at_random_offsets_keep_exactly_the_valid_prefix() {
    let seed = common::seed(0xB17F_11B5);
    let mut rng = Rng(seed);
    let (dir, offs, path, pristine) = single_segment_fixture();
    let end = *offs.last().unwrap();
    for round in 0..40 {
        // Mostly inside the records, sometimes just past the end; every fourth round in the
        // last record.
        let off = if round % 4 == 3 {
            offs[N as usize - 1] + rng.below((end - offs[N as usize - 1]) as u64) as usize
        } else {
            SEGMENT_HEADER_BYTES + rng.below((end + 64 - SEGMENT_HEADER_BYTES) as u64) as usize
        };
        let bit = rng.below(8) as u8;
        let mut bytes = pristine.clone();
        bytes[off] ^= 1 << bit;
        std::fs::write(&path, &bytes).unwrap();
        // The damaged record starts at the last record start <= off.
        let k = offs.iter().rposition(|&o| o <= off).unwrap();
        let damaged_start = offs[k];
        let keep = k as u64;
        if (k as u64) + 1 < N {
            for mode in [RecoveryMode::Strict, RecoveryMode::TolerateTornTail] {
                match Wal::open(dir.path(), opts(mode)) {
                    Err(Error::ValidAfterInvalid {
                        path: p,
                        offset,
                        valid_offset,
                        valid_lsn,
                        ..
                    }) => {
                        assert_eq!(p, path);
                        assert_eq!(offset as usize, damaged_start, "round {round} seed {seed}");
                        assert_eq!(valid_offset as usize, offs[k + 1]);
                        assert_eq!(valid_lsn, keep + 2);
                    }
                    other => panic!("round {round} seed {seed}: {mode:?} open gave {other:?}"),
                }
            }
            // Refusing changed nothing on disk.
            assert_eq!(std::fs::read(&path).unwrap(), bytes);
            let rep = Wal::repair(dir.path(), &opts(RecoveryMode::Strict)).unwrap();
            assert_eq!(rep.cut, Some((path.clone(), damaged_start as u64)));
            assert_eq!(rep.first_dropped_lsn, Some(keep + 1));
            assert_eq!(rep.dropped_records.len() as u64, N - keep - 1, "{rep}");
            assert_eq!(rep.dropped_records[0], (offs[k + 1] as u64, keep + 2));
            let wal = Wal::open(dir.path(), opts(RecoveryMode::Strict)).unwrap();
            check_prefix(&wal, keep);
            continue;
        }
        match Wal::open(dir.path(), opts(RecoveryMode::Strict)) {
            Err(Error::TornTail {
                path: p, offset, ..
            }) => {
                assert_eq!(p, path);
                assert_eq!(offset as usize, damaged_start, "round {round} seed {seed}");
            }
            other => panic!("round {round} seed {seed}: strict open gave {other:?}"),
        }
        let wal = Wal::open(dir.path(), opts(RecoveryMode::TolerateTornTail)).unwrap();
        check_prefix(&wal, keep);
        assert_eq!(
            wal.recovery_report().torn_tail,
            Some((path.clone(), damaged_start as u64))
        );
        assert!(wal.recovery_report().to_string().contains("torn tail cut"));
        drop(wal);
        // The cut is permanent and clean: a strict reopen now succeeds with the same prefix.
        let wal = Wal::open(dir.path(), opts(RecoveryMode::Strict)).unwrap();
        check_prefix(&wal, keep);
    }
}

#[test]
fn torn_tails_keep_exactly_the_records_before_the_tear() {
    let seed = common::seed(0x70E2_7A11);
    let mut rng = Rng(seed);
    let (dir, offs, path, pristine) = single_segment_fixture();
    let end = *offs.last().unwrap();
    for round in 0..30 {
        let tear = SEGMENT_HEADER_BYTES + rng.below((end - SEGMENT_HEADER_BYTES) as u64) as usize;
        let mut bytes = pristine.clone();
        // Half the rounds: the tail never reached the disk (zeros); else garbage was written.
        let garbage = round % 2 == 1;
        for b in &mut bytes[tear..end] {
            *b = if garbage { rng.next() as u8 } else { 0 };
        }
        std::fs::write(&path, &bytes).unwrap();
        // Records survive exactly while their bytes are unchanged (zeroing padding, or a zero
        // payload byte, changes nothing).
        let whole = offs
            .windows(2)
            .take_while(|w| bytes[w[0]..w[1]] == pristine[w[0]..w[1]])
            .count() as u64;
        let wal = Wal::open(dir.path(), opts(RecoveryMode::TolerateTornTail)).unwrap();
        check_prefix(&wal, whole);
        // And the log continues right after the prefix.
        drop(wal);
        let mut wal = Wal::open(dir.path(), opts(RecoveryMode::TolerateTornTail)).unwrap();
        wal.append(1, whole + 1, 2, b"resumed").unwrap();
        wal.close().unwrap();
        let wal = Wal::open(dir.path(), opts(RecoveryMode::Strict)).unwrap();
        assert_eq!(wal.last_index(1), whole + 1, "round {round} seed {seed}");
        assert_eq!(wal.entry(1, whole + 1).unwrap().payload, b"resumed");
        drop(wal);
    }
}

fn write_multi_segment(dir: &Path) -> Vec<PathBuf> {
    let mut wal = Wal::open(dir, small_opts(8 * 1024)).unwrap();
    for i in 1..=200 {
        wal.append(1, i, 1, &payload(1, i, 1, 100)).unwrap();
    }
    assert!(wal.segment_count() >= 3);
    let n = wal.segment_count() as u64;
    wal.close().unwrap();
    (1..=n).map(|s| segment_path(dir, s)).collect()
}

#[test]
fn corruption_in_a_sealed_segment_is_an_error_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_multi_segment(dir.path());
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segs[0])
        .unwrap();
    // Second record of segment 1 starts at 64 + record_bytes(100).
    let at = SEGMENT_HEADER_BYTES + record_bytes(100);
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, (at + 60) as u64).unwrap();
    f.write_all_at(&[b[0] ^ 0x40], (at + 60) as u64).unwrap();
    for mode in [RecoveryMode::Strict, RecoveryMode::TolerateTornTail] {
        let o = WalOptions {
            recovery_mode: mode,
            ..small_opts(8 * 1024)
        };
        match Wal::open(dir.path(), o) {
            Err(e @ (Error::Corrupt { .. } | Error::ValidAfterInvalid { .. })) => {
                let msg = e.to_string();
                assert!(msg.contains(&segs[0].display().to_string()), "{msg}");
                assert!(msg.contains(&format!("offset {at}")), "{msg}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    // The documented way forward: repair cuts segment 1 at the bad record, drops the records
    // after it and every later segment, and says so; the log then opens with the prefix.
    let rep = Wal::repair(dir.path(), &small_opts(8 * 1024)).unwrap();
    assert_eq!(rep.cut, Some((segs[0].clone(), at as u64)));
    assert_eq!(rep.first_dropped_lsn, Some(2));
    assert_eq!(rep.dropped_segments, segs[1..].to_vec(), "{rep}");
    assert!(!rep.dropped_records.is_empty(), "{rep}");
    assert!(
        rep.to_string().contains("dropped every record from lsn 2"),
        "{rep}"
    );
    for s in &segs[1..] {
        assert!(!s.exists());
    }
    let wal = Wal::open(dir.path(), small_opts(8 * 1024)).unwrap();
    assert_eq!(wal.last_index(1), 1);
    assert_eq!(
        wal.entry(1, 1).unwrap().payload,
        payload(1, 1, 1, 100).as_slice()
    );
    drop(wal);
    // Nothing left to repair.
    let rep = Wal::repair(dir.path(), &small_opts(8 * 1024)).unwrap();
    assert_eq!(rep.cut, None);
    assert!(rep.dropped_segments.is_empty() && rep.dropped_records.is_empty());
}

#[test]
fn bad_magic_unknown_version_and_foreign_owner_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_multi_segment(dir.path());
    let pristine = std::fs::read(&segs[1]).unwrap();

    let mut b = pristine.clone();
    b[0..8].copy_from_slice(b"NOTAWAL!");
    std::fs::write(&segs[1], &b).unwrap();
    match Wal::open(dir.path(), small_opts(8 * 1024)) {
        Err(e @ Error::BadMagic { .. }) => {
            assert!(e.to_string().contains(&segs[1].display().to_string()))
        }
        other => panic!("expected BadMagic, got {other:?}"),
    }

    let mut b = pristine.clone();
    b[8..10].copy_from_slice(&99u16.to_le_bytes());
    let crc = crc32fast::hash(&b[0..60]);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&segs[1], &b).unwrap();
    match Wal::open(dir.path(), small_opts(8 * 1024)) {
        Err(e @ Error::UnsupportedVersion { found: 99, .. }) => {
            assert!(e.to_string().contains(&segs[1].display().to_string()))
        }
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }

    std::fs::write(&segs[1], &pristine).unwrap();
    let mut o = small_opts(8 * 1024);
    o.owner_id = 42;
    assert!(matches!(
        Wal::open(dir.path(), o),
        Err(Error::OwnerMismatch {
            found: 0,
            expected: 42,
            ..
        })
    ));
    // Untouched again: opens fine with everything.
    let wal = Wal::open(dir.path(), small_opts(8 * 1024)).unwrap();
    assert_eq!(wal.last_index(1), 200);
}

#[test]
fn a_missing_middle_segment_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_multi_segment(dir.path());
    std::fs::remove_file(&segs[1]).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), small_opts(8 * 1024)),
        Err(Error::Corrupt { .. })
    ));
}

#[test]
fn a_last_segment_without_header_is_an_unfinished_spare_and_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let segs = write_multi_segment(dir.path());
    let n = segs.len();
    // Simulate a crash before the flush worker wrote the last segment's header: records are
    // there, the header is not. Such a segment never held durable data.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segs[n - 1])
        .unwrap();
    f.write_all_at(&[0u8; SEGMENT_HEADER_BYTES], 0).unwrap();
    drop(f);
    let wal = Wal::open(dir.path(), small_opts(8 * 1024)).unwrap();
    let last = wal.last_index(1);
    assert!(last < 200 && last > 100, "last index {last}");
    for i in 1..=last {
        assert_eq!(
            wal.entry(1, i).unwrap().payload,
            payload(1, i, 1, 100).as_slice()
        );
    }
    // The headerless segment and the pool's prepared spare after it.
    assert!(wal.recovery_report().spares_deleted >= 1);
    drop(wal);
    // A middle segment without header, however, is corruption (later headers prove it was
    // complete).
    let segs = write_multi_segment(tempfile::tempdir().unwrap().keep().as_path());
    let dir2 = segs[0].parent().unwrap().to_path_buf();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&segs[1])
        .unwrap();
    f.write_all_at(&[0u8; SEGMENT_HEADER_BYTES], 0).unwrap();
    drop(f);
    assert!(matches!(
        Wal::open(&dir2, small_opts(8 * 1024)),
        Err(Error::Corrupt { .. })
    ));
    let _ = std::fs::remove_dir_all(dir2);
}

/// `Wal::inspect` and `Wal::repair_plan` run the recovery scan without changing a byte: a torn
/// tail is reported where open then cuts it, a prep leftover and the file bytes stay, and the
/// plan for a damaged record followed by valid ones matches what `repair` then does.
#[test]
fn inspect_and_repair_plan_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let offs = write_single_segment(dir.path());
    let path = segment_path(dir.path(), 1);
    let prep = dir.path().join("00000000000000000009.wal.prep");
    std::fs::write(&prep, b"leftover").unwrap();
    let pristine = std::fs::read(&path).unwrap();
    // Garbage from the middle of the last record on: a torn tail.
    let tear = offs[N as usize - 1] + 20;
    let mut torn = pristine.clone();
    for b in &mut torn[tear..tear + 8] {
        *b ^= 0xff;
    }
    std::fs::write(&path, &torn).unwrap();
    let rep = Wal::inspect(dir.path(), &opts(RecoveryMode::TolerateTornTail)).unwrap();
    assert_eq!(
        rep.torn_tail,
        Some((path.clone(), offs[N as usize - 1] as u64))
    );
    assert_eq!(rep.records, N - 1);
    assert!(matches!(
        Wal::inspect(dir.path(), &opts(RecoveryMode::Strict)),
        Err(Error::TornTail { .. })
    ));
    assert_eq!(
        std::fs::read(&path).unwrap(),
        torn,
        "inspect changed the segment"
    );
    assert!(prep.exists(), "inspect deleted a leftover");
    // A damaged record with valid ones after it: inspect refuses like open, the plan says
    // what repair then does, and nothing changes until repair.
    let mut bad = pristine.clone();
    bad[offs[10] + 50] ^= 1;
    std::fs::write(&path, &bad).unwrap();
    assert!(matches!(
        Wal::inspect(dir.path(), &opts(RecoveryMode::TolerateTornTail)),
        Err(Error::ValidAfterInvalid { offset, .. }) if offset as usize == offs[10]
    ));
    let plan = Wal::repair_plan(dir.path(), &opts(RecoveryMode::Strict)).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bad,
        "repair_plan changed the segment"
    );
    let done = Wal::repair(dir.path(), &opts(RecoveryMode::Strict)).unwrap();
    assert_eq!(plan.cut, done.cut);
    assert_eq!(plan.dropped_records, done.dropped_records);
    assert_eq!(plan.first_dropped_lsn, Some(11));
    assert_eq!(plan.recovery.records, done.recovery.records);
    assert_ne!(std::fs::read(&path).unwrap(), bad, "repair changed nothing");
}
