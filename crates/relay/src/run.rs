//! `activity-relay run`: wires spool, dedup, pipeline, dispatchers, sinks, admin and
//! ingresses together, and shuts them down in order.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use relay_ingress::webhook::WebhookServer;
use relay_ingress::Pipeline;
use relay_sink::Sink;
use relay_spool::Spool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{AdminServer, AdminState};
use crate::config::Config;
use crate::dedup::{self, Dedup};
use crate::dispatch::Dispatcher;
use crate::metrics::{self, now_ms, PipelineMetrics, SinkMetrics, SpoolMetrics};
use crate::pipeline::{RelayPipeline, SpoolHealth};
use crate::sinks;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("spool: {0}")]
    Spool(#[from] relay_spool::SpoolError),
    #[error("dedup: {0}")]
    Dedup(#[from] dedup::DedupError),
    #[error(transparent)]
    Sink(#[from] sinks::SinkBuildError),
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    #[error("ingress: {0}")]
    Ingress(#[from] relay_ingress::IngressError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("[spool] dir {} exists and is not a directory", .0.display())]
    SpoolDirNotADirectory(PathBuf),
    #[error("[log] level {level:?}: {problem}")]
    LogLevel { level: String, problem: String },
    #[error("cannot write --listen-file {}: {source}", path.display())]
    ListenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} task failed: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("[cluster]: {0}")]
    Cluster(#[from] crate::cluster::StoreError),
    #[error("[recovery] needs a [webhook] section")]
    RecoveryWithoutWebhook,
    #[error("[recovery] webhook_id is required")]
    RecoveryWithoutWebhookId,
    #[error("[recovery]: {0}")]
    RecoveryClient(#[source] relay_xapi::XapiError),
    #[error("drain: {left} records still unconfirmed after {}; they stay in {}", humantime::format_duration(*after), dir.display())]
    DrainIncomplete {
        left: u64,
        after: Duration,
        dir: PathBuf,
    },
    #[error("spool failed: {0}")]
    SpoolFailed(String),
    #[error("a dispatcher stopped unexpectedly")]
    DispatcherStopped,
    #[error(transparent)]
    Dispatch(#[from] crate::dispatch::DispatchError),
}

/// Validates everything that can be checked without the network and without creating
/// anything; returns a short human summary. The one check of a parsed [`Config`]: `run
/// --check` prints its summary, [`run`] calls it before starting anything. (Parsing,
/// [`Config::load`], already refused unknown keys and filled in the defaults.)
pub fn check(cfg: &Config) -> Result<String, RunError> {
    let mut lines = Vec::new();
    if cfg.spool.dir.exists() && !cfg.spool.dir.is_dir() {
        return Err(RunError::SpoolDirNotADirectory(cfg.spool.dir.clone()));
    }
    lines.push(format!(
        "spool: {} (max {} bytes, segments of {} bytes)",
        cfg.spool.dir.display(),
        cfg.spool.max_bytes,
        cfg.spool.effective_segment_bytes()
    ));
    lines.push(format!(
        "dedup: window {}, at most {} ids",
        humantime::format_duration(cfg.dedup.window),
        cfg.dedup.max_entries
    ));
    lines.push(format!("admin: http://{}", cfg.admin.listen));
    tracing_subscriber::EnvFilter::try_new(&cfg.log.level).map_err(|e| RunError::LogLevel {
        level: cfg.log.level.clone(),
        problem: e.to_string(),
    })?;
    if let Some(w) = &cfg.webhook {
        lines.push(check_webhook(w)?);
    }
    for s in &cfg.streams {
        s.validate()?;
        lines.push(format!("stream {}: {}", s.name, s.url));
    }
    lines.push(cfg.recovery.summary(cfg.webhook.as_ref()));
    if let Some(c) = &cfg.cluster {
        lines.push(c.summary());
    }
    for s in &cfg.sinks {
        let detail = sinks::check(s)?;
        lines.push(format!("sink {}: {detail}", s.name));
        if let Some(summary) = s.filter.summary() {
            lines.push(format!("  filter: {summary}"));
        }
        for w in s.filter.warnings() {
            lines.push(format!("  warning: {w}"));
        }
    }
    sinks::check_exclusive(cfg)?;
    Ok(lines.join("\n"))
}

/// What `run` is told besides the configuration (command-line options).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Once every listener is bound, write their addresses here as JSON
    /// (`{"admin":"127.0.0.1:9090","webhook":"127.0.0.1:8080"}`, `webhook` null without
    /// one): how a supervisor or a test learns the ports of `listen = "…:0"`. Written to a
    /// temporary name and renamed, so a reader never sees half of it.
    pub listen_file: Option<PathBuf>,
    /// `activity-relay drain`: no ingress; stop once every sink has confirmed every record
    /// of the spool, or fail after this long (what is left stays in the spool).
    pub drain: Option<Duration>,
}

/// Runs the relay until `shutdown` is cancelled, then shuts down gracefully.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> Result<(), RunError> {
    run_with(cfg, shutdown, RunOptions::default()).await
}

/// Writes the bound addresses to `path` (see [`RunOptions::listen_file`]).
fn write_listen_file(
    path: &std::path::Path,
    admin: Option<std::net::SocketAddr>,
    webhook: Option<std::net::SocketAddr>,
) -> Result<(), RunError> {
    let text = serde_json::json!({
        "admin": admin.map(|a| a.to_string()),
        "webhook": webhook.map(|a| a.to_string()),
    })
    .to_string();
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| RunError::ListenFile {
            path: path.to_path_buf(),
            source,
        })
}

/// [`run`], with the command line's [`RunOptions`].
pub async fn run_with(
    cfg: Config,
    shutdown: CancellationToken,
    opts: RunOptions,
) -> Result<(), RunError> {
    let registry = Registry::new();
    metrics::register_build_info(&registry)?;
    let pipeline_metrics = PipelineMetrics::register(&registry)?;
    let sink_metrics = SinkMetrics::register(&registry)?;
    let spool_metrics = SpoolMetrics::register(&registry)?;

    // The same check as `run --check`, first: a mistake stops the relay before it accepts
    // anything. A broker that cannot be reached does not: its records wait in the spool.
    check(&cfg)?;
    for s in &cfg.sinks {
        sinks::prepare(s)?;
    }
    let mut sink_list: Vec<Arc<dyn Sink>> = Vec::new();
    for s in &cfg.sinks {
        sink_list.push(sinks::start(s.clone()));
    }

    // Admin first: `/healthz` answers while the spool is opened and scanned (a spool of
    // several GiB, after a broker outage, takes a while: a liveness or startup probe must
    // not kill the pod for it), `/readyz` says "starting" until it is open.
    let admin_stop = CancellationToken::new();
    let (admin, admin_starting) =
        AdminServer::bind_starting(cfg.admin.listen, registry.clone()).await?;
    let admin_addr = admin.local_addr();
    let admin_task = tokio::spawn(admin.run(admin_stop.clone()));

    let spool = Spool::open(
        cfg.spool
            .spool_config(cfg.sinks.iter().map(|x| x.name.clone()).collect()),
    )
    .await?;

    let dedup = {
        let dir = cfg.spool.dir.clone();
        let window = cfg.dedup.window;
        let max = cfg.dedup.max_entries;
        let now = i64::try_from(now_ms()).unwrap_or(i64::MAX);
        tokio::task::spawn_blocking(move || Dedup::open(&dir, window, max, now))
            .await
            .map_err(|source| RunError::Task {
                what: "dedup load",
                source,
            })??
    };
    let rebuilt = dedup::rebuild_from_spool(&dedup, &spool).await?;
    tracing::info!(
        records = rebuilt,
        ids = dedup.len(),
        "dedup window rebuilt from the spool"
    );
    let dedup = Arc::new(dedup);

    // A fleet member: dedup through the shared store, each stream run by one member at a
    // time, gaps found and recovered for the fleet (crate::cluster).
    let cluster_store = match &cfg.cluster {
        None => None,
        Some(c) => Some(crate::cluster::connect(c, cfg.dedup.window).await?),
    };
    let fleet_recovery = match (&cfg.cluster, &cluster_store) {
        (Some(c), Some(store)) => Some(crate::cluster::recovery::FleetRecovery {
            store: store.clone(),
            namespace: c.namespace.clone(),
            member: c.member.clone(),
        }),
        _ => None,
    };

    // Gap recovery: what was missed while the relay was down (docs/gap-recovery.md).
    let recovery_metrics = crate::recovery::RecoveryMetrics::register(&registry)?;
    let liveness = {
        let dir = cfg.spool.dir.clone();
        tokio::task::spawn_blocking(move || crate::recovery::Liveness::load(&dir))
            .await
            .map_err(|source| RunError::Task {
                what: "liveness load",
                source,
            })?
    };
    // What the ingresses share with the relay while they run: where each stream resumes
    // from, and up to when each ingress took everything (for the liveness record).
    let runtimes = Runtimes {
        streams: cfg
            .streams
            .iter()
            .map(|s| {
                let resume_from = liveness
                    .alive_until
                    .get(&crate::recovery::stream_key(&s.name))
                    .map(|t| std::time::SystemTime::from(*t));
                let position = relay_ingress::Position::default();
                // Known from the start: the liveness record is never rewritten with less.
                if let Some(t) = resume_from {
                    position.advance(t);
                }
                relay_ingress::stream::StreamRuntime {
                    resume_from,
                    position,
                    ..Default::default()
                }
            })
            .collect(),
        webhook: relay_ingress::Acceptance::default(),
    };
    let (status_tx, status_rx) = tokio::sync::broadcast::channel(64);
    // In a fleet, the webhook's gap is a time when no member accepted, and only one member
    // recovers it (crate::cluster::recovery).
    let fleet_clock = match (&fleet_recovery, &cfg.webhook) {
        (Some(f), Some(_)) => f.webhook_clock().await,
        _ => None,
    };
    let mut webhook_recovery = prepare_recovery(
        &cfg,
        &liveness,
        fleet_clock,
        chrono::Utc::now(),
        status_rx,
        recovery_metrics.clone(),
        fleet_recovery.clone(),
    )?;
    if let (Some((_, from, _)), Some(f)) = (&webhook_recovery, &fleet_recovery) {
        if !f.claim_gap(fleet_clock, *from).await {
            webhook_recovery = None;
        }
    }
    // What is left to recover of the webhook's gaps, for the liveness record: the gap found
    // at start (kept until it is read), then each interval of refusals queued in-run.
    let recovery_pending: crate::recovery::Pending = std::sync::Arc::new(parking_lot::Mutex::new(
        webhook_recovery.as_ref().map(|(_, from, _)| *from),
    ));

    let health = Arc::new(SpoolHealth::default());
    // Records decoded once: seeded by the pipeline, shared by every dispatcher.
    let parsed_total = prometheus::IntCounter::new(
        "activity_relay_records_parsed_total",
        "Spooled records a dispatcher had to parse because the pipeline had not handed them over decoded (after a restart, or far behind)",
    )?;
    registry.register(Box::new(parsed_total.clone()))?;
    let decoded = Arc::new(crate::decoded::Decoded::default().counting(parsed_total));
    let pipeline = RelayPipeline::new(
        spool.clone(),
        dedup.clone(),
        pipeline_metrics,
        health.clone(),
        cfg.spool.full_retry_after,
    )
    .with_hook(Arc::new(crate::recovery::JobStatusHook(
        status_tx.clone(),
        fleet_recovery.clone(),
    )))
    .with_decoded(decoded.clone());
    let pipeline: Arc<dyn Pipeline> = match (&cfg.cluster, &cluster_store) {
        (Some(c), Some(store)) => {
            let metrics = crate::cluster::ClusterMetrics::register(&registry)?;
            let fleet = crate::cluster::FleetDedup::new(
                store.clone(),
                c.clone(),
                cfg.dedup.window,
                metrics,
            );
            tracing::info!(member = %c.member, namespace = %c.namespace, "member of a fleet: deduplicating with the shared store");
            Arc::new(pipeline.with_fleet(Arc::new(fleet)))
        }
        _ => Arc::new(pipeline),
    };
    let mut runtimes = runtimes;
    let mut leads = Vec::new();
    if let (Some(c), Some(store)) = (&cfg.cluster, &cluster_store) {
        let leader = prometheus::IntGaugeVec::new(
            prometheus::Opts::new(
                "activity_relay_cluster_leader",
                "1 while this member leads the job (a [[stream]] of the fleet)",
            ),
            &["job"],
        )?;
        registry.register(Box::new(leader.clone()))?;
        for (s, r) in cfg.streams.iter().zip(runtimes.streams.iter_mut()) {
            let job = crate::recovery::stream_key(&s.name);
            let (gate, rx) = tokio::sync::watch::channel(false);
            r.gate = Some(rx);
            leads.push(crate::cluster::leader::Lead {
                store: store.clone(),
                leader: leader.with_label_values(&[&job]),
                job,
                namespace: c.namespace.clone(),
                lease: c.lease,
                gate,
                position: r.position.clone(),
            });
        }
    }

    // Spools left behind by departed members (crate::cluster::spools).
    let spool_watch_stop = CancellationToken::new();
    let spool_watch = match (&cfg.cluster, &cluster_store) {
        (Some(c), Some(store)) => {
            let watch = crate::cluster::spools::SpoolWatch {
                store: store.clone(),
                namespace: c.namespace.clone(),
                member: c.member.clone(),
                interval: cfg.recovery.liveness_interval,
                spool: spool.clone(),
                left: crate::cluster::spools::SpoolWatch::gauge(&registry)?,
            };
            Some(tokio::spawn(watch.run(spool_watch_stop.clone())))
        }
        _ => None,
    };

    // Dispatchers.
    let drain = CancellationToken::new();
    let abort = CancellationToken::new();
    let dead_letter_dir: PathBuf = cfg.spool.dir.join("dead-letters");
    let mut dispatchers = JoinSet::new();
    for (sink, sink_cfg) in sink_list.iter().zip(&cfg.sinks) {
        let d = Dispatcher::new(
            sink.clone(),
            spool.clone(),
            cfg.dispatch.clone(),
            sink_metrics.clone(),
            dead_letter_dir.clone(),
        )
        .with_filter(sink_cfg.filter.clone())
        .with_decoded(decoded.clone());
        dispatchers.spawn(d.run(drain.clone(), abort.clone()));
    }

    // Admin: the spool is open.
    admin_starting.ready(AdminState {
        registry: registry.clone(),
        spool: spool.clone(),
        spool_metrics,
        health,
        sinks: sink_list.clone(),
        dedup: Some(dedup.clone()),
        ready_requires_sinks: cfg.admin.ready_requires_sinks,
    });

    // Ingresses (a fleet's streams once this member leads them).
    let ingress_stop = CancellationToken::new();
    let lead_tasks: Vec<_> = leads
        .into_iter()
        .map(|l| tokio::spawn(l.run(ingress_stop.clone())))
        .collect();
    let mut ingresses: JoinSet<Result<(), RunError>> = JoinSet::new();
    let webhook_addr = start_ingresses(
        &cfg,
        &runtimes,
        &pipeline,
        &registry,
        &ingress_stop,
        &mut ingresses,
    )
    .await?;

    // Liveness record (while accepting, and once more after the ingresses stopped), and
    // the webhook's gap replay.
    let liveness_stop = CancellationToken::new();
    // Not in `drain`: the departed member's record (and any replay it left unfinished)
    // stays as it is on its volume.
    let liveness_task = if opts.drain.is_some() {
        None
    } else {
        use crate::recovery::Clock;
        // Streams: their position in X's time; the webhook: up to when it took everything.
        let mut keys: Vec<(String, Clock)> = cfg
            .streams
            .iter()
            .zip(&runtimes.streams)
            .map(|(s, r)| {
                (
                    crate::recovery::stream_key(&s.name),
                    Clock::Position(r.position.clone()),
                )
            })
            .collect();
        if cfg.webhook.is_some() {
            keys.push((
                crate::recovery::WEBHOOK_KEY.to_string(),
                Clock::Acceptance(runtimes.webhook.clone()),
            ));
        }
        let pending = recovery_pending.clone();
        Some(tokio::spawn(crate::recovery::keep_alive(
            cfg.spool.dir.clone(),
            keys,
            cfg.recovery.liveness_interval,
            pending,
            liveness_stop.clone(),
        )))
    };
    // The fleet's webhook clock, moved by every member while it accepts.
    let fleet_clock_task = match (&fleet_recovery, &cfg.webhook) {
        (Some(f), Some(_)) if opts.drain.is_none() => {
            Some(tokio::spawn(f.clone().keep_webhook_clock(
                runtimes.webhook.clone(),
                cfg.recovery.liveness_interval,
                liveness_stop.clone(),
            )))
        }
        _ => None,
    };
    // Gap recovery, one at a time: the gap found at start, then the webhook's intervals of
    // refusals while running (crate::recovery::inrun).
    let recovery_stop = CancellationToken::new();
    let recovery_task = if cfg.webhook.is_some() {
        let build: crate::recovery::inrun::BuildRecovery = {
            let cfg = cfg.clone();
            let status_tx = status_tx.clone();
            let metrics = recovery_metrics.clone();
            let fleet = fleet_recovery.clone();
            Box::new(move |from| {
                if !cfg.recovery.enabled {
                    return None;
                }
                build_recovery(
                    &cfg,
                    from,
                    status_tx.subscribe(),
                    metrics.clone(),
                    fleet.clone(),
                )
                .map_err(|e| tracing::error!(error = %e, "cannot start a gap recovery"))
                .ok()
            })
        };
        let inrun = crate::recovery::inrun::InRun {
            acceptance: runtimes.webhook.clone(),
            min_gap: cfg.recovery.min_gap,
            margin: cfg.recovery.safety_margin,
            interval: cfg.recovery.liveness_interval,
            metrics: recovery_metrics.clone(),
            pending: recovery_pending.clone(),
            build,
        };
        Some(tokio::spawn(inrun.run(
            webhook_recovery,
            pipeline.clone(),
            recovery_stop.clone(),
        )))
    } else {
        None
    };

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        admin = %admin_addr.map(|a| a.to_string()).unwrap_or_default(),
        webhook = %webhook_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".to_string()),
        streams = cfg.streams.len(),
        sinks = ?cfg.sinks.iter().map(|s| format!("{}:{}", s.name, s.spec.type_name())).collect::<Vec<_>>(),
        spool = %cfg.spool.dir.display(),
        "activity-relay started"
    );
    if let Some(path) = &opts.listen_file {
        write_listen_file(path, admin_addr, webhook_addr)?;
    }

    // `activity-relay drain`: done once every sink confirmed every record, or at its limit.
    let emptied = async {
        let Some(limit) = opts.drain else {
            return std::future::pending().await;
        };
        let give_up = tokio::time::Instant::now() + limit;
        while crate::cluster::spools::pending(&spool) > 0 && tokio::time::Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };

    // Wait for a shutdown request, or for an ingress to fail.
    let mut failure: Option<RunError> = None;
    tokio::select! {
        _ = shutdown.cancelled() => tracing::info!("shutdown requested"),
        // What is left, if anything, is said once the dispatchers stopped (below).
        () = emptied => tracing::info!("drain: done waiting for the sinks"),
        reason = spool.failed() => {
            // Crash-only: after a failed fsync the page cache can no longer be trusted
            // (fsyncgate), so no append is retried in this process. /healthz already says
            // 503; the relay delivers what it can, exits non-zero, and its restart recovers
            // from what is on disk.
            tracing::error!(%reason, "spool failed for good; exiting so that a restart recovers from disk");
            failure = Some(RunError::SpoolFailed(reason));
        }
        Some(res) = dispatchers.join_next() => {
            // A dispatcher only returns on its own after a spool error or a panic: stop with
            // an error so the orchestrator restarts the relay (the spool keeps everything).
            let e = match res {
                Ok(Ok(())) => RunError::DispatcherStopped,
                Ok(Err(e)) => RunError::Dispatch(e),
                Err(source) => RunError::Task { what: "a dispatcher", source },
            };
            tracing::error!(error = %e, "dispatcher stopped; shutting down");
            failure = Some(e);
        }
        Some(res) = ingresses.join_next(), if !ingresses.is_empty() => {
            match res {
                Ok(Ok(())) => tracing::warn!("an ingress stopped on its own; shutting down"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "an ingress failed; shutting down");
                    failure = Some(e);
                }
                Err(e) => {
                    tracing::error!(error = %e, "an ingress task panicked; shutting down");
                    failure = Some(RunError::Task { what: "an ingress", source: e });
                }
            }
        }
    }

    // 1. Stop accepting; in-flight deliveries finish their appends.
    recovery_stop.cancel();
    ingress_stop.cancel();
    while let Some(res) = ingresses.join_next().await {
        if let Ok(Err(e)) = res {
            tracing::warn!(error = %e, "ingress stopped with an error");
        }
    }
    // The streams' leases handed over (the standby takes them at once).
    for t in lead_tasks {
        let _ = t.await;
    }
    if let Some(t) = recovery_task {
        if let Err(e) = t.await {
            tracing::warn!(error = %e, "recovery task panicked");
        }
    }
    liveness_stop.cancel();
    if let Some(Err(e)) = match liveness_task {
        Some(t) => Some(t.await),
        None => None,
    } {
        tracing::warn!(error = %e, "liveness task panicked");
    }
    if let Some(t) = fleet_clock_task {
        let _ = t.await;
    }
    // 2. Let the dispatchers deliver what is spooled, within the deadline.
    drain.cancel();
    let deadline = cfg.shutdown_timeout;
    let drained = tokio::time::timeout(deadline, async {
        while let Some(res) = dispatchers.join_next().await {
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "dispatcher failed"),
                Err(e) => tracing::error!(error = %e, "dispatcher task panicked"),
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(timeout = ?deadline, "shutdown deadline reached; undelivered records stay in the spool for the next start");
        abort.cancel();
        while dispatchers.join_next().await.is_some() {}
    }
    // 3. Close sinks and the spool.
    for sink in &sink_list {
        if let Err(e) = sink.close().await {
            tracing::warn!(sink = sink.name(), error = %e, "closing sink failed");
        }
    }
    spool_watch_stop.cancel();
    if let Some(t) = spool_watch {
        let _ = t.await;
    }
    let left = crate::cluster::spools::pending(&spool);
    if let (Some(c), Some(store)) = (&cfg.cluster, &cluster_store) {
        crate::cluster::spools::last_word(store.as_ref(), &c.namespace, &c.member, left).await;
    }
    // `drain` succeeds only with nothing left, whatever stopped it (a signal too).
    if let (Some(after), None, true) = (opts.drain, &failure, left > 0) {
        failure = Some(RunError::DrainIncomplete {
            left,
            after,
            dir: cfg.spool.dir.clone(),
        });
    }
    spool.close().await;
    admin_stop.cancel();
    match admin_task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "admin server stopped with an error"),
        Err(e) => tracing::warn!(error = %e, "admin task panicked"),
    }
    tracing::info!("activity-relay stopped");
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A webhook gap's recovery, by `[recovery] method`.
type Recovery = crate::recovery::GapRecovery;

