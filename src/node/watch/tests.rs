use std::sync::Arc;

use super::hub::QueueLimits;
use super::*;
use crate::node::kv::{Command, KvStore, WriteOp};

fn ev(rev: u64, key: &str, value_len: usize) -> Arc<WatchEvent> {
    Arc::new(WatchEvent {
        kind: WatchEventKind::Put,
        key: key.as_bytes().to_vec(),
        value: vec![b'v'; value_len],
        version: rev,
        revision: rev,
    })
}

/// A store and a hub fed the same way the core feeds them.
struct Shard {
    kv: KvStore,
    hub: WatchHub,
}

impl Shard {
    fn new(history: History, limits: QueueLimits) -> Shard {
        Shard {
            kv: KvStore::new(),
            hub: WatchHub::new(history, limits),
        }
    }

    fn apply(&mut self, op: WriteOp) -> u64 {
        let index = self.kv.applied_index() + 1;
        self.apply_session(op, 0, 0, index)
    }

    fn apply_session(&mut self, op: WriteOp, client_id: u64, seq: u64, index: u64) -> u64 {
        let bytes: Arc<[u8]> = Command { client_id, seq, op }.encode().into();
        let r = self.kv.apply(index, &bytes).unwrap();
        let dropped = self.kv.take_dropped_keys();
        self.hub.on_entry(
            index,
            Some(events::Applied {
                data: &bytes,
                result: &r,
                dropped: &dropped,
            }),
        );
        self.hub.flush();
        index
    }

    fn put(&mut self, k: &str, v: &str) -> u64 {
        self.apply(WriteOp::Put {
            key: k.into(),
            value: v.into(),
        })
    }
}

fn drain(sub: &Subscription) -> (Vec<WatchEvent>, u64) {
    let (mut out, mut through) = (Vec::new(), sub.covered);
    while let Ok(b) = sub.rx.try_recv() {
        sub.taken(&b);
        assert!(b.through >= through, "through goes back");
        for e in &b.events {
            assert!(
                e.revision > through && e.revision <= b.through,
                "event outside its batch"
            );
        }
        through = b.through;
        out.extend(b.events.iter().map(|e| (**e).clone()));
    }
    (out, through)
}

fn keys(evs: &[WatchEvent]) -> Vec<String> {
    evs.iter()
        .map(|e| String::from_utf8_lossy(&e.key).into_owned())
        .collect()
}

#[test]
fn history_ring_is_bounded_by_count_and_bytes() {
    let mut h = History::with_limits(0, 4, usize::MAX);
    for r in 1..=10 {
        h.push(ev(r, "k", 1));
    }
    assert_eq!((h.len(), h.floor(), h.oldest(), h.last()), (4, 6, 7, 10));
    assert_eq!(h.since(6).err(), Some(7), "revision 6 was dropped");
    let revs: Vec<u64> = h.since(7).unwrap().map(|e| e.revision).collect();
    assert_eq!(revs, vec![7, 8, 9, 10]);

    let one = event_bytes(&ev(1, "k", 100));
    let mut h = History::with_limits(0, 1_000, 3 * one);
    for r in 1..=10 {
        h.push(ev(r, "k", 100));
    }
    assert_eq!(h.len(), 3);
    assert!(h.bytes() <= 3 * one);
    // The newest revision is kept even when it alone is over the byte bound.
    h.push(ev(11, "big", 10 * one));
    assert_eq!((h.len(), h.oldest()), (1, 11));
    h.reset(20);
    assert_eq!(
        (h.len(), h.bytes(), h.oldest(), h.since(21).is_ok()),
        (0, 0, 21, true)
    );
}

