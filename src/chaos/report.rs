//! What a run writes for people: the Markdown summary (verdict, replay command, faults with
//! their recovery times, operation counts, every violation) and the SVG timeline of operations
//! and faults.
//!
//! Invariants: rendering only reads what the run recorded; every violation kind is counted
//! exactly and at most [`LISTED_MAX`] of a kind are listed in full. Owned by the fault suite.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::findings::{secs, FaultRecord, Findings, Recovery};
use super::workload::{OpRecord, Outcome, Via};

/// Most violations of one kind listed in full (the count is always exact).
pub const LISTED_MAX: usize = 20;

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
        ("member links outside the fault proxy", &f.outside_proxy),
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
