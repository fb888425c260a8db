//! Typed errors and rate-limit information.

use std::time::Duration;

use chrono::{DateTime, TimeZone as _, Utc};
use serde_json::Value;

use crate::replay::ReplayError;

/// Rate-limit state X reports on a response (`x-rate-limit-limit`, `-remaining`, `-reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RateLimit {
    /// Requests allowed in the window.
    pub limit: Option<u64>,
    /// Requests left in the window.
    pub remaining: Option<u64>,
    /// When the window resets (X sends Unix seconds).
    pub reset: Option<DateTime<Utc>>,
}

impl RateLimit {
    /// Reads the three headers; `None` when none of them is present and parseable.
    pub fn from_headers(headers: &reqwest::header::HeaderMap) -> Option<Self> {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let limit = num("x-rate-limit-limit");
        let remaining = num("x-rate-limit-remaining");
        let reset = num("x-rate-limit-reset")
            .and_then(|s| i64::try_from(s).ok())
            .and_then(|s| Utc.timestamp_opt(s, 0).single());
        if limit.is_none() && remaining.is_none() && reset.is_none() {
            None
        } else {
            Some(Self {
                limit,
                remaining,
                reset,
            })
        }
    }

    /// How long until the reset, from `now` (zero if it has passed; `None` if unknown).
    pub fn wait_from(&self, now: DateTime<Utc>) -> Option<Duration> {
        let reset = self.reset?;
        Some((reset - now).to_std().unwrap_or(Duration::ZERO))
    }
}

impl std::fmt::Display for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let opt = |v: Option<u64>| v.map_or_else(|| "?".to_string(), |v| v.to_string());
        write!(f, "{}/{} left", opt(self.remaining), opt(self.limit))?;
        if let Some(reset) = self.reset {
            write!(f, ", resets at {}", reset.to_rfc3339())?;
        }
        Ok(())
    }
}

/// Everything that can go wrong talking to X. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum XapiError {
    /// X answered with an error status and a reason (e.g. `DuplicateSubscriptionFailed`,
    /// `ReplayConflictError`, `WebhookIdInvalid`).
    #[error("X refused: {reason}: {detail} (HTTP {status})")]
    Refused {
        /// HTTP status.
        status: u16,
        /// X's reason code (`errors[].code`/`type`, `title` or `reason`).
        reason: String,
        /// X's human-readable detail.
        detail: String,
        /// Rate-limit headers on that response.
        rate_limit: Option<RateLimit>,
    },
    /// HTTP 429, not retried (retry disabled, or the reset is further away than allowed).
    #[error("X rate limit exceeded (HTTP 429){}", fmt_rate_limit(.rate_limit))]
    RateLimited {
        /// Rate-limit headers on that response.
        rate_limit: Option<RateLimit>,
    },
    /// The request did not get an HTTP answer (connect, TLS, timeout, …).
    #[error("network error talking to X: {0}")]
    Network(#[source] reqwest::Error),
    /// X's answer was not what the endpoint documents.
    #[error("unexpected response from X (HTTP {status}): {message}")]
    BadResponse {
        /// HTTP status.
        status: u16,
        /// What was wrong.
        message: String,
    },
    /// A replay window breaks one of X's date rules (checked before any call).
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// A credential the call needs was not configured.
    #[error("missing credential: {0} (set the flag or its environment variable)")]
    MissingCredential(&'static str),
    /// A private event type, and no OAuth 2.0 access token of the filtered user.
    #[error("{event_type} is private: it needs an OAuth 2.0 access token of user {user_id} (scope {scope}); none given")]
    UserTokenRequired {
        event_type: String,
        user_id: String,
        scope: &'static str,
    },
    /// The user's token was not granted the scope the event type needs (checked before
    /// calling X).
    #[error("the access token of user {user_id} lacks scope {scope}, needed for {event_type}")]
    MissingScope {
        event_type: String,
        user_id: String,
        scope: &'static str,
    },
    /// A caller-supplied argument is unusable: the usage message says which and why.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A file the command reads or writes (the state, users, user tokens or report file)
    /// cannot be used; never a token's value.
    #[error("invalid argument: {what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A URL (the base URL, or one built from it) does not parse.
    #[error("invalid argument: {what}: {source}")]
    Url {
        what: String,
        #[source]
        source: url::ParseError,
    },
    /// Writing CLI output failed.
    #[error("could not write output: {0}")]
    Output(#[from] std::io::Error),
}

fn fmt_rate_limit(rl: &Option<RateLimit>) -> String {
    rl.map(|rl| format!(": {rl}")).unwrap_or_default()
}

impl XapiError {
    /// X's reason code, when X refused the call.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Refused { reason, .. } => Some(reason),
            Self::RateLimited { .. } => Some("RateLimited"),
            _ => None,
        }
    }

    /// The HTTP status, when there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } | Self::BadResponse { status, .. } => Some(*status),
            Self::RateLimited { .. } => Some(429),
            _ => None,
        }
    }

    /// Builds a [`XapiError::Refused`] from an error response body, reading the reason
    /// tolerantly: `errors[].code` (string or number), `errors[].type`, `title`, `reason`.
    pub fn from_response(status: u16, body: &[u8], rate_limit: Option<RateLimit>) -> Self {
        let (reason, detail) = parse_problem(body);
        Self::Refused {
            status,
            reason: reason.unwrap_or_else(|| format!("HTTP{status}")),
            detail: detail.unwrap_or_else(|| snippet(body)),
            rate_limit,
        }
    }
}

