//! Tests of the core: config mapping, initial membership, admission against the real WAL, and
//! real cores (on a temporary WAL) refusing hostile messages, answering eventual reads, timing
//! every leader stage of a put and learning member addresses from configuration entries.

use super::*;
use crate::node::kv::WriteOp;
use crate::raft::{Entry, EntryKind};

fn cfg(text: &str) -> Config {
    Config::from_toml_with_env(text, &[]).unwrap()
}

const THREE: &str = r#"
[cluster]
node_id = 2
listen_address = "127.0.0.1:9082"
initial_cluster = [
{ id = 1, address = "127.0.0.1:9081", role = 1, status = 2 },
{ id = 2, address = "127.0.0.1:9082", role = 1, status = 2 },
{ id = 3, address = "127.0.0.1:9083", role = 1, status = 2 },
{ id = 4, address = "127.0.0.1:9084", role = 3, status = 0 },
]
[monitoring]
metrics_port = 8082
"#;

/// A test's own data directory under the system's temporary directory: emptied when made,
/// removed when dropped (declare it before the core that uses it, so the core goes first).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("ringraft-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// [`THREE`] (this node is 2 of three voters and a learner) with its data in `dir`.
fn three_in(dir: &TempDir) -> Arc<Config> {
    let text = THREE.replace(
        "listen_address = \"127.0.0.1:9082\"",
        &format!(
            "listen_address = \"127.0.0.1:9082\"\ndb_root_dir = \"{}\"",
            dir.0.display()
        ),
    );
    Arc::new(cfg(&text))
}

/// Opens core 0 of `c` serving shard 0 with fresh gauges, counting on `metrics`.
fn open_core(c: &Arc<Config>, metrics: &Arc<CoreMetrics>) -> (CoreState, CoreChannels) {
    let gauges = vec![Arc::new(ShardGauges::default())];
    CoreState::open(c.clone(), 0, &[0], metrics.clone(), &gauges).unwrap()
}

#[test]
fn raft_config_maps_timing_and_bounds() {
    let c = cfg(THREE);
    let r = raft_config(&c, 3);
    assert_eq!(r.id, 2);
    assert_eq!(r.election_timeout_min_ticks, 60);
    assert_eq!(r.election_timeout_max_ticks, 120);
    assert_eq!(r.heartbeat_interval_ticks, 10);
    // lease 500 ms = 50 ticks of the 60-tick minimum election timeout.
    assert_eq!(r.lease_ticks(), 50);
    assert_eq!(r.durability, Durability::DiskFirst);
    assert!(r.validate().is_ok());
    assert_ne!(raft_config(&c, 1).seed, r.seed);
}

#[test]
fn raft_config_hands_the_tick_length_to_the_clock_checked_lease() {
    let c = cfg(THREE);
    let r = raft_config(&c, 3);
    assert_eq!(c.raft.tick_interval_ms, 10);
    assert_eq!(r.tick_nanos, 10_000_000);
    // 50 lease ticks of 10 ms: the lease in real time is the configured 500 ms.
    assert_eq!(r.lease_nanos(), 500_000_000);
    let slow = cfg(&format!("{THREE}\n[raft]\ntick_interval_ms = 20\n"));
    assert_eq!(raft_config(&slow, 3).tick_nanos, 20_000_000);
}

#[test]
fn unsafe_test_faults_parse_known_names_and_report_unknown_ones() {
    assert_eq!(
        UnsafeTestFaults::parse(""),
        (UnsafeTestFaults::default(), vec![])
    );
    let (f, unknown) = UnsafeTestFaults::parse(" commit_previous_term,,lease_ignore_clock ,bogus");
    assert_eq!(
        f,
        UnsafeTestFaults {
            commit_previous_term: true,
            skip_vote_log_check: false,
            lease_ignore_clock: true,
        }
    );
    assert_eq!(unknown, vec!["bogus".to_string()]);
    let (f, unknown) = UnsafeTestFaults::parse("skip_vote_log_check");
    assert!(f.skip_vote_log_check && !f.commit_previous_term && !f.lease_ignore_clock);
    assert!(unknown.is_empty());
    // Names are exact: no case folding, no prefixes.
    let (f, unknown) = UnsafeTestFaults::parse("Lease_Ignore_Clock,lease");
    assert_eq!(f, UnsafeTestFaults::default());
    assert_eq!(unknown.len(), 2);
}

