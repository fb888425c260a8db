//! Automatic gap recovery (`docs/gap-recovery.md`).
//!
//! * **Liveness record**: while running, the relay writes `liveness.json` in the spool
//!   directory (temp file + fsync + rename) every `liveness_interval` and at graceful
//!   shutdown: per ingress (`webhook`, `stream:<name>`), the time up to which it was
//!   accepting. At the next start, the gap of an ingress is `now − recorded time`; nothing
//!   recorded (first start, or a corrupt file, with a warning) means no gap.
//! * **Streams**: the relay sets [`relay_ingress::stream::StreamRuntime::resume_from`]; the
//!   first connection asks X for `backfill_minutes` (gap ≤ 5 min) or `start_time` (≤ 24 h).
//! * **Webhook**: with `[recovery] enabled` and a gap of at least `min_gap`, a background
//!   task replays the gap through X's Account Activity replay API, one window (≤ 2 h) at a
//!   time, waiting for each job's `replay_job_status` event to come through the pipeline
//!   ([`JobStatus`], handed over by the pipeline hook [`JobStatusHook`] once its delivery
//!   is accepted). Replayed events that
//!   had already been accepted are dropped by the pipeline's dedup.
//!
//! * **While running**: an interval in which the webhook refused deliveries for at least
//!   `min_gap` is recovered in-run the same way ([`inrun`]), one recovery at a time.
//!
//! Files: [`config`] (`[recovery]`), [`inrun`] (gaps while running), [`liveness`] (the record and its refresh), [`replay`]
//! (AAA replay: gap planning, jobs, their `replay_job_status`), [`stream`] (XAA: the gap
//! re-read from the activity stream).

pub mod config;
pub mod inrun;
pub mod liveness;
pub mod replay;
pub mod stream;

use prometheus::{GaugeVec, IntCounterVec, Opts, Registry};

pub use config::{RecoveryConfig, RecoveryMethod};
pub use liveness::{keep_alive, Clock, Liveness, LivenessError, Pending};
pub use replay::{
    eligible_at, job_status_of, webhook_gap, JobStatus, JobStatusHook, WebhookGap, WebhookRecovery,
};

/// Name of the liveness record inside the spool directory.
pub const LIVENESS_FILE: &str = "liveness.json";
/// The webhook ingress's key in the liveness record.
pub const WEBHOOK_KEY: &str = "webhook";

/// The liveness key of the stream named `name`.
pub fn stream_key(name: &str) -> String {
    format!("stream:{name}")
}

/// A webhook gap's recovery, by `[recovery] method`: X's AAA replay, or a re-read of the
/// activity stream (XAA).
pub enum GapRecovery {
    Replay(WebhookRecovery),
    Stream(stream::StreamRecovery),
}

impl GapRecovery {
    /// Where the liveness record is told what is left to recover.
    pub fn pending(&self) -> Pending {
        match self {
            GapRecovery::Replay(r) => r.pending.clone(),
            GapRecovery::Stream(r) => r.pending.clone(),
        }
    }

    /// The same recovery, keeping what is left in `pending` (shared with the liveness
    /// record and the other recoveries of this run).
    pub fn with_pending(mut self, pending: Pending) -> Self {
        match &mut self {
            GapRecovery::Replay(r) => r.pending = pending,
            GapRecovery::Stream(r) => r.pending = pending,
        }
        self
    }

    /// Recovers `[from, to]` until done or `stop`.
    pub async fn run(
        self,
        pipeline: std::sync::Arc<dyn relay_ingress::Pipeline>,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        match self {
            GapRecovery::Replay(r) => r.run(from, to, stop).await,
            GapRecovery::Stream(r) => r.run(pipeline, from, to, stop).await,
        }
    }
}

/// Metrics of gap recovery.
#[derive(Clone)]
pub struct RecoveryMetrics {
    /// `activity_relay_replay_jobs_total{outcome}`: `started`, `complete`, `incomplete`
    /// (ended otherwise, or no status within `job_timeout`), `failed` (a window given up).
    pub jobs: IntCounterVec,
    /// `activity_relay_recovery_gap_seconds{ingress}`: what is left of the gap being
    /// recovered (0 when none).
    pub gap: GaugeVec,
    /// `activity_relay_recovery_windows_total{state}`: intervals in which the webhook
    /// refused deliveries for at least `min_gap` while running: `opened` (X may have given
    /// up on some), `recovered` (its recovery ran to its end: the jobs' outcomes say how),
    /// `not_recovered` (`[recovery]` is off: those events are lost unless replayed).
    pub windows: IntCounterVec,
}

impl RecoveryMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let jobs = IntCounterVec::new(
            Opts::new(
                "activity_relay_replay_jobs_total",
                "Replay jobs of automatic gap recovery, by outcome (started, complete, incomplete, failed = window given up)",
            ),
            &["outcome"],
        )?;
        r.register(Box::new(jobs.clone()))?;
        for o in ["started", "complete", "incomplete", "failed"] {
            jobs.with_label_values(&[o]);
        }
        let gap = GaugeVec::new(
            Opts::new(
                "activity_relay_recovery_gap_seconds",
                "Seconds of the ingress's gap still being recovered by replay (0 when none)",
            ),
            &["ingress"],
        )?;
        r.register(Box::new(gap.clone()))?;
        gap.with_label_values(&[WEBHOOK_KEY]).set(0.0);
        let windows = IntCounterVec::new(
            Opts::new(
                "activity_relay_recovery_windows_total",
                "Intervals of refused webhook deliveries long enough that X may have given up (opened), recovered in-run (recovered), or left unrecovered because [recovery] is off (not_recovered)",
            ),
            &["state"],
        )?;
        r.register(Box::new(windows.clone()))?;
        for s in ["opened", "recovered", "not_recovered"] {
            windows.with_label_values(&[s]);
        }
        Ok(RecoveryMetrics { jobs, gap, windows })
    }
}
