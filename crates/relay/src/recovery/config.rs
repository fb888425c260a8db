//! `[recovery]`: the section, its checks, and which method recovers a webhook gap.

use std::fmt;
use std::time::Duration;

use relay_config::ConfigError;
use relay_xapi::{XClient, XapiError};
use serde::Deserialize;

/// `[recovery]`: X API access for automatic webhook gap recovery and for `activity-relay x
/// --config`. Opt-in (`enabled = false` by default); the liveness record and the streams'
/// resume work without it.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecoveryConfig {
    /// Replay webhook gaps automatically. Default false.
    pub enabled: bool,
    /// X API base URL. Default `https://api.x.com`.
    pub base_url: String,
    /// App-only Bearer token (secret: use `${ENV}`; never logged).
    pub bearer_token: Option<relay_sink::Secret>,
    /// App consumer key (for `activity-relay x` user-context calls only).
    pub consumer_key: Option<String>,
    /// App consumer secret (secret; `activity-relay x` only).
    pub consumer_secret: Option<relay_sink::Secret>,
    /// The X webhook whose deliveries this relay receives (required when enabled).
    pub webhook_id: Option<String>,
    /// Shorter gaps need nothing: X retries a failed delivery for about 5 minutes. Default
    /// 30s.
    #[serde(with = "humantime_serde")]
    pub min_gap: Duration,
    /// Replay jobs of one window that may end other than `Complete` before it is given
    /// up. Default 3.
    pub max_job_attempts: u32,
    /// Longest wait for a job's `replay_job_status`. Default 30m.
    #[serde(with = "humantime_serde")]
    pub job_timeout: Duration,
    /// Wait before retrying a job (after `Incomplete`, `ReplayConflictError` or an error).
    /// Default 1m.
    #[serde(with = "humantime_serde")]
    pub retry_delay: Duration,
    /// The replayed window starts this long before the recorded time (clock skew, events
    /// X timestamps before it delivers them). Default 2m.
    #[serde(with = "humantime_serde")]
    pub safety_margin: Duration,
    /// How often the liveness record is refreshed. Default 10s.
    #[serde(with = "humantime_serde")]
    pub liveness_interval: Duration,
    /// How a webhook gap is recovered: `replay` (AAA's replay API, which reports each job's
    /// end), `stream` (re-reading the gap from X's activity stream with `start_time` and
    /// `end_time`: XAA, a known end, no AAA needed) or `auto` (default: `stream` when
    /// every webhook app accepts only `xaa`, else `replay`). See `docs/gap-recovery.md`.
    pub method: RecoveryMethod,
    /// The activity stream read by `method = "stream"`. Default
    /// `<base_url>/2/activity/stream`.
    pub stream_url: Option<String>,
    /// The webhook app whose events the Bearer token's stream carries (their `source`).
    /// Default: the first app.
    pub app: Option<String>,
}

/// Every default of `RecoveryConfig` is here.
impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            enabled: Default::default(),
            base_url: relay_xapi::DEFAULT_BASE_URL.to_string(),
            bearer_token: Default::default(),
            consumer_key: Default::default(),
            consumer_secret: Default::default(),
            webhook_id: Default::default(),
            min_gap: Duration::from_secs(30),
            max_job_attempts: 3,
            job_timeout: Duration::from_secs(30 * 60),
            retry_delay: Duration::from_secs(60),
            safety_margin: Duration::from_secs(120),
            liveness_interval: Duration::from_secs(10),
            method: Default::default(),
            stream_url: Default::default(),
            app: Default::default(),
        }
    }
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

impl fmt::Debug for RecoveryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecoveryConfig")
            .field("enabled", &self.enabled)
            .field("base_url", &self.base_url)
            .field("bearer_token", &self.bearer_token)
            .field("consumer_key", &self.consumer_key)
            .field("consumer_secret", &self.consumer_secret)
            .field("webhook_id", &self.webhook_id)
            .field("min_gap", &self.min_gap)
            .field("max_job_attempts", &self.max_job_attempts)
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

