//! The Raft replica of one group ([`Raft`]): its state, the message dispatcher [`Raft::step`],
//! [`Raft::tick`], and the [`Ready`] hand-off. Elections, replication, reads, membership
//! changes, snapshots and leadership transfer are `impl Raft` blocks in their own files.
//!
//! Purity: no I/O, no clock, no threads. Time is `tick()` calls, plus the driver's monotonic
//! clock handed in as numbers (`advance_clock`, `tick_at`, `read_at`); randomness is the seeded
//! [`Rng`]. Every input is a method call; every output accumulates until [`Raft::ready`].
//! Invariants kept here: a replica's term never decreases; it votes at most once per term; it
//! answers a vote only after the vote is durable (the answer is in
//! `Ready::messages_after_persist`); a candidate asks for votes, and counts itself, only once
//! its new term and own vote are durable; the commit index never decreases; every peer message
//! passes [`super::validate`] before it can change anything.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::config::{Config, ConfigError, Durability};
use super::lease::Lease;
use super::log::{CommittedConflict, RaftLog};
use super::membership::{Membership, MembershipError};
use super::message::{
    Entry, EntryKind, HardState, Message, MessageBody, NodeId, Snapshot, SnapshotMeta, NO_NODE,
};
use super::progress::Progress;
use super::read_index::ReadRounds;
use super::ready::{ReadState, Ready, Role, SoftState};
use super::rng::Rng;
use super::validate::{validate, InvalidMessage, MAX_INDEX, MAX_TERM};

/// Durable state a replica is rebuilt from after a restart.
#[derive(Debug, Clone, Default)]
pub struct RestartState {
    /// Last persisted hard state.
    pub hard_state: HardState,
    /// Last persisted snapshot (the bootstrap snapshot at index 0 if none was taken).
    pub snapshot: Snapshot,
    /// Persisted entries after the snapshot, in order.
    pub entries: Vec<Entry>,
}

/// Why a message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Addressed to another replica.
    #[error("message for node {to} delivered to node {me}")]
    WrongRecipient {
        /// Addressee.
        to: NodeId,
        /// This replica.
        me: NodeId,
    },
    /// Claims to come from this replica.
    #[error("message claims to come from this replica")]
    FromSelf,
    /// A leader tried to overwrite a committed entry: proof of a safety bug elsewhere.
    #[error(transparent)]
    CommittedConflict(#[from] CommittedConflict),
    /// A term, index or field relation no honest peer sends: refused before any state changed
    /// and counted in [`Raft::invalid_messages`].
    #[error("invalid message: {0}")]
    Invalid(#[from] InvalidMessage),
}

/// Why a proposal was refused (nothing was appended).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Only the leader accepts proposals.
    #[error("not the leader (leader hint: {leader})")]
    NotLeader {
        /// Known leader or 0.
        leader: NodeId,
    },
    /// A leadership transfer is in progress.
    #[error("leadership transfer in progress")]
    TransferInProgress,
    /// Too many uncommitted entries: back off.
    #[error("too many uncommitted entries")]
    TooManyUncommitted,
    /// A membership change is still uncommitted, or this leader has not committed in its term.
    #[error("a membership change is pending")]
    ConfChangePending,
    /// The membership change itself is invalid.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// The log reached the largest index this core appends (see [`super::validate::MAX_INDEX`]).
    #[error("the log index space is exhausted")]
    IndexSpaceExhausted,
}

