//! Builds the configured sinks.

use std::sync::Arc;

use relay_sink::file::{FileSink, FileSinkConfig};
use relay_sink::Sink;

use crate::config::{SinkConfig, SinkKind};

#[derive(Debug, thiserror::Error)]
pub enum SinkBuildError {
    #[error(transparent)]
    File(#[from] relay_sink::file::FileSinkError),
    #[error(transparent)]
    Kafka(#[from] relay_sink_kafka::KafkaSinkError),
    #[error(transparent)]
    Nats(#[from] relay_sink_nats::NatsSinkError),
    #[error(transparent)]
    RabbitMq(#[from] relay_sink_rabbitmq::RabbitMqSinkError),
    #[error("sink {name:?}: {detail}")]
    Invalid { name: String, detail: String },
}

/// Checks a sink's configuration without connecting anywhere or creating files.
pub fn check(cfg: &SinkConfig) -> Result<String, SinkBuildError> {
    match &cfg.kind {
        SinkKind::File(f) => check_file(&cfg.name, f),
        SinkKind::Kafka(k) => {
            k.validate(&cfg.name)?;
            Ok(format!(
                "kafka: {} topic {:?}",
                k.bootstrap_servers, k.topic
            ))
        }
        SinkKind::Nats(n) => {
            check_templates(
                &cfg.name,
                &[
                    ("subject", &n.subject),
                    ("deadletter_subject", &n.deadletter_subject),
                ],
            )?;
            // Everything the sink itself checks before connecting (urls, limits, auth, TLS).
            n.validate(&cfg.name)?;
            Ok(format!("nats: subject {:?}", n.subject))
        }
        SinkKind::RabbitMq(r) => {
            check_templates(
                &cfg.name,
                &[
                    ("routing_key", &r.routing_key),
                    ("deadletter_routing_key", &r.deadletter_routing_key),
                ],
            )?;
            r.validate(&cfg.name)?;
            if r.exchange.is_empty() {
                return Err(SinkBuildError::Invalid {
                    name: cfg.name.clone(),
                    detail: "exchange is empty".to_string(),
                });
            }
            Ok(format!(
                "rabbitmq: {} exchange {:?} routing key {:?}",
                relay_sink_rabbitmq::redact_url(&r.url),
                r.exchange,
                r.routing_key
            ))
        }
    }
}

/// Parses routing templates (the sinks check the rest when they connect).
fn check_templates(name: &str, templates: &[(&str, &String)]) -> Result<(), SinkBuildError> {
    for (field, text) in templates {
        let t = relay_sink::Template::parse(text).map_err(|e| SinkBuildError::Invalid {
            name: name.to_string(),
            detail: format!("{field}: {e}"),
        })?;
        if t.is_empty() {
            return Err(SinkBuildError::Invalid {
                name: name.to_string(),
                detail: format!("{field} is empty"),
            });
        }
    }
    Ok(())
}

fn check_file(name: &str, f: &FileSinkConfig) -> Result<String, SinkBuildError> {
    use relay_sink::file::FileSinkError;
    f.validate(name)?;
    if f.path == "-" {
        return Ok("file: stdout".to_string());
    }
    let path = std::path::PathBuf::from(&f.path);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(format!("file: {}", f.path)),
        Ok(_) => Err(FileSinkError::NotADirectory {
            sink: name.to_string(),
            path,
        }
        .into()),
        // `run` creates a missing directory.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(format!("file: {} (will be created)", f.path))
        }
        Err(source) => Err(FileSinkError::Io {
            sink: name.to_string(),
            path,
            source,
        }
        .into()),
    }
}

/// The sink of `cfg`, connecting lazily: while its broker cannot be reached, `publish`
/// retries the connection and answers every record with a retryable `not_connected`
/// failure (the dispatcher backs off and the records wait in the spool), and `ready` is
/// false. So a broker that is down when the relay starts does not stop it from accepting
/// events.
pub fn start(cfg: SinkConfig) -> Arc<dyn Sink> {
    let name = cfg.name.clone();
    let cfg = Arc::new(cfg);
    relay_sink::driver::LazySink::start(
        &name,
        Box::new(move || {
            let cfg = Arc::clone(&cfg);
            Box::pin(async move { build(&cfg).await.map_err(|e| e.to_string()) })
        }),
    )
}

/// Opens or connects the sink.
pub async fn build(cfg: &SinkConfig) -> Result<Arc<dyn Sink>, SinkBuildError> {
    match &cfg.kind {
        SinkKind::File(f) => Ok(Arc::new(FileSink::open(&cfg.name, f)?)),
        SinkKind::Kafka(k) => Ok(Arc::new(
            relay_sink_kafka::KafkaSink::connect(&cfg.name, k).await?,
        )),
        SinkKind::Nats(n) => Ok(Arc::new(
            relay_sink_nats::NatsSink::connect(&cfg.name, n).await?,
        )),
        SinkKind::RabbitMq(r) => Ok(Arc::new(
            relay_sink_rabbitmq::RabbitMqSink::connect(&cfg.name, r).await?,
        )),
    }
}
