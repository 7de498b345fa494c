//! Watches in the client library: a blocking iterator ([`Watch`]) and an async stream
//! ([`WatchStream`]) of the changes of a key, a prefix or a range, from a revision or from now.
//!
//! Revisions are per shard (a shard's Raft log index), so a watch over a prefix or a range,
//! which spans shards, is one stream per shard on one connection; the client keeps one
//! revision per shard ([`Watch::covered`]) and merges the streams as their batches arrive:
//! strict revision order within a shard, no order across shards. A key watch is one shard.
//!
//! Resume: every batch says the revision it covers through; on a lost connection, a dead node
//! (no keep-alive within `request_timeout_ms`), a node that stops serving, or a "too slow"
//! cancel, the client resubscribes (on the next node, leader or follower) from `through + 1`
//! of each shard, so it misses nothing and sees nothing twice. A revision the shard no longer
//! holds ends that shard's stream with [`WatchError::Compacted`] naming the oldest revision
//! still held. A watch is served by whichever node it reaches: in log order, possibly behind
//! the leader.
//!
//! The async stream runs the blocking watch on its own thread and hands items over a bounded
//! channel ([`WATCH_STREAM_BUFFER`]), so it works on any executor; dropping it stops the
//! thread at its next keep-alive. Owned by the client.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use ringraft_net::blocking_client::{BlockingClient, ClientConfig as NetClientConfig};
use ringraft_net::message::{
    ClientCommand, ClientError, ClientOp, ClientOutcome, ClientRequest, LocalIdentity, Message,
    PeerRole,
};
pub use ringraft_net::message::{WatchCancel, WatchEvent, WatchEventKind, WatchFilter};

use crate::client::blocking::resolve;
use crate::client::config::ClientConfig;
use crate::client::topology::Topology;
use crate::client::Client;

/// Items buffered between a [`WatchStream`]'s thread and its consumer.
pub const WATCH_STREAM_BUFFER: usize = 1_024;

/// Where a watch starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Start {
    /// With the next change each shard applies.
    #[default]
    Now,
    /// Every watched shard from this revision.
    Revision(u64),
    /// Per shard (what a resuming caller passes: [`Watch::covered`] plus one); shards not
    /// named start now.
    PerShard(BTreeMap<u32, u64>),
}

/// One change, with the shard whose revision it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedEvent {
    /// Shard.
    pub shard: u32,
    /// The change.
    pub event: WatchEvent,
}

/// Why a watch (or one shard of it) ended or could not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    /// The revision asked for was dropped from the shard's history.
    #[error("shard {shard}: compacted, the oldest revision is {oldest}")]
    Compacted {
        /// Shard.
        shard: u32,
        /// Oldest revision still held.
        oldest: u64,
    },
    /// The cluster refused the watch (bad filter, wrong shard); retrying cannot help.
    #[error("shard {shard}: the cluster refused the watch: {message}")]
    Rejected {
        /// Shard.
        shard: u32,
        /// Its reason.
        message: String,
    },
    /// No node could serve the watch for `operation_timeout_ms` (the watch keeps trying if
    /// iterated further).
    #[error("cannot reach the cluster for the watch: {0}")]
    Unreachable(String),
    /// The client configuration or the cluster's topology is unusable.
    #[error("watch setup failed: {0}")]
    Setup(String),
}

#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// The revision to ask for on (re)subscribing; 0 = now.
    next: u64,
    done: bool,
}

/// A blocking watch: an iterator of [`WatchedEvent`]s that resubscribes on its own.
pub struct Watch {
    net: NetClientConfig,
    topo: Topology,
    filter: WatchFilter,
    cursors: BTreeMap<u32, Cursor>,
    conn: Option<(String, BlockingClient)>,
    /// The node tried last (the next attempt prefers another).
    last_node: Option<String>,
    /// The node to try first.
    prefer: Option<String>,
    by_request: HashMap<u64, u32>,
    pending: VecDeque<Result<WatchedEvent, WatchError>>,
    failing_since: Option<Instant>,
    operation_timeout: Duration,
    backoff: Duration,
    reconnects: u64,
    connected_once: bool,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("filter", &self.filter)
            .field("cursors", &self.cursors)
            .field("node", &self.node())
            .finish_non_exhaustive()
    }
}