/// The webhook's recovery task and its gap, when the webhook's recorded gap calls for one.
type PreparedRecovery = (
    Recovery,
    chrono::DateTime<chrono::Utc>,
    chrono::DateTime<chrono::Utc>,
);

fn prepare_recovery(
    cfg: &Config,
    liveness: &crate::recovery::Liveness,
    fleet_clock: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
    statuses: tokio::sync::broadcast::Receiver<crate::recovery::JobStatus>,
    metrics: crate::recovery::RecoveryMetrics,
    fleet: Option<crate::cluster::recovery::FleetRecovery>,
) -> Result<Option<PreparedRecovery>, RunError> {
    use crate::recovery::{webhook_gap, WebhookGap, WEBHOOK_KEY};
    if cfg.webhook.is_none() {
        return Ok(None);
    }
    let own = liveness.alive_until.get(WEBHOOK_KEY).copied();
    // In a fleet: up to when any member accepted (the later of the two).
    let last = match (own, fleet_clock) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    if let (Some(own), Some(fleet)) = (own, fleet_clock) {
        if fleet > own {
            tracing::info!(own = %own.to_rfc3339(), fleet = %fleet.to_rfc3339(), "the fleet accepted after this member stopped: its gap runs from the fleet's clock");
        }
    }
    let pending_from = liveness.replay_pending_from.get(WEBHOOK_KEY).copied();
    match webhook_gap(&cfg.recovery, last, pending_from, now) {
        WebhookGap::FirstStart => Ok(None),
        WebhookGap::Short(gap) => {
            tracing::info!(
                gap_secs = gap.as_secs(),
                "webhook was down shorter than [recovery] min_gap: X's retries cover it"
            );
            Ok(None)
        }
        WebhookGap::NotRecovered(gap) => {
            tracing::warn!(
                gap_secs = gap.as_secs(),
                since = %last.map(|t| t.to_rfc3339()).unwrap_or_default(),
                "webhook was down longer than X retries; events X gave up on are lost unless replayed (enable [recovery] or run `activity-relay x replay`)"
            );
            Ok(None)
        }
        WebhookGap::Recover { gap, from, to } => {
            tracing::info!(
                gap_secs = gap.as_secs(),
                from = %from.to_rfc3339(),
                to = %to.to_rfc3339(),
                pending_from = %pending_from.map(|t| t.to_rfc3339()).unwrap_or_default(),
                "webhook was down: recovering the gap"
            );
            let r = build_recovery(cfg, from, statuses, metrics, fleet)?;
            Ok(Some((r, from, to)))
        }
    }
}

