//! The async client, for programs running on glommio (the runtime ringraft itself uses): one
//! `AsyncClient` lives on one glommio executor (it is `!Send`, cheap to clone) and is shared by
//! any number of tasks, whose requests are pipelined on one connection per node and matched to
//! their answers by request id. At most `max_inflight_per_connection` requests are in flight per
//! connection; further ones wait for a slot (backpressure, no unbounded queue). Routing, hints,
//! failover, retries and exactly-once sessions are those of the blocking client (the shared
//! [`crate::client::retry`] policy).
//!
//! ```no_run
//! use ringraft::client::{AsyncClient, ClientConfig};
//!
//! let ex = glommio::LocalExecutorBuilder::default().make().expect("executor");
//! ex.run(async {
//!     let client = AsyncClient::connect(ClientConfig::default()).await?;
//!     let tasks: Vec<_> = (0..100)
//!         .map(|i| {
//!             let c = client.clone();
//!             glommio::spawn_local(async move { c.put(format!("k{i}"), "v").await })
//!         })
//!         .collect();
//!     for t in tasks {
//!         t.await?;
//!     }
//!     Ok::<(), ringraft::client::Error>(())
//! })
//! .expect("ran");
//! ```
//! Owned by the client.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::sync::Semaphore;
use ringraft_net::decoder::Frame;
use ringraft_net::listener::{dial, Connection, ConnectionConfig, Handler};
use ringraft_net::message::{
    AdminRequest, AdminResponse, CasExpect, ClientOp, ClusterStatus, Consistency, Encode, KeyValue,
    LocalIdentity, Message, PeerRole, ScanRange, Session, Versioned,
};
use ringraft_net::{NetError, NetMetrics};

use crate::client::blocking::{connect_failure, resolve, CasResult};
use crate::client::config::ClientConfig;
use crate::client::error::{Error, Result};
use crate::client::history::HistoryRecorder;
use crate::client::op::{
    consistency, merge_scans, refuse_watch, shard_of, to_request, unexpected, Reply,
};
use crate::client::retry::{Attempts, Exchange, Step};
use crate::client::session::Sessions;
use crate::client::topology::Topology;

/// Matches answers on one connection to the requests waiting for them.
#[derive(Default)]
struct Router {
    pending: RefCell<HashMap<u64, flume::Sender<Message>>>,
    closed: Cell<bool>,
}

impl Handler for Router {
    fn on_frame(&self, _conn: &Rc<Connection>, frame: Frame<'_>) {
        let id = frame.header.request_id;
        let waiter = self.pending.borrow_mut().remove(&id);
        if let Some(tx) = waiter {
            // A payload that does not deserialize drops the sender: the waiter sees the
            // connection as lost and retries.
            if let Ok(m) = frame.message.to_owned_message() {
                let _ = tx.try_send(m);
            }
        }
    }

    fn on_close(&self, _conn: &Rc<Connection>) {
        self.closed.set(true);
        // Dropping the senders wakes every waiter with "disconnected".
        self.pending.borrow_mut().clear();
    }
}

/// One connection to one node.
struct Link {
    conn: Rc<Connection>,
    router: Rc<Router>,
    next_id: Cell<u64>,
    slots: Semaphore,
}

impl Link {
    fn alive(&self) -> bool {
        !self.router.closed.get() && !self.conn.is_closing()
    }
}

struct Inner {
    cfg: ClientConfig,
    conn_cfg: ConnectionConfig,
    topo: RefCell<Topology>,
    links: RefCell<HashMap<String, Rc<Link>>>,
    /// One dial at a time per node: tasks that find no link wait for the dialing one.
    dial_locks: RefCell<HashMap<String, Rc<Semaphore>>>,
    sessions: Sessions,
    recorder: Option<Arc<HistoryRecorder>>,
    metrics: Arc<NetMetrics>,
}

/// A glommio ringraft client (clone it to share between tasks of one executor).
#[derive(Clone)]
pub struct AsyncClient {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncClient")
            .field("client_id", &self.inner.sessions.client_id())
            .finish_non_exhaustive()
    }
}

