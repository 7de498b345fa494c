//! Everything one core (executor) owns: its shards' Raft groups ([`MultiRaft`]), their key-value
//! state machines, the core's write-ahead log, its outgoing peer links, and the requests waiting
//! for an answer. Only the core's own tasks touch it (`Rc<RefCell<CoreState>>`; a borrow is
//! never held across an `.await`).
//!
//! The driver loop ([`drive`]) carries out each `MultiReady` in the order the core documents:
//! 1. send the envelopes that do not depend on local durability (a leader's appends go out
//!    before its own fsync);
//! 2. persist per group: snapshot (file, then WAL truncate + purge), entries (truncating a
//!    conflicting suffix first), hard state, all appended to the one WAL of the core, so one
//!    fsync covers every shard of the core;
//! 3. hand the batch to the persist loop ([`persist_loop`]), which waits (asynchronously) until
//!    the WAL is durable up to the batch's last record, then calls `on_persisted` for each group
//!    and sends the envelopes that must wait for durability (votes, DiskFirst acknowledgements);
//! 4. apply committed entries to the state machines and answer the writes waiting for them;
//! 5. answer reads whose read index has been applied; fail dropped reads;
//! 6. take requested snapshots.
//!
//! Write answers: a write is answered when its entry is applied at the index it was proposed
//! at *and* with the term it was proposed in; a different entry applied there means the write
//! was overwritten by a newer leader and is answered as not applied. Bounds: at most
//! `raft.max_inflight_proposals` writes and as many reads wait per core; past that clients get
//! Busy. WAL backpressure (`max_buffered_entries`) makes the driver wait for durability before
//! appending more, and the Raft core's uncommitted-entry bound turns that into Busy for clients.
//! Owned by the node (issue 6).

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringraft_net::listener::Connection;
use tracing::{debug, error, info, warn};

use crate::node::apply::{apply_entry, check_truncation};
use crate::node::config::{Config, PersistenceStrategy, ROLE_FOLLOWER, ROLE_LEARNER};
use crate::node::kv::{Command, KvStore, WriteOp};
use crate::node::limits::Admission;
use crate::node::metrics::{CoreMetrics, ErrorKind, RoleGauge, ShardGauges};
use crate::node::request::{
    busy, ClientError, ClientOp, ClientReply, ClientResult, Consistency, LeaderHint,
};
use crate::node::status::{FollowerReport, ShardReport};
use crate::node::storage;
use crate::node::wire::{self, HeartbeatRounds, Inbound, SnapshotAssembly};
use crate::raft::{
    ConfChange, Durability, EntryKind, Envelope, GroupId, Membership, MembershipError, Message,
    MessageBody, MultiRaft, NodeId, ProposeError, Raft, ReadError, ReadMode, Ready, Role, Snapshot,
};

/// Persist batches waiting for durability, per core; the driver waits when it is reached.
pub const MAX_PERSIST_BATCHES_IN_FLIGHT: usize = 1_024;
/// Snapshot chunk size on the wire.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Dial requests waiting (a dial request is idempotent: a full queue drops the duplicate).
pub const DIAL_REQUESTS_CAPACITY: usize = 64;
/// Largest snapshot accepted from a leader.
pub const MAX_SNAPSHOT_BYTES: usize = 1 << 30;

/// Where an answer goes: a one-shot channel (the asking task may live on another core).
pub type Reply = flume::Sender<ClientResult>;

/// A write waiting for its entry to be applied.
#[derive(Debug)]
struct PendingWrite {
    term: u64,
    reply: Reply,
    started: Instant,
}

/// A read waiting for its read index to be applied.
#[derive(Debug)]
struct PendingRead {
    group: GroupId,
    op: ClientOp,
    reply: Reply,
    started: Instant,
    /// Set once the core told us the index to wait for.
    index: Option<u64>,
}

/// One shard's local state besides its Raft group.
#[derive(Debug)]
struct Shard {
    kv: KvStore,
    writes: BTreeMap<u64, PendingWrite>,
    /// Reads whose read index is known, ordered by (index, ctx): served front to back as the
    /// state machine applies. Entries of reads answered otherwise are skipped when reached.
    read_queue: std::collections::BTreeSet<(u64, u64)>,
    snapshot_path: PathBuf,
    gauges: Arc<ShardGauges>,
}

impl Shard {
    /// Registers a proposed write. A write still waiting at the same index was proposed in an
    /// older term and its entry has been replaced: it can never commit.
    fn add_write(&mut self, index: u64, term: u64, reply: Reply) {
        let w = PendingWrite {
            term,
            reply,
            started: Instant::now(),
        };
        if let Some(old) = self.writes.insert(index, w) {
            let _ = old.reply.try_send(Err(ClientError::Superseded));
        }
    }

    /// Answers the writes a just-installed snapshot covers: each may or may not be in it.
    fn fail_writes_through(&mut self, index: u64) {
        while let Some(entry) = self.writes.first_entry() {
            if *entry.key() > index {
                break;
            }
            let w = entry.remove();
            let _ = w.reply.try_send(Err(ClientError::LeadershipLost));
        }
    }
}