/// The recovery of a webhook gap starting at `from`, by `[recovery] method`.
fn build_recovery(
    cfg: &Config,
    from: chrono::DateTime<chrono::Utc>,
    statuses: tokio::sync::broadcast::Receiver<crate::recovery::JobStatus>,
    metrics: crate::recovery::RecoveryMetrics,
    fleet: Option<crate::cluster::recovery::FleetRecovery>,
) -> Result<Recovery, RunError> {
    use crate::recovery::{RecoveryMethod, WebhookRecovery};
    let webhook = cfg
        .webhook
        .as_ref()
        .ok_or(RunError::RecoveryWithoutWebhook)?;
    if cfg.recovery.method_for(Some(webhook)) == RecoveryMethod::Stream {
        let r = crate::recovery::stream::StreamRecovery::new(&cfg.recovery, webhook, metrics, from);
        return Ok(Recovery::Stream(r));
    }
    let client = cfg.recovery.client().map_err(RunError::RecoveryClient)?;
    let webhook_id = cfg
        .recovery
        .webhook_id
        .clone()
        .ok_or(RunError::RecoveryWithoutWebhookId)?;
    Ok(Recovery::Replay(WebhookRecovery {
        client,
        webhook_id,
        cfg: cfg.recovery.clone(),
        statuses,
        metrics,
        rules: relay_xapi::ReplayRules::default(),
        pending: std::sync::Arc::new(parking_lot::Mutex::new(Some(from))),
        fleet,
    }))
}

