//! Client ↔ node messages: key-value operations, batches of them, and typed replies.
//!
//! A [`ClientRequest`] is one operation or a [`ClientCommand::Batch`] of operations (bounded
//! by the node's `max_batch_ops`); the [`ClientResponse`] mirrors its shape. Writes carry an
//! optional [`Session`] `(client_id, sequence)` so a retried write applies exactly once.
//!
//! This is the one vocabulary of the key-value API: the client library, the node (frame and
//! HTTP surfaces, cores) and tools use these types. [`ClientError`] is the one error type;
//! every variant is classified ([`ClientError::class`]) as [`ErrorClass::NotApplied`] (refused
//! before it was proposed: retry anywhere) or [`ErrorClass::OutcomeUnknown`] (it may have been
//! applied: retry only with the same session, never report it as failed). Session expiry is
//! its own variant.

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
    /// A transaction on keys of one shard, applied atomically as one log entry.
    Txn {
        /// Compares, then the ops of the branch they chose.
        txn: Txn,
        /// Exactly-once identity.
        session: Option<Session>,
    },
    /// Set `key` to `value` attached to lease `lease` (granted first with `ttl_ms` when
    /// `ttl_ms > 0`, else it must exist). The lease id names its shard ([`lease_shard`]), which
    /// must be the key's.
    PutLease {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// Lease id.
        lease: u64,
        /// Grant the lease with this time-to-live first (0: attach to an existing lease).
        ttl_ms: u64,
        /// Exactly-once identity.
        session: Option<Session>,
    },
    /// Grant lease `id` (chosen by the requester, naming its shard) for `ttl_ms`.
    LeaseGrant {
        /// Lease id ([`lease_id`]).
        id: u64,
        /// Time to live.
        ttl_ms: u64,
        /// Exactly-once identity.
        session: Option<Session>,
    },
    /// Restart lease `id`'s time to live.
    LeaseKeepAlive {
        /// Lease id.
        id: u64,
        /// Exactly-once identity.
        session: Option<Session>,
    },
    /// Revoke lease `id`, deleting every key attached to it.
    LeaseRevoke {
        /// Lease id.
        id: u64,
        /// Exactly-once identity.
        session: Option<Session>,
    },
    /// List the leases of the request's shard with their remaining time (on the leader).
    LeaseList,
    /// Stream the changes of the request's shard that match `filter`, from revision `from`
    /// (0 = from now). Answered by a stream of [`ClientOutcome::Watch`] responses carrying the
    /// request's id, until a [`WatchReply::Cancelled`]. Only as a `Single` command, with an
    /// explicit shard: revisions are per shard.
    Watch {
        /// Which keys.
        filter: WatchFilter,
        /// First revision wanted (the shard's log index); 0 = the next one applied.
        from: u64,
    },
}

/// Bits of a lease id below its shard number.
pub const LEASE_SHARD_SHIFT: u32 = 48;

/// The shard a lease lives in (its id's top bits).
pub fn lease_shard(id: u64) -> u32 {
    (id >> LEASE_SHARD_SHIFT) as u32
}

/// A lease id in `shard` from `nonce` (its low 48 bits; a zero nonce becomes 1, so an id is
/// never 0).
pub fn lease_id(shard: u32, nonce: u64) -> u64 {
    let low = nonce & ((1u64 << LEASE_SHARD_SHIFT) - 1);
    (u64::from(shard) << LEASE_SHARD_SHIFT) | low.max(1)
}

/// What one compare of a transaction checks about its key.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum TxnCheck {
    /// The value equals this (`None`: the key is absent).
    Value(Option<Vec<u8>>),
    /// The version (log index of the key's last write) equals this; 0 = absent.
    Version(u64),
    /// The key exists (`true`) or does not (`false`).
    Exists(bool),
}

/// One compare of a transaction.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct TxnCompare {
    /// Key compared.
    pub key: Vec<u8>,
    /// What must hold.
    pub check: TxnCheck,
}

/// One operation of a transaction branch.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum TxnOp {
    /// Set `key` to `value`.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Remove `key`.
    Delete {
        /// Key.
        key: Vec<u8>,
    },
    /// Read `key` (as of this point of the transaction).
    Get {
        /// Key.
        key: Vec<u8>,
    },
}

