//! The suite's clients and what they saw. Three kinds of worker thread run at once:
//! - **HTTP registers**: put / get (linearizable, lease, eventual) of a few register keys
//!   through the node's JSON API, each request to a random node (followers forward);
//! - **frame registers**: the same through the exactly-once frame client, plus compare-and-set;
//! - **appends**: each worker appends unique ids to a few keys with the frame client, as
//!   read + compare-and-set loops (a session makes each cas exactly-once across retries).
//!
//! Every operation goes into the [`Recorder`] (`recorder.rs`). The two register workers run one
//! loop (`register_worker`) over a `RegisterPath`, the HTTP API or the frame client.
//!
//! Classification of answers (the suite's contract with the server): a write is `fail` only
//! when the answer says it was not applied (HTTP 400/404/421/429, 503 "not leader", a request
//! never sent; a client error that is not `maybe_applied`, a cas that did not swap); a timeout,
//! a lost connection, a 504 or another 5xx is `info` (outcome unknown). A `fail` write whose
//! value is seen later is a violation (see `findings.rs`). Values are unique per write.
//! Owned by the fault suite.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::checker::OpFunction;
use crate::client::{CasExpect, Client, ClientConfig, ClientOp as Op, Consistency, Reply};

use super::http::{encode, request, HttpOutcome};
pub use super::recorder::{Call, OpRecord, Outcome, Recorder, Via, MAX_OPS};
use super::schedule::Rng;

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

/// One register worker's way to the cluster: the HTTP API (a random node per operation) or
/// the frame client. [`register_worker`] runs the same loop over either.
trait RegisterPath {
    /// Which interface the operations go through (in the records).
    const VIA: Via;
    /// First letter of the values this path writes (values are unique per write).
    const TAG: char;
    /// Called once per operation after its key is drawn (the HTTP path draws its node here).
    fn choose(&mut self, rng: &mut Rng);
    /// The write for `dice` (0..4) on `key`: its function and, for a cas, the expected value.
    fn plan_write(&self, key: &str, dice: u64) -> (OpFunction, Option<Option<String>>);
    /// Makes the planned write: its outcome and error text.
    fn write(&mut self, w: Write) -> (Outcome, Option<String>);
    /// Reads `key` at `consistency`: outcome, value, error text.
    fn read(&mut self, key: &str, consistency: &'static str) -> Read;
}

/// How a read ended: outcome, the value read (None: absent or failed), the error text.
type Read = (Outcome, Option<String>, Option<String>);

/// A planned register write.
struct Write {
    f: OpFunction,
    key: String,
    value: String,
    /// The expected value of a cas (None: not a cas).
    expected: Option<Option<String>>,
}

/// The HTTP path: JSON API requests to a random node each (followers forward).
struct HttpPath {
    nodes: Vec<SocketAddr>,
    node: SocketAddr,
    timeout: Duration,
}

impl RegisterPath for HttpPath {
    const VIA: Via = Via::Http;
    const TAG: char = 'h';

    fn choose(&mut self, rng: &mut Rng) {
        self.node = self.nodes[rng.below(self.nodes.len() as u64) as usize];
    }

    fn plan_write(&self, _: &str, _: u64) -> (OpFunction, Option<Option<String>>) {
        (OpFunction::Put, None)
    }

    fn write(&mut self, w: Write) -> (Outcome, Option<String>) {
        let body = serde_json::json!({ "key": w.key, "value": w.value }).to_string();
        http_write_outcome(&request(
            self.node,
            "POST",
            "/put",
            Some(&body),
            self.timeout,
        ))
    }

    fn read(&mut self, key: &str, consistency: &'static str) -> Read {
        match http_get_within(self.node, key, consistency, self.timeout) {
            Ok(v) => (Outcome::Ok, v, None),
            Err(e) => (Outcome::Fail, None, Some(e)),
        }
    }
}

/// The frame path: the exactly-once frame client; one write in four is a compare-and-set that
/// expects the value this worker last read.
struct FramePath {
    client: Client,
    last_seen: std::collections::HashMap<String, Option<String>>,
}

impl RegisterPath for FramePath {
    const VIA: Via = Via::Frame;
    const TAG: char = 'f';

