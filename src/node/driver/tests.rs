//! The driver's own checks, run on the simulator's cluster (which runs this driver).

use crate::raft::{Envelope, Membership, Message, MessageBody, Snapshot, SnapshotMeta};
use crate::sim::cluster::{Cluster, Knobs};

use super::Storage;

/// A three-node cluster (manual network, writes durable at once) with node 1 leading and
/// `n` puts applied everywhere.
fn cluster_with_entries(n: u64) -> Cluster {
    let mut c = Cluster::new(Knobs::new(3, 1), 1, true).unwrap();
    c.raft_mut(1, 1).unwrap().campaign();
    c.process(1).unwrap();
    stabilize(&mut c);
    assert_eq!(c.leader_of(1), Some(1));
    for k in 0..n {
        let cmd = crate::node::kv::Command {
            client_id: 0,
            seq: 0,
            op: crate::node::kv::WriteOp::Put {
                key: vec![k as u8],
                value: vec![7; 8],
            },
        };
        let _ = c.propose(1, 1, cmd.encode()).unwrap().unwrap();
        stabilize(&mut c);
    }
    c
}

fn stabilize(c: &mut Cluster) {
    for _ in 0..1_000 {
        let Some(env) = c.outbox.pop_front() else {
            return;
        };
        c.deliver(env).unwrap();
    }
    panic!("the cluster did not go quiet");
}

#[test]
fn a_snapshot_whose_state_does_not_decode_is_refused_before_the_log_is_touched() {
    let mut c = cluster_with_entries(5);
    let (last_before, durable_before) = {
        let s = &c.nodes[&3].storage;
        (s.last_index(1), s.durable[&1].entries.len())
    };
    assert!(last_before >= 6, "node 3 holds the leader's entries");
    let term = c.raft(1, 1).unwrap().term();
    // The leader (node 1, current term) sends a snapshot past node 3's log whose state-machine
    // bytes are garbage.
    let snap = Snapshot {
        meta: SnapshotMeta {
            index: last_before + 10,
            term,
            membership: Membership::with_voters([1, 2, 3]),
        },
        data: std::sync::Arc::from(&b"not a key-value snapshot"[..]),
    };
    let env = Envelope {
        from: 1,
        to: 3,
        messages: vec![(
            1,
            Message {
                from: 1,
                to: 3,
                term,
                body: MessageBody::InstallSnapshot { snapshot: snap },
            },
        )],
        heartbeats: Vec::new(),
        heartbeat_responses: Vec::new(),
    };
    let err = c.deliver(env).unwrap_err();
    assert!(err.0.contains("snapshot from the leader refused"), "{err}");
    // Nothing of node 3's log was truncated, purged or replaced, durable or not.
    let s = &c.nodes[&3].storage;
    assert_eq!(s.last_index(1), last_before);
    assert!(s.pending.is_empty(), "{:?}", s.pending);
    assert_eq!(s.durable[&1].entries.len(), durable_before);
    assert_eq!(s.durable[&1].snapshot.meta.index, 0);
}

#[test]
fn writes_are_answered_with_their_result_once_applied() {
    let mut c = cluster_with_entries(1);
    let cmd = crate::node::kv::Command {
        client_id: 9,
        seq: 1,
        op: crate::node::kv::WriteOp::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        },
    };
    let (_, mut answer) = c.propose(1, 1, cmd.encode()).unwrap().unwrap();
    assert!(
        matches!(answer.try_recv(), Ok(None)),
        "answered before it committed"
    );
    stabilize(&mut c);
    let got = answer.try_recv().unwrap().unwrap();
    assert!(
        matches!(
            got,
            Ok(crate::node::request::ClientReply::Applied(
                crate::node::kv::ApplyResult::Put { .. }
            ))
        ),
        "{got:?}"
    );
    // A write proposed on a follower is refused with "not leader".
    assert!(c.propose(2, 1, cmd.encode()).unwrap().is_err());
}

