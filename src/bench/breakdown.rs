//! `ringraft bench --breakdown`: where the measured writes' time went on each node, stage by
//! stage. Every node's `/metrics` (its client port answers HTTP) is read right before and right
//! after the measured phase; the difference of the `ringraft_write_stage_seconds` histograms
//! is what the measured phase added, and each stage's p50/p99 are read from it (interpolated
//! inside the bucket holding the rank, so within the bucket's width, under 25 % of the value).
//!
//! Stages (see the node's `StageMetrics`): on the leader received → proposed → locally
//! durable / committed → applied → answered; on a follower append received → durable →
//! acknowledged. Scraping costs the nodes one HTTP request each, outside the measured phase.
//! Owned by the benchmark.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The histogram family the nodes publish the stages in.
pub(crate) const STAGE_METRIC: &str = "ringraft_write_stage_seconds";
/// The counter of writes committed before the leader's own sync covering them completed.
pub(crate) const COMMIT_FIRST_METRIC: &str = "ringraft_write_commit_before_local_durable_total";
/// Largest `/metrics` answer read (a node's whole exposition is tens of KiB).
pub(crate) const MAX_METRICS_BYTES: usize = 16 << 20;
/// Connect, read and write timeout of one scrape.
pub(crate) const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// One stage's histogram: cumulative counts by upper bound (seconds), and the sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StageHist {
    /// (upper bound in seconds, cumulative count), ascending; +Inf last as `f64::INFINITY`.
    pub(crate) buckets: Vec<(f64, u64)>,
    /// Sum of the observed seconds.
    pub(crate) sum: f64,
}

impl StageHist {
    /// Observations.
    pub(crate) fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |b| b.1)
    }

    /// What `self` (later) added over `before` (earlier); buckets both lack are dropped.
    pub(crate) fn minus(&self, before: &StageHist) -> StageHist {
        let buckets = self
            .buckets
            .iter()
            .map(|&(le, n)| {
                let b = before
                    .buckets
                    .iter()
                    .find(|(l, _)| *l == le)
                    .map_or(0, |x| x.1);
                (le, n.saturating_sub(b))
            })
            .collect();
        StageHist {
            buckets,
            sum: (self.sum - before.sum).max(0.0),
        }
    }

    /// The q-quantile in seconds (0 when empty), interpolated linearly inside its bucket; a
    /// rank in the +Inf bucket reads as the largest finite bound.
    pub(crate) fn quantile(&self, q: f64) -> f64 {
        let n = self.count();
        if n == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * n as f64).max(1.0);
        let (mut lo, mut below) = (0.0, 0u64);
        for &(le, cum) in &self.buckets {
            if cum as f64 >= rank {
                if le.is_infinite() {
                    return lo;
                }
                let inside = (cum - below) as f64;
                let frac = if inside > 0.0 {
                    (rank - below as f64) / inside
                } else {
                    1.0
                };
                return lo + (le - lo) * frac;
            }
            lo = if le.is_finite() { le } else { lo };
            below = cum;
        }
        lo
    }
}

/// What one scrape found: the stage histograms by stage label, and the commit-first counter.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Scrape {
    /// By stage label.
    pub(crate) stages: BTreeMap<String, StageHist>,
    /// Writes committed before the leader's own sync covering them completed.
    pub(crate) commit_first: u64,
    /// Writes applied (sum of the proposals counter), for the share above.
    pub(crate) proposals: u64,
}

fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = labels[start..].find('"')? + start;
    Some(&labels[start..end])
}

