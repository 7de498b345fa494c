//! Raft hard state (current term, vote, commit index) of one group, and its 24-byte encoding as
//! the payload of a `HardState` record. Hard state lives in the log itself: setting it appends
//! one CRC-checked record (so it is atomic and never torn: a torn record fails its CRC and the
//! previous one stays in force), it becomes durable with the same group-commit sync as entries,
//! and every segment roll re-writes the hard state of every group at the start of the new
//! segment, so purging old segments never loses it. The last valid record per group wins.
//!
//! Payload layout (little-endian): bytes 0..8 term, 8..16 vote (0 = none), 16..24 commit.

/// Bytes of an encoded hard state.
pub const HARD_STATE_BYTES: usize = 24;

/// Durable Raft state of one group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HardState {
    /// Current term.
    pub term: u64,
    /// Candidate voted for in `term` (0 = none).
    pub vote: u64,
    /// Highest index known committed.
    pub commit: u64,
}

impl HardState {
    /// Encodes to the 24-byte payload.
    pub fn encode(&self) -> [u8; HARD_STATE_BYTES] {
        let mut b = [0u8; HARD_STATE_BYTES];
        b[0..8].copy_from_slice(&self.term.to_le_bytes());
        b[8..16].copy_from_slice(&self.vote.to_le_bytes());
        b[16..24].copy_from_slice(&self.commit.to_le_bytes());
        b
    }

    /// Decodes a payload; `None` when it is not exactly 24 bytes.
    pub fn decode(b: &[u8]) -> Option<HardState> {
        if b.len() != HARD_STATE_BYTES {
            return None;
        }
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Some(HardState {
            term: word(0),
            vote: word(8),
            commit: word(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_length() {
        let hs = HardState {
            term: 7,
            vote: 3,
            commit: 1 << 40,
        };
        assert_eq!(HardState::decode(&hs.encode()), Some(hs));
        assert_eq!(HardState::decode(&[0u8; 23]), None);
    }
}
