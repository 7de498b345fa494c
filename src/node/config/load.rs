//! Loading a configuration: the file is read (bounded in size) and parsed as TOML, every
//! `RINGRAFT__<SECTION>__<KEY>` environment variable overrides one value, the merged table is
//! deserialized and validated. Each error names the file or the variable that caused it.
//! Owned by the node's configuration.

use std::path::Path;

use super::{Config, ConfigError, ENV_PREFIX, ENV_SEPARATOR, MAX_CONFIG_FILE_BYTES};

impl Config {
    /// Reads `path`, applies the `RINGRAFT__…` variables of the process environment, validates.
    pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
        let meta = std::fs::metadata(path).map_err(|e| {
            ConfigError(format!("config file {}: cannot read: {e}", path.display()))
        })?;
        if meta.len() > MAX_CONFIG_FILE_BYTES {
            return Err(ConfigError(format!(
                "config file {}: {} bytes, the limit is {MAX_CONFIG_FILE_BYTES}",
                path.display(),
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(format!("config file {}: cannot read: {e}", path.display()))
        })?;
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::from_toml_with_env(&text, &env)
            .map_err(|e| ConfigError(format!("config file {}: {}", path.display(), e.0)))
    }

    /// Parses `text`, applies the overrides among `env` (name, value pairs; names without the
    /// `RINGRAFT__` prefix are ignored) and validates.
    pub(crate) fn from_toml_with_env(
        text: &str,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text)
            .map_err(|e| ConfigError(format!("not valid TOML: {}", e.to_string().trim())))?;
        // The file alone must be well-typed, so an error is attributed to the file...
        let mut config: Config = deserialize(&table)?;
        let mut overrides: Vec<&(String, String)> = env
            .iter()
            .filter(|(name, _)| name.starts_with(ENV_PREFIX))
            .collect();
        overrides.sort();
        // ...and then to each environment variable in turn.
        for (name, value) in overrides {
            apply_override(&mut table, name, value)?;
            config = deserialize(&table).map_err(|e| {
                ConfigError(format!("environment variable {name}={value:?}: {}", e.0))
            })?;
        }
        config.validate()?;
        Ok(config)
    }
}

fn deserialize(table: &toml::Table) -> Result<Config, ConfigError> {
    toml::Value::Table(table.clone())
        .try_into::<Config>()
        .map_err(|e| ConfigError(one_line(&e.to_string())))
}

fn one_line(msg: &str) -> String {
    msg.trim().replace('\n', " ")
}

/// Sets the key path named by an environment variable in `table`.
fn apply_override(table: &mut toml::Table, name: &str, raw: &str) -> Result<(), ConfigError> {
    let rest = &name[ENV_PREFIX.len()..];
    let path: Vec<String> = rest
        .split(ENV_SEPARATOR)
        .map(|s| s.to_ascii_lowercase())
        .collect();
    if path.iter().any(|s| s.is_empty()) {
        return Err(ConfigError(format!(
            "environment variable {name}: not a key path; allowed: {ENV_PREFIX}<SECTION>__<KEY>, e.g. RINGRAFT__RAFT__PERSISTENCE__STRATEGY"
        )));
    }
    let value = parse_env_value(raw);
    let mut cur = table;
    for seg in &path[..path.len() - 1] {
        let entry = cur
            .entry(seg.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = match entry {
            toml::Value::Table(t) => t,
            other => {
                return Err(ConfigError(format!(
                    "environment variable {name}: `{seg}` is a {} in the file, not a section",
                    other.type_str()
                )))
            }
        };
    }
    if let Some(last) = path.last() {
        cur.insert(last.clone(), value);
    }
    Ok(())
}

/// An environment value as TOML (numbers, booleans, inline tables, quoted strings), else a string.
fn parse_env_value(raw: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}
