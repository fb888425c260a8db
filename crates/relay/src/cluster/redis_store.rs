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
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Failed(format!("{}: {e}", relay_sink::redact_url(url))))?;
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
                    .map_err(|e| StoreError::Failed(e.to_string()))
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
            .map_err(|e| StoreError::Failed(e.to_string()))
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
