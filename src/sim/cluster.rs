//! The simulated cluster: N nodes, each hosting G groups of the real core in a [`MultiRaft`], with
//! simulated storage (durable vs pending, see [`super::storage`]), the node's own key-value
//! state machine ([`KvStore`]) per group, applied through the node's own
//! [`apply_entry`](crate::node::kv::apply::apply_entry), and a network that is either *timed* (seeded delays, drops, duplicates, partitions;
//! used by the random runner) or *manual* (an outbox the scenario scripts deliver explicitly).
//! Everything runs on one thread from one seed, so a run is replayed exactly by its seed.
//! After every step that touched a node, [`super::invariants`] checks all its replicas.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use crate::raft::multi::MultiError;
use crate::raft::rng::Rng;
use crate::raft::{
    Config, Durability, EntryKind, Envelope, GroupId, Membership, MessageBody, MultiRaft, NodeId,
    ProposeError, Raft, ReadError, ReadMode, ReadState, Role, StepError,
};

use super::invariants::{Invariants, Violation};
use super::storage::{GroupWrite, NodeStorage, PendingWrite};
use crate::node::kv::apply::apply_entry;
use crate::node::kv::{ApplyResult, KvStore, PlantedFault};

/// Maximum trace lines kept for a failure report.
pub const TRACE_LINES_MAX: usize = 64;
/// A node's `Ready` loop must go quiet within this many rounds (else the core spins).
pub const READY_ROUNDS_MAX: usize = 1_000;
/// Simulated time units per tick at nominal rate.
pub const TICK_PERIOD_NOMINAL: u64 = 1_000;

/// Cluster shape and Raft knobs.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// Nodes (ids 1..=nodes).
    pub nodes: u64,
    /// Groups (ids 1..=groups).
    pub groups: u64,
    /// Initial voters per group (the first ones); the rest join later as learners.
    pub initial_voters: u64,
    /// Acknowledgement mode.
    pub durability: Durability,
    /// PreVote.
    pub pre_vote: bool,
    /// CheckQuorum (and lease reads).
    pub check_quorum: bool,
    /// Snapshot threshold.
    pub snapshot_threshold_entries: u64,
    /// Entries kept behind a snapshot.
    pub log_retain_entries: u64,
    /// Entries per append.
    pub max_entries_per_msg: usize,
    /// In-flight window.
    pub max_inflight_msgs: usize,
    /// Test-only rule breakers.
    pub unsafe_commit_previous_term: bool,
    /// Test-only rule breakers.
    pub unsafe_skip_vote_log_check: bool,
    /// Max tick-rate skew in parts per thousand (each node's tick period differs by up to this).
    pub tick_skew_permille: u64,
    /// Fsync delay range (time units).
    pub fsync_delay: (u64, u64),
    /// Test-only: a fault planted in every replica's key-value state machine.
    pub planted_kv_fault: PlantedFault,
    /// Message delay range (time units).
    pub net_delay: (u64, u64),
    /// Drop probability (ppm).
    pub drop_ppm: u32,
    /// Duplicate probability (ppm).
    pub dup_ppm: u32,
}

impl Knobs {
    /// Defaults: 3 nodes, 1 group, DiskFirst, PreVote + CheckQuorum, a perfect network.
    pub fn new(nodes: u64, groups: u64) -> Knobs {
        Knobs {
            nodes,
            groups,
            initial_voters: nodes,
            durability: Durability::DiskFirst,
            pre_vote: true,
            check_quorum: true,
            snapshot_threshold_entries: 64,
            log_retain_entries: 8,
            max_entries_per_msg: 16,
            max_inflight_msgs: 8,
            unsafe_commit_previous_term: false,
            unsafe_skip_vote_log_check: false,
            tick_skew_permille: 0,
            fsync_delay: (50, 400),
            planted_kv_fault: PlantedFault::None,
            net_delay: (50, 1_500),
            drop_ppm: 0,
            dup_ppm: 0,
        }
    }

