//! The simulated cluster: N nodes, each hosting G groups of the real core in a [`MultiRaft`],
//! run by the node's own Ready loop ([`crate::node::driver::Driver`]) over the node's key-value
//! state machine ([`KvStore`], through [`apply_entry`](crate::node::kv::apply::apply_entry)), with
//! simulated storage as the driver's storage (durable vs pending, see [`super::storage`]) and a
//! network that is either *timed* (seeded delays, drops, duplicates, partitions; used by the
//! random runner) or *manual* (an outbox the scenario scripts deliver explicitly) as its
//! transport. Client answers come from the driver's pending-write table and read queue, on the
//! same one-shot channels the node's clients read. Everything runs on one thread from one seed,
//! so a run is replayed exactly by its seed. After every step that touched a node,
//! [`super::invariants`] checks all its replicas.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::raft::multi::MultiError;
use crate::raft::rng::Rng;
use crate::raft::{
    Envelope, GroupId, Membership, MessageBody, MultiRaft, NodeId, ProposeError, Raft, ReadError,
    ReadMode, Role, StepError,
};

use super::invariants::{Invariants, Violation};
pub use super::knobs::Knobs;
pub use super::node::SimNode;
use super::storage::NodeStorage;
pub use super::trace::describe;
use crate::node::driver::{restore_store, Driver, DriverFaults, Shard};
use crate::node::kv::KvStore;
use crate::node::metrics::CoreMetrics;
use crate::node::request::{ClientOp, Consistency};

/// Maximum trace lines kept for a failure report.
pub const TRACE_LINES_MAX: usize = 64;
/// A node's `Ready` loop must go quiet within this many rounds (else the core spins).
pub const READY_ROUNDS_MAX: usize = 1_000;
/// Simulated time units per tick at nominal rate.
pub const TICK_PERIOD_NOMINAL: u64 = 1_000;

