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
use tokio::task::{JoinHandle, JoinSet};
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
    SpoolFailed(relay_spool::SpoolFailure),
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
    for w in &cfg.warnings {
        tracing::warn!("configuration: {w}");
    }
    let sink_list = start_sinks(&cfg)?;

    // Admin first: `/healthz` answers while the spool is opened and scanned (a spool of
    // several GiB, after a broker outage, takes a while: a liveness or startup probe must
    // not kill the pod for it), `/readyz` says "starting" until it is open.
    let stops = Stops::default();
    let (admin, admin_starting) =
        AdminServer::bind_starting(cfg.admin.listen, registry.clone()).await?;
    let admin_addr = admin.local_addr();
    let admin_task = tokio::spawn(admin.run(stops.admin.clone()));

    let (spool, dedup) = open_spool(&cfg).await?;
    let fleet = join_fleet(&cfg).await?;
    let mut gaps = find_gaps(&cfg, &registry, fleet.as_ref()).await?;
    let health = Arc::new(SpoolHealth::default());
    let decoded = decoded_window(&registry)?;
    let pipeline = RelayPipeline::new(
        spool.clone(),
        dedup.clone(),
        pipeline_metrics,
        health.clone(),
        cfg.spool.full_retry_after,
    )
    .with_hook(Arc::new(crate::recovery::JobStatusHook(
        gaps.status_tx.clone(),
        fleet.as_ref().map(|f| f.recovery.clone()),
    )));
    let pipeline = in_fleet(pipeline, &cfg, &registry, fleet.as_ref())?;
    let leads = stream_leads(&cfg, &registry, fleet.as_ref(), &mut gaps.runtimes)?;
    let spool_watch = watch_spools(&cfg, &registry, fleet.as_ref(), &spool, &stops.spool_watch)?;
    let dispatchers = start_dispatchers(&cfg, &sink_list, &spool, &sink_metrics, &decoded, &stops);

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
    let lead_tasks: Vec<_> = leads
        .into_iter()
        .map(|l| tokio::spawn(l.run(stops.ingress.clone())))
        .collect();
    let mut ingresses: JoinSet<Result<(), RunError>> = JoinSet::new();
    let webhook_addr = start_ingresses(
        &cfg,
        &gaps.runtimes,
        &pipeline,
        &registry,
        &stops.ingress,
        &mut ingresses,
    )
    .await?;
    let background = start_background(&cfg, &opts, gaps, fleet.as_ref(), &pipeline, &stops);

    started(&cfg, &opts, admin_addr, webhook_addr)?;

    let mut running = Running {
        stops,
        ingresses,
        lead_tasks,
        background,
        dispatchers,
        sink_list,
        spool_watch,
        spool,
        fleet,
        admin_task,
    };
    let failure = running.wait(&shutdown, opts.drain).await;
    running.stop(&cfg, opts.drain, failure).await
}

/// Prepares every sink (the file sink's directory) and starts it, connecting lazily.
fn start_sinks(cfg: &Config) -> Result<Vec<Arc<dyn Sink>>, RunError> {
    for s in &cfg.sinks {
        sinks::prepare(s)?;
    }
    Ok(cfg.sinks.iter().cloned().map(sinks::start).collect())
}

/// Says the relay started, and where it listens (`--listen-file` too).
fn started(
    cfg: &Config,
    opts: &RunOptions,
    admin: Option<std::net::SocketAddr>,
    webhook: Option<std::net::SocketAddr>,
) -> Result<(), RunError> {
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        admin = %admin.map(|a| a.to_string()).unwrap_or_default(),
        webhook = %webhook.map(|a| a.to_string()).unwrap_or_else(|| "off".to_string()),
        streams = cfg.streams.len(),
        sinks = ?cfg.sinks.iter().map(|s| format!("{}:{}", s.name, s.spec.type_name())).collect::<Vec<_>>(),
        spool = %cfg.spool.dir.display(),
        "activity-relay started"
    );
    match &opts.listen_file {
        Some(path) => write_listen_file(path, admin, webhook),
        None => Ok(()),
    }
}

