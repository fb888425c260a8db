//! `x_emulator`: a faithful local stand-in for X's side of account activity.
//!
//! It registers webhooks with CRC checks (at registration, on `PUT`, and periodically),
//! delivers signed event bodies with X's retry policy, serves the activity stream
//! (heartbeats, backfill, connection limit, fault injection), emulates the management API
//! (webhooks, AAA and activity subscriptions with OAuth 1.0a / Bearer auth, replay jobs)
//! and generates realistic events of every type in the three formats. Everything it sends
//! is recorded and can be inspected through `/admin/…` or the [`EmulatorHandle`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), x_emulator::EmulatorError> {
//! let emu = x_emulator::Emulator::start(x_emulator::EmulatorConfig::default()).await?;
//! println!("X is at {}", emu.base_url());
//! emu.shutdown().await;
//! # Ok(()) }
//! ```

pub mod admin;
pub mod api;
mod auth;
pub mod config;
pub mod error;
pub mod events;
pub mod generator;
pub mod ids;
pub mod state;
pub mod stream;
pub mod twin;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::task::JoinHandle;

pub use config::{
    AppConfig, EmulatorConfig, GeneratorConfig, StreamConfig, StreamFaults, UserConfig,
};
pub use error::{ApiError, EmulatorError};
pub use events::{EventInfo, Format};
pub use state::{
    ActivitySubscription, AttemptOutcome, CrcCheck, DeliveryAttempt, EmitOptions, Emitted,
    ReplayJob, SentEvent, StreamConnection, Webhook,
};
pub use stream::StreamFault;

use state::Shared;

/// Entry point.
pub struct Emulator;

impl Emulator {
    /// Binds `cfg.listen`, starts serving, the periodic re-CRC and (if configured) the
    /// generator.
    pub async fn start(cfg: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        cfg.validate()?;
        let listener = tokio::net::TcpListener::bind(&cfg.listen)
            .await
            .map_err(|source| EmulatorError::Bind {
                addr: cfg.listen.clone(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| EmulatorError::Bind {
                addr: cfg.listen.clone(),
                source,
            })?;
        let gen_cfg = cfg.generator.clone();
        let shared = Arc::new(Shared::new(cfg)?);
        let app = router(Arc::clone(&shared));
        let cancel = shared.cancel.clone();
        let server = tokio::spawn(async move {
            let res = axum::serve(listener, app)
                .with_graceful_shutdown(async move { cancel.cancelled().await })
                .await;
            if let Err(e) = res {
                tracing::error!(error = %e, "server error");
            }
        });
        tokio::spawn(recrc_loop(Arc::clone(&shared)));
        if let Some(g) = gen_cfg {
            generator::start(&shared, g);
        }
        tracing::info!(%addr, "x-emulator listening");
        Ok(EmulatorHandle {
            shared,
            addr,
            server: parking_lot::Mutex::new(Some(server)),
        })
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    api::router(Arc::clone(&shared))
        .merge(stream::router(Arc::clone(&shared)))
        .merge(admin::router(Arc::clone(&shared)))
        .fallback(|| async { ApiError::new(404, "NotFound", "Sorry, that page does not exist") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                405,
                "MethodNotAllowed",
                "This method is not allowed on this endpoint",
            )
        })
}

async fn recrc_loop(shared: Arc<Shared>) {
    let secs = shared.cfg.recrc_interval_secs * shared.cfg.time_scale;
    if !(secs.is_finite() && secs > 0.0) {
        return;
    }
    let period = Duration::from_secs_f64(secs.clamp(0.01, 1e9));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shared.cancel.cancelled() => return,
        }
        shared.recrc_all("periodic").await;
    }
}

/// A running emulator.
pub struct EmulatorHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl EmulatorHandle {
    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &EmulatorConfig {
        &self.shared.cfg
    }

    /// Stops serving: open streams end, deliveries and jobs stop.
    pub async fn shutdown(&self) {
        self.shared.cancel.cancel();
        generator::stop(&self.shared);
        let server = self.server.lock().take();
        if let Some(s) = server {
            let _ = tokio::time::timeout(Duration::from_secs(5), s).await;
        }
    }

    /// Emits one event body (any of the three formats, detected), as `POST /admin/emit`.
    pub fn emit(&self, event: Value) -> Emitted {
        self.shared.emit_value(event, EmitOptions::default())
    }

