//! The node's async wrapper around the shared Ready loop ([`crate::node::driver`]): the driver
//! loop runs rounds when kicked, waiting where the node must (received snapshots' files written
//! off the executor thread before the WAL forgets what they cover, WAL backpressure, locally
//! taken snapshots' files); the persist loop waits for each batch's WAL durability and hands it
//! back to the driver; the tick loop drives the Raft clocks. Each synchronous step borrows the
//! core's state only for its own duration, never across an `.await`.

use super::*;
use crate::node::driver::{note_acked, Driver, PersistError, Round, SnapshotWrite, Transport};
use crate::node::storage::WalStorage;

/// The node's transport for one driver step: envelopes are collected and queued on the peer
/// links right after the step (`finish`), in the order the driver sent them.
pub(super) struct PeerOut<'a> {
    envs: Vec<Envelope>,
    changed: Vec<GroupId>,
    node_id: NodeId,
    listen: &'a str,
    peers: &'a BTreeMap<NodeId, PeerLink>,
}

impl Transport for PeerOut<'_> {
    fn send(&mut self, envs: Vec<Envelope>) {
        self.envs.extend(envs);
    }

    fn not_leader(&self, leader: NodeId) -> ClientError {
        let address = if leader == self.node_id {
            Some(self.listen.to_string())
        } else {
            self.peers.get(&leader).map(|p| p.address.clone())
        };
        let hint = (leader != 0)
            .then_some(address)
            .flatten()
            .map(|address| LeaderHint {
                node_id: leader,
                address,
            });
        ClientError::NotLeader { leader: hint }
    }

    fn membership_changed(&mut self, g: GroupId) {
        self.changed.push(g);
    }
}

/// What a step sent: envelopes to the peer links, membership changes to the link table.
pub(super) struct Sent {
    envs: Vec<Envelope>,
    changed: Vec<GroupId>,
}

impl PeerOut<'_> {
    pub(super) fn sent(self) -> Sent {
        Sent {
            envs: self.envs,
            changed: self.changed,
        }
    }
}

/// Lends the core's state to the driver, with the WAL storage and the peer transport.
pub(super) fn parts(s: &mut CoreState) -> (Driver<'_>, PeerOut<'_>, WalStorage<'_>) {
    let d = Driver::new(&mut s.multi, &mut s.shards, &mut s.reads, &s.metrics)
        .with_max_scan_results(s.cfg.state_machine.max_scan_results);
    let out = PeerOut {
        envs: Vec::new(),
        changed: Vec::new(),
        node_id: s.node_id,
        listen: &s.cfg.cluster.listen_address,
        peers: &s.peers,
    };
    (d, out, WalStorage::new(&mut s.wal))
}

/// Sends what a step sent.
pub(super) fn finish(s: &mut CoreState, sent: Sent) {
    if !sent.envs.is_empty() {
        s.send_envelopes(&sent.envs);
    }
    for g in sent.changed {
        s.refresh_peers(g);
    }
    // Configurations that reached the log in this step (appended from a leader, or in an
    // installed snapshot) carry member addresses before they are applied.
    s.refresh_changed_peers();
}

