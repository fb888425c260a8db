//! `relay-sink`: what every broker sink shares.
//!
//! * [`Sink`]: async batch publish with a confirmation per record.
//! * [`Template`]: routing templates such as `x.activity.{type}` (`{type}` `{subject}`
//!   `{actorid}` `{targetid}` `{objectid}` `{ingress}` `{source}`; a missing attribute
//!   renders as `_`).
//! * [`encode`] with [`WireMode`] and [`HeaderStyle`]: the CloudEvents structured and
//!   binary wire modes, headers named per the Kafka (`ce_`), NATS (`ce-`) and AMQP
//!   (`cloudEvents_`) bindings; dead letters as their JSON.
//! * [`PublishError`] with a [`Reason`] from one closed list (the metrics' `reason` label).
//! * [`driver`]: what every broker sink's `publish` shares: pipelined confirmations in
//!   batch order, the reconnect backoff, the lazily connecting wrapper.
//! * [`Secret`] and [`redact_url`]: secrets in configuration, hidden one way everywhere.
//! * [`file::FileSink`]: the embedded default sink (NDJSON files, or stdout).
//! * [`registry`]: [`registry::SinkType`], which each sink type implements once so that
//!   the relay can read, check, describe and connect it without knowing its name.
//!
//! A broker sink crate has three files: `config.rs` (the typed `[[sinks]]` section and its
//! one check, `validate()`), `encode.rs` (pure: a message to the broker's destination,
//! headers and body) and `service.rs` (connect, send, await the confirmations through
//! [`driver::Confirmations`]); its `lib.rs` holds the documentation, the errors and its
//! [`registry::SinkType`], the one place the relay learns of it.

use std::sync::Arc;

use bytes::Bytes;
use relay_envelope::{DeadLetter, Envelope};

pub mod driver;
mod error;
pub mod file;
pub mod registry;
mod template;
mod wire;

pub use error::{PublishError, Reason};
pub use relay_secret::{redact_url, Secret, REDACTED};

pub use template::{Attr, Template, TemplateError, MISSING};
pub use wire::{
    encode, Encoded, HeaderStyle, WireMode, CONTENT_TYPE_CLOUDEVENTS_JSON, CONTENT_TYPE_JSON,
    DEADLETTER_REASON_ATTR,
};

/// One spooled record handed to a sink.
#[derive(Clone, Debug)]
pub struct Message {
    /// Spool offset (for logs; sinks need not use it).
    pub offset: u64,
    /// When the relay accepted the record, ms since the Unix epoch.
    pub accepted_at_ms: u64,
    pub payload: Payload,
    /// The record's JSON as spooled: the envelope (or dead letter) exactly as it will be
    /// published in structured mode. Sinks send these bytes rather than re-serializing.
    pub json: Bytes,
}

impl Message {
    /// The message of an envelope, with its JSON as the spool holds it.
    pub fn event(offset: u64, accepted_at_ms: u64, env: Envelope) -> Message {
        Message {
            offset,
            accepted_at_ms,
            json: Bytes::from(env.to_json()),
            payload: Payload::Event(Arc::new(env)),
        }
    }

    /// The message of a dead letter, with its JSON as the spool holds it.
    pub fn dead_letter(offset: u64, accepted_at_ms: u64, dl: DeadLetter) -> Message {
        Message {
            offset,
            accepted_at_ms,
            json: Bytes::from(dl.to_json()),
            payload: Payload::DeadLetter(Arc::new(dl)),
        }
    }

    /// The record's id: the envelope `id` (the deduplication key) or the dead letter's
    /// `deadletter:<sha256>` id. Sinks set the broker's duplicate-detection id from it.
    pub fn id(&self) -> &str {
        match &self.payload {
            Payload::Event(env) => &env.id,
            Payload::DeadLetter(dl) => &dl.id,
        }
    }

    /// Whether this record is a dead letter (published to the dead-letter destination).
    pub fn is_dead_letter(&self) -> bool {
        matches!(self.payload, Payload::DeadLetter(_))
    }
}

/// What a spooled record holds (shared: one decoded record serves every dispatcher).
#[derive(Clone, Debug)]
pub enum Payload {
    Event(Arc<Envelope>),
    DeadLetter(Arc<DeadLetter>),
}

/// A destination for envelopes.
#[async_trait::async_trait]
pub trait Sink: Send + Sync + 'static {
    /// The configured name (cursor name in the spool, metric label).
    fn name(&self) -> &str;

    /// Publishes a batch; the result has one entry per message, in order. `Ok` means the
    /// broker confirmed it (delivery report, JetStream ack, publisher confirm).
    async fn publish(&self, batch: &[Message]) -> Vec<Result<(), PublishError>>;

    /// Whether the broker connection is usable (readiness).
    async fn ready(&self) -> bool {
        true
    }

    /// Flushes anything buffered and closes; called once at shutdown.
    async fn close(&self) -> Result<(), PublishError> {
        Ok(())
    }
}