#[test]
fn compacted_revisions_are_refused_with_the_oldest() {
    let mut s = Shard::new(
        History::with_limits(0, 3, usize::MAX),
        QueueLimits::default(),
    );
    for i in 0..6 {
        s.put(&format!("a{i}"), "v");
    }
    let applied = s.kv.applied_index();
    let r = s.hub.register(WatchFilter::Prefix(vec![]), 2, applied);
    assert_eq!(r.err(), Some(WatchCancel::Compacted { oldest: 4 }));
    assert_eq!(
        WatchCancel::Compacted { oldest: 4 }.to_string(),
        "compacted, the oldest revision is 4"
    );
    let sub = s
        .hub
        .register(WatchFilter::Prefix(vec![]), 4, applied)
        .unwrap();
    let (evs, through) = drain(&sub);
    assert_eq!(keys(&evs), vec!["a3", "a4", "a5"]);
    assert_eq!(through, 6);
}

#[test]
fn filters_by_key_prefix_and_range() {
    let mut s = Shard::new(History::new(0), QueueLimits::default());
    let applied = s.kv.applied_index();
    let key = s
        .hub
        .register(WatchFilter::Key(b"b/1".to_vec()), 0, applied)
        .unwrap();
    let prefix = s
        .hub
        .register(WatchFilter::Prefix(b"b/".to_vec()), 0, applied)
        .unwrap();
    let range = s
        .hub
        .register(
            WatchFilter::Range {
                start: b"a".to_vec(),
                end: Some(b"b/1".to_vec()),
            },
            0,
            applied,
        )
        .unwrap();
    for k in ["a", "b/1", "b/2", "b/10", "c"] {
        s.put(k, "v");
    }
    s.apply(WriteOp::Delete { key: "b/1".into() });
    assert_eq!(keys(&drain(&key).0), vec!["b/1", "b/1"]);
    let (p, through) = drain(&prefix);
    assert_eq!(keys(&p), vec!["b/1", "b/2", "b/10", "b/1"]);
    assert_eq!(p[3].kind, WatchEventKind::Delete);
    assert_eq!((p[3].revision, p[3].version, through), (6, 0, 6));
    assert_eq!(
        (p[0].revision, p[0].version, &p[0].value[..]),
        (2, 2, &b"v"[..])
    );
    // [a, b/1) holds "a" but neither "b/1" nor "b/10" (which sorts after "b/1").
    assert_eq!(keys(&drain(&range).0), vec!["a"]);
}

#[test]
fn only_changes_are_events() {
    let mut s = Shard::new(History::new(0), QueueLimits::default());
    let sub = s.hub.register(WatchFilter::Prefix(vec![]), 0, 0).unwrap();
    s.apply(WriteOp::Delete {
        key: "missing".into(),
    });
    s.apply(WriteOp::CasValue {
        key: "k".into(),
        expected: Some(b"x".to_vec()),
        new: b"n".to_vec(),
    });
    let swapped = s.apply(WriteOp::CasVersion {
        key: "k".into(),
        expected_version: 0,
        new: b"n".to_vec(),
    });
    let first = s.apply_session(
        WriteOp::Put {
            key: "s".into(),
            value: "1".into(),
        },
        7,
        1,
        swapped + 1,
    );
    // The same session write again: answered from the session table, no change.
    s.apply_session(
        WriteOp::Put {
            key: "s".into(),
            value: "1".into(),
        },
        7,
        1,
        first + 1,
    );
    s.apply(WriteOp::Noop);
    let (evs, through) = drain(&sub);
    assert_eq!(keys(&evs), vec!["k", "s"]);
    assert_eq!((evs[0].revision, &evs[0].value[..]), (swapped, &b"n"[..]));
    // Entries without a change advance the covered revision only with the next progress
    // report (at most every WATCH_PROGRESS_INTERVAL_MS).
    assert_eq!(through, first);
}

/// (kind, key, value, revision) of each event.
fn summary(evs: &[WatchEvent]) -> Vec<(WatchEventKind, String, String, u64)> {
    evs.iter()
        .map(|e| {
            (
                e.kind,
                String::from_utf8_lossy(&e.key).into_owned(),
                String::from_utf8_lossy(&e.value).into_owned(),
                e.revision,
            )
        })
        .collect()
}

