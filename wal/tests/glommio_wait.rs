//! The durability future on the executor the node uses: a glommio task awaits `wait_durable`
//! while other tasks on the same executor keep running (the executor thread is never blocked),
//! and the future is woken from a flush worker thread.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use ringraft_wal::{FlushPolicy, Wal, WalOptions};

#[test]
fn durable_wait_does_not_block_a_glommio_executor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let handle = glommio::LocalExecutorBuilder::default()
        .name("wal-test")
        .spawn(move || async move {
            let opts = WalOptions {
                segment_bytes: 64 * 1024,
                max_payload_bytes: 1024,
                // Nothing syncs on its own for 5 s: only the flush below does.
                flush_policy: FlushPolicy::Batch {
                    threshold: 1_000_000,
                    interval_ms: 5_000,
                },
                ..WalOptions::default()
            };
            let mut wal = Wal::open(&path, opts).unwrap();
            let mut lsn = 0;
            for g in 0..10u64 {
                lsn = wal.append(g, 1, 1, b"entry").unwrap();
            }
            let ticks = Rc::new(Cell::new(0u32));
            let t = ticks.clone();
            glommio::spawn_local(async move {
                loop {
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                    t.set(t.get() + 1);
                }
            })
            .detach();
            let d = wal.durability();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(100));
                d.flush();
            });
            let before = ticks.get();
            wal.wait_durable(lsn).await.unwrap();
            let during = ticks.get() - before;
            assert!(wal.durable_lsn() >= lsn);
            for g in 0..10u64 {
                assert_eq!(wal.durable_index(g), 1);
            }
            during
        })
        .unwrap();
    let during = handle.join().unwrap();
    assert!(
        during >= 20,
        "other tasks ran only {during} times while the durable wait was pending"
    );
}
