//! The retry policy of one operation, shared by the blocking and the async client: after each
//! attempt it decides, from what happened, whether the operation is done or where and after
//! what pause to try again, and it keeps the retry budget (attempts and deadline).
//!
//! Rules:
//! - `NotLeader` with a hint: remember the leader, retry there at once (with a backoff pause if
//!   the hint names the node just asked, or a node that just failed to connect). Without a hint (election running): forget the leader,
//!   pause, try the next node.
//! - `Busy { retry_after_ms }`: pause that long (capped), retry. `WrongShard`: re-learn the
//!   topology, retry. `InvalidRequest`: final.
//! - The node's `Timeout`, a lost connection after sending, or no answer within the attempt
//!   timeout: the write may have been applied (`maybe_applied`); retry with the *same* session,
//!   which the node's session table answers with the first result.
//! - A connection that cannot be made: mark the node down, try the next; when every known node
//!   failed twice in a row and none ever answered, the cluster is [`Error::Unreachable`].
//! - Pauses grow exponentially from `backoff_ms_min` to `backoff_ms_max` and never pass the
//!   deadline. Owned by the client.

use std::time::{Duration, Instant};

use ringraft_net::message::{
    AdminResponse, ClientError as WireError, ClientOp, ErrorCode, Message,
};

use crate::client::config::{ClientConfig, BUSY_RETRY_AFTER_MS_MAX};
use crate::client::error::Error;
use crate::client::op::{interpret, Answer, Reply};
use crate::client::topology::Topology;

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// The operation is finished.
    Done(Result<Reply, Error>),
    /// Try again after this pause.
    Retry(Duration),
}

/// The retry state of one operation.
#[derive(Debug, Clone)]
pub(crate) struct Attempts {
    started: Instant,
    deadline: Instant,
    attempts: u32,
    max_attempts: u32,
    backoff: Duration,
    backoff_min: Duration,
    backoff_max: Duration,
    request_timeout: Duration,
    is_write: bool,
    maybe_applied: bool,
    answered: bool,
    connect_failures_in_a_row: usize,
    last: String,
}

impl Attempts {
    /// A fresh budget for one operation starting `now`.
    pub(crate) fn new(cfg: &ClientConfig, is_write: bool, now: Instant) -> Self {
        Attempts {
            started: now,
            deadline: now + cfg.operation_timeout(),
            attempts: 0,
            max_attempts: cfg.max_attempts.max(1),
            backoff: Duration::from_millis(cfg.backoff_ms_min),
            backoff_min: Duration::from_millis(cfg.backoff_ms_min),
            backoff_max: Duration::from_millis(cfg.backoff_ms_max),
            request_timeout: cfg.request_timeout(),
            is_write,
            maybe_applied: false,
            answered: false,
            connect_failures_in_a_row: 0,
            last: "no attempt made".into(),
        }
    }

    /// Whether a write may have been applied by an earlier attempt.
    #[cfg(test)]
    fn maybe_applied(&self) -> bool {
        self.maybe_applied
    }

    /// Starts an attempt: the time it may wait for its answer, or the error that ends the
    /// operation because the budget is spent.
    pub(crate) fn begin(&mut self, now: Instant) -> Result<Duration, Error> {
        if now >= self.deadline {
            return Err(self.timeout_error(now));
        }
        if self.attempts >= self.max_attempts {
            return Err(Error::RetriesExhausted {
                attempts: self.attempts,
                maybe_applied: self.maybe_applied,
                last: self.last.clone(),
            });
        }
        self.attempts += 1;
        Ok(self.request_timeout.min(self.deadline - now))
    }

    fn timeout_error(&self, now: Instant) -> Error {
        Error::Timeout {
            elapsed_ms: now.duration_since(self.started).as_millis() as u64,
            attempts: self.attempts,
            maybe_applied: self.maybe_applied,
            last: self.last.clone(),
        }
    }

    fn pause(&mut self, now: Instant) -> Step {
        let d = self.backoff;
        self.backoff = (self.backoff * 2).min(self.backoff_max);
        self.capped(d, now)
    }

    fn capped(&self, d: Duration, now: Instant) -> Step {
        if now >= self.deadline {
            return Step::Done(Err(self.timeout_error(now)));
        }
        Step::Retry(d.min(self.deadline - now))
    }