    /// The replica config of `node` in `group` for incarnation `inc`.
    pub fn raft_config(&self, node: NodeId, group: GroupId, inc: u64, seed: u64) -> Config {
        let mut c = Config::new(node);
        c.seed = seed ^ (node << 40) ^ (group << 20) ^ inc.wrapping_mul(0x9E37_79B9);
        c.pre_vote = self.pre_vote;
        c.check_quorum = self.check_quorum;
        c.lease_read = self.check_quorum;
        c.durability = self.durability;
        c.snapshot_threshold_entries = self.snapshot_threshold_entries;
        c.log_retain_entries = self.log_retain_entries;
        c.max_entries_per_msg = self.max_entries_per_msg;
        c.max_inflight_msgs = self.max_inflight_msgs;
        c.max_uncommitted_entries = 256;
        c.unsafe_commit_previous_term = self.unsafe_commit_previous_term;
        c.unsafe_skip_vote_log_check = self.unsafe_skip_vote_log_check;
        c
    }
}

/// What clients learn from the cluster.
#[derive(Debug, Clone)]
pub enum Note {
    /// `node` applied a normal entry.
    Applied {
        /// Node.
        node: NodeId,
        /// Group.
        group: GroupId,
        /// Index.
        index: u64,
        /// Payload.
        data: Arc<[u8]>,
        /// Result (`None`: the store saw the index before, which the apply checks refuse).
        result: Option<ApplyResult>,
    },
    /// A read may be served now from `node`'s state machine.
    ReadReady {
        /// Node.
        node: NodeId,
        /// Group.
        group: GroupId,
        /// Request id.
        ctx: u64,
    },
    /// A read will never complete.
    ReadDropped {
        /// Node.
        node: NodeId,
        /// Group.
        group: GroupId,
        /// Request id.
        ctx: u64,
    },
    /// The node crashed (everything it was doing is lost).
    Crashed {
        /// Node.
        node: NodeId,
    },
}

/// One simulated node.
#[derive(Debug)]
pub struct SimNode {
    /// Id.
    pub id: NodeId,
    /// The groups, `None` while crashed.
    pub multi: Option<MultiRaft>,
    /// Storage (durable part survives crashes).
    pub storage: NodeStorage,
    /// State machines (lost on crash, rebuilt from the snapshot).
    pub kvs: BTreeMap<GroupId, KvStore>,
    parked_reads: Vec<(GroupId, ReadState)>,
    /// Restarts so far.
    pub incarnation: u64,
    /// Time units per tick.
    pub tick_period: u64,
    fsync_scheduled: bool,
}

/// A scheduled event (timed mode).
#[derive(Debug, Clone)]
pub enum Event {
    /// Tick a node.
    Tick(NodeId),
    /// Deliver an envelope.
    Deliver(Envelope),
    /// Fsync a node's oldest pending write.
    Fsync(NodeId),
    /// Restart a crashed node.
    Restart(NodeId),
    /// Something for the workload (client id).
    Client(u64),
    /// Fault injection decision.
    Chaos,
}

/// Counters.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Envelopes sent.
    pub envelopes: u64,
    /// Raft messages inside them.
    pub messages: u64,
    /// Envelopes dropped.
    pub dropped: u64,
    /// Crashes.
    pub crashes: u64,
    /// Entries applied (all nodes).
    pub applied: u64,
    /// Snapshots taken.
    pub snapshots: u64,
    /// Snapshots installed.
    pub snapshots_installed: u64,
    /// Elections won.
    pub leaders_elected: u64,
}

