//! Benchmark results: the summary of one run (counts, throughput, latency percentiles from an
//! hdrhistogram), printed as a table or as the one-line JSON object, the full percentile
//! distribution as CSV, and a latency-by-percentile plot as a self-contained SVG.
//!
//! Latencies are recorded in nanoseconds (3 significant digits, up to [`MAX_LATENCY_NS`]) and
//! reported in microseconds. Owned by the client.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histogram tracks (larger values are clamped to it).
pub(crate) const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// Significant digits the histogram keeps.
pub(crate) const HISTOGRAM_SIGNIFICANT_DIGITS: u8 = 3;
/// Percentile ticks per halving of the distance to 100% in the distribution output.
pub(crate) const PERCENTILE_TICKS_PER_HALF_DISTANCE: u32 = 5;

/// A latency histogram in nanoseconds.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1_000, MAX_LATENCY_NS, HISTOGRAM_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are within hdrhistogram's accepted range")
}

/// Records `ns` (clamped into range).
pub(crate) fn record(h: &mut Histogram<u64>, ns: u64) {
    let _ = h.record(ns.clamp(1_000, MAX_LATENCY_NS));
}

/// The one-line JSON result of a run (field order and names are part of the interface).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Summary {
    /// Workload name.
    pub(crate) op: String,
    /// Read consistency (`none` for put-only workloads).
    pub(crate) consistency: String,
    /// Connections (clients).
    pub(crate) connections: usize,
    /// Requests in flight in total.
    pub(crate) inflight: usize,
    /// Requests measured.
    pub(crate) total: u64,
    /// Requests that succeeded.
    pub(crate) ok: u64,
    /// Requests that failed.
    pub(crate) errors: u64,
    /// Measured wall time.
    pub(crate) elapsed_s: f64,
    /// Successful requests per second.
    pub(crate) ops_per_s: f64,
    /// Median latency.
    pub(crate) p50_us: f64,
    /// 90th percentile.
    pub(crate) p90_us: f64,
    /// 99th percentile.
    pub(crate) p99_us: f64,
    /// 99.9th percentile.
    pub(crate) p999_us: f64,
    /// Maximum.
    pub(crate) max_us: f64,
    /// CPU time of the node processes (`--cpu-pids`) per successful request, all together.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) node_cpu_us_per_op: Option<f64>,
}

fn us(ns: u64) -> f64 {
    (ns as f64 / 100.0).round() / 10.0
}

impl Summary {
    /// Builds the summary of a run.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        op: &str,
        consistency: &str,
        connections: usize,
        inflight: usize,
        ok: u64,
        errors: u64,
        elapsed_s: f64,
        h: &Histogram<u64>,
    ) -> Self {
        let q = |p: f64| {
            if h.is_empty() {
                0.0
            } else {
                us(h.value_at_quantile(p))
            }
        };
        Summary {
            op: op.to_string(),
            consistency: consistency.to_string(),
            connections,
            inflight,
            total: ok + errors,
            ok,
            errors,
            elapsed_s: (elapsed_s * 1000.0).round() / 1000.0,
            ops_per_s: if elapsed_s > 0.0 {
                (ok as f64 / elapsed_s).round()
            } else {
                0.0
            },
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if h.is_empty() { 0.0 } else { us(h.max()) },
            node_cpu_us_per_op: None,
        }
    }

    /// The JSON line.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A human-readable table.
    pub(crate) fn to_table(&self) -> String {
        format!(
            "workload     {} (consistency {})\n\
             clients      {} connection(s), {} in flight\n\
             requests     {} ok, {} errors in {:.2} s\n\
             throughput   {:.0} ops/s\n\
             latency µs   p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}\n",
            self.op,
            self.consistency,
            self.connections,
            self.inflight,
            self.ok,
            self.errors,
            self.elapsed_s,
            self.ops_per_s,
            self.p50_us,
            self.p90_us,
            self.p99_us,
            self.p999_us,
            self.max_us
        ) + &self.node_cpu_us_per_op.map_or(String::new(), |c| {
            format!("node CPU     {c:.1} µs per request\n")
        })
    }
}

/// The percentile distribution: `(percentile in [0, 100], latency µs)` points.
pub(crate) fn distribution(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut pts: Vec<(f64, f64)> = h
        .iter_quantiles(PERCENTILE_TICKS_PER_HALF_DISTANCE)
        .map(|v| (v.quantile_iterated_to() * 100.0, us(v.value_iterated_to())))
        .collect();
    pts.dedup_by(|a, b| a.0 == b.0);
    pts
}

/// The distribution as CSV (`percentile,latency_us`).
pub(crate) fn distribution_csv(h: &Histogram<u64>) -> String {
    let mut s = String::from("percentile,latency_us\n");
    for (p, l) in distribution(h) {
        s.push_str(&format!("{p:.6},{l:.1}\n"));
    }
    s
}

/// Parses a CSV written by [`distribution_csv`].
pub(crate) fn parse_distribution_csv(text: &str) -> Result<Vec<(f64, f64)>, String> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            let (a, b) = l
                .split_once(',')
                .ok_or_else(|| format!("line {}: expected percentile,latency_us", i + 2))?;
            let p = a
                .trim()
                .parse::<f64>()
                .map_err(|e| format!("line {}: {e}", i + 2))?;
            let v = b
                .trim()
                .parse::<f64>()
                .map_err(|e| format!("line {}: {e}", i + 2))?;
            Ok((p, v))
        })
        .collect()
}