impl TxnOp {
    /// The key the op touches.
    pub fn key(&self) -> &[u8] {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } | TxnOp::Get { key } => key,
        }
    }
}

/// A transaction: if every compare holds, `success` runs, else `failure`; one log entry.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct Txn {
    /// Conditions, all of which must hold.
    pub compares: Vec<TxnCompare>,
    /// Ops run when every compare holds.
    pub success: Vec<TxnOp>,
    /// Ops run otherwise.
    pub failure: Vec<TxnOp>,
}

impl Txn {
    /// Every key the transaction names, compares first, in order (with repeats).
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.compares
            .iter()
            .map(|c| c.key.as_slice())
            .chain(self.success.iter().map(TxnOp::key))
            .chain(self.failure.iter().map(TxnOp::key))
    }
}

/// The result of one op of the branch a transaction ran.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum TxnOpResult {
    /// A put, at this version (the transaction's log index).
    Put {
        /// Version.
        version: u64,
    },
    /// A delete.
    Deleted {
        /// Whether the key existed.
        existed: bool,
    },
    /// A get (`None`: absent).
    Get(Option<Versioned>),
    /// A get answered to a retry whose value is no longer kept: the key had this version when
    /// the transaction ran and has been written since.
    GetOmitted {
        /// Version read.
        version: u64,
    },
}

/// A lease and its remaining time, as the shard's leader sees it.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct LeaseInfo {
    /// Lease id.
    pub id: u64,
    /// Granted time to live.
    pub ttl_ms: u64,
    /// Time left before the leader expires it.
    pub remaining_ms: u64,
    /// Keys attached.
    pub keys: u32,
}

impl ClientOp {
    /// The key that picks the shard (a scan's prefix or range start).
    pub fn routing_key(&self) -> &[u8] {
        match self {
            ClientOp::Put { key, .. }
            | ClientOp::Get { key, .. }
            | ClientOp::Delete { key, .. }
            | ClientOp::CompareAndSwap { key, .. } => key,
            ClientOp::Scan {
                range: ScanRange::Prefix(p),
                ..
            } => p,
            ClientOp::Scan {
                range: ScanRange::Range { start, .. },
                ..
            } => start,
            ClientOp::PutLease { key, .. } => key,
            ClientOp::Txn { txn, .. } => txn.keys().next().unwrap_or(&[]),
            ClientOp::LeaseGrant { .. }
            | ClientOp::LeaseKeepAlive { .. }
            | ClientOp::LeaseRevoke { .. }
            | ClientOp::LeaseList => &[],
            ClientOp::Watch { filter, .. } => filter.start(),
        }
    }

    /// Whether the operation goes through the log.
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            ClientOp::Get { .. }
                | ClientOp::Scan { .. }
                | ClientOp::LeaseList
                | ClientOp::Watch { .. }
        )
    }
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

/// Which of the two things a failed operation is: the one question a caller must answer
/// before retrying a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Refused before it was proposed: it was not applied and never will be. Safe to retry
    /// anywhere, with any session.
    NotApplied,
    /// It may have been applied (or may still be). Retry only with the same session, which the
    /// state machine answers with the first result; never report it as failed.
    OutcomeUnknown,
}

/// Typed failure of one operation: the one error vocabulary of the node, the frame API, the
/// HTTP API and the client library. Every variant is classified by [`ClientError::class`].
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum ClientError {
    /// Not applied: this node does not lead the shard; try the hinted leader (if known).
    NotLeader {
        /// The leader, if this node knows it.
        leader: Option<LeaderHint>,
    },
    /// Not applied: this node does not host the shard, or the key belongs to another shard.
    WrongShard {
        /// The shard the key maps to, as far as this node knows.
        shard: u32,
    },
    /// Not applied: backpressure (queues full); retry after the given delay.
    Busy {
        /// Suggested delay.
        retry_after_ms: u32,
    },
    /// Not applied: the request is malformed (empty key, empty batch, ...).
    InvalidRequest(String),
    /// Not applied: the request's encoded size is over what the node admits (so that every
    /// admitted write fits the log, the frame and the WAL's largest record).
    TooLarge {
        /// Encoded size of the write.
        bytes: u64,
        /// Largest admitted.
        limit: u64,
    },
    /// Not applied: the node refused the request before proposing it (shutting down, a core
    /// failed).
    Unavailable(String),
    /// Not applied: another entry took the write's log position (a newer leader overwrote the
    /// uncommitted entry), so this write can never commit.
    Superseded,
    /// Outcome unknown: no answer within the request timeout.
    Timeout,
    /// Outcome unknown: the write was proposed, then this node lost leadership, stopped, or
    /// installed a snapshot covering it before it learned the write's fate.
    LeadershipLost,
    /// Outcome unknown: the write was forwarded to the leader and the forward broke (or timed
    /// out) after it was sent.
    ForwardBroken(String),
    /// Outcome unknown: a retry of a write whose recorded result was evicted from the shard's
    /// bounded session table (the write may have been applied once, long ago). Never applied a
    /// second time.
    SessionExpired,
    /// A read found no such key (a result rather than a failure: nothing was written).
    KeyNotFound,
}

