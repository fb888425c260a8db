//! The admin listener: `/metrics`, `/healthz`, `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::{Encoder, Registry, TextEncoder};
use relay_sink::Sink;
use relay_spool::Spool;
use tokio_util::sync::CancellationToken;

use crate::dedup::Dedup;
use crate::metrics::{now_ms, SpoolMetrics};
use crate::pipeline::SpoolHealth;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen on admin address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("admin server failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// What the admin endpoints look at.
#[derive(Clone)]
pub struct AdminState {
    pub registry: Registry,
    pub spool: Spool,
    pub spool_metrics: SpoolMetrics,
    pub health: Arc<SpoolHealth>,
    pub sinks: Vec<Arc<dyn Sink>>,
    /// The dedup window, for its gauges (none in tests that do not need it).
    pub dedup: Option<Arc<Dedup>>,
    /// Whether `/readyz` requires every sink to be ready (`[admin] ready_requires_sinks`).
    pub ready_requires_sinks: bool,
}

/// The admin router (exposed for tests).
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
}

/// A bound admin listener.
pub struct AdminServer {
    listener: tokio::net::TcpListener,
    router: Router,
}

impl AdminServer {
    pub async fn bind(addr: SocketAddr, state: AdminState) -> Result<AdminServer, AdminError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        Ok(AdminServer {
            listener,
            router: router(state),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AdminError> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(AdminError::Serve)
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    state.spool_metrics.refresh(&state.spool.stats(), now_ms());
    let families = state.registry.gather();
    let mut buf = Vec::new();
    match TextEncoder::new().encode(&families, &mut buf) {
        Ok(()) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], buf).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {e}\n"),
        )
            .into_response(),
    }
}

/// Alive unless the spool failed for good (an fsync failed: the relay is about to exit so
/// that its restart recovers from the disk, and must not be sent traffic meanwhile).
async fn healthz(State(state): State<AdminState>) -> Response {
    match state.spool.failure() {
        None => "ok\n".into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("spool failed: {reason}\n"),
        )
            .into_response(),
    }
}

/// Ready when the spool takes appends and every sink is ready.
async fn readyz(State(state): State<AdminState>) -> Response {
    let mut reasons: Vec<String> = Vec::new();
    if let Some(r) = state.spool.failure() {
        reasons.push(format!("spool failed: {r}"));
    }
    if let Err(r) = state.health.check(&state.spool.stats()) {
        reasons.push(r);
    }
    let sinks: &[Arc<dyn Sink>] = if state.ready_requires_sinks {
        &state.sinks
    } else {
        &[]
    };
    let checks = sinks.iter().map(|sink| async move {
        let ready = tokio::time::timeout(Duration::from_secs(2), sink.ready())
            .await
            .unwrap_or(false);
        (sink.name().to_string(), ready)
    });
    for (name, ready) in futures::future::join_all(checks).await {
        if !ready {
            reasons.push(format!("sink {name} not ready"));
        }
    }
    let (status, body) = if reasons.is_empty() {
        (StatusCode::OK, serde_json::json!({"ready": true}))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"ready": false, "reasons": reasons}),
        )
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