/// One round of the driver: returns false when there was nothing to do.
async fn ready_round(st: &Rc<RefCell<CoreState>>) -> Result<bool, String> {
    let mut round: Round = {
        let mut s = st.borrow_mut();
        let (mut d, mut out, _) = parts(&mut s);
        let Some(round) = d.begin(Some(monotonic_nanos()), &mut out)? else {
            return Ok(false);
        };
        let sent = out.sent();
        finish(&mut s, sent);
        round
    };
    // Received snapshots' files are durable before the WAL forgets anything they cover.
    let received: Vec<(GroupId, Snapshot)> = round
        .received_snapshots()
        .map(|(g, snap)| (g, snap.clone()))
        .collect();
    for (g, snap) in received {
        let path = snapshot_path(st, g)?;
        write_snapshot_file(path.clone(), snap)
            .await
            .map_err(|e| format!("shard {g}: cannot write snapshot {}: {e}", path.display()))?;
    }
    let batch = loop {
        let r = {
            let mut s = st.borrow_mut();
            let (mut d, _, mut wal) = parts(&mut s);
            d.persist(&mut round, &mut wal)
        };
        match r {
            Ok(b) => break b,
            Err(PersistError::Backpressure) => wait_durable_now(st).await?,
            Err(PersistError::NoSpace(e)) => super::reclaim::wait_for_space(st, &e).await?,
            Err(PersistError::Failed(e)) => return Err(e),
        }
    };
    if !batch.is_empty() {
        let tx = st.borrow().persist_tx.clone();
        tx.send_async(batch)
            .await
            .map_err(|_| "the persist loop stopped".to_string())?;
    }
    let snapshots = {
        let mut s = st.borrow_mut();
        let (mut d, mut out, _) = parts(&mut s);
        let mut taken = d.apply(&mut round, &mut out)?;
        let sent = out.sent();
        finish(&mut s, sent);
        for g in round.groups() {
            s.update_gauges(g);
        }
        taken.extend(s.reclaim_wal());
        taken
    };
    // One at a time and awaited: a shard's snapshot files are written in order.
    write_snapshots(st, snapshots).await?;
    Ok(true)
}

/// Writes snapshots taken in memory to their files, one at a time and awaited (a shard's
/// snapshot files are written in order); after each, the WAL forgets what the file covers.
pub(super) async fn write_snapshots(
    st: &Rc<RefCell<CoreState>>,
    snapshots: Vec<SnapshotWrite>,
) -> Result<(), String> {
    for w in snapshots {
        let path = snapshot_path(st, w.group)?;
        let written = write_snapshot_file(path.clone(), w.snap.clone())
            .await
            .map_err(|e| format!("cannot write {}: {e}", path.display()));
        let mut s = st.borrow_mut();
        let (mut d, _, mut wal) = parts(&mut s);
        d.snapshot_written(&w, written, &mut wal);
    }
    Ok(())
}

fn snapshot_path(st: &Rc<RefCell<CoreState>>, g: GroupId) -> Result<PathBuf, String> {
    st.borrow()
        .local
        .get(&g)
        .map(|l| l.snapshot_path.clone())
        .ok_or_else(|| format!("shard {g}: unknown"))
}

/// Encodes and writes a snapshot file atomically (temp file, fsync, rename) on glommio's
/// blocking thread pool, so a large snapshot never stalls the core's executor (its ticks,
/// heartbeats and lease reads).
async fn write_snapshot_file(path: PathBuf, snap: Snapshot) -> std::io::Result<()> {
    glommio::executor()
        .spawn_blocking(move || storage::write_atomically(&path, &storage::encode_snapshot(&snap)))
        .await
}

async fn wait_durable_now(st: &Rc<RefCell<CoreState>>) -> Result<(), String> {
    let w = {
        let s = st.borrow();
        let lsn = s.wal.flush();
        s.wal.wait_durable(lsn)
    };
    w.await.map_err(|e| format!("WAL sync failed: {e}"))
}

/// The driver loop: runs ready rounds whenever something happened (a kick).
pub async fn drive(st: Rc<RefCell<CoreState>>, kick_rx: flume::Receiver<()>) {
    while kick_rx.recv_async().await.is_ok() {
        loop {
            match ready_round(&st).await {
                Ok(true) => glommio::yield_if_needed().await,
                Ok(false) => break,
                Err(e) => {
                    error!("core stopped: {e}");
                    let mut s = st.borrow_mut();
                    s.metrics.error(ErrorKind::WalIo);
                    s.fail_all(&e);
                    s.fatal.get_or_insert(e);
                    return;
                }
            }
        }
    }
}

