//! One dispatcher per sink: spool cursor → batches → `Sink::publish` → cursor commit.
//!
//! * All confirmed → the cursor moves past the batch.
//! * A retryable failure → the cursor moves past the confirmed prefix only and the rest is
//!   published again, from the first failure on, after a capped exponential backoff with
//!   jitter (forever, unless `max_attempts` is set). Records are never reordered: the record
//!   that failed is always the first one of the next attempt. (Records after it that the
//!   broker did confirm are published again: at least once.)
//! * A permanent failure → the record is dead-lettered (published to the same sink as a
//!   [`DeadLetter`] carrying the record and the reason; if even that fails permanently, the
//!   dead letter is appended to `<dead-letter dir>/<sink>.ndjson`) and skipped.
//! * A spooled record that cannot be parsed is published as a dead letter itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use relay_envelope::{Context, DeadLetter};
use relay_sink::{Message, Payload, PublishError, Reason, Sink};
use relay_spool::Spool;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::{now_ms, SinkMetrics};

use crate::decoded::{accepted_at, Decoded};
pub use crate::decoded::{to_message, SPOOL_SOURCE};

/// `[dispatch]`: how records move from the spool to each sink.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Records per publish call. Default 256.
    pub batch_size: usize,
    /// First retry delay. Default 100ms.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Retry delays double up to this. Default 30s.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Publish attempts of one record before it is dead-lettered. Default: unlimited
    /// (retry forever: a broker that is down only delays records, never drops them).
    pub max_attempts: Option<u32>,
    /// Attempts of a record the broker refuses (nothing routes it: a RabbitMQ routing key
    /// no queue is bound to with `mandatory`, a Kafka topic that does not exist with
    /// `create_topics = false`) before it is dead-lettered and the sink moves on, so that
    /// one record cannot hold back everything behind it. Default 5.
    pub max_refusals: u32,
    /// And for at least this long since the first refusal: a topic unknown for a moment
    /// during a Kafka broker restart, or a RabbitMQ queue being re-declared, is waited out
    /// rather than sending the main flow to dead letters. The sink waits this long on a
    /// record that is really unroutable. Default 1 minute.
    #[serde(with = "humantime_serde")]
    pub refusal_budget: Duration,
}

impl DispatchConfig {
    /// The section's own check.
    pub fn validate(&self) -> Result<(), relay_config::ConfigError> {
        let bad = |key: &str, problem: &str| {
            Err(relay_config::ConfigError::new("[dispatch]", key, problem))
        };
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1");
        }
        if self.max_attempts == Some(0) {
            return bad(
                "max_attempts",
                "must be at least 1 (or absent for unlimited)",
            );
        }
        if self.initial_backoff > self.max_backoff {
            return bad("initial_backoff", "must not exceed max_backoff");
        }
        Ok(())
    }
}

/// Every default of `DispatchConfig` is here.
impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            batch_size: 256,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            max_attempts: Default::default(),
            max_refusals: 5,
            refusal_budget: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("sink {sink:?}: {source}")]
    Spool {
        sink: String,
        #[source]
        source: relay_spool::SpoolError,
    },
}

/// Moves one sink's records from the spool to the sink.
pub struct Dispatcher {
    sink: Arc<dyn Sink>,
    spool: Spool,
    cfg: DispatchConfig,
    metrics: SinkMetrics,
    dead_letter_dir: PathBuf,
    filter: crate::filter::TypeFilter,
    decoded: Arc<Decoded>,
}

/// Why the dispatcher stopped delivering a batch.
enum Stop {
    Aborted,
}

impl Dispatcher {
    pub fn new(
        sink: Arc<dyn Sink>,
        spool: Spool,
        cfg: DispatchConfig,
        metrics: SinkMetrics,
        dead_letter_dir: PathBuf,
    ) -> Self {
        metrics.init_sink(sink.name());
        Dispatcher {
            sink,
            spool,
            cfg,
            metrics,
            dead_letter_dir,
            filter: crate::filter::TypeFilter::default(),
            decoded: Arc::default(),
        }
    }

    /// Records come decoded (their spool attachment), or are parsed once through
    /// `decoded`, shared with the other dispatchers (see [`crate::decoded`]).
    pub fn with_decoded(mut self, decoded: Arc<Decoded>) -> Self {
        self.decoded = decoded;
        self
    }

    /// Only records this filter admits are published; the others are passed over.
    pub fn with_filter(mut self, filter: crate::filter::TypeFilter) -> Self {
        self.filter = filter;
        self
    }

