//! Spools left behind. A member that leaves the fleet (scaled in, its node lost) may leave
//! records on its volume that no sink has confirmed; nobody serves that volume until the
//! same ordinal returns, which after a scale-in may be never. So every member reports its
//! spool to the store (records not yet confirmed by every sink, and when) every
//! `liveness_interval`, and its last word on shutdown (removed when it left nothing); every
//! member reads the reports and shows, in `activity_relay_cluster_spool_left_records
//! {member}`, the members that went silent for three intervals with records left. The
//! alert `ActivityRelaySpoolLeftBehind` fires on it, and `activity-relay drain` (runnable as
//! a Kubernetes Job on the departed pod's volume, `docs/cluster.md`) delivers them and
//! clears the report.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntGaugeVec, Opts, Registry};
use relay_spool::Spool;
use tokio_util::sync::CancellationToken;

use super::{SpoolReport, SpoolReports};
use crate::metrics::now_ms;

/// Records of `spool` not yet confirmed by every sink (the sink furthest behind).
pub fn pending(spool: &Spool) -> u64 {
    spool
        .stats()
        .sinks
        .iter()
        .map(|l| l.pending_records)
        .max()
        .unwrap_or(0)
}

/// The store key of a fleet's reports.
pub fn key(namespace: &str) -> String {
    format!("{namespace}:spools")
}

/// Reports this member's spool and watches the others'.
pub struct SpoolWatch {
    pub store: Arc<dyn SpoolReports>,
    pub namespace: String,
    pub member: String,
    pub interval: Duration,
    pub spool: Spool,
    /// `activity_relay_cluster_spool_left_records{member}`.
    pub left: IntGaugeVec,
}

impl SpoolWatch {
    pub fn gauge(registry: &Registry) -> prometheus::Result<IntGaugeVec> {
        let g = IntGaugeVec::new(
            Opts::new(
                "activity_relay_cluster_spool_left_records",
                "Records a member of the fleet left unconfirmed in its spool when it went silent (its volume needs `activity-relay drain` or the member back)",
            ),
            &["member"],
        )?;
        registry.register(Box::new(g.clone()))?;
        Ok(g)
    }

    pub async fn run(self, stop: CancellationToken) {
        let key = key(&self.namespace);
        let stale = u64::try_from((self.interval * 3).as_millis()).unwrap_or(u64::MAX);
        loop {
            let mine = SpoolReport {
                pending: pending(&self.spool),
                at_ms: now_ms(),
            };
            if let Err(e) = self
                .store
                .report_spool(&key, &self.member, Some(mine))
                .await
            {
                tracing::debug!(error = %e, "cannot report the spool to the cluster store");
            }
            match self.store.spool_reports(&key).await {
                Ok(all) => {
                    self.left.reset();
                    let now = now_ms();
                    for (member, r) in all {
                        if member != self.member
                            && r.pending > 0
                            && now.saturating_sub(r.at_ms) > stale
                        {
                            self.left
                                .with_label_values(&[&member])
                                .set(i64::try_from(r.pending).unwrap_or(i64::MAX));
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the fleet's spool reports")
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}

/// A member's last word on its spool, once its dispatchers stopped: nothing left removes
/// its report; records left are reported for the fleet to see.
pub async fn last_word(store: &dyn SpoolReports, namespace: &str, member: &str, left: u64) {
    let report = (left > 0).then(|| SpoolReport {
        pending: left,
        at_ms: now_ms(),
    });
    if let Err(e) = store.report_spool(&key(namespace), member, report).await {
        tracing::warn!(error = %e, left, "cannot tell the cluster store what the spool holds");
    }
    if left > 0 {
        tracing::warn!(
            left,
            "records left in the spool: delivered when this member starts again on this volume, or by `activity-relay drain`"
        );
    }
}
