//! Admin messages: cluster status and membership changes.
//!
//! Served on the same port and protocol as clients (after a client handshake). Membership
//! changes name the Raft group they apply to; the node runs them through its Raft core.

use rkyv::{Archive, Deserialize, Serialize};

use super::client::ClientError;
use super::raft::{GroupId, NodeId};

/// Admin tool → node.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum AdminRequest {
    /// Report every node and shard as this node sees them.
    ClusterStatus,
    /// Add `node_id` at `address` to `group` as a non-voting learner.
    AddLearner {
        /// Raft group.
        group: GroupId,
        /// New node.
        node_id: NodeId,
        /// Its peer address `host:port`.
        address: String,
    },
    /// Turn a caught-up learner into a voter.
    Promote {
        /// Raft group.
        group: GroupId,
        /// The learner.
        node_id: NodeId,
    },
    /// Remove a member (voter or learner).
    Remove {
        /// Raft group.
        group: GroupId,
        /// The member.
        node_id: NodeId,
    },
    /// Hand leadership of `group` to `to`.
    TransferLeadership {
        /// Raft group.
        group: GroupId,
        /// Target voter.
        to: NodeId,
    },
}

/// One node as seen by the reporting node.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct NodeStatus {
    /// Node id.
    pub node_id: NodeId,
    /// Address `host:port`.
    pub address: String,
    /// Whether the reporting node currently has a live connection to it.
    pub reachable: bool,
}

/// A follower's replication progress.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct FollowerStatus {
    /// Follower node.
    pub node_id: NodeId,
    /// Highest index known replicated on it.
    pub match_index: u64,
    /// Entries behind the leader's last index.
    pub lag: u64,
    /// Whether it is a learner.
    pub learner: bool,
}

/// One shard's Raft group.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct ShardStatus {
    /// Raft group.
    pub group: GroupId,
    /// Known leader.
    pub leader: Option<NodeId>,
    /// Current term.
    pub term: u64,
    /// Commit index.
    pub commit_index: u64,
    /// Applied index on the reporting node.
    pub applied_index: u64,
    /// Followers' progress (filled in when the reporting node leads the group).
    pub followers: Vec<FollowerStatus>,
}

/// Cluster status report.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct ClusterStatus {
    /// Reporting node.
    pub reporter: NodeId,
    /// Nodes.
    pub nodes: Vec<NodeStatus>,
    /// Shards.
    pub shards: Vec<ShardStatus>,
}

/// Node → admin tool.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum AdminResponse {
    /// Answer to ClusterStatus.
    Status(ClusterStatus),
    /// A membership change or transfer was committed (or started, for transfers).
    Done {
        /// Log index of the change (0 for transfers).
        index: u64,
    },
    /// Failure (NotLeader with hint, Timeout, InvalidRequest, ...).
    Failed(ClientError),
}
