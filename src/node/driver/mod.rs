//! The Ready loop of one core, written once and run by both the node and the simulator: a
//! synchronous, sans-IO driver over the shards' Raft groups ([`MultiRaft`]), their key-value
//! stores ([`KvStore`]), the table of writes waiting for their entry and the queue of reads
//! waiting for their read index. It is generic over where the log goes ([`Storage`]: the node's
//! WAL, the simulator's durable-vs-pending store) and where messages go ([`Transport`]: the
//! node's peer links, the simulator's seeded network). Answers go to one-shot [`Reply`]
//! channels, which the node's client tasks and the simulator's clients both read.
//!
//! A round is split exactly where the node must wait (for a file on a blocking thread, for WAL
//! durability), so the node's async wrapper stays thin and the simulator runs every step of it:
//! 1. [`Driver::begin`] takes the `MultiReady`, decodes every received snapshot's state-machine
//!    data (a snapshot that does not decode is refused here, before anything of the local log or
//!    snapshot file is touched: the core stops with the old log intact), sends what does not
//!    depend on local durability (a leader's appends go out before its own fsync), then applies
//!    the committed entries of every group that received no snapshot and answers the writes
//!    and reads they decide (see "Ordering" below). The node uses
//!    [`Driver::begin_deferred`] instead and decodes the snapshots on its blocking pool before
//!    step 3 ([`Round::to_restore`], [`Round::set_restored`]).
//! 2. The caller makes each received snapshot durable ([`Round::received_snapshots`]): the node
//!    writes its file off the executor thread; the simulator records it.
//! 3. [`Driver::persist`] per group: installs the snapshot in the storage (which may now drop the
//!    entries it covers) and the decoded store; truncates a conflicting suffix (never an applied
//!    entry: `check_truncation`); appends the entries; stores the hard state. On storage
//!    backpressure it returns [`PersistError::Backpressure`] and resumes where it stopped when
//!    called again, after the caller waited for durability. It returns a [`PersistBatch`]: the
//!    storage's durability ticket, the `on_persisted` marks and the envelopes that must wait.
//! 4. [`Driver::on_durable`] once the storage reached the batch's ticket: `on_persisted` in order,
//!    then the waiting envelopes (votes, DiskFirst acknowledgements) go out. Nothing is
//!    acknowledged before it is durable here.
//! 5. [`Driver::apply`]: the committed entries left (those of a group that installed a
//!    snapshot this round) into the store through [`crate::node::kv::apply::apply_entry`],
//!    writes answered, reads registered and served once their index is applied, requested
//!    snapshots taken in memory (their files are written by the caller, then
//!    [`Storage::snapshot_saved`] lets the log drop what they cover).
//!
//! Ordering: committed entries are applied as early as is safe, in step 1, before the round's
//! own appends reach the storage (the node writes the envelopes to the peer links right after
//! step 1, so applying does not wait for them either), the way etcd applies while new entries
//! persist. That is safe because committed means held by a quorum: in DiskFirst a leader
//! counts itself toward the quorum only once its own copy is durable and a follower
//! acknowledges only what it made durable (those acknowledgements wait for step 4), so a
//! write answered here survives any minority of crashes, whether or not this node's copy is
//! durable yet. What must still wait: a group that received a snapshot applies only after
//! step 3 installed it; a locally requested snapshot is taken only in step 5, after the round's
//! entries are in the storage; the truncation check of step 3 bounds a conflicting suffix by
//! the index applied before the round (entries applied in step 1 at those indexes are the log's
//! new ones, not the stored ones the truncation removes); and a write is answered `Applied`
//! only when the entry applied at its index carries the term it was proposed in.
//!
//! Write answers: a write is answered when its entry is applied at the index it was proposed at
//! *and* with the term it was proposed in (`Applied`). Another term's entry at that index means
//! the write can never commit (`Superseded`, not applied); an index passed by a snapshot, or a
//! stopped core, leave the outcome unknown (`LeadershipLost`). Reads dropped by the Raft core are
//! answered "not leader". Bounds: the write table and the read map are bounded by the callers'
//! admission (`raft.max_inflight_proposals` each per core); the Raft core bounds uncommitted
//! entries and pending reads.
//!
//! Write stages (`CoreMetrics::stages`, on /metrics as `ringraft_write_stage_seconds`): a
//! write carries when it reached the node and when it was proposed; [`Driver::on_durable`]
//! marks the waiting writes a leader's batch covers locally durable (proposed → locally
//! durable) and times a follower's appends (round begun → durable; durable → acknowledged via
//! [`note_acked`] once the acknowledgements are queued); applying the committed entries
//! ([`Driver::begin`], or [`Driver::apply`] after a received snapshot) times proposed →
//! committed (from the start of the round that found the entry committed), committed →
//! applied, applied → answered and the whole write, for writes whose own entry was applied,
//! and counts those answered before the leader's own sync covered them. The clock is read only
//! where a stage is timed (a round that appends or commits what a write waits for, an entry
//! that decides a write, a batch that covers a waiting write or a follower's appends), never
//! on the simulator's idle paths; what is read goes only into histograms, so the simulator's
//! runs stay determined by their seed.
//!
//! Why sans-IO rather than an async driver generic over async traits: the node's state is shared
//! by several tasks of the core (peer readers, the tick loop, client submissions) through a
//! `RefCell`, whose borrow may not be held across an `.await`; a synchronous round split at the
//! waiting points lets the node release the borrow while it waits and lets the simulator call
//! the very same steps deterministically, with no executor.
//!
//! Copies of a put's value on the leader from admission to the WAL (measured by
//! `tests/driver_copies.rs`, which counts allocations of the value's size on this path with the
//! real WAL): `Command::encode_shared` writes the command once, straight into the shared
//! `Arc<[u8]>` that becomes the entry's data ([`Driver::propose_write`] hands it to the Raft core,
//! which stores it as it is); the node's storage hands the WAL the entry's kind byte and that
//! buffer as two parts of one record (`Wal::append_parts`), and the WAL copies them into its
//! stage or map. One copy by the encoding and the WAL's own, the target; envelopes to
//! followers share the entry's `Arc` until their frames are written.
//!
//! Who owns it: the node's core state holds the fields and lends them to a [`Driver`] for each
//! step; the simulator's nodes do the same.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use tracing::info;

