//! `[[sinks]]` with `type = "rabbitmq"`: the typed section and its one check, `validate()`.

use super::*;

/// How binary mode names its attribute headers (see [`RabbitMqSinkConfig::header_style`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmqpHeaders {
    #[default]
    Ce,
    Amqp1,
}

/// `[sinks.<name>]` with `type = "rabbitmq"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitMqSinkConfig {
    /// `amqp://user:password@host:5672/vhost` or `amqps://…` (`%2f` is the default vhost).
    /// The password is redacted by `Debug`.
    pub url: String,
    /// Topic exchange. Default `x.activity`.
    #[serde(default = "default_exchange")]
    pub exchange: String,
    /// Declare the exchange (durable, topic) at connect. Default true.
    #[serde(default = "default_true")]
    pub declare_exchange: bool,
    /// Routing key template. Default `{subject}.{type}`.
    #[serde(default = "default_routing_key")]
    pub routing_key: String,
    /// Routing key of dead letters. Default `x.activity.deadletter`.
    #[serde(default = "default_deadletter_routing_key")]
    pub deadletter_routing_key: String,
    /// `structured` (default) or `binary`.
    #[serde(default)]
    pub wire_mode: WireMode,
    /// Binary mode's attribute headers: `ce` (default: `ce-<attr>`, as the CloudEvents
    /// SDKs' RabbitMQ binding and Knative's eventing-rabbitmq read them) or `amqp1`
    /// (`cloudEvents_<attr>`, the AMQP 1.0 binding's names, for bridges that want them).
    #[serde(default)]
    pub header_style: AmqpHeaders,
    /// Publish with the mandatory flag: a message no queue takes is returned and counts as
    /// failed. Default true.
    #[serde(default = "default_true")]
    pub mandatory: bool,
    /// How long to wait for a publisher confirm. Default 10s.
    #[serde(default = "default_confirm_timeout", with = "humantime_serde")]
    pub confirm_timeout: Duration,
    /// How long a connection attempt may take. Default 10s.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Wait after the first failed reconnection attempt; doubles per failure. Default 500ms.
    #[serde(default = "default_reconnect_backoff", with = "humantime_serde")]
    pub reconnect_backoff: Duration,
    /// Longest wait between reconnection attempts. Default 30s.
    #[serde(default = "default_reconnect_backoff_max", with = "humantime_serde")]
    pub reconnect_backoff_max: Duration,
    /// Most unconfirmed publishes at a time. Default 256.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
}

fn default_exchange() -> String {
    "x.activity".into()
}
fn default_true() -> bool {
    true
}
fn default_routing_key() -> String {
    "{subject}.{type}".into()
}
fn default_deadletter_routing_key() -> String {
    "x.activity.deadletter".into()
}
fn default_confirm_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_reconnect_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_reconnect_backoff_max() -> Duration {
    Duration::from_secs(30)
}
fn default_max_in_flight() -> usize {
    256
}

impl RabbitMqSinkConfig {
    /// A configuration with every default and the given AMQP URI.
    pub fn new(url: impl Into<String>) -> RabbitMqSinkConfig {
        RabbitMqSinkConfig {
            url: url.into(),
            exchange: default_exchange(),
            declare_exchange: true,
            routing_key: default_routing_key(),
            deadletter_routing_key: default_deadletter_routing_key(),
            wire_mode: WireMode::default(),
            header_style: AmqpHeaders::default(),
            mandatory: true,
            confirm_timeout: default_confirm_timeout(),
            connect_timeout: default_connect_timeout(),
            reconnect_backoff: default_reconnect_backoff(),
            reconnect_backoff_max: default_reconnect_backoff_max(),
            max_in_flight: default_max_in_flight(),
        }
    }
}

impl RabbitMqSinkConfig {
    /// Checks the configuration without connecting (what [`RabbitMqSink::connect`] checks
    /// before it connects).
    pub fn validate(&self, name: &str) -> Result<(), RabbitMqSinkError> {
        self.prepare(name).map(|_| ())
    }

    pub(crate) fn prepare(&self, name: &str) -> Result<Template, RabbitMqSinkError> {
        let config_err = |detail: String| RabbitMqSinkError::Config {
            sink: name.to_owned(),
            detail,
        };
        let routing_key =
            Template::parse(&self.routing_key).map_err(|source| RabbitMqSinkError::Template {
                sink: name.to_owned(),
                source,
            })?;
        if routing_key.is_empty() {
            return Err(config_err("routing_key is empty".into()));
        }
        if self.deadletter_routing_key.len() > 255 {
            return Err(config_err(
                "deadletter_routing_key is longer than 255 bytes".into(),
            ));
        }
        if self.exchange.len() > 255 {
            return Err(config_err("exchange is longer than 255 bytes".into()));
        }
        if self.max_in_flight == 0 {
            return Err(config_err("max_in_flight must be at least 1".into()));
        }
        if !(self.url.starts_with("amqp://") || self.url.starts_with("amqps://")) {
            return Err(config_err(format!(
                "url {} is not an amqp:// or amqps:// URI",
                redact_url(&self.url)
            )));
        }
        if self.url.parse::<lapin::uri::AMQPUri>().is_err() {
            return Err(config_err(format!(
                "url {} is not a valid AMQP URI",
                redact_url(&self.url)
            )));
        }
        Ok(routing_key)
    }
}

impl fmt::Debug for RabbitMqSinkConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitMqSinkConfig")
            .field("url", &redact_url(&self.url))
            .field("exchange", &self.exchange)
            .field("declare_exchange", &self.declare_exchange)
            .field("routing_key", &self.routing_key)
            .field("deadletter_routing_key", &self.deadletter_routing_key)
            .field("wire_mode", &self.wire_mode)
            .field("header_style", &self.header_style)
            .field("mandatory", &self.mandatory)
            .field("confirm_timeout", &self.confirm_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_backoff", &self.reconnect_backoff)
            .field("reconnect_backoff_max", &self.reconnect_backoff_max)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}
