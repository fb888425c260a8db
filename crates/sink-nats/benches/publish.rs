//! NATS sink vs the raw async-nats client, same run, same server, same messages.
//!
//! (a) `NatsSink::publish` in batches of `BENCH_BATCH`;
//! (b) the raw JetStream client publishing the same bytes to the same subjects with the
//!     same headers (`Nats-Msg-Id`, `Content-Type`, `ce-id`), awaiting every ack with the
//!     same pipelining depth (`max_in_flight`, 256), batch by batch.
//!
//! Rounds alternate (a) and (b) so that noise on the shared machine hits both. Each round
//! uses fresh ids (JetStream would otherwise drop the repeats as duplicates). Reported:
//! events/s (median over rounds), p50/p99 of the per-batch publish latency (call to last
//! ack), and the ratio a/b. Then a short criterion run of both.
//!
//!   RELAY_TEST_NATS_URL=nats://127.0.0.1:4222 BENCH_N=5000 BENCH_BATCH=100 BENCH_ROUNDS=5 \
//!     cargo bench -p relay-sink-nats --bench publish

use std::time::{Duration, Instant};

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, context::Publish, stream};
use bytes::Bytes;
use criterion::{Criterion, Throughput};
use futures::stream::{FuturesOrdered, StreamExt};
use relay_sink::{Message, Sink};
use relay_sink_nats::{NatsSink, NatsSinkConfig};
use relay_testkit::bench::{env_usize, median, percentile};
use relay_testkit::{fixtures, nats_url, unique};

const MAX_IN_FLIGHT: usize = 256;

struct Raw {
    js: jetstream::Context,
}

/// A message as the raw client sends it, prepared before timing.
struct Prepared {
    subject: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Raw {
    async fn publish(&self, batch: &[Prepared]) -> usize {
        let mut pending = FuturesOrdered::new();
        let mut ok = 0;
        for p in batch {
            if pending.len() >= MAX_IN_FLIGHT {
                if let Some(Ok(_)) = pending.next().await {
                    ok += 1;
                }
            }
            let publish = Publish::build()
                .payload(p.body.clone())
                .headers(p.headers.clone());
            let ack = self
                .js
                .send_publish(p.subject.clone(), publish)
                .await
                .expect("send");
            pending.push_back(std::future::IntoFuture::into_future(ack));
        }
        while let Some(r) = pending.next().await {
            if r.is_ok() {
                ok += 1;
            }
        }
        ok
    }
}

fn prepare(sink: &NatsSink, msgs: &[Message]) -> Vec<Prepared> {
    msgs.iter()
        .map(|m| {
            let mut headers = HeaderMap::new();
            headers.insert(NATS_MESSAGE_ID, m.id());
            headers.insert("Content-Type", "application/cloudevents+json");
            headers.insert("ce-id", m.id());
            Prepared {
                subject: sink.subject_for(m),
                headers,
                body: m.json.clone(),
            }
        })
        .collect()
}

fn main() {
    let n = env_usize("BENCH_N", 5000);
    let batch = env_usize("BENCH_BATCH", 100).max(1);
    let rounds = env_usize("BENCH_ROUNDS", 5).max(1);
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    let u = unique();
    let prefix = format!("bench{u}");
    let stream_name = format!("BENCH_{u}");
    let (sink, raw) = rt.block_on(async {
        let client = async_nats::connect(nats_url()).await.expect("connect");
        let mut js = jetstream::new(client);
        js.set_timeout(Duration::from_secs(10));
        js.create_stream(stream::Config {
            name: stream_name.clone(),
            subjects: vec![format!("{prefix}.>")],
            storage: stream::StorageType::Memory,
            max_age: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .expect("stream");
        let mut cfg = NatsSinkConfig::new(nats_url());
        cfg.subject = format!("{prefix}.{{subject}}.{{type}}");
        cfg.deadletter_subject = format!("{prefix}.deadletter");
        cfg.max_in_flight = MAX_IN_FLIGHT;
        let sink = NatsSink::connect("bench", &cfg).await.expect("sink");
        (sink, Raw { js })
    });

    let mut sink_rates = Vec::new();
    let mut raw_rates = Vec::new();
    let mut sink_lat = Vec::new();
    let mut raw_lat = Vec::new();
    for round in 0..rounds {
        let a = fixtures::many_tagged(n, &format!("a{round}"));
        let b = prepare(&sink, &fixtures::many_tagged(n, &format!("b{round}")));
        rt.block_on(async {
            let start = Instant::now();
            for chunk in a.chunks(batch) {
                let t = Instant::now();
                let results = sink.publish(chunk).await;
                sink_lat.push(t.elapsed());
                assert!(results.iter().all(Result::is_ok), "sink publish failed");
            }
            sink_rates.push(n as f64 / start.elapsed().as_secs_f64());

            let start = Instant::now();
            for chunk in b.chunks(batch) {
                let t = Instant::now();
                let ok = raw.publish(chunk).await;
                raw_lat.push(t.elapsed());
                assert_eq!(ok, chunk.len(), "raw publish failed");
            }
            raw_rates.push(n as f64 / start.elapsed().as_secs_f64());
        });
    }
    sink_lat.sort();
    raw_lat.sort();
    let sink_rate = median(&mut sink_rates);
    let raw_rate = median(&mut raw_rates);
    println!("NATS JetStream publish, N={n} per round, batch={batch}, rounds={rounds}, max_in_flight={MAX_IN_FLIGHT}");
    println!("| path | events/s (median) | batch p50 | batch p99 |");
    println!("|---|---|---|---|");
    println!(
        "| (a) NatsSink::publish | {sink_rate:.0} | {:.2?} | {:.2?} |",
        percentile(&sink_lat, 0.5),
        percentile(&sink_lat, 0.99)
    );
    println!(
        "| (b) raw async-nats JetStream | {raw_rate:.0} | {:.2?} | {:.2?} |",
        percentile(&raw_lat, 0.5),
        percentile(&raw_lat, 0.99)
    );
    println!("ratio a/b (events/s): {:.3}", sink_rate / raw_rate);
    println!(
        "ratio b/a (batch p99 latency): {:.3}",
        percentile(&raw_lat, 0.99).as_secs_f64() / percentile(&sink_lat, 0.99).as_secs_f64()
    );

    // Criterion, short: one batch per iteration, fresh ids per iteration.
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut group = c.benchmark_group("nats_publish_batch");
    group.throughput(Throughput::Elements(batch as u64));
    let mut iter = 0u64;
    let (sink_ref, raw_ref) = (&sink, &raw);
    group.bench_function("sink", |bch| {
        bch.to_async(&rt).iter_batched(
            || {
                iter += 1;
                fixtures::many_tagged(batch, &format!("ca{iter}"))
            },
            |msgs| async move {
                let r = sink_ref.publish(&msgs).await;
                assert!(r.iter().all(Result::is_ok));
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.bench_function("raw", |bch| {
        bch.to_async(&rt).iter_batched(
            || {
                iter += 1;
                prepare(&sink, &fixtures::many_tagged(batch, &format!("cb{iter}")))
            },
            |prepared| async move {
                let ok = raw_ref.publish(&prepared).await;
                assert_eq!(ok, prepared.len());
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
    c.final_summary();

    rt.block_on(async {
        let _ = raw.js.delete_stream(&stream_name).await;
    });
}
