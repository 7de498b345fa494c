//! The simulated cluster's shape and Raft knobs: nodes, groups, initial voters, durability,
//! PreVote / CheckQuorum, snapshot and message limits, the network's delays, drops and
//! duplicates, tick skew, fsync delays, and the test-only rule breakers and planted faults.
//!
//! Invariants: [`Knobs::raft_config`] is a pure function of the knobs, the node, the group, the
//! incarnation and the seed, so a run is replayed by its seed. Owned by the simulator.

use crate::node::driver::DriverFaults;
use crate::node::kv::PlantedFault;
use crate::raft::{Config, Durability, GroupId, NodeId};

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
    /// Test-only: faults planted in every node's driver.
    pub driver_faults: DriverFaults,
    /// Test-only: every node's storage defers every hard state, a new term or vote too.
    pub defer_every_hard_state: bool,
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
            driver_faults: DriverFaults::default(),
            defer_every_hard_state: false,
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
