//! Shared harness of the tests that run real `ringraft server` processes: a cluster on
//! loopback, in a fresh temporary directory, on ports the kernel reports free; nodes started,
//! signalled, stopped and restarted by PID; every wait bounded; every process killed when the
//! cluster is dropped (also on panic, when the directory is kept for a post-mortem). The one
//! place that starts and stops node processes for the cluster, TLS, client, HTTP and WAL-fault
//! tests. Its parts: [`config`] (what a node is configured with), [`http`] (plain HTTP the way
//! curl speaks it, bounded retries), [`tls`] (certificates, HTTPS and frames over TLS).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ringraft::client::{Client, ClientConfig};

pub mod config;
pub mod http;
pub mod tls;

pub use config::{Joins, Settings};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringraft");
/// Longest wait for a cluster to elect its leaders.
pub const ELECTION_WAIT: Duration = Duration::from_secs(20);

/// Environment variables of the WAL fault hook: removed from every node's environment unless a
/// test sets them for one start.
pub const WAL_FAULT_ENV: [&str; 2] = ["RINGRAFT_WAL_FAULT", "RINGRAFT_WAL_FAULT_ENABLE"];

/// A running test cluster.
pub struct TestCluster {
    pub dir: PathBuf,
    /// (client port, metrics port) of node i at index i - 1.
    pub ports: Vec<(u16, u16)>,
    pub children: Vec<Option<Child>>,
    /// Starts so far of node i at index i - 1 (each start has its own stderr file).
    pub runs: Vec<usize>,
    /// What every node was configured with.
    pub settings: Settings,
}

/// `n` loopback ports that are free right now (bound to port 0, then released) and that no
/// other test of this process was handed before: tests of one binary run in parallel, and a
/// port released by one test's probe may otherwise be handed to another, crossing two clusters.
pub fn free_ports(n: usize) -> Vec<u16> {
    static HANDED_OUT: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::new();
    let mut ports = Vec::with_capacity(n);
    while ports.len() < n {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if handed.insert(port) {
            ports.push(port);
        }
        // Kept bound until all are chosen, so the kernel never hands the same one twice here.
        held.push(l);
    }
    ports
}

impl TestCluster {
    /// Starts `n` nodes of one shard.
    pub fn start(name: &str, n: u16) -> TestCluster {
        Self::start_sharded(name, n, 1)
    }

    /// Starts `n` nodes with `shards` shards (Raft groups) each.
    pub fn start_sharded(name: &str, n: u16, shards: u16) -> TestCluster {
        Self::start_with(
            name,
            n,
            &Settings {
                shards,
                ..Settings::default()
            },
        )
    }

    /// Starts `n` nodes configured with `settings`.
    pub fn start_with(name: &str, n: u16, settings: &Settings) -> TestCluster {
        let mut c = Self::configure(name, n, settings);
        c.start_all();
        c
    }

