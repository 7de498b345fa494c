//! Hostile traffic for the fuzzer: field values chosen to hit the edges (0, 1, the maxima,
//! neighbours of real values), message bodies of every kind with such values, and mutated
//! copies of real messages in flight.

use ringraft::raft::rng::Rng;
use ringraft::raft::*;

use super::{Fuzz, N};

fn interesting(rng: &mut Rng, near: u64) -> u64 {
    match rng.below(12) {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => u64::MAX - 1,
        4 => MAX_TERM,
        5 => MAX_TERM + 1,
        6 => near.wrapping_sub(1),
        7 => near.wrapping_add(1),
        8 => near,
        9 => rng.below(40),
        10 => near.wrapping_add(rng.below(5)),
        _ => rng.next_u64(),
    }
}

/// A term: mostly near `near` (so hostile traffic also steers real elections), sometimes
/// extreme (a replica pushed to `MAX_TERM` stops campaigning, which ends that seed's progress).
fn interesting_term(rng: &mut Rng, near: u64) -> u64 {
    if rng.below(4) == 0 {
        interesting(rng, near)
    } else {
        near.saturating_add(rng.below(3)).saturating_sub(1)
    }
}

impl Fuzz {
    pub(super) fn random_body(&mut self, near_term: u64, near_index: u64) -> MessageBody {
        let rng = &mut self.rng;
        let iv = |rng: &mut Rng| interesting(rng, near_index);
        match rng.below(10) {
            0 => MessageBody::PreVote {
                last_index: iv(rng),
                last_term: interesting_term(rng, near_term),
            },
            1 => MessageBody::PreVoteResponse {
                reject: rng.below(2) == 0,
            },
            2 => MessageBody::Vote {
                last_index: iv(rng),
                last_term: interesting_term(rng, near_term),
                transfer: rng.below(2) == 0,
            },
            3 => MessageBody::VoteResponse {
                reject: rng.below(2) == 0,
            },
            4 => {
                let prev_index = iv(rng);
                let prev_term = interesting_term(rng, near_term);
                let n = rng.below(4);
                let mut t = prev_term;
                let entries = (0..n)
                    .map(|k| {
                        if rng.below(3) == 0 {
                            t = interesting_term(rng, near_term);
                        }
                        Entry {
                            index: if rng.below(8) == 0 {
                                iv(rng)
                            } else {
                                prev_index.wrapping_add(1 + k)
                            },
                            term: t,
                            kind: EntryKind::Normal,
                            data: rng.next_u64().to_le_bytes().to_vec().into(),
                        }
                    })
                    .collect();
                MessageBody::Append {
                    prev_index,
                    prev_term,
                    entries,
                    commit: iv(rng),
                }
            }
            5 => MessageBody::AppendResponse {
                index: iv(rng),
                reject: if rng.below(2) == 0 {
                    None
                } else {
                    Some(RejectHint {
                        index: iv(rng),
                        term: interesting_term(rng, near_term),
                    })
                },
            },
            6 => MessageBody::Heartbeat {
                commit: iv(rng),
                round: interesting(rng, 1),
            },
            7 => MessageBody::HeartbeatResponse {
                round: interesting(rng, 1),
            },
            8 => MessageBody::InstallSnapshot {
                snapshot: Snapshot {
                    meta: SnapshotMeta {
                        index: iv(rng),
                        term: interesting_term(rng, near_term),
                        membership: Membership::with_voters(1..=N),
                    },
                    data: Vec::new().into(),
                },
            },
            _ => MessageBody::TimeoutNow,
        }
    }

    /// A hostile message: a real one with one field changed, or a random one.
    pub(super) fn hostile_message(&mut self) -> Message {
        let to = self.pick_node();
        let (near_term, near_index) = self.reps[&to]
            .raft
            .as_ref()
            .map_or((1, 1), |r| (r.term(), r.log().last_index()));
        if !self.pool.is_empty() && self.rng.below(2) == 0 {
            let k = self.rng.below(self.pool.len() as u64) as usize;
            let mut m = self.pool[k].clone();
            let rng = &mut self.rng;
            match rng.below(4) {
                0 => m.term = interesting_term(rng, m.term),
                _ => match &mut m.body {
                    MessageBody::PreVote {
                        last_index,
                        last_term,
                    }
                    | MessageBody::Vote {
                        last_index,
                        last_term,
                        ..
                    } => {
                        if rng.below(2) == 0 {
                            *last_index = interesting(rng, *last_index)
                        } else {
                            *last_term = interesting_term(rng, *last_term)
                        }
                    }
                    MessageBody::Append {
                        prev_index,
                        prev_term,
                        entries,
                        commit,
                    } => match rng.below(5) {
                        0 => *prev_index = interesting(rng, *prev_index),
                        1 => *prev_term = interesting_term(rng, *prev_term),
                        2 => *commit = interesting(rng, *commit),
                        3 if !entries.is_empty() => {
                            let k = rng.below(entries.len() as u64) as usize;
                            let e = &mut entries[k];
                            if rng.below(2) == 0 {
                                e.index = interesting(rng, e.index);
                            } else {
                                e.term = interesting_term(rng, e.term);
                            }
                        }
                        _ => entries.reverse(),
                    },
                    MessageBody::AppendResponse { index, reject } => {
                        if rng.below(2) == 0 {
                            *index = interesting(rng, *index);
                        } else {
                            *reject = Some(RejectHint {
                                index: interesting(rng, *index),
                                term: interesting_term(rng, m.term),
                            });
                        }
                    }
                    MessageBody::Heartbeat { commit, round } => {
                        if rng.below(2) == 0 {
                            *commit = interesting(rng, *commit);
                        } else {
                            *round = interesting(rng, *round);
                        }
                    }
                    MessageBody::HeartbeatResponse { round } => *round = interesting(rng, *round),
                    MessageBody::InstallSnapshot { snapshot } => {
                        if rng.below(2) == 0 {
                            snapshot.meta.index = interesting(rng, snapshot.meta.index);
                        } else {
                            snapshot.meta.term = interesting_term(rng, snapshot.meta.term);
                        }
                    }
                    _ => m.term = interesting_term(rng, m.term),
                },
            }
            return m;
        }
        let from = match self.rng.below(8) {
            0 => self.rng.next_u64(),
            _ => self.pick_node(),
        };
        let term = interesting_term(&mut self.rng, near_term);
        let body = self.random_body(near_term, near_index);
        Message {
            from,
            to,
            term,
            body,
        }
    }
}
