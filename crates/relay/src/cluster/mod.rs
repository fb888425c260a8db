//! `[cluster]`: several relays behind one URL, one message per event (`docs/cluster.md`).
//!
//! Every member keeps its own dedup window (answered first, as on one process) and, for
//! what that window has not seen, claims each envelope id in a store the fleet shares, in
//! two steps, one round trip each per delivery:
//!
//! 1. **pending** before the append: `SET key "p:<member>" NX PX pending_ttl GET`. Taken:
//!    the delivery spools it. Committed by another member: a duplicate, dropped. Pending on
//!    another member (a concurrent delivery of the same event): waited for, bounded by
//!    `claim_wait`, then taken as committed, or claimed again if it was released or expired.
//! 2. **committed** once the records are fsynced: `SET key "c" PX window`. A member that
//!    dies between the two leaves a pending claim that expires, so X's retry gets through:
//!    a duplicate is possible, a loss is not. A failed append releases its claims.
//!
//! When the store cannot be reached (every call is bounded by `timeout`), a delivery is
//! either spooled unverified (`on_store_error = "accept"`, the default: counted in
//! `activity_relay_cluster_unverified_total`, duplicates possible) or refused with a 503
//! (`"refuse"`, X retries). Never a hang, never an unbounded queue.

pub mod leader;
pub mod nats_store;
pub mod recovery;
pub mod redis_store;
pub mod spools;

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use serde::Deserialize;

/// `[cluster]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The shared store: `redis://host:6379/0` or `rediss://…` (Redis or Valkey), or
    /// `nats://host:4222` or `tls://…` (NATS JetStream key-value). Required.
    pub store: String,
    /// This member's name (default: the host name, a pod's name on Kubernetes).
    pub member: String,
    /// How long a stream's leader holds it without renewing (`leader`).
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// What a delivery gets while the store cannot be reached.
    pub on_store_error: OnStoreError,
    /// Prefix of every key the relay writes in the store (a fleet's own namespace).
    pub namespace: String,
    /// Bound of every store call.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// How long a pending claim holds if its member never commits it (it died).
    #[serde(with = "humantime_serde")]
    pub pending_ttl: Duration,
    /// How long a delivery waits for a claim pending on another member.
    #[serde(with = "humantime_serde")]
    pub claim_wait: Duration,
}

/// What a delivery gets while the store cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// Spooled unverified (a duplicate is possible, a loss is not), counted.
    #[default]
    Accept,
    /// Refused with a 503: X retries it.
    Refuse,
}

/// Every default of `ClusterConfig` is here (`store` has none: required).
impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            store: String::new(),
            member: default_member(),
            lease: Duration::from_secs(10),
            on_store_error: OnStoreError::Accept,
            namespace: "activity-relay".to_string(),
            timeout: Duration::from_secs(2),
            pending_ttl: Duration::from_secs(30),
            claim_wait: Duration::from_secs(5),
        }
    }
}

fn default_member() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

impl ClusterConfig {
    /// Checks what can be checked without the network.
    pub fn validate(&self) -> Result<(), relay_config::ConfigError> {
        let bad =
            |key: &str, problem: String| relay_config::ConfigError::new("[cluster]", key, problem);
        if self.store.is_empty() {
            return Err(bad(
                "store",
                "is required (e.g. \"redis://redis:6379/0\")".into(),
            ));
        }
        let scheme = self.store.split("://").next().unwrap_or_default();
        if !matches!(scheme, "redis" | "rediss" | "nats" | "tls") || !self.store.contains("://") {
            return Err(bad(
                "store",
                format!(
                    "{:?}: expected redis:// or rediss:// (Redis or Valkey), or nats:// or tls:// (NATS JetStream key-value)",
                    relay_sink::redact_url(&self.store)
                ),
            ));
        }
        if self.member.is_empty() || self.member.contains(char::is_whitespace) {
            return Err(bad(
                "member",
                "must be a non-empty name without spaces".into(),
            ));
        }
        if self.namespace.is_empty() {
            return Err(bad("namespace", "must not be empty".into()));
        }
        for (key, d) in [
            ("lease", self.lease),
            ("timeout", self.timeout),
            ("pending_ttl", self.pending_ttl),
        ] {
            if d < Duration::from_millis(100) {
                return Err(bad(key, "must be at least 100ms".into()));
            }
        }
        if self.pending_ttl <= self.timeout {
            return Err(bad("pending_ttl", "must be longer than timeout".into()));
        }
        Ok(())
    }

