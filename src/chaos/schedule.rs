//! The seeded fault schedule: which nemesis strikes when, for how long, and at whom. Same seed,
//! same schedule (the schedule is printed at the start of a run and written into the report).
//! "The leader" is a target resolved when the fault starts, so which node that is depends on the
//! run; everything else (kinds, times, node indexes, partition sides) is fixed by the seed.
//!
//! Invariants: faults never overlap (each one is healed before the next starts), every fault
//! ends at least [`RECOVERY_TAIL`] before the workload stops, and pauses outlast the election
//! timeout (a paused leader must be replaced). Owned by the fault suite.

use std::fmt;
use std::time::Duration;

/// No fault during the first part of a run: the cluster settles and the workload warms up.
pub const WARMUP: Duration = Duration::from_secs(2);
/// The last part of a run is fault-free: the cluster must recover while the workload runs.
pub const RECOVERY_TAIL: Duration = Duration::from_secs(4);
/// Quiet time between two faults, at least and at most, in milliseconds.
pub const GAP_MS: (u64, u64) = (1_000, 3_000);
/// How long a fault lasts, at least and at most, in milliseconds. The lower bound is above the
/// election timeout of the shipped configs (600..1200 ms) so that a pause, a partition or a
/// killed leader forces an election.
pub const FAULT_MS: (u64, u64) = (2_500, 6_000);

/// A pause-isolated leader is continued this long before the heal, its links still cut: the
/// window in which it believes it leads with a lease that ran out while it was stopped. Above
/// the shipped configs' largest election timeout (1200 ms), so check-quorum has to step it down
/// inside the window.
pub const CUT_AFTER_RESUME: Duration = Duration::from_millis(1_500);

/// SplitMix64: a small, seedable, portable generator (the schedule must not depend on a
/// library's algorithm choice to stay replayable).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0; 0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo).saturating_add(1))
    }
}

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum NemesisKind {
    /// SIGKILL a random node; restart it on the same data directory when the fault ends.
    Kill,
    /// SIGKILL the leader; restart it when the fault ends.
    KillLeader,
    /// SIGSTOP the leader; SIGCONT it when the fault ends (it comes back believing it leads).
    Pause,
    /// Cut the peer links between a random majority and the minority (both directions).
    Partition,
    /// Cut the leader's peer links (both directions); clients still reach it directly.
    IsolateLeader,
    /// Two halves that cannot talk to each other but both talk to one bridge node.
    Bridge,
    /// One-way: the leader's outgoing peer links are cut, its incoming ones still work.
    OneWay,
    /// SIGKILL every node at once; restart them all when the fault ends.
    RestartAll,
    /// Isolate a random follower (it falls behind), then at the heal kill the leader: the
    /// lagging follower must not win the election that follows.
    LaggingElection,
    /// Ask the leader to hand leadership to another voter (the admin `TransferLeadership`
    /// request), under load; the seeded node is the preferred new leader (the next voter if it
    /// is the leader or no longer a member).
    TransferLeader,
    /// A membership change under load: start a spare node (n4, then n5) that joins as a
    /// learner, promote it once it caught up, then remove a follower voter (the seeded node, or
    /// the next follower) and stop it for good: the voter count stays the same. The leader is
    /// never the one removed (the server steps down after committing its own removal but does
    /// not hand over first). Without a spare left, the fault hands leadership over instead.
    Membership,
    /// Cut the leader's peer links and SIGSTOP it; SIGCONT it [`CUT_AFTER_RESUME`] before the
    /// heal, its links still cut: it comes back believing it leads, hears nobody, and must not
    /// serve lease reads from its own state (its lease ran out while it was stopped) until it
    /// steps down. Not part of `mixed` (a targeted schedule, with `--lease-heavy`).
    PauseIsolated,
    /// Restart one node with its WAL fault hook armed (a seeded failing fsync, short write or
    /// ENOSPC after N operations, see [`DiskFault`]); restart it without the hook at the heal.
    /// The node's exit when the fault fires, and its error lines then, are expected. Not part
    /// of `mixed` (it needs the node's hook; name it, as `chaos-long` does).
    Disk,
    /// Each fault a random one of the kinds above, `disk` excepted.
    Mixed,
}