    fn name(&self) -> &str {
        self.sink.name()
    }

    /// Runs until `drain` is cancelled and everything spooled by then is delivered, or
    /// until `abort` is cancelled (whatever is not confirmed stays in the spool).
    pub async fn run(
        self,
        drain: CancellationToken,
        abort: CancellationToken,
    ) -> Result<(), DispatchError> {
        let name = self.name().to_string();
        let spool_err = |source| DispatchError::Spool {
            sink: name.clone(),
            source,
        };
        let mut cursor = self.spool.cursor(&name).map_err(spool_err)?;
        let mut target: Option<u64> = None;
        let mut read_backoff = self.cfg.initial_backoff;
        tracing::info!(sink = %name, cursor, "dispatcher started");
        loop {
            if abort.is_cancelled() {
                return Ok(());
            }
            if target.is_none() && drain.is_cancelled() {
                let end = self.spool.stats().next_offset;
                tracing::info!(sink = %name, cursor, end, "draining the spool before shutdown");
                target = Some(end);
            }
            if target.is_some_and(|t| cursor >= t) {
                tracing::info!(sink = %name, cursor, "dispatcher drained");
                return Ok(());
            }
            let records = match self.spool.read(cursor, self.cfg.batch_size).await {
                Ok(r) => {
                    read_backoff = self.cfg.initial_backoff;
                    r
                }
                Err(e) => {
                    tracing::error!(sink = %name, cursor, error = %e, "cannot read the spool; retrying");
                    if !sleep_or_abort(jitter(read_backoff), &abort).await {
                        return Ok(());
                    }
                    read_backoff = read_backoff.saturating_mul(2).min(self.cfg.max_backoff);
                    continue;
                }
            };
            let Some(first) = records.first() else {
                tokio::select! {
                    _ = self.spool.wait_for(cursor, Duration::from_secs(1)) => {}
                    _ = drain.cancelled(), if target.is_none() => {}
                    _ = abort.cancelled() => return Ok(()),
                }
                continue;
            };
            if first.offset > cursor {
                tracing::warn!(sink = %name, cursor, next = first.offset, "records before the next readable one are gone from the spool; skipping ahead");
            }
            let end = records.last().map_or(cursor, |r| r.offset + 1);
            let mut batch: Vec<Message> = records
                .into_iter()
                .map(|r| self.decoded.message(r))
                .collect();
            if !self.filter.is_empty() {
                let before = batch.len();
                batch.retain(|m| self.filter.admits(m));
                let skipped = before - batch.len();
                if skipped > 0 {
                    self.metrics
                        .filtered
                        .with_label_values(&[&name])
                        .inc_by(skipped as u64);
                }
            }
            let delivered_to = match self.deliver(&batch, &abort).await {
                Ok(next) => next,
                Err(Stop::Aborted) => return Ok(()),
            };
            // Records filtered out after the last one published are done too.
            if delivered_to < end {
                self.commit(end).await;
            }
            cursor = end;
        }
    }

    /// Delivers the batch (retrying as configured); returns the offset after it.
    async fn deliver(&self, batch: &[Message], abort: &CancellationToken) -> Result<u64, Stop> {
        let name = self.name();
        let mut start = 0usize;
        let mut retry = Retry::new(self.cfg.initial_backoff);
        let in_flight = self.metrics.in_flight.with_label_values(&[name]);
        let backoff_gauge = self.metrics.backoff.with_label_values(&[name]);
        while start < batch.len() {
            let slice = &batch[start..];
            in_flight.set(i64::try_from(slice.len()).unwrap_or(i64::MAX));
            let results = tokio::select! {
                r = self.sink.publish(slice) => r,
                _ = abort.cancelled() => {
                    in_flight.set(0);
                    return Err(Stop::Aborted);
                }
            };
            in_flight.set(0);
            let (done, failure) = self.settle(slice, results, abort).await?;
            if done > 0 {
                start += done;
                retry = Retry::new(self.cfg.initial_backoff);
                self.commit(batch[start - 1].offset + 1).await;
            }
            let Some(err) = failure else {
                continue;
            };
            retry.attempts += 1;
            if err.is_refusal() {
                retry.refusals += 1;
                retry
                    .first_refusal
                    .get_or_insert_with(std::time::Instant::now);
            }
            let msg = &batch[start];
            if let Some((e, why)) = self.give_up(&retry, &err) {
                tracing::error!(sink = name, offset = msg.offset, id = msg.id(), attempts = retry.attempts, error = %err, "giving up on a record: {why}; dead-lettering it and moving on");
                self.dead_letter(msg, &e, abort).await?;
                start += 1;
                retry = Retry::new(self.cfg.initial_backoff);
                self.commit(msg.offset + 1).await;
                continue;
            }
            self.metrics.retries.with_label_values(&[name]).inc();
            let delay = jitter(retry.backoff);
            backoff_gauge.set(delay.as_secs_f64());
            tracing::warn!(sink = name, offset = msg.offset, id = msg.id(), attempts = retry.attempts, retry_in = ?delay, error = %err, "publish failed; retrying");
            if !sleep_or_abort(delay, abort).await {
                return Err(Stop::Aborted);
            }
            retry.backoff = retry.backoff.saturating_mul(2).min(self.cfg.max_backoff);
        }
        backoff_gauge.set(0.0);
        Ok(batch.last().map_or(0, |m| m.offset + 1))
    }

