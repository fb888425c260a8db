//! The `run` subcommand's glue: load config, `--check`, logging, runtime, signals.

use std::path::PathBuf;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// `activity-relay run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The TOML configuration file.
    #[arg(long, short = 'c', value_name = "FILE", env = "ACTIVITY_RELAY_CONFIG")]
    pub config: PathBuf,
    /// Validate the configuration (no network, nothing created) and exit.
    #[arg(long)]
    pub check: bool,
    /// Once listening, write the bound admin and webhook addresses to FILE as JSON (how a
    /// supervisor or a test learns the ports of `listen = "127.0.0.1:0"`).
    #[arg(long, value_name = "FILE")]
    pub listen_file: Option<PathBuf>,
}

/// Runs `activity-relay run`; returns the process exit code.
pub fn run(args: &RunArgs) -> ExitCode {
    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("activity-relay: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.check {
        return match crate::run::check(&cfg) {
            Ok(summary) => {
                println!("configuration {} is valid", args.config.display());
                println!("{summary}");
                for w in &cfg.warnings {
                    println!("warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("activity-relay: configuration error: {e}");
                ExitCode::from(2)
            }
        };
    }
    serve(
        cfg,
        crate::run::RunOptions {
            listen_file: args.listen_file.clone(),
            drain: None,
        },
    )
}

/// `activity-relay drain`: a spool left by a member that is gone (scaled in), delivered
/// by a process of its own, with no ingress: exits 0 once every sink confirmed every
/// record, 1 if some are still unconfirmed after `--timeout` (they stay in the spool).
#[derive(Debug, clap::Args)]
pub struct DrainArgs {
    /// The configuration the departed member ran with (its sinks, dispatch and spool
    /// settings; its ingresses are not started).
    #[arg(long, short = 'c', value_name = "FILE", env = "ACTIVITY_RELAY_CONFIG")]
    pub config: PathBuf,
    /// The spool directory to drain (default: the configuration's `[spool] dir`).
    #[arg(long, value_name = "DIR")]
    pub spool_dir: Option<PathBuf>,
    /// The departed member's name, whose spool report in the fleet's store is cleared once
    /// drained (default: the configuration's `[cluster] member`).
    #[arg(long, value_name = "NAME")]
    pub member: Option<String>,
    /// Give up after this long (exit 1; what is left stays in the spool).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
    /// As `run --listen-file`: the bound admin address, as JSON.
    #[arg(long, value_name = "FILE")]
    pub listen_file: Option<PathBuf>,
}

/// Runs `activity-relay drain`; returns the process exit code.
pub fn drain(args: &DrainArgs) -> ExitCode {
    let mut cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("activity-relay: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(dir) = &args.spool_dir {
        cfg.spool.dir = dir.clone();
    }
    // An empty spool would be made and "drained", and the member's report cleared: a
    // wrong path (a mount one level off) must say so instead. A spool that was ever
    // opened has its cursor file.
    if !cfg.spool.dir.join("cursors").is_file() {
        eprintln!(
            "activity-relay: no spool at {} (no cursors file): is --spool-dir the spool directory of the departed member's volume?",
            cfg.spool.dir.display()
        );
        return ExitCode::from(2);
    }
    let dead_letters = cfg.spool.dir.join("dead-letters");
    cfg.webhook = None;
    cfg.streams.clear();
    cfg.recovery.enabled = false;
    if let (Some(member), Some(c)) = (&args.member, cfg.cluster.as_mut()) {
        c.member = member.clone();
    }
    let code = serve(
        cfg,
        crate::run::RunOptions {
            listen_file: args.listen_file.clone(),
            drain: Some(args.timeout),
        },
    );
    // Dead letters are not records of the spool: say they are there before anyone deletes
    // the volume.
    let kept = std::fs::read_dir(&dead_letters).map_or(0, |d| d.count());
    if kept > 0 {
        eprintln!(
            "activity-relay: {kept} dead-letter file(s) remain in {}: keep or replay them (`activity-relay dead-letters`) before deleting the volume",
            dead_letters.display()
        );
    }
    code
}

/// Logging, the runtime and signals around `run::run_with`.
fn serve(cfg: Config, opts: crate::run::RunOptions) -> ExitCode {
    if let Err(e) = crate::logging::init(&cfg.log) {
        eprintln!("activity-relay: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("activity-relay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signals.cancel();
            // A second signal ends the process at once: everything accepted is in the
            // spool already, undelivered records are delivered after the next start.
            wait_for_signal().await;
            tracing::warn!("second signal: exiting without waiting for the dispatchers");
            std::process::exit(130);
        });
        crate::run::run_with(cfg, shutdown, opts).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "activity-relay failed");
            eprintln!("activity-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => tracing::info!(signal = "SIGTERM", "signal received"),
                _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "signal received"),
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the relay");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// `activity-relay normalize`: exit 0 when every value normalized, 1 when some did not,
/// 2 when the output could not be written.
pub fn normalize(args: &crate::cli_normalize::NormalizeArgs) -> ExitCode {
    let stdin = std::io::stdin();
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    match crate::cli_normalize::run(
        args,
        stdin.lock(),
        std::io::BufWriter::new(stdout.lock()),
        stderr.lock(),
    ) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("activity-relay normalize: {e}");
            ExitCode::from(2)
        }
    }
}

