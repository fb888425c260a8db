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

/// A secret string from the configuration: never printed by `Debug`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    /// The secret itself (hand it to the client; never log it).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// `[sinks.<name>]` with `type = "nats"`. `Debug` redacts secrets (also in `url`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsSinkConfig {
    /// Server URL(s), comma-separated: `nats://host:4222,nats://other:4222` (`tls://` for
    /// TLS).
    pub url: String,
    /// Subject template. Default `x.activity.{subject}.{type}`.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Subject of dead letters. Default `x.activity.deadletter`.
    #[serde(default = "default_deadletter_subject")]
    pub deadletter_subject: String,
    /// `structured` (default) or `binary`.
    #[serde(default)]
    pub wire_mode: WireMode,
    /// How long to wait for a JetStream ack. Default 10s.
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// How long the initial connection (TCP, TLS and NATS handshake, all servers) may
    /// take. Default 10s.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Credentials (at most one method).
    #[serde(default)]
    pub auth: NatsAuth,
    /// TLS settings.
    #[serde(default)]
    pub tls: NatsTls,
    /// When set, the stream is created at connect (or updated if it exists).
    #[serde(default)]
    pub stream: Option<StreamSetup>,
    /// Most unacknowledged publishes at a time. Default 256.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

fn default_subject() -> String {
    "x.activity.{subject}.{type}".into()
}
fn default_deadletter_subject() -> String {
    "x.activity.deadletter".into()
}
fn default_ack_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_in_flight() -> usize {
    256
}

impl NatsSinkConfig {
    /// A configuration with every default and the given server URL.
    pub fn new(url: impl Into<String>) -> NatsSinkConfig {
        NatsSinkConfig {
            url: url.into(),
            subject: default_subject(),
            deadletter_subject: default_deadletter_subject(),
            wire_mode: WireMode::default(),
            ack_timeout: default_ack_timeout(),
            connect_timeout: default_connect_timeout(),
            auth: NatsAuth::default(),
            tls: NatsTls::default(),
            stream: None,
            max_in_flight: default_max_in_flight(),
        }
    }
}

impl NatsSinkConfig {
    /// Checks the configuration without connecting: templates, subjects, URLs, auth and
    /// TLS combinations (what [`NatsSink::connect`] checks before it connects).
    pub fn validate(&self, name: &str) -> Result<(), NatsSinkError> {
        self.prepare(name).map(|_| ())
    }

    fn prepare(
        &self,
        name: &str,
    ) -> Result<(Template, Vec<async_nats::ServerAddr>), NatsSinkError> {
        let config_err = |detail: String| NatsSinkError::Config {
            sink: name.to_owned(),
            detail,
        };
        let subject = Template::parse(&self.subject).map_err(|source| NatsSinkError::Template {
            sink: name.to_owned(),
            source,
        })?;
        check_template_literals(&subject).map_err(config_err)?;
        check_publish_subject(&self.deadletter_subject)
            .map_err(|e| config_err(format!("deadletter_subject: {e}")))?;
        if self.max_in_flight == 0 {
            return Err(config_err("max_in_flight must be at least 1".into()));
        }
        let servers: Vec<async_nats::ServerAddr> = self
            .url
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<async_nats::ServerAddr>().map_err(|_| {
                    config_err(format!(
                        "url {:?} is not a NATS server address",
                        redact_url(s)
                    ))
                })
            })
            .collect::<Result<_, _>>()?;
        if servers.is_empty() {
            return Err(config_err("url is empty".into()));
        }
        let auth = &self.auth;
        let methods = [
            auth.token.is_some(),
            auth.user.is_some() || auth.password.is_some(),
            auth.nkey_seed.is_some(),
            auth.credentials_file.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if methods > 1 {
            return Err(config_err(
                "auth: set only one of token, user + password, nkey_seed, credentials_file".into(),
            ));
        }
        if auth.user.is_some() != auth.password.is_some() {
            return Err(config_err("auth: user and password go together".into()));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(config_err("tls: cert and key go together".into()));
        }
        Ok((subject, servers))
    }
}