    /// Counts the sink's answers for `slice` in order: confirmed, or dead-lettered when
    /// permanent, up to the first retryable failure. Returns how many are done and that
    /// failure.
    async fn settle(
        &self,
        slice: &[Message],
        results: Vec<Result<(), PublishError>>,
        abort: &CancellationToken,
    ) -> Result<(usize, Option<PublishError>), Stop> {
        let name = self.name();
        let published = self.metrics.published.with_label_values(&[name]);
        let latency = self.metrics.latency.with_label_values(&[name]);
        let now = now_ms();
        let mut done = 0usize;
        for (i, msg) in slice.iter().enumerate() {
            let result = results.get(i).cloned().unwrap_or_else(|| {
                Err(PublishError::retryable(
                    Reason::NoResult,
                    "the sink returned fewer results than messages",
                ))
            });
            let e = match result {
                Ok(()) => {
                    published.inc();
                    latency.observe(now.saturating_sub(msg.accepted_at_ms) as f64 / 1000.0);
                    done += 1;
                    continue;
                }
                Err(e) => e,
            };
            self.metrics
                .failed
                .with_label_values(&[name, e.reason().as_str()])
                .inc();
            if !e.is_permanent() {
                return Ok((done, Some(e)));
            }
            self.dead_letter(msg, &e, abort).await?;
            done += 1;
        }
        Ok((done, None))
    }

    /// The permanent error to dead-letter a record with, once it was refused or failed
    /// often enough (`max_refusals` within `refusal_budget`, `max_attempts`).
    fn give_up(&self, retry: &Retry, err: &PublishError) -> Option<(PublishError, &'static str)> {
        let (reason, why) = if self.refused_enough(retry.refusals, retry.first_refusal) {
            (
                Reason::Refused,
                "the broker kept refusing it (max_refusals)",
            )
        } else if self
            .cfg
            .max_attempts
            .is_some_and(|max| retry.attempts >= max)
        {
            (Reason::MaxAttempts, "max_attempts reached")
        } else {
            return None;
        };
        let e = PublishError::permanent(
            reason,
            format!("{} attempts, last error: {err}", retry.attempts),
        );
        Some((e, why))
    }

    /// Whether a record refused `refusals` times, the first at `first`, has been refused
    /// enough to be dead-lettered (`max_refusals` times and for `refusal_budget`).
    fn refused_enough(&self, refusals: u32, first: Option<std::time::Instant>) -> bool {
        refusals >= self.cfg.max_refusals.max(1)
            && first.is_some_and(|t| t.elapsed() >= self.cfg.refusal_budget)
    }

    async fn commit(&self, next: u64) {
        if let Err(e) = self.spool.commit(self.name(), next).await {
            // The in-memory position still advances; a later commit covers this one. Until
            // then a crash only means these records are published again.
            tracing::error!(sink = self.name(), next, error = %e, "cannot commit the sink's spool cursor");
        }
    }

