//! Leadership transfer: the leader stops taking proposals, brings the transferee up to date,
//! then sends `TimeoutNow`; the transferee campaigns at once (no PreVote) with a vote request
//! that may bypass the followers' "recently heard from a leader" rule. The leader gives up its
//! lease for the rest of its term when it sends `TimeoutNow`, and abandons the transfer after one
//! minimum election timeout.

use super::core::Raft;
use super::message::{MessageBody, NodeId, NO_NODE};
use super::ready::Role;

/// Why a transfer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// Only the leader transfers.
    #[error("not the leader")]
    NotLeader,
    /// The target is this replica.
    #[error("already the leader")]
    ToSelf,
    /// The target does not vote.
    #[error("node {0} is not a voter")]
    NotVoter(NodeId),
}

impl Raft {
    /// Starts handing leadership to `to`.
    pub fn transfer_leadership(&mut self, to: NodeId) -> Result<(), TransferError> {
        if self.role != Role::Leader {
            return Err(TransferError::NotLeader);
        }
        if to == self.id {
            return Err(TransferError::ToSelf);
        }
        if !self.log.membership().is_voter(to) {
            return Err(TransferError::NotVoter(to));
        }
        self.transferee = to;
        self.transfer_elapsed = 0;
        self.lease.invalidate();
        let caught_up = self
            .prs
            .get(&to)
            .is_some_and(|p| p.match_index == self.log.last_index());
        if caught_up {
            self.send_timeout_now(to);
        } else {
            self.maybe_send_append(to, true);
        }
        Ok(())
    }

    /// Target of the transfer in progress (0 if none).
    pub fn transferee(&self) -> NodeId {
        self.transferee
    }

    pub(super) fn send_timeout_now(&mut self, to: NodeId) {
        if self.transferee == NO_NODE {
            return;
        }
        self.lease_disabled = true;
        self.lease.invalidate();
        self.send(to, MessageBody::TimeoutNow);
    }
}
