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
//! gone; reconnection attempts are spaced by an exponential backoff (`reconnect_backoff`,
//! up to `reconnect_backoff_max`), and a publish inside the backoff window fails at once
//! (`disconnected`) rather than waiting. Every broker operation is bounded by a timeout.
//! A routing key longer than AMQP's 255 bytes is [`PublishError::Permanent`].

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::{FuturesOrdered, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, ConnectionStatus, ExchangeKind,
};
use relay_sink::{
    encode, HeaderStyle, Message, Payload, PublishError, Sink, Template, TemplateError, WireMode,
};
use serde::Deserialize;

mod config;
mod encode;

pub use config::{redact_url, AmqpHeaders, RabbitMqSinkConfig};
use encode::short;

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum RabbitMqSinkError {
    #[error("rabbitmq sink {sink}: invalid configuration: {detail}")]
    Config { sink: String, detail: String },
    #[error("rabbitmq sink {sink}: routing key template: {source}")]
    Template {
        sink: String,
        #[source]
        source: TemplateError,
    },
    #[error("rabbitmq sink {sink}: cannot connect to {url}: {detail}")]
    Connect {
        sink: String,
        /// Password redacted.
        url: String,
        detail: String,
    },
}

/// The RabbitMQ sink (see the crate documentation).
pub struct RabbitMqSink {
    name: String,
    url: String,
    exchange: String,
    declare_exchange: bool,
    routing_key: Template,
    deadletter_routing_key: String,
    wire_mode: WireMode,
    header_style: HeaderStyle,
    mandatory: bool,
    confirm_timeout: Duration,
    connect_timeout: Duration,
    backoff: Duration,
    backoff_max: Duration,
    max_in_flight: usize,
    state: tokio::sync::Mutex<ConnState>,
    /// The current connection's status, for `ready()` without waiting on `state`.
    current: std::sync::Mutex<Option<ConnectionStatus>>,
}

