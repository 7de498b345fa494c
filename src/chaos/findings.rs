//! What a run found besides the linearizability verdict: lost writes, writes answered "not
//! applied" that show up later, duplicate or phantom appends, stale eventual reads of values
//! never written, crash lines in node logs, nodes that died on their own, replicas that do not
//! converge; and how long the cluster took to recover from each fault.
//!
//! Invariants: every check is a pure function of the recorded operations (and log text), so each
//! is unit-tested on small hand-made runs; a finding is a violation unless it is listed in
//! [`Findings::expected`] (the crash-stop of a node whose WAL was made to fail). Owned by the
//! fault suite.

use std::collections::HashMap;

use super::workload::{OpRecord, Outcome, Via};

/// Log lines that mean a node crashed or stopped a core (the panic hook, a fatal WAL error).
pub const CRASH_PATTERNS: [&str; 5] = [
    "panicked at",
    "panic:",
    "core stopped:",
    "core failed:",
    "WAL sync failed",
];
/// The crash patterns that are panics: a violation even while a WAL fault is armed.
pub const PANIC_PATTERNS: [&str; 2] = ["panicked at", "panic:"];

/// A fault as it happened.
#[derive(Debug, Clone)]
pub struct FaultRecord {
    /// Kind name.
    pub kind: &'static str,
    /// What it struck, resolved ("n2", "{n1} | {n2,n3}").
    pub target: String,
    /// Start (ns since the workload's start).
    pub start_ns: u64,
    /// Heal.
    pub end_ns: u64,
}

/// Recovery after one fault.
#[derive(Debug, Clone, Copy)]
pub struct Recovery {
    /// From the fault's start to the first successful write called after it (None: none).
    pub from_fault_ns: Option<u64>,
    /// From the heal to the first successful write called after it.
    pub from_heal_ns: Option<u64>,
    /// Longest stretch inside the fault window with no successful write completing.
    pub longest_gap_ns: u64,
}

/// Recovery times of each fault.
pub fn recovery(faults: &[FaultRecord], ops: &[OpRecord]) -> Vec<Recovery> {
    let mut writes: Vec<(u64, u64)> = ops
        .iter()
        .filter(|o| o.is_write() && o.outcome == Outcome::Ok)
        .map(|o| (o.start_ns, o.end_ns))
        .collect();
    writes.sort_unstable();
    faults
        .iter()
        .map(|f| {
            let first_after = |t: u64| {
                writes
                    .iter()
                    .filter(|(s, _)| *s >= t)
                    .map(|(_, e)| e - t)
                    .min()
            };
            let mut ends: Vec<u64> = writes
                .iter()
                .map(|w| w.1)
                .filter(|e| *e >= f.start_ns && *e <= f.end_ns)
                .collect();
            ends.sort_unstable();
            let mut gap = 0;
            let mut prev = f.start_ns;
            for e in ends.iter().copied().chain([f.end_ns]) {
                gap = gap.max(e - prev);
                prev = e;
            }
            Recovery {
                from_fault_ns: first_after(f.start_ns),
                from_heal_ns: first_after(f.end_ns),
                longest_gap_ns: gap,
            }
        })
        .collect()
}

/// Violations found by the checks of this module, by kind.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    /// Acknowledged writes missing after healing.
    pub lost_writes: Vec<String>,
    /// Writes answered "not applied" whose value was seen later.
    pub not_applied_seen: Vec<String>,
    /// Append ids present more than once.
    pub duplicates: Vec<String>,
    /// Values or ids present that no client sent.
    pub phantoms: Vec<String>,
    /// Eventual reads of a value never written to the key.
    pub bad_eventual_reads: Vec<String>,
    /// Crash lines in node logs and nodes that exited on their own.
    pub crashes: Vec<String>,
    /// Replicas whose local state did not converge after healing.
    pub divergence: Vec<String>,
    /// Links between members that bypass the fault proxy: the run's network faults could not
    /// reach them, so its verdict would not cover them (a defect of the suite's set-up).
    pub outside_proxy: Vec<String>,
    /// Not violations: exits and error lines of nodes started with a WAL fault (the disk
    /// nemesis), which must stop when their WAL fails. Listed in the summary.
    pub expected: Vec<String>,
}