/// Every write of a three-node cluster passes the leader's stages once (its local durability
/// either timed or counted as answered first), and the followers time their appends from the
/// round to durability and from durability to the acknowledgement.
#[test]
fn the_driver_times_leader_and_follower_stages() {
    let c = cluster_with_entries(3);
    let l = &c.metrics(1).unwrap().stages;
    // Received → proposed is the node's own (its requests reach the driver proposed).
    for (name, h) in [
        ("proposed_to_committed", &l.proposed_to_committed),
        ("committed_to_applied", &l.committed_to_applied),
        ("applied_to_answered", &l.applied_to_answered),
        ("received_to_answered", &l.received_to_answered),
    ] {
        assert_eq!(h.count(), 3, "{name}");
    }
    assert_eq!(
        l.proposed_to_local_durable.count() + l.commit_before_local_durable.get(),
        3
    );
    assert_eq!(l.append_received_to_durable.count(), 0);
    for f in [2, 3] {
        let s = &c.metrics(f).unwrap().stages;
        assert!(s.append_received_to_durable.count() >= 3, "node {f}");
        assert!(s.append_durable_to_acked.count() >= 3, "node {f}");
        assert_eq!(s.received_to_answered.count(), 0, "node {f}");
    }
}

/// One node of one voter over the simulator's storage, driven step by step.
struct Solo {
    multi: crate::raft::MultiRaft,
    shards: std::collections::BTreeMap<u64, super::Shard>,
    reads: std::collections::HashMap<u64, super::PendingRead>,
    metrics: crate::node::metrics::CoreMetrics,
    storage: crate::sim::storage::NodeStorage,
}

impl Solo {
    fn new() -> Solo {
        let mut multi = crate::raft::MultiRaft::new(1);
        let raft =
            crate::raft::Raft::new(crate::raft::Config::new(1), Membership::with_voters([1]))
                .unwrap();
        multi.add_group(1, raft).unwrap();
        let mut s = Solo {
            multi,
            shards: [(1, super::Shard::new(crate::node::kv::KvStore::new()))].into(),
            reads: Default::default(),
            metrics: Default::default(),
            storage: Default::default(),
        };
        s.multi.group_mut(1).unwrap().campaign();
        while s.full_round() {}
        s
    }

    fn d(&mut self) -> super::Driver<'_> {
        super::Driver::new(
            &mut self.multi,
            &mut self.shards,
            &mut self.reads,
            &self.metrics,
        )
    }

    /// One whole round, made durable at once; false when there was nothing to do.
    fn full_round(&mut self) -> bool {
        let mut net: Vec<Envelope> = Vec::new();
        let mut d = super::Driver::new(
            &mut self.multi,
            &mut self.shards,
            &mut self.reads,
            &self.metrics,
        );
        let Some(mut round) = d.begin(None, &mut net).unwrap() else {
            return false;
        };
        let batch = d.persist(&mut round, &mut self.storage).unwrap();
        while self.storage.fsync_one() {}
        assert!(d.on_durable(batch, &mut net).refused.is_none());
        d.apply(&mut round, &mut net).unwrap();
        true
    }

    fn propose(&mut self, k: u8) -> (u64, super::ReplyReceiver) {
        let cmd = crate::node::kv::Command {
            client_id: 0,
            seq: 0,
            op: crate::node::kv::WriteOp::Put {
                key: vec![k],
                value: vec![k; 4],
            },
        };
        let (tx, rx) = super::reply_channel();
        let i = self.d().propose(1, cmd.encode_shared(), tx).unwrap();
        (i, rx)
    }
}

