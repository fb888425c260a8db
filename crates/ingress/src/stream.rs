//! The activity stream client (`docs/spec/x-activity.md` §1b, §3).
//!
//! One long-lived `GET` returning newline-delimited JSON. Every non-blank line goes to the
//! [`Pipeline`], in order, one at a time; a full or unavailable pipeline holds the line
//! (and stops reading: backpressure) until it is accepted, so nothing read is dropped.
//! Connections are re-established forever by X's rules ([`crate::backoff`]). Each connection
//! asks X to re-send the gap since the stream's [`crate::Position`] in X's time (the newest
//! event time durably accepted, from the liveness record after a restart) less
//! [`RESUME_MARGIN`]: `backfill_minutes` up to 5 minutes, `start_time` up to 24 hours
//! ([`initial_resume`]); the pipeline deduplicates what was already seen. A catch-up that X
//! cuts short therefore resumes where it was cut, not from the time it was last read.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::StreamExt;
use relay_config::ConfigError;
use relay_envelope::{Context, IngressKind};
use relay_secret::Secret;
use reqwest::header::{ACCEPT, USER_AGENT};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, BackoffConfig, Failure};
use crate::metrics::StreamMetrics;
use crate::ndjson::{Line, LineReader, DEFAULT_MAX_LINE};
use crate::{AcceptError, IngressError, Pipeline};

/// The longest gap `backfill_minutes` can cover.
pub const MAX_BACKFILL: Duration = Duration::from_secs(5 * 60);

/// How far before the stream's position a reconnect asks X to start: X's stream is in
/// event-time order only roughly, and clocks differ (the webhook's replay keeps the same
/// margin). What is re-sent twice is dropped by dedup.
pub const RESUME_MARGIN: Duration = Duration::from_secs(120);

/// Activity stream client configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StreamConfig {
    /// Names this stream in logs, metrics (`stream` label) and the default source.
    pub name: String,
    pub url: String,
    /// App-only bearer token (never printed).
    pub bearer_token: Secret,
    pub user_agent: String,
    /// No byte (not even a heartbeat) for this long: the connection is dead; reconnect.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Ask for `backfill_minutes` after a gap of at most 5 minutes.
    pub backfill: bool,
    /// CloudEvents `source`; default `/x/activity/stream/<name>`.
    pub source: Option<String>,
    /// Longest accepted line; a longer one drops the connection.
    pub max_line_bytes: usize,
    /// TCP/TLS connect timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Connected and receiving this long: the reconnect backoff starts over (it also does
    /// at the first event).
    #[serde(with = "humantime_serde")]
    pub healthy_after: Duration,
    /// Wait before retrying a line the pipeline refused as unavailable (or full without a
    /// hint).
    #[serde(with = "humantime_serde")]
    pub unavailable_retry: Duration,
    /// The reconnect schedule; defaults are X's rules.
    pub backoff: BackoffConfig,
    /// The input formats taken from this stream: `["aaa", "xaa"]` (default) during X's
    /// cutover, `["xaa"]` after it. Lines of another format are kept as dead letters.
    pub formats: relay_envelope::Formats,
}

/// Every default of `StreamConfig` is here (a required setting is empty: `validate()` says so).
impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            name: "default".into(),
            url: "https://api.x.com/2/activity/stream".into(),
            bearer_token: Secret::default(),
            user_agent: concat!("activity-relay/", env!("CARGO_PKG_VERSION")).into(),
            idle_timeout: Duration::from_secs(30),
            backfill: true,
            source: Default::default(),
            max_line_bytes: DEFAULT_MAX_LINE,
            connect_timeout: Duration::from_secs(10),
            healthy_after: Duration::from_secs(60),
            unavailable_retry: Duration::from_secs(1),
            backoff: Default::default(),
            formats: Default::default(),
        }
    }
}

impl StreamConfig {
    /// Defaults for everything but the token.
    pub fn new(bearer_token: impl Into<Secret>) -> Self {
        StreamConfig {
            bearer_token: bearer_token.into(),
            ..StreamConfig::default()
        }
    }
}

impl StreamConfig {
    /// The one check of a stream's settings, run by [`run`] and by `activity-relay run
    /// --check`.
    pub fn validate(&self) -> Result<(), IngressError> {
        validate(self)
    }
}

