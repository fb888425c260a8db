//! `x-emulator`: a local stand-in for X's side of account activity (webhook CRC and
//! signed deliveries, the activity stream, the management API, an event generator).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use x_emulator::{
    AppConfig, Emulator, EmulatorConfig, EmulatorHandle, GeneratorConfig, StreamFaults, UserConfig,
};

#[derive(Parser, Debug)]
#[command(
    name = "x-emulator",
    version,
    about = "A local stand-in for X's account activity: webhooks, stream, management API"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Serve the emulated X API.
    Serve(Box<Serve>),
    /// Print the default configuration as JSON (a starting point for --config).
    PrintConfig,
}

#[derive(clap::Args, Debug)]
struct Serve {
    /// Address to listen on.
    #[arg(long, env = "X_EMULATOR_LISTEN", default_value = "127.0.0.1:8081")]
    listen: String,
    /// JSON configuration file (EmulatorConfig); flags override it.
    #[arg(long, env = "X_EMULATOR_CONFIG")]
    config: Option<std::path::PathBuf>,

    /// Name of the main app.
    #[arg(long, env = "X_EMULATOR_APP_NAME")]
    app_name: Option<String>,
    /// X app id of the main app.
    #[arg(long, env = "X_EMULATOR_APP_ID")]
    app_id: Option<String>,
    /// Consumer key of the main app.
    #[arg(long, env = "X_EMULATOR_CONSUMER_KEY")]
    consumer_key: Option<String>,
    /// Consumer secret of the main app (signs CRC answers and deliveries).
    #[arg(long, env = "X_EMULATOR_CONSUMER_SECRET", hide_env_values = true)]
    consumer_secret: Option<String>,
    /// App-only Bearer token of the main app.
    #[arg(long, env = "X_EMULATOR_BEARER_TOKEN", hide_env_values = true)]
    bearer_token: Option<String>,
    /// More apps: NAME:APP_ID:CONSUMER_KEY:CONSUMER_SECRET:BEARER_TOKEN (repeatable).
    #[arg(
        long = "app",
        env = "X_EMULATOR_APPS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    apps: Vec<String>,
    /// More users: USER_ID:ACCESS_TOKEN:ACCESS_TOKEN_SECRET[:SCREEN_NAME] (repeatable).
    #[arg(
        long = "user",
        env = "X_EMULATOR_USERS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    users: Vec<String>,

    /// 1.0 = X's timings; 0.01 compresses retry waits (3/27/242 s) and the hourly re-CRC.
    #[arg(long, env = "X_EMULATOR_TIME_SCALE")]
    time_scale: Option<f64>,
    /// Max webhooks per app (Enterprise 5).
    #[arg(long)]
    max_webhooks: Option<usize>,
    /// Max subscribed users per app (Enterprise 5000).
    #[arg(long)]
    max_subscriptions: Option<usize>,
    /// Pro tier limits: 1 webhook, 3 subscriptions.
    #[arg(long)]
    pro: bool,
    /// Replay jobs end `Incomplete`.
    #[arg(long)]
    replay_incomplete: bool,
    /// Deliveries in flight per webhook (default 32).
    #[arg(long)]
    max_in_flight: Option<usize>,
    /// How long a delivery may take before it counts as failed, ms (X: 3000; not scaled).
    #[arg(long)]
    delivery_timeout_ms: Option<u64>,
    /// How long a CRC answer may take, ms (X: 3000; not scaled).
    #[arg(long)]
    crc_timeout_ms: Option<u64>,
    /// Emitted bodies kept for /admin/sent, backfill and replay (default 50000).
    #[arg(long)]
    max_recorded_events: Option<usize>,

    /// Emit every *.json under this directory (or this file), as it is, at start.
    #[arg(long, env = "X_EMULATOR_FIXTURES")]
    fixtures: Option<std::path::PathBuf>,
    /// Re-emit the fixtures every N seconds.
    #[arg(long)]
    fixtures_every: Option<f64>,

    /// Generate events at this rate (events/s); starts the generator.
    #[arg(long, env = "X_EMULATOR_RATE")]
    rate: Option<f64>,
    /// Generator: stop after N seconds.
    #[arg(long)]
    duration: Option<f64>,
    /// Generator: stop after N events (starts the generator at 5/s if --rate is absent).
    #[arg(long)]
    count: Option<u64>,
    /// Generator: format weights, e.g. aaa=3,stream=1,xaa=1.
    #[arg(long, value_delimiter = ',')]
    formats: Vec<String>,
    /// Generator: kind weights, e.g. post=10,favorite=5,dm_sent=1,profile.update.bio=1.
    #[arg(long, value_delimiter = ',')]
    mix: Vec<String>,
    /// Generator: cycle through every (format, kind) instead of drawing at random.
    #[arg(long)]
    cycle: bool,
    /// Generator: X's AAA-to-XAA cutover phase: mix (default, by --formats), aaa (AAA
    /// only), both (every event as AAA and again as its XAA twin), xaa (XAA only).
    #[arg(long, value_parser = ["mix", "aaa", "both", "xaa"])]
    cutover: Option<String>,
    /// Generator: probability a body is sent twice.
    #[arg(long)]
    duplicate_rate: Option<f64>,
    /// Generator: probability a post body carries 2–3 posts.
    #[arg(long)]
    batch_rate: Option<f64>,
    /// Generator: user population size.
    #[arg(long)]
    population: Option<usize>,
    /// Generator: RNG seed.
    #[arg(long)]
    seed: Option<u64>,

