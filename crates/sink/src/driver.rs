//! What every broker sink's `publish` does, written once:
//!
//! * [`Confirmations`]: a batch is sent in order with at most `max_in_flight` confirmations
//!   outstanding, the confirmations are awaited concurrently, and the result has one entry
//!   per message in batch order ([`Confirmations::finish`] logs what failed).
//! * [`fail_all`]: one failure for every message (no connection, no channel).
//! * [`ReconnectGate`]: the exponential backoff between connection attempts, so that a
//!   publish inside the backoff window fails at once instead of waiting on a dead broker.
//! * [`LazySink`]: a sink that connects in the background and while it cannot, answers
//!   every record with a retryable [`Reason::NotConnected`], so a broker that is down at
//!   start does not stop the relay from accepting events.
//!
//! A sink crate supplies only what is its broker's: how to send one message and what its
//! confirmation future is.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesOrdered, StreamExt};

use crate::{Message, PublishError, Reason, Sink};

type Confirm<'a> = Pin<Box<dyn Future<Output = (usize, Result<(), PublishError>)> + Send + 'a>>;

/// The outcome of one batch, filled as sends fail and confirmations arrive.
pub struct Confirmations<'a> {
    results: Vec<Result<(), PublishError>>,
    pending: FuturesOrdered<Confirm<'a>>,
    max_in_flight: usize,
}

impl<'a> Confirmations<'a> {
    /// For a batch of `len` messages; `max_in_flight` is at least 1.
    pub fn new(len: usize, max_in_flight: usize) -> Confirmations<'a> {
        let mut results = Vec::with_capacity(len);
        results.resize_with(len, || Ok(()));
        Confirmations {
            results,
            pending: FuturesOrdered::new(),
            max_in_flight: max_in_flight.max(1),
        }
    }

    /// Waits until another message may be sent (fewer than `max_in_flight` pending).
    pub async fn wait_for_room(&mut self) {
        while self.pending.len() >= self.max_in_flight {
            match self.pending.next().await {
                Some((i, r)) => self.results[i] = r,
                None => break,
            }
        }
    }

    /// Message `i` was sent; `confirm` resolves with the broker's answer.
    pub fn sent(
        &mut self,
        i: usize,
        confirm: impl Future<Output = Result<(), PublishError>> + Send + 'a,
    ) {
        self.pending
            .push_back(Box::pin(async move { (i, confirm.await) }));
    }

    /// Message `i` could not be sent.
    pub fn failed(&mut self, i: usize, error: PublishError) {
        if let Some(slot) = self.results.get_mut(i) {
            *slot = Err(error);
        }
    }

    /// Awaits every outstanding confirmation; logs a summary of the failures as `sink`.
    pub async fn finish(mut self, sink: &str) -> Vec<Result<(), PublishError>> {
        while let Some((i, r)) = self.pending.next().await {
            self.results[i] = r;
        }
        log_failures(sink, &self.results);
        self.results
    }
}

/// One copy of `error` per message.
pub fn fail_all(batch: &[Message], error: &PublishError) -> Vec<Result<(), PublishError>> {
    batch.iter().map(|_| Err(error.clone())).collect()
}

/// Logs, once per batch, how many records were not confirmed and the first reason.
pub fn log_failures(sink: &str, results: &[Result<(), PublishError>]) {
    let mut failed = results.iter().filter_map(|r| r.as_ref().err());
    if let Some(first) = failed.next() {
        tracing::warn!(
            sink,
            failed = 1 + failed.count(),
            total = results.len(),
            first = %first,
            "records not confirmed"
        );
    }
}

/// Exponential backoff between connection attempts: `initial`, doubling per consecutive
/// failure, at most `max`.
#[derive(Debug)]
pub struct ReconnectGate {
    initial: Duration,
    max: Duration,
    failures: u32,
    next_attempt: Option<Instant>,
}

impl ReconnectGate {
    pub fn new(initial: Duration, max: Duration) -> ReconnectGate {
        ReconnectGate {
            initial,
            max: max.max(initial),
            failures: 0,
            next_attempt: None,
        }
    }

    /// `Err(wait)` while inside the backoff window: do not try yet.
    pub fn check(&self, now: Instant) -> Result<(), Duration> {
        match self.next_attempt {
            Some(next) if now < next => Err(next - now),
            _ => Ok(()),
        }
    }

