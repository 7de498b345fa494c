//! Everything one core (executor) owns: its shards' Raft groups ([`MultiRaft`]), their
//! key-value stores ([`KvStore`]), the core's write-ahead log, its outgoing peer links, and the
//! requests waiting for an answer. Only the core's own tasks touch it (`Rc<RefCell<CoreState>>`;
//! a borrow is never held across an `.await`). Fields are private to this module.
//!
//! Files, in the order a put travels through them:
//! - `requests.rs`: admission ([`admit`]: sizes against the limits derived from the WAL and the
//!   frame) and proposing; reads at their consistency; membership changes.
//! - `driver.rs`: the async wrapper around the shared Ready loop of [`crate::node::driver`]
//!   (whose module docs give the round order and the write-answer rules): it lends the core's
//!   state to a [`crate::node::driver::Driver`] for each synchronous step and waits where the
//!   node must: snapshot files written off the executor thread before the WAL forgets what they
//!   cover, WAL backpressure (wait for durability, then resume the round), and durability
//!   itself (the persist loop, which then reports the batch and sends what waited for it).
//!   The storage is the core's WAL ([`crate::node::storage::WalStorage`]), the transport the
//!   peer links, the answers one-shot channels ([`Reply`]).
//! - `apply.rs`: the node's side of the apply step (gauges, snapshot files).
//! - `peers.rs`: Raft traffic in and out on the peer links.
//! - `report.rs`: gauges and the typed per-shard status.
//! - `reclaim.rs`: WAL space: shards pinning the oldest segments compacted early; writes that
//!   found no space wait and retry.
//!
//! Bounds: at most `raft.max_inflight_proposals` writes and as many reads wait per core; past
//! that clients get Busy. WAL backpressure (`max_buffered_entries`) makes the driver wait for
//! durability before appending more, and the Raft core's uncommitted-entry bound turns that
//! into Busy. At most [`MAX_PERSIST_BATCHES_IN_FLIGHT`] batches wait for durability.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use ringraft_net::listener::Connection;
use tracing::{debug, error, info, warn};

use crate::node::config::{Config, PersistenceStrategy, ROLE_FOLLOWER, ROLE_LEARNER};
use crate::node::kv::{Command, KvStore};
use crate::node::limits::Admission;
use crate::node::metrics::{CoreMetrics, ErrorKind, RoleGauge, ShardGauges};
use crate::node::request::{
    busy, ClientError, ClientOp, ClientReply, ClientResult, Consistency, LeaderHint,
};
use crate::node::status::{FollowerReport, ShardReport};
use crate::node::storage;
use crate::node::wire::{self, HeartbeatRounds, Inbound, SnapshotAssembly};
use crate::raft::{
    ConfChange, Durability, Envelope, GroupId, Membership, MembershipError, Message, MessageBody,
    MultiRaft, NodeId, ProposeError, Raft, ReadError, ReadMode, Role, Snapshot,
};

mod apply;
mod driver;
pub mod leases;
mod peers;
mod reclaim;
pub use reclaim::is_out_of_space;
mod report;
mod requests;
mod snapshot_writer;
mod watch;

pub use driver::{drive, persist_loop, sync_wal, tick_loop};
pub use peers::send_wire;
pub use requests::admit;
pub use watch::WatchReplyTx;

/// Persist batches waiting for durability, per core; the driver waits when it is reached.
pub const MAX_PERSIST_BATCHES_IN_FLIGHT: usize = 1_024;
/// Snapshot chunk size on the wire.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Dial requests waiting (a dial request is idempotent: a full queue drops the duplicate).
pub const DIAL_REQUESTS_CAPACITY: usize = 64;
/// Largest snapshot accepted from a leader.
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 30;

pub use crate::node::driver::{
    reply_channel, PendingRead, PersistBatch, Reply, ReplyReceiver, Shard,
};

/// The node's files and gauges of one shard (the driver's [`Shard`] holds the rest).
#[derive(Debug)]
struct ShardLocal {
    snapshot_path: PathBuf,
    gauges: Arc<ShardGauges>,
}

