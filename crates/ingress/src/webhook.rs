//! The X webhook: CRC challenges (`GET`) and signed deliveries (`POST`) on
//! `/webhooks/{app}`, one path per configured app (`docs/spec/x-activity.md` §2).
//!
//! A POST is answered 200 only once the [`Pipeline`] has made it durable. Signatures are
//! checked over the raw body, in constant time, against every secret of the app (rotation),
//! before anything parses or stores the body.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use hmac::{Hmac, Mac};
use relay_config::ConfigError;
use relay_envelope::{Context, IngressKind};
use sha2::Sha256;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::conn::{ConnMetrics, LimitAcceptor};
use crate::metrics::WebhookMetrics;
use crate::{AcceptError, IngressError, Pipeline};

mod config;
mod reject;
pub use config::{AppConfig, TlsConfig, WebhookConfig};
use reject::{plain, Rejection};

type HmacSha256 = Hmac<Sha256>;

/// The header X signs every POST with.
pub const SIGNATURE_HEADER: &str = "x-twitter-webhooks-signature";

/// Label used for requests to a path naming no configured app.
const UNKNOWN_APP: &str = "_unknown";

/// base64(HMAC-SHA256) of `message` under a keyed MAC.
fn sign(mac: &HmacSha256, message: &[u8]) -> String {
    let mut mac = mac.clone();
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

struct App {
    name: String,
    /// One keyed MAC per consumer secret; the first is current.
    secrets: Vec<HmacSha256>,
    source: String,
    formats: relay_envelope::Formats,
    /// One permit per POST in progress (`max_requests_per_app`).
    in_flight: Semaphore,
}

struct Shared {
    apps: HashMap<String, Arc<App>>,
    pipeline: Arc<dyn Pipeline>,
    metrics: WebhookMetrics,
    body_limit: usize,
    body_timeout: Duration,
    retry_after_secs: u64,
    oversize_drain_bytes: usize,
    acceptance: crate::Acceptance,
    /// One permit per body byte held before its signature is checked
    /// (`preauth_body_budget`).
    preauth: Semaphore,
    /// What bodies over `small_body_bytes` may take of it: the budget less
    /// `small_body_reserve`. They take from both.
    preauth_large: Semaphore,
    small_body_bytes: usize,
}

/// Longest `crc_token` answered (X's tokens are a few dozen characters).
pub const MAX_CRC_TOKEN_LEN: usize = 255;

/// Whether `b` has the shape of a CRC token X sends: 1 to [`MAX_CRC_TOKEN_LEN`] bytes of
/// `[A-Za-z0-9+/=_-]` (base64 of either alphabet).
///
/// The CRC answer is `HMAC(consumer secret, token)`, the very MAC that authenticates a POST
/// body. Answering any token would make the endpoint a signing oracle: send a forged body
/// as `crc_token`, get its valid signature back. So the two sets are kept apart:
///
/// * CRC answers only tokens of this shape (anything else is 400 and never signed);
/// * a POST whose body has this shape is refused (401) whatever its signature, because
///   that signature could have come from the CRC endpoint. No real delivery has it: X's
///   bodies are JSON objects, which start with `{`.
///
/// So no byte string can be both signed by CRC and accepted as a delivery. Even before
/// that rule, such a body could only have been a JSON number, `true`, `false` or `null`
/// (no `{`, `"` or `.` in the alphabet): never an event of the taxonomy, at most an
/// `unknown` envelope or a dead letter.
pub fn is_crc_token_shape(b: &[u8]) -> bool {
    !b.is_empty()
        && b.len() <= MAX_CRC_TOKEN_LEN
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=' | b'_' | b'-'))
}

/// hyper's smallest read buffer.
const MIN_HEADER_BYTES: usize = 8192;

/// Semaphores take at most this many permits.
const MAX_PERMITS: usize = u32::MAX as usize;

impl WebhookConfig {
    /// The one check of the webhook's settings, run by [`router`] (and so by
    /// [`WebhookServer::bind`]) and by `activity-relay run --check`: limits, apps, secrets,
    /// and that the TLS files exist.
    pub fn validate(&self) -> Result<(), IngressError> {
        validate(self).map(|_| ())
    }
}

/// A mistake in `[webhook]`.
fn bad(key: &str, problem: impl Into<String>) -> IngressError {
    ConfigError::new("[webhook]", key, problem).into()
}

/// A mistake in one `[[webhook.apps]]` entry.
fn app_bad(app: &AppConfig, key: &str, problem: impl Into<String>) -> IngressError {
    ConfigError::new(format!("[[webhook.apps]] {:?}", app.name), key, problem).into()
}

fn validate(cfg: &WebhookConfig) -> Result<HashMap<String, Arc<App>>, IngressError> {
    if cfg.apps.is_empty() {
        return Err(bad("", "no apps configured (add a [[webhook.apps]])"));
    }
    if cfg.body_limit == 0 {
        return Err(bad("body_limit", "must be positive"));
    }
    let positive = [
        ("max_connections", cfg.max_connections),
        ("max_requests_per_app", cfg.max_requests_per_app),
    ];
    for (name, v) in positive {
        if v == 0 || v > MAX_PERMITS {
            return Err(bad(
                name,
                format!("must be between 1 and {MAX_PERMITS}, not {v}"),
            ));
        }
    }
    if cfg.preauth_body_budget < cfg.body_limit || cfg.preauth_body_budget > MAX_PERMITS {
        return Err(bad(
            "preauth_body_budget",
            format!(
                "({}) must be at least body_limit ({}) and at most {MAX_PERMITS}",
                cfg.preauth_body_budget, cfg.body_limit
            ),
        ));
    }
    if cfg.small_body_reserve > cfg.preauth_body_budget - cfg.body_limit {
        return Err(bad(
            "small_body_reserve",
            format!(
                "({}) must leave at least body_limit ({}) of preauth_body_budget ({}) for large bodies",
                cfg.small_body_reserve, cfg.body_limit, cfg.preauth_body_budget
            ),
        ));
    }
    if cfg.max_header_bytes < MIN_HEADER_BYTES {
        return Err(bad(
            "max_header_bytes",
            format!(
                "must be at least {MIN_HEADER_BYTES}, not {}",
                cfg.max_header_bytes
            ),
        ));
    }
    let timeouts = [
        ("header_read_timeout", cfg.header_read_timeout),
        ("body_timeout", cfg.body_timeout),
        ("tls_handshake_timeout", cfg.tls_handshake_timeout),
    ];
    for (name, v) in timeouts {
        if v.is_zero() {
            return Err(bad(name, "must be positive"));
        }
    }
    if let Some(tls) = &cfg.tls {
        for (key, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
            if !std::path::Path::new(path).is_file() {
                return Err(bad(
                    key,
                    format!("{path:?} does not exist or is not a file"),
                ));
            }
        }
    }
    build_apps(cfg)
}

/// The apps by name, each with its HMAC keys: names valid and unique, secrets usable.
fn build_apps(cfg: &WebhookConfig) -> Result<HashMap<String, Arc<App>>, IngressError> {
    let mut apps = HashMap::new();
    for a in &cfg.apps {
        let valid_name = !a.name.is_empty()
            && a.name != UNKNOWN_APP
            && a.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_name {
            return Err(app_bad(a, "name", "must be non-empty [A-Za-z0-9._-]"));
        }
        if a.consumer_secrets.is_empty() || a.consumer_secrets.iter().any(|s| s.expose().is_empty())
        {
            return Err(app_bad(
                a,
                "consumer_secrets",
                "needs at least one non-empty consumer secret",
            ));
        }
        let app = App {
            name: a.name.clone(),
            secrets: a
                .consumer_secrets
                .iter()
                .map(|s| {
                    HmacSha256::new_from_slice(s.expose().as_bytes()).map_err(|_| {
                        app_bad(a, "consumer_secrets", "holds an unusable consumer secret")
                    })
                })
                .collect::<Result<_, _>>()?,
            source: a
                .source
                .clone()
                .unwrap_or_else(|| format!("/x/account-activity/webhook/{}", a.name)),
            in_flight: Semaphore::new(cfg.max_requests_per_app),
            formats: a.formats,
        };
        if apps.insert(a.name.clone(), Arc::new(app)).is_some() {
            return Err(app_bad(a, "name", "is configured twice"));
        }
    }
    Ok(apps)
}

/// The webhook routes (`GET`/`POST /webhooks/{app}`), metrics registered into `registry`.
pub fn router(
    cfg: &WebhookConfig,
    pipeline: Arc<dyn Pipeline>,
    registry: &prometheus::Registry,
) -> Result<Router, IngressError> {
    router_with(cfg, crate::Acceptance::default(), pipeline, registry)
}

/// [`router`], recording in `acceptance` up to when the webhook took everything X sent
/// (the relay reads it for its liveness record).
pub fn router_with(
    cfg: &WebhookConfig,
    acceptance: crate::Acceptance,
    pipeline: Arc<dyn Pipeline>,
    registry: &prometheus::Registry,
) -> Result<Router, IngressError> {
    let apps = validate(cfg)?;
    let metrics = WebhookMetrics::register(registry)?;
    let shared = Arc::new(Shared {
        apps,
        pipeline,
        metrics,
        body_limit: cfg.body_limit,
        body_timeout: cfg.body_timeout,
        retry_after_secs: cfg.retry_after_secs,
        oversize_drain_bytes: cfg.oversize_drain_bytes,
        acceptance,
        preauth: Semaphore::new(cfg.preauth_body_budget),
        preauth_large: Semaphore::new(cfg.preauth_body_budget - cfg.small_body_reserve),
        small_body_bytes: cfg.small_body_bytes,
    });
    Ok(Router::new()
        .route("/webhooks/{app}", get(crc).post(deliver))
        .with_state(shared))
}

impl Shared {
    fn app(&self, name: &str, method: &str) -> Option<Arc<App>> {
        let app = self.apps.get(name).cloned();
        if app.is_none() {
            self.metrics
                .requests
                .with_label_values(&[UNKNOWN_APP, "unknown_app"])
                .inc();
            tracing::debug!(method, "webhook request for an unknown app");
        }
        app
    }

    fn outcome(&self, app: &App, outcome: &str) {
        self.metrics
            .requests
            .with_label_values(&[&app.name, outcome])
            .inc();
    }

    /// Counts `r` under its outcome and answers it.
    fn reject(&self, app: &App, r: Rejection) -> Response {
        self.outcome(app, r.outcome());
        r.into_response()
    }

    fn unauthorized(&self, app: &App, reason: &'static str) -> Response {
        self.metrics
            .signature_failures
            .with_label_values(&[&app.name, reason])
            .inc();
        tracing::warn!(app = %app.name, reason, "webhook POST rejected: bad signature");
        self.reject(app, Rejection::Unauthorized)
    }
}

async fn crc(
    State(st): State<Arc<Shared>>,
    Path(app): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let started = Instant::now();
    let Some(app) = st.app(&app, "GET") else {
        return Rejection::UnknownApp.into_response();
    };
    let token = query.as_deref().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "crc_token")
            .map(|(_, v)| v.into_owned())
    });
    let resp = match token.filter(|t| !t.is_empty()) {
        None => st.reject(&app, Rejection::MissingCrcToken),
        // Never sign anything but what X sends: see `is_crc_token_shape`.
        Some(token) if !is_crc_token_shape(token.as_bytes()) => {
            tracing::warn!(app = %app.name, len = token.len(), "CRC refused: crc_token is not of the shape X sends");
            st.reject(&app, Rejection::BadCrcToken)
        }
        Some(token) => {
            // validate() guarantees at least one secret.
            let response_token = app
                .secrets
                .first()
                .map(|mac| format!("sha256={}", sign(mac, token.as_bytes())))
                .unwrap_or_default();
            let body = serde_json::json!({ "response_token": response_token });
            st.metrics.crc_checks.with_label_values(&[&app.name]).inc();
            st.outcome(&app, "crc");
            tracing::debug!(app = %app.name, "answered CRC challenge");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    };
    st.metrics
        .latency
        .with_label_values(&[&app.name, "GET"])
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// A signature header value, decoded.
enum Signature {
    Missing,
    Malformed,
    Present([u8; 32]),
}

fn parse_signature(headers: &HeaderMap) -> Signature {
    let Some(value) = headers.get(SIGNATURE_HEADER) else {
        return Signature::Missing;
    };
    let Some(b64) = value.as_bytes().strip_prefix(b"sha256=") else {
        return Signature::Malformed;
    };
    match base64::engine::general_purpose::STANDARD.decode(b64.trim_ascii()) {
        Ok(raw) => match <[u8; 32]>::try_from(raw.as_slice()) {
            Ok(sig) => Signature::Present(sig),
            Err(_) => Signature::Malformed,
        },
        Err(_) => Signature::Malformed,
    }
}

/// Whether `sig` is the HMAC of `body` under any of `secrets`, in constant time per secret
/// (and every secret is tried, so timing does not reveal which one matched).
fn verify(secrets: &[HmacSha256], body: &[u8], sig: &[u8; 32]) -> bool {
    let mut ok = false;
    for mac in secrets {
        let mut mac = mac.clone();
        mac.update(body);
        ok |= mac.verify_slice(sig).is_ok();
    }
    ok
}

enum ReadError {
    /// Over the limit; the body stream is handed back so the rest can be drained.
    TooLarge(axum::body::BodyDataStream),
    Io,
}

async fn read_limited(body: Body, limit: usize) -> Result<Bytes, ReadError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| ReadError::Io)?;
        if buf.len().saturating_add(chunk.len()) > limit {
            return Err(ReadError::TooLarge(stream));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Reads and discards at most `max` more bytes of `stream` (nothing is kept).
async fn drain(mut stream: axum::body::BodyDataStream, max: usize) {
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = stream.next().await {
        seen = seen.saturating_add(chunk.len());
        if seen > max {
            return;
        }
    }
}

async fn deliver(
    State(st): State<Arc<Shared>>,
    Path(app): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let Some(app) = st.app(&app, "POST") else {
        return Rejection::UnknownApp.into_response();
    };
    let resp = deliver_app(&st, &app, &headers, body).await;
    st.metrics
        .latency
        .with_label_values(&[&app.name, "POST"])
        .observe(started.elapsed().as_secs_f64());
    resp
}

impl Shared {
    /// 413 for a body over `body_limit`. Unless the client waits for `100 Continue` (then
    /// it has sent nothing yet), up to `oversize_drain_bytes` of the body are read and
    /// discarded first, within `body_timeout`: a client that writes its whole body before
    /// reading (Python's urllib, most scripts) would otherwise see its connection reset
    /// under the unread bytes instead of the answer.
    async fn too_large(
        &self,
        app: &App,
        headers: &HeaderMap,
        declared: Option<u64>,
        rest: Option<axum::body::BodyDataStream>,
    ) -> Response {
        self.outcome(app, Rejection::TooLarge.outcome());
        tracing::warn!(app = %app.name, declared, "webhook POST rejected: body over the limit");
        let expects_continue = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let drainable = declared.is_none_or(|n| n <= self.oversize_drain_bytes as u64);
        if let Some(stream) = rest {
            if !expects_continue && drainable {
                let _ = tokio::time::timeout(
                    self.body_timeout,
                    drain(stream, self.oversize_drain_bytes),
                )
                .await;
            }
        }
        Rejection::TooLarge.into_response()
    }

    /// 503 for a POST refused before its body is read (a limit, not a fault).
    fn busy(&self, app: &App, outcome: &'static str) -> Response {
        // X's delivery may be among the refused: an interval of refusals to recover.
        self.acceptance.stopped(std::time::SystemTime::now());
        tracing::warn!(app = %app.name, outcome, "webhook POST refused: limit reached (X retries it)");
        self.reject(
            app,
            Rejection::Busy {
                outcome,
                retry_after_secs: self.retry_after_secs,
            },
        )
    }
}

async fn deliver_app(st: &Shared, app: &App, headers: &HeaderMap, body: Body) -> Response {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.body_limit as u64) {
        let rest = Some(body.into_data_stream());
        return st.too_large(app, headers, declared, rest).await;
    }
    let sig = match parse_signature(headers) {
        Signature::Missing => return st.unauthorized(app, "missing"),
        Signature::Malformed => return st.unauthorized(app, "malformed"),
        Signature::Present(sig) => sig,
    };
    // Reserve the bytes this body may hold before it is authenticated; released once the
    // signature is checked. `declared` is at most `body_limit` here.
    let reserve = declared.map_or(st.body_limit, |n| n as usize);
    let large = if reserve > st.small_body_bytes {
        match st.preauth_large.try_acquire_many(reserve as u32) {
            Ok(p) => Some(p),
            Err(_) => return st.busy(app, "preauth_budget"),
        }
    } else {
        None
    };
    let Ok(preauth) = st.preauth.try_acquire_many(reserve as u32) else {
        return st.busy(app, "preauth_budget");
    };
    let read = tokio::time::timeout(st.body_timeout, read_limited(body, st.body_limit)).await;
    let body = match read {
        Ok(Ok(b)) => b,
        Err(_) => {
            tracing::warn!(app = %app.name, "webhook POST body not received in time");
            return st.reject(app, Rejection::ReadTimeout);
        }
        Ok(Err(ReadError::TooLarge(rest))) => {
            drop((preauth, large));
            return st.too_large(app, headers, declared, Some(rest)).await;
        }
        Ok(Err(ReadError::Io)) => {
            tracing::debug!(app = %app.name, "webhook POST body could not be read");
            return st.reject(app, Rejection::ReadError);
        }
    };
    // A body of the CRC token's shape may carry a signature obtained from our own CRC
    // endpoint: never trust it (see `is_crc_token_shape`).
    if is_crc_token_shape(&body) {
        return st.unauthorized(app, "crc_shaped");
    }
    let authentic = verify(&app.secrets, &body, &sig);
    drop((preauth, large));
    if !authentic {
        return st.unauthorized(app, "mismatch");
    }
    hand_over(st, app, body).await
}

