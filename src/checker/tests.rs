//! Tests of the checker's entry points over small hand-made histories: failed and pending
//! compare-and-swaps, independent keys, real-time order, budgets that end in "unknown" rather
//! than a guess, bursts of unobserved pending writes, preloaded stores, and the JSON text form.
//! Owned by the checker.

use super::*;

fn inv(p: u64, f: OpFunction) -> Event {
    Event::new(p, EventType::Invoke, f)
}
fn ok(p: u64, f: OpFunction) -> Event {
    Event::new(p, EventType::Ok, f)
}
fn verdict(events: &[Event], model: ModelKind) -> Verdict {
    check_events(events, model, &Budget::default())
        .unwrap()
        .verdict
}
use OpFunction::*;

#[test]
fn failed_cas_did_not_happen_and_pending_cas_may_have() {
    let base = [
        inv(1, Write).value("1"),
        ok(1, Write),
        inv(2, Cas).expected("1").value("2"),
    ];
    // cas failed: the value stays 1.
    let after_failed_cas = |read: &str| {
        let mut h = base.to_vec();
        h.extend([
            Event::new(2, EventType::Fail, Cas),
            inv(3, Read),
            ok(3, Read).value(read),
        ]);
        verdict(&h, ModelKind::Register)
    };
    assert_eq!(after_failed_cas("1"), Verdict::Linearizable);
    assert_eq!(after_failed_cas("2"), Verdict::NotLinearizable);
    // cas timed out: either value may be read, but not flip back after 2 was seen.
    for seen in ["1", "2"] {
        let mut h = base.to_vec();
        h.extend([
            Event::new(2, EventType::Info, Cas),
            inv(3, Read),
            ok(3, Read).value(seen),
        ]);
        assert_eq!(
            verdict(&h, ModelKind::Register),
            Verdict::Linearizable,
            "{seen}"
        );
    }
    let mut h = base.to_vec();
    h.extend([
        inv(3, Read),
        ok(3, Read).value("2"),
        inv(3, Read),
        ok(3, Read).value("1"),
    ]);
    assert_eq!(verdict(&h, ModelKind::Register), Verdict::NotLinearizable);
    // A completed cas whose compare could never hold.
    let h = [inv(1, Cas).expected("7").value("8"), ok(1, Cas)];
    assert_eq!(verdict(&h, ModelKind::Register), Verdict::NotLinearizable);
}

#[test]
fn kv_keys_are_independent_and_the_bad_key_is_named() {
    let h = [
        inv(1, Put).key("a").value("1"),
        inv(2, Append).key("b").value("x"),
        ok(1, Put).key("a"),
        ok(2, Append).key("b"),
        inv(1, Get).key("a"),
        ok(1, Get).key("a").value("1"),
        inv(2, Append).key("b").value("y"),
        ok(2, Append).key("b"),
        inv(3, Get).key("b"),
        ok(3, Get).key("b").value("xy"),
        inv(3, Delete).key("a"),
        ok(3, Delete).key("a"),
        inv(3, Get).key("a"),
        ok(3, Get).key("a"),
    ];
    let r = check_events(&h, ModelKind::Kv, &Budget::default()).unwrap();
    assert_eq!(r.verdict, Verdict::Linearizable, "{}", r.explain());
    assert_eq!(r.keys.len(), 2);
    // The same, but key b's get saw "yx": only key b is wrong.
    let mut bad = h.to_vec();
    bad[9] = ok(3, Get).key("b").value("yx");
    let budget = Budget {
        stop_at_first_violation: false,
        ..Budget::default()
    };
    let r = check_events(&bad, ModelKind::Kv, &budget).unwrap();
    assert_eq!(r.verdict, Verdict::NotLinearizable);
    assert_eq!(r.keys[0].verdict, Verdict::Linearizable);
    assert_eq!(r.keys[1].verdict, Verdict::NotLinearizable);
    let v = r.keys[1].violation.as_ref().unwrap();
    assert_eq!(v.prefix.len(), 2);
    assert_eq!(v.state, "\"xy\"");
    let text = r.explain();
    assert!(text.contains("key \"b\": NOT linearizable"), "{text}");
    assert!(text.contains("get -> \"yx\""), "{text}");
}

#[test]
fn concurrent_ops_may_be_reordered_but_real_time_holds() {
    // put 1 and put 2 overlap; reads after both see 2 then 2: fine; 2 then 1: not.
    let mut h = vec![
        inv(1, Put).key("k").value("1").time(0),
        inv(2, Put).key("k").value("2").time(1),
        ok(1, Put).key("k").time(5),
        ok(2, Put).key("k").time(6),
        inv(3, Get).key("k").time(7),
        ok(3, Get).key("k").value("1").time(8),
    ];
    assert_eq!(verdict(&h, ModelKind::Kv), Verdict::Linearizable);
    h.extend([
        inv(3, Get).key("k").time(9),
        ok(3, Get).key("k").value("2").time(10),
    ]);
    assert_eq!(verdict(&h, ModelKind::Kv), Verdict::NotLinearizable);
    // Out-of-order lines are sorted by time.
    h.reverse();
    assert_eq!(verdict(&h, ModelKind::Kv), Verdict::NotLinearizable);
}

#[test]
fn states_budget_gives_unknown_never_a_guess() {
    let mut h = Vec::new();
    for p in 0..10 {
        h.push(inv(p, Write).value(p.to_string()));
    }
    for p in 0..10 {
        h.push(ok(p, Write));
    }
    h.push(inv(99, Read));
    h.push(ok(99, Read).value("nobody"));
    let tight = Budget {
        max_states_per_key: 20,
        ..Budget::default()
    };
    let r = check_events(&h, ModelKind::Register, &tight).unwrap();
    assert_eq!(r.verdict, Verdict::Unknown);
    assert!(r.keys[0]
        .gave_up
        .as_deref()
        .unwrap_or("")
        .contains("state budget"));
    assert_eq!(verdict(&h, ModelKind::Register), Verdict::NotLinearizable);
}

