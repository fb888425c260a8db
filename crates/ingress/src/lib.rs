//! `relay-ingress`: how deliveries from X enter the relay. (Contract; built under issue 4.)
//!
//! Both ingresses hand the raw body of each delivery to a [`Pipeline`] (implemented by the
//! `activity-relay` crate: normalize → dedup → spool) and answer X only after it returns.

use std::time::Duration;

use bytes::Bytes;
use relay_envelope::Context;

/// What the pipeline did with one delivery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AcceptReport {
    /// Envelopes newly spooled.
    pub spooled: usize,
    /// Envelopes dropped as duplicates of ones already accepted.
    pub duplicates: usize,
    /// Dead-letter records spooled (authentic but unparseable bodies).
    pub dead_letters: usize,
    /// X Activity API error objects seen (counted and logged, nothing spooled).
    pub xaa_errors: usize,
}

/// Why a delivery was not accepted; X should retry it.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The spool is full: answer 503 with `Retry-After`.
    #[error("spool is full")]
    Full { retry_after: Duration },
    /// The relay is shutting down or its disk failed: answer 503.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// normalize → dedup → durable append. Returns only once accepted events are durable.
#[async_trait::async_trait]
pub trait Pipeline: Send + Sync + 'static {
    async fn accept(&self, body: Bytes, ctx: Context) -> Result<AcceptReport, AcceptError>;
}

pub mod backoff;
mod metrics;
pub mod ndjson;
pub mod stream;
pub mod webhook;

/// Why an ingress could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    /// The configuration is invalid (checked before anything binds or connects).
    #[error("invalid ingress configuration: {0}")]
    Config(String),
    /// Binding or serving the webhook listener failed.
    #[error("webhook listener on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// Loading the TLS certificate or key failed.
    #[error("TLS setup ({path}): {reason}")]
    Tls { path: String, reason: String },
    /// Serving failed after start.
    #[error("webhook server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// A metric could not be registered (e.g. already registered in this registry).
    #[error("metrics registration: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The HTTP client could not be built.
    #[error("stream client setup: {0}")]
    Client(String),
}
