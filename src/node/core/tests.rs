//! Tests of the core: config mapping, initial membership, admission against the real WAL.

use super::*;
use crate::node::kv::WriteOp;

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
        let dir = std::env::temp_dir().join(format!(
            "ringraft-admit-{}-{}",
            std::process::id(),
            c.raft.persistence.segment_bytes
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut wal = ringraft_wal::Wal::open(&dir, storage::wal_options(&c)).unwrap();
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
        drop(wal);
        let _ = std::fs::remove_dir_all(&dir);
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
