//! A small deterministic driver of one Raft group for the hardening tests: replicas with
//! explicit persistence (a durable store per replica, crash loses what was not persisted), a
//! message queue the test filters, and a monotonic clock the test moves.

#![allow(dead_code)]

use std::collections::BTreeMap;

use ringraft::raft::*;

pub mod fuzz;

/// A replica's durable state (what survives a crash).
#[derive(Debug, Clone, Default)]
pub struct Disk {
    pub hard_state: HardState,
    pub snapshot: Snapshot,
    pub entries: Vec<Entry>,
}

impl Disk {
    /// Makes a Ready's snapshot, entries and hard state durable.
    pub fn write_ready(&mut self, rd: &Ready) {
        if let Some(s) = &rd.snapshot {
            // An installed snapshot replaces the stored log, unless the log holds the
            // snapshot's last entry (then only what it covers goes).
            let (i, t) = (s.meta.index, s.meta.term);
            if self.entries.iter().any(|e| e.index == i && e.term == t) {
                self.entries.retain(|e| e.index > i);
            } else {
                self.entries.clear();
            }
            self.snapshot = s.clone();
        }
        if let Some(first) = rd.entries.first() {
            self.entries.retain(|e| e.index < first.index);
            self.entries.extend(rd.entries.iter().cloned());
        }
        if let Some(hs) = rd.hard_state {
            self.hard_state = hs;
        }
    }
    pub fn restart_state(&self) -> RestartState {
        RestartState {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }
}

/// A Ready handed out but not yet durable.
pub struct Unsynced {
    pub write: Ready,
    pub after: Vec<Message>,
    pub mark: Option<(u64, u64)>,
}

pub struct Net {
    pub rafts: BTreeMap<NodeId, Raft>,
    pub cfgs: BTreeMap<NodeId, Config>,
    pub disks: BTreeMap<NodeId, Disk>,
    pub queue: Vec<Message>,
    pub unsynced: BTreeMap<NodeId, Vec<Unsynced>>,
    /// Per node: persist every Ready at once.
    pub sync: BTreeMap<NodeId, bool>,
    pub committed: BTreeMap<NodeId, Vec<Entry>>,
    pub reads: BTreeMap<NodeId, Vec<ReadState>>,
    /// Per node: read contexts reported dropped.
    pub dropped: BTreeMap<NodeId, Vec<u64>>,
    /// Per node: the latest index a Ready asked to snapshot at.
    pub snapshot_requests: BTreeMap<NodeId, u64>,
    /// Messages handed out so far (before and after persisting), for counting a round's cost.
    pub sent: usize,
    /// Monotonic clock (ns) handed to every replica before each input.
    pub now: u64,
}

pub fn cfg(id: NodeId) -> Config {
    let mut c = Config::new(id);
    c.seed = id * 7919;
    c
}

impl Net {
    pub fn new(n: u64, tweak: impl Fn(&mut Config)) -> Net {
        let m = Membership::with_voters(1..=n);
        let mut net = Net {
            rafts: BTreeMap::new(),
            cfgs: BTreeMap::new(),
            disks: BTreeMap::new(),
            queue: Vec::new(),
            unsynced: BTreeMap::new(),
            sync: (1..=n).map(|i| (i, true)).collect(),
            committed: BTreeMap::new(),
            reads: BTreeMap::new(),
            dropped: BTreeMap::new(),
            snapshot_requests: BTreeMap::new(),
            sent: 0,
            now: 1_000_000_000,
        };
        for id in 1..=n {
            let mut c = cfg(id);
            tweak(&mut c);
            net.add_replica(c, m.clone());
        }
        net.flush();
        net
    }

    /// Adds a fresh replica with config `c` (its id is `c.id`) that knows `membership`; it
    /// persists every Ready at once.
    pub fn add_replica(&mut self, c: Config, membership: Membership) {
        let id = c.id;
        self.rafts
            .insert(id, Raft::new(c.clone(), membership).unwrap());
        self.cfgs.insert(id, c);
        self.disks.insert(id, Disk::default());
        self.sync.insert(id, true);
    }