impl fmt::Debug for NatsSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsSinkConfig")
            .field("url", &redact_url(&self.url))
            .field("subject", &self.subject)
            .field("deadletter_subject", &self.deadletter_subject)
            .field("wire_mode", &self.wire_mode)
            .field("ack_timeout", &self.ack_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("auth", &self.auth)
            .field("tls", &self.tls)
            .field("stream", &self.stream)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

/// The server URL(s) with any embedded password (`nats://user:password@host`) replaced by
/// `<redacted>`; a lone user part (`nats://token@host`, a token) is redacted too.
pub fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let Some(scheme_end) = one.find("://") else {
                return one.to_owned();
            };
            let rest = &one[scheme_end + 3..];
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let Some(at) = rest[..authority_end].rfind('@') else {
                return one.to_owned();
            };
            let userinfo = &rest[..at];
            let shown = match userinfo.find(':') {
                Some(colon) => format!("{}:<redacted>", &userinfo[..colon]),
                None => "<redacted>".to_owned(),
            };
            format!("{}{shown}{}", &one[..scheme_end + 3], &rest[at..])
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// NATS credentials; at most one of token, user + password, nkey seed, credentials file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsAuth {
    pub token: Option<Secret>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// An nkey seed (`SU…`).
    pub nkey_seed: Option<Secret>,
    /// A `.creds` file (JWT + nkey seed).
    pub credentials_file: Option<PathBuf>,
}

/// TLS to the NATS servers.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsTls {
    /// PEM CA bundle to trust (in addition to the system roots).
    pub ca: Option<PathBuf>,
    /// PEM client certificate (with `key`) for mutual TLS.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// Refuse a connection without TLS. Default false (a `tls://` URL requires TLS too).
    #[serde(default)]
    pub require_tls: bool,
}

/// The JetStream stream the sink creates or updates at connect.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSetup {
    /// Default `X_ACTIVITY`.
    #[serde(default = "default_stream_name")]
    pub name: String,
    /// Default `["x.activity.>"]` (captures the default subjects and dead letters).
    #[serde(default = "default_stream_subjects")]
    pub subjects: Vec<String>,
    /// `file` (default) or `memory`.
    #[serde(default)]
    pub storage: Storage,
    /// `limits` (default), `interest` or `workqueue`.
    #[serde(default)]
    pub retention: Retention,
    /// Default 7 days.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    pub max_age: Duration,
    /// Window in which a repeated `Nats-Msg-Id` is dropped. Default 2 minutes. Make it
    /// longer than the time a record may spend being retried.
    #[serde(default = "default_duplicate_window", with = "humantime_serde")]
    pub duplicate_window: Duration,
}

fn default_stream_name() -> String {
    "X_ACTIVITY".into()
}
fn default_stream_subjects() -> Vec<String> {
    vec!["x.activity.>".into()]
}
fn default_max_age() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_duplicate_window() -> Duration {
    Duration::from_secs(120)
}

impl Default for StreamSetup {
    fn default() -> Self {
        StreamSetup {
            name: default_stream_name(),
            subjects: default_stream_subjects(),
            storage: Storage::default(),
            retention: Retention::default(),
            max_age: default_max_age(),
            duplicate_window: default_duplicate_window(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    #[default]
    File,
    Memory,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    #[default]
    Limits,
    Interest,
    Workqueue,
}

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

/// Replaces, inside one substituted value, what a published subject cannot hold.
fn escape_value(value: &str, out: &mut String) {
    for c in value.chars() {
        if c.is_whitespace() || c.is_control() || c == '*' || c == '>' {
            out.push('_');
        } else {
            out.push(c);
        }
    }
}

/// Empty tokens (from values with leading, trailing or doubled dots) become `_`.
fn sanitize_tokens(subject: String) -> String {
    if !subject.starts_with('.') && !subject.ends_with('.') && !subject.contains("..") {
        return subject;
    }
    subject
        .split('.')
        .map(|t| if t.is_empty() { "_" } else { t })
        .collect::<Vec<_>>()
        .join(".")
}

fn check_template_literals(t: &Template) -> Result<(), String> {
    for lit in t.literals() {
        if let Some(c) = lit
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || *c == '*' || *c == '>')
        {
            return Err(format!(
                "subject template {:?}: {c:?} is not allowed in a published subject",
                t.as_str()
            ));
        }
    }
    if t.is_empty() {
        return Err("subject template is empty".into());
    }
    // Render with placeholder values to find empty tokens (`a..{type}`, trailing dot).
    let probe = t.render_lookup(|_| Some("v"));
    check_publish_subject(&probe).map_err(|e| format!("subject template {:?}: {e}", t.as_str()))
}

fn check_publish_subject(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("empty subject".into());
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
    {
        return Err(format!(
            "{s:?}: whitespace, '*' and '>' are not allowed in a published subject"
        ));
    }
    if s.split('.').any(str::is_empty) {
        return Err(format!("{s:?} has an empty token"));
    }
    Ok(())
}

fn headers_len(h: &HeaderMap) -> usize {
    // "NATS/1.0\r\n" + "name: value\r\n"… + "\r\n"
    let mut n = 12;
    for (k, vs) in h.iter() {
        for v in vs {
            n += AsRef::<str>::as_ref(k).len() + v.as_str().len() + 4;
        }
    }
    n
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
