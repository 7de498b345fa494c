//! The node's client request and reply types: what the HTTP surface and the binary frame
//! surface both translate into, what crosses cores on the mesh, and what a shard executes. A
//! write is carried as the logged [`WriteOp`] itself; errors are the wire's one
//! [`ClientError`] (each not applied or outcome unknown), mapped to HTTP by
//! `http_api::http_status`.

use crate::node::config::ReadPolicy;
use crate::node::kv::{ApplyResult, Versioned, WriteOp};

/// Consistency of one read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    /// ReadIndex confirmed by a quorum.
    Linearizable,
    /// Leader lease.
    Lease,
    /// Local state of the node asked.
    Eventual,
}

impl Consistency {
    /// Parses the `consistency=` query value.
    pub(crate) fn parse(s: &str) -> Option<Consistency> {
        match s.to_ascii_lowercase().as_str() {
            "linearizable" | "linearizableread" | "strong" => Some(Consistency::Linearizable),
            "lease" | "leaseread" => Some(Consistency::Lease),
            "eventual" | "eventualconsistency" | "stale" => Some(Consistency::Eventual),
            _ => None,
        }
    }

    /// The configured default policy as a consistency.
    pub(crate) fn from_policy(p: ReadPolicy) -> Consistency {
        match p {
            ReadPolicy::LeaseRead => Consistency::Lease,
            ReadPolicy::LinearizableRead => Consistency::Linearizable,
            ReadPolicy::EventualConsistency => Consistency::Eventual,
        }
    }

    /// Index into per-consistency metric arrays.
    pub(crate) fn metric_index(self) -> usize {
        match self {
            Consistency::Linearizable => 0,
            Consistency::Lease => 1,
            Consistency::Eventual => 2,
        }
    }

    /// Name used in replies and logs.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Consistency::Linearizable => "linearizable",
            Consistency::Lease => "lease",
            Consistency::Eventual => "eventual",
        }
    }
}

/// One client operation on one key (or one prefix, for scans).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// A write, exactly as the log will carry it.
    Write(WriteOp),
    /// Read a value.
    Get {
        /// Key.
        key: Vec<u8>,
        /// Consistency.
        consistency: Consistency,
    },
    /// Keys with a prefix, in one shard.
    Scan {
        /// Prefix.
        prefix: Vec<u8>,
        /// Most results.
        limit: usize,
        /// Consistency.
        consistency: Consistency,
    },
    /// The leases of one shard with their remaining time (answered by the shard's leader).
    LeaseList,
}

impl ClientOp {
    /// The key that picks the shard.
    pub(crate) fn routing_key(&self) -> &[u8] {
        match self {
            ClientOp::Write(w) => w.key().unwrap_or(&[]),
            ClientOp::Get { key, .. } => key,
            ClientOp::Scan { prefix, .. } => prefix,
            ClientOp::LeaseList => &[],
        }
    }

    /// Whether the op goes through the log.
    pub(crate) fn is_write(&self) -> bool {
        matches!(self, ClientOp::Write(_))
    }
}

/// A client request: the op plus its exactly-once session (client_id 0 = none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientRequest {
    /// Session client id.
    pub(crate) client_id: u64,
    /// Session sequence number.
    pub(crate) seq: u64,
    /// The operation.
    pub(crate) op: ClientOp,
    /// Shard the client addressed, if it chose one (checked; a mismatch is WrongShard).
    pub(crate) shard: Option<usize>,
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientReply {
    /// A write was applied with this result.
    Applied(ApplyResult),
    /// A read found this (None = absent).
    Value(Option<Versioned>),
    /// A scan's results.
    Scan(Vec<(Vec<u8>, Versioned)>),
    /// A membership change committed at this index.
    Committed {
        /// Log index of the configuration entry.
        index: u64,
    },
    /// An eventual read's reply, served from local state that may be stale: the serving
    /// replica's applied index and whether it believed itself leader.
    Eventual {
        /// The read's reply (`Value` or `Scan`).
        reply: Box<ClientReply>,
        /// What the replica said about its staleness.
        read: ringraft_net::message::EventualRead,
    },
    /// The leases of one shard.
    Leases(Vec<ringraft_net::message::LeaseInfo>),
}

pub(crate) use ringraft_net::message::{ClientError, ErrorClass, LeaderHint};

/// Suggested client back-off on Busy.
pub(crate) const BUSY_RETRY_AFTER_MS: u32 = 10;

/// A Busy refusal (not applied) with the node's suggested back-off.
pub(crate) fn busy() -> ClientError {
    ClientError::Busy {
        retry_after_ms: BUSY_RETRY_AFTER_MS,
    }
}

/// The outcome of one request.
pub(crate) type ClientResult = Result<ClientReply, ClientError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_names() {
        assert_eq!(
            Consistency::parse("linearizable"),
            Some(Consistency::Linearizable)
        );
        assert_eq!(Consistency::parse("LEASE"), Some(Consistency::Lease));
        assert_eq!(Consistency::parse("eventual"), Some(Consistency::Eventual));
        assert_eq!(Consistency::parse("sometimes"), None);
        assert_eq!(
            Consistency::from_policy(ReadPolicy::LeaseRead),
            Consistency::Lease
        );
    }

    #[test]
    fn errors_explain_themselves() {
        let e = ClientError::NotLeader {
            leader: Some(LeaderHint {
                node_id: 2,
                address: "127.0.0.1:9082".into(),
            }),
        };
        assert!(e.to_string().contains("node 2 at 127.0.0.1:9082"));
        assert_eq!(e.class(), ErrorClass::NotApplied);
        assert_eq!(busy().class(), ErrorClass::NotApplied);
        // Every outcome-unknown error says so.
        for e in [
            ClientError::Timeout,
            ClientError::LeadershipLost,
            ClientError::ForwardBroken("reset".into()),
            ClientError::SessionExpired,
        ] {
            assert_eq!(e.class(), ErrorClass::OutcomeUnknown);
            assert!(e.to_string().contains("unknown"), "{e}");
        }
    }
}
