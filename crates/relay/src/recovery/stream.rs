//! Webhook gap recovery through X's activity stream (`[recovery] method = "stream"`,
//! the default when every webhook app takes only XAA).
//!
//! After 2027-01-01 AAA's replay API is gone. XAA's webhook replay (`POST
//! /2/webhooks/replay`) sends no completion event, so a relay cannot tell when a job has
//! delivered everything; re-reading the gap from the stream with `start_time` and
//! `end_time` has a known end (X closes the connection at `end_time`), so the relay knows
//! when the gap is recovered, and a failed read is simply read again. Events that had
//! been accepted already are dropped by the pipeline's dedup (envelope ids do not depend
//! on the ingress).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use relay_envelope::{Context, Formats, IngressKind};
use relay_ingress::stream::{read_window, StreamConfig, WindowError};
use relay_ingress::Pipeline;
use tokio_util::sync::CancellationToken;

use super::{Pending, RecoveryConfig, RecoveryMetrics, WEBHOOK_KEY};

/// How far back X's stream takes `start_time` (24 h), less a minute for clock skew.
pub const STREAM_MAX_AGE: Duration = Duration::from_secs(24 * 3600 - 60);

/// A read that X ended early resumes this long before the newest event time it accepted
/// (X's stream is in event-time order only roughly); what is read twice is dropped by
/// dedup.
pub const RESUME_MARGIN: Duration = Duration::from_secs(120);

/// Re-reads a webhook gap from the activity stream.
pub struct StreamRecovery {
    /// The stream read (URL, token, timeouts, line limit).
    pub stream: StreamConfig,
    /// The `source` of recovered events: the webhook app's.
    pub source: String,
    pub cfg: RecoveryConfig,
    pub metrics: RecoveryMetrics,
    /// Kept at the start of the gap until it is read, for the liveness record.
    pub pending: Pending,
}

impl StreamRecovery {
    /// The recovery of `cfg`'s webhook gaps, reading as `webhook`'s app `cfg.app` (default
    /// the first).
    pub fn new(
        cfg: &RecoveryConfig,
        webhook: &relay_ingress::webhook::WebhookConfig,
        metrics: RecoveryMetrics,
        from: DateTime<Utc>,
    ) -> Self {
        let app = cfg
            .app
            .as_deref()
            .and_then(|n| webhook.apps.iter().find(|a| a.name == n))
            .or(webhook.apps.first());
        let source = app
            .map(|a| {
                a.source
                    .clone()
                    .unwrap_or_else(|| format!("/x/account-activity/webhook/{}", a.name))
            })
            .unwrap_or_else(|| "/x/activity/stream/recovery".to_string());
        let mut stream = StreamConfig::new(cfg.bearer_token.clone().unwrap_or_default());
        stream.name = "recovery".to_string();
        stream.url = cfg.stream_url();
        stream.formats = Formats::XAA;
        StreamRecovery {
            stream,
            source,
            cfg: cfg.clone(),
            metrics,
            pending: Arc::new(parking_lot::Mutex::new(Some(from))),
        }
    }