impl ClientError {
    /// Whether the operation was provably not applied or may have been.
    pub fn class(&self) -> ErrorClass {
        match self {
            ClientError::NotLeader { .. }
            | ClientError::WrongShard { .. }
            | ClientError::Busy { .. }
            | ClientError::InvalidRequest(_)
            | ClientError::TooLarge { .. }
            | ClientError::Unavailable(_)
            | ClientError::Superseded
            | ClientError::KeyNotFound => ErrorClass::NotApplied,
            ClientError::Timeout
            | ClientError::LeadershipLost
            | ClientError::ForwardBroken(_)
            | ClientError::SessionExpired => ErrorClass::OutcomeUnknown,
        }
    }

    /// Shorthand for `class() == OutcomeUnknown`.
    pub fn outcome_unknown(&self) -> bool {
        self.class() == ErrorClass::OutcomeUnknown
    }
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::NotLeader { leader: Some(h) } => write!(
                f,
                "not leader; the leader is node {} at {}",
                h.node_id, h.address
            ),
            ClientError::NotLeader { leader: None } => {
                write!(f, "not leader; no leader is known yet, retry shortly")
            }
            ClientError::WrongShard { shard } => {
                write!(f, "wrong shard; the key belongs to shard {shard}")
            }
            ClientError::Busy { retry_after_ms } => {
                write!(f, "busy; retry after {retry_after_ms} ms")
            }
            ClientError::InvalidRequest(m) => write!(f, "invalid request: {m}"),
            ClientError::TooLarge { bytes, limit } => write!(
                f,
                "request too large: {bytes} bytes encoded, the limit is {limit}; not applied"
            ),
            ClientError::Unavailable(m) => write!(f, "unavailable: {m}; not applied"),
            ClientError::Superseded => write!(
                f,
                "a newer leader replaced this write before it committed; not applied, retry"
            ),
            ClientError::Timeout => write!(
                f,
                "timed out; the outcome is unknown (the write may or may not have been applied)"
            ),
            ClientError::LeadershipLost => write!(
                f,
                "leadership changed after the write was proposed; the outcome is unknown"
            ),
            ClientError::ForwardBroken(m) => write!(
                f,
                "the forward to the leader broke after sending ({m}); the outcome is unknown"
            ),
            ClientError::SessionExpired => write!(
                f,
                "session expired: the result of this (client_id, seq) was evicted; the write \
                 may have been applied once and is never applied again; the outcome is unknown"
            ),
            ClientError::KeyNotFound => write!(f, "key not found"),
        }
    }
}

impl std::error::Error for ClientError {}

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
    /// Delete applied (also when the key did not exist: the delete still went through the log).
    Deleted {
        /// Version of the delete (its log index).
        version: u64,
        /// Whether the key existed.
        existed: bool,
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
    /// Transaction result.
    Txn {
        /// Whether every compare held (the success branch ran).
        succeeded: bool,
        /// Results of the branch's ops, in order.
        results: Vec<TxnOpResult>,
        /// The transaction's log index.
        version: u64,
    },
    /// A lease granted or kept alive (or revoked: `ttl_ms` is its time to live, `keys` the
    /// keys it deleted).
    Lease {
        /// Lease id.
        id: u64,
        /// Time to live.
        ttl_ms: u64,
        /// Keys attached (revoke: keys deleted).
        keys: u32,
    },
    /// The leases of one shard.
    Leases(Vec<LeaseInfo>),
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
    /// One message of a watch stream (many per request id).
    Watch(WatchReply),
}

