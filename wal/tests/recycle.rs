//! Recycled segments: purged segment files are reused (no zero-fill) and their old records,
//! which stay in the file, are never mistaken for new ones — neither as records nor as "a valid
//! record after an invalid one".

mod common;

use common::{payload, small_opts};
use ringraft_wal::record::{decode, find_valid_after, Decoded, RECORD_HEADER_BYTES};
use ringraft_wal::segment::{segment_path, SegmentHeader, SEGMENT_HEADER_BYTES};
use ringraft_wal::Wal;

const SEG: usize = 8 * 1024;

/// End offset of the records of a segment file, and its first lsn.
fn records_end(bytes: &[u8]) -> (usize, u64) {
    let h = SegmentHeader::decode(bytes, std::path::Path::new("x"))
        .unwrap()
        .unwrap();
    let (mut off, mut lsn) = (SEGMENT_HEADER_BYTES, h.first_lsn);
    while let Decoded::Record { total, .. } = decode(bytes, off, lsn) {
        off += total;
        lsn += 1;
    }
    (off, h.first_lsn)
}

/// The highest segment with a header, if old (lower-lsn) valid records lie after its end.
fn active_with_old_records(dir: &std::path::Path) -> Option<(u64, usize)> {
    let (seq, bytes) = (1..=10_000u64).rev().find_map(|s| {
        let b = std::fs::read(segment_path(dir, s)).ok()?;
        matches!(
            SegmentHeader::decode(&b, std::path::Path::new("x")),
            Ok(Some(_))
        )
        .then_some((s, b))
    })?;
    let (end, first_lsn) = records_end(&bytes);
    let old = any_record_after(&bytes, end)?;
    (old < first_lsn).then_some((seq, end))
}

/// Lsn of the first record with a valid crc (any lsn) after `end`.
fn any_record_after(bytes: &[u8], end: usize) -> Option<u64> {
    (end + 8..bytes.len() - RECORD_HEADER_BYTES)
        .step_by(8)
        .find_map(|off| {
            let lsn = u64::from_le_bytes(bytes[off + 8..off + 16].try_into().unwrap());
            matches!(decode(bytes, off, lsn), Decoded::Record { .. }).then_some(lsn)
        })
}

#[test]
fn purged_segments_are_recycled_and_old_records_never_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let opts = small_opts(SEG);
    let mut wal = Wal::open(dir.path(), opts.clone()).unwrap();
    let mut last = 0u64;
    // Write, purge most of it, repeat: purged files come back as new segments.
    for round in 0..12u64 {
        for _ in 0..60 {
            last += 1;
            wal.append(1, last, round + 1, &payload(1, last, round + 1, 70))
                .unwrap();
        }
        wal.sync().unwrap();
        wal.purge(1, last - 10).unwrap();
        wal.sync().unwrap();
        wal.reclaim().unwrap();
    }
    let stats = wal.stats();
    assert!(stats.segments_recycled >= 3, "{stats:?}");
    // Roll until the active segment is a recycled file whose old records lie after the new
    // ones (it is left nearly empty).
    let term = 13;
    let mut found = None;
    for _ in 0..8 {
        let rolls = wal.stats().rolls;
        while wal.stats().rolls == rolls {
            last += 1;
            wal.append(1, last, term, &payload(1, last, term, 70))
                .unwrap();
        }
        wal.sync().unwrap();
        wal.purge(1, last - 10).unwrap();
        wal.sync().unwrap();
        wal.reclaim().unwrap();
        if let Some(f) = active_with_old_records(dir.path()) {
            found = Some(f);
            break;
        }
    }
    let (active_seq, _) = found.expect("no recycled active segment with old records");
    wal.close().unwrap();

    let check = |wal: &Wal| {
        assert_eq!(wal.last_index(1), last);
        let first = wal.first_index(1);
        assert_eq!(first, last - 10);
        for i in first..=last {
            let term = if i > 720 { 13 } else { (i - 1) / 60 + 1 };
            let e = wal.entry(1, i).unwrap();
            assert_eq!(e.term, term);
            assert_eq!(e.payload, payload(1, i, term, 70).as_slice());
        }
    };
    let wal = Wal::open(dir.path(), opts.clone()).unwrap();
    check(&wal);
    assert_eq!(wal.recovery_report().torn_tail, None);
    drop(wal);

    // The active segment is a recycled file: valid old records (lower lsns) lie after its end.
    let path = segment_path(dir.path(), active_seq);
    let mut bytes = std::fs::read(&path).unwrap();
    let (end, first_lsn) = records_end(&bytes);
    assert!(bytes[end..end + RECORD_HEADER_BYTES]
        .iter()
        .all(|&b| b == 0));
    let old = any_record_after(&bytes, end).expect("old records after the end");
    assert!(old < first_lsn, "old record lsn {old} >= {first_lsn}");
    assert!(find_valid_after(&bytes, end, first_lsn).is_none());
    // Damage the end marker (as a crash that never wrote it would leave old bytes there):
    // the old records after it are not "valid records after an invalid one", so this is a
    // torn tail, cut, and nothing old is replayed.
    bytes[end..end + RECORD_HEADER_BYTES].fill(0xEE);
    std::fs::write(&path, &bytes).unwrap();
    let wal = Wal::open(dir.path(), opts).unwrap();
    check(&wal);
    assert_eq!(wal.recovery_report().torn_tail, Some((path, end as u64)));
}