/// A burst of writes whose outcome is unknown (every node restarted at once) on one hot
/// key, then a long tail of completed operations: the pending writes nobody read are set
/// aside, so the search stays linear; the one that was read still counts, and a stale read
/// after it is still caught.
#[test]
fn a_burst_of_unobserved_pending_writes_on_a_hot_key_stays_cheap() {
    let mut h = Vec::new();
    let mut t = 0u64;
    let mut tick = || {
        t += 1;
        t
    };
    for p in 0..24 {
        h.push(
            inv(p, Put)
                .key("hot")
                .value(format!("lost-{p}"))
                .time(tick()),
        );
    }
    h.push(inv(30, Put).key("hot").value("seen").time(tick()));
    for p in 0..24 {
        h.push(Event::new(p, EventType::Info, Put).key("hot").time(tick()));
    }
    h.push(Event::new(30, EventType::Info, Put).key("hot").time(tick()));
    h.push(inv(31, Get).key("hot").time(tick()));
    h.push(ok(31, Get).key("hot").value("seen").time(tick()));
    for i in 0..300 {
        let v = format!("v{i}");
        h.push(inv(32, Put).key("hot").value(v.clone()).time(tick()));
        h.push(ok(32, Put).key("hot").time(tick()));
        h.push(inv(33, Get).key("hot").time(tick()));
        h.push(ok(33, Get).key("hot").value(v).time(tick()));
    }
    let budget = Budget {
        max_states_per_key: 200_000,
        threads: 1,
        ..Budget::default()
    };
    let r = check_events(&h, ModelKind::Kv, &budget).unwrap();
    assert_eq!(r.verdict, Verdict::Linearizable, "{}", r.explain());
    assert_eq!(r.keys[0].pruned, 24);
    assert_eq!(r.keys[0].operations, 24 + 1 + 1 + 600);
    assert!(r.keys[0].states < 10_000, "{}", r.keys[0].states);
    assert!(r
        .explain_brief()
        .contains("24 of them writes nobody observed"));
    // The observed pending write is kept: reading the older value after it is a violation.
    let mut stale = h.clone();
    stale.push(inv(34, Get).key("hot").time(tick_after(&stale)));
    stale.push(ok(34, Get).key("hot").value("v10").time(tick_after(&stale)));
    let r = check_events(&stale, ModelKind::Kv, &budget).unwrap();
    assert_eq!(r.verdict, Verdict::NotLinearizable, "{}", r.explain());
    // Reading one of the lost values at the end makes it observed, and it is kept: a write
    // whose outcome is unknown may take effect at any time after its call, even last.
    let mut late = h.clone();
    late.push(inv(34, Get).key("hot").time(tick_after(&late)));
    late.push(
        ok(34, Get)
            .key("hot")
            .value("lost-3")
            .time(tick_after(&late)),
    );
    let r = check_events(&late, ModelKind::Kv, &budget).unwrap();
    assert_eq!(r.keys[0].pruned, 23);
    assert_eq!(r.verdict, Verdict::Linearizable, "{}", r.explain());
}

fn tick_after(h: &[Event]) -> u64 {
    h.iter().filter_map(|e| e.time).max().unwrap_or(0) + 1
}

#[test]
fn a_history_against_a_preloaded_store_passes_with_unknown_initial_values() {
    // The store held k = "pre" (and j absent) before the history; nobody wrote it in it.
    let h = [
        inv(1, Get).key("k").time(1),
        ok(1, Get).key("k").value("pre").time(2),
        inv(2, Get).key("j").time(3),
        ok(2, Get).key("j").time(4),
        inv(1, Put).key("k").value("new").time(5),
        ok(1, Put).key("k").time(6),
        inv(2, Get).key("k").time(7),
        ok(2, Get).key("k").value("new").time(8),
    ];
    assert_eq!(verdict(&h, ModelKind::Kv), Verdict::NotLinearizable);
    let unknown = |h: &[Event]| {
        check_events_with(h, ModelKind::Kv, &Budget::default(), Initial::Unknown)
            .unwrap()
            .verdict
    };
    assert_eq!(unknown(&h), Verdict::Linearizable);
    // Unknown is chosen once: two reads of k before any write must agree.
    let mut bad = h.to_vec();
    bad.splice(
        2..2,
        [
            inv(3, Get).key("k").time(2),
            ok(3, Get).key("k").value("other").time(2),
        ],
    );
    assert_eq!(unknown(&bad), Verdict::NotLinearizable);
    // A stale read after the write is still caught.
    let mut stale = h.to_vec();
    stale[7] = ok(2, Get).key("k").value("pre").time(8);
    assert_eq!(unknown(&stale), Verdict::NotLinearizable);
}

#[test]
fn json_text_round_trip_through_the_checker() {
    let h = [
        inv(1, Write).value("5").time(1),
        ok(1, Write).time(2),
        inv(2, Read).time(3),
        ok(2, Read).value("5").time(4),
    ];
    let mut buf = Vec::new();
    write_json_lines(&mut buf, &h).unwrap();
    let text = String::from_utf8(buf).unwrap();
    let r = check_text(&text, None, None, &Budget::default()).unwrap();
    assert_eq!(r.model, "register");
    assert_eq!(r.verdict, Verdict::Linearizable);
    let e = check_text("{\"process\":1}\n", None, None, &Budget::default()).unwrap_err();
    assert_eq!(e.line, 1);
}
