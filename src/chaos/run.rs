//! One run of the fault suite, start to verdict: prepare and start the cluster, run the
//! workload while [`super::nemesis`] applies the seeded schedule, heal, read every key back,
//! wait for the replicas to converge, scan the node logs, check the history and the other
//! findings, and write the run's files (history.jsonl, ops.jsonl, eventual.jsonl, checker.txt,
//! summary.md, timeline.svg).
//!
//! Invariants: every process started is killed by its PID when the run returns, also on an
//! error or an interrupt (the [`Cluster`] drop guard); the history handed to the checker is
//! exactly the one written to history.jsonl. Owned by the fault suite.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::checker::{self, Budget, ModelKind, Verdict};
use crate::client::{Client, Consistency};

use super::cluster::{Cluster, UNSAFE_TEST_FAULTS_ENV};
use super::findings::{self, FaultRecord, Findings};
use super::nemesis::{inject, names, sleep_until};
use super::report;
use super::schedule::{self, NemesisKind};
use super::workload::{self, Outcome, Recorder, Via, WorkloadConfig};
use super::{
    ChaosArgs, RunResult, CONVERGE_WAIT, EXIT_UNKNOWN, EXIT_VALID, EXIT_VIOLATION, FINAL_READ_WAIT,
    LEADER_WAIT, LOG_SCAN_BYTES_MAX, SPARES_MAX,
};

