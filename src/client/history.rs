//! The optional history recorder: every operation a client runs, written as the checker's
//! JSON-lines format (see [`crate::checker`]), so `ringraft check FILE` can judge whether what
//! the clients saw is linearizable.
//!
//! Mapping (kv model): put → `put`; get → `get` (the value read, null when absent); delete →
//! `delete`; a compare-and-swap on a value → `cas` with `expected` (`ok` when it swapped, `fail`
//! when it did not, so it took no effect); a compare-and-swap on a version has no checker
//! operation: when it swapped it is recorded as the `put` it amounted to, otherwise dropped.
//! Scans and eventual reads are not recorded (the model has no scan; eventual reads are allowed
//! to be stale). A failure is `fail` when the operation surely did not take effect and `info`
//! (outcome unknown) when a write may have been applied. Keys and values are written as UTF-8
//! text, or `0x` + hex when they are not UTF-8.
//!
//! Processes: the checker allows one operation in flight per process, so each operation takes a
//! free process number at its call and gives it back at an `ok`/`fail` return; after an `info`
//! the number is retired (that operation stays pending forever). Times are monotonic
//! nanoseconds since the recorder was made. Thread-safe; share it with `Arc` between clients.
//! Owned by the client.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use ringraft_net::message::{CasExpect, ClientOp, Consistency};

use crate::checker::{Event, EventType, OpFunction};
use crate::client::error::Error;
use crate::client::op::Reply;

/// Free process numbers kept for reuse at most (beyond it, new numbers are used).
pub(crate) const MAX_FREE_PROCESSES: usize = 65_536;

/// Keys or values as the checker's text.
pub(crate) fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => {
            let mut s = String::with_capacity(2 + 2 * bytes.len());
            s.push_str("0x");
            for b in bytes {
                s.push_str(&format!("{b:02x}"));
            }
            s
        }
    }
}

struct State {
    out: Box<dyn Write + Send>,
    free: Vec<u64>,
    next_process: u64,
    events: u64,
    error: Option<String>,
}

/// Writes a client history in the checker's JSON-lines format.
pub struct HistoryRecorder {
    t0: Instant,
    state: Mutex<State>,
}

impl std::fmt::Debug for HistoryRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryRecorder").finish_non_exhaustive()
    }
}

/// An operation whose call was recorded and whose return is still to be written.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    process: u64,
    f: OpFunction,
    key: String,
}

impl HistoryRecorder {
    /// Records into a new file at `path` (truncated).
    pub fn create(path: &Path) -> std::io::Result<Self> {
        Ok(Self::to_writer(Box::new(BufWriter::new(File::create(
            path,
        )?))))
    }

    /// Records into any writer.
    pub(crate) fn to_writer(out: Box<dyn Write + Send>) -> Self {
        HistoryRecorder {
            t0: Instant::now(),
            state: Mutex::new(State {
                out,
                free: Vec::new(),
                next_process: 0,
                events: 0,
                error: None,
            }),
        }
    }

    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    fn write(st: &mut State, e: &Event) {
        if st.error.is_some() {
            return;
        }
        let line = e.to_json_line();
        let r = st
            .out
            .write_all(line.as_bytes())
            .and_then(|_| st.out.write_all(b"\n"));
        match r {
            Ok(()) => st.events += 1,
            Err(err) => st.error = Some(err.to_string()),
        }
    }

    /// Records the call of `op`; `None` when the operation is not recorded.
    pub(crate) fn invoke(&self, op: &ClientOp) -> Option<Pending> {
        let (f, key, value, expected) = match op {
            ClientOp::Put { key, value, .. } => (OpFunction::Put, key, Some(value), None),
            ClientOp::Get { key, consistency } => {
                // Not checked: an eventual read may legally be stale.
                if *consistency == Consistency::Eventual {
                    return None;
                }
                (OpFunction::Get, key, None, None)
            }
            ClientOp::Delete { key, .. } => (OpFunction::Delete, key, None, None),
            ClientOp::CompareAndSwap {
                key,
                expect: CasExpect::Value(exp),
                new_value,
                ..
            } => (OpFunction::Cas, key, Some(new_value), Some(exp.as_deref())),
            ClientOp::CompareAndSwap {
                key,
                expect: CasExpect::Version(_),
                new_value,
                ..
            } => (OpFunction::Put, key, Some(new_value), None),
            // Not checked: the checker's model is a single-key register. A transaction spans
            // keys, and a leased key can vanish without a recorded delete (its lease expired).
            // A watch is not an operation (`execute` refuses it).
            ClientOp::Scan { .. }
            | ClientOp::Txn { .. }
            | ClientOp::PutLease { .. }
            | ClientOp::LeaseGrant { .. }
            | ClientOp::LeaseKeepAlive { .. }
            | ClientOp::LeaseRevoke { .. }
            | ClientOp::LeaseList
            | ClientOp::Watch { .. } => return None,
        };
        let mut st = self.state.lock().ok()?;
        // Times are taken under the lock, so a process number handed back by `complete` is
        // reused only by a call stamped after that return.
        let time = self.now_ns();
        let process = match st.free.pop() {
            Some(p) => p,
            None => {
                st.next_process += 1;
                st.next_process - 1
            }
        };
        let key = text(key);
        let mut e = Event::new(process, EventType::Invoke, f)
            .key(key.clone())
            .time(time);
        if let Some(v) = value {
            e = e.value(text(v));
        }
        if let Some(x) = expected {
            e.expected = x.map(text);
        }
        Self::write(&mut st, &e);
        Some(Pending { process, f, key })
    }

