use super::*;

#[test]
fn a_store_streamed_into_its_file_matches_the_file_of_its_bytes() {
    use crate::node::kv::{store::KvStore, Command, WriteOp};
    let mut kv = KvStore::new();
    // Past several writeback chunks, with a value over a chunk (written where it is) and
    // sessions (the tail).
    for i in 0..6_000u64 {
        let value = if i == 77 {
            vec![b'b'; WRITEBACK_CHUNK_BYTES + 3]
        } else {
            format!("value-{i:0>300}").into_bytes()
        };
        let cmd = Command {
            client_id: i % 5,
            seq: i + 1,
            op: WriteOp::Put {
                key: format!("key-{i}").into_bytes(),
                value,
            },
        };
        kv.apply(i + 1, &cmd.encode());
    }
    let meta = SnapshotMeta {
        index: 6_000,
        term: 4,
        membership: Membership::with_voters([1, 2, 3]),
    };
    let dir = std::env::temp_dir().join(format!("ringraft-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("shard-1.snap");
    let len = write_store_snapshot_file(&p, &meta, &kv, 0).unwrap();
    let bytes = kv.snapshot();
    assert_eq!(len, bytes.len() as u64);
    let want = encode_snapshot(&Snapshot {
        meta: meta.clone(),
        data: Arc::from(bytes),
    });
    assert!(std::fs::read(&p).unwrap() == want, "streamed file differs");
    let back = read_snapshot(&p).unwrap().unwrap();
    assert_eq!(back.meta, meta);
    assert_eq!(
        KvStore::restore(&back.data).unwrap().snapshot(),
        kv.snapshot()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn snapshot_file_round_trip_and_corruption() {
    let s = Snapshot {
        meta: SnapshotMeta {
            index: 42,
            term: 3,
            membership: Membership::with_voters([1, 2, 3]),
        },
        data: Arc::from(&b"kv-bytes"[..]),
    };
    let b = encode_snapshot(&s);
    assert_eq!(decode_snapshot(&b).unwrap(), s);
    for i in [0, 9, 30, b.len() - 1] {
        let mut c = b.clone();
        c[i] ^= 0x40;
        assert!(decode_snapshot(&c).is_err(), "flip at {i}");
    }
    assert!(decode_snapshot(&b[..10]).is_err());
    let dir = std::env::temp_dir().join(format!("ringraft-snap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("shard-0.snap");
    assert_eq!(read_snapshot(&p).unwrap(), None);
    write_snapshot_file(&p, &s).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b);
    assert_eq!(read_snapshot(&p).unwrap(), Some(s));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_snapshot_file_of_many_writeback_chunks_reads_back_whole() {
    // Three and a half chunks of state: the paced writeback starts and waits on ranges
    // that straddle the head, the data and the trailing CRC.
    let len = WRITEBACK_CHUNK_BYTES * 7 / 2 + 13;
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let s = Snapshot {
        meta: SnapshotMeta {
            index: 9,
            term: 2,
            membership: Membership::with_voters([1, 2, 3]),
        },
        data: Arc::from(data),
    };
    let dir = std::env::temp_dir().join(format!("ringraft-snap-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("shard-1.snap");
    write_snapshot_file(&p, &s).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), encode_snapshot(&s));
    assert_eq!(read_snapshot(&p).unwrap(), Some(s));
    assert!(!p.with_extension("tmp").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_released_snapshot_gets_its_bytes_only_from_its_own_file() {
    let full = |index, term| Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            membership: Membership::with_voters([1, 2, 3]),
        },
        data: Arc::from(&b"state-bytes"[..]),
    };
    let released = |index, term| Snapshot {
        data: Arc::from(&[][..]),
        ..full(index, term)
    };
    let dir = std::env::temp_dir().join(format!("ringraft-snap-rel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("shard-2.snap");
    // No file yet, or a file of another snapshot: refused, the bytes stay empty.
    let mut s = released(20, 3);
    assert!(fill_released(&mut s, &p).is_err());
    write_snapshot_file(&p, &full(10, 3)).unwrap();
    assert!(fill_released(&mut s, &p).is_err());
    assert!(s.data.is_empty());
    write_snapshot_file(&p, &full(20, 2)).unwrap();
    assert!(fill_released(&mut s, &p).is_err(), "same index, other term");
    // Its own file: filled.
    write_snapshot_file(&p, &full(20, 3)).unwrap();
    fill_released(&mut s, &p).unwrap();
    assert_eq!(s, full(20, 3));
    // Not released (bytes held, or the empty snapshot at index 0): left alone.
    let mut held = full(7, 1);
    fill_released(&mut held, &p).unwrap();
    assert_eq!(held, full(7, 1));
    let mut empty = released(0, 0);
    fill_released(&mut empty, &p).unwrap();
    assert!(empty.data.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn entry_payload_round_trip() {
    for kind in [EntryKind::Normal, EntryKind::Noop, EntryKind::Config] {
        let e = Entry {
            index: 7,
            term: 2,
            kind,
            data: Arc::from(&b"abc"[..]),
        };
        assert_eq!(decode_entry(7, 2, &entry_payload(&e)).unwrap(), e);
    }
    assert!(decode_entry(1, 1, &[]).is_err());
    assert!(decode_entry(1, 1, &[9]).is_err());
}

#[test]
fn a_rate_limited_writer_waits_for_what_its_bytes_should_have_taken() {
    use std::time::Duration;
    // 64 MiB at 128 MiB/s take half a second: written in 200 ms, the writer waits 300 ms.
    let rate = 128 << 20;
    assert_eq!(
        writeback::rate_delay(64 << 20, rate, Duration::from_millis(200)),
        Duration::from_millis(300)
    );
    // Already slower than the rate, or no limit: no wait.
    assert_eq!(
        writeback::rate_delay(64 << 20, rate, Duration::from_secs(1)),
        Duration::ZERO
    );
    assert_eq!(
        writeback::rate_delay(64 << 20, 0, Duration::ZERO),
        Duration::ZERO
    );
    // Hostile sizes saturate instead of overflowing.
    assert_eq!(
        writeback::rate_delay(u64::MAX, 1, Duration::ZERO),
        Duration::from_nanos(u64::MAX)
    );
}

#[test]
fn a_rate_limited_file_is_written_no_faster_than_its_rate() {
    use std::time::{Duration, Instant};
    let dir = std::env::temp_dir().join(format!("ringraft-rate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("rated.snap");
    let bytes = vec![7u8; 8 * WRITEBACK_CHUNK_BYTES];
    // 8 chunks at 32 chunks a second: at least a quarter of a second.
    let rate = 32 * WRITEBACK_CHUNK_BYTES as u64;
    let t0 = Instant::now();
    writeback::write_streamed_atomically(&p, rate, |w| w.put(&bytes)).unwrap();
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(240), "took {took:?}");
    assert!(std::fs::read(&p).unwrap() == bytes);
    std::fs::remove_dir_all(&dir).unwrap();
}
