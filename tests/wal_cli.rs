//! `ringraft wal inspect` / `ringraft wal repair` end to end: a WAL written with the wal
//! crate, a record damaged with a valid one after it (opening refuses), then the binary must
//! name file and offset and exit non-zero, a dry-run repair must leave every byte unchanged,
//! `repair --yes` must cut exactly there, and inspect must then exit 0. Also through a node
//! data directory (`core-<c>/wal/` inside).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ringraft_wal::record::record_bytes;
use ringraft_wal::segment::{segment_path, SEGMENT_HEADER_BYTES};
use ringraft_wal::{FlushPolicy, Wal, WalOptions};

const OWNER: u64 = 7;
const ENTRIES: u64 = 20;
const PAYLOAD: usize = 40;

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let p =
            std::env::temp_dir().join(format!("ringraft-wal-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes ENTRIES entries of group 1 into one segment of `dir`; returns the record offsets.
fn write_wal(dir: &Path) -> Vec<u64> {
    let opts = WalOptions {
        segment_bytes: 64 * 1024,
        max_payload_bytes: 1024,
        flush_policy: FlushPolicy::Immediate,
        flush_workers: 1,
        owner_id: OWNER,
        ..WalOptions::default()
    };
    let mut wal = Wal::open(dir, opts).unwrap();
    let mut offs = Vec::new();
    let mut off = SEGMENT_HEADER_BYTES as u64;
    for i in 1..=ENTRIES {
        wal.append(1, i, 1, &[i as u8; PAYLOAD]).unwrap();
        offs.push(off);
        off += record_bytes(PAYLOAD) as u64;
    }
    assert_eq!(wal.segment_count(), 1);
    wal.close().unwrap();
    offs
}

/// Flips one payload byte of the record at `off` (its crc no longer matches).
fn damage(path: &Path, off: u64) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, off + 50).unwrap();
    b[0] ^= 0x5a;
    f.write_all_at(&b, off + 50).unwrap();
}

fn ringraft(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ringraft"))
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Every file of `dir` (name, bytes), sorted.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn inspect_names_corruption_dry_run_changes_nothing_repair_fixes_it() {
    let tmp = TempDir::new("one");
    let dir = tmp.0.join("wal");
    let offs = write_wal(&dir);
    let seg = segment_path(&dir, 1);
    let d = dir.to_str().unwrap();

    let o = ringraft(&["wal", "inspect", d]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("{ENTRIES} records")),
        "{}",
        text(&o)
    );

    // Damage record 6 (lsn 6); records 7.. stay valid after it.
    let bad = offs[5];
    damage(&seg, bad);
    let before = snapshot(&dir);

    let o = ringraft(&["wal", "inspect", d]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("CORRUPT"), "{out}");
    assert!(out.contains(&seg.display().to_string()), "{out}");
    assert!(out.contains(&format!("offset {bad}")), "{out}");
    assert_eq!(snapshot(&dir), before, "inspect changed the directory");

    let o = ringraft(&["wal", "repair", d]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(
        out.contains(&format!("would cut {} at offset {bad}", seg.display())),
        "{out}"
    );
    assert!(out.contains("from lsn 6 on"), "{out}");
    for (k, off) in offs.iter().enumerate().skip(6) {
        assert!(
            out.contains(&format!(
                "valid record lsn {} at {} offset {off}",
                k + 1,
                seg.display()
            )),
            "{out}"
        );
    }
    assert_eq!(
        snapshot(&dir),
        before,
        "dry-run repair changed the directory"
    );

    let o = ringraft(&["wal", "repair", d, "--yes"]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains(&format!("offset {bad}")), "{out}");
    assert!(out.contains("14 valid records after the cut"), "{out}");
    assert_ne!(snapshot(&dir), before, "repair --yes changed nothing");

    let o = ringraft(&["wal", "inspect", d]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("5 records"), "{out}");
    // What the CLI reports is what the WAL recovers.
    let wal = Wal::open(
        &dir,
        WalOptions {
            owner_id: OWNER,
            ..WalOptions::default()
        },
    )
    .unwrap();
    assert_eq!(wal.last_index(1), 5);
}

#[test]
fn node_directory_covers_every_core() {
    let tmp = TempDir::new("node");
    let node = tmp.0.join("7");
    let offs0 = write_wal(&node.join("core-0").join("wal"));
    write_wal(&node.join("core-1").join("wal"));
    let seg1 = segment_path(&node.join("core-1").join("wal"), 1);
    damage(&seg1, offs0[2]);
    let n = node.to_str().unwrap();
    let o = ringraft(&["wal", "inspect", n]);
    let out = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!("{ENTRIES} records")),
        "core 0 ok: {out}"
    );
    assert!(
        out.contains(&format!(
            "{}: invalid record at byte offset {}",
            seg1.display(),
            offs0[2]
        )),
        "{out}"
    );
    let o = ringraft(&["wal", "inspect", tmp.0.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "no WAL there: {}", text(&o));
}
