//! The suite's clients and what they saw. Three kinds of worker thread run at once:
//! - **HTTP registers**: put / get (linearizable, lease, eventual) of a few register keys
//!   through the node's JSON API, each request to a random node (followers forward);
//! - **frame registers**: the same through the exactly-once frame client, plus compare-and-set;
//! - **appends**: each worker appends unique ids to a few keys with the frame client, as
//!   read + compare-and-set loops (a session makes each cas exactly-once across retries).
//!
//! Every operation goes into the [`Recorder`] as checker events (invoke, then ok / fail / info)
//! with monotonic times, one process number per worker (a new one after an `info`: the old
//! operation stays pending forever). Eventual reads are kept apart: they may be stale, so they
//! are only checked for "this value was written at some point".
//!
//! Classification of answers (the suite's contract with the server): a write is `fail` only
//! when the answer says it was not applied (HTTP 400/404/421/429, 503 "not leader", a request
//! never sent; a client error that is not `maybe_applied`, a cas that did not swap); a timeout,
//! a lost connection, a 504 or another 5xx is `info` (outcome unknown). A `fail` write whose
//! value is seen later is a violation (see `report.rs`). Values are unique per write.
//! Owned by the fault suite.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::checker::{Event, EventType, OpFunction};
use crate::client::{CasExpect, Client, ClientConfig, ClientOp as Op, Consistency, Reply};

use super::http::{encode, request, HttpOutcome};
use super::schedule::Rng;

/// Most operations recorded in one run (the workers stop issuing new ones past it).
pub const MAX_OPS: usize = 2_000_000;
/// Timeout of one HTTP request of the workload: longer than the node's own request timeout
/// (5 s in the shipped configs), so the suite sees how a node answers when its forward to the
/// leader fails, instead of giving up first.
pub const HTTP_TIMEOUT: Duration = Duration::from_millis(8_000);
/// Pause between two operations of one worker (keeps three nodes, the checker and other work
/// on a small machine responsive; the faults, not the load, are the point).
pub const THINK: Duration = Duration::from_millis(2);
/// Attempts of one append (read + cas rounds) before the worker gives the id up.
pub const APPEND_ATTEMPTS: u32 = 8;
/// Ids appended to one append key before the workers move to the key's next generation
/// (every cas carries the whole value: unbounded values would make the history quadratic).
pub const APPEND_IDS_PER_KEY: usize = 48;

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Completed; took effect.
    Ok,
    /// Surely did not take effect.
    Fail,
    /// Unknown.
    Info,
}

/// Which interface an operation used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// HTTP JSON API.
    Http,
    /// Frame client.
    Frame,
    /// Final read-back after healing.
    Final,
}

/// One operation, for the statistics, the timeline and the checks beyond linearizability.
#[derive(Debug, Clone)]
pub struct OpRecord {
    /// Call time (ns since the recorder was made).
    pub start_ns: u64,
    /// Return time.
    pub end_ns: u64,
    /// What it was.
    pub f: OpFunction,
    /// Key.
    pub key: String,
    /// Written value (put, cas new) or value read.
    pub value: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// Interface.
    pub via: Via,
    /// Read consistency ("linearizable", "lease", "eventual"), for reads.
    pub consistency: Option<&'static str>,
    /// Why it failed, if it did.
    pub error: Option<String>,
}

impl OpRecord {
    /// Whether it changes state (put, cas, append, delete).
    pub fn is_write(&self) -> bool {
        !self.f.is_read()
    }
}

#[derive(Debug, Default)]
struct Inner {
    events: Vec<Event>,
    ops: Vec<OpRecord>,
    next_process: u64,
}

/// Everything the clients saw.
#[derive(Debug)]
pub struct Recorder {
    t0: Instant,
    inner: Mutex<Inner>,
}

/// A call in flight.
#[derive(Debug)]
pub struct Call {
    process: u64,
    f: OpFunction,
    key: String,
    value: Option<String>,
    start_ns: u64,
    consistency: Option<&'static str>,
    via: Via,
    in_history: bool,
}

