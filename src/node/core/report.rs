//! What a core reports: per-shard gauges for metrics and the typed per-shard status.

use super::*;

impl CoreState {
    pub(super) fn update_gauges(&self, g: GroupId) {
        let (Some(r), Some(s)) = (self.multi.group(g), self.shards.get(&g)) else {
            return;
        };
        let Some(gg) = self.gauges(g) else {
            return;
        };
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