use crate::node::kv::{KvStore, PlantedFault};
use crate::node::metrics::CoreMetrics;
use crate::node::request::{ClientError, ClientOp, ClientReply, ClientResult};
use crate::node::watch::WatchHub;
use crate::raft::{
    ConfChange, Entry, Envelope, GroupId, HardState, MultiRaft, NodeId, ProposeError, ReadError,
    ReadMode, Role, Snapshot,
};

mod apply;
mod round;
#[cfg(test)]
mod tests;

pub use round::{note_acked, Durable, Freed, Round};

/// Where an answer goes: a one-shot channel to the asking task (which may live on another
/// core; the simulator's clients poll theirs). One allocation per request, a lock-free
/// hand-over, and the asker is woken once.
#[derive(Debug)]
pub struct Reply(futures_channel::oneshot::Sender<ClientResult>);

/// The asking side of a [`Reply`]: a future of the answer (`Err` when the answering side
/// dropped the request without answering); [`futures_channel::oneshot::Receiver::try_recv`]
/// polls it without an executor.
pub type ReplyReceiver = futures_channel::oneshot::Receiver<ClientResult>;

/// A new one-shot answer channel.
pub fn reply_channel() -> (Reply, ReplyReceiver) {
    let (tx, rx) = futures_channel::oneshot::channel();
    (Reply(tx), rx)
}

impl Reply {
    /// Hands over the answer; `Err` gives it back when the asker is gone.
    pub fn try_send(self, r: ClientResult) -> Result<(), ClientResult> {
        self.0.send(r)
    }

    /// The asker gave up (timed out or its connection closed).
    pub fn is_disconnected(&self) -> bool {
        self.0.is_canceled()
    }
}

/// A write waiting for its entry to be applied.
#[derive(Debug)]
pub struct PendingWrite {
    pub(crate) term: u64,
    pub(crate) reply: Reply,
    /// When it was proposed.
    pub(crate) started: Instant,
    /// When the request reached the node (the write's first stage).
    pub(crate) received: Instant,
    /// Set once the leader's own storage made the write's entry durable.
    pub(crate) durable: bool,
}

