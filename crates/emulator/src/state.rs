//! The emulator's state (apps, webhooks, subscriptions, jobs, the record of everything
//! sent) and X's side of webhook delivery: CRC checks, signed POSTs, retries, replay.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::config::{AppConfig, EmulatorConfig, StreamFaults};
use crate::error::ApiError;
use crate::events::{inspect, Format};
use crate::ids::IdGen;

mod crc;
mod replay;
mod revoke;
use revoke::revoke_of;

/// `sha256=<base64 HMAC-SHA256(key, message)>`, as X computes CRC answers and signatures.
pub fn sign(key: &str, message: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(key.as_bytes()) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(message);
    format!(
        "sha256={}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Outcome of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The webhook answered 2xx in time.
    Delivered,
    /// Non-2xx, timeout or connection error.
    Failed,
    /// Not sent: the webhook was invalid or gone.
    Skipped,
}

/// One delivery attempt of one body to one webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    /// The webhook.
    pub webhook_id: String,
    /// The app whose secret signed it.
    pub app: String,
    /// The URL posted to.
    pub url: String,
    /// 1 for the first try, 2–4 for retries.
    pub attempt: u32,
    /// The (scaled) wait before this attempt, ms: 0, then 3 s, 27 s, 242 s × time_scale.
    pub wait_before_ms: u64,
    /// When it was sent.
    pub at: DateTime<Utc>,
    /// Time to the answer (or the error), ms.
    pub latency_ms: u64,
    /// HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The error, when there was no usable answer.
    pub error: Option<String>,
    /// Delivered, failed or skipped.
    pub outcome: AttemptOutcome,
    /// Set when this attempt belongs to a replay job.
    pub replay_job_id: Option<String>,
}

/// One emitted body and what happened to it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentEvent {
    /// Emission sequence number (1, 2, …).
    pub seq: u64,
    /// X ids of the single events in it.
    pub ids: Vec<String>,
    /// Its format.
    pub format: Format,
    /// AAA key or XAA event type.
    pub key: String,
    /// Envelope types of the single events in it.
    pub types: Vec<String>,
    /// The subscribed user it is for.
    pub for_user_id: Option<String>,
    /// When it happened (may be set in the past by the emitter, for replay tests).
    pub emitted_at: DateTime<Utc>,
    /// `admin`, `fixture`, `generator`, `replay`, `handle`.
    pub origin: String,
    /// Set when this body is a deliberate duplicate of an earlier one.
    pub duplicate_of: Option<u64>,
    /// Body size in bytes.
    pub bytes: usize,
    /// How many stream connections it was written to.
    pub streamed: u32,
    /// Every webhook delivery attempt, in order.
    pub deliveries: Vec<DeliveryAttempt>,
    /// The body (only in answers that ask for it).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub body: Option<Value>,
    #[serde(skip)]
    pub(crate) raw: Bytes,
}

/// One CRC check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrcCheck {
    /// When.
    pub at: DateTime<Utc>,
    /// `registration`, `put`, `periodic`, `admin`.
    pub reason: String,
    /// Whether it passed.
    pub ok: bool,
    /// HTTP status of the answer.
    pub status: Option<u16>,
    /// Time to the answer, ms.
    pub latency_ms: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// A registered webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    /// Id.
    pub id: String,
    /// App name.
    pub app: String,
    /// URL.
    pub url: String,
    /// Passed its last CRC.
    pub valid: bool,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// AAA subscriptions: user ids, in subscription order.
    pub subscriptions: Vec<String>,
    /// CRC checks, latest last (at most 100 kept).
    pub crc_checks: Vec<CrcCheck>,
}