    fn choose(&mut self, _: &mut Rng) {}

    fn plan_write(&self, key: &str, dice: u64) -> (OpFunction, Option<Option<String>>) {
        if dice == 0 {
            let exp = self.last_seen.get(key).cloned().unwrap_or(None);
            (OpFunction::Cas, Some(exp))
        } else {
            (OpFunction::Put, None)
        }
    }

    fn write(&mut self, w: Write) -> (Outcome, Option<String>) {
        let (key, new_value) = (w.key.into_bytes(), w.value.into_bytes());
        let op = match (w.f, w.expected) {
            (OpFunction::Cas, Some(exp)) => Op::CompareAndSwap {
                key,
                expect: CasExpect::Value(exp.map(String::into_bytes)),
                new_value,
                session: None,
            },
            _ => Op::Put {
                key,
                value: new_value,
                session: None,
            },
        };
        let (outcome, _, err) = run_frame(&mut self.client, op);
        (outcome, err)
    }

    fn read(&mut self, key: &str, consistency: &'static str) -> Read {
        let r = frame_read(&mut self.client, key, consistency_of(consistency));
        if r.0 == Outcome::Ok {
            self.last_seen.insert(key.to_string(), r.1.clone());
        }
        r
    }
}

/// A register worker: until `stop`, draws a key and either writes a unique value to it (four
/// times in ten) or reads it at a drawn consistency, recording every call.
fn register_worker<P: RegisterPath>(
    w: u64,
    cfg: &WorkloadConfig,
    rec: &Recorder,
    stop: &AtomicBool,
    mut path: P,
) {
    let mut rng = Rng::new(cfg.seed ^ (w << 32));
    let mut process = rec.new_process();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) && !rec.full() {
        let key = register_key(rng.below(cfg.register_keys as u64) as usize);
        path.choose(&mut rng);
        let dice = rng.below(10);
        if dice < 4 {
            n += 1;
            let value = format!("{}{w}-{n}", P::TAG);
            let (f, expected) = path.plan_write(&key, dice);
            let call = rec.invoke(
                process,
                f,
                &key,
                Some(&value),
                expected.as_ref().map(|e| e.as_deref()),
                None,
                P::VIA,
            );
            let (outcome, err) = path.write(Write {
                f,
                key,
                value,
                expected,
            });
            rec.complete(call, outcome, None, err);
            if outcome == Outcome::Info {
                process = rec.new_process();
            }
        } else {
            let c = pick_consistency(&mut rng, cfg.lease_heavy);
            let call = rec.invoke_read(process, &key, Some(c), P::VIA);
            let (outcome, v, err) = path.read(&key, c);
            rec.complete(call, outcome, v, err);
        }
        std::thread::sleep(THINK);
    }
}

/// The HTTP register worker.
fn http_worker(w: u64, cfg: &WorkloadConfig, rec: &Recorder, stop: &AtomicBool) {
    let Some(&node) = cfg.nodes.first() else {
        return;
    };
    let timeout = if cfg.lease_heavy {
        LEASE_HEAVY_HTTP_TIMEOUT
    } else {
        HTTP_TIMEOUT
    };
    let path = HttpPath {
        nodes: cfg.nodes.clone(),
        node,
        timeout,
    };
    register_worker(w, cfg, rec, stop, path);
}

/// The frame register worker.
fn frame_worker(w: u64, cfg: &WorkloadConfig, rec: &Recorder, stop: &AtomicBool) {
    let Ok(client) = Client::new(frame_client_config(&cfg.nodes)) else {
        return;
    };
    let path = FramePath {
        client,
        last_seen: Default::default(),
    };
    register_worker(w, cfg, rec, stop, path);
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

/// One frame-client read of `key`: outcome, value, error text.
fn frame_read(client: &mut Client, key: &str, consistency: Consistency) -> Read {
    let op = Op::Get {
        key: key.as_bytes().to_vec(),
        consistency,
    };
    let (outcome, reply, err) = run_frame(client, op);
    (outcome, read_value(&reply), err)
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
            let call = rec.invoke_read(process, &key, Some("linearizable"), Via::Frame);
            let (outcome, cur, err) = frame_read(&mut client, &key, Consistency::Linearizable);
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
