//! normalize → dedup → durable spool append: the [`Pipeline`] both ingresses call.
//!
//! One delivery is one spool append (all or nothing). Ids are marked as seen only after
//! that append succeeded, so a refused delivery (X retries it) is never mistaken for a
//! duplicate later. Identical deliveries arriving at the same time (X sends one per app
//! when several apps share a user) do not both get spooled: the ids being appended are
//! claimed ([`Dedup::claim`]), and a delivery carrying one waits for that append's outcome
//! first (it holds no claim while it waits, so deliveries never wait on each other in a
//! cycle).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use relay_envelope::{normalize, taxonomy, Context, DeadLetter, NormalizeError, XFormat};
use relay_ingress::{AcceptError, AcceptReport, Pipeline};
use relay_sink::Payload;
use relay_spool::{NewRecord, RecordKind, Spool, SpoolError, SpoolStats};

use crate::dedup::{Claim, Dedup};
use crate::metrics::{now_ms, PipelineMetrics};

/// How long an append error keeps `/readyz` at 503 (unless an append succeeds first).
pub const ERROR_HOLD: Duration = Duration::from_secs(30);

/// Why the spool takes no appends now (`/readyz`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpoolRefusal {
    /// An append failed within the last [`ERROR_HOLD`]; the failure's message.
    #[error("spool not writable: {error}")]
    NotWritable { error: String },
    #[error("spool full ({bytes} of {max} bytes)")]
    Full { bytes: u64, max: u64 },
}

/// The fleet's verdict on one id of a delivery (`[cluster]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// This member spools it (claimed pending).
    Ours,
    /// Another member accepted it: a duplicate.
    Duplicate,
    /// The store could not tell: spooled anyway (`on_store_error = "accept"`).
    Unverified,
}

/// Deduplication across a fleet of relays, in a store they share: the relay's `cluster`
/// implements it; the pipeline claims the ids its own window does not know, commits them
/// once spooled, releases them if the append failed.
#[async_trait::async_trait]
pub trait Fleet: Send + Sync + 'static {
    /// A verdict per id; an error refuses the delivery (503, X retries it).
    async fn claim(
        &self,
        ids: &[String],
    ) -> Result<Vec<Verdict>, Box<dyn std::error::Error + Send + Sync>>;
    /// The ids are spooled: committed for the dedup window.
    async fn commit(&self, ids: &[String]);
    /// The append failed: the ids are free again.
    async fn release(&self, ids: &[String]);
}

/// Whether the spool takes appends, as last seen by the pipeline (for `/readyz`).
#[derive(Debug)]
pub struct SpoolHealth {
    /// Bytes used when an append was last refused as full; `u64::MAX` when not full.
    full_at: AtomicU64,
    /// The last append error other than "full" and when it happened, until an append
    /// succeeds.
    error: Mutex<Option<(String, std::time::Instant)>>,
}

impl Default for SpoolHealth {
    fn default() -> Self {
        SpoolHealth {
            full_at: AtomicU64::new(u64::MAX),
            error: Mutex::new(None),
        }
    }
}

impl SpoolHealth {
    fn ok(&self) {
        self.full_at.store(u64::MAX, Ordering::Release);
        *self.error.lock() = None;
    }

    fn full(&self, used: u64) {
        self.full_at.store(used, Ordering::Release);
    }

    fn failed(&self, reason: String) {
        *self.error.lock() = Some((reason, std::time::Instant::now()));
    }

    /// `Err(reason)` when the spool cannot take appends: an append failed within the last
    /// [`ERROR_HOLD`] (after that, traffic is let in again to find out), it is at its
    /// bound, or it refused an append as full and nothing was freed since.
    pub fn check(&self, stats: &SpoolStats) -> Result<(), SpoolRefusal> {
        if let Some((e, at)) = self.error.lock().as_ref() {
            if at.elapsed() < ERROR_HOLD {
                return Err(SpoolRefusal::NotWritable { error: e.clone() });
            }
        }
        let full_at = self.full_at.load(Ordering::Acquire);
        if stats.bytes >= stats.max_bytes || (full_at != u64::MAX && stats.bytes >= full_at) {
            return Err(SpoolRefusal::Full {
                bytes: stats.bytes,
                max: stats.max_bytes,
            });
        }
        Ok(())
    }
}

