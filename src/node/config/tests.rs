//! Tests of loading, overriding and validating the configuration.

use std::path::PathBuf;

use super::*;

const BASE: &str = r#"
[cluster]
node_id = 1
listen_address = "127.0.0.1:9081"
initial_cluster = [
{ id = 1, address = "127.0.0.1:9081", role = 1, status = 2 },
{ id = 2, address = "127.0.0.1:9082", role = 1, status = 2 },
{ id = 3, address = "127.0.0.1:9083", role = 1, status = 2 },
]

[raft.read_consistency]
default_policy = "LeaseRead"
lease_duration_ms = 500

[raft.persistence]
strategy = "DiskFirst"
flush_policy = { Batch = { threshold = 100, interval_ms = 20 } }
max_buffered_entries = 10000
flush_workers = 4
"#;

fn load(text: &str) -> Result<Config, ConfigError> {
    Config::from_toml_with_env(text, &[])
}

fn load_env(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    Config::from_toml_with_env(text, &env)
}

#[test]
fn wal_write_mode_and_recycling_are_validated() {
    let c = load(BASE).unwrap();
    assert_eq!(c.raft.persistence.wal_write_mode, WalWriteMode::Pwrite);
    let with =
        |line: &str| BASE.replace("flush_workers = 4", &format!("flush_workers = 4\n{line}"));
    let c = load(&with("wal_write_mode = \"mmap\"")).unwrap();
    assert_eq!(c.raft.persistence.wal_write_mode, WalWriteMode::Mmap);
    assert_eq!(
        crate::node::storage::wal_options(&c).write_mode,
        ringraft_wal::WriteMode::Mmap
    );
    let c = load_env(
        BASE,
        &[("RINGRAFT__RAFT__PERSISTENCE__WAL_WRITE_MODE", "pwrite")],
    )
    .unwrap();
    assert_eq!(c.raft.persistence.wal_write_mode, WalWriteMode::Pwrite);
    let e = load(&with("wal_write_mode = \"fsync\"")).unwrap_err().0;
    assert!(e.contains("raft.persistence.wal_write_mode"), "{e}");
    assert!(
        e.contains("fsync") && e.contains("\"pwrite\" or \"mmap\""),
        "{e}"
    );
    let c = load(&with("wal_recycle_segments = 0")).unwrap();
    assert_eq!(crate::node::storage::wal_options(&c).recycle_segments, 0);
    let e = load(&with("wal_recycle_segments = 65")).unwrap_err().0;
    assert!(e.contains("raft.persistence.wal_recycle_segments"), "{e}");
    // Syncs on the executor: off by default; on, an Immediate WAL asks for no sync on append.
    let c = load(BASE).unwrap();
    assert_eq!(c.raft.persistence.wal_executor_sync_max_entries, 0);
    let immediate = |line: &str| {
        with(line).replace(
            "flush_policy = { Batch = { threshold = 100, interval_ms = 20 } }",
            "flush_policy = \"Immediate\"",
        )
    };
    let c = load(&immediate("wal_executor_sync_max_entries = 1")).unwrap();
    assert!(matches!(
        crate::node::storage::wal_options(&c).flush_policy,
        ringraft_wal::FlushPolicy::Batch {
            threshold: u64::MAX,
            ..
        }
    ));
    let c = load(&immediate("")).unwrap();
    assert_eq!(
        crate::node::storage::wal_options(&c).flush_policy,
        ringraft_wal::FlushPolicy::Immediate
    );
    // How the executor syncs its rounds: through its io_uring unless told to block.
    assert_eq!(
        load(BASE).unwrap().raft.persistence.wal_executor_sync,
        crate::node::config::WalExecutorSync::IoUring
    );
    let c = load(&immediate("wal_executor_sync = \"blocking\"")).unwrap();
    assert_eq!(
        c.raft.persistence.wal_executor_sync,
        crate::node::config::WalExecutorSync::Blocking
    );
    let e = load(&with("wal_executor_sync = \"threads\""))
        .unwrap_err()
        .0;
    assert!(e.contains("io_uring") && e.contains("blocking"), "{e}");
    let e = load(&with("wal_executor_sync_max_entries = 1001"))
        .unwrap_err()
        .0;
    assert!(
        e.contains("raft.persistence.wal_executor_sync_max_entries"),
        "{e}"
    );
}