    /// An attempt failed: how long until the next one may be made.
    pub fn failed(&mut self, now: Instant) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = (self.failures - 1).min(16);
        let wait = self.initial.saturating_mul(1u32 << exp).min(self.max);
        self.next_attempt = Some(now + wait);
        wait
    }

    /// An attempt succeeded: returns how many had failed before it.
    pub fn succeeded(&mut self) -> u32 {
        self.next_attempt = None;
        std::mem::take(&mut self.failures)
    }
}

/// How a [`LazySink`] connects.
pub type Connect = Box<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Arc<dyn Sink>, String>> + Send>> + Send + Sync,
>;

/// A sink that connects lazily (see the module documentation).
pub struct LazySink {
    name: String,
    connect: Connect,
    inner: tokio::sync::RwLock<Option<Arc<dyn Sink>>>,
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl LazySink {
    /// Starts connecting in the background (a failure is logged and retried on the next
    /// publish), so an unreachable broker does not delay the start.
    pub fn start(name: &str, connect: Connect) -> Arc<LazySink> {
        let sink = Arc::new(LazySink {
            name: name.to_owned(),
            connect,
            inner: tokio::sync::RwLock::new(None),
            one_at_a_time: tokio::sync::Mutex::new(()),
        });
        let first = sink.clone();
        tokio::spawn(async move {
            if let Err(e) = first.connected().await {
                tracing::warn!(sink = %first.name, error = %e, "sink cannot connect yet; events are spooled and delivered once it does");
            }
        });
        sink
    }

    /// The connected sink, connecting now if needed.
    pub async fn connected(&self) -> Result<Arc<dyn Sink>, String> {
        if let Some(s) = self.inner.read().await.as_ref() {
            return Ok(s.clone());
        }
        let _guard = self.one_at_a_time.lock().await;
        if let Some(s) = self.inner.read().await.as_ref() {
            return Ok(s.clone());
        }
        let s = (self.connect)().await?;
        tracing::info!(sink = %self.name, "sink connected");
        *self.inner.write().await = Some(s.clone());
        Ok(s)
    }

    async fn current(&self) -> Option<Arc<dyn Sink>> {
        self.inner.read().await.clone()
    }
}

#[async_trait::async_trait]
impl Sink for LazySink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, batch: &[Message]) -> Vec<Result<(), PublishError>> {
        match self.connected().await {
            Ok(s) => s.publish(batch).await,
            Err(detail) => fail_all(
                batch,
                &PublishError::retryable(Reason::NotConnected, detail),
            ),
        }
    }

    async fn ready(&self) -> bool {
        match self.current().await {
            Some(s) => s.ready().await,
            None => false,
        }
    }

    async fn close(&self) -> Result<(), PublishError> {
        match self.current().await {
            Some(s) => s.close().await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_backs_off_exponentially_and_resets() {
        let t0 = Instant::now();
        let mut gate = ReconnectGate::new(Duration::from_millis(500), Duration::from_secs(3));
        assert!(gate.check(t0).is_ok());
        assert_eq!(gate.failed(t0), Duration::from_millis(500));
        assert!(gate.check(t0).is_err());
        assert!(gate.check(t0 + Duration::from_millis(500)).is_ok());
        assert_eq!(gate.failed(t0), Duration::from_secs(1));
        assert_eq!(gate.failed(t0), Duration::from_secs(2));
        assert_eq!(gate.failed(t0), Duration::from_secs(3));
        assert_eq!(gate.failed(t0), Duration::from_secs(3));
        assert_eq!(gate.succeeded(), 5);
        assert!(gate.check(t0).is_ok());
        assert_eq!(gate.failed(t0), Duration::from_millis(500));
    }

    #[tokio::test]
    async fn confirmations_keep_batch_order_and_bound_in_flight() {
        let in_flight = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut c = Confirmations::new(6, 2);
        for i in 0..6 {
            c.wait_for_room().await;
            if i == 3 {
                c.failed(i, PublishError::permanent(Reason::TooLarge, "big"));
                continue;
            }
            let (f, p) = (in_flight.clone(), peak.clone());
            let now = f.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            p.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
            c.sent(i, async move {
                tokio::time::sleep(Duration::from_millis(5 * (6 - i as u64))).await;
                f.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                if i == 5 {
                    Err(PublishError::retryable(Reason::Nack, "no"))
                } else {
                    Ok(())
                }
            });
        }
        let results = c.finish("t").await;
        assert_eq!(results.len(), 6);
        assert!(peak.load(std::sync::atomic::Ordering::SeqCst) <= 2);
        let reasons: Vec<Option<Reason>> = results
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.reason()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                None,
                None,
                None,
                Some(Reason::TooLarge),
                None,
                Some(Reason::Nack)
            ]
        );
    }
}
