//! activity-relay's Kafka sink: [`config`] (the typed `[[sinks]]` section and its
//! `validate()`), [`encode`] (envelope to topic, key, headers and body: pure) and the
//! producer here.
//!
//! [`KafkaSink`] publishes envelopes with an idempotent `acks=all` librdkafka producer:
//!
//! * topic: the `topic` template (default `x.activity.{type}`), key: the `key` template
//!   (default `{subject}`, per-user ordering inside a partition; an empty template gives
//!   no key). Dead letters go to `deadletter_topic` (default `x.activity.deadletter`), with
//!   no key.
//! * Kafka topic names allow only `[A-Za-z0-9._-]` and at most 249 characters. The
//!   template's literal text must already be valid (checked at start); in the values it
//!   inserts every other character is replaced by `_` and the name is cut to 249 characters
//!   (see [`sanitize_topic`]). The taxonomy's event types are all valid as they are.
//! * Headers: `ce_id` always; binary mode all the `ce_*` attribute headers; and a
//!   `content-type` header (`application/cloudevents+json` in structured mode,
//!   `application/json` in binary mode and for dead letters, which also carry
//!   `ce_deadletterreason`).
//! * A record is confirmed (`Ok`) only when its delivery report succeeds. Failures map to
//!   [`PublishError::Retryable`] (timeouts, broker down, queue full, unknown topic, …) or
//!   [`PublishError::Permanent`] (message too large, invalid topic, invalid record).
//! * Topics: [`KafkaSink::connect`] checks that the cluster answers and that the
//!   dead-letter topic (and the topic, when the template is constant) exists, creating them
//!   when `create_topics = true`, failing with a clear error otherwise. Templated topics are
//!   checked the first time a record is routed to them: a missing topic is created
//!   (`create_topics = true`) or its records fail with a refused `unknown_topic` error naming
//!   the topic (retried `[dispatch] max_refusals` times, then dead-lettered, so the sink
//!   does not stall; the dead letter keeps the record). The producer never
//!   asks the broker to auto-create topics (`allow.auto.create.topics=false`, which
//!   `properties` may override).
//! * A producer that librdkafka declares fatally failed (possible with idempotence, e.g.
//!   with `enable.gapless.guarantee`) is replaced by a new one after the batch that saw it,
//!   so the retries of its records go through.
//! * [`Sink::ready`] is cached: true when a metadata request or a delivery succeeded in
//!   the last 15 s (a background task asks for metadata every 5 s), false as soon as
//!   librdkafka reports all brokers down.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::metadata::Metadata;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use relay_envelope::taxonomy;
use relay_sink::driver::Confirmations;
use relay_sink::{
    encode, HeaderStyle, Message, Payload, PublishError, Reason, Secret, Sink, Template, WireMode,
    REDACTED,
};

/// Longest valid Kafka topic name.
pub const MAX_TOPIC_LEN: usize = 249;
/// A healthy sink has seen a successful metadata request or delivery within this window.
const READY_WINDOW: Duration = Duration::from_secs(15);
/// How often the background task asks for metadata.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Upper bound of a metadata request.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for a topic just created to show up in metadata.
const CREATE_PROPAGATION: Duration = Duration::from_secs(10);

mod config;
mod encode;
mod service;

pub use config::KafkaSinkConfig;
pub use encode::sanitize_topic;
use encode::Routing;
pub use service::KafkaSink;

/// `type = "kafka"`: how the relay reads, checks, describes and connects this sink.
pub struct KafkaSinkType;

impl relay_sink::registry::SinkType for KafkaSinkType {
    const TYPE: &'static str = "kafka";
    type Config = KafkaSinkConfig;
    type Error = KafkaSinkError;
    type Sink = KafkaSink;
    /// `batch_size` counted bytes here and records in `[dispatch]`.
    const RENAMED: &'static [(&'static str, &'static str)] = &[("batch_size", "batch_bytes")];

    fn check(name: &str, cfg: &KafkaSinkConfig) -> Result<String, KafkaSinkError> {
        cfg.validate(name)?;
        Ok(format!(
            "kafka: {} topic {:?}",
            cfg.bootstrap_servers, cfg.topic
        ))
    }

