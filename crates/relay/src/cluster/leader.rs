//! One member at a time runs a job of the fleet (a `[[streams]]` connection): a lease in the
//! store, taken with a new epoch, renewed every third of `lease`. A leader that cannot
//! renew stops the job once two thirds of the lease have passed since its last renewal,
//! before the lease can expire in the store and a standby take it: never two members
//! holding one stream for longer than the lease. The standby tries every third of the lease
//! and, once it leads, resumes from the fleet's position (kept in the store, in X's time,
//! forward only), so a leader's death loses nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::IntGauge;
use relay_ingress::Position;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::LeaseStore;
use crate::metrics::ms_since_epoch as ms;

/// What a leadership needs to know and tell.
pub struct Lead {
    pub store: Arc<dyn LeaseStore>,
    /// The job's name (`stream:<name>`).
    pub job: String,
    /// The fleet's namespace (key prefix).
    pub namespace: String,
    pub lease: Duration,
    /// The job runs while this holds `true`.
    pub gate: watch::Sender<bool>,
    /// The job's position in X's time, shared with the fleet.
    pub position: Position,
    /// `activity_relay_cluster_leader{job}`.
    pub leader: IntGauge,
}

impl Lead {
    /// Takes, holds and gives up the job's lease until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        // Hash-tagged: the lease and its epoch counter in one slot of a Redis Cluster.
        let tag = format!("{{{}:{}}}", self.namespace, self.job);
        let (lease_key, epoch_key) = (format!("{tag}:lease"), format!("{tag}:epoch"));
        let position_key = format!("{}:position:{}", self.namespace, self.job);
        let beat = self.lease / 3;
        loop {
            let epoch = match self.store.acquire(&lease_key, &epoch_key, self.lease).await {
                Ok(Some(e)) => e,
                Ok(None) => {
                    if !sleep_or_stop(beat, &stop).await {
                        return;
                    }
                    continue;
                }
                Err(e) => {
                    tracing::warn!(job = %self.job, error = %e, "cannot reach the cluster store for the job's lease; standing by");
                    if !sleep_or_stop(beat, &stop).await {
                        return;
                    }
                    continue;
                }
            };
            // The fleet's position first: the job resumes where the last leader was.
            match self.store.position(&position_key).await {
                Ok(Some(at)) => self
                    .position
                    .advance(UNIX_EPOCH + Duration::from_millis(at)),
                // A leader before this one (epoch > 1) recorded nothing: it died within its
                // first beat, and its term began at most a lease and a beat ago.
                Ok(None) if epoch > 1 => {
                    self.position.advance(SystemTime::now() - self.lease - beat)
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(job = %self.job, error = %e, "cannot read the fleet's position; resuming from this member's")
                }
            }
            tracing::info!(job = %self.job, epoch, "leading the job");
            self.leader.set(1);
            let _ = self.gate.send(true);
            let mut last_renewed = tokio::time::Instant::now();
            let stopped = loop {
                if !sleep_or_stop(beat, &stop).await {
                    break true;
                }
                if let Some(p) = self.position.get() {
                    if let Err(e) = self.store.advance(&position_key, ms(p)).await {
                        tracing::debug!(job = %self.job, error = %e, "cannot record the position");
                    }
                }
                match self.store.renew(&lease_key, epoch, self.lease).await {
                    Ok(true) => last_renewed = tokio::time::Instant::now(),
                    Ok(false) => {
                        tracing::warn!(job = %self.job, epoch, "the job's lease was lost; stopping it");
                        break false;
                    }
                    Err(e) if last_renewed.elapsed() >= self.lease * 2 / 3 => {
                        tracing::warn!(job = %self.job, epoch, error = %e, "cannot renew the job's lease in time; stopping it before another member may take it");
                        break false;
                    }
                    Err(e) => {
                        tracing::warn!(job = %self.job, error = %e, "cannot renew the job's lease; retrying");
                    }
                }
            };
            let _ = self.gate.send(false);
            self.leader.set(0);
            if stopped {
                if let Some(p) = self.position.get() {
                    let _ = self.store.advance(&position_key, ms(p)).await;
                }
                // Handing over at once rather than after the lease runs out.
                let _ = self.store.resign(&lease_key, epoch).await;
                return;
            }
        }
    }
}

async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}
