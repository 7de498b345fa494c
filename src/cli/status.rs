//! `ringraft status` and `ringraft members`: ask every known node for its `ClusterStatus` and
//! merge the answers into one view — every node (reachable or not) and, per shard, its leader,
//! term, commit index and each follower's lag (as the leader reports them; the follower list is
//! only known to the leader, so a shard without a reachable leader shows its highest-term view
//! without followers). Printed as a table or as one JSON object. Owned by the client.

use std::collections::BTreeMap;
use std::process::ExitCode;

use ringraft_net::message::{ClusterStatus, ShardStatus};
use serde_json::{json, Value};

use crate::cli::{explain, EXIT_FAILURE};
use crate::client::{Client, Error};

/// Why one node did not answer, in words.
fn node_error(e: &Error) -> String {
    match e {
        Error::Unreachable { last, .. } => format!("unreachable: {last}"),
        other => other.to_string(),
    }
}

/// Every node's answer (or why there is none), in address order of discovery.
#[derive(Debug)]
pub(crate) struct Gathered {
    /// `(address, node id if known, its report or the error)`.
    pub(crate) reports: Vec<(String, Option<u64>, Result<ClusterStatus, Error>)>,
}

/// Asks every node the client knows (after learning them from the first that answers).
pub(crate) fn gather(client: &mut Client) -> Result<Gathered, Error> {
    client.cluster_status()?;
    let addresses = client.topology().addresses().to_vec();
    let reports = addresses
        .into_iter()
        .map(|a| {
            let r = client.node_status(&a);
            let id = match &r {
                Ok(st) => Some(st.reporter),
                Err(_) => client.topology().node_id(&a),
            };
            (a, id, r)
        })
        .collect();
    Ok(Gathered { reports })
}

impl Gathered {
    fn answered(&self) -> impl Iterator<Item = &ClusterStatus> {
        self.reports.iter().filter_map(|(_, _, r)| r.as_ref().ok())
    }

    fn address_of(&self, id: u64) -> Option<String> {
        self.reports
            .iter()
            .find(|(_, i, _)| *i == Some(id))
            .map(|(a, _, _)| a.clone())
            .or_else(|| {
                self.answered()
                    .flat_map(|s| s.nodes.iter())
                    .find(|n| n.node_id == id)
                    .map(|n| n.address.clone())
            })
    }

    /// Per shard: the best report — the leader's own, else the highest (term, commit).
    pub(crate) fn shards(&self) -> BTreeMap<u64, (u64, ShardStatus)> {
        let mut best: BTreeMap<u64, (u64, ShardStatus)> = BTreeMap::new();
        for st in self.answered() {
            for s in &st.shards {
                let own = s.leader == Some(st.reporter);
                let better = match best.get(&s.group) {
                    None => true,
                    Some((rep, b)) => {
                        let b_own = b.leader == Some(*rep);
                        (own && !b_own)
                            || (own == b_own && (s.term, s.commit_index) > (b.term, b.commit_index))
                    }
                };
                if better {
                    best.insert(s.group, (st.reporter, s.clone()));
                }
            }
        }
        best
    }

    /// Whether `node` is a learner of any shard, per the leaders' follower lists.
    fn is_learner(&self, node: u64) -> bool {
        self.shards()
            .values()
            .any(|(_, s)| s.followers.iter().any(|f| f.node_id == node && f.learner))
    }

