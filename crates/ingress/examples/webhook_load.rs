//! Webhook load test: signed POSTs of the shared fixture bodies at a fixed concurrency over
//! keep-alive connections, against
//!
//! * **webhook**: the real webhook router (`WebhookServer`), signature checks and all,
//!   backed by a pipeline appending each body to a real `relay_spool::Spool` (fsync, group
//!   commit) on disk;
//! * **floor**: a bare axum handler answering 200 on the same machine, same client.
//!
//! Rounds alternate floor and webhook so both see the same machine noise; the ratio is
//! webhook requests/s over floor requests/s, per round, then the median.
//!
//! ```sh
//! export CARGO_TARGET_DIR=$HOME/.cache/activity-relay/target
//! cargo run --release -p relay-ingress --example webhook_load -- \
//!     --requests 4000 --concurrency 32 --rounds 5
//! ```
//! `--dir PATH` puts the spool there (default: a tempdir under the system temp dir).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use relay_envelope::Context;
use relay_ingress::webhook::{AppConfig, WebhookConfig, WebhookServer};
use relay_ingress::{AcceptError, AcceptReport, Pipeline};
use relay_spool::{NewRecord, RecordKind, Spool, SpoolConfig};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");
const SECRET: &str = "bench-consumer-secret";

struct SpoolPipeline(Spool);

/// Ablation: the same webhook, a pipeline that only counts (no disk).
#[derive(Default)]
struct CountingPipeline(std::sync::atomic::AtomicU64);

#[async_trait::async_trait]
impl Pipeline for CountingPipeline {
    async fn accept(&self, _body: Bytes, _ctx: Context) -> Result<AcceptReport, AcceptError> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(AcceptReport {
            spooled: 1,
            ..Default::default()
        })
    }
}

#[async_trait::async_trait]
impl Pipeline for SpoolPipeline {
    async fn accept(&self, body: Bytes, _ctx: Context) -> Result<AcceptReport, AcceptError> {
        let accepted_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let rec = NewRecord {
            kind: RecordKind::Envelope,
            accepted_at_ms,
            payload: body,
            attachment: None,
        };
        match self.0.append(vec![rec]).await {
            Ok(_) => Ok(AcceptReport {
                spooled: 1,
                ..Default::default()
            }),
            Err(relay_spool::SpoolError::Full { .. }) => Err(AcceptError::Full {
                retry_after: Duration::from_secs(1),
            }),
            Err(e) => Err(AcceptError::Unavailable(Box::new(e))),
        }
    }
}

struct Args {
    requests: usize,
    concurrency: usize,
    rounds: usize,
    dir: Option<String>,
}

fn args() -> Args {
    let mut a = Args {
        requests: 4000,
        concurrency: 32,
        rounds: 5,
        dir: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut it = argv.iter();
    while let Some(k) = it.next() {
        let v = it.next().cloned().unwrap_or_default();
        match k.as_str() {
            "--requests" => a.requests = v.parse().unwrap_or(a.requests),
            "--concurrency" => a.concurrency = v.parse().unwrap_or(a.concurrency),
            "--rounds" => a.rounds = v.parse().unwrap_or(a.rounds),
            "--dir" => a.dir = Some(v),
            _ => eprintln!("ignoring unknown argument {k}"),
        }
    }
    a.concurrency = a.concurrency.max(1);
    a.requests = a.requests.max(a.concurrency);
    a
}

/// (body, signature header) for every AAA fixture.
fn bodies() -> Vec<(Bytes, String)> {
    let mut names: Vec<_> = std::fs::read_dir(format!("{FIXTURES}/aaa"))
        .expect("fixtures dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|p| {
            let body = std::fs::read(&p).expect("fixture");
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("hmac key");
            mac.update(&body);
            let sig = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            (Bytes::from(body), format!("sha256={sig}"))
        })
        .collect()
}

struct RoundResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

