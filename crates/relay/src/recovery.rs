//! Automatic gap recovery (`docs/gap-recovery.md`).
//!
//! * **Liveness record**: while running, the relay writes `liveness.json` in the spool
//!   directory (temp file + fsync + rename) every `liveness_interval` and at graceful
//!   shutdown: per ingress (`webhook`, `stream:<name>`), the time up to which it was
//!   accepting. At the next start, the gap of an ingress is `now − recorded time`; nothing
//!   recorded (first start, or a corrupt file, with a warning) means no gap.
//! * **Streams**: the relay sets [`relay_ingress::stream::StreamConfig::resume_from`]; the
//!   first connection asks X for `backfill_minutes` (gap ≤ 5 min) or `start_time` (≤ 24 h).
//! * **Webhook**: with `[recovery] enabled` and a gap of at least `min_gap`, a background
//!   task replays the gap through X's Account Activity replay API, one window (≤ 2 h) at a
//!   time, waiting for each job's `replay_job_status` event to come through the pipeline
//!   ([`JobStatus`], published by [`crate::pipeline::RelayPipeline`]). Replayed events that
//!   had already been accepted are dropped by the pipeline's dedup.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};
use relay_xapi::replay::{ReplayError, ReplayRules, Window};
use relay_xapi::{XClient, XapiError};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Name of the liveness record inside the spool directory.
pub const LIVENESS_FILE: &str = "liveness.json";
/// The webhook ingress's key in the liveness record.
pub const WEBHOOK_KEY: &str = "webhook";

/// The liveness key of the stream named `name`.
pub fn stream_key(name: &str) -> String {
    format!("stream:{name}")
}

// ---------------------------------------------------------------------------------------
// Configuration

/// `[recovery]`: X API access for automatic webhook gap recovery and for `activity-relay x
/// --config`. Opt-in (`enabled = false` by default); the liveness record and the streams'
/// resume work without it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryConfig {
    /// Replay webhook gaps automatically. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// X API base URL. Default `https://api.x.com`.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// App-only Bearer token (secret: use `${ENV}`; never logged).
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// App consumer key (for `activity-relay x` user-context calls only).
    #[serde(default)]
    pub consumer_key: Option<String>,
    /// App consumer secret (secret; `activity-relay x` only).
    #[serde(default)]
    pub consumer_secret: Option<String>,
    /// The X webhook whose deliveries this relay receives (required when enabled).
    #[serde(default)]
    pub webhook_id: Option<String>,
    /// Shorter gaps need nothing: X retries a failed delivery for about 5 minutes. Default
    /// 30s.
    #[serde(default = "default_min_gap", with = "humantime_serde")]
    pub min_gap: Duration,
    /// Replay jobs of one window that may end other than `Complete` before it is given
    /// up. Default 3.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Longest wait for a job's `replay_job_status`. Default 30m.
    #[serde(default = "default_job_timeout", with = "humantime_serde")]
    pub job_timeout: Duration,
    /// Wait before retrying a job (after `Incomplete`, `ReplayConflictError` or an error).
    /// Default 1m.
    #[serde(default = "default_retry_delay", with = "humantime_serde")]
    pub retry_delay: Duration,
    /// The replayed window starts this long before the recorded time (clock skew, events
    /// X timestamps before it delivers them). Default 2m.
    #[serde(default = "default_safety_margin", with = "humantime_serde")]
    pub safety_margin: Duration,
    /// How often the liveness record is refreshed. Default 10s.
    #[serde(default = "default_liveness_interval", with = "humantime_serde")]
    pub liveness_interval: Duration,
    /// How a webhook gap is recovered: `replay` (AAA's replay API, which reports each job's
    /// end), `stream` (re-reading the gap from X's activity stream with `start_time` and
    /// `end_time`: XAA, a known end, no AAA needed) or `auto` (default: `stream` when
    /// every webhook app accepts only `xaa`, else `replay`). See `docs/gap-recovery.md`.
    #[serde(default)]
    pub method: RecoveryMethod,
    /// The activity stream read by `method = "stream"`. Default
    /// `<base_url>/2/activity/stream`.
    #[serde(default)]
    pub stream_url: Option<String>,
    /// The webhook app whose events the Bearer token's stream carries (their `source`).
    /// Default: the first app.
    #[serde(default)]
    pub app: Option<String>,
}

/// `[recovery] method`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecoveryMethod {
    #[default]
    Auto,
    Replay,
    Stream,
}

impl RecoveryConfig {
    /// The method in effect for `webhook`: `auto` is `stream` when every app accepts only
    /// XAA (AAA's replay API retires with AAA on 2027-01-01), else `replay`.
    pub fn method_for(
        &self,
        webhook: Option<&relay_ingress::webhook::WebhookConfig>,
    ) -> RecoveryMethod {
        match self.method {
            RecoveryMethod::Auto => match webhook {
                Some(w)
                    if !w.apps.is_empty()
                        && w.apps
                            .iter()
                            .all(|a| a.formats == relay_envelope::Formats::XAA) =>
                {
                    RecoveryMethod::Stream
                }
                _ => RecoveryMethod::Replay,
            },
            m => m,
        }
    }

    /// The stream URL of `method = "stream"`.
    pub fn stream_url(&self) -> String {
        match non_empty(&self.stream_url) {
            Some(u) => u.to_string(),
            None => format!(
                "{}/2/activity/stream",
                self.base_url.trim().trim_end_matches('/')
            ),
        }
    }
}

