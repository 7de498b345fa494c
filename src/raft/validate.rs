//! Validation of messages from peers: every term, index and count a [`Message`] carries is
//! hostile until checked here. [`validate`] is stateless (bounds and the relations Raft
//! guarantees between fields of one honest message); `Raft::step` runs it on every message and
//! refuses a failing one with [`InvalidMessage`] (counted, see `Raft::invalid_messages`) before
//! any state changes. The checks that need the replica's state (an acknowledged index past the
//! leader's log, a heartbeat round never issued) live in the handlers and count the same way.
//!
//! Bounds: terms and indexes above [`MAX_TERM`] / [`MAX_INDEX`] are refused. Both leave 2^32 of
//! headroom below `u64::MAX`, so every `+ 1` on a term and every `index + count` on an accepted
//! value is exact (a batch never holds 2^32 entries: frames are far smaller). An honest cluster
//! never gets near them: at one election per millisecond, 2^64 − 2^32 terms last 584 million
//! years. A replica whose own term reached `MAX_TERM` (only possible from durable state written by
//! an older build that accepted any term) stops campaigning instead of overflowing.
//! Owned by the Raft core.

use super::message::{Message, MessageBody};

/// Largest term accepted from a peer or reached by this replica.
pub const MAX_TERM: u64 = u64::MAX - (1 << 32);
/// Largest log index accepted from a peer or appended by this replica.
pub const MAX_INDEX: u64 = u64::MAX - (1 << 32);

/// Why a peer message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMessage {
    /// A term above [`MAX_TERM`] (the message's own, or one it carries).
    #[error("term {0} is above the largest accepted term")]
    TermTooLarge(u64),
    /// An index above [`MAX_INDEX`].
    #[error("{field} {value} is above the largest accepted index")]
    IndexTooLarge {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
    /// A log term (of an entry, a previous entry, a last entry or a snapshot) above the
    /// message's term: no honest sender holds an entry newer than its own term.
    #[error("{field} {value} is above the message term {term}")]
    TermAboveMessage {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The message's term.
        term: u64,
    },
    /// AppendEntries whose entries do not follow `prev_index` one by one.
    #[error("entry {k} has index {index}, expected {expected}")]
    NonContiguousEntries {
        /// Position in the batch.
        k: usize,
        /// Its index.
        index: u64,
        /// The index it should have.
        expected: u64,
    },
    /// AppendEntries whose terms decrease (a Raft log's terms never do).
    #[error("entry terms decrease at index {0}")]
    DecreasingTerms(u64),
    /// A rejection hint past the rejected index (the hint is at most the rejected `prev_index`).
    #[error("conflict hint {hint} is past the rejected index {rejected}")]
    HintPastRejected {
        /// Hint index.
        hint: u64,
        /// Rejected index.
        rejected: u64,
    },
    /// A snapshot whose index and term disagree on being empty (index 0 ⇔ term 0).
    #[error("snapshot at index {index} with term {term}")]
    SnapshotIndexTerm {
        /// Index.
        index: u64,
        /// Term.
        term: u64,
    },
    /// An acknowledgement of an index this leader's log does not have.
    #[error("acknowledged index {index} is past the last index {last}")]
    AckPastLog {
        /// Acknowledged index.
        index: u64,
        /// Leader's last index.
        last: u64,
    },
    /// A heartbeat answer echoing a round this leader never started.
    #[error("heartbeat round {round} was never started (last {last})")]
    UnknownRound {
        /// Echoed round.
        round: u64,
        /// Last round started.
        last: u64,
    },
}

fn index(field: &'static str, value: u64) -> Result<(), InvalidMessage> {
    if value > MAX_INDEX {
        return Err(InvalidMessage::IndexTooLarge { field, value });
    }
    Ok(())
}

fn log_term(field: &'static str, value: u64, term: u64) -> Result<(), InvalidMessage> {
    if value > term {
        return Err(InvalidMessage::TermAboveMessage { field, value, term });
    }
    Ok(())
}

/// Checks the bounds and field relations of one message (see the module documentation).
pub fn validate(m: &Message) -> Result<(), InvalidMessage> {
    let term = m.term;
    if term > MAX_TERM {
        return Err(InvalidMessage::TermTooLarge(term));
    }
    match &m.body {
        MessageBody::PreVote {
            last_index,
            last_term,
        }
        | MessageBody::Vote {
            last_index,
            last_term,
            ..
        } => {
            index("last_index", *last_index)?;
            log_term("last_term", *last_term, term)?;
        }
        MessageBody::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => {
            index("prev_index", *prev_index)?;
            index("commit", *commit)?;
            log_term("prev_term", *prev_term, term)?;
            let mut last_term = *prev_term;
            let mut expected = *prev_index;
            for (k, e) in entries.iter().enumerate() {
                expected = match expected.checked_add(1) {
                    Some(x) if x <= MAX_INDEX => x,
                    _ => {
                        return Err(InvalidMessage::IndexTooLarge {
                            field: "entry index",
                            value: e.index,
                        })
                    }
                };
                if e.index != expected {
                    return Err(InvalidMessage::NonContiguousEntries {
                        k,
                        index: e.index,
                        expected,
                    });
                }
                log_term("entry term", e.term, term)?;
                if e.term < last_term {
                    return Err(InvalidMessage::DecreasingTerms(e.index));
                }
                last_term = e.term;
            }
        }
        MessageBody::AppendResponse {
            index: acked,
            reject,
        } => {
            index("index", *acked)?;
            if let Some(h) = reject {
                index("hint index", h.index)?;
                log_term("hint term", h.term, term)?;
                if h.index > *acked {
                    return Err(InvalidMessage::HintPastRejected {
                        hint: h.index,
                        rejected: *acked,
                    });
                }
            }
        }
        MessageBody::Heartbeat { commit, .. } => index("commit", *commit)?,
        MessageBody::InstallSnapshot { snapshot } => {
            let meta = &snapshot.meta;
            index("snapshot index", meta.index)?;
            log_term("snapshot term", meta.term, term)?;
            if (meta.index == 0) != (meta.term == 0) {
                return Err(InvalidMessage::SnapshotIndexTerm {
                    index: meta.index,
                    term: meta.term,
                });
            }
        }
        MessageBody::PreVoteResponse { .. }
        | MessageBody::VoteResponse { .. }
        | MessageBody::HeartbeatResponse { .. }
        | MessageBody::TimeoutNow => {}
    }
    Ok(())
}