/// The relay's [`Pipeline`].
/// How long a delivery's answer waits for the fleet's store to hear of its commit.
const FLEET_COMMIT_WAIT: Duration = Duration::from_millis(500);

pub struct RelayPipeline {
    spool: Spool,
    dedup: Arc<Dedup>,
    metrics: PipelineMetrics,
    health: Arc<SpoolHealth>,
    retry_after: Duration,
    /// Who watches what is accepted (gap recovery, for its replay jobs' status events).
    hooks: Vec<Arc<dyn AcceptHook>>,
    /// The fleet's dedup (`[cluster]`), asked about what this member's window has not seen.
    fleet: Option<Arc<dyn Fleet>>,
}

/// What runs once a delivery is accepted: durable, or found to be a duplicate of one that
/// is. Never when its append failed (X retries it, and the hook sees it again).
pub type AfterAccept = Box<dyn FnOnce() + Send>;

/// Watches what the pipeline accepts: looks at each envelope of a delivery before the
/// append and may return what to do once the delivery is accepted. This is how gap
/// recovery learns that a replay job finished (`recovery::JobStatusHook`), without the
/// pipeline knowing about recovery.
pub trait AcceptHook: Send + Sync {
    fn observe(&self, env: &relay_envelope::Envelope) -> Option<AfterAccept>;
}

impl RelayPipeline {
    pub fn new(
        spool: Spool,
        dedup: Arc<Dedup>,
        metrics: PipelineMetrics,
        health: Arc<SpoolHealth>,
        retry_after: Duration,
    ) -> Self {
        RelayPipeline {
            spool,
            dedup,
            metrics,
            health,
            retry_after,
            hooks: Vec::new(),
            fleet: None,
        }
    }

    /// Asks `fleet` about every id this member's own window has not seen (`[cluster]`).
    pub fn with_fleet(mut self, fleet: Arc<dyn Fleet>) -> Self {
        self.fleet = Some(fleet);
        self
    }

    /// The fleet's verdict on the ids `seen` does not know (`None` there): those another
    /// member accepted become duplicates (their format unknown). Returns the ids claimed for
    /// this member (to commit or release).
    async fn fleet_verdicts(
        &self,
        ids: &[String],
        seen: &mut [Option<Option<XFormat>>],
    ) -> Result<Vec<String>, AcceptError> {
        let Some(fleet) = &self.fleet else {
            return Ok(Vec::new());
        };
        let ask: Vec<usize> = (0..ids.len()).filter(|&i| seen[i].is_none()).collect();
        if ask.is_empty() {
            return Ok(Vec::new());
        }
        let asked: Vec<String> = ask.iter().map(|&i| ids[i].clone()).collect();
        let verdicts = fleet.claim(&asked).await.map_err(|e| {
            self.metrics
                .accept_failures
                .with_label_values(&["cluster_store"])
                .inc();
            AcceptError::Unavailable(e)
        })?;
        let mut ours = Vec::new();
        for (&i, v) in ask.iter().zip(verdicts) {
            match v {
                Verdict::Duplicate => seen[i] = Some(None),
                Verdict::Ours => ours.push(ids[i].clone()),
                Verdict::Unverified => {}
            }
        }
        Ok(ours)
    }

    /// Adds a hook that watches what is accepted (see [`AcceptHook`]).
    pub fn with_hook(mut self, hook: Arc<dyn AcceptHook>) -> Self {
        self.hooks.push(hook);
        self
    }

    pub fn health(&self) -> Arc<SpoolHealth> {
        self.health.clone()
    }
}

