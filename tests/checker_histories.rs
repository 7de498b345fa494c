//! Trust test of the linearizability checker: every history in `../shared/histories/` (found
//! next to the repository, else at /work/shared/histories) must get the verdict its
//! `expected.tsv` gives — all 108 of them. A missing directory or a missing file FAILS the
//! test (it never skips). Per-file times are printed (`--nocapture`); speed is measured by
//! `ringraft check`, not asserted here beyond a loose sanity bound.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ringraft::checker::{check_file, Budget, Verdict};

/// Verdicts the two expected.tsv files must hold between them.
const EXPECTED_VERDICTS: usize = 108;
/// Per-history budget: far above what any history needs (well under a second each), so an
/// Unknown here is a regression, not noise.
const PER_HISTORY_BUDGET_MS: u64 = 20_000;

fn histories_dir() -> PathBuf {
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/histories");
    if beside.join("jepsen-etcd/expected.tsv").is_file() {
        return beside;
    }
    let fallback = PathBuf::from("/work/shared/histories");
    assert!(
        fallback.join("jepsen-etcd/expected.tsv").is_file(),
        "history corpus not found at {} nor at {}: the checker cannot be trusted without it",
        beside.display(),
        fallback.display()
    );
    fallback
}

fn expected(dir: &Path) -> Vec<(PathBuf, Verdict)> {
    let tsv = dir.join("expected.tsv");
    let text = std::fs::read_to_string(&tsv)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", tsv.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (name, verdict) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("bad line in {}: {l:?}", tsv.display()));
            let verdict = match verdict.trim() {
                "linearizable" => Verdict::Linearizable,
                "not-linearizable" => Verdict::NotLinearizable,
                other => panic!("unknown verdict {other:?} in {}", tsv.display()),
            };
            (dir.join(name), verdict)
        })
        .collect()
}

#[test]
fn every_recorded_history_gets_its_known_verdict() {
    let root = histories_dir();
    let mut cases = expected(&root.join("jepsen-etcd"));
    cases.extend(expected(&root.join("kv")));
    assert_eq!(cases.len(), EXPECTED_VERDICTS, "expected.tsv files changed");
    let budget = Budget {
        time: Some(Duration::from_millis(PER_HISTORY_BUDGET_MS)),
        ..Budget::default()
    };
    let started = Instant::now();
    let mut wrong = Vec::new();
    let (mut lin, mut not_lin) = (0, 0);
    for (path, want) in &cases {
        let t0 = Instant::now();
        let report = check_file(path, None, None, &budget)
            .unwrap_or_else(|e| panic!("{}: unreadable: {e}", path.display()));
        let took = t0.elapsed();
        println!(
            "{:<16} {:>6} ops {:>9} states {:>8.1} ms  {}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("?"),
            report.operations.len(),
            report.keys.iter().map(|k| k.states).sum::<u64>(),
            took.as_secs_f64() * 1e3,
            report.verdict
        );
        if report.verdict != *want {
            wrong.push(format!(
                "{}: expected {want}, got {}\n{}",
                path.display(),
                report.verdict,
                report.explain_brief()
            ));
        }
        match report.verdict {
            Verdict::Linearizable => lin += 1,
            Verdict::NotLinearizable => {
                not_lin += 1;
                // A violation always comes with an explanation naming the stuck operation.
                let v = report
                    .keys
                    .iter()
                    .find_map(|k| k.violation.as_ref())
                    .expect("a violating key has an explanation");
                assert!(v.blocking.is_some(), "{}", path.display());
                assert!(!v.unplaced.is_empty(), "{}", path.display());
            }
            Verdict::Unknown => {}
        }
    }
    let total = started.elapsed();
    println!(
        "{} histories: {lin} linearizable, {not_lin} not linearizable, {} wrong, {:.2} s in total",
        cases.len(),
        wrong.len(),
        total.as_secs_f64()
    );
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
}