#[test]
fn seed_config_loads_with_its_values() {
    let c = load(BASE).unwrap();
    assert_eq!(c.cluster.node_id, 1);
    assert_eq!(c.cluster.initial_cluster.len(), 3);
    assert_eq!(
        c.raft.read_consistency.default_policy,
        ReadPolicy::LeaseRead
    );
    assert_eq!(c.raft.persistence.strategy, PersistenceStrategy::DiskFirst);
    assert_eq!(
        c.raft.persistence.flush_policy,
        FlushPolicy::Batch {
            threshold: 100,
            interval_ms: 20
        }
    );
    assert_eq!(c.raft.persistence.flush_workers, 4);
    assert_eq!(c.data_dir(), PathBuf::from("./db/1"));
    assert_eq!(c.node_log_dir(), PathBuf::from("./logs/1"));
}

#[test]
fn immediate_flush_policy_parses() {
    let text = BASE.replace(
        "flush_policy = { Batch = { threshold = 100, interval_ms = 20 } }",
        "flush_policy = \"Immediate\"",
    );
    assert_eq!(
        load(&text).unwrap().raft.persistence.flush_policy,
        FlushPolicy::Immediate
    );
}

#[test]
fn unknown_key_is_named() {
    let text = BASE.replace("flush_workers = 4", "flush_workers = 4\nflush_wrokers = 2");
    let e = load(&text).unwrap_err().0;
    assert!(e.contains("flush_wrokers"), "{e}");
    assert!(e.contains("flush_workers"), "allowed keys listed: {e}");
    assert!(e.contains("raft.persistence"), "{e}");
}

#[test]
fn unknown_section_is_named() {
    let e = load(&format!("{BASE}\n[bogus]\nx = 1\n")).unwrap_err().0;
    assert!(e.contains("bogus"), "{e}");
}

#[test]
fn wrong_type_names_key_and_value() {
    let text = BASE.replace("node_id = 1", "node_id = \"one\"");
    let e = load(&text).unwrap_err().0;
    assert!(e.contains("cluster.node_id"), "{e}");
    assert!(e.contains("one"), "{e}");
    assert!(e.contains("u64"), "{e}");
}

#[test]
fn unknown_enum_variant_lists_allowed() {
    let text = BASE.replace("\"DiskFirst\"", "\"DiskLast\"");
    let e = load(&text).unwrap_err().0;
    assert!(e.contains("DiskLast"), "{e}");
    assert!(e.contains("DiskFirst") && e.contains("MemFirst"), "{e}");
    assert!(e.contains("raft.persistence.strategy"), "{e}");
}

#[test]
fn out_of_range_values_name_key_value_and_range() {
    let cases = [
        (
            "flush_workers = 4",
            "flush_workers = 0",
            "raft.persistence.flush_workers",
            "0",
        ),
        (
            "max_buffered_entries = 10000",
            "max_buffered_entries = 0",
            "raft.persistence.max_buffered_entries",
            "0",
        ),
        (
            "lease_duration_ms = 500",
            "lease_duration_ms = 5000",
            "raft.read_consistency.lease_duration_ms",
            "5000",
        ),
        (
            "threshold = 100",
            "threshold = 0",
            "raft.persistence.flush_policy.Batch.threshold",
            "0",
        ),
        ("node_id = 1", "node_id = 0", "cluster.node_id", "0"),
    ];
    for (from, to, key, value) in cases {
        let e = load(&BASE.replace(from, to)).unwrap_err().0;
        assert!(e.contains(key), "{to}: {e}");
        assert!(e.contains(&format!("= {value} ")), "{to}: {e}");
        assert!(e.contains("between"), "{to}: {e}");
    }
}

