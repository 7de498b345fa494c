//! Scripted scenarios in the style of etcd's raft interaction tests: the script
//! language is documented in `ringraft::sim::script`. Each runs the real core in the simulator's
//! manual mode with the invariant checker after every step.

use ringraft::sim::script::run_script;

fn run(script: &str) {
    match run_script(script) {
        Ok(t) => {
            for l in t.lines {
                println!("{l}");
            }
        }
        Err(e) => panic!("{e}"),
    }
}

/// The Raft paper's figure 8, driven message by message. `S1` appends index 2 in term 1 but
/// nobody gets it; `S5` wins term 2 (with S3, S4) and appends a different index 2 nobody gets;
/// `S1` wins term 3 and copies its old index 2 to S3 and S4, so a majority holds it. Counting
/// replicas must NOT commit it (it is not of the current term); then S1 crashes and S5 wins
/// term 4 and legitimately replaces it.
const FIGURE_8: &str = "
cluster nodes=5 prevote=off checkquorum=off max-entries=1 {FLAGS}
campaign 1
stabilize
expect leader 1 term 1
expect commit 5 1
# (a) S1 appends index 2 in term 1; its appends are lost.
propose 1 x
drop
# (b) S5 wins term 2 with S3 and S4; S1 learns the term from S5's vote request and refuses it.
campaign 5
deliver 5->1 5->3 5->4
deliver 3->5 4->5
expect leader 5 term 2
expect entry 5 2 2
drop
# (c) S1 wins term 3 with S2 and S3 (S5 learns the term and refuses).
campaign 1
deliver 1->2 1->3 1->5
deliver 2->1 3->1
expect leader 1 term 3
expect role 5 follower
drop 1->2 1->5 5->1
# S1 replicates its term-1 index 2 to S3 and S4 (one entry per message): a majority holds it.
deliver 1->3 1->4
deliver 3->1 4->1
deliver 1->3 1->4
deliver 3->1 4->1
expect entry 3 2 1
expect entry 4 2 1
{CHECK_COMMIT}
drop
# (d) S1 crashes; S5 campaigns in term 4 and S2, S3, S4 vote for it (its last term is higher).
crash 1
campaign 5
{FINAL}
";

#[test]
fn figure_8_previous_term_entry_is_not_committed_by_counting() {
    let s = FIGURE_8
        .replace("{FLAGS}", "")
        .replace("{CHECK_COMMIT}", "expect commit 1 1")
        .replace(
            "{FINAL}",
            "stabilize\nexpect leader 5 term 4\nexpect entry 3 2 2\nexpect commit 3 3",
        );
    run(&s);
}

#[test]
fn figure_8_with_the_rule_broken_is_caught() {
    // Same schedule, with the test-only flag that commits previous-term entries by counting:
    // S1 commits index 2, and S5's election in term 4 breaks leader completeness.
    let s = FIGURE_8
        .replace("{FLAGS}", "unsafe-commit-previous-term")
        .replace("{CHECK_COMMIT}", "expect commit 1 2")
        .replace("{FINAL}", "expect-violation stabilize");
    run(&s);
}

#[test]
fn partitioned_old_leader_steps_down_and_its_uncommitted_entry_is_replaced() {
    run("
cluster nodes=3 seed=3
campaign 1
stabilize
expect leader 1 term 1
put 1 1 10
stabilize
expect commit 3 2
# Cut the leader off; its new entry cannot commit, its ReadIndex cannot complete.
isolate 1
put 1 1 11
read 1 7
stabilize
expect commit 1 2
expect last 1 3
# The majority elects a new leader (PreVote passes once their election timers ran out).
tick 2,3 25
expect term 2 2
# CheckQuorum: the old leader steps down on its own.
tick 1 25
expect role 1 follower
heal
tick all 4
expect commit 1 3
expect entry 1 3 2
expect applied 1 3
");
}

#[test]
fn lagging_follower_catches_up_through_a_snapshot() {
    run("
cluster nodes=3 snapshot-threshold=20 retain=2
campaign 1
stabilize
isolate 3
repeat 60 put 1 1 5
stabilize
expect commit 1 61
expect snapshot 1 20
heal
tick 1 3
expect commit 3 61
expect applied 3 61
expect snapshot 3 20
");
}

#[test]
fn learner_promoted_under_load() {
    run("
cluster nodes=4 voters=3 max-entries=4
campaign 1
stabilize
expect members 1 1,2,3 -
add-learner 1 4
repeat 10 put 1 2 7
deliver
repeat 10 put 1 2 8
stabilize
expect members 4 1,2,3 4
expect commit 4 22
# Promote while proposals keep flowing.
promote 1 4
repeat 10 put 1 2 9
deliver
deliver
repeat 10 put 1 2 10
stabilize
expect members 1 1,2,3,4 -
expect members 4 1,2,3,4 -
expect commit 4 43
# Four voters: two nodes down means no quorum.
isolate 2
isolate 3
put 1 2 11
stabilize
expect commit 1 43
heal
tick all 2
expect commit 1 44
");
}

#[test]
fn leadership_transfer_and_reads() {
    run("
cluster nodes=3
campaign 1
stabilize
put 1 1 1
stabilize
read 1 1
stabilize
expect read 1 1
transfer 1 2
stabilize
expect leader 2 term 2
expect role 1 follower
put 2 1 2
stabilize
expect commit 1 4
read 2 2
stabilize
expect read 2 2
");
}

#[test]
fn script_errors_name_the_line() {
    let e = run_script("cluster nodes=3\nexpect leader 1").unwrap_err();
    assert!(e.starts_with("line 2:"), "{e}");
    let e = run_script("cluster nodes=x").unwrap_err();
    assert!(e.contains("not a number"), "{e}");
    let e = run_script("campaign 1").unwrap_err();
    assert!(e.contains("no cluster"), "{e}");
}
