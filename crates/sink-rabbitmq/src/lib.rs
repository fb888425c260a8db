//! activity-relay's RabbitMQ sink (AMQP 0-9-1, publisher confirms).
//!
//! Every record is published persistent (delivery mode 2) to a topic exchange (default
//! `x.activity`, declared durable at connect unless `declare_exchange = false`) and counts
//! as delivered only when the broker confirmed it (`basic.ack` on a confirm-mode channel).
//!
//! * Routing key: the [`Template`] `routing_key` (default `{subject}.{type}`); dead letters
//!   use `deadletter_routing_key` (default `x.activity.deadletter`) on the same exchange.
//! * Properties: `message_id` = envelope id (dead letter id), `content_type`, `type` = the
//!   envelope type (`deadletter` for dead letters), `timestamp` = the event time (a dead
//!   letter's receive time), `app_id` = `activity-relay`, delivery mode 2.
//! * Wire mode ([`WireMode`]): `structured` sends the envelope JSON
//!   (`application/cloudevents+json`); `binary` sends `data` with one `ce-<attr>` (or, with
//!   `header_style = "amqp1"`, `cloudEvents_<attr>`)
//!   header per attribute (AMQP field table, long strings).
//! * A batch is pipelined: published in batch order, at most `max_in_flight` unconfirmed,
//!   confirms awaited concurrently.
//!
//! ## Failures
//!
//! A message returned as unroutable (`mandatory = true`, no queue bound: `basic.return`) is
//! [`PublishError::Refused`] (reason `unroutable`: retried a bounded number of times, then
//! dead-lettered). A `basic.nack`, a confirm not received within `confirm_timeout`, or a
//! closed channel or connection are [`PublishError::Retryable`] (reasons `nack`, `timeout`,
//! `channel_closed`, `disconnected`, `connect_failed`). After a channel or connection
//! failure the next publish opens a new channel, reconnecting first if the connection is
//! gone; reconnection attempts are spaced by an exponential backoff (`initial_reconnect_backoff`,
//! up to `max_reconnect_backoff`), and a publish inside the backoff window fails at once
//! (`disconnected`) rather than waiting. Every broker operation is bounded by a timeout.
//! A routing key longer than AMQP's 255 bytes is [`PublishError::Permanent`].

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ConnectionStatus, ExchangeKind,
};
use relay_sink::driver::{fail_all, Confirmations, ReconnectGate};
use relay_sink::{
    encode, HeaderStyle, Message, Payload, PublishError, Reason, Sink, Template, TemplateError,
    WireMode,
};
use serde::Deserialize;

mod config;
mod encode;
mod service;

pub use config::{AmqpHeaders, RabbitMqSinkConfig};
use encode::Routing;
pub use relay_sink::redact_url;
pub use service::RabbitMqSink;

/// `type = "rabbitmq"`: how the relay reads, checks, describes and connects this sink.
pub struct RabbitMqSinkType;

impl relay_sink::registry::SinkType for RabbitMqSinkType {
    const TYPE: &'static str = "rabbitmq";
    type Config = RabbitMqSinkConfig;
    type Error = RabbitMqSinkError;
    type Sink = RabbitMqSink;
    /// Backoffs are `initial_…`/`max_…` everywhere (as in `[dispatch]`).
    const RENAMED: &'static [(&'static str, &'static str)] = &[
        ("reconnect_backoff", "initial_reconnect_backoff"),
        ("reconnect_backoff_max", "max_reconnect_backoff"),
    ];

    fn check(name: &str, cfg: &RabbitMqSinkConfig) -> Result<String, RabbitMqSinkError> {
        cfg.validate(name)?;
        Ok(format!(
            "rabbitmq: {} exchange {:?} routing key {:?}",
            redact_url(&cfg.url),
            cfg.exchange,
            cfg.routing_key
        ))
    }

    fn asyncapi(cfg: &RabbitMqSinkConfig) -> Option<relay_sink::registry::AsyncApiServer> {
        Some(relay_sink::registry::AsyncApiServer {
            host: relay_sink::registry::first_host(&cfg.url),
            protocol: "amqp",
            template: cfg.routing_key.clone(),
            binary: cfg.wire_mode == WireMode::Binary,
            channel_binding: Some((
                "amqp",
                serde_json::json!({
                    "is": "routingKey",
                    "exchange": {"name": cfg.exchange, "type": "topic", "durable": true, "autoDelete": false},
                    "bindingVersion": "0.3.0"
                }),
            )),
            message_binding: Some((
                "amqp",
                serde_json::json!({"contentEncoding": "utf-8", "messageType": "cloudevent", "bindingVersion": "0.3.0"}),
            )),
        })
    }

    async fn connect(
        name: &str,
        cfg: &RabbitMqSinkConfig,
    ) -> Result<RabbitMqSink, RabbitMqSinkError> {
        RabbitMqSink::connect(name, cfg).await
    }
}

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum RabbitMqSinkError {
    #[error("rabbitmq sink {sink:?}: invalid configuration: {detail}")]
    Config { sink: String, detail: String },
    #[error("rabbitmq sink {sink:?}: routing key template: {source}")]
    Template {
        sink: String,
        #[source]
        source: TemplateError,
    },
    #[error("rabbitmq sink {sink:?}: cannot connect to {url}: {detail}")]
    Connect {
        sink: String,
        /// Password redacted.
        url: String,
        detail: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::short;

    /// `redact_url` itself is tested in relay-sink; here, that the config's `Debug` uses it.
    #[test]
    fn redacts_passwords() {
        let cfg: RabbitMqSinkConfig =
            serde_json::from_str(r#"{"url":"amqp://guest:s3cr3t@h:5672/%2f"}"#).unwrap();
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }

    #[test]
    fn config_defaults() {
        let cfg: RabbitMqSinkConfig =
            serde_json::from_str(r#"{"url":"amqp://h","confirm_timeout":"2s"}"#).unwrap();
        assert_eq!(cfg.exchange, "x.activity");
        assert!(cfg.declare_exchange);
        assert_eq!(cfg.routing_key, "{subject}.{type}");
        assert_eq!(cfg.deadletter_routing_key, "x.activity.deadletter");
        assert_eq!(cfg.wire_mode, WireMode::Structured);
        assert!(cfg.mandatory);
        assert_eq!(cfg.confirm_timeout, Duration::from_secs(2));
        assert_eq!(cfg.initial_reconnect_backoff, Duration::from_millis(500));
        assert_eq!(cfg.max_reconnect_backoff, Duration::from_secs(30));
        assert!(serde_json::from_str::<RabbitMqSinkConfig>(r#"{"url":"x","nope":1}"#).is_err());
        let missing = serde_json::from_str::<RabbitMqSinkConfig>(r#"{}"#).unwrap();
        let err = missing.validate("r").unwrap_err().to_string();
        assert!(err.contains("url is required"), "{err}");
        assert!(cfg.validate("r").is_ok());
        let mut bad = cfg.clone();
        bad.url = "http://h".into();
        assert!(bad.validate("r").is_err());
        bad.url = "amqp://h:notaport/%2f".into();
        assert!(bad.validate("r").is_err());
        let mut bad = cfg.clone();
        bad.routing_key = "{nope}".into();
        assert!(bad.validate("r").is_err());
        let mut bad = cfg;
        bad.max_in_flight = 0;
        assert!(bad.validate("r").is_err());
    }

    #[test]
    fn short_strings_are_cut_at_char_boundaries() {
        let s = "é".repeat(200);
        let cut = short(&s);
        assert!(cut.as_str().len() <= 255);
        assert!(s.starts_with(cut.as_str()));
    }
}
