//! The cluster under test: real `ringraft server` processes started from a config set rewritten
//! into the run's work directory (own ports, own data and log directories, peer addresses
//! through the fault [`Proxy`]), and the process-level nemeses: SIGKILL + restart on the same
//! data directory, SIGSTOP/SIGCONT, and a restart with the WAL fault hook armed (the disk
//! nemesis: [`Cluster::start_with_wal_fault`]).
//!
//! Invariants: every process this module starts is killed by its PID when the [`Cluster`] is
//! dropped (also on a panic, and on Ctrl-C through the run's stop flag), paused processes are
//! continued first; a node that exits without the suite having killed it is recorded as an
//! unexpected exit (a violation), except an incarnation started with the WAL fault hook armed,
//! whose exit is expected (kept in [`Node::expected_exits`]). Owned by the fault suite.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::config::rewrite_config;
use super::http::{request, HttpOutcome};
use super::proxy::Proxy;

/// Environment variable the node reads for test-only Raft faults (negative controls).
pub const UNSAFE_TEST_FAULTS_ENV: &str = crate::node::core::UNSAFE_TEST_FAULTS_ENV;
/// Environment variable with the WAL fault spec (`ringraft_wal::FaultInjector::from_spec`).
pub const WAL_FAULT_ENV: &str = ringraft_wal::fault::FAULT_ENV;
/// Environment variable that must be `1` as well for the node to read [`WAL_FAULT_ENV`] (the
/// explicit switch: a stray spec alone never arms the hook).
pub const WAL_FAULT_ENABLE_ENV: &str = "RINGRAFT_WAL_FAULT_ENABLE";
/// Timeout of one `/status` poll.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// One node process.
#[derive(Debug)]
pub struct Node {
    /// Node id (1-based, from its config).
    pub id: u64,
    /// Its real client/peer address.
    pub address: SocketAddr,
    /// Its rewritten config file.
    pub config: PathBuf,
    /// stdout+stderr of every incarnation, appended.
    pub output: PathBuf,
    child: Option<Child>,
    paused: bool,
    /// Exits nobody caused: (when, status text).
    pub unexpected_exits: Vec<String>,
    /// The WAL fault spec the running incarnation was started with, if any.
    pub wal_fault: Option<String>,
    /// Exits of incarnations started with a WAL fault (expected: the fault fired).
    pub expected_exits: Vec<String>,
    /// Output files and log directories of incarnations started with a WAL fault.
    pub wal_fault_logs: Vec<PathBuf>,
    /// Whether it belongs to the cluster: the initial nodes do; a spare does once it was
    /// started to join ([`Cluster::join`]); a node removed from the configuration no longer
    /// does ([`Cluster::retire`]). [`Cluster::start`] starts members only.
    pub member: bool,
}

impl Node {
    /// The PID of the running process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether a process is running (not killed by the suite).
    pub fn is_up(&self) -> bool {
        self.child.is_some()
    }
}

/// The processes, the proxy and the work directory.
#[derive(Debug)]
pub struct Cluster {
    /// Work directory (configs, data, logs).
    pub dir: PathBuf,
    /// The nodes, index i = node id i + 1.
    pub nodes: Vec<Node>,
    /// The fault proxy between peers.
    pub proxy: Proxy,
    bin: PathBuf,
    env: Vec<(String, String)>,
}

