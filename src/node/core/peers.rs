//! The core's side of peer traffic: Raft messages in (heartbeat rounds resolved, snapshot
//! chunks reassembled), envelopes out on the peer links, and the links' addresses.

use super::*;

impl CoreState {
    /// Delivers Raft traffic from peer `from` for groups of this core.
    pub fn step_inbound(&mut self, from: NodeId, msgs: Vec<Inbound>) {
        let mut env = Envelope {
            from,
            to: self.node_id,
            messages: Vec::new(),
            heartbeats: Vec::new(),
            heartbeat_responses: Vec::new(),
        };
        for m in msgs {
            match m {
                Inbound::Raft(g, msg) => env.messages.push((g, msg)),
                Inbound::HeartbeatAck {
                    group,
                    from,
                    term,
                    batch,
                } => {
                    let round = self.rounds.resolve(from, batch, group);
                    env.messages.push((
                        group,
                        Message {
                            from,
                            to: self.node_id,
                            term,
                            body: MessageBody::HeartbeatResponse { round },
                        },
                    ));
                }
                Inbound::SnapshotChunk {
                    group,
                    from,
                    term,
                    index,
                    index_term,
                    offset,
                    data,
                    done,
                } => match self.assembly.add(
                    self.node_id,
                    group,
                    from,
                    term,
                    index,
                    index_term,
                    offset,
                    &data,
                    done,
                    MAX_SNAPSHOT_BYTES,
                ) {
                    Ok(Some(msg)) => env.messages.push((group, msg)),
                    Ok(None) => {}
                    Err(e) => {
                        self.metrics.snapshot_chunks_refused.inc();
                        warn!(shard = group, from, "snapshot transfer: {e}")
                    }
                },
            }
        }
        if env.messages.is_empty() {
            return;
        }
        if tracing::enabled!(tracing::Level::TRACE) {
            for (g, m) in &env.messages {
                tracing::trace!(
                    shard = g,
                    from,
                    term = m.term,
                    kind = m.body.name(),
                    "raft message in"
                );
            }
        }
        // Rounds the step starts are stamped with the time read here.
        self.multi.advance_clock(monotonic_nanos());
        if let Err(e) = self.multi.step(env) {
            debug!(from, "inbound raft traffic: {e}");
            self.note_invalid(from, &e);
        }
        self.kick();
    }

    /// After a step that failed: exports the running count of refused (invalid) peer messages
    /// and warns about new refusals, at most once per [`INVALID_MESSAGE_LOG_INTERVAL`].
    fn note_invalid(&mut self, from: NodeId, e: &crate::raft::multi::MultiError) {
        let total = self.multi.invalid_messages();
        self.metrics.raft_invalid_messages.set(total);
        if let Some(refused) = self.invalid_log.note(total, Instant::now()) {
            warn!(
                from,
                refused,
                total,
                first_error = %e,
                "refused raft messages from a peer as invalid (no honest peer sends them)"
            );
        }
    }

    /// Queues envelopes on the peer links (dropping, and counting, what a full or absent link
    /// cannot take: Raft retransmits).
    pub(super) fn send_envelopes(&mut self, envs: &[Envelope]) {
        for env in envs {
            let Some(link) = self.peers.get(&env.to) else {
                debug!(to = env.to, "no address for peer; dropping its messages");
                continue;
            };
            let Some(conn) = link.conn.clone() else {
                debug!(
                    to = env.to,
                    messages = env.message_count(),
                    "no connection to the peer; dropping"
                );
                continue;
            };
            let mut failed = false;
            if tracing::enabled!(tracing::Level::TRACE) {
                for (g, m) in &env.messages {
                    tracing::trace!(
                        shard = g,
                        to = env.to,
                        term = m.term,
                        kind = m.body.name(),
                        "raft message out"
                    );
                }
            }
            for (g, m) in &env.messages {
                for w in wire::message_to_wire(*g, m, SNAPSHOT_CHUNK_BYTES) {
                    failed |= send_wire(&conn, 0, false, &w).is_err();
                }
            }
            if !env.heartbeats.is_empty() {
                let (hb, groups) = wire::heartbeats_to_wire(self.node_id, &env.heartbeats);
                let id = self.rounds.register(env.to, groups);
                failed |= conn.send_request(id, &hb).is_err();
            }
            if !env.heartbeat_responses.is_empty() {
                let multi = &self.multi;
                let frames = wire::heartbeat_responses_to_wire(
                    self.node_id,
                    &env.heartbeat_responses,
                    |g| multi.group(g).map_or(0, |r| r.log().last_index()),
                );
                for (round, resp) in frames {
                    failed |= conn.respond(round, &resp).is_err();
                }
            }
            if failed {
                self.metrics.error(ErrorKind::PeerConnection);
                if conn.is_closing() {
                    if let Some(l) = self.peers.get_mut(&env.to) {
                        l.conn = None;
                    }
                    let _ = self.dial_tx.try_send(env.to);
                }
            }
        }
    }

    /// Makes sure every member of `g`'s membership with a known address has a link.
    pub(super) fn refresh_peers(&mut self, g: GroupId) {
        let Some(r) = self.multi.group(g) else {
            return;
        };
        let members: Vec<NodeId> = r.membership().members().collect();
        for m in members {
            if m != self.node_id && !self.peers.contains_key(&m) {
                warn!(
                    shard = g,
                    node = m,
                    "member without a known address; it cannot be reached until it connects"
                );
            }
        }
    }

    /// Records a peer's address (from a learner's join request) and asks for a link.
    pub fn learn_address(&mut self, node: NodeId, address: String) {
        if node == self.node_id {
            return;
        }
        let known = self.peers.get(&node).map(|p| p.address.clone());
        if known.as_deref() != Some(address.as_str()) {
            self.peers.insert(
                node,
                PeerLink {
                    address,
                    conn: None,
                },
            );
            let _ = self.dial_tx.try_send(node);
        }
    }
}

/// Queues one owned wire message on a connection, as a request or as the response to
/// `request_id`.
pub fn send_wire(
    conn: &Connection,
    request_id: u64,
    response: bool,
    m: &ringraft_net::message::Message,
) -> Result<usize, ringraft_net::NetError> {
    conn.send_message(crate::node::wire::frame_flags(response), request_id, m)
}
