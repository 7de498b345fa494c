//! The fault suite end to end: `ringraft chaos` starts three real nodes, runs its workload
//! through a short schedule of faults (a killed node, a partition), checks everything, and must
//! call a healthy cluster valid. (The nemeses that race a write's answer against a crash
//! or a pause of the node answering it — `kill-leader`, `pause`, `restart-all` — are left to
//! `make chaos`: whether such a race happens in a 16 s run is chance, and this test must give
//! the same answer every time.) The negative control (a test-only Raft
//! fault switched on in the servers must be caught) is `#[ignore]`d: it needs several runs of
//! 30 s; run it with `cargo test --release --test chaos_suite -- --ignored`.
//!
//! There is no control for the `commit_previous_term` fault (a leader that commits an entry of
//! an earlier term by counting its replicas): on the node that fault cannot change an outcome
//! the suite can provoke. A new leader appends its own no-op entry before it sends anything, and
//! each append carries the entries from the follower's next index up to the leader's last one
//! (at most `append_entries_batch_threshold` entries and `append_entries_max_bytes` bytes, 5000
//! and 4 MiB in the shipped configs), so an acknowledgement that covers an earlier term's entry
//! covers the no-op too: counting the no-op, a current-term entry, is the legitimate commit and
//! takes the older entries with it. The fault matters only when an acknowledgement stops at an
//! earlier term's entry (a follower more than a whole batch behind) and that leader then stops
//! before its own entry reaches a majority while a node holding a conflicting entry of a later
//! term wins the next election (Raft's figure 8): single messages in a precise order, which
//! faults on whole links and processes do not produce within a run. It is caught where messages
//! are driven one by one: `figure_8_with_the_rule_broken_is_caught` in `tests/raft_scenarios.rs`.
//! (The random simulator with one entry per append, five voters, no PreVote and 15 % message
//! loss did not hit that order in 1000 seeds of 4000 steps either.)
//!
//! Bounded: the suite process is given a deadline; past it the test sends SIGTERM (the suite
//! kills every node it started by PID), then SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ringraft");
/// Longest a suite run may take here (workload + start-up + read-back + check).
const RUN_LIMIT: Duration = Duration::from_secs(150);

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ringraft-chaos-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs the suite; returns its exit status and its stdout.
fn chaos(out: &Path, args: &[&str]) -> (i32, String) {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
    let mut child = Command::new(BIN)
        .arg("chaos")
        .args(["--config-dir", config, "--out"])
        .arg(out)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start ringraft chaos");
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if t0.elapsed() > RUN_LIMIT {
            // SAFETY: a signal to our own unreaped child.
            unsafe {
                libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
            }
            std::thread::sleep(Duration::from_secs(10));
            let _ = child.kill();
            let _ = child.wait();
            panic!("ringraft chaos ran past {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    if let Some(mut s) = child.stdout.take() {
        use std::io::Read;
        let _ = s.read_to_string(&mut stdout);
    }
    (status.code().unwrap_or(-1), stdout)
}

#[test]
fn a_short_run_with_faults_on_a_healthy_cluster_is_valid() {
    let out = out_dir("valid");
    let (code, stdout) = chaos(
        &out,
        &[
            "--seconds",
            "16",
            "--seed",
            "3",
            "--nemesis",
            "kill,partition",
            "--http-workers",
            "2",
            "--frame-workers",
            "2",
            "--check-budget-s",
            "60",
        ],
    );
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap_or_default();
    assert_eq!(code, 0, "{stdout}\n{summary}");
    assert!(stdout.contains("chaos VALID"), "{stdout}");
    // Faults really happened and were recorded with their recovery.
    assert!(summary.contains("| 1 |"), "{summary}");
    // The history file is what the checker judged: it must pass `ringraft check` on its own.
    let report = ringraft::checker::check_file(
        &out.join("history.jsonl"),
        None,
        Some(ringraft::checker::ModelKind::Kv),
        &ringraft::checker::Budget::default(),
    )
    .expect("history readable");
    assert_eq!(report.verdict, ringraft::checker::Verdict::Linearizable);
    assert!(report.operations.len() > 100, "{}", report.operations.len());
    assert!(out.join("timeline.svg").exists());
    let _ = std::fs::remove_dir_all(&out);
}

/// The membership nemesis starts a spare that joins through a membership change; at the end
/// every member's peer links, the joined node's included, must be the fault proxy's (the suite
/// reports a link outside the proxy as a violation: its network faults could not reach it).
#[test]
fn a_node_that_joins_at_run_time_sits_behind_the_fault_proxy() {
    let out = out_dir("joined");
    let (code, stdout) = chaos(
        &out,
        &[
            "--seconds",
            "12",
            "--seed",
            "5",
            "--nemesis",
            "membership",
            "--http-workers",
            "1",
            "--frame-workers",
            "1",
            "--append-workers",
            "1",
            "--check-budget-s",
            "60",
        ],
    );
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap_or_default();
    assert_eq!(code, 0, "{stdout}\n{summary}");
    // A spare joined and stayed (the first membership fault promotes n4 and retires a voter).
    let members = stdout
        .lines()
        .find(|l| l.starts_with("membership at the end:"))
        .unwrap_or_default();
    assert!(members.contains("n4"), "{stdout}");
    assert!(
        summary.contains("| member links outside the fault proxy | 0 |"),
        "{summary}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
#[ignore = "several 30 s runs; the negative control of the fault suite"]
fn a_raft_that_grants_votes_to_stale_logs_is_caught() {
    // Seeds that caught it on the development machine; which node leads when a fault starts
    // depends on the run, so more than one seed is tried.
    for seed in ["11", "13", "14", "15"] {
        let out = out_dir(&format!("neg{seed}"));
        let (code, stdout) = chaos(
            &out,
            &[
                "--seconds",
                "30",
                "--seed",
                seed,
                "--nemesis",
                "lagging-election",
                "--unsafe-faults",
                "skip_vote_log_check",
            ],
        );
        if code == 1 {
            assert!(stdout.contains("chaos VIOLATION"), "{stdout}");
            let _ = std::fs::remove_dir_all(&out);
            return;
        }
        assert_eq!(code, 0, "{stdout}");
    }
    panic!("no seed caught the stale-log vote");
}

#[test]
#[ignore = "a 25 s run and its 25 s control; the lease negative control of the fault suite"]
fn a_leader_serving_lease_reads_without_checking_its_lease_is_caught() {
    // A leader cut off and stopped past an election comes back believing it leads; with
    // lease_ignore_clock it serves lease reads from its own stale state until check-quorum
    // steps it down. Seeds 21 and 22 caught it on the development machine.
    let args = |seed: &'static str| {
        vec![
            "--seconds",
            "25",
            "--seed",
            seed,
            "--nemesis",
            "pause-isolated",
            "--lease-heavy",
            "--http-workers",
            "6",
        ]
    };
    let out = out_dir("lease-control");
    let (code, stdout) = chaos(&out, &args("21"));
    assert_eq!(code, 0, "the same schedule on a correct server: {stdout}");
    let _ = std::fs::remove_dir_all(&out);
    for seed in ["21", "22"] {
        let out = out_dir(&format!("lease{seed}"));
        let mut a = args(seed);
        a.extend(["--unsafe-faults", "lease_ignore_clock"]);
        let (code, stdout) = chaos(&out, &a);
        if code == 1 {
            assert!(stdout.contains("NOT linearizable"), "{stdout}");
            let _ = std::fs::remove_dir_all(&out);
            return;
        }
        assert_eq!(code, 0, "{stdout}");
    }
    panic!("no seed caught the lease read served without a lease");
}
