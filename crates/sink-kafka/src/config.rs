//! `[[sinks]]` with `type = "kafka"`: the typed section and its one check, `validate()`.

use super::*;
use encode::{check_topic_name, is_topic_char};

/// `[sinks.<name>]` with `type = "kafka"`.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSinkConfig {
    /// `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// Topic template. Default `x.activity.{type}`.
    pub topic: String,
    /// Message key template; empty = no key. Default `{subject}`.
    pub key: String,
    /// Where dead letters go. Default `x.activity.deadletter`.
    pub deadletter_topic: String,
    /// `structured` (default) or `binary`.
    pub wire_mode: WireMode,
    /// `compression.type`: none, gzip, snappy, lz4 (default), zstd.
    pub compression: String,
    /// `message.timeout.ms`: how long librdkafka keeps trying a record before reporting it
    /// failed (retryable). Default 30s.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// `linger.ms`. Default 5ms.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
    /// `batch.size` in bytes. Default 1000000 (librdkafka's). Was `batch_size` (which
    /// counts records in `[dispatch]`), still accepted with a warning.
    pub batch_bytes: u32,
    /// `batch.num.messages`. Default 10000 (librdkafka's).
    pub batch_num_messages: u32,
    /// `client.id`. Default `activity-relay`.
    pub client_id: String,
    /// `security.protocol`: plaintext, ssl, sasl_plaintext, sasl_ssl.
    pub security_protocol: Option<String>,
    /// `sasl.mechanism`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, …
    pub sasl_mechanism: Option<String>,
    pub sasl_username: Option<String>,
    /// Redacted in `Debug`.
    pub sasl_password: Option<Secret>,
    pub ssl_ca_location: Option<String>,
    /// Create missing topics (AdminClient) instead of failing. Default false.
    pub create_topics: bool,
    /// With `create_topics`, also create topics that only records of a type outside the
    /// taxonomy are routed to (an XAA `event_type` X added). Default false: such a record
    /// whose topic does not exist is dead-lettered (permanent `unknown_type_topic`), so
    /// input can never mint topics.
    pub create_topics_for_unknown_types: bool,
    /// Partitions of created topics. Default 3.
    pub partitions: i32,
    /// Replication factor of created topics. Default 1.
    pub replication_factor: i32,
    /// librdkafka properties, applied last (they override everything above).
    pub properties: BTreeMap<String, String>,
}

/// Every default of `KafkaSinkConfig` is here (a required setting is empty: `validate()` says so).
impl Default for KafkaSinkConfig {
    fn default() -> Self {
        KafkaSinkConfig {
            bootstrap_servers: String::new(),
            topic: "x.activity.{type}".into(),
            key: "{subject}".into(),
            deadletter_topic: "x.activity.deadletter".into(),
            wire_mode: Default::default(),
            compression: "lz4".into(),
            message_timeout: Duration::from_secs(30),
            linger: Duration::from_millis(5),
            batch_bytes: 1_000_000,
            batch_num_messages: 10_000,
            client_id: "activity-relay".into(),
            security_protocol: Default::default(),
            sasl_mechanism: Default::default(),
            sasl_username: Default::default(),
            sasl_password: Default::default(),
            ssl_ca_location: Default::default(),
            create_topics: Default::default(),
            create_topics_for_unknown_types: Default::default(),
            partitions: 3,
            replication_factor: 1,
            properties: Default::default(),
        }
    }
}

/// Whether a librdkafka property holds a secret (its value is redacted in `Debug`).
fn is_secret_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password") || k.contains("secret") || k.ends_with(".pem") || k.contains("key")
}

impl std::fmt::Debug for KafkaSinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let v = if is_secret_property(k) {
                    REDACTED
                } else {
                    v.as_str()
                };
                (k.as_str(), v)
            })
            .collect();
        f.debug_struct("KafkaSinkConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topic", &self.topic)
            .field("key", &self.key)
            .field("deadletter_topic", &self.deadletter_topic)
            .field("wire_mode", &self.wire_mode)
            .field("compression", &self.compression)
            .field("message_timeout", &self.message_timeout)
            .field("linger", &self.linger)
            .field("batch_bytes", &self.batch_bytes)
            .field("batch_num_messages", &self.batch_num_messages)
            .field("client_id", &self.client_id)
            .field("security_protocol", &self.security_protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &self.sasl_password)
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("create_topics", &self.create_topics)
            .field(
                "create_topics_for_unknown_types",
                &self.create_topics_for_unknown_types,
            )
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("properties", &properties)
            .finish()
    }
}

