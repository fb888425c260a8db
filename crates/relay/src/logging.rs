//! `tracing` setup: JSON or pretty lines on stderr, filtered by `[log] level` (or `RUST_LOG`).

use tracing_subscriber::EnvFilter;

use crate::config::{LogConfig, LogFormat};

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("invalid {what} {filter:?}: {source}")]
    Filter {
        /// `RUST_LOG` or `[log] level`.
        what: &'static str,
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
    #[error("cannot install the log subscriber: {0}")]
    Install(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

/// Installs the global subscriber.
pub fn init(cfg: &LogConfig) -> Result<(), LogError> {
    let parse = |what: &'static str, filter: &str| {
        EnvFilter::try_new(filter).map_err(|source| LogError::Filter {
            what,
            filter: filter.to_string(),
            source,
        })
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => parse("RUST_LOG", &s)?,
        _ => parse("[log] level", &cfg.level)?,
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
    result.map_err(LogError::Install)
}