/// A peer node as seen by this core: its address and, when connected, the connection.
#[derive(Default)]
pub struct PeerLink {
    /// `host:port`.
    pub address: String,
    /// The live outgoing connection, if any.
    pub conn: Option<Rc<Connection>>,
}

/// The state of one core.
pub struct CoreState {
    /// This node.
    pub node_id: NodeId,
    /// This core's index.
    pub core: usize,
    /// Node configuration.
    pub cfg: Arc<Config>,
    admission: Admission,
    multi: MultiRaft,
    wal: ringraft_wal::Wal,
    shards: BTreeMap<GroupId, Shard>,
    local: BTreeMap<GroupId, ShardLocal>,
    reads: HashMap<u64, PendingRead>,
    next_read_ctx: u64,
    /// Counters of this core.
    pub metrics: Arc<CoreMetrics>,
    /// Outgoing links by peer node id: seeded from the config file; members the file does not
    /// list get the address recorded in the shards' configurations.
    pub peers: BTreeMap<NodeId, PeerLink>,
    /// Per shard: the configuration (index, term) the links were last refreshed from.
    peer_configs: BTreeMap<GroupId, (u64, u64)>,
    rounds: HeartbeatRounds,
    assembly: SnapshotAssembly,
    persist_tx: flume::Sender<PersistBatch>,
    /// Sync requests to the core's io_uring syncer (`raft.persistence.wal_executor_sync`),
    /// set by the persist loop when it starts one.
    ring_sync_tx: Option<flume::Sender<()>>,
    kick_tx: flume::Sender<()>,
    /// Peers whose link must be (re)dialed by the server.
    pub dial_tx: flume::Sender<NodeId>,
    /// Set when the WAL failed: the core stops serving.
    pub fatal: Option<String>,
    /// Rate limit of the warnings about refused (invalid) peer messages.
    invalid_log: InvalidLog,
    /// Locally taken snapshots on their way to their files.
    snapshots: snapshot_writer::SnapshotWriter,
    /// The buffer appends to followers are encoded into, once per round of sends.
    append_frames: wire::AppendFrames,
}

/// Least time between two warnings about refused peer messages on one core: a hostile or
/// broken peer can send them at line rate, and the counter on /metrics has the full count.
pub const INVALID_MESSAGE_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// Rate limit of the refused-message warnings: the running total last seen and when the last
/// warning went out.
#[derive(Debug, Default)]
struct InvalidLog {
    seen: u64,
    logged_at: Option<Instant>,
    /// Refusals since the last warning.
    unlogged: u64,
}

impl InvalidLog {
    /// Records the running total `total`; returns the refusals to report now (since the last
    /// warning) if a warning is due at `now`.
    fn note(&mut self, total: u64, now: Instant) -> Option<u64> {
        let new = total.saturating_sub(self.seen);
        self.seen = self.seen.max(total);
        if new == 0 {
            return None;
        }
        self.unlogged = self.unlogged.saturating_add(new);
        let due = self
            .logged_at
            .is_none_or(|t| now.saturating_duration_since(t) >= INVALID_MESSAGE_LOG_INTERVAL);
        if !due {
            return None;
        }
        self.logged_at = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

impl std::fmt::Debug for CoreState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoreState")
            .field("node_id", &self.node_id)
            .field("core", &self.core)
            .field("shards", &self.shards.len())
            .finish()
    }
}

/// Channels the core's tasks use; created with the state.
pub struct CoreChannels {
    /// Persist batches to the persist loop.
    pub persist_rx: flume::Receiver<PersistBatch>,
    /// Wake-ups of the driver loop.
    pub kick_rx: flume::Receiver<()>,
    /// Peers to dial.
    pub dial_rx: flume::Receiver<NodeId>,
}

