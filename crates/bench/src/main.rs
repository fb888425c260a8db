//! `activity-relay-bench`: end-to-end throughput and latency of activity-relay.
//!
//! X (the in-process `x-emulator`) → the relay's webhook (the real `activity-relay` binary as
//! a child process) → one broker → a real consumer, at rising offered rates; then the
//! broker's raw client publishing the same messages as fast as it can, as a baseline measured
//! in the same run. See `crates/bench/README.md`.

mod brokers;
mod consumer;
mod relay;
mod report;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clap::Parser;
use relay_envelope::{Context, IngressKind};
use x_emulator::{AttemptOutcome, Emulator, EmulatorConfig, Format, GeneratorConfig};

use brokers::{Endpoints, RawMessage, Setup, SinkKind};
use relay::Relay;
use report::{Report, Step};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// End-to-end benchmark: x-emulator → activity-relay → broker → consumer, against the
/// broker's raw client.
#[derive(Parser, Debug)]
#[command(name = "activity-relay-bench", version)]
struct Args {
    /// The sink (and broker) under test.
    #[arg(long, value_enum, default_value = "nats")]
    sink: SinkKind,
    /// The relay binary (default: `activity-relay` next to this binary, i.e. built by
    /// `cargo build --release -p activity-relay -p relay-bench`).
    #[arg(long)]
    relay_bin: Option<PathBuf>,
    /// Offered rates in events/s, one step each, rising (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "200,400,800,1600")]
    rates: Vec<f64>,
    /// Seconds of generation per step.
    #[arg(long, default_value_t = 10.0)]
    step_secs: f64,
    /// Longest wait, after a step's generation ends, for X's deliveries to settle and for
    /// the consumer to have everything.
    #[arg(long, default_value_t = 60.0)]
    drain_secs: f64,
    /// Markdown report: the section of this sink is replaced (or appended).
    #[arg(long, default_value = "docs/bench/e2e.md")]
    out: PathBuf,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// A note added to the report (e.g. what else ran on the machine).
    #[arg(long)]
    note: Option<String>,
    /// NATS URL.
    #[arg(
        long,
        env = "RELAY_TEST_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// AMQP URL.
    #[arg(
        long,
        env = "RELAY_TEST_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    /// Kafka bootstrap servers (`source scripts/brokers` sets the variable).
    #[arg(long, env = "RELAY_TEST_KAFKA_BOOTSTRAP")]
    kafka_bootstrap: Option<String>,
    /// Run the relay as a member of a fleet (`[cluster]` with this store, e.g.
    /// `redis://127.0.0.1:6379/0` or `nats://127.0.0.1:4222`): what the fleet's claims cost
    /// through the webhook. Its report section is `<sink> with [cluster] on <scheme>`.
    #[arg(long, value_name = "URL")]
    cluster_store: Option<String>,
}

impl Args {
    /// The report's section: the sink, and whether the relay ran with `[cluster]`.
    fn section(&self) -> String {
        match &self.cluster_store {
            None => self.sink.name().to_string(),
            Some(store) => format!(
                "{} with [cluster] on {}",
                self.sink.name(),
                store.split("://").next().unwrap_or("?")
            ),
        }
    }
}

fn main() {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("activity-relay-bench: starting the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(args)) {
        eprintln!("activity-relay-bench: {e}");
        std::process::exit(1);
    }
}

fn check_args(args: &Args) -> Result<PathBuf, BoxError> {
    if args.rates.is_empty() {
        return Err("--rates needs at least one rate".into());
    }
    if args.rates.iter().any(|r| !(r.is_finite() && *r > 0.0)) {
        return Err(format!("--rates must be positive numbers, got {:?}", args.rates).into());
    }
    if args.rates.windows(2).any(|w| w[1] <= w[0]) {
        return Err(format!("--rates must be rising, got {:?}", args.rates).into());
    }
    if !(args.step_secs.is_finite() && args.step_secs >= 1.0) {
        return Err("--step-secs must be at least 1".into());
    }
    if !(args.drain_secs.is_finite() && args.drain_secs >= 1.0) {
        return Err("--drain-secs must be at least 1".into());
    }
    let bin = match &args.relay_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("finding this executable: {e}"))?
            .with_file_name("activity-relay"),
    };
    if !bin.is_file() {
        return Err(format!(
            "relay binary {} not found: build it with `cargo build --release -p activity-relay \
             -p relay-bench` or pass --relay-bin",
            bin.display()
        )
        .into());
    }
    Ok(bin)
}