/// Committed entries are applied, and the writes they decide answered, as the round begins:
/// before the round's own new entries reach the storage, which they do not wait for.
#[test]
fn committed_writes_are_answered_before_the_round_persists() {
    let mut s = Solo::new();
    assert_eq!(s.multi.group(1).unwrap().role(), crate::raft::Role::Leader);
    // The first write's entry is persisted and made durable; the lone voter then commits it.
    let (i1, mut a1) = s.propose(1);
    assert!(s.full_round());
    assert!(matches!(a1.try_recv(), Ok(None)), "answered before commit");
    assert_eq!(s.multi.group(1).unwrap().log().committed(), i1);
    // The next round carries the first write committed and a second write's entry to persist.
    let (i2, mut a2) = s.propose(2);
    let mut net: Vec<Envelope> = Vec::new();
    let mut d = s.d();
    let mut round = d.begin(None, &mut net).unwrap().unwrap();
    let got = a1.try_recv().unwrap().unwrap();
    assert!(
        matches!(got, Ok(crate::node::request::ClientReply::Applied(_))),
        "{got:?}"
    );
    assert_eq!(s.shards[&1].kv.applied_index(), i1);
    assert!(s.storage.last_index(1) < i2, "not yet persisted");
    assert!(matches!(a2.try_recv(), Ok(None)));
    assert_eq!(round.stats().applied, 1);
    // The rest of the round applies nothing twice; the second write is answered later.
    let mut d = super::Driver::new(&mut s.multi, &mut s.shards, &mut s.reads, &s.metrics);
    let batch = d.persist(&mut round, &mut s.storage).unwrap();
    while s.storage.fsync_one() {}
    assert!(d.on_durable(batch, &mut net).refused.is_none());
    d.apply(&mut round, &mut net).unwrap();
    assert_eq!(round.stats().applied, 1);
    assert_eq!(round.committed().count(), 1);
    while s.full_round() {}
    assert!(matches!(
        a2.try_recv(),
        Ok(Some(Ok(crate::node::request::ClientReply::Applied(_))))
    ));
    assert_eq!(s.shards[&1].kv.applied_index(), i2);
}