    pub fn r(&mut self, id: NodeId) -> &mut Raft {
        self.rafts.get_mut(&id).unwrap()
    }

    /// Drains every replica's Ready (persisting at once where `sync` says so).
    pub fn flush(&mut self) {
        loop {
            let mut any = false;
            let ids: Vec<NodeId> = self.rafts.keys().copied().collect();
            for id in ids {
                let Some(r) = self.rafts.get_mut(&id) else {
                    continue;
                };
                if !r.has_ready() {
                    continue;
                }
                any = true;
                let mut rd = r.ready();
                self.sent += rd.messages.len();
                self.queue.append(&mut rd.messages);
                self.committed
                    .entry(id)
                    .or_default()
                    .extend(rd.committed_entries.iter().cloned());
                self.reads
                    .entry(id)
                    .or_default()
                    .extend(rd.read_states.iter().copied());
                self.dropped
                    .entry(id)
                    .or_default()
                    .extend(rd.reads_dropped.iter().copied());
                if let Some(i) = rd.snapshot_request {
                    self.snapshot_requests.insert(id, i);
                }
                let after = std::mem::take(&mut rd.messages_after_persist);
                let mark = rd.persisted;
                self.unsynced.entry(id).or_default().push(Unsynced {
                    write: rd,
                    after,
                    mark,
                });
                if self.sync[&id] {
                    self.persist(id);
                }
            }
            if !any {
                break;
            }
        }
    }

    /// Makes everything `id` handed out durable.
    pub fn persist(&mut self, id: NodeId) {
        let pending = std::mem::take(self.unsynced.entry(id).or_default());
        for u in pending {
            self.disks.get_mut(&id).unwrap().write_ready(&u.write);
            self.sent += u.after.len();
            self.queue.extend(u.after);
            if let Some((i, t)) = u.mark {
                if let Some(r) = self.rafts.get_mut(&id) {
                    r.on_persisted(i, t);
                }
            }
        }
    }

    /// Crash: the replica and everything not yet durable are gone.
    pub fn crash(&mut self, id: NodeId) {
        self.rafts.remove(&id);
        self.unsynced.remove(&id);
        self.queue.retain(|m| m.to != id && m.from != id);
    }

    /// Restart from the durable store.
    pub fn restart(&mut self, id: NodeId) {
        let r = Raft::restart(self.cfgs[&id].clone(), self.disks[&id].restart_state()).unwrap();
        self.rafts.insert(id, r);
        self.flush();
    }

    /// Delivers queued messages (except those `drop` rejects) until quiet.
    pub fn run_with(&mut self, drop: impl Fn(&Message) -> bool) {
        for _ in 0..10_000 {
            self.flush();
            if self.queue.is_empty() {
                return;
            }
            let q = std::mem::take(&mut self.queue);
            for m in q {
                if drop(&m) || !self.rafts.contains_key(&m.to) {
                    continue;
                }
                let now = self.now;
                let r = self.r(m.to);
                r.advance_clock(now);
                r.step(m).unwrap();
            }
        }
        panic!("did not settle");
    }

    pub fn run(&mut self) {
        self.run_with(|_| false);
    }

    pub fn elect(&mut self, id: NodeId) {
        self.r(id).campaign();
        self.run();
        assert_eq!(self.r(id).role(), Role::Leader);
    }

    /// `n` times: every replica ticks at the current clock, then the network settles; the
    /// clock advances by one tick length each time.
    pub fn tick_all(&mut self, n: usize) {
        for _ in 0..n {
            self.now += ringraft::raft::config::TICK_NANOS_DEFAULT;
            let now = self.now;
            for r in self.rafts.values_mut() {
                r.tick_at(now);
            }
            self.run();
        }
    }

    pub fn leaders(&self) -> Vec<NodeId> {
        self.rafts
            .iter()
            .filter(|(_, r)| r.role() == Role::Leader)
            .map(|(i, _)| *i)
            .collect()
    }
}