impl NemesisKind {
    /// Every concrete kind `mixed` draws from (`chaos-long` runs these and `disk`). `disk` is
    /// left out so that a `mixed` seed replays the same schedule whether or not a node build
    /// honours the WAL fault hook.
    pub const ALL: [NemesisKind; 11] = [
        NemesisKind::Kill,
        NemesisKind::KillLeader,
        NemesisKind::Pause,
        NemesisKind::Partition,
        NemesisKind::IsolateLeader,
        NemesisKind::Bridge,
        NemesisKind::OneWay,
        NemesisKind::RestartAll,
        NemesisKind::LaggingElection,
        NemesisKind::TransferLeader,
        NemesisKind::Membership,
    ];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            NemesisKind::Kill => "kill",
            NemesisKind::KillLeader => "kill-leader",
            NemesisKind::Pause => "pause",
            NemesisKind::Partition => "partition",
            NemesisKind::IsolateLeader => "isolate-leader",
            NemesisKind::Bridge => "bridge",
            NemesisKind::OneWay => "one-way",
            NemesisKind::RestartAll => "restart-all",
            NemesisKind::LaggingElection => "lagging-election",
            NemesisKind::TransferLeader => "transfer-leader",
            NemesisKind::Membership => "membership",
            NemesisKind::PauseIsolated => "pause-isolated",
            NemesisKind::Disk => "disk",
            NemesisKind::Mixed => "mixed",
        }
    }
}

/// Who a fault strikes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Node at this index (0-based).
    Node(usize),
    /// Whoever leads when the fault starts.
    Leader,
    /// Every node.
    All,
    /// Partition: these node indexes on one side, the rest on the other.
    Side(Vec<usize>),
    /// Bridge: this node sees both halves; `side` is one half, the rest the other.
    Bridge {
        /// The bridge node.
        bridge: usize,
        /// One half (without the bridge).
        side: Vec<usize>,
    },
    /// Lagging election: this follower index is isolated (if it leads when the fault
    /// starts, the next node is taken).
    Lagging(usize),
    /// Disk: this node index is restarted with this WAL fault armed.
    Disk {
        /// The node.
        node: usize,
        /// The fault its WAL is given.
        fault: DiskFault,
    },
}

/// Bounds of the seeded operation count after which a disk fault fires (operations of that
/// kind succeed this many times first). Low enough that a node under the workload reaches it
/// within the shortest fault window, high enough that the restarted node recovers, rejoins and
/// writes before it fails.
pub const DISK_FAULT_AFTER: (u64, u64) = (10, 300);

/// What a disk fault makes fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFaultKind {
    /// Every WAL sync (fdatasync) after N fails with EIO.
    FsyncFail,
    /// Every record write after N writes half its bytes, then fails with EIO.
    ShortWrite,
    /// Every record write after N fails with ENOSPC.
    NoSpace,
}

/// One disk fault: a kind and how many operations succeed before it fires (sticky after).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskFault {
    /// What fails.
    pub kind: DiskFaultKind,
    /// Operations that succeed first.
    pub after: u64,
}

impl DiskFault {
    /// The WAL fault spec (`ringraft_wal::FaultInjector::from_spec` syntax), the value of
    /// `RINGRAFT_WAL_FAULT` for the node.
    pub fn spec(&self) -> String {
        let key = match self.kind {
            DiskFaultKind::FsyncFail => "fsync_fail_after",
            DiskFaultKind::ShortWrite => "short_write_after",
            DiskFaultKind::NoSpace => "enospc_after",
        };
        format!("{key}={}", self.after)
    }
}

