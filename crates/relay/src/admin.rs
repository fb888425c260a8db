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

/// What the handlers see: the registry from the start, the rest once the relay has opened
/// its spool ([`AdminStarting::ready`]). Until then `/healthz` answers 200 (the process is
/// alive, opening a spool of several GiB, which a liveness or startup probe must not kill)
/// and `/readyz` 503 (it takes no traffic yet).
#[derive(Clone)]
struct Served {
    registry: Registry,
    state: Arc<std::sync::OnceLock<AdminState>>,
}

/// The admin router (exposed for tests).
pub fn router(state: AdminState) -> Router {
    let served = Served {
        registry: state.registry.clone(),
        state: Arc::new(std::sync::OnceLock::new()),
    };
    let _ = served.state.set(state);
    router_of(served)
}

fn router_of(served: Served) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(served)
}

/// An admin listener bound before the spool is open: [`AdminStarting::ready`] hands it
/// the rest of its state.
pub struct AdminStarting(Arc<std::sync::OnceLock<AdminState>>);

impl AdminStarting {
    /// The spool is open: the endpoints answer from `state` from now on.
    pub fn ready(&self, state: AdminState) {
        let _ = self.0.set(state);
    }
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

    /// Binds before the spool is opened: only the registry is known (see [`Served`]).
    pub async fn bind_starting(
        addr: SocketAddr,
        registry: Registry,
    ) -> Result<(AdminServer, AdminStarting), AdminError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AdminError::Bind { addr, source })?;
        let state = Arc::new(std::sync::OnceLock::new());
        let served = Served {
            registry,
            state: state.clone(),
        };
        Ok((
            AdminServer {
                listener,
                router: router_of(served),
            },
            AdminStarting(state),
        ))
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

/// What `/readyz` and `/healthz` say while the spool is being opened.
const STARTING: &str = "starting: opening the spool";

async fn metrics(State(served): State<Served>) -> Response {
    if let Some(state) = served.state.get() {
        state.spool_metrics.refresh(&state.spool.stats(), now_ms());
    }
    let families = served.registry.gather();
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
async fn healthz(State(served): State<Served>) -> Response {
    let Some(state) = served.state.get() else {
        return format!("ok ({STARTING})\n").into_response();
    };
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
async fn readyz(State(served): State<Served>) -> Response {
    let Some(state) = served.state.get() else {
        let body = serde_json::json!({"ready": false, "reasons": [STARTING]});
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    };
    let mut reasons: Vec<String> = Vec::new();
    if let Some(r) = state.spool.failure() {
        reasons.push(format!("spool failed: {r}"));
    }
    if let Err(r) = state.health.check(&state.spool.stats()) {
        reasons.push(r.to_string());
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