    /// Emits one body recorded as having happened at `at` (for replay and backfill windows).
    pub fn emit_at(&self, event: Value, at: DateTime<Utc>) -> Emitted {
        self.shared.emit_value(
            event,
            EmitOptions {
                at: Some(at),
                ..EmitOptions::default()
            },
        )
    }

    /// Emits raw bytes as they are (they must be a JSON object).
    pub fn emit_raw(&self, raw: Bytes, opts: EmitOptions) -> Result<Emitted, EmulatorError> {
        let v: Value = serde_json::from_slice(&raw).map_err(|e| EmulatorError::InvalidEvent {
            what: "raw body".into(),
            detail: e.to_string(),
        })?;
        if !v.is_object() {
            return Err(EmulatorError::InvalidEvent {
                what: "raw body".into(),
                detail: "not a JSON object".into(),
            });
        }
        Ok(self.shared.emit_raw(raw, v, opts))
    }

    /// Emits a fixture file as it is, or every `*.json` file under a directory (sorted).
    pub fn emit_fixture(
        &self,
        path: impl AsRef<std::path::Path>,
    ) -> Result<Vec<Emitted>, EmulatorError> {
        admin::emit_fixture_path(&self.shared, path.as_ref())
    }

    /// Generates `count` events now (cycling through every kind and format when
    /// `cfg.cycle`), returns what was emitted.
    pub fn generate(&self, cfg: &GeneratorConfig, count: u64) -> Vec<Emitted> {
        generator::generate_now(&self.shared, cfg, count)
    }

    /// Starts a background generator (replacing a running one).
    pub fn start_generator(&self, cfg: GeneratorConfig) {
        generator::start(&self.shared, cfg);
    }

    /// Stops the background generator.
    pub fn stop_generator(&self) {
        generator::stop(&self.shared);
    }

    /// Everything emitted, with delivery attempts.
    pub fn sent(&self) -> Vec<SentEvent> {
        self.shared.sent(0, usize::MAX, false)
    }

    /// Everything emitted, with bodies.
    pub fn sent_with_bodies(&self) -> Vec<SentEvent> {
        self.shared.sent(0, usize::MAX, true)
    }

    /// Applies a stream fault (as `POST /admin/faults`).
    pub fn stream_fault(&self, fault: StreamFault) -> usize {
        stream::apply_fault(&self.shared, fault)
    }

    /// Makes replay jobs finish `Incomplete` (or `Complete` again).
    pub fn set_replay_incomplete(&self, incomplete: bool) {
        self.shared.with_db(|db| db.replay_incomplete = incomplete);
    }

    /// Makes the next `n` replay jobs to finish end `Incomplete` (then they behave again):
    /// a retry can be tested without racing the client to switch X back in time.
    pub fn fail_next_replay_jobs(&self, n: usize) {
        self.shared.with_db(|db| db.replay_incomplete_next = n);
    }

    /// Stream connection attempts.
    pub fn connections(&self) -> Vec<StreamConnection> {
        self.shared.with_streams(|s| s.records.clone())
    }

    /// Webhooks with their subscriptions and CRC history.
    pub fn webhooks(&self) -> Vec<Webhook> {
        self.shared.with_db(|db| db.webhooks.clone())
    }

    /// Replay jobs.
    pub fn jobs(&self) -> Vec<ReplayJob> {
        self.shared.with_db(|db| db.jobs.clone())
    }

    /// The state as `GET /admin/state` gives it.
    pub fn state(&self) -> Value {
        admin::state_json(&self.shared)
    }

    /// Re-runs the CRC of every webhook now (what X does hourly).
    pub async fn recrc_now(&self) {
        self.shared.recrc_all("admin").await;
    }

    /// Registers a webhook for an app directly (CRC included), as `POST /2/webhooks`.
    pub async fn register_webhook(&self, app: &str, url: &str) -> Result<Webhook, ApiError> {
        self.shared.register_webhook(app, url).await
    }

    /// Subscribes a user to a webhook directly, as the OAuth'd `POST …/subscriptions/all`.
    pub fn subscribe(&self, app: &str, webhook_id: &str, user_id: &str) -> Result<(), ApiError> {
        self.shared.subscribe(app, webhook_id, user_id)
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}