fn stamp() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs the suite once. Err = the run could not be made.
pub fn run(args: &ChaosArgs) -> Result<RunResult, String> {
    if args.nodes < 1 {
        return Err("--nodes must be at least 1".into());
    }
    if args.keys < 1 || args.append_keys < 1 {
        return Err("--keys and --append-keys must be at least 1".into());
    }
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000)
    });
    let total = Duration::from_secs(args.seconds);
    let plan = schedule::plan(seed, args.nodes, total, &args.nemesis);
    let nemeses: Vec<&str> = args.nemesis.iter().map(|k| k.name()).collect();
    let nemeses = nemeses.join(",");
    let replay = format!(
        "ringraft chaos --seed {seed} --seconds {} --nodes {} --nemesis {nemeses}{}{}",
        args.seconds,
        args.nodes,
        if args.lease_heavy {
            " --lease-heavy"
        } else {
            ""
        },
        args.unsafe_faults
            .as_ref()
            .map(|u| format!(" --unsafe-faults {u}"))
            .unwrap_or_default()
    );
    let schedule_lines: Vec<String> = plan.iter().map(|f| f.to_string()).collect();
    println!("ringraft chaos: seed {seed} (replay: {replay})");
    println!("schedule ({} faults):", plan.len());
    for l in &schedule_lines {
        println!("  {l}");
    }
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("chaos_reports/{}-seed{seed}", stamp())));
    let work = out.join("work");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    }
    let bin = match &args.server_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe().map_err(|e| format!("own executable: {e}"))?,
    };
    let mut env: Vec<(String, String)> = Vec::new();
    for kv in &args.server_env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--server-env {kv:?}: expected KEY=VALUE"))?;
        env.push((k.to_string(), v.to_string()));
    }
    if let Some(u) = &args.unsafe_faults {
        env.push((UNSAFE_TEST_FAULTS_ENV.to_string(), u.clone()));
    }
    super::install_signal_handlers();

    // Spares for the membership nemesis: the learner configs that exist after the voters'.
    let spares = if args
        .nemesis
        .iter()
        .any(|k| matches!(k, NemesisKind::Membership | NemesisKind::Mixed))
    {
        (1..=SPARES_MAX)
            .take_while(|k| {
                args.config_dir
                    .join(format!("n{}.toml", args.nodes + k))
                    .exists()
            })
            .count()
    } else {
        0
    };
    let mut cluster =
        Cluster::prepare_with_spares(&args.config_dir, args.nodes, spares, &work, &bin, env)?;
    cluster.start_all()?;
    if cluster.wait_leader(LEADER_WAIT).is_none() {
        return Err(format!(
            "no leader within {LEADER_WAIT:?}; node logs in {}",
            work.display()
        ));
    }
    println!(
        "cluster up: {} (work dir {})",
        cluster.endpoints().join(" "),
        work.display()
    );

    let t0 = Instant::now();
    let rec = Arc::new(Recorder::new(t0));
    let stop = Arc::new(AtomicBool::new(false));
    let ledger: workload::AppendLedger = Arc::new(Mutex::new(HashMap::new()));
    let wcfg = WorkloadConfig {
        nodes: cluster.nodes.iter().map(|n| n.address).collect(),
        http_workers: args.http_workers,
        frame_workers: args.frame_workers,
        append_workers: args.append_workers,
        register_keys: args.keys,
        append_keys: args.append_keys,
        seed,
        lease_heavy: args.lease_heavy,
    };
    let used_append_keys: workload::AppendKeys = Default::default();
    let workers = workload::spawn(&wcfg, &rec, &stop, &ledger, &used_append_keys);
    let mut findings = Findings::default();
    let mut faults: Vec<FaultRecord> = Vec::new();
    for f in &plan {
        if !sleep_until(t0, f.at, &mut cluster, &mut findings) {
            break;
        }
        let rec_fault = inject(f, &mut cluster, t0, &mut findings);
        println!(
            "  t={:>6.1}s..{:>6.1}s  {} {}",
            rec_fault.start_ns as f64 / 1e9,
            rec_fault.end_ns as f64 / 1e9,
            rec_fault.kind,
            rec_fault.target
        );
        faults.push(rec_fault);
    }
    sleep_until(t0, total, &mut cluster, &mut findings);
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        let _ = w.join();
    }
    let workload_ns = t0.elapsed().as_nanos() as u64;
    if super::interrupted() {
        // The cluster is killed by its drop guard; nothing is checked.
        return Err("interrupted; every node started was killed".into());
    }

    // Heal everything, let the cluster recover, read everything back.
    cluster.proxy.heal_all();
    for i in 0..cluster.nodes.len() {
        cluster.resume(i);
        cluster.start(i)?;
    }
    let leader = cluster.wait_leader(LEADER_WAIT);
    if leader.is_none() {
        findings.crashes.push(format!(
            "no leader within {LEADER_WAIT:?} after healing (liveness)"
        ));
    }
    let append_keys: Vec<String> = used_append_keys
        .lock()
        .map(|k| k.iter().cloned().collect())
        .unwrap_or_default();
    let members = names(&cluster.members());
    println!("membership at the end: {members}");
    let finals = final_reads(&cluster, &rec, args, &append_keys);
    converge(&cluster, &finals, &mut findings);
    findings.outside_proxy = cluster.links_outside_proxy();
    let reaped = cluster.reap_unexpected(t0.elapsed());
    findings.crashes.extend(reaped);
    cluster.stop_all();
    for n in &cluster.nodes {
        findings.expected.extend(n.expected_exits.iter().cloned());
    }
    scan_logs(
        &cluster.wal_fault_log_files(),
        findings::wal_fault_crash_lines,
        &mut findings,
    );
    scan_logs(&cluster.log_files(), findings::crash_lines, &mut findings);

    // Checks.
    let (events, ops) = rec.snapshot();
    findings::check_registers(&ops, workload::is_append_key, &mut findings);
    let ledger = ledger.lock().map(|l| l.clone()).unwrap_or_default();
    let append_finals: HashMap<String, Option<String>> = finals
        .iter()
        .filter(|(k, _)| append_keys.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if append_finals.len() == append_keys.len() {
        findings::check_appends(&ledger, &append_finals, &mut findings);
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let write = |name: &str, text: &str| {
        let p = out.join(name);
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))
    };
    let mut hist = Vec::new();
    checker::write_json_lines(&mut hist, &events).map_err(|e| e.to_string())?;
    write("history.jsonl", &String::from_utf8_lossy(&hist))?;
    let mut ev = String::new();
    for o in ops.iter().filter(|o| o.consistency == Some("eventual")) {
        ev.push_str(
            &serde_json::json!({
                "key": o.key, "value": o.value, "ok": o.outcome == Outcome::Ok,
                "start_ns": o.start_ns, "end_ns": o.end_ns,
            })
            .to_string(),
        );
        ev.push('\n');
    }
    write("eventual.jsonl", &ev)?;
    let mut all = String::new();
    for o in &ops {
        all.push_str(
            &serde_json::json!({
                "start_ns": o.start_ns, "end_ns": o.end_ns, "f": o.f.name(), "key": o.key,
                "value": o.value, "outcome": format!("{:?}", o.outcome).to_lowercase(),
                "via": format!("{:?}", o.via).to_lowercase(), "consistency": o.consistency,
                "error": o.error,
            })
            .to_string(),
        );
        all.push('\n');
    }
    write("ops.jsonl", &all)?;

    let budget = Budget {
        time: Some(Duration::from_secs(args.check_budget_s)),
        threads: 2,
        ..Budget::default()
    };
    let report = checker::check_events(&events, ModelKind::Kv, &budget)
        .map_err(|e| format!("the recorded history is malformed: {e}"))?;
    let checker_text = report.explain_brief();
    write("checker.txt", &checker_text)?;
    let verdict_word = match report.verdict {
        Verdict::Linearizable => "linearizable",
        Verdict::NotLinearizable => "NOT linearizable",
        Verdict::Unknown => "unknown (checker budget spent)",
    };
    let recovery = findings::recovery(&faults, &ops);
    let mut violations = findings.count();
    if report.verdict == Verdict::NotLinearizable {
        violations += 1;
    }
    let exit = if violations > 0 {
        EXIT_VIOLATION
    } else if report.verdict == Verdict::Unknown {
        EXIT_UNKNOWN
    } else {
        EXIT_VALID
    };
    let (totals, _) = report::counts(&ops);
    let verdict = format!(
        "chaos {}: seed {seed}, {} s, {} faults ({nemeses}), {} ops ({} ok, {} failed, {} unknown), \
         history {verdict_word}, {} other violation(s); report {}",
        if exit == EXIT_VALID {
            "VALID"
        } else if exit == EXIT_UNKNOWN {
            "UNKNOWN"
        } else {
            "VIOLATION"
        },
        args.seconds,
        faults.len(),
        ops.len(),
        totals.ok,
        totals.fail,
        totals.info,
        findings.count(),
        out.join("summary.md").display()
    );
    let summary = report::Summary {
        verdict: verdict.clone(),
        replay,
        seed,
        nodes: args.nodes,
        seconds: args.seconds,
        nemeses,
        members,
        unsafe_faults: args.unsafe_faults.clone(),
        schedule: schedule_lines,
        faults: &faults,
        recovery: &recovery,
        ops: &ops,
        checker: (verdict_word.to_string(), checker_text),
        findings: &findings,
    };
    write("summary.md", &report::markdown(&summary))?;
    write("timeline.svg", &report::svg(&ops, &faults, workload_ns))?;
    for (k, v) in findings.all().iter().take(report::LISTED_MAX) {
        eprintln!("  violation: {k}: {v}");
    }
    Ok(RunResult {
        exit,
        verdict,
        out,
        ops: ops.len(),
        violations,
    })
}

