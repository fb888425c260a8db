//! The relay's TOML configuration (`docs/configuration.md`).
//!
//! Loading is two steps: the file is parsed as TOML, then every `${VAR}` /
//! `${VAR:-default}` inside a string value is replaced from the environment (so every
//! secret can come from the environment; `$${` is a literal `${`), then each section is
//! deserialized into its typed struct (unknown fields are errors). Errors name the section
//! and the variable, never a value.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use relay_config::ConfigError as Check;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use toml::{Table, Value};

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("config value at `{key}` uses environment variable {var} which is not set (and has no `:-default`)")]
    MissingEnv { key: String, var: String },
    #[error("config value at `{key}` has a malformed `${{...}}` reference: {detail}")]
    BadReference { key: String, detail: String },
    #[error("in {section}: {message}")]
    Invalid { section: String, message: String },
    /// A section's own check (`[spool]`, `[dedup]`, `[dispatch]`, `[recovery]`,
    /// `[cluster]`).
    #[error("in {0}")]
    Check(#[from] relay_config::ConfigError),
}

fn invalid(section: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        section: section.into(),
        message: message.into(),
    }
}

/// The whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    pub spool: SpoolSection,
    pub dedup: DedupConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub dispatch: DispatchConfig,
    /// How long a graceful shutdown may take to flush what is spooled. Default 25s.
    pub shutdown_timeout: Duration,
    /// `[webhook]`: the X webhook ingress, if any.
    pub webhook: Option<WebhookSection>,
    /// `[[streams]]`: activity stream connections.
    pub streams: Vec<StreamSection>,
    /// `[[sinks]]`: at least one.
    pub sinks: Vec<SinkConfig>,
    /// `[recovery]`: gap recovery and X API credentials (`docs/gap-recovery.md`).
    pub recovery: crate::recovery::RecoveryConfig,
    /// `[cluster]`: the fleet this relay is a member of (`docs/cluster.md`); none: one
    /// process, as ever.
    pub cluster: Option<crate::cluster::ClusterConfig>,
    /// What the file says that still works but should change: a renamed key under its
    /// old name ([`RENAMED`]). `run --check` prints them, `run` logs them.
    pub warnings: Vec<String>,
}

pub type WebhookSection = relay_ingress::webhook::WebhookConfig;
pub type StreamSection = relay_ingress::stream::StreamConfig;

/// `[spool]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolSection {
    /// Directory of the spool (created if missing). Required.
    pub dir: PathBuf,
    /// Upper bound of the spool on disk. Default 1 GiB.
    pub max_bytes: u64,
    /// Segment file size. Default 64 MiB (lowered to `max_bytes` if that is smaller).
    pub segment_bytes: u64,
    /// `Retry-After` suggested to X when the spool is full. Default 30s.
    #[serde(with = "humantime_serde")]
    pub full_retry_after: Duration,
    /// Deliveries are refused (503) while the spool's file system has less than this free,
    /// whatever `max_bytes` allows, so that the relay can always roll a segment, write its
    /// dedup journal and free delivered segments. Default: a tenth of the file system, at
    /// most 64 MiB.
    pub min_free_bytes: Option<u64>,
}

/// Every default of `SpoolSection` is here .
impl Default for SpoolSection {
    fn default() -> Self {
        SpoolSection {
            dir: PathBuf::new(),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            full_retry_after: Duration::from_secs(30),
            min_free_bytes: Default::default(),
        }
    }
}