fn validate(cfg: &StreamConfig) -> Result<(), IngressError> {
    let bad = |key: &str, problem: String| -> IngressError {
        ConfigError::new(format!("[[streams]] {:?}", cfg.name), key, problem).into()
    };
    let url = url::Url::parse(&cfg.url).map_err(|e| bad("url", format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("url", "must be http(s)".into()));
    }
    if cfg.bearer_token.expose().trim().is_empty() {
        return Err(bad(
            "bearer_token",
            "is required (an app-only bearer token; use ${VAR})".into(),
        ));
    }
    if cfg.idle_timeout.is_zero() || cfg.max_line_bytes == 0 || cfg.connect_timeout.is_zero() {
        return Err(bad(
            "idle_timeout, connect_timeout and max_line_bytes",
            "must be positive".into(),
        ));
    }
    Ok(())
}

/// `backfill_minutes` for a gap: whole minutes rounded up, 1..=5; `None` past 5 minutes.
pub fn backfill_minutes(gap: Duration) -> Option<u64> {
    if gap > MAX_BACKFILL {
        return None;
    }
    let mins = gap.as_nanos().div_ceil(60_000_000_000);
    Some(u64::try_from(mins).unwrap_or(5).clamp(1, 5))
}

/// If `line` is an in-stream error object that ends the connection (operational
/// disconnect, connection limit), a short description of it.
pub fn in_stream_error(line: &[u8]) -> Option<String> {
    fn has(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }
    if !(has(line, b"errors") || has(line, b"disconnect") || has(line, b"TooManyConnections")) {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    let obj = value.as_object()?;
    if obj.contains_key("data") {
        return None;
    }
    for key in [
        "disconnect",
        "operational-disconnect",
        "operational_disconnect",
    ] {
        if let Some(v) = obj.get(key) {
            return Some(summarize(key, v));
        }
    }
    let errors = obj.get("errors")?.as_array()?;
    errors.iter().find_map(|e| {
        let text = e.to_string().to_ascii_lowercase();
        let ends_connection = text.contains("disconnect")
            || text.contains("toomanyconnections")
            || text.contains("connectionexception")
            || text.contains("connection limit")
            || text.contains("maximum allowed connection");
        ends_connection.then(|| summarize("errors", e))
    })
}

fn summarize(key: &str, v: &serde_json::Value) -> String {
    let mut s = format!("{key}: {v}");
    if s.len() > 300 {
        let mut cut = 300;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn unix_now_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// What the first connection after a restart asks X for, by the length of the gap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resume {
    /// Gap of at most 5 minutes: `backfill_minutes` (rounded up).
    Backfill(u64),
    /// Gap of at most 24 h: `start_time` (RFC 3339, whole seconds, rounded down) = the
    /// time of the last accepted event.
    StartTime(String),
    /// Longer than 24 h: `start_time` of 24 h ago minus a minute of margin; the rest is
    /// lost.
    TooOld(String),
}

/// X serves `start_time` at most this far back.
pub const MAX_START_TIME_AGE: Duration = Duration::from_secs(24 * 3600);

/// Decides the recovery parameters for a gap of `gap` ending `now` (after a restart, or
/// after a long outage within one run).
pub fn initial_resume(gap: Duration, now: SystemTime) -> Resume {
    if let Some(n) = backfill_minutes(gap) {
        return Resume::Backfill(n);
    }
    let rfc3339 = |t: SystemTime| {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        chrono::DateTime::<chrono::Utc>::from_timestamp(i64::try_from(secs).unwrap_or(0), 0)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    if gap <= MAX_START_TIME_AGE {
        let from = now.checked_sub(gap).unwrap_or(UNIX_EPOCH);
        Resume::StartTime(rfc3339(from))
    } else {
        let from = now
            .checked_sub(MAX_START_TIME_AGE - Duration::from_secs(60))
            .unwrap_or(UNIX_EPOCH);
        Resume::TooOld(rfc3339(from))
    }
}

/// The start of an error response's body, for the log: at most 512 bytes, waiting at most
/// 2 s (X's error bodies are small JSON problem objects).
async fn error_detail(resp: reqwest::Response, shutdown: &CancellationToken) -> String {
    const MAX: usize = 512;
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    let read = async {
        while let Some(Ok(chunk)) = body.next().await {
            buf.extend_from_slice(&chunk[..chunk.len().min(MAX - buf.len())]);
            if buf.len() >= MAX {
                break;
            }
        }
    };
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::timeout(Duration::from_secs(2), read) => {}
    }
    String::from_utf8_lossy(&buf).replace(['\r', '\n'], " ")
}

/// How one connection ended.
enum Outcome {
    Shutdown,
    Ended {
        reason: &'static str,
        failure: Failure,
    },
}

enum Delivery {
    Delivered,
    Shutdown,
}

struct Runner {
    /// The wall clock and the runtime's clock at start: the stream's "now" in X's time is
    /// the first plus the runtime clock's elapsed time (monotonic, and the one tests can
    /// pause and advance).
    epoch: (SystemTime, Instant),
    cfg: StreamConfig,
    runtime: StreamRuntime,
    pipeline: Arc<dyn Pipeline>,
    metrics: StreamMetrics,
    client: reqwest::Client,
    source: String,
    backoff: Backoff,
    /// Receipt time of the last chunk fully handed to the pipeline: everything X sent
    /// before it is safe.
    caught_up_at: Option<Instant>,
}

/// Resolves once the gate (if any) closes: this member no longer leads the stream.
async fn lost(gate: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match gate {
        Some(g) => {
            if g.wait_for(|lead| !*lead).await.is_err() {
                // The relay dropped the gate (it is stopping): shutdown ends the read.
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// Runs the stream until `shutdown` is cancelled, reconnecting forever by X's rules.
/// Returns an error only for an invalid configuration or metrics registration.
/// What a stream connection shares with the relay while it runs (not configuration).
#[derive(Clone, Debug, Default)]
pub struct StreamRuntime {
    /// Where this stream stood in X's time before the relay stopped (from its liveness
    /// record): the first connection asks X for the gap since then (see
    /// [`crate::Position`]).
    pub resume_from: Option<SystemTime>,
    /// Where this stream stands in X's time, moved forward as events are accepted; the
    /// relay reads it for its liveness record.
    pub position: crate::Position,
    /// When set, the stream connects only while it holds `true` (this member leads the
    /// stream in a fleet: `[cluster]`), and drops its connection as soon as it turns
    /// `false` (another member may take the stream over).
    pub gate: Option<tokio::sync::watch::Receiver<bool>>,
    /// Up to when this stream took everything X sent (see [`crate::Acceptance`]); the
    /// relay reads it for its liveness record.
    pub acceptance: crate::Acceptance,
}

/// Runs the stream client with no resume point and an acceptance nobody reads (see
/// [`run_with`]).
pub async fn run(
    cfg: StreamConfig,
    pipeline: Arc<dyn Pipeline>,
    registry: &prometheus::Registry,
    shutdown: CancellationToken,
) -> Result<(), IngressError> {
    run_with(cfg, StreamRuntime::default(), pipeline, registry, shutdown).await
}

/// Runs the stream client until `shutdown`, sharing `runtime` with the caller.
pub async fn run_with(
    cfg: StreamConfig,
    runtime: StreamRuntime,
    pipeline: Arc<dyn Pipeline>,
    registry: &prometheus::Registry,
    shutdown: CancellationToken,
) -> Result<(), IngressError> {
    validate(&cfg)?;
    if let Some(t) = runtime.resume_from {
        runtime.position.advance(t);
    }
    let metrics = StreamMetrics::register(registry, &cfg.name)?;
    let client = reqwest::Client::builder()
        .connect_timeout(cfg.connect_timeout)
        .tcp_keepalive(Duration::from_secs(30))
        .build()
        .map_err(IngressError::Client)?;
    let source = cfg
        .source
        .clone()
        .unwrap_or_else(|| format!("/x/activity/stream/{}", cfg.name));
    let mut runner = Runner {
        epoch: (SystemTime::now(), Instant::now()),
        backoff: Backoff::new(cfg.backoff.clone()),
        cfg,
        runtime,
        pipeline,
        metrics,
        client,
        source,
        caught_up_at: None,
    };
    runner.run(shutdown).await;
    Ok(())
}

impl Runner {
    /// Now, as wall-clock time (see [`Runner::epoch`]).
    fn wall_now(&self) -> SystemTime {
        self.epoch.0 + self.epoch.1.elapsed()
    }

    async fn run(&mut self, shutdown: CancellationToken) {
        let name = self.cfg.name.clone();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if let Some(mut gate) = self.runtime.gate.clone() {
                if !*gate.borrow() {
                    tracing::info!(stream = %name, "standby: another member leads this stream");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        r = gate.wait_for(|lead| *lead) => if r.is_err() { break },
                    }
                    tracing::info!(stream = %name, "leading this stream: connecting");
                    self.backoff.reset();
                }
            }
            let outcome = self.connect_once(&shutdown).await;
            self.metrics.connected.set(0);
            // Disconnected: what X sent since the last data handed over is not taken.
            let caught_up = self
                .caught_up_at
                .map_or_else(SystemTime::now, |t| SystemTime::now() - t.elapsed());
            self.runtime.acceptance.stopped(caught_up);
            let (reason, failure) = match outcome {
                Outcome::Shutdown => break,
                Outcome::Ended {
                    reason: "not_leader",
                    ..
                } => {
                    tracing::info!(stream = %name, "no longer leading this stream: disconnected");
                    continue;
                }
                Outcome::Ended { reason, failure } => (reason, failure),
            };
            self.metrics.reconnects.with_label_values(&[reason]).inc();
            let delay = self.backoff.next_delay(failure, unix_now());
            self.metrics.backoff.set(delay.as_secs_f64());
            tracing::info!(
                stream = %name,
                reason,
                delay_ms = delay.as_millis() as u64,
                "activity stream disconnected; reconnecting"
            );
            if !delay.is_zero() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
        self.metrics.connected.set(0);
        tracing::info!(stream = %name, "activity stream stopped");
    }

    async fn connect_once(&mut self, shutdown: &CancellationToken) -> Outcome {
        let cfg = &self.cfg;
        let mut req = self
            .client
            .get(&cfg.url)
            .bearer_auth(cfg.bearer_token.expose())
            .header(USER_AGENT, &cfg.user_agent)
            .header(ACCEPT, "application/json");
        // The gap to recover: since the stream's position in X's time (the newest event
        // durably accepted, or the previous run's), less the margin. None on a first start.
        let now = self.wall_now();
        let position = self.runtime.position.get();
        let gap = position.map(|p| now.duration_since(p).unwrap_or(Duration::ZERO) + RESUME_MARGIN);
        if let Some(gap) = gap.filter(|_| cfg.backfill) {
            match initial_resume(gap, now) {
                Resume::Backfill(n) => {
                    tracing::debug!(stream = %cfg.name, gap_secs = gap.as_secs(), backfill_minutes = n, "activity stream: asking for the gap");
                    req = req.query(&[("backfill_minutes", n)]);
                }
                Resume::StartTime(t) => {
                    tracing::info!(stream = %cfg.name, gap_secs = gap.as_secs(), start_time = %t, "activity stream: asking for the gap with start_time");
                    req = req.query(&[("start_time", t)]);
                }
                Resume::TooOld(t) => {
                    tracing::warn!(stream = %cfg.name, gap_secs = gap.as_secs(), start_time = %t, "activity stream gap longer than 24 h: only its last 24 h can be asked for; the rest needs the replay API");
                    req = req.query(&[("start_time", t)]);
                }
            }
        }
        let sent = tokio::select! {
            _ = shutdown.cancelled() => return Outcome::Shutdown,
            r = tokio::time::timeout(cfg.connect_timeout + cfg.idle_timeout, req.send()) => r,
        };
        let resp = match sent {
            Err(_) => {
                tracing::warn!(stream = %cfg.name, "activity stream: no response in time");
                return Outcome::Ended {
                    reason: "timeout",
                    failure: Failure::Network,
                };
            }
            Ok(Err(e)) => {
                tracing::warn!(stream = %cfg.name, error = %e.without_url(), "activity stream: connection failed");
                return Outcome::Ended {
                    reason: "network",
                    failure: Failure::Network,
                };
            }
            Ok(Ok(resp)) => resp,
        };
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            let reset_at = resp
                .headers()
                .get("x-rate-limit-reset")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            tracing::warn!(stream = %cfg.name, ?reset_at, "activity stream: rate limited (429)");
            return Outcome::Ended {
                reason: "rate_limited",
                failure: Failure::RateLimited { reset_at },
            };
        }
        if !status.is_success() {
            let detail = error_detail(resp, shutdown).await;
            tracing::warn!(stream = %cfg.name, status = status.as_u16(), %detail, "activity stream: HTTP error");
            return Outcome::Ended {
                reason: "http",
                failure: Failure::Http,
            };
        }
        tracing::info!(stream = %cfg.name, "activity stream connected");
        self.metrics.connected.set(1);
        self.runtime.acceptance.accepting();
        if position.is_none() {
            // A first start, live from now: X sends everything after this.
            self.runtime.position.advance(now);
        }
        self.read(resp, shutdown).await
    }

    async fn read(&mut self, resp: reqwest::Response, shutdown: &CancellationToken) -> Outcome {
        let connected_at = Instant::now();
        let idle = self.cfg.idle_timeout;
        let mut body = resp.bytes_stream();
        let mut reader = LineReader::new(self.cfg.max_line_bytes);
        let mut gate = self.runtime.gate.clone();
        loop {
            let next = tokio::select! {
                biased;
                _ = shutdown.cancelled() => return Outcome::Shutdown,
                _ = lost(&mut gate) => {
                    return Outcome::Ended {
                        reason: "not_leader",
                        failure: Failure::Network,
                    }
                }
                r = tokio::time::timeout(idle, body.next()) => r,
            };
            let chunk = match next {
                Err(_) => {
                    tracing::warn!(stream = %self.cfg.name, idle_secs = idle.as_secs_f64(), "activity stream stalled");
                    return Outcome::Ended {
                        reason: "idle_timeout",
                        failure: Failure::Network,
                    };
                }
                Ok(None) => {
                    if reader.pending() > 0 {
                        tracing::warn!(
                            stream = %self.cfg.name,
                            bytes = reader.pending(),
                            "activity stream closed mid-line; the partial line is dropped (backfill re-sends it)"
                        );
                    }
                    return Outcome::Ended {
                        reason: "closed",
                        failure: Failure::Network,
                    };
                }
                Ok(Some(Err(e))) => {
                    tracing::warn!(stream = %self.cfg.name, error = %e.without_url(), "activity stream read failed");
                    return Outcome::Ended {
                        reason: "network",
                        failure: Failure::Network,
                    };
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            let received = Instant::now();
            reader.push(&chunk);
            loop {
                match reader.next_line() {
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(stream = %self.cfg.name, error = %e, "activity stream line too long; dropping the connection");
                        return Outcome::Ended {
                            reason: "line_too_long",
                            failure: Failure::Http,
                        };
                    }
                    Ok(Some(Line::Heartbeat)) => self.metrics.heartbeats.inc(),
                    Ok(Some(Line::Data(line))) => {
                        self.metrics.lines.inc();
                        if let Some(what) = in_stream_error(&line) {
                            tracing::warn!(stream = %self.cfg.name, error = %what, "activity stream sent an error object; reconnecting");
                            return Outcome::Ended {
                                reason: "stream_error",
                                failure: Failure::Http,
                            };
                        }
                        if let Delivery::Shutdown = self.deliver(line, shutdown).await {
                            return Outcome::Shutdown;
                        }
                        self.metrics.last_event.set(unix_now_f64());
                        self.backoff.reset();
                    }
                }
            }
            self.caught_up_at = Some(received);
            if connected_at.elapsed() >= self.cfg.healthy_after {
                self.backoff.reset();
            }
        }
    }

    /// Hands one line to the pipeline, retrying (without reading further) until accepted.
    async fn deliver(&self, line: Bytes, shutdown: &CancellationToken) -> Delivery {
        let received_at = chrono::Utc::now();
        let mut refusals = 0u64;
        loop {
            let ctx = Context {
                ingress: IngressKind::Stream,
                source: self.source.clone(),
                received_at,
                formats: self.cfg.formats,
            };
            let started = Instant::now();
            let wait = match self.pipeline.accept(line.clone(), ctx).await {
                Ok(report) => {
                    if let Some(ms) = report.newest_event_ms.and_then(|ms| u64::try_from(ms).ok()) {
                        self.runtime
                            .position
                            .advance(UNIX_EPOCH + Duration::from_millis(ms));
                    }
                    self.metrics
                        .accept_latency
                        .observe(started.elapsed().as_secs_f64());
                    if refusals > 0 {
                        self.runtime.acceptance.accepting();
                    }
                    if refusals > 0 {
                        tracing::info!(stream = %self.cfg.name, refusals, "pipeline accepted the held line");
                    }
                    tracing::trace!(
                        stream = %self.cfg.name,
                        spooled = report.spooled,
                        duplicates = report.duplicates,
                        "stream line accepted"
                    );
                    return Delivery::Delivered;
                }
                Err(AcceptError::Full { retry_after }) if !retry_after.is_zero() => retry_after,
                Err(AcceptError::Full { .. }) => self.cfg.unavailable_retry,
                Err(AcceptError::TooLarge(reason)) => {
                    // Holding it would stop the stream for good; it can never be taken.
                    tracing::error!(stream = %self.cfg.name, %reason, bytes = line.len(), "stream line can never be spooled; skipped");
                    return Delivery::Delivered;
                }
                Err(AcceptError::Unavailable(reason)) => {
                    if refusals == 0 {
                        tracing::warn!(stream = %self.cfg.name, %reason, "pipeline unavailable; holding the stream");
                    }
                    self.cfg.unavailable_retry
                }
            };
            if refusals == 0 {
                self.runtime.acceptance.stopped(SystemTime::now());
                tracing::warn!(
                    stream = %self.cfg.name,
                    retry_ms = wait.as_millis() as u64,
                    "pipeline refused a stream line; holding it and pausing reads"
                );
            }
            refusals += 1;
            self.metrics.backpressure.inc();
            tokio::select! {
                _ = shutdown.cancelled() => return Delivery::Shutdown,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backfill_minutes_round_up_and_stop_past_five() {
        let s = Duration::from_secs;
        assert_eq!(backfill_minutes(Duration::ZERO), Some(1));
        assert_eq!(backfill_minutes(Duration::from_millis(300)), Some(1));
        assert_eq!(backfill_minutes(s(60)), Some(1));
        assert_eq!(backfill_minutes(Duration::from_millis(60_001)), Some(2));
        assert_eq!(backfill_minutes(s(61)), Some(2));
        assert_eq!(backfill_minutes(s(299)), Some(5));
        assert_eq!(backfill_minutes(s(300)), Some(5));
        assert_eq!(backfill_minutes(Duration::from_millis(300_001)), None);
        assert_eq!(backfill_minutes(s(3600)), None);
    }

    #[test]
    fn in_stream_errors_are_recognised() {
        let op = br#"{"errors":[{"title":"operational-disconnect","disconnect_type":"OperationalDisconnect","detail":"This stream has been disconnected for operational reasons.","type":"https://api.twitter.com/2/problems/operational-disconnect"}]}"#;
        assert!(in_stream_error(op).is_some());
        let too_many = br#"{"title":"ConnectionException","detail":"This stream is currently at the maximum allowed connection limit.","connection_issue":"TooManyConnections","type":"https://api.twitter.com/2/problems/streaming-connection"}"#;
        // Not wrapped in `errors`: not recognised as an in-stream error object…
        assert!(in_stream_error(too_many).is_none());
        // …but wrapped, it is.
        let wrapped = format!(
            "{{\"errors\":[{}]}}",
            std::str::from_utf8(too_many).unwrap()
        );
        assert!(in_stream_error(wrapped.as_bytes()).is_some());
        let v1 = br#"{"disconnect":{"code":7,"stream_name":"x","reason":"admin logout"}}"#;
        assert!(in_stream_error(v1).is_some());
        // Other errors are events for the pipeline to count.
        let xaa = br#"{"errors":[{"title":"Not Found Error","detail":"no such user"}]}"#;
        assert!(in_stream_error(xaa).is_none());
        // Event text mentioning the words is not an error object.
        let ev = br#"{"event_type":"tweet_create_events","tweet_create_events":[{"text":"errors: disconnect TooManyConnections"}]}"#;
        assert!(in_stream_error(ev).is_none());
        let data = br#"{"data":{"event_type":"post.create"},"errors":[{"title":"disconnect"}]}"#;
        assert!(in_stream_error(data).is_none());
        assert!(in_stream_error(b"not json disconnect").is_none());
    }

    #[test]
    fn initial_resume_by_gap_length() {
        let s = Duration::from_secs;
        let now = UNIX_EPOCH + s(1_795_000_000); // 2026-11-18T…
        assert_eq!(initial_resume(s(30), now), Resume::Backfill(1));
        assert_eq!(initial_resume(s(241), now), Resume::Backfill(5));
        assert_eq!(initial_resume(s(300), now), Resume::Backfill(5));
        let two_h = initial_resume(s(7200), now);
        let want = chrono::DateTime::<chrono::Utc>::from_timestamp(1_795_000_000 - 7200, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert_eq!(two_h, Resume::StartTime(want));
        assert!(matches!(initial_resume(s(301), now), Resume::StartTime(_)));
        assert!(matches!(
            initial_resume(s(86_400), now),
            Resume::StartTime(_)
        ));
        let old = chrono::DateTime::<chrono::Utc>::from_timestamp(1_795_000_000 - 86_400 + 60, 0)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        assert_eq!(initial_resume(s(86_401), now), Resume::TooOld(old));
    }

    /// Every connection asks for the gap since the stream's position in X's time, less
    /// the margin: the recorded one after a restart, then the newest event time accepted.
    /// A line without an event time does not move it (a reconnect asks for the same gap).
    #[tokio::test]
    async fn connections_resume_from_the_position_in_x_time() {
        use parking_lot::Mutex;
        struct Sink(Option<i64>);
        #[async_trait::async_trait]
        impl Pipeline for Sink {
            async fn accept(
                &self,
                _body: Bytes,
                _ctx: Context,
            ) -> Result<crate::AcceptReport, AcceptError> {
                Ok(crate::AcceptReport {
                    spooled: 1,
                    newest_event_ms: self.0,
                    ..Default::default()
                })
            }
        }
        let queries: Arc<Mutex<Vec<String>>> = Arc::default();
        let q = queries.clone();
        let app = axum::Router::new().route(
            "/2/activity/stream",
            axum::routing::get(
                move |axum::extract::RawQuery(raw): axum::extract::RawQuery| {
                    let q = q.clone();
                    async move {
                        q.lock().push(raw.unwrap_or_default());
                        // One line, then the connection ends: the client reconnects.
                        "{\"n\":1}\n"
                    }
                },
            ),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let run_case = |gap: Duration, newest: Option<Duration>| {
            let queries = queries.clone();
            async move {
                queries.lock().clear();
                let mut cfg = StreamConfig::new("t");
                cfg.url = format!("http://{addr}/2/activity/stream");
                let runtime = StreamRuntime {
                    resume_from: Some(SystemTime::now() - gap),
                    ..StreamRuntime::default()
                };
                let newest = newest.map(|ago| {
                    chrono::Utc::now().timestamp_millis() - i64::try_from(ago.as_millis()).unwrap()
                });
                let stop = CancellationToken::new();
                let task = tokio::spawn({
                    let stop = stop.clone();
                    async move {
                        let registry = prometheus::Registry::new();
                        run_with(cfg, runtime, Arc::new(Sink(newest)), &registry, stop).await
                    }
                });
                while queries.lock().len() < 2 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                stop.cancel();
                task.await.unwrap().unwrap();
                let got = queries.lock().clone();
                got
            }
        };
        let s = Duration::from_secs;
        // Recorded 130 s ago, plus the 2-minute margin: 250 s, 5 minutes of backfill.
        let short = run_case(s(130), None).await;
        assert_eq!(short[0], "backfill_minutes=5", "{short:?}");
        assert_eq!(
            short[1], "backfill_minutes=5",
            "the position did not move: {short:?}"
        );
        // The line accepted carried an event 10 s old: 130 s, 3 minutes.
        let moved = run_case(s(130), Some(s(10))).await;
        assert_eq!(moved[0], "backfill_minutes=5", "{moved:?}");
        assert_eq!(moved[1], "backfill_minutes=3", "{moved:?}");
        let long = run_case(s(3 * 3600), None).await;
        let start_age = |query: &str| {
            let t: String = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "start_time")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_else(|| panic!("no start_time in {query}"));
            let t = chrono::DateTime::parse_from_rfc3339(&t).unwrap();
            chrono::Utc::now().signed_duration_since(t).num_seconds()
        };
        let want = 3 * 3600 + 120;
        assert!((want..want + 60).contains(&start_age(&long[0])), "{long:?}");
        // A catch-up cut short asks for the same gap again, not for a minute.
        assert!((want..want + 60).contains(&start_age(&long[1])), "{long:?}");
    }

    #[test]
    fn debug_redacts_the_token() {
        let cfg = StreamConfig::new("AAAA-very-secret-token");
        let dbg = format!("{cfg:?}");
        assert!(!dbg.contains("very-secret"), "{dbg}");
    }
}

/// Why [`read_window`] did not read its whole window.
#[derive(Debug, thiserror::Error)]
pub enum WindowError {
    #[error("activity stream window: {0}")]
    Network(#[source] reqwest::Error),
    #[error("activity stream window: HTTP {status}: {detail}")]
    Http { status: u16, detail: String },
    #[error("activity stream window: no byte for {0:?}")]
    Stalled(Duration),
    #[error("activity stream window: a line over {0} bytes")]
    LineTooLong(usize),
    #[error("activity stream window: stopped")]
    Stopped,
    /// X ended the read before the window's end: an in-stream error object (an
    /// operational disconnect), or a clean close before `end_time`. Not complete: the
    /// next read starts from `newest`, the newest event time accepted from this one.
    #[error("activity stream window: ended early after {accepted} lines: {why}")]
    EndedEarly {
        why: String,
        accepted: u64,
        newest: Option<SystemTime>,
    },
}

impl WindowError {
    /// The newest event time accepted by the read that failed, when it got that far.
    pub fn newest(&self) -> Option<SystemTime> {
        match self {
            WindowError::EndedEarly { newest, .. } => *newest,
            _ => None,
        }
    }
}

/// Reads the window `[from, to]` of the activity stream once (`start_time`, `end_time`: X
/// closes the connection at its end) and hands every line to `pipeline` under `ctx`'s
/// ingress and source, holding a line while the pipeline refuses it. This recovers a gap
/// of the webhook without AAA's replay API: X's XAA webhook replay has no completion event,
/// a stream window has a known end. What was already accepted is dropped by the
/// pipeline's dedup. Returns the number of lines accepted.
///
/// The window is read only when X says so: the body ends cleanly once `end_time` has
/// passed. An in-stream error object (an operational disconnect: never handed to the
/// pipeline) or a clean close before `end_time` is [`WindowError::EndedEarly`], with the
/// newest event time accepted, where the next read resumes.
pub async fn read_window(
    cfg: &StreamConfig,
    pipeline: &dyn Pipeline,
    ctx: &Context,
    from: SystemTime,
    to: SystemTime,
    stop: &CancellationToken,
) -> Result<u64, WindowError> {
    let resp = open_window(cfg, from, to).await?;
    let mut body = resp.bytes_stream();
    let mut reader = LineReader::new(cfg.max_line_bytes);
    let mut accepted = 0u64;
    let mut newest: Option<i64> = None;
    let ended_early = |why: String, accepted: u64, newest: Option<i64>| WindowError::EndedEarly {
        why,
        accepted,
        newest: newest
            .and_then(|ms| u64::try_from(ms).ok())
            .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
    };
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return Err(WindowError::Stopped),
            r = tokio::time::timeout(cfg.idle_timeout, body.next()) => r,
        };
        match next {
            Err(_) => return Err(WindowError::Stalled(cfg.idle_timeout)),
            Ok(None) if SystemTime::now() < to => {
                return Err(ended_early(
                    "X closed the read before its end_time".into(),
                    accepted,
                    newest,
                ))
            }
            Ok(None) => return Ok(accepted),
            Ok(Some(Err(e))) => return Err(WindowError::Network(e.without_url())),
            Ok(Some(Ok(chunk))) => reader.push(&chunk),
        }
        loop {
            let line = match reader.next_line() {
                Ok(Some(Line::Data(l))) => l,
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(_) => return Err(WindowError::LineTooLong(cfg.max_line_bytes)),
            };
            if let Some(why) = in_stream_error(&line) {
                return Err(ended_early(why, accepted, newest));
            }
            if let Some(t) = accept_window_line(cfg, pipeline, ctx, line, stop).await? {
                newest = Some(newest.map_or(t, |n| n.max(t)));
            }
            accepted += 1;
        }
    }
}

/// Asks X for the window `from`..`to`; the response once X said yes.
async fn open_window(
    cfg: &StreamConfig,
    from: SystemTime,
    to: SystemTime,
) -> Result<reqwest::Response, WindowError> {
    let rfc = |t: SystemTime| {
        chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    };
    let client = reqwest::Client::builder()
        .connect_timeout(cfg.connect_timeout)
        .build()
        .map_err(WindowError::Network)?;
    let resp = client
        .get(&cfg.url)
        .bearer_auth(cfg.bearer_token.expose())
        .header(USER_AGENT, &cfg.user_agent)
        .header(ACCEPT, "application/json")
        // Whole seconds: the start rounded down, the end up, so nothing at either edge is
        // left out.
        .query(&[
            ("start_time", rfc(from)),
            ("end_time", rfc(to + Duration::from_nanos(999_999_999))),
        ])
        .send()
        .await
        .map_err(|e| WindowError::Network(e.without_url()))?;
    let status = resp.status();
    if !status.is_success() {
        let detail: String = resp
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        return Err(WindowError::Http {
            status: status.as_u16(),
            detail,
        });
    }
    Ok(resp)
}

/// Hands one line of a window to the pipeline, waiting while it refuses (a full spool);
/// the newest event time it holds.
async fn accept_window_line(
    cfg: &StreamConfig,
    pipeline: &dyn Pipeline,
    ctx: &Context,
    line: Bytes,
    stop: &CancellationToken,
) -> Result<Option<i64>, WindowError> {
    loop {
        let wait = match pipeline.accept(line.clone(), ctx.clone()).await {
            Ok(report) => return Ok(report.newest_event_ms),
            Err(AcceptError::TooLarge(reason)) => {
                tracing::error!(%reason, "stream window line can never be spooled; skipped");
                return Ok(None);
            }
            Err(AcceptError::Full { retry_after }) if !retry_after.is_zero() => retry_after,
            Err(_) => cfg.unavailable_retry,
        };
        tokio::select! {
            _ = stop.cancelled() => return Err(WindowError::Stopped),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
