//! The nemesis at work: applies one planned fault to the running cluster — kills, pauses,
//! restarts, cuts through the fault proxy, disk faults, leadership transfers and membership
//! changes — waits out its window while watching for nodes that die on their own, heals it,
//! and returns what happened as a [`FaultRecord`].
//!
//! Invariants: a fault ends healed (links restored, paused nodes continued, killed members
//! restarted) except what it is meant to leave behind (a retired voter, a lagging leader down
//! for [`LAGGING_LEADER_DOWN`] after the window); partitions are drawn among the members when
//! the fault starts. Owned by the fault suite.

use std::time::{Duration, Instant};

use crate::client::Client;
use ringraft_net::message::{AdminRequest, AdminResponse};

use super::cluster::Cluster;
use super::findings::{FaultRecord, Findings};
use super::schedule::{self, Fault, NemesisKind, Target};
use super::workload;
use super::{LAGGING_LEADER_DOWN, MEMBERSHIP_RETRY};

/// Sleeps until `t0 + at`, watching for nodes that die on their own; false if interrupted.
pub(super) fn sleep_until(
    t0: Instant,
    at: Duration,
    cluster: &mut Cluster,
    f: &mut Findings,
) -> bool {
    while t0.elapsed() < at {
        if super::interrupted() {
            return false;
        }
        f.crashes.extend(cluster.reap_unexpected(t0.elapsed()));
        std::thread::sleep(Duration::from_millis(50).min(at.saturating_sub(t0.elapsed())));
    }
    !super::interrupted()
}

pub(super) fn names(v: &[usize]) -> String {
    let n: Vec<String> = v.iter().map(|i| format!("n{}", i + 1)).collect();
    format!("{{{}}}", n.join(","))
}

/// Applies one fault, waits out its duration, heals it; returns what happened.
pub(super) fn inject(f: &Fault, c: &mut Cluster, t0: Instant, found: &mut Findings) -> FaultRecord {
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
            cut_until(c, side, &rest, t0, end, found);
        }
        (NemesisKind::IsolateLeader, _) => {
            let l = leader();
            target = format!("n{} (leader) | {}", l + 1, names(&others(l)));
            cut_until(c, &[l], &others(l), t0, end, found);
        }
        (NemesisKind::Bridge, Target::Bridge { bridge, side }) => {
            let rest: Vec<usize> = all
                .iter()
                .copied()
                .filter(|i| i != bridge && !side.contains(i))
                .collect();
            target = format!("{} | {}, bridge n{}", names(side), names(&rest), bridge + 1);
            cut_until(c, side, &rest, t0, end, found);
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

/// Cuts every link between `a` and `b` both ways until `end` (since `t0`), then heals every
/// link.
fn cut_until(
    c: &mut Cluster,
    a: &[usize],
    b: &[usize],
    t0: Instant,
    end: Duration,
    found: &mut Findings,
) {
    c.proxy.cut_between(a, b);
    sleep_until(t0, end, c, found);
    c.proxy.heal_all();
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