/// One planned fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// When it starts, from the start of the workload.
    pub at: Duration,
    /// How long it lasts.
    pub duration: Duration,
    /// The kind.
    pub kind: NemesisKind,
    /// Whom it strikes.
    pub target: Target,
}

fn node_list(v: &[usize]) -> String {
    let names: Vec<String> = v.iter().map(|i| format!("n{}", i + 1)).collect();
    format!("{{{}}}", names.join(","))
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let target = match &self.target {
            Target::Node(i) if self.kind == NemesisKind::TransferLeader => {
                format!("to n{} (or the next voter)", i + 1)
            }
            Target::Node(i) if self.kind == NemesisKind::Membership => {
                format!(
                    "add a spare, promote it, remove n{} (or the next follower)",
                    i + 1
                )
            }
            Target::Node(i) => format!("n{}", i + 1),
            Target::Leader => "the leader".to_string(),
            Target::All => "every node".to_string(),
            Target::Side(s) => format!("{} | rest", node_list(s)),
            Target::Bridge { bridge, side } => {
                format!("{} | rest, bridged by n{}", node_list(side), bridge + 1)
            }
            Target::Lagging(i) => format!("n{} lags, then the leader dies", i + 1),
            Target::Disk { node, fault } => format!("n{} WAL fault {}", node + 1, fault.spec()),
        };
        write!(
            f,
            "t={:>6.1}s  {:<16} {:>5.1}s  {}",
            self.at.as_secs_f64(),
            self.kind.name(),
            self.duration.as_secs_f64(),
            target
        )
    }
}

/// The faults of a run of `total` with `nodes` nodes, drawn from `kinds` (`mixed` = all).
pub fn plan(seed: u64, nodes: usize, total: Duration, kinds: &[NemesisKind]) -> Vec<Fault> {
    let mut rng = Rng::new(seed);
    let mut pool: Vec<NemesisKind> = Vec::new();
    for k in kinds {
        if *k == NemesisKind::Mixed {
            pool.extend(NemesisKind::ALL);
        } else {
            pool.push(*k);
        }
    }
    pool.dedup();
    let mut out = Vec::new();
    if pool.is_empty() || nodes == 0 {
        return out;
    }
    let mut t = WARMUP.as_millis() as u64;
    let end = total.saturating_sub(RECOVERY_TAIL).as_millis() as u64;
    loop {
        let kind = pool[rng.below(pool.len() as u64) as usize];
        let dur = rng.between(FAULT_MS.0, FAULT_MS.1);
        if t + dur > end {
            break;
        }
        let target = target_for(kind, nodes, &mut rng);
        out.push(Fault {
            at: Duration::from_millis(t),
            duration: Duration::from_millis(dur),
            kind,
            target,
        });
        t += dur + rng.between(GAP_MS.0, GAP_MS.1);
    }
    out
}

fn target_for(kind: NemesisKind, nodes: usize, rng: &mut Rng) -> Target {
    let n = nodes as u64;
    match kind {
        NemesisKind::Kill | NemesisKind::TransferLeader | NemesisKind::Membership => {
            Target::Node(rng.below(n) as usize)
        }
        NemesisKind::KillLeader
        | NemesisKind::Pause
        | NemesisKind::IsolateLeader
        | NemesisKind::OneWay
        | NemesisKind::PauseIsolated
        | NemesisKind::Mixed => Target::Leader,
        NemesisKind::RestartAll => Target::All,
        NemesisKind::LaggingElection => Target::Lagging(rng.below(n) as usize),
        NemesisKind::Disk => {
            let node = rng.below(n) as usize;
            let kind = match rng.below(3) {
                0 => DiskFaultKind::FsyncFail,
                1 => DiskFaultKind::ShortWrite,
                _ => DiskFaultKind::NoSpace,
            };
            let after = rng.between(DISK_FAULT_AFTER.0, DISK_FAULT_AFTER.1);
            Target::Disk {
                node,
                fault: DiskFault { kind, after },
            }
        }
        NemesisKind::Partition => {
            // A random minority (at least one node) against the rest.
            let mut order: Vec<usize> = (0..nodes).collect();
            shuffle(&mut order, rng);
            let minority = ((nodes - 1) / 2).max(1);
            let mut side: Vec<usize> = order[..minority.min(nodes)].to_vec();
            side.sort_unstable();
            Target::Side(side)
        }
        NemesisKind::Bridge => {
            let mut order: Vec<usize> = (0..nodes).collect();
            shuffle(&mut order, rng);
            let bridge = order[0];
            let rest = &order[1..];
            let mut side: Vec<usize> = rest[..rest.len() / 2].to_vec();
            if side.is_empty() && !rest.is_empty() {
                side.push(rest[0]);
            }
            side.sort_unstable();
            Target::Bridge { bridge, side }
        }
    }
}

