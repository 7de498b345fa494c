//! Shared harness of the client tests: a cluster of real `ringraft server` processes on
//! loopback, in a fresh temporary directory, on ports the kernel reports free; every wait
//! bounded; every process killed by PID when the cluster is dropped (also on panic).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ringraft::client::{Client, ClientConfig};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringraft");
/// Longest wait for a cluster to elect its leaders.
pub const ELECTION_WAIT: Duration = Duration::from_secs(20);

/// A running test cluster.
pub struct TestCluster {
    pub dir: PathBuf,
    /// (client port, metrics port) of node i at index i - 1.
    pub ports: Vec<(u16, u16)>,
    pub children: Vec<Option<Child>>,
}

/// `n` loopback ports that are free right now (bound to port 0, then released).
pub fn free_ports(n: usize) -> Vec<u16> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap().port()).collect()
}

fn config_text(dir: &std::path::Path, id: u16, ports: &[(u16, u16)], shards: u16) -> String {
    let members: String = ports
        .iter()
        .enumerate()
        .map(|(i, (p, _))| {
            format!(
                "  {{ id = {}, address = \"127.0.0.1:{p}\", role = 1, status = 2 }},\n",
                i + 1
            )
        })
        .collect();
    format!(
        "[cluster]\nnode_id = {id}\nlisten_address = \"127.0.0.1:{port}\"\ninitial_cluster = [\n{members}]\n\
         db_root_dir = \"{db}\"\nlog_dir = \"{logs}\"\n\n\
         [raft]\nelection_timeout_ms_min = 600\nelection_timeout_ms_max = 1200\nheartbeat_interval_ms = 100\n\n\
         [raft.persistence]\nstrategy = \"DiskFirst\"\nflush_policy = \"Immediate\"\nsegment_bytes = 4194304\n\n\
         [network]\nrequest_timeout_ms = 3000\n\n[monitoring]\nmetrics_port = {mport}\n\n\
         [runtime]\ncores = 1\nshards_per_node = {shards}\n",
        port = ports[id as usize - 1].0,
        mport = ports[id as usize - 1].1,
        db = dir.join("db").display(),
        logs = dir.join("logs").display(),
    )
}

impl TestCluster {
    /// Starts `n` nodes of one shard.
    pub fn start(name: &str, n: u16) -> TestCluster {
        Self::start_sharded(name, n, 1)
    }

    /// Starts `n` nodes with `shards` shards (Raft groups) each.
    pub fn start_sharded(name: &str, n: u16, shards: u16) -> TestCluster {
        let dir =
            std::env::temp_dir().join(format!("ringraft-client-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let free = free_ports(2 * n as usize);
        let ports: Vec<(u16, u16)> = free.chunks(2).map(|p| (p[0], p[1])).collect();
        let mut c = TestCluster {
            dir,
            ports,
            children: Vec::new(),
        };
        for id in 1..=n {
            let path = c.dir.join(format!("n{id}.toml"));
            std::fs::write(&path, config_text(&c.dir, id, &c.ports, shards)).unwrap();
            c.children.push(None);
            c.start_node(id);
        }
        c
    }

    /// (Re)starts node `id`.
    pub fn start_node(&mut self, id: u16) {
        let child = Command::new(BIN)
            .args(["server", "--config"])
            .arg(self.dir.join(format!("n{id}.toml")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.children[id as usize - 1] = Some(child);
    }

    /// SIGKILLs node `id` (by PID) and reaps it.
    pub fn kill_node(&mut self, id: u16) {
        if let Some(mut c) = self.children[id as usize - 1].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Client address of node `id`.
    pub fn address(&self, id: u16) -> String {
        format!("127.0.0.1:{}", self.ports[id as usize - 1].0)
    }

    /// Every node's client address.
    pub fn endpoints(&self) -> Vec<String> {
        (1..=self.children.len() as u16)
            .map(|i| self.address(i))
            .collect()
    }

    /// The endpoints as one comma-separated list.
    pub fn endpoints_arg(&self) -> String {
        self.endpoints().join(",")
    }

    /// A client configuration for this cluster.
    pub fn client_config(&self) -> ClientConfig {
        ClientConfig::with_endpoints(&self.endpoints())
    }

    /// Waits (bounded) until every shard has a leader; returns the leader of shard 0.
    pub fn wait_for_leader(&self) -> u64 {
        let deadline = Instant::now() + ELECTION_WAIT;
        loop {
            let mut cfg = self.client_config();
            cfg.operation_timeout_ms = 1_000;
            if let Ok(mut c) = Client::new(cfg) {
                for a in self.endpoints() {
                    if let Ok(st) = c.node_status(&a) {
                        let all =
                            !st.shards.is_empty() && st.shards.iter().all(|s| s.leader.is_some());
                        // Only the leader's own report proves it leads.
                        if all && st.shards[0].leader == Some(st.reporter) {
                            return st.reporter;
                        }
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {ELECTION_WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs the CLI with `args` against this cluster: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        run_cli(&self.endpoints_arg(), args)
    }
}

/// Runs `ringraft --endpoints ENDPOINTS ARGS…` (bounded by the client's own timeouts).
pub fn run_cli(endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("--endpoints")
        .arg(endpoints)
        .args(args)
        .env_remove("RINGRAFT_ENDPOINTS")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for c in self.children.iter_mut() {
            if let Some(mut c) = c.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