/// The persist loop: waits for each batch to be durable, then reports it to the Raft core and
/// sends what had to wait for durability.
pub async fn persist_loop(
    st: Rc<RefCell<CoreState>>,
    rx: flume::Receiver<PersistBatch>,
    durability: ringraft_wal::Durability,
) {
    while let Ok(b) = rx.recv_async().await {
        let t0 = Instant::now();
        if let Err(e) = durability.wait(b.ticket()).await {
            let msg = format!("WAL sync failed: {e}");
            error!("{msg}");
            let mut s = st.borrow_mut();
            s.metrics.error(ErrorKind::WalIo);
            s.fail_all(&msg);
            s.fatal.get_or_insert(msg);
            return;
        }
        let mut s = st.borrow_mut();
        if b.appended() > 0 {
            s.metrics
                .fsync_latency_us
                .record(t0.elapsed().as_micros() as u64);
            s.metrics.fsync_batch_entries.record(b.appended());
        }
        debug!(
            lsn = b.ticket(),
            waited_us = t0.elapsed().as_micros() as u64,
            after = b.after_len(),
            "persisted"
        );
        let (sent, follower) = {
            let (mut d, mut out, _) = parts(&mut s);
            let durable = d.on_durable(b, &mut out);
            if let Some(e) = durable.refused {
                debug!("{e}");
            }
            (out.sent(), durable.follower)
        };
        finish(&mut s, sent);
        note_acked(&s.metrics, follower);
        s.kick();
    }
}

/// Most ticks delivered per wake-up of the tick loop. A late wake-up (a stalled executor, a
/// stopped process) delivers up to this many and skips the rest of the missed ticks.
///
/// Why skip instead of catching up: the tick loop may run before the tasks that read the peer
/// sockets, so a burst of missed ticks would run a follower's election timer past its timeout
/// while the leader's heartbeats still wait unread in its socket, and start an election no
/// real silence justified. Skipping only makes ticks slower than real time, which every timer
/// tolerates: a follower's election timeout and its vote-ignoring window then last longer in
/// real time (the direction the leader lease relies on), and a leader's own lease is checked
/// against the monotonic clock at read time (`Raft::read_at`), not against its ticks.
pub const MAX_TICKS_PER_WAKEUP: u64 = 2;

/// The clock: Raft ticks follow the monotonic clock, at most one per `tick_interval_ms` of real
/// time (never early), each handed the monotonic time [`monotonic_nanos`] it was delivered at.
/// When the executor was late, at most [`MAX_TICKS_PER_WAKEUP`] ticks are delivered and the
/// other missed ones are skipped. Every 100 delivered ticks abandoned requests are swept.
pub async fn tick_loop(st: Rc<RefCell<CoreState>>, tick: Duration) {
    let start = Instant::now();
    let tick_us = tick.as_micros().max(1) as u64;
    // Tick slots accounted for (delivered or skipped), and ticks delivered.
    let mut done: u64 = 0;
    let mut delivered: u64 = 0;
    loop {
        let next = Duration::from_micros((done + 1) * tick_us);
        let now = start.elapsed();
        if next > now {
            glommio::timer::sleep(next - now).await;
        }
        let due = start.elapsed().as_micros() as u64 / tick_us;
        let mut s = st.borrow_mut();
        if s.fatal.is_some() {
            return;
        }
        let missed = due.saturating_sub(done).max(1);
        let n = ticks_to_deliver(missed);
        if n < missed {
            debug!(
                missed,
                delivered = n,
                "tick loop woke late; skipped the other missed ticks"
            );
        }
        let now_ns = monotonic_nanos();
        for _ in 0..n {
            s.multi.tick_at(now_ns);
            delivered += 1;
            if delivered.is_multiple_of(100) {
                s.sweep_abandoned();
            }
        }
        done += missed;
        s.kick();
    }
}

/// Ticks delivered on a wake-up that found `missed` tick slots due.
pub(super) fn ticks_to_deliver(missed: u64) -> u64 {
    missed.min(MAX_TICKS_PER_WAKEUP)
}

/// Syncs the WAL (shutdown).
pub async fn sync_wal(st: &Rc<RefCell<CoreState>>) -> Result<(), String> {
    wait_durable_now(st).await
}
