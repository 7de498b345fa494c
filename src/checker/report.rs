//! What a check found, for programs ([`Report`], [`KeyReport`]) and for humans (the text
//! explanation of a violation and an SVG timeline).
//!
//! An explanation names, per violating key, the longest linearizable prefix the search found
//! (operations in order, with the value after each) and the operations that could not be placed
//! after it: the earliest-returning operation not in the prefix (it had to take effect before it
//! returned) and every operation that could have gone first, each with why it could not.
//! Invariant: explanations are derived by replaying the model, never hand-written. Owned by the
//! checker.

use std::fmt;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::history::Operation;
use super::model::Model;

/// Prefix operations shown in a text explanation (the last ones before the violation).
pub const PREFIX_SHOWN_MAX: usize = 12;
/// Unplaceable operations shown per key in a text explanation.
pub const UNPLACED_SHOWN_MAX: usize = 24;
/// Operations drawn in an SVG timeline (those nearest the violation).
pub const SVG_OPS_MAX: usize = 400;

/// The answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// A sequential order explains every completed operation.
    Linearizable,
    /// No sequential order does (a proof: the search was exhaustive).
    NotLinearizable,
    /// The budget ran out first.
    Unknown,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Linearizable => "linearizable",
            Verdict::NotLinearizable => "not linearizable",
            Verdict::Unknown => "unknown",
        })
    }
}

/// One operation of a linearizable prefix, with the value after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placed {
    /// Index into [`Report::operations`].
    pub op: usize,
    /// The key's value after it.
    pub state_after: String,
}

/// An operation that could not be placed after the prefix, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unplaced {
    /// Index into [`Report::operations`].
    pub op: usize,
    /// Why.
    pub reason: String,
}

/// Why one key is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The longest linearizable prefix found, in order.
    pub prefix: Vec<Placed>,
    /// The key's value after the prefix.
    pub state: String,
    /// The operation that had to be placed next (the earliest return not in the prefix).
    pub blocking: Option<usize>,
    /// Operations that could have gone next, and why each could not.
    pub unplaced: Vec<Unplaced>,
}

/// The result for one key.
#[derive(Debug, Clone, Serialize)]
pub struct KeyReport {
    /// The key (None = the single register).
    pub key: Option<String>,
    /// Its verdict.
    pub verdict: Verdict,
    /// Its operations.
    pub operations: usize,
    /// Distinct (linearized set, state) pairs explored.
    pub states: u64,
    /// Pending writes whose value nobody observed, set aside before the search (they cannot
    /// change the verdict: `prune.rs`); counted in `operations`.
    pub pruned: usize,
    /// Why the search gave up, if it did.
    pub gave_up: Option<String>,
    /// Linearizable: a linearization (indices into [`Report::operations`]); otherwise the
    /// longest linearizable prefix found.
    pub linearization: Vec<usize>,
    /// The explanation, when not linearizable.
    pub violation: Option<Violation>,
    /// Time spent on this key.
    pub elapsed: Duration,
}

/// The result of a check.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// NotLinearizable if any key is; else Unknown if any key is; else Linearizable.
    pub verdict: Verdict,
    /// The model used.
    pub model: &'static str,
    /// Per key, in key order.
    pub keys: Vec<KeyReport>,
    /// The operations checked (failed ones and pending reads removed).
    pub operations: Vec<Operation>,
    /// Wall time of the check.
    pub elapsed: Duration,
}

impl Report {
    /// The verdict over all keys.
    pub fn combine(keys: &[KeyReport]) -> Verdict {
        if keys.iter().any(|k| k.verdict == Verdict::NotLinearizable) {
            Verdict::NotLinearizable
        } else if keys.iter().any(|k| k.verdict == Verdict::Unknown) {
            Verdict::Unknown
        } else {
            Verdict::Linearizable
        }
    }

    /// Pending operations (no return).
    pub fn pending(&self) -> usize {
        self.operations.iter().filter(|o| o.ret.is_none()).count()
    }

    /// The short explanation: the summary line, the first violation in full, and a count of
    /// the other keys that are not linearizable or unknown.
    pub fn explain_brief(&self) -> String {
        let mut out = self.summary();
        let mut others = 0;
        let mut shown = false;
        for k in &self.keys {
            match k.verdict {
                Verdict::Linearizable => {}
                Verdict::NotLinearizable if !shown => {
                    shown = true;
                    self.explain_key(&mut out, k);
                }
                _ => others += 1,
            }
        }
        if !shown {
            if let Some(k) = self.keys.iter().find(|k| k.verdict == Verdict::Unknown) {
                others -= 1;
                self.explain_key(&mut out, k);
            }
        }
        if others > 0 {
            let _ = writeln!(
                out,
                "({others} more key(s) not linearizable or unknown: --explain shows all)"
            );
        }
        out
    }