#[test]
fn a_transaction_makes_the_events_of_the_branch_it_ran_at_its_revision() {
    use ringraft_net::message::{Txn, TxnCheck, TxnCompare, TxnOp};
    use WatchEventKind::{Delete, Put};
    let mut s = Shard::new(History::new(0), QueueLimits::default());
    let sub = s.hub.register(WatchFilter::Prefix(vec![]), 0, 0).unwrap();
    s.put("a", "1");
    s.put("b", "1");
    let put = |k: &str, v: &str| TxnOp::Put {
        key: k.into(),
        value: v.into(),
    };
    let del = |k: &str| TxnOp::Delete { key: k.into() };
    let txn = |exists: bool, success: Vec<TxnOp>, failure: Vec<TxnOp>| {
        WriteOp::Txn(Txn {
            compares: vec![TxnCompare {
                key: "a".into(),
                check: TxnCheck::Exists(exists),
            }],
            success,
            failure,
        })
    };
    // Compares hold: the success branch's put and delete of an existing key are events; the
    // delete of a missing key and the get are not.
    let ran = s.apply(txn(
        true,
        vec![
            put("c", "3"),
            del("a"),
            del("missing"),
            TxnOp::Get { key: "b".into() },
        ],
        vec![put("never", "x")],
    ));
    // "a" is gone now: the compare fails and the failure branch runs.
    let failed = s.apply(txn(
        true,
        vec![put("never", "x")],
        vec![put("f", "4"), del("b")],
    ));
    // Only reads: no event.
    s.apply(txn(false, vec![TxnOp::Get { key: "c".into() }], vec![]));
    // A retried transaction is answered from the session table and changes nothing.
    let first = s.kv.applied_index() + 1;
    let retry = || txn(false, vec![put("once", "1")], vec![]);
    s.apply_session(retry(), 7, 1, first);
    s.apply_session(retry(), 7, 1, first + 1);
    let (evs, _) = drain(&sub);
    assert_eq!(
        summary(&evs),
        vec![
            (Put, "a".into(), "1".into(), 1),
            (Put, "b".into(), "1".into(), 2),
            (Put, "c".into(), "3".into(), ran),
            (Delete, "a".into(), "".into(), ran),
            (Put, "f".into(), "4".into(), failed),
            (Delete, "b".into(), "".into(), failed),
            (Put, "once".into(), "1".into(), first),
        ]
    );
    assert_eq!(evs[2].version, ran);
    assert_eq!(evs[3].version, 0);
}

#[test]
fn lease_puts_and_the_keys_a_revoke_or_expiry_deletes_are_events() {
    use WatchEventKind::{Delete, Put};
    let mut s = Shard::new(History::new(0), QueueLimits::default());
    let sub = s.hub.register(WatchFilter::Prefix(vec![]), 0, 0).unwrap();
    let attach = |k: &str, lease: u64, ttl_ms: u64| WriteOp::PutLease {
        key: k.into(),
        value: "v".into(),
        lease,
        ttl_ms,
    };
    // A grant and a keep-alive change no key.
    s.apply(WriteOp::LeaseGrant {
        id: 9,
        ttl_ms: 2_000,
    });
    let a = s.apply(attach("a", 9, 0));
    let b = s.apply(attach("b", 9, 0));
    // Granted and attached in one step.
    let c = s.apply(attach("c", 10, 2_000));
    // A plain put ends "b"'s lease: the expiry below does not delete it.
    let b2 = s.put("b", "plain");
    let refreshed = s.apply(WriteOp::LeaseKeepAlive { id: 9 });
    let expired = s.apply(WriteOp::LeaseExpire { id: 9, refreshed });
    let revoked = s.apply(WriteOp::LeaseRevoke { id: 10 });
    // A revoke retried through the session table deletes nothing the second time.
    let d = s.apply(attach("d", 11, 2_000));
    let first = s.kv.applied_index() + 1;
    s.apply_session(WriteOp::LeaseRevoke { id: 11 }, 7, 1, first);
    s.apply_session(WriteOp::LeaseRevoke { id: 11 }, 7, 1, first + 1);
    let (evs, _) = drain(&sub);
    assert_eq!(
        summary(&evs),
        vec![
            (Put, "a".into(), "v".into(), a),
            (Put, "b".into(), "v".into(), b),
            (Put, "c".into(), "v".into(), c),
            (Put, "b".into(), "plain".into(), b2),
            (Delete, "a".into(), "".into(), expired),
            (Delete, "c".into(), "".into(), revoked),
            (Put, "d".into(), "v".into(), d),
            (Delete, "d".into(), "".into(), first),
        ]
    );
    assert!(s.kv.get(b"a").is_none() && s.kv.get(b"b").is_some());
}