fn default_base_url() -> String {
    relay_xapi::DEFAULT_BASE_URL.to_string()
}
fn default_min_gap() -> Duration {
    Duration::from_secs(30)
}
fn default_max_attempts() -> u32 {
    3
}
fn default_job_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}
fn default_retry_delay() -> Duration {
    Duration::from_secs(60)
}
fn default_safety_margin() -> Duration {
    Duration::from_secs(120)
}
fn default_liveness_interval() -> Duration {
    Duration::from_secs(10)
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            enabled: false,
            base_url: default_base_url(),
            bearer_token: None,
            consumer_key: None,
            consumer_secret: None,
            webhook_id: None,
            min_gap: default_min_gap(),
            max_attempts: default_max_attempts(),
            job_timeout: default_job_timeout(),
            retry_delay: default_retry_delay(),
            safety_margin: default_safety_margin(),
            liveness_interval: default_liveness_interval(),
            method: RecoveryMethod::Auto,
            stream_url: None,
            app: None,
        }
    }
}

impl fmt::Debug for RecoveryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |o: &Option<String>| o.as_ref().map(|_| "[redacted]");
        f.debug_struct("RecoveryConfig")
            .field("enabled", &self.enabled)
            .field("base_url", &self.base_url)
            .field("bearer_token", &hidden(&self.bearer_token))
            .field("consumer_key", &self.consumer_key)
            .field("consumer_secret", &hidden(&self.consumer_secret))
            .field("webhook_id", &self.webhook_id)
            .field("min_gap", &self.min_gap)
            .field("max_attempts", &self.max_attempts)
            .field("job_timeout", &self.job_timeout)
            .field("retry_delay", &self.retry_delay)
            .field("safety_margin", &self.safety_margin)
            .field("liveness_interval", &self.liveness_interval)
            .field("method", &self.method)
            .field("stream_url", &self.stream_url)
            .field("app", &self.app)
            .finish()
    }
}

fn non_empty(o: &Option<String>) -> Option<&str> {
    o.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

impl RecoveryConfig {
    /// Checks the section against `[webhook]`. The message names the field, never a value
    /// of a secret.
    pub fn validate(
        &self,
        webhook: Option<&relay_ingress::webhook::WebhookConfig>,
    ) -> Result<(), String> {
        XClient::new(self.base_url.trim()).map_err(|e| format!("base_url: {e}"))?;
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.job_timeout.is_zero() || self.liveness_interval.is_zero() {
            return Err("job_timeout and liveness_interval must be positive".into());
        }
        if self.consumer_key.is_some() != self.consumer_secret.is_some() {
            return Err("consumer_key and consumer_secret go together".into());
        }
        if let Some(u) = non_empty(&self.stream_url) {
            match url::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => return Err(format!("stream_url {u:?} is not an http(s) URL")),
            }
        }
        if let (Some(app), Some(w)) = (non_empty(&self.app), webhook) {
            if !w.apps.iter().any(|a| a.name == app) {
                return Err(format!("app {app:?} is not a [[webhook.app]] name"));
            }
        }
        if self.enabled {
            let Some(webhook) = webhook else {
                return Err(
                    "enabled = true replays the webhook's deliveries: it needs a [webhook] section"
                        .into(),
                );
            };
            if non_empty(&self.bearer_token).is_none() {
                return Err("enabled = true needs bearer_token (the app's Bearer token)".into());
            }
            let replay = self.method_for(Some(webhook)) == RecoveryMethod::Replay;
            match non_empty(&self.webhook_id) {
                Some(id)
                    if id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {}
                Some(id) => return Err(format!("webhook_id {id:?} is not an X webhook id")),
                None if replay => {
                    return Err(
                        "method replay needs webhook_id (the X webhook this relay receives)".into(),
                    )
                }
                None => {}
            }
        }
        Ok(())
    }

    /// The X client for this section (Bearer, and consumer key/secret when set).
    pub fn client(&self) -> Result<XClient, XapiError> {
        let mut c = XClient::new(self.base_url.trim())?;
        if let Some(t) = non_empty(&self.bearer_token) {
            c = c.bearer_token(t);
        }
        if let (Some(k), Some(s)) = (
            non_empty(&self.consumer_key),
            non_empty(&self.consumer_secret),
        ) {
            c = c.consumer(k, s);
        }
        Ok(c)
    }

    /// One line for `run --check`.
    pub fn summary(&self, webhook: Option<&relay_ingress::webhook::WebhookConfig>) -> String {
        if !self.enabled {
            return "recovery: webhook gaps not replayed (streams resume from the liveness record)"
                .to_string();
        }
        match self.method_for(webhook) {
            RecoveryMethod::Stream => format!(
                "recovery: webhook gaps of {} or more re-read from the activity stream {} (at most {} reads per gap)",
                humantime::format_duration(self.min_gap),
                self.stream_url(),
                self.max_attempts
            ),
            _ => format!(
                "recovery: webhook {} replayed through {} after gaps of {} or more (at most {} jobs per window)",
                self.webhook_id.as_deref().unwrap_or("?"),
                self.base_url.trim(),
                humantime::format_duration(self.min_gap),
                self.max_attempts
            ),
        }
    }
}

