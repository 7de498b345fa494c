//! Unit and property tests of the key-value state machine.

use proptest::prelude::*;

use super::session::Sessions;
use super::*;
use ringraft_net::message::{
    Txn, TxnCheck, TxnCompare, TxnOp, TxnOpResult, Versioned as WireVersioned,
};

fn put(c: u64, s: u64, k: &str, v: &str) -> Vec<u8> {
    Command {
        client_id: c,
        seq: s,
        op: WriteOp::Put {
            key: k.into(),
            value: v.into(),
        },
    }
    .encode()
}

fn cas_value(c: u64, s: u64, k: &str, expected: Option<&[u8]>, new: &str) -> Vec<u8> {
    Command {
        client_id: c,
        seq: s,
        op: WriteOp::CasValue {
            key: k.into(),
            expected: expected.map(<[u8]>::to_vec),
            new: new.into(),
        },
    }
    .encode()
}

fn small_sessions() -> KvStore {
    let mut kv = KvStore::new();
    kv.sessions = Sessions::with_bounds(4, usize::MAX, 16);
    kv
}

#[test]
fn put_get_delete_versions() {
    let mut kv = KvStore::new();
    assert_eq!(
        kv.apply(1, &put(0, 0, "a", "1")),
        Some(ApplyResult::Put { version: 1 })
    );
    kv.apply(2, &put(0, 0, "a", "2"));
    assert_eq!(
        kv.get(b"a"),
        Some(Versioned {
            value: b"2".to_vec(),
            version: 2
        })
    );
    let del = Command {
        client_id: 0,
        seq: 0,
        op: WriteOp::Delete { key: b"a".to_vec() },
    }
    .encode();
    assert_eq!(
        kv.apply(3, &del),
        Some(ApplyResult::Deleted {
            existed: true,
            version: 3
        })
    );
    assert_eq!(
        kv.apply(4, &del),
        Some(ApplyResult::Deleted {
            existed: false,
            version: 4
        })
    );
    assert!(kv.get(b"a").is_none());
    assert_eq!(kv.applied_index(), 4);
    // Replays are ignored.
    assert_eq!(kv.apply(2, &put(0, 0, "a", "x")), None);
    assert!(kv.get(b"a").is_none());
}

#[test]
fn cas_on_value_and_version() {
    let mut kv = KvStore::new();
    let r = kv.apply(1, &cas_value(0, 0, "k", None, "a")).unwrap();
    assert!(matches!(
        r,
        ApplyResult::Cas {
            swapped: true,
            version: 1,
            ..
        }
    ));
    let r = kv.apply(2, &cas_value(0, 0, "k", None, "b")).unwrap();
    assert_eq!(
        r,
        ApplyResult::Cas {
            swapped: false,
            version: 1,
            current: Some(b"a".to_vec())
        }
    );
    let r = kv.apply(3, &cas_value(0, 0, "k", Some(b"a"), "c")).unwrap();
    assert!(matches!(
        r,
        ApplyResult::Cas {
            swapped: true,
            version: 3,
            ..
        }
    ));
    let cas_ver = |v: u64, new: &str| {
        Command {
            client_id: 0,
            seq: 0,
            op: WriteOp::CasVersion {
                key: b"k".to_vec(),
                expected_version: v,
                new: new.into(),
            },
        }
        .encode()
    };
    let r = kv.apply(4, &cas_ver(1, "d")).unwrap();
    assert!(matches!(
        r,
        ApplyResult::Cas {
            swapped: false,
            version: 3,
            ..
        }
    ));
    let r = kv.apply(5, &cas_ver(3, "d")).unwrap();
    assert!(matches!(
        r,
        ApplyResult::Cas {
            swapped: true,
            version: 5,
            ..
        }
    ));
    assert_eq!(kv.get(b"k").unwrap().value, b"d");
    let r = kv.apply(6, &cas_ver(0, "e")).unwrap();
    assert!(matches!(r, ApplyResult::Cas { swapped: false, .. }));
}

#[test]
fn planted_fault_makes_cas_ignore_its_expected_value() {
    let mut kv = KvStore::new();
    kv.apply(1, &put(0, 0, "k", "a"));
    kv.plant_fault(PlantedFault::CasIgnoresExpected);
    let r = kv
        .apply(2, &cas_value(0, 0, "k", Some(b"zzz"), "b"))
        .unwrap();
    assert!(matches!(r, ApplyResult::Cas { swapped: true, .. }));
}