/// The cluster.
pub struct Cluster {
    /// Simulated time.
    pub now: u64,
    /// Nodes.
    pub nodes: BTreeMap<NodeId, SimNode>,
    /// Knobs.
    pub knobs: Knobs,
    /// Invariant checker.
    pub inv: Invariants,
    /// Notes for clients since last drained.
    pub notes: Vec<Note>,
    /// Seeded randomness.
    pub rng: Rng,
    seed: u64,
    events: BTreeMap<(u64, u64), Event>,
    seq: u64,
    /// Manual mode: envelopes waiting for `deliver`.
    pub outbox: VecDeque<Envelope>,
    manual: bool,
    /// Manual mode: persist immediately.
    pub auto_persist: bool,
    /// Blocked directed links.
    pub blocked: BTreeSet<(NodeId, NodeId)>,
    /// Recent events, for failure reports.
    pub trace: VecDeque<String>,
    /// Counters.
    pub stats: Stats,
}

impl Cluster {
    /// A fresh cluster. `manual`: scripted delivery (no timed events).
    pub fn new(knobs: Knobs, seed: u64, manual: bool) -> Result<Cluster, Violation> {
        let mut rng = Rng::new(seed);
        let mut nodes = BTreeMap::new();
        let voters = Membership::with_voters(1..=knobs.initial_voters);
        for id in 1..=knobs.nodes {
            let mut multi = MultiRaft::new(id);
            let mut kvs = BTreeMap::new();
            for g in 1..=knobs.groups {
                let m = if id <= knobs.initial_voters {
                    voters.clone()
                } else {
                    Membership::default()
                };
                let raft = Raft::new(knobs.raft_config(id, g, 0, seed), m)
                    .map_err(|e| Violation(format!("config: {e}")))?;
                multi
                    .add_group(g, raft)
                    .map_err(|e| Violation(e.to_string()))?;
                kvs.insert(g, new_store(&knobs));
            }
            let skew = knobs.tick_skew_permille;
            let tick_period = TICK_PERIOD_NOMINAL - TICK_PERIOD_NOMINAL * skew / 1000
                + rng.below(2 * TICK_PERIOD_NOMINAL * skew / 1000 + 1);
            nodes.insert(
                id,
                SimNode {
                    id,
                    multi: Some(multi),
                    storage: NodeStorage::default(),
                    kvs,
                    parked_reads: Vec::new(),
                    incarnation: 0,
                    tick_period,
                    fsync_scheduled: false,
                },
            );
        }
        let mut c = Cluster {
            now: 0,
            nodes,
            knobs,
            inv: Invariants::default(),
            notes: Vec::new(),
            rng,
            seed,
            events: BTreeMap::new(),
            seq: 0,
            outbox: VecDeque::new(),
            manual,
            auto_persist: true,
            blocked: BTreeSet::new(),
            trace: VecDeque::new(),
            stats: Stats::default(),
        };
        let ids: Vec<NodeId> = c.nodes.keys().copied().collect();
        for id in ids {
            if !manual {
                let first = c.rng.below(TICK_PERIOD_NOMINAL) + 1;
                c.schedule(first, Event::Tick(id));
            }
            c.process(id)?;
        }
        Ok(c)
    }

    /// Adds an event `delay` after now.
    pub fn schedule(&mut self, delay: u64, ev: Event) {
        self.seq += 1;
        self.events.insert((self.now + delay, self.seq), ev);
    }