    /// Dead-letters `msg`, which failed permanently with `err`: publishes a dead letter to
    /// the sink, or, when that fails permanently too (or `msg` is already a dead letter),
    /// appends it to the dead-letter file. Retries until done or aborted.
    async fn dead_letter(
        &self,
        msg: &Message,
        err: &PublishError,
        abort: &CancellationToken,
    ) -> Result<(), Stop> {
        let name = self.name();
        let reason = err.reason().as_str();
        let (ingress, source) = match &msg.payload {
            Payload::Event(env) => (env.ingress, env.source.clone()),
            Payload::DeadLetter(dl) => (dl.ingress, dl.source.clone()),
        };
        let ctx = Context {
            ingress,
            source,
            received_at: accepted_at(msg.accepted_at_ms),
            formats: relay_envelope::Formats::ALL,
        };
        let dl = DeadLetter::new(
            &msg.json,
            format!("sink {name} rejected record {}: {err}", msg.id()),
            &ctx,
        );
        let dl_msg = Message::dead_letter(msg.offset, msg.accepted_at_ms, dl);
        let mut backoff = self.cfg.initial_backoff;
        let mut to_file = msg.is_dead_letter();
        // A dead-letter destination that nothing routes either goes to the file in the end,
        // under the same rule as a record: it must not stall the sink.
        let (mut refusals, mut first_refusal) = (0u32, None::<std::time::Instant>);
        loop {
            if to_file {
                match self.write_dead_letter_file(&dl_msg.json).await {
                    Ok(path) => {
                        tracing::error!(sink = name, offset = msg.offset, id = msg.id(), reason, path = %path.display(), "record rejected permanently; dead letter written to file");
                        self.metrics
                            .dead_lettered
                            .with_label_values(&[name, reason])
                            .inc();
                        return Ok(());
                    }
                    Err(e) => {
                        tracing::error!(sink = name, offset = msg.offset, error = %e, "cannot write the dead-letter file; retrying");
                    }
                }
            } else {
                let results = tokio::select! {
                    r = self.sink.publish(std::slice::from_ref(&dl_msg)) => r,
                    _ = abort.cancelled() => return Err(Stop::Aborted),
                };
                match results.into_iter().next() {
                    Some(Ok(())) => {
                        tracing::warn!(
                            sink = name,
                            offset = msg.offset,
                            id = msg.id(),
                            reason,
                            "record rejected permanently; published as a dead letter"
                        );
                        self.metrics
                            .dead_lettered
                            .with_label_values(&[name, reason])
                            .inc();
                        return Ok(());
                    }
                    Some(Err(e)) if e.is_permanent() => {
                        to_file = true;
                        continue;
                    }
                    Some(Err(e)) if e.is_refusal() => {
                        refusals += 1;
                        first_refusal.get_or_insert_with(std::time::Instant::now);
                        if self.refused_enough(refusals, first_refusal) {
                            tracing::error!(sink = name, offset = msg.offset, error = %e, "the dead-letter destination keeps refusing; writing the dead letter to the file");
                            to_file = true;
                            continue;
                        }
                        tracing::warn!(sink = name, offset = msg.offset, error = %e, "publishing a dead letter was refused; retrying");
                    }
                    Some(Err(e)) => {
                        tracing::warn!(sink = name, offset = msg.offset, error = %e, "publishing a dead letter failed; retrying");
                    }
                    None => {}
                }
            }
            self.metrics.retries.with_label_values(&[name]).inc();
            if !sleep_or_abort(jitter(backoff), abort).await {
                return Err(Stop::Aborted);
            }
            backoff = backoff.saturating_mul(2).min(self.cfg.max_backoff);
        }
    }

    async fn write_dead_letter_file(&self, line: &Bytes) -> std::io::Result<PathBuf> {
        let dir = self.dead_letter_dir.clone();
        let path = dir.join(format!("{}.ndjson", self.name()));
        let line = line.clone();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            std::fs::create_dir_all(&dir)?;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            let mut buf = Vec::with_capacity(line.len() + 1);
            buf.extend_from_slice(&line);
            buf.push(b'\n');
            f.write_all(&buf)?;
            f.sync_data()?;
            Ok(path)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// A delay in `[d/2, d]`.
fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    let extra = rand::thread_rng().gen_range(0..=half.as_millis().min(u64::MAX as u128) as u64);
    half + Duration::from_millis(extra)
}

/// Sleeps; false if aborted first.
async fn sleep_or_abort(d: Duration, abort: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = abort.cancelled() => false,
    }
}

/// Where the retries of the record at the head of a batch stand; starts over once a
/// record is done.
struct Retry {
    attempts: u32,
    /// Of those, the attempts the broker refused the record (see `max_refusals`).
    refusals: u32,
    first_refusal: Option<std::time::Instant>,
    backoff: Duration,
}

impl Retry {
    fn new(initial_backoff: Duration) -> Retry {
        Retry {
            attempts: 0,
            refusals: 0,
            first_refusal: None,
            backoff: initial_backoff,
        }
    }
}