    /// A node answered the attempt sent to `target` for `shard`.
    pub(crate) fn on_answer(
        &mut self,
        topo: &mut Topology,
        shard: u32,
        target: &str,
        answer: Answer,
        now: Instant,
    ) -> Step {
        self.answered = true;
        self.connect_failures_in_a_row = 0;
        topo.mark_up(target);
        let e = match answer {
            Answer::Done(r) => return Step::Done(Ok(r)),
            Answer::Malformed(m) => {
                return Step::Done(Err(Error::Protocol {
                    address: target.to_string(),
                    message: m,
                }))
            }
            Answer::Failed(e) => e,
        };
        self.last = format!("{target}: {e}");
        match e {
            WireError::NotLeader { leader: Some(h) } => {
                topo.set_leader(shard, h.node_id, &h.address);
                if h.address == target || topo.is_down(&h.address, now) {
                    // The node names itself but refused, or names a node that just failed
                    // (followers keep naming a dead leader until their election timeout):
                    // the cluster's view is in flux, wait before asking again.
                    self.pause(now)
                } else {
                    self.backoff = self.backoff_min;
                    self.capped(Duration::ZERO, now)
                }
            }
            WireError::NotLeader { leader: None } | WireError::Unavailable(_) => {
                topo.clear_leader(shard, Some(target));
                self.pause(now)
            }
            // Not applied, and never will be: retrying is safe.
            WireError::Superseded => self.pause(now),
            WireError::Busy { retry_after_ms } => {
                let ms = u64::from(retry_after_ms).clamp(1, BUSY_RETRY_AFTER_MS_MAX);
                self.capped(Duration::from_millis(ms), now)
            }
            WireError::WrongShard { .. } => {
                topo.invalidate();
                self.pause(now)
            }
            // Outcome unknown: retried with the same session (the caller keeps it for every
            // attempt of one operation), which the state machine answers with the first result.
            WireError::Timeout | WireError::LeadershipLost | WireError::ForwardBroken(_) => {
                if self.is_write {
                    self.maybe_applied = true;
                }
                if !matches!(e, WireError::Timeout) {
                    topo.clear_leader(shard, Some(target));
                }
                self.pause(now)
            }
            WireError::SessionExpired => Step::Done(Err(Error::SessionExpired(e.to_string()))),
            WireError::InvalidRequest(m) => Step::Done(Err(Error::InvalidRequest(m))),
            WireError::TooLarge { .. } => Step::Done(Err(Error::InvalidRequest(e.to_string()))),
            WireError::KeyNotFound => Step::Done(Err(Error::Protocol {
                address: target.to_string(),
                message: "KeyNotFound answered an operation that has no key to find".into(),
            })),
        }
    }

    /// The attempt sent to `target` got no answer: the connection broke or the attempt timed
    /// out. `sent`: the request may have reached the node.
    pub(crate) fn on_lost(
        &mut self,
        topo: &mut Topology,
        shard: u32,
        target: &str,
        why: &str,
        sent: bool,
        now: Instant,
    ) -> Step {
        if sent && self.is_write {
            self.maybe_applied = true;
        }
        self.last = format!("{target}: {why}");
        topo.clear_leader(shard, Some(target));
        self.pause(now)
    }

    /// No connection could be made to `target`.
    pub(crate) fn on_unreachable(
        &mut self,
        topo: &mut Topology,
        target: &str,
        why: &str,
        now: Instant,
    ) -> Step {
        self.last = format!("{target}: {why}");
        topo.mark_down(target, now);
        self.connect_failures_in_a_row += 1;
        if !self.answered && self.connect_failures_in_a_row >= 2 * topo.addresses().len().max(1) {
            // An earlier attempt of this write reached a node before its connection broke: the
            // cluster being unreachable now says nothing about that attempt, so the outcome
            // stays unknown (never "not applied").
            if self.maybe_applied {
                return Step::Done(Err(Error::RetriesExhausted {
                    attempts: self.attempts,
                    maybe_applied: true,
                    last: format!(
                        "cannot reach the cluster after a sent attempt: {}",
                        self.last
                    ),
                }));
            }
            return Step::Done(Err(Error::Unreachable {
                endpoints: topo.addresses().join(", "),
                last: why.to_string(),
            }));
        }
        self.pause(now)
    }
}

