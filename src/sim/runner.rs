//! One seeded random simulation run: picks a cluster shape and fault rates from the seed, drives
//! clients (put / delete / cas writes, reads via ReadIndex, lease and eventual consistency)
//! against the [`super::cluster::Cluster`], injects faults (partitions, one-way links, crashes and
//! restarts, membership changes, leadership transfers), checks the safety invariants after every
//! step, and at the end checks the recorded client history for linearizability with the checker
//! ([`crate::checker::check_events`]). Eventual reads are counted, not checked (they may be stale
//! by design). A failure carries the seed and the step count that replay it exactly.

use std::time::Duration;

use crate::checker::{self, Budget, Event as HEvent, ModelKind, Verdict};
use crate::raft::rng::Rng;
use crate::raft::{ConfChange, Durability, NodeId, Role};

use super::cluster::{Cluster, Event, Knobs, TICK_PERIOD_NOMINAL};
use super::invariants::Violation;

mod clients;
use clients::{Client, Pending};

/// Clients per group.
pub const CLIENTS_PER_GROUP: u64 = 3;
/// Keys per group (small, so operations contend).
pub const KEYS_PER_GROUP: u8 = 3;
/// A client gives up on an operation after this many nominal ticks.
pub const OP_TIMEOUT_TICKS: u64 = 60;
/// Time budget of the linearizability check of one run.
pub const LINEARIZABILITY_BUDGET_MS: u64 = 10_000;

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Seed.
    pub seed: u64,
    /// Cluster events to process.
    pub steps: u64,
    /// Check the history for linearizability at the end.
    pub check_history: bool,
    /// Override the knobs derived from the seed (test-only rule breakers, shapes).
    pub tweak: Option<fn(&mut Knobs)>,
    /// Print every replica's state at the end.
    pub dump_end: bool,
    /// `ringraft sim` flags that reproduce `tweak` (printed in the replay command).
    pub cli_flags: &'static str,
}

impl RunOptions {
    /// Defaults for `seed` and `steps`.
    pub fn new(seed: u64, steps: u64) -> RunOptions {
        RunOptions {
            seed,
            steps,
            check_history: true,
            tweak: None,
            dump_end: false,
            cli_flags: "",
        }
    }
}

/// What a successful run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// Seed.
    pub seed: u64,
    /// Nodes × groups.
    pub shape: (u64, u64),
    /// Operations completed ok / failed / unknown, eventual reads.
    pub ops_ok: u64,
    /// Failed.
    pub ops_fail: u64,
    /// Unknown outcome.
    pub ops_info: u64,
    /// Eventual reads served.
    pub eventual_reads: u64,
    /// Linearizability verdict (or why not checked).
    pub verdict: String,
    /// Cluster counters.
    pub stats: super::cluster::Stats,
    /// Invariant checks performed.
    pub checks: u64,
    /// Recorded history.
    pub history: Vec<HEvent>,
}

/// A failed run.
#[derive(Debug, Clone)]
pub struct SimFailure {
    /// Seed.
    pub seed: u64,
    /// Step at which it failed.
    pub step: u64,
    /// Steps of the run (the replay needs the same count: the calm phase depends on it).
    pub steps_total: u64,
    /// Extra `ringraft sim` flags of the run.
    pub cli_flags: &'static str,
    /// What broke.
    pub violation: Violation,
    /// The last events.
    pub trace: Vec<String>,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "SIMULATION FAILED: seed {} at step {}: {}",
            self.seed, self.step, self.violation
        )?;
        if self.cli_flags.is_empty() {
            writeln!(
                f,
                "replay: make sim SEED={} STEPS={}  (fails at step {})",
                self.seed, self.steps_total, self.step
            )?;
        }
        writeln!(
            f,
            "replay: ringraft sim --seed {} --steps {}{}  (fails at step {})",
            self.seed, self.steps_total, self.cli_flags, self.step
        )?;
        writeln!(f, "last events:")?;
        for l in &self.trace {
            writeln!(f, "  {l}")?;
        }
        Ok(())
    }
}

/// Derives the cluster shape and fault rates from the seed.
pub fn knobs_for_seed(rng: &mut Rng) -> Knobs {
    let nodes = [3, 3, 4, 5][rng.below(4) as usize];
    let groups = 1 + rng.below(3);
    let mut k = Knobs::new(nodes, groups);
    k.initial_voters = if nodes == 4 { 3 } else { nodes };
    k.drop_ppm = [0, 10_000, 50_000, 150_000][rng.below(4) as usize];
    k.dup_ppm = [0, 20_000][rng.below(2) as usize];
    k.tick_skew_permille = rng.below(101);
    k.net_delay = (50, 300 + rng.below(2_500));
    k.fsync_delay = (20, 100 + rng.below(1_500));
    k.snapshot_threshold_entries = [16, 64, 1_000][rng.below(3) as usize];
    k.log_retain_entries = rng.below(10);
    k.max_entries_per_msg = [1, 4, 64][rng.below(3) as usize];
    k.max_inflight_msgs = [1, 4, 16][rng.below(3) as usize];
    k.durability = Durability::DiskFirst;
    k
}

