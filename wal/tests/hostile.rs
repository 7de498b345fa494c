//! Every byte on disk is hostile: random byte flips anywhere in the segment files, and records
//! whose fields are replaced by extreme values with a recomputed (valid) crc, must make open
//! (and repair) return a result — never panic, never allocate without bound. Seeded; set
//! RINGRAFT_WAL_SEED to replay a failure, RINGRAFT_WAL_FUZZ_ROUNDS for a longer run.

mod common;

use std::path::{Path, PathBuf};

use common::{payload, small_opts, Rng};
use ringraft_wal::record::{decode, record_bytes, Decoded};
use ringraft_wal::segment::{SegmentHeader, SEGMENT_HEADER_BYTES};
use ringraft_wal::{HardState, RecoveryMode, Wal, WalOptions};

const SEG: usize = 8 * 1024;

fn opts() -> WalOptions {
    small_opts(SEG)
}

/// A multi-segment log with several groups, truncates, purges and hard states.
fn build(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut wal = Wal::open(dir, opts()).unwrap();
    for i in 1..=150u64 {
        let g = i % 3;
        let idx = wal.last_index(g) + 1;
        wal.append(
            g,
            idx,
            1 + i / 40,
            &payload(g, idx, 1, (i as usize * 13) % 120),
        )
        .unwrap();
        if i % 25 == 0 {
            wal.set_hard_state(
                g,
                HardState {
                    term: i,
                    vote: g,
                    commit: idx,
                },
            )
            .unwrap();
        }
        if i % 40 == 0 {
            wal.truncate(g, idx - 2).unwrap();
        }
        if i % 70 == 0 {
            wal.sync().unwrap();
            wal.purge(g, idx / 2).unwrap();
        }
    }
    // Purge every group far enough that the first segments go: the first live segment then
    // opens with the checkpoints that position each group.
    wal.sync().unwrap();
    for g in 0..3 {
        let keep = wal.last_index(g).saturating_sub(12).max(1);
        wal.purge(g, keep).unwrap();
    }
    wal.sync().unwrap();
    wal.reclaim().unwrap();
    wal.close().unwrap();
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    files.sort();
    assert!(files.len() >= 3, "{} segments", files.len());
    files
}

/// Record start offsets of a segment.
fn records(bytes: &[u8]) -> Vec<usize> {
    let Ok(Some(h)) = SegmentHeader::decode(bytes, Path::new("x")) else {
        return Vec::new();
    };
    let (mut off, mut lsn, mut v) = (SEGMENT_HEADER_BYTES, h.first_lsn, Vec::new());
    while let Decoded::Record { total, .. } = decode(bytes, off, lsn) {
        v.push(off);
        off += total;
        lsn += 1;
    }
    v
}

fn reseal(b: &mut [u8], off: usize) {
    let len = u32::from_le_bytes(b[off..off + 4].try_into().unwrap()) as usize;
    let total = record_bytes(len);
    if off + total > b.len() {
        return;
    }
    let mut crc = crc32fast::Hasher::new();
    crc.update(&b[off..off + 4]);
    crc.update(&b[off + 8..off + total]);
    let c = crc.finalize();
    b[off + 4..off + 8].copy_from_slice(&c.to_le_bytes());
}

const HOSTILE: [u64; 7] = [
    0,
    1,
    u64::MAX,
    u64::MAX - 1,
    u64::MAX >> 2,
    (u64::MAX >> 2) + 1,
    1 << 32,
];

/// Opens, reads everything, appends one record and closes; or returns the error. Never panics.
fn exercise(dir: &Path) -> Result<(), ringraft_wal::Error> {
    let o = WalOptions {
        recovery_mode: RecoveryMode::TolerateTornTail,
        ..opts()
    };
    let mut wal = Wal::open(dir, o)?;
    for g in wal.groups() {
        let (first, last) = (wal.first_index(g), wal.last_index(g));
        let _ = wal.hard_state(g);
        if last >= first {
            for e in wal.entries(g, first, last + 1)? {
                e?;
            }
        }
    }
    let g = 7;
    let next = wal.last_index(g) + 1;
    wal.append(g, next, 1, b"after")?;
    wal.close()
}

#[test]
fn flipped_and_hostile_bytes_never_panic_open_or_repair() {
    let seed = common::seed(0x4057_11E5);
    let rounds: u32 = std::env::var("RINGRAFT_WAL_FUZZ_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let mut rng = Rng(seed);
    let base = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let dir = base.path().join("wal");
    let pristine = build(&dir);
    let (mut ok, mut refused, mut repaired) = (0, 0, 0);
    for round in 0..rounds {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (p, b) in &pristine {
            std::fs::write(p, b).unwrap();
        }
        // The first segment a third of the time: its checkpoints position the groups.
        let pick = if rng.below(3) == 0 {
            0
        } else {
            rng.below(pristine.len() as u64) as usize
        };
        let (path, orig) = &pristine[pick];
        let mut b = orig.clone();
        let recs = records(&b);
        if round % 2 == 0 || recs.is_empty() {
            // Random byte flips anywhere, header included.
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(b.len() as u64) as usize;
                b[at] ^= 1 + rng.below(255) as u8;
            }
        } else {
            // A field of one record set to an extreme value, crc made valid again.
            // Half the time a non-entry record (checkpoint, hard state, truncate, purge).
            let special: Vec<usize> = recs.iter().copied().filter(|&o| b[o + 40] != 1).collect();
            let off = if rng.below(2) == 0 && !special.is_empty() {
                special[rng.below(special.len() as u64) as usize]
            } else {
                recs[rng.below(recs.len() as u64) as usize]
            };
            // Header fields, or the first payload word (a checkpoint's last index, a hard
            // state's term).
            let field = if rng.below(4) == 0 {
                48
            } else {
                [0usize, 8, 16, 24, 32, 40][rng.below(6) as usize]
            };
            let v = HOSTILE[rng.below(HOSTILE.len() as u64) as usize];
            match field {
                0 => b[off..off + 4].copy_from_slice(&(v as u32).to_le_bytes()),
                40 => b[off + 40] = v as u8,
                f if off + f + 8 <= b.len() => {
                    b[off + f..off + f + 8].copy_from_slice(&v.to_le_bytes())
                }
                _ => {}
            }
            if field == 40 && rng.below(2) == 0 {
                b[off + 40] = 1 + rng.below(5) as u8;
            }
            reseal(&mut b, off);
        }
        std::fs::write(path, &b).unwrap();
        match exercise(&dir) {
            Ok(()) => ok += 1,
            Err(e) => {
                refused += 1;
                // The documented way forward must not panic either.
                if let Ok(rep) = Wal::repair(&dir, &opts()) {
                    let _ = rep.to_string();
                    if exercise(&dir).is_ok() {
                        repaired += 1;
                    }
                }
                let _ = e.to_string();
            }
        }
    }
    eprintln!("rounds {rounds}: opened {ok}, refused {refused} (repaired then opened {repaired})");
    assert!(
        refused > 0 && ok > 0,
        "the mutations did not exercise both paths"
    );
}