/// One replica of one Raft group.
#[derive(Debug)]
pub struct Raft {
    pub(super) cfg: Config,
    pub(super) id: NodeId,
    pub(super) term: u64,
    pub(super) vote: NodeId,
    pub(super) role: Role,
    pub(super) leader: NodeId,
    pub(super) log: RaftLog,
    /// Leader only: progress of every other member.
    pub(super) prs: BTreeMap<NodeId, Progress>,
    /// Candidate / pre-candidate: answers received.
    pub(super) votes: BTreeMap<NodeId, bool>,
    pub(super) rng: Rng,
    pub(super) election_elapsed: u32,
    pub(super) heartbeat_elapsed: u32,
    pub(super) randomized_timeout: u32,
    /// Monotonic tick counter of this replica (lease clock).
    pub(super) ticks: u64,
    /// Started from durable state less than one minimum election timeout ago: do not grant votes.
    pub(super) recently_started: bool,
    pub(super) msgs: Vec<Message>,
    pub(super) msgs_after_persist: Vec<Message>,
    pub(super) read_states: Vec<ReadState>,
    pub(super) reads_dropped: Vec<u64>,
    pub(super) reads: ReadRounds,
    pub(super) lease: Lease,
    /// Sent TimeoutNow in this term: never serve lease reads again in it.
    pub(super) lease_disabled: bool,
    pub(super) transferee: NodeId,
    pub(super) transfer_elapsed: u32,
    /// Latest snapshot (taken here or installed), sent to followers behind the log.
    pub(super) snapshot: Option<Snapshot>,
    /// Snapshot to hand to the driver for persisting and restoring.
    pub(super) pending_snapshot: Option<Snapshot>,
    pub(super) snapshot_requested: Option<u64>,
    pub(super) commit_dirty: bool,
    /// Candidate: its own vote is in a hard state not yet handed out for persistence.
    pub(super) self_vote_unsent: bool,
    /// Candidate: sequence number of the `Ready` whose persistence makes its own vote count.
    pub(super) self_vote_seq: Option<u64>,
    /// Number of `Ready`s that asked for persistence.
    pub(super) ready_seq: u64,
    /// Number of `on_persisted` calls (one per such `Ready`, in order).
    pub(super) persisted_seq: u64,
    pub(super) prev_hard: HardState,
    pub(super) prev_soft: SoftState,
    /// Messages refused as invalid (see [`super::validate`]).
    pub(super) invalid: u64,
    /// Latest monotonic time the driver reported, in nanoseconds (0 until it reports one).
    pub(super) now_nanos: u64,
}

impl Raft {
    /// A fresh replica of a new group whose initial voters are `membership` (empty for a node
    /// that will join later as a learner). The first `Ready` carries a bootstrap snapshot at
    /// index 0 holding the membership: persist it like any snapshot.
    pub fn new(cfg: Config, membership: Membership) -> Result<Raft, ConfigError> {
        let snapshot = Snapshot {
            meta: SnapshotMeta {
                index: 0,
                term: 0,
                membership,
            },
            data: Arc::from(&[][..]),
        };
        let mut r = Raft::build(cfg, RaftLog::new(&snapshot.meta), HardState::default())?;
        // A brand-new replica cannot be part of any leader's lease.
        r.recently_started = false;
        r.prev_hard = HardState {
            term: u64::MAX,
            ..HardState::default()
        };
        r.pending_snapshot = Some(snapshot.clone());
        r.snapshot = Some(snapshot);
        Ok(r)
    }

    /// A replica rebuilt from durable state after a restart. The state machine must be
    /// restored from `state.snapshot`; committed entries after it are handed out again.
    pub fn restart(cfg: Config, state: RestartState) -> Result<Raft, ConfigError> {
        let log =
            RaftLog::restore_from(&state.snapshot.meta, state.entries, state.hard_state.commit);
        let mut r = Raft::build(cfg, log, state.hard_state)?;
        r.snapshot = Some(state.snapshot);
        Ok(r)
    }

    fn build(cfg: Config, log: RaftLog, hs: HardState) -> Result<Raft, ConfigError> {
        cfg.validate()?;
        let mut r = Raft {
            id: cfg.id,
            rng: Rng::new(cfg.seed ^ 0x005E_ED0F_4AF7),
            reads: ReadRounds::default(),
            cfg,
            term: hs.term,
            vote: hs.vote,
            role: Role::Follower,
            leader: NO_NODE,
            log,
            prs: BTreeMap::new(),
            votes: BTreeMap::new(),
            election_elapsed: 0,
            heartbeat_elapsed: 0,
            randomized_timeout: 0,
            ticks: 0,
            recently_started: true,
            msgs: Vec::new(),
            msgs_after_persist: Vec::new(),
            read_states: Vec::new(),
            reads_dropped: Vec::new(),
            lease: Lease::default(),
            lease_disabled: false,
            transferee: NO_NODE,
            transfer_elapsed: 0,
            snapshot: None,
            pending_snapshot: None,
            snapshot_requested: None,
            commit_dirty: false,
            self_vote_unsent: false,
            self_vote_seq: None,
            ready_seq: 0,
            persisted_seq: 0,
            prev_hard: HardState::default(),
            prev_soft: SoftState {
                leader: NO_NODE,
                role: Role::Follower,
            },
            invalid: 0,
            now_nanos: 0,
        };
        r.prev_hard = r.hard_state();
        r.randomize_timeout();
        Ok(r)
    }

