//! `XClient`: a typed async client for X's management endpoints.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use relay_secret::Secret;
use reqwest::header::{AUTHORIZATION, USER_AGENT};
use reqwest::Method;
use serde::Serialize;
use serde_json::{json, Value};
use tracing::{debug, warn};

use crate::error::{snippet, RateLimit, XapiError};
use crate::oauth::{self, percent_encode, Credentials};
use crate::replay::{self, ReplayRules, Window};

mod activity;
#[cfg(test)]
use activity::activity_from;
pub use activity::{
    ActivitySubscription, ActivitySubscriptionPage, ActivitySubscriptionUpdate, BulkDeleteFailure,
    BulkDeleteReport, NewActivitySubscription,
};

/// X's production API.
pub const DEFAULT_BASE_URL: &str = "https://api.x.com";

/// Most ids X accepts in one bulk delete.
pub const BULK_DELETE_MAX: usize = 100;

/// Tunables of an [`XClient`].
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Sent as `User-Agent`.
    pub user_agent: String,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// On HTTP 429, wait until `x-rate-limit-reset` and retry (when that is at most
    /// `max_rate_limit_wait` away). Off: a 429 is returned as [`XapiError::RateLimited`].
    pub retry_rate_limited: bool,
    /// Longest wait for a rate-limit reset.
    pub max_rate_limit_wait: Duration,
    /// Retries of one call after 429s.
    pub max_rate_limit_retries: u32,
    /// Replay date rules (window length is configurable).
    pub replay_rules: ReplayRules,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            user_agent: format!("activity-relay/{}", env!("CARGO_PKG_VERSION")),
            timeout: Duration::from_secs(30),
            retry_rate_limited: false,
            max_rate_limit_wait: Duration::from_secs(15 * 60),
            max_rate_limit_retries: 3,
            replay_rules: ReplayRules::default(),
        }
    }
}

/// A user's access token and secret, for OAuth 1.0a user-context calls. `Debug` hides the
/// secret.
#[derive(Clone, Debug)]
pub struct AccessToken {
    /// The access token (it names the user).
    pub token: String,
    /// The access token secret.
    pub secret: Secret,
}

/// A registered webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Webhook {
    /// Webhook id.
    pub id: String,
    /// Its URL.
    pub url: String,
    /// Whether its last CRC passed.
    pub valid: bool,
    /// When it was created.
    pub created_at: Option<String>,
}

/// The AAA subscriptions of one webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AaaSubscriptions {
    /// The app.
    pub application_id: Option<String>,
    /// The webhook.
    pub webhook_id: String,
    /// The webhook's URL.
    pub webhook_url: Option<String>,
    /// Subscribed users.
    pub user_ids: Vec<String>,
}

/// Subscription counts of the app (X sends them as strings).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SubscriptionCount {
    /// Account (plan) name.
    pub account_name: Option<String>,
    /// Subscriptions the plan allows.
    pub provisioned_count: Option<u64>,
    /// Subscriptions in use.
    pub subscriptions_count_all: u64,
    /// Of which with direct messages.
    pub subscriptions_count_direct_messages: Option<u64>,
}

/// A replay job X accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayJob {
    /// X's job id.
    pub job_id: String,
    /// When X created it.
    pub created_at: Option<String>,
    /// The window asked for.
    pub window: Option<Window>,
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Bearer,
    User(&'a AccessToken),
    /// An OAuth 2.0 user access token.
    OAuth2(&'a str),
}

/// A client for X's management endpoints. Cheap to clone; clones share the last rate-limit
/// state. `Debug` hides every secret.
#[derive(Clone)]
pub struct XClient {
    http: reqwest::Client,
    base: String,
    bearer: Option<Secret>,
    consumer: Option<(String, Secret)>,
    options: ClientOptions,
    rate_limit: Arc<Mutex<Option<RateLimit>>>,
}

impl fmt::Debug for XClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XClient")
            .field("base", &self.base)
            .field("bearer", &self.bearer)
            .field(
                "consumer_key",
                &self.consumer.as_ref().map(|(key, _)| key.as_str()),
            )
            .field("options", &self.options)
            .finish()
    }
}

impl XClient {
    /// A client for `base_url` (e.g. [`DEFAULT_BASE_URL`] or an emulator's URL).
    pub fn new(base_url: &str) -> Result<Self, XapiError> {
        Self::with_options(base_url, ClientOptions::default())
    }