/// What `run` cancels to stop its parts, each in its turn ([`Running::stop`]).
#[derive(Default)]
struct Stops {
    /// The webhook, the streams and the stream leases.
    ingress: CancellationToken,
    /// Gap recovery.
    recovery: CancellationToken,
    /// The liveness record and the fleet's webhook clock.
    liveness: CancellationToken,
    /// Dispatchers: deliver what is spooled, then stop.
    drain: CancellationToken,
    /// Dispatchers: stop now (the shutdown deadline passed).
    abort: CancellationToken,
    /// The watch of departed members' spools.
    spool_watch: CancellationToken,
    admin: CancellationToken,
}

/// This relay as a member of a fleet (`[cluster]`).
struct Fleet {
    cfg: crate::cluster::ClusterConfig,
    store: Arc<dyn crate::cluster::Store>,
    recovery: crate::cluster::recovery::FleetRecovery,
}

/// Opens the spool and the dedup window (rebuilt from what the spool holds).
async fn open_spool(cfg: &Config) -> Result<(Spool, Arc<Dedup>), RunError> {
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
    Ok((spool, Arc::new(dedup)))
}

/// A fleet member: dedup through the shared store, each stream run by one member at a
/// time, gaps found and recovered for the fleet (crate::cluster).
async fn join_fleet(cfg: &Config) -> Result<Option<Fleet>, RunError> {
    let Some(c) = &cfg.cluster else {
        return Ok(None);
    };
    let store = crate::cluster::connect(c, cfg.dedup.window).await?;
    Ok(Some(Fleet {
        recovery: crate::cluster::recovery::FleetRecovery {
            store: store.clone(),
            namespace: c.namespace.clone(),
            member: c.member.clone(),
        },
        cfg: c.clone(),
        store,
    }))
}

/// What was missed while the relay was down, and what the ingresses share with the
/// relay while they run.
struct Gaps {
    /// Where each stream resumes from, and up to when each ingress took everything (for
    /// the liveness record).
    runtimes: Runtimes,
    /// X's replay job statuses, as the pipeline sees them go by.
    status_tx: tokio::sync::broadcast::Sender<crate::recovery::JobStatus>,
    /// The webhook's gap found at start, if this member recovers it.
    webhook: Option<PreparedRecovery>,
    /// What is left to recover of the webhook's gaps, for the liveness record: the gap
    /// found at start (kept until it is read), then each interval of refusals queued
    /// in-run.
    pending: crate::recovery::Pending,
    metrics: crate::recovery::RecoveryMetrics,
}

/// Gap recovery: what was missed while the relay was down (docs/gap-recovery.md).
async fn find_gaps(
    cfg: &Config,
    registry: &Registry,
    fleet: Option<&Fleet>,
) -> Result<Gaps, RunError> {
    let metrics = crate::recovery::RecoveryMetrics::register(registry)?;
    let liveness = {
        let dir = cfg.spool.dir.clone();
        tokio::task::spawn_blocking(move || crate::recovery::Liveness::load(&dir))
            .await
            .map_err(|source| RunError::Task {
                what: "liveness load",
                source,
            })?
    };
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
    let fleet_recovery = fleet.map(|f| f.recovery.clone());
    let fleet_clock = match (&fleet_recovery, &cfg.webhook) {
        (Some(f), Some(_)) => f.webhook_clock().await,
        _ => None,
    };
    let mut webhook = prepare_recovery(
        cfg,
        &liveness,
        fleet_clock,
        chrono::Utc::now(),
        status_rx,
        metrics.clone(),
        fleet_recovery.clone(),
    )?;
    if let (Some((_, from, _)), Some(f)) = (&webhook, &fleet_recovery) {
        if !f.claim_gap(fleet_clock, *from).await {
            webhook = None;
        }
    }
    let pending: crate::recovery::Pending = Arc::new(parking_lot::Mutex::new(
        webhook.as_ref().map(|(_, from, _)| *from),
    ));
    Ok(Gaps {
        runtimes,
        status_tx,
        webhook,
        pending,
        metrics,
    })
}

