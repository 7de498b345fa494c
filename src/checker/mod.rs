//! The linearizability checker: given what clients saw (calls and returns), could one
//! sequential order explain it? Wing–Gong search with Lowe's memoization (`search.rs`), the
//! history split per key and the keys checked in parallel (`partition.rs`), against a register
//! or key-value model (`model.rs`). Answers Linearizable, NotLinearizable (a proof, with an
//! explanation: `report.rs`) or Unknown when the budget (time, states, memory) is spent — never
//! a guess.
//! Owned by the checker; `ringraft check` is its command line (`cli.rs`).
//!
//! # API for the simulator and client
//!
//! Stable from its first publication; additions only.
//!
//! ```
//! use ringraft::checker::{check_events, Budget, Event, EventType, ModelKind, OpFunction, Verdict};
//! let events = vec![
//!     Event::new(1, EventType::Invoke, OpFunction::Put).key("k").value("1").time(10),
//!     Event::new(1, EventType::Ok, OpFunction::Put).key("k").time(20),
//!     Event::new(2, EventType::Invoke, OpFunction::Get).key("k").time(30),
//!     Event::new(2, EventType::Ok, OpFunction::Get).key("k").value("1").time(40),
//! ];
//! let report = check_events(&events, ModelKind::Kv, &Budget::default()).unwrap();
//! assert_eq!(report.verdict, Verdict::Linearizable);
//! ```
//!
//! - [`Event`] (serde) is one line of a history; build it with `Event::new(..).key(..).value(..)`
//!   or struct syntax, write a file with [`write_json_lines`] or [`Event::to_json_line`].
//! - [`check_events`]`(&[Event], ModelKind, &Budget) -> Result<Report, HistoryError>`: the
//!   error is a malformed history (a return without a call, two calls in flight on one process,
//!   a write without a value, an operation the model lacks), naming the event number (1-based).
//! - [`check_file`] / [`check_text`] read any of the three formats (autodetected).
//! - [`Report`]: `verdict` ([`Verdict::Linearizable`] / `NotLinearizable` / `Unknown`),
//!   `keys` (per key: verdict, states explored, linearization or longest prefix, and
//!   [`Violation`]), `explain()` for humans, `to_svg()` for a timeline, serde `Serialize`.
//! - [`Budget`]: `time` (None = unlimited), `max_states_per_key`, `max_memory_bytes_per_key`,
//!   `threads`, `stop_at_first_violation`; build it as
//!   `Budget { time: .., ..Budget::default() }`. [`Budget::default`] = [`DEFAULT_BUDGET_MS`] ms,
//!   [`DEFAULT_MAX_STATES_PER_KEY`] states and [`DEFAULT_MAX_MEMORY_BYTES_PER_KEY`] per key,
//!   all cores, stop at the first violation. The verdict is deterministic; with more than one
//!   thread and `stop_at_first_violation`, WHICH violating keys get explained may vary between
//!   runs (use `threads: 1` for byte-identical reports).
//! - A cas whose compare failed is recorded as `fail` (it did not happen); a `fail` of any
//!   operation is dropped, so record `fail` only when the operation surely had no effect, and
//!   `info` (or nothing) when unsure.
//!
//! # Our history format: JSON lines
//!
//! One event per line, UTF-8, `\n`-separated; blank lines are skipped; unknown fields ignored:
//!
//! ```text
//! {"process":3,"type":"invoke","f":"cas","key":"k1","expected":"a","value":"b","time":1700000123}
//! {"process":3,"type":"ok","f":"cas","key":"k1","time":1700000456}
//! ```
//!
//! | field      | type                         | meaning |
//! |------------|------------------------------|---------|
//! | `process`  | integer ≥ 0                  | client process; at most one operation in flight per process |
//! | `type`     | `invoke` `ok` `fail` `info`  | call; completed and took effect; definitely did not take effect (dropped); unknown outcome (timeout, crash: may take effect at any time after the call — stays pending to the end) |
//! | `f`        | `get` `put` `delete` `append` `cas` (kv) / `read` `write` `cas` (register) | the operation; the completion repeats the call's `f` |
//! | `key`      | string or number, optional   | the key; absent = one register for the whole history |
//! | `value`    | string, number or null       | invoke of put/write/append/cas: the (new) value. ok of get/read: the value returned, null = absent/empty. Ignored elsewhere |
//! | `expected` | string, number or null       | cas only: apply if the current value equals this (null = absent) |
//! | `time`     | integer, optional            | monotonic nanoseconds. Either every event has it (events are ordered by it; equal times count as concurrent) or none (file order) |
//!
//! An invoke with no completion by the end of the file is pending, like `info`. Semantics per
//! model are in `model.rs`: a kv key starts absent (append to absent = the appended value); a
//! register starts null. Numbers are kept as their decimal text, so `1` and `"1"` are equal.
//!
//! The Jepsen formats (`../shared/histories/README.md`) are read by `parse_jepsen.rs`.