struct Run {
    c: Cluster,
    rng: Rng,
    clients: Vec<Client>,
    history: Vec<HEvent>,
    next_process: u64,
    next_ctx: u64,
    ops_ok: u64,
    ops_fail: u64,
    ops_info: u64,
    eventual_reads: u64,
    calm: bool,
    last_time: u64,
}

/// Runs one seed.
pub fn run(opts: &RunOptions) -> Result<RunReport, SimFailure> {
    let mut rng = Rng::new(opts.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0xA5A5);
    let mut knobs = knobs_for_seed(&mut rng);
    if let Some(t) = opts.tweak {
        t(&mut knobs);
    }
    let shape = (knobs.nodes, knobs.groups);
    let fail = |c: Option<&Cluster>, step: u64, v: Violation| SimFailure {
        seed: opts.seed,
        step,
        steps_total: opts.steps,
        cli_flags: opts.cli_flags,
        violation: v,
        trace: c
            .map(|c| c.trace.iter().cloned().collect())
            .unwrap_or_default(),
    };
    let c = Cluster::new(knobs, opts.seed, false).map_err(|v| fail(None, 0, v))?;
    let mut run = Run {
        c,
        rng,
        clients: Vec::new(),
        history: Vec::new(),
        next_process: 0,
        next_ctx: 0,
        ops_ok: 0,
        ops_fail: 0,
        ops_info: 0,
        eventual_reads: 0,
        calm: false,
        last_time: 0,
    };
    for g in 1..=shape.1 {
        for _ in 0..CLIENTS_PER_GROUP {
            let process = run.next_process;
            run.next_process += 1;
            run.clients.push(Client {
                group: g,
                process,
                seq: 0,
                pending: Pending::Idle,
            });
            let id = run.clients.len() as u64 - 1;
            let d = run.rng.range(1, 4 * TICK_PERIOD_NOMINAL);
            run.c.schedule(d, Event::Client(id));
        }
    }
    run.c.schedule(20 * TICK_PERIOD_NOMINAL, Event::Chaos);
    let calm_from = opts.steps - opts.steps / 5;
    for step in 1..=opts.steps {
        if step == calm_from {
            run.calm = true;
            run.c.blocked.clear();
            let ids: Vec<NodeId> = run.c.nodes.keys().copied().collect();
            for id in ids {
                if !run.c.is_up(id) {
                    run.c.schedule(1, Event::Restart(id));
                }
            }
        }
        let res = run.c.step().and_then(|ev| match ev {
            Some(Event::Client(id)) => run.client_event(id as usize),
            Some(Event::Chaos) => run.chaos(),
            _ => Ok(()),
        });
        let res = res.and_then(|()| run.collect_answers());
        if let Err(v) = res {
            return Err(fail(Some(&run.c), step, v));
        }
    }
    if opts.dump_end {
        println!("{}", run.c.dump());
    }
    // Operations still open end as unknown (writes) or failed (reads).
    for i in 0..run.clients.len() {
        run.finish_open(i);
    }
    let verdict = if opts.check_history {
        let budget = Budget {
            time: Some(Duration::from_millis(LINEARIZABILITY_BUDGET_MS)),
            threads: 1,
            ..Budget::default()
        };
        match checker::check_events(&run.history, ModelKind::Kv, &budget) {
            Ok(rep) => match rep.verdict {
                Verdict::NotLinearizable => {
                    return Err(fail(
                        Some(&run.c),
                        opts.steps,
                        Violation(format!("history not linearizable:\n{}", rep.explain())),
                    ))
                }
                Verdict::Linearizable => "linearizable".to_string(),
                Verdict::Unknown => "unknown (checker budget spent)".to_string(),
            },
            Err(e) => {
                return Err(fail(
                    Some(&run.c),
                    opts.steps,
                    Violation(format!("history malformed: {e}")),
                ))
            }
        }
    } else {
        "not checked".to_string()
    };
    Ok(RunReport {
        seed: opts.seed,
        shape,
        ops_ok: run.ops_ok,
        ops_fail: run.ops_fail,
        ops_info: run.ops_info,
        eventual_reads: run.eventual_reads,
        verdict,
        stats: {
            let mut stats = run.c.stats.clone();
            for node in run.c.nodes.values() {
                stats.hard_states_deferred += node.storage.deferred;
                stats.deferred_lost += node.storage.deferred_lost;
            }
            stats
        },
        checks: run.c.inv.checks,
        history: run.history,
    })
}

