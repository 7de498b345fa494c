//! The client commands of the `ringraft` binary: `put` (optionally `--ttl` / `--lease`),
//! `get`, `delete`, `cas`, `scan`, `txn`, `lease`, `status`, `members` (and `members remove`),
//! `transfer-leader`, through the client library ([`crate::client::Client`]) or, for the
//! membership calls, a node's HTTP API ([`kv_cmds`]).
//!
//! Endpoints come from the global `--endpoints a,b,c` option or `RINGRAFT_ENDPOINTS`, else the
//! three local nodes of `config/`. Exit codes: 0 success; 1 "no" — a `get` or `delete` of a
//! missing key, a `cas` whose condition did not hold (message on stderr); 2 any other failure,
//! with a message a person understands (the cluster is unreachable, a timeout, a bad argument).
//! Owned by the client.

pub(crate) mod kv_cmds;
pub(crate) mod status;
pub mod wal;
pub(crate) mod watch;

use std::io::Write;
use std::process::ExitCode;

use crate::client::config::{DEFAULT_ENDPOINTS, DEFAULT_SCAN_LIMIT};
use crate::client::{Client, ClientConfig, Consistency, Error};

/// Exit status: the key does not exist / the condition did not hold.
pub(crate) const EXIT_NO: u8 = 1;
/// Exit status: any other failure.
pub(crate) const EXIT_FAILURE: u8 = 2;

/// Read consistency on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsistencyArg {
    /// The cluster's configured default policy.
    Default,
    /// Confirmed by a quorum (ReadIndex).
    Linearizable,
    /// The leader's lease.
    Lease,
    /// Any replica's local state (may be stale).
    Eventual,
}

impl From<ConsistencyArg> for Consistency {
    fn from(c: ConsistencyArg) -> Self {
        match c {
            ConsistencyArg::Default => Consistency::Default,
            ConsistencyArg::Linearizable => Consistency::Linearizable,
            ConsistencyArg::Lease => Consistency::Lease,
            ConsistencyArg::Eventual => Consistency::Eventual,
        }
    }
}

/// Client subcommands, flattened into the binary's top-level commands.
#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Set KEY to VALUE.
    Put {
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// Expire the key after this many seconds (a lease granted for it; prints its id).
        #[arg(long)]
        ttl: Option<u64>,
        /// Attach the key to this existing lease (same shard: see `lease grant --key`).
        #[arg(long, conflicts_with = "ttl")]
        lease: Option<u64>,
    },
    /// Print KEY's value (exit 1 if it does not exist).
    Get {
        /// Key.
        key: String,
        /// Read consistency.
        #[arg(long, value_enum, default_value_t = ConsistencyArg::Default)]
        consistency: ConsistencyArg,
    },
    /// Remove KEY (exit 1 if it did not exist).
    Delete {
        /// Key.
        key: String,
    },
    /// Set KEY to NEW if its value is EXPECTED (exit 1 if it was not).
    Cas {
        /// Key.
        key: String,
        /// Expected current value (with --by-version: the expected version, 0 = absent).
        expected: String,
        /// New value.
        new: String,
        /// EXPECTED is a version number instead of a value.
        #[arg(long)]
        by_version: bool,
    },
    /// Print the keys starting with PREFIX and their values, one `key<TAB>value` per line,
    /// in key order across every shard.
    Scan {
        /// Prefix (also as --prefix; empty: every key).
        prefix: Option<String>,
        /// Prefix.
        #[arg(long = "prefix", conflicts_with = "prefix")]
        prefix_flag: Option<String>,
        /// Most pairs printed (applied after merging the shards).
        #[arg(long, default_value_t = DEFAULT_SCAN_LIMIT)]
        limit: u32,
        /// Print keys only.
        #[arg(long)]
        keys_only: bool,
        /// Read consistency.
        #[arg(long, value_enum, default_value_t = ConsistencyArg::Default)]
        consistency: ConsistencyArg,
    },
    /// Run a transaction from a JSON file (or stdin): compares, then success or failure ops,
    /// applied atomically. Exit 1 when the compares did not hold.
    Txn {
        /// File holding the transaction JSON (`-` or none: stdin).
        file: Option<String>,
    },
    /// Leases: keys that expire unless kept alive.
    Lease {
        /// What to do.
        #[command(subcommand)]
        cmd: kv_cmds::LeaseCommand,
    },
    /// Hand leadership of a shard (every shard by default) to another voter.
    TransferLeader {
        /// Only this shard.
        #[arg(long)]
        shard: Option<u32>,
        /// The new leader (default: any other voter).
        #[arg(long)]
        to: Option<u64>,
    },
    /// Print the changes of the keys starting with PREFIX as JSON lines, until interrupted.
    Watch(watch::WatchArgs),
    /// Cluster status: every node and, per shard, leader, term, commit index, follower lag.
    Status {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cluster members: id, address, voter or learner, reachable.
    Members {
        /// One JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// `remove ID`: remove a member (a leader hands its shards over first).
        #[command(subcommand)]
        action: Option<MembersAction>,
    },
}