/// What one request/response exchange with a node came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Exchange {
    /// The node answered with this message.
    Answered(Message),
    /// No connection could be made.
    Unreachable(String),
    /// The node refused the connection for good (other cluster, protocol version).
    Refused(String),
    /// The request got no answer (connection lost, or no answer in time).
    Lost {
        /// What happened.
        why: String,
        /// Whether the request may have reached the node.
        sent: bool,
    },
}

impl Attempts {
    /// Judges the exchange of an attempt of `op` sent to `target` for `shard`.
    pub(crate) fn on_op_exchange(
        &mut self,
        topo: &mut Topology,
        op: &ClientOp,
        shard: u32,
        target: &str,
        ex: Exchange,
        now: Instant,
    ) -> Step {
        match ex {
            Exchange::Answered(Message::ClientResponse(r)) => {
                self.on_answer(topo, shard, target, interpret(op, r.outcome), now)
            }
            other => self.on_other_exchange(topo, shard, target, other, now),
        }
    }

    /// Judges an exchange that did not bring the expected answer (for any request kind).
    pub(crate) fn on_other_exchange(
        &mut self,
        topo: &mut Topology,
        shard: u32,
        target: &str,
        ex: Exchange,
        now: Instant,
    ) -> Step {
        match ex {
            Exchange::Answered(Message::Error(e)) => match e.code {
                ErrorCode::ShuttingDown | ErrorCode::TooManyConnections => self.on_lost(
                    topo,
                    shard,
                    target,
                    &e.message,
                    e.code == ErrorCode::ShuttingDown,
                    now,
                ),
                code => Step::Done(Err(Error::Protocol {
                    address: target.to_string(),
                    message: format!("{code:?}: {}", e.message),
                })),
            },
            Exchange::Answered(Message::AdminResponse(AdminResponse::Failed(e))) => {
                self.on_answer(topo, shard, target, Answer::Failed(e), now)
            }
            Exchange::Answered(m) => Step::Done(Err(Error::Protocol {
                address: target.to_string(),
                message: format!("unexpected {:?} answer", m.kind()),
            })),
            Exchange::Unreachable(why) => self.on_unreachable(topo, target, &why, now),
            Exchange::Refused(message) => Step::Done(Err(Error::Refused {
                address: target.to_string(),
                message,
            })),
            Exchange::Lost { why, sent } => self.on_lost(topo, shard, target, &why, sent, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringraft_net::message::LeaderHint;

    fn setup() -> (ClientConfig, Topology) {
        let cfg = ClientConfig::default();
        let topo = Topology::new(&cfg.endpoints, Duration::from_secs(1));
        (cfg, topo)
    }

    #[test]
    fn a_hint_to_another_node_retries_at_once_and_is_remembered() {
        let (cfg, mut topo) = setup();
        let now = Instant::now();
        let mut a = Attempts::new(&cfg, true, now);
        a.begin(now).unwrap();
        let hint = WireError::NotLeader {
            leader: Some(LeaderHint {
                node_id: 2,
                address: "127.0.0.1:9082".into(),
            }),
        };
        topo.apply_status(&ringraft_net::message::ClusterStatus {
            reporter: 1,
            nodes: vec![],
            shards: vec![ringraft_net::message::ShardStatus {
                group: 0,
                leader: None,
                term: 1,
                commit_index: 0,
                applied_index: 0,
                followers: vec![],
            }],
        });
        let s = a.on_answer(&mut topo, 0, "127.0.0.1:9081", Answer::Failed(hint), now);
        assert_eq!(s, Step::Retry(Duration::ZERO));
        assert_eq!(topo.leader_of(0), Some("127.0.0.1:9082"));
        assert!(!a.maybe_applied());
    }

    #[test]
    fn a_sent_write_then_an_unreachable_cluster_stays_outcome_unknown() {
        let (cfg, mut topo) = setup();
        let now = Instant::now();
        let mut a = Attempts::new(&cfg, true, now);
        a.begin(now).unwrap();
        // The request reached the node, then the connection was reset (the node died).
        let s = a.on_lost(
            &mut topo,
            0,
            "127.0.0.1:9081",
            "connection reset",
            true,
            now,
        );
        assert!(matches!(s, Step::Retry(_)));
        // Every node down (restarting): connections are refused until the budget ends.
        let mut last = None;
        for _ in 0..(2 * topo.addresses().len() + 1) {
            let t = topo.addresses()[0].clone();
            if let Step::Done(r) = a.on_unreachable(&mut topo, &t, "connection refused", now) {
                last = Some(r);
                break;
            }
        }
        let e = last
            .expect("the cluster is declared unreachable")
            .unwrap_err();
        assert!(
            e.maybe_applied(),
            "a sent write must stay outcome-unknown: {e}"
        );
    }

    #[test]
    fn lost_writes_are_uncertain_and_the_budget_ends_them() {
        let (mut cfg, mut topo) = setup();
        cfg.max_attempts = 3;
        let now = Instant::now();
        let mut a = Attempts::new(&cfg, true, now);
        for i in 0..3 {
            a.begin(now).unwrap();
            let s = a.on_lost(&mut topo, 0, "127.0.0.1:9081", "no answer", i == 1, now);
            assert!(matches!(s, Step::Retry(_)));
        }
        let e = a.begin(now).unwrap_err();
        assert!(e.maybe_applied(), "{e}");
        assert!(matches!(e, Error::RetriesExhausted { attempts: 3, .. }));
    }

    #[test]
    fn backoff_grows_and_is_capped_by_the_deadline() {
        let (mut cfg, mut topo) = setup();
        cfg.operation_timeout_ms = 50;
        let now = Instant::now();
        let mut a = Attempts::new(&cfg, false, now);
        let mut pauses = vec![];
        for _ in 0..8 {
            a.begin(now).unwrap();
            match a.on_answer(
                &mut topo,
                0,
                "127.0.0.1:9081",
                Answer::Failed(WireError::NotLeader { leader: None }),
                now,
            ) {
                Step::Retry(d) => pauses.push(d),
                Step::Done(r) => panic!("{r:?}"),
            }
        }
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]), "{pauses:?}");
        assert!(pauses.iter().all(|d| *d <= Duration::from_millis(50)));
        let later = now + Duration::from_millis(60);
        assert!(matches!(a.begin(later), Err(Error::Timeout { .. })));
    }