/// An activity / XAA subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivitySubscription {
    /// Id.
    pub id: String,
    /// App name.
    pub app: String,
    /// XAA event type (XAA shape).
    pub event_type: Option<String>,
    /// Event types (stream shape).
    pub event_types: Vec<String>,
    /// User id (stream shape, or the XAA filter's `user_id`).
    pub user_id: Option<String>,
    /// XAA filter.
    pub filter: Value,
    /// Tag.
    pub tag: Option<String>,
    /// Webhook events are delivered to.
    pub webhook_id: Option<String>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Updated.
    pub updated_at: DateTime<Utc>,
}

/// A replay job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayJob {
    /// Id.
    pub job_id: String,
    /// App name.
    pub app: String,
    /// Webhook.
    pub webhook_id: String,
    /// Window start (inclusive).
    pub from: DateTime<Utc>,
    /// Window end (exclusive).
    pub to: DateTime<Utc>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// `running`, `Complete` or `Incomplete`.
    pub state: String,
    /// Bodies re-delivered.
    pub events: usize,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// One stream connection attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamConnection {
    /// Id (1, 2, …).
    pub id: u64,
    /// When it was attempted.
    pub at: DateTime<Utc>,
    /// Query parameters.
    pub params: BTreeMap<String, String>,
    /// `User-Agent`.
    pub user_agent: Option<String>,
    /// HTTP status answered.
    pub status: u16,
    /// `connected`, `unauthorized`, `rate_limited`, `unavailable`, `too_many_connections`,
    /// `invalid_params`.
    pub outcome: String,
    /// When it ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// `client_closed`, `dropped`, `operational_disconnect`, `too_slow`, `shutdown`,
    /// `end_time` (and `stalled` while stalled).
    pub end_reason: Option<String>,
    /// Event lines written (backfill included).
    pub lines_sent: u64,
    /// Of which backfill.
    pub backfilled: u64,
    /// Heartbeats written.
    pub heartbeats_sent: u64,
    /// Whether it is stalled.
    pub stalled: bool,
}

/// A command to a live stream connection.
#[derive(Debug, Clone)]
pub(crate) enum StreamCmd {
    Line(Bytes),
    Drop,
    Stall,
    Disconnect,
}

pub(crate) struct LiveConn {
    pub id: u64,
    pub tx: mpsc::Sender<StreamCmd>,
}

#[derive(Default)]
pub(crate) struct StreamState {
    pub faults: StreamFaults,
    pub live: Vec<LiveConn>,
    pub records: Vec<StreamConnection>,
    pub next_id: u64,
}

#[derive(Default)]
pub(crate) struct Db {
    pub webhooks: Vec<Webhook>,
    pub activity: Vec<ActivitySubscription>,
    pub jobs: Vec<ReplayJob>,
    pub replay_incomplete: bool,
    /// This many more replay jobs finish `Incomplete`, whatever `replay_incomplete` says.
    pub replay_incomplete_next: usize,
}

#[derive(Default)]
pub(crate) struct EventLog {
    pub events: VecDeque<SentEvent>,
    pub next_seq: u64,
}

impl EventLog {
    fn get_mut(&mut self, seq: u64) -> Option<&mut SentEvent> {
        let first = self.events.front()?.seq;
        let idx = seq.checked_sub(first)? as usize;
        self.events.get_mut(idx)
    }
}

/// Options of one emission.
#[derive(Debug, Clone, Default)]
pub struct EmitOptions {
    /// When the event happened (default now).
    pub at: Option<DateTime<Utc>>,
    /// Origin label.
    pub origin: Option<String>,
    /// Duplicate of this earlier emission.
    pub duplicate_of: Option<u64>,
}

/// A short summary of one emission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Emitted {
    /// Sequence number (key into `/admin/sent`).
    pub seq: u64,
    /// Format.
    pub format: Format,
    /// AAA key / XAA event type.
    pub key: String,
    /// Envelope types.
    pub types: Vec<String>,
    /// X ids.
    pub ids: Vec<String>,
    /// Target user.
    pub for_user_id: Option<String>,
    /// Webhooks it is being delivered to.
    pub webhooks: Vec<String>,
    /// Stream connections it was written to.
    pub streamed: u32,
    /// For an app-permission revoke: the webhooks whose subscription of the revoking user
    /// X removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unsubscribed: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub webhook_id: String,
    pub app: String,
    pub url: String,
    pub secret: String,
}