/// Sends `sig` to `pid`, a child this process started and has not reaped (so the PID is not
/// reused by another process).
fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: a plain signal to our own unreaped child.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Cluster {
    /// Rewrites `config_dir/n1.toml ..= n<nodes>.toml` into `dir` and starts nothing yet.
    pub fn prepare(
        config_dir: &Path,
        nodes: usize,
        dir: &Path,
        bin: &Path,
        env: Vec<(String, String)>,
    ) -> Result<Cluster, String> {
        Cluster::prepare_with_spares(config_dir, nodes, 0, dir, bin, env)
    }

    /// [`Cluster::prepare`] plus `spares` learner configs `n<nodes+1>.toml ..` (each lists the
    /// voters and itself as a joining learner), rewritten the same way; spares are not members
    /// until [`Cluster::join`] starts them.
    pub fn prepare_with_spares(
        config_dir: &Path,
        nodes: usize,
        spares: usize,
        dir: &Path,
        bin: &Path,
        env: Vec<(String, String)>,
    ) -> Result<Cluster, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut addrs = Vec::new();
        let mut metrics_ports = Vec::new();
        let total = nodes + spares;
        // Ports the kernel reports free now; held by no one until the nodes bind them.
        for _ in 0..total {
            let p = free_port().map_err(|e| format!("no free port: {e}"))?;
            let m = free_port().map_err(|e| format!("no free port: {e}"))?;
            addrs.push(SocketAddr::from(([127, 0, 0, 1], p)));
            metrics_ports.push(m);
        }
        let proxy = Proxy::start(&addrs).map_err(|e| format!("cannot start the proxy: {e}"))?;
        let mut out = Vec::new();
        for i in 0..total {
            let src = config_dir.join(format!("n{}.toml", i + 1));
            let text =
                std::fs::read_to_string(&src).map_err(|e| format!("{}: {e}", src.display()))?;
            let rewritten = rewrite_config(&text, i, &addrs, metrics_ports[i], dir, &proxy)
                .map_err(|e| format!("{}: {e}", src.display()))?;
            let config = dir.join(format!("n{}.toml", i + 1));
            std::fs::write(&config, rewritten).map_err(|e| format!("{}: {e}", config.display()))?;
            out.push(Node {
                id: i as u64 + 1,
                address: addrs[i],
                config,
                output: dir.join(format!("n{}.out", i + 1)),
                child: None,
                paused: false,
                unexpected_exits: Vec::new(),
                wal_fault: None,
                expected_exits: Vec::new(),
                wal_fault_logs: Vec::new(),
                member: i < nodes,
            });
        }
        Ok(Cluster {
            dir: dir.to_path_buf(),
            nodes: out,
            proxy,
            bin: bin.to_path_buf(),
            env,
        })
    }

    /// Client addresses of every node.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.address.to_string()).collect()
    }

    /// Starts node `i` (a no-op if it runs or is not a member).
    pub fn start(&mut self, i: usize) -> Result<(), String> {
        if self.nodes[i].child.is_some() || !self.nodes[i].member {
            return Ok(());
        }
        let (config, output) = (self.nodes[i].config.clone(), self.nodes[i].output.clone());
        self.spawn(i, &config, &output, &[])?;
        self.nodes[i].wal_fault = None;
        Ok(())
    }

    /// Starts node `i` (which must be down) with its WAL fault hook armed: `WAL_FAULT_ENV` =
    /// `spec` and `WAL_FAULT_ENABLE_ENV` = 1, its output and its log directory apart from the
    /// normal ones (so that its expected error lines are told apart from any other). Its exit
    /// is expected until it is killed or started normally.
    pub fn start_with_wal_fault(&mut self, i: usize, spec: &str) -> Result<(), String> {
        let n = &self.nodes[i];
        if n.child.is_some() {
            return Err(format!("n{} is running; kill it first", n.id));
        }
        let tag = format!("n{}.disk{}", n.id, n.wal_fault_logs.len() / 2 + 1);
        let log_dir = self.dir.join(format!("logs-{tag}"));
        let config = self.dir.join(format!("{tag}.toml"));
        let output = self.dir.join(format!("{tag}.out"));
        let text = std::fs::read_to_string(&n.config)
            .map_err(|e| format!("{}: {e}", n.config.display()))?;
        let mut doc: toml::Table = text.parse().map_err(|e| format!("not TOML: {e}"))?;
        doc.get_mut("cluster")
            .and_then(|c| c.as_table_mut())
            .ok_or("[cluster] missing")?
            .insert("log_dir".into(), log_dir.display().to_string().into());
        let text = toml::to_string(&doc).map_err(|e| e.to_string())?;
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        let env = [
            (WAL_FAULT_ENV.to_string(), spec.to_string()),
            (WAL_FAULT_ENABLE_ENV.to_string(), "1".to_string()),
        ];
        self.spawn(i, &config, &output, &env)?;
        let n = &mut self.nodes[i];
        n.wal_fault = Some(spec.to_string());
        n.wal_fault_logs.push(output);
        n.wal_fault_logs.push(log_dir);
        Ok(())
    }

    /// Spawns `bin server` for node `i` with `config`, output appended to `output`, the run's
    /// environment plus `extra`.
    fn spawn(
        &mut self,
        i: usize,
        config: &Path,
        output: &Path,
        extra: &[(String, String)],
    ) -> Result<(), String> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(output)
            .map_err(|e| format!("{}: {e}", output.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("server")
            .env("CONFIG_PATH", config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in self.env.iter().chain(extra) {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.bin.display()))?;
        let n = &mut self.nodes[i];
        n.child = Some(child);
        n.paused = false;
        Ok(())
    }

    /// Makes spare `i` a member and starts it (its config makes it ask the voters to add it
    /// as a learner).
    pub fn join(&mut self, i: usize) -> Result<(), String> {
        self.nodes[i].member = true;
        self.start(i)
    }

    /// Node `i` was removed from the configuration: it is killed and never started again.
    pub fn retire(&mut self, i: usize) {
        self.kill(i);
        self.nodes[i].member = false;
    }

    /// The first spare that never joined, if any (a removed node is not reused: its id and
    /// data belong to the old configuration).
    pub fn spare(&self) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| !n.member && n.unexpected_exits.is_empty() && !n.output.exists())
    }

    /// Indexes of the members.
    pub fn members(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].member)
            .collect()
    }

    /// Starts every node.
    pub fn start_all(&mut self) -> Result<(), String> {
        for i in 0..self.nodes.len() {
            self.start(i)?;
        }
        Ok(())
    }

    /// SIGKILLs node `i` (continuing it first if paused) and reaps it.
    pub fn kill(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if let Some(mut c) = n.child.take() {
            signal(c.id(), libc::SIGKILL);
            signal(c.id(), libc::SIGCONT);
            let _ = c.wait();
        }
        n.paused = false;
        n.wal_fault = None;
    }

    /// SIGSTOPs node `i`.
    pub fn pause(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if let Some(pid) = n.pid() {
            signal(pid, libc::SIGSTOP);
            n.paused = true;
        }
    }

    /// SIGCONTs node `i`.
    pub fn resume(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if let Some(pid) = n.pid() {
            signal(pid, libc::SIGCONT);
        }
        n.paused = false;
    }

    /// Records nodes that exited although the suite did not kill them (a crash: a violation),
    /// returned; an incarnation started with a WAL fault goes to [`Node::expected_exits`].
    pub fn reap_unexpected(&mut self, at: Duration) -> Vec<String> {
        let mut found = Vec::new();
        for n in &mut self.nodes {
            if let Some(c) = n.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    let msg = format!(
                        "n{} (pid {}) exited on its own at t={:.1}s: {status}",
                        n.id,
                        c.id(),
                        at.as_secs_f64()
                    );
                    n.child = None;
                    if let Some(spec) = n.wal_fault.take() {
                        n.expected_exits
                            .push(format!("{msg} (WAL fault {spec} armed)"));
                    } else {
                        n.unexpected_exits.push(msg.clone());
                        found.push(msg);
                    }
                }
            }
        }
        found
    }

    /// The node that claims to lead shard 0 with the highest term, by asking every running,
    /// unpaused node's `/status`.
    pub fn leader(&self) -> Option<usize> {
        let mut best: Option<(u64, usize)> = None;
        for i in 0..self.nodes.len() {
            let Some(v) = self.status(i) else {
                continue;
            };
            let Some(shard) = v["shards"].as_array().and_then(|s| s.first()) else {
                continue;
            };
            if shard["role"].as_str() == Some("Leader") {
                let term = shard["term"].as_u64().unwrap_or(0);
                if best.is_none_or(|(t, _)| term > t) {
                    best = Some((term, i));
                }
            }
        }
        best.map(|(_, i)| i)
    }

    /// Node `i`'s `/status` document, if it runs, is not paused and answers.
    fn status(&self, i: usize) -> Option<serde_json::Value> {
        let n = &self.nodes[i];
        if n.child.is_none() || n.paused {
            return None;
        }
        match request(n.address, "GET", "/status", None, STATUS_TIMEOUT) {
            HttpOutcome::Answer(200, body) => serde_json::from_str(&body).ok(),
            _ => None,
        }
    }

    /// The links between members that do not pass through the fault proxy: for every running
    /// member, each member peer in its `/status` whose address is not the proxy link to it
    /// (network faults could not reach that link). A node that does not answer is skipped.
    pub fn links_outside_proxy(&self) -> Vec<String> {
        let mut out = Vec::new();
        for i in self.members() {
            let Some(v) = self.status(i) else {
                continue;
            };
            for p in v["peers"].as_array().into_iter().flatten() {
                let Some(j) = p["node_id"].as_u64().and_then(|id| id.checked_sub(1)) else {
                    continue;
                };
                let j = j as usize;
                if !self.nodes.get(j).is_some_and(|n| n.member) {
                    continue;
                }
                let address = p["address"].as_str().unwrap_or("");
                let via = self.proxy.address(i, j).map(|a| a.to_string());
                if via.as_deref() != Some(address) {
                    out.push(format!(
                        "n{} dials n{} at {address}, not through the fault proxy ({})",
                        i + 1,
                        j + 1,
                        via.unwrap_or_else(|| "no link".into())
                    ));
                }
            }
        }
        out
    }

    /// Waits up to `limit` for a leader.
    pub fn wait_leader(&self, limit: Duration) -> Option<usize> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(l) = self.leader() {
                return Some(l);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }

    /// Every log file of the nodes (captured output and the nodes' own log files).
    pub fn log_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = self.nodes.iter().map(|n| n.output.clone()).collect();
        let mut stack = vec![self.dir.join("logs")];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    files.push(p);
                }
            }
        }
        files
    }

    /// Every log file of the incarnations started with a WAL fault (their output files and
    /// the files in their log directories).
    pub fn wal_fault_log_files(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        let mut stack: Vec<PathBuf> = self
            .nodes
            .iter()
            .flat_map(|n| n.wal_fault_logs.iter().cloned())
            .collect();
        while let Some(p) = stack.pop() {
            if p.is_dir() {
                if let Ok(rd) = std::fs::read_dir(&p) {
                    stack.extend(rd.flatten().map(|e| e.path()));
                }
            } else if p.is_file() {
                files.push(p);
            }
        }
        files.sort();
        files
    }

    /// Stops every node: SIGKILL by PID (the data stays for inspection).
    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (bounded) until node `i`'s process has exited and is reaped.
    fn reap_within(c: &mut Cluster, i: usize, found: &mut Vec<String>) {
        let t0 = Instant::now();
        while c.nodes[i].is_up() && t0.elapsed() < Duration::from_secs(10) {
            found.extend(c.reap_unexpected(t0.elapsed()));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(!c.nodes[i].is_up(), "the process did not exit");
    }

    /// With a "server" script that prints its fault environment and exits at once: an exit
    /// while the WAL fault is armed is expected, the same exit of a normal start is a
    /// violation, and the armed incarnation got both variables, its own config (own log
    /// directory) and its own output file.
    #[test]
    fn an_armed_node_exiting_is_expected_a_normal_one_is_not() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("ringraft-chaos-disk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("fake-server.sh");
        std::fs::write(
            &bin,
            "#!/bin/sh\necho \"fault=[$RINGRAFT_WAL_FAULT] enable=[$RINGRAFT_WAL_FAULT_ENABLE] \
             config=[$CONFIG_PATH]\"\nexit 3\n",
        )
        .unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        // A process forked by another test thread while the script was open for writing holds
        // that descriptor until it execs (ETXTBSY meanwhile): wait until the script runs.
        let t0 = Instant::now();
        while Command::new(&bin).output().is_err() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut c = Cluster::prepare(Path::new("config"), 2, &dir, &bin, Vec::new()).unwrap();
        let mut found = Vec::new();
        c.start_with_wal_fault(1, "fsync_fail_after=7").unwrap();
        assert_eq!(c.nodes[1].wal_fault.as_deref(), Some("fsync_fail_after=7"));
        reap_within(&mut c, 1, &mut found);
        assert!(found.is_empty(), "{found:?}");
        assert_eq!(c.nodes[1].expected_exits.len(), 1);
        assert!(c.nodes[1].expected_exits[0].contains("fsync_fail_after=7"));
        assert!(c.nodes[1].unexpected_exits.is_empty());
        let cfg = std::fs::read_to_string(dir.join("n2.disk1.toml")).unwrap();
        let doc: toml::Table = cfg.parse().unwrap();
        assert_eq!(
            doc["cluster"]["log_dir"].as_str(),
            Some(dir.join("logs-n2.disk1").display().to_string().as_str())
        );
        let out = std::fs::read_to_string(dir.join("n2.disk1.out")).unwrap();
        assert!(
            out.contains(&format!(
                "fault=[fsync_fail_after=7] enable=[1] config=[{}]",
                dir.join("n2.disk1.toml").display()
            )),
            "{out}"
        );
        // A normal start disarms: the same exit is now a violation.
        c.start(1).unwrap();
        assert_eq!(c.nodes[1].wal_fault, None);
        reap_within(&mut c, 1, &mut found);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(c.nodes[1].unexpected_exits.len(), 1);
        let out = std::fs::read_to_string(dir.join("n2.out")).unwrap();
        assert!(out.contains("fault=[] enable=[]"), "{out}");
        assert!(c.wal_fault_log_files().contains(&dir.join("n2.disk1.out")));
        // A kill ends the armed incarnation too.
        c.start_with_wal_fault(0, "enospc_after=3").unwrap();
        c.kill(0);
        assert_eq!(c.nodes[0].wal_fault, None);
        drop(c);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
