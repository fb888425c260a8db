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
#[serde(deny_unknown_fields, default)]
pub struct RabbitMqSinkConfig {
    /// `amqp://user:password@host:5672/vhost` or `amqps://…` (`%2f` is the default vhost).
    /// The password is redacted by `Debug`.
    pub url: String,
    /// Topic exchange. Default `x.activity`.
    pub exchange: String,
    /// Declare the exchange (durable, topic) at connect. Default true.
    pub declare_exchange: bool,
    /// Routing key template. Default `{subject}.{type}`.
    pub routing_key: String,
    /// Routing key of dead letters. Default `x.activity.deadletter`.
    pub deadletter_routing_key: String,
    /// `structured` (default) or `binary`.
    pub wire_mode: WireMode,
    /// Binary mode's attribute headers: `ce` (default: `ce-<attr>`, as the CloudEvents
    /// SDKs' RabbitMQ binding and Knative's eventing-rabbitmq read them) or `amqp1`
    /// (`cloudEvents_<attr>`, the AMQP 1.0 binding's names, for bridges that want them).
    pub header_style: AmqpHeaders,
    /// Publish with the mandatory flag: a message no queue takes is returned and counts as
    /// failed. Default true.
    pub mandatory: bool,
    /// How long to wait for a publisher confirm. Default 10s.
    #[serde(with = "humantime_serde")]
    pub confirm_timeout: Duration,
    /// How long a connection attempt may take. Default 10s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Wait after the first failed reconnection attempt; doubles per failure. Default 500ms.
    #[serde(with = "humantime_serde")]
    pub initial_reconnect_backoff: Duration,
    /// Longest wait between reconnection attempts. Default 30s.
    #[serde(with = "humantime_serde")]
    pub max_reconnect_backoff: Duration,
    /// Most unconfirmed publishes at a time. Default 256.
    pub max_in_flight: usize,
}

/// Every default of `RabbitMqSinkConfig` is here (a required setting is empty: `validate()` says so).
impl Default for RabbitMqSinkConfig {
    fn default() -> Self {
        RabbitMqSinkConfig {
            url: String::new(),
            exchange: "x.activity".into(),
            declare_exchange: true,
            routing_key: "{subject}.{type}".into(),
            deadletter_routing_key: "x.activity.deadletter".into(),
            wire_mode: Default::default(),
            header_style: Default::default(),
            mandatory: true,
            confirm_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            initial_reconnect_backoff: Duration::from_millis(500),
            max_reconnect_backoff: Duration::from_secs(30),
            max_in_flight: 256,
        }
    }
}

impl RabbitMqSinkConfig {
    /// A configuration with every default and the given AMQP URI.
    pub fn new(url: impl Into<String>) -> RabbitMqSinkConfig {
        RabbitMqSinkConfig {
            url: url.into(),
            ..RabbitMqSinkConfig::default()
        }
    }
}

impl RabbitMqSinkConfig {
    /// Checks the configuration without connecting (what [`RabbitMqSink::connect`] checks
    /// before it connects).
    pub fn validate(&self, name: &str) -> Result<(), RabbitMqSinkError> {
        self.routing(name).map(|_| ())
    }

    /// The checked configuration's [`Routing`] (templates parsed): `validate()` and
    /// [`RabbitMqSink::connect`] both go through here.
    pub(crate) fn routing(&self, name: &str) -> Result<Routing, RabbitMqSinkError> {
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
        // A constant key, but written in template syntax: a stray brace is a mistake.
        let deadletter = Template::parse(&self.deadletter_routing_key)
            .map_err(|e| config_err(format!("deadletter_routing_key: {e}")))?;
        if deadletter.is_empty() {
            return Err(config_err("deadletter_routing_key is empty".into()));
        }
        if self.exchange.is_empty() {
            return Err(config_err("exchange is empty".into()));
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
        if self.url.trim().is_empty() {
            return Err(config_err(
                "url is required (amqp://user:password@host:5672/vhost)".into(),
            ));
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
        Ok(Routing {
            routing_key,
            deadletter_routing_key: self.deadletter_routing_key.clone(),
            wire_mode: self.wire_mode,
            header_style: match self.header_style {
                AmqpHeaders::Ce => HeaderStyle::Amqp,
                AmqpHeaders::Amqp1 => HeaderStyle::Amqp1,
            },
        })
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
            .field("initial_reconnect_backoff", &self.initial_reconnect_backoff)
            .field("max_reconnect_backoff", &self.max_reconnect_backoff)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}
