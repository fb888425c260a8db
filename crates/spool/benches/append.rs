//! Append throughput with group commit versus a bare write+fsync loop on the same disk.
//!
//! One iteration = one durable append of one ~1.5 KB record (the batch size of one writer).
//! `floor_before_writers=N` writes the same frame bytes and calls `fdatasync` once per iteration;
//! `spool/writers=N` runs N concurrent appenders against one spool. Throughput is reported
//! in elements (appends) per second; MB/s = appends/s × on-disk record size.
//!
//! Run: `cargo bench -p relay-spool --bench append`

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use relay_spool::record::encode_record;
use relay_spool::{NewRecord, RecordKind, Spool, SpoolConfig};

const PAYLOAD: usize = 1536;

fn payload() -> Bytes {
    let mut s = String::from("{\"specversion\":\"1.0\",\"data\":\"");
    while s.len() < PAYLOAD - 2 {
        s.push('x');
    }
    s.push_str("\"}");
    Bytes::from(s)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let payload = payload();
    let mut frame = Vec::new();
    encode_record(&mut frame, 0, RecordKind::Envelope, 1, 0, &payload);

    let mut group = c.benchmark_group("append");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(1));

    let floor_dir = tempfile::tempdir().unwrap();
    for writers in [1u64, 8, 64] {
        // The floor is re-measured right before each spool case: the disk is shared and
        // noisy, so each ratio compares two measurements taken moments apart.
        group.bench_function(format!("floor_before_writers={writers}"), |b| {
            let path = floor_dir.path().join(format!("floor-{writers}.log"));
            let mut f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap();
            b.iter(|| {
                f.write_all(&frame).unwrap();
                f.sync_data().unwrap();
            });
        });
        let dir = tempfile::tempdir().unwrap();
        let spool = rt
            .block_on(Spool::open(SpoolConfig {
                dir: dir.path().to_path_buf(),
                max_bytes: 1 << 40,
                segment_bytes: 64 << 20,
                sinks: vec!["bench".to_string()],
                min_free_bytes: None,
            }))
            .unwrap();
        group.bench_function(format!("spool/writers={writers}"), |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(writers);
                rt.block_on(async {
                    let start = Instant::now();
                    let tasks: Vec<_> = (0..writers)
                        .map(|_| {
                            let spool = spool.clone();
                            let payload = payload.clone();
                            tokio::spawn(async move {
                                for _ in 0..per {
                                    spool
                                        .append(vec![NewRecord {
                                            kind: RecordKind::Envelope,
                                            accepted_at_ms: 0,
                                            payload: payload.clone(),
                                            attachment: None,
                                        }])
                                        .await
                                        .unwrap();
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    // Scale to exactly `iters` appends.
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (per * writers) as f64)
                })
            });
        });
        rt.block_on(spool.close());
    }
    group.finish();
}

/// Paired rounds: each round measures the floor and then the spool moments apart, and the
/// median of the per-round throughput ratios is printed. Less sensitive to the shared disk's
/// drift than comparing two criterion results taken seconds apart.
fn paired(_c: &mut Criterion) {
    const ROUNDS: usize = 9;
    const FLOOR_OPS: u32 = 100;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let payload = payload();
    let mut frame = Vec::new();
    encode_record(&mut frame, 0, RecordKind::Envelope, 1, 0, &payload);
    let dir = tempfile::tempdir().unwrap();
    let mut floor = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.path().join("floor.log"))
        .unwrap();
    for writers in [1u64, 8, 64] {
        let spool_dir = tempfile::tempdir().unwrap();
        let spool = rt
            .block_on(Spool::open(SpoolConfig {
                dir: spool_dir.path().to_path_buf(),
                max_bytes: 1 << 40,
                segment_bytes: 64 << 20,
                sinks: vec!["bench".to_string()],
                min_free_bytes: None,
            }))
            .unwrap();
        let per_writer = (2000 / writers).max(20);
        let mut ratios = Vec::new();
        let mut floor_rates = Vec::new();
        let mut spool_rates = Vec::new();
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for _ in 0..FLOOR_OPS {
                floor.write_all(&frame).unwrap();
                floor.sync_data().unwrap();
            }
            let floor_rate = f64::from(FLOOR_OPS) / start.elapsed().as_secs_f64();
            let spool_rate = rt.block_on(async {
                let start = Instant::now();
                let tasks: Vec<_> = (0..writers)
                    .map(|_| {
                        let spool = spool.clone();
                        let payload = payload.clone();
                        tokio::spawn(async move {
                            for _ in 0..per_writer {
                                spool
                                    .append(vec![NewRecord {
                                        kind: RecordKind::Envelope,
                                        accepted_at_ms: 0,
                                        payload: payload.clone(),
                                        attachment: None,
                                    }])
                                    .await
                                    .unwrap();
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
                (per_writer * writers) as f64 / start.elapsed().as_secs_f64()
            });
            ratios.push(spool_rate / floor_rate);
            floor_rates.push(floor_rate);
            spool_rates.push(spool_rate);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(|a, b| a.total_cmp(b));
            v[v.len() / 2]
        };
        let (lo, hi) = (
            ratios.iter().copied().fold(f64::INFINITY, f64::min),
            ratios.iter().copied().fold(0.0, f64::max),
        );
        let frame_len = frame.len() as f64;
        let spool_median = median(&mut spool_rates);
        let floor_median = median(&mut floor_rates);
        println!(
            "paired writers={writers}: spool {:.0} appends/s ({:.2} MB/s), floor {:.0} fsyncs/s ({:.2} MB/s), \
             median ratio {:.2} (min {lo:.2}, max {hi:.2}) over {ROUNDS} rounds",
            spool_median,
            spool_median * frame_len / 1e6,
            floor_median,
            floor_median * frame_len / 1e6,
            median(&mut ratios),
        );
        let (groups, batches) = spool.group_commits();
        println!(
            "paired writers={writers}: {:.1} appends per fsync on average ({batches} appends, {groups} fsyncs)",
            batches as f64 / groups.max(1) as f64
        );
        rt.block_on(spool.close());
    }
}

criterion_group!(benches, bench, paired);
criterion_main!(benches);