impl Watch {
    /// A watch of `filter` from `start` on the cluster of `cfg` (learns its shards first).
    pub fn new(cfg: ClientConfig, filter: WatchFilter, start: Start) -> Result<Watch, WatchError> {
        let mut client = Client::new(cfg.clone()).map_err(|e| WatchError::Setup(e.to_string()))?;
        client
            .cluster_status()
            .map_err(|e| WatchError::Unreachable(e.to_string()))?;
        let topo = client.topology().clone();
        let shards = topo
            .shard_count()
            .ok_or_else(|| WatchError::Setup("the cluster reported no shards".into()))?;
        let watched: Vec<u32> = match &filter {
            WatchFilter::Key(k) => vec![topo.shard_of(k)],
            _ => (0..shards).collect(),
        };
        let cursors = watched
            .into_iter()
            .map(|s| {
                let next = match &start {
                    Start::Now => 0,
                    Start::Revision(r) => *r,
                    Start::PerShard(m) => m.get(&s).copied().unwrap_or(0),
                };
                (s, Cursor { next, done: false })
            })
            .collect();
        let mut net = NetClientConfig::new(LocalIdentity {
            cluster_id: cfg.cluster_id,
            role: PeerRole::Client {
                client_id: client.client_id(),
            },
        });
        net.socket.connect_timeout_ms = cfg.connect_timeout_ms;
        net.response_timeout_ms = cfg.request_timeout_ms;
        Ok(Watch {
            net,
            topo,
            filter,
            cursors,
            conn: None,
            last_node: None,
            prefer: None,
            by_request: HashMap::new(),
            pending: VecDeque::new(),
            failing_since: None,
            operation_timeout: Duration::from_millis(cfg.operation_timeout_ms),
            backoff: Duration::from_millis(cfg.backoff_ms_min.max(10)),
            reconnects: 0,
            connected_once: false,
        })
    }

    /// Per watched shard, the revision covered so far (every matching event at or below it
    /// was handed out); resume from it plus one. 0 before the first batch of a watch from now.
    pub fn covered(&self) -> BTreeMap<u32, u64> {
        self.cursors
            .iter()
            .map(|(&s, c)| (s, c.next.saturating_sub(1)))
            .collect()
    }

    /// The node serving the watch now.
    pub fn node(&self) -> Option<&str> {
        self.conn.as_ref().map(|(a, _)| a.as_str())
    }

    /// Times the watch resubscribed on a new connection (after the first).
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// Whether every shard's stream ended.
    pub fn finished(&self) -> bool {
        self.pending.is_empty() && self.cursors.values().all(|c| c.done)
    }

    /// Runs the stream until at least one frame (a batch, possibly empty, or a cancel) was
    /// handled, and returns what it produced. Returns within about the keep-alive interval
    /// while a node serves the watch.
    pub fn poll(&mut self) -> Vec<Result<WatchedEvent, WatchError>> {
        if self.pending.is_empty() && !self.finished() {
            self.step();
        }
        self.pending.drain(..).collect()
    }

    fn subscribe(&mut self, shard: u32) -> bool {
        let Some(c) = self.cursors.get(&shard).copied() else {
            return false;
        };
        let Some((_, conn)) = self.conn.as_mut() else {
            return false;
        };
        let req = ClientRequest {
            shard,
            command: ClientCommand::Single(ClientOp::Watch {
                filter: self.filter.clone(),
                from: c.next,
            }),
        };
        match conn.send(&req).and_then(|id| conn.flush().map(|_| id)) {
            Ok(id) => {
                self.by_request.insert(id, shard);
                true
            }
            Err(_) => false,
        }
    }

    fn drop_conn(&mut self, why: &str) {
        if let Some((addr, _)) = self.conn.take() {
            self.topo.mark_down(&addr, Instant::now());
            tracing::debug!(node = addr, "watch connection lost: {why}");
        }
        self.by_request.clear();
        let now = Instant::now();
        let since = *self.failing_since.get_or_insert(now);
        if now.duration_since(since) >= self.operation_timeout {
            self.failing_since = Some(now);
            self.pending
                .push_back(Err(WatchError::Unreachable(why.to_string())));
        }
        std::thread::sleep(self.backoff);
    }

    /// Serves the watch from the node at `address` first (else from any node, round robin).
    pub fn start_on(mut self, address: &str) -> Watch {
        self.prefer = Some(address.to_string());
        self
    }