#[test]
fn runtime_and_timing_ranges_checked() {
    let e = load(&format!("{BASE}\n[runtime]\ncores = 0\n"))
        .unwrap_err()
        .0;
    assert!(
        e.contains("runtime.cores") && e.contains("between 1 and"),
        "{e}"
    );
    let e = load(&format!(
        "{BASE}\n[raft]\nelection_timeout_ms_min = 500\nelection_timeout_ms_max = 400\n"
    ));
    let e2 = e.unwrap_err().0;
    assert!(e2.contains("raft.election_timeout_ms_max"), "{e2}");
    let e = load(&format!("{BASE}\n[raft]\nheartbeat_interval_ms = 400\n"))
        .unwrap_err()
        .0;
    assert!(
        e.contains("raft.heartbeat_interval_ms") && e.contains("400"),
        "{e}"
    );
}

#[test]
fn seed_key_aliases_accepted() {
    let c = load(&format!(
        "{BASE}\n[raft]\nelection_timeout_min = 700\nelection_timeout_max = 1400\n"
    ))
    .unwrap();
    assert_eq!(c.raft.election_timeout_ms_min, 700);
    assert_eq!(c.raft.election_timeout_ms_max, 1400);
}

#[test]
fn member_checks() {
    let text = BASE.replace(
        "{ id = 3, address = \"127.0.0.1:9083\", role = 1",
        "{ id = 3, address = \"127.0.0.1:9083\", role = 7",
    );
    let e = load(&text).unwrap_err().0;
    assert!(
        e.contains("initial_cluster[2].role") && e.contains("= 7"),
        "{e}"
    );
    let text = BASE.replace("127.0.0.1:9083\", role", "127.0.0.1:9082\", role");
    let e = load(&text).unwrap_err().0;
    assert!(e.contains("initial_cluster[2].address"), "{e}");
    let text = BASE.replace("node_id = 1", "node_id = 9");
    let e = load(&text).unwrap_err().0;
    assert!(e.contains("cluster.node_id") && e.contains("9"), "{e}");
    let text = BASE.replace(
        "listen_address = \"127.0.0.1:9081\"",
        "listen_address = \"nowhere\"",
    );
    let e = load(&text).unwrap_err().0;
    assert!(
        e.contains("cluster.listen_address") && e.contains("nowhere"),
        "{e}"
    );
}

#[test]
fn env_overrides_file_values() {
    let c = load_env(
        BASE,
        &[
            ("RINGRAFT__RAFT__PERSISTENCE__STRATEGY", "MemFirst"),
            ("RINGRAFT__CLUSTER__NODE_ID", "2"),
            ("RINGRAFT__RUNTIME__CORES", "2"),
            (
                "RINGRAFT__RAFT__PERSISTENCE__FLUSH_POLICY",
                "{ Batch = { threshold = 7, interval_ms = 3 } }",
            ),
            ("UNRELATED", "x"),
        ],
    )
    .unwrap();
    assert_eq!(c.raft.persistence.strategy, PersistenceStrategy::MemFirst);
    assert_eq!(c.cluster.node_id, 2);
    assert_eq!(c.runtime.cores, 2);
    assert_eq!(
        c.raft.persistence.flush_policy,
        FlushPolicy::Batch {
            threshold: 7,
            interval_ms: 3
        }
    );
}

#[test]
fn bad_env_override_names_the_variable() {
    let e = load_env(
        BASE,
        &[("RINGRAFT__RAFT__PERSISTENCE__STRATEGY", "Sometimes")],
    )
    .unwrap_err()
    .0;
    assert!(e.contains("RINGRAFT__RAFT__PERSISTENCE__STRATEGY"), "{e}");
    assert!(e.contains("Sometimes") && e.contains("MemFirst"), "{e}");
    let e = load_env(BASE, &[("RINGRAFT__RAFT__NOPE", "1")])
        .unwrap_err()
        .0;
    assert!(
        e.contains("RINGRAFT__RAFT__NOPE") && e.contains("nope"),
        "{e}"
    );
    let e = load_env(BASE, &[("RINGRAFT__CLUSTER__NODE_ID", "x")])
        .unwrap_err()
        .0;
    assert!(
        e.contains("RINGRAFT__CLUSTER__NODE_ID") && e.contains("u64"),
        "{e}"
    );
    let e = load_env(BASE, &[("RINGRAFT____X", "1")]).unwrap_err().0;
    assert!(e.contains("not a key path"), "{e}");
}