pub(crate) struct Shared {
    pub cfg: EmulatorConfig,
    pub http: reqwest::Client,
    pub ids: IdGen,
    pub cancel: CancellationToken,
    // The stores below are private to `state` (and its files): the rest of the crate goes
    // through the methods here, which hold a lock only for the closure they run (never
    // across an await).
    db: Mutex<Db>,
    log: Mutex<EventLog>,
    stream: Mutex<StreamState>,
    rate: Mutex<HashMap<String, (u64, u32)>>,
    sems: Mutex<HashMap<String, Arc<Semaphore>>>,
    generator: Mutex<Option<GeneratorRun>>,
}

/// A running background generator (started and stopped by `crate::generator`).
pub struct GeneratorRun {
    pub(crate) cancel: tokio_util::sync::CancellationToken,
    pub(crate) cfg: crate::config::GeneratorConfig,
    pub(crate) emitted: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) done: Arc<std::sync::atomic::AtomicBool>,
}

fn random_token(n: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| CHARS[rng.gen_range(0..CHARS.len())] as char)
        .collect()
}

impl Shared {
    /// Runs `f` on the management records (webhooks, subscriptions, replay jobs).
    pub(crate) fn with_db<R>(&self, f: impl FnOnce(&mut Db) -> R) -> R {
        f(&mut self.db.lock())
    }

    /// Runs `f` on the stream connections (live ones, their records, the faults).
    pub(crate) fn with_streams<R>(&self, f: impl FnOnce(&mut StreamState) -> R) -> R {
        f(&mut self.stream.lock())
    }

    /// Counts one request of `key` in its rate window starting at `now` (Unix seconds):
    /// the window's reset time and the requests in it so far, this one included.
    pub(crate) fn count_request(&self, key: String, now: u64) -> (u64, u32) {
        let mut m = self.rate.lock();
        let e = m.entry(key).or_insert((now, 0));
        let window = self.cfg.rate_window_secs.max(1);
        if now >= e.0 + window {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        (e.0 + window, e.1)
    }

    /// Puts `run` in the generator slot; returns what was there.
    pub(crate) fn replace_generator(&self, run: Option<GeneratorRun>) -> Option<GeneratorRun> {
        std::mem::replace(&mut *self.generator.lock(), run)
    }

    /// Runs `f` on the running (or last) generator, if any.
    pub(crate) fn with_generator<R>(&self, f: impl FnOnce(Option<&GeneratorRun>) -> R) -> R {
        f(self.generator.lock().as_ref())
    }

    pub fn new(cfg: EmulatorConfig) -> Result<Self, crate::EmulatorError> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("x-emulator (X webhook delivery stand-in)")
            .build()?;
        let faults = cfg.stream.faults.clone();
        let replay_incomplete = cfg.replay_incomplete;
        Ok(Self {
            http,
            ids: IdGen::new(rand::thread_rng().gen_range(0..1024)),
            db: Mutex::new(Db {
                replay_incomplete,
                ..Db::default()
            }),
            log: Mutex::new(EventLog {
                next_seq: 1,
                ..EventLog::default()
            }),
            stream: Mutex::new(StreamState {
                faults,
                next_id: 1,
                ..StreamState::default()
            }),
            cancel: CancellationToken::new(),
            rate: Mutex::new(HashMap::new()),
            sems: Mutex::new(HashMap::new()),
            generator: Mutex::new(None),
            cfg,
        })
    }

    pub fn app(&self, name: &str) -> Option<&AppConfig> {
        self.cfg.apps.iter().find(|a| a.name == name)
    }

    // ---------------------------------------------------------------- CRC