#[test]
fn unsafe_test_faults_map_onto_the_raft_config() {
    let c = cfg(THREE);
    let safe = raft_config_with(&c, 1, UnsafeTestFaults::default());
    assert!(
        !safe.unsafe_commit_previous_term
            && !safe.unsafe_skip_vote_log_check
            && !safe.unsafe_lease_ignore_clock
    );
    let (f, _) =
        UnsafeTestFaults::parse("commit_previous_term,skip_vote_log_check,lease_ignore_clock");
    let r = raft_config_with(&c, 1, f);
    assert!(r.unsafe_commit_previous_term);
    assert!(r.unsafe_skip_vote_log_check);
    assert!(r.unsafe_lease_ignore_clock);
    let (f, _) = UnsafeTestFaults::parse("lease_ignore_clock");
    let r = raft_config_with(&c, 1, f);
    assert!(r.unsafe_lease_ignore_clock && !r.unsafe_commit_previous_term);
    // The chaos suite passes its faults under the same variable name.
    assert_eq!(
        UNSAFE_TEST_FAULTS_ENV,
        crate::chaos::cluster::UNSAFE_TEST_FAULTS_ENV
    );
}

#[test]
fn late_tick_loop_delivers_at_most_a_few_ticks() {
    assert_eq!(driver::ticks_to_deliver(1), 1);
    assert_eq!(driver::ticks_to_deliver(2), 2);
    // A stall of 5 s at 10 ms ticks: not 500 ticks in one burst.
    assert_eq!(driver::ticks_to_deliver(500), driver::MAX_TICKS_PER_WAKEUP);
    assert!(
        driver::MAX_TICKS_PER_WAKEUP
            < u64::from(raft_config(&cfg(THREE), 1).election_timeout_min_ticks)
    );
}

#[test]
fn monotonic_nanos_never_goes_back() {
    let a = monotonic_nanos();
    std::thread::sleep(Duration::from_millis(2));
    let b = monotonic_nanos();
    assert!(b >= a + 1_000_000, "{a} {b}");
}

#[test]
fn refused_message_warnings_are_rate_limited() {
    let t0 = Instant::now();
    let mut l = InvalidLog::default();
    assert_eq!(l.note(0, t0), None);
    assert_eq!(l.note(2, t0), Some(2));
    // Within the interval: counted, not logged.
    assert_eq!(l.note(5, t0 + Duration::from_millis(10)), None);
    assert_eq!(l.note(5, t0 + Duration::from_millis(20)), None);
    // After it: the refusals since the last line.
    assert_eq!(l.note(6, t0 + INVALID_MESSAGE_LOG_INTERVAL), Some(4));
    // No new refusal: nothing to say even when due.
    assert_eq!(l.note(6, t0 + 3 * INVALID_MESSAGE_LOG_INTERVAL), None);
}

fn cas_value(key_len: usize, value_len: usize) -> Command {
    Command {
        client_id: 1,
        seq: 1,
        op: WriteOp::CasValue {
            key: vec![b'k'; key_len],
            expected: Some(vec![1; value_len]),
            new: vec![2; value_len],
        },
    }
}

