//! Space reclaim in the shared log: a quiet group (one entry, never purged) pins the oldest
//! segment while a busy group appends and purges behind itself; `Wal::pins` names the quiet
//! group (and the index it must purge through), and once it purges the segments it held are
//! deleted.

mod common;

use common::{payload, small_opts};
use ringraft_wal::{SegmentPin, Wal};

const QUIET: u64 = 7;
const BUSY: u64 = 3;
/// Busy-group entries kept behind each purge (like a retained Raft log tail).
const RETAIN: u64 = 4;

#[test]
fn a_quiet_group_pins_old_segments_until_it_purges() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), small_opts(8 * 1024)).unwrap();
    wal.append(QUIET, 1, 1, &payload(QUIET, 1, 1, 100)).unwrap();
    wal.append(QUIET, 2, 1, &payload(QUIET, 2, 1, 100)).unwrap();
    // The busy group fills many segments, purging all but its last few entries as it goes.
    let mut i = 0;
    while wal.stats().rolls < 12 {
        i += 1;
        wal.append(BUSY, i, 1, &payload(BUSY, i, 1, 400)).unwrap();
        if i > RETAIN {
            wal.purge(BUSY, i - RETAIN).unwrap();
        }
        if i % 8 == 0 {
            wal.sync().unwrap();
            wal.reclaim().unwrap();
        }
    }
    wal.sync().unwrap();
    wal.reclaim().unwrap();
    let pinned = wal.segment_count();
    assert!(
        pinned >= 12,
        "the quiet group keeps every segment since its entry: {pinned} live"
    );
    assert_eq!(wal.live_bytes(), pinned as u64 * 8 * 1024);
    // Only the quiet group holds the oldest segments; the busy one purged behind itself.
    let pins = wal.pins(pinned - 2);
    assert_eq!(
        pins,
        vec![SegmentPin {
            group: QUIET,
            seq: 1,
            first_index: 1,
            last_index: 2,
        }],
        "pins of the {} oldest segments",
        pinned - 2
    );
    // Asking about every segment also names the busy group, whose tail lives in later ones.
    let all = wal.pins(usize::MAX);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].group, QUIET);
    assert_eq!(all[1].group, BUSY);
    assert_eq!(all[1].first_index, wal.first_index(BUSY));
    assert!(
        all[1].last_index < i,
        "the active segment is never counted: {all:?}"
    );
    // The quiet group compacts (a snapshot through index 2): the segments are reclaimed.
    wal.purge(QUIET, 3).unwrap();
    wal.sync().unwrap();
    wal.reclaim().unwrap();
    assert!(
        wal.segment_count() <= 3,
        "after the quiet group purged, {} segments are still live",
        wal.segment_count()
    );
    assert!(wal.pins(1).iter().all(|p| p.group != QUIET));
    // Nothing of the busy group's retained tail is lost, and it all survives a reopen.
    let first = wal.first_index(BUSY);
    wal.close().unwrap();
    let wal = Wal::open(dir.path(), small_opts(8 * 1024)).unwrap();
    assert_eq!(wal.first_index(BUSY), first);
    assert_eq!(wal.last_index(BUSY), i);
    for k in first..=i {
        assert_eq!(
            wal.entry(BUSY, k).unwrap().payload,
            payload(BUSY, k, 1, 400).as_slice()
        );
    }
    assert_eq!(wal.first_index(QUIET), 3);
    assert!(wal.segment_count() <= 3);
}

#[test]
fn pins_of_an_empty_or_single_segment_log_are_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut wal = Wal::open(dir.path(), small_opts(8 * 1024)).unwrap();
    assert!(wal.pins(usize::MAX).is_empty());
    wal.append(1, 1, 1, b"x").unwrap();
    // The active segment never counts: nothing can be reclaimed from it.
    assert!(wal.pins(usize::MAX).is_empty());
}
