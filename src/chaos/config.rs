//! A node's config as the suite rewrites it: the operator's config set is copied into the run's
//! work directory with the node's own listen address and metrics port (free ports the kernel
//! reported), its data and log directories in the work directory, and every peer address
//! replaced by the fault proxy's address of that directed link, so that every byte between two
//! nodes passes through [`Proxy`].
//!
//! Nodes that join at run time (the spares of the membership nemesis) announce their real
//! address when they join; every other node's config names the proxy link to each of them in
//! `cluster.peer_addresses`, which the node dials instead, so a joined node sits behind the same
//! fault machinery as the initial ones.
//!
//! Invariants: a rewritten config names only prepared nodes; the node's own entry keeps its real
//! address, every other entry (in `initial_cluster` or `peer_addresses`) is the proxy link from
//! this node to that one; every other setting stays as the operator wrote it. Owned by the fault
//! suite.

use std::net::SocketAddr;
use std::path::Path;

use super::proxy::Proxy;

/// Rewrites one node's config: real listen address, peers through the proxy, data and logs
/// in the work directory, own metrics port. Every other setting stays as the operator wrote it.
pub fn rewrite_config(
    text: &str,
    i: usize,
    addrs: &[SocketAddr],
    metrics_port: u16,
    dir: &Path,
    proxy: &Proxy,
) -> Result<String, String> {
    let mut doc: toml::Table = text.parse().map_err(|e| format!("not TOML: {e}"))?;
    let cluster = doc
        .entry("cluster")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or("[cluster] is not a table")?;
    let id = cluster
        .get("node_id")
        .and_then(|v| v.as_integer())
        .ok_or("cluster.node_id missing")?;
    if id != i as i64 + 1 {
        return Err(format!("cluster.node_id is {id}, expected {}", i + 1));
    }
    cluster.insert("listen_address".into(), addrs[i].to_string().into());
    cluster.insert(
        "db_root_dir".into(),
        dir.join("db").display().to_string().into(),
    );
    cluster.insert(
        "log_dir".into(),
        dir.join("logs").display().to_string().into(),
    );
    let members = cluster
        .get_mut("initial_cluster")
        .and_then(|v| v.as_array_mut())
        .ok_or("cluster.initial_cluster missing")?;
    // Members beyond the prepared nodes are dropped (a run may use fewer nodes than the
    // config set has); the node itself must be listed.
    members.retain(|m| {
        m.get("id")
            .and_then(|v| v.as_integer())
            .is_some_and(|id| id >= 1 && (id as usize) <= addrs.len())
    });
    if !members
        .iter()
        .any(|m| m.get("id").and_then(|v| v.as_integer()) == Some(id))
    {
        return Err(format!("cluster.initial_cluster does not list node {id}"));
    }
    let mut listed = Vec::new();
    for m in members.iter_mut() {
        let t = m
            .as_table_mut()
            .ok_or("initial_cluster entry is not a table")?;
        let j = t.get("id").and_then(|v| v.as_integer()).unwrap_or(0) as usize - 1;
        let addr = if j == i {
            addrs[i]
        } else {
            proxy.address(i, j).ok_or("no proxy link")?
        };
        t.insert("address".into(), addr.to_string().into());
        listed.push(j);
    }
    // Every other prepared node (a spare that joins at run time) is reached through the proxy
    // too: the node dials this address instead of the one the spare announces when it joins.
    let mut routes = toml::value::Array::new();
    for j in (0..addrs.len()).filter(|j| !listed.contains(j)) {
        let mut t = toml::Table::new();
        t.insert("id".into(), (j as i64 + 1).into());
        let addr = proxy.address(i, j).ok_or("no proxy link")?;
        t.insert("address".into(), addr.to_string().into());
        routes.push(t.into());
    }
    cluster.insert("peer_addresses".into(), routes.into());
    let mon = doc
        .entry("monitoring")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or("[monitoring] is not a table")?;
    mon.insert("metrics_port".into(), i64::from(metrics_port).into());
    toml::to_string(&doc).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` loopback addresses from port `base` on, and a proxy between them.
    fn nodes(n: u16, base: u16) -> (Vec<SocketAddr>, Proxy) {
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], base + i)))
            .collect();
        let proxy = Proxy::start(&addrs).unwrap();
        (addrs, proxy)
    }

    #[test]
    fn configs_are_rewritten_to_own_ports_and_the_proxy() {
        let (addrs, proxy) = nodes(3, 20_000);
        let text = std::fs::read_to_string("config/n2.toml").unwrap();
        let out = rewrite_config(&text, 1, &addrs, 31_000, Path::new("/tmp/w"), &proxy).unwrap();
        let doc: toml::Table = out.parse().unwrap();
        let c = doc["cluster"].as_table().unwrap();
        assert_eq!(c["listen_address"].as_str(), Some("127.0.0.1:20001"));
        assert_eq!(c["db_root_dir"].as_str(), Some("/tmp/w/db"));
        let m = c["initial_cluster"].as_array().unwrap();
        let a1 = m[0]["address"].as_str().unwrap();
        assert_eq!(a1, proxy.address(1, 0).unwrap().to_string());
        assert_eq!(m[1]["address"].as_str(), Some("127.0.0.1:20001"));
        assert_eq!(doc["monitoring"]["metrics_port"].as_integer(), Some(31_000));
        // Untouched settings survive.
        assert_eq!(doc["raft"]["heartbeat_interval_ms"].as_integer(), Some(100));
        assert!(rewrite_config(&text, 0, &addrs, 1, Path::new("/tmp"), &proxy).is_err());
        // No spares: every other node is in initial_cluster, no extra routes.
        assert_eq!(c["peer_addresses"].as_array().map(Vec::len), Some(0));
    }

    /// With spares prepared, a voter and a spare dial every node missing from their
    /// `initial_cluster` (a spare that joins later) through the proxy link, not at the address
    /// that node announces.
    #[test]
    fn nodes_that_join_later_are_routed_through_the_proxy() {
        let (addrs, proxy) = nodes(5, 20_100);
        let routes = |i: usize| -> Vec<(i64, String)> {
            let text = std::fs::read_to_string(format!("config/n{}.toml", i + 1)).unwrap();
            let out = rewrite_config(&text, i, &addrs, 1, Path::new("/tmp/w"), &proxy).unwrap();
            // The node accepts what the suite wrote.
            let cfg = crate::node::config::Config::from_toml_with_env(&out, &[]).unwrap();
            cfg.cluster
                .peer_addresses
                .iter()
                .map(|p| (p.id as i64, p.address.clone()))
                .collect()
        };
        let via = |i: usize, j: usize| proxy.address(i, j).unwrap().to_string();
        assert_eq!(routes(0), vec![(4, via(0, 3)), (5, via(0, 4))]);
        assert_eq!(routes(3), vec![(5, via(3, 4))]);
        // n5's own config lists n4 already (the proxy link in initial_cluster).
        assert!(routes(4).is_empty());
        // A route for a node of initial_cluster (or a repeated one) is refused by the node.
        let text = std::fs::read_to_string("config/n1.toml").unwrap();
        let out = rewrite_config(&text, 0, &addrs, 1, Path::new("/tmp/w"), &proxy).unwrap();
        let mut doc: toml::Table = out.parse().unwrap();
        let mut route = toml::Table::new();
        route.insert("id".into(), 2.into());
        route.insert("address".into(), "127.0.0.1:1".into());
        doc["cluster"]["peer_addresses"]
            .as_array_mut()
            .unwrap()
            .push(route.into());
        let bad = toml::to_string(&doc).unwrap();
        let e = crate::node::config::Config::from_toml_with_env(&bad, &[]).unwrap_err();
        assert!(
            e.to_string().contains("cluster.peer_addresses[2].id"),
            "{e}"
        );
    }
}
