//! `ringraft watch PREFIX`: prints the changes of the keys starting with PREFIX (or of one
//! key, `--key`, or of a range, `--end`) as JSON lines until interrupted:
//! `{"shard":0,"type":"put","key":"k","value":"v","version":12,"revision":12}`. The client
//! resubscribes on its own after a failover; `--from R` (every shard) or `--from S:R,S:R`
//! (per shard; revisions are per shard) starts from a revision. A compacted revision prints
//! the oldest one still held and exits 2. Owned by the client.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use serde_json::json;

use crate::cli::EXIT_FAILURE;
use crate::client::watch::{Start, Watch, WatchEventKind, WatchFilter};
use crate::client::ClientConfig;

/// Arguments of `ringraft watch`.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Prefix of the keys to watch (empty: every key); with --key, the one key; with --end,
    /// the range's start.
    pub(crate) prefix: String,
    /// Watch exactly the key PREFIX.
    #[arg(long, conflicts_with = "end")]
    pub(crate) key: bool,
    /// Watch the range [PREFIX, END) instead of a prefix.
    #[arg(long)]
    pub(crate) end: Option<String>,
    /// Start revision: `R` for every shard or `S:R,S:R` per shard (default: from now).
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// Stop after this many events (default: run until interrupted).
    #[arg(long)]
    pub(crate) count: Option<u64>,
}

/// Parses `--from`.
pub(crate) fn parse_from(s: &str) -> Result<Start, String> {
    if !s.contains(':') {
        return s
            .trim()
            .parse()
            .map(Start::Revision)
            .map_err(|_| format!("--from {s:?}: not a revision"));
    }
    let mut m = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (sh, r) = part
            .split_once(':')
            .ok_or_else(|| format!("--from {part:?}: expected SHARD:REVISION"))?;
        let sh: u32 = sh
            .trim()
            .parse()
            .map_err(|_| format!("--from {part:?}: bad shard"))?;
        let r: u64 = r
            .trim()
            .parse()
            .map_err(|_| format!("--from {part:?}: bad revision"))?;
        m.insert(sh, r);
    }
    Ok(Start::PerShard(m))
}

/// Runs `ringraft watch`.
pub(crate) fn main(args: WatchArgs, cfg: ClientConfig) -> ExitCode {
    let start = match args.from.as_deref().map(parse_from).transpose() {
        Ok(s) => s.unwrap_or_default(),
        Err(m) => {
            eprintln!("ringraft: watch: {m}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let key = args.prefix.clone().into_bytes();
    let filter = match (args.key, args.end) {
        (true, _) => WatchFilter::Key(key),
        (false, Some(end)) => WatchFilter::Range {
            start: key,
            end: Some(end.into_bytes()),
        },
        (false, None) => WatchFilter::Prefix(key),
    };
    let watch = match Watch::new(cfg, filter, start) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("ringraft: watch failed: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let mut out = std::io::stdout().lock();
    let mut seen = 0u64;
    for item in watch {
        match item {
            Ok(w) => {
                let e = &w.event;
                let line = json!({
                    "shard": w.shard,
                    "type": match e.kind { WatchEventKind::Put => "put", WatchEventKind::Delete => "delete" },
                    "key": String::from_utf8_lossy(&e.key),
                    "value": String::from_utf8_lossy(&e.value),
                    "version": e.version,
                    "revision": e.revision,
                });
                if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
                    return ExitCode::SUCCESS;
                }
                seen += 1;
                if args.count.is_some_and(|c| seen >= c) {
                    return ExitCode::SUCCESS;
                }
            }
            Err(e) => {
                eprintln!("ringraft: watch: {e}");
                if !matches!(e, crate::client::watch::WatchError::Unreachable(_)) {
                    return ExitCode::from(EXIT_FAILURE);
                }
            }
        }
    }
    ExitCode::SUCCESS
}