/// Escapes text for SVG.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Series colours of the plot.
const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
];
/// Highest "nines" the x axis shows (99.999%).
const MAX_NINES: f64 = 5.0;

/// A latency-by-percentile plot (x: percentile on the usual 1/(1-p) log scale, y: µs, log
/// scale) of one or more named series, as a standalone SVG document.
pub(crate) fn svg_plot(title: &str, series: &[(String, Vec<(f64, f64)>)]) -> String {
    let (w, h) = (760.0_f64, 420.0_f64);
    let (l, r, t, b) = (70.0, 170.0, 40.0, 50.0);
    let pw = w - l - r;
    let ph = h - t - b;
    let nines = |p: f64| -> f64 {
        let rest = (1.0 - p / 100.0).max(1e-9);
        (-rest.log10()).clamp(0.0, MAX_NINES)
    };
    let all: Vec<f64> = series
        .iter()
        .flat_map(|(_, pts)| pts.iter().map(|p| p.1))
        .filter(|v| *v > 0.0)
        .collect();
    let lo = all.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = all.iter().cloned().fold(0.0, f64::max);
    let (lo, hi) = if all.is_empty() {
        (1.0, 10.0)
    } else {
        (lo, hi)
    };
    let ylo = 10f64.powf(lo.log10().floor());
    let yhi = 10f64.powf(hi.log10().ceil()).max(ylo * 10.0);
    let x = |p: f64| l + nines(p) / MAX_NINES * pw;
    let y = |v: f64| {
        let v = v.max(ylo);
        t + ph - (v.log10() - ylo.log10()) / (yhi.log10() - ylo.log10()) * ph
    };
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{}</text>\n",
        l + pw / 2.0,
        esc(title)
    );
    // Grid and axes.
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"]
        .iter()
        .enumerate()
    {
        let gx = l + i as f64 / MAX_NINES * pw;
        s.push_str(&format!(
            "<line x1=\"{gx:.1}\" y1=\"{t}\" x2=\"{gx:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{gx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{label}</text>\n",
            t + ph,
            t + ph + 18.0
        ));
    }
    let mut dec = ylo;
    while dec <= yhi * 1.0001 {
        let gy = y(dec);
        s.push_str(&format!(
            "<line x1=\"{l}\" y1=\"{gy:.1}\" x2=\"{:.1}\" y2=\"{gy:.1}\" stroke=\"#ddd\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            l + pw,
            l - 6.0,
            gy + 4.0,
            if dec >= 1.0 {
                format!("{dec:.0}")
            } else {
                format!("{dec}")
            }
        ));
        dec *= 10.0;
    }
    s.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">percentile</text>\n\
         <text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">latency (µs, log scale)</text>\n\
         <rect x=\"{l}\" y=\"{t}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>\n",
        l + pw / 2.0,
        h - 8.0,
        t + ph / 2.0,
        t + ph / 2.0
    ));
    for (i, (name, pts)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = pts
            .iter()
            .filter(|(p, _)| nines(*p) < MAX_NINES || *p >= 100.0)
            .map(|(p, v)| format!("{:.1},{:.1}", x(*p), y(*v)))
            .collect();
        if !path.is_empty() {
            s.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
                path.join(" ")
            ));
        }
        let ly = t + 10.0 + i as f64 * 18.0;
        s.push_str(&format!(
            "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            l + pw + 12.0,
            l + pw + 32.0,
            l + pw + 38.0,
            ly + 4.0,
            esc(name)
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_percentiles_and_json_fields() {
        let mut h = new_histogram();
        for i in 1..=1000u64 {
            record(&mut h, i * 1_000);
        }
        let s = Summary::new("put", "none", 1, 4, 1000, 2, 2.0, &h);
        assert_eq!(s.total, 1002);
        assert_eq!(s.ops_per_s, 500.0);
        assert!((s.p50_us - 500.0).abs() < 2.0, "{}", s.p50_us);
        assert!((s.p99_us - 990.0).abs() < 2.0, "{}", s.p99_us);
        assert!((s.max_us - 1000.0).abs() < 2.0);
        let j: serde_json::Value = serde_json::from_str(&s.to_json()).unwrap();
        for f in [
            "op",
            "consistency",
            "connections",
            "inflight",
            "total",
            "ok",
            "errors",
            "elapsed_s",
            "ops_per_s",
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
            "max_us",
        ] {
            assert!(j.get(f).is_some(), "missing {f}");
        }
    }

    #[test]
    fn distribution_round_trips_and_plots() {
        let mut h = new_histogram();
        for i in 1..=10_000u64 {
            record(&mut h, 50_000 + i * 10);
        }
        let d = distribution(&h);
        assert!(d.len() > 10);
        assert!(d.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1));
        let back = parse_distribution_csv(&distribution_csv(&h)).unwrap();
        assert_eq!(back.len(), d.len());
        let svg = svg_plot("put <test>", &[("ringraft".into(), d)]);
        assert!(
            svg.starts_with("<svg") && svg.contains("polyline") && svg.contains("&lt;test&gt;")
        );
        assert!(parse_distribution_csv("percentile,latency_us\nx,1\n").is_err());
    }
}