/// A read waiting for its read index to be applied.
#[derive(Debug)]
pub struct PendingRead {
    pub(crate) group: GroupId,
    pub(crate) op: ClientOp,
    pub(crate) reply: Reply,
    pub(crate) started: Instant,
    /// Set once the Raft core told us the index to wait for.
    pub(crate) index: Option<u64>,
}

/// One shard's state besides its Raft group.
#[derive(Debug, Default)]
pub struct Shard {
    pub(crate) kv: KvStore,
    /// Writes by the index they were proposed at.
    pub(crate) writes: BTreeMap<u64, PendingWrite>,
    /// Reads whose read index is known, ordered by (index, ctx): served front to back as the
    /// state machine applies. Entries of reads answered otherwise are skipped when reached.
    pub(crate) read_queue: BTreeSet<(u64, u64)>,
    /// Watch history (events derived at apply, identical on every replica) and the watchers
    /// registered on this node (none in the simulator).
    pub(crate) watch: WatchHub,
}

impl Shard {
    /// A shard with the given store.
    pub fn new(kv: KvStore) -> Shard {
        Shard {
            kv,
            ..Shard::default()
        }
    }

    /// The shard's store.
    pub fn kv(&self) -> &KvStore {
        &self.kv
    }

    /// The shard's watch hub (its history of recent changes and its watchers).
    pub fn watch(&self) -> &WatchHub {
        &self.watch
    }

    /// Writes waiting for their entry.
    pub fn waiting_writes(&self) -> usize {
        self.writes.len()
    }

    /// Registers a proposed write, received by the node at `received` (`None`: now). A write
    /// still waiting at the same index was proposed in an older term and its entry has been
    /// replaced: it can never commit. Returns when it was proposed (the clock's one read).
    pub(crate) fn add_write(
        &mut self,
        index: u64,
        term: u64,
        reply: Reply,
        received: Option<Instant>,
    ) -> Instant {
        let started = Instant::now();
        let w = PendingWrite {
            term,
            reply,
            started,
            received: received.unwrap_or(started),
            durable: false,
        };
        if let Some(old) = self.writes.insert(index, w) {
            let _ = old.reply.try_send(Err(ClientError::Superseded));
        }
        started
    }

    /// Answers the writes a just-installed snapshot covers: each may or may not be in it.
    pub(crate) fn fail_writes_through(&mut self, index: u64) {
        while let Some(entry) = self.writes.first_entry() {
            if *entry.key() > index {
                break;
            }
            let w = entry.remove();
            let _ = w.reply.try_send(Err(ClientError::LeadershipLost));
        }
    }
}

/// Why a storage call did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// Too much is written and not yet durable: wait for durability, then retry the same call.
    Backpressure,
    /// No space for the write, and nothing of it was written: free space, then retry the call.
    NoSpace(String),
    /// The storage failed (the core must stop: durability can no longer be promised).
    Failed(String),
}

/// Where a core's log, hard states and snapshots go. Calls made during one round become durable
/// together: [`Storage::ticket`] names the point the round's batch waits for.
pub trait Storage {
    /// Last index written (durable or not) for group `g`; 0 when none.
    fn last_index(&self, g: GroupId) -> u64;
    /// Drops the entries of `g` from `from` on.
    fn truncate(&mut self, g: GroupId, from: u64) -> Result<(), StorageError>;
    /// Appends one entry of `g` (after the last one written).
    fn append(&mut self, g: GroupId, e: &Entry) -> Result<(), StorageError>;
    /// Stores the hard state of `g`.
    fn set_hard_state(&mut self, g: GroupId, hs: &HardState) -> Result<(), StorageError>;
    /// Installs a snapshot received from the leader, whose file (if the storage keeps one) is
    /// already durable: the log of `g` forgets everything it covers and what follows it.
    fn install_snapshot(&mut self, g: GroupId, snap: &Snapshot) -> Result<(), StorageError>;
    /// A snapshot taken locally is durable: the log of `g` may drop the entries it covers.
    fn snapshot_saved(&mut self, g: GroupId, snap: &Snapshot) -> Result<(), StorageError>;
    /// The durability ticket of everything written so far that must be durable before the
    /// round's marks and acknowledgements count (the node: the WAL's LSN of its latest record
    /// that is not a deferred commit-only hard state).
    fn ticket(&mut self) -> u64;
}