#[test]
fn scans() {
    let mut kv = KvStore::new();
    for (i, k) in ["a1", "a2", "b1", "a3", "c"].iter().enumerate() {
        kv.apply(i as u64 + 1, &put(0, 0, k, "v"));
    }
    let keys = |v: Vec<(Vec<u8>, Versioned)>| {
        v.into_iter()
            .map(|(k, _)| String::from_utf8(k).unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(kv.scan_prefix(b"a", 10)), ["a1", "a2", "a3"]);
    assert_eq!(keys(kv.scan_prefix(b"a", 2)), ["a1", "a2"]);
    assert_eq!(
        keys(kv.scan_range(b"a2", Some(b"c"), 10)),
        ["a2", "a3", "b1"]
    );
    assert_eq!(keys(kv.scan_range(b"b", None, 10)), ["b1", "c"]);
    assert!(kv.scan_range(b"c", Some(b"a"), 10).is_empty());
}

#[test]
fn exactly_once_and_bounded_sessions() {
    let mut kv = small_sessions();
    assert_eq!(
        kv.apply(1, &put(7, 1, "k", "v1")),
        Some(ApplyResult::Put { version: 1 })
    );
    kv.apply(2, &put(0, 0, "k", "other"));
    // A retry of (7, 1) returns the first result and does not overwrite.
    assert_eq!(
        kv.apply(3, &put(7, 1, "k", "v1")),
        Some(ApplyResult::Put { version: 1 })
    );
    assert_eq!(kv.get(b"k").unwrap().value, b"other");
    for s in 2..=6 {
        kv.apply(3 + s, &put(7, s, "k", "x"));
    }
    assert_eq!(kv.sessions().len(), 4);
    // seq 1 and 2 were evicted: a retry is refused, not applied twice.
    let before = kv.get(b"k");
    assert_eq!(
        kv.apply(20, &put(7, 2, "k", "again")),
        Some(ApplyResult::SessionExpired)
    );
    assert_eq!(kv.get(b"k"), before);
}

#[test]
fn evicting_a_clients_last_result_never_applies_its_retry_twice() {
    let mut kv = small_sessions();
    kv.apply(1, &put(7, 1, "k", "first"));
    // Other clients push client 7's only result out of the table.
    for i in 0..8u64 {
        kv.apply(2 + i, &put(100 + i, 1, "other", "x"));
    }
    kv.apply(20, &put(0, 0, "k", "later"));
    // A late retry of (7, 1) must not overwrite "later".
    assert_eq!(
        kv.apply(21, &put(7, 1, "k", "first")),
        Some(ApplyResult::SessionExpired)
    );
    assert_eq!(kv.get(b"k").unwrap().value, b"later");
    // The tombstone survives a snapshot.
    let mut back = KvStore::restore(&kv.snapshot()).unwrap();
    assert_eq!(
        back.apply(22, &put(7, 1, "k", "first")),
        Some(ApplyResult::SessionExpired)
    );
}

#[test]
fn failing_cas_does_not_pin_values_in_the_session_table() {
    let mut kv = KvStore::new();
    let big = "v".repeat(64 << 10);
    kv.apply(1, &put(0, 0, "k", &big));
    for seq in 1..=2_000u64 {
        let r = kv
            .apply(1 + seq, &cas_value(9, seq, "k", Some(b"no"), "x"))
            .unwrap();
        // The first answer carries the current value.
        assert!(
            matches!(&r, ApplyResult::Cas { swapped: false, current: Some(c), .. } if c.len() == big.len())
        );
    }
    // 2000 failures of a 64 KiB value would pin 128 MiB if values were kept.
    assert!(
        kv.sessions().bytes() <= 2_000 * crate::node::limits::SESSION_RESULT_BYTES,
        "{} bytes",
        kv.sessions().bytes()
    );
    // A retry still answers with the value while the key holds the version it saw.
    let r = kv
        .apply(5_000, &cas_value(9, 2_000, "k", Some(b"no"), "x"))
        .unwrap();
    assert!(matches!(&r, ApplyResult::Cas { current: Some(c), .. } if c.len() == big.len()));
}

#[test]
fn state_machine_limits_do_not_depend_on_node_config() {
    // A node configured with a tiny value limit refuses at admission, but applies the same
    // command from the log exactly as every other replica does.
    let cmd = Command {
        client_id: 0,
        seq: 0,
        op: WriteOp::Put {
            key: b"k".to_vec(),
            value: vec![1; 1000],
        },
    };
    assert!(cmd.check_sizes(64, 16).is_err());
    let mut kv = KvStore::new();
    assert_eq!(
        kv.apply(1, &cmd.encode()),
        Some(ApplyResult::Put { version: 1 })
    );
}

#[test]
fn invalid_commands_are_rejected_deterministically() {
    let mut kv = KvStore::new();
    assert!(matches!(
        kv.apply(1, &[9, 9]),
        Some(ApplyResult::Rejected(_))
    ));
    let long = "k".repeat(crate::node::limits::MAX_KEY_BYTES + 1);
    let r = kv.apply(2, &put(0, 0, &long, "v"));
    assert!(matches!(r, Some(ApplyResult::Rejected(m)) if m.contains("key")));
    assert!(kv.is_empty());
    assert_eq!(kv.applied_index(), 2);
    let mut enc = put(0, 0, "a", "b");
    enc.push(0);
    assert!(Command::decode(&enc).unwrap_err().0.contains("trailing"));
    assert!(Command::decode(&enc[..5])
        .unwrap_err()
        .0
        .contains("truncated"));
}

#[test]
fn corrupt_snapshot_is_refused() {
    let mut kv = KvStore::new();
    kv.apply(1, &put(1, 1, "a", "b"));
    let mut snap = kv.snapshot();
    snap[10] ^= 1;
    assert!(KvStore::restore(&snap).unwrap_err().0.contains("crc"));
    assert!(KvStore::restore(&snap[..8]).is_err());
}

fn arb_op() -> impl Strategy<Value = WriteOp> {
    let key = prop::collection::vec(b'a'..=b'd', 1..3);
    let val = prop::collection::vec(any::<u8>(), 0..4);
    prop_oneof![
        (key.clone(), val.clone()).prop_map(|(key, value)| WriteOp::Put { key, value }),
        key.clone().prop_map(|key| WriteOp::Delete { key }),
        (key.clone(), prop::option::of(val.clone()), val.clone())
            .prop_map(|(key, expected, new)| WriteOp::CasValue { key, expected, new }),
        (key.clone(), 0u64..20, val.clone()).prop_map(|(key, expected_version, new)| {
            WriteOp::CasVersion {
                key,
                expected_version,
                new,
            }
        }),
        Just(WriteOp::Noop),
        arb_txn(key, val),
    ]
}

/// Transactions over the same few keys, with every compare and op kind, at least one op.
fn arb_txn(
    key: impl Strategy<Value = Vec<u8>> + Clone + 'static,
    val: impl Strategy<Value = Vec<u8>> + Clone + 'static,
) -> impl Strategy<Value = WriteOp> {
    let check = prop_oneof![
        prop::option::of(val.clone()).prop_map(TxnCheck::Value),
        (0u64..20).prop_map(TxnCheck::Version),
        any::<bool>().prop_map(TxnCheck::Exists),
    ];
    let cmp = (key.clone(), check).prop_map(|(key, check)| TxnCompare { key, check });
    let op = prop_oneof![
        (key.clone(), val).prop_map(|(key, value)| TxnOp::Put { key, value }),
        key.clone().prop_map(|key| TxnOp::Delete { key }),
        key.prop_map(|key| TxnOp::Get { key }),
    ];
    (
        prop::collection::vec(cmp, 0..3),
        prop::collection::vec(op.clone(), 1..4),
        prop::collection::vec(op, 0..3),
    )
        .prop_map(|(compares, success, failure)| {
            WriteOp::Txn(Txn {
                compares,
                success,
                failure,
            })
        })
}

fn with_store(kv: KvStore) -> KvStore {
    let mut s = small_sessions();
    s.data = kv.data;
    s
}

proptest! {
    #[test]
    fn matches_a_simple_model(ops in prop::collection::vec((arb_op(), 0u64..3, 0u64..6), 1..80)) {
        let mut kv = KvStore::new();
        let mut model: std::collections::HashMap<Vec<u8>, (Vec<u8>, u64)> = Default::default();
        let mut seen: std::collections::HashMap<(u64, u64), ApplyResult> = Default::default();
        for (i, (op, client, seq)) in ops.into_iter().enumerate() {
            let index = i as u64 + 1;
            let cmd = Command { client_id: client, seq, op: op.clone() };
            let got = kv.apply(index, &cmd.encode()).unwrap();
            if client != 0 {
                if let Some(first) = seen.get(&(client, seq)) {
                    prop_assert_eq!(got.recorded(), first.recorded());
                    continue;
                }
            }
            let want = match op {
                WriteOp::Put { key, value } => { model.insert(key, (value, index)); ApplyResult::Put { version: index } }
                WriteOp::Delete { key } => ApplyResult::Deleted { existed: model.remove(&key).is_some(), version: index },
                WriteOp::CasValue { key, expected, new } => {
                    let cur = model.get(&key).cloned();
                    if cur.as_ref().map(|c| &c.0) == expected.as_ref() {
                        model.insert(key, (new, index));
                        ApplyResult::Cas { swapped: true, version: index, current: None }
                    } else {
                        ApplyResult::Cas { swapped: false, version: cur.as_ref().map_or(0, |c| c.1), current: cur.map(|c| c.0) }
                    }
                }
                WriteOp::CasVersion { key, expected_version, new } => {
                    let cur = model.get(&key).cloned();
                    if cur.as_ref().map_or(0, |c| c.1) == expected_version {
                        model.insert(key, (new, index));
                        ApplyResult::Cas { swapped: true, version: index, current: None }
                    } else {
                        ApplyResult::Cas { swapped: false, version: cur.as_ref().map_or(0, |c| c.1), current: cur.map(|c| c.0) }
                    }
                }
                WriteOp::Noop => ApplyResult::Noop,
                WriteOp::Txn(t) => {
                    let holds = |c: &TxnCompare, m: &std::collections::HashMap<Vec<u8>, (Vec<u8>, u64)>| {
                        let cur = m.get(&c.key);
                        match &c.check {
                            TxnCheck::Value(v) => cur.map(|c| &c.0) == v.as_ref(),
                            TxnCheck::Version(v) => cur.map_or(0, |c| c.1) == *v,
                            TxnCheck::Exists(e) => cur.is_some() == *e,
                        }
                    };
                    let succeeded = t.compares.iter().all(|c| holds(c, &model));
                    let ops = if succeeded { t.success } else { t.failure };
                    let results = ops.into_iter().map(|op| match op {
                        TxnOp::Put { key, value } => { model.insert(key, (value, index)); TxnOpResult::Put { version: index } }
                        TxnOp::Delete { key } => TxnOpResult::Deleted { existed: model.remove(&key).is_some() },
                        TxnOp::Get { key } => TxnOpResult::Get(model.get(&key).map(|(v, ver)| WireVersioned { value: v.clone(), version: *ver })),
                    }).collect();
                    ApplyResult::Txn { succeeded, results, version: index }
                }
                other => unreachable!("{other:?} is not generated"),
            };
            prop_assert_eq!(&got, &want);
            if client != 0 { seen.insert((client, seq), want); }
        }
        prop_assert_eq!(kv.len(), model.len());
        for (k, (v, ver)) in &model {
            let got = kv.get(k).unwrap();
            prop_assert_eq!(&got.value, v);
            prop_assert_eq!(got.version, *ver);
        }
    }

    #[test]
    fn snapshot_round_trip_and_determinism(ops in prop::collection::vec((arb_op(), 0u64..3, 0u64..10), 0..60)) {
        let mut a = with_store(KvStore::new());
        let mut b = with_store(KvStore::new());
        for (i, (op, client, seq)) in ops.iter().enumerate() {
            let enc = Command { client_id: *client, seq: *seq, op: op.clone() }.encode();
            let ra = a.apply(i as u64 + 1, &enc);
            let rb = b.apply(i as u64 + 1, &enc);
            prop_assert_eq!(ra, rb);
        }
        let snap = a.snapshot();
        prop_assert_eq!(&snap, &b.snapshot());
        prop_assert_eq!(&a.snapshot_shared()[..], &snap[..]);
        let restored = KvStore::restore(&snap).unwrap();
        prop_assert_eq!(&restored.snapshot(), &snap);
        prop_assert_eq!(restored.applied_index(), a.applied_index());
        // The restored store keeps behaving identically, sessions included (the restored
        // table has the production bounds, which these few ops never reach).
        let mut a2 = a.clone();
        a2.sessions = Sessions::decode(&mut super::command::Reader::new(&{
            let mut b = Vec::new();
            a.sessions.encode(&mut b);
            b
        })).unwrap();
        let mut r2 = restored;
        for (i, (op, client, seq)) in ops.iter().enumerate() {
            let enc = Command { client_id: *client, seq: *seq, op: op.clone() }.encode();
            let idx = 1000 + i as u64;
            prop_assert_eq!(a2.apply(idx, &enc), r2.apply(idx, &enc));
        }
    }

    #[test]
    fn restore_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..96)) {
        let _ = KvStore::restore(&bytes);
    }
}