/// Records read from disk, parsed once for every dispatcher (crate::decoded).
fn decoded_window(registry: &Registry) -> Result<Arc<crate::decoded::Decoded>, RunError> {
    let parsed_total = prometheus::IntCounter::new(
        "activity_relay_records_parsed_total",
        "Spooled records a dispatcher had to parse because they came without the decoded form the pipeline attached (read from disk: after a restart, or far behind)",
    )?;
    registry.register(Box::new(parsed_total.clone()))?;
    Ok(Arc::new(
        crate::decoded::Decoded::default().counting(parsed_total),
    ))
}

/// The pipeline, deduplicating with the fleet's store when this relay is a member.
fn in_fleet(
    pipeline: RelayPipeline,
    cfg: &Config,
    registry: &Registry,
    fleet: Option<&Fleet>,
) -> Result<Arc<dyn Pipeline>, RunError> {
    let Some(f) = fleet else {
        return Ok(Arc::new(pipeline));
    };
    let metrics = crate::cluster::ClusterMetrics::register(registry)?;
    let dedup =
        crate::cluster::FleetDedup::new(f.store.clone(), f.cfg.clone(), cfg.dedup.window, metrics);
    tracing::info!(member = %f.cfg.member, namespace = %f.cfg.namespace, "member of a fleet: deduplicating with the shared store");
    Ok(Arc::new(pipeline.with_fleet(Arc::new(dedup))))
}

/// In a fleet, one lease per stream: a stream reads only while its gate is open.
fn stream_leads(
    cfg: &Config,
    registry: &Registry,
    fleet: Option<&Fleet>,
    runtimes: &mut Runtimes,
) -> Result<Vec<crate::cluster::leader::Lead>, RunError> {
    let Some(f) = fleet else {
        return Ok(Vec::new());
    };
    let leader = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "activity_relay_cluster_leader",
            "1 while this member leads the job (a [[streams]] of the fleet)",
        ),
        &["job"],
    )?;
    registry.register(Box::new(leader.clone()))?;
    let mut leads = Vec::new();
    for (s, r) in cfg.streams.iter().zip(runtimes.streams.iter_mut()) {
        let job = crate::recovery::stream_key(&s.name);
        let (gate, rx) = tokio::sync::watch::channel(false);
        r.gate = Some(rx);
        leads.push(crate::cluster::leader::Lead {
            store: f.store.clone(),
            leader: leader.with_label_values(&[&job]),
            job,
            namespace: f.cfg.namespace.clone(),
            lease: f.cfg.lease,
            gate,
            position: r.position.clone(),
        });
    }
    Ok(leads)
}

/// Spools left behind by departed members (crate::cluster::spools).
fn watch_spools(
    cfg: &Config,
    registry: &Registry,
    fleet: Option<&Fleet>,
    spool: &Spool,
    stop: &CancellationToken,
) -> Result<Option<JoinHandle<()>>, RunError> {
    let Some(f) = fleet else {
        return Ok(None);
    };
    let watch = crate::cluster::spools::SpoolWatch {
        store: f.store.clone(),
        namespace: f.cfg.namespace.clone(),
        member: f.cfg.member.clone(),
        interval: cfg.recovery.liveness_interval,
        spool: spool.clone(),
        left: crate::cluster::spools::SpoolWatch::gauge(registry)?,
    };
    Ok(Some(tokio::spawn(watch.run(stop.clone()))))
}

/// One dispatcher per sink.
fn start_dispatchers(
    cfg: &Config,
    sink_list: &[Arc<dyn Sink>],
    spool: &Spool,
    sink_metrics: &SinkMetrics,
    decoded: &Arc<crate::decoded::Decoded>,
    stops: &Stops,
) -> JoinSet<Result<(), crate::dispatch::DispatchError>> {
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
        dispatchers.spawn(d.run(stops.drain.clone(), stops.abort.clone()));
    }
    dispatchers
}

/// What runs beside the ingresses: the liveness record, the fleet's webhook clock and
/// gap recovery.
#[derive(Default)]
struct Background {
    liveness: Option<JoinHandle<()>>,
    fleet_clock: Option<JoinHandle<()>>,
    recovery: Option<JoinHandle<()>>,
}

