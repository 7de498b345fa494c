//! What a run found: the checks beyond linearizability (lost writes, writes answered "not
//! applied" that show up later, duplicate or phantom appends, stale eventual reads of values
//! never written, crash lines in node logs, nodes that died on their own, replicas that do not
//! converge), per-fault recovery times, the Markdown summary and the SVG timeline.
//!
//! Every check here is a pure function of the recorded operations (and log text), so each is
//! unit-tested on small hand-made runs. Owned by the fault suite.

use std::collections::HashMap;
use std::fmt::Write as _;

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
/// Most violations of one kind listed in full (the count is always exact).
pub const LISTED_MAX: usize = 20;

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
    /// Not violations: exits and error lines of nodes started with a WAL fault (the disk
    /// nemesis), which must stop when their WAL fails. Listed in the summary.
    pub expected: Vec<String>,
}

impl Findings {
    /// Every violation, with its kind.
    pub fn all(&self) -> Vec<(&'static str, &String)> {
        let kinds: [(&'static str, &Vec<String>); 7] = [
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

fn secs(ns: u64) -> f64 {
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

/// Counts of ok / fail / info.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Completed.
    pub ok: usize,
    /// Surely not applied.
    pub fail: usize,
    /// Unknown.
    pub info: usize,
}

/// Counts per (interface, function) and in total.
pub fn counts(ops: &[OpRecord]) -> (Counts, Vec<(String, Counts)>) {
    let mut total = Counts::default();
    let mut by: HashMap<String, Counts> = HashMap::new();
    for o in ops {
        let via = match o.via {
            Via::Http => "http",
            Via::Frame => "frame",
            Via::Final => "final",
        };
        let name = match o.consistency {
            Some(c) => format!("{via} {} ({c})", o.f.name()),
            None => format!("{via} {}", o.f.name()),
        };
        let c = by.entry(name).or_default();
        for c in [c, &mut total] {
            match o.outcome {
                Outcome::Ok => c.ok += 1,
                Outcome::Fail => c.fail += 1,
                Outcome::Info => c.info += 1,
            }
        }
    }
    let mut v: Vec<(String, Counts)> = by.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    (total, v)
}

fn ms(ns: Option<u64>) -> String {
    match ns {
        Some(n) => format!("{} ms", n / 1_000_000),
        None => "none".into(),
    }
}

/// Everything the summary shows.
#[derive(Debug)]
pub struct Summary<'a> {
    /// The verdict line.
    pub verdict: String,
    /// The command to replay.
    pub replay: String,
    /// Seed.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Seconds of workload.
    pub seconds: u64,
    /// Nemeses asked for.
    pub nemeses: String,
    /// The members at the end (the final reads and convergence checks use these).
    pub members: String,
    /// Test-only server faults switched on (negative controls), if any.
    pub unsafe_faults: Option<String>,
    /// The planned schedule, printed.
    pub schedule: Vec<String>,
    /// Faults as they happened.
    pub faults: &'a [FaultRecord],
    /// Their recovery.
    pub recovery: &'a [Recovery],
    /// All operations.
    pub ops: &'a [OpRecord],
    /// The checker's verdict and its brief explanation.
    pub checker: (String, String),
    /// Other findings.
    pub findings: &'a Findings,
}

/// The Markdown summary.
pub fn markdown(s: &Summary) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# ringraft fault suite\n\n**{}**\n", s.verdict);
    let _ = writeln!(m, "- seed {} (replay: `{}`)", s.seed, s.replay);
    let _ = writeln!(
        m,
        "- {} nodes, {} s of workload, nemeses: {}",
        s.nodes, s.seconds, s.nemeses
    );
    let _ = writeln!(
        m,
        "- members at the end: {} (final reads and convergence checked on these)",
        s.members
    );
    if let Some(u) = &s.unsafe_faults {
        let _ = writeln!(
            m,
            "- NEGATIVE CONTROL: servers run with test-only faults `{u}` (this run should fail)"
        );
    }
    let (total, by) = counts(s.ops);
    let _ = writeln!(
        m,
        "- operations: {} ({} ok, {} failed = not applied, {} unknown outcome)\n",
        s.ops.len(),
        total.ok,
        total.fail,
        total.info
    );
    let _ = writeln!(m, "## Checks\n");
    let _ = writeln!(m, "| check | result |\n|---|---|");
    let _ = writeln!(
        m,
        "| linearizability (`ringraft check`) | {} |",
        s.checker.0
    );
    let f = s.findings;
    for (name, v) in [
        (
            "lost writes (acknowledged, gone after healing)",
            &f.lost_writes,
        ),
        (
            "writes answered \"not applied\" seen later",
            &f.not_applied_seen,
        ),
        ("duplicate appends", &f.duplicates),
        ("phantom values (no client wrote them)", &f.phantoms),
        ("eventual reads of unwritten values", &f.bad_eventual_reads),
        ("crashes (log lines, unexpected exits)", &f.crashes),
        ("replicas not converged after healing", &f.divergence),
    ] {
        let _ = writeln!(m, "| {name} | {} |", v.len());
    }
    if !s.checker.1.trim().is_empty() && !s.checker.0.starts_with("linearizable") {
        let _ = writeln!(m, "\n```text\n{}\n```", s.checker.1.trim_end());
    }
    let listed = f.all();
    if !listed.is_empty() {
        let _ = writeln!(m, "\n### Violations\n");
        for (k, v) in listed.iter().take(LISTED_MAX * 3) {
            let _ = writeln!(m, "- **{k}**: {v}");
        }
    }
    if !f.expected.is_empty() {
        let _ = writeln!(
            m,
            "\n### Expected (WAL fault armed: the node must stop), not violations\n"
        );
        for v in f.expected.iter().take(LISTED_MAX) {
            let _ = writeln!(m, "- {v}");
        }
    }
    let _ = writeln!(m, "\n## Faults and recovery\n");
    let _ = writeln!(
        m,
        "Recovery: from the fault (or the heal) to the first successful write called after \
         it; gap: the longest stretch inside the fault without a successful write.\n"
    );
    let _ = writeln!(
        m,
        "| # | nemesis | target | start | heal | recovery from fault | from heal | longest gap |\n|---|---|---|---|---|---|---|---|"
    );
    for (i, (fr, r)) in s.faults.iter().zip(s.recovery).enumerate() {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {:.1} s | {:.1} s | {} | {} | {} ms |",
            i + 1,
            fr.kind,
            fr.target.replace('|', "\\|"),
            secs(fr.start_ns),
            secs(fr.end_ns),
            ms(r.from_fault_ns),
            ms(r.from_heal_ns),
            r.longest_gap_ns / 1_000_000
        );
    }
    let _ = writeln!(
        m,
        "\n## Operations\n\n| operation | ok | failed | unknown |\n|---|---|---|---|"
    );
    for (name, c) in by {
        let _ = writeln!(m, "| {name} | {} | {} | {} |", c.ok, c.fail, c.info);
    }
    let _ = writeln!(m, "\n## Schedule (seed {})\n\n```text", s.seed);
    for l in &s.schedule {
        let _ = writeln!(m, "{l}");
    }
    let _ = writeln!(m, "```\n\nFiles: `history.jsonl` (checked: `ringraft check history.jsonl --model kv`), `ops.jsonl` (every operation with its error), `eventual.jsonl`, `timeline.svg`, `checker.txt`, `work/` (configs, data, node logs).");
    m
}

/// The SVG timeline: successful and failed operations per second, p50/p99 latency of
/// successful ones, fault windows shaded and named.
pub fn svg(ops: &[OpRecord], faults: &[FaultRecord], total_ns: u64) -> String {
    const W: f64 = 1000.0;
    const PANEL_H: f64 = 160.0;
    const LEFT: f64 = 60.0;
    const TOP: f64 = 40.0;
    let total_ns = total_ns.max(1);
    let buckets = ((total_ns / 500_000_000) as usize).clamp(10, 240);
    let bucket_ns = total_ns.div_ceil(buckets as u64).max(1);
    let mut ok = vec![0usize; buckets];
    let mut bad = vec![0usize; buckets];
    let mut lat: Vec<Vec<u64>> = vec![Vec::new(); buckets];
    for o in ops.iter().filter(|o| o.via != Via::Final) {
        let b = ((o.end_ns / bucket_ns) as usize).min(buckets - 1);
        if o.outcome == Outcome::Ok {
            ok[b] += 1;
            lat[b].push(o.end_ns - o.start_ns);
        } else {
            bad[b] += 1;
        }
    }
    let per_s = |n: usize| n as f64 / (bucket_ns as f64 / 1e9);
    let max_rate = ok
        .iter()
        .chain(&bad)
        .map(|&n| per_s(n))
        .fold(1.0f64, f64::max);
    let pct = |v: &mut Vec<u64>, p: f64| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        Some(v[i] as f64 / 1e6)
    };
    let mut p50 = Vec::new();
    let mut p99 = Vec::new();
    for l in lat.iter_mut() {
        p50.push(pct(l, 0.5));
        p99.push(pct(l, 0.99));
    }
    let max_lat = p99.iter().flatten().fold(1.0f64, |a, &b| a.max(b));
    let log_max = max_lat.max(1.0).log10().ceil().max(1.0);
    let x = |t_ns: u64| LEFT + (t_ns as f64 / total_ns as f64) * (W - LEFT - 20.0);
    let y1 = |r: f64| TOP + PANEL_H - r / max_rate * PANEL_H;
    let top2 = TOP + PANEL_H + 50.0;
    // Latency axis: log10(ms) from -1 (0.1 ms) to log_max.
    let y2 = |ms: f64| {
        let l = ms.max(0.1).log10();
        top2 + PANEL_H - (l + 1.0) / (log_max + 1.0) * PANEL_H
    };
    let h = top2 + PANEL_H + 40.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    for (i, f) in faults.iter().enumerate() {
        let (a, b) = (x(f.start_ns), x(f.end_ns.max(f.start_ns)));
        // The name when it fits over the window, else the fault's number (the summary's #).
        let label = if (b - a) >= 6.0 * f.kind.len() as f64 {
            f.kind.to_string()
        } else {
            (i + 1).to_string()
        };
        let _ = writeln!(
            s,
            r##"<rect x="{a:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="#f4a261" fill-opacity="0.25"><title>#{} {} {}</title></rect><text x="{a:.1}" y="{:.1}" fill="#9a4d00" font-size="9">{label}</text>"##,
            (b - a).max(1.0),
            top2 + PANEL_H - TOP,
            i + 1,
            f.kind,
            f.target.replace('<', "&lt;").replace('>', "&gt;"),
            TOP - 4.0 - if i % 2 == 1 { 8.0 } else { 0.0 },
        );
    }
    let poly = |vals: &[Option<f64>], y: &dyn Fn(f64) -> f64, color: &str| -> String {
        let mut out = String::new();
        let mut pts = String::new();
        for (i, v) in vals.iter().enumerate() {
            let t = (i as u64 * bucket_ns) + bucket_ns / 2;
            match v {
                Some(v) => {
                    let _ = write!(pts, "{:.1},{:.1} ", x(t), y(*v));
                }
                None if !pts.is_empty() => {
                    let _ = writeln!(
                        out,
                        r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>"#
                    );
                    pts.clear();
                }
                None => {}
            }
        }
        if !pts.is_empty() {
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}"/>"#
            );
        }
        out
    };
    let okr: Vec<Option<f64>> = ok.iter().map(|&n| Some(per_s(n))).collect();
    let badr: Vec<Option<f64>> = bad.iter().map(|&n| Some(per_s(n))).collect();
    s.push_str(&poly(&okr, &y1, "#2a9d8f"));
    s.push_str(&poly(&badr, &y1, "#e63946"));
    s.push_str(&poly(&p50, &y2, "#264653"));
    s.push_str(&poly(&p99, &y2, "#8338ec"));
    // Axes and labels.
    for (top, label) in [(TOP, "operations/s"), (top2, "latency of ok ops (ms, log)")] {
        let _ = writeln!(
            s,
            r##"<rect x="{LEFT}" y="{top}" width="{:.1}" height="{PANEL_H}" fill="none" stroke="#999"/><text x="{LEFT}" y="{:.1}" fill="#333">{label}</text>"##,
            W - LEFT - 20.0,
            top + PANEL_H + 14.0
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="4" y="{:.1}">{max_rate:.0}</text><text x="4" y="{:.1}">0</text>"##,
        TOP + 10.0,
        TOP + PANEL_H
    );
    let mut d = -1.0;
    while d <= log_max {
        let v = 10f64.powf(d);
        let _ = writeln!(
            s,
            r##"<text x="4" y="{:.1}">{}</text><line x1="{LEFT}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#eee"/>"##,
            y2(v) + 4.0,
            if v < 1.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.0}")
            },
            W - 20.0,
            y2(v),
            y2(v)
        );
        d += 1.0;
    }
    let step = if total_ns > 120_000_000_000 { 60 } else { 10 };
    let mut t = 0u64;
    while t * 1_000_000_000 <= total_ns {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" fill="#666">{t}s</text>"##,
            x(t * 1_000_000_000) - 6.0,
            h - 6.0
        );
        t += step;
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="14"><tspan fill="#2a9d8f">ok/s</tspan>  <tspan fill="#e63946">failed+unknown/s</tspan>  <tspan fill="#264653">p50</tspan>  <tspan fill="#8338ec">p99</tspan>  <tspan fill="#9a4d00">faults shaded</tspan></text>"##,
        LEFT
    );
    s.push_str("</svg>\n");
    s
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
        let svg = svg(&ops, &faults, 4_000_000_000);
        assert!(svg.starts_with("<svg") && svg.contains("kill") && svg.ends_with("</svg>\n"));
    }
}
