//! The ringraft node: the server an operator runs (`ringraft server --config config/n1.toml`).
//!
//! Thread-per-core: one glommio executor per configured core ([`runtime`]); the key space is
//! hashed into shards (Raft groups), each living on exactly one core ([`core`]); cores
//! share nothing mutable and talk by message. Each core has one write-ahead log for all its
//! shards ([`storage`]), so one fsync covers many groups. Peers and clients speak the binary
//! frame protocol of `ringraft-net` ([`wire`], [`frame_api`]) or HTTP ([`http`], [`http_api`],
//! [`http_server`]) on the same port. Configuration ([`config`]), the key-value state machine
//! ([`kv`]), the limits ([`limits`]), metrics ([`metrics`]) and logging ([`logging`]) complete it.
//! Owned by the node.

pub(crate) mod auth;
pub(crate) mod config;
pub mod core;
pub(crate) mod deadline;
pub mod driver;
pub(crate) mod forward;
pub(crate) mod frame_api;
pub mod http;
pub(crate) mod http_api;
pub(crate) mod http_kv;
pub(crate) mod http_ops;
pub(crate) mod http_server;
pub mod kv;
pub mod limits;
pub(crate) mod logging;
pub mod metrics;
pub(crate) mod request;
pub mod runtime;
pub(crate) mod server;
pub(crate) mod status;
pub mod storage;
pub(crate) mod watch;
pub(crate) mod wire;

use std::process::ExitCode;

/// `ringraft server` arguments.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// Node TOML config (also `CONFIG_PATH`).
    #[arg(long, env = "CONFIG_PATH")]
    pub(crate) config: Option<std::path::PathBuf>,
}

/// Entry point of `ringraft server`: loads and validates the config (a bad one exits 2 with a
/// message naming the key, the value and what is allowed), then runs the node until SIGTERM or
/// SIGINT (exit 0) or a fatal error (exit 1).
pub fn main(args: ServerArgs) -> ExitCode {
    let Some(path) = args.config else {
        eprintln!("ringraft server: no config given: use --config FILE or CONFIG_PATH=FILE (see config/n1.toml)");
        return ExitCode::from(2);
    };
    let cfg = match config::Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringraft server: {e}");
            return ExitCode::from(2);
        }
    };
    server::run(cfg)
}