/// Fills the `x` subcommand's unset base URL and credentials from `[recovery]` of the relay
/// config at `path` (only that section is read and `${ENV}`-expanded). Flags and their
/// environment variables were parsed first, so they win.
pub fn apply_x_config(
    args: &mut relay_xapi::cli::XArgs,
    path: &Path,
) -> Result<(), crate::config::ConfigError> {
    let r = crate::config::Config::load_recovery(path)?;
    let fill = |slot: &mut Option<String>, v: &Option<String>| {
        if non_empty(slot).is_none() {
            if let Some(v) = non_empty(v) {
                *slot = Some(v.to_string());
            }
        }
    };
    fill(&mut args.base_url, &Some(r.base_url.clone()));
    fill(&mut args.bearer_token, &r.bearer_token);
    if non_empty(&args.consumer_key).is_none() && non_empty(&args.consumer_secret).is_none() {
        fill(&mut args.consumer_key, &r.consumer_key);
        fill(&mut args.consumer_secret, &r.consumer_secret);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Liveness record

/// Why the liveness record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LivenessError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a liveness record: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

#[derive(Serialize, Deserialize)]
struct LivenessDoc {
    version: u32,
    /// Ingress key → time up to which it was accepting.
    alive_until: BTreeMap<String, DateTime<Utc>>,
    /// Ingress key → start of the part of an earlier gap not replayed yet.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    replay_pending_from: BTreeMap<String, DateTime<Utc>>,
}

/// Per ingress, the time up to which the relay was accepting, and where an unfinished
/// replay of an earlier gap stood.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Liveness {
    pub alive_until: BTreeMap<String, DateTime<Utc>>,
    /// The start of what is left of a gap whose replay had not finished when the relay
    /// stopped (a restart during recovery resumes it instead of losing it).
    pub replay_pending_from: BTreeMap<String, DateTime<Utc>>,
}

/// Where the running webhook recovery stands (`None`: nothing left to replay); written into
/// the liveness record.
pub type Pending = Arc<parking_lot::Mutex<Option<DateTime<Utc>>>>;

impl Liveness {
    /// The record's path in `dir`.
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(LIVENESS_FILE)
    }

    /// Reads the record; `Ok(None)` when there is none (first start).
    pub fn read(dir: &Path) -> Result<Option<Liveness>, LivenessError> {
        let path = Liveness::path(dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LivenessError::Io { path, source }),
        };
        let doc: LivenessDoc =
            serde_json::from_slice(&bytes).map_err(|e| LivenessError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if doc.version != 1 {
            return Err(LivenessError::Corrupt {
                path,
                reason: format!("unknown version {}", doc.version),
            });
        }
        Ok(Some(Liveness {
            alive_until: doc.alive_until,
            replay_pending_from: doc.replay_pending_from,
        }))
    }

    /// Reads the record; an unreadable or corrupt one is logged and treated as none.
    pub fn load(dir: &Path) -> Liveness {
        match Liveness::read(dir) {
            Ok(Some(l)) => l,
            Ok(None) => {
                tracing::info!("no liveness record: first start, no gap to recover");
                Liveness::default()
            }
            Err(e) => {
                tracing::warn!(error = %e, "liveness record unusable; treated as none (no gap recovered)");
                Liveness::default()
            }
        }
    }

    /// Writes the record atomically: temp file, fsync, rename, fsync of the directory.
    pub fn store(&self, dir: &Path) -> Result<(), LivenessError> {
        let path = Liveness::path(dir);
        let tmp = dir.join(format!("{LIVENESS_FILE}.tmp"));
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| LivenessError::Io { path: p, source }
        };
        let doc = LivenessDoc {
            version: 1,
            alive_until: self.alive_until.clone(),
            replay_pending_from: self.replay_pending_from.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| LivenessError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        {
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Best effort: not every platform can fsync a directory.
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// A record of `keys`, all alive until `at`.
    pub fn all_at(keys: &[String], at: DateTime<Utc>) -> Liveness {
        Liveness {
            alive_until: keys.iter().map(|k| (k.clone(), at)).collect(),
            replay_pending_from: BTreeMap::new(),
        }
    }

    /// How long `key` has been down at `now`; `None` when nothing was recorded for it.
    pub fn gap(&self, key: &str, now: DateTime<Utc>) -> Option<Duration> {
        let t = self.alive_until.get(key)?;
        Some((now - *t).to_std().unwrap_or(Duration::ZERO))
    }
}

/// Refreshes the liveness record of the ingresses (and the webhook's `pending` replay)
/// every `interval` until `stop`, then once more (call it after the ingresses stopped
/// accepting, so the last record is exact). Each ingress is recorded as alive up to when it
/// last took everything X sent ([`relay_ingress::Acceptance`]): one that is up but refusing
/// (spool full) or disconnected (a stream in backoff) stops advancing, so the next start
/// sees the real gap.
pub async fn keep_alive(
    dir: PathBuf,
    ingresses: Vec<(String, relay_ingress::Acceptance)>,
    interval: Duration,
    pending: Pending,
    stop: CancellationToken,
) {
    let mut failing = false;
    loop {
        let stopping = stop.is_cancelled();
        let mut rec = Liveness {
            alive_until: ingresses
                .iter()
                .map(|(k, a)| (k.clone(), DateTime::<Utc>::from(a.accepted_up_to())))
                .collect(),
            replay_pending_from: BTreeMap::new(),
        };
        if let Some(p) = *pending.lock() {
            rec.replay_pending_from.insert(WEBHOOK_KEY.to_string(), p);
        }
        let d = dir.clone();
        match tokio::task::spawn_blocking(move || rec.store(&d)).await {
            Ok(Ok(())) => {
                if failing {
                    tracing::info!("liveness record written again");
                }
                failing = false;
            }
            Ok(Err(e)) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot write the liveness record (a restart then recovers a longer gap)");
                }
                failing = true;
            }
            Err(e) => tracing::warn!(error = %e, "liveness write task failed"),
        }
        if stopping {
            tracing::debug!("liveness record written at shutdown");
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

// ---------------------------------------------------------------------------------------
// Job status hook

/// A `replay_job_status` event accepted by the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStatus {
    pub job_id: String,
    /// `Complete`, `Incomplete`, or whatever X sends.
    pub job_state: String,
}

/// Reads job id and state from a `replay.job_status` envelope's payload (the
/// `replay_job_status` object, or a body wrapping it).
pub fn job_status_of(env: &relay_envelope::Envelope) -> Option<JobStatus> {
    if env.event_type != relay_envelope::taxonomy::REPLAY_JOB_STATUS {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(env.data.payload.get()).ok()?;
    let o = v.get("replay_job_status").unwrap_or(&v);
    let text = |k: &str| match o.get(k)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    Some(JobStatus {
        job_id: text("job_id")?,
        job_state: text("job_state")?,
    })
}

// ---------------------------------------------------------------------------------------
// Metrics

/// Metrics of gap recovery.
#[derive(Clone)]
pub struct RecoveryMetrics {
    /// `activity_relay_replay_jobs_total{outcome}`: `started`, `complete`, `incomplete`
    /// (ended otherwise, or no status within `job_timeout`), `failed` (a window given up).
    pub jobs: IntCounterVec,
    /// `activity_relay_recovery_gap_seconds{ingress}`: what is left of the gap being
    /// recovered (0 when none).
    pub gap: GaugeVec,
}

impl RecoveryMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let jobs = IntCounterVec::new(
            Opts::new(
                "activity_relay_replay_jobs_total",
                "Replay jobs of automatic gap recovery, by outcome (started, complete, incomplete, failed = window given up)",
            ),
            &["outcome"],
        )?;
        r.register(Box::new(jobs.clone()))?;
        for o in ["started", "complete", "incomplete", "failed"] {
            jobs.with_label_values(&[o]);
        }
        let gap = GaugeVec::new(
            Opts::new(
                "activity_relay_recovery_gap_seconds",
                "Seconds of the ingress's gap still being recovered by replay (0 when none)",
            ),
            &["ingress"],
        )?;
        r.register(Box::new(gap.clone()))?;
        gap.with_label_values(&[WEBHOOK_KEY]).set(0.0);
        Ok(RecoveryMetrics { jobs, gap })
    }
}

// ---------------------------------------------------------------------------------------
// Webhook gap planning

/// What to do about the webhook's downtime at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebhookGap {
    /// Nothing recorded: first start.
    FirstStart,
    /// Shorter than `min_gap`: X's own retries cover it.
    Short(Duration),
    /// Long enough to replay; recovery is disabled.
    NotRecovered(Duration),
    /// Replay `[from, to)`.
    Recover {
        gap: Duration,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    },
}

