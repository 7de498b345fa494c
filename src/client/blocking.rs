//! The blocking client, for plain programs, tools and tests: std::net sockets, one connection
//! per node (made on first use, remade after a failure), requests pipelined by request id.
//!
//! [`Client::execute`] runs one operation to completion: it routes the key to its shard's
//! leader, follows `NotLeader` hints, fails over when a node dies and retries within the
//! budget of [`ClientConfig`] (see [`crate::client::retry`]). [`Client::execute_many`] sends a
//! whole slice of operations before waiting (many requests in flight per connection, at most
//! `max_inflight_per_connection` per round) and retries the ones that need it one by one.
//! A `Client` is not shared between threads: make one per thread (each gets its own client id).
//! Each socket read waits at most `request_timeout_ms`; a lost attempt drops its connection (a
//! late answer must not be taken for another request's) and the next attempt reconnects.
//!
//! ```no_run
//! use ringraft::client::{Client, ClientConfig, Consistency};
//!
//! let mut client = Client::connect(ClientConfig::with_endpoints(&["127.0.0.1:9081"]))?;
//! client.put("greeting", "hello")?;
//! let v = client.get_with("greeting", Consistency::Linearizable)?;
//! assert_eq!(v.map(|v| v.value), Some(b"hello".to_vec()));
//! # Ok::<(), ringraft::client::Error>(())
//! ```
//! Owned by the client.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringraft_net::blocking_client::{BlockingClient, ClientConfig as NetClientConfig};
use ringraft_net::message::{
    AdminRequest, AdminResponse, CasExpect, ClientOp, ClusterStatus, Consistency, Encode, KeyValue,
    LocalIdentity, Message, PeerRole, ScanRange, Session, Versioned,
};
use ringraft_net::{NetError, NetMetrics};

use crate::client::config::{ClientConfig, DEFAULT_SCAN_LIMIT};
use crate::client::error::{Error, Result};
use crate::client::history::HistoryRecorder;
use crate::client::op::{
    consistency, interpret, merge_scans, refuse_watch, shard_of, to_request, unexpected, Answer,
    Reply,
};
use crate::client::retry::{Attempts, Exchange, Step};
use crate::client::session::Sessions;
use crate::client::topology::Topology;

/// The result of a compare-and-swap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasResult {
    /// Whether the swap happened.
    pub swapped: bool,
    /// The value after the operation (`None`: absent).
    pub current: Option<Versioned>,
}

/// Resolves `host:port` to its first socket address.
pub(crate) fn resolve(address: &str) -> std::result::Result<SocketAddr, String> {
    address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .next()
        .ok_or_else(|| format!("{address} resolves to no address"))
}

/// Classifies a failed connect.
pub(crate) fn connect_failure(e: NetError) -> Exchange {
    match e {
        NetError::Refused { code, message } => match code {
            ringraft_net::message::ErrorCode::TooManyConnections
            | ringraft_net::message::ErrorCode::ShuttingDown => {
                Exchange::Unreachable(format!("{code:?}: {message}"))
            }
            _ => Exchange::Refused(format!("{code:?}: {message}")),
        },
        other => Exchange::Unreachable(other.to_string()),
    }
}

/// A blocking ringraft client.
pub struct Client {
    cfg: ClientConfig,
    net: NetClientConfig,
    topo: Topology,
    conns: HashMap<String, BlockingClient>,
    sessions: Sessions,
    recorder: Option<Arc<HistoryRecorder>>,
    metrics: Arc<NetMetrics>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("client_id", &self.sessions.client_id())
            .field("topology", &self.topo)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of the cluster at `cfg.endpoints` that has learned its topology (fails with
    /// [`Error::Unreachable`] when no node answers).
    pub fn connect(cfg: ClientConfig) -> Result<Client> {
        let mut c = Client::new(cfg)?;
        c.cluster_status()?;
        Ok(c)
    }

    /// A client that connects lazily, on its first operation.
    pub fn new(cfg: ClientConfig) -> Result<Client> {
        cfg.validate().map_err(Error::Config)?;
        let sessions = Sessions::new(cfg.client_id);
        let mut net = NetClientConfig::new(LocalIdentity {
            cluster_id: cfg.cluster_id,
            role: PeerRole::Client {
                client_id: sessions.client_id(),
            },
        });
        net.socket.connect_timeout_ms = cfg.connect_timeout_ms;
        net.response_timeout_ms = cfg.request_timeout_ms;
        net.max_stashed_responses = cfg.max_inflight_per_connection;
        if let Some(t) = &cfg.tls {
            net.tls = Some(t.load(cfg.cluster_id).map_err(Error::Config)?);
        }
        let topo = Topology::new(
            &cfg.endpoints,
            Duration::from_millis(cfg.down_node_cooldown_ms),
        );
        Ok(Client {
            cfg,
            net,
            topo,
            conns: HashMap::new(),
            sessions,
            recorder: None,
            metrics: Arc::new(NetMetrics::new()),
        })
    }

    /// Records every operation into `recorder` (the checker's JSON-lines history).
    pub fn with_recorder(mut self, recorder: Arc<HistoryRecorder>) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// This client's id (the `client_id` of its write sessions).
    pub fn client_id(&self) -> u64 {
        self.sessions.client_id()
    }

    /// What the client knows about the cluster.
    pub fn topology(&self) -> &Topology {
        &self.topo
    }

    /// The configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    /// Sets `key` to `value`; returns the version written.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<u64> {
        let op = ClientOp::Put {
            key: key.as_ref().to_vec(),
            value: value.as_ref().to_vec(),
            session: None,
        };
        match self.execute(op)? {
            Reply::Written { version } => Ok(version),
            other => Err(unexpected("put", &other)),
        }
    }