pub mod cli;
pub mod history;
pub mod model;
pub mod operation;
pub mod parse_jepsen;
pub mod partition;
pub mod prune;
pub mod report;
pub mod search;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use cli::{main, CheckArgs};
pub use history::{
    write_json_lines, Event, EventType, Format, History, HistoryError, Op, OpFunction, Operation,
};
pub use model::{Initial, KvModel, Model, ModelKind, RegisterModel, UnknownInitial};
pub use report::{KeyReport, Report, Verdict, Violation};

use search::{GaveUp, SearchLimits, SearchVerdict};

/// Default time budget of a whole check.
pub const DEFAULT_BUDGET_MS: u64 = 60_000;
/// Default cap on explored (linearized set, state) pairs per key.
pub const DEFAULT_MAX_STATES_PER_KEY: u64 = 5_000_000;
/// Default cap on the memory one key's search takes (memo cache + model states), in bytes;
/// up to `threads` keys are searched at once.
pub const DEFAULT_MAX_MEMORY_BYTES_PER_KEY: u64 = 512 << 20;
/// State budget per key of the first search round.
pub const FIRST_ROUND_STATES: u64 = 20_000;
/// Each later round allows this many times more states per key.
pub const ROUND_STATES_GROWTH: u64 = 8;
/// Largest history file read.
pub const HISTORY_FILE_BYTES_MAX: u64 = 1 << 30;

/// How much a check may spend before answering Unknown.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    /// Wall time for the whole check; None = unlimited.
    pub time: Option<Duration>,
    /// Distinct (linearized set, state) pairs explored per key before giving up.
    pub max_states_per_key: u64,
    /// Memory (memo cache + model states, estimated) per key before giving up.
    pub max_memory_bytes_per_key: u64,
    /// Worker threads (keys are checked in parallel), clamped to 1..=8.
    pub threads: usize,
    /// Stop searching the other keys once one key is proven not linearizable (they are
    /// reported Unknown, "not checked"); false = search every key to the end.
    pub stop_at_first_violation: bool,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            time: Some(Duration::from_millis(DEFAULT_BUDGET_MS)),
            max_states_per_key: DEFAULT_MAX_STATES_PER_KEY,
            max_memory_bytes_per_key: DEFAULT_MAX_MEMORY_BYTES_PER_KEY,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            stop_at_first_violation: true,
        }
    }
}

/// Checks in-memory events (our JSON format's content) against `model`.
pub fn check_events(
    events: &[Event],
    model: ModelKind,
    budget: &Budget,
) -> Result<Report, HistoryError> {
    check_history(&History::from_events(events), Some(model), budget)
}

/// Checks in-memory events whose keys held `initial` before the history began (see
/// [`Initial::Unknown`]: for histories recorded against a store that already held data).
pub fn check_events_with(
    events: &[Event],
    model: ModelKind,
    budget: &Budget,
    initial: Initial,
) -> Result<Report, HistoryError> {
    check_history_with(&History::from_events(events), Some(model), budget, initial)
}

/// Reads a history file (format autodetected unless given) and checks it.
pub fn check_file(
    path: &Path,
    format: Option<Format>,
    model: Option<ModelKind>,
    budget: &Budget,
) -> Result<Report, HistoryError> {
    let text = read_history_file(path)?;
    check_text(&text, format, model, budget)
}