    /// Records a trace line.
    pub fn log(&mut self, line: String) {
        if self.trace.len() >= TRACE_LINES_MAX {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    /// The replica of `group` on `node`, if the node is up.
    pub fn raft(&self, node: NodeId, group: GroupId) -> Option<&Raft> {
        self.nodes.get(&node)?.multi.as_ref()?.group(group)
    }

    /// Mutable replica access (call `process(node)` afterwards).
    pub fn raft_mut(&mut self, node: NodeId, group: GroupId) -> Option<&mut Raft> {
        self.nodes.get_mut(&node)?.multi.as_mut()?.group_mut(group)
    }

    /// The live leader of `group` with the highest term.
    pub fn leader_of(&self, group: GroupId) -> Option<NodeId> {
        self.nodes
            .keys()
            .filter_map(|&n| self.raft(n, group).map(|r| (n, r)))
            .filter(|(_, r)| r.role() == Role::Leader)
            .max_by_key(|(_, r)| r.term())
            .map(|(n, _)| n)
    }

    /// True if `node` is up.
    pub fn is_up(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|n| n.multi.is_some())
    }

    /// Proposes a command on `node`.
    pub fn propose(
        &mut self,
        node: NodeId,
        group: GroupId,
        data: Vec<u8>,
    ) -> Result<Result<u64, ProposeError>, Violation> {
        let Some(r) = self.raft_mut(node, group) else {
            return Ok(Err(ProposeError::NotLeader { leader: 0 }));
        };
        let res = r.propose(data);
        self.process(node)?;
        Ok(res)
    }

    /// Requests a read on `node`.
    pub fn read(
        &mut self,
        node: NodeId,
        group: GroupId,
        ctx: u64,
        mode: ReadMode,
    ) -> Result<Result<(), ReadError>, Violation> {
        let Some(r) = self.raft_mut(node, group) else {
            return Ok(Err(ReadError::NotLeader { leader: 0 }));
        };
        let res = r.read(ctx, mode);
        self.process(node)?;
        Ok(res)
    }

    /// Runs the node's `Ready` loop, persisting, sending, applying; then checks invariants.
    pub fn process(&mut self, id: NodeId) -> Result<(), Violation> {
        let mut rounds = 0;
        loop {
            rounds += 1;
            let Some(node) = self.nodes.get_mut(&id) else {
                return Ok(());
            };
            let Some(multi) = node.multi.as_mut() else {
                return Ok(());
            };
            if !multi.has_ready() {
                break;
            }
            if rounds > READY_ROUNDS_MAX {
                return Err(Violation(format!(
                    "node {id}: has_ready() stays true after {READY_ROUNDS_MAX} rounds"
                )));
            }
            let mr = multi.ready();
            let mut write = PendingWrite::default();
            let mut snap_writes = Vec::new();
            for (g, mut rd) in mr.groups {
                if let Some(ss) = rd.soft_state {
                    if ss.role == Role::Leader {
                        self.stats.leaders_elected += 1;
                    }
                }
                let gw = GroupWrite {
                    snapshot: rd.snapshot.clone(),
                    entries: std::mem::take(&mut rd.entries),
                    hard_state: rd.hard_state,
                    mark: rd.persisted,
                };
                if gw.snapshot.is_some()
                    || !gw.entries.is_empty()
                    || gw.hard_state.is_some()
                    || gw.mark.is_some()
                {
                    write.groups.insert(g, gw);
                }
                let node = self
                    .nodes
                    .get_mut(&id)
                    .ok_or_else(|| Violation("node vanished".into()))?;
                if let Some(s) = &rd.snapshot {
                    if s.meta.index > 0 {
                        self.stats.snapshots_installed += 1;
                    }
                    let kv = restore_store(&self.knobs, &s.data)
                        .map_err(|e| Violation(format!("node {id} group {g}: {e}")))?;
                    node.kvs.insert(g, kv);
                }
                let committed = node
                    .multi
                    .as_ref()
                    .and_then(|m| m.group(g))
                    .map_or(0, |r| r.log().committed());
                for e in &rd.committed_entries {
                    self.inv.check_apply(g, id, e)?;
                    let kv = node.kvs.entry(g).or_insert_with(|| new_store(&self.knobs));
                    let result = apply_entry(kv, e, committed)
                        .map_err(|v| Violation(format!("node {id} group {g}: {v}")))?;
                    self.stats.applied += 1;
                    if e.kind == EntryKind::Normal {
                        self.notes.push(Note::Applied {
                            node: id,
                            group: g,
                            index: e.index,
                            data: e.data.clone(),
                            result,
                        });
                    }
                }
                node.parked_reads
                    .extend(rd.read_states.iter().map(|rs| (g, *rs)));
                for ctx in rd.reads_dropped {
                    self.notes.push(Note::ReadDropped {
                        node: id,
                        group: g,
                        ctx,
                    });
                }
                if rd.snapshot_request.is_some() {
                    let (applied, data) = node
                        .kvs
                        .get(&g)
                        .map_or((0, Vec::new()), |kv| (kv.applied_index(), kv.snapshot()));
                    if let Some(r) = node.multi.as_mut().and_then(|m| m.group_mut(g)) {
                        if r.compact(applied, data).is_ok() {
                            self.stats.snapshots += 1;
                            if let Some(s) = r.snapshot().cloned() {
                                snap_writes.push((g, s));
                            }
                        }
                    }
                }
            }
            let node = self
                .nodes
                .get_mut(&id)
                .ok_or_else(|| Violation("node vanished".into()))?;
            // Serve reads whose index is applied.
            let mut ready_reads = Vec::new();
            node.parked_reads.retain(|(g, rs)| {
                let applied = node.kvs.get(g).map_or(0, |k| k.applied_index());
                if applied >= rs.index {
                    ready_reads.push((*g, rs.ctx));
                    false
                } else {
                    true
                }
            });
            for (g, ctx) in ready_reads {
                self.notes.push(Note::ReadReady {
                    node: id,
                    group: g,
                    ctx,
                });
            }
            write.after = mr.envelopes_after_persist;
            let has_write = !write.groups.is_empty() || !write.after.is_empty();
            if has_write {
                node.storage.pending.push_back(write);
            }
            for (g, s) in snap_writes {
                let mut w = PendingWrite::default();
                w.groups.insert(
                    g,
                    GroupWrite {
                        snapshot: Some(s),
                        ..GroupWrite::default()
                    },
                );
                node.storage.pending.push_back(w);
            }
            for env in mr.envelopes {
                self.send(env);
            }
            self.schedule_fsync(id)?;
        }
        self.check_node(id)
    }

    fn schedule_fsync(&mut self, id: NodeId) -> Result<(), Violation> {
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        if node.storage.pending.is_empty() {
            return Ok(());
        }
        if self.manual {
            if self.auto_persist {
                self.fsync(id, usize::MAX)?;
            }
            return Ok(());
        }
        if !node.fsync_scheduled {
            node.fsync_scheduled = true;
            let d = self
                .rng
                .range(self.knobs.fsync_delay.0, self.knobs.fsync_delay.1 + 1);
            self.schedule(d, Event::Fsync(id));
        }
        Ok(())
    }

    /// Makes up to `max` pending writes of `id` durable, sends what waited for them, reports marks.
    pub fn fsync(&mut self, id: NodeId, max: usize) -> Result<(), Violation> {
        let mut done = 0;
        while done < max {
            let Some(node) = self.nodes.get_mut(&id) else {
                return Ok(());
            };
            if node.multi.is_none() {
                return Ok(());
            }
            let Some(w) = node.storage.fsync_one() else {
                break;
            };
            done += 1;
            if let Some(multi) = node.multi.as_mut() {
                for (g, gw) in &w.groups {
                    if let Some((i, t)) = gw.mark {
                        multi
                            .on_persisted(*g, i, t)
                            .map_err(|e| Violation(e.to_string()))?;
                    }
                }
            }
            for env in w.after {
                self.send(env);
            }
        }
        self.process(id)
    }

    fn check_node(&mut self, id: NodeId) -> Result<(), Violation> {
        let Some(node) = self.nodes.get(&id) else {
            return Ok(());
        };
        let Some(multi) = node.multi.as_ref() else {
            return Ok(());
        };
        for (g, r) in multi.groups() {
            self.inv.check_replica(g, node.incarnation, r)?;
        }
        Ok(())
    }

    /// Sends an envelope over the (timed or manual) network.
    pub fn send(&mut self, env: Envelope) {
        self.stats.envelopes += 1;
        self.stats.messages += env.message_count() as u64;
        if self.manual {
            self.outbox.push_back(env);
            return;
        }
        if self.blocked.contains(&(env.from, env.to)) || self.rng.chance_ppm(self.knobs.drop_ppm) {
            self.stats.dropped += 1;
            return;
        }
        let (lo, hi) = self.knobs.net_delay;
        if self.rng.chance_ppm(self.knobs.dup_ppm) {
            let d = self.rng.range(lo, hi + 1);
            self.schedule(d, Event::Deliver(env.clone()));
        }
        let d = self.rng.range(lo, hi + 1);
        self.schedule(d, Event::Deliver(env));
    }

    /// Hands an envelope to its destination now.
    pub fn deliver(&mut self, env: Envelope) -> Result<(), Violation> {
        let to = env.to;
        if self.blocked.contains(&(env.from, env.to)) {
            self.stats.dropped += 1;
            return Ok(());
        }
        let Some(multi) = self.nodes.get_mut(&to).and_then(|n| n.multi.as_mut()) else {
            return Ok(());
        };
        let desc = describe(&env);
        match multi.step(env) {
            Ok(()) | Err(MultiError::UnknownGroup(_)) => {}
            Err(MultiError::Step(g, StepError::CommittedConflict(c))) => {
                return Err(Violation(format!(
                    "group {g} node {to}: a leader tried to overwrite committed entry {} ({desc})",
                    c.index
                )))
            }
            Err(e) => return Err(Violation(format!("node {to}: {e}"))),
        }
        self.process(to)
    }

    /// Ticks a node once.
    pub fn tick(&mut self, id: NodeId) -> Result<(), Violation> {
        if let Some(m) = self.nodes.get_mut(&id).and_then(|n| n.multi.as_mut()) {
            m.tick();
        }
        self.process(id)
    }

    /// Crashes a node: its groups, state machines and unsynced writes are gone.
    pub fn crash(&mut self, id: NodeId) {
        let Some(node) = self.nodes.get_mut(&id) else {
            return;
        };
        if node.multi.is_none() {
            return;
        }
        node.multi = None;
        let lost = node.storage.crash();
        let hs: Vec<String> = node
            .storage
            .durable
            .iter()
            .map(|(g, st)| {
                format!(
                    "g{g}:t{}v{}c{}",
                    st.hard_state.term, st.hard_state.vote, st.hard_state.commit
                )
            })
            .collect();
        let line = format!(
            "t={} crash {id}: {lost} unsynced writes lost; durable {}",
            self.now,
            hs.join(" ")
        );
        node.kvs.clear();
        node.parked_reads.clear();
        node.fsync_scheduled = false;
        node.incarnation += 1;
        self.stats.crashes += 1;
        self.notes.push(Note::Crashed { node: id });
        self.log(line);
    }

    /// Restarts a crashed node from its durable storage.
    pub fn restart(&mut self, id: NodeId) -> Result<(), Violation> {
        let seed = self.seed;
        let knobs = self.knobs.clone();
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        if node.multi.is_some() {
            return Ok(());
        }
        let mut multi = MultiRaft::new(id);
        for g in 1..=knobs.groups {
            let st = node.storage.durable.get(&g).cloned().unwrap_or_default();
            let kv = restore_store(&knobs, &st.snapshot.data)
                .map_err(|e| Violation(format!("node {id}: durable snapshot: {e}")))?;
            let cfg = knobs.raft_config(id, g, node.incarnation, seed);
            let raft =
                Raft::restart(cfg, st.restart_state()).map_err(|e| Violation(e.to_string()))?;
            multi
                .add_group(g, raft)
                .map_err(|e| Violation(e.to_string()))?;
            node.kvs.insert(g, kv);
        }
        node.multi = Some(multi);
        if !self.manual {
            let p = node.tick_period;
            self.schedule(p, Event::Tick(id));
        }
        self.process(id)
    }

    /// Timed mode: runs the next event. `Ok(None)` when there is none; client and chaos events
    /// are returned to the caller.
    pub fn step(&mut self) -> Result<Option<Event>, Violation> {
        let Some((&(t, s), _)) = self.events.iter().next() else {
            return Ok(None);
        };
        let Some(ev) = self.events.remove(&(t, s)) else {
            return Ok(None);
        };
        self.now = t;
        match &ev {
            Event::Tick(id) => {
                let id = *id;
                if self.is_up(id) {
                    self.tick(id)?;
                    let p = self
                        .nodes
                        .get(&id)
                        .map_or(TICK_PERIOD_NOMINAL, |n| n.tick_period);
                    self.schedule(p, Event::Tick(id));
                }
            }
            Event::Deliver(env) => {
                let line = format!("t={} deliver {}", self.now, describe(env));
                self.log(line);
                self.deliver(env.clone())?;
            }
            Event::Fsync(id) => {
                let id = *id;
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.fsync_scheduled = false;
                }
                self.fsync(id, 1)?;
                self.schedule_fsync(id)?;
            }
            Event::Restart(id) => {
                let line = format!("t={} restart {id}", self.now);
                self.log(line);
                self.restart(*id)?;
            }
            Event::Client(_) | Event::Chaos => return Ok(Some(ev)),
        }
        Ok(Some(ev))
    }
}

