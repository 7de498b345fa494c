//! Client histories: the events a client saw (calls and returns), our JSON-lines format, and the
//! parsed [`History`]; `operation.rs` pairs the events into the operations the search works on.
//!
//! Invariants: an event's key and values are kept as text (numbers in the input become their
//! decimal text); a malformed line is an error naming its line and quoting at most
//! [`ERROR_TEXT_MAX_BYTES`] of it. Owned by the checker.

use std::fmt;
use std::io::Write;

use serde::{Deserialize, Deserializer, Serialize};

pub use super::operation::{pair_events, show_value, Op, Operation};

/// Most bytes of one input line quoted back in an error message.
pub const ERROR_TEXT_MAX_BYTES: usize = 200;

/// Whether an event calls an operation or reports how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The client called the operation.
    Invoke,
    /// The operation completed and took effect; for reads `value` is what it returned.
    Ok,
    /// The operation definitely did not take effect (it is dropped from the history).
    Fail,
    /// The outcome is unknown (timeout, crash): it may or may not have taken effect, at any
    /// time after its call.
    Info,
}

/// The operation an event is about. `read`/`write` belong to the register model,
/// `get`/`put`/`delete`/`append` to the kv model, `cas` to both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpFunction {
    /// Register read; `value` of the `ok` event is what it returned (null = empty).
    Read,
    /// Register write of `value`.
    Write,
    /// Compare-and-set: if the current value equals `expected` (null = empty/absent), set
    /// it to `value`. `ok` = it applied, `fail` = it did not.
    Cas,
    /// Kv get; `value` of the `ok` event is what it returned (null = key absent).
    Get,
    /// Kv put of `value`.
    Put,
    /// Kv delete.
    Delete,
    /// Kv append: the value becomes the old value (empty if absent) followed by `value`.
    Append,
}

impl OpFunction {
    /// The name used in the JSON format.
    pub fn name(self) -> &'static str {
        match self {
            OpFunction::Read => "read",
            OpFunction::Write => "write",
            OpFunction::Cas => "cas",
            OpFunction::Get => "get",
            OpFunction::Put => "put",
            OpFunction::Delete => "delete",
            OpFunction::Append => "append",
        }
    }

    /// Reads have no effect on the state.
    pub fn is_read(self) -> bool {
        matches!(self, OpFunction::Read | OpFunction::Get)
    }
}

/// One line of a history: a call or a return seen by one client process.
/// See the module docs of [`crate::checker`] for the JSON-lines format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The client process (one operation in flight at a time).
    pub process: u64,
    /// invoke, ok, fail or info.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The operation.
    pub f: OpFunction,
    /// The key (absent = the single register / key of the history).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "scalar_opt"
    )]
    pub key: Option<String>,
    /// Argument of write/put/append/cas (the new value), or result of an `ok` read/get.
    #[serde(default, deserialize_with = "scalar_opt")]
    pub value: Option<String>,
    /// The compared value of a cas (null = empty/absent).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "scalar_opt"
    )]
    pub expected: Option<String>,
    /// Monotonic nanoseconds. Either every event has it (events are ordered by it) or none
    /// does (events are ordered as listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<u64>,
}

/// Accepts a string, a number or a boolean (kept as its decimal/literal text), or null.
fn scalar_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Value>::deserialize(d)? {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(serde_json::Value::Number(n)) => Ok(Some(n.to_string())),
        Some(serde_json::Value::Bool(b)) => Ok(Some(b.to_string())),
        Some(other) => Err(D::Error::custom(format!(
            "expected a string, number or null, found {other}"
        ))),
    }
}

impl Event {
    /// A new event without time.
    pub fn new(process: u64, kind: EventType, f: OpFunction) -> Self {
        Event {
            process,
            kind,
            f,
            key: None,
            value: None,
            expected: None,
            time: None,
        }
    }

    /// Sets the key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the value.
    pub fn value(mut self, value: impl Into<String>) -> Self {
        self.value = Some(value.into());
        self
    }

    /// Sets the cas expected value.
    pub fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    /// Sets the time.
    pub fn time(mut self, time_ns: u64) -> Self {
        self.time = Some(time_ns);
        self
    }

    /// This event as one JSON line (without the newline).
    pub fn to_json_line(&self) -> String {
        // Serializing plain strings, integers and enums cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Writes events as JSON lines.
pub fn write_json_lines<W: Write>(out: &mut W, events: &[Event]) -> std::io::Result<()> {
    for e in events {
        let line = serde_json::to_string(e).map_err(std::io::Error::other)?;
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// A history that could not be read: the line (1-based), what is wrong, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryError {
    /// 1-based line number (or event number for in-memory histories); 0 = the whole input.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
    /// The offending text, cut to [`ERROR_TEXT_MAX_BYTES`].
    pub text: String,
}

impl HistoryError {
    /// An error at `line` with the given text.
    pub fn new(line: usize, reason: impl Into<String>, text: &str) -> Self {
        let mut cut = text.len().min(ERROR_TEXT_MAX_BYTES);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut quoted = text[..cut].to_string();
        if cut < text.len() {
            quoted.push('…');
        }
        HistoryError {
            line,
            reason: reason.into(),
            text: quoted,
        }
    }
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.text.is_empty() {
            write!(f, "line {}: {}", self.line, self.reason)
        } else {
            write!(f, "line {}: {}: {}", self.line, self.reason, self.text)
        }
    }
}

impl std::error::Error for HistoryError {}

/// Parses our JSON-lines format. Blank lines are skipped.
pub fn parse_json_lines(text: &str) -> Result<History, HistoryError> {
    let mut history = History::default();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let event: Event = serde_json::from_str(trimmed)
            .map_err(|e| HistoryError::new(i + 1, format!("not a history event ({e})"), line))?;
        history.push(event, i + 1, line);
    }
    Ok(history)
}

/// The history file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum Format {
    /// Our JSON lines (see the `checker` module docs).
    #[default]
    Json,
    /// A Jepsen etcd log (one register).
    JepsenEtcd,
    /// A Jepsen kv history of EDN maps.
    JepsenKv,
}

/// Parsed events, each with the line it came from.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// The events in input order.
    pub events: Vec<Event>,
    /// `lines[i]` = the 1-based line of `events[i]`.
    pub lines: Vec<usize>,
    /// `texts[i]` = the input text of `events[i]` (for error messages).
    pub texts: Vec<String>,
    /// The format they were read from.
    pub format: Format,
}

impl History {
    /// Adds an event read from `line` with the given text.
    pub fn push(&mut self, event: Event, line: usize, text: &str) {
        self.events.push(event);
        self.lines.push(line);
        self.texts.push(text.to_string());
    }

    /// A history of in-memory events: line numbers are event numbers (1-based).
    pub fn from_events(events: &[Event]) -> Self {
        History {
            events: events.to_vec(),
            lines: (1..=events.len()).collect(),
            texts: events.iter().map(Event::to_json_line).collect(),
            format: Format::Json,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_numbers() {
        let e = Event::new(3, EventType::Invoke, OpFunction::Cas)
            .key("k")
            .expected("1")
            .value("2")
            .time(7);
        let line = e.to_json_line();
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, e);
        let n: Event =
            serde_json::from_str(r#"{"process":1,"type":"ok","f":"read","key":5,"value":7}"#)
                .unwrap();
        assert_eq!(n.key.as_deref(), Some("5"));
        assert_eq!(n.value.as_deref(), Some("7"));
    }
}