impl Recorder {
    /// A recorder whose clock starts now.
    pub fn new(t0: Instant) -> Recorder {
        Recorder {
            t0,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Nanoseconds since the start.
    pub fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// A fresh process number.
    pub fn new_process(&self) -> u64 {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.next_process += 1;
        g.next_process
    }

    /// Whether the op cap is reached.
    pub fn full(&self) -> bool {
        self.inner.lock().map_or(true, |g| g.ops.len() >= MAX_OPS)
    }

    /// Records a call. Eventual reads stay out of the linearizability history.
    #[allow(clippy::too_many_arguments)]
    pub fn invoke(
        &self,
        process: u64,
        f: OpFunction,
        key: &str,
        value: Option<&str>,
        expected: Option<Option<&str>>,
        consistency: Option<&'static str>,
        via: Via,
    ) -> Call {
        let in_history = consistency != Some("eventual");
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let start_ns = self.now_ns();
        if in_history {
            let mut e = Event::new(process, EventType::Invoke, f)
                .key(key)
                .time(start_ns);
            e.value = value.map(String::from);
            if let Some(x) = expected {
                e.expected = x.map(String::from);
            }
            g.events.push(e);
        }
        Call {
            process,
            f,
            key: key.to_string(),
            value: value.map(String::from),
            start_ns,
            consistency,
            via,
            in_history,
        }
    }

    /// Records how a call ended; `read` is the value a read returned.
    pub fn complete(
        &self,
        call: Call,
        outcome: Outcome,
        read: Option<String>,
        error: Option<String>,
    ) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let end_ns = self.now_ns().max(call.start_ns + 1);
        if call.in_history {
            let kind = match outcome {
                Outcome::Ok => EventType::Ok,
                Outcome::Fail => EventType::Fail,
                Outcome::Info => EventType::Info,
            };
            let mut e = Event::new(call.process, kind, call.f)
                .key(call.key.clone())
                .time(end_ns);
            if call.f.is_read() && outcome == Outcome::Ok {
                e.value = read.clone();
            }
            g.events.push(e);
        }
        let value = if call.f.is_read() { read } else { call.value };
        g.ops.push(OpRecord {
            start_ns: call.start_ns,
            end_ns,
            f: call.f,
            key: call.key,
            value,
            outcome,
            via: call.via,
            consistency: call.consistency,
            error,
        });
    }

    /// The history events and the operation records so far.
    pub fn snapshot(&self) -> (Vec<Event>, Vec<OpRecord>) {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (g.events.clone(), g.ops.clone())
    }
}

/// Workload shape.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Real node addresses.
    pub nodes: Vec<SocketAddr>,
    /// HTTP register workers.
    pub http_workers: usize,
    /// Frame register workers.
    pub frame_workers: usize,
    /// Append workers.
    pub append_workers: usize,
    /// Register keys.
    pub register_keys: usize,
    /// Append keys.
    pub append_keys: usize,
    /// Seed of the workers' choices.
    pub seed: u64,
    /// Reads are mostly lease reads ([`LEASE_HEAVY_SHARE_PERCENT`]) instead of the usual mix.
    pub lease_heavy: bool,
}

/// Share of lease reads, percent, with [`WorkloadConfig::lease_heavy`]: the reads that a leader
/// which lost its lease must not serve from its own state; the rest stay linearizable and
/// eventual so that both other paths keep running.
pub const LEASE_HEAVY_SHARE_PERCENT: u64 = 80;
/// Timeout of an HTTP request with [`WorkloadConfig::lease_heavy`]: short, so that the HTTP
/// workers do not all wait on a stopped or cut-off node and keep spreading fresh reads over
/// every node, the stopped one included as soon as it runs again (a read that times out had no
/// effect; a write that times out is recorded with an unknown outcome).
pub const LEASE_HEAVY_HTTP_TIMEOUT: Duration = Duration::from_millis(500);

/// Register key `i`.
pub fn register_key(i: usize) -> String {
    format!("r{i}")
}

/// Append key of slot `i`, generation `gen`.
pub fn append_key(i: usize, gen: u64) -> String {
    format!("a{i}.{gen}")
}

/// Whether `key` is an append key.
pub fn is_append_key(key: &str) -> bool {
    key.starts_with('a')
}

/// The append keys used so far (the final read-back reads every one).
pub type AppendKeys = Arc<Mutex<std::collections::BTreeSet<String>>>;