#[async_trait::async_trait]
impl Pipeline for RelayPipeline {
    async fn accept(&self, body: Bytes, ctx: Context) -> Result<AcceptReport, AcceptError> {
        let now = now_ms();
        let mut report = AcceptReport::default();
        let mut batch = Batch::new(now);
        // What the hooks asked to run once the delivery is accepted.
        let mut after_accept: Vec<AfterAccept> = Vec::new();
        // Why the delivery is a dead letter, as a metric label, when it is one.
        let mut dead_letter_reason = "not_json";
        // The claim is held until the append's outcome is settled: committed, or dropped
        // (released); `fleet_ours`: the ids claimed for this member in the fleet's store.
        let (claim, fleet_ours) = match self.verdict(&body, &ctx, &mut report) {
            Delivery::Errors => return Ok(report),
            Delivery::Envelopes(envelopes) => {
                for env in &envelopes {
                    for hook in &self.hooks {
                        after_accept.extend(hook.observe(env));
                    }
                }
                self.take_envelopes(envelopes, &ctx, &mut batch, &mut report)
                    .await?
            }
            Delivery::DeadLetter { reason, label } => {
                dead_letter_reason = label;
                self.take_dead_letter(&body, reason, &ctx, &mut batch, &mut report)
                    .await?
            }
        };
        if batch.records.is_empty() {
            if let Some(fleet) = self.fleet.clone().filter(|_| !fleet_ours.is_empty()) {
                // Nothing spooled (cannot happen with claims taken, but never leave one).
                tokio::spawn(async move { fleet.release(&fleet_ours).await });
            }
            after_accept.into_iter().for_each(|f| f());
            return Ok(report);
        }
        let (envelopes, dead_letters) = batch.counts();
        let newest_event = batch.newest_event;
        self.append(batch, claim, fleet_ours).await?;
        self.health.ok();
        if envelopes > 0 {
            self.metrics
                .spooled
                .with_label_values(&["envelope"])
                .inc_by(envelopes);
        }
        if dead_letters > 0 {
            self.metrics
                .spooled
                .with_label_values(&["deadletter"])
                .inc_by(dead_letters);
            self.metrics
                .dead_letters
                .with_label_values(&[dead_letter_reason])
                .inc_by(dead_letters);
        }
        report.spooled += envelopes as usize;
        report.dead_letters += dead_letters as usize;
        if let Some(t) = newest_event {
            let g = self
                .metrics
                .last_event
                .with_label_values(&[ctx.ingress.as_str(), ctx.source.as_str()]);
            let secs = t as f64 / 1000.0;
            if secs > g.get() {
                g.set(secs);
            }
        }
        after_accept.into_iter().for_each(|f| f());
        Ok(report)
    }
}

/// What a delivery is.
enum Delivery {
    /// Envelopes (some perhaps already seen).
    Envelopes(Vec<relay_envelope::Envelope>),
    /// Kept whole as a dead letter: why, and the metric label.
    DeadLetter { reason: String, label: &'static str },
    /// X's report of errors, counted: nothing to spool.
    Errors,
}

/// What one delivery spools, kept in step: the records (each with its decoded form
/// attached, for the dispatchers: [`crate::decoded`]), the ids and input formats the
/// claims commit, and the newest event's time.
struct Batch {
    now: u64,
    records: Vec<NewRecord>,
    ids: Vec<String>,
    formats: Vec<Option<XFormat>>,
    newest_event: Option<i64>,
}

impl Batch {
    fn new(now: u64) -> Batch {
        Batch {
            now,
            records: Vec::new(),
            ids: Vec::new(),
            formats: Vec::new(),
            newest_event: None,
        }
    }

    fn push_envelope(&mut self, env: relay_envelope::Envelope) {
        let t = env.time.timestamp_millis();
        self.newest_event = Some(self.newest_event.map_or(t, |n| n.max(t)));
        let json = Bytes::from(env.to_json());
        let (id, format) = (env.id.clone(), env.xformat);
        let payload = Payload::Event(Arc::new(env));
        self.push(RecordKind::Envelope, id, format, json, payload);
    }

    fn push_dead_letter(&mut self, dl: DeadLetter) {
        let json = Bytes::from(dl.to_json());
        let id = dl.id.clone();
        let payload = Payload::DeadLetter(Arc::new(dl));
        self.push(RecordKind::DeadLetter, id, None, json, payload);
    }

    fn push(
        &mut self,
        kind: RecordKind,
        id: String,
        format: Option<XFormat>,
        json: Bytes,
        payload: Payload,
    ) {
        self.ids.push(id);
        self.formats.push(format);
        self.records.push(NewRecord {
            kind,
            accepted_at_ms: self.now,
            payload: json,
            attachment: crate::decoded::attach(payload),
        });
    }