/// `activity-relay x …`; with `--config`, unset credentials come from its `[recovery]`.
pub fn x(mut args: relay_xapi::cli::XArgs) -> ExitCode {
    if let Some(path) = args.config.clone() {
        if let Err(e) = apply_x_config(&mut args, &path) {
            eprintln!("activity-relay x: configuration error: {e}");
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("activity-relay: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    match runtime.block_on(relay_xapi::cli::run(args, &mut out)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("activity-relay x: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `activity-relay probe URL`: exit 0 on a 2xx answer, 1 otherwise.
pub fn probe(args: &crate::probe::ProbeArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("activity-relay probe: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crate::probe::probe(args)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("activity-relay probe: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `activity-relay schema`.
#[derive(clap::Args, Debug)]
pub struct SchemaArgs {
    /// `envelope` (JSON Schema of the envelope) or `asyncapi` (needs --config).
    #[arg(value_parser = ["envelope", "asyncapi"])]
    pub what: String,
    /// The configuration whose sinks the AsyncAPI document describes.
    #[arg(long, short = 'c', value_name = "FILE", env = "ACTIVITY_RELAY_CONFIG")]
    pub config: Option<PathBuf>,
}

/// Runs `activity-relay schema`; prints the document as JSON.
pub fn schema(args: &SchemaArgs) -> ExitCode {
    let doc = if args.what == "envelope" {
        crate::schema::envelope_schema()
    } else {
        let Some(path) = &args.config else {
            eprintln!("activity-relay: schema asyncapi needs --config FILE");
            return ExitCode::from(2);
        };
        match Config::load(path) {
            Ok(cfg) => crate::schema::asyncapi(&cfg),
            Err(e) => {
                eprintln!("activity-relay: configuration error: {e}");
                return ExitCode::from(2);
            }
        }
    };
    match serde_json::to_string_pretty(&doc) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("activity-relay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `activity-relay dead-letters replay --config FILE DEAD_LETTERS.ndjson...`.
#[derive(clap::Args, Debug)]
pub struct DeadLettersArgs {
    /// What to do: `replay`.
    #[arg(value_parser = ["replay"])]
    pub action: String,
    /// The relay's configuration (its spool and sinks).
    #[arg(long, short = 'c', value_name = "FILE", env = "ACTIVITY_RELAY_CONFIG")]
    pub config: PathBuf,
    /// NDJSON files of dead letters: `<spool>/dead-letters/<sink>.ndjson`, or dead letters
    /// exported from a sink's dead-letter destination.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// Runs `activity-relay dead-letters replay`.
pub fn dead_letters(args: &DeadLettersArgs) -> ExitCode {
    let cfg = match Config::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("activity-relay: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("activity-relay: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(crate::replay_dead::replay(&cfg, &args.files)) {
        Ok(r) => {
            println!(
                "{} events put back into the spool (delivered to every sink at the next start); {} dead letters held no envelope, {} lines were not dead letters",
                r.appended, r.not_envelopes, r.unreadable_lines
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("activity-relay: dead-letters replay: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Fills the `x` subcommand's unset base URL and credentials from `[recovery]` of the relay
/// config at `path` (only that section is read and `${ENV}`-expanded). Flags and their
/// environment variables were parsed first, so they win.
pub fn apply_x_config(
    args: &mut relay_xapi::cli::XArgs,
    path: &std::path::Path,
) -> Result<(), crate::config::ConfigError> {
    use crate::recovery::config::{non_empty, non_empty_secret};
    let (r, warnings) = crate::config::Config::load_recovery(path)?;
    for w in warnings {
        eprintln!("activity-relay: warning: {w}");
    }
    let fill = |slot: &mut Option<String>, v: &Option<String>| {
        if non_empty(slot).is_none() {
            if let Some(v) = non_empty(v) {
                *slot = Some(v.to_string());
            }
        }
    };
    fill(&mut args.base_url, &Some(r.base_url.clone()));
    // Trimmed, as `fill` does: a value read from a file through `${VAR}` often ends with a
    // newline.
    let fill_secret = |slot: &mut Option<relay_sink::Secret>, v: &Option<relay_sink::Secret>| {
        if non_empty_secret(slot).is_none() {
            if let Some(v) = non_empty_secret(v) {
                *slot = Some(relay_sink::Secret::new(v));
            }
        }
    };
    fill_secret(&mut args.bearer_token, &r.bearer_token);
    if non_empty(&args.consumer_key).is_none() && non_empty_secret(&args.consumer_secret).is_none()
    {
        fill(&mut args.consumer_key, &r.consumer_key);
        fill_secret(&mut args.consumer_secret, &r.consumer_secret);
    }
    Ok(())
}
