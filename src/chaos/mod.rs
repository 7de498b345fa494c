//! `ringraft chaos`: a Jepsen-style fault suite over real processes. It rewrites a config set
//! into a work directory (own ports, data and log directories, so it never collides with
//! `make start-cluster`), starts real `ringraft server` processes (this executable), waits for a
//! leader, runs concurrent clients (`workload.rs`) while a nemesis injects faults on a seeded
//! schedule (`schedule.rs`, printed at the start: same seed, same schedule), heals, waits for
//! the cluster to recover, reads every key back, and checks: the history by the project's
//! linearizability checker (`crate::checker`), and the rest by `report.rs` (lost writes, "not
//! applied" answers whose write shows up, duplicate/phantom appends, stale eventual reads of
//! values never written, crash lines, unexpected exits, replicas that do not converge).
//!
//! Faults: SIGKILL (+ restart on the same data directory), SIGSTOP/SIGCONT, restart of every
//! node, and network faults through a fault proxy the suite runs between peers (`proxy.rs`):
//! each node's config names proxy addresses for its peers, so links can be cut per direction
//! without root, namespaces, iptables or `tc` (netem is not available on the development
//! machines); clients dial the nodes directly, so an isolated leader stays reachable.
//!
//! Membership and leadership under load: `transfer-leader` sends the admin
//! `TransferLeadership` request; `membership` starts a spare node (the config set's learner
//! configs after the voters', rewritten like the others) that joins as a learner, promotes it,
//! removes a follower voter and stops that node for good ([`Cluster::retire`]). Each step's
//! time goes into the fault's record; the final reads and the convergence check use the
//! members at the end. A learner announces its real address, so links to a node that joined
//! at run time do not pass through the fault proxy.
//!
//! Disk faults: the `disk` nemesis kills one seeded node and restarts it with the WAL's fault
//! hook armed — `RINGRAFT_WAL_FAULT=<spec>` (a seeded `fsync_fail_after=N`,
//! `short_write_after=N` or `enospc_after=N`) together with `RINGRAFT_WAL_FAULT_ENABLE=1`; the
//! node arms the hook only when both are set — with its own output file and log directory; at
//! the heal it is killed and restarted without them. The checks stay the same: a node whose WAL
//! fails must stop (crash-stop), so its exit and its error lines in that incarnation are
//! expected (listed, not violations; a panic still is one), and no acknowledged write may be
//! lost. A node that does not honour the hook just runs through the window (the fault record
//! says so). `--server-env KEY=VALUE` passes extra variables to every server.
//!
//! Negative controls: `--unsafe-faults a,b` starts the servers with
//! `RINGRAFT_UNSAFE_TEST_FAULTS=a,b`, test-only Raft faults the node maps onto its Raft
//! configuration; a run with them must fail.
//!
//! Exit status: 0 every check passed, 1 a violation, 2 the run could not be made (no leader,
//! unreadable config), 3 the checker's budget was spent (unknown). Cleanup: every process is
//! killed by its PID when the run ends, panics, or gets Ctrl-C / SIGTERM. Owned by the fault
//! suite.

pub mod cluster;
pub mod http;
pub mod proxy;
pub mod report;
pub mod schedule;
pub mod workload;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::checker::{self, Budget, ModelKind, Verdict};
use crate::client::{Client, Consistency};
use ringraft_net::message::{AdminRequest, AdminResponse};

use cluster::{Cluster, UNSAFE_TEST_FAULTS_ENV};
use report::{FaultRecord, Findings};
use schedule::{Fault, NemesisKind, Target};
use workload::{Outcome, Recorder, Via, WorkloadConfig};