    /// `now` as the dedup window's clock.
    fn now_i(&self) -> i64 {
        i64::try_from(self.now).unwrap_or(i64::MAX)
    }

    /// (envelopes, dead letters).
    fn counts(&self) -> (u64, u64) {
        let dead = self
            .records
            .iter()
            .filter(|r| r.kind == RecordKind::DeadLetter)
            .count() as u64;
        (self.records.len() as u64 - dead, dead)
    }
}

impl RelayPipeline {
    /// Envelopes, or why the delivery is kept whole as a dead letter.
    fn verdict(&self, body: &Bytes, ctx: &Context, report: &mut AcceptReport) -> Delivery {
        match normalize(body, ctx) {
            Ok(envelopes) => {
                let refused = envelopes
                    .iter()
                    .filter_map(|e| e.xformat)
                    .find(|f| !ctx.formats.allows(*f));
                match refused {
                    // After the cutover an operator takes XAA only: AAA is kept, not lost.
                    Some(f) => Delivery::DeadLetter {
                        reason: format!(
                            "input format {f} is not accepted by this ingress (its `formats` setting)"
                        ),
                        label: "format_not_accepted",
                    },
                    None => Delivery::Envelopes(envelopes),
                }
            }
            Err(NormalizeError::NotJson { reason }) => Delivery::DeadLetter {
                reason: format!("not JSON: {reason}"),
                label: "not_json",
            },
            Err(e @ NormalizeError::TooLarge { .. }) => Delivery::DeadLetter {
                reason: e.to_string(),
                label: "too_large",
            },
            Err(NormalizeError::XaaErrors { count, summary }) => {
                let ingress = ctx.ingress.as_str();
                tracing::warn!(ingress, source = %ctx.source, count, %summary, "X reported errors in a delivery");
                self.metrics
                    .xaa_errors
                    .with_label_values(&[ingress])
                    .inc_by(count as u64);
                report.xaa_errors = count;
                Delivery::Errors
            }
        }
    }

    /// Counts the envelopes, claims the ones not seen in this delivery, and puts the ones
    /// nobody had (here or in the fleet) in `batch`.
    async fn take_envelopes(
        &self,
        envelopes: Vec<relay_envelope::Envelope>,
        ctx: &Context,
        batch: &mut Batch,
        report: &mut AcceptReport,
    ) -> Result<(Claim, Vec<String>), AcceptError> {
        let mut here = HashSet::with_capacity(envelopes.len());
        let mut fresh = Vec::with_capacity(envelopes.len());
        for env in envelopes {
            let format = env.xformat.map_or("none", XFormat::as_str);
            let ty = taxonomy::label(&env.event_type);
            self.metrics
                .events_in
                .with_label_values(&[ty, ctx.ingress.as_str(), format])
                .inc();
            if !here.insert(env.id.clone()) {
                self.metrics
                    .duplicates
                    .with_label_values(&[ty, format])
                    .inc();
                report.duplicates += 1;
                continue;
            }
            fresh.push(env);
        }
        let fresh_ids: Vec<String> = fresh.iter().map(|e| e.id.clone()).collect();
        let claim = self.dedup.claim(&fresh_ids, batch.now_i()).await;
        let mut dup = claim.seen().to_vec();
        let fleet_ours = self.fleet_verdicts(&fresh_ids, &mut dup).await?;
        for (env, seen) in fresh.into_iter().zip(dup) {
            let t = env.time.timestamp_millis();
            report.newest_event_ms = Some(report.newest_event_ms.map_or(t, |n| n.max(t)));
            let Some(first) = seen else {
                batch.push_envelope(env);
                continue;
            };
            let format = env.xformat.map_or("none", XFormat::as_str);
            self.metrics
                .duplicates
                .with_label_values(&[taxonomy::label(&env.event_type), format])
                .inc();
            if first.is_some() && env.xformat.is_some() && first != env.xformat {
                self.metrics
                    .cross_format_duplicates
                    .with_label_values(&[format])
                    .inc();
            }
            report.duplicates += 1;
        }
        Ok((claim, fleet_ours))
    }

