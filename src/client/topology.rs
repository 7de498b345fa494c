//! What a client knows about the cluster: its nodes, how many shards the key space is hashed
//! into, and the leader of each shard; and the choice of the node an attempt goes to.
//!
//! Sources: a `ClusterStatus` answer (nodes, shard count, leaders) and every `NotLeader` hint.
//! Keys map to shards with the node's own function, [`crate::node::runtime::shard_of_key`]
//! (FNV-1a modulo the shard count), so client and nodes always agree. A node that failed to
//! connect is avoided for `down_node_cooldown_ms` while another candidate exists. The node
//! list is bounded by [`crate::client::config::MAX_ENDPOINTS`]. Pure data, no I/O: both the
//! blocking and the async client drive it. Owned by the client.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ringraft_net::message::{ClusterStatus, NodeId};

use crate::client::config::MAX_ENDPOINTS;
use crate::node::runtime::shard_of_key;

/// The client's view of the cluster.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Node addresses in the order they were learned (configured endpoints first).
    addresses: Vec<String>,
    /// Node ids learned from status answers and hints.
    ids: HashMap<String, NodeId>,
    /// Shard count, once a status answer told it.
    shards: Option<u32>,
    /// Leader address per shard.
    leaders: Vec<Option<String>>,
    /// When a node last failed to connect.
    down_since: HashMap<String, Instant>,
    down_cooldown: Duration,
    next: usize,
}

impl Topology {
    /// A topology that knows only the configured endpoints.
    pub(crate) fn new(endpoints: &[String], down_cooldown: Duration) -> Self {
        let mut t = Topology {
            addresses: Vec::new(),
            ids: HashMap::new(),
            shards: None,
            leaders: Vec::new(),
            down_since: HashMap::new(),
            down_cooldown,
            next: 0,
        };
        for e in endpoints {
            t.learn_address(e);
        }
        t
    }

    fn learn_address(&mut self, a: &str) {
        if !self.addresses.iter().any(|x| x == a) && self.addresses.len() < MAX_ENDPOINTS {
            self.addresses.push(a.to_string());
        }
    }

    /// Every node address known.
    pub fn addresses(&self) -> &[String] {
        &self.addresses
    }

    /// Shard count, if known.
    pub fn shard_count(&self) -> Option<u32> {
        self.shards
    }

    /// Whether a status answer has been applied.
    pub(crate) fn is_known(&self) -> bool {
        self.shards.is_some()
    }

    /// Forgets the shard count, so the next operation asks for the status again.
    pub(crate) fn invalidate(&mut self) {
        self.shards = None;
    }

    /// The shard of `key` (shard 0 while the count is unknown).
    pub fn shard_of(&self, key: &[u8]) -> u32 {
        shard_of_key(key, self.shards.unwrap_or(1) as usize) as u32
    }

    /// Node id of an address, if learned.
    pub(crate) fn node_id(&self, address: &str) -> Option<NodeId> {
        self.ids.get(address).copied()
    }

    /// The leader of `shard`, if known.
    pub(crate) fn leader_of(&self, shard: u32) -> Option<&str> {
        self.leaders.get(shard as usize).and_then(|l| l.as_deref())
    }

    /// Takes in a status answer.
    pub(crate) fn apply_status(&mut self, st: &ClusterStatus) {
        for n in &st.nodes {
            self.learn_address(&n.address);
            self.ids.insert(n.address.clone(), n.node_id);
        }
        let count = st
            .shards
            .iter()
            .map(|s| s.group + 1)
            .max()
            .unwrap_or(1)
            .max(1) as u32;
        if self.shards != Some(count) {
            self.leaders = vec![None; count as usize];
        }
        self.shards = Some(count);
        for s in &st.shards {
            let addr = s.leader.and_then(|l| {
                st.nodes
                    .iter()
                    .find(|n| n.node_id == l)
                    .map(|n| n.address.clone())
            });
            if let (Some(slot), Some(a)) = (self.leaders.get_mut(s.group as usize), addr) {
                *slot = Some(a);
            }
        }
    }

    /// Records a leader hint for `shard`.
    pub(crate) fn set_leader(&mut self, shard: u32, node_id: NodeId, address: &str) {
        self.learn_address(address);
        self.ids.insert(address.to_string(), node_id);
        if let Some(slot) = self.leaders.get_mut(shard as usize) {
            *slot = Some(address.to_string());
        }
    }

    /// Forgets the leader of `shard` if it is `address` (or any, with `None`).
    pub(crate) fn clear_leader(&mut self, shard: u32, address: Option<&str>) {
        if let Some(slot) = self.leaders.get_mut(shard as usize) {
            if address.is_none() || slot.as_deref() == address {
                *slot = None;
            }
        }
    }

