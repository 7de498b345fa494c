//! Elections: randomized timeouts (in `Raft::tick`), PreVote, the vote rule, tallying, and the
//! term's no-op (appended by `become_leader`). A replica grants a vote only to a candidate whose
//! log is at least as up-to-date as its own, at most once per term, and (with CheckQuorum) not
//! while it heard from a leader within the minimum election timeout, unless the request comes
//! from a leadership transfer. A candidate's vote requests go out only after the `Ready`
//! carrying its new term and own vote is durable (`Ready::messages_after_persist`), and it
//! becomes leader only after that `Ready` was reported durable (`Raft::on_persisted`): a
//! candidate never campaigns twice for one term, so no grant can count for a different
//! incarnation of it, and it never leads (and appends) in a term it could lose in a crash.

use super::core::Raft;
use super::message::{MessageBody, NodeId};
use super::ready::Role;

/// Outcome of counting votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tally {
    Won,
    Lost,
    Pending,
}

impl Raft {
    /// Starts an election now (PreVote first if configured). Ignored by non-voters and leaders.
    pub fn campaign(&mut self) {
        if self.role == Role::Leader || !self.promotable() || self.term_exhausted() {
            return;
        }
        if self.cfg.pre_vote {
            self.become_pre_candidate();
            self.request_votes(true, false);
        } else {
            self.become_candidate();
            self.request_votes(false, false);
        }
    }

    pub(super) fn campaign_transfer(&mut self) {
        if !self.promotable() || self.term_exhausted() {
            return;
        }
        self.become_candidate();
        self.request_votes(false, true);
    }

    fn request_votes(&mut self, pre: bool, transfer: bool) {
        if pre {
            self.votes.insert(self.id, true);
        } else {
            // The candidate's own vote counts once its hard state is durable (`on_persisted`):
            // a candidate that crashed before that could otherwise vote again in this term.
            self.self_vote_unsent = true;
        }
        match self.tally() {
            Tally::Won => {
                if pre {
                    self.become_candidate();
                    self.request_votes(false, transfer);
                } else {
                    self.become_leader();
                }
                return;
            }
            Tally::Lost | Tally::Pending => {}
        }
        let term = if pre { self.term + 1 } else { self.term };
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let voters: Vec<NodeId> = self
            .log
            .membership()
            .voters
            .iter()
            .copied()
            .filter(|&v| v != self.id)
            .collect();
        for v in voters {
            let body = if pre {
                MessageBody::PreVote {
                    last_index,
                    last_term,
                }
            } else {
                MessageBody::Vote {
                    last_index,
                    last_term,
                    transfer,
                }
            };
            let m = super::message::Message {
                from: self.id,
                to: v,
                term,
                body,
            };
            if pre {
                self.msgs.push(m);
            } else {
                // A vote request leaves only once the candidate's new term and own vote are
                // durable. Sent earlier, a candidate that crashed before that would restart in
                // the previous term, campaign for the same term again (with a shorter log, if
                // entries were lost too), and count grants its previous incarnation's requests
                // earned: it could win without a committed entry.
                self.msgs_after_persist.push(m);
            }
        }
    }

    pub(super) fn tally(&self) -> Tally {
        let m = self.log.membership();
        let q = m.quorum();
        if q == 0 {
            return Tally::Lost;
        }
        let granted = m
            .voters
            .iter()
            .filter(|v| self.votes.get(v) == Some(&true))
            .count();
        let rejected = m
            .voters
            .iter()
            .filter(|v| self.votes.get(v) == Some(&false))
            .count();
        // A candidate wins only once its own vote counts, i.e. once its new term and vote are
        // durable: a candidate that led and appended before that could crash, come back in the
        // previous term, win the same term again from the same voters and write different
        // entries at the same index and term.
        let own_vote_durable =
            self.role != Role::Candidate || self.votes.get(&self.id) == Some(&true);
        if granted >= q && own_vote_durable {
            Tally::Won
        } else if rejected > m.voters.len() - q {
            Tally::Lost
        } else {
            Tally::Pending
        }
    }

    pub(super) fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: u64,
        last_index: u64,
        last_term: u64,
        pre: bool,
    ) {
        let free = self.vote == from
            || (self.vote == super::message::NO_NODE && self.leader == super::message::NO_NODE)
            || (pre && term > self.term);
        let up_to_date =
            self.cfg.unsafe_skip_vote_log_check || self.log.is_up_to_date(last_index, last_term);
        let grant = free && up_to_date;
        let reply_term = if grant { term } else { self.term };
        let body = if pre {
            MessageBody::PreVoteResponse { reject: !grant }
        } else {
            MessageBody::VoteResponse { reject: !grant }
        };
        let m = super::message::Message {
            from: self.id,
            to: from,
            term: reply_term,
            body,
        };
        if pre {
            self.msgs.push(m);
        } else {
            if grant {
                self.vote = from;
                self.election_elapsed = 0;
            }
            // The vote must be durable before the candidate hears about it.
            self.msgs_after_persist.push(m);
        }
    }

    pub(super) fn handle_vote_response(&mut self, from: NodeId, reject: bool) {
        self.votes.insert(from, !reject);
        match self.tally() {
            Tally::Won => {
                if self.role == Role::PreCandidate {
                    self.become_candidate();
                    self.request_votes(false, false);
                } else {
                    self.become_leader();
                }
            }
            Tally::Lost => {
                let term = self.term;
                self.become_follower(term, super::message::NO_NODE);
            }
            Tally::Pending => {}
        }
    }
}