    /// Writes the configuration of `n` nodes; starts none (see [`TestCluster::start_node_env`]).
    pub fn configure(name: &str, n: u16, settings: &Settings) -> TestCluster {
        let dir = std::env::temp_dir().join(format!("ringraft-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let free = free_ports(2 * n as usize);
        let ports: Vec<(u16, u16)> = free.chunks(2).map(|p| (p[0], p[1])).collect();
        let mut c = TestCluster {
            dir,
            ports,
            children: (0..n).map(|_| None).collect(),
            runs: vec![0; n as usize],
            settings: settings.clone(),
        };
        c.reconfigure(settings);
        c
    }

    /// Rewrites every node's configuration with `settings` (for the nodes' next starts).
    pub fn reconfigure(&mut self, settings: &Settings) {
        self.settings = settings.clone();
        for id in 1..=self.children.len() as u16 {
            let text = config::config_text(&self.dir, id, &self.ports, settings, Joins::Voter);
            std::fs::write(self.config_path(id), text).unwrap();
        }
    }

    /// Starts every node that is not running.
    pub fn start_all(&mut self) {
        for id in 1..=self.children.len() as u16 {
            if self.children[id as usize - 1].is_none() {
                self.start_node(id);
            }
        }
    }

    /// The configuration file of node `id`.
    pub fn config_path(&self, id: u16) -> PathBuf {
        self.dir.join(format!("n{id}.toml"))
    }

    /// (Re)starts node `id`.
    pub fn start_node(&mut self, id: u16) {
        self.start_node_env(id, &[]);
    }

    /// (Re)starts node `id` with `env` added to its environment (the WAL fault variables are
    /// removed first, so only a test that names them injects faults); returns the run number
    /// of this start (see [`TestCluster::stderr`]).
    pub fn start_node_env(&mut self, id: u16, env: &[(&str, &str)]) -> usize {
        let i = id as usize - 1;
        assert!(self.children[i].is_none(), "node {id} is already running");
        self.runs[i] += 1;
        let run = self.runs[i];
        let err = std::fs::File::create(self.stderr_path(id, run)).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["server", "--config"]).arg(self.config_path(id));
        for k in WAL_FAULT_ENV {
            cmd.env_remove(k);
        }
        let always = self
            .settings
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        let child = cmd
            .envs(always)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        self.children[i] = Some(child);
        run
    }

    fn stderr_path(&self, id: u16, run: usize) -> PathBuf {
        self.dir.join(format!("n{id}.run{run}.stderr"))
    }

    /// What node `id` wrote to stderr during start number `run`.
    pub fn stderr(&self, id: u16, run: usize) -> String {
        std::fs::read_to_string(self.stderr_path(id, run)).unwrap_or_default()
    }

    /// What node `id` wrote to stderr during its latest start.
    pub fn last_stderr(&self, id: u16) -> String {
        self.stderr(id, self.runs[id as usize - 1])
    }

    /// Node `id`'s log file.
    pub fn log(&self, id: u16) -> String {
        std::fs::read_to_string(self.dir.join("logs").join(id.to_string()).join("d.log"))
            .unwrap_or_default()
    }

    /// The WAL directory of node `id`'s first core.
    pub fn wal_dir(&self, id: u16) -> PathBuf {
        self.dir
            .join("db")
            .join(id.to_string())
            .join("core-0")
            .join("wal")
    }

    /// PID of running node `id`.
    pub fn pid(&self, id: u16) -> u32 {
        self.children[id as usize - 1]
            .as_ref()
            .unwrap_or_else(|| panic!("node {id} is not running"))
            .id()
    }

    /// Sends signal `sig` to running node `id` (by PID).
    pub fn signal(&self, id: u16, sig: libc::c_int) {
        let pid = self.pid(id);
        // SAFETY: plain kill(2) on the PID of a child this harness started and has not reaped.
        assert_eq!(
            unsafe { libc::kill(pid as libc::pid_t, sig) },
            0,
            "kill {sig} {pid}"
        );
    }

    /// Waits (bounded) for running node `id` to exit by itself; reaps it.
    pub fn wait_exit(&mut self, id: u16, limit: Duration) -> Option<ExitStatus> {
        let i = id as usize - 1;
        let c = self.children[i].as_mut().expect("running");
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(st) = c.try_wait().unwrap() {
                self.children[i] = None;
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Whether node `id` was started and has exited. The child is kept (it caches its exit
    /// status), so a later [`TestCluster::wait_exit`] still reports how it ended.
    pub fn has_exited(&mut self, id: u16) -> bool {
        match self.children[id as usize - 1].as_mut() {
            None => true,
            Some(c) => c.try_wait().unwrap().is_some(),
        }
    }

    /// SIGTERM to node `id`, then its exit status (bounded by `limit`).
    pub fn terminate(&mut self, id: u16, limit: Duration) -> ExitStatus {
        self.signal(id, libc::SIGTERM);
        self.wait_exit(id, limit)
            .unwrap_or_else(|| panic!("node {id} did not exit within {limit:?} of SIGTERM"))
    }

    /// Client socket address of node `id`.
    pub fn client_addr(&self, id: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[id as usize - 1].0))
    }

    /// Metrics socket address of node `id`.
    pub fn metrics_addr(&self, id: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports[id as usize - 1].1))
    }

    /// SIGKILLs node `id` (by PID) and reaps it.
    pub fn kill_node(&mut self, id: u16) {
        if let Some(mut c) = self.children[id as usize - 1].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The nodes started and not yet reaped (one that exited by itself counts until reaped).
    pub fn running(&self) -> Vec<u16> {
        (1..=self.children.len() as u16)
            .filter(|id| self.children[*id as usize - 1].is_some())
            .collect()
    }

    /// The running node whose `/status` (metrics port) says it leads shard 0, if any.
    pub fn status_leader(&self) -> Option<u16> {
        self.running().into_iter().find(|id| {
            http::status(self.metrics_addr(*id)).is_some_and(|v| v["shards"][0]["role"] == "Leader")
        })
    }

    /// Waits (bounded by `limit`) for [`TestCluster::status_leader`]; the leader and how long
    /// it took.
    pub fn wait_status_leader(&self, limit: Duration) -> Option<(u16, Duration)> {
        let t0 = Instant::now();
        http::eventually(limit, || self.status_leader()).map(|l| (l, t0.elapsed()))
    }

    /// Configures node `n + 1` as a learner that asks the running cluster to join (on ports
    /// free now) and starts it; returns its id.
    pub fn add_learner(&mut self) -> u16 {
        let id = self.children.len() as u16 + 1;
        let free = free_ports(2);
        self.ports.push((free[0], free[1]));
        self.children.push(None);
        self.runs.push(0);
        let text = config::config_text(&self.dir, id, &self.ports, &self.settings, Joins::Learner);
        std::fs::write(self.config_path(id), text).unwrap();
        self.start_node(id);
        id
    }

    /// SIGKILLs every running node (by PID) and reaps them.
    pub fn kill_all(&mut self) {
        for id in self.running() {
            self.kill_node(id);
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
        if std::thread::panicking() {
            eprintln!("cluster files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