impl AsyncClient {
    /// A client that has learned the cluster's topology (fails with [`Error::Unreachable`] when
    /// no node answers). Must run inside a glommio executor.
    pub async fn connect(cfg: ClientConfig) -> Result<AsyncClient> {
        let c = AsyncClient::new(cfg, None)?;
        c.cluster_status().await?;
        Ok(c)
    }

    /// A client that connects lazily, recording into `recorder` if given.
    pub(crate) fn new(
        cfg: ClientConfig,
        recorder: Option<Arc<HistoryRecorder>>,
    ) -> Result<AsyncClient> {
        cfg.validate().map_err(Error::Config)?;
        let sessions = Sessions::new(cfg.client_id);
        let mut conn_cfg = ConnectionConfig::new(LocalIdentity {
            cluster_id: cfg.cluster_id,
            role: PeerRole::Client {
                client_id: sessions.client_id(),
            },
        });
        conn_cfg.socket.connect_timeout_ms = cfg.connect_timeout_ms;
        conn_cfg.handshake_timeout_ms = cfg.connect_timeout_ms;
        if let Some(t) = &cfg.tls {
            conn_cfg.tls = Some(t.load(cfg.cluster_id).map_err(Error::Config)?);
        }
        let topo = Topology::new(
            &cfg.endpoints,
            Duration::from_millis(cfg.down_node_cooldown_ms),
        );
        Ok(AsyncClient {
            inner: Rc::new(Inner {
                cfg,
                conn_cfg,
                topo: RefCell::new(topo),
                links: RefCell::new(HashMap::new()),
                dial_locks: RefCell::new(HashMap::new()),
                sessions,
                recorder,
                metrics: Arc::new(NetMetrics::new()),
            }),
        })
    }

    /// Wire counters of this client's connections.
    pub fn metrics(&self) -> &Arc<NetMetrics> {
        &self.inner.metrics
    }

    /// Sets `key` to `value`; returns the version written.
    pub async fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<u64> {
        let op = ClientOp::Put {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            session: None,
        };
        match self.execute(op).await? {
            Reply::Written { version } => Ok(version),
            other => Err(unexpected("put", &other)),
        }
    }