async fn load(
    url: &str,
    bodies: &Arc<Vec<(Bytes, String)>>,
    requests: usize,
    concurrency: usize,
) -> RoundResult {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let per_task = requests / concurrency;
    // Open the connections first so both targets are measured on warm keep-alive pools.
    let mut warm = Vec::new();
    for i in 0..concurrency {
        let (client, url, bodies) = (client.clone(), url.to_string(), bodies.clone());
        warm.push(tokio::spawn(async move {
            let (b, s) = &bodies[i % bodies.len()];
            let r = client
                .post(&url)
                .header("x-twitter-webhooks-signature", s)
                .body(b.clone())
                .send()
                .await
                .expect("warm-up request");
            assert_eq!(r.status(), 200);
        }));
    }
    for w in warm {
        w.await.expect("warm-up task");
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let (client, url, bodies) = (client.clone(), url.to_string(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_task);
            for i in 0..per_task {
                let (b, s) = &bodies[(t * per_task + i) % bodies.len()];
                let t0 = Instant::now();
                let r = client
                    .post(&url)
                    .header("x-twitter-webhooks-signature", s)
                    .header("content-type", "application/json")
                    .body(b.clone())
                    .send()
                    .await
                    .expect("request");
                assert_eq!(r.status(), 200, "every request must succeed");
                let _ = r.bytes().await;
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::with_capacity(requests);
    for t in tasks {
        lat.extend(t.await.expect("load task"));
    }
    let elapsed = started.elapsed();
    lat.sort_unstable();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)].as_secs_f64() * 1e3;
    RoundResult {
        rps: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let a = args();
    let bodies = Arc::new(bodies());
    let avg = bodies.iter().map(|(b, _)| b.len()).sum::<usize>() / bodies.len();

    // Floor: a bare handler.
    let floor_app =
        axum::Router::new().route("/webhooks/{app}", axum::routing::post(|| async { "ok\n" }));
    let floor_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let floor_addr = floor_listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(floor_listener, floor_app).await });

    // The real webhook on a real spool.
    let dir = match &a.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir(),
    }
    .expect("spool dir");
    let spool = Spool::open(SpoolConfig {
        dir: dir.path().to_path_buf(),
        max_bytes: 8 << 30,
        segment_bytes: 64 << 20,
        sinks: vec!["bench".into()],
        min_free_bytes: None,
    })
    .await
    .expect("spool");
    let mut cfg = WebhookConfig::new(vec![AppConfig {
        name: "bench".into(),
        consumer_secrets: vec![SECRET.into()],
        source: None,
        formats: relay_envelope::Formats::ALL,
    }]);
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    let registry = prometheus::Registry::new();
    let server = WebhookServer::bind(cfg, Arc::new(SpoolPipeline(spool.clone())), &registry)
        .await
        .expect("webhook");
    let hook_addr = server.local_addr();
    let shutdown = CancellationToken::new();
    let serving = tokio::spawn(server.run(shutdown.clone()));

    let mut mem_cfg = WebhookConfig::new(vec![AppConfig {
        name: "bench".into(),
        consumer_secrets: vec![SECRET.into()],
        source: None,
        formats: relay_envelope::Formats::ALL,
    }]);
    mem_cfg.listen = "127.0.0.1:0".parse().expect("addr");
    let counting = Arc::new(CountingPipeline::default());
    let mem_server = WebhookServer::bind(mem_cfg, counting.clone(), &prometheus::Registry::new())
        .await
        .expect("webhook");
    let mem_addr = mem_server.local_addr();
    let mem_serving = tokio::spawn(mem_server.run(shutdown.clone()));

    println!(
        "webhook_load: {} requests/round, concurrency {}, {} rounds, {} fixture bodies (avg {} B), spool in {}",
        a.requests,
        a.concurrency,
        a.rounds,
        bodies.len(),
        avg,
        dir.path().display()
    );
    println!("(webhook = real router + spool with fsync; memory = same router, counting pipeline, no disk)");
    println!("round | floor req/s | floor p50/p99 ms | webhook req/s | webhook p50/p99 ms | ratio | memory req/s | memory ratio");
    let floor_url = format!("http://{floor_addr}/webhooks/bench");
    let hook_url = format!("http://{hook_addr}/webhooks/bench");
    let mem_url = format!("http://{mem_addr}/webhooks/bench");
    let mut ratios = Vec::new();
    let mut mem_ratios = Vec::new();
    let (mut f_rps, mut h_rps, mut f50, mut f99, mut h50, mut h99) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for round in 1..=a.rounds {
        let f = load(&floor_url, &bodies, a.requests, a.concurrency).await;
        let h = load(&hook_url, &bodies, a.requests, a.concurrency).await;
        let m = load(&mem_url, &bodies, a.requests, a.concurrency).await;
        println!(
            "{round:5} | {:11.0} | {:6.2} / {:6.2} | {:13.0} | {:7.2} / {:7.2} | {:.2} | {:12.0} | {:.2}",
            f.rps,
            f.p50_ms,
            f.p99_ms,
            h.rps,
            h.p50_ms,
            h.p99_ms,
            h.rps / f.rps,
            m.rps,
            m.rps / f.rps
        );
        mem_ratios.push(m.rps / f.rps);
        ratios.push(h.rps / f.rps);
        f_rps.push(f.rps);
        h_rps.push(h.rps);
        f50.push(f.p50_ms);
        f99.push(f.p99_ms);
        h50.push(h.p50_ms);
        h99.push(h.p99_ms);
    }
    let (lo, hi) = ratios
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
    println!(
        "median | {:11.0} | {:6.2} / {:6.2} | {:13.0} | {:7.2} / {:7.2} | {:.2} (min {:.2}, max {:.2})",
        median(f_rps),
        median(f50),
        median(f99),
        median(h_rps),
        median(h50),
        median(h99),
        median(ratios),
        lo,
        hi
    );
    println!(
        "memory (webhook without disk) / floor: median {:.2}",
        median(mem_ratios)
    );
    let stored = spool.stats().next_offset;
    println!(
        "spooled records: {stored} (expected {})",
        a.rounds * (a.requests / a.concurrency * a.concurrency + a.concurrency)
    );
    shutdown.cancel();
    let _ = serving.await;
    let _ = mem_serving.await;
    spool.close().await;
}