pub(crate) fn non_empty(o: &Option<String>) -> Option<&str> {
    o.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// A secret that is set to something other than blanks, trimmed.
pub(crate) fn non_empty_secret(o: &Option<relay_sink::Secret>) -> Option<&str> {
    o.as_ref()
        .map(|s| s.expose().trim())
        .filter(|s| !s.is_empty())
}

impl RecoveryConfig {
    /// Checks the section against `[webhook]`. The message names the field, never a value
    /// of a secret.
    pub fn validate(
        &self,
        webhook: Option<&relay_ingress::webhook::WebhookConfig>,
    ) -> Result<(), ConfigError> {
        let bad = |key: &str, problem: String| ConfigError::new("[recovery]", key, problem);
        XClient::new(self.base_url.trim())
            .map_err(|e| bad("base_url", format!("is not usable: {e}")))?;
        if self.max_job_attempts == 0 {
            return Err(bad("max_job_attempts", "must be at least 1".into()));
        }
        if self.job_timeout.is_zero() || self.liveness_interval.is_zero() {
            return Err(bad(
                "job_timeout and liveness_interval",
                "must be positive".into(),
            ));
        }
        if self.consumer_key.is_some() != self.consumer_secret.is_some() {
            return Err(bad(
                "consumer_key and consumer_secret",
                "go together".into(),
            ));
        }
        if let Some(u) = non_empty(&self.stream_url) {
            match url::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => return Err(bad("stream_url", format!("{u:?} is not an http(s) URL"))),
            }
        }
        if let (Some(app), Some(w)) = (non_empty(&self.app), webhook) {
            if !w.apps.iter().any(|a| a.name == app) {
                return Err(bad(
                    "app",
                    format!("{app:?} is not a [[webhook.apps]] name"),
                ));
            }
        }
        if self.enabled {
            let Some(webhook) = webhook else {
                return Err(bad(
                    "enabled",
                    "= true replays the webhook's deliveries: it needs a [webhook] section".into(),
                ));
            };
            if non_empty_secret(&self.bearer_token).is_none() {
                return Err(bad(
                    "bearer_token",
                    "is required by enabled = true (the app's Bearer token)".into(),
                ));
            }
            let replay = self.method_for(Some(webhook)) == RecoveryMethod::Replay;
            match non_empty(&self.webhook_id) {
                Some(id)
                    if id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') => {}
                Some(id) => {
                    return Err(bad("webhook_id", format!("{id:?} is not an X webhook id")))
                }
                None if replay => {
                    return Err(bad(
                        "webhook_id",
                        "is required by method replay (the X webhook this relay receives)".into(),
                    ))
                }
                None => {}
            }
        }
        Ok(())
    }

    /// The X client for this section (Bearer, and consumer key/secret when set).
    pub fn client(&self) -> Result<XClient, XapiError> {
        let mut c = XClient::new(self.base_url.trim())?;
        if let Some(t) = non_empty_secret(&self.bearer_token) {
            c = c.bearer_token(t);
        }
        if let (Some(k), Some(s)) = (
            non_empty(&self.consumer_key),
            non_empty_secret(&self.consumer_secret),
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
                self.max_job_attempts
            ),
            _ => format!(
                "recovery: webhook {} replayed through {} after gaps of {} or more (at most {} jobs per window)",
                self.webhook_id.as_deref().unwrap_or("?"),
                self.base_url.trim(),
                humantime::format_duration(self.min_gap),
                self.max_job_attempts
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let e = c.validate(None).unwrap_err().to_string();
        assert!(e.contains("[webhook]"), "{e}");
        let e = c.validate(w).unwrap_err().to_string();
        assert!(e.contains("bearer_token"), "{e}");
        c.bearer_token = Some("AAAA-secret-token".into());
        let e = c.validate(w).unwrap_err().to_string();
        assert!(e.contains("webhook_id"), "{e}");
        // XAA only: `auto` recovers through the stream, which needs no webhook id.
        assert_eq!(c.method_for(Some(&xaa)), RecoveryMethod::Stream);
        assert_eq!(c.method_for(w), RecoveryMethod::Replay);
        assert!(c.validate(Some(&xaa)).is_ok());
        c.method = RecoveryMethod::Replay;
        assert!(c
            .validate(Some(&xaa))
            .unwrap_err()
            .to_string()
            .contains("webhook_id"));
        c.method = RecoveryMethod::Stream;
        assert_eq!(c.method_for(w), RecoveryMethod::Stream);
        assert_eq!(c.stream_url(), "https://api.x.com/2/activity/stream");
        c.app = Some("nope".into());
        assert!(c
            .validate(Some(&xaa))
            .unwrap_err()
            .to_string()
            .contains("nope"));
        c.app = Some("b".into());
        c.stream_url = Some("not a url".into());
        assert!(c
            .validate(Some(&xaa))
            .unwrap_err()
            .to_string()
            .contains("stream_url"));
        c.stream_url = None;
        c.app = None;
        c.method = RecoveryMethod::Auto;
        c.webhook_id = Some("1146654567674912769".into());
        assert!(c.validate(w).is_ok());
        c.max_job_attempts = 0;
        assert!(c
            .validate(w)
            .unwrap_err()
            .to_string()
            .contains("max_job_attempts"));
        c.max_job_attempts = 3;
        c.base_url = "ftp://x".into();
        assert!(c.validate(w).unwrap_err().to_string().contains("base_url"));
        c.consumer_secret = Some("cs-secret".into());
        let dbg = format!("{c:?}");
        assert!(
            !dbg.contains("secret-token") && !dbg.contains("cs-secret"),
            "{dbg}"
        );
    }
}