/// Where a core's Raft messages go, and what it tells clients about other nodes.
pub trait Transport {
    /// Hands envelopes to the network, in order (it may drop them: Raft retransmits).
    fn send(&mut self, envs: Vec<Envelope>);
    /// The answer for a client of a shard `leader` leads (0: unknown) instead of this node.
    fn not_leader(&self, leader: NodeId) -> ClientError {
        let _ = leader;
        ClientError::NotLeader { leader: None }
    }
    /// The membership of `g` changed (an applied configuration entry).
    fn membership_changed(&mut self, g: GroupId) {
        let _ = g;
    }
}

/// A transport that keeps what is sent, for callers that send after the step returns.
impl Transport for Vec<Envelope> {
    fn send(&mut self, envs: Vec<Envelope>) {
        self.extend(envs);
    }
}

/// TEST-ONLY driver faults (negative controls for the simulator, which must catch each). All
/// off by default; a driver with any on is not correct.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverFaults {
    /// Send the envelopes that must wait for durability (votes, DiskFirst acknowledgements)
    /// together with the immediate ones, before the round is persisted.
    pub send_before_durable: bool,
    /// Answer a write when an entry is applied at its index, whatever that entry's term.
    pub answer_ignores_term: bool,
    /// A fault planted in the key-value stores this driver builds from snapshots.
    pub kv: PlantedFault,
}

/// What one round did, for the simulator's counters and the node's logs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RoundStats {
    /// Groups that became leader.
    pub leaders_elected: u64,
    /// Snapshots from a leader installed.
    pub snapshots_installed: u64,
    /// Entries applied.
    pub applied: u64,
    /// Snapshots taken locally.
    pub snapshots_taken: u64,
}

/// Persistence of one round, waiting for the storage to reach `ticket`.
#[derive(Debug, Default)]
pub struct PersistBatch {
    ticket: u64,
    /// When the round that wrote the batch began, read only when it appended entries (a
    /// follower's append stages run from it).
    started: Option<Instant>,
    persisted: Vec<(GroupId, u64, u64)>,
    after: Vec<Envelope>,
    appended: u64,
    /// Made durable by the core's own thread rather than a flush worker (the node decides).
    sync_here: bool,
}

impl PersistBatch {
    /// Whether the caller makes this batch durable on its own thread.
    pub fn sync_here(&self) -> bool {
        self.sync_here
    }

    /// Marks the batch to be made durable on the caller's own thread (or not).
    pub fn set_sync_here(&mut self, on: bool) {
        self.sync_here = on;
    }

    /// The storage's durability ticket this batch waits for.
    pub fn ticket(&self) -> u64 {
        self.ticket
    }

    /// Entries appended in the round.
    pub fn appended(&self) -> u64 {
        self.appended
    }

    /// True when nothing waits for durability (no marks, no envelopes).
    pub fn is_empty(&self) -> bool {
        self.persisted.is_empty() && self.after.is_empty()
    }

    /// Envelopes waiting for durability.
    pub fn after_len(&self) -> usize {
        self.after.len()
    }
}

/// Why a persist step did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersistError {
    /// The storage is full of undurable writes: wait for durability, then call `persist` again
    /// with the same round (it resumes where it stopped).
    Backpressure,
    /// The storage found no space for the write and wrote nothing: free space (compact, wait),
    /// then call `persist` again with the same round.
    NoSpace(String),
    /// The core must stop (storage failure, or a safety check refused the step).
    Failed(String),
}

impl std::fmt::Display for PersistError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PersistError::Backpressure => f.write_str("storage backpressure"),
            PersistError::NoSpace(e) => write!(f, "storage has no space: {e}"),
            PersistError::Failed(e) => f.write_str(e),
        }
    }
}

