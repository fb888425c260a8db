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
use futures::stream::{FuturesOrdered, StreamExt};
use relay_sink::{
    encode, HeaderStyle, Message, Payload, PublishError, Sink, Template, TemplateError, WireMode,
};
use serde::Deserialize;

mod config;
mod encode;

pub use config::{
    redact_url, NatsAuth, NatsSinkConfig, NatsTls, Retention, Secret, Storage, StreamSetup,
};
use encode::*;

/// Why the sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsSinkError {
    #[error("nats sink {sink}: invalid configuration: {detail}")]
    Config { sink: String, detail: String },
    #[error("nats sink {sink}: subject template: {source}")]
    Template {
        sink: String,
        #[source]
        source: TemplateError,
    },
    #[error("nats sink {sink}: reading credentials file {path}: {source}")]
    Credentials {
        sink: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("nats sink {sink}: cannot connect: {source}")]
    Connect {
        sink: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("nats sink {sink}: cannot connect: no server answered within {after:?}")]
    ConnectTimeout { sink: String, after: Duration },
    #[error("nats sink {sink}: cannot create or update stream {stream}: {source}")]
    Stream {
        sink: String,
        stream: String,
        #[source]
        source: async_nats::jetstream::context::CreateStreamError,
    },
}

/// The NATS JetStream sink (see the crate documentation).
pub struct NatsSink {
    name: String,
    client: async_nats::Client,
    js: jetstream::Context,
    subject: Template,
    deadletter_subject: String,
    wire_mode: WireMode,
    max_in_flight: usize,
    ack_timeout: Duration,
}

impl fmt::Debug for NatsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSink")
            .field("name", &self.name)
            .field("subject", &self.subject.as_str())
            .field("deadletter_subject", &self.deadletter_subject)
            .field("wire_mode", &self.wire_mode)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl NatsSink {
    /// Validates `cfg`, connects (failing if no server answers within `connect_timeout`)
    /// and, when `cfg.stream` is set, creates or updates the stream. After this the client
    /// reconnects by itself, forever, with backoff (at most 4 s between attempts).
    pub async fn connect(name: &str, cfg: &NatsSinkConfig) -> Result<NatsSink, NatsSinkError> {
        let (subject, servers) = cfg.prepare(name)?;
        let options = connect_options(name, cfg).await?;
        // async-nats bounds the TCP connect by `connection_timeout`, not the handshake that
        // follows: a server that accepts and stays silent would hang here without this.
        let client = tokio::time::timeout(cfg.connect_timeout, options.connect(servers))
            .await
            .map_err(|_| NatsSinkError::ConnectTimeout {
                sink: name.to_owned(),
                after: cfg.connect_timeout,
            })?
            .map_err(|source| NatsSinkError::Connect {
                sink: name.to_owned(),
                source,
            })?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(cfg.ack_timeout);

        if let Some(setup) = &cfg.stream {
            let config = stream::Config {
                name: setup.name.clone(),
                subjects: setup.subjects.clone(),
                storage: match setup.storage {
                    Storage::File => stream::StorageType::File,
                    Storage::Memory => stream::StorageType::Memory,
                },
                retention: match setup.retention {
                    Retention::Limits => stream::RetentionPolicy::Limits,
                    Retention::Interest => stream::RetentionPolicy::Interest,
                    Retention::Workqueue => stream::RetentionPolicy::WorkQueue,
                },
                max_age: setup.max_age,
                duplicate_window: setup.duplicate_window,
                ..Default::default()
            };
            js.create_or_update_stream(config)
                .await
                .map_err(|source| NatsSinkError::Stream {
                    sink: name.to_owned(),
                    stream: setup.name.clone(),
                    source,
                })?;
            tracing::info!(sink = name, stream = %setup.name, "JetStream stream ready");
        }
        tracing::info!(sink = name, subject = %subject, "nats sink connected");
        Ok(NatsSink {
            name: name.to_owned(),
            client,
            js,
            subject,
            deadletter_subject: cfg.deadletter_subject.clone(),
            wire_mode: cfg.wire_mode,
            max_in_flight: cfg.max_in_flight,
            ack_timeout: cfg.ack_timeout,
        })
    }

    /// The subject a record is published to.
    pub fn subject_for(&self, message: &Message) -> String {
        match &message.payload {
            Payload::Event(env) => sanitize_tokens(self.subject.render_with(env, escape_value)),
            Payload::DeadLetter(_) => self.deadletter_subject.clone(),
        }
    }

    /// The underlying client (for tests and tools).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    fn build(&self, message: &Message) -> (String, HeaderMap, Bytes) {
        let encoded = encode(message, self.wire_mode, HeaderStyle::Nats);
        let mut headers = HeaderMap::new();
        headers.insert(NATS_MESSAGE_ID, message.id());
        headers.insert("Content-Type", encoded.content_type);
        for (k, v) in encoded.headers {
            headers.insert(k, v);
        }
        (self.subject_for(message), headers, encoded.body)
    }

    async fn send(
        &self,
        message: &Message,
        max_payload: usize,
    ) -> Result<(String, PublishAckFuture), PublishError> {
        let (subject, headers, body) = self.build(message);
        let size = body.len() + headers_len(&headers);
        if max_payload > 0 && size > max_payload {
            return Err(PublishError::Permanent {
                reason: "too_large",
                detail: format!("{size} bytes exceed the server's max_payload of {max_payload}"),
            });
        }
        let publish = jetstream::context::Publish::build()
            .payload(body)
            .headers(headers);
        match self.js.send_publish(subject.clone(), publish).await {
            Ok(ack) => Ok((subject, ack)),
            Err(e) => Err(map_publish_error(&e, &subject)),
        }
    }
}

