//! Gaps while running: intervals in which the webhook refused deliveries (a full or failed
//! spool, the pre-auth budget, a per-app limit) for at least `min_gap`. X retries a refused
//! delivery a few times over about 5 minutes and then gives up, so such an interval may
//! hold events X will not send again; the relay recovers it in-run, as soon as X's rules
//! allow, the same way as a gap found at start ([`super::GapRecovery`]).
//!
//! One task runs every recovery of the process, one at a time (X refuses two replay jobs
//! at once): first the gap found at start, if any, then each interval the webhook's
//! [`relay_ingress::Acceptance`] closed, widened by `safety_margin` on both sides, once its
//! end (with the margin) has passed. While a window waits or runs, the shared [`Pending`]
//! keeps its start for the liveness record, so a restart recovers it (and what came after)
//! too. Without `[recovery]`, each such interval is logged as an error and counted
//! (`activity_relay_recovery_windows_total{state="not_recovered"}`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use relay_ingress::{Acceptance, Pipeline};
use tokio_util::sync::CancellationToken;

use super::{GapRecovery, Pending, RecoveryMetrics};

/// Builds the recovery of a window starting at its argument (`None`: `[recovery]` is off).
pub type BuildRecovery = Box<dyn Fn(DateTime<Utc>) -> Option<GapRecovery> + Send + Sync>;

/// The in-run recovery of the webhook's intervals of refusals.
pub struct InRun {
    /// The webhook's acceptance: where the intervals come from.
    pub acceptance: Acceptance,
    /// Shorter intervals are covered by X's own retries.
    pub min_gap: Duration,
    /// Added before and after each interval.
    pub margin: Duration,
    /// How often the intervals are looked at (`liveness_interval`).
    pub interval: Duration,
    pub metrics: RecoveryMetrics,
    /// Shared with the liveness record.
    pub pending: Pending,
    pub build: BuildRecovery,
}

impl InRun {
    /// Runs `start` (the gap found at start), then the intervals of refusals as they come,
    /// until `stop`.
    pub async fn run(
        self,
        start: Option<(GapRecovery, DateTime<Utc>, DateTime<Utc>)>,
        pipeline: Arc<dyn Pipeline>,
        stop: CancellationToken,
    ) {
        if let Some((r, from, to)) = start {
            r.with_pending(self.pending.clone())
                .run(pipeline.clone(), from, to, stop.clone())
                .await;
        }
        let margin = chrono::Duration::from_std(self.margin).unwrap_or_default();
        let mut queue: VecDeque<(DateTime<Utc>, DateTime<Utc>)> = VecDeque::new();
        loop {
            for (from, to) in self.acceptance.take_refused() {
                let (from, to) = (DateTime::<Utc>::from(from), DateTime::<Utc>::from(to));
                let length = (to - from).to_std().unwrap_or_default();
                if length < self.min_gap {
                    continue;
                }
                self.metrics.windows.with_label_values(&["opened"]).inc();
                let window = (from - margin, to + margin);
                tracing::warn!(
                    from = %from.to_rfc3339(),
                    to = %to.to_rfc3339(),
                    refused_secs = length.as_secs(),
                    "the webhook refused deliveries for longer than [recovery] min_gap: X may have given up on some"
                );
                match queue.back_mut() {
                    // Overlapping windows are read once.
                    Some(last) if window.0 <= last.1 => last.1 = last.1.max(window.1),
                    _ => queue.push_back(window),
                }
            }
            if let Some(front) = queue.front() {
                let mut p = self.pending.lock();
                if p.is_none_or(|t| front.0 < t) {
                    *p = Some(front.0);
                }
            }
            // The first window, once its end has passed (X serves only the past).
            while let Some(&(from, to)) = queue.front() {
                if Utc::now() < to {
                    break;
                }
                queue.pop_front();
                match (self.build)(from) {
                    Some(r) => {
                        tracing::info!(from = %from.to_rfc3339(), to = %to.to_rfc3339(), "recovering the webhook's refused interval in-run");
                        r.with_pending(self.pending.clone())
                            .run(pipeline.clone(), from, to, stop.clone())
                            .await;
                        if stop.is_cancelled() {
                            // What is left stays pending for the next start.
                            return;
                        }
                        self.metrics.windows.with_label_values(&["recovered"]).inc();
                    }
                    None => {
                        self.metrics
                            .windows
                            .with_label_values(&["not_recovered"])
                            .inc();
                        tracing::error!(
                            from = %from.to_rfc3339(),
                            to = %to.to_rfc3339(),
                            "events X gave up on while the webhook refused deliveries are lost: [recovery] is not enabled (`activity-relay x replay` can still replay the window)"
                        );
                    }
                }
                *self.pending.lock() = queue.front().map(|w| w.0);
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}