fn cmd(c: u64, s: u64, op: WriteOp) -> Vec<u8> {
    Command {
        client_id: c,
        seq: s,
        op,
    }
    .encode()
}

mod txn_lease;

/// Taking a snapshot is a clone of the store: the clone stays exactly the state at its index
/// (data, sessions, leases) while the original keeps applying, and a replica restored from the
/// clone's bytes that applies the same later entries ends byte-identical to the original.
#[test]
fn a_clone_is_a_frozen_snapshot_and_replicas_agree_after_it() {
    let lease = |id, ttl_ms| {
        cmd(
            0,
            0,
            WriteOp::LeaseGrant {
                id,
                ttl_ms: ttl_ms as u64,
            },
        )
    };
    let put_lease = |k: &str, id| {
        cmd(
            0,
            0,
            WriteOp::PutLease {
                key: k.into(),
                value: b"l".to_vec(),
                lease: id,
                ttl_ms: 0,
            },
        )
    };
    // Before the snapshot: many clients (some evicted from the small session table), keys,
    // a lease with keys.
    let mut before = vec![lease(7, 60_000), put_lease("leased", 7)];
    for c in 1..=12u64 {
        for s in 1..=3 {
            before.push(put(c, s, &format!("k{c:02}{s}"), "v1"));
        }
    }
    // After it: overwrites of the same keys, deletes, new clients, the lease revoked.
    let mut after = vec![cmd(0, 0, WriteOp::LeaseRevoke { id: 7 })];
    // New clients first, then two whose earlier results were evicted: at the end they hold
    // results and eviction marks.
    for c in (13..=20u64).chain(5..=6) {
        after.push(put(c, 9, &format!("k{:02}1", c % 13), "v2"));
        after.push(cmd(
            c,
            10,
            WriteOp::Delete {
                key: format!("k{:02}2", c % 13).into_bytes(),
            },
        ));
    }
    let mut kv = small_sessions();
    for (i, c) in before.iter().enumerate() {
        kv.apply(i as u64 + 1, c);
    }
    let at_take = kv.snapshot();
    let frozen = kv.clone();
    let base = before.len() as u64;
    for (i, c) in after.iter().enumerate() {
        kv.apply(base + i as u64 + 1, c);
    }
    assert!(
        frozen.snapshot() == at_take,
        "the clone moved with the store"
    );
    assert_eq!(frozen.applied_index(), base);
    assert!(frozen.get(b"leased").is_some() && kv.get(b"leased").is_none());
    assert!(kv.snapshot() != at_take);
    // A replica catching up from the snapshot (its own tables, built afresh).
    let mut replica = KvStore::restore(&at_take).unwrap();
    replica.sessions.set_bounds_for_tests(4, usize::MAX, 16);
    for (i, c) in after.iter().enumerate() {
        replica.apply(base + i as u64 + 1, c);
    }
    assert!(replica.snapshot() == kv.snapshot(), "replicas diverged");
}