/// Decides about the webhook's gap from its recorded time `last_alive` (and the start of
/// a replay left unfinished by the previous run, `pending_from`) at `now`.
pub fn webhook_gap(
    cfg: &RecoveryConfig,
    last_alive: Option<DateTime<Utc>>,
    pending_from: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> WebhookGap {
    let Some(last) = last_alive.or(pending_from) else {
        return WebhookGap::FirstStart;
    };
    let gap = (now - last).to_std().unwrap_or(Duration::ZERO);
    let unfinished = pending_from.map(|p| (now - p).to_std().unwrap_or(Duration::ZERO));
    if gap < cfg.min_gap && unfinished.is_none() {
        return WebhookGap::Short(gap);
    }
    if !cfg.enabled {
        return WebhookGap::NotRecovered(gap.max(unfinished.unwrap_or(Duration::ZERO)));
    }
    let margin = chrono::Duration::from_std(cfg.safety_margin).unwrap_or_default();
    let from = match pending_from {
        Some(p) => p.min(last - margin),
        None => last - margin,
    };
    WebhookGap::Recover {
        gap: gap.max(unfinished.unwrap_or(Duration::ZERO)),
        from,
        to: now,
    }
}

fn floor_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.timestamp_opt(t.timestamp().div_euclid(60) * 60, 0)
        .single()
        .unwrap_or(t)
}

fn ceil_minute(t: DateTime<Utc>) -> DateTime<Utc> {
    let f = floor_minute(t);
    if f == t {
        t
    } else {
        f + chrono::Duration::minutes(1)
    }
}

/// When the rest `[from, to)` of a gap that cannot be replayed yet (too recent) becomes
/// replayable in one window: `from_date` at least 31 minutes ago and `to_date` at least 10
/// minutes ago. `None` when it never will (all of it older than X keeps, or it is
/// replayable already).
pub fn eligible_at(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    rules: &ReplayRules,
) -> Option<DateTime<Utc>> {
    if from >= to || ceil_minute(to) <= now - rules.max_age + chrono::Duration::minutes(1) {
        return None;
    }
    let at = (floor_minute(from) + rules.from_min_age).max(ceil_minute(to) + rules.to_min_age);
    (at > now).then_some(at)
}

// ---------------------------------------------------------------------------------------
// The recovery task

enum WindowEnd {
    /// Complete, or given up.
    Done,
    Stopped,
}

enum Waited {
    State(String),
    TimedOut,
    Stopped,
}

/// Replays a webhook gap, one job at a time.
pub struct WebhookRecovery {
    pub client: XClient,
    pub webhook_id: String,
    pub cfg: RecoveryConfig,
    pub statuses: broadcast::Receiver<JobStatus>,
    pub metrics: RecoveryMetrics,
    pub rules: ReplayRules,
    /// Kept at the start of what is left to replay, for the liveness record.
    pub pending: Pending,
}

