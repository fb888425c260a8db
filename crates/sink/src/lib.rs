//! `relay-sink`: what every broker sink shares.
//!
//! * [`Sink`]: async batch publish with a confirmation per record.
//! * [`Template`]: routing templates such as `x.activity.{type}` (`{type}` `{subject}`
//!   `{actorid}` `{targetid}` `{objectid}` `{ingress}` `{source}`; a missing attribute
//!   renders as `_`).
//! * [`encode`] with [`WireMode`] and [`HeaderStyle`]: the CloudEvents structured and
//!   binary wire modes, headers named per the Kafka (`ce_`), NATS (`ce-`) and AMQP
//!   (`cloudEvents_`) bindings; dead letters as their JSON.
//! * [`file::FileSink`]: the embedded default sink (NDJSON files, or stdout).

use bytes::Bytes;
use relay_envelope::{DeadLetter, Envelope};

pub mod file;
mod template;
mod wire;

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

/// What a spooled record holds.
#[derive(Clone, Debug)]
pub enum Payload {
    Event(Box<Envelope>),
    DeadLetter(Box<DeadLetter>),
}

/// Why a record was not published.
#[derive(Clone, Debug, thiserror::Error)]
pub enum PublishError {
    /// Worth retrying (broker down, timeout, nack, closed channel, …).
    #[error("{reason}: {detail}")]
    Retryable {
        reason: &'static str,
        detail: String,
    },
    /// The broker will never take this record (too large, invalid destination, …): the
    /// dispatcher dead-letters it.
    #[error("{reason} (permanent): {detail}")]
    Permanent {
        reason: &'static str,
        detail: String,
    },
    /// The broker is up and refuses this record, but an operator could change that
    /// (nothing routes it: no queue bound, no such topic): the dispatcher retries it a
    /// bounded number of times (`[dispatch] max_refusals`), then dead-letters it and moves
    /// on, so that one record cannot stall everything behind it.
    #[error("{reason} (refused): {detail}")]
    Refused {
        reason: &'static str,
        detail: String,
    },
}

impl PublishError {
    /// Short label for the `reason` metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            PublishError::Retryable { reason, .. }
            | PublishError::Permanent { reason, .. }
            | PublishError::Refused { reason, .. } => reason,
        }
    }
    pub fn is_permanent(&self) -> bool {
        matches!(self, PublishError::Permanent { .. })
    }
    pub fn is_refusal(&self) -> bool {
        matches!(self, PublishError::Refused { .. })
    }
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
