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
    ///
    /// An append goes out as frame bytes encoded straight from the log's shared entries, and
    /// one that goes alike to several followers is encoded once for all of them.
    pub(super) fn send_envelopes(&mut self, envs: &[Envelope]) {
        let mut appends = std::mem::take(&mut self.append_frames);
        let mut round = appends.round();
        let max_frame_bytes = self.cfg.network.max_frame_bytes;
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
                if matches!(m.body, MessageBody::InstallSnapshot { .. }) {
                    let path = self.snapshot_path(*g).ok();
                    send_snapshot(conn.clone(), *g, m.clone(), path);
                    continue;
                }
                if let Some(frame) = round.frame(*g, m, max_frame_bytes) {
                    failed |= frame.and_then(|f| conn.send_encoded(f)).is_err();
                    continue;
                }
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
        drop(round);
        self.append_frames = appends;
    }

    /// Brings the link table in line with `g`'s membership (the latest configuration in its
    /// log): every member whose address the configuration records gets a link to that address
    /// (replacing a link to another address, and asking the dialer for a connection), except
    /// members this node's config file lists: the operator's address for them is kept (it may
    /// route through a proxy or a NAT that only this node's config knows), and members its
    /// `peer_addresses` names, which get that address. A member with no address from any of
    /// them is warned about.
    pub(super) fn refresh_peers(&mut self, g: GroupId) {
        let Some(r) = self.multi.group(g) else {
            return;
        };
        let m = r.membership();
        self.peer_configs.insert(g, config_key(r));
        let mut dial = Vec::new();
        for id in m.members() {
            if id == self.node_id {
                continue;
            }
            let configured = self.cfg.cluster.initial_cluster.iter().any(|c| c.id == id);
            // A member that joined later: this node's config may name the route to it.
            let address = (self.cfg.cluster.peer_addresses.iter())
                .find(|p| p.id == id)
                .map(|p| p.address.as_str())
                .or(m.address(id));
            match (address, self.peers.get_mut(&id)) {
                (Some(a), Some(link)) if link.address == a || configured => {}
                (Some(a), link) => {
                    if let Some(old) = link {
                        info!(
                            shard = g,
                            node = id,
                            old = %old.address,
                            new = a,
                            "member address changed in the configuration"
                        );
                    } else {
                        info!(shard = g, node = id, address = a, "member address learned");
                    }
                    self.peers.insert(
                        id,
                        PeerLink {
                            address: a.to_string(),
                            conn: None,
                        },
                    );
                    dial.push(id);
                }
                (None, Some(_)) => {}
                (None, None) => warn!(
                    shard = g,
                    node = id,
                    "member without a known address; it cannot be reached until it connects"
                ),
            }
        }
        for id in dial {
            let _ = self.dial_tx.try_send(id);
        }
    }

    /// Refreshes the links of every shard of this core whose latest configuration changed
    /// since its last refresh (appended, truncated, or replaced by a snapshot). One map lookup
    /// per shard when nothing changed.
    pub(super) fn refresh_changed_peers(&mut self) {
        let changed: Vec<GroupId> = self
            .shards
            .keys()
            .copied()
            .filter(|g| {
                self.multi
                    .group(*g)
                    .is_some_and(|r| self.peer_configs.get(g) != Some(&config_key(r)))
            })
            .collect();
        for g in changed {
            self.refresh_peers(g);
        }
    }
}

/// Identifies a replica's latest configuration: its index and the term of that index (a
/// configuration truncated and replaced at the same index comes from another term).
fn config_key(r: &Raft) -> (u64, u64) {
    let i = r.log().membership_index();
    (i, r.log().term(i).unwrap_or(0))
}

/// Sends an InstallSnapshot to a lagging follower: its chunks (copies of the whole state) are
/// cut on glommio's blocking pool, then queued on the link in order, so a large snapshot never
/// stalls the executor. A failed link drops the rest; the leader sends the snapshot again once
/// the follower asks for it. A snapshot whose bytes the node keeps only in its file (see
/// [`storage::is_released`]) gets them from `path` first, on the same pool; if the file holds
/// another snapshot the message is dropped (the leader sends it again).
fn send_snapshot(conn: Rc<Connection>, g: GroupId, mut m: Message, path: Option<PathBuf>) {
    glommio::spawn_local(async move {
        let frames = glommio::executor()
            .spawn_blocking(move || {
                if let MessageBody::InstallSnapshot { snapshot } = &mut m.body {
                    if storage::is_released(snapshot) {
                        let filled = path
                            .ok_or_else(|| "no snapshot file".to_string())
                            .and_then(|p| storage::fill_released(snapshot, &p));
                        if let Err(e) = filled {
                            debug!(shard = g, "snapshot not sent: {e}");
                            return Vec::new();
                        }
                    }
                }
                wire::message_to_wire(g, &m, SNAPSHOT_CHUNK_BYTES)
            })
            .await;
        for w in &frames {
            if send_wire(&conn, 0, false, w).is_err() {
                debug!(shard = g, "snapshot chunks not sent: the peer link failed");
                return;
            }
        }
    })
    .detach();
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
