//! The fleet's claims and leases in NATS JetStream key-value buckets, for teams that run
//! NATS and no Redis: `<namespace>-claims` (one key per envelope id, kept for the dedup
//! window) and `<namespace>-jobs` (leases, their epochs, the fleet's positions).
//!
//! JetStream before 2.11 has no expiry per key, so every value carries its own deadline
//! (ms since the epoch, on the writing member's clock): a pending claim or a lease past its
//! deadline is free, and is taken by a compare-and-set on the key's revision (the
//! `Nats-Expected-Last-Subject-Sequence` of a KV update), exactly one taker winning. The
//! claims bucket's `max_age` (the dedup window) only collects old keys. Members' clocks
//! must agree (NTP, as on every Kubernetes node) to well within `pending_ttl` and a third
//! of `lease`: a leader stops its job a third of the lease before its deadline, so a
//! standby whose clock runs ahead by more than that could take a stream its leader still
//! reads, and a claim could be taken over early (a duplicate, never a loss).
//!
//! The ids of one delivery are asked concurrently on the one connection (pipelined by the
//! client), so a delivery costs one round trip for ids nobody holds, two for the others.
//! The connection is made in the background and remade by async-nats on its own; every
//! call is bounded by the `[cluster] timeout`.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::future::try_join_all;
use tokio::sync::OnceCell;

use super::{ClaimStore, Held, LeaseStore, Notes, SpoolReport, SpoolReports, StoreError};
use crate::metrics::now_ms;

/// How many times a compare-and-set is retried when other members keep winning it.
const CAS_TRIES: usize = 8;

pub struct NatsStore {
    js: jetstream::Context,
    buckets: OnceCell<Buckets>,
    claims_bucket: String,
    jobs_bucket: String,
    window: Duration,
    member: String,
    timeout: Duration,
}

struct Buckets {
    claims: kv::Store,
    jobs: kv::Store,
}

/// A key's last value (`None` when absent, deleted or purged) and its revision (0: never
/// written), the revision a compare-and-set expects.
struct Slot {
    value: Option<String>,
    rev: u64,
}

fn deadline(ttl: Duration) -> u64 {
    now_ms().saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
}

/// A KV key for any string: `[-_A-Za-z0-9]` kept, every other byte as `=XX`.
fn kv_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// A bucket name from the namespace (`[-_A-Za-z0-9]`, others as `_`).
fn bucket_name(namespace: &str, what: &str) -> String {
    let ns: String = namespace
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{ns}-{what}")
}

fn failed(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Nats(Box::new(e))
}

/// A value with a deadline: `<head>:<deadline>`, live while the deadline is ahead.
fn live(value: &str) -> Option<&str> {
    let (head, until) = value.rsplit_once(':')?;
    let until: u64 = until.parse().ok()?;
    (until > now_ms()).then_some(head)
}