/// The ids an append worker tried: id → (acknowledged, some attempt's outcome unknown).
pub type AppendLedger = Arc<Mutex<std::collections::HashMap<String, (bool, bool)>>>;

/// The frame client config of the suite: short timeouts, so an operation in a fault ends as
/// `info` within seconds instead of waiting out the default budget.
pub fn frame_client_config(nodes: &[SocketAddr]) -> ClientConfig {
    let endpoints: Vec<String> = nodes.iter().map(|a| a.to_string()).collect();
    let mut cfg = ClientConfig::with_endpoints(&endpoints);
    cfg.connect_timeout_ms = 300;
    cfg.request_timeout_ms = 1_000;
    cfg.operation_timeout_ms = 4_000;
    cfg.backoff_ms_max = 200;
    cfg.down_node_cooldown_ms = 300;
    cfg
}

/// Starts every worker; they run until `stop`.
pub fn spawn(
    cfg: &WorkloadConfig,
    rec: &Arc<Recorder>,
    stop: &Arc<AtomicBool>,
    ledger: &AppendLedger,
    append_keys: &AppendKeys,
) -> Vec<std::thread::JoinHandle<()>> {
    let mut out = Vec::new();
    let mut w = 0u64;
    for _ in 0..cfg.http_workers {
        w += 1;
        let (c, r, s) = (cfg.clone(), rec.clone(), stop.clone());
        out.push(std::thread::spawn(move || http_worker(w, &c, &r, &s)));
    }
    for _ in 0..cfg.frame_workers {
        w += 1;
        let (c, r, s) = (cfg.clone(), rec.clone(), stop.clone());
        out.push(std::thread::spawn(move || frame_worker(w, &c, &r, &s)));
    }
    for _ in 0..cfg.append_workers {
        w += 1;
        let (c, r, s) = (cfg.clone(), rec.clone(), stop.clone());
        let (l, k) = (ledger.clone(), append_keys.clone());
        out.push(std::thread::spawn(move || {
            append_worker(w, &c, &r, &s, &l, &k)
        }));
    }
    out
}

fn pick_consistency(rng: &mut Rng, lease_heavy: bool) -> &'static str {
    if lease_heavy {
        let p = rng.below(100);
        return if p < LEASE_HEAVY_SHARE_PERCENT {
            "lease"
        } else if p < LEASE_HEAVY_SHARE_PERCENT + (100 - LEASE_HEAVY_SHARE_PERCENT) / 2 {
            "linearizable"
        } else {
            "eventual"
        };
    }
    match rng.below(10) {
        0..=4 => "linearizable",
        5..=7 => "lease",
        _ => "eventual",
    }
}

/// Classifies an HTTP answer to a write.
pub fn http_write_outcome(o: &HttpOutcome) -> (Outcome, Option<String>) {
    match o {
        HttpOutcome::Answer(200, _) => (Outcome::Ok, None),
        HttpOutcome::Answer(s, body) => {
            let not_applied =
                matches!(s, 400 | 404 | 421 | 429) || (*s == 503 && body.contains("not leader"));
            let why = Some(format!(
                "HTTP {s} {}",
                body.chars().take(120).collect::<String>()
            ));
            if not_applied {
                (Outcome::Fail, why)
            } else {
                (Outcome::Info, why)
            }
        }
        HttpOutcome::NotSent(e) => (Outcome::Fail, Some(e.clone())),
        HttpOutcome::NoAnswer(e) => (Outcome::Info, Some(e.clone())),
    }
}

/// An HTTP read: Ok(value) or the failure.
pub fn http_get(addr: SocketAddr, key: &str, consistency: &str) -> Result<Option<String>, String> {
    http_get_within(addr, key, consistency, HTTP_TIMEOUT)
}

/// [`http_get`] with its own timeout.
pub fn http_get_within(
    addr: SocketAddr,
    key: &str,
    consistency: &str,
    timeout: Duration,
) -> Result<Option<String>, String> {
    let path = format!("/get?key={}&consistency={consistency}", encode(key));
    match request(addr, "GET", &path, None, timeout) {
        HttpOutcome::Answer(200, body) => serde_json::from_str::<serde_json::Value>(&body)
            .map_err(|e| format!("bad JSON {body:?}: {e}"))
            .map(|v| v["value"].as_str().map(String::from)),
        HttpOutcome::Answer(404, body) if body.contains("not found") => Ok(None),
        HttpOutcome::Answer(s, body) => Err(format!("HTTP {s} {body}")),
        HttpOutcome::NotSent(e) | HttpOutcome::NoAnswer(e) => Err(e),
    }
}

