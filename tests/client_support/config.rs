//! The node configuration a test cluster writes: [`Settings`] (what a test may choose) and the
//! TOML text of one node's file. Every node listens on loopback; `db/` and `logs/` live in the
//! cluster's own directory, so no two clusters share a file.

use std::path::{Path, PathBuf};

/// Mutual TLS and bearer tokens for every node of a cluster: the CA, each node's certificate
/// and key (`ca.crt`, `node-<id>.crt`, `node-<id>.key` in `pki_dir`) and the tokens file.
#[derive(Debug, Clone)]
pub struct Security {
    pub pki_dir: PathBuf,
    pub tokens_file: PathBuf,
}

/// The node settings a test cluster is configured with. The defaults suit a cluster of three
/// on a busy two-core machine (elections that do not fire on a scheduling hiccup).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Shards (Raft groups) per node.
    pub shards: u16,
    /// Executors (`runtime.cores`) per node.
    pub cores: u16,
    /// `raft.election_timeout_ms_min` and `_max`.
    pub election_timeout_ms: (u64, u64),
    /// `raft.heartbeat_interval_ms`.
    pub heartbeat_interval_ms: u64,
    /// `raft.tick_interval_ms`, when not the default.
    pub tick_interval_ms: Option<u64>,
    /// `raft.read_consistency.lease_duration_ms`, when not the default.
    pub lease_duration_ms: Option<u64>,
    /// `raft.persistence.flush_workers`, when not the default.
    pub flush_workers: Option<u64>,
    /// `network.request_timeout_ms`.
    pub request_timeout_ms: u64,
    /// The `[security]` section, when the cluster runs TLS.
    pub security: Option<Security>,
    /// Environment added to every start of every node (after the WAL fault variables are
    /// removed), e.g. `LOG_LEVEL` or `RINGRAFT__…` overrides.
    pub env: Vec<(String, String)>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            shards: 1,
            cores: 1,
            election_timeout_ms: (600, 1200),
            heartbeat_interval_ms: 100,
            tick_interval_ms: None,
            lease_duration_ms: None,
            flush_workers: None,
            request_timeout_ms: 3000,
            security: None,
            env: Vec::new(),
        }
    }
}

impl Settings {
    /// Adds `key=value` to every node's environment.
    pub fn with_env(mut self, key: &str, value: &str) -> Settings {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

/// How a node enters the cluster: a voter of the initial configuration, or a learner that
/// asks the leader to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joins {
    Voter,
    Learner,
}

/// The `initial_cluster` line of node `id` of the members in `ports`.
fn member_line(id: usize, port: u16, joins: Joins) -> String {
    let (role, status) = match joins {
        Joins::Voter => (1, 2),
        Joins::Learner => (3, 0),
    };
    format!(
        "  {{ id = {id}, address = \"127.0.0.1:{port}\", role = {role}, status = {status} }},\n"
    )
}

/// The configuration file of node `id` of a cluster in `dir` whose node i has the
/// (client port, metrics port) `ports[i - 1]`; node `id` itself enters as `joins` says.
pub fn config_text(
    dir: &Path,
    id: u16,
    ports: &[(u16, u16)],
    set: &Settings,
    joins: Joins,
) -> String {
    let members: String = ports
        .iter()
        .enumerate()
        .map(|(i, (p, _))| {
            let who = if i + 1 == id as usize {
                joins
            } else {
                Joins::Voter
            };
            member_line(i + 1, *p, who)
        })
        .collect();
    let opt = |key: &str, v: Option<u64>| v.map_or(String::new(), |v| format!("{key} = {v}\n"));
    let security = set.security.as_ref().map_or(String::new(), |s| {
        let pki = s.pki_dir.display();
        format!(
            "\n[security]\nca_file = \"{pki}/ca.crt\"\ncert_file = \"{pki}/node-{id}.crt\"\n\
             key_file = \"{pki}/node-{id}.key\"\ntokens_file = \"{}\"\n",
            s.tokens_file.display()
        )
    });
    format!(
        "[cluster]\nnode_id = {id}\nlisten_address = \"127.0.0.1:{port}\"\ninitial_cluster = [\n{members}]\n\
         db_root_dir = \"{db}\"\nlog_dir = \"{logs}\"\n\n\
         [raft]\nelection_timeout_ms_min = {emin}\nelection_timeout_ms_max = {emax}\nheartbeat_interval_ms = {hb}\n{tick}\n\
         [raft.read_consistency]\n{lease}\n\
         [raft.persistence]\nstrategy = \"DiskFirst\"\nflush_policy = \"Immediate\"\nsegment_bytes = 4194304\n{workers}\n\
         [network]\nrequest_timeout_ms = {rt}\n\n[monitoring]\nmetrics_port = {mport}\n\n\
         [runtime]\ncores = {cores}\nshards_per_node = {shards}\n{security}",
        port = ports[id as usize - 1].0,
        mport = ports[id as usize - 1].1,
        db = dir.join("db").display(),
        logs = dir.join("logs").display(),
        emin = set.election_timeout_ms.0,
        emax = set.election_timeout_ms.1,
        hb = set.heartbeat_interval_ms,
        tick = opt("tick_interval_ms", set.tick_interval_ms),
        lease = opt("lease_duration_ms", set.lease_duration_ms),
        workers = opt("flush_workers", set.flush_workers),
        rt = set.request_timeout_ms,
        cores = set.cores,
        shards = set.shards,
    )
}
