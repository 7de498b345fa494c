//! The pairing of a history's events into [`Operation`]s, the unit the search works on: what
//! each operation did ([`Op`]), when it was called and when it returned.
//!
//! Invariants kept by [`pair_events`]: every returned operation has a call position strictly
//! before its return position (positions are ranks in the time-ordered event sequence, ties broken
//! so that calls come first, i.e. equal timestamps count as concurrent); a process has at most
//! one operation in flight; a `fail` completion removes its operation (it did not happen); an
//! `info` completion or no completion at all leaves the operation pending (return = never), and a
//! pending read has no effect, so it is dropped. Owned by the checker.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::history::{EventType, History, HistoryError, OpFunction};

/// What an operation did, with its arguments and (for reads) its result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase", tag = "f")]
pub enum Op {
    /// Register read that returned `observed` (None = empty).
    Read { observed: Option<String> },
    /// Register write.
    Write { value: String },
    /// Compare-and-set that applied (or, if pending, may have).
    Cas {
        expected: Option<String>,
        new: String,
    },
    /// Kv get that returned `observed` (None = absent).
    Get { observed: Option<String> },
    /// Kv put.
    Put { value: String },
    /// Kv delete.
    Delete,
    /// Kv append.
    Append { value: String },
}

impl Op {
    /// The function of this op.
    pub fn function(&self) -> OpFunction {
        match self {
            Op::Read { .. } => OpFunction::Read,
            Op::Write { .. } => OpFunction::Write,
            Op::Cas { .. } => OpFunction::Cas,
            Op::Get { .. } => OpFunction::Get,
            Op::Put { .. } => OpFunction::Put,
            Op::Delete => OpFunction::Delete,
            Op::Append { .. } => OpFunction::Append,
        }
    }
}

/// Characters of a value shown to humans; longer values show their end and their length.
pub const VALUE_SHOWN_CHARS_MAX: usize = 48;

/// A value for humans: `nil`, or quoted, long ones cut to their last characters.
pub fn show_value(v: Option<&str>) -> String {
    match v {
        None => "nil".to_string(),
        Some(s) => {
            let n = s.chars().count();
            if n <= VALUE_SHOWN_CHARS_MAX {
                format!("{s:?}")
            } else {
                let tail: String = s.chars().skip(n - VALUE_SHOWN_CHARS_MAX).collect();
                format!("\"…{}\" ({} bytes)", tail.escape_debug(), s.len())
            }
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<String>| show_value(v.as_deref());
        let val = |v: &String| show_value(Some(v));
        match self {
            Op::Read { observed } => write!(f, "read -> {}", show(observed)),
            Op::Write { value } => write!(f, "write {}", val(value)),
            Op::Cas { expected, new } => write!(f, "cas {} -> {}", show(expected), val(new)),
            Op::Get { observed } => write!(f, "get -> {}", show(observed)),
            Op::Put { value } => write!(f, "put {}", val(value)),
            Op::Delete => write!(f, "delete"),
            Op::Append { value } => write!(f, "append {}", val(value)),
        }
    }
}

/// One operation: its call, its return (if it completed) and what it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Operation {
    /// Index in the history's operation list (stable across partitioning).
    pub index: usize,
    /// The client process.
    pub process: u64,
    /// The key (None = the single register of the history).
    pub key: Option<String>,
    /// What it did.
    pub op: Op,
    /// Position of the call in the ordered event sequence.
    pub call: u64,
    /// Position of the return; None = pending (timed out, crashed): it may or may not have
    /// taken effect, at any time after its call.
    pub ret: Option<u64>,
    /// Input line of the call.
    pub call_line: usize,
    /// Input line of the return (of the `info` event for a timed-out operation).
    pub return_line: Option<usize>,
}

impl Operation {
    /// Whether the operation completed (`ok`).
    pub fn is_completed(&self) -> bool {
        self.ret.is_some()
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "process {} {}", self.process, self.op)?;
        match self.return_line {
            Some(r) if self.ret.is_some() => write!(f, " (lines {}..{})", self.call_line, r),
            Some(r) => write!(
                f,
                " (line {}, outcome unknown at line {}: pending)",
                self.call_line, r
            ),
            None => write!(f, " (line {}, never returned: pending)", self.call_line),
        }
    }
}