#[test]
fn syntax_error_reports_position() {
    let e = load("[cluster\nnode_id = 1").unwrap_err().0;
    assert!(e.contains("not valid TOML") && e.contains("line 1"), "{e}");
}

#[test]
fn missing_required_key_is_named() {
    let e = load("[cluster]\nnode_id = 1\n").unwrap_err().0;
    assert!(e.contains("listen_address"), "{e}");
}

#[test]
fn ticks_derived_from_ms() {
    let c = load(BASE).unwrap();
    assert_eq!(c.election_ticks(), (60, 120));
    assert_eq!(c.heartbeat_ticks(), 10);
}

#[test]
fn shipped_configs_are_valid() {
    let files = [
        include_str!("../../../config/n1.toml"),
        include_str!("../../../config/n2.toml"),
        include_str!("../../../config/n3.toml"),
        include_str!("../../../config/n4.toml"),
        include_str!("../../../config/n5.toml"),
        include_str!("../../../config/single.toml"),
    ];
    for (i, text) in files.iter().enumerate() {
        let c = load(text).unwrap_or_else(|e| panic!("config {i}: {e}"));
        assert_eq!(c.runtime.cores, 1);
    }
    assert!(load(files[3]).unwrap().is_joining_learner());
    // The many-core reference pins 16 executors; on a smaller machine only unpinned.
    let reference = include_str!("../../../config/reference.toml");
    let c = load_env(reference, &[("RINGRAFT__RUNTIME__PLACEMENT", "Unbound")]).unwrap();
    assert_eq!(c.runtime.cores, 16);
    assert_eq!(c.runtime.shards_per_node, 64);
}

#[test]
fn plaintext_on_a_non_loopback_address_needs_insecure() {
    let open = BASE.replace("127.0.0.1:9081\"\ninitial", "0.0.0.0:9081\"\ninitial");
    assert_ne!(open, BASE);
    let e = load(&open).unwrap_err().0;
    assert!(
        e.contains("not a loopback address") && e.contains("insecure"),
        "{e}"
    );
    let c = load(&format!("{open}\n[security]\ninsecure = true\n")).unwrap();
    assert!(c.security.insecure);
    let tls = format!(
        "{open}\n[security]\nca_file = \"ca.crt\"\ncert_file = \"n.crt\"\nkey_file = \"n.key\"\n"
    );
    assert!(load(&tls).is_ok());
    let partial = format!("{BASE}\n[security]\nca_file = \"ca.crt\"\n");
    let e = load(&partial).unwrap_err().0;
    assert!(e.contains("all three"), "{e}");
}

#[test]
fn snapshot_state_percent_defaults_to_25_and_is_bounded_by_100() {
    assert_eq!(load(BASE).unwrap().raft.snapshot_state_percent, 25);
    let c = load_env(BASE, &[("RINGRAFT__RAFT__SNAPSHOT_STATE_PERCENT", "0")]).unwrap();
    assert_eq!(c.raft.snapshot_state_percent, 0);
    let e = load_env(BASE, &[("RINGRAFT__RAFT__SNAPSHOT_STATE_PERCENT", "101")])
        .unwrap_err()
        .0;
    assert!(
        e.contains("raft.snapshot_state_percent") && e.contains("101"),
        "{e}"
    );
}

#[test]
fn snapshot_write_rate_defaults_to_128_mib_per_s_and_is_bounded() {
    assert_eq!(load(BASE).unwrap().raft.snapshot_write_mib_per_s, 128);
    let c = load_env(BASE, &[("RINGRAFT__RAFT__SNAPSHOT_WRITE_MIB_PER_S", "0")]).unwrap();
    assert_eq!(c.raft.snapshot_write_mib_per_s, 0);
    let e = load_env(
        BASE,
        &[("RINGRAFT__RAFT__SNAPSHOT_WRITE_MIB_PER_S", "1048577")],
    )
    .unwrap_err()
    .0;
    assert!(
        e.contains("raft.snapshot_write_mib_per_s") && e.contains("1048577"),
        "{e}"
    );
}