/// `members` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum MembersAction {
    /// Remove node ID from every shard.
    Remove {
        /// Node id.
        id: u64,
    },
}

/// The client configuration for `endpoints` (empty: the local cluster of `config/`).
pub(crate) fn client_config(endpoints: &[String]) -> ClientConfig {
    let endpoints: Vec<String> = endpoints
        .iter()
        .map(|e| e.trim().to_string())
        .filter(|e| !e.is_empty())
        .collect();
    let mut cfg = if endpoints.is_empty() {
        ClientConfig::with_endpoints(&DEFAULT_ENDPOINTS)
    } else {
        ClientConfig::with_endpoints(&endpoints)
    };
    cfg.tls = tls_from_env();
    cfg
}

/// Environment variable naming the CA file: set, the client speaks TLS.
pub(crate) const TLS_CA_ENV: &str = "RINGRAFT_TLS_CA";
/// Environment variable naming the client certificate file (optional).
pub(crate) const TLS_CERT_ENV: &str = "RINGRAFT_TLS_CERT";
/// Environment variable naming the client key file (with the certificate).
pub(crate) const TLS_KEY_ENV: &str = "RINGRAFT_TLS_KEY";

/// The client's TLS files from `RINGRAFT_TLS_CA` / `_CERT` / `_KEY` (`None` without a CA).
pub(crate) fn tls_from_env() -> Option<crate::client::config::ClientTls> {
    let var = |n: &str| {
        std::env::var_os(n)
            .filter(|v| !v.is_empty())
            .map(Into::into)
    };
    Some(crate::client::config::ClientTls {
        ca_file: var(TLS_CA_ENV)?,
        cert_file: var(TLS_CERT_ENV),
        key_file: var(TLS_KEY_ENV),
    })
}

/// A failure in words, with a hint when the cluster cannot be reached.
pub(crate) fn explain(what: &str, e: &Error) -> String {
    let mut s = format!("ringraft: {what} failed: {e}");
    if e.is_unreachable() {
        s.push_str(
            "\nringraft: is the cluster running? Start it with `make start-cluster`, or point \
             --endpoints (or RINGRAFT_ENDPOINTS) at its nodes.",
        );
    }
    s
}

pub(crate) fn fail(what: &str, e: &Error) -> ExitCode {
    eprintln!("{}", explain(what, e));
    ExitCode::from(EXIT_FAILURE)
}