    /// Reads `key` with the cluster's default consistency.
    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Result<Option<Versioned>> {
        self.get_with(key, Consistency::Default)
    }

    /// Reads `key` with `consistency`.
    pub fn get_with(
        &mut self,
        key: impl AsRef<[u8]>,
        consistency: Consistency,
    ) -> Result<Option<Versioned>> {
        let op = ClientOp::Get {
            key: key.as_ref().to_vec(),
            consistency,
        };
        match self.execute(op)? {
            Reply::Value(v) => Ok(v),
            other => Err(unexpected("get", &other)),
        }
    }

    /// Removes `key`; returns whether it existed.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> Result<bool> {
        match self.execute(ClientOp::Delete {
            key: key.as_ref().to_vec(),
            session: None,
        })? {
            Reply::Deleted { existed, .. } => Ok(existed),
            other => Err(unexpected("delete", &other)),
        }
    }

    /// Sets `key` to `new_value` if its value is `expected` (`None`: if it is absent).
    pub fn cas(
        &mut self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new_value: impl AsRef<[u8]>,
    ) -> Result<CasResult> {
        self.cas_op(
            key.as_ref(),
            CasExpect::Value(expected.map(<[u8]>::to_vec)),
            new_value.as_ref(),
        )
    }

    /// Sets `key` to `new_value` if its version is `version` (0: if it is absent).
    pub fn cas_version(
        &mut self,
        key: impl AsRef<[u8]>,
        version: u64,
        new_value: impl AsRef<[u8]>,
    ) -> Result<CasResult> {
        self.cas_op(
            key.as_ref(),
            CasExpect::Version(version),
            new_value.as_ref(),
        )
    }

    fn cas_op(&mut self, key: &[u8], expect: CasExpect, new_value: &[u8]) -> Result<CasResult> {
        let op = ClientOp::CompareAndSwap {
            key: key.to_vec(),
            expect,
            new_value: new_value.to_vec(),
            session: None,
        };
        match self.execute(op)? {
            Reply::Cas { swapped, current } => Ok(CasResult { swapped, current }),
            other => Err(unexpected("cas", &other)),
        }
    }

    /// Keys starting with `prefix` in every shard (one scan per shard, merged in key order; at
    /// most `limit`, default [`DEFAULT_SCAN_LIMIT`]); returns the pairs and whether the limit
    /// cut them short.
    pub fn scan(
        &mut self,
        prefix: impl AsRef<[u8]>,
        limit: Option<u32>,
        consistency: Consistency,
    ) -> Result<(Vec<KeyValue>, bool)> {
        let limit = limit.unwrap_or(DEFAULT_SCAN_LIMIT);
        if !self.topo.is_known() {
            self.cluster_status()?;
        }
        let shards = self.topo.shard_count().unwrap_or(1);
        let mut parts = Vec::with_capacity(shards as usize);
        for shard in 0..shards {
            let op = ClientOp::Scan {
                range: ScanRange::Prefix(prefix.as_ref().to_vec()),
                limit,
                consistency,
            };
            match self.execute_on(op, Some(shard))? {
                Reply::Scan { items, more } => parts.push((items, more)),
                other => return Err(unexpected("scan", &other)),
            }
        }
        Ok(merge_scans(parts, limit))
    }

    /// Runs one operation to completion (routing, hints, failover, retries); a write runs
    /// under this client's session, whatever session `op` carries.
    pub fn execute(&mut self, op: ClientOp) -> Result<Reply> {
        self.execute_on(op, None)
    }

    /// [`Client::execute`] on shard `shard` (`None`: the one the op's key or lease names).
    pub(crate) fn execute_on(&mut self, op: ClientOp, shard: Option<u32>) -> Result<Reply> {
        let session = op.is_write().then(|| self.sessions.next());
        let pending = self.recorder.as_ref().and_then(|r| r.invoke(&op));
        let result = self.run(&op, shard, session);
        if let (Some(r), Some(p)) = (&self.recorder, pending) {
            r.complete(p, &result);
        }
        result
    }

    /// Runs many operations, their first attempts pipelined (all sent, then all awaited);
    /// results in input order. Operations on one key are not ordered among themselves.
    pub fn execute_many(&mut self, ops: Vec<ClientOp>) -> Vec<Result<Reply>> {
        let mut out = Vec::with_capacity(ops.len());
        let chunk = self.cfg.max_inflight_per_connection.max(1);
        let mut ops = ops.into_iter().peekable();
        while ops.peek().is_some() {
            let round: Vec<ClientOp> = ops.by_ref().take(chunk).collect();
            out.extend(self.execute_round(round));
        }
        out
    }

    fn execute_round(&mut self, ops: Vec<ClientOp>) -> Vec<Result<Reply>> {
        if !self.topo.is_known() {
            if let Err(e) = self.cluster_status() {
                return ops.iter().map(|_| Err(e.clone())).collect();
            }
        }
        let now = Instant::now();
        let mut sent: Vec<Option<(String, u64)>> = Vec::with_capacity(ops.len());
        let mut sessions = Vec::with_capacity(ops.len());
        let mut pendings = Vec::with_capacity(ops.len());
        for op in &ops {
            let session = op.is_write().then(|| self.sessions.next());
            sessions.push(session);
            pendings.push(self.recorder.as_ref().and_then(|r| r.invoke(op)));
            let shard = shard_of(op, None, &self.topo);
            let target = self.target_for(op, shard, now);
            let req = to_request(op, shard, session);
            // A watch is not sent: the retry loop below refuses it.
            let id = (!matches!(op, ClientOp::Watch { .. }))
                .then(|| self.conn(&target).ok().and_then(|c| c.send(&req).ok()))
                .flatten();
            sent.push(id.map(|id| (target, id)));
        }
        let targets: Vec<String> = self.conns.keys().cloned().collect();
        for t in targets {
            if let Some(c) = self.conns.get_mut(&t) {
                if c.flush().is_err() {
                    self.conns.remove(&t);
                }
            }
        }
        let mut results = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let first = sent[i].take().and_then(|(target, id)| {
                let frame = self.conns.get_mut(&target)?.wait_for(id);
                match frame {
                    Ok(f) => match f.message {
                        Message::ClientResponse(r) => match interpret(op, r.outcome) {
                            Answer::Done(reply) => {
                                self.topo.mark_up(&target);
                                Some(Ok(reply))
                            }
                            Answer::Malformed(m) => Some(Err(Error::Protocol {
                                address: target,
                                message: m,
                            })),
                            // Not leader, busy, ...: the retry loop below handles it.
                            Answer::Failed(_) => None,
                        },
                        _ => None,
                    },
                    Err(_) => {
                        self.conns.remove(&target);
                        None
                    }
                }
            });
            let result = match first {
                Some(r) => r,
                None => self.run(op, None, sessions[i]),
            };
            if let (Some(r), Some(p)) = (&self.recorder, pendings[i].take()) {
                r.complete(p, &result);
            }
            results.push(result);
        }
        results
    }

    fn target_for(&mut self, op: &ClientOp, shard: u32, now: Instant) -> String {
        let any = consistency(op) == Some(Consistency::Eventual) && self.cfg.spread_eventual_reads;
        self.topo.target(shard, any, now)
    }

    fn run(
        &mut self,
        op: &ClientOp,
        shard: Option<u32>,
        session: Option<Session>,
    ) -> Result<Reply> {
        refuse_watch(op)?;
        let mut att = Attempts::new(&self.cfg, op.is_write(), Instant::now());
        loop {
            let now = Instant::now();
            att.begin(now)?;
            let step = if !self.topo.is_known() {
                self.refresh_topology(&mut att, now)
            } else {
                let shard = shard_of(op, shard, &self.topo);
                let target = self.target_for(op, shard, now);
                let req = to_request(op, shard, session);
                let ex = self.exchange(&target, &req);
                att.on_op_exchange(&mut self.topo, op, shard, &target, ex, Instant::now())
            };
            match step {
                Step::Done(r) => return r,
                Step::Retry(d) if !d.is_zero() => std::thread::sleep(d),
                Step::Retry(_) => {}
            }
        }
    }

    fn refresh_topology(&mut self, att: &mut Attempts, now: Instant) -> Step {
        let target = self.topo.next_node(None, now);
        match self.exchange(&target, &AdminRequest::ClusterStatus) {
            Exchange::Answered(Message::AdminResponse(AdminResponse::Status(st))) => {
                self.topo.mark_up(&target);
                self.topo.apply_status(&st);
                Step::Retry(Duration::ZERO)
            }
            other => att.on_other_exchange(&mut self.topo, 0, &target, other, Instant::now()),
        }
    }

    /// The cluster status as one node (the first that answers) reports it; also refreshes
    /// the client's topology.
    pub fn cluster_status(&mut self) -> Result<ClusterStatus> {
        let mut att = Attempts::new(&self.cfg, false, Instant::now());
        loop {
            let now = Instant::now();
            att.begin(now)?;
            let target = self.topo.next_node(None, now);
            let step = match self.exchange(&target, &AdminRequest::ClusterStatus) {
                Exchange::Answered(Message::AdminResponse(AdminResponse::Status(st))) => {
                    self.topo.mark_up(&target);
                    self.topo.apply_status(&st);
                    return Ok(st);
                }
                other => att.on_other_exchange(&mut self.topo, 0, &target, other, Instant::now()),
            };
            match step {
                Step::Done(Err(e)) => return Err(e),
                Step::Done(Ok(_)) => {}
                Step::Retry(d) => std::thread::sleep(d),
            }
        }
    }

    /// The status as the node at `address` reports it (one attempt, no retries).
    pub fn node_status(&mut self, address: &str) -> Result<ClusterStatus> {
        match self.admin(address, &AdminRequest::ClusterStatus)? {
            AdminResponse::Status(st) => {
                self.topo.mark_up(address);
                Ok(st)
            }
            other => Err(Error::Protocol {
                address: address.to_string(),
                message: format!("unexpected {other:?} answer to ClusterStatus"),
            }),
        }
    }

    /// Sends one admin request to the node at `address` (one attempt) and returns its answer.
    pub(crate) fn admin(&mut self, address: &str, req: &AdminRequest) -> Result<AdminResponse> {
        match self.exchange(address, req) {
            Exchange::Answered(Message::AdminResponse(r)) => Ok(r),
            Exchange::Answered(m) => Err(Error::Protocol {
                address: address.to_string(),
                message: format!("unexpected {:?} answer", m.kind()),
            }),
            Exchange::Unreachable(last) | Exchange::Lost { why: last, .. } => {
                Err(Error::Unreachable {
                    endpoints: address.to_string(),
                    last,
                })
            }
            Exchange::Refused(message) => Err(Error::Refused {
                address: address.to_string(),
                message,
            }),
        }
    }

    fn conn(&mut self, address: &str) -> std::result::Result<&mut BlockingClient, Exchange> {
        if !self.conns.contains_key(address) {
            let addr = resolve(address).map_err(Exchange::Unreachable)?;
            let c =
                BlockingClient::connect_with_metrics(addr, self.net.clone(), self.metrics.clone())
                    .map_err(connect_failure)?;
            self.conns.insert(address.to_string(), c);
        }
        self.conns
            .get_mut(address)
            .ok_or_else(|| Exchange::Unreachable("connection vanished".into()))
    }

    /// One request, one answer (or why there is none).
    fn exchange<M: Encode>(&mut self, address: &str, msg: &M) -> Exchange {
        let conn = match self.conn(address) {
            Ok(c) => c,
            Err(ex) => return ex,
        };
        let r = conn
            .send(msg)
            .and_then(|id| conn.flush().map(|_| id))
            .map_err(|e| (e, false))
            .and_then(|id| conn.wait_for(id).map_err(|e| (e, true)));
        match r {
            Ok(frame) => Exchange::Answered(frame.message),
            Err((e, sent)) => {
                // The connection's state is unknown now (a late answer may still come): drop it.
                self.conns.remove(address);
                match e {
                    NetError::Refused { code, message } => {
                        Exchange::Answered(Message::Error(ringraft_net::message::ErrorFrame {
                            code,
                            message,
                        }))
                    }
                    NetError::Timeout(_) => Exchange::Lost {
                        why: format!("no answer within {} ms", self.cfg.request_timeout_ms),
                        sent,
                    },
                    other => Exchange::Lost {
                        why: other.to_string(),
                        sent: true,
                    },
                }
            }
        }
    }
}
