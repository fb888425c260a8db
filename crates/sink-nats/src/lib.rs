//! activity-relay's NATS JetStream sink.
//!
//! Every record is published to JetStream and counts as delivered only once the stream
//! acknowledged it (`PubAck`). The envelope `id` (a dead letter's `deadletter:<sha256>` id)
//! goes in the `Nats-Msg-Id` header, so JetStream drops a redelivery inside the stream's
//! duplicate window: a record retried after a lost ack is stored once.
//!
//! * Subject: the [`Template`] `subject` (default `x.activity.{subject}.{type}`); dead letters
//!   go to `deadletter_subject` (default `x.activity.deadletter`).
//! * Wire mode ([`WireMode`]): `structured` sends the envelope JSON with
//!   `Content-Type: application/cloudevents+json`; `binary` sends `data` with one `ce-<attr>`
//!   header per attribute and `Content-Type: application/json` (CloudEvents NATS binding).
//! * A batch is pipelined: messages are sent in batch order, at most `max_in_flight`
//!   unacknowledged at a time, and the acks are awaited concurrently.
//!
//! ## Subject tokens
//!
//! A value substituted into the subject template must not change the subject's meaning or
//! make it unpublishable. Inside substituted values, whitespace, control characters, `*`
//! and `>` are replaced with `_` (they are not allowed in a published subject); dots are
//! kept (so `{type}` = `post.create` gives two tokens, which the spec's wildcards rely on),
//! but an empty token (a value that starts or ends with `.`, or holds `..`) becomes `_`. A
//! missing attribute renders `_` ([`relay_sink::MISSING`]). The template's own literal text
//! and the dead-letter subject are checked at [`NatsSink::connect`]: no whitespace, no
//! wildcards, no empty tokens.
//!
//! ## Errors
//!
//! Ack timeout, no responders, a broken connection or the client being disconnected are
//! [`PublishError::Retryable`]. No stream capturing the subject is retryable too (reason
//! `no_stream`): an operator can create the stream and the records then flow. A record
//! larger than the server's `max_payload` or the stream's maximum message size is
//! [`PublishError::Permanent`] (reason `too_large`).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use relay_sink::driver::{fail_all, Confirmations};
use relay_sink::{
    encode, HeaderStyle, Message, Payload, PublishError, Reason, Sink, Template, TemplateError,
    WireMode,
};
use serde::Deserialize;

mod config;
mod encode;
mod service;
mod setup;

pub use config::{NatsAuth, NatsSinkConfig, NatsTls, Retention, Storage, StreamSetup};
use encode::*;
pub use relay_sink::{redact_url, Secret};
pub use service::NatsSink;

/// `type = "nats"`: how the relay reads, checks, describes and connects this sink.
pub struct NatsSinkType;

impl relay_sink::registry::SinkType for NatsSinkType {
    const TYPE: &'static str = "nats";
    type Config = NatsSinkConfig;
    type Error = NatsSinkError;
    type Sink = NatsSink;

    fn check(name: &str, cfg: &NatsSinkConfig) -> Result<String, NatsSinkError> {
        cfg.validate(name)?;
        Ok(format!("nats: subject {:?}", cfg.subject))
    }

    fn asyncapi(cfg: &NatsSinkConfig) -> Option<relay_sink::registry::AsyncApiServer> {
        Some(relay_sink::registry::AsyncApiServer {
            host: relay_sink::registry::first_host(&cfg.url),
            protocol: "nats",
            template: cfg.subject.clone(),
            binary: cfg.wire_mode == WireMode::Binary,
            channel_binding: None,
            message_binding: None,
        })
    }

    /// Two sinks may not name one JetStream stream: both publish each envelope with its
    /// id as `Nats-Msg-Id`, so the stream would store the first sink's copy and
    /// acknowledge the second's as a duplicate without storing it, silently.
    fn exclusive(cfg: &NatsSinkConfig) -> Option<relay_sink::registry::Exclusive> {
        let stream = cfg.stream.as_ref()?;
        Some(relay_sink::registry::Exclusive {
            // The raw URL: two accounts (other credentials) may each have a stream so named.
            key: format!("nats {} {}", cfg.url, stream.name),
            what: format!(
                "the JetStream stream {:?} on {}",
                stream.name,
                redact_url(&cfg.url)
            ),
            why: "JetStream would drop the second sink's copy of every event as a duplicate \
                  (same Nats-Msg-Id); give each sink its own stream",
        })
    }

