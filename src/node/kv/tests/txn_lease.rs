//! Transactions (compare kinds, exactly-once, bounds) and leases (expiry through the log,
//! keep-alive races, puts with a TTL, the leader's expiry clock) in the state machine.

use super::*;

fn txn(compares: Vec<(&str, TxnCheck)>, success: Vec<TxnOp>, failure: Vec<TxnOp>) -> WriteOp {
    WriteOp::Txn(Txn {
        compares: compares
            .into_iter()
            .map(|(k, check)| TxnCompare {
                key: k.into(),
                check,
            })
            .collect(),
        success,
        failure,
    })
}

fn tput(k: &str, v: &str) -> TxnOp {
    TxnOp::Put {
        key: k.into(),
        value: v.into(),
    }
}

fn tget(k: &str) -> TxnOp {
    TxnOp::Get { key: k.into() }
}

#[test]
fn txn_compare_kinds_choose_the_branch_and_apply_it_whole() {
    let mut kv = KvStore::new();
    kv.apply(1, &put(0, 0, "a", "10"));
    kv.apply(2, &put(0, 0, "b", "5"));
    // Every compare kind holds: both puts and the delete apply at the txn's index.
    let t = txn(
        vec![
            ("a", TxnCheck::Value(Some(b"10".to_vec()))),
            ("b", TxnCheck::Version(2)),
            ("c", TxnCheck::Exists(false)),
            ("c", TxnCheck::Value(None)),
        ],
        vec![
            tput("a", "7"),
            tput("b", "8"),
            TxnOp::Delete { key: b"z".to_vec() },
            tget("a"),
        ],
        vec![tput("a", "never")],
    );
    let r = kv.apply(3, &cmd(0, 0, t)).unwrap();
    assert_eq!(
        r,
        ApplyResult::Txn {
            succeeded: true,
            version: 3,
            results: vec![
                TxnOpResult::Put { version: 3 },
                TxnOpResult::Put { version: 3 },
                TxnOpResult::Deleted { existed: false },
                TxnOpResult::Get(Some(WireVersioned {
                    value: b"7".to_vec(),
                    version: 3
                })),
            ]
        }
    );
    assert_eq!(kv.get(b"b").map(|v| v.value.clone()), Some(b"8".to_vec()));
    // One compare fails (version moved): nothing of the success branch applies, the failure
    // branch does.
    for failing in [
        ("a", TxnCheck::Value(Some(b"10".to_vec()))),
        ("b", TxnCheck::Version(2)),
        ("a", TxnCheck::Exists(false)),
        ("nope", TxnCheck::Exists(true)),
    ] {
        let before = kv.snapshot();
        let t = txn(
            vec![("a", TxnCheck::Exists(true)), failing],
            vec![tput("a", "X"), tput("b", "X")],
            vec![tget("b")],
        );
        let idx = kv.applied_index() + 1;
        let r = kv.apply(idx, &cmd(0, 0, t)).unwrap();
        assert!(
            matches!(&r, ApplyResult::Txn { succeeded: false, results, .. }
                if results == &[TxnOpResult::Get(Some(WireVersioned { value: b"8".to_vec(), version: 3 }))]),
            "{r:?}"
        );
        assert_eq!(kv.get(b"a").map(|v| v.value.clone()), Some(b"7".to_vec()));
        assert_eq!(kv.get(b"b").map(|v| v.value.clone()), Some(b"8".to_vec()));
        // Only the applied index moved.
        let mut after = KvStore::restore(&kv.snapshot()).unwrap();
        after.applied_index = KvStore::restore(&before).unwrap().applied_index;
        assert_eq!(after.snapshot(), before);
    }
}

#[test]
fn txn_is_exactly_once_and_a_retry_refills_or_omits_its_reads() {
    let mut kv = KvStore::new();
    kv.apply(1, &put(0, 0, "a", "1"));
    let t = txn(
        vec![("a", TxnCheck::Version(1))],
        vec![tget("a"), tput("b", "x")],
        vec![],
    );
    let first = kv.apply(2, &cmd(5, 1, t.clone())).unwrap();
    // The retry is answered from the session table, not applied again.
    let retry = kv.apply(3, &cmd(5, 1, t.clone())).unwrap();
    assert_eq!(retry, first);
    assert_eq!(kv.get(b"b").unwrap().version, 2);
    // Once the key read has been written since, the retry carries its version only.
    kv.apply(4, &put(0, 0, "a", "2"));
    let retry = kv.apply(5, &cmd(5, 1, t)).unwrap();
    assert!(
        matches!(&retry, ApplyResult::Txn { succeeded: true, results, .. }
            if results[0] == TxnOpResult::GetOmitted { version: 1 }),
        "{retry:?}"
    );
}

#[test]
fn txn_bounds_are_checked() {
    let many: Vec<TxnOp> = (0..=crate::node::limits::MAX_TXN_OPS)
        .map(|i| tput(&format!("k{i}"), "v"))
        .collect();
    let mut kv = KvStore::new();
    let r = kv.apply(1, &cmd(0, 0, txn(vec![], many, vec![]))).unwrap();
    assert!(matches!(r, ApplyResult::Rejected(m) if m.contains("at most")));
    let r = kv
        .apply(2, &cmd(0, 0, txn(vec![], vec![], vec![])))
        .unwrap();
    assert!(matches!(r, ApplyResult::Rejected(_)));
    assert!(kv.is_empty());
}