/// A snapshot taken in memory: an O(1) clone of a shard's store at its applied index. Its
/// bytes are built off the executor ([`KvStore::snapshot`]) and handed back with
/// [`Driver::compact_taken`], which compacts the log and gives the [`SnapshotWrite`].
#[derive(Debug, Clone)]
pub struct SnapshotTaken {
    /// The group.
    pub group: GroupId,
    /// The store, frozen at the snapshot's index (its applied index).
    pub state: KvStore,
}

/// A snapshot taken in memory whose file is still to be written.
#[derive(Debug, Clone)]
pub struct SnapshotWrite {
    /// The group.
    pub group: GroupId,
    /// The snapshot.
    pub snap: Snapshot,
}

/// The driver: one core's shard state, lent by its owner for one step.
pub struct Driver<'a> {
    multi: &'a mut MultiRaft,
    shards: &'a mut BTreeMap<GroupId, Shard>,
    reads: &'a mut HashMap<u64, PendingRead>,
    metrics: &'a CoreMetrics,
    faults: DriverFaults,
    max_scan_results: usize,
}

impl<'a> Driver<'a> {
    /// Lends the core's state to the driver.
    pub fn new(
        multi: &'a mut MultiRaft,
        shards: &'a mut BTreeMap<GroupId, Shard>,
        reads: &'a mut HashMap<u64, PendingRead>,
        metrics: &'a CoreMetrics,
    ) -> Driver<'a> {
        Driver {
            multi,
            shards,
            reads,
            metrics,
            faults: DriverFaults::default(),
            max_scan_results: usize::MAX,
        }
    }

    /// With TEST-ONLY faults.
    pub fn with_faults(mut self, faults: DriverFaults) -> Driver<'a> {
        self.faults = faults;
        self
    }

    /// With the most results a scan returns.
    pub fn with_max_scan_results(mut self, n: usize) -> Driver<'a> {
        self.max_scan_results = n;
        self
    }

    /// Proposes a write's command bytes on group `g`; on success the answer goes to `reply` once
    /// the entry is applied (or known never to be).
    pub fn propose(
        &mut self,
        g: GroupId,
        data: impl Into<Arc<[u8]>>,
        reply: Reply,
    ) -> Result<u64, ProposeError> {
        self.propose_write(g, data.into(), reply, None)
            .map_err(|(e, _)| e)
    }

    /// Proposes a write whose request reached the node at `received` (`None`: now, a write the
    /// node makes itself). `data` becomes the entry's bytes as they are (the log, the storage
    /// and the envelopes share them; [`crate::node::kv::Command::encode_shared`] writes them in
    /// place). The one place a proposed write is registered: on success its answer goes to
    /// `reply` once the entry is applied (or known never to be) and proposed is timed from
    /// `received`; on refusal the reply is handed back unanswered.
    pub fn propose_write(
        &mut self,
        g: GroupId,
        data: Arc<[u8]>,
        reply: Reply,
        received: Option<Instant>,
    ) -> Result<u64, (ProposeError, Reply)> {
        let Some(raft) = self.multi.group_mut(g) else {
            return Err((ProposeError::NotLeader { leader: 0 }, reply));
        };
        let term = raft.term();
        let index = match raft.propose(data) {
            Ok(i) => i,
            Err(e) => return Err((e, reply)),
        };
        self.metrics.proposals.inc();
        self.add_write(g, index, term, reply, received);
        Ok(index)
    }

    /// Proposes a membership change on group `g`, registered like a write (answered once its
    /// entry is applied); on refusal the reply is handed back unanswered.
    pub fn change_membership(
        &mut self,
        g: GroupId,
        change: ConfChange,
        reply: Reply,
    ) -> Result<u64, (ProposeError, Reply)> {
        let Some(raft) = self.multi.group_mut(g) else {
            return Err((ProposeError::NotLeader { leader: 0 }, reply));
        };
        let term = raft.term();
        match raft.propose_conf_change(change) {
            Ok(index) => {
                self.add_write(g, index, term, reply, None);
                Ok(index)
            }
            Err(e) => Err((e, reply)),
        }
    }

    fn add_write(
        &mut self,
        g: GroupId,
        index: u64,
        term: u64,
        reply: Reply,
        received: Option<Instant>,
    ) {
        let Some(shard) = self.shards.get_mut(&g) else {
            // A group without a shard has no store to answer from: its outcome is unknown.
            let _ = reply.try_send(Err(ClientError::LeadershipLost));
            return;
        };
        let proposed = shard.add_write(index, term, reply, received);
        if let Some(received) = received {
            self.metrics
                .stages
                .received_to_proposed
                .record_between(received, proposed);
        }
    }

    /// Starts a linearizable read `op` on group `g` under request id `ctx` (unique on this
    /// core); the answer goes to `reply` once the read index is applied.
    pub fn read(
        &mut self,
        g: GroupId,
        ctx: u64,
        op: ClientOp,
        mode: ReadMode,
        reply: Reply,
    ) -> Result<(), ReadError> {
        self.read_at(g, ctx, op, mode, None, reply)
            .map_err(|(e, _)| e)
    }

    /// [`Driver::read`] with the monotonic clock read just before (`now_nanos`: a lease read is
    /// then served only if the lease covers that instant, see [`crate::raft::Raft::read_at`]).
    /// The one place a read is registered; on refusal the reply is handed back unanswered.
    pub fn read_at(
        &mut self,
        g: GroupId,
        ctx: u64,
        op: ClientOp,
        mode: ReadMode,
        now_nanos: Option<u64>,
        reply: Reply,
    ) -> Result<(), (ReadError, Reply)> {
        let Some(raft) = self.multi.group_mut(g) else {
            return Err((ReadError::NotLeader { leader: 0 }, reply));
        };
        let r = match now_nanos {
            Some(now) => raft.read_at(ctx, mode, now),
            None => raft.read(ctx, mode),
        };
        if let Err(e) = r {
            return Err((e, reply));
        }
        self.reads.insert(
            ctx,
            PendingRead {
                group: g,
                op,
                reply,
                started: Instant::now(),
                index: None,
            },
        );
        Ok(())
    }
}