/// The receiving end of a client's answer (polled with `try_recv`).
pub type Answer = crate::node::driver::ReplyReceiver;

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
    /// Hard states written deferred (only the commit index moved), all nodes.
    pub hard_states_deferred: u64,
    /// Crashes that lost a deferred hard state (the node restarted with an older commit index).
    pub deferred_lost: u64,
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
            let mut shards = BTreeMap::new();
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
                shards.insert(g, Shard::new(new_store(&knobs)));
            }
            let skew = knobs.tick_skew_permille;
            let tick_period = TICK_PERIOD_NOMINAL - TICK_PERIOD_NOMINAL * skew / 1000
                + rng.below(2 * TICK_PERIOD_NOMINAL * skew / 1000 + 1);
            nodes.insert(
                id,
                SimNode {
                    id,
                    multi: Some(multi),
                    storage: NodeStorage::new(knobs.defer_every_hard_state),
                    shards,
                    reads: HashMap::new(),
                    batches: VecDeque::new(),
                    metrics: CoreMetrics::default(),
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

    /// The counters of `node`'s driver.
    pub fn metrics(&self, node: NodeId) -> Option<&CoreMetrics> {
        self.nodes.get(&node).map(|n| &n.metrics)
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

    /// The state machine of `group` on `node`, if the node is up.
    pub fn kv(&self, node: NodeId, group: GroupId) -> Option<&KvStore> {
        let n = self.nodes.get(&node)?;
        n.multi.as_ref()?;
        n.shards.get(&group).map(Shard::kv)
    }

    /// Proposes a command on `node` through its driver; the answer arrives on the returned
    /// channel once the entry is applied (or known never to be).
    pub fn propose(
        &mut self,
        node: NodeId,
        group: GroupId,
        data: Vec<u8>,
    ) -> Result<Result<(u64, Answer), ProposeError>, Violation> {
        let (tx, rx) = crate::node::driver::reply_channel();
        let down = ProposeError::NotLeader { leader: 0 };
        self.on_driver(node, down, |d| d.propose(group, data, tx).map(|i| (i, rx)))
    }

    /// Starts a linearizable read of `key` on `node` under request id `ctx` through its driver;
    /// the value arrives on the returned channel once the read index is applied.
    pub fn read(
        &mut self,
        node: NodeId,
        group: GroupId,
        ctx: u64,
        key: Vec<u8>,
        mode: ReadMode,
    ) -> Result<Result<Answer, ReadError>, Violation> {
        let (tx, rx) = crate::node::driver::reply_channel();
        let consistency = match mode {
            ReadMode::Lease => Consistency::Lease,
            ReadMode::ReadIndex => Consistency::Linearizable,
        };
        let op = ClientOp::Get { key, consistency };
        let down = ReadError::NotLeader { leader: 0 };
        self.on_driver(node, down, |d| {
            d.read(group, ctx, op, mode, tx).map(|()| rx)
        })
    }

    /// Runs `f` on `node`'s driver, then the node until it is quiet ([`Cluster::process`]);
    /// `down` when the node does not exist or is crashed.
    fn on_driver<T, E>(
        &mut self,
        node: NodeId,
        down: E,
        f: impl FnOnce(&mut Driver<'_>) -> Result<T, E>,
    ) -> Result<Result<T, E>, Violation> {
        let faults = self.faults();
        let Some(mut d) = self.nodes.get_mut(&node).and_then(|n| n.driver(faults)) else {
            return Ok(Err(down));
        };
        let res = f(&mut d);
        self.process(node)?;
        Ok(res)
    }

    pub(super) fn faults(&self) -> DriverFaults {
        DriverFaults {
            kv: self.knobs.planted_kv_fault,
            ..self.knobs.driver_faults
        }
    }

    /// Runs the node's driver until it is quiet: each round sends, persists into the simulated
    /// storage, applies and answers; then checks invariants.
    pub fn process(&mut self, id: NodeId) -> Result<(), Violation> {
        let faults = self.faults();
        let mut rounds = 0;
        loop {
            rounds += 1;
            let mut net: Vec<Envelope> = Vec::new();
            let Some(node) = self.nodes.get_mut(&id) else {
                return Ok(());
            };
            if rounds > READY_ROUNDS_MAX && node.multi.as_ref().is_some_and(|m| m.has_ready()) {
                return Err(Violation(format!(
                    "node {id}: has_ready() stays true after {READY_ROUNDS_MAX} rounds"
                )));
            }
            let stats = node.round(faults, &mut net, &mut self.inv)?;
            for env in net {
                self.check_vote_durable(&env)?;
                self.send(env);
            }
            let Some(stats) = stats else { break };
            self.stats.leaders_elected += stats.leaders_elected;
            self.stats.snapshots_installed += stats.snapshots_installed;
            self.stats.applied += stats.applied;
            self.stats.snapshots += stats.snapshots_taken;
            self.release_durable(id)?;
            self.schedule_fsync(id)?;
        }
        self.check_node(id)
    }

    /// Hands every persist batch of `id` whose ticket is durable back to its driver, and sends
    /// what waited for it.
    fn release_durable(&mut self, id: NodeId) -> Result<(), Violation> {
        let faults = self.faults();
        let mut net: Vec<Envelope> = Vec::new();
        let Some(node) = self.nodes.get_mut(&id) else {
            return Ok(());
        };
        let res = node.release_durable(faults, &mut net);
        for env in net {
            self.check_vote_durable(&env)?;
            self.send(env);
        }
        res
    }

    /// A granted vote leaves its node only once the node's durable hard state holds that term
    /// and that vote (else a crash lets the node vote again in the same term, for another
    /// candidate: two leaders in one term).
    fn check_vote_durable(&self, env: &Envelope) -> Result<(), Violation> {
        for (g, m) in &env.messages {
            if !matches!(m.body, MessageBody::VoteResponse { reject: false }) {
                continue;
            }
            let hs = self
                .nodes
                .get(&env.from)
                .and_then(|n| n.storage.durable.get(g))
                .map(|s| s.hard_state)
                .unwrap_or_default();
            if hs.term != m.term || hs.vote != m.to {
                return Err(Violation(format!(
                    "group {g}: node {} granted its vote to {} in term {} with durable term {} \
                     vote {}",
                    env.from, m.to, m.term, hs.term, hs.vote
                )));
            }
        }
        Ok(())
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

    /// Makes up to `max` pending writes of `id` durable, reports what became durable to its
    /// driver (which sends what waited for it).
    pub fn fsync(&mut self, id: NodeId, max: usize) -> Result<(), Violation> {
        let mut done = 0;
        while done < max {
            let Some(node) = self.nodes.get_mut(&id) else {
                return Ok(());
            };
            if node.multi.is_none() || !node.storage.fsync_one() {
                break;
            }
            done += 1;
        }
        self.release_durable(id)?;
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
        // The driver's state is gone: waiting clients see their answer channel close.
        node.shards.clear();
        node.reads.clear();
        node.batches.clear();
        node.fsync_scheduled = false;
        node.incarnation += 1;
        self.stats.crashes += 1;
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
            let kv = restore_store(&st.snapshot.data, knobs.planted_kv_fault)
                .map_err(|e| Violation(format!("node {id}: durable snapshot: {e}")))?;
            let cfg = knobs.raft_config(id, g, node.incarnation, seed);
            let raft =
                Raft::restart(cfg, st.restart_state()).map_err(|e| Violation(e.to_string()))?;
            multi
                .add_group(g, raft)
                .map_err(|e| Violation(e.to_string()))?;
            node.shards.insert(g, Shard::new(kv));
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