#[test]
fn leases_expire_only_through_the_log_and_a_keepalive_wins_the_race() {
    let mut kv = KvStore::new();
    let grant = WriteOp::LeaseGrant {
        id: 9,
        ttl_ms: 2_000,
    };
    assert_eq!(
        kv.apply(1, &cmd(0, 0, grant)),
        Some(ApplyResult::Lease {
            id: 9,
            ttl_ms: 2_000,
            keys: 0
        })
    );
    let attach = |k: &str| WriteOp::PutLease {
        key: k.into(),
        value: b"v".to_vec(),
        lease: 9,
        ttl_ms: 0,
    };
    kv.apply(2, &cmd(0, 0, attach("a")));
    kv.apply(3, &cmd(0, 0, attach("b")));
    kv.apply(4, &cmd(0, 0, attach("c")));
    // A plain put ends the key's lease: "c" survives the expiry.
    kv.apply(5, &put(0, 0, "c", "plain"));
    assert_eq!(kv.leases().get(9).unwrap().keys.len(), 2);
    // An expiry timed against an older refresh loses to the keep-alive that came first.
    kv.apply(6, &cmd(0, 0, WriteOp::LeaseKeepAlive { id: 9 }));
    assert_eq!(
        kv.apply(
            7,
            &cmd(
                0,
                0,
                WriteOp::LeaseExpire {
                    id: 9,
                    refreshed: 1
                }
            )
        ),
        Some(ApplyResult::Noop)
    );
    assert!(kv.get(b"a").is_some());
    // Snapshot round trip keeps leases and their keys.
    let back = KvStore::restore(&kv.snapshot()).unwrap();
    assert_eq!(back.snapshot(), kv.snapshot());
    assert_eq!(&kv.snapshot_shared()[..], &kv.snapshot()[..]);
    assert_eq!(back.leases(), kv.leases());
    assert_eq!(back.leases().lease_of(b"a"), Some(9));
    // The expiry of the current refresh deletes the lease and its keys on every replica.
    for store in [&mut kv, &mut { back }] {
        assert_eq!(
            store.apply(
                8,
                &cmd(
                    0,
                    0,
                    WriteOp::LeaseExpire {
                        id: 9,
                        refreshed: 6
                    }
                )
            ),
            Some(ApplyResult::Lease {
                id: 9,
                ttl_ms: 2_000,
                keys: 2
            })
        );
        assert!(store.get(b"a").is_none() && store.get(b"b").is_none());
        assert_eq!(
            store.get(b"c").map(|v| v.value.clone()),
            Some(b"plain".to_vec())
        );
        assert!(store.leases().is_empty());
    }
    // Gone: keep-alive, attach and revoke are refused.
    for op in [
        WriteOp::LeaseKeepAlive { id: 9 },
        attach("d"),
        WriteOp::LeaseRevoke { id: 9 },
    ] {
        let i = kv.applied_index() + 1;
        assert!(
            matches!(kv.apply(i, &cmd(0, 0, op)), Some(ApplyResult::Rejected(m)) if m.contains("not found"))
        );
    }
    assert!(kv.get(b"d").is_none());
}

#[test]
fn put_with_ttl_grants_and_attaches_atomically_and_revoke_deletes() {
    let mut kv = KvStore::new();
    let put_ttl = |k: &str, lease: u64, ttl_ms: u64| WriteOp::PutLease {
        key: k.into(),
        value: b"v".to_vec(),
        lease,
        ttl_ms,
    };
    assert_eq!(
        kv.apply(1, &cmd(0, 0, put_ttl("a", 3, 5_000))),
        Some(ApplyResult::Put { version: 1 })
    );
    // A TTL below the minimum is refused and nothing is written.
    assert!(matches!(
        kv.apply(2, &cmd(0, 0, put_ttl("b", 4, 1))),
        Some(ApplyResult::Rejected(m)) if m.contains("ttl")
    ));
    assert!(kv.get(b"b").is_none() && kv.leases().get(4).is_none());
    // Granting an id that exists is refused.
    assert!(matches!(
        kv.apply(3, &cmd(0, 0, put_ttl("b", 3, 5_000))),
        Some(ApplyResult::Rejected(m)) if m.contains("exists")
    ));
    assert_eq!(
        kv.apply(4, &cmd(0, 0, WriteOp::LeaseRevoke { id: 3 })),
        Some(ApplyResult::Lease {
            id: 3,
            ttl_ms: 5_000,
            keys: 1
        })
    );
    assert!(kv.is_empty() && kv.leases().is_empty());
    // Deleting a leased key detaches it.
    kv.apply(5, &cmd(0, 0, put_ttl("c", 6, 5_000)));
    kv.apply(6, &cmd(0, 0, WriteOp::Delete { key: b"c".to_vec() }));
    assert_eq!(kv.leases().get(6).unwrap().keys.len(), 0);
    assert_eq!(kv.leases().lease_of(b"c"), None);
}

#[test]
fn leader_clock_proposes_expiries_only_after_the_ttl() {
    let mut kv = KvStore::new();
    kv.apply(
        1,
        &cmd(
            0,
            0,
            WriteOp::LeaseGrant {
                id: 2,
                ttl_ms: 1_000,
            },
        ),
    );
    let t0 = std::time::Instant::now();
    assert!(kv.due_lease_expiries(t0, 1).is_empty());
    let late = t0 + std::time::Duration::from_millis(1_000);
    assert_eq!(
        kv.due_lease_expiries(late, 1),
        [WriteOp::LeaseExpire {
            id: 2,
            refreshed: 1
        }]
    );
    // Not proposed again at once while that expiry travels through the log.
    assert!(kv.due_lease_expiries(late, 1).is_empty());
}