async fn connect_options(
    name: &str,
    cfg: &NatsSinkConfig,
) -> Result<async_nats::ConnectOptions, NatsSinkError> {
    let auth = &cfg.auth;
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("activity-relay/{name}"))
        .connection_timeout(cfg.connect_timeout)
        .request_timeout(Some(cfg.ack_timeout));
    if let Some(token) = &auth.token {
        options = options.token(token.expose().to_owned());
    }
    if let (Some(user), Some(password)) = (&auth.user, &auth.password) {
        options = options.user_and_password(user.clone(), password.expose().to_owned());
    }
    if let Some(seed) = &auth.nkey_seed {
        options = options.nkey(seed.expose().to_owned());
    }
    if let Some(path) = &auth.credentials_file {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|source| NatsSinkError::Credentials {
                    sink: name.to_owned(),
                    path: path.clone(),
                    source,
                })?;
    }
    let tls = &cfg.tls;
    if let Some(ca) = &tls.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if tls.require_tls {
        options = options.require_tls(true);
    }
    Ok(options)
}

fn map_publish_error(e: &jetstream::context::PublishError, subject: &str) -> PublishError {
    match e.kind() {
        PublishErrorKind::TimedOut => PublishError::Retryable {
            reason: "timeout",
            detail: format!("no JetStream ack for {subject} in time"),
        },
        PublishErrorKind::StreamNotFound => PublishError::Retryable {
            reason: "no_stream",
            detail: format!(
                "no responders: no JetStream stream captures subject {subject} \
                 (create the stream or fix the subject template)"
            ),
        },
        PublishErrorKind::BrokenPipe => PublishError::Retryable {
            reason: "connection_closed",
            detail: format!("connection closed before the ack for {subject}"),
        },
        _ => {
            let js_error = std::error::Error::source(e)
                .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>());
            match js_error {
                Some(js)
                    if js.error_code()
                        == async_nats::jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM =>
                {
                    PublishError::Permanent {
                        reason: "too_large",
                        detail: format!("{subject}: {js}"),
                    }
                }
                Some(js) => PublishError::Retryable {
                    reason: "jetstream_error",
                    detail: format!("{subject}: {js}"),
                },
                None => PublishError::Retryable {
                    reason: "publish_failed",
                    detail: format!("{subject}: {e}"),
                },
            }
        }
    }
}

#[async_trait::async_trait]
impl Sink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, batch: &[Message]) -> Vec<Result<(), PublishError>> {
        let mut results: Vec<Result<(), PublishError>> = Vec::with_capacity(batch.len());
        if batch.is_empty() {
            return results;
        }
        // While the client is disconnected a publish would only sit in its buffer until the
        // ack times out (and be sent on reconnect anyway): fail fast instead.
        if self.client.connection_state() == State::Disconnected {
            return batch
                .iter()
                .map(|_| {
                    Err(PublishError::Retryable {
                        reason: "disconnected",
                        detail: "not connected to any NATS server".into(),
                    })
                })
                .collect();
        }
        results.resize_with(batch.len(), || Ok(()));
        // Once per batch: server_info() clones the whole INFO.
        let max_payload = self.client.server_info().max_payload;
        // Send in batch order; await acks concurrently, at most max_in_flight pending.
        let mut pending = FuturesOrdered::new();
        for (i, message) in batch.iter().enumerate() {
            if pending.len() >= self.max_in_flight {
                if let Some((j, r)) = pending.next().await {
                    results[j] = r;
                }
            }
            match self.send(message, max_payload).await {
                Ok((subject, ack)) => {
                    pending.push_back(async move {
                        let r = ack.await.map(|_| ()).map_err(|e| {
                            let mapped = map_publish_error(&e, &subject);
                            tracing::debug!(%subject, error = %mapped, "nats publish not acknowledged");
                            mapped
                        });
                        (i, r)
                    });
                }
                Err(e) => {
                    tracing::debug!(id = %message.id(), error = %e, "nats publish not sent");
                    results[i] = Err(e);
                }
            }
        }
        while let Some((j, r)) = pending.next().await {
            results[j] = r;
        }
        let failed = results.iter().filter(|r| r.is_err()).count();
        if failed > 0 {
            tracing::warn!(sink = %self.name, failed, total = batch.len(), "nats publish: some records not acknowledged");
        }
        results
    }

    async fn ready(&self) -> bool {
        self.client.connection_state() == State::Connected
    }

    async fn close(&self) -> Result<(), PublishError> {
        // Every confirmed record is already acked; this only pushes out what is buffered.
        // Bounded: a flush while disconnected would wait for a reconnect.
        match tokio::time::timeout(self.ack_timeout, self.client.flush()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(PublishError::Retryable {
                reason: "flush_failed",
                detail: e.to_string(),
            }),
            Err(_) => Err(PublishError::Retryable {
                reason: "timeout",
                detail: "flush did not complete in time".into(),
            }),
        }
    }
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
        let missing = serde_json::from_str::<NatsSinkConfig>(r#"{}"#);
        assert!(missing.is_err());
    }

    #[test]
    fn redacts_url_credentials_and_validates() {
        assert_eq!(
            redact_url("nats://u:pw@a:4222, nats://tok@b:4222,nats://c:4222"),
            "nats://u:<redacted>@a:4222, nats://<redacted>@b:4222,nats://c:4222"
        );
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