impl SpoolSection {
    /// The section's own check (one bound, checked here only: `run --check` and `run`
    /// both load through it).
    pub fn validate(&self) -> Result<(), Check> {
        if self.dir.as_os_str().is_empty() {
            return Err(Check::new("[spool]", "dir", "is required"));
        }
        if self.max_bytes < MIN_SEGMENT_BYTES || self.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(Check::new(
                "[spool]",
                "max_bytes and segment_bytes",
                format!("must be at least {MIN_SEGMENT_BYTES}"),
            ));
        }
        Ok(())
    }

    /// Every record one delivery can make must fit a segment: an envelope holds at most
    /// the delivery's bytes plus its attributes, a dead letter the delivery in base64.
    pub fn check_fits(
        &self,
        webhook: Option<&WebhookSection>,
        streams: &[StreamSection],
    ) -> Result<(), Check> {
        let largest_input = webhook
            .iter()
            .map(|w| w.body_limit as u64)
            .chain(streams.iter().map(|s| s.max_line_bytes as u64))
            .max()
            .unwrap_or(0);
        let needed = largest_input.saturating_mul(4) / 3 + RECORD_SLACK;
        let segment = self.effective_segment_bytes();
        if largest_input > 0 && segment < needed {
            return Err(Check::new(
                "[spool]",
                "segment_bytes",
                format!(
                    "({segment}) must hold the largest record a delivery can make: 4/3 of the largest input ({largest_input} bytes: the webhook's body_limit or a stream's max_line_bytes) plus {RECORD_SLACK}, so at least {needed}"
                ),
            ));
        }
        Ok(())
    }

    /// The size segments really get: `segment_bytes`, lowered to `max_bytes` if that is
    /// smaller.
    pub fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.min(self.max_bytes)
    }

    /// The spool's own configuration, with a cursor for each of `sinks`.
    pub fn spool_config(&self, sinks: Vec<String>) -> relay_spool::SpoolConfig {
        relay_spool::SpoolConfig {
            dir: self.dir.clone(),
            max_bytes: self.max_bytes,
            segment_bytes: self.effective_segment_bytes(),
            sinks,
            min_free_bytes: self.min_free_bytes,
        }
    }
}

/// The smallest `[spool] max_bytes` and `segment_bytes` accepted.
pub const MIN_SEGMENT_BYTES: u64 = 4096;

/// Room for a record's framing and envelope attributes (see the `segment_bytes` check).
const RECORD_SLACK: u64 = 16 << 10;

/// `[dedup]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// How long an accepted event id is remembered. Default 1h.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// At most this many ids are remembered (16 bytes each in the journal, about 48 in
    /// memory); the oldest are forgotten first. Default 1,000,000 (about 48 MiB).
    pub max_entries: usize,
}

/// Every default of `DedupConfig` is here .
impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            window: Duration::from_secs(3600),
            max_entries: 1_000_000,
        }
    }
}

/// `[admin]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the admin listener (`/metrics`, `/healthz`, `/readyz`). Required.
    pub listen: SocketAddr,
    /// Whether `/readyz` also requires every sink to be ready. Default true. Set it to
    /// false where readiness gates incoming deliveries (a webhook behind a load balancer)
    /// and the spool should absorb a broker outage instead of turning deliveries away.
    #[serde(default = "default_true")]
    pub ready_requires_sinks: bool,
}

fn default_true() -> bool {
    true
}

/// `[log]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `info,relay_spool=debug`. `RUST_LOG` overrides.
    pub level: String,
}

/// Every default of `LogConfig` is here .
impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: Default::default(),
            level: "info".to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Pretty,
}

pub use relay_core::dispatch::DispatchConfig;

/// One `[[sinks]]` entry.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Unique; the spool cursor name and the `sink` metric label.
    pub name: String,
    /// Its `type`'s own settings, read by the sink type of [`crate::sinks::SINK_TYPES`].
    pub spec: std::sync::Arc<dyn relay_sink::registry::SinkSpec>,
    /// `types` / `exclude_types`: which event types go to this sink.
    pub filter: crate::filter::TypeFilter,
}

const TOP_LEVEL: &[&str] = &[
    "spool",
    "dedup",
    "admin",
    "log",
    "dispatch",
    "shutdown_timeout",
    "webhook",
    "streams",
    "stream",
    "sinks",
    "recovery",
    "cluster",
];