    /// Reads `[from, to]` into `pipeline`, retrying a failed read up to `max_job_attempts`
    /// times, until done or `stop`.
    pub async fn run(
        self,
        pipeline: Arc<dyn Pipeline>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        stop: CancellationToken,
    ) {
        let gauge = self.metrics.gap.with_label_values(&[WEBHOOK_KEY]);
        gauge.set((to - from).num_seconds().max(0) as f64);
        let oldest = Utc::now() - chrono::Duration::from_std(STREAM_MAX_AGE).unwrap_or_default();
        let mut start = if from < oldest {
            tracing::warn!(
                lost_from = %from.to_rfc3339(),
                lost_to = %oldest.to_rfc3339(),
                "part of the webhook gap is older than the stream's 24 h; it is lost"
            );
            oldest
        } else {
            from
        };
        tracing::info!(
            from = %start.to_rfc3339(),
            to = %to.to_rfc3339(),
            url = %self.stream.url,
            "webhook gap recovery through the activity stream started"
        );
        let ctx = Context {
            ingress: IngressKind::Webhook,
            source: self.source.clone(),
            received_at: Utc::now(),
            formats: Formats::XAA,
        };
        let mut attempts = 0u32;
        let done = loop {
            if start >= to {
                break true;
            }
            attempts += 1;
            self.metrics.jobs.with_label_values(&["started"]).inc();
            let read = read_window(
                &self.stream,
                pipeline.as_ref(),
                &ctx,
                SystemTime::from(start),
                SystemTime::from(to),
                &stop,
            )
            .await;
            match read {
                Ok(lines) => {
                    self.metrics.jobs.with_label_values(&["complete"]).inc();
                    tracing::info!(lines, "webhook gap read from the activity stream");
                    break true;
                }
                Err(WindowError::Stopped) => break false,
                Err(e) => {
                    self.metrics.jobs.with_label_values(&["incomplete"]).inc();
                    // Where the next read starts: past what this one accepted, less the
                    // margin. A read that moved forward does not count against
                    // max_job_attempts (each such read shortens what is left).
                    let resume = e.newest().map(|t| {
                        DateTime::<Utc>::from(t)
                            - chrono::Duration::from_std(RESUME_MARGIN).unwrap_or_default()
                    });
                    if let Some(r) = resume.filter(|r| *r > start) {
                        tracing::info!(error = %e, resume_from = %r.to_rfc3339(), "stream window read ended early; reading on from where it got");
                        start = r;
                        *self.pending.lock() = Some(r);
                        gauge.set((to - r).num_seconds().max(0) as f64);
                        attempts = 0;
                    } else if attempts >= self.cfg.max_job_attempts {
                        self.metrics.jobs.with_label_values(&["failed"]).inc();
                        tracing::error!(error = %e, attempts, from = %start.to_rfc3339(), to = %to.to_rfc3339(), "webhook gap recovery given up after max_job_attempts; events of the gap may be lost (`activity-relay x replay` can still replay it)");
                        break true;
                    } else {
                        tracing::warn!(error = %e, attempts, "stream window read failed; retrying");
                    }
                    let wait = retry_wait(&e, self.cfg.retry_delay);
                    tokio::select! {
                        _ = stop.cancelled() => break false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        };
        if done {
            *self.pending.lock() = None;
            gauge.set(0.0);
            tracing::info!("webhook gap recovery finished");
        } else {
            tracing::info!(pending_from = ?self.pending.lock().map(|t| t.to_rfc3339()), "webhook gap recovery interrupted by shutdown; the next start resumes it");
        }
    }
}

/// The wait before reading again: `retry_delay`, and at least a minute after X's rate
/// limit answer (429).
fn retry_wait(e: &WindowError, retry_delay: Duration) -> Duration {
    match e {
        WindowError::Http { status: 429, .. } => retry_delay.max(Duration::from_secs(60)),
        _ => retry_delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits_wait_at_least_a_minute() {
        let e = WindowError::Http {
            status: 429,
            detail: String::new(),
        };
        assert_eq!(
            retry_wait(&e, Duration::from_secs(1)),
            Duration::from_secs(60)
        );
        let e = WindowError::Network(
            reqwest::Client::new()
                .get("http://a b/")
                .build()
                .expect_err("not a URL"),
        );
        assert_eq!(
            retry_wait(&e, Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn source_is_the_named_app() {
        use relay_ingress::webhook::{AppConfig, WebhookConfig};
        let app = |name: &str, source: Option<&str>| AppConfig {
            name: name.into(),
            consumer_secrets: vec!["s".into()],
            source: source.map(str::to_string),
            formats: Formats::XAA,
        };
        let w = WebhookConfig::new(vec![app("a", None), app("b", Some("/custom"))]);
        let m = RecoveryMetrics::register(&prometheus::Registry::new()).unwrap();
        let mut cfg = RecoveryConfig::default();
        let r = StreamRecovery::new(&cfg, &w, m.clone(), Utc::now());
        assert_eq!(r.source, "/x/account-activity/webhook/a");
        assert_eq!(r.stream.url, "https://api.x.com/2/activity/stream");
        cfg.app = Some("b".into());
        cfg.stream_url = Some("http://127.0.0.1:9/2/activity/stream".into());
        let r = StreamRecovery::new(&cfg, &w, m, Utc::now());
        assert_eq!(r.source, "/custom");
        assert_eq!(r.stream.url, "http://127.0.0.1:9/2/activity/stream");
        assert!(r.pending.lock().is_some());
    }
}
