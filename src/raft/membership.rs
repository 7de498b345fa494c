//! Group membership: voters and learners, the quorum rule, and the single-change rule. The
//! configuration lives in the log: a `Config` entry carries the *whole* new membership
//! (encoded below), and a replica uses the latest configuration in its log, committed or not
//! (Raft dissertation §4.1). A leader proposes a change only when the previous configuration
//! entry is committed and it has committed an entry of its own term, and each change adds,
//! promotes or removes exactly one node, so any two successive configurations share a quorum.
//!
//! Encoding of a membership (all integers little-endian):
//! ```text
//! u32 voter_count, voter_count × u64 voter id (ascending),
//! u32 learner_count, learner_count × u64 learner id (ascending)
//! ```

use std::collections::BTreeSet;

use super::message::NodeId;

/// Maximum members (voters + learners) of one group.
pub const MAX_MEMBERS: usize = 64;

/// Voters and learners of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Membership {
    /// Voting members.
    pub voters: BTreeSet<NodeId>,
    /// Non-voting members (receive the log, never counted).
    pub learners: BTreeSet<NodeId>,
}

/// A single membership change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfChange {
    /// Add a non-voting learner.
    AddLearner(NodeId),
    /// Turn a learner into a voter.
    Promote(NodeId),
    /// Remove a voter or learner.
    Remove(NodeId),
}

/// Why a membership change or decode was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    /// The node is already a member.
    #[error("node {0} is already a member")]
    AlreadyMember(NodeId),
    /// The node is not a learner.
    #[error("node {0} is not a learner")]
    NotLearner(NodeId),
    /// The node is not a member.
    #[error("node {0} is not a member")]
    NotMember(NodeId),
    /// Removing the last voter.
    #[error("cannot remove the last voter")]
    LastVoter,
    /// Too many members.
    #[error("more than {MAX_MEMBERS} members")]
    TooMany,
    /// Bad bytes.
    #[error("malformed membership encoding")]
    Malformed,
    /// Id 0 is reserved.
    #[error("node id 0 is reserved")]
    ZeroId,
}

impl Membership {
    /// A configuration of `voters` only.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            learners: BTreeSet::new(),
        }
    }

    /// Number of votes that form a quorum (0 for an empty configuration).
    pub fn quorum(&self) -> usize {
        if self.voters.is_empty() {
            0
        } else {
            self.voters.len() / 2 + 1
        }
    }

    /// True if `id` votes.
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// True if `id` is a voter or learner.
    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Voters and learners.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// The configuration after `change`, or why it is not allowed.
    pub fn apply(&self, change: ConfChange) -> Result<Membership, MembershipError> {
        let mut next = self.clone();
        match change {
            ConfChange::AddLearner(id) => {
                if id == 0 {
                    return Err(MembershipError::ZeroId);
                }
                if self.contains(id) {
                    return Err(MembershipError::AlreadyMember(id));
                }
                if self.voters.len() + self.learners.len() >= MAX_MEMBERS {
                    return Err(MembershipError::TooMany);
                }
                next.learners.insert(id);
            }
            ConfChange::Promote(id) => {
                if !next.learners.remove(&id) {
                    return Err(MembershipError::NotLearner(id));
                }
                next.voters.insert(id);
            }
            ConfChange::Remove(id) => {
                if next.learners.remove(&id) {
                    return Ok(next);
                }
                if !self.voters.contains(&id) {
                    return Err(MembershipError::NotMember(id));
                }
                if self.voters.len() == 1 {
                    return Err(MembershipError::LastVoter);
                }
                next.voters.remove(&id);
            }
        }
        Ok(next)
    }

    /// Encodes as described in the module documentation.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + 8 * (self.voters.len() + self.learners.len()));
        for set in [&self.voters, &self.learners] {
            out.extend_from_slice(&(set.len() as u32).to_le_bytes());
            for id in set {
                out.extend_from_slice(&id.to_le_bytes());
            }
        }
        out
    }

    /// Decodes [`Membership::encode`] output; rejects truncated, oversized or trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Membership, MembershipError> {
        let mut pos = 0usize;
        let read_set = |pos: &mut usize| -> Result<BTreeSet<NodeId>, MembershipError> {
            let head = bytes
                .get(*pos..*pos + 4)
                .ok_or(MembershipError::Malformed)?;
            let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            *pos += 4;
            if n > MAX_MEMBERS {
                return Err(MembershipError::TooMany);
            }
            let mut set = BTreeSet::new();
            for _ in 0..n {
                let b = bytes
                    .get(*pos..*pos + 8)
                    .ok_or(MembershipError::Malformed)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let id = u64::from_le_bytes(a);
                if id == 0 {
                    return Err(MembershipError::ZeroId);
                }
                set.insert(id);
                *pos += 8;
            }
            Ok(set)
        };
        let voters = read_set(&mut pos)?;
        let learners = read_set(&mut pos)?;
        if pos != bytes.len() || voters.iter().any(|v| learners.contains(v)) {
            return Err(MembershipError::Malformed);
        }
        Ok(Membership { voters, learners })
    }
}

impl super::core::Raft {
    /// Proposes one membership change; returns the index of its configuration entry. Refused
    /// while another change is uncommitted or before this leader committed in its term.
    pub fn propose_conf_change(
        &mut self,
        change: ConfChange,
    ) -> Result<u64, super::core::ProposeError> {
        use super::core::ProposeError;
        self.check_can_propose()?;
        if self.log.membership_index() > self.log.committed() || !self.committed_in_term() {
            return Err(ProposeError::ConfChangePending);
        }
        let next = self.log.membership().apply(change)?;
        let index = self.log.last_index() + 1;
        self.log.append([super::message::Entry {
            index,
            term: self.term,
            kind: super::message::EntryKind::Config,
            data: next.encode().into(),
        }]);
        // New members are probed from the configuration entry itself, so they hear from the
        // leader at once.
        self.sync_progress(index);
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_roundtrip_and_malformed() {
        let m = Membership::with_voters([1, 2, 3])
            .apply(ConfChange::AddLearner(9))
            .unwrap();
        let b = m.encode();
        assert_eq!(Membership::decode(&b).unwrap(), m);
        assert_eq!(
            Membership::decode(&b[..b.len() - 1]),
            Err(MembershipError::Malformed)
        );
        let mut extra = b.clone();
        extra.push(0);
        assert_eq!(Membership::decode(&extra), Err(MembershipError::Malformed));
        assert_eq!(
            Membership::decode(&[255, 255, 255, 255]),
            Err(MembershipError::TooMany)
        );
    }

    #[test]
    fn single_changes() {
        let m = Membership::with_voters([1, 2, 3]);
        assert_eq!(m.quorum(), 2);
        assert_eq!(
            m.apply(ConfChange::AddLearner(2)),
            Err(MembershipError::AlreadyMember(2))
        );
        assert_eq!(
            m.apply(ConfChange::Promote(4)),
            Err(MembershipError::NotLearner(4))
        );
        let m4 = m
            .apply(ConfChange::AddLearner(4))
            .unwrap()
            .apply(ConfChange::Promote(4))
            .unwrap();
        assert_eq!(m4.quorum(), 3);
        let one = Membership::with_voters([1]);
        assert_eq!(
            one.apply(ConfChange::Remove(1)),
            Err(MembershipError::LastVoter)
        );
    }
}