impl Config {
    /// Reads, expands and validates the file at `path` (no network, no files created).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read_file(path)?;
        Config::parse_with(&text, path, &|name| std::env::var(name).ok())
    }

    /// Parses `text` (for `path` in messages), looking variables up with `env`.
    pub fn parse_with(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut table = read_table(text, path, env)?;
        let mut warnings = Vec::new();
        rename_keys(&mut table, &mut warnings)?;
        let spool: SpoolSection = match table.remove("spool") {
            Some(v) => section("[spool]", v)?,
            None => return Err(invalid("[spool]", "missing section (`dir` is required)")),
        };
        spool.validate()?;
        let dedup: DedupConfig = optional_section("[dedup]", table.remove("dedup"))?;
        if dedup.max_entries == 0 {
            return Err(Check::new("[dedup]", "max_entries", "must be at least 1").into());
        }
        let admin: AdminConfig = match table.remove("admin") {
            Some(v) => section("[admin]", v)?,
            None => return Err(invalid("[admin]", "missing section (`listen` is required)")),
        };
        let log: LogConfig = optional_section("[log]", table.remove("log"))?;
        let dispatch: DispatchConfig = optional_section("[dispatch]", table.remove("dispatch"))?;
        dispatch.validate()?;
        let shutdown_timeout = match table.remove("shutdown_timeout") {
            None => Duration::from_secs(25),
            Some(Value::String(s)) => humantime::parse_duration(&s)
                .map_err(|e| invalid("`shutdown_timeout`", format!("{e} (e.g. \"25s\")")))?,
            Some(_) => {
                return Err(invalid(
                    "`shutdown_timeout`",
                    "expected a duration string such as \"25s\"",
                ))
            }
        };
        let webhook = match table.remove("webhook") {
            Some(v) => Some(section::<WebhookSection>("[webhook]", v)?),
            None => None,
        };
        let streams = parse_streams(table.remove("streams"))?;
        spool.check_fits(webhook.as_ref(), &streams)?;
        let recovery: crate::recovery::RecoveryConfig =
            optional_section("[recovery]", table.remove("recovery"))?;
        recovery.validate(webhook.as_ref())?;
        let cluster: Option<crate::cluster::ClusterConfig> = table
            .remove("cluster")
            .map(|v| section("[cluster]", v))
            .transpose()?;
        if let Some(c) = &cluster {
            c.validate()?;
        }
        let sinks = parse_sinks(table.remove("sinks"), &mut warnings)?;
        Ok(Config {
            spool,
            dedup,
            admin,
            log,
            dispatch,
            shutdown_timeout,
            webhook,
            streams,
            sinks,
            recovery,
            cluster,
            warnings,
        })
    }

    /// Reads only `[recovery]` of the file at `path` (expanding `${VAR}` there only), for
    /// `activity-relay x --config`, with the warnings of renamed keys ([`RENAMED`]). A
    /// missing section is an error.
    pub fn load_recovery(
        path: &Path,
    ) -> Result<(crate::recovery::RecoveryConfig, Vec<String>), ConfigError> {
        let mut table = parse_toml(&read_file(path)?, path)?;
        let mut warnings = Vec::new();
        rename_keys(&mut table, &mut warnings)?;
        let Some(mut value) = table.remove("recovery") else {
            return Err(invalid(
                "[recovery]",
                format!(
                    "missing in {} (the X API base_url and credentials)",
                    path.display()
                ),
            ));
        };
        expand_value(&mut value, "recovery", &|name| std::env::var(name).ok())?;
        Ok((section("[recovery]", value)?, warnings))
    }
}

/// Keys renamed so that one name means one thing everywhere: (table, old name, new
/// name), "" for the top level. The old name is still read, with a warning naming the new
/// key, until the next release; a sink type lists its own
/// ([`relay_sink::registry::SinkType::RENAMED`]).
pub const RENAMED: &[(&str, &str, &str)] = &[
    ("", "stream", "streams"),
    ("webhook.tls", "cert_path", "cert"),
    ("webhook.tls", "key_path", "key"),
    ("recovery", "max_attempts", "max_job_attempts"),
];

/// Applies [`RENAMED`] to the file's tables.
fn rename_keys(table: &mut Table, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    for (at, old, new) in RENAMED {
        let here = at
            .split('.')
            .filter(|p| !p.is_empty())
            .try_fold(&mut *table, |t, part| match t.get_mut(part) {
                Some(Value::Table(inner)) => Some(inner),
                _ => None,
            });
        let Some(here) = here else {
            continue;
        };
        let name = if at.is_empty() {
            "the top level".to_string()
        } else {
            format!("[{at}]")
        };
        rename_in(here, &name, &[(old, new)], warnings)?;
    }
    Ok(())
}

/// Moves each `old` key of `table` to its `new` name, with a warning; both set is an
/// error.
fn rename_in(
    table: &mut Table,
    here: &str,
    renamed: &[(&str, &str)],
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    for (old, new) in renamed {
        let Some(value) = table.remove(*old) else {
            continue;
        };
        if table.contains_key(*new) {
            return Err(invalid(
                here,
                format!("both `{old}` (its old name) and `{new}` are set: keep `{new}`"),
            ));
        }
        warnings.push(format!(
            "{here}: `{old}` is now `{new}`; the old name is read until the next release"
        ));
        table.insert((*new).to_string(), value);
    }
    Ok(())
}