    /// Records how the operation ended.
    pub(crate) fn complete(&self, p: Pending, result: &Result<Reply, Error>) {
        let (kind, value) = match result {
            Ok(Reply::Value(v)) => (EventType::Ok, v.as_ref().map(|v| text(&v.value))),
            Ok(Reply::Cas { swapped: false, .. }) => (EventType::Fail, None),
            Ok(_) => (EventType::Ok, None),
            Err(e) if e.maybe_applied() && !p.f.is_read() => (EventType::Info, None),
            Err(_) => (EventType::Fail, None),
        };
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let time = self.now_ns();
        let mut e = Event::new(p.process, kind, p.f).key(p.key).time(time);
        e.value = value;
        Self::write(&mut st, &e);
        if kind != EventType::Info && st.free.len() < MAX_FREE_PROCESSES {
            st.free.push(p.process);
        }
    }

    /// Events written so far.
    pub fn events(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.events)
    }

    /// Flushes the file; reports the first write error, if any happened.
    pub fn flush(&self) -> std::io::Result<()> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| std::io::Error::other("history recorder lock poisoned"))?;
        if let Some(e) = &st.error {
            return Err(std::io::Error::other(e.clone()));
        }
        st.out.flush()
    }
}

impl Drop for HistoryRecorder {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{check_text, Budget, Verdict};
    use ringraft_net::message::Versioned;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn put(k: &str, v: &str) -> ClientOp {
        ClientOp::Put {
            key: k.into(),
            value: v.into(),
            session: None,
        }
    }
    fn get(k: &str) -> ClientOp {
        ClientOp::Get {
            key: k.into(),
            consistency: Consistency::Linearizable,
        }
    }
    fn val(v: &str) -> Reply {
        Reply::Value(Some(Versioned {
            value: v.into(),
            version: 1,
        }))
    }

    #[test]
    fn recorded_histories_are_read_and_judged_by_the_checker() {
        let buf = Shared::default();
        let rec = HistoryRecorder::to_writer(Box::new(buf.clone()));
        let p = rec.invoke(&put("k", "1")).unwrap();
        rec.complete(p, &Ok(Reply::Written { version: 1 }));
        let p = rec.invoke(&get("k")).unwrap();
        rec.complete(p, &Ok(val("1")));
        let cas = ClientOp::CompareAndSwap {
            key: "k".into(),
            expect: CasExpect::Value(Some("1".into())),
            new_value: "2".into(),
            session: None,
        };
        let p = rec.invoke(&cas).unwrap();
        rec.complete(
            p,
            &Ok(Reply::Cas {
                swapped: true,
                current: None,
            }),
        );
        // A write with an unknown outcome stays pending; its process is retired.
        let p = rec.invoke(&put("k", "3")).unwrap();
        let lost = p.process;
        rec.complete(
            p,
            &Err(Error::Timeout {
                elapsed_ms: 1,
                attempts: 1,
                maybe_applied: true,
                last: "x".into(),
            }),
        );
        let p = rec.invoke(&get("k")).unwrap();
        assert_ne!(p.process, lost);
        rec.complete(p, &Ok(val("3")));
        assert!(rec
            .invoke(&ClientOp::Get {
                key: "k".into(),
                consistency: Consistency::Eventual
            })
            .is_none());
        rec.flush().unwrap();
        assert_eq!(rec.events(), 10);
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let report = check_text(&text, None, None, &Budget::default()).unwrap();
        assert_eq!(report.verdict, Verdict::Linearizable, "{text}");

        // The same recorder output with an impossible read is caught.
        let buf = Shared::default();
        let rec = HistoryRecorder::to_writer(Box::new(buf.clone()));
        let p = rec.invoke(&put("k", "1")).unwrap();
        rec.complete(p, &Ok(Reply::Written { version: 1 }));
        let p = rec.invoke(&get("k")).unwrap();
        rec.complete(p, &Ok(val("0")));
        rec.flush().unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let report = check_text(&text, None, None, &Budget::default()).unwrap();
        assert_eq!(report.verdict, Verdict::NotLinearizable, "{text}");
    }

    #[test]
    fn concurrent_clients_never_overlap_on_a_process() {
        let buf = Shared::default();
        let rec = Arc::new(HistoryRecorder::to_writer(Box::new(buf.clone())));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let p = rec.invoke(&put(&format!("k{}", i % 3), &format!("{t}-{i}")));
                        rec.complete(p.unwrap(), &Ok(Reply::Written { version: 1 }));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        rec.flush().unwrap();
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        // The checker refuses a process with two calls in flight; it must read this history.
        let report = check_text(&text, None, None, &Budget::default());
        assert!(report.is_ok(), "{:?}", report.err());
    }

    #[test]
    fn non_utf8_bytes_become_hex() {
        assert_eq!(text(b"abc"), "abc");
        assert_eq!(text(&[0xff, 0x00]), "0xff00");
    }
}