#[test]
fn resuming_from_through_plus_one_misses_nothing_and_repeats_nothing() {
    let mut s = Shard::new(History::new(0), QueueLimits::default());
    let first = s
        .hub
        .register(WatchFilter::Prefix(b"k".to_vec()), 0, 0)
        .unwrap();
    for i in 0..5 {
        s.put(&format!("k{i}"), "v");
        s.put("other", "v");
    }
    let (a, through) = drain(&first);
    drop(first);
    for i in 5..8 {
        s.put(&format!("k{i}"), "v");
    }
    let applied = s.kv.applied_index();
    let resumed = s
        .hub
        .register(WatchFilter::Prefix(b"k".to_vec()), through + 1, applied)
        .unwrap();
    let (b, _) = drain(&resumed);
    let all: Vec<String> = keys(&a).into_iter().chain(keys(&b)).collect();
    let want: Vec<String> = (0..8).map(|i| format!("k{i}")).collect();
    assert_eq!(all, want);
    // A revision not applied yet here (a follower behind the node the client came from) is
    // accepted and served once applied.
    let ahead = s
        .hub
        .register(WatchFilter::Prefix(b"k".to_vec()), applied + 2, applied)
        .unwrap();
    s.put("k8", "v");
    s.put("k9", "v");
    s.put("k10", "v");
    assert_eq!(keys(&drain(&ahead).0), vec!["k9", "k10"]);
}