/// What the ingresses share with the relay while they run (not configuration).
struct Runtimes {
    /// One per `cfg.streams`, in order.
    streams: Vec<relay_ingress::stream::StreamRuntime>,
    webhook: relay_ingress::Acceptance,
}

/// Starts the webhook and stream ingresses; returns the webhook's address.
async fn start_ingresses(
    cfg: &Config,
    runtimes: &Runtimes,
    pipeline: &Arc<dyn Pipeline>,
    registry: &Registry,
    stop: &CancellationToken,
    set: &mut JoinSet<Result<(), RunError>>,
) -> Result<Option<std::net::SocketAddr>, RunError> {
    let mut addr = None;
    for (stream, runtime) in cfg.streams.iter().zip(&runtimes.streams) {
        let stream = stream.clone();
        let runtime = runtime.clone();
        let pipeline = pipeline.clone();
        let registry = registry.clone();
        let stop = stop.clone();
        set.spawn(async move {
            relay_ingress::stream::run_with(stream, runtime, pipeline, &registry, stop)
                .await
                .map_err(RunError::from)
        });
    }
    if let Some(w) = &cfg.webhook {
        let server = WebhookServer::bind_with(
            w.clone(),
            runtimes.webhook.clone(),
            pipeline.clone(),
            registry,
        )
        .await
        .map_err(RunError::from)?;
        addr = Some(server.local_addr());
        let stop = stop.clone();
        set.spawn(async move { server.run(stop).await.map_err(RunError::from) });
    }
    Ok(addr)
}

/// Checks the webhook configuration the way the server will (no socket is bound).
fn check_webhook(w: &relay_ingress::webhook::WebhookConfig) -> Result<String, RunError> {
    w.validate().map_err(RunError::from)?;
    let apps: Vec<&str> = w.apps.iter().map(|a| a.name.as_str()).collect();
    Ok(format!(
        "webhook: {}://{} apps {}",
        if w.tls.is_some() { "https" } else { "http" },
        w.listen,
        apps.join(", ")
    ))
}