async fn run(args: Args) -> Result<(), BoxError> {
    let bin = check_args(&args)?;
    let u = unique();
    let tmp = tempfile::Builder::new()
        .prefix("relay-bench-")
        .tempdir()
        .map_err(|e| format!("creating a temporary directory: {e}"))?;
    let ep = Endpoints {
        nats: args.nats_url.clone(),
        amqp: args.amqp_url.clone(),
        kafka: args.kafka_bootstrap.clone(),
    };
    eprintln!(
        "sink {}, run {u}, relay {}, work dir {}",
        args.sink.name(),
        bin.display(),
        tmp.path().display()
    );
    let setup = Setup::prepare(args.sink, &u, tmp.path(), ep).await?;
    let result = bench(&args, &bin, &setup).await;
    // The results are written before the cleanup, so that nothing there can lose them.
    let written = match &result {
        Ok(report) => write_results(&args, report),
        Err(_) => Ok(()),
    };
    setup.cleanup().await;
    if let Some(store) = args
        .cluster_store
        .as_deref()
        .filter(|s| s.starts_with("nats://"))
    {
        // The fleet's key-value buckets (Redis keys expire on their own).
        if let Ok(client) = async_nats::connect(store).await {
            let js = async_nats::jetstream::new(client);
            for what in ["claims", "jobs"] {
                let _ = js
                    .delete_key_value(format!("{}-{what}", cluster_namespace(&setup)))
                    .await;
            }
        }
    }
    let report = result?;
    written?;
    use std::io::Write;
    // stdout may be a closed pipe (`| head`): the files are what matters.
    let _ = writeln!(std::io::stdout().lock(), "{}", report.markdown());
    Ok(())
}

/// The `[cluster]` namespace of this run (its keys, or its NATS buckets).
fn cluster_namespace(setup: &Setup) -> String {
    format!("bench-{}", setup.unique)
}