    #[test]
    fn a_dead_cluster_is_unreachable_after_two_rounds() {
        let (cfg, mut topo) = setup();
        let now = Instant::now();
        let mut a = Attempts::new(&cfg, false, now);
        let mut last = None;
        for _ in 0..6 {
            a.begin(now).unwrap();
            let t = topo.next_node(None, now);
            last = Some(a.on_unreachable(&mut topo, &t, "connection refused", now));
        }
        match last {
            Some(Step::Done(Err(e))) => {
                assert!(e.is_unreachable());
                assert!(e.to_string().contains("127.0.0.1:9083"), "{e}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_expired_session_is_not_a_definite_failure() {
        let (cfg, mut topo) = setup();
        let now = Instant::now();
        let mut a = Attempts::new(&cfg, true, now);
        a.begin(now).unwrap();
        match a.on_answer(
            &mut topo,
            0,
            "x:1",
            Answer::Failed(WireError::SessionExpired),
            now,
        ) {
            Step::Done(Err(e @ Error::SessionExpired(_))) => assert!(e.maybe_applied()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_outcomes_are_retried_and_never_reported_as_not_applied() {
        let (cfg, mut topo) = setup();
        for (e, unknown) in [
            (WireError::LeadershipLost, true),
            (WireError::ForwardBroken("reset".into()), true),
            (WireError::Timeout, true),
            (WireError::Superseded, false),
            (WireError::Unavailable("stopping".into()), false),
        ] {
            let now = Instant::now();
            let mut a = Attempts::new(&cfg, true, now);
            a.begin(now).unwrap();
            // The caller retries with the same session: the step only decides whether to retry.
            let s = a.on_answer(&mut topo, 0, "x:1", Answer::Failed(e.clone()), now);
            assert!(matches!(s, Step::Retry(_)), "{e}: {s:?}");
            assert_eq!(a.maybe_applied(), unknown, "{e}");
            assert_eq!(e.outcome_unknown(), unknown, "{e}");
        }
    }

    #[test]
    fn invalid_requests_are_final() {
        let (cfg, mut topo) = setup();
        let now = Instant::now();
        let mut a = Attempts::new(&cfg, true, now);
        a.begin(now).unwrap();
        let s = a.on_answer(
            &mut topo,
            0,
            "x:1",
            Answer::Failed(WireError::InvalidRequest("key too large".into())),
            now,
        );
        assert_eq!(
            s,
            Step::Done(Err(Error::InvalidRequest("key too large".into())))
        );
    }
}
