//! The key-value state machine of one shard, applied from the Raft log.
//!
//! Read in this order: [`command`] (what a write looks like in a log entry), [`store`] (how a
//! committed command changes the data: put, delete, compare-and-swap on value or version,
//! scans; its keys: [`key`], its values: [`value`]), [`result`] (what applying produced), [`session`] (exactly-once
//! across retries, bounded by count and bytes, with tombstones), [`snapshot`] (the whole state
//! as bytes).
//!
//! The node's core owns one [`KvStore`] per shard and is its only writer; the simulator runs
//! the same store. Limits that change results are constants of [`crate::node::limits`], so
//! every replica computes the same state from the same log.

pub mod apply;
pub mod command;
pub mod key;
pub mod lease;
pub mod result;
pub mod route;
pub mod session;
pub mod snapshot;
pub mod store;
pub mod value;

pub use command::{CodecError, Command, WriteOp};
pub use result::ApplyResult;
pub use store::{KvStore, PlantedFault, Versioned};

#[cfg(test)]
mod tests;
