//! Log replication: the leader's pipelined AppendEntries (batched up to
//! `max_entries_per_msg` / `max_bytes_per_msg`, windowed by `max_inflight_msgs`), the follower's
//! append with conflict hint, fast backtracking, and commitment. The leader commits an index
//! only when a quorum of voters holds it (itself counted only once durable in DiskFirst) and the
//! entry is of its current term; earlier entries commit with it (Raft §5.4.2).

use super::core::{Raft, StepError};
use super::message::{Entry, MessageBody, NodeId, RejectHint, NO_NODE};
use super::progress::ProgressState;
use super::ready::Role;
use super::validate::InvalidMessage;

impl Raft {
    /// Leader: sends what each follower is missing (and the commit index when it moved).
    pub(super) fn flush_appends(&mut self) {
        let ids: Vec<NodeId> = self.prs.keys().copied().collect();
        let commit_dirty = std::mem::take(&mut self.commit_dirty);
        let committed = self.log.committed();
        for id in ids {
            // A commit update only to a follower that holds entries it has not been told are
            // committed (the others learn the commit index with their next entries).
            let needs_commit = commit_dirty
                && self
                    .prs
                    .get(&id)
                    .is_some_and(|p| p.sent_commit < committed.min(p.match_index));
            // Keep sending while the window allows and there is something to send.
            let mut first = true;
            while self.maybe_send_append(id, first && needs_commit) {
                first = false;
            }
        }
    }

    /// Sends one Append (or a snapshot) to `to` if allowed; true if an Append with entries went.
    pub(super) fn maybe_send_append(&mut self, to: NodeId, send_if_empty: bool) -> bool {
        let Some(pr) = self.prs.get(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let next = pr.next_index;
        let prev_index = next - 1;
        let prev_term = self.log.term(prev_index);
        let ents = self.log.slice(
            next,
            self.cfg.max_entries_per_msg,
            self.cfg.max_bytes_per_msg,
        );
        let (Some(prev_term), Some(entries)) = (prev_term, ents) else {
            self.send_snapshot(to);
            return false;
        };
        if entries.is_empty() && !send_if_empty {
            return false;
        }
        let count = entries.len();
        let last = prev_index + count as u64;
        let commit = self.log.committed();
        if let Some(pr) = self.prs.get_mut(&to) {
            pr.sent_entries(last, count);
            pr.sent_commit = pr.sent_commit.max(commit.min(last));
        }
        self.send(
            to,
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            },
        );
        count > 0
            && self
                .prs
                .get(&to)
                .is_some_and(|p| p.state == ProgressState::Replicate)
    }

    /// Follower: AppendEntries from the leader.
    pub(super) fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: u64,
        prev_term: u64,
        entries: Vec<Entry>,
        commit: u64,
    ) -> Result<(), StepError> {
        if prev_index < self.log.committed() {
            let index = self.log.committed();
            self.send_ack(
                from,
                MessageBody::AppendResponse {
                    index,
                    reject: None,
                },
            );
            return Ok(());
        }
        match self
            .log
            .maybe_append(prev_index, prev_term, commit, entries)?
        {
            Some(last_new) => {
                self.send_ack(
                    from,
                    MessageBody::AppendResponse {
                        index: last_new,
                        reject: None,
                    },
                );
            }
            None => {
                let hint = self.log.find_conflict_by_term(prev_index, prev_term);
                self.send(
                    from,
                    MessageBody::AppendResponse {
                        index: prev_index,
                        reject: Some(hint),
                    },
                );
            }
        }
        Ok(())
    }

    /// Leader: answer to an Append or InstallSnapshot. Refuses (and counts) an answer about an
    /// index past this leader's log: no Append or snapshot it sent ends there.
    pub(super) fn handle_append_response(
        &mut self,
        from: NodeId,
        index: u64,
        reject: Option<RejectHint>,
    ) -> Result<(), StepError> {
        let last = self.log.last_index();
        if index > last {
            return Err(self.refuse(InvalidMessage::AckPastLog { index, last }));
        }
        let Some(pr) = self.prs.get_mut(&from) else {
            return Ok(());
        };
        pr.recent_active = true;
        if let Some(hint) = reject {
            let probe_at = if hint.term > 0 {
                self.log.find_conflict_by_term(hint.index, hint.term).index
            } else {
                hint.index
            };
            let Some(pr) = self.prs.get_mut(&from) else {
                return Ok(());
            };
            if pr.maybe_decrease_to(index, probe_at) {
                if pr.state == ProgressState::Replicate {
                    pr.become_probe();
                }
                self.maybe_send_append(from, true);
            }
            return Ok(());
        }
        if !pr.maybe_update(index) {
            return Ok(());
        }
        match pr.state {
            ProgressState::Probe => pr.become_replicate(),
            ProgressState::Snapshot { index: snap } if pr.match_index >= snap => pr.become_probe(),
            ProgressState::Snapshot { .. } => {}
            ProgressState::Replicate => pr.inflights.free_to(index),
        }
        let caught_up = pr.match_index == last;
        if self.maybe_commit() {
            self.commit_dirty = true;
        }
        if self.role != Role::Leader {
            return Ok(());
        }
        if from == self.transferee && caught_up {
            self.send_timeout_now(from);
        }
        let mut sent = false;
        while self.maybe_send_append(from, false) {
            sent = true;
        }
        // Nothing new to send: still tell the follower the commit index it has not seen.
        let stale_commit = self
            .prs
            .get(&from)
            .is_some_and(|p| p.sent_commit < self.log.committed().min(p.match_index));
        if !sent && stale_commit {
            self.maybe_send_append(from, true);
        }
        Ok(())
    }

    /// Leader: advances the commit index to the highest index held by a quorum of voters,
    /// if that entry is of the current term. True if it advanced.
    pub(super) fn maybe_commit(&mut self) -> bool {
        let m = self.log.membership();
        let q = m.quorum();
        if q == 0 {
            return false;
        }
        let own = self.self_match();
        let mut matches: Vec<u64> = m
            .voters
            .iter()
            .map(|v| {
                if *v == self.id {
                    own
                } else {
                    self.prs.get(v).map_or(0, |p| p.match_index)
                }
            })
            .collect();
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let idx = matches[q - 1];
        if idx <= self.log.committed() {
            return false;
        }
        let current_term = self.log.term(idx) == Some(self.term);
        if !current_term && !self.cfg.unsafe_commit_previous_term {
            return false;
        }
        self.log.commit_to(idx);
        // A leader removed from the configuration steps down once the change is committed.
        if !self.log.membership().is_voter(self.id)
            && self.log.committed() >= self.log.membership_index()
        {
            let term = self.term;
            self.become_follower(term, NO_NODE);
        }
        true
    }
}
