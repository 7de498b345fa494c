//! Group membership: voters and learners, the quorum rule, and the single-change rule. The
//! configuration lives in the log: a `Config` entry carries the *whole* new membership
//! (encoded below), and a replica uses the latest configuration in its log, committed or not
//! (Raft dissertation §4.1). A leader proposes a change only when the previous configuration
//! entry is committed and it has committed an entry of its own term, and each change adds,
//! promotes or removes exactly one node, so any two successive configurations share a quorum.
//!
//! The configuration also holds the member address table: the `host:port` each member is
//! reached at, recorded by the `AddLearner` change that admitted it (or by a later `AddLearner`
//! of a member that had none recorded) and dropped by its `Remove`. Because it travels in the
//! configuration entry, every replica learns a member's address when the entry reaches its
//! log, and a restart finds it again in the snapshot's membership or the log. Invariants: only
//! members have an address; an address is never changed in place (an `AddLearner` naming a
//! member with a different address is refused with [`MembershipError::AddressConflict`]; the
//! same address is [`MembershipError::AlreadyMember`], which callers treat as done).
//!
//! Encoding of a membership (all integers little-endian):
//! ```text
//! u32 voter_count, voter_count × u64 voter id (ascending),
//! u32 learner_count, learner_count × u64 learner id (ascending),
//! then, only when at least one address is recorded (the address section):
//! u32 address_count (1 ..= voter_count + learner_count),
//! address_count × { u64 member id (strictly ascending, a voter or learner),
//!                   u16 address_len (1 ..= MAX_ADDRESS_BYTES),
//!                   address_len bytes of UTF-8 address }
//! ```
//! The address section is additive: a membership without addresses encodes byte for byte as
//! before the section existed, and an encoding that ends after the learners decodes with an
//! empty address table. A node that predates the section refuses an encoding that carries it
//! (trailing bytes), so every node of a cluster must read the section before a member is added
//! with an address.

use std::collections::{BTreeMap, BTreeSet};

use super::message::NodeId;

/// Maximum members (voters + learners) of one group.
pub const MAX_MEMBERS: usize = 64;
/// Longest member address, in bytes. A `host:port` socket address is at most about 60 bytes
/// (a bracketed IPv6 address with a scope id and a port); the bound keeps a configuration
/// entry small (at most [`MAX_MEMBERS`] × 266 bytes of addresses) whatever a request carries.
pub const MAX_ADDRESS_BYTES: usize = 255;

/// Voters and learners of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Membership {
    /// Voting members.
    pub voters: BTreeSet<NodeId>,
    /// Non-voting members (receive the log, never counted).
    pub learners: BTreeSet<NodeId>,
    /// The member address table: where each member with a recorded address is reached
    /// (keys are always members).
    pub addresses: BTreeMap<NodeId, String>,
}

/// A single membership change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfChange {
    /// Add a non-voting learner, with the address the other members reach it at when given
    /// (recorded in the member address table). Naming a member that has no address recorded
    /// records the address and changes nothing else.
    AddLearner(NodeId, Option<String>),
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
    /// The member already has another address recorded: an address is never changed in place
    /// (remove the member, then add it again).
    #[error("node {id} is already a member with address {recorded:?}")]
    AddressConflict {
        /// The member.
        id: NodeId,
        /// The address recorded for it.
        recorded: String,
    },
    /// An address that is empty or longer than [`MAX_ADDRESS_BYTES`].
    #[error("member address must be 1 to {MAX_ADDRESS_BYTES} bytes")]
    BadAddress,
}