impl Run {
    fn chaos(&mut self) -> Result<(), Violation> {
        let d = self
            .rng
            .range(3 * TICK_PERIOD_NOMINAL, 25 * TICK_PERIOD_NOMINAL);
        self.c.schedule(d, Event::Chaos);
        if self.calm {
            return Ok(());
        }
        let n = self.c.knobs.nodes;
        let now = self.c.now;
        match self.rng.below(10) {
            0 | 1 => {
                // Partition: a random minority cut off both ways.
                self.c.blocked.clear();
                let cut = 1 + self.rng.below(n / 2);
                let mut side: Vec<NodeId> = (1..=n).collect();
                for k in 0..side.len() {
                    let j = k + self.rng.below((side.len() - k) as u64) as usize;
                    side.swap(k, j);
                }
                let minority: Vec<NodeId> = side[..cut as usize].to_vec();
                for &a in &minority {
                    for b in 1..=n {
                        if !minority.contains(&b) {
                            self.c.blocked.insert((a, b));
                            self.c.blocked.insert((b, a));
                        }
                    }
                }
                self.c.log(format!("t={now} partition {minority:?} | rest"));
            }
            2 => {
                let a = 1 + self.rng.below(n);
                let b = 1 + self.rng.below(n);
                if a != b {
                    self.c.blocked.insert((a, b));
                    self.c.log(format!("t={now} block {a}->{b}"));
                }
            }
            3 | 4 => {
                self.c.blocked.clear();
                self.c.log(format!("t={now} heal"));
            }
            5 | 6 => {
                let a = 1 + self.rng.below(n);
                if self.c.is_up(a) {
                    self.c.crash(a);
                    let d = self
                        .rng
                        .range(TICK_PERIOD_NOMINAL, 30 * TICK_PERIOD_NOMINAL);
                    self.c.schedule(d, Event::Restart(a));
                }
            }
            7 => {
                // Leadership transfer.
                let g = 1 + self.rng.below(self.c.knobs.groups);
                if let Some(l) = self.c.leader_of(g) {
                    let to = 1 + self.rng.below(n);
                    if let Some(r) = self.c.raft_mut(l, g) {
                        if r.transfer_leadership(to).is_ok() {
                            self.c.log(format!("t={now} g{g} transfer {l}->{to}"));
                        }
                    }
                    self.c.process(l)?;
                }
            }
            _ => self.reconfigure()?,
        }
        Ok(())
    }

    /// One membership change at a leader: add a learner, promote it, or remove someone.
    fn reconfigure(&mut self) -> Result<(), Violation> {
        let g = 1 + self.rng.below(self.c.knobs.groups);
        let Some(l) = self.c.leader_of(g) else {
            return Ok(());
        };
        let Some(r) = self.c.raft(l, g) else {
            return Ok(());
        };
        let m = r.membership().clone();
        let n = self.c.knobs.nodes;
        let outsider = (1..=n).find(|x| !m.contains(*x));
        let learner = m.learners.iter().next().copied();
        let change = if let Some(x) = learner {
            ConfChange::Promote(x)
        } else if let (Some(x), true) = (outsider, self.rng.below(2) == 0) {
            ConfChange::AddLearner(x, None)
        } else if m.voters.len() > 3 || (m.voters.len() == 3 && n > 3 && self.rng.below(3) == 0) {
            let vs: Vec<NodeId> = m.voters.iter().copied().collect();
            ConfChange::Remove(vs[self.rng.below(vs.len() as u64) as usize])
        } else if let Some(x) = outsider {
            ConfChange::AddLearner(x, None)
        } else {
            return Ok(());
        };
        if let Some(r) = self.c.raft_mut(l, g) {
            if r.role() == Role::Leader && r.propose_conf_change(change.clone()).is_ok() {
                let now = self.c.now;
                self.c
                    .log(format!("t={now} g{g} leader {l} conf change {change:?}"));
            }
        }
        self.c.process(l)
    }
}

/// Runs `count` seeds from `first`; returns the reports or the first failure.
pub fn run_many(first: u64, count: u64, steps: u64) -> Result<Vec<RunReport>, SimFailure> {
    let mut out = Vec::new();
    for s in first..first + count {
        let mut r = run(&RunOptions::new(s, steps))?;
        r.history = Vec::new();
        out.push(r);
    }
    Ok(out)
}

/// Summary line of a report.
pub fn summary(r: &RunReport) -> String {
    format!(
        "seed {}: {}n×{}g ok={} fail={} info={} eventual={} applied={} leaders={} crashes={} deferred={}/{} snapshots={}/{} msgs={} checks={} history={}",
        r.seed, r.shape.0, r.shape.1, r.ops_ok, r.ops_fail, r.ops_info, r.eventual_reads,
        r.stats.applied, r.stats.leaders_elected, r.stats.crashes, r.stats.hard_states_deferred,
        r.stats.deferred_lost, r.stats.snapshots,
        r.stats.snapshots_installed, r.stats.messages, r.checks, r.verdict
    )
}
