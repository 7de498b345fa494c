//! The node's configuration: a TOML file with the seed's keys (d-engine's three-node example) plus
//! ringraft's own runtime keys, overridden by environment variables, validated before start-up.
//!
//! Loading is three steps, each of which stops start-up with a message naming the key, the value
//! and what is allowed:
//! 1. The file is parsed as TOML (syntax errors name the line and column).
//! 2. Every environment variable `RINGRAFT__<SECTION>__<KEY>` overrides one value: the name after
//!    the prefix is split on `__`, lower-cased and used as a key path, so
//!    `RINGRAFT__RAFT__PERSISTENCE__STRATEGY=MemFirst` sets `raft.persistence.strategy` and
//!    `RINGRAFT__CLUSTER__NODE_ID=2` sets `cluster.node_id`. The value is read as a TOML value
//!    (`2`, `true`, `"x"`, `{ Batch = { threshold = 10, interval_ms = 5 } }`); anything that is
//!    not valid TOML is taken as a plain string (`MemFirst`). Each override is checked on its own,
//!    so an error names the variable that caused it.
//! 3. The merged table is deserialized with unknown keys refused (`deny_unknown_fields`) and then
//!    every number is range-checked ([`Config::validate`]).
//!
//! Defaults are tuned for the 2-core development machine: one core per node, no spinning, no
//! pinning, one flush worker. Invariants after [`Config::load`]: every value is inside its range,
//! `election_timeout_ms_min < election_timeout_ms_max`, `heartbeat_interval_ms` and
//! `lease_duration_ms` are below `election_timeout_ms_min`, this node is in `initial_cluster`
//! (unless it joins as a learner), member ids and addresses are unique.
//! Owned by the node.
//!
//! Layout: [`schema`] holds the TOML structs (one per section), [`defaults`] their default
//! values, [`load`] reading the file and applying environment overrides, [`validate`] the range
//! and consistency checks, [`derived`] the values computed from a valid config (addresses,
//! directories, ticks), [`limits`] the allowed ranges. Every public path of the former single
//! file is re-exported here.

mod defaults;
mod derived;
pub(crate) mod limits;
mod load;
mod schema;
mod validate;

#[cfg(test)]
mod tests;

use std::fmt;

pub(crate) use schema::*;

/// Prefix of environment variables that override config values.
pub(crate) const ENV_PREFIX: &str = "RINGRAFT__";
/// Separator between key path segments in an environment variable name.
pub(crate) const ENV_SEPARATOR: &str = "__";
/// Largest config file read, in bytes.
pub(crate) const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

/// Member role as numbered in the seed's `initial_cluster` (d-engine's numbering: 0 leader and
/// 2 candidate are never valid in a config file): a voting member that starts as follower.
pub(crate) const ROLE_FOLLOWER: u8 = 1;
/// A non-voting member that receives the log.
pub(crate) const ROLE_LEARNER: u8 = 3;
/// Member status (0 joining and 1 syncing are not accepted in a config file): a full member.
pub(crate) const STATUS_ACTIVE: u8 = 2;

/// A configuration problem: the message names the key, the value and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}