/// A round that only moves the commit index writes its hard state but waits for no sync: its
/// batch's ticket is already durable, so its acknowledgements and marks go out at once. A
/// round with an entry, or a new term, waits for its own records. Over the node's real WAL.
#[test]
fn a_round_that_only_moves_the_commit_index_waits_for_no_sync() {
    use crate::node::storage::WalStorage;
    let dir = std::env::temp_dir().join(format!("ringraft-driver-commit-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut wal = ringraft_wal::Wal::open(&dir, ringraft_wal::WalOptions::default()).unwrap();
    let mut multi = crate::raft::MultiRaft::new(1);
    let raft =
        crate::raft::Raft::new(crate::raft::Config::new(1), Membership::with_voters([1])).unwrap();
    multi.add_group(1, raft).unwrap();
    let mut shards: std::collections::BTreeMap<u64, super::Shard> =
        [(1, super::Shard::new(crate::node::kv::KvStore::new()))].into();
    let mut reads = std::collections::HashMap::new();
    let metrics = crate::node::metrics::CoreMetrics::default();
    type Shards = std::collections::BTreeMap<u64, super::Shard>;
    type Reads = std::collections::HashMap<u64, super::PendingRead>;
    // One round over the WAL: (its batch's ticket, the WAL's last lsn, the durable lsn then);
    // then everything is made durable and reported.
    fn wal_round(
        multi: &mut crate::raft::MultiRaft,
        shards: &mut Shards,
        reads: &mut Reads,
        metrics: &crate::node::metrics::CoreMetrics,
        wal: &mut ringraft_wal::Wal,
    ) -> Option<(u64, u64, u64)> {
        let mut net: Vec<Envelope> = Vec::new();
        let mut d = super::Driver::new(multi, shards, reads, metrics);
        let mut r = d.begin(None, &mut net).unwrap()?;
        let batch = d.persist(&mut r, &mut WalStorage::new(wal)).unwrap();
        let seen = (batch.ticket(), wal.last_lsn(), wal.durable_lsn());
        wal.sync().unwrap();
        assert!(d.on_durable(batch, &mut net).refused.is_none());
        d.apply(&mut r, &mut net).unwrap();
        Some(seen)
    }
    let round =
        |multi: &mut crate::raft::MultiRaft,
         shards: &mut Shards,
         reads: &mut Reads,
         wal: &mut ringraft_wal::Wal| { wal_round(multi, shards, reads, &metrics, wal) };
    // The election: a new term and vote, never deferred.
    multi.group_mut(1).unwrap().campaign();
    let (ticket, last, durable) = round(&mut multi, &mut shards, &mut reads, &mut wal).unwrap();
    assert_eq!(ticket, last, "a new term waits for its own record");
    assert!(ticket > durable);
    while round(&mut multi, &mut shards, &mut reads, &mut wal).is_some() {}
    assert_eq!(multi.group(1).unwrap().role(), crate::raft::Role::Leader);
    // A write: its entry's round waits for the entry; the commit that follows does not wait.
    let cmd = crate::node::kv::Command {
        client_id: 0,
        seq: 0,
        op: crate::node::kv::WriteOp::Put {
            key: vec![1],
            value: vec![1; 4],
        },
    };
    let (tx, mut rx) = super::reply_channel();
    let i = super::Driver::new(&mut multi, &mut shards, &mut reads, &metrics)
        .propose(1, cmd.encode_shared(), tx)
        .unwrap();
    let (ticket, last, durable) = round(&mut multi, &mut shards, &mut reads, &mut wal).unwrap();
    assert!(ticket > durable, "an entry's round waits for it");
    assert!(last >= ticket);
    assert_eq!(multi.group(1).unwrap().log().committed(), i);
    let (ticket, last, durable) = round(&mut multi, &mut shards, &mut reads, &mut wal).unwrap();
    assert!(last > ticket, "the commit's hard state was written");
    assert!(ticket <= durable, "a commit-only round waited for a sync");
    assert_eq!(wal.hard_state(1).map(|h| h.commit), Some(i));
    assert!(matches!(rx.try_recv(), Ok(Some(Ok(_)))));
    drop(wal);
    let _ = std::fs::remove_dir_all(&dir);
}

fn append(to: u64, entries: Vec<crate::raft::Entry>) -> Message {
    Message {
        from: 1,
        to,
        term: 2,
        body: MessageBody::Append {
            prev_index: 5,
            prev_term: 2,
            entries,
            commit: 5,
        },
    }
}

/// A round that answers writes sends its commit updates (Appends without entries) once it is
/// durable, merged into the durable-after envelopes in destination order; Appends with
/// entries, heartbeats and other messages still go at once, and an envelope left with
/// nothing is dropped.
#[test]
fn commit_updates_wait_for_the_round_when_it_answers_writes() {
    let entry = crate::raft::Entry {
        index: 6,
        term: 2,
        kind: crate::raft::EntryKind::Normal,
        data: std::sync::Arc::from(&b"x"[..]),
    };
    let env = |to: u64, messages: Vec<(u64, Message)>| Envelope {
        from: 1,
        to,
        messages,
        heartbeats: Vec::new(),
        heartbeat_responses: Vec::new(),
    };
    let mut now = vec![
        env(2, vec![(0, append(2, vec![])), (1, append(2, vec![entry]))]),
        env(3, vec![(0, append(3, vec![]))]),
    ];
    now[1].heartbeats.push(crate::raft::multi::GroupHeartbeat {
        group: 4,
        term: 2,
        commit: 5,
        round: 1,
    });
    let mut after = vec![env(3, vec![(7, append(3, vec![]))])];
    super::round::defer_commit_updates(&mut now, &mut after);
    assert_eq!(now.len(), 2);
    assert_eq!(now[0].to, 2);
    assert_eq!(now[0].messages.len(), 1);
    assert_eq!(now[0].messages[0].0, 1);
    assert!(now[1].messages.is_empty());
    assert_eq!(now[1].heartbeats.len(), 1);
    let to: Vec<u64> = after.iter().map(|e| e.to).collect();
    assert_eq!(to, [2, 3]);
    assert_eq!(after[0].messages.len(), 1);
    assert_eq!(after[0].messages[0].0, 0);
    let groups: Vec<u64> = after[1].messages.iter().map(|(g, _)| *g).collect();
    assert_eq!(groups, [7, 0]);
    // With nothing else in an envelope, the envelope goes.
    let mut now = vec![env(2, vec![(0, append(2, vec![]))])];
    let mut after = Vec::new();
    super::round::defer_commit_updates(&mut now, &mut after);
    assert!(now.is_empty());
    assert_eq!(after.len(), 1);
}

/// A round begun with `begin_deferred` leaves a received snapshot's store to the caller:
/// `persist` refuses to install the snapshot until the decoded store is handed back (the shard
/// keeps serving its old store meanwhile), then swaps it in and hands over the old store and
/// the received bytes to be freed elsewhere.
#[test]
fn a_deferred_snapshot_is_installed_only_with_its_decoded_store() {
    let mut multi = crate::raft::MultiRaft::new(1);
    let raft = crate::raft::Raft::new(crate::raft::Config::new(1), Membership::with_voters([1, 2]))
        .unwrap();
    multi.add_group(1, raft).unwrap();
    let mut shards: std::collections::BTreeMap<_, _> =
        [(1, super::Shard::new(crate::node::kv::KvStore::new()))].into();
    let mut reads = Default::default();
    let metrics = Default::default();
    let mut storage = crate::sim::storage::NodeStorage::default();
    // The leader's state: three keys applied up to index 40.
    let mut leader_kv = crate::node::kv::KvStore::new();
    for k in 0..3u8 {
        let cmd = crate::node::kv::Command {
            client_id: 0,
            seq: 0,
            op: crate::node::kv::WriteOp::Put {
                key: vec![k],
                value: vec![k; 4],
            },
        };
        leader_kv.apply(38 + k as u64, &cmd.encode());
    }
    let bytes = leader_kv.snapshot();
    let snap = Snapshot {
        meta: SnapshotMeta {
            index: 40,
            term: 1,
            membership: Membership::with_voters([1, 2]),
        },
        data: std::sync::Arc::from(&bytes[..]),
    };
    multi
        .step(Envelope {
            from: 2,
            to: 1,
            messages: vec![(
                1,
                Message {
                    from: 2,
                    to: 1,
                    term: 1,
                    body: MessageBody::InstallSnapshot { snapshot: snap },
                },
            )],
            heartbeats: Vec::new(),
            heartbeat_responses: Vec::new(),
        })
        .unwrap();
    let mut d = super::Driver::new(&mut multi, &mut shards, &mut reads, &metrics);
    let mut net: Vec<Envelope> = Vec::new();
    let mut round = d.begin_deferred(None, &mut net).unwrap().unwrap();
    let todo = round.to_restore();
    assert_eq!(todo.len(), 1);
    assert_eq!(&todo[0].1[..], &bytes[..]);
    // Not decoded yet: refused, nothing installed, the old store still serves.
    let err = d.persist(&mut round, &mut storage).unwrap_err();
    assert!(
        err.to_string().contains("without its decoded store"),
        "{err}"
    );
    assert!(storage.pending.is_empty(), "{:?}", storage.pending);
    assert_eq!(shards[&1].kv.applied_index(), 0);
    let mut d = super::Driver::new(&mut multi, &mut shards, &mut reads, &metrics);
    let kv = super::restore_store(&todo[0].1, Default::default()).unwrap();
    round.set_restored(1, kv);
    d.persist(&mut round, &mut storage).unwrap();
    assert_eq!(shards[&1].kv.applied_index(), 40);
    assert_eq!(shards[&1].kv.snapshot(), bytes);
    let freed = round.take_freed();
    assert_eq!(freed.stores.len(), 1);
    assert_eq!(freed.stores[0].applied_index(), 0);
    assert_eq!(freed.bytes.len(), 1);
    assert_eq!(&freed.bytes[0][..], &bytes[..]);
}