impl KafkaSinkConfig {
    /// A config with every default, for `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaSinkConfig {
            bootstrap_servers: bootstrap_servers.into(),
            ..KafkaSinkConfig::default()
        }
    }

    /// Checks everything that can be checked without a broker (templates, topic names,
    /// numbers). [`KafkaSink::connect`] calls it first.
    pub fn validate(&self, sink: &str) -> Result<(), KafkaSinkError> {
        self.routing(sink).map(|_| ())
    }

    pub(crate) fn routing(&self, sink: &str) -> Result<Routing, KafkaSinkError> {
        let bad = |detail: String| KafkaSinkError::Config {
            sink: sink.to_owned(),
            detail,
        };
        if self.bootstrap_servers.trim().is_empty() {
            return Err(bad(
                "bootstrap_servers is required (host:port[,host:port…])".into(),
            ));
        }
        let topic = Template::parse(&self.topic).map_err(|e| bad(format!("topic: {e}")))?;
        if topic.is_empty() {
            return Err(bad("topic is empty".into()));
        }
        if let Some(lit) = topic.literals().find(|l| !l.chars().all(is_topic_char)) {
            return Err(bad(format!(
                "topic template {:?}: literal text {lit:?} has characters Kafka does not allow in topic names (only A-Z a-z 0-9 . _ -)",
                self.topic
            )));
        }
        if topic.is_constant() {
            check_topic_name(topic.as_str()).map_err(|d| bad(format!("topic: {d}")))?;
        }
        let key = Template::parse(&self.key).map_err(|e| bad(format!("key: {e}")))?;
        check_topic_name(&self.deadletter_topic)
            .map_err(|d| bad(format!("deadletter_topic: {d}")))?;
        if self.partitions < 1 && self.partitions != -1 {
            return Err(bad(format!(
                "partitions = {}: at least 1 (or -1 for the broker's default)",
                self.partitions
            )));
        }
        if self.replication_factor < 1 && self.replication_factor != -1 {
            return Err(bad(format!(
                "replication_factor = {}: at least 1 (or -1 for the broker's default)",
                self.replication_factor
            )));
        }
        let timeout_ms = self.message_timeout.as_millis();
        if timeout_ms == 0 || timeout_ms > i32::MAX as u128 {
            return Err(bad(format!(
                "message_timeout {:?} out of range (1ms..24 days)",
                self.message_timeout
            )));
        }
        if self.linger.as_millis() > 900_000 {
            return Err(bad(format!(
                "linger {:?} out of range (at most 15m)",
                self.linger
            )));
        }
        Ok(Routing {
            topic,
            key: if key.is_empty() { None } else { Some(key) },
            deadletter_topic: self.deadletter_topic.clone(),
            wire_mode: self.wire_mode,
        })
    }

    /// The librdkafka configuration: safe defaults, then the fields above, then
    /// `properties`.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("max.in.flight.requests.per.connection", "5")
            .set(
                "message.timeout.ms",
                self.message_timeout.as_millis().to_string(),
            )
            .set("linger.ms", self.linger.as_millis().to_string())
            .set("compression.type", &self.compression)
            .set("batch.size", self.batch_bytes.to_string())
            .set("batch.num.messages", self.batch_num_messages.to_string())
            .set("allow.auto.create.topics", "false");
        let optional = [
            ("security.protocol", &self.security_protocol),
            ("sasl.mechanism", &self.sasl_mechanism),
            ("sasl.username", &self.sasl_username),
            ("ssl.ca.location", &self.ssl_ca_location),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                c.set(k, v);
            }
        }
        if let Some(password) = &self.sasl_password {
            c.set("sasl.password", password.expose());
        }
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }
}