fn http_worker(w: u64, cfg: &WorkloadConfig, rec: &Recorder, stop: &AtomicBool) {
    let mut rng = Rng::new(cfg.seed ^ (w << 32));
    let timeout = if cfg.lease_heavy {
        LEASE_HEAVY_HTTP_TIMEOUT
    } else {
        HTTP_TIMEOUT
    };
    let mut process = rec.new_process();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) && !rec.full() {
        let key = register_key(rng.below(cfg.register_keys as u64) as usize);
        let node = cfg.nodes[rng.below(cfg.nodes.len() as u64) as usize];
        if rng.below(10) < 4 {
            n += 1;
            let value = format!("h{w}-{n}");
            let call = rec.invoke(
                process,
                OpFunction::Put,
                &key,
                Some(&value),
                None,
                None,
                Via::Http,
            );
            let body = serde_json::json!({ "key": key, "value": value }).to_string();
            let o = request(node, "POST", "/put", Some(&body), timeout);
            let (outcome, err) = http_write_outcome(&o);
            rec.complete(call, outcome, None, err);
            if outcome == Outcome::Info {
                process = rec.new_process();
            }
        } else {
            let c = pick_consistency(&mut rng, cfg.lease_heavy);
            let call = rec.invoke(
                process,
                OpFunction::Get,
                &key,
                None,
                None,
                Some(c),
                Via::Http,
            );
            match http_get_within(node, &key, c, timeout) {
                Ok(v) => rec.complete(call, Outcome::Ok, v, None),
                Err(e) => rec.complete(call, Outcome::Fail, None, Some(e)),
            }
        }
        std::thread::sleep(THINK);
    }
}

/// Runs one frame-client operation and classifies it.
fn run_frame(client: &mut Client, op: Op) -> (Outcome, Option<Reply>, Option<String>) {
    let write = !matches!(op, Op::Get { .. } | Op::Scan { .. });
    match client.execute(op) {
        Ok(Reply::Cas { swapped: false, .. }) => {
            (Outcome::Fail, None, Some("cas: compare failed".into()))
        }
        Ok(r) => (Outcome::Ok, Some(r), None),
        Err(e) if write && e.maybe_applied() => (Outcome::Info, None, Some(e.to_string())),
        Err(e) => (Outcome::Fail, None, Some(e.to_string())),
    }
}

fn read_value(r: &Option<Reply>) -> Option<String> {
    match r {
        Some(Reply::Value(Some(v))) => Some(String::from_utf8_lossy(&v.value).into_owned()),
        _ => None,
    }
}

fn consistency_of(c: &str) -> Consistency {
    match c {
        "lease" => Consistency::Lease,
        "eventual" => Consistency::Eventual,
        _ => Consistency::Linearizable,
    }
}

fn frame_worker(w: u64, cfg: &WorkloadConfig, rec: &Recorder, stop: &AtomicBool) {
    let mut rng = Rng::new(cfg.seed ^ (w << 32));
    let Ok(mut client) = Client::new(frame_client_config(&cfg.nodes)) else {
        return;
    };
    let mut process = rec.new_process();
    let mut n = 0u64;
    let mut last_seen: std::collections::HashMap<String, Option<String>> = Default::default();
    while !stop.load(Ordering::SeqCst) && !rec.full() {
        let key = register_key(rng.below(cfg.register_keys as u64) as usize);
        let dice = rng.below(10);
        if dice < 4 {
            n += 1;
            let value = format!("f{w}-{n}");
            let (f, op, expected) = if dice == 0 {
                let exp = last_seen.get(&key).cloned().unwrap_or(None);
                let op = Op::CompareAndSwap {
                    key: key.clone().into_bytes(),
                    expect: CasExpect::Value(exp.clone().map(String::into_bytes)),
                    new_value: value.clone().into_bytes(),
                    session: None,
                };
                (OpFunction::Cas, op, Some(exp))
            } else {
                let op = Op::Put {
                    key: key.clone().into_bytes(),
                    value: value.clone().into_bytes(),
                    session: None,
                };
                (OpFunction::Put, op, None)
            };
            let call = rec.invoke(
                process,
                f,
                &key,
                Some(&value),
                expected.as_ref().map(|e| e.as_deref()),
                None,
                Via::Frame,
            );
            let (outcome, _, err) = run_frame(&mut client, op);
            rec.complete(call, outcome, None, err);
            if outcome == Outcome::Info {
                process = rec.new_process();
            }
        } else {
            let c = pick_consistency(&mut rng, cfg.lease_heavy);
            let call = rec.invoke(
                process,
                OpFunction::Get,
                &key,
                None,
                None,
                Some(c),
                Via::Frame,
            );
            let op = Op::Get {
                key: key.clone().into_bytes(),
                consistency: consistency_of(c),
            };
            let (outcome, reply, err) = run_frame(&mut client, op);
            let v = read_value(&reply);
            if outcome == Outcome::Ok {
                last_seen.insert(key.clone(), v.clone());
            }
            rec.complete(call, outcome, v, err);
        }
        std::thread::sleep(THINK);
    }
}

