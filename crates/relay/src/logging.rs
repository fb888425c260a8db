//! `tracing` setup: JSON or pretty lines on stderr, filtered by `[log] level` (or `RUST_LOG`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber. Returns an error text if the filter is invalid.
pub fn init(cfg: &LogConfig) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => {
            EnvFilter::try_new(&s).map_err(|e| format!("invalid RUST_LOG {s:?}: {e}"))?
        }
        _ => EnvFilter::try_new(&cfg.level)
            .map_err(|e| format!("invalid [log] level {:?}: {e}", cfg.level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match cfg.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Pretty => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init(),
    };
    result.map_err(|e| format!("cannot install the log subscriber: {e}"))
}