impl fmt::Debug for RabbitMqSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqSink")
            .field("name", &self.name)
            .field("url", &redact_url(&self.url))
            .field("exchange", &self.exchange)
            .field("routing_key", &self.routing_key.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct ConnState {
    conn: Option<Connection>,
    channel: Option<Channel>,
    /// Consecutive failed connection attempts.
    failures: u32,
    /// No new attempt before this.
    next_attempt: Option<Instant>,
}

fn retryable(reason: &'static str, detail: impl Into<String>) -> PublishError {
    PublishError::Retryable {
        reason,
        detail: detail.into(),
    }
}

impl RabbitMqSink {
    /// Validates `cfg`, connects, declares the exchange (unless disabled) and opens a
    /// confirm-mode channel. Fails if the broker cannot be reached within
    /// `connect_timeout`; after that, lost connections are re-established by `publish`.
    pub async fn connect(
        name: &str,
        cfg: &RabbitMqSinkConfig,
    ) -> Result<RabbitMqSink, RabbitMqSinkError> {
        let routing_key = cfg.prepare(name)?;
        let sink = RabbitMqSink {
            name: name.to_owned(),
            url: cfg.url.clone(),
            exchange: cfg.exchange.clone(),
            declare_exchange: cfg.declare_exchange,
            routing_key,
            deadletter_routing_key: cfg.deadletter_routing_key.clone(),
            wire_mode: cfg.wire_mode,
            header_style: match cfg.header_style {
                AmqpHeaders::Ce => HeaderStyle::Amqp,
                AmqpHeaders::Amqp1 => HeaderStyle::Amqp1,
            },
            mandatory: cfg.mandatory,
            confirm_timeout: cfg.confirm_timeout,
            connect_timeout: cfg.connect_timeout,
            backoff: cfg.reconnect_backoff,
            backoff_max: cfg.reconnect_backoff_max.max(cfg.reconnect_backoff),
            max_in_flight: cfg.max_in_flight,
            state: tokio::sync::Mutex::new(ConnState::default()),
            current: std::sync::Mutex::new(None),
        };
        {
            let mut state = sink.state.lock().await;
            sink.open(&mut state)
                .await
                .map_err(|e| RabbitMqSinkError::Connect {
                    sink: name.to_owned(),
                    url: redact_url(&cfg.url),
                    detail: e.to_string(),
                })?;
        }
        tracing::info!(sink = name, url = %redact_url(&cfg.url), exchange = %cfg.exchange, "rabbitmq sink connected");
        Ok(sink)
    }

    /// The routing key a record is published with.
    pub fn routing_key_for(&self, message: &Message) -> String {
        match &message.payload {
            Payload::Event(env) => self.routing_key.render(env),
            Payload::DeadLetter(_) => self.deadletter_routing_key.clone(),
        }
    }

    fn set_current(&self, conn: Option<ConnectionStatus>) {
        let mut cur = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *cur = conn;
    }

    /// Connects if needed, then opens a confirm-mode channel. Bounded by timeouts.
    async fn open(&self, state: &mut ConnState) -> Result<Channel, PublishError> {
        let conn_ok = state.conn.as_ref().is_some_and(|c| c.status().connected());
        if !conn_ok {
            state.channel = None;
            if let Some(old) = state.conn.take() {
                // Best effort: free its resources; it is already broken.
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), old.close(320, "reconnect")).await;
            }
            let connect = Connection::connect(&self.url, ConnectionProperties::default());
            let conn = match tokio::time::timeout(self.connect_timeout, connect).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => return Err(retryable("connect_failed", e.to_string())),
                Err(_) => {
                    return Err(retryable(
                        "connect_failed",
                        format!("no connection within {:?}", self.connect_timeout),
                    ))
                }
            };
            state.conn = Some(conn);
        }
        let Some(conn) = state.conn.as_ref() else {
            return Err(retryable("disconnected", "no connection"));
        };
        let setup = async {
            let channel = conn.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            if self.declare_exchange {
                channel
                    .exchange_declare(
                        &self.exchange,
                        ExchangeKind::Topic,
                        ExchangeDeclareOptions {
                            durable: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await?;
            }
            Ok::<_, lapin::Error>(channel)
        };
        let channel = match tokio::time::timeout(self.connect_timeout, setup).await {
            Ok(Ok(ch)) => ch,
            Ok(Err(e)) => return Err(retryable("channel_failed", e.to_string())),
            Err(_) => {
                // The connection looks up but does not answer: start over with a new one.
                state.conn = None;
                self.set_current(None);
                return Err(retryable("channel_failed", "channel setup timed out"));
            }
        };
        state.channel = Some(channel.clone());
        self.set_current(Some(conn.status().clone()));
        Ok(channel)
    }

    /// A usable channel: the current one, or a new one (reconnecting first when the
    /// connection is gone), respecting the reconnect backoff.
    async fn channel(&self) -> Result<Channel, PublishError> {
        let mut state = self.state.lock().await;
        if let (Some(conn), Some(ch)) = (&state.conn, &state.channel) {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        if let Some(next) = state.next_attempt {
            let now = Instant::now();
            if now < next {
                return Err(retryable(
                    "disconnected",
                    format!(
                        "broker unreachable; next connection attempt in {:?}",
                        next - now
                    ),
                ));
            }
        }
        match self.open(&mut state).await {
            Ok(ch) => {
                if state.failures > 0 {
                    tracing::info!(sink = %self.name, after = state.failures, "rabbitmq sink reconnected");
                }
                state.failures = 0;
                state.next_attempt = None;
                Ok(ch)
            }
            Err(e) => {
                state.failures = state.failures.saturating_add(1);
                let exp = state.failures.saturating_sub(1).min(16);
                let wait = self
                    .backoff
                    .saturating_mul(1u32 << exp)
                    .min(self.backoff_max);
                state.next_attempt = Some(Instant::now() + wait);
                tracing::warn!(sink = %self.name, error = %e, retry_in = ?wait, "rabbitmq sink cannot open a channel");
                Err(e)
            }
        }
    }

    /// Forgets `channel` (if still current) so that the next publish opens a new one.
    async fn discard(&self, channel: &Channel) {
        let mut state = self.state.lock().await;
        if state
            .channel
            .as_ref()
            .is_some_and(|c| c.id() == channel.id())
        {
            state.channel = None;
            if state.conn.as_ref().is_some_and(|c| !c.status().connected()) {
                self.set_current(None);
            }
        }
    }

    fn properties(&self, message: &Message, content_type: &str) -> BasicProperties {
        let (kind, timestamp) = match &message.payload {
            Payload::Event(env) => (env.event_type.as_str(), env.time.timestamp()),
            Payload::DeadLetter(dl) => ("deadletter", dl.received_at.timestamp()),
        };
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(short(message.id()))
            .with_content_type(short(content_type))
            .with_type(short(kind))
            .with_timestamp(u64::try_from(timestamp).unwrap_or(0))
            .with_app_id(ShortString::from("activity-relay"))
    }

    fn build(&self, message: &Message) -> Result<(String, BasicProperties, Bytes), PublishError> {
        let routing_key = self.routing_key_for(message);
        if routing_key.len() > 255 {
            return Err(PublishError::Permanent {
                reason: "invalid_routing_key",
                detail: format!(
                    "routing key of {} bytes exceeds AMQP's 255 (template {})",
                    routing_key.len(),
                    self.routing_key
                ),
            });
        }
        let encoded = encode(message, self.wire_mode, self.header_style);
        let mut props = self.properties(message, encoded.content_type);
        if self.wire_mode == WireMode::Binary || message.is_dead_letter() {
            let mut table = FieldTable::default();
            for (k, v) in encoded.headers {
                table.insert(short(&k), AMQPValue::LongString(LongString::from(v)));
            }
            props = props.with_headers(table);
        }
        Ok((routing_key, props, encoded.body))
    }
}

fn map_lapin_error(e: &lapin::Error) -> PublishError {
    match e {
        lapin::Error::InvalidConnectionState(_) | lapin::Error::IOError(_) => {
            retryable("disconnected", e.to_string())
        }
        _ => retryable("channel_closed", e.to_string()),
    }
}

/// Whether a failure means the channel cannot be used any more.
fn breaks_channel(e: &PublishError) -> bool {
    matches!(
        e.reason(),
        "disconnected" | "channel_closed" | "timeout" | "unconfirmed"
    )
}

#[async_trait::async_trait]
impl Sink for RabbitMqSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, batch: &[Message]) -> Vec<Result<(), PublishError>> {
        if batch.is_empty() {
            return Vec::new();
        }
        let channel = match self.channel().await {
            Ok(ch) => ch,
            Err(e) => return batch.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut results: Vec<Result<(), PublishError>> = Vec::with_capacity(batch.len());
        results.resize_with(batch.len(), || Ok(()));
        let options = BasicPublishOptions {
            mandatory: self.mandatory,
            ..Default::default()
        };
        let timeout = self.confirm_timeout;
        let mut broken = false;
        let mut pending = FuturesOrdered::new();
        for (i, message) in batch.iter().enumerate() {
            if broken {
                results[i] = Err(retryable(
                    "channel_closed",
                    "not sent: the channel failed earlier in this batch",
                ));
                continue;
            }
            if pending.len() >= self.max_in_flight {
                if let Some((j, r)) = pending.next().await {
                    results[j] = r;
                }
            }
            let (routing_key, props, body) = match self.build(message) {
                Ok(b) => b,
                Err(e) => {
                    results[i] = Err(e);
                    continue;
                }
            };
            let send = channel.basic_publish(&self.exchange, &routing_key, options, &body, props);
            let confirm = match tokio::time::timeout(timeout, send).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    results[i] = Err(map_lapin_error(&e));
                    broken = true;
                    continue;
                }
                Err(_) => {
                    results[i] = Err(retryable("timeout", "basic.publish not written in time"));
                    broken = true;
                    continue;
                }
            };
            pending.push_back(async move {
                let r = match tokio::time::timeout(timeout, confirm).await {
                    Ok(Ok(Confirmation::Ack(None))) => Ok(()),
                    Ok(Ok(Confirmation::Ack(Some(ret)))) => Err(PublishError::Refused {
                        reason: "unroutable",
                        detail: format!(
                            "returned by the broker: {} {} (routing key {routing_key}): bind a queue to it",
                            ret.reply_code,
                            ret.reply_text.as_str()
                        ),
                    }),
                    Ok(Ok(Confirmation::Nack(_))) => {
                        Err(retryable("nack", format!("broker nacked {routing_key}")))
                    }
                    Ok(Ok(Confirmation::NotRequested)) => {
                        Err(retryable("unconfirmed", "channel is not in confirm mode"))
                    }
                    Ok(Err(e)) => Err(map_lapin_error(&e)),
                    Err(_) => Err(retryable(
                        "timeout",
                        format!("no publisher confirm within {timeout:?}"),
                    )),
                };
                (i, r)
            });
        }
        while let Some((j, r)) = pending.next().await {
            results[j] = r;
        }
        let failed: Vec<&PublishError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        if !failed.is_empty() {
            if broken || failed.iter().any(|e| breaks_channel(e)) || !channel.status().connected() {
                self.discard(&channel).await;
            }
            tracing::warn!(
                sink = %self.name,
                failed = failed.len(),
                total = batch.len(),
                first = %failed[0],
                "rabbitmq publish: some records not confirmed"
            );
        }
        results
    }

    async fn ready(&self) -> bool {
        let cur = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        cur.as_ref().is_some_and(|c| c.connected())
    }

    async fn close(&self) -> Result<(), PublishError> {
        let mut state = self.state.lock().await;
        state.channel = None;
        self.set_current(None);
        if let Some(conn) = state.conn.take() {
            if conn.status().connected() {
                match tokio::time::timeout(self.connect_timeout, conn.close(200, "shutdown")).await
                {
                    Ok(Ok(())) => {}
                    // Already closing (lapin closes channels concurrently): nothing to do.
                    Ok(Err(
                        lapin::Error::InvalidChannelState(_)
                        | lapin::Error::InvalidConnectionState(_),
                    )) => {}
                    Ok(Err(e)) => return Err(map_lapin_error(&e)),
                    Err(_) => return Err(retryable("timeout", "connection close timed out")),
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("amqp://guest:s3cr3t@host:5672/%2f"),
            "amqp://guest:<redacted>@host:5672/%2f"
        );
        assert_eq!(redact_url("amqps://u:p@ss@h/v"), "amqps://u:<redacted>@h/v");
        assert_eq!(redact_url("amqp://host/%2f"), "amqp://host/%2f");
        assert_eq!(redact_url("amqp://user@host"), "amqp://user@host");
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
        assert_eq!(cfg.reconnect_backoff, Duration::from_millis(500));
        assert_eq!(cfg.reconnect_backoff_max, Duration::from_secs(30));
        assert!(serde_json::from_str::<RabbitMqSinkConfig>(r#"{"url":"x","nope":1}"#).is_err());
        assert!(serde_json::from_str::<RabbitMqSinkConfig>(r#"{}"#).is_err());
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