/// Pairs calls with returns. See the module docs for the rules.
pub fn pair_events(history: &History) -> Result<Vec<Operation>, HistoryError> {
    let events = &history.events;
    let err = |i: usize, reason: String| {
        let line = history.lines.get(i).copied().unwrap_or(i + 1);
        let text = history.texts.get(i).map(String::as_str).unwrap_or("");
        HistoryError::new(line, reason, text)
    };
    // Order: by time when every event has one (calls before returns on equal times), else as listed.
    let timed = events.iter().filter(|e| e.time.is_some()).count();
    let mut order: Vec<usize> = (0..events.len()).collect();
    if timed == events.len() {
        order.sort_by_key(|&i| {
            let e = &events[i];
            (e.time, e.kind != EventType::Invoke, i)
        });
    } else if timed > 0 {
        let first = events.iter().position(|e| e.time.is_none()).unwrap_or(0);
        return Err(err(
            first,
            "some events have a time and this one has none (all or none must)".to_string(),
        ));
    }

    struct InFlight {
        event: usize,
    }
    let mut in_flight: HashMap<u64, InFlight> = HashMap::new();
    let mut ops: Vec<Operation> = Vec::new();
    // (event index of the invoke, completion event index or None)
    let mut finished: Vec<(usize, Option<usize>)> = Vec::new();
    let mut position_of = vec![0u64; events.len()];
    for (pos, &i) in order.iter().enumerate() {
        position_of[i] = pos as u64;
        let e = &events[i];
        match e.kind {
            EventType::Invoke => {
                if let Some(prev) = in_flight.get(&e.process) {
                    let prev_line = history.lines.get(prev.event).copied().unwrap_or(0);
                    return Err(err(
                        i,
                        format!(
                            "process {} calls again while its call at line {prev_line} is in flight",
                            e.process
                        ),
                    ));
                }
                in_flight.insert(e.process, InFlight { event: i });
            }
            EventType::Ok | EventType::Fail | EventType::Info => {
                let Some(call) = in_flight.remove(&e.process) else {
                    return Err(err(
                        i,
                        format!("process {} returns with no call in flight", e.process),
                    ));
                };
                let c = &events[call.event];
                if c.f != e.f {
                    return Err(err(
                        i,
                        format!("returns {} for a call of {}", e.f.name(), c.f.name()),
                    ));
                }
                if e.key.is_some() && e.key != c.key {
                    return Err(err(i, "returns for another key than its call".to_string()));
                }
                finished.push((call.event, Some(i)));
            }
        }
    }
    for call in in_flight.into_values() {
        finished.push((call.event, None));
    }
    finished.sort_by_key(|&(call, _)| position_of[call]);

    for (call, done) in finished {
        let c = &events[call];
        let kind = done.map(|d| events[d].kind).unwrap_or(EventType::Info);
        if kind == EventType::Fail {
            continue;
        }
        let completed = kind == EventType::Ok;
        let need_value = |what: &str| -> Result<String, HistoryError> {
            c.value
                .clone()
                .ok_or_else(|| err(call, format!("{what} without a value")))
        };
        let op = match c.f {
            OpFunction::Read | OpFunction::Get => {
                if !completed {
                    continue; // a read that may not have happened has no effect
                }
                let observed = done.and_then(|d| events[d].value.clone());
                if c.f == OpFunction::Read {
                    Op::Read { observed }
                } else {
                    Op::Get { observed }
                }
            }
            OpFunction::Write => Op::Write {
                value: need_value("write")?,
            },
            OpFunction::Put => Op::Put {
                value: need_value("put")?,
            },
            OpFunction::Append => Op::Append {
                value: need_value("append")?,
            },
            OpFunction::Delete => Op::Delete,
            OpFunction::Cas => Op::Cas {
                expected: c.expected.clone(),
                new: need_value("cas")?,
            },
        };
        let index = ops.len();
        ops.push(Operation {
            index,
            process: c.process,
            key: c.key.clone(),
            op,
            call: position_of[call],
            ret: if completed {
                done.map(|d| position_of[d])
            } else {
                None
            },
            call_line: history.lines.get(call).copied().unwrap_or(call + 1),
            return_line: done.map(|d| history.lines.get(d).copied().unwrap_or(d + 1)),
        });
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::history::Event;

    #[test]
    fn pairing_rules() {
        let h = History::from_events(&[
            Event::new(1, EventType::Invoke, OpFunction::Write).value("a"),
            Event::new(2, EventType::Invoke, OpFunction::Write).value("b"),
            Event::new(3, EventType::Invoke, OpFunction::Read),
            Event::new(4, EventType::Invoke, OpFunction::Cas)
                .expected("a")
                .value("c"),
            Event::new(1, EventType::Ok, OpFunction::Write),
            Event::new(2, EventType::Info, OpFunction::Write),
            Event::new(3, EventType::Ok, OpFunction::Read).value("a"),
            Event::new(4, EventType::Fail, OpFunction::Cas),
            Event::new(5, EventType::Invoke, OpFunction::Read),
        ]);
        let ops = pair_events(&h).unwrap();
        assert_eq!(ops.len(), 3, "{ops:?}"); // failed cas and pending read dropped
        assert_eq!(ops[0].ret, Some(4));
        assert_eq!(ops[1].ret, None);
        assert_eq!(ops[1].return_line, Some(6));
        assert_eq!(
            ops[2].op,
            Op::Read {
                observed: Some("a".into())
            }
        );
    }

    #[test]
    fn pairing_errors_name_the_line() {
        let h = History::from_events(&[
            Event::new(1, EventType::Invoke, OpFunction::Write).value("a"),
            Event::new(1, EventType::Invoke, OpFunction::Write).value("b"),
        ]);
        assert_eq!(pair_events(&h).unwrap_err().line, 2);
        let h = History::from_events(&[Event::new(1, EventType::Ok, OpFunction::Write)]);
        assert_eq!(pair_events(&h).unwrap_err().line, 1);
        let h = History::from_events(&[
            Event::new(1, EventType::Invoke, OpFunction::Write),
            Event::new(1, EventType::Ok, OpFunction::Write),
        ]);
        assert!(pair_events(&h)
            .unwrap_err()
            .reason
            .contains("without a value"));
    }

    #[test]
    fn time_orders_and_ties_are_concurrent() {
        let h = History::from_events(&[
            Event::new(1, EventType::Ok, OpFunction::Write).time(10),
            Event::new(1, EventType::Invoke, OpFunction::Write)
                .value("a")
                .time(5),
            Event::new(2, EventType::Invoke, OpFunction::Read).time(10),
            Event::new(2, EventType::Ok, OpFunction::Read).time(12),
        ]);
        let ops = pair_events(&h).unwrap();
        // The read's call at t=10 sorts before the write's return at t=10: they overlap.
        assert!(ops[1].call < ops[0].ret.unwrap());
        let bad = History::from_events(&[
            Event::new(1, EventType::Invoke, OpFunction::Write)
                .value("a")
                .time(5),
            Event::new(1, EventType::Ok, OpFunction::Write),
        ]);
        assert_eq!(pair_events(&bad).unwrap_err().line, 2);
    }
}
