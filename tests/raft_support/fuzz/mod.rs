//! A seeded fuzzer of the pure Raft core: three replicas of one group driven by arbitrary
//! interleavings of ticks, deliveries (dropped, duplicated, reordered), fsyncs, crashes and
//! restarts, proposals, reads, snapshots, elections and transfers, and in hostile mode also
//! messages with arbitrary field values (mutated copies of real traffic and wholly random
//! messages, extreme values included). After every input it checks the core's invariants:
//! no panic; per replica incarnation the term and the commit index never decrease and an index
//! handed out as committed is never handed out again with another entry; committed entries come
//! out contiguously. In benign mode also across crashes and across replicas: every index is
//! committed with the same entry everywhere, and no leader ever tries to overwrite a committed
//! entry. Shared by `tests/raft_core/fuzz.rs` (a short run) and `examples/raft_fuzz.rs` (long
//! runs). Its parts: this file (the replicas, the inputs, a run), [`checks`] (what is checked
//! after each input), [`hostile`] (hostile values and messages).

#![allow(dead_code)]

use std::collections::BTreeMap;

use ringraft::raft::rng::Rng;
use ringraft::raft::*;

use super::Disk;

mod checks;
mod hostile;

/// Counters of a fuzz run.
#[derive(Debug, Default, Clone)]
pub struct FuzzStats {
    /// Core inputs (step, tick, propose, read, on_persisted, campaign, compact, ...).
    pub inputs: u64,
    /// Hostile messages injected.
    pub injected: u64,
    /// Messages refused as invalid.
    pub refused: u64,
    /// Messages the core accepted (stepped without error).
    pub accepted: u64,
    /// Elections won.
    pub leaders: u64,
    /// Entries handed out as committed.
    pub committed: u64,
    /// Crashes.
    pub crashes: u64,
    /// Snapshots installed on followers.
    pub snapshots_installed: u64,
    /// Seeds run.
    pub seeds: u64,
}

const N: u64 = 3;

/// A Ready handed out but not yet durable: the Ready, its after-persist messages, its mark.
type Unsynced = (Ready, Vec<Message>, Option<(u64, u64)>);

struct Replica {
    raft: Option<Raft>,
    cfg: Config,
    disk: Disk,
    unsynced: Vec<Unsynced>,
    last_term: u64,
    last_commit: u64,
    /// Entries handed out as committed in this incarnation, by index.
    applied: BTreeMap<u64, Entry>,
    next_apply: u64,
    was_leader: bool,
}

struct Fuzz {
    rng: Rng,
    hostile: bool,
    reps: BTreeMap<NodeId, Replica>,
    pool: Vec<Message>,
    now: u64,
    /// Benign mode: the entry committed at each index, by anyone, ever.
    chosen: BTreeMap<u64, Entry>,
    next_ctx: u64,
    stats: FuzzStats,
    /// The latest inputs, printed with a broken invariant.
    trace: std::collections::VecDeque<String>,
}

/// Inputs kept in the failure trace.
const TRACE_LINES: usize = 3000;

impl Fuzz {
    fn new(seed: u64, hostile: bool) -> Fuzz {
        let mut rng = Rng::new(seed);
        let m = Membership::with_voters(1..=N);
        let mut reps = BTreeMap::new();
        for id in 1..=N {
            let mut c = Config::new(id);
            c.seed = seed ^ (id << 32);
            c.snapshot_threshold_entries = 1 + rng.below(30);
            c.log_retain_entries = rng.below(6);
            c.max_entries_per_msg = 1 + rng.below(8) as usize;
            c.max_inflight_msgs = 1 + rng.below(4) as usize;
            c.max_uncommitted_entries = 64;
            c.pre_vote = rng.below(4) != 0;
            c.check_quorum = c.pre_vote || rng.below(2) == 0;
            c.lease_read = c.check_quorum;
            let raft = Raft::new(c.clone(), m.clone()).expect("config");
            reps.insert(
                id,
                Replica {
                    raft: Some(raft),
                    cfg: c,
                    disk: Disk::default(),
                    unsynced: Vec::new(),
                    last_term: 0,
                    last_commit: 0,
                    applied: BTreeMap::new(),
                    next_apply: 1,
                    was_leader: false,
                },
            );
        }
        Fuzz {
            rng,
            hostile,
            reps,
            pool: Vec::new(),
            now: 1,
            chosen: BTreeMap::new(),
            next_ctx: 1,
            stats: FuzzStats::default(),
            trace: std::collections::VecDeque::new(),
        }
    }