impl WebhookRecovery {
    /// Replays `[from, to)` until done or `stop`.
    pub async fn run(mut self, from: DateTime<Utc>, to: DateTime<Utc>, stop: CancellationToken) {
        let gauge = self.metrics.gap.with_label_values(&[WEBHOOK_KEY]);
        let mut from = from;
        let mut lost_warned = false;
        tracing::info!(
            webhook_id = %self.webhook_id,
            from = %from.to_rfc3339(),
            to = %to.to_rfc3339(),
            "webhook gap recovery started"
        );
        loop {
            gauge.set((to - from).num_seconds().max(0) as f64);
            *self.pending.lock() = Some(from);
            if from >= to || stop.is_cancelled() {
                break;
            }
            let now = Utc::now();
            let windows = relay_xapi::replay::plan_windows_with(from, to, now, &self.rules);
            let Some(w) = windows.first().copied() else {
                match eligible_at(from, to, now, &self.rules) {
                    Some(at) => {
                        tracing::info!(
                            from = %from.to_rfc3339(),
                            to = %to.to_rfc3339(),
                            eligible_at = %at.to_rfc3339(),
                            "rest of the gap too recent for X's replay rules; waiting"
                        );
                        let wait =
                            (at - now).to_std().unwrap_or(Duration::ZERO) + Duration::from_secs(5);
                        if !sleep_or_stop(wait, &stop).await {
                            break;
                        }
                        continue;
                    }
                    None => {
                        tracing::warn!(
                            from = %from.to_rfc3339(),
                            to = %to.to_rfc3339(),
                            "rest of the gap cannot be replayed (older than X keeps); it is lost"
                        );
                        break;
                    }
                }
            };
            if w.from > ceil_minute(from) && !lost_warned {
                lost_warned = true;
                tracing::warn!(
                    lost_from = %from.to_rfc3339(),
                    lost_to = %w.from.to_rfc3339(),
                    "part of the gap is older than X's 24 h replay limit; it is lost"
                );
            }
            match self.window(&w, &stop).await {
                WindowEnd::Done => from = w.to,
                WindowEnd::Stopped => break,
            }
        }
        if stop.is_cancelled() {
            tracing::info!(pending_from = %from.to_rfc3339(), "webhook gap recovery interrupted by shutdown; the next start resumes it");
        } else {
            *self.pending.lock() = None;
            gauge.set(0.0);
            tracing::info!("webhook gap recovery finished");
        }
    }

    /// Runs one window until a job of it completes or `max_attempts` jobs did not.
    async fn window(&mut self, w: &Window, stop: &CancellationToken) -> WindowEnd {
        let mut attempts = 0u32;
        let mut conflict_since: Option<tokio::time::Instant> = None;
        let (from, to) = (w.from_date(), w.to_date());
        loop {
            if stop.is_cancelled() {
                return WindowEnd::Stopped;
            }
            let wait = match self
                .client
                .replay_account_activity(&self.webhook_id, w)
                .await
            {
                Ok(job) => {
                    conflict_since = None;
                    attempts += 1;
                    self.metrics.jobs.with_label_values(&["started"]).inc();
                    tracing::info!(job_id = %job.job_id, %from, %to, attempt = attempts, "replay job started");
                    match self.wait_status(&job.job_id, stop).await {
                        Waited::Stopped => return WindowEnd::Stopped,
                        Waited::State(s) if s == "Complete" => {
                            self.metrics.jobs.with_label_values(&["complete"]).inc();
                            tracing::info!(job_id = %job.job_id, %from, %to, "replay job complete");
                            return WindowEnd::Done;
                        }
                        Waited::State(s) => {
                            self.metrics.jobs.with_label_values(&["incomplete"]).inc();
                            tracing::warn!(job_id = %job.job_id, job_state = %s, %from, %to, attempt = attempts, "replay job did not complete");
                        }
                        Waited::TimedOut => {
                            self.metrics.jobs.with_label_values(&["incomplete"]).inc();
                            tracing::warn!(job_id = %job.job_id, timeout = ?self.cfg.job_timeout, %from, %to, "no replay_job_status within job_timeout");
                        }
                    }
                    self.cfg.retry_delay
                }
                Err(e) if e.reason() == Some("ReplayConflictError") => {
                    // Another job runs for this webhook (ours from before a restart, or an
                    // operator's): wait for it, up to job_timeout.
                    let since = *conflict_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= self.cfg.job_timeout {
                        attempts += 1;
                        conflict_since = None;
                        tracing::warn!(%from, %to, "another replay job kept running for job_timeout");
                    } else {
                        tracing::info!(%from, %to, "another replay job runs for this webhook; waiting");
                    }
                    self.cfg.retry_delay
                }
                Err(XapiError::Replay(rule)) => match rule {
                    ReplayError::FromTooRecent { .. }
                    | ReplayError::ToTooRecent { .. }
                    | ReplayError::FromInFuture { .. }
                    | ReplayError::ToInFuture { .. } => {
                        let now = Utc::now();
                        let at = eligible_at(w.from, w.to, now, &self.rules).unwrap_or(now);
                        tracing::info!(%from, %to, eligible_at = %at.to_rfc3339(), error = %rule, "window not replayable yet; waiting");
                        (at - now).to_std().unwrap_or(Duration::ZERO) + Duration::from_secs(5)
                    }
                    other => {
                        self.metrics.jobs.with_label_values(&["failed"]).inc();
                        tracing::error!(%from, %to, error = %other, "window cannot be replayed; its events are lost");
                        return WindowEnd::Done;
                    }
                },
                Err(XapiError::RateLimited { rate_limit }) => {
                    let wait = rate_limit
                        .and_then(|rl| rl.wait_from(Utc::now()))
                        .unwrap_or(self.cfg.retry_delay);
                    tracing::warn!(%from, %to, wait_secs = wait.as_secs(), "replay rate limited; waiting for the reset");
                    wait
                }
                Err(e) => {
                    attempts += 1;
                    tracing::warn!(%from, %to, attempt = attempts, error = %e, "replay request failed");
                    self.cfg.retry_delay
                }
            };
            if attempts >= self.cfg.max_attempts {
                self.metrics.jobs.with_label_values(&["failed"]).inc();
                tracing::error!(%from, %to, attempts, "replay window given up after max_attempts; events X did not re-deliver are lost");
                return WindowEnd::Done;
            }
            if !sleep_or_stop(wait, stop).await {
                return WindowEnd::Stopped;
            }
        }
    }