/// Hands an authentic body to the pipeline (within the app's in-flight bound) and answers
/// with what it made of it.
async fn hand_over(st: &Shared, app: &App, body: Bytes) -> Response {
    let Ok(_in_flight) = app.in_flight.try_acquire() else {
        return st.busy(app, "busy");
    };
    st.metrics
        .bytes
        .with_label_values(&[&app.name])
        .inc_by(body.len() as u64);
    let ctx = Context {
        ingress: IngressKind::Webhook,
        source: app.source.clone(),
        received_at: chrono::Utc::now(),
        formats: app.formats,
    };
    let len = body.len();
    match st.pipeline.accept(body, ctx).await {
        Ok(report) => {
            st.acceptance.accepting();
            st.outcome(app, "accepted");
            tracing::debug!(
                app = %app.name,
                bytes = len,
                spooled = report.spooled,
                duplicates = report.duplicates,
                dead_letters = report.dead_letters,
                xaa_errors = report.xaa_errors,
                "webhook delivery accepted"
            );
            plain(StatusCode::OK, "ok\n")
        }
        Err(AcceptError::Full { retry_after }) => {
            st.acceptance.stopped(std::time::SystemTime::now());
            let secs = if retry_after.is_zero() {
                st.retry_after_secs
            } else {
                retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0)
            };
            tracing::warn!(app = %app.name, retry_after_secs = secs, "webhook delivery refused: spool full");
            st.reject(
                app,
                Rejection::Full {
                    retry_after_secs: secs,
                },
            )
        }
        Err(AcceptError::TooLarge(reason)) => {
            tracing::error!(app = %app.name, %reason, "webhook delivery can never be spooled");
            st.reject(app, Rejection::TooLargeForSpool)
        }
        Err(AcceptError::Unavailable(reason)) => {
            st.acceptance.stopped(std::time::SystemTime::now());
            tracing::warn!(app = %app.name, %reason, "webhook delivery refused: pipeline unavailable");
            st.reject(
                app,
                Rejection::Unavailable {
                    retry_after_secs: st.retry_after_secs,
                },
            )
        }
    }
}