fn append_worker(
    w: u64,
    cfg: &WorkloadConfig,
    rec: &Recorder,
    stop: &AtomicBool,
    ledger: &AppendLedger,
    keys: &AppendKeys,
) {
    let mut rng = Rng::new(cfg.seed ^ (w << 32));
    let Ok(mut client) = Client::new(frame_client_config(&cfg.nodes)) else {
        return;
    };
    let mut process = rec.new_process();
    let mut n = 0u64;
    let mut gens = vec![0u64; cfg.append_keys];
    while !stop.load(Ordering::SeqCst) && !rec.full() {
        let slot = rng.below(cfg.append_keys as u64) as usize;
        let key = append_key(slot, gens[slot]);
        if let Ok(mut k) = keys.lock() {
            k.insert(key.clone());
        }
        n += 1;
        let id = format!("x{w}.{n}");
        let mut acked = false;
        let mut unknown = false;
        let mut cas_tried = false;
        for _ in 0..APPEND_ATTEMPTS {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let call = rec.invoke(
                process,
                OpFunction::Get,
                &key,
                None,
                None,
                Some("linearizable"),
                Via::Frame,
            );
            let (outcome, reply, err) = run_frame(
                &mut client,
                Op::Get {
                    key: key.clone().into_bytes(),
                    consistency: Consistency::Linearizable,
                },
            );
            let cur = read_value(&reply);
            rec.complete(call, outcome, cur.clone(), err);
            if outcome != Outcome::Ok {
                std::thread::sleep(THINK);
                continue;
            }
            if cas_tried
                && cur
                    .as_deref()
                    .unwrap_or("")
                    .split_whitespace()
                    .any(|t| t == id)
            {
                // An earlier attempt was answered "not applied", yet the id is in: stop here
                // (appending again would duplicate it); the final check reports the id.
                break;
            }
            if cur.as_deref().unwrap_or("").split_whitespace().count() >= APPEND_IDS_PER_KEY {
                // Full: this id goes to the slot's next generation (never tried here).
                gens[slot] += 1;
                break;
            }
            cas_tried = true;
            let new = format!("{}{id} ", cur.clone().unwrap_or_default());
            let call = rec.invoke(
                process,
                OpFunction::Cas,
                &key,
                Some(&new),
                Some(cur.as_deref()),
                None,
                Via::Frame,
            );
            let (outcome, _, err) = run_frame(
                &mut client,
                Op::CompareAndSwap {
                    key: key.clone().into_bytes(),
                    expect: CasExpect::Value(cur.map(String::into_bytes)),
                    new_value: new.into_bytes(),
                    session: None,
                },
            );
            rec.complete(call, outcome, None, err);
            match outcome {
                Outcome::Ok => {
                    acked = true;
                    break;
                }
                Outcome::Info => {
                    // Outcome unknown: the id may be in; trying again could add it twice.
                    unknown = true;
                    process = rec.new_process();
                    break;
                }
                Outcome::Fail => std::thread::sleep(THINK),
            }
        }
        if cas_tried {
            if let Ok(mut l) = ledger.lock() {
                l.insert(id, (acked, unknown));
            }
        }
        std::thread::sleep(THINK);
    }
}