#[test]
fn a_put_overwrites_in_place_only_what_nothing_shares() {
    let v = |b: u8, n: usize| String::from_utf8(vec![b; n]).unwrap();
    let mut kv = KvStore::new();
    kv.apply(1, &put(0, 0, "k", &v(b'a', 300)));
    let buf = kv.get_stored(b"k").unwrap().as_ptr();
    // Unshared, same length: the same allocation holds the new value and version.
    kv.apply(2, &put(0, 0, "k", &v(b'b', 300)));
    assert_eq!(kv.get_stored(b"k").unwrap().as_ptr(), buf);
    assert_eq!(
        kv.get(b"k").unwrap(),
        Versioned {
            value: v(b'b', 300).into_bytes(),
            version: 2
        }
    );
    // Shared with a frozen clone: the clone keeps its value, twice over.
    let frozen = kv.clone();
    kv.apply(3, &put(0, 0, "k", &v(b'c', 300)));
    assert_ne!(kv.get_stored(b"k").unwrap().as_ptr(), buf);
    kv.apply(4, &put(0, 0, "k", &v(b'd', 300)));
    assert_eq!(frozen.get(b"k").unwrap().value, v(b'b', 300).into_bytes());
    assert_eq!(frozen.get(b"k").unwrap().version, 2);
    assert_eq!(kv.get(b"k").unwrap().value, v(b'd', 300).into_bytes());
    assert_eq!(kv.get(b"k").unwrap().version, 4);
    // Another length gets an allocation of its own size.
    kv.apply(5, &put(0, 0, "k", &v(b'e', 10)));
    assert_eq!(
        kv.get(b"k").unwrap(),
        Versioned {
            value: v(b'e', 10).into_bytes(),
            version: 5
        }
    );
    kv.apply(6, &put(0, 0, "k", &v(b'f', 400)));
    assert_eq!(
        kv.get(b"k").unwrap(),
        Versioned {
            value: v(b'f', 400).into_bytes(),
            version: 6
        }
    );
}
