//! Human-readable views of the simulation for failure reports: one line per envelope for the
//! trace, and a dump of every replica's state (role, term, log bounds, commit, durable index,
//! membership, and a leader's view of its followers' progress). Owned by the simulator.

use crate::raft::{Envelope, MessageBody, Role};

use super::cluster::Cluster;

/// A one-line description of an envelope for traces.
pub fn describe(env: &Envelope) -> String {
    let mut s = format!("{}->{}", env.from, env.to);
    for (g, m) in &env.messages {
        let extra = match &m.body {
            MessageBody::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => format!(
                " prev={prev_index}/{prev_term} n={} commit={commit}",
                entries.len()
            ),
            MessageBody::AppendResponse { index, reject } => {
                format!(" idx={index}{}", if reject.is_some() { " rej" } else { "" })
            }
            MessageBody::VoteResponse { reject } | MessageBody::PreVoteResponse { reject } => {
                (if *reject { " rej" } else { " ok" }).to_string()
            }
            _ => String::new(),
        };
        s.push_str(&format!(" [g{g} {} t{}{extra}]", m.body.name(), m.term));
    }
    if !env.heartbeats.is_empty() {
        s.push_str(&format!(" [{} heartbeats]", env.heartbeats.len()));
    }
    if !env.heartbeat_responses.is_empty() {
        s.push_str(&format!(
            " [{} heartbeat acks]",
            env.heartbeat_responses.len()
        ));
    }
    s
}

impl Cluster {
    /// A multi-line description of every replica (for failure reports and debugging).
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for g in 1..=self.knobs.groups {
            for (&id, n) in &self.nodes {
                let Some(r) = n.multi.as_ref().and_then(|m| m.group(g)) else {
                    s.push_str(&format!("g{g} n{id}: down\n"));
                    continue;
                };
                let l = r.log();
                s.push_str(&format!(
                    "g{g} n{id}: {:?} term={} leader={} offset={} last={}/{} commit={} durable={} members={:?}/{:?}\n",
                    r.role(), r.term(), r.leader(), l.offset(), l.last_index(), l.last_term(), l.committed(), l.durable(),
                    r.membership().voters, r.membership().learners
                ));
                if r.role() == Role::Leader {
                    for (p, pr) in r
                        .membership()
                        .members()
                        .filter(|&p| p != id)
                        .filter_map(|p| r.progress(p).map(|x| (p, x)))
                    {
                        s.push_str(&format!(
                            "    progress {p}: match={} next={} {:?} paused={}\n",
                            pr.match_index,
                            pr.next_index,
                            pr.state,
                            pr.is_paused()
                        ));
                    }
                }
            }
        }
        s
    }
}