    /// Registers a webhook for an app (`POST /2/webhooks`).
    pub async fn register_webhook(&self, app: &str, url: &str) -> Result<Webhook, ApiError> {
        let parsed = url::Url::parse(url)
            .map_err(|e| ApiError::bad("UrlValidationFailed", format!("invalid url: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none_or(str::is_empty)
            || url.len() > 2048
        {
            return Err(ApiError::bad(
                "UrlValidationFailed",
                "the url must be an http(s) URL with a host",
            ));
        }
        if parsed.query().is_some_and(|q| q.contains("crc_token")) {
            return Err(ApiError::bad(
                "UrlValidationFailed",
                "the url must not carry a crc_token",
            ));
        }
        self.check_new_webhook(app, url)?;
        let secret = self
            .app(app)
            .map(|a| a.consumer_secret.clone())
            .ok_or_else(|| ApiError::unauthorized("unknown app"))?;
        let check = self.crc(url, &secret, "registration").await;
        if !check.ok {
            tracing::warn!(url, error = ?check.error, "webhook registration: CRC failed");
            return Err(ApiError::bad(
                "CrcValidationFailed",
                format!(
                    "CRC check against {url} failed: {}",
                    check.error.unwrap_or_default()
                ),
            ));
        }
        let w = Webhook {
            id: self.ids.next_str(),
            app: app.to_owned(),
            url: url.to_owned(),
            valid: true,
            created_at: Utc::now(),
            subscriptions: Vec::new(),
            crc_checks: vec![check],
        };
        {
            // Checked again under the same lock as the insert: a concurrent registration
            // of the same URL may have won while the CRC ran.
            let mut db = self.db.lock();
            Self::check_new_webhook_in(&db, self.cfg.max_webhooks, app, url)?;
            db.webhooks.push(w.clone());
        }
        tracing::info!(webhook_id = w.id, url, app, "webhook registered");
        Ok(w)
    }

    fn check_new_webhook(&self, app: &str, url: &str) -> Result<(), ApiError> {
        let db = self.db.lock();
        Self::check_new_webhook_in(&db, self.cfg.max_webhooks, app, url)
    }

    fn check_new_webhook_in(
        db: &Db,
        max_webhooks: usize,
        app: &str,
        url: &str,
    ) -> Result<(), ApiError> {
        if db.webhooks.iter().any(|w| w.app == app && w.url == url) {
            return Err(ApiError::bad(
                "DuplicateUrlFailed",
                format!("a webhook with url {url} is already registered for this app"),
            ));
        }
        let n = db.webhooks.iter().filter(|w| w.app == app).count();
        if n >= max_webhooks {
            return Err(ApiError::bad(
                "WebhookLimitExceeded",
                format!(
                    "this app already has {n} webhook(s); the limit is {}",
                    max_webhooks
                ),
            ));
        }
        Ok(())
    }

    /// The app's webhook, or `WebhookIdInvalid`.
    pub fn webhook(&self, app: &str, id: &str) -> Result<Webhook, ApiError> {
        self.db
            .lock()
            .webhooks
            .iter()
            .find(|w| w.id == id && w.app == app)
            .cloned()
            .ok_or_else(|| {
                ApiError::bad(
                    "WebhookIdInvalid",
                    format!("webhook {id} does not exist for this app"),
                )
            })
    }

    /// Subscribes a user to a webhook (AAA).
    pub fn subscribe(&self, app: &str, webhook_id: &str, user_id: &str) -> Result<(), ApiError> {
        let mut db = self.db.lock();
        let unique: std::collections::HashSet<&String> = db
            .webhooks
            .iter()
            .filter(|w| w.app == app)
            .flat_map(|w| w.subscriptions.iter())
            .collect();
        let is_new_user = !unique.contains(&user_id.to_owned());
        let count = unique.len();
        let w = db
            .webhooks
            .iter_mut()
            .find(|w| w.id == webhook_id && w.app == app)
            .ok_or_else(|| {
                ApiError::bad(
                    "WebhookIdInvalid",
                    format!("webhook {webhook_id} does not exist for this app"),
                )
            })?;
        if w.subscriptions.iter().any(|u| u == user_id) {
            return Err(ApiError::bad(
                "DuplicateSubscriptionFailed",
                format!("user {user_id} is already subscribed to webhook {webhook_id}"),
            ));
        }
        if is_new_user && count >= self.cfg.max_subscriptions {
            return Err(ApiError::bad(
                "SubscriptionLimitExceeded",
                format!(
                    "this app has {count} subscription(s); the limit is {}",
                    self.cfg.max_subscriptions
                ),
            ));
        }
        w.subscriptions.push(user_id.to_owned());
        tracing::info!(webhook_id, user_id, app, "user subscribed");
        Ok(())
    }

    // ------------------------------------------------------------ emit

    /// Emits one body: records it, writes it to the stream and starts webhook deliveries.
    pub fn emit_raw(self: &Arc<Self>, raw: Bytes, value: Value, opts: EmitOptions) -> Emitted {
        let info = inspect(&value);
        let at = opts.at.unwrap_or_else(Utc::now);
        let seq = {
            let mut log = self.log.lock();
            let seq = log.next_seq;
            log.next_seq += 1;
            log.events.push_back(SentEvent {
                seq,
                ids: info.ids.clone(),
                format: info.format,
                key: info.key.clone(),
                types: info.types.clone(),
                for_user_id: info.for_user_id.clone(),
                emitted_at: at,
                origin: opts.origin.unwrap_or_else(|| "handle".into()),
                duplicate_of: opts.duplicate_of,
                bytes: raw.len(),
                streamed: 0,
                deliveries: Vec::new(),
                body: None,
                raw: raw.clone(),
            });
            while log.events.len() > self.cfg.max_recorded_events.max(1) {
                log.events.pop_front();
            }
            seq
        };
        // Stream.
        let mut streamed = 0;
        if info.format == Format::Stream
            || (info.format == Format::Xaa && self.cfg.stream.include_xaa)
        {
            streamed = self.stream_line(&value);
            if let Some(e) = self.log.lock().get_mut(seq) {
                e.streamed = streamed;
            }
        }
        // Webhooks.
        let targets = self.targets(&info, &value);
        let webhooks = targets.iter().map(|t| t.webhook_id.clone()).collect();
        for t in targets {
            let me = Arc::clone(self);
            let raw = raw.clone();
            tokio::spawn(async move {
                me.deliver(seq, t, raw, None).await;
            });
        }
        // X removes the subscription of a user who revoked the app (after telling it).
        let unsubscribed = revoke_of(&value)
            .map(|(app_id, user)| self.apply_revoke(&app_id, &user))
            .unwrap_or_default();
        tracing::debug!(
            seq,
            format = info.format.as_str(),
            key = info.key,
            "emitted"
        );
        Emitted {
            seq,
            format: info.format,
            key: info.key,
            types: info.types,
            ids: info.ids,
            for_user_id: info.for_user_id,
            webhooks,
            streamed,
            unsubscribed,
        }
    }

    /// Emits a JSON value (serialized compactly).
    pub fn emit_value(self: &Arc<Self>, value: Value, opts: EmitOptions) -> Emitted {
        let raw = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        self.emit_raw(raw, value, opts)
    }

    fn stream_line(&self, value: &Value) -> u32 {
        let mut line = serde_json::to_vec(value).unwrap_or_default();
        line.extend_from_slice(b"\r\n");
        let line = Bytes::from(line);
        let mut st = self.stream.lock();
        let mut n = 0;
        st.live
            .retain(|c| match c.tx.try_send(StreamCmd::Line(line.clone())) {
                Ok(()) => {
                    n += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!(connection = c.id, "stream client too slow: disconnecting");
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
        n
    }

    fn targets(&self, info: &crate::events::EventInfo, value: &Value) -> Vec<Target> {
        let db = self.db.lock();
        let mut out = Vec::new();
        let mut push = |w: &Webhook| {
            if let Some(app) = self.app(&w.app) {
                out.push(Target {
                    webhook_id: w.id.clone(),
                    app: w.app.clone(),
                    url: w.url.clone(),
                    secret: app.consumer_secret.clone(),
                });
            }
        };
        match info.format {
            Format::Aaa if self.cfg.aaa_retired => {}
            Format::Aaa if info.key == "replay_job_status" => {
                let wid = value
                    .get("replay_job_status")
                    .and_then(|r| r.get("webhook_id"))
                    .and_then(Value::as_str);
                for w in db.webhooks.iter().filter(|w| Some(w.id.as_str()) == wid) {
                    push(w);
                }
            }
            Format::Aaa => {
                if let Some(u) = &info.for_user_id {
                    for w in db.webhooks.iter().filter(|w| w.subscriptions.contains(u)) {
                        push(w);
                    }
                }
            }
            Format::Xaa => {
                let mut seen = std::collections::HashSet::new();
                for s in &db.activity {
                    let Some(wid) = &s.webhook_id else { continue };
                    let type_ok = s.event_type.as_deref() == Some(info.key.as_str())
                        || s.event_types.iter().any(|t| t == &info.key);
                    let user_ok = match (&s.user_id, &info.for_user_id) {
                        (Some(a), Some(b)) => a == b,
                        (None, _) => true,
                        (Some(_), None) => false,
                    };
                    // A `direction` filter (like.create) matches only events of it.
                    let direction_ok = match s.filter.get("direction").and_then(Value::as_str) {
                        None => true,
                        Some(d) => {
                            value
                                .pointer("/data/filter/direction")
                                .and_then(Value::as_str)
                                == Some(d)
                        }
                    };
                    if type_ok && user_ok && direction_ok && seen.insert(wid.clone()) {
                        if let Some(w) = db.webhooks.iter().find(|w| &w.id == wid) {
                            push(w);
                        }
                    }
                }
            }
            Format::Stream => {}
        }
        out
    }

    fn record_attempt(&self, seq: u64, a: DeliveryAttempt) {
        if let Some(e) = self.log.lock().get_mut(seq) {
            e.deliveries.push(a);
        }
    }

    fn semaphore(&self, webhook_id: &str) -> Arc<Semaphore> {
        Arc::clone(
            self.sems
                .lock()
                .entry(webhook_id.to_owned())
                .or_insert_with(|| {
                    Arc::new(Semaphore::new(self.cfg.max_in_flight_per_webhook.max(1)))
                }),
        )
    }

    /// Delivers one body to one webhook with X's retry policy. True when delivered.
    pub(crate) async fn deliver(
        &self,
        seq: u64,
        t: Target,
        body: Bytes,
        job: Option<String>,
    ) -> bool {
        let waits = self.cfg.scaled_retry_waits_ms();
        let signature = sign(&t.secret, &body);
        for attempt in 1..=(waits.len() as u32 + 1) {
            let wait = if attempt == 1 {
                0
            } else {
                waits.get(attempt as usize - 2).copied().unwrap_or(0)
            };
            if wait > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
                    _ = self.cancel.cancelled() => return false,
                }
            }
            let mut rec = attempt_record(&t, attempt, wait, job.clone());
            if let Some(why) = self.undeliverable(&t.webhook_id) {
                rec.error = Some(why.into());
                self.record_attempt(seq, rec);
                return false;
            }
            let sem = self.semaphore(&t.webhook_id);
            let Ok(_permit) = sem.acquire_owned().await else {
                return false;
            };
            if self.post(&t, &signature, &body, &mut rec).await {
                self.record_attempt(seq, rec);
                return true;
            }
            tracing::debug!(seq, webhook_id = t.webhook_id, attempt, error = ?rec.error, "delivery attempt failed");
            self.record_attempt(seq, rec);
        }
        tracing::warn!(
            seq,
            webhook_id = t.webhook_id,
            "delivery failed after all retries"
        );
        false
    }

    /// Why nothing can be delivered to the webhook now (deleted, or invalid after a
    /// failed CRC), if so.
    fn undeliverable(&self, webhook_id: &str) -> Option<&'static str> {
        let valid = self
            .db
            .lock()
            .webhooks
            .iter()
            .find(|w| w.id == webhook_id)
            .map(|w| w.valid);
        match valid {
            None => Some("webhook deleted"),
            Some(false) => Some("webhook invalid (failed CRC): not delivered"),
            Some(true) => None,
        }
    }

    /// One signed POST of `body` to `t`, its time, latency, status or error and outcome
    /// written into `rec`. True when delivered (a 2xx answer).
    async fn post(
        &self,
        t: &Target,
        signature: &str,
        body: &Bytes,
        rec: &mut DeliveryAttempt,
    ) -> bool {
        rec.at = Utc::now();
        let t0 = Instant::now();
        let res = self
            .http
            .post(&t.url)
            .header("content-type", "application/json; charset=utf-8")
            .header("x-twitter-webhooks-signature", signature)
            .timeout(Duration::from_millis(self.cfg.delivery_timeout_ms))
            .body(body.clone())
            .send()
            .await;
        rec.latency_ms = t0.elapsed().as_millis() as u64;
        match res {
            Ok(r) if r.status().is_success() => {
                rec.status = Some(r.status().as_u16());
                rec.outcome = AttemptOutcome::Delivered;
                true
            }
            Ok(r) => {
                rec.status = Some(r.status().as_u16());
                rec.error = Some(format!("status {}", r.status().as_u16()));
                rec.outcome = AttemptOutcome::Failed;
                false
            }
            Err(e) => {
                rec.error = Some(if e.is_timeout() {
                    format!("no answer within {} ms", self.cfg.delivery_timeout_ms)
                } else {
                    format!("request failed: {e}")
                });
                rec.outcome = AttemptOutcome::Failed;
                false
            }
        }
    }

    // ---------------------------------------------------------- replay

    /// Recorded emissions with `seq > since`, at most `limit`.
    pub fn sent(&self, since: u64, limit: usize, with_body: bool) -> Vec<SentEvent> {
        self.log
            .lock()
            .events
            .iter()
            .filter(|e| e.seq > since)
            .take(limit)
            .map(|e| {
                let mut e = e.clone();
                if with_body {
                    e.body = serde_json::from_slice(&e.raw).ok();
                }
                e
            })
            .collect()
    }

    /// Recorded stream-bound lines in a time window (for backfill and `start_time`).
    pub fn stream_backlog(&self, from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> Vec<Bytes> {
        let include_xaa = self.cfg.stream.include_xaa;
        self.log
            .lock()
            .events
            .iter()
            .filter(|e| {
                (e.format == Format::Stream || (include_xaa && e.format == Format::Xaa))
                    && e.emitted_at >= from
                    && to.is_none_or(|t| e.emitted_at < t)
            })
            .filter_map(|e| {
                let v: Value = serde_json::from_slice(&e.raw).ok()?;
                let mut line = serde_json::to_vec(&v).ok()?;
                line.extend_from_slice(b"\r\n");
                Some(Bytes::from(line))
            })
            .collect()
    }
}

/// The record of attempt number `attempt` to deliver to `t` after waiting `wait` ms,
/// skipped until it is made.
fn attempt_record(t: &Target, attempt: u32, wait: u64, job: Option<String>) -> DeliveryAttempt {
    DeliveryAttempt {
        webhook_id: t.webhook_id.clone(),
        app: t.app.clone(),
        url: t.url.clone(),
        attempt,
        wait_before_ms: wait,
        at: Utc::now(),
        latency_ms: 0,
        status: None,
        error: None,
        outcome: AttemptOutcome::Skipped,
        replay_job_id: job,
    }
}

/// Constant-time byte comparison.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