#[test]
fn slow_watcher_is_cancelled_with_a_reason_and_bounded_memory() {
    let limits = QueueLimits {
        batches: 8,
        bytes: 4 * event_bytes(&ev(1, "k0", 1000)),
    };
    let mut s = Shard::new(History::new(0), limits);
    let slow = s.hub.register(WatchFilter::Prefix(vec![]), 0, 0).unwrap();
    let fast = s.hub.register(WatchFilter::Prefix(vec![]), 0, 0).unwrap();
    let value = "x".repeat(1000);
    let mut max_queued = 0;
    for i in 0..50 {
        s.put(&format!("k{i}"), &value);
        drain(&fast);
        max_queued = max_queued.max(
            slow.shared
                .queued_bytes
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        assert!(slow.rx.len() <= limits.batches);
    }
    assert!(
        max_queued <= limits.bytes,
        "{max_queued} > {}",
        limits.bytes
    );
    assert_eq!(
        s.hub.watchers(),
        1,
        "the slow watcher was removed, the fast one stays"
    );
    assert_eq!(s.hub.cancelled_slow, 1);
    let (evs, through) = drain(&slow);
    assert!(slow.rx.is_disconnected());
    let reason = slow.shared.take_cancel().unwrap();
    let WatchCancel::TooSlow(m) = &reason else {
        panic!("{reason:?}")
    };
    assert!(
        m.contains(&format!("resume from revision {}", through + 1)),
        "{m}"
    );
    assert_eq!(evs.len() as u64, through, "what was queued is contiguous");
    // It resumes where it stopped and catches up.
    let applied = s.kv.applied_index();
    let again = s
        .hub
        .register(WatchFilter::Prefix(vec![]), through + 1, applied)
        .unwrap();
    assert_eq!(drain(&again).0.len() as u64, applied - through);
}

#[test]
fn a_snapshot_install_restarts_the_history_and_cancels_who_missed_events() {
    let mut s = Shard::new(History::new(0), QueueLimits::default());
    let sub = s.hub.register(WatchFilter::Prefix(vec![]), 0, 0).unwrap();
    s.put("a", "1");
    drain(&sub);
    // Entries 2..=10 arrive inside a snapshot; the next applied entry is 11.
    let mut snap = KvStore::new();
    for i in 1..=10 {
        snap.apply_empty(i);
    }
    s.kv = snap;
    let applied = s.kv.applied_index();
    s.put("b", "2");
    assert!(sub.rx.is_disconnected());
    assert_eq!(
        sub.shared.take_cancel(),
        Some(WatchCancel::Compacted { oldest: 11 })
    );
    assert_eq!(s.hub.history().oldest(), 11);
    let r = s.hub.register(WatchFilter::Prefix(vec![]), 5, applied + 1);
    assert_eq!(r.err(), Some(WatchCancel::Compacted { oldest: 11 }));
}

#[test]
fn the_history_replays_exactly_what_was_delivered_live() {
    use ringraft_net::message::{Txn, TxnCheck, TxnCompare, TxnOp};
    // One watcher sees every change as it is applied (events derived for the round); a second
    // registers afterwards from revision 1 and gets the same changes from the history (kept
    // as command bytes and decoded when read): every kind of change, identical events.
    let mut s = Shard::new(History::new(0), QueueLimits::default());
    let live = s.hub.register(WatchFilter::Prefix(vec![]), 0, 0).unwrap();
    s.put("a", "1");
    s.apply(WriteOp::PutLease {
        key: "l".into(),
        value: "lv".into(),
        lease: 3,
        ttl_ms: 1_000,
    });
    s.apply(WriteOp::CasValue {
        key: "a".into(),
        expected: Some(b"1".to_vec()),
        new: b"2".to_vec(),
    });
    s.apply(WriteOp::CasVersion {
        key: "b".into(),
        expected_version: 0,
        new: b"3".to_vec(),
    });
    s.apply(WriteOp::Delete { key: "a".into() });
    s.apply(WriteOp::Delete { key: "a".into() });
    s.apply(WriteOp::Txn(Txn {
        compares: vec![TxnCompare {
            key: "b".into(),
            check: TxnCheck::Exists(true),
        }],
        success: vec![
            TxnOp::Put {
                key: "t".into(),
                value: "tv".into(),
            },
            TxnOp::Delete { key: "b".into() },
        ],
        failure: vec![],
    }));
    s.apply(WriteOp::LeaseRevoke { id: 3 });
    let (want, through) = drain(&live);
    assert_eq!(keys(&want), vec!["a", "l", "a", "b", "a", "t", "b", "l"]);
    let applied = s.kv.applied_index();
    let replay = s
        .hub
        .register(WatchFilter::Prefix(vec![]), 1, applied)
        .unwrap();
    let (got, replay_through) = drain(&replay);
    assert_eq!(got, want);
    assert_eq!(replay_through, through);
    // Eight events held (seven revisions changed something); each single-key change is charged its
    // command bytes (which hold its key and value).
    assert_eq!(s.hub.history().len(), 8);
    assert!(s.hub.history().bytes() >= want.iter().map(event_bytes).sum::<usize>());
}

/// Event throughput of the apply path (history + delivery), printed; run with
/// `cargo test --release --lib node::watch::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    for watchers in [0usize, 1, 100] {
        let mut s = Shard::new(History::new(0), QueueLimits::default());
        let subs: Vec<Subscription> = (0..watchers)
            .map(|_| {
                s.hub
                    .register(WatchFilter::Prefix(b"k".to_vec()), 0, 0)
                    .unwrap()
            })
            .collect();
        let n = 200_000u64;
        let value = "v".repeat(100);
        let t = std::time::Instant::now();
        for i in 0..n {
            s.put(&format!("k{}", i % 1000), &value);
            if i % 256 == 0 {
                subs.iter().for_each(|x| {
                    drain(x);
                });
            }
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "watchers={watchers}: {n} puts applied in {secs:.3}s = {:.0} puts/s ({:.0} events delivered/s)",
            n as f64 / secs,
            (n as f64 * watchers as f64) / secs
        );
    }
}
