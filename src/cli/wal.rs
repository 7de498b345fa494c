//! `ringraft wal inspect DIR` and `ringraft wal repair DIR [--yes]`: the operator's tools for a
//! node's write-ahead logs.
//!
//! `DIR` is either one WAL directory (holding `*.wal` segment files) or a node data directory
//! `<db_root_dir>/<node_id>/`, in which case every `core-<c>/wal/` inside is handled, in core
//! order. `inspect` runs the WAL's recovery scan read-only ([`Wal::inspect`]: files opened and
//! mapped read-only, no lock taken, nothing cut, deleted or synced) and prints what opening
//! would recover — segments, records, bytes, a torn tail it would cut — or the corruption that
//! makes opening refuse, with file and byte offset. `repair` without `--yes` is a dry run
//! ([`Wal::repair_plan`], read-only) that says exactly what would be cut and dropped; with
//! `--yes` it calls [`Wal::repair`] (which takes the directory lock, so it refuses while a node
//! has the log open) and prints the [`ringraft_wal::RepairReport`].
//!
//! The owner id (node id) the WAL was written for is read from the first segment header, so
//! the operator does not pass it; a segment of another owner is still reported as corruption.
//! Exit codes: 0 every log is readable (or was repaired); 1 a log is corrupt (opening would
//! refuse) or repair could not fix it; 2 any other failure (no WAL found, an I/O error, the
//! log is locked). Owned by the CLI.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ringraft_wal::segment::{parse_segment_name, SegmentHeader, SEGMENT_HEADER_BYTES};
use ringraft_wal::{Error, RecoveryMode, RepairReport, Wal, WalOptions};

/// Exit status: a log is corrupt (or repair could not fix it).
pub(crate) const EXIT_CORRUPT: u8 = 1;
/// Exit status: any other failure.
pub(crate) const EXIT_FAILURE: u8 = 2;

/// Largest number of `core-<c>` directories handled under one node directory (a node runs one
/// per CPU core; this only bounds what a mistyped path can make the tool walk).
pub(crate) const MAX_CORE_DIRS: usize = 4096;

/// Arguments of `ringraft wal`.
#[derive(Debug, clap::Args)]
#[command(about = "Inspect or repair a node's write-ahead logs (offline)")]
pub struct WalArgs {
    #[command(subcommand)]
    command: WalCommand,
}

/// `ringraft wal` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum WalCommand {
    /// Print what recovery would find, read-only; exit 1 if a log is corrupt.
    Inspect {
        /// A WAL directory, or a node data directory (<db_root_dir>/<node_id>: every
        /// core-*/wal inside).
        dir: PathBuf,
    },
    /// Cut a log at its first invalid record. Without --yes: a dry run saying what would be
    /// dropped.
    Repair {
        /// A WAL directory, or a node data directory (every core-*/wal inside).
        dir: PathBuf,
        /// Really cut and drop (this may drop acknowledged writes; the node must be stopped).
        #[arg(long)]
        yes: bool,
    },
}