    /// A client with explicit options.
    pub fn with_options(base_url: &str, options: ClientOptions) -> Result<Self, XapiError> {
        let base = base_url.trim().trim_end_matches('/').to_string();
        let parsed = url::Url::parse(&base).map_err(|source| XapiError::Url {
            what: format!("base URL {base:?}"),
            source,
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(XapiError::InvalidArgument(format!(
                "base URL {base:?}: scheme must be http or https"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(XapiError::Network)?;
        Ok(Self {
            http,
            base,
            bearer: None,
            consumer: None,
            options,
            rate_limit: Arc::new(Mutex::new(None)),
        })
    }

    /// Sets the app-only Bearer token.
    pub fn bearer_token(mut self, token: impl Into<Secret>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    /// Sets the app's consumer key and secret (for OAuth 1.0a user-context calls).
    pub fn consumer(mut self, key: impl Into<String>, secret: impl Into<Secret>) -> Self {
        self.consumer = Some((key.into(), secret.into()));
        self
    }

    /// The base URL in use.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The options in use.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Rate-limit state from the last response that carried the headers.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.rate_limit.lock().ok().and_then(|g| *g)
    }

    fn url(&self, path: &str, query: &[(&str, String)]) -> Result<url::Url, XapiError> {
        let mut url = url::Url::parse(&format!("{}{}", self.base, path)).map_err(|source| {
            XapiError::Url {
                what: format!("URL for {path}"),
                source,
            }
        })?;
        if !query.is_empty() {
            // RFC 3986 encoding (space is %20, never `+`), so that the query reads the same
            // whether the server decodes it as a form or not, as OAuth 1.0a signing assumes.
            let joined = query
                .iter()
                .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
                .collect::<Vec<_>>()
                .join("&");
            url.set_query(Some(&joined));
        }
        Ok(url)
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        auth: Auth<'_>,
    ) -> Result<(u16, Value), XapiError> {
        let url = self.url(path, query)?;
        let mut attempt: u32 = 0;
        loop {
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .header(USER_AGENT, &self.options.user_agent);
            req = self.authorize(req, &method, &url, auth)?;
            if let Some(body) = body {
                req = req.json(body);
            }
            debug!(method = %method, path, attempt, "calling X");
            let resp = req.send().await.map_err(XapiError::Network)?;
            let status = resp.status().as_u16();
            let rate_limit = RateLimit::from_headers(resp.headers());
            if rate_limit.is_some() {
                if let Ok(mut last) = self.rate_limit.lock() {
                    *last = rate_limit;
                }
            }
            let bytes = resp.bytes().await.map_err(XapiError::Network)?;
            if status == 429 {
                if self.options.retry_rate_limited && attempt < self.options.max_rate_limit_retries
                {
                    let wait = rate_limit
                        .and_then(|rl| rl.wait_from(Utc::now()))
                        .unwrap_or(Duration::from_secs(60));
                    if wait <= self.options.max_rate_limit_wait {
                        warn!(
                            path,
                            wait_secs = wait.as_secs(),
                            "rate limited by X; waiting for the reset"
                        );
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    warn!(
                        path,
                        wait_secs = wait.as_secs(),
                        "rate limited by X; reset too far away to wait"
                    );
                }
                return Err(XapiError::RateLimited { rate_limit });
            }
            return answer(path, status, &bytes, rate_limit);
        }
    }

    /// Adds the authorization `auth` asks for: the app's Bearer token, an OAuth 1.0a
    /// signature for the user, or the user's OAuth 2.0 token.
    fn authorize(
        &self,
        req: reqwest::RequestBuilder,
        method: &Method,
        url: &url::Url,
        auth: Auth<'_>,
    ) -> Result<reqwest::RequestBuilder, XapiError> {
        Ok(match auth {
            Auth::Bearer => {
                let token = self.bearer.as_ref().ok_or(XapiError::MissingCredential(
                    "bearer token (X_BEARER_TOKEN)",
                ))?;
                req.bearer_auth(token.expose())
            }
            Auth::User(user) => {
                let (key, secret) = self.consumer.as_ref().ok_or(XapiError::MissingCredential(
                    "consumer key and secret (X_CONSUMER_KEY, X_CONSUMER_SECRET)",
                ))?;
                let creds = Credentials {
                    consumer_key: key.clone(),
                    consumer_secret: secret.clone(),
                    token: user.token.clone(),
                    token_secret: user.secret.clone(),
                };
                let header =
                    oauth::authorization_header(method.as_str(), url.as_str(), &[], &creds);
                req.header(AUTHORIZATION, header)
            }
            Auth::OAuth2(token) => req.bearer_auth(token),
        })
    }

    // ---- webhooks ----

    /// `POST /2/webhooks`: registers `url` (X runs a CRC at once).
    pub async fn create_webhook(&self, url: &str) -> Result<Webhook, XapiError> {
        let body = json!({ "url": url });
        let (status, v) = self
            .call(Method::POST, "/2/webhooks", &[], Some(&body), Auth::Bearer)
            .await?;
        let data = one(&v).ok_or_else(|| missing(status, "data"))?;
        webhook_from(data).ok_or_else(|| missing(status, "data.id"))
    }

    /// `GET /2/webhooks`.
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, XapiError> {
        let (_, v) = self
            .call(Method::GET, "/2/webhooks", &[], None, Auth::Bearer)
            .await?;
        Ok(many(&v).iter().filter_map(|w| webhook_from(w)).collect())
    }

    /// `PUT /2/webhooks/:id`: re-runs the CRC; returns whether it passed.
    pub async fn validate_webhook(&self, webhook_id: &str) -> Result<bool, XapiError> {
        let path = format!("/2/webhooks/{}", seg(webhook_id)?);
        let (status, v) = self
            .call(Method::PUT, &path, &[], None, Auth::Bearer)
            .await?;
        match one(&v) {
            Some(d) => bool_field(d, "valid").ok_or_else(|| missing(status, "data.valid")),
            None if v.is_null() => Ok(true),
            None => Err(missing(status, "data.valid")),
        }
    }

    /// `DELETE /2/webhooks/:id`.
    pub async fn delete_webhook(&self, webhook_id: &str) -> Result<bool, XapiError> {
        self.delete_one(&format!("/2/webhooks/{}", seg(webhook_id)?))
            .await
    }

    /// `DELETE path` (Bearer) answered `{"data":{"deleted": bool}}` (true when X sends no
    /// flag).
    async fn delete_one(&self, path: &str) -> Result<bool, XapiError> {
        let (_, v) = self
            .call(Method::DELETE, path, &[], None, Auth::Bearer)
            .await?;
        Ok(one(&v)
            .and_then(|d| bool_field(d, "deleted"))
            .unwrap_or(true))
    }

    // ---- AAA subscriptions ----

    /// `POST …/webhooks/:id/subscriptions/all` as the user (OAuth 1.0a).
    pub async fn subscribe_user(
        &self,
        webhook_id: &str,
        user: &AccessToken,
    ) -> Result<bool, XapiError> {
        let path = format!(
            "/2/account_activity/webhooks/{}/subscriptions/all",
            seg(webhook_id)?
        );
        let (_, v) = self
            .call(Method::POST, &path, &[], None, Auth::User(user))
            .await?;
        Ok(one(&v)
            .and_then(|d| bool_field(d, "subscribed"))
            .unwrap_or(true))
    }

    /// `GET …/webhooks/:id/subscriptions/all` as the user (OAuth 1.0a): is the user subscribed?
    pub async fn check_user(
        &self,
        webhook_id: &str,
        user: &AccessToken,
    ) -> Result<bool, XapiError> {
        let path = format!(
            "/2/account_activity/webhooks/{}/subscriptions/all",
            seg(webhook_id)?
        );
        let (status, v) = self
            .call(Method::GET, &path, &[], None, Auth::User(user))
            .await?;
        match one(&v) {
            Some(d) => {
                bool_field(d, "subscribed").ok_or_else(|| missing(status, "data.subscribed"))
            }
            // v1.1 answered 204 No Content for "subscribed".
            None if v.is_null() => Ok(true),
            None => Err(missing(status, "data.subscribed")),
        }
    }

    /// `GET …/webhooks/:id/subscriptions/all/list` (Bearer).
    pub async fn list_subscriptions(
        &self,
        webhook_id: &str,
    ) -> Result<AaaSubscriptions, XapiError> {
        let path = format!(
            "/2/account_activity/webhooks/{}/subscriptions/all/list",
            seg(webhook_id)?
        );
        let (status, v) = self
            .call(Method::GET, &path, &[], None, Auth::Bearer)
            .await?;
        let d = v.get("data").unwrap_or(&v);
        let subs = d
            .get("subscriptions")
            .and_then(Value::as_array)
            .ok_or_else(|| missing(status, "data.subscriptions"))?;
        Ok(AaaSubscriptions {
            application_id: str_field(d, "application_id"),
            webhook_id: str_field(d, "webhook_id").unwrap_or_else(|| webhook_id.to_string()),
            webhook_url: str_field(d, "webhook_url"),
            user_ids: subs
                .iter()
                .filter_map(|s| str_field(s, "user_id").or_else(|| scalar(s)))
                .collect(),
        })
    }

    /// `GET /2/account_activity/subscriptions/count` (Bearer).
    pub async fn subscription_count(&self) -> Result<SubscriptionCount, XapiError> {
        let (status, v) = self
            .call(
                Method::GET,
                "/2/account_activity/subscriptions/count",
                &[],
                None,
                Auth::Bearer,
            )
            .await?;
        let d = v.get("data").unwrap_or(&v);
        Ok(SubscriptionCount {
            account_name: str_field(d, "account_name"),
            provisioned_count: u64_field(d, "provisioned_count"),
            subscriptions_count_all: u64_field(d, "subscriptions_count_all")
                .or_else(|| u64_field(d, "subscriptions_count"))
                .ok_or_else(|| missing(status, "data.subscriptions_count_all"))?,
            subscriptions_count_direct_messages: u64_field(
                d,
                "subscriptions_count_direct_messages",
            ),
        })
    }

    /// `DELETE …/webhooks/:id/subscriptions/:user_id/all` (Bearer). Returns whether the user
    /// is still subscribed (`false` on success).
    pub async fn unsubscribe_user(
        &self,
        webhook_id: &str,
        user_id: &str,
    ) -> Result<bool, XapiError> {
        let path = format!(
            "/2/account_activity/webhooks/{}/subscriptions/{}/all",
            seg(webhook_id)?,
            seg(user_id)?
        );
        let (_, v) = self
            .call(Method::DELETE, &path, &[], None, Auth::Bearer)
            .await?;
        Ok(one(&v)
            .and_then(|d| bool_field(d, "subscribed"))
            .unwrap_or(false))
    }

    // ---- replay ----

    /// AAA replay: `POST /2/account_activity/replay/webhooks/:id/subscriptions/all?from_date&to_date`.
    /// Every date rule is checked first; a broken rule means no call.
    pub async fn replay_account_activity(
        &self,
        webhook_id: &str,
        window: &Window,
    ) -> Result<ReplayJob, XapiError> {
        replay::validate(window, Utc::now(), &self.options.replay_rules)?;
        let path = format!(
            "/2/account_activity/replay/webhooks/{}/subscriptions/all",
            seg(webhook_id)?
        );
        let query = [
            ("from_date", window.from_date()),
            ("to_date", window.to_date()),
        ];
        let (status, v) = self
            .call(Method::POST, &path, &query, None, Auth::Bearer)
            .await?;
        replay_job(status, &v, window)
    }

    /// Webhook replay (newer product): `POST /2/webhooks/replay` with
    /// `{webhook_id, from_date, to_date}`. Every date rule is checked first.
    pub async fn replay_webhook(
        &self,
        webhook_id: &str,
        window: &Window,
    ) -> Result<ReplayJob, XapiError> {
        replay::validate(window, Utc::now(), &self.options.replay_rules)?;
        let body = json!({
            "webhook_id": webhook_id,
            "from_date": window.from_date(),
            "to_date": window.to_date(),
        });
        let (status, v) = self
            .call(
                Method::POST,
                "/2/webhooks/replay",
                &[],
                Some(&body),
                Auth::Bearer,
            )
            .await?;
        replay_job(status, &v, window)
    }
}

/// The outcome of a call X answered other than with 429: its error for a non-2xx status,
/// `null` for an empty body, the JSON body, or the errors of a 2xx body that has only those.
fn answer(
    path: &str,
    status: u16,
    bytes: &[u8],
    rate_limit: Option<RateLimit>,
) -> Result<(u16, Value), XapiError> {
    if !(200..300).contains(&status) {
        let err = XapiError::from_response(status, bytes, rate_limit);
        debug!(path, status, error = %err, "X refused");
        return Err(err);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok((status, Value::Null));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| XapiError::BadResponse {
        status,
        message: format!("body is not JSON ({e}): {}", snippet(bytes)),
    })?;
    // X sometimes answers 200 with nothing but errors.
    let only_errors = value.get("data").is_none()
        && value
            .get("errors")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
    if only_errors {
        return Err(XapiError::from_response(status, bytes, rate_limit));
    }
    Ok((status, value))
}

fn replay_job(status: u16, v: &Value, window: &Window) -> Result<ReplayJob, XapiError> {
    let d = one(v).unwrap_or(v);
    let job_id = str_field(d, "job_id")
        .or_else(|| str_field(d, "id"))
        .ok_or_else(|| missing(status, "data.job_id"))?;
    Ok(ReplayJob {
        job_id,
        created_at: str_field(d, "created_at"),
        window: Some(*window),
    })
}

/// A path segment, percent-encoded; empty ids are refused.
fn seg(id: &str) -> Result<String, XapiError> {
    let id = id.trim();
    if id.is_empty() {
        return Err(XapiError::InvalidArgument("empty id".into()));
    }
    Ok(percent_encode(id))
}

fn missing(status: u16, what: &str) -> XapiError {
    XapiError::BadResponse {
        status,
        message: format!("no {what} in the response"),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(scalar)
}

fn bool_field(v: &Value, key: &str) -> Option<bool> {
    match v.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn u64_field(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The single object of a response: `data`, `data.subscription`, or the first item of a
/// one-item `data` array.
fn one(v: &Value) -> Option<&Value> {
    let data = v.get("data")?;
    match data {
        Value::Array(items) => items.first(),
        Value::Object(_) => match data.get("subscription") {
            Some(sub @ Value::Object(_)) => Some(sub),
            _ => Some(data),
        },
        _ => None,
    }
}

/// The list of a response: a `data` array, `data.subscriptions`, or a single object.
fn many(v: &Value) -> Vec<&Value> {
    match v.get("data") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(d @ Value::Object(_)) => match d.get("subscriptions") {
            Some(Value::Array(items)) => items.iter().collect(),
            _ => one(v).into_iter().collect(),
        },
        _ => Vec::new(),
    }
}

fn webhook_from(v: &Value) -> Option<Webhook> {
    Some(Webhook {
        id: str_field(v, "id")?,
        url: str_field(v, "url").unwrap_or_default(),
        valid: bool_field(v, "valid").unwrap_or(false),
        created_at: str_field(v, "created_at").or_else(|| str_field(v, "created_timestamp")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_shapes_are_parsed_tolerantly() {
        let flat = json!({"data":{"id":"1","event_type":"post.create","filter":{"user_id":"9"},"tag":"t"}});
        let nested = json!({"data":{"subscription":{"id":"1","event_type":"post.create","filter":{"user_id":"9"},"tag":"t"}}});
        let array = json!({"data":[{"id":1,"event_type":"post.create","filter":{"user_id":"9"},"tag":"t"}]});
        let a = one(&flat).and_then(activity_from);
        assert_eq!(a.as_ref().map(|s| s.id.as_str()), Some("1"));
        assert_eq!(a, one(&nested).and_then(activity_from));
        assert_eq!(a, one(&array).and_then(activity_from));
        assert_eq!(a.and_then(|s| s.tag), Some("t".to_string()));
    }

    #[test]
    fn counts_as_strings_or_numbers() {
        let v = json!({"n":"42","m":7,"x":"no"});
        assert_eq!(u64_field(&v, "n"), Some(42));
        assert_eq!(u64_field(&v, "m"), Some(7));
        assert_eq!(u64_field(&v, "x"), None);
        assert_eq!(bool_field(&json!({"b":"true"}), "b"), Some(true));
    }

    #[test]
    fn query_is_rfc3986_encoded() {
        let c = XClient::new("http://127.0.0.1:1/").expect("client");
        let url = c
            .url("/2/x", &[("ids", "1,2".into()), ("q", "a b+c".into())])
            .expect("url");
        assert_eq!(url.as_str(), "http://127.0.0.1:1/2/x?ids=1%2C2&q=a%20b%2Bc");
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(seg("12/../3").ok().as_deref(), Some("12%2F..%2F3"));
        assert!(seg("  ").is_err());
    }

    #[test]
    fn debug_hides_secrets() {
        let c = XClient::new("http://127.0.0.1:1")
            .expect("client")
            .bearer_token("bearer-SECRET")
            .consumer("ck", "consumer-SECRET");
        let shown = format!("{c:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        let t = AccessToken {
            token: "tok".into(),
            secret: "token-SECRET".into(),
        };
        assert!(!format!("{t:?}").contains("SECRET"));
    }
}