    /// One line for `run --check`.
    pub fn summary(&self) -> String {
        format!(
            "cluster: member {:?} of {} (store {}), claims pending for {}, store errors: {}",
            self.member,
            self.namespace,
            relay_sink::redact_url(&self.store),
            humantime::format_duration(self.pending_ttl),
            match self.on_store_error {
                OnStoreError::Accept => "accept unverified",
                OnStoreError::Refuse => "refuse (503)",
            }
        )
    }
}

/// What the store says of one id asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Held {
    /// Nobody had it: now pending for this member.
    Taken,
    /// Accepted (committed) by a member.
    Committed,
    /// Pending on the member named.
    Pending(String),
}

/// Why the store did not answer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cluster store did not answer within {0:?}")]
    Timeout(Duration),
    /// The store's address cannot be used (the URL redacted).
    #[error("cluster store: {store}: {source}")]
    Connect {
        store: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cluster store: {0}")]
    Redis(#[from] redis::RedisError),
    /// A NATS key-value operation failed.
    #[error("cluster store: {0}")]
    Nats(Box<dyn std::error::Error + Send + Sync>),
    #[error("cluster store: key-value bucket {bucket}: {source}")]
    Bucket {
        bucket: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Compare-and-set lost too many times in a row on one key.
    #[error("cluster store: {key}: too much contention")]
    Contention { key: String },
}

/// The shared store's claims (one round trip per call, whatever the number of ids).
#[async_trait::async_trait]
pub trait ClaimStore: Send + Sync {
    /// Claims each key as pending for this member, or says who holds it.
    async fn claim(&self, keys: &[String], ttl: Duration) -> Result<Vec<Held>, StoreError>;
    /// Marks the keys committed for `window`.
    async fn commit(&self, keys: &[String], window: Duration) -> Result<(), StoreError>;
    /// Releases the keys still pending for this member.
    async fn release(&self, keys: &[String]) -> Result<(), StoreError>;
}

/// Leases (one job, one member at a time) and positions kept for the fleet.
#[async_trait::async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes the lease if nobody holds it: its new epoch, or `None` (someone else leads).
    async fn acquire(
        &self,
        lease_key: &str,
        epoch_key: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError>;
    /// Extends the lease while it is still this member's at `epoch`: false once it is not.
    async fn renew(&self, lease_key: &str, epoch: u64, ttl: Duration) -> Result<bool, StoreError>;
    /// Gives the lease up (if still held at `epoch`).
    async fn resign(&self, lease_key: &str, epoch: u64) -> Result<(), StoreError>;
    /// A position (ms since the epoch) kept for the fleet.
    async fn position(&self, key: &str) -> Result<Option<u64>, StoreError>;
    /// Moves a position forward (never back).
    async fn advance(&self, key: &str, ms: u64) -> Result<(), StoreError>;
}

/// What a member last said of its spool: records not yet confirmed by every sink, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolReport {
    pub pending: u64,
    /// Ms since the epoch.
    pub at_ms: u64,
}

impl SpoolReport {
    fn encode(&self) -> String {
        format!("{}:{}", self.pending, self.at_ms)
    }

    fn decode(s: &str) -> Option<Self> {
        let (p, at) = s.split_once(':')?;
        Some(SpoolReport {
            pending: p.parse().ok()?,
            at_ms: at.parse().ok()?,
        })
    }
}

/// Each member's spool as it last reported it, so that the fleet can tell when a member
/// left records on a volume nobody serves (`activity_relay_cluster_spool_left_records`).
#[async_trait::async_trait]
pub trait SpoolReports: Send + Sync {
    /// Records `member`'s report under `key`, or removes it (`None`: nothing left).
    async fn report_spool(
        &self,
        key: &str,
        member: &str,
        report: Option<SpoolReport>,
    ) -> Result<(), StoreError>;
    /// Every member's last report under `key`.
    async fn spool_reports(&self, key: &str) -> Result<Vec<(String, SpoolReport)>, StoreError>;
}

/// Short notes the members leave each other (a replay job's end, seen by whichever member
/// X delivered its status to), each kept for a while.
#[async_trait::async_trait]
pub trait Notes: Send + Sync {
    async fn put_note(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError>;
    async fn get_note(&self, key: &str) -> Result<Option<String>, StoreError>;
}

pub use relay_core::pipeline::Verdict;

/// The store could not be reached and `on_store_error = "refuse"`.
#[derive(Debug, thiserror::Error)]
#[error("cluster store unreachable ({0}): refused so that X retries")]
pub struct Refused(pub StoreError);

/// Metrics of the fleet's dedup.
#[derive(Clone)]
pub struct ClusterMetrics {
    /// `activity_relay_cluster_claims_total{outcome}`: `ours`, `duplicate`, `unverified`.
    pub claims: IntCounterVec,
    /// `activity_relay_cluster_unverified_total{reason}`: `store_error`, `pending_elsewhere`,
    /// `taken_over` (claimed once another member's pending claim expired: that member may
    /// have made it durable before it died).
    pub unverified: IntCounterVec,
    /// `activity_relay_cluster_store_up`: 1 while the last store call succeeded.
    pub store_up: IntGauge,
}

impl ClusterMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let claims = IntCounterVec::new(
            Opts::new(
                "activity_relay_cluster_claims_total",
                "Envelope ids asked of the fleet's store, by outcome (ours, duplicate: accepted by another member, unverified: spooled without an answer)",
            ),
            &["outcome"],
        )?;
        r.register(Box::new(claims.clone()))?;
        let unverified = IntCounterVec::new(
            Opts::new(
                "activity_relay_cluster_unverified_total",
                "Envelope ids spooled without the fleet's verdict (a duplicate is possible), by reason",
            ),
            &["reason"],
        )?;
        r.register(Box::new(unverified.clone()))?;
        for o in ["ours", "duplicate", "unverified"] {
            claims.with_label_values(&[o]);
        }
        for o in ["store_error", "pending_elsewhere", "taken_over"] {
            unverified.with_label_values(&[o]);
        }
        let store_up = IntGauge::new(
            "activity_relay_cluster_store_up",
            "1 while the fleet's store answers (its last call succeeded)",
        )?;
        r.register(Box::new(store_up.clone()))?;
        Ok(ClusterMetrics {
            claims,
            unverified,
            store_up,
        })
    }
}

