//! Gap recovery for a fleet (`docs/cluster.md`, "Gaps of the fleet"). A member's own
//! liveness record says when *it* stopped accepting; in a fleet behind one URL, the others
//! may have accepted meanwhile, so a rolling restart is not a gap. Here:
//!
//! * **The fleet's webhook clock**: every member moves `<namespace>:position:webhook`
//!   forward to the time up to which it accepted everything, every `liveness_interval`.
//!   At start, a member's webhook gap runs from the later of its own record and that clock:
//!   a gap is a time when no member accepted.
//! * **One member asks X**: all members starting after a fleet-wide outage find the same
//!   gap; the first to claim `<namespace>:gap:webhook:<from>` in the store recovers it, the
//!   others leave it (a member that restarts finds its own claim and resumes).
//! * **Job statuses for whoever asked**: X delivers a replay job's `replay_job_status` to
//!   whichever member its balancer picks; that member notes it in the store
//!   (`<namespace>:replay-job:<id>`), and the member waiting for the job reads it there as
//!   well as from its own pipeline.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use super::{Held, Store};
use crate::metrics::ms_since_epoch as ms;

/// How long a replay job's status and a gap's claim are kept (with NATS key-value, for the
/// claims bucket's `max_age`, the dedup window, if that is shorter).
const KEPT: Duration = Duration::from_secs(24 * 3600);

/// A fleet member's part in gap recovery.
#[derive(Clone)]
pub struct FleetRecovery {
    pub store: Arc<dyn Store>,
    pub namespace: String,
    pub member: String,
}

impl FleetRecovery {
    fn clock_key(&self) -> String {
        format!("{}:position:webhook", self.namespace)
    }

    fn job_key(&self, job_id: &str) -> String {
        format!("{}:replay-job:{job_id}", self.namespace)
    }

    /// Up to when some member of the fleet accepted everything X sent to the webhook
    /// (`None`: never recorded, or the store cannot say).
    pub async fn webhook_clock(&self) -> Option<DateTime<Utc>> {
        match self.store.position(&self.clock_key()).await {
            Ok(Some(at)) => i64::try_from(at)
                .ok()
                .and_then(DateTime::<Utc>::from_timestamp_millis),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the fleet's webhook clock; the gap is this member's own");
                None
            }
        }
    }

    /// Moves the fleet's clock forward to this member's acceptance, every `interval`
    /// (at once first) until `stop`, and once more at the end.
    pub async fn keep_webhook_clock(
        self,
        acceptance: relay_ingress::Acceptance,
        interval: Duration,
        stop: CancellationToken,
    ) {
        let key = self.clock_key();
        loop {
            if let Err(e) = self
                .store
                .advance(&key, ms(acceptance.accepted_up_to()))
                .await
            {
                tracing::debug!(error = %e, "cannot move the fleet's webhook clock");
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(interval) => {}
            }
        }
        let _ = self
            .store
            .advance(&key, ms(acceptance.accepted_up_to()))
            .await;
    }

    /// Whether this member recovers the fleet's webhook gap: the first member to claim it
    /// does (or this one again, after a restart). The gap is named by the fleet's clock
    /// when there is one (every member starting after the outage read the same value, even
    /// where their own records differ), else by `from`. Each member's `from` is at or
    /// before the fleet's real gap (the later of its own record and the fleet's clock, less
    /// the margin), so whoever wins covers it. A store that cannot answer lets it recover:
    /// at worst a window is asked of X twice, and its events are deduplicated by the fleet.
    pub async fn claim_gap(&self, fleet_clock: Option<DateTime<Utc>>, from: DateTime<Utc>) -> bool {
        let key = format!(
            "{}:gap:webhook:{}",
            self.namespace,
            fleet_clock.unwrap_or(from).timestamp_millis()
        );
        match self.store.claim(&[key], KEPT).await {
            Ok(held) => match held.first() {
                Some(Held::Taken) | None => true,
                Some(Held::Pending(m)) if *m == self.member => true,
                Some(Held::Pending(m)) => {
                    tracing::info!(member = %m, from = %from.to_rfc3339(), "the fleet's webhook gap is recovered by another member");
                    false
                }
                Some(Held::Committed) => false,
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim the fleet's webhook gap; recovering it here");
                true
            }
        }
    }

    /// Notes a replay job's end for the member waiting for it (in the background).
    pub fn note_job_state(&self, job_id: &str, job_state: &str) {
        let (store, key, state) = (
            self.store.clone(),
            self.job_key(job_id),
            job_state.to_string(),
        );
        tokio::spawn(async move {
            if let Err(e) = store.put_note(&key, &state, KEPT).await {
                tracing::warn!(error = %e, "cannot note a replay job's status for the fleet");
            }
        });
    }

    /// A replay job's end, if a member noted it.
    pub async fn job_state(&self, job_id: &str) -> Option<String> {
        self.store
            .get_note(&self.job_key(job_id))
            .await
            .ok()
            .flatten()
    }
}