/// Exit status: every check passed.
pub const EXIT_VALID: u8 = 0;
/// Exit status: a violation.
pub const EXIT_VIOLATION: u8 = 1;
/// Exit status: the run could not be made.
pub const EXIT_SETUP: u8 = 2;
/// Exit status: the checker gave up (budget).
pub const EXIT_UNKNOWN: u8 = 3;
/// Longest wait for a leader at the start and after healing.
pub const LEADER_WAIT: Duration = Duration::from_secs(30);
/// Longest time the final reads may take (retrying through elections).
pub const FINAL_READ_WAIT: Duration = Duration::from_secs(30);
/// Longest wait for every replica's local state to match the final values.
pub const CONVERGE_WAIT: Duration = Duration::from_secs(20);
/// A lagging-election fault keeps the killed leader down this long after the heal.
pub const LAGGING_LEADER_DOWN: Duration = Duration::from_secs(2);
/// Most spare nodes (learner configs `n<nodes+1>.toml`, ...) prepared for the membership
/// nemesis: each membership fault adds one and removes a voter, so this bounds how many such
/// faults change the membership in one run.
pub const SPARES_MAX: usize = 2;
/// Pause between two tries of a membership request that was refused (no leader yet, learner
/// not added yet, another change in flight).
pub const MEMBERSHIP_RETRY: Duration = Duration::from_millis(200);
/// Largest node log file scanned for crash lines.
pub const LOG_SCAN_BYTES_MAX: u64 = 256 << 20;

/// Set by SIGINT/SIGTERM: the run stops early and cleans up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// `ringraft chaos` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Directory with the node configs n1.toml, n2.toml, ... (rewritten into the work dir).
    #[arg(long, default_value = "config")]
    pub config_dir: PathBuf,
    /// Nodes (n1..=nN of the config directory).
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Seconds of workload (faults stop a few seconds before the end).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Seed of the schedule and the workers' choices (default: from the clock, printed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Nemeses, comma-separated; `mixed` = a random one of all per fault.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "mixed")]
    pub nemesis: Vec<NemesisKind>,
    /// Output directory (default: chaos_reports/<unix time>-seed<seed>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// HTTP register workers.
    #[arg(long, default_value_t = 3)]
    pub http_workers: usize,
    /// Frame-client register workers.
    #[arg(long, default_value_t = 3)]
    pub frame_workers: usize,
    /// Append workers (exactly-once client).
    #[arg(long, default_value_t = 2)]
    pub append_workers: usize,
    /// Register keys.
    #[arg(long, default_value_t = 6)]
    pub keys: usize,
    /// Append keys.
    #[arg(long, default_value_t = 3)]
    pub append_keys: usize,
    /// NEGATIVE CONTROL: test-only Raft faults for the servers (RINGRAFT_UNSAFE_TEST_FAULTS),
    /// e.g. skip_vote_log_check. A run with them is expected to fail.
    #[arg(long)]
    pub unsafe_faults: Option<String>,
    /// Extra environment for every server, KEY=VALUE (repeatable), e.g. LOG_LEVEL=info or a
    /// WAL fault hook.
    #[arg(long)]
    pub server_env: Vec<String>,
    /// The server executable (default: this one).
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Reads mostly through the lease path (80 % lease reads): with `pause-isolated`, the
    /// schedule for a leader that serves lease reads after it lost its lease.
    #[arg(long)]
    pub lease_heavy: bool,
    /// Time budget of the linearizability check, seconds.
    #[arg(long, default_value_t = 120)]
    pub check_budget_s: u64,
}

/// What a run concluded.
#[derive(Debug)]
pub struct RunResult {
    /// Exit status ([`EXIT_VALID`], ...).
    pub exit: u8,
    /// The one-line verdict.
    pub verdict: String,
    /// Output directory.
    pub out: PathBuf,
    /// Operations recorded.
    pub ops: usize,
    /// Violations found (checker counted as one when not linearizable).
    pub violations: usize,
}