/// The fleet's dedup: claims in the shared store, behind each member's own window.
pub struct FleetDedup {
    store: Arc<dyn ClaimStore>,
    cfg: ClusterConfig,
    window: Duration,
    metrics: ClusterMetrics,
}

impl FleetDedup {
    pub fn new(
        store: Arc<dyn ClaimStore>,
        cfg: ClusterConfig,
        window: Duration,
        metrics: ClusterMetrics,
    ) -> Self {
        FleetDedup {
            store,
            cfg,
            window,
            metrics,
        }
    }

    fn key(&self, id: &str) -> String {
        format!("{}:dedup:{id}", self.cfg.namespace)
    }

    fn note(&self, ok: bool) {
        self.metrics.store_up.set(i64::from(ok));
    }

    /// The verdict on each of `ids` (step 1). Waits (bounded) for ids pending on another
    /// member.
    pub async fn claim(&self, ids: &[String]) -> Result<Vec<Verdict>, Refused> {
        let mut out = vec![Verdict::Unverified; ids.len()];
        let mut ask: Vec<usize> = (0..ids.len()).collect();
        let give_up = tokio::time::Instant::now() + self.cfg.claim_wait;
        let mut pause = Duration::from_millis(20);
        // Ids seen pending on another member: if this member gets them later, it took over.
        let mut waited = vec![false; ids.len()];
        loop {
            let keys: Vec<String> = ask.iter().map(|&i| self.key(&ids[i])).collect();
            let held = match self.store.claim(&keys, self.cfg.pending_ttl).await {
                Ok(h) => {
                    self.note(true);
                    h
                }
                Err(e) => {
                    self.note(false);
                    if self.cfg.on_store_error == OnStoreError::Refuse {
                        return Err(Refused(e));
                    }
                    tracing::warn!(error = %e, ids = ask.len(), "cluster store unreachable; spooling unverified (a duplicate is possible)");
                    self.unverified(ask.len(), "store_error");
                    return Ok(out);
                }
            };
            let mut waiting = Vec::new();
            for (&i, h) in ask.iter().zip(held) {
                match h {
                    Held::Taken => {
                        out[i] = Verdict::Ours;
                        self.metrics.claims.with_label_values(&["ours"]).inc();
                        if waited[i] {
                            self.metrics
                                .unverified
                                .with_label_values(&["taken_over"])
                                .inc();
                        }
                    }
                    Held::Committed => {
                        out[i] = Verdict::Duplicate;
                        self.metrics.claims.with_label_values(&["duplicate"]).inc();
                    }
                    Held::Pending(member) if member == self.cfg.member => {
                        // Ours already (a retry of a claim whose answer was lost).
                        out[i] = Verdict::Ours;
                        self.metrics.claims.with_label_values(&["ours"]).inc();
                    }
                    Held::Pending(_) => {
                        waited[i] = true;
                        waiting.push(i);
                    }
                }
            }
            if waiting.is_empty() {
                return Ok(out);
            }
            if tokio::time::Instant::now() + pause > give_up {
                tracing::warn!(ids = waiting.len(), "ids still pending on another member after claim_wait; spooling them unverified (a duplicate is possible)");
                self.unverified(waiting.len(), "pending_elsewhere");
                return Ok(out);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
            ask = waiting;
        }
    }

    fn unverified(&self, n: usize, reason: &str) {
        self.metrics
            .claims
            .with_label_values(&["unverified"])
            .inc_by(n as u64);
        self.metrics
            .unverified
            .with_label_values(&[reason])
            .inc_by(n as u64);
    }

    /// Step 2: the records of `ids` are durable.
    pub async fn commit(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
        match self.store.commit(&keys, self.window).await {
            Ok(()) => self.note(true),
            Err(e) => {
                // The pending claims expire: another member may then spool a repeat (a
                // duplicate, never a loss).
                self.note(false);
                tracing::warn!(error = %e, ids = ids.len(), "cannot commit claims in the cluster store; they expire instead");
            }
        }
    }

    /// The append failed: the claims of `ids` go, so that X's retry gets through anywhere.
    pub async fn release(&self, ids: &[String]) {
        if ids.is_empty() {
            return;
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key(id)).collect();
        if let Err(e) = self.store.release(&keys).await {
            self.note(false);
            tracing::warn!(error = %e, ids = ids.len(), "cannot release claims in the cluster store; they expire instead");
        }
    }
}

/// A store of the fleet: claims and leases.
pub trait Store: ClaimStore + LeaseStore + SpoolReports + Notes {}
impl<T: ClaimStore + LeaseStore + SpoolReports + Notes> Store for T {}

/// Which store `cfg.store` names.
pub fn is_nats(cfg: &ClusterConfig) -> bool {
    cfg.store.starts_with("nats://") || cfg.store.starts_with("tls://")
}

/// Connects the store named by `cfg.store` (claims and leases); `window` is how long a
/// committed claim is kept (the dedup window).
pub async fn connect(cfg: &ClusterConfig, window: Duration) -> Result<Arc<dyn Store>, StoreError> {
    Ok(if is_nats(cfg) {
        Arc::new(
            nats_store::NatsStore::connect(
                &cfg.store,
                &cfg.namespace,
                &cfg.member,
                cfg.timeout,
                window,
            )
            .await?,
        )
    } else {
        Arc::new(redis_store::RedisStore::connect(&cfg.store, &cfg.member, cfg.timeout).await?)
    })
}

#[async_trait::async_trait]
impl relay_core::pipeline::Fleet for FleetDedup {
    async fn claim(
        &self,
        ids: &[String],
    ) -> Result<Vec<Verdict>, Box<dyn std::error::Error + Send + Sync>> {
        Ok(FleetDedup::claim(self, ids).await?)
    }