/// The text of the configuration file.
fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// `text` (of the file at `path`) as a TOML table.
fn parse_toml(text: &str, path: &Path) -> Result<Table, ConfigError> {
    text.parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// The file as a TOML table, every `${VAR}` expanded, with no unknown top-level key.
fn read_table(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Table, ConfigError> {
    let mut table = parse_toml(text, path)?;
    for (key, value) in table.iter_mut() {
        expand_value(value, key, env)?;
    }
    for key in table.keys() {
        if !TOP_LEVEL.contains(&key.as_str()) {
            return Err(invalid(
                "the top level",
                format!(
                    "unknown key `{key}`, expected one of: {}",
                    TOP_LEVEL.join(", ")
                ),
            ));
        }
    }
    Ok(table)
}

/// `[[streams]]`: each entry, names unique.
fn parse_streams(value: Option<Value>) -> Result<Vec<StreamSection>, ConfigError> {
    parse_array(
        value,
        "streams",
        "stream",
        |i, item| section(&format!("[[streams]] #{}", i + 1), item),
        |s: &StreamSection| &s.name,
    )
}

/// `[[sinks]]`: at least one, names unique.
fn parse_sinks(
    value: Option<Value>,
    warnings: &mut Vec<String>,
) -> Result<Vec<SinkConfig>, ConfigError> {
    let sinks = parse_array(
        value,
        "sinks",
        "sink",
        |i, item| parse_sink(i, item, warnings),
        |s: &SinkConfig| &s.name,
    )?;
    if sinks.is_empty() {
        return Err(invalid(
            "[[sinks]]",
            "at least one sink is required (e.g. type = \"file\")",
        ));
    }
    Ok(sinks)
}

/// An array of tables `[[key]]`, each entry read by `read`, their names unique.
fn parse_array<T>(
    value: Option<Value>,
    key: &str,
    noun: &str,
    mut read: impl FnMut(usize, Value) -> Result<T, ConfigError>,
    name: impl Fn(&T) -> &str,
) -> Result<Vec<T>, ConfigError> {
    let items = match value {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| read(i, item))
            .collect::<Result<Vec<_>, _>>()?,
        Some(_) => {
            return Err(invalid(
                format!("[[{key}]]"),
                format!("expected an array of tables (`[[{key}]]`)"),
            ))
        }
    };
    let mut names = BTreeSet::new();
    for item in &items {
        if !names.insert(name(item)) {
            return Err(invalid(
                format!("[[{key}]] {:?}", name(item)),
                format!("{noun} names must be unique"),
            ));
        }
    }
    Ok(items)
}

fn section<T: DeserializeOwned>(name: &str, value: Value) -> Result<T, ConfigError> {
    T::deserialize(value).map_err(|e| invalid(name, e.message().trim().to_string()))
}

fn optional_section<T: DeserializeOwned + Default>(
    name: &str,
    value: Option<Value>,
) -> Result<T, ConfigError> {
    match value {
        Some(v) => section(name, v),
        None => Ok(T::default()),
    }
}

fn parse_sink(
    index: usize,
    item: Value,
    warnings: &mut Vec<String>,
) -> Result<SinkConfig, ConfigError> {
    let here = format!("[[sinks]] #{}", index + 1);
    let Value::Table(mut table) = item else {
        return Err(invalid(here, "expected a table"));
    };
    let name = match table.remove("name") {
        Some(Value::String(s)) if valid_sink_name(&s) => s,
        Some(Value::String(s)) => {
            return Err(invalid(
                here,
                format!("sink name {s:?} must be 1 to 64 characters of [A-Za-z0-9_-]"),
            ))
        }
        Some(_) => return Err(invalid(here, "`name` must be a string")),
        None => return Err(invalid(here, "missing `name`")),
    };
    let here = format!("[[sinks]] {name:?}");
    let kind = match table.remove("type") {
        Some(Value::String(s)) => s,
        Some(_) => return Err(invalid(here, "`type` must be a string")),
        None => {
            return Err(invalid(
                here,
                format!("missing `type` ({})", crate::sinks::type_names()),
            ))
        }
    };
    let here = format!("{here} (type {kind})");
    let mut patterns = |key: &str| -> Result<Vec<String>, ConfigError> {
        match table.remove(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) if !s.is_empty() => Ok(s),
                    _ => Err(invalid(
                        &here,
                        format!("`{key}` must be a list of type patterns such as \"dm.*\""),
                    )),
                })
                .collect(),
            Some(_) => Err(invalid(
                &here,
                format!("`{key}` must be a list of type patterns such as \"dm.*\""),
            )),
        }
    };
    let filter = crate::filter::TypeFilter {
        types: patterns("types")?,
        exclude_types: patterns("exclude_types")?,
    };
    let Some(factory) = crate::sinks::sink_type(&kind) else {
        return Err(invalid(
            here,
            format!(
                "unknown sink type {kind:?} (expected {})",
                crate::sinks::type_names()
            ),
        ));
    };
    rename_in(&mut table, &here, factory.renamed(), warnings)?;
    let spec = factory
        .parse(&name, Value::Table(table))
        .map_err(|e| invalid(&here, e.message().trim().to_string()))?;
    Ok(SinkConfig { name, spec, filter })
}