/// Reads a history file to text, with a bounded size.
pub fn read_history_file(path: &Path) -> Result<String, HistoryError> {
    let unreadable = |e: String| HistoryError::new(0, format!("{}: {e}", path.display()), "");
    let meta = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
    if meta.len() > HISTORY_FILE_BYTES_MAX {
        return Err(unreadable(format!(
            "{} bytes, more than the {HISTORY_FILE_BYTES_MAX} bytes read",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        let start = bytes[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        HistoryError::new(
            line,
            "not UTF-8",
            &String::from_utf8_lossy(&bytes[start..at]),
        )
    })
}

/// Parses text (format autodetected unless given) and checks it.
pub fn check_text(
    text: &str,
    format: Option<Format>,
    model: Option<ModelKind>,
    budget: &Budget,
) -> Result<Report, HistoryError> {
    let format = match format {
        Some(f) => f,
        None => parse_jepsen::detect_format(text)?,
    };
    let history = parse_jepsen::parse(text, format)?;
    check_history(&history, model, budget)
}

/// Checks a parsed history. `model` None = inferred: register for the Jepsen etcd format or
/// when only read/write/cas occur, else kv (whose keys start as "" for the Jepsen kv format).
pub fn check_history(
    history: &History,
    model: Option<ModelKind>,
    budget: &Budget,
) -> Result<Report, HistoryError> {
    check_history_with(history, model, budget, Initial::Empty)
}

/// [`check_history`] with every key starting as `initial` instead of the model's own start.
pub fn check_history_with(
    history: &History,
    model: Option<ModelKind>,
    budget: &Budget,
    initial: Initial,
) -> Result<Report, HistoryError> {
    let ops = history::pair_events(history)?;
    let model = model.unwrap_or_else(|| match history.format {
        Format::JepsenEtcd => ModelKind::Register,
        Format::JepsenKv => ModelKind::Kv,
        Format::Json => ModelKind::infer(history.events.iter().map(|e| e.f)),
    });
    let kv = KvModel {
        initial: (history.format == Format::JepsenKv).then(String::new),
    };
    match (model, initial) {
        (ModelKind::Register, Initial::Empty) => check_model(&RegisterModel, history, ops, budget),
        (ModelKind::Kv, Initial::Empty) => check_model(&kv, history, ops, budget),
        (ModelKind::Register, Initial::Unknown) => check_model(
            &UnknownInitial {
                inner: RegisterModel,
            },
            history,
            ops,
            budget,
        ),
        (ModelKind::Kv, Initial::Unknown) => {
            check_model(&UnknownInitial { inner: kv }, history, ops, budget)
        }
    }
}

fn check_model<M: Model>(
    model: &M,
    history: &History,
    ops: Vec<Operation>,
    budget: &Budget,
) -> Result<Report, HistoryError> {
    if let Some(op) = ops.iter().find(|o| !model.supports(o.op.function())) {
        let i = history
            .lines
            .iter()
            .position(|&l| l == op.call_line)
            .unwrap_or(0);
        return Err(HistoryError::new(
            op.call_line,
            format!(
                "operation {} is not in the {} model (choose it with --model)",
                op.op.function().name(),
                model.name()
            ),
            history.texts.get(i).map(String::as_str).unwrap_or(""),
        ));
    }
    Ok(check_operations(model, ops, budget))
}

/// Checks paired operations against a model of one key, split per key, in parallel.
///
/// Keys are searched in rounds of growing state budgets ([`FIRST_ROUND_STATES`], then
/// [`ROUND_STATES_GROWTH`] times more each round, up to `budget.max_states_per_key`), so one
/// hard key cannot starve the others: an easy violation anywhere is found first. With
/// `budget.stop_at_first_violation`, keys still open when one key is proven not linearizable
/// are reported Unknown ("not checked"), and the verdict is NotLinearizable.
pub fn check_operations<M: Model>(model: &M, ops: Vec<Operation>, budget: &Budget) -> Report {
    let started = Instant::now();
    let deadline = budget.time.map(|t| started + t);
    // Pending writes nobody observed cannot change the verdict and make the search
    // exponential on a hot key: set them aside per key (see `prune.rs`).
    let mut pruned = Vec::new();
    let parts: Vec<partition::Partition> = partition::split_by_key(&ops)
        .into_iter()
        .map(|p| {
            let (kept, dropped) = prune::drop_unobserved_pending(&p.ops);
            pruned.push(dropped);
            partition::Partition {
                key: p.key,
                ops: kept,
            }
        })
        .collect();
    let cancel = AtomicBool::new(false);
    // (report, whether it may be retried with a bigger state budget)
    let mut keys: Vec<Option<(KeyReport, bool)>> = (0..parts.len()).map(|_| None).collect();
    let mut round_states = FIRST_ROUND_STATES.min(budget.max_states_per_key);
    loop {
        let todo: Vec<usize> = (0..parts.len())
            .filter(|&i| keys[i].as_ref().is_none_or(|(_, retry)| *retry))
            .collect();
        if todo.is_empty() {
            break;
        }
        let todo_parts: Vec<&partition::Partition> = todo.iter().map(|&i| &parts[i]).collect();
        let limits = SearchLimits {
            deadline,
            max_states: round_states,
            max_memory_bytes: budget.max_memory_bytes_per_key,
            cancel: Some(&cancel),
        };
        let last_round = round_states >= budget.max_states_per_key;
        let done = partition::run_parallel(&todo_parts, budget.threads, |part| {
            let r = check_key(model, part, &limits, budget, last_round);
            if r.0.verdict == Verdict::NotLinearizable && budget.stop_at_first_violation {
                cancel.store(true, Ordering::Relaxed);
            }
            r
        });
        for (i, r) in todo.into_iter().zip(done) {
            keys[i] = Some(r);
        }
        let violated = keys
            .iter()
            .flatten()
            .any(|(k, _)| k.verdict == Verdict::NotLinearizable);
        let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
        if last_round || out_of_time || (violated && budget.stop_at_first_violation) {
            break;
        }
        round_states = round_states
            .saturating_mul(ROUND_STATES_GROWTH)
            .min(budget.max_states_per_key);
    }
    let violated = keys
        .iter()
        .flatten()
        .any(|(k, _)| k.verdict == Verdict::NotLinearizable);
    let keys: Vec<KeyReport> = keys
        .into_iter()
        .zip(pruned)
        .filter_map(|(k, dropped)| k.map(|k| (k, dropped)))
        .map(|((mut k, retry), dropped)| {
            k.pruned = dropped;
            k.operations += dropped;
            if k.verdict == Verdict::Unknown {
                if violated && budget.stop_at_first_violation {
                    k.gave_up =
                        Some("not checked to the end: another key is not linearizable".into());
                } else if retry {
                    k.gave_up = Some("time budget spent".into());
                }
            }
            k
        })
        .collect();
    Report {
        verdict: Report::combine(&keys),
        model: model.name(),
        keys,
        operations: ops,
        elapsed: started.elapsed(),
    }
}

/// Searches one key; the bool is true if it gave up only because of this round's state cap.
fn check_key<M: Model>(
    model: &M,
    part: &partition::Partition,
    limits: &SearchLimits,
    budget: &Budget,
    last_round: bool,
) -> (KeyReport, bool) {
    let t0 = Instant::now();
    let res = search::search(model, &part.ops, limits);
    let mut retry = false;
    let (verdict, gave_up, violation) = match res.verdict {
        SearchVerdict::Linearizable => (Verdict::Linearizable, None, None),
        SearchVerdict::NotLinearizable => (
            Verdict::NotLinearizable,
            None,
            Some(report::explain_violation(
                model,
                &part.ops,
                &res.linearization,
            )),
        ),
        SearchVerdict::Unknown(why) => {
            let reason = match why {
                GaveUp::Time => "time budget spent".to_string(),
                GaveUp::States if last_round => {
                    format!("state budget of {} spent", budget.max_states_per_key)
                }
                GaveUp::States => {
                    retry = true;
                    format!("round state cap of {} spent", limits.max_states)
                }
                GaveUp::Memory => format!(
                    "memory budget of {} MiB spent",
                    budget.max_memory_bytes_per_key >> 20
                ),
                GaveUp::Cancelled => {
                    "not checked to the end: another key is not linearizable".to_string()
                }
            };
            (Verdict::Unknown, Some(reason), None)
        }
    };
    let report = KeyReport {
        key: part.key.clone(),
        verdict,
        operations: part.ops.len(),
        states: res.states,
        pruned: 0,
        gave_up,
        linearization: res
            .linearization
            .iter()
            .map(|&i| part.ops[i].index)
            .collect(),
        violation,
        elapsed: t0.elapsed(),
    };
    (report, retry)
}

#[cfg(test)]
mod tests;