    async fn commit(&self, ids: &[String]) {
        FleetDedup::commit(self, ids).await;
    }

    async fn release(&self, ids: &[String]) {
        FleetDedup::release(self, ids).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_what_is_wrong() {
        let ok = ClusterConfig {
            store: "redis://127.0.0.1:6379/0".into(),
            ..ClusterConfig::default()
        };
        assert!(ok.validate().is_ok());
        assert!(ClusterConfig::default()
            .validate()
            .unwrap_err()
            .to_string()
            .contains("store is required"));
        let bad = ClusterConfig {
            store: "memcached://x".into(),
            ..ok.clone()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("redis://"));
        let nats = ClusterConfig {
            store: "nats://127.0.0.1:4222".into(),
            ..ok.clone()
        };
        assert!(nats.validate().is_ok());
        assert!(is_nats(&nats) && !is_nats(&ok));
        let short = ClusterConfig {
            pending_ttl: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            ..ok.clone()
        };
        assert_eq!(short.validate().unwrap_err().key, "pending_ttl");
        let secret = ClusterConfig {
            store: "redis://:hunter2@127.0.0.1:6379/0".into(),
            ..ok
        };
        assert!(
            !secret.summary().contains("hunter2"),
            "{}",
            secret.summary()
        );
    }
}
