//! The client's typed errors. Each says what happened in words a person understands and, for
//! writes, whether the operation may still have been applied ([`Error::maybe_applied`]): a
//! timed-out or connection-lost write may have taken effect; a write the cluster refused before
//! proposing it has not. Owned by the client.

/// Result of a client operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Why a client operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable (message names the field).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// No node of the cluster could be reached.
    #[error("cannot reach the cluster: no node answered at {endpoints} ({last})")]
    Unreachable {
        /// The nodes tried.
        endpoints: String,
        /// The last connection error.
        last: String,
    },
    /// A node refused the connection for good (other cluster, protocol version).
    #[error("node {address} refused the connection: {message}")]
    Refused {
        /// The node.
        address: String,
        /// Its reason.
        message: String,
    },
    /// The operation's deadline passed before it completed.
    #[error(
        "timed out after {elapsed_ms} ms and {attempts} attempt(s){}; last problem: {last}",
        if *.maybe_applied { " (the write may or may not have been applied)" } else { "" }
    )]
    Timeout {
        /// Time spent.
        elapsed_ms: u64,
        /// Attempts made.
        attempts: u32,
        /// Whether a write may have taken effect.
        maybe_applied: bool,
        /// What went wrong last.
        last: String,
    },
    /// The retry budget was spent.
    #[error(
        "gave up after {attempts} attempt(s){}; last problem: {last}",
        if *.maybe_applied { " (the write may or may not have been applied)" } else { "" }
    )]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// Whether a write may have taken effect.
        maybe_applied: bool,
        /// What went wrong last.
        last: String,
    },
    /// The cluster rejected the request as malformed or over a limit (retrying cannot help).
    #[error("the cluster rejected the request: {0}")]
    InvalidRequest(String),
    /// A retried write's recorded result was evicted from the node's bounded session table:
    /// the write was applied once, long ago, and its result is gone.
    #[error("the write was applied earlier but its result expired from the session table: {0}")]
    SessionExpired(String),
    /// A node answered something the protocol does not allow.
    #[error("protocol error from {address}: {message}")]
    Protocol {
        /// The node.
        address: String,
        /// What was wrong.
        message: String,
    },
}

impl Error {
    /// Whether a write that failed with this error may nevertheless have been applied.
    pub fn maybe_applied(&self) -> bool {
        match self {
            Error::Timeout { maybe_applied, .. }
            | Error::RetriesExhausted { maybe_applied, .. } => *maybe_applied,
            Error::Protocol { .. } | Error::SessionExpired(_) => true,
            _ => false,
        }
    }

    /// Whether the cluster could not be reached at all.
    pub(crate) fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_whether_a_write_may_have_applied() {
        let e = Error::Timeout {
            elapsed_ms: 10,
            attempts: 2,
            maybe_applied: true,
            last: "no answer".into(),
        };
        assert!(e.to_string().contains("may or may not"));
        assert!(e.maybe_applied());
        let e = Error::RetriesExhausted {
            attempts: 3,
            maybe_applied: false,
            last: "not leader".into(),
        };
        assert!(!e.to_string().contains("may or may not"));
        assert!(!e.maybe_applied());
    }
}