/// Parses the stage histograms and counters out of a Prometheus text exposition; lines it
/// does not know are skipped.
pub(crate) fn parse(text: &str) -> Scrape {
    let mut out = Scrape::default();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if name == COMMIT_FIRST_METRIC {
            out.commit_first += value.parse::<u64>().unwrap_or(0);
            continue;
        }
        if name == "ringraft_proposals_total" {
            out.proposals += value.parse::<u64>().unwrap_or(0);
            continue;
        }
        let Some(suffix) = name.strip_prefix(STAGE_METRIC) else {
            continue;
        };
        let Some(stage) = label(labels, "stage") else {
            continue;
        };
        let h = out.stages.entry(stage.to_string()).or_default();
        match suffix {
            "_bucket" => {
                let le = match label(labels, "le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(v) => match v.parse::<f64>() {
                        Ok(v) => v,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                if let Ok(n) = value.parse::<u64>() {
                    h.buckets.push((le, n));
                }
            }
            "_sum" => h.sum = value.parse::<f64>().unwrap_or(0.0),
            _ => {}
        }
    }
    for h in out.stages.values_mut() {
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// Reads `http://<endpoint>/metrics` (plain HTTP/1.1, `Connection: close`).
pub(crate) fn scrape(endpoint: &str) -> Result<String, String> {
    let addr = endpoint
        .to_socket_addrs()
        .map_err(|e| format!("{endpoint}: {e}"))?
        .next()
        .ok_or_else(|| format!("{endpoint}: no address"))?;
    let mut s = TcpStream::connect_timeout(&addr, SCRAPE_TIMEOUT)
        .map_err(|e| format!("{endpoint}: connect: {e}"))?;
    s.set_read_timeout(Some(SCRAPE_TIMEOUT)).ok();
    s.set_write_timeout(Some(SCRAPE_TIMEOUT)).ok();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {endpoint}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("{endpoint}: send: {e}"))?;
    let mut body = Vec::new();
    s.take(MAX_METRICS_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("{endpoint}: read: {e}"))?;
    if body.len() > MAX_METRICS_BYTES {
        return Err(format!(
            "{endpoint}: /metrics over {MAX_METRICS_BYTES} bytes"
        ));
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let Some((head, rest)) = text.split_once("\r\n\r\n") else {
        return Err(format!("{endpoint}: no HTTP answer"));
    };
    if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
        let first = head.lines().next().unwrap_or("");
        return Err(format!("{endpoint}: /metrics answered {first}"));
    }
    Ok(rest.to_string())
}

/// Every endpoint's scrape (an endpoint that fails is reported and left out).
pub(crate) fn scrape_all(endpoints: &[String]) -> Vec<(String, Option<Scrape>)> {
    endpoints
        .iter()
        .map(|e| match scrape(e) {
            Ok(t) => (e.clone(), Some(parse(&t))),
            Err(err) => {
                eprintln!("ringraft bench: --breakdown: {err}");
                (e.clone(), None)
            }
        })
        .collect()
}

fn us(s: f64) -> String {
    format!("{:.1}", s * 1e6)
}

/// The Markdown table of what the measured phase added on each node: per stage the count,
/// p50, p99 and mean (µs), then per node the share of writes committed before the leader's
/// own sync finished.
pub(crate) fn table(
    before: &[(String, Option<Scrape>)],
    after: &[(String, Option<Scrape>)],
) -> String {
    let mut o = String::from(
        "| node | stage | count | p50 µs | p99 µs | mean µs |\n|---|---|---|---|---|---|\n",
    );
    let mut notes = String::new();
    for ((ep, b), (_, a)) in before.iter().zip(after) {
        let (Some(b), Some(a)) = (b, a) else {
            o.push_str(&format!("| {ep} | (not scraped) | | | | |\n"));
            continue;
        };
        for (stage, ah) in &a.stages {
            let d = ah.minus(b.stages.get(stage).unwrap_or(&StageHist::default()));
            let n = d.count();
            if n == 0 {
                continue;
            }
            o.push_str(&format!(
                "| {ep} | {stage} | {n} | {} | {} | {} |\n",
                us(d.quantile(0.5)),
                us(d.quantile(0.99)),
                us(d.sum / n as f64)
            ));
        }
        let writes = a.proposals.saturating_sub(b.proposals);
        if writes > 0 {
            let first = a.commit_first.saturating_sub(b.commit_first);
            notes.push_str(&format!(
                "- {ep}: {first} of {writes} writes ({:.1} %) committed before the leader's own WAL sync covering them completed\n",
                first as f64 * 100.0 / writes as f64
            ));
        }
    }
    if !notes.is_empty() {
        o.push('\n');
        o.push_str(&notes);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = "\
# TYPE ringraft_write_stage_seconds histogram
ringraft_write_stage_seconds_bucket{node=\"1\",stage=\"proposed_to_committed\",le=\"0.0001\"} 10
ringraft_write_stage_seconds_bucket{node=\"1\",stage=\"proposed_to_committed\",le=\"0.0002\"} 10
ringraft_write_stage_seconds_bucket{node=\"1\",stage=\"proposed_to_committed\",le=\"+Inf\"} 10
ringraft_write_stage_seconds_sum{node=\"1\",stage=\"proposed_to_committed\"} 0.0005
ringraft_write_stage_seconds_count{node=\"1\",stage=\"proposed_to_committed\"} 10
ringraft_proposals_total{node=\"1\"} 10
ringraft_write_commit_before_local_durable_total{node=\"1\"} 1
";
    const AFTER: &str = "\
ringraft_write_stage_seconds_bucket{node=\"1\",stage=\"proposed_to_committed\",le=\"0.0001\"} 10
ringraft_write_stage_seconds_bucket{node=\"1\",stage=\"proposed_to_committed\",le=\"0.0002\"} 110
ringraft_write_stage_seconds_bucket{node=\"1\",stage=\"proposed_to_committed\",le=\"+Inf\"} 111
ringraft_write_stage_seconds_sum{node=\"1\",stage=\"proposed_to_committed\"} 0.0205
ringraft_proposals_total{node=\"1\"} 111
ringraft_write_commit_before_local_durable_total{node=\"1\"} 26
";

    #[test]
    fn deltas_and_interpolated_quantiles() {
        let (b, a) = (parse(BEFORE), parse(AFTER));
        let d = a.stages["proposed_to_committed"].minus(&b.stages["proposed_to_committed"]);
        assert_eq!(d.count(), 101);
        // Rank 50.5 of 101 lies in (100 µs, 200 µs], which holds 100: about the middle.
        let p50 = d.quantile(0.5);
        assert!((p50 - 0.0001505).abs() < 1e-9, "{p50}");
        // The last observation is past every finite bound: read as the largest one.
        assert_eq!(d.quantile(1.0), 0.0002);
        assert!((d.sum - 0.02).abs() < 1e-12);
        let t = table(&[("n1".into(), Some(b))], &[("n1".into(), Some(a))]);
        assert!(
            t.contains("| n1 | proposed_to_committed | 101 | 150.5 |"),
            "{t}"
        );
        assert!(t.contains("25 of 101 writes (24.8 %)"), "{t}");
    }

    #[test]
    fn parses_the_nodes_own_exposition() {
        let m = crate::node::metrics::NodeMetrics::new(1, 2, 1);
        m.cores[0].stages.proposed_to_committed.record(300_000);
        m.cores[1].stages.proposed_to_committed.record(300_000);
        m.cores[1].stages.committed_to_applied.record(2_000);
        let s = parse(&m.render());
        let h = &s.stages["proposed_to_committed"];
        assert_eq!(h.count(), 2);
        let p50 = h.quantile(0.5);
        // 300 µs lies in the bucket (262.144 µs, 327.68 µs].
        assert!((0.000262..=0.000328).contains(&p50), "{p50}");
        assert_eq!(s.stages["committed_to_applied"].count(), 1);
        assert_eq!(s.stages["received_to_proposed"].count(), 0);
    }
}