/// Node → client.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct ClientResponse {
    /// Outcome.
    pub outcome: ClientOutcome,
    /// Set when an eventual read was served: its answer came from the serving node's local
    /// state, which may be stale (behind the leader, or a leader that was deposed).
    pub eventual: Option<EventualRead>,
}

/// How stale an eventual read's answer may be: what the node that served it had applied.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct EventualRead {
    /// The serving replica's applied index when it read (for a batch: the lowest of its
    /// eventual reads).
    pub applied_index: u64,
    /// Whether the serving replica believed itself the shard's leader (for a batch: all did).
    /// Even a leader's eventual read may be stale: it checks no lease or quorum.
    pub leader: bool,
}

impl EventualRead {
    /// Combines two eventual reads of one batch: the staler bound of both.
    pub fn merge(self, other: EventualRead) -> EventualRead {
        EventualRead {
            applied_index: self.applied_index.min(other.applied_index),
            leader: self.leader && other.leader,
        }
    }
}

/// The keys a watch follows.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum WatchFilter {
    /// Exactly this key.
    Key(Vec<u8>),
    /// Every key starting with these bytes (empty: every key).
    Prefix(Vec<u8>),
    /// Keys in `[start, end)`; `end: None` = unbounded.
    Range {
        /// Inclusive start.
        start: Vec<u8>,
        /// Exclusive end.
        end: Option<Vec<u8>>,
    },
}

impl WatchFilter {
    /// Whether `key` is followed.
    pub fn matches(&self, key: &[u8]) -> bool {
        match self {
            WatchFilter::Key(k) => k.as_slice() == key,
            WatchFilter::Prefix(p) => key.starts_with(p),
            WatchFilter::Range { start, end } => {
                key >= start.as_slice() && end.as_ref().is_none_or(|e| key < e.as_slice())
            }
        }
    }

    /// The first key the filter can match (what a single-key watch routes by).
    pub fn start(&self) -> &[u8] {
        match self {
            WatchFilter::Key(k) | WatchFilter::Prefix(k) => k,
            WatchFilter::Range { start, .. } => start,
        }
    }

    /// Bytes of keys the filter holds.
    pub fn bytes(&self) -> usize {
        match self {
            WatchFilter::Key(k) | WatchFilter::Prefix(k) => k.len(),
            WatchFilter::Range { start, end } => start.len() + end.as_ref().map_or(0, Vec::len),
        }
    }
}

/// What changed a key.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum WatchEventKind {
    /// The key was set (a put, or a compare-and-swap that swapped).
    Put,
    /// The key was removed (only a delete of a key that existed is an event).
    Delete,
}

/// One change of one key.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub struct WatchEvent {
    /// Put or delete.
    pub kind: WatchEventKind,
    /// Key.
    pub key: Vec<u8>,
    /// The new value (empty for a delete).
    pub value: Vec<u8>,
    /// The key's version after the change (0 for a delete).
    pub version: u64,
    /// The shard's log index of the entry that made the change.
    pub revision: u64,
}

/// Why the node ended a watch.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum WatchCancel {
    /// The revision asked for is older than the shard's retained history.
    Compacted {
        /// The oldest revision that can still be asked for.
        oldest: u64,
    },
    /// The watcher fell too far behind (its bounded queue filled): resume from the revision
    /// after the last `through` received.
    TooSlow(String),
    /// The node cannot serve the watch (bad request, too many watchers, shutting down, ...).
    Failed(ClientError),
}

impl std::fmt::Display for WatchCancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WatchCancel::Compacted { oldest } => {
                write!(f, "compacted, the oldest revision is {oldest}")
            }
            WatchCancel::TooSlow(m) => write!(f, "too slow: {m}"),
            WatchCancel::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// One message of a watch stream.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[rkyv(derive(Debug))]
pub enum WatchReply {
    /// Events in revision order (never splitting one revision's events), and the revision the
    /// stream has now covered: every matching event with `revision <= through` has been sent.
    /// An empty batch is a progress report (and a keep-alive).
    Events {
        /// Events.
        events: Vec<WatchEvent>,
        /// Revision covered.
        through: u64,
    },
    /// The watch ended; nothing follows on this request id.
    Cancelled(WatchCancel),
}