    /// Claims the delivery as one dead letter and puts it in `batch` unless it was seen.
    async fn take_dead_letter(
        &self,
        body: &Bytes,
        reason: String,
        ctx: &Context,
        batch: &mut Batch,
        report: &mut AcceptReport,
    ) -> Result<(Claim, Vec<String>), AcceptError> {
        let dl = DeadLetter::new(body, reason.clone(), ctx);
        let claim = self
            .dedup
            .claim(std::slice::from_ref(&dl.id), batch.now_i())
            .await;
        let mut seen = claim.seen().to_vec();
        let fleet_ours = self
            .fleet_verdicts(std::slice::from_ref(&dl.id), &mut seen)
            .await?;
        if seen.first().is_some_and(Option::is_some) {
            self.metrics
                .duplicates
                .with_label_values(&["deadletter", "none"])
                .inc();
            report.duplicates += 1;
        } else {
            tracing::warn!(
                ingress = ctx.ingress.as_str(),
                source = %ctx.source,
                id = %dl.id,
                bytes = body.len(),
                %reason,
                "delivery cannot become envelopes; spooled as a dead letter"
            );
            batch.push_dead_letter(dl);
        }
        Ok((claim, fleet_ours))
    }

    /// Appends `batch` and commits its claims (releases them if the append failed).
    async fn append(
        &self,
        batch: Batch,
        claim: Claim,
        fleet_ours: Vec<String>,
    ) -> Result<(), AcceptError> {
        let now_i = batch.now_i();
        let Batch {
            records,
            ids,
            formats,
            ..
        } = batch;
        // The append and the commit of the claim run to their end on their own task: a
        // delivery cancelled once its append is queued (X's timeout, the client gone) still
        // remembers what it made durable, so X's retry or a concurrent twin is a duplicate.
        let spool = self.spool.clone();
        let fleet = self.fleet.clone();
        let task = tokio::spawn(async move {
            let r = spool.append(records).await;
            if r.is_ok() {
                claim.commit(
                    ids.iter().map(String::as_str).zip(formats.iter().copied()),
                    now_i,
                );
            } else {
                // Released at once: a twin delivery waiting on it goes on.
                drop(claim);
            }
            // The fleet learns of it before the answer, within a short bound (then it goes
            // on in the background): a member killed after X's 200 leaves committed claims,
            // not pending ones that expire and let X's next re-send through elsewhere.
            if let Some(fleet) = fleet {
                let ok = r.is_ok();
                let told = tokio::spawn(async move {
                    if ok {
                        fleet.commit(&ids).await;
                    } else {
                        fleet.release(&fleet_ours).await;
                    }
                });
                let _ = tokio::time::timeout(FLEET_COMMIT_WAIT, told).await;
            }
            r
        });
        match task.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.refused(e)),
            Err(e) => {
                self.metrics
                    .accept_failures
                    .with_label_values(&["spool_error"])
                    .inc();
                tracing::error!(error = %e, "spool append task failed; delivery refused");
                Err(AcceptError::Unavailable(Box::new(e)))
            }
        }
    }

    /// The answer to a delivery the spool refused, counted.
    fn refused(&self, e: SpoolError) -> AcceptError {
        if let SpoolError::Full { used, max } = e {
            self.health.full(used);
            self.metrics
                .accept_failures
                .with_label_values(&["spool_full"])
                .inc();
            tracing::warn!(used, max, "spool full; delivery refused (X retries it)");
            return AcceptError::Full {
                retry_after: self.retry_after,
            };
        }
        let reason = match &e {
            SpoolError::Closed => "shutting_down",
            SpoolError::RecordTooLarge { .. } => "too_large",
            _ => "spool_error",
        };
        if !matches!(e, SpoolError::Closed | SpoolError::RecordTooLarge { .. }) {
            self.health.failed(e.to_string());
        }
        self.metrics
            .accept_failures
            .with_label_values(&[reason])
            .inc();
        tracing::error!(error = %e, "spool append failed; delivery refused");
        if matches!(e, SpoolError::RecordTooLarge { .. }) {
            // Permanent: the same body would be refused again, X must not retry it.
            return AcceptError::TooLarge(Box::new(e));
        }
        AcceptError::Unavailable(Box::new(e))
    }
}