/// Nanoseconds on the process-wide monotonic clock, counted from its first reading (early in
/// node start). Every core of the process reads the same origin, so values are comparable
/// across cores; the Raft cores get this time with every tick, inbound message, ready round
/// and lease read (`tick_at`, `advance_clock`, `read_at`).
pub fn monotonic_nanos() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Environment variable with the TEST-ONLY Raft faults to switch on (comma-separated names of
/// [`UnsafeTestFaults`]): negative controls for the fault suite, which must then fail.
pub const UNSAFE_TEST_FAULTS_ENV: &str = "RINGRAFT_UNSAFE_TEST_FAULTS";

/// TEST-ONLY Raft faults, each mapped onto the Raft configuration's `unsafe_*` switch of the
/// same name. All off by default; a node with any on is not a correct Raft implementation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnsafeTestFaults {
    /// `commit_previous_term`: commit an entry of a previous term by counting replicas.
    pub commit_previous_term: bool,
    /// `skip_vote_log_check`: grant votes without the log up-to-date check.
    pub skip_vote_log_check: bool,
    /// `lease_ignore_clock`: serve every lease read locally, checking no lease.
    pub lease_ignore_clock: bool,
}

impl UnsafeTestFaults {
    /// Parses a comma-separated list of fault names (blanks around names and empty items are
    /// ignored). Returns the faults and the names it does not know, in order.
    pub fn parse(spec: &str) -> (UnsafeTestFaults, Vec<String>) {
        let mut f = UnsafeTestFaults::default();
        let mut unknown = Vec::new();
        for name in spec.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "commit_previous_term" => f.commit_previous_term = true,
                "skip_vote_log_check" => f.skip_vote_log_check = true,
                "lease_ignore_clock" => f.lease_ignore_clock = true,
                other => unknown.push(other.to_string()),
            }
        }
        (f, unknown)
    }

    /// The faults named by [`UNSAFE_TEST_FAULTS_ENV`], read once per process; every fault on is
    /// logged as a warning, and every unknown name is warned about and ignored.
    pub fn from_env() -> UnsafeTestFaults {
        static FAULTS: OnceLock<UnsafeTestFaults> = OnceLock::new();
        *FAULTS.get_or_init(|| {
            let Ok(spec) = std::env::var(UNSAFE_TEST_FAULTS_ENV) else {
                return UnsafeTestFaults::default();
            };
            let (f, unknown) = UnsafeTestFaults::parse(&spec);
            for name in unknown {
                warn!(
                    fault = name,
                    "{UNSAFE_TEST_FAULTS_ENV}: unknown test fault, ignored"
                );
            }
            for (on, name) in [
                (f.commit_previous_term, "commit_previous_term"),
                (f.skip_vote_log_check, "skip_vote_log_check"),
                (f.lease_ignore_clock, "lease_ignore_clock"),
            ] {
                if on {
                    warn!("TEST-ONLY fault {name} is on: Raft is unsafe");
                }
            }
            f
        })
    }
}

/// The Raft configuration of shard `group` on this node, with the test faults of the
/// environment ([`UnsafeTestFaults::from_env`]).
pub fn raft_config(cfg: &Config, group: GroupId) -> crate::raft::Config {
    raft_config_with(cfg, group, UnsafeTestFaults::from_env())
}

