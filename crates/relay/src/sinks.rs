//! The sink types the relay knows, and the sinks of a configuration.
//!
//! Each sink type lives in its own crate and implements
//! [`relay_sink::registry::SinkType`]; [`SINK_TYPES`] is the only place the relay names
//! them. Adding a broker is its crate and one line here (ARCHITECTURE.md, "A new broker").

use std::sync::Arc;

use relay_sink::registry::{BoxError, Registered, SinkFactory};
use relay_sink::Sink;

use crate::config::{Config, SinkConfig};

/// Every sink type, by its `type` name: one line per broker.
pub static SINK_TYPES: &[&dyn SinkFactory] = &[
    &Registered::<relay_sink::file::FileSinkType>::new(),
    &Registered::<relay_sink_kafka::KafkaSinkType>::new(),
    &Registered::<relay_sink_nats::NatsSinkType>::new(),
    &Registered::<relay_sink_rabbitmq::RabbitMqSinkType>::new(),
];

/// The sink type whose `type` is `name`.
pub fn sink_type(name: &str) -> Option<&'static dyn SinkFactory> {
    SINK_TYPES.iter().copied().find(|t| t.type_name() == name)
}

/// `file, kafka, nats or rabbitmq`: the known types, for messages.
pub fn type_names() -> String {
    let names: Vec<&str> = SINK_TYPES.iter().map(|t| t.type_name()).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => names.join(""),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SinkBuildError {
    /// The sink type's own error (its message names the sink).
    #[error(transparent)]
    Sink(BoxError),
    #[error("[[sinks]] {first:?} and {second:?} both name {what}: {why}")]
    Shared {
        first: String,
        second: String,
        what: String,
        why: &'static str,
    },
}

/// Checks a sink's configuration without connecting anywhere or creating files; the line
/// `run --check` prints for it.
pub fn check(cfg: &SinkConfig) -> Result<String, SinkBuildError> {
    cfg.spec.check().map_err(SinkBuildError::Sink)
}

/// What no two sinks may share (a JetStream stream, say), across the configuration.
pub fn check_exclusive(cfg: &Config) -> Result<(), SinkBuildError> {
    let mut seen: Vec<(&str, relay_sink::registry::Exclusive)> = Vec::new();
    for s in &cfg.sinks {
        let Some(mine) = s.spec.exclusive() else {
            continue;
        };
        if let Some((first, _)) = seen.iter().find(|(_, x)| x.key == mine.key) {
            return Err(SinkBuildError::Shared {
                first: (*first).to_string(),
                second: s.name.clone(),
                what: mine.what,
                why: mine.why,
            });
        }
        seen.push((&s.name, mine));
    }
    Ok(())
}

/// What `run` does before the sinks start (the file sink creates its directory).
pub fn prepare(cfg: &SinkConfig) -> Result<(), SinkBuildError> {
    cfg.spec.prepare().map_err(SinkBuildError::Sink)
}

/// The sink of `cfg`, connecting lazily: while its broker cannot be reached, `publish`
/// retries the connection and answers every record with a retryable `not_connected`
/// failure (the dispatcher backs off and the records wait in the spool), and `ready` is
/// false. So a broker that is down when the relay starts does not stop it from accepting
/// events.
pub fn start(cfg: SinkConfig) -> Arc<dyn Sink> {
    let spec = Arc::clone(&cfg.spec);
    relay_sink::driver::LazySink::start(
        &cfg.name,
        Box::new(move || {
            let spec = Arc::clone(&spec);
            Box::pin(async move { spec.connect().await.map_err(|e| e.to_string()) })
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_name_is_listed_once() {
        assert_eq!(type_names(), "file, kafka, nats or rabbitmq");
        for t in SINK_TYPES {
            assert!(std::ptr::eq(
                sink_type(t.type_name()).map_or(std::ptr::null(), |f| f as *const _ as *const u8),
                *t as *const _ as *const u8
            ));
        }
        assert!(sink_type("kinesis").is_none());
    }
}