/// Entry point of `ringraft chaos`.
pub fn main(args: ChaosArgs) -> ExitCode {
    match run(&args) {
        Ok(r) => {
            println!("{}", r.verdict);
            ExitCode::from(r.exit)
        }
        Err(e) => {
            eprintln!("ringraft chaos: {e}");
            ExitCode::from(EXIT_SETUP)
        }
    }
}

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
    // SAFETY: installing an async-signal-safe handler (it only stores to an atomic).
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }

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
    if INTERRUPTED.load(Ordering::SeqCst) {
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
    let reaped = cluster.reap_unexpected(t0.elapsed());
    findings.crashes.extend(reaped);
    cluster.stop_all();
    for n in &cluster.nodes {
        findings.expected.extend(n.expected_exits.iter().cloned());
    }
    for file in cluster.wal_fault_log_files() {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.len() > LOG_SCAN_BYTES_MAX {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(&file) {
            report::wal_fault_crash_lines(&file.display().to_string(), &text, &mut findings);
        }
    }
    for file in cluster.log_files() {
        let Ok(meta) = std::fs::metadata(&file) else {
            continue;
        };
        if meta.len() > LOG_SCAN_BYTES_MAX {
            continue;
        }
        if let Ok(text) = std::fs::read_to_string(&file) {
            report::crash_lines(&file.display().to_string(), &text, &mut findings);
        }
    }

    // Checks.
    let (events, ops) = rec.snapshot();
    report::check_registers(&ops, workload::is_append_key, &mut findings);
    let ledger = ledger.lock().map(|l| l.clone()).unwrap_or_default();
    let append_finals: HashMap<String, Option<String>> = finals
        .iter()
        .filter(|(k, _)| append_keys.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if append_finals.len() == append_keys.len() {
        report::check_appends(&ledger, &append_finals, &mut findings);
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
    let recovery = report::recovery(&faults, &ops);
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

/// Sleeps until `t0 + at`, watching for nodes that die on their own; false if interrupted.
fn sleep_until(t0: Instant, at: Duration, cluster: &mut Cluster, f: &mut Findings) -> bool {
    while t0.elapsed() < at {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return false;
        }
        f.crashes.extend(cluster.reap_unexpected(t0.elapsed()));
        std::thread::sleep(Duration::from_millis(50).min(at.saturating_sub(t0.elapsed())));
    }
    !INTERRUPTED.load(Ordering::SeqCst)
}

fn names(v: &[usize]) -> String {
    let n: Vec<String> = v.iter().map(|i| format!("n{}", i + 1)).collect();
    format!("{{{}}}", n.join(","))
}

/// Applies one fault, waits out its duration, heals it; returns what happened.
fn inject(f: &Fault, c: &mut Cluster, t0: Instant, found: &mut Findings) -> FaultRecord {
    let n = c.nodes.len();
    // Partitions and "the others" are among the members when the fault starts (a spare that
    // never joined, or a removed node, is on no side).
    let all: Vec<usize> = c.members();
    let leader = || c.leader().unwrap_or(0);
    let start_ns = t0.elapsed().as_nanos() as u64;
    let end = f.at + f.duration;
    let others = |x: usize| -> Vec<usize> { all.iter().copied().filter(|&i| i != x).collect() };
    let target;
    match (&f.kind, &f.target) {
        (NemesisKind::Kill, Target::Node(i)) => {
            target = format!("n{}", i + 1);
            c.kill(*i);
            sleep_until(t0, end, c, found);
            let _ = c.start(*i);
        }
        (NemesisKind::KillLeader, _) => {
            let l = leader();
            target = format!("n{} (leader)", l + 1);
            c.kill(l);
            sleep_until(t0, end, c, found);
            let _ = c.start(l);
        }
        (NemesisKind::Pause, _) => {
            let l = leader();
            target = format!("n{} (leader)", l + 1);
            c.pause(l);
            sleep_until(t0, end, c, found);
            c.resume(l);
        }
        (NemesisKind::PauseIsolated, _) => {
            let l = leader();
            target = format!(
                "n{} (leader) cut from {} and paused; resumed still cut",
                l + 1,
                names(&others(l))
            );
            c.proxy.cut_between(&[l], &others(l));
            c.pause(l);
            let resume = f.at + f.duration.saturating_sub(schedule::CUT_AFTER_RESUME);
            sleep_until(t0, resume, c, found);
            c.resume(l);
            sleep_until(t0, end, c, found);
            c.proxy.heal_all();
        }
        (NemesisKind::RestartAll, _) => {
            target = "every node".into();
            for i in 0..n {
                c.kill(i);
            }
            sleep_until(t0, end, c, found);
            let _ = c.start_all();
        }
        (NemesisKind::Partition, Target::Side(side)) => {
            let rest: Vec<usize> = all.iter().copied().filter(|i| !side.contains(i)).collect();
            target = format!("{} | {}", names(side), names(&rest));
            c.proxy.cut_between(side, &rest);
            sleep_until(t0, end, c, found);
            c.proxy.heal_all();
        }
        (NemesisKind::IsolateLeader, _) => {
            let l = leader();
            target = format!("n{} (leader) | {}", l + 1, names(&others(l)));
            c.proxy.cut_between(&[l], &others(l));
            sleep_until(t0, end, c, found);
            c.proxy.heal_all();
        }
        (NemesisKind::Bridge, Target::Bridge { bridge, side }) => {
            let rest: Vec<usize> = all
                .iter()
                .copied()
                .filter(|i| i != bridge && !side.contains(i))
                .collect();
            target = format!("{} | {}, bridge n{}", names(side), names(&rest), bridge + 1);
            c.proxy.cut_between(side, &rest);
            sleep_until(t0, end, c, found);
            c.proxy.heal_all();
        }
        (NemesisKind::OneWay, _) => {
            let l = leader();
            target = format!("n{} (leader) -> {} cut", l + 1, names(&others(l)));
            for j in others(l) {
                c.proxy.set_cut(l, j, true);
            }
            sleep_until(t0, end, c, found);
            c.proxy.heal_all();
        }
        (NemesisKind::LaggingElection, Target::Lagging(i)) => {
            let l = leader();
            // The seeded node, or the next member that does not lead.
            let lag = from(&all, *i).into_iter().find(|&m| m != l).unwrap_or(*i);
            target = format!("n{} lags; then leader n{} killed", lag + 1, l + 1);
            c.proxy.cut_between(&[lag], &others(lag));
            sleep_until(t0, end, c, found);
            c.kill(l);
            c.proxy.heal_all();
            let down_until = t0.elapsed() + LAGGING_LEADER_DOWN;
            sleep_until(t0, down_until, c, found);
            let _ = c.start(l);
        }
        (NemesisKind::Disk, Target::Disk { node, fault }) => {
            let i = *node;
            let spec = fault.spec();
            let exits_before = c.nodes[i].expected_exits.len();
            c.kill(i);
            let armed = c.start_with_wal_fault(i, &spec);
            sleep_until(t0, end, c, found);
            let fired = c.nodes[i].expected_exits.len() > exits_before;
            c.kill(i);
            let restarted = c.start(i);
            target = match (armed, fired) {
                (Err(e), _) => format!("n{} {spec}: could not start it armed: {e}", i + 1),
                (Ok(()), true) => format!("n{} {spec}: stopped on the WAL failure", i + 1),
                (Ok(()), false) => format!(
                    "n{} {spec}: did not stop (fault not hit, or the node ignores the hook)",
                    i + 1
                ),
            };
            if let Err(e) = restarted {
                found
                    .crashes
                    .push(format!("n{} restart after the disk fault: {e}", i + 1));
            }
        }
        (NemesisKind::TransferLeader, Target::Node(pref)) => {
            target = transfer(c, *pref, t0, end, found);
        }
        (NemesisKind::Membership, Target::Node(pref)) => {
            target = match c.spare() {
                Some(spare) => membership(c, spare, *pref, t0, end, found),
                None => format!("no spare left: {}", transfer(c, *pref, t0, end, found)),
            };
        }
        (k, t) => {
            // A kind whose target shape does not match cannot be planned by `schedule::plan`.
            target = format!("skipped: {} with {t:?}", k.name());
        }
    }
    FaultRecord {
        kind: f.kind.name(),
        target,
        start_ns,
        end_ns: t0.elapsed().as_nanos() as u64,
    }
}

/// Seconds since the workload's start, for the fault records.
fn at(t0: Instant) -> String {
    format!("t={:.1}s", t0.elapsed().as_secs_f64())
}

/// `members` (ascending) starting at the first one from `pref` on, wrapping around.
fn from(members: &[usize], pref: usize) -> Vec<usize> {
    let (before, after): (Vec<usize>, Vec<usize>) = members.iter().partition(|&&m| m < pref);
    after.into_iter().chain(before).collect()
}

/// One admin request to node `i` (one attempt).
fn admin(c: &Cluster, i: usize, req: &AdminRequest) -> Result<AdminResponse, String> {
    let addr = c.nodes[i].address;
    let mut client =
        Client::new(workload::frame_client_config(&[addr])).map_err(|e| e.to_string())?;
    client
        .admin(&addr.to_string(), req)
        .map_err(|e| e.to_string())
}

/// Sends `req` to whoever leads until it answers Done or `end` (since `t0`) passes; the last
/// refusal otherwise.
fn until_done(
    c: &mut Cluster,
    req: &AdminRequest,
    t0: Instant,
    end: Duration,
    found: &mut Findings,
) -> Result<(), String> {
    let mut last = "no leader".to_string();
    while t0.elapsed() < end {
        if let Some(l) = c.leader() {
            match admin(c, l, req) {
                Ok(AdminResponse::Done { .. }) => return Ok(()),
                Ok(other) => last = format!("n{}: {other:?}", l + 1),
                Err(e) => last = format!("n{}: {e}", l + 1),
            }
        }
        let next = t0.elapsed() + MEMBERSHIP_RETRY;
        if !sleep_until(t0, next.min(end), c, found) {
            break;
        }
    }
    Err(last)
}

/// The transfer-leader nemesis: asks the leader to hand over to the preferred voter (or the
/// next member that is not the leader), then watches who leads until `end`.
fn transfer(
    c: &mut Cluster,
    pref: usize,
    t0: Instant,
    end: Duration,
    found: &mut Findings,
) -> String {
    let members = c.members();
    let Some(l) = c.leader() else {
        sleep_until(t0, end, c, found);
        return "no leader to transfer from".into();
    };
    let Some(to) = from(&members, pref).into_iter().find(|&m| m != l) else {
        sleep_until(t0, end, c, found);
        return format!("n{} leads alone", l + 1);
    };
    let asked = at(t0);
    let req = AdminRequest::TransferLeadership {
        group: 0,
        to: to as u64 + 1,
    };
    let answer = match admin(c, l, &req) {
        Ok(AdminResponse::Done { .. }) => "started".to_string(),
        Ok(other) => format!("{other:?}"),
        Err(e) => e,
    };
    let mut led = None;
    while t0.elapsed() < end {
        if led.is_none() && c.leader() == Some(to) {
            led = Some(at(t0));
        }
        let next = t0.elapsed() + Duration::from_millis(100);
        if !sleep_until(t0, next.min(end), c, found) {
            break;
        }
    }
    format!(
        "n{} -> n{} asked {asked} ({answer}); {}",
        l + 1,
        to + 1,
        match led {
            Some(t) => format!("n{} leads {t}", to + 1),
            None => format!("n{} did not lead within the window", to + 1),
        }
    )
}

/// The membership nemesis: spare `spare` joins as a learner, is promoted, then a follower
/// voter (`pref`, or the next follower that is not the new node) is removed and stopped for
/// good. Each step's time goes into the returned record.
fn membership(
    c: &mut Cluster,
    spare: usize,
    pref: usize,
    t0: Instant,
    end: Duration,
    found: &mut Findings,
) -> String {
    let id = spare as u64 + 1;
    let mut steps = vec![format!("n{id} started {}", at(t0))];
    if let Err(e) = c.join(spare) {
        sleep_until(t0, end, c, found);
        return format!("n{id} could not start: {e}");
    }
    // The spare's own join loop asks the voters to add it as a learner; promotion is refused
    // until that is committed, so promoting is retried until it is done.
    let promote = AdminRequest::Promote {
        group: 0,
        node_id: id,
    };
    if let Err(why) = until_done(c, &promote, t0, end, found) {
        // Never a voter: stop it so the end state has no half-joined member.
        c.retire(spare);
        steps.push(format!(
            "not promoted within the window ({why}); stopped {}",
            at(t0)
        ));
        return steps.join(", ");
    }
    steps.push(format!("promoted {}", at(t0)));
    let leader = c.leader();
    let members = c.members();
    let victim = from(&members, pref)
        .into_iter()
        .find(|&m| Some(m) != leader && m != spare);
    if let Some(v) = victim {
        let remove = AdminRequest::Remove {
            group: 0,
            node_id: v as u64 + 1,
        };
        match until_done(c, &remove, t0, end, found) {
            Ok(()) => {
                c.retire(v);
                steps.push(format!("n{} removed and stopped {}", v + 1, at(t0)));
            }
            Err(why) => steps.push(format!("n{} not removed within the window ({why})", v + 1)),
        }
    }
    sleep_until(t0, end, c, found);
    steps.join(", ")
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
            let call = rec.invoke(
                process,
                checker::OpFunction::Get,
                &key,
                None,
                None,
                None,
                Via::Final,
            );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nemesis_targets_start_at_the_seeded_member_and_wrap() {
        assert_eq!(from(&[0, 1, 3, 4], 2), vec![3, 4, 0, 1]);
        assert_eq!(from(&[0, 1, 3, 4], 0), vec![0, 1, 3, 4]);
        assert_eq!(from(&[0, 1, 3], 7), vec![0, 1, 3]);
        assert!(from(&[], 1).is_empty());
    }
}
