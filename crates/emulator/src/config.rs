//! [`EmulatorConfig`]: apps, users, limits, timings, stream and generator settings.

use serde::{Deserialize, Serialize};

/// One X app (a developer app with its keys).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct AppConfig {
    /// Short name, used in logs and in `/admin/state` (e.g. `demo`).
    pub name: String,
    /// X's numeric app id, as a string.
    pub app_id: String,
    /// OAuth 1.0a consumer key.
    pub consumer_key: String,
    /// Consumer secret: the key of CRC answers and delivery signatures.
    pub consumer_secret: String,
    /// App-only Bearer token.
    pub bearer_token: String,
    /// `account_name` in `GET /2/account_activity/subscriptions/count`.
    pub account_name: String,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            name: "demo".into(),
            app_id: "13090192".into(),
            consumer_key: "emulator-consumer-key".into(),
            consumer_secret: "emulator-consumer-secret".into(),
            bearer_token: "emulator-bearer".into(),
            account_name: "emulator".into(),
        }
    }
}

/// A user who can authorize apps (has an access token) and be subscribed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserConfig {
    /// X user id.
    pub user_id: String,
    /// Handle, without `@`.
    #[serde(default)]
    pub screen_name: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// OAuth 1.0a access token.
    pub access_token: String,
    /// OAuth 1.0a access token secret.
    pub access_token_secret: String,
    /// OAuth 2.0 user access token (private XAA subscriptions). Default
    /// `<id>-emulator-oauth2`.
    #[serde(default)]
    pub oauth2_token: Option<String>,
    /// Scopes granted to the OAuth 2.0 token. Default: all of XAA's.
    #[serde(default = "all_scopes")]
    pub scopes: Vec<String>,
}

/// Every scope XAA's private event types need.
pub fn all_scopes() -> Vec<String> {
    [
        "tweet.read",
        "like.read",
        "dm.read",
        "mute.read",
        "block.read",
        "broadcast.read",
    ]
    .map(String::from)
    .to_vec()
}

impl UserConfig {
    /// A user with tokens derived from its id (`<id>-emulator-token`, `emulator-secret-<id>`).
    pub fn new(user_id: &str, screen_name: &str, name: &str) -> Self {
        Self {
            user_id: user_id.into(),
            screen_name: screen_name.into(),
            name: name.into(),
            access_token: format!("{user_id}-emulator-token"),
            access_token_secret: format!("emulator-secret-{user_id}"),
            oauth2_token: None,
            scopes: all_scopes(),
        }
    }

    /// The OAuth 2.0 access token.
    pub fn oauth2(&self) -> String {
        self.oauth2_token
            .clone()
            .unwrap_or_else(|| format!("{}-emulator-oauth2", self.user_id))
    }
}

/// Default users: the accounts the shared fixtures use, so fixture files can be emitted
/// to subscribed users as they are.
pub fn default_users() -> Vec<UserConfig> {
    vec![
        UserConfig::new("2244994945", "XDevelopers", "Developers"),
        UserConfig::new("3001969357", "furiouscamper", "Jordan Brinks"),
        UserConfig::new("4337869213", "Harris_0ff", "Harrison Test"),
        UserConfig::new("1603419180975409153", "historybuff", "History Buff"),
        UserConfig::new("1111111111111111111", "ExampleUser", "Example User"),
        UserConfig::new("930524282358325248", "deleter", "Compliance Example"),
    ]
}

/// Activity stream settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StreamConfig {
    /// Heartbeat (`\r\n`) period in ms. `None`: 20 s × `time_scale`.
    pub heartbeat_ms: Option<u64>,
    /// Concurrent connections allowed (X: 2).
    pub max_connections: usize,
    /// Also send XAA-format (`{"data":…}`) events on the stream.
    pub include_xaa: bool,
    /// Faults applied from the start (CLI flags).
    pub faults: StreamFaults,
    /// Lines buffered per connection before the emulator disconnects it as too slow.
    pub buffer_lines: usize,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            heartbeat_ms: None,
            max_connections: 2,
            include_xaa: true,
            faults: StreamFaults::default(),
            buffer_lines: 10_000,
        }
    }
}