fn write_results(args: &Args, report: &Report) -> Result<(), BoxError> {
    report::write_section(&args.out, &args.section(), &report.markdown())?;
    eprintln!(
        "wrote the {} section of {}",
        args.section(),
        args.out.display()
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(report)
            .map_err(|e| format!("serializing the report: {e}"))?;
        std::fs::write(path, text + "\n")
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

async fn bench(args: &Args, bin: &std::path::Path, setup: &Setup) -> Result<Report, BoxError> {
    let consumer = setup.consumer(false).await?;
    let mut toml = setup.sink_toml();
    if let Some(store) = &args.cluster_store {
        toml.push_str(&format!(
            "\n[cluster]\nstore = \"{store}\"\nmember = \"bench\"\nnamespace = \"{}\"\n",
            cluster_namespace(setup)
        ));
    }
    let mut relay = Relay::start(bin, &setup.dir, &toml).await?;
    let rss_reset = relay.reset_peak_rss();
    let mut report = Report::new(args.sink, command_line(), args.note.clone(), rss_reset);
    // The envelopes of the last step that kept up (or of the first step): the baseline's.
    let mut baseline_msgs: Option<Vec<RawMessage>> = None;
    for (i, &rate) in args.rates.iter().enumerate() {
        eprintln!("step {}: {rate} events/s for {} s", i + 1, args.step_secs);
        let (step, msgs) = run_step(args, &mut relay, &consumer, rate, i as u64 + 1).await?;
        eprintln!("  {}", step.summary());
        let kept_up = step.kept_up;
        if kept_up || baseline_msgs.is_none() {
            baseline_msgs = Some(msgs);
        }
        report.steps.push(step);
        if !kept_up {
            break;
        }
    }
    // How much of the data path's work the relay did twice (0 if it handed every record to
    // its dispatcher decoded).
    if let Ok(r) = reqwest::get(format!("http://{}/metrics", relay.admin)).await {
        if let Ok(text) = r.text().await {
            for line in text.lines().filter(|l| {
                l.starts_with("activity_relay_records_parsed_total")
                    || l.starts_with("activity_relay_published_total")
            }) {
                println!("relay metric: {line}");
            }
        }
    }
    relay.stop();
    drop(consumer);
    // Steps stop at the first one that did not keep up: the last one that did is sustained.
    report.sustained = report.steps.iter().rposition(|s| s.kept_up);
    // The baseline sends as many messages as the sustained step delivered (or, when no step
    // kept up, as the first step).
    let msgs = baseline_msgs.unwrap_or_default();
    if !msgs.is_empty() {
        eprintln!(
            "baseline: {} messages with the raw {} client",
            msgs.len(),
            setup.kind.name()
        );
        let max = Duration::from_secs_f64(args.drain_secs + 60.0);
        let b = setup.baseline(&msgs, max).await?;
        eprintln!(
            "  {:.0} events/s (published in {:.2} s, all received in {:.2} s)",
            b.events_per_sec, b.publish_secs, b.all_received_secs
        );
        report.baseline = Some(b);
    }
    Ok(report)
}

/// One step: a fresh emulator (so its records are this step's) generating at `rate` into
/// the running relay; returns the measurements and the step's envelopes (for the baseline).
async fn run_step(
    args: &Args,
    relay: &mut Relay,
    consumer: &consumer::Consumer,
    rate: f64,
    seed: u64,
) -> Result<(Step, Vec<RawMessage>), BoxError> {
    let emu = start_x(relay).await?;
    let mut gen = GeneratorConfig {
        rate,
        duration_secs: Some(args.step_secs),
        seed: Some(seed),
        ..GeneratorConfig::default()
    };
    gen.formats.insert("aaa".into(), 1.0);
    gen.formats.insert("xaa".into(), 1.0);

    relay.reset_peak_rss();
    // CPU times of the relay and of this process, sampled every 50 ms from the step's start,
    // so that they can be read at the moment the consumer had everything.
    let (samples, sampler) = sample_cpu(relay.pid());
    let m0 = consumer.collector.messages();
    let t0 = Utc::now();
    let i0 = Instant::now();
    emu.start_generator(gen);
    tokio::time::sleep(Duration::from_secs_f64(args.step_secs + 0.05)).await;
    emu.stop_generator();
    let deadline = Instant::now() + Duration::from_secs_f64(args.drain_secs);

    settle_deliveries(&emu, deadline).await;

    let sent = emu.sent_with_bodies();
    let Expected {
        expected,
        msgs,
        attempts,
        non_2xx,
        bodies_delivered,
    } = expected_envelopes(&sent)?;
    let bodies_emitted = sent.len();
    emu.shutdown().await;

    let complete = wait_consumed(consumer, &expected, deadline, relay).await;
    let wall = i0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(60)).await;
    sampler.abort();
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    let peak_rss_kib = relay.peak_rss_kib();
    if relay.exited() {
        return Err(format!(
            "activity-relay exited during the step; its log:\n{}",
            relay.log_text()
        )
        .into());
    }

    let ms = |d: chrono::TimeDelta| d.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0;
    let mut queued: Vec<f64> = expected.values().map(|(f, e)| ms(*f - *e)).collect();
    queued.sort_by(f64::total_cmp);
    let (latencies, last_receipt) = latencies(consumer, &expected);
    let received = latencies.len();
    // Until the consumer had everything (the last receipt), or until we gave up.
    let time_to_all = match (complete, last_receipt) {
        (true, Some(l)) => ((l - t0).num_microseconds().unwrap_or(0) as f64 / 1e6).max(1e-3),
        _ => wall,
    };
    let offered_env = expected.len() as f64 / args.step_secs;
    let delivered_env = received as f64 / time_to_all;
    let kept_up = complete && non_2xx == 0 && delivered_env >= 0.9 * offered_env;
    let step = Step {
        offered_events_per_sec: rate,
        step_secs: args.step_secs,
        bodies_emitted,
        bodies_delivered,
        webhook_attempts: attempts,
        webhook_non_2xx: non_2xx,
        consumer_messages: consumer.collector.messages() - m0,
        consumer_unparsable: consumer.collector.unparsable(),
        envelopes_expected: expected.len(),
        envelopes_received: received,
        offered_envelopes_per_sec: offered_env,
        delivered_envelopes_per_sec: delivered_env,
        time_to_all_secs: time_to_all,
        complete,
        latency_ms_p50: report::percentile(&latencies, 0.50),
        latency_ms_p99: report::percentile(&latencies, 0.99),
        latency_ms_p999: report::percentile(&latencies, 0.999),
        latency_ms_max: latencies.last().copied(),
        relay_cpu_percent: cpu_percent(&samples, t0, time_to_all, |s| s.relay),
        x_queue_ms_p50: report::percentile(&queued, 0.50),
        x_queue_ms_p99: report::percentile(&queued, 0.99),
        harness_cpu_percent: cpu_percent(&samples, t0, time_to_all, |s| s.harness),
        relay_peak_rss_mib: peak_rss_kib.map(|k| k as f64 / 1024.0),
        kept_up,
    };
    Ok((step, msgs))
}

/// Each received envelope's latency from X's first attempt, in ms and sorted, and the
/// last receipt.
fn latencies(
    consumer: &consumer::Consumer,
    expected: &HashMap<String, (DateTime<Utc>, DateTime<Utc>)>,
) -> (Vec<f64>, Option<DateTime<Utc>>) {
    let mut latencies = Vec::with_capacity(expected.len());
    let mut last_receipt: Option<DateTime<Utc>> = None;
    for (id, (sent_at, _)) in expected {
        if let Some(r) = consumer.collector.received_at(id) {
            latencies.push((r - *sent_at).num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
            last_receipt = Some(last_receipt.map_or(r, |l| l.max(r)));
        }
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, last_receipt)
}

/// The emulator of X for one step, delivering to the relay's webhook, every type
/// subscribed.
async fn start_x(relay: &Relay) -> Result<x_emulator::EmulatorHandle, BoxError> {
    let emu = Emulator::start(EmulatorConfig {
        time_scale: 0.01,
        max_recorded_events: 2_000_000,
        ..EmulatorConfig::default()
    })
    .await
    .map_err(|e| format!("starting the emulator: {e}"))?;
    let hook = emu
        .register_webhook(relay::APP, &relay.webhook_url())
        .await
        .map_err(|e| format!("registering the relay's webhook on the emulator: {e}"))?;
    subscribe_all(&emu, &hook.id).await?;
    Ok(emu)
}

/// CPU times of the relay and of this process, sampled every 50 ms from the step's
/// start, so that they can be read at the moment the consumer had everything.
fn sample_cpu(
    pid: u32,
) -> (
    std::sync::Arc<std::sync::Mutex<Vec<CpuSample>>>,
    tokio::task::JoinHandle<()>,
) {
    let stat = format!("/proc/{}/stat", pid);
    let samples: std::sync::Arc<std::sync::Mutex<Vec<CpuSample>>> = Default::default();
    let sampler = {
        let samples = std::sync::Arc::clone(&samples);
        tokio::spawn(async move {
            loop {
                let s = CpuSample {
                    at: Utc::now(),
                    relay: relay::cpu_secs_of(&stat),
                    harness: relay::cpu_secs_of("/proc/self/stat"),
                };
                samples.lock().unwrap_or_else(|p| p.into_inner()).push(s);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    (samples, sampler)
}

/// Waits (bounded by `deadline`) until X's deliveries settle: every body delivered, or
/// failed after its last retry.
async fn settle_deliveries(emu: &x_emulator::EmulatorHandle, deadline: Instant) {
    let retries = emu.config().retry_waits_secs.len() as u32 + 1;
    let mut last_pending = (usize::MAX, Instant::now());
    loop {
        let sent = emu.sent();
        let pending = sent
            .iter()
            .filter(|e| {
                e.deliveries.is_empty()
                    || !e.deliveries.iter().any(|d| {
                        d.outcome != AttemptOutcome::Failed
                            || (d.outcome == AttemptOutcome::Failed && d.attempt >= retries)
                    })
            })
            .count();
        // Bodies for nobody subscribed never get an attempt: stop once that count is stable.
        if pending != last_pending.0 {
            last_pending = (pending, Instant::now());
        }
        if pending == 0
            || last_pending.1.elapsed() > Duration::from_secs(2)
            || Instant::now() > deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the consumer must receive: every body X delivered with a 2xx, normalized like the
/// relay does, with X's counts.
struct Expected {
    /// id → (X's first attempt, emission time).
    expected: HashMap<String, (DateTime<Utc>, DateTime<Utc>)>,
    msgs: Vec<RawMessage>,
    attempts: usize,
    non_2xx: usize,
    bodies_delivered: usize,
}

/// X's send time of an envelope = the first attempt of the first body that carries it.
fn expected_envelopes(sent: &[x_emulator::SentEvent]) -> Result<Expected, BoxError> {
    // id → (X's first attempt, emission time).
    let mut expected: HashMap<String, (DateTime<Utc>, DateTime<Utc>)> = HashMap::new();
    let mut msgs: Vec<RawMessage> = Vec::new();
    let (mut attempts, mut non_2xx, mut bodies_delivered) = (0usize, 0usize, 0usize);
    let ctx = Context {
        ingress: IngressKind::Webhook,
        source: format!("/x/account-activity/webhook/{}", relay::APP),
        received_at: Utc::now(),
        formats: relay_envelope::Formats::ALL,
    };
    for e in sent {
        attempts += e.deliveries.len();
        non_2xx += e
            .deliveries
            .iter()
            .filter(|d| d.outcome == AttemptOutcome::Failed)
            .count();
        if e.format == Format::Stream
            || !e
                .deliveries
                .iter()
                .any(|d| d.outcome == AttemptOutcome::Delivered)
        {
            continue;
        }
        bodies_delivered += 1;
        let Some(first) = e.deliveries.iter().map(|d| d.at).min() else {
            continue;
        };
        let Some(body) = &e.body else { continue };
        let bytes = serde_json::to_vec(body).map_err(|err| format!("re-encoding a body: {err}"))?;
        for env in relay_envelope::normalize(&bytes, &ctx).unwrap_or_default() {
            match expected.get_mut(&env.id) {
                Some(t) => *t = (t.0.min(first), t.1.min(e.emitted_at)),
                None => {
                    expected.insert(env.id.clone(), (first, e.emitted_at));
                    msgs.push(RawMessage {
                        subject: env.subject.clone(),
                        event_type: env.event_type.clone(),
                        id: env.id.clone(),
                        body: env.to_json(),
                    });
                }
            }
        }
    }
    Ok(Expected {
        expected,
        msgs,
        attempts,
        non_2xx,
        bodies_delivered,
    })
}

/// Whether the consumer received every expected envelope before `deadline` (false too if
/// the relay exited).
async fn wait_consumed(
    consumer: &consumer::Consumer,
    expected: &HashMap<String, (DateTime<Utc>, DateTime<Utc>)>,
    deadline: Instant,
    relay: &mut Relay,
) -> bool {
    loop {
        let n = consumer.collector.count_of(expected.keys());
        if n >= expected.len() {
            break true;
        }
        if Instant::now() > deadline || relay.exited() {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// CPU seconds of the relay and of this process at one moment.
struct CpuSample {
    at: DateTime<Utc>,
    relay: Option<f64>,
    harness: Option<f64>,
}

/// CPU over [step start, step start + `secs`] in % of one core: from the first sample to the
/// first one at or after the end (the last one when none is).
fn cpu_percent(
    samples: &[CpuSample],
    t0: DateTime<Utc>,
    secs: f64,
    which: impl Fn(&CpuSample) -> Option<f64>,
) -> Option<f64> {
    let first = samples.first()?;
    let end = t0 + chrono::TimeDelta::microseconds((secs * 1e6) as i64);
    let last = samples
        .iter()
        .find(|s| s.at >= end)
        .or_else(|| samples.last())?;
    let wall = (last.at - first.at).num_microseconds()? as f64 / 1e6;
    (wall > 0.0).then_some((which(last)? - which(first)?) / wall * 100.0)
}

/// Subscribes every configured user to the webhook: AAA (OAuth'd subscription) and XAA
/// (an activity subscription for every XAA event type).
async fn subscribe_all(emu: &x_emulator::EmulatorHandle, webhook_id: &str) -> Result<(), BoxError> {
    let xaa_kinds: Vec<&str> = x_emulator::generator::all_kinds()
        .into_iter()
        .filter(|(f, _)| *f == Format::Xaa)
        .map(|(_, k)| k)
        .collect();
    let client = reqwest::Client::new();
    for user in &emu.config().users {
        emu.subscribe(relay::APP, webhook_id, &user.user_id)
            .map_err(|e| format!("subscribing user {}: {e}", user.user_id))?;
        let r = client
            .post(format!("{}/2/activity/subscriptions", emu.base_url()))
            .bearer_auth(&emu.config().apps[0].bearer_token)
            .json(&serde_json::json!({
                "user_id": user.user_id, "event_types": xaa_kinds, "webhook_id": webhook_id
            }))
            .send()
            .await
            .map_err(|e| format!("creating an activity subscription: {e}"))?;
        if !r.status().is_success() {
            let status = r.status();
            let text = r.text().await.unwrap_or_default();
            return Err(format!("creating an activity subscription: {status} {text}").into());
        }
    }
    Ok(())
}

/// The command line as it was run (for the report).
fn command_line() -> String {
    let mut parts: Vec<String> = std::env::args().collect();
    if let Some(first) = parts.first_mut() {
        if let Some(name) = std::path::Path::new(first.as_str()).file_name() {
            *first = name.to_string_lossy().into_owned();
        }
    }
    parts
        .iter()
        .map(|p| shell_quote(p))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `p` as a POSIX shell word.
fn shell_quote(p: &str) -> String {
    let plain = !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:%+@".contains(c));
    if plain {
        p.to_owned()
    } else {
        format!("'{}'", p.replace('\'', "'\\''"))
    }
}

/// A short lowercase alphanumeric suffix for this run's destination names.
fn unique() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut x = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..10)
        .map(|i| DIGITS[((x >> (i * 6)) % 36) as usize] as char)
        .collect()
}