    async fn wait_status(&mut self, job_id: &str, stop: &CancellationToken) -> Waited {
        let deadline = tokio::time::Instant::now() + self.cfg.job_timeout;
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return Waited::Stopped,
                r = tokio::time::timeout_at(deadline, self.statuses.recv()) => r,
            };
            match next {
                Err(_) => return Waited::TimedOut,
                Ok(Ok(s)) if s.job_id == job_id => return Waited::State(s.job_state),
                Ok(Ok(s)) => {
                    tracing::debug!(job_id = %s.job_id, "replay_job_status of another job")
                }
                Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                    tracing::warn!(missed = n, "replay_job_status events missed (lagged)")
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => return Waited::Stopped,
            }
        }
    }
}

/// Sleeps `d`; false when `stop` came first.
async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relay_xapi::replay::plan_windows;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn liveness_round_trip_and_gap() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Liveness::read(dir.path()).unwrap(), None);
        assert_eq!(Liveness::load(dir.path()), Liveness::default());
        let at = t("2026-11-22T03:00:00.250Z");
        let keys = vec![WEBHOOK_KEY.to_string(), stream_key("main")];
        let rec = Liveness::all_at(&keys, at);
        rec.store(dir.path()).unwrap();
        let back = Liveness::read(dir.path()).unwrap().unwrap();
        assert_eq!(back, rec);
        assert!(back.replay_pending_from.is_empty());
        let mut with_pending = rec.clone();
        with_pending
            .replay_pending_from
            .insert(WEBHOOK_KEY.into(), t("2026-11-22T01:00:00Z"));
        with_pending.store(dir.path()).unwrap();
        assert_eq!(Liveness::read(dir.path()).unwrap().unwrap(), with_pending);
        rec.store(dir.path()).unwrap();
        assert!(!dir.path().join("liveness.json.tmp").exists());
        let now = t("2026-11-22T03:10:00.250Z");
        assert_eq!(back.gap(WEBHOOK_KEY, now), Some(Duration::from_secs(600)));
        assert_eq!(back.gap("stream:main", now), Some(Duration::from_secs(600)));
        assert_eq!(back.gap("stream:other", now), None);
        // A clock that went backwards is no gap.
        assert_eq!(
            back.gap(WEBHOOK_KEY, t("2026-11-22T02:00:00Z")),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn corrupt_liveness_is_no_record() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            &b"{\"version\":1,\"alive_"[..],
            b"",
            b"[1,2]",
            b"{\"version\":9,\"alive_until\":{}}",
        ] {
            std::fs::write(dir.path().join(LIVENESS_FILE), bad).unwrap();
            assert!(matches!(
                Liveness::read(dir.path()),
                Err(LivenessError::Corrupt { .. })
            ));
            assert_eq!(Liveness::load(dir.path()), Liveness::default());
        }
    }

    #[test]
    fn gap_thresholds() {
        let mut cfg = RecoveryConfig::default();
        let now = t("2026-11-22T05:00:00Z");
        assert_eq!(webhook_gap(&cfg, None, None, now), WebhookGap::FirstStart);
        assert_eq!(
            webhook_gap(&cfg, Some(t("2026-11-22T04:59:31Z")), None, now),
            WebhookGap::Short(Duration::from_secs(29))
        );
        assert_eq!(
            webhook_gap(&cfg, Some(t("2026-11-22T04:59:30Z")), None, now),
            WebhookGap::NotRecovered(Duration::from_secs(30))
        );
        cfg.enabled = true;
        assert_eq!(
            webhook_gap(&cfg, Some(t("2026-11-22T03:00:00Z")), None, now),
            WebhookGap::Recover {
                gap: Duration::from_secs(7200),
                from: t("2026-11-22T02:58:00Z"),
                to: now
            }
        );
        assert!(matches!(
            webhook_gap(&cfg, Some(t("2026-11-22T04:59:45Z")), None, now),
            WebhookGap::Short(_)
        ));
        // A replay left unfinished by the previous run is resumed, however short the
        // restart.
        assert_eq!(
            webhook_gap(
                &cfg,
                Some(t("2026-11-22T04:59:50Z")),
                Some(t("2026-11-22T04:30:00Z")),
                now
            ),
            WebhookGap::Recover {
                gap: Duration::from_secs(1800),
                from: t("2026-11-22T04:30:00Z"),
                to: now
            }
        );
        cfg.enabled = false;
        assert_eq!(
            webhook_gap(
                &cfg,
                Some(t("2026-11-22T04:59:50Z")),
                Some(t("2026-11-22T04:30:00Z")),
                now
            ),
            WebhookGap::NotRecovered(Duration::from_secs(1800))
        );
    }

    #[test]
    fn too_recent_tails_wait_until_eligible() {
        let r = ReplayRules::default();
        let now = t("2026-11-22T05:00:00Z");
        // Down from 04:50:30 to 04:59:10: from_date 04:50 is replayable at 05:21, to_date
        // 05:00 at 05:10: the later one wins.
        assert_eq!(
            eligible_at(
                t("2026-11-22T04:50:30Z"),
                t("2026-11-22T04:59:10Z"),
                now,
                &r
            ),
            Some(t("2026-11-22T05:21:00Z"))
        );
        // A tail whose start is old enough but whose end is too recent.
        assert_eq!(
            eligible_at(
                t("2026-11-22T04:00:00Z"),
                t("2026-11-22T04:55:00Z"),
                now,
                &r
            ),
            Some(t("2026-11-22T05:05:00Z"))
        );
        // Replayable already: no wait.
        assert_eq!(
            eligible_at(
                t("2026-11-22T03:00:00Z"),
                t("2026-11-22T04:00:00Z"),
                now,
                &r
            ),
            None
        );
        // Older than 24 h: never.
        assert_eq!(
            eligible_at(
                t("2026-11-20T03:00:00Z"),
                t("2026-11-21T04:00:00Z"),
                now,
                &r
            ),
            None
        );
        // Planning and waiting agree: a window is planned exactly when no wait is needed.
        let (from, to) = (t("2026-11-22T04:50:30Z"), t("2026-11-22T04:59:10Z"));
        assert!(plan_windows(from, to, now).is_empty());
        let at = eligible_at(from, to, now, &r).unwrap();
        let w = plan_windows(from, to, at);
        assert_eq!(w.len(), 1);
        assert_eq!(
            (w[0].from_date(), w[0].to_date()),
            ("202611220450".into(), "202611220500".into())
        );
    }

    /// A scripted X: each replay request takes the next answer; a `200` answer's job then
    /// reports `state` through the status channel, as the pipeline would.
    struct FakeX {
        answers: parking_lot::Mutex<std::collections::VecDeque<(u16, String, &'static str)>>,
        requests: parking_lot::Mutex<Vec<String>>,
        statuses: broadcast::Sender<JobStatus>,
    }

    async fn fake_x(
        answers: Vec<(u16, &str, &'static str)>,
    ) -> (String, Arc<FakeX>, broadcast::Receiver<JobStatus>) {
        let (tx, rx) = broadcast::channel(16);
        let st = Arc::new(FakeX {
            answers: parking_lot::Mutex::new(
                answers
                    .into_iter()
                    .map(|(c, b, s)| (c, b.to_string(), s))
                    .collect(),
            ),
            requests: parking_lot::Mutex::default(),
            statuses: tx,
        });
        let app = axum::Router::new()
            .fallback(
                |axum::extract::State(st): axum::extract::State<Arc<FakeX>>,
                 uri: axum::http::Uri| async move {
                    st.requests.lock().push(uri.to_string());
                    let (code, body, state) =
                        st.answers
                            .lock()
                            .pop_front()
                            .unwrap_or((500, "{}".into(), ""));
                    if code == 200 {
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
                        let job_id = v["data"]["job_id"].as_str().unwrap().to_string();
                        let tx = st.statuses.clone();
                        let state = state.to_string();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            let _ = tx.send(JobStatus {
                                job_id,
                                job_state: state,
                            });
                        });
                    }
                    (
                        axum::http::StatusCode::from_u16(code).unwrap(),
                        [("content-type", "application/json")],
                        body,
                    )
                },
            )
            .with_state(st.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), st, rx)
    }

    fn recovery_for(
        base: &str,
        rx: broadcast::Receiver<JobStatus>,
        max_attempts: u32,
    ) -> (WebhookRecovery, Registry) {
        let registry = Registry::new();
        let cfg = RecoveryConfig {
            enabled: true,
            base_url: base.to_string(),
            bearer_token: Some("test-bearer".into()),
            webhook_id: Some("77".into()),
            max_attempts,
            retry_delay: Duration::from_millis(10),
            job_timeout: Duration::from_secs(30),
            ..RecoveryConfig::default()
        };
        let r = WebhookRecovery {
            client: cfg.client().unwrap(),
            webhook_id: "77".into(),
            cfg,
            statuses: rx,
            metrics: RecoveryMetrics::register(&registry).unwrap(),
            rules: ReplayRules::default(),
            pending: Pending::default(),
        };
        (r, registry)
    }

    fn jobs(r: &Registry, outcome: &str) -> u64 {
        r.gather()
            .iter()
            .filter(|f| f.name() == "activity_relay_replay_jobs_total")
            .flat_map(|f| f.get_metric().iter())
            .filter(|m| m.get_label().iter().any(|l| l.value() == outcome))
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    const CONFLICT: &str = r#"{"title":"ReplayConflictError","detail":"a job runs","errors":[{"code":"ReplayConflictError","message":"a job runs"}]}"#;

    #[tokio::test]
    async fn conflicts_are_waited_out_and_incomplete_jobs_retried() {
        let (base, x, rx) = fake_x(vec![
            (409, CONFLICT, ""),
            (
                200,
                r#"{"data":{"job_id":"j1","created_at":"x"}}"#,
                "Incomplete",
            ),
            (409, CONFLICT, ""),
            (
                200,
                r#"{"data":{"job_id":"j2","created_at":"x"}}"#,
                "Complete",
            ),
        ])
        .await;
        let (r, registry) = recovery_for(&base, rx, 3);
        let pending = r.pending.clone();
        let now = Utc::now();
        let (from, to) = (
            now - chrono::Duration::hours(3),
            now - chrono::Duration::hours(2),
        );
        r.run(from, to, CancellationToken::new()).await;
        let reqs = x.requests.lock().clone();
        assert_eq!(reqs.len(), 4, "{reqs:?}");
        let w = &relay_xapi::replay::plan_windows(from, to, now)[0];
        for q in &reqs {
            assert!(q.starts_with("/2/account_activity/replay/webhooks/77/subscriptions/all?"));
            assert!(q.contains(&format!("from_date={}", w.from_date())), "{q}");
            assert!(q.contains(&format!("to_date={}", w.to_date())), "{q}");
        }
        assert_eq!(jobs(&registry, "started"), 2);
        assert_eq!(jobs(&registry, "incomplete"), 1);
        assert_eq!(jobs(&registry, "complete"), 1);
        assert_eq!(jobs(&registry, "failed"), 0);
        assert_eq!(*pending.lock(), None, "nothing left to replay");
    }

    #[tokio::test]
    async fn a_window_is_given_up_after_max_attempts_and_the_next_one_runs() {
        let (base, x, rx) = fake_x(vec![
            (200, r#"{"data":{"job_id":"a1"}}"#, "Incomplete"),
            (400, r#"{"title":"QueryParamInvalid","detail":"nope"}"#, ""),
            (200, r#"{"data":{"job_id":"b1"}}"#, "Complete"),
        ])
        .await;
        let (r, registry) = recovery_for(&base, rx, 2);
        let now = Utc::now();
        // 3 h: two windows (2 h + 1 h).
        let (from, to) = (
            now - chrono::Duration::hours(5),
            now - chrono::Duration::hours(2),
        );
        r.run(from, to, CancellationToken::new()).await;
        let reqs = x.requests.lock().clone();
        assert_eq!(reqs.len(), 3, "{reqs:?}");
        let windows = relay_xapi::replay::plan_windows(from, to, now);
        assert_eq!(windows.len(), 2);
        assert!(
            reqs[1].contains(&windows[0].from_date()),
            "same window retried"
        );
        assert!(
            reqs[2].contains(&windows[1].from_date()),
            "then the next one"
        );
        assert_eq!(jobs(&registry, "started"), 2);
        assert_eq!(jobs(&registry, "incomplete"), 1);
        assert_eq!(jobs(&registry, "failed"), 1);
        assert_eq!(jobs(&registry, "complete"), 1);
    }

    #[test]
    fn job_status_from_envelope() {
        let body = br#"{"replay_job_status":{"webhook_id":"1","job_state":"Incomplete","job_state_description":"x","job_id":"1812"}}"#;
        let ctx = relay_envelope::Context {
            ingress: relay_envelope::IngressKind::Webhook,
            source: "/x/test".into(),
            received_at: Utc::now(),
            formats: relay_envelope::Formats::ALL,
        };
        let envs = relay_envelope::normalize(body, &ctx).unwrap();
        assert_eq!(envs.len(), 1);
        assert_eq!(
            job_status_of(&envs[0]),
            Some(JobStatus {
                job_id: "1812".into(),
                job_state: "Incomplete".into()
            })
        );
        let like = br#"{"for_user_id":"2244994945","favorite_events":[{"id":"a1","created_at":"Mon May 19 14:01:46 +0000 2025","favorited_status":{"id_str":"1"},"user":{"id_str":"3"}}]}"#;
        for e in relay_envelope::normalize(like, &ctx).unwrap() {
            assert_eq!(job_status_of(&e), None);
        }
    }

    #[test]
    fn config_validation_and_redaction() {
        use relay_ingress::webhook::{AppConfig, WebhookConfig};
        let app = |name: &str, formats| AppConfig {
            name: name.into(),
            consumer_secrets: vec!["s".into()],
            source: None,
            formats,
        };
        let both = WebhookConfig::new(vec![app("a", relay_envelope::Formats::ALL)]);
        let xaa = WebhookConfig::new(vec![
            app("a", relay_envelope::Formats::XAA),
            app("b", relay_envelope::Formats::XAA),
        ]);
        let w = Some(&both);
        let mut c = RecoveryConfig::default();
        assert!(c.validate(None).is_ok(), "disabled needs nothing");
        c.enabled = true;
        let e = c.validate(None).unwrap_err();
        assert!(e.contains("[webhook]"), "{e}");
        let e = c.validate(w).unwrap_err();
        assert!(e.contains("bearer_token"), "{e}");
        c.bearer_token = Some("AAAA-secret-token".into());
        let e = c.validate(w).unwrap_err();
        assert!(e.contains("webhook_id"), "{e}");
        // XAA only: `auto` recovers through the stream, which needs no webhook id.
        assert_eq!(c.method_for(Some(&xaa)), RecoveryMethod::Stream);
        assert_eq!(c.method_for(w), RecoveryMethod::Replay);
        assert!(c.validate(Some(&xaa)).is_ok());
        c.method = RecoveryMethod::Replay;
        assert!(c.validate(Some(&xaa)).unwrap_err().contains("webhook_id"));
        c.method = RecoveryMethod::Stream;
        assert_eq!(c.method_for(w), RecoveryMethod::Stream);
        assert_eq!(c.stream_url(), "https://api.x.com/2/activity/stream");
        c.app = Some("nope".into());
        assert!(c.validate(Some(&xaa)).unwrap_err().contains("nope"));
        c.app = Some("b".into());
        c.stream_url = Some("not a url".into());
        assert!(c.validate(Some(&xaa)).unwrap_err().contains("stream_url"));
        c.stream_url = None;
        c.app = None;
        c.method = RecoveryMethod::Auto;
        c.webhook_id = Some("1146654567674912769".into());
        assert!(c.validate(w).is_ok());
        c.max_attempts = 0;
        assert!(c.validate(w).unwrap_err().contains("max_attempts"));
        c.max_attempts = 3;
        c.base_url = "ftp://x".into();
        assert!(c.validate(w).unwrap_err().contains("base_url"));
        c.consumer_secret = Some("cs-secret".into());
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("secret-token") && !dbg.contains("cs-secret"),
            "{dbg}"
        );
    }
}
