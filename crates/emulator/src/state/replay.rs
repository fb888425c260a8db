//! Replay jobs: a past window re-delivered to a webhook, then its `replay_job_status`.

use super::*;

impl Shared {
    /// Starts a replay job (dates already validated).
    pub fn start_replay(
        self: &Arc<Self>,
        app: &str,
        webhook_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<ReplayJob, ApiError> {
        let w = self.webhook(app, webhook_id)?;
        if !w.valid {
            return Err(ApiError::bad(
                "CrcValidationFailed",
                format!("webhook {webhook_id} is invalid (failed its last CRC)"),
            ));
        }
        let job = {
            let mut db = self.db.lock();
            if db
                .jobs
                .iter()
                .any(|j| j.webhook_id == webhook_id && j.state == "running")
            {
                return Err(ApiError::new(
                    409,
                    "ReplayConflictError",
                    format!("a replay job is already running for webhook {webhook_id}"),
                ));
            }
            let job = ReplayJob {
                job_id: self.ids.next_str(),
                app: app.to_owned(),
                webhook_id: webhook_id.to_owned(),
                from,
                to,
                created_at: Utc::now(),
                state: "running".into(),
                events: 0,
                finished_at: None,
            };
            db.jobs.push(job.clone());
            job
        };
        let me = Arc::clone(self);
        let j = job.clone();
        tokio::spawn(async move { me.run_replay(j).await });
        tracing::info!(job_id = job.job_id, webhook_id, %from, %to, "replay job started");
        Ok(job)
    }

    async fn run_replay(self: Arc<Self>, job: ReplayJob) {
        let (subs, target) = {
            let db = self.db.lock();
            let Some(w) = db.webhooks.iter().find(|w| w.id == job.webhook_id) else {
                return;
            };
            let Some(app) = self.app(&w.app) else { return };
            (
                w.subscriptions.clone(),
                Target {
                    webhook_id: w.id.clone(),
                    app: w.app.clone(),
                    url: w.url.clone(),
                    secret: app.consumer_secret.clone(),
                },
            )
        };
        let window: Vec<(u64, Bytes)> = self
            .log
            .lock()
            .events
            .iter()
            .filter(|e| {
                e.format == Format::Aaa
                    && e.key != "replay_job_status"
                    && e.emitted_at >= job.from
                    && e.emitted_at < job.to
                    && e.for_user_id.as_ref().is_some_and(|u| subs.contains(u))
            })
            .map(|e| (e.seq, e.raw.clone()))
            .collect();
        let mut all_ok = true;
        let n = window.len();
        for (seq, raw) in window {
            if self.cancel.is_cancelled() {
                return;
            }
            all_ok &= self
                .deliver(seq, target.clone(), raw, Some(job.job_id.clone()))
                .await;
        }
        let forced = {
            let mut db = self.db.lock();
            let next = db.replay_incomplete_next > 0;
            db.replay_incomplete_next = db.replay_incomplete_next.saturating_sub(1);
            db.replay_incomplete || next
        };
        let incomplete = forced || !all_ok;
        let (state, desc) = if incomplete {
            (
                "Incomplete",
                "Job failed to deliver all events, please retry your replay job",
            )
        } else {
            ("Complete", "Job completed successfully")
        };
        {
            let mut db = self.db.lock();
            if let Some(j) = db.jobs.iter_mut().find(|j| j.job_id == job.job_id) {
                j.state = state.into();
                j.events = n;
                j.finished_at = Some(Utc::now());
            }
        }
        tracing::info!(
            job_id = job.job_id,
            state,
            events = n,
            "replay job finished"
        );
        self.emit_value(
            serde_json::json!({"replay_job_status": {
                "webhook_id": job.webhook_id,
                "job_state": state,
                "job_state_description": desc,
                "job_id": job.job_id,
            }}),
            EmitOptions {
                origin: Some("replay".into()),
                ..EmitOptions::default()
            },
        );
    }

    // ---------------------------------------------------------- records
}