    /// The merged status as one JSON object.
    pub(crate) fn to_json(&self) -> Value {
        let shards = self.shards();
        let nodes: Vec<Value> = self
            .reports
            .iter()
            .map(|(addr, id, r)| {
                let (reachable, error, per_shard) = match r {
                    Ok(st) => (
                        true,
                        Value::Null,
                        st.shards
                            .iter()
                            .map(|s| {
                                json!({
                                    "shard": s.group,
                                    "role": if s.leader == Some(st.reporter) { "leader" } else { "follower" },
                                    "term": s.term,
                                    "commit_index": s.commit_index,
                                    "applied_index": s.applied_index,
                                })
                            })
                            .collect::<Vec<_>>(),
                    ),
                    Err(e) => (false, Value::String(node_error(e)), Vec::new()),
                };
                json!({
                    "node_id": id,
                    "address": addr,
                    "reachable": reachable,
                    "learner": id.is_some_and(|i| self.is_learner(i)),
                    "error": error,
                    "shards": per_shard,
                })
            })
            .collect();
        let shard_list: Vec<Value> = shards
            .iter()
            .map(|(g, (reporter, s))| {
                json!({
                    "shard": g,
                    "leader": s.leader,
                    "leader_address": s.leader.and_then(|l| self.address_of(l)),
                    "term": s.term,
                    "commit_index": s.commit_index,
                    "applied_index": s.applied_index,
                    "reported_by": reporter,
                    "followers": s.followers.iter().map(|f| json!({
                        "node_id": f.node_id,
                        "match_index": f.match_index,
                        "lag": f.lag,
                        "learner": f.learner,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({ "nodes": nodes, "shards": shard_list })
    }

    /// The merged status as a table.
    pub(crate) fn to_table(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "{:<6} {:<22} {:<10} {}\n",
            "NODE", "ADDRESS", "REACHABLE", "ROLES"
        ));
        for (addr, id, r) in &self.reports {
            let id = id.map_or("?".to_string(), |i| i.to_string());
            let (reach, roles) = match r {
                Ok(st) => (
                    "yes".to_string(),
                    st.shards
                        .iter()
                        .map(|sh| {
                            let role = if sh.leader == Some(st.reporter) {
                                "leader"
                            } else {
                                "follower"
                            };
                            format!("shard {}: {role}", sh.group)
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
                Err(e) => ("no".to_string(), node_error(e)),
            };
            s.push_str(&format!("{id:<6} {addr:<22} {reach:<10} {roles}\n"));
        }
        s.push('\n');
        s.push_str(&format!(
            "{:<6} {:<8} {:<8} {:<12} {:<12} {}\n",
            "SHARD", "LEADER", "TERM", "COMMIT", "APPLIED", "FOLLOWERS (node:match_index/lag)"
        ));
        for (g, (_, sh)) in self.shards() {
            let leader = sh.leader.map_or("none".to_string(), |l| l.to_string());
            let followers = if sh.followers.is_empty() {
                "-".to_string()
            } else {
                sh.followers
                    .iter()
                    .map(|f| {
                        format!(
                            "{}:{}/{}{}",
                            f.node_id,
                            f.match_index,
                            f.lag,
                            if f.learner { " (learner)" } else { "" }
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("  ")
            };
            s.push_str(&format!(
                "{g:<6} {leader:<8} {:<8} {:<12} {:<12} {followers}\n",
                sh.term, sh.commit_index, sh.applied_index
            ));
        }
        s
    }

    /// Members as one JSON object.
    pub(crate) fn members_json(&self) -> Value {
        let members: Vec<Value> = self
            .reports
            .iter()
            .map(|(addr, id, r)| {
                json!({
                    "node_id": id,
                    "address": addr,
                    "kind": if id.is_some_and(|i| self.is_learner(i)) { "learner" } else { "voter" },
                    "reachable": r.is_ok(),
                })
            })
            .collect();
        json!({ "members": members })
    }

    /// Members as a table.
    pub(crate) fn members_table(&self) -> String {
        let mut s = format!(
            "{:<6} {:<22} {:<8} {}\n",
            "NODE", "ADDRESS", "KIND", "REACHABLE"
        );
        for (addr, id, r) in &self.reports {
            let kind = if id.is_some_and(|i| self.is_learner(i)) {
                "learner"
            } else {
                "voter"
            };
            s.push_str(&format!(
                "{:<6} {addr:<22} {kind:<8} {}\n",
                id.map_or("?".to_string(), |i| i.to_string()),
                if r.is_ok() { "yes" } else { "no" }
            ));
        }
        s
    }
}

/// `ringraft status [--json]`.
pub(crate) fn status(client: &mut Client, json: bool) -> ExitCode {
    match gather(client) {
        Ok(g) => {
            if json {
                println!("{}", g.to_json());
            } else {
                print!("{}", g.to_table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", explain("status", &e));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// `ringraft members [--json]`.
pub(crate) fn members(client: &mut Client, json: bool) -> ExitCode {
    match gather(client) {
        Ok(g) => {
            if json {
                println!("{}", g.members_json());
            } else {
                print!("{}", g.members_table());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", explain("members", &e));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringraft_net::message::{FollowerStatus, NodeStatus};

    fn report(reporter: u64, leader: Option<u64>, term: u64, followers: bool) -> ClusterStatus {
        ClusterStatus {
            reporter,
            nodes: (1..=3)
                .map(|i| NodeStatus {
                    node_id: i,
                    address: format!("127.0.0.1:908{i}"),
                    reachable: true,
                })
                .collect(),
            shards: vec![ShardStatus {
                group: 0,
                leader,
                term,
                commit_index: 10,
                applied_index: 10,
                followers: if followers {
                    vec![FollowerStatus {
                        node_id: 3,
                        match_index: 7,
                        lag: 3,
                        learner: false,
                    }]
                } else {
                    vec![]
                },
            }],
        }
    }

    #[test]
    fn the_leaders_view_wins_and_unreachable_nodes_are_listed() {
        let g = Gathered {
            reports: vec![
                (
                    "127.0.0.1:9081".into(),
                    Some(1),
                    Ok(report(1, Some(2), 5, false)),
                ),
                (
                    "127.0.0.1:9082".into(),
                    Some(2),
                    Ok(report(2, Some(2), 5, true)),
                ),
                (
                    "127.0.0.1:9083".into(),
                    Some(3),
                    Err(Error::Unreachable {
                        endpoints: "127.0.0.1:9083".into(),
                        last: "connection refused".into(),
                    }),
                ),
            ],
        };
        let j = g.to_json();
        assert_eq!(j["shards"][0]["leader"], 2);
        assert_eq!(j["shards"][0]["leader_address"], "127.0.0.1:9082");
        assert_eq!(j["shards"][0]["followers"][0]["lag"], 3);
        assert_eq!(j["nodes"][2]["reachable"], false);
        assert_eq!(j["nodes"][1]["shards"][0]["role"], "leader");
        let t = g.to_table();
        assert!(t.contains("3:7/3"), "{t}");
        assert!(g.members_table().contains("127.0.0.1:9083"));
    }
}