    /// Stream heartbeat period in ms (default 20 s × time scale).
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// Stream: concurrent connections allowed.
    #[arg(long)]
    stream_max_connections: Option<usize>,
    /// Stream: do not send XAA-format events on the stream.
    #[arg(long)]
    no_stream_xaa: bool,
    /// X after AAA's end of life: `/2/account_activity/*` answers 410 and no AAA-format
    /// event is delivered.
    #[arg(long)]
    aaa_retired: bool,
    /// Private XAA subscriptions need the user's OAuth 2.0 token and scope (X's rule).
    #[arg(long)]
    strict_scopes: bool,
    /// XAA subscriptions per app (X Enterprise: 75000; Self-serve 1500).
    #[arg(long)]
    max_activity_subscriptions: Option<usize>,
    /// Management rate-limit window in seconds (X: 900).
    #[arg(long)]
    rate_window_secs: Option<u64>,
    /// Stream fault: answer 503 to the first N connection attempts.
    #[arg(long)]
    stream_fail_503: Option<u32>,
    /// Stream fault: answer 429 to the first N connection attempts.
    #[arg(long)]
    stream_fail_429: Option<u32>,
    /// Stream fault: seconds ahead in x-rate-limit-reset of those 429s.
    #[arg(long)]
    stream_rate_limit_reset: Option<u64>,
    /// Stream fault: drop every connection after N lines.
    #[arg(long)]
    stream_drop_after: Option<u64>,
    /// Stream fault: stall every connection after N lines.
    #[arg(long)]
    stream_stall_after: Option<u64>,
    /// Stream fault: operational-disconnect every connection after N lines.
    #[arg(long)]
    stream_disconnect_after: Option<u64>,

    /// Register this webhook URL at start (retrying until its CRC passes).
    #[arg(long, env = "X_EMULATOR_REGISTER_WEBHOOK")]
    register_webhook: Option<String>,
    /// App the webhook is registered for (default: the first app).
    #[arg(long, env = "X_EMULATOR_REGISTER_APP")]
    register_app: Option<String>,
    /// Subscribe these user ids to the registered webhook (comma-separated).
    #[arg(long, env = "X_EMULATOR_SUBSCRIBE", value_delimiter = ',')]
    subscribe: Vec<String>,
    /// Seconds between registration attempts.
    #[arg(long, default_value_t = 2.0)]
    register_retry_secs: f64,

    /// Log as JSON lines.
    #[arg(long, env = "X_EMULATOR_LOG_JSON")]
    log_json: bool,
}

fn weights(list: &[String], what: &str) -> Result<BTreeMap<String, f64>, String> {
    list.iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let (k, v) = s
                .split_once('=')
                .ok_or_else(|| format!("--{what}: expected NAME=WEIGHT, got {s}"))?;
            let w: f64 = v
                .parse()
                .map_err(|_| format!("--{what}: {v} is not a number"))?;
            Ok((k.trim().to_owned(), w))
        })
        .collect()
}