impl Membership {
    /// A configuration of `voters` only.
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            learners: BTreeSet::new(),
            addresses: BTreeMap::new(),
        }
    }

    /// The recorded address of member `id`, if any.
    pub fn address(&self, id: NodeId) -> Option<&str> {
        self.addresses.get(&id).map(String::as_str)
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
            ConfChange::AddLearner(id, address) => {
                if id == 0 {
                    return Err(MembershipError::ZeroId);
                }
                if address
                    .as_ref()
                    .is_some_and(|a| a.is_empty() || a.len() > MAX_ADDRESS_BYTES)
                {
                    return Err(MembershipError::BadAddress);
                }
                if self.contains(id) {
                    return match (address, self.addresses.get(&id)) {
                        (Some(a), Some(recorded)) if a != *recorded => {
                            Err(MembershipError::AddressConflict {
                                id,
                                recorded: recorded.clone(),
                            })
                        }
                        (Some(a), None) => {
                            next.addresses.insert(id, a);
                            Ok(next)
                        }
                        _ => Err(MembershipError::AlreadyMember(id)),
                    };
                }
                if self.voters.len() + self.learners.len() >= MAX_MEMBERS {
                    return Err(MembershipError::TooMany);
                }
                next.learners.insert(id);
                if let Some(a) = address {
                    next.addresses.insert(id, a);
                }
            }
            ConfChange::Promote(id) => {
                if !next.learners.remove(&id) {
                    return Err(MembershipError::NotLearner(id));
                }
                next.voters.insert(id);
            }
            ConfChange::Remove(id) => {
                next.addresses.remove(&id);
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
        if !self.addresses.is_empty() {
            out.extend_from_slice(&(self.addresses.len() as u32).to_le_bytes());
            for (id, a) in &self.addresses {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&(a.len() as u16).to_le_bytes());
                out.extend_from_slice(a.as_bytes());
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
        if voters.iter().any(|v| learners.contains(v)) {
            return Err(MembershipError::Malformed);
        }
        let mut addresses = BTreeMap::new();
        if pos < bytes.len() {
            fn take<'a>(
                bytes: &'a [u8],
                pos: &mut usize,
                n: usize,
            ) -> Result<&'a [u8], MembershipError> {
                let end = pos.checked_add(n).ok_or(MembershipError::Malformed)?;
                let b = bytes.get(*pos..end).ok_or(MembershipError::Malformed)?;
                *pos = end;
                Ok(b)
            }
            let head = take(bytes, &mut pos, 4)?;
            let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
            if n == 0 || n > voters.len() + learners.len() {
                return Err(MembershipError::Malformed);
            }
            let mut last = 0u64;
            for _ in 0..n {
                let mut a = [0u8; 8];
                a.copy_from_slice(take(bytes, &mut pos, 8)?);
                let id = u64::from_le_bytes(a);
                if id <= last || !(voters.contains(&id) || learners.contains(&id)) {
                    return Err(MembershipError::Malformed);
                }
                last = id;
                let l = take(bytes, &mut pos, 2)?;
                let len = u16::from_le_bytes([l[0], l[1]]) as usize;
                if len == 0 || len > MAX_ADDRESS_BYTES {
                    return Err(MembershipError::BadAddress);
                }
                let text = std::str::from_utf8(take(bytes, &mut pos, len)?)
                    .map_err(|_| MembershipError::Malformed)?;
                addresses.insert(id, text.to_string());
            }
        }
        if pos != bytes.len() {
            return Err(MembershipError::Malformed);
        }
        Ok(Membership {
            voters,
            learners,
            addresses,
        })
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
            .apply(ConfChange::AddLearner(9, None))
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
            m.apply(ConfChange::AddLearner(2, None)),
            Err(MembershipError::AlreadyMember(2))
        );
        assert_eq!(
            m.apply(ConfChange::Promote(4)),
            Err(MembershipError::NotLearner(4))
        );
        let m4 = m
            .apply(ConfChange::AddLearner(4, None))
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

    #[test]
    fn addresses_are_recorded_encoded_and_never_changed_in_place() {
        let a4 = "127.0.0.1:7004".to_string();
        let m = Membership::with_voters([1, 2, 3])
            .apply(ConfChange::AddLearner(4, Some(a4.clone())))
            .unwrap();
        assert_eq!(m.address(4), Some(a4.as_str()));
        let b = m.encode();
        assert_eq!(Membership::decode(&b).unwrap(), m);
        // The same address again: already a member (done, nothing to propose).
        assert_eq!(
            m.apply(ConfChange::AddLearner(4, Some(a4.clone()))),
            Err(MembershipError::AlreadyMember(4))
        );
        assert_eq!(
            m.apply(ConfChange::AddLearner(4, None)),
            Err(MembershipError::AlreadyMember(4))
        );
        // Another address: refused, typed.
        assert_eq!(
            m.apply(ConfChange::AddLearner(4, Some("127.0.0.1:9".into()))),
            Err(MembershipError::AddressConflict {
                id: 4,
                recorded: a4.clone()
            })
        );
        // A member with no address recorded gets one, and nothing else changes.
        let m2 = m
            .apply(ConfChange::AddLearner(2, Some("127.0.0.1:7002".into())))
            .unwrap();
        assert_eq!(m2.voters, m.voters);
        assert_eq!(m2.learners, m.learners);
        assert_eq!(m2.address(2), Some("127.0.0.1:7002"));
        // Promotion keeps the address; removal drops it, so a re-add may bring a new one.
        let p = m2.apply(ConfChange::Promote(4)).unwrap();
        assert_eq!(p.address(4), Some(a4.as_str()));
        let r = p.apply(ConfChange::Remove(4)).unwrap();
        assert_eq!(r.address(4), None);
        assert!(r
            .apply(ConfChange::AddLearner(4, Some("127.0.0.1:9".into())))
            .is_ok());
        for bad in [String::new(), "x".repeat(MAX_ADDRESS_BYTES + 1)] {
            assert_eq!(
                m.apply(ConfChange::AddLearner(5, Some(bad))),
                Err(MembershipError::BadAddress)
            );
        }
    }

    #[test]
    fn address_section_is_additive_and_hostile_bytes_are_refused() {
        // Without addresses: the bytes are the section-less format.
        let plain = Membership::with_voters([1, 2]);
        let mut want = Vec::new();
        want.extend_from_slice(&2u32.to_le_bytes());
        want.extend_from_slice(&1u64.to_le_bytes());
        want.extend_from_slice(&2u64.to_le_bytes());
        want.extend_from_slice(&0u32.to_le_bytes());
        assert_eq!(plain.encode(), want);
        // With one address: exactly the documented section after the learners.
        let m = plain
            .apply(ConfChange::AddLearner(2, Some("h:1".into())))
            .unwrap();
        let mut with = want.clone();
        with.extend_from_slice(&1u32.to_le_bytes());
        with.extend_from_slice(&2u64.to_le_bytes());
        with.extend_from_slice(&3u16.to_le_bytes());
        with.extend_from_slice(b"h:1");
        assert_eq!(m.encode(), with);
        assert_eq!(Membership::decode(&with).unwrap(), m);
        let section = |count: u32, id: u64, len: u16, text: &[u8]| {
            let mut b = want.clone();
            b.extend_from_slice(&count.to_le_bytes());
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(text);
            b
        };
        // Not a member, zero count, more entries than members, length past the end, too long,
        // empty, not UTF-8, truncated: each refused, none panics.
        assert!(Membership::decode(&section(1, 9, 3, b"h:1")).is_err());
        assert!(Membership::decode(&section(0, 2, 3, b"h:1")).is_err());
        assert!(Membership::decode(&section(3, 2, 3, b"h:1")).is_err());
        assert!(Membership::decode(&section(1, 2, u16::MAX, b"h:1")).is_err());
        assert_eq!(
            Membership::decode(&section(1, 2, 256, &[b'a'; 256])),
            Err(MembershipError::BadAddress)
        );
        assert!(Membership::decode(&section(1, 2, 0, b"")).is_err());
        assert!(Membership::decode(&section(1, 2, 2, &[0xff, 0xfe])).is_err());
        for cut in want.len()..with.len() {
            assert!(Membership::decode(&with[..cut]).is_ok() == (cut == want.len()));
        }
        // Ids must ascend strictly (one encoding per membership).
        let two = Membership::with_voters([1, 2]);
        let mut b = two.encode();
        b.extend_from_slice(&2u32.to_le_bytes());
        for id in [2u64, 1] {
            b.extend_from_slice(&id.to_le_bytes());
            b.extend_from_slice(&3u16.to_le_bytes());
            b.extend_from_slice(b"h:1");
        }
        assert_eq!(Membership::decode(&b), Err(MembershipError::Malformed));
    }
}