    /// The full explanation: the summary line, then every violating or unknown key in detail.
    pub fn explain(&self) -> String {
        let mut out = self.summary();
        for k in &self.keys {
            self.explain_key(&mut out, k);
        }
        out
    }

    fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} operations ({} pending{}) on {} key(s), model {}, {} states, {:.3} s",
            self.verdict,
            self.operations.len(),
            self.pending(),
            match self.keys.iter().map(|k| k.pruned).sum::<usize>() {
                0 => String::new(),
                n => format!(", {n} of them writes nobody observed, set aside"),
            },
            self.keys.len(),
            self.model,
            self.keys.iter().map(|k| k.states).sum::<u64>(),
            self.elapsed.as_secs_f64()
        );
        out
    }

    fn explain_key(&self, out: &mut String, k: &KeyReport) {
        {
            let name = key_name(&k.key);
            match k.verdict {
                Verdict::Linearizable => {}
                Verdict::Unknown => {
                    let _ = writeln!(
                        out,
                        "key {name}: unknown ({}) after {} states; longest linearizable prefix so far: {} of {} operations",
                        k.gave_up.as_deref().unwrap_or("budget spent"),
                        k.states,
                        k.linearization.len(),
                        k.operations
                    );
                }
                Verdict::NotLinearizable => {
                    let _ = writeln!(
                        out,
                        "key {name}: NOT linearizable ({} operations)",
                        k.operations
                    );
                    if let Some(v) = &k.violation {
                        self.explain_violation(out, v);
                    }
                }
            }
        }
    }

    fn explain_violation(&self, out: &mut String, v: &Violation) {
        let _ = writeln!(
            out,
            "  longest linearizable prefix: {} operation(s){}",
            v.prefix.len(),
            if v.prefix.len() > PREFIX_SHOWN_MAX {
                format!(", the last {PREFIX_SHOWN_MAX}:")
            } else {
                ":".to_string()
            }
        );
        let skip = v.prefix.len().saturating_sub(PREFIX_SHOWN_MAX);
        for (i, p) in v.prefix.iter().enumerate().skip(skip) {
            if let Some(op) = self.operations.get(p.op) {
                let _ = writeln!(out, "    {:>5}. {op}  => {}", i + 1, p.state_after);
            }
        }
        let _ = writeln!(out, "  then the value is {}, and", v.state);
        if let Some(b) = v.blocking.and_then(|b| self.operations.get(b)) {
            let _ = writeln!(
                out,
                "  this operation must take effect next (it returned): {b}"
            );
        }
        let _ = writeln!(out, "  but none of these could be placed next:");
        for u in v.unplaced.iter().take(UNPLACED_SHOWN_MAX) {
            if let Some(op) = self.operations.get(u.op) {
                let _ = writeln!(out, "    - {op}: {}", u.reason);
            }
        }
        if v.unplaced.len() > UNPLACED_SHOWN_MAX {
            let _ = writeln!(
                out,
                "    ... and {} more",
                v.unplaced.len() - UNPLACED_SHOWN_MAX
            );
        }
    }

    /// An SVG timeline of the first violating (else first unknown) key: one lane per process,
    /// each operation a bar from call to return (pending ones run to the right edge); the
    /// prefix is green, unplaceable operations red (the blocking one dark red), the rest grey.
    pub fn to_svg(&self) -> String {
        let key = self
            .keys
            .iter()
            .find(|k| k.verdict == Verdict::NotLinearizable)
            .or_else(|| self.keys.iter().find(|k| k.verdict == Verdict::Unknown))
            .or_else(|| self.keys.first());
        let Some(key) = key else {
            return svg_message("empty history");
        };
        let mut ops: Vec<&Operation> = self
            .operations
            .iter()
            .filter(|o| o.key == key.key)
            .collect();
        let prefix: std::collections::HashSet<usize> = key.linearization.iter().copied().collect();
        let (unplaced, blocking) = match &key.violation {
            Some(v) => (
                v.unplaced
                    .iter()
                    .map(|u| u.op)
                    .collect::<std::collections::HashSet<_>>(),
                v.blocking,
            ),
            None => (Default::default(), None),
        };
        // Keep the operations nearest the violation when there are too many to draw.
        if ops.len() > SVG_OPS_MAX {
            let focus = blocking
                .and_then(|b| ops.iter().position(|o| o.index == b))
                .unwrap_or(ops.len() - 1);
            let start = focus
                .saturating_sub(SVG_OPS_MAX * 3 / 4)
                .min(ops.len() - SVG_OPS_MAX);
            ops = ops[start..start + SVG_OPS_MAX].to_vec();
        }
        let t_min = ops.iter().map(|o| o.call).min().unwrap_or(0);
        let t_max = ops
            .iter()
            .map(|o| o.ret.unwrap_or(o.call))
            .max()
            .unwrap_or(0)
            .max(t_min + 1);
        let mut procs: Vec<u64> = ops.iter().map(|o| o.process).collect();
        procs.sort_unstable();
        procs.dedup();
        const LANE_PX: f64 = 28.0;
        const LEFT_PX: f64 = 90.0;
        const PLOT_PX: f64 = 1400.0;
        const TOP_PX: f64 = 40.0;
        let width = LEFT_PX + PLOT_PX + 40.0;
        let height = TOP_PX + LANE_PX * procs.len() as f64 + 20.0;
        let x = |t: u64| LEFT_PX + PLOT_PX * (t - t_min) as f64 / (t_max - t_min) as f64;
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="monospace" font-size="10">"#
        );
        let _ = writeln!(
            s,
            r#"<text x="4" y="16" font-size="13">key {} — {} ({} operations; green: linearizable prefix, red: could not be placed, dark red: must be placed next)</text>"#,
            xml(&key_name(&key.key)),
            key.verdict,
            key.operations
        );
        // The deadline of the blocking operation: it had to take effect before this line.
        if let Some(r) = blocking
            .and_then(|b| ops.iter().find(|o| o.index == b))
            .and_then(|o| o.ret)
        {
            let xr = x(r);
            let _ = writeln!(
                s,
                r##"<line x1="{xr:.1}" y1="{:.1}" x2="{xr:.1}" y2="{:.1}" stroke="#8b0000" stroke-dasharray="4,3"/><text x="{:.1}" y="{:.1}" fill="#8b0000">must have taken effect by here</text>"##,
                TOP_PX - 8.0,
                height - 4.0,
                xr + 3.0,
                TOP_PX - 10.0
            );
        }
        for (lane, p) in procs.iter().enumerate() {
            let y = TOP_PX + LANE_PX * lane as f64;
            let _ = writeln!(s, r#"<text x="4" y="{}">process {p}</text>"#, y + 14.0);
        }
        for (k, o) in ops.iter().enumerate() {
            let lane = procs.iter().position(|p| *p == o.process).unwrap_or(0);
            // Room for the label: up to the next call in the same lane.
            let room_px = ops[k + 1..]
                .iter()
                .find(|n| n.process == o.process)
                .map_or(LEFT_PX + PLOT_PX + 40.0, |n| x(n.call))
                - x(o.call);
            let y = TOP_PX + LANE_PX * lane as f64 + 2.0;
            let x0 = x(o.call);
            let x1 = match o.ret {
                Some(r) => x(r),
                None => LEFT_PX + PLOT_PX + 30.0,
            }
            .max(x0 + 2.0);
            let fill = if Some(o.index) == blocking {
                "#8b0000"
            } else if unplaced.contains(&o.index) {
                "#e04040"
            } else if prefix.contains(&o.index) {
                "#60b060"
            } else {
                "#b0b0b0"
            };
            let dash = if o.ret.is_none() {
                r#" stroke="black" stroke-dasharray="3,2""#
            } else {
                ""
            };
            let _ = writeln!(
                s,
                r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="20" fill="{fill}"{dash}><title>{}</title></rect>"#,
                x1 - x0,
                xml(&o.to_string())
            );
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
                x0 + 2.0,
                y + 14.0,
                xml(&short(&o.op.to_string(), (room_px / CHAR_PX) as usize))
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// Width of one label character in the SVG (10 px monospace).
const CHAR_PX: f64 = 6.1;

/// A label cut to `room` characters (and at most 24); empty if fewer than 2 fit.
fn short(s: &str, room: usize) -> String {
    const LABEL_CHARS_MAX: usize = 24;
    let max = room.min(LABEL_CHARS_MAX);
    if s.chars().count() <= max {
        s.to_string()
    } else if max < 2 {
        String::new()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

fn svg_message(msg: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"400\" height=\"40\"><text x=\"4\" y=\"20\">{}</text></svg>\n",
        xml(msg)
    )
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A key for humans.
pub fn key_name(key: &Option<String>) -> String {
    match key {
        None => "(register)".to_string(),
        Some(k) => format!("{k:?}"),
    }
}

/// Builds the explanation of a failed search over `ops` (one key) from its longest prefix
/// (indices into `ops`), by replaying the model.
pub fn explain_violation<M: Model>(model: &M, ops: &[Operation], prefix: &[usize]) -> Violation {
    let mut state = model.init();
    let mut placed = Vec::with_capacity(prefix.len());
    let mut in_prefix = vec![false; ops.len()];
    for &i in prefix {
        match model.step(&state, &ops[i].op) {
            Some(next) => state = next,
            None => break, // cannot happen for a prefix the search found; stop rather than lie
        }
        in_prefix[i] = true;
        placed.push(Placed {
            op: ops[i].index,
            state_after: model.describe(&state),
        });
    }
    // The earliest return not in the prefix: that operation had to be placed by then.
    let blocking = (0..ops.len())
        .filter(|&i| !in_prefix[i])
        .filter_map(|i| ops[i].ret.map(|r| (r, i)))
        .min();
    let mut unplaced = Vec::new();
    if let Some((deadline, b)) = blocking {
        for i in (0..ops.len()).filter(|&i| !in_prefix[i] && ops[i].call < deadline) {
            let reason = match model.step(&state, &ops[i].op) {
                None => format!(
                    "cannot take effect when the value is {}",
                    model.describe(&state)
                ),
                Some(_) if i == b => {
                    "could take effect here, but then the remaining operations cannot be ordered"
                        .to_string()
                }
                Some(_) => "could take effect here, but every order that continues from it fails"
                    .to_string(),
            };
            unplaced.push(Unplaced {
                op: ops[i].index,
                reason,
            });
        }
    }
    Violation {
        prefix: placed,
        state: model.describe(&state),
        blocking: blocking.map(|(_, b)| ops[b].index),
        unplaced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checker::{check_events, Budget, Event, EventType, ModelKind, OpFunction};

    fn stale_read_report() -> Report {
        use EventType::*;
        use OpFunction::*;
        let h = [
            Event::new(1, Invoke, Put).key("<k&>").value("1"),
            Event::new(1, Ok, Put).key("<k&>"),
            Event::new(2, Invoke, Put).key("<k&>").value("2"),
            Event::new(3, Invoke, Get).key("<k&>"),
            Event::new(3, Ok, Get).key("<k&>").value("1"),
            Event::new(3, Invoke, Get).key("<k&>"),
            Event::new(3, Ok, Get).key("<k&>"),
        ];
        check_events(&h, ModelKind::Kv, &Budget::default()).unwrap()
    }

    #[test]
    fn explanation_names_prefix_blocker_and_reasons() {
        let r = stale_read_report();
        assert_eq!(r.verdict, Verdict::NotLinearizable);
        let v = r.keys[0].violation.as_ref().unwrap();
        // put 1, get 1: the longest prefix. The pending put 2 nobody read is set aside (it
        // cannot make the value nil either way).
        assert_eq!(v.prefix.len(), 2, "{v:?}");
        assert_eq!(v.blocking, Some(3), "the get of nil is stuck: {v:?}");
        let text = r.explain();
        assert!(
            text.contains("longest linearizable prefix: 2 operation(s):"),
            "{text}"
        );
        assert!(text.contains("get -> nil"), "{text}");
        assert!(
            text.contains("cannot take effect when the value is \"1\""),
            "{text}"
        );
        assert!(
            text.contains("(1 pending, 1 of them writes nobody observed, set aside)"),
            "{text}"
        );
        assert_eq!(r.explain_brief(), text, "one key: brief = full");
    }

    #[test]
    fn svg_is_escaped_and_marks_the_blocker() {
        let svg = stale_read_report().to_svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("&lt;k&amp;&gt;"), "key escaped");
        assert!(!svg.contains("<k&>"), "no raw key");
        assert!(svg.contains("#8b0000"), "blocking op drawn");
        assert!(
            svg.contains("stroke-dasharray=\"3,2\""),
            "pending put drawn dashed"
        );
        assert_eq!(short("get -> \"abcdef\"", 8), "get -> …");
        assert_eq!(short("get", 1), "");
    }
}