/// The Raft configuration of shard `group` on this node with the given test faults.
pub fn raft_config_with(
    cfg: &Config,
    group: GroupId,
    faults: UnsafeTestFaults,
) -> crate::raft::Config {
    let (emin, emax) = cfg.election_ticks();
    let tick = cfg.raft.tick_interval_ms;
    let lease_ticks = (cfg.raft.read_consistency.lease_duration_ms / tick).max(1);
    let drift_ticks = cfg.raft.read_consistency.clock_drift_ms.div_ceil(tick);
    let margin = emin
        .saturating_sub(lease_ticks)
        .max(drift_ticks)
        .min(emin - 1);
    let mut c = crate::raft::Config::new(cfg.cluster.node_id);
    c.seed = cfg.cluster.node_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ group;
    c.election_timeout_min_ticks = emin as u32;
    c.election_timeout_max_ticks = emax as u32;
    c.heartbeat_interval_ticks = cfg.heartbeat_ticks() as u32;
    c.pre_vote = true;
    c.check_quorum = true;
    c.lease_read = true;
    c.clock_drift_margin_ticks = margin as u32;
    // The tick loop ticks at most once per `tick_interval_ms` of the monotonic clock it hands
    // in, which is what the clock-checked lease assumes of `tick_nanos`.
    c.tick_nanos = tick.saturating_mul(1_000_000);
    c.max_inflight_msgs = cfg.raft.replication.max_inflight_appends;
    c.max_entries_per_msg = cfg.raft.replication.append_entries_batch_threshold;
    c.max_bytes_per_msg = cfg.raft.replication.append_entries_max_bytes;
    c.max_uncommitted_entries = cfg.raft.max_inflight_proposals as u64;
    c.max_pending_reads = cfg.raft.max_inflight_proposals;
    c.snapshot_threshold_entries = cfg.raft.snapshot_threshold_entries;
    c.log_retain_entries = cfg.raft.snapshot_retain_entries;
    c.durability = match cfg.raft.persistence.strategy {
        PersistenceStrategy::DiskFirst => Durability::DiskFirst,
        PersistenceStrategy::MemFirst => Durability::MemFirst,
    };
    c.unsafe_commit_previous_term = faults.commit_previous_term;
    c.unsafe_skip_vote_log_check = faults.skip_vote_log_check;
    c.unsafe_lease_ignore_clock = faults.lease_ignore_clock;
    c
}

/// An address in its canonical form (the parsed socket address), so one member has one
/// spelling in the member address table; an address that does not parse is kept as written
/// (the config file's are validated before this runs).
pub fn canonical_address(address: &str) -> String {
    address
        .parse::<std::net::SocketAddr>()
        .map_or_else(|_| address.to_string(), |a| a.to_string())
}

/// The membership a fresh group starts with, with the config file's member addresses in its
/// address table (so the first configuration entry carries them to members that join later).
pub fn initial_membership(cfg: &Config) -> Membership {
    let c = &cfg.cluster;
    if c.initial_cluster.is_empty() || c.initial_cluster_size == Some(1) {
        let mut m = Membership::with_voters([c.node_id]);
        m.addresses
            .insert(c.node_id, canonical_address(&c.listen_address));
        return m;
    }
    if cfg.is_joining_learner() {
        // A learner joins a running cluster: it learns the membership from the leader.
        return Membership::default();
    }
    let mut m = Membership::with_voters(
        c.initial_cluster
            .iter()
            .filter(|m| m.role == ROLE_FOLLOWER)
            .map(|m| m.id),
    );
    m.learners = c
        .initial_cluster
        .iter()
        .filter(|m| m.role == ROLE_LEARNER)
        .map(|m| m.id)
        .collect();
    m.addresses = c
        .initial_cluster
        .iter()
        .filter(|m| m.role == ROLE_FOLLOWER || m.role == ROLE_LEARNER)
        .map(|m| (m.id, canonical_address(&m.address)))
        .collect();
    m
}

fn role_gauge(r: Role) -> RoleGauge {
    match r {
        Role::Follower => RoleGauge::Follower,
        Role::PreCandidate | Role::Candidate => RoleGauge::Candidate,
        Role::Leader => RoleGauge::Leader,
    }
}

