//! `[[sinks]]` with `type = "nats"`: the typed section (secrets, auth, TLS, the stream to
//! set up) and its one check, `validate()`.

use super::*;

/// `[sinks.<name>]` with `type = "nats"`. `Debug` redacts secrets (also in `url`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSinkConfig {
    /// Server URL(s), comma-separated: `nats://host:4222,nats://other:4222` (`tls://` for
    /// TLS).
    pub url: String,
    /// Subject template. Default `x.activity.{subject}.{type}`.
    pub subject: String,
    /// Subject of dead letters. Default `x.activity.deadletter`.
    pub deadletter_subject: String,
    /// `structured` (default) or `binary`.
    pub wire_mode: WireMode,
    /// How long to wait for a JetStream ack. Default 10s.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// How long the initial connection (TCP, TLS and NATS handshake, all servers) may
    /// take. Default 10s.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Credentials (at most one method).
    pub auth: NatsAuth,
    /// TLS settings.
    pub tls: NatsTls,
    /// When set, the stream is created at connect if it does not exist. An existing one is
    /// checked and left as it is (see [`StreamSetup::update_existing`]).
    pub stream: Option<StreamSetup>,
    /// Most unacknowledged publishes at a time. Default 256.
    pub max_in_flight: usize,
}

/// Every default of `NatsSinkConfig` is here (a required setting is empty: `validate()` says so).
impl Default for NatsSinkConfig {
    fn default() -> Self {
        NatsSinkConfig {
            url: String::new(),
            subject: "x.activity.{subject}.{type}".into(),
            deadletter_subject: "x.activity.deadletter".into(),
            wire_mode: Default::default(),
            ack_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            auth: Default::default(),
            tls: Default::default(),
            stream: Default::default(),
            max_in_flight: 256,
        }
    }
}

impl NatsSinkConfig {
    /// A configuration with every default and the given server URL.
    pub fn new(url: impl Into<String>) -> NatsSinkConfig {
        NatsSinkConfig {
            url: url.into(),
            ..NatsSinkConfig::default()
        }
    }
}

impl NatsSinkConfig {
    /// Checks the configuration without connecting: templates, subjects, URLs, auth and
    /// TLS combinations (what [`NatsSink::connect`] checks before it connects).
    pub fn validate(&self, name: &str) -> Result<(), NatsSinkError> {
        self.routing(name).map(|_| ())
    }

    /// The checked configuration's [`Routing`] (templates parsed) and server addresses:
    /// `validate()` and [`NatsSink::connect`] both go through here.
    pub(crate) fn routing(
        &self,
        name: &str,
    ) -> Result<(Routing, Vec<async_nats::ServerAddr>), NatsSinkError> {
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
        // A constant subject, but written in template syntax: a stray brace is a mistake.
        Template::parse(&self.deadletter_subject)
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
            return Err(config_err(
                "url is required (nats://host:4222[,nats://other:4222])".into(),
            ));
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
        let routing = Routing {
            subject,
            deadletter_subject: self.deadletter_subject.clone(),
            wire_mode: self.wire_mode,
        };
        Ok((routing, servers))
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

/// The JetStream stream the sink creates at connect when it does not exist.
///
/// A stream that exists belongs to whoever made it (a platform team's limits, subjects,
/// replicas): it is checked, not changed. Its subjects must capture every subject the sink
/// publishes to (else the sink does not connect, and says why); every setting here that
/// differs from it is logged as a warning and left as it is, unless `update_existing`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamSetup {
    /// Default `X_ACTIVITY`.
    pub name: String,
    /// Default `["x.activity.>"]` (captures the default subjects and dead letters).
    pub subjects: Vec<String>,
    /// `file` (default) or `memory`.
    pub storage: Storage,
    /// `limits` (default), `interest` or `workqueue`.
    pub retention: Retention,
    /// Default 7 days.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
    /// Window in which a repeated `Nats-Msg-Id` is dropped. Default 2 minutes. Make it
    /// longer than the time a record may spend being retried.
    #[serde(with = "humantime_serde")]
    pub duplicate_window: Duration,
    /// Overwrite an existing stream's subjects, storage, retention, max age and duplicate
    /// window with these (every other setting of it is reset to the server's default).
    /// Default false: an existing stream is left as it is.
    pub update_existing: bool,
}

/// Every default of `StreamSetup` is here.
impl Default for StreamSetup {
    fn default() -> Self {
        StreamSetup {
            name: "X_ACTIVITY".into(),
            subjects: vec!["x.activity.>".into()],
            storage: Default::default(),
            retention: Default::default(),
            max_age: Duration::from_secs(7 * 24 * 3600),
            duplicate_window: Duration::from_secs(120),
            update_existing: false,
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