/// Admission of a write: key and values within this node's limits, and the whole encoded
/// command within what the log, the WAL's largest record and one frame can carry (so nothing
/// admitted can fail to be logged). Refusals are not applied.
pub fn admit(cmd: &Command, adm: &Admission) -> Result<(), ClientError> {
    let bytes = cmd.encoded_len();
    if bytes > adm.max_command_bytes {
        return Err(ClientError::TooLarge {
            bytes: bytes as u64,
            limit: adm.max_command_bytes as u64,
        });
    }
    cmd.check_sizes(adm.max_key_bytes, adm.max_value_bytes)
        .map_err(|e| ClientError::InvalidRequest(e.0))
}

/// Persistence handed from the driver to the persist loop.
#[derive(Debug)]
pub struct PersistBatch {
    lsn: u64,
    persisted: Vec<(GroupId, u64, u64)>,
    after: Vec<Envelope>,
    appended: u64,
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
    reads: HashMap<u64, PendingRead>,
    next_read_ctx: u64,
    /// Counters of this core.
    pub metrics: Arc<CoreMetrics>,
    /// Outgoing links by peer node id.
    pub peers: BTreeMap<NodeId, PeerLink>,
    rounds: HeartbeatRounds,
    assembly: SnapshotAssembly,
    persist_tx: flume::Sender<PersistBatch>,
    kick_tx: flume::Sender<()>,
    /// Peers whose link must be (re)dialed by the server.
    pub dial_tx: flume::Sender<NodeId>,
    /// Set when the WAL failed: the core stops serving.
    pub fatal: Option<String>,
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

/// The Raft configuration of shard `group` on this node.
pub fn raft_config(cfg: &Config, group: GroupId) -> crate::raft::Config {
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
    c
}

/// The membership a fresh group starts with.
pub fn initial_membership(cfg: &Config) -> Membership {
    let c = &cfg.cluster;
    if c.initial_cluster.is_empty() || c.initial_cluster_size == Some(1) {
        return Membership::with_voters([c.node_id]);
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
        let wal = ringraft_wal::Wal::open(dir.join("wal"), storage::wal_options(&cfg))
            .map_err(|e| format!("core {core}: cannot open the WAL in {}: {e}", dir.display()))?;
        let node_id = cfg.cluster.node_id;
        let mut multi = MultiRaft::new(node_id);
        let mut shards = BTreeMap::new();
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
            let raft = raft.map_err(|e| format!("shard {g}: {e}"))?;
            multi
                .add_group(g, raft)
                .map_err(|e| format!("shard {g}: {e}"))?;
            let gauge = gauges
                .get(g as usize)
                .cloned()
                .ok_or_else(|| format!("shard {g}: no gauges"))?;
            shards.insert(
                g,
                Shard {
                    kv,
                    writes: BTreeMap::new(),
                    read_queue: std::collections::BTreeSet::new(),
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
        let st = CoreState {
            node_id,
            core,
            admission: Admission::from_config(&cfg),
            cfg,
            multi,
            wal,
            shards,
            reads: HashMap::new(),
            next_read_ctx: 1,
            metrics,
            peers,
            rounds: HeartbeatRounds::new(core),
            assembly: SnapshotAssembly::default(),
            persist_tx,
            kick_tx,
            dial_tx,
            fatal: None,
        };
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

    /// Starts a client operation on `group` (owned by this core); the answer goes to `reply`.
    pub fn submit(&mut self, group: GroupId, client_id: u64, seq: u64, op: ClientOp, reply: Reply) {
        if let Some(f) = &self.fatal {
            let _ = reply.try_send(Err(ClientError::Unavailable(f.clone())));
            return;
        }
        let r = match op {
            ClientOp::Get {
                consistency: Consistency::Eventual,
                ..
            }
            | ClientOp::Scan {
                consistency: Consistency::Eventual,
                ..
            } => {
                self.metrics.reads[Consistency::Eventual.metric_index()].inc();
                let res = self.read_local(group, &op);
                let _ = reply.try_send(res);
                return;
            }
            ClientOp::Get { consistency, .. } | ClientOp::Scan { consistency, .. } => {
                self.start_read(group, op, consistency, reply)
            }
            op => self.propose(group, client_id, seq, op, reply),
        };
        if let Err((e, reply)) = r {
            match &e {
                ClientError::NotLeader { .. } => self.metrics.error(ErrorKind::NotLeader),
                ClientError::Busy { .. } => self.metrics.error(ErrorKind::Busy),
                ClientError::InvalidRequest(_) | ClientError::TooLarge { .. } => {
                    self.metrics.error(ErrorKind::InvalidRequest)
                }
                _ => {}
            }
            let _ = reply.try_send(Err(e));
        }
        self.kick();
    }

    fn read_local(&self, group: GroupId, op: &ClientOp) -> ClientResult {
        let shard = self.shards.get(&group).ok_or(ClientError::WrongShard {
            shard: group as u32,
        })?;
        Ok(match op {
            ClientOp::Get { key, .. } => ClientReply::Value(shard.kv.get(key).cloned()),
            ClientOp::Scan { prefix, limit, .. } => ClientReply::Scan(shard.kv.scan_prefix(
                prefix,
                (*limit).min(self.cfg.state_machine.max_scan_results),
            )),
            _ => return Err(ClientError::InvalidRequest("not a read".into())),
        })
    }

    fn start_read(
        &mut self,
        group: GroupId,
        op: ClientOp,
        consistency: Consistency,
        reply: Reply,
    ) -> Result<(), (ClientError, Reply)> {
        if self.reads.len() >= self.cfg.raft.max_inflight_proposals {
            debug!(
                reads = self.reads.len(),
                "busy: raft.max_inflight_proposals reads in flight on this core"
            );
            return Err((busy(), reply));
        }
        let Some(raft) = self.multi.group_mut(group) else {
            return Err((
                ClientError::WrongShard {
                    shard: group as u32,
                },
                reply,
            ));
        };
        let ctx = self.next_read_ctx;
        self.next_read_ctx += 1;
        let mode = match consistency {
            Consistency::Lease => ReadMode::Lease,
            _ => ReadMode::ReadIndex,
        };
        match raft.read(ctx, mode) {
            Ok(()) => {
                self.metrics.reads[consistency.metric_index()].inc();
                self.reads.insert(
                    ctx,
                    PendingRead {
                        group,
                        op,
                        reply,
                        started: Instant::now(),
                        index: None,
                    },
                );
                Ok(())
            }
            Err(ReadError::NotLeader { leader }) => Err((self.not_leader(leader), reply)),
            Err(ReadError::TooManyReads) => Err((busy(), reply)),
        }
    }

    fn propose(
        &mut self,
        group: GroupId,
        client_id: u64,
        seq: u64,
        op: ClientOp,
        reply: Reply,
    ) -> Result<(), (ClientError, Reply)> {
        let op = match op {
            ClientOp::Put { key, value } => WriteOp::Put { key, value },
            ClientOp::Delete { key } => WriteOp::Delete { key },
            ClientOp::CasValue { key, expected, new } => WriteOp::CasValue { key, expected, new },
            ClientOp::CasVersion {
                key,
                expected_version,
                new,
            } => WriteOp::CasVersion {
                key,
                expected_version,
                new,
            },
            _ => return Err((ClientError::InvalidRequest("not a write".into()), reply)),
        };
        let cmd = Command { client_id, seq, op };
        if !self.shards.contains_key(&group) {
            return Err((
                ClientError::WrongShard {
                    shard: group as u32,
                },
                reply,
            ));
        }
        if let Err(e) = admit(&cmd, &self.admission) {
            return Err((e, reply));
        }
        let inflight: usize = self.shards.values().map(|s| s.writes.len()).sum();
        if inflight >= self.cfg.raft.max_inflight_proposals {
            debug!(
                inflight,
                "busy: raft.max_inflight_proposals writes in flight on this core"
            );
            return Err((busy(), reply));
        }
        let Some(raft) = self.multi.group_mut(group) else {
            return Err((
                ClientError::WrongShard {
                    shard: group as u32,
                },
                reply,
            ));
        };
        let term = raft.term();
        match raft.propose(cmd.encode()) {
            Ok(index) => {
                self.metrics.proposals.inc();
                if let Some(shard) = self.shards.get_mut(&group) {
                    shard.add_write(index, term, reply);
                }
                Ok(())
            }
            Err(ProposeError::NotLeader { leader }) => Err((self.not_leader(leader), reply)),
            Err(ProposeError::TooManyUncommitted) => Err((busy(), reply)),
            Err(e) => Err((ClientError::Unavailable(e.to_string()), reply)),
        }
    }

    /// Starts a membership change on group `g` (answered once its entry is applied; a learner
    /// that is already a member counts as done).
    pub fn change_membership(&mut self, g: GroupId, change: ConfChange, reply: Reply) {
        let Some(raft) = self.multi.group_mut(g) else {
            let _ = reply.try_send(Err(ClientError::WrongShard { shard: g as u32 }));
            return;
        };
        let term = raft.term();
        match raft.propose_conf_change(change) {
            Ok(index) => {
                info!(shard = g, ?change, index, "membership change proposed");
                if let Some(shard) = self.shards.get_mut(&g) {
                    shard.add_write(index, term, reply);
                }
            }
            Err(ProposeError::NotLeader { leader }) => {
                let _ = reply.try_send(Err(self.not_leader(leader)));
            }
            Err(ProposeError::Membership(MembershipError::AlreadyMember(_))) => {
                let _ = reply.try_send(Ok(ClientReply::Committed { index: 0 }));
            }
            Err(ProposeError::ConfChangePending) => {
                debug!(shard = g, "busy: another membership change is in progress");
                let _ = reply.try_send(Err(busy()));
            }
            Err(e) => {
                let _ = reply.try_send(Err(ClientError::InvalidRequest(e.to_string())));
            }
        }
        self.kick();
    }

    /// Delivers Raft traffic from peer `from` for groups of this core.
    pub fn step_inbound(&mut self, from: NodeId, msgs: Vec<Inbound>) {
        let mut env = Envelope {
            from,
            to: self.node_id,
            messages: Vec::new(),
            heartbeats: Vec::new(),
            heartbeat_responses: Vec::new(),
        };
        for m in msgs {
            match m {
                Inbound::Raft(g, msg) => env.messages.push((g, msg)),
                Inbound::HeartbeatAck {
                    group,
                    from,
                    term,
                    batch,
                } => {
                    let round = self.rounds.resolve(from, batch, group);
                    env.messages.push((
                        group,
                        Message {
                            from,
                            to: self.node_id,
                            term,
                            body: MessageBody::HeartbeatResponse { round },
                        },
                    ));
                }
                Inbound::SnapshotChunk {
                    group,
                    from,
                    term,
                    index,
                    index_term,
                    offset,
                    data,
                    done,
                } => match self.assembly.add(
                    self.node_id,
                    group,
                    from,
                    term,
                    index,
                    index_term,
                    offset,
                    &data,
                    done,
                    MAX_SNAPSHOT_BYTES,
                ) {
                    Ok(Some(msg)) => env.messages.push((group, msg)),
                    Ok(None) => {}
                    Err(e) => warn!(shard = group, from, "snapshot transfer: {e}"),
                },
            }
        }
        if env.messages.is_empty() {
            return;
        }
        if tracing::enabled!(tracing::Level::TRACE) {
            for (g, m) in &env.messages {
                tracing::trace!(
                    shard = g,
                    from,
                    term = m.term,
                    kind = m.body.name(),
                    "raft message in"
                );
            }
        }
        if let Err(e) = self.multi.step(env) {
            debug!(from, "inbound raft traffic: {e}");
        }
        self.kick();
    }

    /// Queues envelopes on the peer links (dropping, and counting, what a full or absent link
    /// cannot take: Raft retransmits).
    fn send_envelopes(&mut self, envs: &[Envelope]) {
        for env in envs {
            let Some(link) = self.peers.get(&env.to) else {
                debug!(to = env.to, "no address for peer; dropping its messages");
                continue;
            };
            let Some(conn) = link.conn.clone() else {
                debug!(
                    to = env.to,
                    messages = env.message_count(),
                    "no connection to the peer; dropping"
                );
                continue;
            };
            let mut failed = false;
            if tracing::enabled!(tracing::Level::TRACE) {
                for (g, m) in &env.messages {
                    tracing::trace!(
                        shard = g,
                        to = env.to,
                        term = m.term,
                        kind = m.body.name(),
                        "raft message out"
                    );
                }
            }
            for (g, m) in &env.messages {
                for w in wire::message_to_wire(*g, m, SNAPSHOT_CHUNK_BYTES) {
                    failed |= send_wire(&conn, 0, false, &w).is_err();
                }
            }
            if !env.heartbeats.is_empty() {
                let (hb, groups) = wire::heartbeats_to_wire(self.node_id, &env.heartbeats);
                let id = self.rounds.register(env.to, groups);
                failed |= conn.send_request(id, &hb).is_err();
            }
            if !env.heartbeat_responses.is_empty() {
                let multi = &self.multi;
                let frames = wire::heartbeat_responses_to_wire(
                    self.node_id,
                    &env.heartbeat_responses,
                    |g| multi.group(g).map_or(0, |r| r.log().last_index()),
                );
                for (round, resp) in frames {
                    failed |= conn.respond(round, &resp).is_err();
                }
            }
            if failed {
                self.metrics.error(ErrorKind::PeerConnection);
                if conn.is_closing() {
                    if let Some(l) = self.peers.get_mut(&env.to) {
                        l.conn = None;
                    }
                    let _ = self.dial_tx.try_send(env.to);
                }
            }
        }
    }

    fn update_gauges(&self, g: GroupId) {
        let (Some(r), Some(s)) = (self.multi.group(g), self.shards.get(&g)) else {
            return;
        };
        let gg = &s.gauges;
        gg.term.set(r.term());
        gg.role.set(role_gauge(r.role()) as u64);
        if !r.promotable() && r.role() == Role::Follower {
            gg.role.set(RoleGauge::Learner as u64);
        }
        gg.leader_id.set(r.leader());
        gg.commit_index.set(r.log().committed());
        gg.applied_index.set(s.kv.applied_index());
        gg.last_index.set(r.log().last_index());
        gg.durable_index.set(self.wal.durable_index(g));
        gg.keys.set(s.kv.len() as u64);
    }

    /// Fails every waiting request (shutdown or a fatal error).
    pub fn fail_all(&mut self, why: &str) {
        for s in self.shards.values_mut() {
            s.read_queue.clear();
            // Proposed writes may still commit (another leader can carry them on).
            for (_, w) in std::mem::take(&mut s.writes) {
                let _ = w.reply.try_send(Err(ClientError::LeadershipLost));
            }
        }
        for (_, r) in self.reads.drain() {
            let _ = r
                .reply
                .try_send(Err(ClientError::Unavailable(why.to_string())));
        }
    }

    /// Drops waiting requests whose asker gave up (timed out), freeing their slots.
    pub fn sweep_abandoned(&mut self) {
        self.reads.retain(|_, r| !r.reply.is_disconnected());
        let reads = &self.reads;
        for s in self.shards.values_mut() {
            s.writes.retain(|_, w| !w.reply.is_disconnected());
            s.read_queue.retain(|(_, ctx)| reads.contains_key(ctx));
        }
    }

    /// Requests waiting on this core.
    pub fn waiting(&self) -> usize {
        self.reads.len() + self.shards.values().map(|s| s.writes.len()).sum::<usize>()
    }

    /// Per-shard status of this core's shards.
    pub fn status(&self) -> Vec<ShardReport> {
        self.shards
            .keys()
            .filter_map(|g| {
                let r = self.multi.group(*g)?;
                let followers = if r.role() == Role::Leader {
                    r.membership()
                        .members()
                        .filter(|m| *m != self.node_id)
                        .map(|m| {
                            let matched = r.progress(m).map_or(0, |p| p.match_index);
                            FollowerReport {
                                node_id: m,
                                match_index: matched,
                                lag: r.log().last_index().saturating_sub(matched),
                                learner: !r.membership().is_voter(m),
                            }
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                Some(ShardReport {
                    shard: *g,
                    core: self.core,
                    role: format!("{:?}", r.role()),
                    term: r.term(),
                    leader_id: r.leader(),
                    leader_address: self.address_of(r.leader()),
                    commit_index: r.log().committed(),
                    applied_index: self.shards.get(g).map_or(0, |s| s.kv.applied_index()),
                    last_index: r.log().last_index(),
                    voters: r.membership().voters.iter().copied().collect(),
                    learners: r.membership().learners.iter().copied().collect(),
                    followers,
                })
            })
            .collect()
    }
}

/// Queues one owned wire message on a connection, as a request or as the response to
/// `request_id`.
pub fn send_wire(
    conn: &Connection,
    request_id: u64,
    response: bool,
    m: &ringraft_net::message::Message,
) -> Result<usize, ringraft_net::NetError> {
    conn.send_message(crate::node::wire::frame_flags(response), request_id, m)
}

/// One round of the driver: returns false when there was nothing to do.
async fn ready_round(st: &Rc<RefCell<CoreState>>) -> Result<bool, String> {
    let mr = {
        let mut s = st.borrow_mut();
        if !s.multi.has_ready() {
            return Ok(false);
        }
        let mr = s.multi.ready();
        // `has_ready` may report work that `ready` then finds nothing to do for (a leader whose
        // own entries are durable but cannot commit without a quorum): an empty round means
        // "idle", so the driver sleeps until the next kick instead of spinning.
        if mr.envelopes.is_empty()
            && mr.envelopes_after_persist.is_empty()
            && mr.groups.iter().all(|(_, rd)| rd.is_empty())
        {
            return Ok(false);
        }
        s.send_envelopes(&mr.envelopes);
        mr
    };
    let mut persisted = Vec::new();
    let mut appended = 0u64;
    let mut applies: Vec<(GroupId, Ready)> = Vec::with_capacity(mr.groups.len());
    for (g, mut rd) in mr.groups {
        if let Some(ss) = rd.soft_state {
            let s = st.borrow();
            if ss.role == Role::Leader {
                let term = s.multi.group(g).map_or(0, |r| r.term());
                info!(target: crate::node::logging::LEADERSHIP_TARGET, shard = g, term, node = s.node_id, "Became leader");
                s.metrics.leader_elections.inc();
            } else {
                info!(target: crate::node::logging::LEADERSHIP_TARGET, shard = g, role = ?ss.role, leader = ss.leader, "role changed");
            }
        }
        if let Some(snap) = rd.snapshot.take() {
            persist_snapshot(st, g, &snap).await?;
        }
        if !rd.entries.is_empty() {
            let first = rd.entries[0].index;
            {
                let mut s = st.borrow_mut();
                if s.wal.last_index(g) >= first {
                    let applied = s.shards.get(&g).map_or(0, |sh| sh.kv.applied_index());
                    check_truncation(first, applied).map_err(|v| format!("shard {g}: {v}"))?;
                    s.wal
                        .truncate(g, first)
                        .map_err(|e| format!("shard {g}: WAL truncate at {first}: {e}"))?;
                }
            }
            for e in &rd.entries {
                let payload = storage::entry_payload(e);
                append_with_backpressure(st, g, e.index, e.term, &payload).await?;
            }
            appended += rd.entries.len() as u64;
        }
        if let Some(hs) = rd.hard_state {
            let wal_hs = storage::to_wal_hard_state(&hs);
            loop {
                let r = st.borrow_mut().wal.set_hard_state(g, wal_hs);
                match r {
                    Ok(_) => break,
                    Err(e) if is_backpressure(&e) => wait_durable_now(st).await?,
                    Err(e) => return Err(format!("shard {g}: WAL hard state: {e}")),
                }
            }
        }
        // Reported once per Ready that persisted anything, in order, after it is durable.
        if let Some(p) = rd.persisted {
            persisted.push((g, p.0, p.1));
        }
        applies.push((g, rd));
    }
    let batch = {
        let s = st.borrow();
        PersistBatch {
            lsn: s.wal.last_lsn(),
            persisted,
            after: mr.envelopes_after_persist,
            appended,
        }
    };
    let tx = st.borrow().persist_tx.clone();
    if !batch.persisted.is_empty() || !batch.after.is_empty() {
        tx.send_async(batch)
            .await
            .map_err(|_| "the persist loop stopped".to_string())?;
    }
    let mut s = st.borrow_mut();
    for (g, rd) in applies {
        s.apply_ready(g, rd)?;
        s.update_gauges(g);
    }
    Ok(true)
}

fn is_backpressure(e: &ringraft_wal::Error) -> bool {
    matches!(e, ringraft_wal::Error::Backpressure { .. })
}

async fn wait_durable_now(st: &Rc<RefCell<CoreState>>) -> Result<(), String> {
    let w = {
        let s = st.borrow();
        let lsn = s.wal.flush();
        s.wal.wait_durable(lsn)
    };
    w.await.map_err(|e| format!("WAL sync failed: {e}"))
}

async fn append_with_backpressure(
    st: &Rc<RefCell<CoreState>>,
    g: GroupId,
    index: u64,
    term: u64,
    payload: &[u8],
) -> Result<(), String> {
    loop {
        let r = st.borrow_mut().wal.append(g, index, term, payload);
        match r {
            Ok(_) => return Ok(()),
            Err(e) if is_backpressure(&e) => wait_durable_now(st).await?,
            Err(e) => return Err(format!("shard {g}: WAL append of entry {index}: {e}")),
        }
    }
}

async fn persist_snapshot(
    st: &Rc<RefCell<CoreState>>,
    g: GroupId,
    snap: &Snapshot,
) -> Result<(), String> {
    let path = st
        .borrow()
        .shards
        .get(&g)
        .map(|s| s.snapshot_path.clone())
        .ok_or_else(|| format!("shard {g}: unknown"))?;
    // The file is written and fsynced before the WAL forgets anything it covers.
    storage::write_atomically(&path, &storage::encode_snapshot(snap))
        .map_err(|e| format!("shard {g}: cannot write snapshot {}: {e}", path.display()))?;
    let mut s = st.borrow_mut();
    let first = s.wal.first_index(g);
    if s.wal.last_index(g) >= first {
        s.wal
            .truncate(g, first)
            .map_err(|e| format!("shard {g}: WAL truncate for snapshot: {e}"))?;
    }
    if snap.meta.index > 0 {
        s.wal
            .purge(g, snap.meta.index + 1)
            .map_err(|e| format!("shard {g}: WAL purge for snapshot: {e}"))?;
    }
    let kv = if snap.data.is_empty() {
        KvStore::new()
    } else {
        KvStore::restore(&snap.data)
            .map_err(|e| format!("shard {g}: snapshot from the leader: {e}"))?
    };
    if let Some(shard) = s.shards.get_mut(&g) {
        shard.kv = kv;
        shard.fail_writes_through(snap.meta.index);
    }
    if snap.meta.index > 0 {
        info!(
            shard = g,
            index = snap.meta.index,
            term = snap.meta.term,
            "installed snapshot"
        );
    }
    Ok(())
}

impl CoreState {
    fn apply_ready(&mut self, g: GroupId, rd: Ready) -> Result<(), String> {
        let now = Instant::now();
        let leader = self.multi.group(g).map_or(0, |r| r.leader());
        let committed = self.multi.group(g).map_or(0, |r| r.log().committed());
        let not_leader = self.not_leader(leader);
        let Some(shard) = self.shards.get_mut(&g) else {
            return Ok(());
        };
        let mut membership_changed = false;
        for e in &rd.committed_entries {
            self.metrics.entries_committed.inc();
            let result =
                apply_entry(&mut shard.kv, e, committed).map_err(|v| format!("shard {g}: {v}"))?;
            membership_changed |= e.kind == EntryKind::Config;
            self.metrics.entries_applied.inc();
            // Writes proposed at or below this index are decided now.
            while let Some((&i, _)) = shard.writes.first_key_value() {
                if i > e.index {
                    break;
                }
                let Some(w) = shard.writes.remove(&i) else {
                    break;
                };
                let answer = if i == e.index && w.term == e.term {
                    match (&result, e.kind) {
                        (Some(r), _) => Ok(ClientReply::Applied(r.clone())),
                        (None, EntryKind::Config) => Ok(ClientReply::Committed { index: i }),
                        (None, _) => Err(ClientError::Superseded),
                    }
                } else if i == e.index {
                    // Another term's entry committed at the write's index: the write's own
                    // entry can never commit.
                    Err(ClientError::Superseded)
                } else {
                    // The write's index was passed without this core seeing its entry
                    // applied (a snapshot covered it): it may be in the snapshot.
                    Err(ClientError::LeadershipLost)
                };
                self.metrics
                    .commit_latency_us
                    .record(now.duration_since(w.started).as_micros() as u64);
                let _ = w.reply.try_send(answer);
            }
        }
        if membership_changed {
            self.refresh_peers(g);
        }
        for rs in &rd.read_states {
            if let Some(r) = self.reads.get_mut(&rs.ctx) {
                r.index = Some(rs.index);
                if let Some(shard) = self.shards.get_mut(&r.group) {
                    shard.read_queue.insert((rs.index, rs.ctx));
                }
            }
        }
        for ctx in &rd.reads_dropped {
            if let Some(r) = self.reads.remove(ctx) {
                let _ = r.reply.try_send(Err(not_leader.clone()));
            }
        }
        self.serve_ready_reads(g);
        if let Some(at) = rd.snapshot_request {
            self.take_snapshot(g, at);
        }
        Ok(())
    }

    fn serve_ready_reads(&mut self, g: GroupId) {
        let now = Instant::now();
        loop {
            let Some(shard) = self.shards.get_mut(&g) else {
                return;
            };
            let applied = shard.kv.applied_index();
            match shard.read_queue.first() {
                Some(&(index, ctx)) if index <= applied => {
                    shard.read_queue.remove(&(index, ctx));
                    if let Some(r) = self.reads.remove(&ctx) {
                        let res = self.read_local(g, &r.op);
                        self.metrics
                            .read_latency_us
                            .record(now.duration_since(r.started).as_micros() as u64);
                        let _ = r.reply.try_send(res);
                    }
                }
                _ => return,
            }
        }
    }

    fn take_snapshot(&mut self, g: GroupId, _at: u64) {
        let Some(shard) = self.shards.get(&g) else {
            return;
        };
        let index = shard.kv.applied_index();
        let data = shard.kv.snapshot();
        let path = shard.snapshot_path.clone();
        let Some(raft) = self.multi.group_mut(g) else {
            return;
        };
        if let Err(e) = raft.compact(index, data) {
            debug!(shard = g, "snapshot at {index} not taken: {e}");
            return;
        }
        let Some(snap) = raft.snapshot().cloned() else {
            return;
        };
        match storage::write_atomically(&path, &storage::encode_snapshot(&snap)) {
            Ok(()) => {
                if let Err(e) = self.wal.purge(g, snap.meta.index + 1) {
                    warn!(
                        shard = g,
                        "WAL purge after snapshot at {}: {e}", snap.meta.index
                    );
                }
                info!(shard = g, index = snap.meta.index, "snapshot taken");
            }
            Err(e) => {
                self.metrics.error(ErrorKind::WalIo);
                warn!(shard = g, "cannot write snapshot {}: {e}", path.display());
            }
        }
    }

    /// Makes sure every member of `g`'s membership with a known address has a link.
    fn refresh_peers(&mut self, g: GroupId) {
        let Some(r) = self.multi.group(g) else {
            return;
        };
        let members: Vec<NodeId> = r.membership().members().collect();
        for m in members {
            if m != self.node_id && !self.peers.contains_key(&m) {
                warn!(
                    shard = g,
                    node = m,
                    "member without a known address; it cannot be reached until it connects"
                );
            }
        }
    }

    /// Records a peer's address (from a learner's join request) and asks for a link.
    pub fn learn_address(&mut self, node: NodeId, address: String) {
        if node == self.node_id {
            return;
        }
        let known = self.peers.get(&node).map(|p| p.address.clone());
        if known.as_deref() != Some(address.as_str()) {
            self.peers.insert(
                node,
                PeerLink {
                    address,
                    conn: None,
                },
            );
            let _ = self.dial_tx.try_send(node);
        }
    }
}

/// The driver loop: runs ready rounds whenever something happened (a kick).
pub async fn drive(st: Rc<RefCell<CoreState>>, kick_rx: flume::Receiver<()>) {
    while kick_rx.recv_async().await.is_ok() {
        loop {
            match ready_round(&st).await {
                Ok(true) => glommio::yield_if_needed().await,
                Ok(false) => break,
                Err(e) => {
                    error!("core stopped: {e}");
                    let mut s = st.borrow_mut();
                    s.metrics.error(ErrorKind::WalIo);
                    s.fail_all(&e);
                    s.fatal = Some(e);
                    return;
                }
            }
        }
    }
}

/// The persist loop: waits for each batch to be durable, then reports it to the Raft core and
/// sends what had to wait for durability.
pub async fn persist_loop(
    st: Rc<RefCell<CoreState>>,
    rx: flume::Receiver<PersistBatch>,
    durability: ringraft_wal::Durability,
) {
    while let Ok(b) = rx.recv_async().await {
        let t0 = Instant::now();
        if let Err(e) = durability.wait(b.lsn).await {
            let msg = format!("WAL sync failed: {e}");
            error!("{msg}");
            let mut s = st.borrow_mut();
            s.metrics.error(ErrorKind::WalIo);
            s.fail_all(&msg);
            s.fatal = Some(msg);
            return;
        }
        let mut s = st.borrow_mut();
        if b.appended > 0 {
            s.metrics
                .fsync_latency_us
                .record(t0.elapsed().as_micros() as u64);
            s.metrics.fsync_batch_entries.record(b.appended);
        }
        debug!(
            lsn = b.lsn,
            waited_us = t0.elapsed().as_micros() as u64,
            after = b.after.len(),
            "persisted"
        );
        for (g, index, term) in b.persisted {
            if let Err(e) = s.multi.on_persisted(g, index, term) {
                debug!(shard = g, "on_persisted: {e}");
            }
        }
        s.send_envelopes(&b.after);
        s.kick();
    }
}

/// The clock: Raft ticks follow the monotonic clock, one per `tick_interval_ms` of real time.
/// When the executor was late, every missed tick is delivered at once (never skipped, never
/// early): a leader's lease, counted in ticks, must not outlast real time on a loaded machine,
/// and a follower's election timeout means the same real time it says. Every 100 ticks abandoned
/// requests are swept.
pub async fn tick_loop(st: Rc<RefCell<CoreState>>, tick: Duration) {
    let start = Instant::now();
    let tick_us = tick.as_micros().max(1) as u64;
    let mut done: u64 = 0;
    loop {
        let next = Duration::from_micros((done + 1) * tick_us);
        let now = start.elapsed();
        if next > now {
            glommio::timer::sleep(next - now).await;
        }
        let due = start.elapsed().as_micros() as u64 / tick_us;
        let mut s = st.borrow_mut();
        if s.fatal.is_some() {
            return;
        }
        let n = due.saturating_sub(done).max(1);
        for _ in 0..n {
            s.multi.tick();
            done += 1;
            if done.is_multiple_of(100) {
                s.sweep_abandoned();
            }
        }
        s.kick();
    }
}

/// Syncs the WAL (shutdown).
pub async fn sync_wal(st: &Rc<RefCell<CoreState>>) -> Result<(), String> {
    wait_durable_now(st).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> Config {
        Config::from_toml_with_env(text, &[]).unwrap()
    }

    const THREE: &str = r#"
[cluster]
node_id = 2
listen_address = "127.0.0.1:9082"
initial_cluster = [
    { id = 1, address = "127.0.0.1:9081", role = 1, status = 2 },
    { id = 2, address = "127.0.0.1:9082", role = 1, status = 2 },
    { id = 3, address = "127.0.0.1:9083", role = 1, status = 2 },
    { id = 4, address = "127.0.0.1:9084", role = 3, status = 0 },
]
[monitoring]
metrics_port = 8082
"#;

    #[test]
    fn raft_config_maps_timing_and_bounds() {
        let c = cfg(THREE);
        let r = raft_config(&c, 3);
        assert_eq!(r.id, 2);
        assert_eq!(r.election_timeout_min_ticks, 60);
        assert_eq!(r.election_timeout_max_ticks, 120);
        assert_eq!(r.heartbeat_interval_ticks, 10);
        // lease 500 ms = 50 ticks of the 60-tick minimum election timeout.
        assert_eq!(r.lease_ticks(), 50);
        assert_eq!(r.durability, Durability::DiskFirst);
        assert!(r.validate().is_ok());
        assert_ne!(raft_config(&c, 1).seed, r.seed);
    }

    fn cas_value(key_len: usize, value_len: usize) -> Command {
        Command {
            client_id: 1,
            seq: 1,
            op: WriteOp::CasValue {
                key: vec![b'k'; key_len],
                expected: Some(vec![1; value_len]),
                new: vec![2; value_len],
            },
        }
    }

    /// Whatever admission lets through fits one WAL record of this node's WAL (opened with the
    /// node's own options), and what would not fit is refused as too large before proposing.
    #[test]
    fn admitted_writes_always_fit_the_wal() {
        let small_segments = format!(
            "{THREE}\n[raft.persistence]\nsegment_bytes = 1048576\n[state_machine]\nmax_value_bytes = 1048576\n"
        );
        for text in [THREE.to_string(), small_segments] {
            let c = cfg(&text);
            let adm = Admission::from_config(&c);
            let dir = std::env::temp_dir().join(format!(
                "ringraft-admit-{}-{}",
                std::process::id(),
                c.raft.persistence.segment_bytes
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let mut wal = ringraft_wal::Wal::open(&dir, storage::wal_options(&c)).unwrap();
            let max_v = adm.max_value_bytes;
            let mut index = 0;
            // A value-based CAS carries two values: both at the value limit.
            for cmd in [cas_value(16, max_v), cas_value(adm.max_key_bytes, max_v)] {
                let entry = crate::raft::Entry {
                    index: 0,
                    term: 1,
                    kind: EntryKind::Normal,
                    data: cmd.encode().into(),
                };
                let payload = storage::entry_payload(&entry);
                match admit(&cmd, &adm) {
                    Ok(()) => {
                        index += 1;
                        wal.append(0, index, 1, &payload)
                            .expect("an admitted write must fit the WAL");
                    }
                    Err(ClientError::TooLarge { bytes, limit }) => {
                        assert_eq!(bytes as usize, cmd.encoded_len());
                        assert!(bytes > limit);
                        assert_eq!(
                            ClientError::TooLarge { bytes, limit }.class(),
                            crate::node::request::ErrorClass::NotApplied
                        );
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            drop(wal);
            let _ = std::fs::remove_dir_all(&dir);
        }
        // 1 MiB segments hold records of at most 512 KiB: a 1 MiB put is refused up front.
        let c = cfg(&format!(
            "{THREE}\n[raft.persistence]\nsegment_bytes = 1048576\n"
        ));
        let put = Command {
            client_id: 0,
            seq: 0,
            op: WriteOp::Put {
                key: b"k".to_vec(),
                value: vec![0; 1 << 20],
            },
        };
        assert!(matches!(
            admit(&put, &Admission::from_config(&c)),
            Err(ClientError::TooLarge { .. })
        ));
    }

    #[test]
    fn initial_membership_from_roles() {
        let m = initial_membership(&cfg(THREE));
        assert_eq!(m.voters.iter().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(m.learners.iter().copied().collect::<Vec<_>>(), vec![4]);
        let learner = THREE
            .replace("node_id = 2", "node_id = 4")
            .replace("9082\"\ninitial", "9084\"\ninitial");
        let c = cfg(&learner);
        assert!(c.is_joining_learner());
        assert!(initial_membership(&c).voters.is_empty());
        let single = "[cluster]\nnode_id = 7\nlisten_address = \"127.0.0.1:9100\"\n[monitoring]\nmetrics_port = 8100\n";
        assert_eq!(
            initial_membership(&cfg(single))
                .voters
                .iter()
                .copied()
                .collect::<Vec<_>>(),
            vec![7]
        );
    }
}