impl CoreState {
    /// Opens the core's WAL and rebuilds (or creates) every shard of the core.
    pub fn open(
        cfg: Arc<Config>,
        core: usize,
        groups: &[GroupId],
        metrics: Arc<CoreMetrics>,
        gauges: &[Arc<ShardGauges>],
    ) -> Result<(CoreState, CoreChannels), String> {
        let dir = storage::core_dir(&cfg, core);
        let wal = storage::open_wal(&cfg, core, &dir)?;
        let node_id = cfg.cluster.node_id;
        let mut multi = MultiRaft::new(node_id);
        let mut shards = BTreeMap::new();
        let mut local = BTreeMap::new();
        for &g in groups {
            let path = storage::snapshot_path(&cfg, core, g);
            let snap = storage::read_snapshot(&path)?;
            let rcfg = raft_config(&cfg, g);
            let (raft, kv) = match storage::restart_state(&wal, g, snap)? {
                Some(rs) => {
                    let kv = if rs.snapshot.data.is_empty() {
                        KvStore::new()
                    } else {
                        KvStore::restore(&rs.snapshot.data)
                            .map_err(|e| format!("shard {g}: snapshot {}: {e}", path.display()))?
                    };
                    info!(
                        shard = g,
                        term = rs.hard_state.term,
                        entries = rs.entries.len(),
                        "restarting shard from disk"
                    );
                    (Raft::restart(rcfg, rs), kv)
                }
                None => (Raft::new(rcfg, initial_membership(&cfg)), KvStore::new()),
            };
            let mut raft = raft.map_err(|e| format!("shard {g}: {e}"))?;
            // The store is restored; the snapshot file serves lagging followers from now on.
            let held = raft.snapshot().map_or(0, |s| s.meta.index);
            raft.release_snapshot_data(held);
            multi
                .add_group(g, raft)
                .map_err(|e| format!("shard {g}: {e}"))?;
            let gauge = gauges
                .get(g as usize)
                .cloned()
                .ok_or_else(|| format!("shard {g}: no gauges"))?;
            shards.insert(g, Shard::new(kv));
            local.insert(
                g,
                ShardLocal {
                    snapshot_path: path,
                    gauges: gauge,
                },
            );
        }
        let (persist_tx, persist_rx) = flume::bounded(MAX_PERSIST_BATCHES_IN_FLIGHT);
        let (kick_tx, kick_rx) = flume::bounded(1);
        let (dial_tx, dial_rx) = flume::bounded(DIAL_REQUESTS_CAPACITY);
        let mut peers = BTreeMap::new();
        for m in &cfg.cluster.initial_cluster {
            if m.id != node_id {
                peers.insert(
                    m.id,
                    PeerLink {
                        address: m.address.clone(),
                        conn: None,
                    },
                );
            }
        }
        let mut st = CoreState {
            node_id,
            core,
            admission: Admission::from_config(&cfg),
            cfg,
            multi,
            wal,
            shards,
            local,
            reads: HashMap::new(),
            next_read_ctx: 1,
            metrics,
            peers,
            peer_configs: BTreeMap::new(),
            rounds: HeartbeatRounds::new(core),
            assembly: SnapshotAssembly::default(),
            persist_tx,
            ring_sync_tx: None,
            kick_tx,
            dial_tx,
            fatal: None,
            invalid_log: InvalidLog::default(),
            snapshots: snapshot_writer::SnapshotWriter::default(),
            append_frames: wire::AppendFrames::default(),
        };
        // A restart knows every member address its shards' configurations recorded.
        st.refresh_changed_peers();
        Ok((
            st,
            CoreChannels {
                persist_rx,
                kick_rx,
                dial_rx,
            },
        ))
    }

    /// Wakes the driver loop.
    pub fn kick(&self) {
        let _ = self.kick_tx.try_send(());
    }

    /// A durability handle of the core's WAL (for the persist loop).
    pub fn durability(&self) -> ringraft_wal::Durability {
        self.wal.durability()
    }

    /// The address of `node`, if known.
    pub fn address_of(&self, node: NodeId) -> Option<String> {
        if node == self.node_id {
            return Some(self.cfg.cluster.listen_address.clone());
        }
        self.peers.get(&node).map(|p| p.address.clone())
    }

    fn not_leader(&self, leader: NodeId) -> ClientError {
        let hint = if leader == 0 {
            None
        } else {
            self.address_of(leader).map(|address| LeaderHint {
                node_id: leader,
                address,
            })
        };
        ClientError::NotLeader { leader: hint }
    }
}

#[cfg(test)]
mod tests;