    fn connect(&mut self) {
        let addr = match self.prefer.take() {
            Some(a) => a,
            None => self
                .topo
                .next_node(self.last_node.as_deref(), Instant::now()),
        };
        let conn = resolve(&addr).and_then(|sa| {
            BlockingClient::connect(sa, self.net.clone()).map_err(|e| e.to_string())
        });
        match conn {
            Ok(c) => {
                self.conn = Some((addr.clone(), c));
                self.last_node = Some(addr.clone());
                self.topo.mark_up(&addr);
                let shards: Vec<u32> = self
                    .cursors
                    .iter()
                    .filter(|(_, c)| !c.done)
                    .map(|(&s, _)| s)
                    .collect();
                for s in shards {
                    if !self.subscribe(s) {
                        self.drop_conn("cannot send the watch request");
                        return;
                    }
                }
            }
            Err(e) => {
                self.topo.mark_down(&addr, Instant::now());
                self.last_node = Some(addr);
                self.drop_conn(&e);
            }
        }
    }

    fn step(&mut self) {
        if self.conn.is_none() {
            self.connect();
            if self.conn.is_none() {
                return;
            }
            if self.connected_once {
                self.reconnects += 1;
            }
            self.connected_once = true;
        }
        let Some((_, conn)) = self.conn.as_mut() else {
            return;
        };
        let frame = match conn.recv() {
            Ok(f) => f,
            Err(e) => return self.drop_conn(&e.to_string()),
        };
        let Some(&shard) = self.by_request.get(&frame.header.request_id) else {
            return;
        };
        let reply = match frame.message {
            Message::ClientResponse(r) => match r.outcome {
                ClientOutcome::Watch(w) => w,
                ClientOutcome::Failed(e) => {
                    ringraft_net::message::WatchReply::Cancelled(WatchCancel::Failed(e))
                }
                other => {
                    return self.drop_conn(&format!("unexpected answer to a watch: {other:?}"))
                }
            },
            Message::Error(e) => return self.drop_conn(&e.message),
            other => return self.drop_conn(&format!("unexpected {:?} on a watch", other.kind())),
        };
        self.failing_since = None;
        match reply {
            ringraft_net::message::WatchReply::Events { events, through } => {
                for event in events {
                    self.pending.push_back(Ok(WatchedEvent { shard, event }));
                }
                if let Some(c) = self.cursors.get_mut(&shard) {
                    c.next = c.next.max(through.saturating_add(1));
                }
            }
            ringraft_net::message::WatchReply::Cancelled(cancel) => {
                self.by_request.remove(&frame.header.request_id);
                self.cancelled(shard, cancel);
            }
        }
    }

    fn cancelled(&mut self, shard: u32, cancel: WatchCancel) {
        let end = |w: &mut Watch, e: WatchError| {
            if let Some(c) = w.cursors.get_mut(&shard) {
                c.done = true;
            }
            w.pending.push_back(Err(e));
        };
        match cancel {
            WatchCancel::Compacted { oldest } => end(self, WatchError::Compacted { shard, oldest }),
            WatchCancel::TooSlow(why) => {
                tracing::debug!(shard, "watch cancelled as too slow, resuming: {why}");
                if !self.subscribe(shard) {
                    self.drop_conn("cannot resubscribe");
                }
            }
            WatchCancel::Failed(e) => match e {
                ClientError::InvalidRequest(_)
                | ClientError::TooLarge { .. }
                | ClientError::WrongShard { .. } => end(
                    self,
                    WatchError::Rejected {
                        shard,
                        message: e.to_string(),
                    },
                ),
                // The node cannot serve it now (stopping, busy, its core stopped): resubscribe
                // every shard elsewhere.
                e => self.drop_conn(&e.to_string()),
            },
        }
    }

    /// Turns the watch into an async stream (served by a thread of its own).
    pub fn into_stream(self) -> WatchStream {
        WatchStream::spawn(self)
    }
}

impl Iterator for Watch {
    type Item = Result<WatchedEvent, WatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(x) = self.pending.pop_front() {
                return Some(x);
            }
            if self.finished() {
                return None;
            }
            self.step();
        }
    }
}

/// An async stream of a watch's items (see the module docs).
pub struct WatchStream {
    inner: flume::r#async::RecvStream<'static, Result<WatchedEvent, WatchError>>,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

impl WatchStream {
    fn spawn(mut w: Watch) -> WatchStream {
        let (tx, rx) = flume::bounded(WATCH_STREAM_BUFFER);
        std::thread::spawn(move || {
            while !tx.is_disconnected() && !w.finished() {
                for item in w.poll() {
                    if tx.send(item).is_err() {
                        return;
                    }
                }
            }
        });
        WatchStream {
            inner: rx.into_stream(),
        }
    }
}

impl futures_lite::Stream for WatchStream {
    type Item = Result<WatchedEvent, WatchError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }
}