fn valid_sink_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Expands `${VAR}` / `${VAR:-default}` in every string inside `value`; `key` is the
/// dotted path for messages.
fn expand_value(
    value: &mut Value,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    match value {
        Value::String(s) if s.contains('$') => {
            *s = expand_str(s, key, env)?;
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{key}[{i}]"), env)?;
            }
        }
        Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                expand_value(v, &format!("{key}.{k}"), env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands one string. `$${` stands for a literal `${`; a `$` not followed by `{` is kept.
pub fn expand_str(
    s: &str,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(lit) = after.strip_prefix("${") {
            out.push_str("${");
            rest = lit;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(ConfigError::BadReference {
                key: key.to_string(),
                detail: "`${` without a closing `}`".to_string(),
            });
        };
        let body = &body_start[..end];
        let (var, default) = match body.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (body, None),
        };
        if var.is_empty()
            || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || var.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(ConfigError::BadReference {
                key: key.to_string(),
                detail: format!("{var:?} is not a valid environment variable name"),
            });
        }
        match (env(var), default) {
            (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(ConfigError::MissingEnv {
                    key: key.to_string(),
                    var: var.to_string(),
                })
            }
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn defaults() {
        let text = r#"
[spool]
dir = "/s"
[admin]
listen = "127.0.0.1:9"
[[sinks]]
name = "a"
type = "file"
path = "-"
"#;
        let c = Config::parse_with(text, Path::new("t.toml"), &env).unwrap();
        assert_eq!(c.spool.max_bytes, 1 << 30);
        assert_eq!(c.spool.segment_bytes, 64 << 20);
        assert_eq!(c.dedup.window, Duration::from_secs(3600));
        assert_eq!(c.dedup.max_entries, 1_000_000);
        assert_eq!(c.dispatch.max_attempts, None);
        assert_eq!(c.dispatch.batch_size, 256);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(25));
        assert_eq!(c.log.format, LogFormat::Json);
        assert!(c.webhook.is_none() && c.streams.is_empty());
        assert_eq!(c.sinks.len(), 1);
        assert_eq!(c.sinks[0].spec.type_name(), "file");

        let bad = text.replace("[[sinks]]", "[dispatch]\nmax_attempts = 0\n[[sinks]]");
        let e = Config::parse_with(&bad, Path::new("t.toml"), &env).unwrap_err();
        assert!(e.to_string().contains("max_attempts"), "{e}");
    }

    #[test]
    fn expansion() {
        let e = |s: &str| expand_str(s, "k", &env);
        assert_eq!(e("a${SET}b").unwrap(), "avalueb");
        assert_eq!(e("${UNSET:-dflt}").unwrap(), "dflt");
        assert_eq!(e("${EMPTY:-dflt}").unwrap(), "dflt");
        assert_eq!(e("${SET:-dflt}").unwrap(), "value");
        assert_eq!(e("$${SET}").unwrap(), "${SET}");
        assert_eq!(e("cost $5").unwrap(), "cost $5");
        match e("x${UNSET}") {
            Err(ConfigError::MissingEnv { var, key }) => {
                assert_eq!(var, "UNSET");
                assert_eq!(key, "k");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(e("${SET"), Err(ConfigError::BadReference { .. })));
        assert!(matches!(e("${a b}"), Err(ConfigError::BadReference { .. })));
    }

    #[test]
    fn the_x_commands_read_recovery_under_its_old_key_names_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "[recovery]\nmax_attempts = 7\n").unwrap();
        let (recovery, warnings) = Config::load_recovery(&path).unwrap();
        assert_eq!(recovery.max_job_attempts, 7);
        assert!(
            warnings[0].contains("`max_attempts` is now `max_job_attempts`"),
            "{warnings:?}"
        );
        std::fs::write(
            &path,
            "[recovery]\nmax_attempts = 7\nmax_job_attempts = 2\n",
        )
        .unwrap();
        assert!(Config::load_recovery(&path)
            .unwrap_err()
            .to_string()
            .contains("keep `max_job_attempts`"));
    }
}