    // ----- accessors -----

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.id
    }
    /// Current term.
    pub fn term(&self) -> u64 {
        self.term
    }
    /// Vote in the current term.
    pub fn vote(&self) -> NodeId {
        self.vote
    }
    /// Current role.
    pub fn role(&self) -> Role {
        self.role
    }
    /// Known leader (0 if none).
    pub fn leader(&self) -> NodeId {
        self.leader
    }
    /// The log.
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    /// The configuration in effect (the latest in the log).
    pub fn membership(&self) -> &Membership {
        self.log.membership()
    }
    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    /// Current hard state.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed(),
        }
    }
    /// Leader's progress of `id`.
    pub fn progress(&self, id: NodeId) -> Option<&Progress> {
        self.prs.get(&id)
    }
    /// Ticks seen since this replica started.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }
    /// Latest snapshot held.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }
    /// True if this leader may serve a lease read now.
    pub fn lease_valid(&self) -> bool {
        self.role == Role::Leader
            && self.cfg.lease_read
            && !self.lease_disabled
            && self.transferee == NO_NODE
            && self.committed_in_term()
            && self.lease.is_valid(self.ticks)
    }
    /// Peer messages refused as invalid since this replica started (hostile or corrupt input;
    /// the node exports it as a metric).
    pub fn invalid_messages(&self) -> u64 {
        self.invalid
    }
    /// True if this leader may serve a lease read at the driver's monotonic time `now_nanos`:
    /// [`Raft::lease_valid`] and the lease also covers `now_nanos` (see [`super::lease`]).
    pub fn lease_valid_at(&self, now_nanos: u64) -> bool {
        self.lease_valid() && self.lease.is_valid_at(now_nanos)
    }
    /// The driver's monotonic time as last reported (ns).
    pub fn now_nanos(&self) -> u64 {
        self.now_nanos
    }
    /// True if this voter may campaign.
    pub fn promotable(&self) -> bool {
        self.log.membership().is_voter(self.id)
    }

    pub(super) fn committed_in_term(&self) -> bool {
        self.log.term(self.log.committed()) == Some(self.term)
    }

    /// Highest own index the leader counts toward the commit quorum.
    pub(super) fn self_match(&self) -> u64 {
        match self.cfg.durability {
            Durability::DiskFirst => self.log.durable(),
            Durability::MemFirst => self.log.last_index(),
        }
    }

    pub(super) fn randomize_timeout(&mut self) {
        self.randomized_timeout = self.rng.range(
            u64::from(self.cfg.election_timeout_min_ticks),
            u64::from(self.cfg.election_timeout_max_ticks),
        ) as u32;
    }

    pub(super) fn send(&mut self, to: NodeId, body: MessageBody) {
        self.msgs.push(Message {
            from: self.id,
            to,
            term: self.term,
            body,
        });
    }

    /// Sends an acknowledgement that claims entries are held: after persist in DiskFirst.
    pub(super) fn send_ack(&mut self, to: NodeId, body: MessageBody) {
        let m = Message {
            from: self.id,
            to,
            term: self.term,
            body,
        };
        match self.cfg.durability {
            Durability::DiskFirst => self.msgs_after_persist.push(m),
            Durability::MemFirst => self.msgs.push(m),
        }
    }

    /// True if this replica's term cannot be raised any further (see [`super::validate`]).
    pub(super) fn term_exhausted(&self) -> bool {
        self.term >= MAX_TERM
    }

    /// Counts and returns an invalid-message error.
    pub(super) fn refuse(&mut self, e: InvalidMessage) -> StepError {
        self.invalid = self.invalid.saturating_add(1);
        StepError::Invalid(e)
    }

    /// True if a follower heard from a leader too recently to grant a vote (CheckQuorum).
    pub(super) fn in_lease(&self) -> bool {
        self.cfg.check_quorum
            && (self.leader != NO_NODE || self.recently_started)
            && self.election_elapsed < self.cfg.election_timeout_min_ticks
    }

    // ----- role changes -----

    fn reset(&mut self, term: u64) {
        if term != self.term {
            self.term = term;
            self.vote = NO_NODE;
            self.lease_disabled = false;
        }
        self.leader = NO_NODE;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.randomize_timeout();
        self.votes.clear();
        self.self_vote_unsent = false;
        self.self_vote_seq = None;
        self.prs.clear();
        self.transferee = NO_NODE;
        self.lease.invalidate();
        let dropped = self.reads.clear();
        self.reads_dropped.extend(dropped);
    }

    pub(super) fn become_follower(&mut self, term: u64, leader: NodeId) {
        self.reset(term);
        self.role = Role::Follower;
        self.leader = leader;
    }

    pub(super) fn become_pre_candidate(&mut self) {
        let term = self.term;
        self.reset(term);
        self.role = Role::PreCandidate;
    }

    /// Callers check `term_exhausted` first.
    pub(super) fn become_candidate(&mut self) {
        let term = self.term.saturating_add(1);
        self.reset(term);
        self.vote = self.id;
        self.role = Role::Candidate;
    }

    pub(super) fn become_leader(&mut self) {
        let term = self.term;
        self.reset(term);
        self.role = Role::Leader;
        self.leader = self.id;
        self.recently_started = false;
        self.sync_progress(self.log.last_index() + 1);
        let e = Entry {
            index: self.log.last_index() + 1,
            term: self.term,
            kind: EntryKind::Noop,
            data: Arc::from(&[][..]),
        };
        self.log.append([e]);
    }

    /// Leader: make `prs` match the membership (new members are probed from `next`).
    pub(super) fn sync_progress(&mut self, next: u64) {
        let cap = self.cfg.max_inflight_msgs;
        let members: Vec<NodeId> = self
            .log
            .membership()
            .members()
            .filter(|&m| m != self.id)
            .collect();
        for m in &members {
            self.prs
                .entry(*m)
                .or_insert_with(|| Progress::new(next, cap));
        }
        self.prs.retain(|id, _| members.contains(id));
    }

    // ----- inputs -----

    /// Reports the driver's monotonic time in nanoseconds (read from a monotonic clock just
    /// before the call; earlier values than one already reported are ignored). Heartbeat rounds
    /// started afterwards are stamped with it, which anchors the clock-checked lease; a stale
    /// value only shortens the lease.
    pub fn advance_clock(&mut self, now_nanos: u64) {
        self.now_nanos = self.now_nanos.max(now_nanos);
    }

    /// [`Raft::advance_clock`] then [`Raft::tick`].
    pub fn tick_at(&mut self, now_nanos: u64) {
        self.advance_clock(now_nanos);
        self.tick();
    }

    /// Advances time by one tick.
    pub fn tick(&mut self) {
        self.ticks += 1;
        if self.role == Role::Leader {
            self.tick_leader();
        } else {
            self.election_elapsed = self.election_elapsed.saturating_add(1);
            if self.election_elapsed >= self.cfg.election_timeout_min_ticks {
                self.recently_started = false;
            }
            if self.promotable() && self.election_elapsed >= self.randomized_timeout {
                self.election_elapsed = 0;
                self.campaign();
            }
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        let retry = self.cfg.snapshot_retry_ticks;
        for pr in self.prs.values_mut() {
            if let super::progress::ProgressState::Snapshot { .. } = pr.state {
                pr.snapshot_elapsed_ticks += 1;
                if pr.snapshot_elapsed_ticks >= retry {
                    pr.become_probe();
                }
            }
        }
        if self.transferee != NO_NODE {
            self.transfer_elapsed += 1;
            if self.transfer_elapsed >= self.cfg.election_timeout_min_ticks {
                self.transferee = NO_NODE;
            }
        }
        if self.election_elapsed >= self.cfg.election_timeout_min_ticks {
            self.election_elapsed = 0;
            if self.cfg.check_quorum && !self.quorum_active() {
                let term = self.term;
                self.become_follower(term, NO_NODE);
                return;
            }
            for pr in self.prs.values_mut() {
                pr.recent_active = false;
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_interval_ticks {
            self.heartbeat_elapsed = 0;
            self.broadcast_heartbeat();
        }
    }

    fn quorum_active(&self) -> bool {
        let m = self.log.membership();
        let active = m
            .voters
            .iter()
            .filter(|&&v| v == self.id || self.prs.get(&v).is_some_and(|p| p.recent_active))
            .count();
        active >= m.quorum()
    }

    /// Handles a message from another replica of this group.
    pub fn step(&mut self, m: Message) -> Result<(), StepError> {
        if m.to != self.id {
            return Err(StepError::WrongRecipient {
                to: m.to,
                me: self.id,
            });
        }
        if m.from == self.id {
            return Err(StepError::FromSelf);
        }
        if let Err(e) = validate(&m) {
            return Err(self.refuse(e));
        }
        if m.term > self.term {
            match &m.body {
                MessageBody::PreVote { .. } => {
                    if self.in_lease() {
                        return Ok(());
                    }
                }
                MessageBody::Vote { transfer, .. } => {
                    if self.in_lease() && !transfer {
                        return Ok(());
                    }
                    self.become_follower(m.term, NO_NODE);
                }
                MessageBody::PreVoteResponse { reject: false } => {}
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => self.become_follower(m.term, m.from),
                _ => self.become_follower(m.term, NO_NODE),
            }
        } else if m.term < self.term {
            match m.body {
                MessageBody::Append { .. } | MessageBody::Heartbeat { .. } => {
                    // Tell a stale leader about the newer term.
                    self.send(
                        m.from,
                        MessageBody::AppendResponse {
                            index: 0,
                            reject: None,
                        },
                    );
                }
                MessageBody::PreVote { .. } => {
                    self.send(m.from, MessageBody::PreVoteResponse { reject: true });
                }
                _ => {}
            }
            return Ok(());
        }

        match m.body {
            MessageBody::PreVote {
                last_index,
                last_term,
            } => {
                self.handle_vote_request(m.from, m.term, last_index, last_term, true);
                return Ok(());
            }
            MessageBody::Vote {
                last_index,
                last_term,
                ..
            } => {
                self.handle_vote_request(m.from, m.term, last_index, last_term, false);
                return Ok(());
            }
            _ => {}
        }

        match self.role {
            Role::Leader => match m.body {
                MessageBody::AppendResponse { index, reject } => {
                    self.handle_append_response(m.from, index, reject)?
                }
                MessageBody::HeartbeatResponse { round } => {
                    self.handle_heartbeat_response(m.from, round)?
                }
                _ => {}
            },
            Role::PreCandidate | Role::Candidate => match m.body {
                MessageBody::Append { .. }
                | MessageBody::Heartbeat { .. }
                | MessageBody::InstallSnapshot { .. } => {
                    self.become_follower(m.term, m.from);
                    return self.step_follower(m);
                }
                MessageBody::PreVoteResponse { reject } if self.role == Role::PreCandidate => {
                    self.handle_vote_response(m.from, reject)
                }
                MessageBody::VoteResponse { reject } if self.role == Role::Candidate => {
                    self.handle_vote_response(m.from, reject)
                }
                _ => {}
            },
            Role::Follower => return self.step_follower(m),
        }
        Ok(())
    }

    fn step_follower(&mut self, m: Message) -> Result<(), StepError> {
        match m.body {
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                self.heard_from_leader(m.from);
                self.handle_append(m.from, prev_index, prev_term, entries, commit)?;
            }
            MessageBody::Heartbeat { commit, round } => {
                self.heard_from_leader(m.from);
                self.log.commit_to(commit);
                self.send(m.from, MessageBody::HeartbeatResponse { round });
            }
            MessageBody::InstallSnapshot { snapshot } => {
                self.heard_from_leader(m.from);
                self.handle_snapshot(m.from, snapshot);
            }
            MessageBody::TimeoutNow if m.from == self.leader => self.campaign_transfer(),
            _ => {}
        }
        Ok(())
    }

    fn heard_from_leader(&mut self, from: NodeId) {
        self.leader = from;
        self.election_elapsed = 0;
        self.recently_started = false;
    }

    /// Appends a normal entry with `data`; returns its index.
    pub fn propose(&mut self, data: impl Into<Arc<[u8]>>) -> Result<u64, ProposeError> {
        self.check_can_propose()?;
        let index = self.log.last_index() + 1;
        self.log.append([Entry {
            index,
            term: self.term,
            kind: EntryKind::Normal,
            data: data.into(),
        }]);
        Ok(index)
    }

    pub(super) fn check_can_propose(&self) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if self.transferee != NO_NODE {
            return Err(ProposeError::TransferInProgress);
        }
        if self.log.last_index() - self.log.committed() >= self.cfg.max_uncommitted_entries {
            return Err(ProposeError::TooManyUncommitted);
        }
        if self.log.last_index() >= MAX_INDEX {
            return Err(ProposeError::IndexSpaceExhausted);
        }
        Ok(())
    }

    // ----- output -----

    fn soft_state(&self) -> SoftState {
        SoftState {
            leader: self.leader,
            role: self.role,
        }
    }

    /// True if [`Raft::ready`] has something to hand out.
    pub fn has_ready(&self) -> bool {
        !self.msgs.is_empty()
            || !self.msgs_after_persist.is_empty()
            || self.log.has_unstable()
            || self.log.has_next_committed()
            || self.pending_snapshot.is_some()
            || !self.read_states.is_empty()
            || !self.reads_dropped.is_empty()
            || self.hard_state() != self.prev_hard
            || self.soft_state() != self.prev_soft
            || (self.role == Role::Leader && self.leader_has_work())
            || self.wants_snapshot()
    }

    fn leader_has_work(&self) -> bool {
        let last = self.log.last_index();
        self.commit_dirty
            || (self.reads.has_waiting()
                && self.committed_in_term()
                && self.reads.rounds_in_flight() < self.cfg.max_read_rounds_in_flight)
            || self
                .prs
                .values()
                .any(|p| p.next_index <= last && !p.is_paused())
    }

    fn wants_snapshot(&self) -> bool {
        let base = self.snapshot.as_ref().map_or(0, |s| s.meta.index);
        self.snapshot_requested.is_none()
            && self.log.applied().saturating_sub(base) >= self.cfg.snapshot_threshold_entries
    }

    /// Takes every pending action. See [`Ready`] for the order in which to carry them out.
    pub fn ready(&mut self) -> Ready {
        if self.role == Role::Leader {
            if self.maybe_commit() {
                self.commit_dirty = true;
            }
            if self.role == Role::Leader {
                self.flush_appends();
                self.maybe_start_read_round();
            }
        }
        let mut rd = Ready::default();
        let soft = self.soft_state();
        if soft != self.prev_soft {
            rd.soft_state = Some(soft);
            self.prev_soft = soft;
        }
        let hs = self.hard_state();
        if hs != self.prev_hard {
            rd.hard_state = Some(hs);
            self.prev_hard = hs;
        }
        rd.snapshot = self.pending_snapshot.take();
        rd.entries = self.log.take_unstable();
        if rd.hard_state.is_some() || rd.snapshot.is_some() || !rd.entries.is_empty() {
            self.ready_seq += 1;
            // Everything in the log up to its last index has now been handed out.
            rd.persisted = Some((self.log.last_index(), self.log.last_term()));
            if self.self_vote_unsent && rd.hard_state.is_some() {
                self.self_vote_unsent = false;
                self.self_vote_seq = Some(self.ready_seq);
            }
        }
        rd.messages = std::mem::take(&mut self.msgs);
        rd.messages_after_persist = std::mem::take(&mut self.msgs_after_persist);
        rd.committed_entries = self
            .log
            .take_committed(self.cfg.max_committed_entries_per_ready);
        rd.read_states = std::mem::take(&mut self.read_states);
        rd.reads_dropped = std::mem::take(&mut self.reads_dropped);
        if self.wants_snapshot() {
            self.snapshot_requested = Some(self.log.applied());
            rd.snapshot_request = Some(self.log.applied());
        }
        rd
    }

    /// The driver made a `Ready`'s persistence durable: `(index, term)` is its `persisted`.
    /// Call once per `Ready` whose `persisted` was set, in order.
    pub fn on_persisted(&mut self, index: u64, term: u64) {
        self.persisted_seq += 1;
        self.log.snapshot_persisted(index);
        self.log.on_persisted(index, term);
        let seq = self.persisted_seq;
        if self.role == Role::Candidate && self.self_vote_seq.is_some_and(|s| seq >= s) {
            // Our own vote is durable: only now may it count.
            self.self_vote_seq = None;
            let id = self.id;
            self.handle_vote_response(id, false);
        }
        if self.role == Role::Leader && self.maybe_commit() {
            self.commit_dirty = true;
        }
    }
}
