//! `[webhook]`: the listener, its limits, TLS and the apps.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// Webhook listener configuration.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    pub listen: SocketAddr,
    /// Largest accepted body, bytes.
    pub body_limit: usize,
    /// `Retry-After` sent with a 503 when the pipeline gives no better figure.
    pub retry_after_secs: u64,
    /// Longest time to receive a POST body (slow or stalled senders get 408; X itself
    /// gives up after ~3 s).
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// How long [`WebhookServer::run`] lets in-flight requests finish after shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Time a client has to send a request's line and headers, counted from the moment
    /// the connection is opened and again from the end of each response while a
    /// keep-alive connection waits for the next request (hyper's `header_read_timeout`),
    /// so it bounds slow, half-sent and idle connections alike. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Largest request head (request line and headers) and read buffer per connection,
    /// bytes (hyper's `max_buf_size`; at least 8192). Default 16 KiB.
    pub max_header_bytes: usize,
    /// Connections open at once; one more is closed as soon as it is accepted. Default 4096.
    pub max_connections: usize,
    /// Authentic POSTs being handed to the pipeline at once per app; one more gets 503
    /// with `Retry-After`. Counted only once the signature is checked, so that clients
    /// without the secret cannot use it to turn X away. Default 256.
    pub max_requests_per_app: usize,
    /// Body bytes, over all connections, that may be held while their signature is not yet
    /// checked (a request reserves its `Content-Length`, or `body_limit` when it has none).
    /// A POST that does not fit gets 503 with `Retry-After` before its body is read.
    /// Default 64 MiB.
    pub preauth_body_budget: usize,
    /// The part of `preauth_body_budget` that only bodies of at most `small_body_bytes`
    /// may use. X's deliveries are a few KiB: however many large unauthenticated uploads
    /// are in flight, this much stays for them. Default 16 MiB.
    pub small_body_reserve: usize,
    /// Bodies that declare at most this many bytes are small (see `small_body_reserve`).
    /// Default 64 KiB.
    pub small_body_bytes: usize,
    /// How many bytes of a body over `body_limit` are read and thrown away before the 413
    /// is sent, so that a client that sends its whole body before reading (most do) gets
    /// the 413 instead of a reset connection. Bodies declared larger are not drained.
    /// Default 8 MiB.
    pub oversize_drain_bytes: usize,
    /// Time a client has to finish the TLS handshake. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub tls_handshake_timeout: Duration,
    pub tls: Option<TlsConfig>,
    pub apps: Vec<AppConfig>,
}

/// Every default of `WebhookConfig` is here (a required setting is empty: `validate()` says so).
impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            body_limit: 1 << 20,
            retry_after_secs: 5,
            body_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(5),
            max_header_bytes: 16 << 10,
            max_connections: 4096,
            max_requests_per_app: 256,
            preauth_body_budget: 64 << 20,
            small_body_reserve: 16 << 20,
            small_body_bytes: 64 << 10,
            oversize_drain_bytes: 8 << 20,
            tls_handshake_timeout: Duration::from_secs(5),
            tls: Default::default(),
            apps: Vec::new(),
        }
    }
}

impl WebhookConfig {
    /// A configuration with defaults for everything but the apps.
    pub fn new(apps: Vec<AppConfig>) -> Self {
        WebhookConfig {
            apps,
            ..WebhookConfig::default()
        }
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("listen", &self.listen)
            .field("body_limit", &self.body_limit)
            .field("retry_after_secs", &self.retry_after_secs)
            .field("body_timeout", &self.body_timeout)
            .field("shutdown_grace", &self.shutdown_grace)
            .field("header_read_timeout", &self.header_read_timeout)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("max_connections", &self.max_connections)
            .field("max_requests_per_app", &self.max_requests_per_app)
            .field("preauth_body_budget", &self.preauth_body_budget)
            .field("small_body_reserve", &self.small_body_reserve)
            .field("small_body_bytes", &self.small_body_bytes)
            .field("oversize_drain_bytes", &self.oversize_drain_bytes)
            .field("tls_handshake_timeout", &self.tls_handshake_timeout)
            .field("tls", &self.tls)
            .field("apps", &self.apps)
            .finish()
    }
}

/// PEM files for HTTPS.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM). Was `cert_path`, still accepted by the relay's loader
    /// with a warning.
    pub cert: std::path::PathBuf,
    /// The private key (PEM). Was `key_path`.
    pub key: std::path::PathBuf,
}

/// One X app whose webhook is served at `/webhooks/<name>`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub name: String,
    /// The first is current (answers CRC); every one is accepted for signatures (rotation).
    pub consumer_secrets: Vec<relay_secret::Secret>,
    /// CloudEvents `source`; default `/x/account-activity/webhook/<name>`.
    #[serde(default)]
    pub source: Option<String>,
    /// The input formats taken from this app: `["aaa", "xaa"]` (default) during X's
    /// cutover, `["xaa"]` after it. Deliveries of another format are kept as dead letters.
    #[serde(default)]
    pub formats: relay_envelope::Formats,
}

impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("name", &self.name)
            .field(
                "consumer_secrets",
                &format_args!("<{} secrets redacted>", self.consumer_secrets.len()),
            )
            .field("source", &self.source)
            .field("formats", &self.formats)
            .finish()
    }
}
