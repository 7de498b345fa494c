//! The ringraft client library: connects to a list of nodes, learns the topology (how many
//! shards, which node leads each), routes every key to its shard's leader, keeps many requests
//! in flight per connection (matched by request id), follows `NotLeader` hints and fails over
//! on its own. Writes are exactly-once across retries: each carries a `(client_id, sequence)`
//! session that the node's session table deduplicates. Timeouts and the retry budget are
//! configurable ([`ClientConfig`]); errors are typed ([`Error`]).
//!
//! Two front ends over one routing and retry policy ([`topology`], [`retry`]):
//! - [`Client`]: blocking, std::net, for plain programs (one per thread).
//! - [`AsyncClient`]: glommio, for async programs on a glommio executor (many tasks share one).
//!
//! An optional [`HistoryRecorder`] writes every operation in the checker's JSON-lines format.
//!
//! Cores: a node serves all its cores on one port and forwards a request to the core owning the
//! shard (see [`crate::node::runtime`]), so the client routes to the shard's leader *node*.
//! Owned by the client.

pub(crate) mod async_client;
pub(crate) mod blocking;
pub(crate) mod config;
pub(crate) mod error;
pub(crate) mod history;
pub(crate) mod kv_ext;
pub mod op;
pub(crate) mod retry;
pub(crate) mod session;
pub(crate) mod topology;
pub mod watch;

pub use async_client::AsyncClient;
pub use blocking::{CasResult, Client};
pub use config::ClientConfig;
pub use error::{Error, Result};
pub use history::HistoryRecorder;
pub use kv_ext::TxnResult;
pub use op::Reply;
pub use ringraft_net::message::{
    CasExpect, ClientOp, ClusterStatus, Consistency, KeyValue, LeaseInfo, ScanRange, Session, Txn,
    TxnCheck, TxnCompare, TxnOp, TxnOpResult, Versioned,
};
pub use topology::Topology;