/// A store decoded from a snapshot's state-machine bytes (empty bytes: the empty store of a
/// fresh group), with the planted fault if any.
pub fn restore_store(data: &[u8], fault: PlantedFault) -> Result<KvStore, String> {
    let mut kv = if data.is_empty() {
        KvStore::new()
    } else {
        KvStore::restore(data).map_err(|e| format!("bad snapshot bytes: {e}"))?
    };
    kv.plant_fault(fault);
    Ok(kv)
}

/// The answer to a read `op` from `shard`'s store.
pub fn read_local(shard: &Shard, op: &ClientOp, max_scan_results: usize) -> ClientResult {
    Ok(match op {
        ClientOp::Get { key, .. } => ClientReply::Value(shard.kv.get(key)),
        ClientOp::Scan { prefix, limit, .. } => {
            ClientReply::Scan(shard.kv.scan_prefix(prefix, (*limit).min(max_scan_results)))
        }
        // Remaining times by this replica's clock: the list is served by the leader, whose
        // clock times the leases.
        ClientOp::LeaseList => ClientReply::Leases(shard.kv.list_leases(Instant::now())),
        _ => return Err(ClientError::InvalidRequest("not a read".into())),
    })
}

fn log_role_change(g: GroupId, role: Role, leader: NodeId, term: u64) {
    if role == Role::Leader {
        info!(target: crate::node::logging::LEADERSHIP_TARGET, shard = g, term, node = leader, "Became leader");
    } else {
        info!(target: crate::node::logging::LEADERSHIP_TARGET, shard = g, role = ?role, leader, "role changed");
    }
}

fn failed(g: GroupId, what: impl std::fmt::Display) -> PersistError {
    PersistError::Failed(format!("shard {g}: {what}"))
}

fn storage_err(g: GroupId, what: &str, e: StorageError) -> PersistError {
    match e {
        StorageError::Backpressure => PersistError::Backpressure,
        StorageError::NoSpace(m) => PersistError::NoSpace(format!("shard {g}: {what}: {m}")),
        StorageError::Failed(m) => {
            // The node's WAL failures already read "WAL sync failed: ...", the phrase operators
            // and the fault tests look for; keep it first.
            if m.starts_with("WAL sync failed") {
                PersistError::Failed(m)
            } else {
                PersistError::Failed(format!("shard {g}: {what}: {m}"))
            }
        }
    }
}
