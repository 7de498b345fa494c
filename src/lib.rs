//! ringraft: a Raft consensus key-value server.
//!
//! Modules:
//! - [`raft`]: the pure Raft core (no I/O, no clock, seeded randomness only).
//! - [`sim`]: the seeded deterministic simulator that runs many nodes of the real core.
//! - [`checker`]: the linearizability checker for recorded client histories.
//! - [`client`]: the client library (routing, failover, exactly-once writes, history recorder).
//! - [`cli`]: the client commands of the binary; [`bench`]: the latency benchmark.
//! - [`certs`]: `ringraft certs`, a CA and node and client certificates for TLS.
//! - [`node`]: the server: thread-per-core runtime, shards, config, state machine, HTTP, metrics.

pub mod bench;
pub mod certs;
pub mod chaos;
pub mod checker;
pub mod cli;
pub mod client;
pub mod node;
pub mod raft;
pub mod sim;