impl Findings {
    /// Every violation, with its kind.
    pub fn all(&self) -> Vec<(&'static str, &String)> {
        let kinds: [(&'static str, &Vec<String>); 8] = [
            ("lost write", &self.lost_writes),
            ("not-applied write seen", &self.not_applied_seen),
            ("duplicate append", &self.duplicates),
            ("phantom value", &self.phantoms),
            (
                "eventual read of an unwritten value",
                &self.bad_eventual_reads,
            ),
            ("crash", &self.crashes),
            ("replicas diverge", &self.divergence),
            ("link outside the fault proxy", &self.outside_proxy),
        ];
        kinds
            .iter()
            .flat_map(|(k, v)| v.iter().map(move |s| (*k, s)))
            .collect()
    }

    /// Number of violations.
    pub fn count(&self) -> usize {
        self.all().len()
    }
}

pub(super) fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// Register checks: not-applied writes seen, eventual reads of unwritten values, lost writes
/// and phantoms at the final read. `is_append_key` keys are left to [`check_appends`].
pub fn check_registers(ops: &[OpRecord], is_append_key: impl Fn(&str) -> bool, f: &mut Findings) {
    let mut writes: HashMap<&str, Vec<&OpRecord>> = HashMap::new();
    for o in ops
        .iter()
        .filter(|o| o.is_write() && !is_append_key(&o.key))
    {
        writes.entry(o.key.as_str()).or_default().push(o);
    }
    let value_of = |key: &str, v: &str| -> Option<&OpRecord> {
        writes
            .get(key)?
            .iter()
            .copied()
            .find(|w| w.value.as_deref() == Some(v))
    };
    // A "not applied" write seen by reads: reported once, with its first read and the count.
    let mut seen_failed: HashMap<(&str, &str), (&OpRecord, &OpRecord, usize)> = HashMap::new();
    for r in ops
        .iter()
        .filter(|o| !o.is_write() && o.outcome == Outcome::Ok && !is_append_key(&o.key))
    {
        let Some(v) = r.value.as_deref() else {
            continue;
        };
        match value_of(&r.key, v) {
            Some(w) if w.outcome == Outcome::Fail => {
                let e = seen_failed.entry((r.key.as_str(), v)).or_insert((w, r, 0));
                if r.end_ns < e.1.end_ns {
                    e.1 = r;
                }
                e.2 += 1;
            }
            Some(_) => {}
            None if r.consistency == Some("eventual") => f.bad_eventual_reads.push(format!(
                "key {}: eventual read at t={:.3}s returned {v:?}, which no client wrote",
                r.key,
                secs(r.end_ns)
            )),
            None => f.phantoms.push(format!(
                "key {}: read at t={:.3}s returned {v:?}, which no client wrote",
                r.key,
                secs(r.end_ns)
            )),
        }
    }
    let mut seen_failed: Vec<_> = seen_failed.into_iter().collect();
    seen_failed.sort_by_key(|(_, (w, _, _))| w.start_ns);
    for ((key, v), (w, r, n)) in seen_failed {
        f.not_applied_seen.push(format!(
            "key {key}: {} {v:?} called at t={:.3}s was answered \"not applied\" at t={:.3}s ({}), \
             yet {n} read(s) returned it, the first a {} read at t={:.3}s",
            w.f.name(),
            secs(w.start_ns),
            secs(w.end_ns),
            w.error.as_deref().unwrap_or("?"),
            r.consistency.unwrap_or("final"),
            secs(r.end_ns)
        ));
    }
    // Lost writes: the final read must show a write that no acknowledged write followed.
    for fin in ops.iter().filter(|o| {
        o.via == Via::Final && o.outcome == Outcome::Ok && !o.is_write() && !is_append_key(&o.key)
    }) {
        let ws = writes.get(fin.key.as_str()).cloned().unwrap_or_default();
        let acked: Vec<&&OpRecord> = ws.iter().filter(|w| w.outcome == Outcome::Ok).collect();
        let survivor_end = match fin.value.as_deref() {
            None => None,
            Some(v) => match value_of(&fin.key, v) {
                Some(w) => Some(w.end_ns),
                None => continue, // reported as a phantom above
            },
        };
        let lost: Vec<&&&OpRecord> = acked
            .iter()
            .filter(|a| survivor_end.is_none_or(|end| a.start_ns > end))
            .collect();
        if let Some(last) = lost.iter().max_by_key(|a| a.end_ns) {
            f.lost_writes.push(format!(
                "key {}: {} acknowledged write(s) gone; the last, {} {:?} acknowledged at \
                 t={:.3}s, was overwritten by nothing newer: the final read returned {:?}",
                fin.key,
                lost.len(),
                last.f.name(),
                last.value.as_deref().unwrap_or(""),
                secs(last.end_ns),
                fin.value
            ));
        }
    }
}

/// What the append workers attempted: id → (acknowledged, outcome unknown).
pub type Ledger = HashMap<String, (bool, bool)>;

/// Append checks on the final values of the append keys (`finals`: key → value).
pub fn check_appends(ledger: &Ledger, finals: &HashMap<String, Option<String>>, f: &mut Findings) {
    let mut seen: HashMap<&str, (usize, Vec<&str>)> = HashMap::new();
    for (key, v) in finals {
        for id in v.as_deref().unwrap_or("").split_whitespace() {
            let e = seen.entry(id).or_default();
            e.0 += 1;
            e.1.push(key);
        }
    }
    let mut ids: Vec<&String> = ledger.keys().collect();
    ids.sort();
    for id in ids {
        let (acked, unknown) = ledger[id];
        let (count, keys) = seen.get(id.as_str()).cloned().unwrap_or_default();
        if acked && count == 0 {
            f.lost_writes
                .push(format!("append {id}: acknowledged, missing from every key"));
        }
        if count > 1 {
            f.duplicates.push(format!(
                "append {id}: present {count} times (keys {keys:?})"
            ));
        }
        if !acked && !unknown && count > 0 {
            f.not_applied_seen.push(format!(
                "append {id}: every attempt was answered \"not applied\", yet it is present"
            ));
        }
    }
    let mut phantom: Vec<&&str> = seen
        .keys()
        .filter(|id| !ledger.contains_key(**id))
        .collect();
    phantom.sort();
    for id in phantom {
        f.phantoms
            .push(format!("append id {id:?} is present but no client sent it"));
    }
}

/// Crash lines in a node's log text.
pub fn crash_lines(file: &str, text: &str, f: &mut Findings) {
    for line in text.lines() {
        if CRASH_PATTERNS.iter().any(|p| line.contains(p)) {
            let cut: String = line.chars().take(300).collect();
            f.crashes.push(format!("{file}: {cut}"));
        }
    }
}

/// Crash lines in the log text of a node incarnation started with a WAL fault: the node must
/// stop with an error when its WAL fails, so such lines are expected (into `f.expected`), except
/// panics, which stay violations (a failing disk must never make the node panic).
pub fn wal_fault_crash_lines(file: &str, text: &str, f: &mut Findings) {
    for line in text.lines() {
        if !CRASH_PATTERNS.iter().any(|p| line.contains(p)) {
            continue;
        }
        let cut: String = line.chars().take(300).collect();
        if PANIC_PATTERNS.iter().any(|p| line.contains(p)) {
            f.crashes.push(format!("{file}: {cut}"));
        } else {
            f.expected.push(format!("{file}: {cut}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::OpFunction;

    fn op(f: OpFunction, key: &str, v: Option<&str>, out: Outcome, t: (u64, u64)) -> OpRecord {
        OpRecord {
            start_ns: t.0 * 1_000_000,
            end_ns: t.1 * 1_000_000,
            f,
            key: key.into(),
            value: v.map(String::from),
            outcome: out,
            via: Via::Http,
            consistency: if f.is_read() {
                Some("linearizable")
            } else {
                None
            },
            error: None,
        }
    }
    fn final_read(key: &str, v: Option<&str>, t: u64) -> OpRecord {
        let mut o = op(OpFunction::Get, key, v, Outcome::Ok, (t, t + 1));
        o.via = Via::Final;
        o.consistency = None;
        o
    }

    #[test]
    fn lost_not_applied_and_phantom_writes_are_found() {
        use OpFunction::*;
        use Outcome::*;
        let base = vec![
            op(Put, "k", Some("1"), Ok, (0, 10)),
            op(Put, "k", Some("2"), Ok, (20, 30)),
            op(Put, "k", Some("3"), Fail, (40, 50)),
            op(Put, "k", Some("4"), Info, (60, 70)),
        ];
        let no_append = |_: &str| false;
        // Clean: the final read shows the last acknowledged write, or the unknown one.
        for v in ["2", "4"] {
            let mut ops = base.clone();
            ops.push(final_read("k", Some(v), 100));
            let mut f = Findings::default();
            check_registers(&ops, no_append, &mut f);
            assert_eq!(f.count(), 0, "{f:?}");
        }
        // The final read shows an older value: write 2 is lost.
        let mut ops = base.clone();
        ops.push(final_read("k", Some("1"), 100));
        let mut f = Findings::default();
        check_registers(&ops, no_append, &mut f);
        assert_eq!(f.lost_writes.len(), 1, "{f:?}");
        // Absent at the end: lost too.
        let mut ops = base.clone();
        ops.push(final_read("k", None, 100));
        let mut f = Findings::default();
        check_registers(&ops, no_append, &mut f);
        assert_eq!(f.lost_writes.len(), 1, "{f:?}");
        // A write answered "not applied" that a read sees.
        let mut ops = base.clone();
        ops.push(op(Get, "k", Some("3"), Ok, (80, 90)));
        ops.push(op(Get, "k", Some("3"), Ok, (91, 95)));
        let mut f = Findings::default();
        check_registers(&ops, no_append, &mut f);
        assert_eq!(f.not_applied_seen.len(), 1, "{f:?}");
        assert!(f.not_applied_seen[0].contains("2 read(s)"), "{f:?}");
        // An eventual read of a value nobody wrote; a linearizable one is a phantom.
        let mut ops = base.clone();
        let mut e = op(Get, "k", Some("zz"), Ok, (80, 90));
        e.consistency = Some("eventual");
        ops.push(e);
        ops.push(op(Get, "k", Some("yy"), Ok, (80, 90)));
        let mut f = Findings::default();
        check_registers(&ops, no_append, &mut f);
        assert_eq!(f.bad_eventual_reads.len(), 1, "{f:?}");
        assert_eq!(f.phantoms.len(), 1, "{f:?}");
    }

    #[test]
    fn appends_lost_duplicated_or_phantom_are_found() {
        let mut ledger = Ledger::new();
        ledger.insert("x1.1".into(), (true, false));
        ledger.insert("x1.2".into(), (false, true));
        ledger.insert("x1.3".into(), (false, false));
        let finals = |v: &str| HashMap::from([("a0".to_string(), Some(v.to_string()))]);
        let mut f = Findings::default();
        check_appends(&ledger, &finals("x1.1 x1.2 "), &mut f);
        assert_eq!(f.count(), 0, "{f:?}");
        let mut f = Findings::default();
        check_appends(&ledger, &finals("x1.2 "), &mut f);
        assert_eq!(f.lost_writes.len(), 1);
        let mut f = Findings::default();
        check_appends(&ledger, &finals("x1.1 x1.1 x1.3 x9.9 "), &mut f);
        assert_eq!(f.duplicates.len(), 1, "{f:?}");
        assert_eq!(f.not_applied_seen.len(), 1, "{f:?}");
        assert_eq!(f.phantoms.len(), 1, "{f:?}");
    }

    #[test]
    fn crash_lines_and_recovery_times() {
        let mut f = Findings::default();
        crash_lines("n1.out", "INFO fine\nERROR panic: boom at x.rs:1\n", &mut f);
        assert_eq!(f.crashes.len(), 1);
        // Under an armed WAL fault the node's stop message is expected, a panic is not.
        let mut g = Findings::default();
        wal_fault_crash_lines(
            "n2.disk1.out",
            "INFO up\nERROR core failed: WAL sync failed: EIO\nthread 'c' panicked at a.rs:1\n",
            &mut g,
        );
        assert_eq!(g.expected.len(), 1, "{g:?}");
        assert!(g.expected[0].contains("WAL sync failed"));
        assert_eq!(g.crashes.len(), 1, "{g:?}");
        assert_eq!(g.count(), 1, "expected lines are not violations");
        let ops = vec![
            op(OpFunction::Put, "k", Some("1"), Outcome::Ok, (0, 5)),
            op(OpFunction::Put, "k", Some("2"), Outcome::Ok, (1_500, 1_600)),
            op(OpFunction::Put, "k", Some("3"), Outcome::Ok, (3_000, 3_010)),
        ];
        let faults = [FaultRecord {
            kind: "kill",
            target: "n1".into(),
            start_ns: 1_000_000_000,
            end_ns: 2_000_000_000,
        }];
        let r = recovery(&faults, &ops);
        assert_eq!(r[0].from_fault_ns, Some(600_000_000));
        assert_eq!(r[0].from_heal_ns, Some(1_010_000_000));
        assert_eq!(r[0].longest_gap_ns, 600_000_000);
        // The timeline draws the same records.
        let svg = crate::chaos::report::svg(&ops, &faults, 4_000_000_000);
        assert!(svg.starts_with("<svg") && svg.contains("kill") && svg.ends_with("</svg>\n"));
    }
}