impl NatsStore {
    /// Checks the URL and starts connecting in the background (a store that is down at
    /// start does not stop the relay: `on_store_error` applies); the buckets are opened,
    /// or created, on first use.
    pub async fn connect(
        url: &str,
        namespace: &str,
        member: &str,
        timeout: Duration,
        window: Duration,
    ) -> Result<Self, StoreError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(timeout)
            .retry_on_initial_connect()
            .connect(url)
            .await
            .map_err(|e| StoreError::Connect {
                store: relay_sink::redact_url(url),
                source: Box::new(e),
            })?;
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        let store = NatsStore {
            js,
            buckets: OnceCell::new(),
            claims_bucket: bucket_name(namespace, "claims"),
            jobs_bucket: bucket_name(namespace, "jobs"),
            window,
            member: member.to_string(),
            timeout,
        };
        if let Err(e) = store.bounded(store.buckets()).await {
            tracing::warn!(error = %e, "cluster store not reachable at start; retried on every delivery");
        }
        Ok(store)
    }

    async fn bounded<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))?
    }

    async fn buckets(&self) -> Result<&Buckets, StoreError> {
        self.buckets
            .get_or_try_init(|| async {
                Ok(Buckets {
                    claims: self.bucket(&self.claims_bucket, self.window).await?,
                    jobs: self.bucket(&self.jobs_bucket, Duration::ZERO).await?,
                })
            })
            .await
    }

    /// Opens the bucket, or creates it (one value per key, files, `max_age`). Created as
    /// the KV's stream directly, with the settings async-nats's `create_key_value` gives it:
    /// that call first reads the account's info, which async-nats 0.42 cannot parse from a
    /// NATS server before 2.10.
    async fn bucket(&self, name: &str, max_age: Duration) -> Result<kv::Store, StoreError> {
        if let Ok(store) = self.js.get_key_value(name).await {
            if let Ok(status) = store.status().await {
                let age = status.max_age();
                if !max_age.is_zero() && !age.is_zero() && age < max_age {
                    tracing::warn!(bucket = name, max_age = ?age, window = ?max_age, "the claims bucket keeps keys for less than the dedup window: ids older than its max_age are not deduplicated across the fleet");
                }
            }
            return Ok(store);
        }
        let config = jetstream::stream::Config {
            name: format!("KV_{name}"),
            description: Some("activity-relay fleet ([cluster])".into()),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: 1,
            max_age,
            storage: jetstream::stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            num_replicas: 1,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        };
        // A member creating it at the same moment is fine: then it exists.
        if let Err(e) = self.js.create_stream(config).await {
            tracing::debug!(bucket = name, error = %e, "creating the key-value bucket");
        }
        self.js
            .get_key_value(name)
            .await
            .map_err(|e| StoreError::Bucket {
                bucket: name.to_string(),
                source: Box::new(e),
            })
    }

    async fn read(kv: &kv::Store, key: &str) -> Result<Slot, StoreError> {
        Ok(match kv.entry(key).await.map_err(failed)? {
            None => Slot {
                value: None,
                rev: 0,
            },
            Some(e) => Slot {
                value: match e.operation {
                    kv::Operation::Put => Some(String::from_utf8_lossy(&e.value).into_owned()),
                    kv::Operation::Delete | kv::Operation::Purge => None,
                },
                rev: e.revision,
            },
        })
    }

    /// Writes `value` if the key is still at `rev` (0: never written): false if another
    /// writer came first.
    async fn cas(kv: &kv::Store, key: &str, value: String, rev: u64) -> Result<bool, StoreError> {
        match kv.update(key, Bytes::from(value), rev).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
            Err(e) => Err(failed(e)),
        }
    }

    /// Deletes the key if it is still at `rev` (another writer's value stays).
    async fn delete_at(kv: &kv::Store, key: &str, rev: u64) -> Result<(), StoreError> {
        match kv.delete_expect_revision(key, Some(rev)).await {
            Ok(()) => Ok(()),
            // A newer value is another member's: it stays.
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(()),
            Err(e) => Err(failed(e)),
        }
    }

    async fn claim_one(
        &self,
        kv: &kv::Store,
        key: &str,
        ttl: Duration,
    ) -> Result<Held, StoreError> {
        let mut slot = Slot {
            value: None,
            rev: 0,
        };
        for _ in 0..CAS_TRIES {
            if let Some(v) = &slot.value {
                match live(v) {
                    Some("c") => return Ok(Held::Committed),
                    Some(head) => {
                        if let Some(member) = head.strip_prefix("p:") {
                            return Ok(Held::Pending(member.to_string()));
                        }
                    }
                    None => {} // expired: free for the taking
                }
            }
            let mine = format!("p:{}:{}", self.member, deadline(ttl));
            if Self::cas(kv, key, mine, slot.rev).await? {
                return Ok(Held::Taken);
            }
            slot = Self::read(kv, key).await?;
        }
        // Others keep winning the key: as if pending elsewhere, asked again after a pause.
        Ok(Held::Pending(String::new()))
    }

    /// Adds one to a counter (a compare-and-set loop).
    async fn incr(kv: &kv::Store, key: &str) -> Result<u64, StoreError> {
        for _ in 0..CAS_TRIES {
            let slot = Self::read(kv, key).await?;
            let next = slot.value.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
            if Self::cas(kv, key, next.to_string(), slot.rev).await? {
                return Ok(next);
            }
        }
        Err(StoreError::Contention {
            key: key.to_string(),
        })
    }

    fn lease_value(&self, epoch: u64, ttl: Duration) -> String {
        format!("{}:{epoch}:{}", self.member, deadline(ttl))
    }

    /// Whether the slot holds this member's live lease at `epoch`.
    fn ours(&self, slot: &Slot, epoch: u64) -> bool {
        slot.value.as_deref().and_then(live) == Some(&format!("{}:{epoch}", self.member))
    }
}