/// Reads every key once through the frame client (linearizable, retried through elections),
/// recording the reads as part of the history. Key → final value, for keys that were read.
fn final_reads(
    cluster: &Cluster,
    rec: &Recorder,
    args: &ChaosArgs,
    append_keys: &[String],
) -> HashMap<String, Option<String>> {
    let mut out = HashMap::new();
    let nodes: Vec<_> = cluster
        .nodes
        .iter()
        .filter(|n| n.member)
        .map(|n| n.address)
        .collect();
    let Ok(mut client) = Client::new(workload::frame_client_config(&nodes)) else {
        return out;
    };
    let keys: Vec<String> = (0..args.keys)
        .map(workload::register_key)
        .chain(append_keys.iter().cloned())
        .collect();
    let deadline = Instant::now() + FINAL_READ_WAIT;
    let process = rec.new_process();
    for key in keys {
        while Instant::now() < deadline {
            let call = rec.invoke_read(process, &key, None, Via::Final);
            match client.get_with(&key, Consistency::Linearizable) {
                Ok(v) => {
                    let v = v.map(|v| String::from_utf8_lossy(&v.value).into_owned());
                    rec.complete(call, Outcome::Ok, v.clone(), None);
                    out.insert(key.clone(), v);
                    break;
                }
                Err(e) => {
                    rec.complete(call, Outcome::Fail, None, Some(e.to_string()));
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
    }
    out
}

/// Every node's local (eventual) state must reach the final values.
fn converge(cluster: &Cluster, finals: &HashMap<String, Option<String>>, f: &mut Findings) {
    let deadline = Instant::now() + CONVERGE_WAIT;
    let mut lagging: Vec<String>;
    loop {
        lagging = Vec::new();
        for n in cluster.nodes.iter().filter(|n| n.member) {
            for (k, want) in finals {
                match workload::http_get(n.address, k, "eventual") {
                    Ok(got) if &got == want => {}
                    Ok(got) => lagging.push(format!(
                        "n{}: key {k} is {:?}, the cluster's value is {:?}",
                        n.id,
                        got.map(|g| g.chars().take(60).collect::<String>()),
                        want.as_ref()
                            .map(|g| g.chars().take(60).collect::<String>())
                    )),
                    Err(e) => lagging.push(format!("n{}: key {k}: {e}", n.id)),
                }
            }
        }
        if lagging.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for l in lagging {
        f.divergence
            .push(format!("{l} ({CONVERGE_WAIT:?} after healing)"));
    }
}

/// Runs `scan` over the text of every file of `files` that is at most [`LOG_SCAN_BYTES_MAX`]
/// long (a larger or unreadable file is skipped).
fn scan_logs(files: &[PathBuf], scan: fn(&str, &str, &mut Findings), found: &mut Findings) {
    for file in files {
        let Ok(meta) = std::fs::metadata(file) else {
            continue;
        };
        if meta.len() > LOG_SCAN_BYTES_MAX {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(file) {
            scan(&file.display().to_string(), &text, found);
        }
    }
}