/// A bound webhook listener; [`WebhookServer::run`] serves it.
pub struct WebhookServer {
    listener: std::net::TcpListener,
    local_addr: SocketAddr,
    router: Router,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    shutdown_grace: Duration,
    limits: ConnLimits,
    conn_metrics: ConnMetrics,
}

/// The connection settings of [`WebhookConfig`].
#[derive(Clone, Copy)]
struct ConnLimits {
    header_read_timeout: Duration,
    max_header_bytes: usize,
    max_connections: usize,
    tls_handshake_timeout: Duration,
}

impl fmt::Debug for WebhookServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookServer")
            .field("local_addr", &self.local_addr)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// The HTTP settings every webhook connection is served with.
///
/// HTTP/1.1 only: X delivers webhooks over HTTP/1.1, and hyper's header read timeout (the
/// bound on slow, half-sent and idle connections) exists for HTTP/1 only. Serving HTTP/2 as
/// well would also mean detecting the protocol from the first bytes, a wait that no
/// timeout bounds.
fn http_builder(
    limits: ConnLimits,
) -> hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor> {
    let mut builder =
        hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
            .http1_only();
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    builder
}

impl WebhookServer {
    /// Validates `cfg`, loads TLS material, registers metrics and binds `cfg.listen`.
    pub async fn bind(
        cfg: WebhookConfig,
        pipeline: Arc<dyn Pipeline>,
        registry: &prometheus::Registry,
    ) -> Result<WebhookServer, IngressError> {
        WebhookServer::bind_with(cfg, crate::Acceptance::default(), pipeline, registry).await
    }

