//! The fleet's claims in Redis or Valkey (7.0 or later: `SET … NX GET`), one pipelined
//! round trip per call. The connection is made on first use and remade by redis-rs's
//! `ConnectionManager` when it breaks; every call is bounded by the `[cluster] timeout`, so
//! a store that is down or partitioned away answers "unreachable", never a hang.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{ClaimStore, Held, StoreError};

/// Deletes a key only while it is still this member's pending claim.
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

pub struct RedisStore {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
    /// This member's pending value, `p:<member>`.
    pending: String,
    timeout: Duration,
}

impl RedisStore {
    /// Checks the URL; the connection itself is made on first use (a store that is down at
    /// start does not stop the relay: `on_store_error` applies).
    pub async fn connect(url: &str, member: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(|e| StoreError::Connect {
            store: relay_sink::redact_url(url),
            source: Box::new(e),
        })?;
        let store = RedisStore {
            client,
            conn: OnceCell::new(),
            pending: format!("p:{member}"),
            timeout,
        };
        if let Err(e) = store.conn().await {
            tracing::warn!(error = %e, "cluster store not reachable at start; retried on every delivery");
        }
        Ok(store)
    }

    async fn conn(&self) -> Result<ConnectionManager, StoreError> {
        let timeout = self.timeout;
        let conn = self
            .conn
            .get_or_try_init(|| async {
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1);
                tokio::time::timeout(timeout, self.client.get_connection_manager_with_config(cfg))
                    .await
                    .map_err(|_| StoreError::Timeout(timeout))?
                    .map_err(StoreError::Redis)
            })
            .await?;
        Ok(conn.clone())
    }

    async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn().await?;
        tokio::time::timeout(self.timeout, pipe.query_async::<T>(&mut conn))
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))?
            .map_err(StoreError::Redis)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait::async_trait]
impl ClaimStore for RedisStore {
    async fn claim(&self, keys: &[String], ttl: Duration) -> Result<Vec<Held>, StoreError> {
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("SET")
                .arg(k)
                .arg(&self.pending)
                .arg("NX")
                .arg("PX")
                .arg(millis(ttl))
                .arg("GET");
        }
        let old: Vec<Option<String>> = self.query(&pipe).await?;
        Ok(old
            .into_iter()
            .map(|v| match v {
                None => Held::Taken,
                Some(v) => match v.strip_prefix("p:") {
                    Some(member) => Held::Pending(member.to_string()),
                    None => Held::Committed,
                },
            })
            .collect())
    }

    async fn commit(&self, keys: &[String], window: Duration) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("SET")
                .arg(k)
                .arg("c")
                .arg("PX")
                .arg(millis(window))
                .ignore();
        }
        self.query::<()>(&pipe).await
    }

    async fn release(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("EVAL")
                .arg(RELEASE)
                .arg(1)
                .arg(k)
                .arg(&self.pending)
                .ignore();
        }
        self.query::<()>(&pipe).await
    }
}

/// Takes the lease `KEYS[1]` if nobody holds it: a new epoch from the counter `KEYS[2]`,
/// the lease value `<member>:<epoch>` for `ARGV[2]` ms. Returns the epoch, or -1.
const ACQUIRE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local e = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. e, 'PX', ARGV[2])
return e";

/// Extends the lease while it is still ours (`ARGV[1]` = `<member>:<epoch>`): 1, else 0.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0";

/// Moves a position (ms) forward only.
const ADVANCE: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) return 1 end
return 0";

impl RedisStore {
    async fn eval<T: redis::FromRedisValue>(
        &self,
        script: &str,
        keys: &[&str],
        args: &[String],
    ) -> Result<T, StoreError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(script).arg(keys.len());
        for k in keys {
            cmd.arg(*k);
        }
        for a in args {
            cmd.arg(a);
        }
        let mut conn = self.conn().await?;
        tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut conn))
            .await
            .map_err(|_| StoreError::Timeout(self.timeout))?
            .map_err(StoreError::Redis)
    }

    fn member(&self) -> &str {
        self.pending.strip_prefix("p:").unwrap_or(&self.pending)
    }
}

#[async_trait::async_trait]
impl super::LeaseStore for RedisStore {
    async fn acquire(
        &self,
        lease_key: &str,
        epoch_key: &str,
        ttl: Duration,
    ) -> Result<Option<u64>, StoreError> {
        let e: i64 = self
            .eval(
                ACQUIRE,
                &[lease_key, epoch_key],
                &[self.member().to_string(), millis(ttl).to_string()],
            )
            .await?;
        Ok(u64::try_from(e).ok())
    }

    async fn renew(&self, lease_key: &str, epoch: u64, ttl: Duration) -> Result<bool, StoreError> {
        let n: i64 = self
            .eval(
                RENEW,
                &[lease_key],
                &[
                    format!("{}:{epoch}", self.member()),
                    millis(ttl).to_string(),
                ],
            )
            .await?;
        Ok(n == 1)
    }

    async fn resign(&self, lease_key: &str, epoch: u64) -> Result<(), StoreError> {
        let _: i64 = self
            .eval(
                RELEASE,
                &[lease_key],
                &[format!("{}:{epoch}", self.member())],
            )
            .await?;
        Ok(())
    }

    async fn position(&self, key: &str) -> Result<Option<u64>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key);
        let (v,): (Option<u64>,) = self.query(&pipe).await?;
        Ok(v)
    }

    async fn advance(&self, key: &str, ms: u64) -> Result<(), StoreError> {
        let _: i64 = self.eval(ADVANCE, &[key], &[ms.to_string()]).await?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl super::SpoolReports for RedisStore {
    async fn report_spool(
        &self,
        key: &str,
        member: &str,
        report: Option<super::SpoolReport>,
    ) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        match report {
            Some(r) => pipe
                .cmd("HSET")
                .arg(key)
                .arg(member)
                .arg(r.encode())
                .ignore(),
            None => pipe.cmd("HDEL").arg(key).arg(member).ignore(),
        };
        self.query::<()>(&pipe).await
    }

    async fn spool_reports(
        &self,
        key: &str,
    ) -> Result<Vec<(String, super::SpoolReport)>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("HGETALL").arg(key);
        let (all,): (Vec<(String, String)>,) = self.query(&pipe).await?;
        Ok(all
            .into_iter()
            .filter_map(|(m, v)| Some((m, super::SpoolReport::decode(&v)?)))
            .collect())
    }
}

#[async_trait::async_trait]
impl super::Notes for RedisStore {
    async fn put_note(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(key)
            .arg(value)
            .arg("PX")
            .arg(millis(ttl))
            .ignore();
        self.query::<()>(&pipe).await
    }

    async fn get_note(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(key);
        let (v,): (Option<String>,) = self.query(&pipe).await?;
        Ok(v)
    }
}