    /// Reads `key` with `consistency`.
    pub async fn get(
        &self,
        key: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<Option<Versioned>> {
        let op = ClientOp::Get {
            key: key.as_ref().to_vec(),
            consistency,
        };
        match self.execute(op).await? {
            Reply::Value(v) => Ok(v),
            other => Err(unexpected("get", &other)),
        }
    }

    /// Removes `key`; returns whether it existed.
    pub async fn delete(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        match self
            .execute(ClientOp::Delete {
                key: key.as_ref().to_vec(),
                session: None,
            })
            .await?
        {
            Reply::Deleted { existed, .. } => Ok(existed),
            other => Err(unexpected("delete", &other)),
        }
    }

    /// Sets `key` to `new_value` if its value is `expected` (`None`: if it is absent).
    pub async fn cas(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new_value: impl AsRef<[u8]>,
    ) -> Result<CasResult> {
        let expect = CasExpect::Value(expected.map(<[u8]>::to_vec));
        self.cas_op(key.as_ref(), expect, new_value.as_ref()).await
    }

    /// Sets `key` to `new_value` if its version is `version` (0: if it is absent).
    pub async fn cas_version(
        &self,
        key: impl AsRef<[u8]>,
        version: u64,
        new_value: impl AsRef<[u8]>,
    ) -> Result<CasResult> {
        let expect = CasExpect::Version(version);
        self.cas_op(key.as_ref(), expect, new_value.as_ref()).await
    }

    async fn cas_op(&self, key: &[u8], expect: CasExpect, new_value: &[u8]) -> Result<CasResult> {
        let op = ClientOp::CompareAndSwap {
            key: key.to_vec(),
            expect,
            new_value: new_value.to_vec(),
            session: None,
        };
        match self.execute(op).await? {
            Reply::Cas { swapped, current } => Ok(CasResult { swapped, current }),
            other => Err(unexpected("cas", &other)),
        }
    }

    /// Keys starting with `prefix` in every shard (one scan per shard, merged in key order; at
    /// most `limit`); returns the pairs and whether the limit cut them short.
    pub async fn scan(
        &self,
        prefix: impl AsRef<[u8]>,
        limit: u32,
        consistency: Consistency,
    ) -> Result<(Vec<KeyValue>, bool)> {
        if !self.inner.topo.borrow().is_known() {
            self.cluster_status().await?;
        }
        let shards = self.inner.topo.borrow().shard_count().unwrap_or(1);
        let mut parts = Vec::with_capacity(shards as usize);
        for shard in 0..shards {
            let op = ClientOp::Scan {
                range: ScanRange::Prefix(prefix.as_ref().to_vec()),
                limit,
                consistency,
            };
            match self.execute_on(op, Some(shard)).await? {
                Reply::Scan { items, more } => parts.push((items, more)),
                other => return Err(unexpected("scan", &other)),
            }
        }
        Ok(merge_scans(parts, limit))
    }

    /// Runs one operation to completion (routing, hints, failover, retries); a write runs
    /// under this client's session, whatever session `op` carries.
    pub(crate) async fn execute(&self, op: ClientOp) -> Result<Reply> {
        self.execute_on(op, None).await
    }

    /// [`AsyncClient::execute`] on shard `shard` (`None`: the one the op's key or lease names).
    async fn execute_on(&self, op: ClientOp, shard: Option<u32>) -> Result<Reply> {
        let session = op.is_write().then(|| self.inner.sessions.next());
        let pending = self.inner.recorder.as_ref().and_then(|r| r.invoke(&op));
        let result = self.run(&op, shard, session).await;
        if let (Some(r), Some(p)) = (&self.inner.recorder, pending) {
            r.complete(p, &result);
        }
        result
    }

    async fn run(
        &self,
        op: &ClientOp,
        shard: Option<u32>,
        session: Option<Session>,
    ) -> Result<Reply> {
        refuse_watch(op)?;
        let inner = &self.inner;
        let mut att = Attempts::new(&inner.cfg, op.is_write(), Instant::now());
        loop {
            let now = Instant::now();
            let wait = att.begin(now)?;
            let known = inner.topo.borrow().is_known();
            let step = if !known {
                let target = inner.topo.borrow_mut().next_node(None, now);
                match self
                    .exchange(&target, &AdminRequest::ClusterStatus, wait)
                    .await
                {
                    Exchange::Answered(Message::AdminResponse(AdminResponse::Status(st))) => {
                        let mut t = inner.topo.borrow_mut();
                        t.mark_up(&target);
                        t.apply_status(&st);
                        Step::Retry(Duration::ZERO)
                    }
                    other => att.on_other_exchange(
                        &mut inner.topo.borrow_mut(),
                        0,
                        &target,
                        other,
                        Instant::now(),
                    ),
                }
            } else {
                let (shard, target) = {
                    let mut t = inner.topo.borrow_mut();
                    let shard = shard_of(op, shard, &t);
                    let any = consistency(op) == Some(Consistency::Eventual)
                        && inner.cfg.spread_eventual_reads;
                    (shard, t.target(shard, any, now))
                };
                let req = to_request(op, shard, session);
                let ex = self.exchange(&target, &req, wait).await;
                att.on_op_exchange(
                    &mut inner.topo.borrow_mut(),
                    op,
                    shard,
                    &target,
                    ex,
                    Instant::now(),
                )
            };
            match step {
                Step::Done(r) => return r,
                Step::Retry(d) if !d.is_zero() => glommio::timer::sleep(d).await,
                Step::Retry(_) => {}
            }
        }
    }

    /// The cluster status as one node (the first that answers) reports it; also refreshes
    /// the client's topology.
    pub(crate) async fn cluster_status(&self) -> Result<ClusterStatus> {
        let inner = &self.inner;
        let mut att = Attempts::new(&inner.cfg, false, Instant::now());
        loop {
            let now = Instant::now();
            let wait = att.begin(now)?;
            let target = inner.topo.borrow_mut().next_node(None, now);
            let step = match self
                .exchange(&target, &AdminRequest::ClusterStatus, wait)
                .await
            {
                Exchange::Answered(Message::AdminResponse(AdminResponse::Status(st))) => {
                    let mut t = inner.topo.borrow_mut();
                    t.mark_up(&target);
                    t.apply_status(&st);
                    return Ok(st);
                }
                other => att.on_other_exchange(
                    &mut inner.topo.borrow_mut(),
                    0,
                    &target,
                    other,
                    Instant::now(),
                ),
            };
            match step {
                Step::Done(Err(e)) => return Err(e),
                Step::Done(Ok(_)) => {}
                Step::Retry(d) => glommio::timer::sleep(d).await,
            }
        }
    }

    fn live_link(&self, address: &str) -> Option<Rc<Link>> {
        let existing = self.inner.links.borrow().get(address).cloned();
        match existing {
            Some(l) if l.alive() => Some(l),
            Some(_) => {
                self.inner.links.borrow_mut().remove(address);
                None
            }
            None => None,
        }
    }

    async fn link(&self, address: &str) -> std::result::Result<Rc<Link>, Exchange> {
        if let Some(l) = self.live_link(address) {
            return Ok(l);
        }
        let lock = self
            .inner
            .dial_locks
            .borrow_mut()
            .entry(address.to_string())
            .or_insert_with(|| Rc::new(Semaphore::new(1)))
            .clone();
        let Ok(_dialing) = lock.acquire_permit(1).await else {
            return Err(Exchange::Unreachable("dial lock closed".into()));
        };
        // Another task may have dialed while this one waited.
        if let Some(l) = self.live_link(address) {
            return Ok(l);
        }
        let addr = resolve(address).map_err(Exchange::Unreachable)?;
        let router = Rc::new(Router::default());
        let conn = dial(
            addr,
            &self.inner.conn_cfg,
            router.clone(),
            self.inner.metrics.clone(),
        )
        .await
        .map_err(connect_failure)?;
        let link = Rc::new(Link {
            conn,
            router,
            next_id: Cell::new(1),
            slots: Semaphore::new(self.inner.cfg.max_inflight_per_connection as u64),
        });
        self.inner
            .links
            .borrow_mut()
            .insert(address.to_string(), link.clone());
        Ok(link)
    }

    /// One request, one answer within `wait` (or why there is none).
    async fn exchange<M: Encode>(&self, address: &str, msg: &M, wait: Duration) -> Exchange {
        let link = match self.link(address).await {
            Ok(l) => l,
            Err(ex) => return ex,
        };
        let Ok(_slot) = link.slots.acquire_permit(1).await else {
            return Exchange::Lost {
                why: "connection slots closed".into(),
                sent: false,
            };
        };
        let id = link.next_id.get();
        link.next_id.set(id.wrapping_add(1).max(1));
        let (tx, rx) = flume::bounded(1);
        link.router.pending.borrow_mut().insert(id, tx);
        if let Err(e) = link.conn.send_request(id, msg) {
            link.router.pending.borrow_mut().remove(&id);
            let full = matches!(e, NetError::SendQueueFull { .. });
            if !full {
                self.inner.links.borrow_mut().remove(address);
            }
            return Exchange::Lost {
                why: e.to_string(),
                sent: false,
            };
        }
        let got = glommio::timer::timeout(wait, async { Ok(rx.recv_async().await) }).await;
        match got {
            Ok(Ok(m)) => Exchange::Answered(m),
            Ok(Err(_)) => {
                self.inner.links.borrow_mut().remove(address);
                Exchange::Lost {
                    why: link
                        .conn
                        .close_reason()
                        .unwrap_or_else(|| "connection closed".into()),
                    sent: true,
                }
            }
            Err(_) => {
                link.router.pending.borrow_mut().remove(&id);
                Exchange::Lost {
                    why: format!("no answer within {} ms", wait.as_millis()),
                    sent: true,
                }
            }
        }
    }

    /// Closes every connection.
    pub fn close(&self) {
        for (_, l) in self.inner.links.borrow_mut().drain() {
            l.conn.close();
        }
    }
}