    async fn connect(name: &str, cfg: &NatsSinkConfig) -> Result<NatsSink, NatsSinkError> {
        NatsSink::connect(name, cfg).await
    }
}

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsSinkError {
    #[error("nats sink {sink:?}: invalid configuration: {detail}")]
    Config { sink: String, detail: String },
    #[error("nats sink {sink:?}: subject template: {source}")]
    Template {
        sink: String,
        #[source]
        source: TemplateError,
    },
    #[error("nats sink {sink:?}: reading credentials file {path}: {source}")]
    Credentials {
        sink: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("nats sink {sink:?}: cannot connect: {source}")]
    Connect {
        sink: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("nats sink {sink:?}: cannot connect: no server answered within {after:?}")]
    ConnectTimeout { sink: String, after: Duration },
    #[error("nats sink {sink:?}: stream {stream}: {detail}")]
    Stream {
        sink: String,
        stream: String,
        detail: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_values() {
        let mut s = String::new();
        escape_value("a b*c>d\te", &mut s);
        assert_eq!(s, "a_b_c_d_e");
        assert_eq!(sanitize_tokens("x..y.".into()), "x._.y._");
        assert_eq!(sanitize_tokens(".x".into()), "_.x");
        assert_eq!(sanitize_tokens("x.y".into()), "x.y");
    }

    #[test]
    fn checks_templates() {
        let ok = Template::parse("x.activity.{subject}.{type}").unwrap();
        assert!(check_template_literals(&ok).is_ok());
        for bad in [
            "x.*.{type}",
            "x.>",
            "x .{type}",
            "x..{type}",
            "x.{type}.",
            "",
        ] {
            let t = Template::parse(bad).unwrap();
            assert!(check_template_literals(&t).is_err(), "{bad:?} accepted");
        }
        assert!(check_publish_subject("x.activity.deadletter").is_ok());
        assert!(check_publish_subject("x.activity.>").is_err());
    }

    #[test]
    fn config_defaults_and_redaction() {
        let cfg: NatsSinkConfig = toml_like(
            r#"{"url":"nats://a:4222,nats://b:4222","auth":{"token":"s3cr3t"},
                "stream":{},"ack_timeout":"3s"}"#,
        );
        assert_eq!(cfg.subject, "x.activity.{subject}.{type}");
        assert_eq!(cfg.deadletter_subject, "x.activity.deadletter");
        assert_eq!(cfg.wire_mode, WireMode::Structured);
        assert_eq!(cfg.ack_timeout, Duration::from_secs(3));
        assert_eq!(cfg.max_in_flight, 256);
        let stream = cfg.stream.clone().unwrap();
        assert_eq!(stream.name, "X_ACTIVITY");
        assert_eq!(stream.subjects, vec!["x.activity.>".to_string()]);
        assert_eq!(stream.storage, Storage::File);
        assert_eq!(stream.retention, Retention::Limits);
        assert_eq!(stream.max_age, Duration::from_secs(7 * 86400));
        assert_eq!(stream.duplicate_window, Duration::from_secs(120));
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("redacted"));

        let unknown = serde_json::from_str::<NatsSinkConfig>(r#"{"url":"x","nope":1}"#);
        assert!(unknown.is_err());
        // A missing url parses (defaults in one place) and is refused by validate().
        let missing = serde_json::from_str::<NatsSinkConfig>(r#"{}"#).unwrap();
        let err = missing.validate("n").unwrap_err().to_string();
        assert!(err.contains("url is required"), "{err}");
    }

    #[test]
    fn redacts_url_credentials_and_validates() {
        // `redact_url` itself is tested in relay-sink; here, that the config uses it.
        let cfg = toml_like(r#"{"url":"nats://u:pw@a:4222"}"#);
        assert!(!format!("{cfg:?}").contains("pw"));
        assert!(cfg.validate("n").is_ok());
        let bad = toml_like(r#"{"url":"nats://a","auth":{"token":"t","nkey_seed":"s"}}"#);
        assert!(bad.validate("n").is_err());
        let bad = toml_like(r#"{"url":"nats://a","auth":{"user":"u"}}"#);
        assert!(bad.validate("n").is_err());
        let bad = toml_like(r#"{"url":"nats://a","tls":{"cert":"/c"}}"#);
        assert!(bad.validate("n").is_err());
        let bad = toml_like(r#"{"url":" , "}"#);
        assert!(bad.validate("n").is_err());
    }

    fn toml_like(json: &str) -> NatsSinkConfig {
        serde_json::from_str(json).unwrap()
    }
}
