//! The typed status of one shard as a core reports it: what crosses cores for `/status` and
//! the admin `ClusterStatus` request, serialized to JSON only at the HTTP edge and converted to
//! the wire's [`wire::ShardStatus`] for frames (no JSON is parsed back).

use ringraft_net::message as wire;
use serde::Serialize;

/// One follower's replication progress, as its leader sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct FollowerReport {
    /// Follower.
    pub(crate) node_id: u64,
    /// Highest index known replicated there.
    pub(crate) match_index: u64,
    /// Entries it is behind the leader's last index.
    pub(crate) lag: u64,
    /// Whether it is a learner.
    pub(crate) learner: bool,
}

/// One shard's status on the reporting node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardReport {
    /// Shard (Raft group).
    pub(crate) shard: u64,
    /// Core that owns it.
    pub(crate) core: usize,
    /// Role of this replica (`Leader`, `Follower`, ...).
    pub(crate) role: String,
    /// Current term.
    pub(crate) term: u64,
    /// Known leader (0 = none).
    pub(crate) leader_id: u64,
    /// Known leader's address.
    pub(crate) leader_address: Option<String>,
    /// Commit index.
    pub(crate) commit_index: u64,
    /// Applied index.
    pub(crate) applied_index: u64,
    /// Last log index.
    pub(crate) last_index: u64,
    /// Voters.
    pub(crate) voters: Vec<u64>,
    /// Learners.
    pub(crate) learners: Vec<u64>,
    /// Followers' progress (when this replica leads).
    pub(crate) followers: Vec<FollowerReport>,
}

impl ShardReport {
    /// The wire form of the report.
    pub(crate) fn to_wire(&self) -> wire::ShardStatus {
        wire::ShardStatus {
            group: self.shard,
            leader: (self.leader_id != 0).then_some(self.leader_id),
            term: self.term,
            commit_index: self.commit_index,
            applied_index: self.applied_index,
            followers: self
                .followers
                .iter()
                .map(|f| wire::FollowerStatus {
                    node_id: f.node_id,
                    match_index: f.match_index,
                    lag: f.lag,
                    learner: f.learner,
                })
                .collect(),
        }
    }
}
