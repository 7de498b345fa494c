//! Logging: `tracing` events go to `<log_dir>/<node_id>/d.log` (appended, no colours), filtered by
//! the `LOG_LEVEL` environment variable (default `warn`; any `tracing` filter such as
//! `info,ringraft::node=debug` is accepted). A leader logs `Became leader` with its shard and term
//! at info under the target `ringraft::leadership`, which the default filter keeps, so the seed's
//! `grep -r "Became leader" logs/` finds it without raising the level.
//! Owned by the node.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Environment variable holding the log filter.
pub(crate) const LOG_LEVEL_ENV: &str = "LOG_LEVEL";
/// Filter used when `LOG_LEVEL` is unset: warnings, plus leadership changes (target
/// [`LEADERSHIP_TARGET`], logged at info), so `grep -r "Became leader" logs/` works by default.
pub(crate) const DEFAULT_LOG_LEVEL: &str = "warn,ringraft::leadership=info";
/// Log target of leadership changes.
pub(crate) const LEADERSHIP_TARGET: &str = "ringraft::leadership";
/// Log file name inside the node's log directory.
pub(crate) const LOG_FILE_NAME: &str = "d.log";

/// Parses a `LOG_LEVEL` value; the error names the variable, the value and what is allowed.
pub(crate) fn parse_filter(value: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(value).map_err(|e| {
        format!(
            "{LOG_LEVEL_ENV}={value:?} is not allowed ({e}): must be error, warn, info, debug, trace or a tracing filter such as \"info,ringraft=debug\""
        )
    })
}

/// Installs the global subscriber writing to `<dir>/d.log`; returns the file path.
pub(crate) fn init(dir: &Path) -> Result<PathBuf, String> {
    let level = std::env::var(LOG_LEVEL_ENV).unwrap_or_else(|_| DEFAULT_LOG_LEVEL.to_string());
    let filter = parse_filter(&level)?;
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
    let path = dir.join(LOG_FILE_NAME);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Mutex::new(file))
        .with_ansi(false)
        .with_thread_names(true)
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_or_explain() {
        assert!(parse_filter("warn").is_ok());
        assert!(parse_filter("info,ringraft::node=debug").is_ok());
        let e = parse_filter("loud=[").unwrap_err();
        assert!(e.contains("LOG_LEVEL") && e.contains("loud=["), "{e}");
    }
}