/// Runs `ringraft wal ...`.
pub fn main(args: WalArgs) -> ExitCode {
    let (dir, what) = match &args.command {
        WalCommand::Inspect { dir } => (dir, "inspect"),
        WalCommand::Repair { dir, .. } => (dir, "repair"),
    };
    let dirs = match wal_dirs(dir) {
        Ok(d) => d,
        Err(msg) => {
            eprintln!("ringraft: wal {what}: {msg}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mut worst = 0u8;
    for d in &dirs {
        let code = match &args.command {
            WalCommand::Inspect { .. } => inspect_one(d),
            WalCommand::Repair { yes, .. } => repair_one(d, *yes),
        };
        worst = worst.max(code);
    }
    ExitCode::from(worst)
}

/// The WAL directories `dir` stands for: itself if it holds segment files (or is not a node
/// directory), else every `core-<c>/wal` inside, sorted by core number.
pub(crate) fn wal_dirs(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut cores: Vec<(u64, PathBuf)> = Vec::new();
    let mut has_segments = false;
    for ent in rd {
        let ent = ent.map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if parse_segment_name(name).is_some() {
            has_segments = true;
        } else if let Some(c) = name
            .strip_prefix("core-")
            .and_then(|c| c.parse::<u64>().ok())
        {
            let wal = ent.path().join("wal");
            if wal.is_dir() {
                if cores.len() >= MAX_CORE_DIRS {
                    return Err(format!(
                        "{} holds more than {MAX_CORE_DIRS} core directories",
                        dir.display()
                    ));
                }
                cores.push((c, wal));
            }
        }
    }
    if has_segments {
        return Ok(vec![dir.to_path_buf()]);
    }
    if cores.is_empty() {
        return Err(format!(
            "{} is neither a WAL directory (no *.wal segment files) nor a node data directory \
             (no core-<c>/wal/ inside); WALs live under <db_root_dir>/<node_id>/core-<c>/wal/",
            dir.display()
        ));
    }
    cores.sort_unstable();
    Ok(cores.into_iter().map(|(_, p)| p).collect())
}

/// Options for reading the log in `dir`: the owner id from its first used segment header
/// (read-only), the node's default torn-tail policy.
fn options_for(dir: &Path) -> WalOptions {
    WalOptions {
        owner_id: first_owner(dir).unwrap_or(0),
        recovery_mode: RecoveryMode::TolerateTornTail,
        ..WalOptions::default()
    }
}

/// The owner id in the header of the lowest-numbered used segment of `dir`, if any can be
/// read. Errors are left to the recovery scan, which names the file.
fn first_owner(dir: &Path) -> Option<u64> {
    use std::io::Read;
    let mut segs: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let seq = parse_segment_name(e.file_name().to_str()?)?;
            Some((seq, e.path()))
        })
        .collect();
    segs.sort_unstable();
    for (_, path) in segs {
        let mut buf = [0u8; SEGMENT_HEADER_BYTES];
        let mut f = std::fs::File::open(&path).ok()?;
        f.read_exact(&mut buf).ok()?;
        match SegmentHeader::decode(&buf, &path) {
            Ok(Some(h)) => return Some(h.owner_id),
            Ok(None) => continue,
            Err(_) => return None,
        }
    }
    None
}

/// Whether `e` means the log's bytes are bad (as opposed to the tool failing to read them).
fn is_corruption(e: &Error) -> bool {
    matches!(
        e,
        Error::BadMagic { .. }
            | Error::UnsupportedVersion { .. }
            | Error::OwnerMismatch { .. }
            | Error::Corrupt { .. }
            | Error::ValidAfterInvalid { .. }
            | Error::TornTail { .. }
    )
}

fn fail_code(e: &Error) -> u8 {
    if is_corruption(e) {
        EXIT_CORRUPT
    } else {
        EXIT_FAILURE
    }
}

fn inspect_one(dir: &Path) -> u8 {
    println!("{}:", dir.display());
    match Wal::inspect(dir, &options_for(dir)) {
        Ok(rep) => {
            println!(
                "  ok: {} segments, {} records, {} bytes, next lsn {}",
                rep.segments, rep.records, rep.bytes, rep.next_lsn
            );
            match (&rep.torn_tail, &rep.torn_tail_reason) {
                (Some((p, off)), reason) => println!(
                    "  torn tail: {} offset {off} ({}); opening will cut it there (nothing after \
                     it was ever reported durable)",
                    p.display(),
                    reason.as_deref().unwrap_or("invalid record")
                ),
                (None, _) => println!("  no torn tail"),
            }
            0
        }
        Err(e) => {
            let code = fail_code(&e);
            if code == EXIT_CORRUPT {
                println!("  CORRUPT: {e}");
                println!(
                    "  opening this log will refuse; `ringraft wal repair {}` shows what a \
                     repair would drop",
                    dir.display()
                );
            } else {
                eprintln!("ringraft: wal inspect {}: {e}", dir.display());
            }
            code
        }
    }
}

fn repair_one(dir: &Path, yes: bool) -> u8 {
    println!("{}:", dir.display());
    let opts = options_for(dir);
    let r = if yes {
        Wal::repair(dir, &opts)
    } else {
        Wal::repair_plan(dir, &opts)
    };
    match r {
        Ok(rep) if yes => {
            println!("  {rep}");
            print_drops(&rep, "dropped");
            0
        }
        Ok(rep) => {
            match &rep.cut {
                None => println!(
                    "  dry run: nothing to repair ({} segments, {} records, next lsn {})",
                    rep.recovery.segments, rep.recovery.records, rep.recovery.next_lsn
                ),
                Some((p, off)) => {
                    println!(
                        "  dry run: would cut {} at offset {off} ({}) and drop every record from \
                         lsn {} on",
                        p.display(),
                        rep.reason.as_deref().unwrap_or("invalid record"),
                        rep.first_dropped_lsn.unwrap_or(0)
                    );
                    print_drops(&rep, "would drop");
                    println!(
                        "  the log would then hold {} segments, {} records, next lsn {}",
                        rep.recovery.segments, rep.recovery.records, rep.recovery.next_lsn
                    );
                    println!(
                        "  nothing was changed; stop the node and rerun with --yes to repair \
                         (this may drop acknowledged writes)"
                    );
                }
            }
            0
        }
        Err(e) => {
            let code = fail_code(&e);
            eprintln!(
                "ringraft: wal repair {}{}: {e}",
                dir.display(),
                if yes { "" } else { " (dry run)" }
            );
            code
        }
    }
}

fn print_drops(rep: &RepairReport, verb: &str) {
    if let Some((p, _)) = &rep.cut {
        for (off, lsn) in &rep.dropped_records {
            println!(
                "  {verb}: valid record lsn {lsn} at {} offset {off}",
                p.display()
            );
        }
    }
    for p in &rep.dropped_segments {
        println!("  {verb}: segment {}", p.display());
    }
}