fn start_background(
    cfg: &Config,
    opts: &RunOptions,
    gaps: Gaps,
    fleet: Option<&Fleet>,
    pipeline: &Arc<dyn Pipeline>,
    stops: &Stops,
) -> Background {
    // `drain` runs no ingress: the departed member's record (and any replay it left
    // unfinished) stays as it is on its volume, and there is no clock to move.
    if opts.drain.is_some() {
        return Background {
            recovery: start_recovery(cfg, gaps, fleet, pipeline, stops),
            ..Background::default()
        };
    }
    // Streams: their position in X's time; the webhook: up to when it took everything.
    use crate::recovery::Clock;
    let mut keys: Vec<(String, Clock)> = cfg
        .streams
        .iter()
        .zip(&gaps.runtimes.streams)
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
            Clock::Acceptance(gaps.runtimes.webhook.clone()),
        ));
    }
    let liveness = tokio::spawn(crate::recovery::keep_alive(
        cfg.spool.dir.clone(),
        keys,
        cfg.recovery.liveness_interval,
        gaps.pending.clone(),
        stops.liveness.clone(),
    ));
    // The fleet's webhook clock, moved by every member while it accepts.
    let fleet_clock = match (fleet, &cfg.webhook) {
        (Some(f), Some(_)) => Some(tokio::spawn(f.recovery.clone().keep_webhook_clock(
            gaps.runtimes.webhook.clone(),
            cfg.recovery.liveness_interval,
            stops.liveness.clone(),
        ))),
        _ => None,
    };
    Background {
        liveness: Some(liveness),
        fleet_clock,
        recovery: start_recovery(cfg, gaps, fleet, pipeline, stops),
    }
}

/// Gap recovery, one at a time: the gap found at start, then the webhook's intervals of
/// refusals while running (crate::recovery::inrun).
fn start_recovery(
    cfg: &Config,
    gaps: Gaps,
    fleet: Option<&Fleet>,
    pipeline: &Arc<dyn Pipeline>,
    stops: &Stops,
) -> Option<JoinHandle<()>> {
    cfg.webhook.as_ref()?;
    let build: crate::recovery::inrun::BuildRecovery = {
        let cfg = cfg.clone();
        let status_tx = gaps.status_tx.clone();
        let metrics = gaps.metrics.clone();
        let fleet = fleet.map(|f| f.recovery.clone());
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
        acceptance: gaps.runtimes.webhook.clone(),
        min_gap: cfg.recovery.min_gap,
        margin: cfg.recovery.safety_margin,
        interval: cfg.recovery.liveness_interval,
        metrics: gaps.metrics.clone(),
        pending: gaps.pending.clone(),
        build,
    };
    Some(tokio::spawn(inrun.run(
        gaps.webhook,
        pipeline.clone(),
        stops.recovery.clone(),
    )))
}

/// Every part of a running relay that shutting down waits for.
struct Running {
    stops: Stops,
    ingresses: JoinSet<Result<(), RunError>>,
    lead_tasks: Vec<JoinHandle<()>>,
    background: Background,
    dispatchers: JoinSet<Result<(), crate::dispatch::DispatchError>>,
    sink_list: Vec<Arc<dyn Sink>>,
    spool_watch: Option<JoinHandle<()>>,
    spool: Spool,
    fleet: Option<Fleet>,
    admin_task: JoinHandle<Result<(), crate::admin::AdminError>>,
}