/// A short, printable excerpt of a body for error messages.
pub(crate) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

fn as_reason(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `type` is often a URL (`https://api.twitter.com/2/problems/…`): keep its last segment.
fn type_reason(v: &Value) -> Option<String> {
    let s = as_reason(v)?;
    Some(
        s.rsplit('/')
            .find(|seg| !seg.is_empty())
            .unwrap_or(&s)
            .to_string(),
    )
}

/// Names for the numeric codes of X's v1.1-style error bodies.
fn known_code(code: u64) -> Option<&'static str> {
    Some(match code {
        32 => "AuthenticationFailed",
        34 => "NotFound",
        88 => "RateLimitExceeded",
        89 => "InvalidOrExpiredToken",
        355 => "DuplicateSubscriptionFailed",
        _ => return None,
    })
}

/// Reason and detail from an error body (any of X's shapes). Either may be missing.
pub(crate) fn parse_problem(body: &[u8]) -> (Option<String>, Option<String>) {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => problem_of(&v),
        Err(_) => (None, None),
    }
}

/// Reason and detail from a parsed error body, or from one item of `errors` wrapped as
/// `{"errors":[item]}`.
pub(crate) fn problem_of(v: &Value) -> (Option<String>, Option<String>) {
    let first_error = v
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|a| a.first());
    let mut reason = None;
    let mut detail = None;
    if let Some(e) = first_error {
        // X's v1.1 shapes put a number in `code`: the `message` then says more.
        let code = e.get("code").and_then(as_reason);
        let numeric = e.get("code").is_some_and(Value::is_number);
        reason = if numeric {
            e.get("type")
                .and_then(type_reason)
                .or_else(|| v.get("title").and_then(as_reason))
                .or_else(|| v.get("reason").and_then(as_reason))
                .or_else(|| {
                    e.get("code")
                        .and_then(Value::as_u64)
                        .and_then(known_code)
                        .map(str::to_string)
                })
                .or(code.clone())
        } else {
            code.or_else(|| e.get("reason").and_then(as_reason))
                .or_else(|| e.get("type").and_then(type_reason))
                .or_else(|| e.get("title").and_then(as_reason))
        };
        detail = e
            .get("message")
            .and_then(as_reason)
            .or_else(|| e.get("detail").and_then(as_reason));
        if numeric {
            if let (Some(code), Some(d)) = (e.get("code").and_then(as_reason), detail.as_ref()) {
                if reason.as_deref() != Some(code.as_str()) {
                    detail = Some(format!("{d} (code {code})"));
                }
            }
        }
    }
    let reason = reason
        .or_else(|| v.get("title").and_then(as_reason))
        .or_else(|| v.get("reason").and_then(as_reason))
        .or_else(|| v.get("type").and_then(type_reason));
    let detail = detail
        .or_else(|| v.get("detail").and_then(as_reason))
        .or_else(|| v.get("message").and_then(as_reason));
    (reason, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> (Option<String>, Option<String>) {
        parse_problem(s.as_bytes())
    }

    #[test]
    fn emulator_shape() {
        let (r, d) = parse(
            r#"{"title":"DuplicateSubscriptionFailed","detail":"already","errors":[{"code":"DuplicateSubscriptionFailed","message":"already subscribed"}]}"#,
        );
        assert_eq!(r.as_deref(), Some("DuplicateSubscriptionFailed"));
        assert_eq!(d.as_deref(), Some("already subscribed"));
    }

    #[test]
    fn x_numeric_code_shape() {
        let (r, d) = parse(r#"{"errors":[{"message":"Subscription already exists.","code":355}]}"#);
        assert_eq!(r.as_deref(), Some("DuplicateSubscriptionFailed"));
        assert_eq!(
            d.as_deref(),
            Some("Subscription already exists. (code 355)")
        );
        let (r, d) = parse(r#"{"errors":[{"message":"Something new.","code":999}]}"#);
        assert_eq!(r.as_deref(), Some("999"));
        assert_eq!(d.as_deref(), Some("Something new."));
    }

    #[test]
    fn type_and_title_shapes() {
        let (r, _) =
            parse(r#"{"errors":[{"type":"https://api.x.com/2/problems/ReplayConflictError"}]}"#);
        assert_eq!(r.as_deref(), Some("ReplayConflictError"));
        let (r, d) = parse(r#"{"title":"WebhookIdInvalid","detail":"no such webhook"}"#);
        assert_eq!(r.as_deref(), Some("WebhookIdInvalid"));
        assert_eq!(d.as_deref(), Some("no such webhook"));
        let (r, _) = parse(r#"{"reason":"QueryParamInvalid"}"#);
        assert_eq!(r.as_deref(), Some("QueryParamInvalid"));
        assert_eq!(parse("not json"), (None, None));
    }

    #[test]
    fn refused_display_names_reason() {
        let e = XapiError::from_response(
            400,
            br#"{"title":"ReplayConflictError","detail":"a job runs"}"#,
            None,
        );
        assert_eq!(
            e.to_string(),
            "X refused: ReplayConflictError: a job runs (HTTP 400)"
        );
        assert_eq!(e.reason(), Some("ReplayConflictError"));
        let e = XapiError::from_response(502, b"<html>bad gateway</html>", None);
        assert_eq!(e.reason(), Some("HTTP502"));
        assert!(e.to_string().contains("bad gateway"));
    }
}
