//! The recorded history of a run: every client call goes in as checker events (invoke, then
//! ok / fail / info) with monotonic times, and as an [`OpRecord`] for the statistics, the
//! timeline and the checks beyond linearizability.
//!
//! Invariants: event times are strictly increasing per call (an end is after its start); one
//! process number per worker, a new one after an `info` (the old operation stays pending
//! forever); eventual reads are recorded as operations but kept out of the linearizability
//! history (they may be stale by design); at most [`MAX_OPS`] operations. Owned by the fault
//! suite.

use std::sync::Mutex;
use std::time::Instant;

use crate::checker::{Event, EventType, OpFunction};

/// Most operations recorded in one run (the workers stop issuing new ones past it).
pub const MAX_OPS: usize = 2_000_000;

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

    /// Records a read call of `key` ([`Recorder::invoke`] of a get).
    pub fn invoke_read(
        &self,
        process: u64,
        key: &str,
        consistency: Option<&'static str>,
        via: Via,
    ) -> Call {
        self.invoke(process, OpFunction::Get, key, None, None, consistency, via)
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