fn build_config(a: &Serve) -> Result<EmulatorConfig, String> {
    let mut cfg = match &a.config {
        Some(p) => load_config(p)?,
        None => EmulatorConfig::default(),
    };
    cfg.listen = a.listen.clone();
    if cfg.apps.is_empty() {
        cfg.apps.push(AppConfig::default());
    }
    apply_main_app(&mut cfg.apps[0], a);
    for s in a.apps.iter().filter(|s| !s.is_empty()) {
        cfg.apps.push(parse_app(s)?);
    }
    for s in a.users.iter().filter(|s| !s.is_empty()) {
        let user = parse_user(s)?;
        cfg.users.retain(|u| u.user_id != user.user_id);
        cfg.users.push(user);
    }
    apply_limits(&mut cfg, a);
    apply_stream_faults(&mut cfg.stream.faults, a);
    let wants_gen = a.rate.is_some() || a.count.is_some() || a.duration.is_some();
    if wants_gen || cfg.generator.is_some() {
        let g = cfg.generator.clone().unwrap_or_default();
        cfg.generator = Some(generator_config(g, a)?);
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

/// Reads a JSON configuration file (`--config`).
fn load_config(p: &std::path::Path) -> Result<EmulatorConfig, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str::<EmulatorConfig>(&text).map_err(|e| format!("{}: {e}", p.display()))
}

/// Applies the main app's flags (`--app-name`, `--app-id`, credentials) to it.
fn apply_main_app(main: &mut AppConfig, a: &Serve) {
    if let Some(v) = &a.app_name {
        main.name = v.clone();
    }
    if let Some(v) = &a.app_id {
        main.app_id = v.clone();
    }
    if let Some(v) = &a.consumer_key {
        main.consumer_key = v.clone();
    }
    if let Some(v) = &a.consumer_secret {
        main.consumer_secret = v.clone();
    }
    if let Some(v) = &a.bearer_token {
        main.bearer_token = v.clone();
    }
}

/// One `--app NAME:APP_ID:CONSUMER_KEY:CONSUMER_SECRET:BEARER_TOKEN`.
fn parse_app(s: &str) -> Result<AppConfig, String> {
    let p: Vec<&str> = s.splitn(5, ':').collect();
    if p.len() != 5 {
        return Err(format!(
            "--app: expected NAME:APP_ID:CONSUMER_KEY:CONSUMER_SECRET:BEARER_TOKEN, got {} field(s)",
            p.len()
        ));
    }
    Ok(AppConfig {
        name: p[0].into(),
        app_id: p[1].into(),
        consumer_key: p[2].into(),
        consumer_secret: p[3].into(),
        bearer_token: p[4].into(),
        account_name: p[0].into(),
    })
}

/// One `--user USER_ID:ACCESS_TOKEN:ACCESS_TOKEN_SECRET[:SCREEN_NAME]`, with every scope.
fn parse_user(s: &str) -> Result<UserConfig, String> {
    let p: Vec<&str> = s.split(':').collect();
    if p.len() < 3 {
        return Err(
            "--user: expected USER_ID:ACCESS_TOKEN:ACCESS_TOKEN_SECRET[:SCREEN_NAME]".into(),
        );
    }
    Ok(UserConfig {
        user_id: p[0].into(),
        access_token: p[1].into(),
        access_token_secret: p[2].into(),
        screen_name: p.get(3).copied().unwrap_or_default().into(),
        name: p.get(3).copied().unwrap_or_default().into(),
        oauth2_token: None,
        scopes: x_emulator::config::all_scopes(),
    })
}

/// Applies the timing, limit and behaviour flags (`--time-scale`, `--pro`, `--max-*`,
/// timeouts, heartbeat, `--aaa-retired`, `--strict-scopes`, …).
fn apply_limits(cfg: &mut EmulatorConfig, a: &Serve) {
    if let Some(v) = a.time_scale {
        cfg.time_scale = v;
    }
    if a.pro {
        *cfg = std::mem::take(cfg).pro_limits();
    }
    if let Some(v) = a.max_webhooks {
        cfg.max_webhooks = v;
    }
    if let Some(v) = a.max_subscriptions {
        cfg.max_subscriptions = v;
    }
    cfg.replay_incomplete |= a.replay_incomplete;
    if let Some(v) = a.max_in_flight {
        cfg.max_in_flight_per_webhook = v.max(1);
    }
    if let Some(v) = a.delivery_timeout_ms {
        cfg.delivery_timeout_ms = v;
    }
    if let Some(v) = a.crc_timeout_ms {
        cfg.crc_timeout_ms = v;
    }
    if let Some(v) = a.max_recorded_events {
        cfg.max_recorded_events = v.max(1);
    }
    if let Some(v) = a.heartbeat_ms {
        cfg.stream.heartbeat_ms = Some(v);
    }
    if let Some(v) = a.stream_max_connections {
        cfg.stream.max_connections = v;
    }
    if a.aaa_retired {
        cfg.aaa_retired = true;
    }
    if a.strict_scopes {
        cfg.strict_scopes = true;
    }
    if let Some(v) = a.max_activity_subscriptions {
        cfg.max_activity_subscriptions = v;
    }
    if let Some(v) = a.rate_window_secs {
        cfg.rate_window_secs = v.max(1);
    }
    if a.no_stream_xaa {
        cfg.stream.include_xaa = false;
    }
}

/// Applies the `--stream-*` fault flags.
fn apply_stream_faults(f: &mut StreamFaults, a: &Serve) {
    if let Some(v) = a.stream_fail_503 {
        f.fail_503 = v;
    }
    if let Some(v) = a.stream_fail_429 {
        f.fail_429 = v;
    }
    if a.stream_rate_limit_reset.is_some() {
        f.rate_limit_reset_secs = a.stream_rate_limit_reset;
    }
    if a.stream_drop_after.is_some() {
        f.drop_after_lines = a.stream_drop_after;
    }
    if a.stream_stall_after.is_some() {
        f.stall_after_lines = a.stream_stall_after;
    }
    if a.stream_disconnect_after.is_some() {
        f.disconnect_after_lines = a.stream_disconnect_after;
    }
}

/// The generator settings: the configured ones (or the defaults) with the generator
/// flags applied.
fn generator_config(mut g: GeneratorConfig, a: &Serve) -> Result<GeneratorConfig, String> {
    if let Some(v) = a.rate {
        if !(v.is_finite() && v > 0.0) {
            return Err("--rate must be a positive number".into());
        }
        g.rate = v;
    }
    g.duration_secs = a.duration.or(g.duration_secs);
    g.count = a.count.or(g.count);
    if !a.formats.is_empty() {
        g.formats = weights(&a.formats, "formats")?;
    }
    if !a.mix.is_empty() {
        g.mix = weights(&a.mix, "mix")?;
    }
    g.cycle |= a.cycle;
    if let Some(c) = &a.cutover {
        g.cutover = serde_json::from_value(serde_json::Value::String(c.clone()))
            .map_err(|e| format!("--cutover: {e}"))?;
    }
    if let Some(v) = a.duplicate_rate {
        g.duplicate_rate = v;
    }
    if let Some(v) = a.batch_rate {
        g.batch_rate = v;
    }
    if let Some(v) = a.population {
        g.population = v;
    }
    if a.seed.is_some() {
        g.seed = a.seed;
    }
    if !a.subscribe.is_empty() && g.target_users.is_empty() {
        g.target_users = a.subscribe.clone();
    }
    Ok(g)
}

async fn setup(emu: Arc<EmulatorHandle>, a: Arc<Serve>, generator: Option<GeneratorConfig>) {
    if let Some(url) = &a.register_webhook {
        let app = a
            .register_app
            .clone()
            .unwrap_or_else(|| emu.config().apps[0].name.clone());
        let retry = Duration::from_secs_f64(a.register_retry_secs.clamp(0.1, 3600.0));
        let webhook_id = loop {
            if let Some(w) = emu
                .webhooks()
                .into_iter()
                .find(|w| &w.url == url && w.app == app)
            {
                break w.id;
            }
            match emu.register_webhook(&app, url).await {
                Ok(w) => {
                    tracing::info!(webhook_id = w.id, url, "webhook registered at start");
                    break w.id;
                }
                Err(e) => {
                    tracing::warn!(url, error = %e, "webhook registration failed; retrying");
                    tokio::time::sleep(retry).await;
                }
            }
        };
        for user in a.subscribe.iter().filter(|u| !u.is_empty()) {
            match emu.subscribe(&app, &webhook_id, user) {
                Ok(()) => tracing::info!(user, webhook_id, "subscribed at start"),
                Err(e) => tracing::warn!(user, error = %e, "subscription at start failed"),
            }
        }
    }
    if let Some(dir) = &a.fixtures {
        loop {
            match emu.emit_fixture(dir) {
                Ok(list) => {
                    tracing::info!(count = list.len(), dir = %dir.display(), "fixtures emitted")
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot emit fixtures");
                    break;
                }
            }
            match a.fixtures_every {
                Some(s) if s > 0.0 && s.is_finite() => {
                    tokio::time::sleep(Duration::from_secs_f64(s.min(1e9))).await
                }
                _ => break,
            }
        }
    }
    if let Some(g) = generator {
        emu.start_generator(g);
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let a = match cli.cmd {
        Cmd::PrintConfig => {
            match serde_json::to_string_pretty(&EmulatorConfig::default()) {
                Ok(s) => println!("{s}"),
                Err(e) => {
                    eprintln!("x-emulator: {e}");
                    return std::process::ExitCode::FAILURE;
                }
            }
            return std::process::ExitCode::SUCCESS;
        }
        Cmd::Serve(a) => Arc::new(*a),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if a.log_json {
        tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let mut cfg = match build_config(&a) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("x-emulator: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // The generator starts after registration and subscriptions, so nothing is lost.
    let generator = cfg.generator.take();
    let emu = match Emulator::start(cfg).await {
        Ok(h) => Arc::new(h),
        Err(e) => {
            eprintln!("x-emulator: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(base_url = emu.base_url(), "x-emulator ready");
    let setup_task = tokio::spawn(setup(Arc::clone(&emu), Arc::clone(&a), generator));
    shutdown_signal().await;
    tracing::info!("shutting down");
    setup_task.abort();
    emu.shutdown().await;
    std::process::ExitCode::SUCCESS
}
