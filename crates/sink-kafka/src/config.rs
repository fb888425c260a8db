//! `[[sinks]]` with `type = "kafka"`: the typed section and its one check, `validate()`.

use super::*;
use encode::{check_topic_name, is_topic_char};

/// `[sinks.<name>]` with `type = "kafka"`.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// `host:port[,host:port…]`.
    pub bootstrap_servers: String,
    /// Topic template. Default `x.activity.{type}`.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// Message key template; empty = no key. Default `{subject}`.
    #[serde(default = "default_key")]
    pub key: String,
    /// Where dead letters go. Default `x.activity.deadletter`.
    #[serde(default = "default_deadletter_topic")]
    pub deadletter_topic: String,
    /// `structured` (default) or `binary`.
    #[serde(default)]
    pub wire_mode: WireMode,
    /// `compression.type`: none, gzip, snappy, lz4 (default), zstd.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// `message.timeout.ms`: how long librdkafka keeps trying a record before reporting it
    /// failed (retryable). Default 30s.
    #[serde(default = "default_message_timeout", with = "humantime_serde")]
    pub message_timeout: Duration,
    /// `linger.ms`. Default 5ms.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// `batch.size` in bytes. Default 1000000 (librdkafka's).
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// `batch.num.messages`. Default 10000 (librdkafka's).
    #[serde(default = "default_batch_num_messages")]
    pub batch_num_messages: u32,
    /// `client.id`. Default `activity-relay`.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// `security.protocol`: plaintext, ssl, sasl_plaintext, sasl_ssl.
    #[serde(default)]
    pub security_protocol: Option<String>,
    /// `sasl.mechanism`: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, …
    #[serde(default)]
    pub sasl_mechanism: Option<String>,
    #[serde(default)]
    pub sasl_username: Option<String>,
    /// Redacted in `Debug`.
    #[serde(default)]
    pub sasl_password: Option<Secret>,
    #[serde(default)]
    pub ssl_ca_location: Option<String>,
    /// Create missing topics (AdminClient) instead of failing. Default false.
    #[serde(default)]
    pub create_topics: bool,
    /// With `create_topics`, also create topics that only records of a type outside the
    /// taxonomy are routed to (an XAA `event_type` X added). Default false: such a record
    /// whose topic does not exist is dead-lettered (permanent `unknown_type_topic`), so
    /// input can never mint topics.
    #[serde(default)]
    pub create_topics_for_unknown_types: bool,
    /// Partitions of created topics. Default 3.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of created topics. Default 1.
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i32,
    /// librdkafka properties, applied last (they override everything above).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_topic() -> String {
    "x.activity.{type}".into()
}
fn default_key() -> String {
    "{subject}".into()
}
fn default_deadletter_topic() -> String {
    "x.activity.deadletter".into()
}
fn default_compression() -> String {
    "lz4".into()
}
fn default_message_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_linger() -> Duration {
    Duration::from_millis(5)
}
fn default_batch_size() -> u32 {
    1_000_000
}
fn default_batch_num_messages() -> u32 {
    10_000
}
fn default_client_id() -> String {
    "activity-relay".into()
}
fn default_partitions() -> i32 {
    3
}
fn default_replication_factor() -> i32 {
    1
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
            .field("batch_size", &self.batch_size)
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
            topic: default_topic(),
            key: default_key(),
            deadletter_topic: default_deadletter_topic(),
            wire_mode: WireMode::default(),
            compression: default_compression(),
            message_timeout: default_message_timeout(),
            linger: default_linger(),
            batch_size: default_batch_size(),
            batch_num_messages: default_batch_num_messages(),
            client_id: default_client_id(),
            security_protocol: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            create_topics: false,
            create_topics_for_unknown_types: false,
            partitions: default_partitions(),
            replication_factor: default_replication_factor(),
            properties: BTreeMap::new(),
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
            return Err(bad("bootstrap_servers is empty".into()));
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
            .set("batch.size", self.batch_size.to_string())
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