#[async_trait::async_trait]
impl ClaimStore for NatsStore {
    async fn claim(&self, keys: &[String], ttl: Duration) -> Result<Vec<Held>, StoreError> {
        self.bounded(async {
            let kv = &self.buckets().await?.claims;
            try_join_all(
                keys.iter()
                    .map(|k| async move { self.claim_one(kv, &kv_key(k), ttl).await }),
            )
            .await
        })
        .await
    }

    async fn commit(&self, keys: &[String], window: Duration) -> Result<(), StoreError> {
        self.bounded(async {
            let kv = &self.buckets().await?.claims;
            let value = Bytes::from(format!("c:{}", deadline(window)));
            try_join_all(keys.iter().map(|k| {
                let value = value.clone();
                async move { kv.put(kv_key(k), value).await.map_err(failed) }
            }))
            .await?;
            Ok(())
        })
        .await
    }

    async fn release(&self, keys: &[String]) -> Result<(), StoreError> {
        self.bounded(async {
            let kv = &self.buckets().await?.claims;
            let mine = format!("p:{}", self.member);
            try_join_all(keys.iter().map(|k| {
                let mine = &mine;
                async move {
                    let key = kv_key(k);
                    let slot = Self::read(kv, &key).await?;
                    if slot.value.as_deref().and_then(live) == Some(mine.as_str()) {
                        Self::delete_at(kv, &key, slot.rev).await?;
                    }
                    Ok::<(), StoreError>(())
                }
            }))
            .await?;
            Ok(())
        })
        .await
    }
}

#[async_trait::async_trait]
impl LeaseStore for NatsStore {
    async fn acquire(
        &self,
        lease_key: &str,
        epoch_key: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        self.bounded(async {
            let kv = &self.buckets().await?.jobs;
            let (lease_key, epoch_key) = (kv_key(lease_key), kv_key(epoch_key));
            let slot = Self::read(kv, &lease_key).await?;
            if slot.value.as_deref().and_then(live).is_some() {
                return Ok(None);
            }
            let epoch = Self::incr(kv, &epoch_key).await?;
            let took = Self::cas(kv, &lease_key, self.lease_value(epoch, ttl), slot.rev).await?;
            Ok(took.then_some(epoch))
        })
        .await
    }

    async fn renew(&self, lease_key: &str, epoch: u64, ttl: Duration) -> Result<bool, StoreError> {
        self.bounded(async {
            let kv = &self.buckets().await?.jobs;
            let lease_key = kv_key(lease_key);
            let slot = Self::read(kv, &lease_key).await?;
            if !self.ours(&slot, epoch) {
                return Ok(false);
            }
            Self::cas(kv, &lease_key, self.lease_value(epoch, ttl), slot.rev).await
        })
        .await
    }

    async fn resign(&self, lease_key: &str, epoch: u64) -> Result<(), StoreError> {
        self.bounded(async {
            let kv = &self.buckets().await?.jobs;
            let lease_key = kv_key(lease_key);
            let slot = Self::read(kv, &lease_key).await?;
            if self.ours(&slot, epoch) {
                Self::delete_at(kv, &lease_key, slot.rev).await?;
            }
            Ok(())
        })
        .await
    }

    async fn position(&self, key: &str) -> Result<Option<u64>, StoreError> {
        self.bounded(async {
            let kv = &self.buckets().await?.jobs;
            let slot = Self::read(kv, &kv_key(key)).await?;
            Ok(slot.value.and_then(|v| v.parse().ok()))
        })
        .await
    }