impl Running {
    /// Waits for a shutdown request, for `drain` to be done, or for a part to fail; the
    /// failure, if one stopped it.
    async fn wait(
        &mut self,
        shutdown: &CancellationToken,
        drain: Option<Duration>,
    ) -> Option<RunError> {
        // `activity-relay drain`: done once every sink confirmed every record, or at its
        // limit.
        let spool = self.spool.clone();
        let emptied = async move {
            let Some(limit) = drain else {
                return std::future::pending().await;
            };
            let give_up = tokio::time::Instant::now() + limit;
            while crate::cluster::spools::pending(&spool) > 0
                && tokio::time::Instant::now() < give_up
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => {
                tracing::info!("shutdown requested");
                None
            }
            // What is left, if anything, is said once the dispatchers stopped.
            () = emptied => {
                tracing::info!("drain: done waiting for the sinks");
                None
            }
            reason = self.spool.failed() => {
                // Crash-only: after a failed fsync the page cache can no longer be
                // trusted (fsyncgate), so no append is retried in this process. /healthz
                // already says 503; the relay delivers what it can, exits non-zero, and
                // its restart recovers from what is on disk.
                tracing::error!(%reason, "spool failed for good; exiting so that a restart recovers from disk");
                Some(RunError::SpoolFailed(reason))
            }
            Some(res) = self.dispatchers.join_next() => {
                // A dispatcher only returns on its own after a spool error or a panic:
                // stop with an error so the orchestrator restarts the relay (the spool
                // keeps everything).
                let e = match res {
                    Ok(Ok(())) => RunError::DispatcherStopped,
                    Ok(Err(e)) => RunError::Dispatch(e),
                    Err(source) => RunError::Task { what: "a dispatcher", source },
                };
                tracing::error!(error = %e, "dispatcher stopped; shutting down");
                Some(e)
            }
            Some(res) = self.ingresses.join_next(), if !self.ingresses.is_empty() => {
                match res {
                    Ok(Ok(())) => {
                        tracing::warn!("an ingress stopped on its own; shutting down");
                        None
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "an ingress failed; shutting down");
                        Some(e)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "an ingress task panicked; shutting down");
                        Some(RunError::Task { what: "an ingress", source: e })
                    }
                }
            }
        }
    }

    /// Shuts down in order: stop accepting, deliver what is spooled within the
    /// deadline, close the sinks and the spool, admin last.
    async fn stop(
        mut self,
        cfg: &Config,
        drain: Option<Duration>,
        mut failure: Option<RunError>,
    ) -> Result<(), RunError> {
        self.stop_accepting().await;
        self.deliver_spooled(cfg.shutdown_timeout).await;
        // 3. Close sinks and the spool.
        for sink in &self.sink_list {
            if let Err(e) = sink.close().await {
                tracing::warn!(sink = sink.name(), error = %e, "closing sink failed");
            }
        }
        self.stops.spool_watch.cancel();
        if let Some(t) = self.spool_watch {
            let _ = t.await;
        }
        let left = crate::cluster::spools::pending(&self.spool);
        if let Some(f) = &self.fleet {
            crate::cluster::spools::last_word(
                f.store.as_ref(),
                &f.cfg.namespace,
                &f.cfg.member,
                left,
            )
            .await;
        }
        // `drain` succeeds only with nothing left, whatever stopped it (a signal too).
        if let (Some(after), None, true) = (drain, &failure, left > 0) {
            failure = Some(RunError::DrainIncomplete {
                left,
                after,
                dir: cfg.spool.dir.clone(),
            });
        }
        self.spool.close().await;
        self.stops.admin.cancel();
        match self.admin_task.await {
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

    /// 1. Stop accepting; in-flight deliveries finish their appends; the streams' leases
    ///    are handed over (the standby takes them at once); recovery and the liveness
    ///    record write their last.
    async fn stop_accepting(&mut self) {
        self.stops.recovery.cancel();
        self.stops.ingress.cancel();
        while let Some(res) = self.ingresses.join_next().await {
            if let Ok(Err(e)) = res {
                tracing::warn!(error = %e, "ingress stopped with an error");
            }
        }
        for t in self.lead_tasks.drain(..) {
            let _ = t.await;
        }
        if let Some(t) = self.background.recovery.take() {
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "recovery task panicked");
            }
        }
        self.stops.liveness.cancel();
        if let Some(t) = self.background.liveness.take() {
            if let Err(e) = t.await {
                tracing::warn!(error = %e, "liveness task panicked");
            }
        }
        if let Some(t) = self.background.fleet_clock.take() {
            let _ = t.await;
        }
    }

    /// 2. Let the dispatchers deliver what is spooled, within the deadline; past it,
    ///    what is left stays in the spool for the next start.
    async fn deliver_spooled(&mut self, deadline: Duration) {
        self.stops.drain.cancel();
        let dispatchers = &mut self.dispatchers;
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
            self.stops.abort.cancel();
            while self.dispatchers.join_next().await.is_some() {}
        }
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