/// A fresh store with the knobs' planted fault (if any).
fn new_store(knobs: &Knobs) -> KvStore {
    let mut kv = KvStore::new();
    kv.plant_fault(knobs.planted_kv_fault);
    kv
}

/// The store of a snapshot's data (empty data: the empty store of a fresh group).
fn restore_store(knobs: &Knobs, data: &[u8]) -> Result<KvStore, String> {
    let mut kv = if data.is_empty() {
        KvStore::new()
    } else {
        KvStore::restore(data).map_err(|e| format!("bad snapshot bytes: {e}"))?
    };
    kv.plant_fault(knobs.planted_kv_fault);
    Ok(kv)
}

/// A one-line description of an envelope for traces.
pub fn describe(env: &Envelope) -> String {
    let mut s = format!("{}->{}", env.from, env.to);
    for (g, m) in &env.messages {
        let extra = match &m.body {
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => format!(
                " prev={prev_index}/{prev_term} n={} commit={commit}",
                entries.len()
            ),
            MessageBody::AppendResponse { index, reject } => {
                format!(" idx={index}{}", if reject.is_some() { " rej" } else { "" })
            }
            MessageBody::VoteResponse { reject } | MessageBody::PreVoteResponse { reject } => {
                (if *reject { " rej" } else { " ok" }).to_string()
            }
            _ => String::new(),
        };
        s.push_str(&format!(" [g{g} {} t{}{extra}]", m.body.name(), m.term));
    }
    if !env.heartbeats.is_empty() {
        s.push_str(&format!(" [{} heartbeats]", env.heartbeats.len()));
    }
    if !env.heartbeat_responses.is_empty() {
        s.push_str(&format!(
            " [{} heartbeat acks]",
            env.heartbeat_responses.len()
        ));
    }
    s
}

impl Cluster {
    /// A multi-line description of every replica (for failure reports and debugging).
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for g in 1..=self.knobs.groups {
            for (&id, n) in &self.nodes {
                let Some(r) = n.multi.as_ref().and_then(|m| m.group(g)) else {
                    s.push_str(&format!("g{g} n{id}: down\n"));
                    continue;
                };
                let l = r.log();
                s.push_str(&format!(
                    "g{g} n{id}: {:?} term={} leader={} offset={} last={}/{} commit={} durable={} members={:?}/{:?}\n",
                    r.role(), r.term(), r.leader(), l.offset(), l.last_index(), l.last_term(), l.committed(), l.durable(),
                    r.membership().voters, r.membership().learners
                ));
                if r.role() == Role::Leader {
                    for (p, pr) in r
                        .membership()
                        .members()
                        .filter(|&p| p != id)
                        .filter_map(|p| r.progress(p).map(|x| (p, x)))
                    {
                        s.push_str(&format!(
                            "    progress {p}: match={} next={} {:?} paused={}\n",
                            pr.match_index,
                            pr.next_index,
                            pr.state,
                            pr.is_paused()
                        ));
                    }
                }
            }
        }
        s
    }
}