    fn log(&mut self, line: String) {
        if self.trace.len() >= TRACE_LINES {
            self.trace.pop_front();
        }
        self.trace.push_back(line);
    }

    fn state_line(&self) -> String {
        let mut out = String::new();
        for (id, rep) in &self.reps {
            match &rep.raft {
                Some(r) => out.push_str(&format!(
                    " [{id}: {:?} t{} v{} last {}/{} commit {} durable {}]",
                    r.role(),
                    r.term(),
                    r.vote(),
                    r.log().last_index(),
                    r.log().last_term(),
                    r.log().committed(),
                    r.log().durable()
                )),
                None => out.push_str(&format!(" [{id}: down]")),
            }
        }
        out
    }

    fn pick_node(&mut self) -> NodeId {
        1 + self.rng.below(N)
    }

    fn persist(&mut self, id: NodeId, all: bool) -> Result<(), String> {
        self.log(format!("persist {id} all={all}"));
        let rep = self.reps.get_mut(&id).expect("replica");
        if rep.raft.is_none() || rep.unsynced.is_empty() {
            return Ok(());
        }
        let n = if all { rep.unsynced.len() } else { 1 };
        let batch: Vec<_> = rep.unsynced.drain(..n).collect();
        for (rd, after, mark) in batch {
            rep.disk.write_ready(&rd);
            self.pool.extend(after);
            if let Some((i, t)) = mark {
                self.stats.inputs += 1;
                rep.raft.as_mut().expect("live").on_persisted(i, t);
            }
        }
        self.drain(id)
    }

    fn crash(&mut self, id: NodeId) {
        self.log(format!("crash {id}"));
        let rep = self.reps.get_mut(&id).expect("replica");
        if rep.raft.take().is_some() {
            self.stats.crashes += 1;
        }
        rep.unsynced.clear();
        self.pool.retain(|m| m.from != id);
    }

    fn restart(&mut self, id: NodeId) -> Result<(), String> {
        let rep = self.reps.get_mut(&id).expect("replica");
        if rep.raft.is_some() {
            return Ok(());
        }
        let line = format!(
            "restart {id} from hs {:?} snap {} entries {:?}",
            rep.disk.hard_state,
            rep.disk.snapshot.meta.index,
            rep.disk
                .entries
                .iter()
                .map(|e| (e.index, e.term))
                .collect::<Vec<_>>()
        );
        self.log(line);
        let rep = self.reps.get_mut(&id).expect("replica");
        let r = Raft::restart(rep.cfg.clone(), rep.disk.restart_state())
            .map_err(|e| format!("restart: {e}"))?;
        rep.last_term = r.term();
        rep.last_commit = r.log().committed();
        rep.next_apply = rep.disk.snapshot.meta.index + 1;
        rep.applied.clear();
        rep.was_leader = false;
        rep.raft = Some(r);
        self.drain(id)
    }

    fn deliver(&mut self, m: Message) -> Result<(), String> {
        let to = m.to;
        self.log(format!("deliver {m:?}"));
        let Some(rep) = self.reps.get_mut(&to) else {
            return Ok(());
        };
        let Some(r) = rep.raft.as_mut() else {
            return Ok(());
        };
        self.stats.inputs += 1;
        r.advance_clock(self.now);
        match r.step(m) {
            Ok(()) => self.stats.accepted += 1,
            Err(StepError::Invalid(_)) => self.stats.refused += 1,
            Err(StepError::CommittedConflict(c)) => {
                if !self.hostile {
                    return Err(format!("node {to}: leader overwrote committed entry {c:?}"));
                }
            }
            Err(StepError::WrongRecipient { .. }) | Err(StepError::FromSelf) => {}
        }
        self.drain(to)
    }