    /// Records that `address` could not be reached; it stops being anyone's leader.
    pub(crate) fn mark_down(&mut self, address: &str, now: Instant) {
        self.down_since.insert(address.to_string(), now);
        for slot in &mut self.leaders {
            if slot.as_deref() == Some(address) {
                *slot = None;
            }
        }
    }

    /// Records that `address` answered.
    pub(crate) fn mark_up(&mut self, address: &str) {
        self.down_since.remove(address);
    }

    /// Whether `address` failed to connect within the cooldown.
    pub(crate) fn is_down(&self, address: &str, now: Instant) -> bool {
        self.down_since
            .get(address)
            .is_some_and(|t| now.duration_since(*t) < self.down_cooldown)
    }

    /// The next node in round-robin order, skipping `avoid` and recently failed nodes while
    /// another choice exists.
    pub(crate) fn next_node(&mut self, avoid: Option<&str>, now: Instant) -> String {
        let n = self.addresses.len();
        for pass in 0..3 {
            for _ in 0..n {
                let a = &self.addresses[self.next % n];
                self.next = self.next.wrapping_add(1);
                let avoided = pass < 2 && avoid == Some(a.as_str());
                let down = pass < 1 && self.is_down(a, now);
                if !avoided && !down {
                    return a.clone();
                }
            }
        }
        // `addresses` is never empty: the configuration is validated first.
        self.addresses.first().cloned().unwrap_or_default()
    }

    /// Where an attempt for `shard` goes: its leader if known (and up), else the next node.
    /// `any_node` (eventual reads) spreads over all nodes instead.
    pub(crate) fn target(&mut self, shard: u32, any_node: bool, now: Instant) -> String {
        if any_node {
            return self.next_node(None, now);
        }
        match self.leader_of(shard) {
            Some(l) if !self.is_down(l, now) => l.to_string(),
            _ => self.next_node(None, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringraft_net::message::{NodeStatus, ShardStatus};

    fn status() -> ClusterStatus {
        let node = |id: u64| NodeStatus {
            node_id: id,
            address: format!("127.0.0.1:{}", 9080 + id),
            reachable: true,
        };
        let shard = |g: u64, l: Option<u64>| ShardStatus {
            group: g,
            leader: l,
            term: 1,
            commit_index: 1,
            applied_index: 1,
            followers: vec![],
        };
        ClusterStatus {
            reporter: 1,
            nodes: vec![node(1), node(2), node(3), node(4)],
            shards: vec![shard(0, Some(2)), shard(1, None), shard(2, Some(3))],
        }
    }

    #[test]
    fn status_teaches_nodes_shards_and_leaders() {
        let mut t = Topology::new(&["127.0.0.1:9081".into()], Duration::from_secs(1));
        t.apply_status(&status());
        assert_eq!(t.shard_count(), Some(3));
        assert_eq!(t.addresses().len(), 4);
        assert_eq!(t.leader_of(0), Some("127.0.0.1:9082"));
        assert_eq!(t.leader_of(1), None);
        assert_eq!(t.node_id("127.0.0.1:9083"), Some(3));
        // The node's own hashing decides the shard.
        for k in [&b"a"[..], b"user:1", b"zzz"] {
            assert_eq!(t.shard_of(k) as usize, shard_of_key(k, 3));
        }
        t.set_leader(1, 4, "127.0.0.1:9084");
        assert_eq!(t.leader_of(1), Some("127.0.0.1:9084"));
        t.clear_leader(1, Some("127.0.0.1:9081"));
        assert_eq!(t.leader_of(1), Some("127.0.0.1:9084"));
        t.clear_leader(1, Some("127.0.0.1:9084"));
        assert_eq!(t.leader_of(1), None);
    }

    #[test]
    fn down_nodes_are_avoided_while_others_exist() {
        let eps: Vec<String> = (1..=3).map(|i| format!("127.0.0.1:908{i}")).collect();
        let mut t = Topology::new(&eps, Duration::from_secs(60));
        t.apply_status(&status());
        let now = Instant::now();
        t.mark_down("127.0.0.1:9082", now);
        assert_eq!(t.leader_of(0), None, "a down node is nobody's leader");
        for _ in 0..10 {
            assert_ne!(t.target(0, false, now), "127.0.0.1:9082");
        }
        for _ in 0..10 {
            assert_ne!(t.next_node(Some("127.0.0.1:9081"), now), "127.0.0.1:9081");
        }
        t.mark_up("127.0.0.1:9082");
        let seen: Vec<String> = (0..4).map(|_| t.next_node(None, now)).collect();
        assert!(seen.iter().any(|a| a == "127.0.0.1:9082"));
    }
}