    async fn advance(&self, key: &str, ms: u64) -> Result<(), StoreError> {
        self.bounded(async {
            let kv = &self.buckets().await?.jobs;
            let key = kv_key(key);
            for _ in 0..CAS_TRIES {
                let slot = Self::read(kv, &key).await?;
                let cur: u64 = slot
                    .value
                    .as_deref()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                if ms <= cur || Self::cas(kv, &key, ms.to_string(), slot.rev).await? {
                    return Ok(());
                }
            }
            // Others kept moving it, perhaps to less than `ms`: said, and tried again at the
            // next beat (a position behind only means more is read again).
            Err(StoreError::Contention {
                key: key.to_string(),
            })
        })
        .await
    }
}

/// The reports as one value, a line per member: `<member> <pending>:<at_ms>`.
fn parse_reports(text: &str) -> Vec<(String, SpoolReport)> {
    text.lines()
        .filter_map(|l| {
            let (m, r) = l.split_once(' ')?;
            Some((m.to_string(), SpoolReport::decode(r)?))
        })
        .collect()
}

#[async_trait::async_trait]
impl SpoolReports for NatsStore {
    async fn report_spool(
        &self,
        key: &str,
        member: &str,
        report: Option<SpoolReport>,
    ) -> Result<(), StoreError> {
        self.bounded(async {
            let kv = &self.buckets().await?.jobs;
            let key = kv_key(key);
            for _ in 0..CAS_TRIES {
                let slot = Self::read(kv, &key).await?;
                let mut all = parse_reports(slot.value.as_deref().unwrap_or_default());
                all.retain(|(m, _)| m != member);
                if let Some(r) = report {
                    all.push((member.to_string(), r));
                }
                let text: String = all
                    .iter()
                    .map(|(m, r)| format!("{m} {}\n", r.encode()))
                    .collect();
                if Self::cas(kv, &key, text, slot.rev).await? {
                    return Ok(());
                }
            }
            Err(StoreError::Contention {
                key: key.to_string(),
            })
        })
        .await
    }

    async fn spool_reports(&self, key: &str) -> Result<Vec<(String, SpoolReport)>, StoreError> {
        self.bounded(async {
            let kv = &self.buckets().await?.jobs;
            let slot = Self::read(kv, &kv_key(key)).await?;
            Ok(parse_reports(slot.value.as_deref().unwrap_or_default()))
        })
        .await
    }
}

/// Notes live in the claims bucket (collected after its `max_age`), as
/// `<value>:<deadline>`.
#[async_trait::async_trait]
impl Notes for NatsStore {
    async fn put_note(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        self.bounded(async {
            let kv = &self.buckets().await?.claims;
            kv.put(
                kv_key(key),
                Bytes::from(format!("{value}:{}", deadline(ttl))),
            )
            .await
            .map_err(failed)?;
            Ok(())
        })
        .await
    }

    async fn get_note(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.bounded(async {
            let kv = &self.buckets().await?.claims;
            let slot = Self::read(kv, &kv_key(key)).await?;
            Ok(slot.value.as_deref().and_then(live).map(str::to_string))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_string_becomes_a_valid_key() {
        assert_eq!(kv_key("ns:dedup:a1-b_2"), "ns=3Adedup=3Aa1-b_2");
        assert_eq!(
            kv_key("{ns:stream:x}:lease"),
            "=7Bns=3Astream=3Ax=7D=3Alease"
        );
        assert_eq!(kv_key("é"), "=C3=A9");
        assert_eq!(
            bucket_name("activity relay.x", "claims"),
            "activity_relay_x-claims"
        );
    }

    #[test]
    fn a_value_lives_until_its_deadline() {
        let ahead = format!("p:a:{}", now_ms() + 60_000);
        assert_eq!(live(&ahead), Some("p:a"));
        assert_eq!(live(&format!("c:{}", now_ms().saturating_sub(1))), None);
        assert_eq!(live("garbage"), None);
        assert_eq!(live("p:a:notanumber"), None);
    }
}