fn print_bytes(bytes: &[u8]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out
        .write_all(bytes)
        .and_then(|_| out.write_all(b"\n"))
        .and_then(|_| out.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringraft: cannot write to stdout: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Runs one client subcommand against `endpoints`.
pub fn main(cmd: ClientCommand, endpoints: &[String]) -> ExitCode {
    let cfg = client_config(endpoints);
    match &cmd {
        ClientCommand::Members {
            action: Some(MembersAction::Remove { id }),
            ..
        } => {
            return kv_cmds::http_post(
                &cfg.endpoints,
                "/members/remove",
                serde_json::json!({ "node_id": id }),
            )
        }
        ClientCommand::TransferLeader { shard, to } => {
            return kv_cmds::http_post(
                &cfg.endpoints,
                "/transfer-leader",
                serde_json::json!({ "shard": shard, "to": to }),
            )
        }
        _ => {}
    }
    let mut client = match Client::new(cfg) {
        Ok(c) => c,
        Err(e) => return fail("configuration", &e),
    };
    match cmd {
        ClientCommand::Put {
            key,
            value,
            ttl: None,
            lease: None,
        } => match client.put(&key, &value) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail("put", &e),
        },
        ClientCommand::Put {
            key,
            value,
            ttl: Some(ttl),
            ..
        } => match client.put_ttl(&key, &value, ttl.saturating_mul(1_000)) {
            Ok((_, lease)) => {
                println!("lease {lease}");
                ExitCode::SUCCESS
            }
            Err(e) => fail("put", &e),
        },
        ClientCommand::Put {
            key,
            value,
            lease: Some(lease),
            ..
        } => match client.put_with_lease(&key, &value, lease) {
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => fail("put", &e),
        },
        ClientCommand::Get { key, consistency } => {
            match client.get_with(&key, consistency.into()) {
                Ok(Some(v)) => print_bytes(&v.value),
                Ok(None) => {
                    eprintln!("ringraft: key {key:?} not found");
                    ExitCode::from(EXIT_NO)
                }
                Err(e) => fail("get", &e),
            }
        }
        ClientCommand::Delete { key } => match client.delete(&key) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => {
                eprintln!("ringraft: key {key:?} not found (nothing deleted)");
                ExitCode::from(EXIT_NO)
            }
            Err(e) => fail("delete", &e),
        },
        ClientCommand::Cas {
            key,
            expected,
            new,
            by_version,
        } => {
            let r = if by_version {
                let Ok(v) = expected.parse::<u64>() else {
                    eprintln!(
                        "ringraft: cas --by-version: EXPECTED {expected:?} is not a version \
                         number (0 = the key must be absent)"
                    );
                    return ExitCode::from(EXIT_FAILURE);
                };
                client.cas_version(&key, v, &new)
            } else {
                client.cas(&key, Some(expected.as_bytes()), &new)
            };
            match r {
                Ok(r) if r.swapped => ExitCode::SUCCESS,
                Ok(r) => {
                    match r.current {
                        Some(c) => eprintln!(
                            "ringraft: cas: not swapped; {key:?} is {:?} (version {})",
                            String::from_utf8_lossy(&c.value),
                            c.version
                        ),
                        None => eprintln!("ringraft: cas: not swapped; {key:?} does not exist"),
                    }
                    ExitCode::from(EXIT_NO)
                }
                Err(e) => fail("cas", &e),
            }
        }
        ClientCommand::Scan {
            prefix,
            prefix_flag,
            limit,
            keys_only,
            consistency,
        } => match client.scan(
            prefix.or(prefix_flag).unwrap_or_default(),
            Some(limit),
            consistency.into(),
        ) {
            Ok((items, more)) => {
                let mut out = std::io::stdout().lock();
                let mut r = Ok(());
                for kv in &items {
                    r = r.and_then(|_| out.write_all(&kv.key));
                    if !keys_only {
                        r = r
                            .and_then(|_| out.write_all(b"\t"))
                            .and_then(|_| out.write_all(&kv.value));
                    }
                    r = r.and_then(|_| out.write_all(b"\n"));
                }
                if let Err(e) = r.and_then(|_| out.flush()) {
                    eprintln!("ringraft: cannot write to stdout: {e}");
                    return ExitCode::from(EXIT_FAILURE);
                }
                if more {
                    eprintln!("ringraft: scan: stopped at --limit {limit}; more keys match");
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail("scan", &e),
        },
        ClientCommand::Status { json } => status::status(&mut client, json),
        ClientCommand::Members { json, .. } => status::members(&mut client, json),
        ClientCommand::Txn { file } => kv_cmds::txn(&mut client, file),
        ClientCommand::Lease { cmd } => kv_cmds::lease(&mut client, cmd),
        // Answered above, over HTTP.
        ClientCommand::Watch(args) => watch::main(args, client.config().clone()),
        ClientCommand::TransferLeader { .. } => ExitCode::from(EXIT_FAILURE),
    }
}
