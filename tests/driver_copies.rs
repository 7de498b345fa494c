//! Counts the copies of a put's value on the leader's write path, from admission to the WAL
//! append, through the node's real driver ([`ringraft::node::driver`]) and the real WAL: a
//! counting allocator records every allocation on this thread at least as large as the value
//! while one put is admitted, encoded, proposed and persisted, the way the node's core does it
//! (`Command::encode_shared`, then `Driver::propose_write`). The figure is documented in the
//! driver's module docs; a change to the path that adds or removes a copy changes it. The
//! entry the Raft log holds and hands to the storage is checked to be the very buffer the
//! command was encoded into (no copy without an allocation either).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use ringraft::node::driver::{Driver, Shard};
use ringraft::node::kv::{Command, KvStore, WriteOp};
use ringraft::node::limits::Admission;
use ringraft::node::metrics::CoreMetrics;
use ringraft::node::storage::WalStorage;
use ringraft::raft::{Config, Envelope, Membership, MultiRaft, Raft, Role};

/// Value size: far above anything else the path allocates per put.
const VALUE_BYTES: usize = 256 * 1024;

struct Counting;

static BIG_ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note(size: usize) {
    if size >= VALUE_BYTES && COUNTING.with(Cell::get) {
        BIG_ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

struct Core {
    multi: MultiRaft,
    shards: BTreeMap<u64, Shard>,
    reads: HashMap<u64, ringraft::node::driver::PendingRead>,
    metrics: CoreMetrics,
    wal: ringraft_wal::Wal,
}

impl Core {
    /// Runs driver rounds until quiet, each made durable before the next.
    fn settle(&mut self) {
        for _ in 0..100 {
            let mut net: Vec<Envelope> = Vec::new();
            let mut d = Driver::new(
                &mut self.multi,
                &mut self.shards,
                &mut self.reads,
                &self.metrics,
            );
            let Some(mut round) = d.begin(None, &mut net).unwrap() else {
                return;
            };
            let mut storage = WalStorage::new(&mut self.wal);
            let batch = d.persist(&mut round, &mut storage).unwrap();
            self.wal.sync().unwrap();
            let mut d = Driver::new(
                &mut self.multi,
                &mut self.shards,
                &mut self.reads,
                &self.metrics,
            );
            assert!(d.on_durable(batch, &mut net).refused.is_none());
            d.apply(&mut round, &mut net).unwrap();
        }
        panic!("the driver did not go quiet");
    }
}

fn put(i: u64) -> Command {
    Command {
        client_id: 1,
        seq: i,
        op: WriteOp::Put {
            key: i.to_le_bytes().to_vec(),
            value: vec![i as u8; VALUE_BYTES],
        },
    }
}

#[test]
fn a_put_value_is_copied_once_before_the_wal_copies_it() {
    let dir = std::env::temp_dir().join(format!("ringraft-copies-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let wal = ringraft_wal::Wal::open(&dir, ringraft_wal::WalOptions::default()).unwrap();
    let mut multi = MultiRaft::new(1);
    let raft = Raft::new(Config::new(1), Membership::with_voters([1])).unwrap();
    multi.add_group(0, raft).unwrap();
    let mut shards = BTreeMap::new();
    shards.insert(0, Shard::new(KvStore::new()));
    let mut core = Core {
        multi,
        shards,
        reads: HashMap::new(),
        metrics: CoreMetrics::default(),
        wal,
    };
    core.multi.group_mut(0).unwrap().campaign();
    core.settle();
    assert_eq!(core.multi.group(0).unwrap().role(), Role::Leader);
    let adm = Admission {
        max_command_bytes: 4 * VALUE_BYTES,
        max_key_bytes: 1024,
        max_value_bytes: 2 * VALUE_BYTES,
    };
    let mut counts = Vec::new();
    for i in 1..=3u64 {
        let cmd = put(i);
        let (tx, mut rx) = ringraft::node::driver::reply_channel();
        BIG_ALLOCS.store(0, Ordering::Relaxed);
        COUNTING.with(|c| c.set(true));
        // Admission, encoding, proposing, and one round persisted into the WAL.
        ringraft::node::core::admit(&cmd, &adm).unwrap();
        let bytes = cmd.encode_shared();
        let shared = Arc::clone(&bytes);
        let mut d = Driver::new(
            &mut core.multi,
            &mut core.shards,
            &mut core.reads,
            &core.metrics,
        );
        let index = d
            .propose_write(0, bytes, tx, Some(Instant::now()))
            .map_err(|(e, _)| e)
            .unwrap();
        let mut net: Vec<Envelope> = Vec::new();
        let mut round = d.begin(None, &mut net).unwrap().unwrap();
        let mut storage = WalStorage::new(&mut core.wal);
        let batch = d.persist(&mut round, &mut storage).unwrap();
        COUNTING.with(|c| c.set(false));
        counts.push(BIG_ALLOCS.load(Ordering::Relaxed));
        let logged = core.multi.group(0).unwrap().log().entry(index).unwrap();
        assert!(
            Arc::ptr_eq(&logged.data, &shared),
            "the log holds a copy of the encoded command, not the encoded buffer itself"
        );
        assert_eq!(
            core.wal.entry(0, index).unwrap().payload[1..],
            shared[..],
            "the WAL holds the kind byte and the command"
        );
        drop(shared);
        core.wal.sync().unwrap();
        let mut d = Driver::new(
            &mut core.multi,
            &mut core.shards,
            &mut core.reads,
            &core.metrics,
        );
        assert!(d.on_durable(batch, &mut net).refused.is_none());
        d.apply(&mut round, &mut net).unwrap();
        core.settle();
        assert!(matches!(rx.try_recv(), Ok(Some(Ok(_)))));
        drop(cmd);
    }
    drop(core);
    let _ = std::fs::remove_dir_all(&dir);
    // (1) `Command::encode_shared` writes the command into the entry's shared buffer, which
    // the Raft log keeps and the storage hands to the WAL (kind byte and data as two parts of
    // one record); the WAL then copies it into its stage without allocating. The first put
    // also grows the WAL's staging buffer to the record's size once, so the steady state is
    // measured on the puts after it.
    println!("value-sized allocations per put, admission to WAL append: {counts:?}");
    assert_eq!(counts[1..], [1, 1]);
}
