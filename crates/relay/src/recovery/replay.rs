//! Webhook gap recovery through AAA's replay API: the gap planned into windows X accepts,
//! one job at a time, each awaited through its `replay_job_status` event.

use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use relay_xapi::replay::{ReplayError, ReplayRules, Window};
use relay_xapi::{XClient, XapiError};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::{Pending, RecoveryConfig, RecoveryMetrics, WEBHOOK_KEY};

/// A `replay_job_status` event accepted by the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStatus {
    pub job_id: String,
    /// `Complete`, `Incomplete`, or whatever X sends.
    pub job_state: String,
}

/// The pipeline hook through which recovery learns of accepted `replay_job_status`
/// events: each one is sent to the recovery task once its delivery is accepted, and, in a
/// fleet, noted in the store for the member that asked for the job.
pub struct JobStatusHook(
    pub tokio::sync::broadcast::Sender<JobStatus>,
    pub Option<crate::cluster::recovery::FleetRecovery>,
);

impl crate::pipeline::AcceptHook for JobStatusHook {
    fn observe(&self, env: &relay_envelope::Envelope) -> Option<crate::pipeline::AfterAccept> {
        let status = job_status_of(env)?;
        let tx = self.0.clone();
        let fleet = self.1.clone();
        Some(Box::new(move || {
            tracing::info!(job_id = %status.job_id, job_state = %status.job_state, "replay_job_status received");
            if let Some(f) = &fleet {
                f.note_job_state(&status.job_id, &status.job_state);
            }
            // No receiver (no recovery running) is fine.
            let _ = tx.send(status);
        }))
    }
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
    /// In a fleet: job statuses other members received, read from the store.
    pub fleet: Option<crate::cluster::recovery::FleetRecovery>,
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

    /// Runs one window until a job of it completes or `max_job_attempts` jobs did not.
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
            if attempts >= self.cfg.max_job_attempts {
                self.metrics.jobs.with_label_values(&["failed"]).inc();
                tracing::error!(%from, %to, attempts, "replay window given up after max_job_attempts; events X did not re-deliver are lost");
                return WindowEnd::Done;
            }
            if !sleep_or_stop(wait, stop).await {
                return WindowEnd::Stopped;
            }
        }
    }

    async fn wait_status(&mut self, job_id: &str, stop: &CancellationToken) -> Waited {
        let deadline = tokio::time::Instant::now() + self.cfg.job_timeout;
        // In a fleet, X may deliver the status to another member: it notes it in the store.
        let mut poll = tokio::time::interval(Duration::from_secs(1));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                _ = stop.cancelled() => return Waited::Stopped,
                r = tokio::time::timeout_at(deadline, self.statuses.recv()) => r,
                _ = poll.tick(), if self.fleet.is_some() => {
                    if let Some(f) = &self.fleet {
                        if let Some(state) = f.job_state(job_id).await {
                            tracing::info!(job_id, job_state = %state, "replay_job_status received by another member of the fleet");
                            return Waited::State(state);
                        }
                    }
                    continue;
                }
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
    use prometheus::Registry;
    use relay_xapi::replay::plan_windows;
    use std::sync::Arc;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
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
            max_job_attempts: max_attempts,
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
            fleet: None,
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
}