/// Stream fault injection that applies to coming connection attempts.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct StreamFaults {
    /// Answer 503 to the next N connection attempts.
    pub fail_503: u32,
    /// Answer 429 (with `x-rate-limit-reset`) to the next N connection attempts.
    pub fail_429: u32,
    /// Seconds from now put in `x-rate-limit-reset` of those 429s (default 60).
    pub rate_limit_reset_secs: Option<u64>,
    /// Every connection: drop it abruptly after sending this many event lines.
    pub drop_after_lines: Option<u64>,
    /// Every connection: stall (send nothing, not even heartbeats) after this many lines.
    pub stall_after_lines: Option<u64>,
    /// Every connection: send an `operational-disconnect` error and close after this many lines.
    pub disconnect_after_lines: Option<u64>,
    /// The `*_after_lines` rules apply to the next N connections only, then no more
    /// (`None`: to every connection).
    pub rules_for_connections: Option<u32>,
}

/// Event generator settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct GeneratorConfig {
    /// Logical events per second.
    pub rate: f64,
    /// Stop after this many seconds (`None`: no limit).
    pub duration_secs: Option<f64>,
    /// Stop after this many logical events (`None`: no limit).
    pub count: Option<u64>,
    /// Weights of the formats: `aaa`, `stream`, `xaa` (missing = 0; all missing = equal).
    pub formats: std::collections::BTreeMap<String, f64>,
    /// Weights per event kind (see `docs/emulator.md`; missing kinds = 1 when empty).
    pub mix: std::collections::BTreeMap<String, f64>,
    /// Instead of random picks, cycle through every (format, kind) in order.
    pub cycle: bool,
    /// Probability a body is sent again as a plain duplicate (X's at-least-once).
    pub duplicate_rate: f64,
    /// Probability an AAA post is batched with 1–2 more posts in one body.
    pub batch_rate: f64,
    /// Size of the user population events are drawn from (configured users come first).
    pub population: usize,
    /// Restrict target users (`for_user_id`) to these ids (default: every configured user).
    pub target_users: Vec<String>,
    /// RNG seed, for reproducible runs.
    pub seed: Option<u64>,
    /// Which formats X delivers each event in: `mix` (default: the `formats` weights pick
    /// one per event), or the phases of X's AAA-to-XAA cutover: `aaa` (AAA only, before),
    /// `both` (every AAA event again as its XAA twin, the overlap), `xaa` (the XAA twin
    /// only, after AAA's end). Outside `mix`, `formats` is ignored.
    pub cutover: Cutover,
}

/// X's delivery formats during its AAA-to-XAA cutover (see [`GeneratorConfig::cutover`]).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Cutover {
    #[default]
    Mix,
    Aaa,
    Both,
    Xaa,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self {
            rate: 5.0,
            duration_secs: None,
            count: None,
            formats: Default::default(),
            mix: Default::default(),
            cycle: false,
            duplicate_rate: 0.0,
            batch_rate: 0.1,
            population: 50,
            target_users: Vec::new(),
            seed: None,
            cutover: Cutover::Mix,
        }
    }
}

