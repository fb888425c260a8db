//! What `[cluster]` costs a delivery: the relay's real pipeline (normalize, dedup, durable
//! append with fsync) driven by concurrent deliveries of unique events, without and with
//! the fleet's claims in a real Redis, in alternating rounds on the same spool disk; and
//! the claim's round trip beside the append it sits next to. Needs the store:
//! `RELAY_BENCH_CLUSTER_STORE` (default `RELAY_TEST_REDIS_URL`, else
//! `redis://127.0.0.1:6379/0`; `nats://127.0.0.1:4222` for NATS key-value).
//!
//! ```sh
//! cargo run --release -p activity-relay --example cluster_claims -- [deliveries] [concurrency] [rounds]
//! RELAY_BENCH_CLUSTER_STORE=nats://127.0.0.1:4222 cargo run --release -p activity-relay --example cluster_claims
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use activity_relay::cluster::{connect, ClusterConfig, ClusterMetrics, FleetDedup};
use activity_relay::dedup::Dedup;
use activity_relay::metrics::PipelineMetrics;
use activity_relay::pipeline::{RelayPipeline, SpoolHealth};
use bytes::Bytes;
use prometheus::Registry;
use relay_envelope::{Context, Formats, IngressKind};
use relay_ingress::Pipeline;
use relay_spool::{Spool, SpoolConfig};

fn body(tag: &str, n: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"data":{{"event_uuid":"{tag}-{n}","filter":{{"user_id":"2244994945"}},"event_type":"post.create","payload":{{"id":"{tag}{n}","text":"a post of some length {n}","author_id":"2244994945","created_at":"2026-12-04T14:01:46.000Z"}}}}}}"#
    ))
}

fn ctx() -> Context {
    Context {
        ingress: IngressKind::Webhook,
        source: "/x/account-activity/webhook/bench".into(),
        received_at: chrono::Utc::now(),
        formats: Formats::ALL,
    }
}

async fn pipeline(
    dir: &std::path::Path,
    fleet: Option<Arc<FleetDedup>>,
) -> (Arc<RelayPipeline>, Spool) {
    let spool = Spool::open(SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes: 8 << 30,
        segment_bytes: 64 << 20,
        sinks: vec!["out".into()],
        min_free_bytes: None,
    })
    .await
    .expect("spool");
    let dedup = Arc::new(Dedup::in_memory(Duration::from_secs(3600), 10_000_000));
    let p = RelayPipeline::new(
        spool.clone(),
        dedup,
        PipelineMetrics::register(&Registry::new()).expect("metrics"),
        Arc::new(SpoolHealth::default()),
        Duration::from_secs(1),
    );
    let p = match fleet {
        Some(f) => p.with_fleet(f),
        None => p,
    };
    (Arc::new(p), spool)
}

/// Deliveries per second of `n` unique deliveries at `concurrency`.
async fn round(p: &Arc<RelayPipeline>, tag: &str, n: usize, concurrency: usize) -> f64 {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (p, next, tag) = (p.clone(), next.clone(), tag.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let r = p.accept(body(&tag, i), ctx()).await.expect("accepted");
                assert_eq!(r.spooled, 1, "{r:?}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4000);
    let concurrency: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(32);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5);
    let run = format!("bench{}", std::process::id());
    let cfg = ClusterConfig {
        // RELAY_BENCH_CLUSTER_STORE=nats://127.0.0.1:4222 for the NATS key-value store.
        store: std::env::var("RELAY_BENCH_CLUSTER_STORE")
            .or_else(|_| std::env::var("RELAY_TEST_REDIS_URL"))
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into()),
        member: "bench".into(),
        namespace: run.clone(),
        ..ClusterConfig::default()
    };
    let store = connect(&cfg, Duration::from_secs(600)).await?;
    let fleet = Arc::new(FleetDedup::new(
        store,
        cfg,
        Duration::from_secs(600),
        ClusterMetrics::register(&Registry::new())?,
    ));
    let (plain_dir, fleet_dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (plain, plain_spool) = pipeline(plain_dir.path(), None).await;
    let (clustered, fleet_spool) = pipeline(fleet_dir.path(), Some(fleet.clone())).await;

    let (mut ratios, mut plains, mut fleets) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..rounds {
        let a = round(&plain, &format!("{run}p{r}"), n, concurrency).await;
        let b = round(&clustered, &format!("{run}c{r}"), n, concurrency).await;
        println!(
            "round {r}: without [cluster] {a:.0}/s, with {b:.0}/s, ratio {:.2}",
            b / a
        );
        plains.push(a);
        fleets.push(b);
        ratios.push(b / a);
    }
    // One delivery at a time: the claim's round trip beside the append's fsync.
    let (mut claims, mut appends) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let ids = vec![format!("{run}-solo-{i}")];
        let t = Instant::now();
        fleet.claim(&ids).await.expect("claim");
        claims.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        plain
            .accept(body(&format!("{run}solo"), i), ctx())
            .await
            .expect("accepted");
        appends.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "deliveries/s (median of {rounds} rounds of {n} at concurrency {concurrency}): without {:.0}, with {:.0}, ratio {:.2}",
        median(plains),
        median(fleets),
        median(ratios)
    );
    println!(
        "one delivery alone, p50: claim round trip {:.3} ms, whole accept (normalize, dedup, append + fsync) {:.3} ms",
        median(claims),
        median(appends)
    );
    plain_spool.close().await;
    fleet_spool.close().await;
    Ok(())
}