fn shuffle(v: &mut [usize], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_schedule_and_faults_fit_the_run() {
        let total = Duration::from_secs(60);
        let a = plan(7, 3, total, &[NemesisKind::Mixed]);
        assert_eq!(a, plan(7, 3, total, &[NemesisKind::Mixed]));
        assert_ne!(a, plan(8, 3, total, &[NemesisKind::Mixed]));
        assert!(a.len() >= 5, "{a:?}");
        let mut prev_end = WARMUP;
        for f in &a {
            assert!(f.at >= prev_end, "overlap: {f}");
            prev_end = f.at + f.duration;
            assert!(f.duration >= Duration::from_millis(FAULT_MS.0));
        }
        assert!(prev_end + RECOVERY_TAIL <= total);
        let only = plan(1, 3, total, &[NemesisKind::Partition]);
        for f in &only {
            let Target::Side(s) = &f.target else {
                panic!("{f}")
            };
            assert_eq!(s.len(), 1);
        }
        assert!(plan(1, 3, Duration::from_secs(5), &[NemesisKind::Kill]).is_empty());
        assert!(
            a.iter().all(|f| f.kind != NemesisKind::Disk),
            "disk is not in mixed"
        );
        // Mixed draws the membership and leadership nemeses too, each with a seeded node.
        let long = plan(5, 3, Duration::from_secs(720), &[NemesisKind::Mixed]);
        for k in [NemesisKind::Membership, NemesisKind::TransferLeader] {
            let f = long
                .iter()
                .find(|f| f.kind == k)
                .expect("drawn in 12 minutes");
            assert!(matches!(f.target, Target::Node(i) if i < 3), "{f}");
        }
    }

    #[test]
    fn disk_faults_are_seeded_in_bounds_and_valid_wal_specs() {
        let total = Duration::from_secs(120);
        let a = plan(11, 3, total, &[NemesisKind::Disk]);
        assert_eq!(a, plan(11, 3, total, &[NemesisKind::Disk]));
        assert!(a.len() >= 5, "{a:?}");
        let mut kinds = std::collections::HashSet::new();
        let mut nodes = std::collections::HashSet::new();
        for f in &a {
            let Target::Disk { node, fault } = &f.target else {
                panic!("{f}")
            };
            assert!(*node < 3, "{f}");
            assert!(
                (DISK_FAULT_AFTER.0..=DISK_FAULT_AFTER.1).contains(&fault.after),
                "{f}"
            );
            // The spec is one the WAL's fault hook accepts, and it names the drawn count.
            let spec = fault.spec();
            assert!(
                ringraft_wal::FaultInjector::from_spec(&spec).is_ok(),
                "{spec}"
            );
            assert!(spec.ends_with(&format!("={}", fault.after)), "{spec}");
            assert!(f.to_string().contains(&spec), "{f}");
            kinds.insert(spec.split('=').next().unwrap_or("").to_string());
            nodes.insert(*node);
        }
        assert!(kinds.len() >= 2 && nodes.len() >= 2, "{a:?}");
    }
}