/// Whatever admission lets through fits one WAL record of this node's WAL (opened with the
/// node's own options), and what would not fit is refused as too large before proposing.
#[test]
fn admitted_writes_always_fit_the_wal() {
    let small_segments = format!(
        "{THREE}\n[raft.persistence]\nsegment_bytes = 1048576\n[state_machine]\nmax_value_bytes = 1048576\n"
    );
    for text in [THREE.to_string(), small_segments] {
        let c = cfg(&text);
        let adm = Admission::from_config(&c);
        let dir = TempDir::new(&format!("admit-{}", c.raft.persistence.segment_bytes));
        let mut wal = ringraft_wal::Wal::open(&dir.0, storage::wal_options(&c)).unwrap();
        let max_v = adm.max_value_bytes;
        let mut index = 0;
        // A value-based CAS carries two values: both at the value limit.
        for cmd in [cas_value(16, max_v), cas_value(adm.max_key_bytes, max_v)] {
            let entry = crate::raft::Entry {
                index: 0,
                term: 1,
                kind: EntryKind::Normal,
                data: cmd.encode().into(),
            };
            let payload = storage::entry_payload(&entry);
            match admit(&cmd, &adm) {
                Ok(()) => {
                    index += 1;
                    wal.append(0, index, 1, &payload)
                        .expect("an admitted write must fit the WAL");
                }
                Err(ClientError::TooLarge { bytes, limit }) => {
                    assert_eq!(bytes as usize, cmd.encoded_len());
                    assert!(bytes > limit);
                    assert_eq!(
                        ClientError::TooLarge { bytes, limit }.class(),
                        crate::node::request::ErrorClass::NotApplied
                    );
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    // 1 MiB segments hold records of at most 512 KiB: a 1 MiB put is refused up front.
    let c = cfg(&format!(
        "{THREE}\n[raft.persistence]\nsegment_bytes = 1048576\n"
    ));
    let put = Command {
        client_id: 0,
        seq: 0,
        op: WriteOp::Put {
            key: b"k".to_vec(),
            value: vec![0; 1 << 20],
        },
    };
    assert!(matches!(
        admit(&put, &Admission::from_config(&c)),
        Err(ClientError::TooLarge { .. })
    ));
}

#[test]
fn initial_membership_from_roles() {
    let m = initial_membership(&cfg(THREE));
    assert_eq!(m.voters.iter().copied().collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(m.learners.iter().copied().collect::<Vec<_>>(), vec![4]);
    // The config file's addresses seed the member address table.
    assert_eq!(m.address(1), Some("127.0.0.1:9081"));
    assert_eq!(m.address(4), Some("127.0.0.1:9084"));
    let learner = THREE
        .replace("node_id = 2", "node_id = 4")
        .replace("9082\"\ninitial", "9084\"\ninitial");
    let c = cfg(&learner);
    assert!(c.is_joining_learner());
    assert!(initial_membership(&c).voters.is_empty());
    let single = "[cluster]\nnode_id = 7\nlisten_address = \"127.0.0.1:9100\"\n[monitoring]\nmetrics_port = 8100\n";
    assert_eq!(
        initial_membership(&cfg(single))
            .voters
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        vec![7]
    );
}

/// A hostile peer message reaches a real core: it is refused, counted on the core's metric and
/// warned about once per interval.
#[test]
fn refused_peer_messages_are_counted_on_the_metric() {
    let dir = TempDir::new("invalid");
    let metrics = Arc::new(CoreMetrics::default());
    let (mut st, _chans) = open_core(&three_in(&dir), &metrics);
    let hostile = || {
        vec![Inbound::Raft(
            0,
            Message {
                from: 1,
                to: 2,
                term: crate::raft::MAX_TERM + 1,
                body: MessageBody::Heartbeat {
                    commit: 0,
                    round: 1,
                },
            },
        )]
    };
    st.step_inbound(1, hostile());
    assert_eq!(metrics.raft_invalid_messages.get(), 1);
    assert_eq!(st.invalid_log.seen, 1);
    st.step_inbound(1, hostile());
    assert_eq!(metrics.raft_invalid_messages.get(), 2);
    // The second refusal came within the interval: counted, not yet warned about.
    assert_eq!(st.invalid_log.unlogged, 1);
    // The replica kept its term: the refusal changed no state.
    assert_eq!(st.multi.group(0).map(|r| r.term()), Some(0));
}

/// An eventual read is answered from the replica's local state and says so: the reply carries
/// the replica's applied index and whether it is the leader (here a fresh follower: 0, false).
#[test]
fn eventual_reads_are_marked_possibly_stale() {
    let dir = TempDir::new("eventual");
    let (mut st, _chans) = open_core(&three_in(&dir), &Arc::new(CoreMetrics::default()));
    let (tx, mut rx) = reply_channel();
    let op = ClientOp::Get {
        key: b"k".to_vec(),
        consistency: Consistency::Eventual,
    };
    st.submit(0, 0, 0, op, tx, Instant::now());
    let got = rx.try_recv().unwrap().unwrap().unwrap();
    assert_eq!(
        got,
        ClientReply::Eventual {
            reply: Box::new(ClientReply::Value(None)),
            read: ringraft_net::message::EventualRead {
                applied_index: 0,
                leader: false,
            },
        }
    );
}

/// A put through a real single-node core (the shared driver, the persist loop, the clock, a WAL
/// on disk) passes every leader stage once, and, as a lone node can only commit what it made
/// durable, its local sync comes before the commit. With the default persistence, and with
/// small rounds synced on the executor itself (`wal_executor_sync_max_entries`), through its
/// io_uring and blocking.
#[test]
fn a_put_on_a_real_core_records_every_leader_stage() {
    put_on_a_real_core_records_every_leader_stage("");
    put_on_a_real_core_records_every_leader_stage(
        "[raft.persistence]\nflush_policy = \"Immediate\"\nwal_executor_sync_max_entries = 1\n",
    );
    put_on_a_real_core_records_every_leader_stage(
        "[raft.persistence]\nflush_policy = \"Immediate\"\nwal_executor_sync_max_entries = 1\n\
         wal_executor_sync = \"blocking\"\n",
    );
}

fn put_on_a_real_core_records_every_leader_stage(persistence: &str) {
    let dir = TempDir::new("stages");
    let text = format!(
        "[cluster]\nnode_id = 1\nlisten_address = \"127.0.0.1:9181\"\ninitial_cluster_size = 1\n\
         db_root_dir = \"{}\"\n[raft]\nelection_timeout_ms_min = 60\n\
         election_timeout_ms_max = 120\nheartbeat_interval_ms = 20\ntick_interval_ms = 5\n\
         [raft.read_consistency]\nlease_duration_ms = 40\n{persistence}",
        dir.0.display()
    );
    let c = Arc::new(cfg(&text));
    let metrics = Arc::new(CoreMetrics::default());
    let gauges = vec![Arc::new(ShardGauges::default())];
    let m = metrics.clone();
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .unwrap();
    let answer = ex.run(async move {
        let (st, chans) = CoreState::open(c, 0, &[0], m, &gauges).unwrap();
        let durability = st.durability();
        let st = Rc::new(RefCell::new(st));
        glommio::spawn_local(drive(st.clone(), chans.kick_rx)).detach();
        glommio::spawn_local(persist_loop(st.clone(), chans.persist_rx, durability)).detach();
        glommio::spawn_local(tick_loop(st.clone(), Duration::from_millis(5))).detach();
        let deadline = Instant::now() + Duration::from_secs(10);
        while st.borrow().multi.group(0).map(|r| r.role()) != Some(Role::Leader) {
            assert!(Instant::now() < deadline, "no leader within 10 s");
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let (tx, rx) = reply_channel();
        let op = ClientOp::Write(WriteOp::Put {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        });
        st.borrow_mut().submit(0, 0, 0, op, tx, Instant::now());
        let got =
            glommio::timer::timeout(Duration::from_secs(10), async { Ok(rx.await.ok()) }).await;
        st.borrow_mut().fail_all("test over");
        got
    });
    assert!(
        matches!(answer, Ok(Some(Ok(ClientReply::Applied(_))))),
        "{answer:?}"
    );
    let s = &metrics.stages;
    for (name, h) in [
        ("received_to_proposed", &s.received_to_proposed),
        ("proposed_to_local_durable", &s.proposed_to_local_durable),
        ("proposed_to_committed", &s.proposed_to_committed),
        ("committed_to_applied", &s.committed_to_applied),
        ("applied_to_answered", &s.applied_to_answered),
        ("received_to_answered", &s.received_to_answered),
    ] {
        assert_eq!(h.count(), 1, "{name}");
    }
    assert_eq!(s.commit_before_local_durable.get(), 0);
    assert_eq!(s.append_received_to_durable.count(), 0);
    assert_eq!(s.append_durable_to_acked.count(), 0);
}

/// With `wal_executor_sync = "io_uring"`, a real single-node core makes its puts' rounds durable
/// on its own executor, the fdatasync submitted through the executor's io_uring by the core's
/// ring syncer (a caller's sync: no flush worker asked), and every put is answered only once
/// its entry is durable in the WAL (a lone voter commits only what it has on disk).
#[test]
fn puts_synced_through_io_uring_are_answered_only_once_durable() {
    let dir = TempDir::new("uring-sync");
    let text = format!(
        "[cluster]\nnode_id = 1\nlisten_address = \"127.0.0.1:9181\"\ninitial_cluster_size = 1\n\
         db_root_dir = \"{}\"\n[raft]\nelection_timeout_ms_min = 60\n\
         election_timeout_ms_max = 120\nheartbeat_interval_ms = 20\ntick_interval_ms = 5\n\
         [raft.read_consistency]\nlease_duration_ms = 40\n[raft.persistence]\n\
         flush_policy = \"Immediate\"\nwal_executor_sync_max_entries = 1000\n\
         wal_executor_sync = \"io_uring\"\n",
        dir.0.display()
    );
    let c = Arc::new(cfg(&text));
    let metrics = Arc::new(CoreMetrics::default());
    let gauges = vec![Arc::new(ShardGauges::default())];
    let ex = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
        .make()
        .unwrap();
    let (answered, ring_syncs) = ex.run(async move {
        let (st, chans) = CoreState::open(c, 0, &[0], metrics, &gauges).unwrap();
        let durability = st.durability();
        let st = Rc::new(RefCell::new(st));
        glommio::spawn_local(drive(st.clone(), chans.kick_rx)).detach();
        glommio::spawn_local(persist_loop(
            st.clone(),
            chans.persist_rx,
            durability.clone(),
        ))
        .detach();
        glommio::spawn_local(tick_loop(st.clone(), Duration::from_millis(5))).detach();
        let deadline = Instant::now() + Duration::from_secs(10);
        while st.borrow().multi.group(0).map(|r| r.role()) != Some(Role::Leader) {
            assert!(Instant::now() < deadline, "no leader within 10 s");
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        let before = durability.stats().caller_syncs;
        let mut answered = 0;
        for k in 0..20u8 {
            let (tx, rx) = reply_channel();
            let op = ClientOp::Write(WriteOp::Put {
                key: vec![k],
                value: vec![k; 16],
            });
            st.borrow_mut().submit(0, 0, 0, op, tx, Instant::now());
            let got =
                glommio::timer::timeout(Duration::from_secs(10), async { Ok(rx.await.ok()) }).await;
            assert!(
                matches!(got, Ok(Some(Ok(ClientReply::Applied(_))))),
                "{got:?}"
            );
            // Answered: the put's entry is the last one of the log, and it must be durable.
            let s = st.borrow();
            let (last, durable) = (s.wal.last_index(0), s.wal.durable_index(0));
            assert!(
                durable >= last,
                "put {k} answered with index {last} appended but only {durable} durable"
            );
            answered += 1;
        }
        let ring_syncs = durability.stats().caller_syncs - before;
        st.borrow_mut().fail_all("test over");
        (answered, ring_syncs)
    });
    assert_eq!(answered, 20);
    assert!(
        ring_syncs >= 1,
        "no round was synced through the executor's ring"
    );
}

/// Runs the core's driver rounds synchronously until quiet, each round made durable (a WAL
/// sync) before its entries are applied, and what each step sent handed to the links.
fn settle(s: &mut CoreState) {
    for _ in 0..20 {
        let (mut d, mut out, _) = driver::parts(s);
        let Some(mut round) = d.begin(None, &mut out).unwrap() else {
            return;
        };
        let sent = out.sent();
        driver::finish(s, sent);
        let (mut d, _, mut wal) = driver::parts(s);
        let batch = d.persist(&mut round, &mut wal).unwrap();
        s.wal.sync().unwrap();
        let (mut d, mut out, _) = driver::parts(s);
        let durable = d.on_durable(batch, &mut out);
        assert_eq!(durable.refused, None);
        d.apply(&mut round, &mut out).unwrap();
        let sent = out.sent();
        driver::finish(s, sent);
    }
    panic!("the core did not go quiet");
}

/// A member's address reaches this replica's link table through the configuration entry alone
/// (nobody announced it here), the config file's address of a member it lists is kept, and the
/// replica restarted from its WAL knows the new member's address again.
#[test]
fn member_address_from_a_configuration_entry_reaches_the_links_and_survives_restart() {
    let dir = TempDir::new("member-addr");
    let c = three_in(&dir);
    let addr = "127.0.0.1:9185";
    let mut m = initial_membership(&c)
        .apply(ConfChange::AddLearner(5, Some(addr.into())))
        .unwrap();
    // The leader's view of node 1 differs from this node's config file: the file wins.
    m.addresses.insert(1, "127.0.0.1:1".into());
    let open = || open_core(&c, &Arc::new(CoreMetrics::default()));
    let (mut st, _chans) = open();
    assert!(!st.peers.contains_key(&5));
    let append = Message {
        from: 1,
        to: 2,
        term: 1,
        body: MessageBody::Append {
            prev_index: 0,
            prev_term: 0,
            entries: vec![Entry {
                index: 1,
                term: 1,
                kind: EntryKind::Config,
                data: m.encode().into(),
            }],
            commit: 1,
        },
    };
    st.step_inbound(1, vec![Inbound::Raft(0, append)]);
    settle(&mut st);
    assert_eq!(st.multi.group(0).map(|r| r.log().applied()), Some(1));
    assert_eq!(st.peers.get(&5).map(|l| l.address.as_str()), Some(addr));
    assert_eq!(
        st.peers.get(&1).map(|l| l.address.as_str()),
        Some("127.0.0.1:9081")
    );
    drop(st);
    let (st, _chans) = open();
    assert_eq!(st.peers.get(&5).map(|l| l.address.as_str()), Some(addr));
}
