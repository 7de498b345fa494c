use super::*;

#[test]
fn buckets_are_powers_of_two() {
    assert_eq!(Histogram::bucket_of(0), 0);
    assert_eq!(Histogram::bucket_of(1), 0);
    assert_eq!(Histogram::bucket_of(2), 1);
    assert_eq!(Histogram::bucket_of(3), 2);
    assert_eq!(Histogram::bucket_of(4), 2);
    assert_eq!(Histogram::bucket_of(5), 3);
    assert_eq!(Histogram::bucket_of(1 << 20), 20);
    assert_eq!(Histogram::bucket_of(u64::MAX), HISTOGRAM_BUCKETS - 1);
}

#[test]
fn quantiles_from_buckets() {
    let h = Histogram::default();
    for v in 1..=100 {
        h.record(v);
    }
    assert_eq!(h.quantile_upper(0.5), 64);
    assert_eq!(h.quantile_upper(0.99), 128);
    assert_eq!(h.snapshot().2, 100);
    assert_eq!(h.snapshot().1, 5050);
}

#[test]
fn renders_prometheus_text_summed_over_cores() {
    let m = NodeMetrics::new(3, 2, 2);
    m.cores[0].proposals.add(5);
    m.cores[1].proposals.add(7);
    m.cores[1].error(ErrorKind::Busy);
    m.cores[0].raft_invalid_messages.set(2);
    m.cores[1].raft_invalid_messages.set(1);
    m.cores[0].commit_latency_us.record(300);
    m.cores[1].commit_latency_us.record(3);
    m.shards[1].term.set(4);
    m.shards[1].role.set(RoleGauge::Leader as u64);
    let t = m.render();
    assert!(
        t.contains("ringraft_proposals_total{node=\"3\"} 12\n"),
        "{t}"
    );
    assert!(t.contains("ringraft_errors_total{node=\"3\",kind=\"busy\"} 1\n"));
    assert!(
        t.contains("ringraft_raft_invalid_messages_total{node=\"3\"} 3\n"),
        "{t}"
    );
    assert!(t.contains("ringraft_shard_term{node=\"3\",shard=\"1\"} 4\n"));
    assert!(t.contains("ringraft_shard_role{node=\"3\",shard=\"1\"} 2\n"));
    assert!(t.contains("ringraft_commit_latency_seconds_count{node=\"3\"} 2\n"));
    assert!(t.contains("ringraft_commit_latency_seconds_bucket{node=\"3\",le=\"+Inf\"} 2\n"));
    assert!(
        t.contains("ringraft_commit_latency_seconds_bucket{node=\"3\",le=\"0.000004\"} 1\n"),
        "{t}"
    );
    // Every sample line is `name{labels} number`.
    for line in t.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = line.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "{line}");
    }
    let s = m.shards_json();
    assert_eq!(s[1]["role"], "leader");
    assert_eq!(s[1]["term"], 4);
}

#[test]
fn fine_buckets_bound_what_they_hold() {
    // Every value lies in the first bucket whose bound is at least the value.
    let mut v = 1u64;
    while v < 1 << 36 {
        for x in [v.saturating_sub(1), v, v + 1, v + v / 3, v + v / 2 + 7] {
            let i = FineHistogram::bucket_of(x);
            if let Some(b) = FineHistogram::bound(i) {
                assert!(x <= b, "{x} in bucket {i} bounded by {b}");
            }
            if i > 0 {
                let below = FineHistogram::bound(i - 1).unwrap();
                assert!(x > below, "{x} belongs below {below}");
            }
        }
        v = v * 5 / 4 + 1;
    }
    assert_eq!(FineHistogram::bound(1), Some(160));
    assert_eq!(FineHistogram::bucket_of(160), 1);
    assert_eq!(FineHistogram::bucket_of(161), 2);
    assert_eq!(FineHistogram::bucket_of(u64::MAX), FINE_BUCKETS - 1);
    assert_eq!(FineHistogram::bound(FINE_BUCKETS - 1), None);
}

#[test]
fn renders_stages_and_executor_per_core() {
    let m = NodeMetrics::new(2, 2, 1);
    m.cores[0].stages.proposed_to_local_durable.record(200);
    m.cores[1].stages.proposed_to_local_durable.record(150);
    m.cores[1].stages.commit_before_local_durable.inc();
    m.cores[1].executor.tasks_executed.add(9);
    m.cores[0].executor.busy_permille.set(250);
    m.cores[1].executor.wakeup_delay.record(1_000_000);
    let t = m.render();
    let s = "ringraft_write_stage_seconds";
    assert!(
        t.contains(&format!(
            "{s}_bucket{{node=\"2\",stage=\"proposed_to_local_durable\",le=\"0.00000016\"}} 1\n"
        )),
        "{t}"
    );
    assert!(t.contains(&format!(
        "{s}_bucket{{node=\"2\",stage=\"proposed_to_local_durable\",le=\"0.000000224\"}} 2\n"
    )));
    assert!(t.contains(&format!(
        "{s}_count{{node=\"2\",stage=\"proposed_to_local_durable\"}} 2\n"
    )));
    assert!(t.contains(&format!(
        "{s}_count{{node=\"2\",stage=\"committed_to_applied\"}} 0\n"
    )));
    assert!(t.contains("ringraft_write_commit_before_local_durable_total{node=\"2\"} 1\n"));
    assert!(t.contains("ringraft_executor_tasks_total{node=\"2\",core=\"1\"} 9\n"));
    assert!(t.contains("ringraft_executor_busy_ratio{node=\"2\",core=\"0\"} 0.25\n"));
    assert!(t.contains("ringraft_executor_wakeup_delay_seconds_count{node=\"2\",core=\"1\"} 1\n"));
    for line in t.lines().filter(|l| !l.starts_with('#')) {
        let (_, v) = line.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "{line}");
    }
}

#[test]
fn gauge_never_underflows() {
    let g = Gauge::default();
    g.dec();
    assert_eq!(g.get(), 0);
    g.inc();
    g.inc();
    g.dec();
    assert_eq!(g.get(), 1);
}