    /// One random input.
    fn step(&mut self) -> Result<(), String> {
        let roll = self.rng.below(100);
        match roll {
            0..=24 => {
                let id = self.pick_node();
                self.now += 1 + self.rng.below(20_000_000);
                if let Some(r) = self.reps.get_mut(&id).and_then(|r| r.raft.as_mut()) {
                    self.stats.inputs += 1;
                    r.tick_at(self.now);
                }
                self.log(format!("tick {id}"));
                self.drain(id)?;
            }
            25..=59 => {
                if self.pool.is_empty() {
                    return Ok(());
                }
                // Mostly in order, sometimes any message (reordering), sometimes a duplicate.
                let k = if self.rng.below(4) == 0 {
                    self.rng.below(self.pool.len() as u64) as usize
                } else {
                    0
                };
                let m = if self.rng.below(20) == 0 {
                    self.pool[k].clone()
                } else {
                    self.pool.remove(k)
                };
                self.deliver(m)?;
            }
            60..=62 => {
                if !self.pool.is_empty() {
                    let k = self.rng.below(self.pool.len() as u64) as usize;
                    self.pool.remove(k);
                }
            }
            63..=74 => {
                let id = self.pick_node();
                let all = self.rng.below(2) == 0;
                self.persist(id, all)?;
            }
            75..=81 => {
                let id = self.pick_node();
                if let Some(r) = self.reps.get_mut(&id).and_then(|r| r.raft.as_mut()) {
                    self.stats.inputs += 1;
                    let _ = r.propose(self.rng.next_u64().to_le_bytes().to_vec());
                }
                self.drain(id)?;
            }
            82..=85 => {
                let id = self.pick_node();
                let ctx = self.next_ctx;
                self.next_ctx += 1;
                let mode = if self.rng.below(2) == 0 {
                    ReadMode::Lease
                } else {
                    ReadMode::ReadIndex
                };
                if let Some(r) = self.reps.get_mut(&id).and_then(|r| r.raft.as_mut()) {
                    self.stats.inputs += 1;
                    let _ = r.read_at(ctx, mode, self.now);
                }
                self.drain(id)?;
            }
            86 => {
                let id = self.pick_node();
                if self.rng.below(2) == 0 {
                    self.crash(id);
                } else {
                    self.restart(id)?;
                }
            }
            87..=88 => {
                let id = self.pick_node();
                let to = self.pick_node();
                if let Some(r) = self.reps.get_mut(&id).and_then(|r| r.raft.as_mut()) {
                    self.stats.inputs += 1;
                    if self.rng.below(3) == 0 {
                        let _ = r.transfer_leadership(to);
                    } else {
                        r.campaign();
                    }
                }
                self.log(format!("campaign/transfer {id} -> {to}"));
                self.drain(id)?;
            }
            _ => {
                if self.hostile {
                    self.stats.injected += 1;
                    let m = self.hostile_message();
                    self.deliver(m)?;
                } else {
                    for id in 1..=N {
                        self.restart(id)?;
                    }
                }
            }
        }
        // Bound the in-flight pool (a lossy network).
        if self.pool.len() > 512 {
            self.pool.drain(..256);
        }
        Ok(())
    }
}

/// Runs `steps` random inputs from `seed`; `Err` describes the broken invariant.
pub fn run_seed(
    seed: u64,
    steps: usize,
    hostile: bool,
    stats: &mut FuzzStats,
) -> Result<(), String> {
    let mut f = Fuzz::new(seed, hostile);
    for id in 1..=N {
        f.drain(id)?;
        f.persist(id, true)?;
    }
    let mut res = Ok(());
    for step in 0..steps {
        if let Err(e) = f.step() {
            let trace: Vec<String> = f.trace.iter().cloned().collect();
            res = Err(format!(
                "seed {seed} step {step} (hostile: {hostile}): {e}\nstate:{}\nlatest inputs:\n{}",
                f.state_line(),
                trace.join("\n")
            ));
            break;
        }
    }
    let s = &f.stats;
    stats.inputs += s.inputs;
    stats.injected += s.injected;
    stats.refused += s.refused;
    stats.accepted += s.accepted;
    stats.leaders += s.leaders;
    stats.committed += s.committed;
    stats.crashes += s.crashes;
    stats.snapshots_installed += s.snapshots_installed;
    stats.seeds += 1;
    res
}