/// Everything the emulator needs. `Default` gives a usable setup: app `demo`
/// (consumer secret `emulator-consumer-secret`, Bearer `emulator-bearer`), the fixtures'
/// users, `127.0.0.1:0`, X's real timings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct EmulatorConfig {
    /// Address to listen on.
    pub listen: String,
    /// Apps.
    pub apps: Vec<AppConfig>,
    /// Users with access tokens.
    pub users: Vec<UserConfig>,
    /// 1.0 = X's timings; 0.01 compresses the 3/27/242 s retry waits and the hourly re-CRC.
    pub time_scale: f64,
    /// Max webhooks per app (Enterprise 5, Pro 1).
    pub max_webhooks: usize,
    /// Max unique subscribed users per app (Enterprise 5000, Pro 3).
    pub max_subscriptions: usize,
    /// How long X waits for a CRC answer, ms (not scaled).
    pub crc_timeout_ms: u64,
    /// How long X waits for a delivery answer, ms (not scaled).
    pub delivery_timeout_ms: u64,
    /// Retry waits in seconds before scaling (X: 3, 27, 242).
    pub retry_waits_secs: Vec<f64>,
    /// Re-CRC period in seconds before scaling (X: hourly). 0 disables it.
    pub recrc_interval_secs: f64,
    /// Management endpoint requests allowed per window, per endpoint.
    pub rate_limit: u32,
    /// The rate-limit window in seconds (X: 900, 15 minutes).
    pub rate_window_secs: u64,
    /// XAA subscriptions per app (X: Self-serve 1,500, Enterprise 75,000, Partner
    /// 150,000).
    pub max_activity_subscriptions: usize,
    /// XAA private event types need an OAuth 2.0 token of the filtered user with the
    /// type's scope (X's rule); off, the app's Bearer token is accepted for every type.
    pub strict_scopes: bool,
    /// Deliveries in flight per webhook.
    pub max_in_flight_per_webhook: usize,
    /// How many emitted events are kept for `/admin/sent`, backfill and replay.
    pub max_recorded_events: usize,
    /// Replay jobs finish `Incomplete` instead of `Complete`.
    pub replay_incomplete: bool,
    /// X after AAA's end of life (2027-01-01): the `/2/account_activity/*` endpoints
    /// answer 410 `Gone` and AAA-format events are not delivered to webhooks.
    pub aaa_retired: bool,
    /// Stream settings.
    pub stream: StreamConfig,
    /// Generator started with the emulator (`None`: none).
    pub generator: Option<GeneratorConfig>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            apps: vec![AppConfig::default()],
            users: default_users(),
            time_scale: 1.0,
            max_webhooks: 5,
            max_subscriptions: 5000,
            crc_timeout_ms: 3000,
            delivery_timeout_ms: 3000,
            retry_waits_secs: vec![3.0, 27.0, 242.0],
            recrc_interval_secs: 3600.0,
            rate_limit: 10_000,
            rate_window_secs: 900,
            max_activity_subscriptions: 75_000,
            strict_scopes: false,
            max_in_flight_per_webhook: 32,
            max_recorded_events: 50_000,
            replay_incomplete: false,
            aaa_retired: false,
            stream: StreamConfig::default(),
            generator: None,
        }
    }
}

impl EmulatorConfig {
    /// Pro tier limits: 1 webhook, 3 subscriptions.
    pub fn pro_limits(mut self) -> Self {
        self.max_webhooks = 1;
        self.max_subscriptions = 3;
        self
    }

    /// The retry waits after scaling, in ms.
    pub fn scaled_retry_waits_ms(&self) -> Vec<u64> {
        self.retry_waits_secs
            .iter()
            .map(|s| (s * self.time_scale * 1000.0).round().max(0.0) as u64)
            .collect()
    }

    /// The heartbeat period, ms.
    pub fn heartbeat_ms(&self) -> u64 {
        self.stream
            .heartbeat_ms
            .unwrap_or_else(|| (20_000.0 * self.time_scale).round().max(1.0) as u64)
    }

    /// Checks the values make sense.
    pub fn validate(&self) -> Result<(), crate::EmulatorError> {
        let bad = |s: &str| Err(crate::EmulatorError::Config(s.to_owned()));
        if !(self.time_scale.is_finite() && self.time_scale > 0.0) {
            return bad("time_scale must be a positive number");
        }
        if self.apps.is_empty() {
            return bad("at least one app is needed");
        }
        let mut seen = std::collections::HashSet::new();
        for a in &self.apps {
            if a.name.is_empty() || a.consumer_secret.is_empty() || a.bearer_token.is_empty() {
                return bad("every app needs a name, a consumer secret and a bearer token");
            }
            if !seen.insert(a.bearer_token.clone()) {
                return bad("two apps share a bearer token");
            }
        }
        if self.stream.max_connections == 0 {
            return bad("stream.max_connections must be at least 1");
        }
        if self
            .retry_waits_secs
            .iter()
            .any(|w| !w.is_finite() || *w < 0.0)
        {
            return bad("retry waits must be non-negative numbers");
        }
        Ok(())
    }
}
