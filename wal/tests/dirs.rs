//! First boot: the WAL directory and every missing parent are created durably (each new
//! directory's parent fsynced, oldest first), so the segments of a fresh log never outlive the
//! directory entry that names them.

mod common;

use common::small_opts;
use ringraft_wal::segment::create_dir_durable;
use ringraft_wal::Wal;

#[test]
fn every_new_directory_has_its_parent_fsynced() {
    let root = tempfile::tempdir().unwrap();
    let base = root.path().to_path_buf();
    let dir = base.join("node").join("core-0").join("wal");
    let synced = create_dir_durable(&dir).unwrap();
    assert_eq!(
        synced,
        vec![
            base.clone(),
            base.join("node"),
            base.join("node").join("core-0")
        ],
        "the parents of the three new directories, oldest first"
    );
    assert!(dir.is_dir());
    // Nothing new: nothing to sync.
    assert!(create_dir_durable(&dir).unwrap().is_empty());
    // One more level: only its parent.
    let deeper = dir.join("x");
    assert_eq!(create_dir_durable(&deeper).unwrap(), vec![dir.clone()]);
    // A file where a directory should be is an error, not a panic.
    let file = base.join("plain");
    std::fs::write(&file, b"x").unwrap();
    assert!(create_dir_durable(&file.join("sub")).is_err());
}

#[test]
fn a_log_opens_in_a_directory_tree_that_does_not_exist_yet() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a").join("b").join("wal");
    let mut wal = Wal::open(&dir, small_opts(8 * 1024)).unwrap();
    wal.append(1, 1, 1, b"first boot").unwrap();
    wal.close().unwrap();
    let wal = Wal::open(&dir, small_opts(8 * 1024)).unwrap();
    assert_eq!(wal.entry(1, 1).unwrap().payload, b"first boot");
}
