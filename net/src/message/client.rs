//! Client ↔ node messages: key-value operations, batches of them, and typed replies.
//!
//! A [`ClientRequest`] is one operation or a [`ClientCommand::Batch`] of operations (bounded
//! by the node's `max_batch_ops`); the [`ClientResponse`] mirrors its shape. Writes carry an
//! optional [`Session`] `(client_id, sequence)` so a retried write applies exactly once. Errors
//! are typed ([`ClientError`]) so clients can react: follow a `NotLeader` hint, back off on
//! `Busy`, re-route on `WrongShard`.

use rkyv::{Archive, Deserialize, Serialize};

use super::raft::NodeId;

/// Exactly-once identity of a write: a client-chosen id and a per-client increasing sequence.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct Session {
    /// Client id (unique per client process).
    pub client_id: u64,
    /// Sequence number, increasing per client.
    pub sequence: u64,
}

/// Read consistency of a Get or Scan.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum Consistency {
    /// The server's configured default.
    #[default]
    Default,
    /// Linearizable via a quorum read index.
    Linearizable,
    /// Served by the leader under its lease (linearizable if clocks behave).
    Lease,
    /// Served from any replica's state; may be stale.
    Eventual,
}

/// What a compare-and-swap compares against.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum CasExpect {
    /// The current value must equal this (`None`: the key must be absent).
    Value(Option<Vec<u8>>),
    /// The key's version (the log index of its last write) must equal this; 0 = absent.
    Version(u64),
}

/// A key range for scans.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum ScanRange {
    /// Every key starting with these bytes.
    Prefix(Vec<u8>),
    /// Keys in `[start, end)`; `end: None` = unbounded.
    Range {
        /// Inclusive start.
        start: Vec<u8>,
        /// Exclusive end.
        end: Option<Vec<u8>>,
    },
}

/// One key-value operation.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum ClientOp {
    /// Set `key` to `value`.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Exactly-once identity.
        session: Option<Session>,
    },
    /// Read `key`.
    Get {
        /// Key.
        key: Vec<u8>,
        /// Read consistency.
        consistency: Consistency,
    },
    /// Remove `key`.
    Delete {
        /// Key.
        key: Vec<u8>,
        /// Exactly-once identity.
        session: Option<Session>,
    },
    /// Set `key` to `new_value` if `expect` holds.
    CompareAndSwap {
        /// Key.
        key: Vec<u8>,
        /// Condition.
        expect: CasExpect,
        /// Value to store when the condition holds.
        new_value: Vec<u8>,
        /// Exactly-once identity.
        session: Option<Session>,
    },
    /// Read up to `limit` keys of a range, in key order.
    Scan {
        /// Range.
        range: ScanRange,
        /// Maximum pairs returned (the server also caps it).
        limit: u32,
        /// Read consistency.
        consistency: Consistency,
    },
}

/// A request: one operation or a batch.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum ClientCommand {
    /// One operation.
    Single(ClientOp),
    /// Several operations applied in order (each its own outcome; not a transaction).
    Batch(Vec<ClientOp>),
}

/// Client → node.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct ClientRequest {
    /// Shard the client believes owns the keys (the node answers `WrongShard` otherwise).
    pub shard: u32,
    /// What to do.
    pub command: ClientCommand,
}

/// A value with its version (log index of its last write).
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct Versioned {
    /// Value bytes.
    pub value: Vec<u8>,
    /// Version.
    pub version: u64,
}

/// A key-value pair of a scan.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct KeyValue {
    /// Key.
    pub key: Vec<u8>,
    /// Value.
    pub value: Vec<u8>,
    /// Version.
    pub version: u64,
}

/// Where the client should go instead.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct LeaderHint {
    /// Leader's node id.
    pub node_id: NodeId,
    /// Leader's client address, `host:port`.
    pub address: String,
}

/// Typed failure of one operation.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum ClientError {
    /// This node does not lead the shard; try the hinted leader (if known).
    NotLeader {
        /// The leader, if this node knows it.
        leader: Option<LeaderHint>,
    },
    /// This node does not host the shard.
    WrongShard {
        /// The shard the key maps to, as far as this node knows.
        shard: u32,
    },
    /// Backpressure: queues are full, retry after the given delay.
    Busy {
        /// Suggested delay.
        retry_after_ms: u32,
    },
    /// The request is malformed (key too large, empty batch, ...).
    InvalidRequest(String),
    /// The operation did not complete in time; it may or may not have been applied.
    Timeout,
    /// Get/Delete of a key that does not exist.
    KeyNotFound,
}

/// Successful result of one operation.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum OpReply {
    /// Put applied at this version.
    Written {
        /// New version.
        version: u64,
    },
    /// Get result.
    Value(Versioned),
    /// Delete applied.
    Deleted {
        /// Version of the delete.
        version: u64,
    },
    /// CAS result; `current` is the value after the operation.
    Cas {
        /// Whether the swap happened.
        swapped: bool,
        /// Current value (`None` if absent).
        current: Option<Versioned>,
    },
    /// Scan result.
    Scan {
        /// Pairs in key order.
        items: Vec<KeyValue>,
        /// Whether the limit cut the result short.
        more: bool,
    },
}

/// Result of one operation.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum OpOutcome {
    /// Success.
    Ok(OpReply),
    /// Failure.
    Err(ClientError),
}

/// Response body, same shape as the request's [`ClientCommand`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum ClientOutcome {
    /// Outcome of a single op.
    Single(OpOutcome),
    /// Outcomes of a batch, in request order.
    Batch(Vec<OpOutcome>),
    /// The whole request failed before any op ran (not leader, busy, ...).
    Failed(ClientError),
}

/// Node → client.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct ClientResponse {
    /// Outcome.
    pub outcome: ClientOutcome,
}