    /// [`WebhookServer::bind`], recording acceptance in `acceptance` (see [`router_with`]).
    pub async fn bind_with(
        cfg: WebhookConfig,
        acceptance: crate::Acceptance,
        pipeline: Arc<dyn Pipeline>,
        registry: &prometheus::Registry,
    ) -> Result<WebhookServer, IngressError> {
        let router = router_with(&cfg, acceptance, pipeline, registry)?;
        let conn_metrics = crate::metrics::register_conn_metrics(registry)?;
        let tls = match &cfg.tls {
            Some(t) => Some(load_tls(t).await?),
            None => None,
        };
        let bind_err = |source| IngressError::Bind {
            addr: cfg.listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(bind_err)?;
        let local_addr = listener.local_addr().map_err(bind_err)?;
        let listener = listener.into_std().map_err(bind_err)?;
        tracing::info!(
            %local_addr,
            tls = tls.is_some(),
            apps = cfg.apps.len(),
            max_connections = cfg.max_connections,
            max_requests_per_app = cfg.max_requests_per_app,
            preauth_body_budget = cfg.preauth_body_budget,
            header_read_timeout = ?cfg.header_read_timeout,
            "webhook listening"
        );
        Ok(WebhookServer {
            listener,
            local_addr,
            router,
            tls,
            shutdown_grace: cfg.shutdown_grace,
            limits: ConnLimits {
                header_read_timeout: cfg.header_read_timeout,
                max_header_bytes: cfg.max_header_bytes,
                max_connections: cfg.max_connections,
                tls_handshake_timeout: cfg.tls_handshake_timeout,
            },
            conn_metrics,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` is cancelled; then stops accepting connections, lets
    /// in-flight requests finish (at most `shutdown_grace`) and returns.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), IngressError> {
        let handle = axum_server::Handle::new();
        let grace = self.shutdown_grace;
        let watcher = {
            let handle = handle.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                tracing::info!("webhook shutting down");
                handle.graceful_shutdown(Some(grace));
            })
        };
        let service = self.router.into_make_service();
        let limits = self.limits;
        let metrics = self.conn_metrics;
        let result = match self.tls {
            Some(tls) => {
                let tls = axum_server::tls_rustls::RustlsAcceptor::new(tls)
                    .handshake_timeout(limits.tls_handshake_timeout);
                let mut server = axum_server::from_tcp(self.listener)
                    .acceptor(LimitAcceptor::new(
                        tls,
                        limits.max_connections,
                        limits.header_read_timeout,
                        metrics,
                    ))
                    .handle(handle);
                *server.http_builder() = http_builder(limits);
                server.serve(service).await
            }
            None => {
                let plain = axum_server::accept::DefaultAcceptor::new();
                let mut server = axum_server::from_tcp(self.listener)
                    .acceptor(LimitAcceptor::new(
                        plain,
                        limits.max_connections,
                        limits.header_read_timeout,
                        metrics,
                    ))
                    .handle(handle);
                *server.http_builder() = http_builder(limits);
                server.serve(service).await
            }
        };
        watcher.abort();
        result.map_err(IngressError::Serve)?;
        tracing::info!("webhook stopped");
        Ok(())
    }
}

async fn load_tls(t: &TlsConfig) -> Result<axum_server::tls_rustls::RustlsConfig, IngressError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let tls_err = |path: &std::path::Path, reason: String| IngressError::Tls {
        path: path.display().to_string(),
        reason,
    };
    let cert_pem = tokio::fs::read(&t.cert)
        .await
        .map_err(|e| tls_err(&t.cert, e.to_string()))?;
    let key_pem = tokio::fs::read(&t.key)
        .await
        .map_err(|e| tls_err(&t.key, e.to_string()))?;
    let certs = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(&t.cert, format!("bad certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(&t.cert, "no certificate in file".into()));
    }
    // Never echo key material: only say what kind of problem it was.
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|_| tls_err(&t.key, "no usable private key in file".into()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err(&t.cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_err(&t.cert, format!("certificate/key rejected: {e}")))?;
    // HTTP/1.1 only (see `http_builder`).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(config),
    ))
}