    fn asyncapi(cfg: &KafkaSinkConfig) -> Option<relay_sink::registry::AsyncApiServer> {
        Some(relay_sink::registry::AsyncApiServer {
            host: relay_sink::registry::first_host(&cfg.bootstrap_servers),
            protocol: "kafka",
            template: cfg.topic.clone(),
            binary: cfg.wire_mode == relay_sink::WireMode::Binary,
            channel_binding: None,
            message_binding: Some((
                "kafka",
                serde_json::json!({
                    "key": {"type": "string", "description": format!("rendered from `{}`", cfg.key)},
                    "bindingVersion": "0.5.0"
                }),
            )),
        })
    }

    async fn connect(name: &str, cfg: &KafkaSinkConfig) -> Result<KafkaSink, KafkaSinkError> {
        KafkaSink::connect(name, cfg).await
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why the Kafka sink could not start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaSinkError {
    #[error("kafka sink {sink:?}: invalid configuration: {detail}")]
    Config { sink: String, detail: String },
    #[error("kafka sink {sink:?}: cannot create the Kafka client: {source}")]
    Client {
        sink: String,
        #[source]
        source: Box<KafkaError>,
    },
    #[error("kafka sink {sink:?}: cluster at {bootstrap:?} does not answer: {source}")]
    Unreachable {
        sink: String,
        bootstrap: String,
        #[source]
        source: Box<KafkaError>,
    },
    #[error(
        "kafka sink {sink:?}: topic {topic:?} does not exist: create it, or set create_topics = true"
    )]
    MissingTopic { sink: String, topic: String },
    #[error("kafka sink {sink:?}: cannot create topic {topic:?}: {detail}")]
    CreateTopic {
        sink: String,
        topic: String,
        detail: String,
    },
}

/// Maps a librdkafka error to a publish error with a short reason label.
pub fn classify(e: &KafkaError) -> PublishError {
    use RDKafkaErrorCode as C;
    let (permanent, reason) = match e.rdkafka_error_code() {
        Some(C::MessageSizeTooLarge | C::InvalidMessageSize | C::MessageBatchTooLarge) => {
            (true, Reason::TooLarge)
        }
        Some(C::InvalidTopic) => (true, Reason::InvalidDestination),
        Some(C::InvalidRecord) => (true, Reason::InvalidRecord),
        Some(C::UnknownTopicOrPartition | C::UnknownTopic) => (false, Reason::UnknownTopic),
        Some(C::UnknownPartition) => (false, Reason::UnknownPartition),
        Some(C::MessageTimedOut) => (false, Reason::Timeout),
        Some(C::RequestTimedOut | C::OperationTimedOut | C::TimedOutQueue) => {
            (false, Reason::Timeout)
        }
        Some(C::QueueFull) => (false, Reason::QueueFull),
        Some(
            C::AllBrokersDown
            | C::BrokerTransportFailure
            | C::BrokerNotAvailable
            | C::NetworkException
            | C::Resolve,
        ) => (false, Reason::BrokerDown),
        Some(C::NotEnoughReplicas | C::NotEnoughReplicasAfterAppend) => {
            (false, Reason::NotEnoughReplicas)
        }
        Some(C::LeaderNotAvailable | C::NotLeaderForPartition) => {
            (false, Reason::LeaderUnavailable)
        }
        Some(
            C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::SaslAuthenticationFailed
            | C::Authentication,
        ) => (false, Reason::Unauthorized),
        Some(
            C::Fatal
            | C::OutOfOrderSequenceNumber
            | C::InvalidProducerEpoch
            | C::UnknownProducerId
            | C::ProducerFenced
            | C::Fenced,
        ) => (false, Reason::ProducerFatal),
        Some(C::PurgeQueue | C::PurgeInflight | C::BrokerDestroy | C::DestroyBroker) => {
            (false, Reason::ProducerClosed)
        }
        Some(C::KafkaStorageError) => (false, Reason::BrokerStorage),
        _ => (false, Reason::BrokerError),
    };
    let detail = e.to_string();
    if permanent {
        PublishError::permanent(reason, detail)
    } else {
        PublishError::retryable(reason, detail)
    }
}
