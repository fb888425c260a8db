//! How long the relay takes to open a large spool at start: `Spool::open` (scan and check
//! every segment), then the dedup window rebuilt from it (every record parsed). Fills a spool
//! in a directory of its own with realistic envelopes (an XAA post, about 600 bytes of
//! JSON), nothing delivered, then times each step. The figure sizes the Kubernetes probes
//! (docs/benchmarks.md).
//!
//! ```sh
//! cargo run --release -p activity-relay --example spool_open -- [GiB] [dir] [both|fill|open]
//! ```
//!
//! `fill` leaves the spool in `dir`; `open` opens the one there (and removes it): with the
//! page cache dropped in between (`sync; echo 3 > /proc/sys/vm/drop_caches`), that is the
//! open of a pod whose volume was just attached.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use activity_relay::dedup::{rebuild_from_spool, Dedup};
use bytes::Bytes;
use relay_envelope::{normalize, Context, Formats, IngressKind};
use relay_spool::{NewRecord, RecordKind, Spool, SpoolConfig};

fn config(dir: &std::path::Path, max_bytes: u64) -> SpoolConfig {
    SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes: 64 << 20,
        sinks: vec!["out".to_string()],
        min_free_bytes: None,
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let gib: f64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(4.0);
    let dir = match args.next() {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("spool-open-{}", std::process::id())),
    };
    let mode = args.next().unwrap_or_else(|| "both".to_string());
    let target = (gib * f64::from(1u32 << 30)) as u64;
    std::fs::create_dir_all(&dir)?;
    let ctx = Context {
        ingress: IngressKind::Webhook,
        source: "/x/account-activity/webhook/bench".into(),
        received_at: chrono::Utc::now(),
        formats: Formats::ALL,
    };

    if mode != "open" {
        fill(&dir, target, &ctx).await?;
    }
    if mode == "fill" {
        return Ok(());
    }
    open(&dir, target).await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

/// Fills a spool in `dir` with `target` bytes of envelopes.
async fn fill(
    dir: &std::path::Path,
    target: u64,
    ctx: &Context,
) -> Result<(), Box<dyn std::error::Error>> {
    let spool = Spool::open(config(dir, target + (1 << 30))).await?;
    let started = Instant::now();
    let (mut n, mut bytes) = (0u64, 0u64);
    while bytes < target {
        let mut batch = Vec::with_capacity(1000);
        for _ in 0..1000 {
            let body = format!(
                r#"{{"data":{{"event_uuid":"open-{n}","filter":{{"user_id":"2244994945"}},"event_type":"post.create","payload":{{"id":"{n}","text":"a post of some length, as people write them: {n} {}","author_id":"2244994945","created_at":"2026-12-04T14:01:46.000Z"}}}}}}"#,
                "x".repeat(200)
            );
            for env in normalize(body.as_bytes(), ctx)? {
                let json = Bytes::from(env.to_json());
                bytes += json.len() as u64;
                batch.push(NewRecord {
                    kind: RecordKind::Envelope,
                    accepted_at_ms: 1_780_000_000_000,
                    payload: json,
                    attachment: None,
                });
            }
            n += 1;
        }
        spool.append(batch).await?;
    }
    spool.close().await;
    println!(
        "filled {:.2} GiB, {n} records, in {:.1} s",
        bytes as f64 / f64::from(1u32 << 30),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Opens the spool in `dir` as the relay does at start, and says how long each step took.
async fn open(dir: &std::path::Path, target: u64) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let spool = Spool::open(config(dir, target + (1 << 30))).await?;
    let opened = started.elapsed();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis(),
    )?;
    let dedup = Dedup::open(dir, Duration::from_secs(24 * 3600), 10_000_000, now)?;
    let started = Instant::now();
    let rebuilt = rebuild_from_spool(&dedup, &spool).await?;
    let rebuild = started.elapsed();
    spool.close().await;
    println!(
        "opened: Spool::open {:.2} s, dedup rebuilt from {rebuilt} records in {:.2} s, total {:.2} s",
        opened.as_secs_f64(),
        rebuild.as_secs_f64(),
        (opened + rebuild).as_secs_f64()
    );
    Ok(())
}
