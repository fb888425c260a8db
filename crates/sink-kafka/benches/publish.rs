//! KafkaSink publish throughput and latency against a raw rdkafka `FutureProducer` with the
//! same settings, on the same broker, in the same run.
//!
//! The same N envelopes (fixture events, repeated with distinct ids over 1000 subjects) go
//! (a) through `KafkaSink::publish` in batches of B, and (b) through a `FutureProducer`
//! built from the same librdkafka configuration (idempotent, acks=all, lz4, linger 5ms):
//! for each batch of B, every record is enqueued (`send_result`, same topic, key, body and
//! `ce_id` + `content-type` headers) and then every delivery report awaited. Both report
//! events/s and the p50/p99 latency of one batch (call → every record confirmed). Runs
//! alternate b a, a b, b a, … so that drift on a noisy machine hits both alike; the ratio is
//! taken from the summed times.
//!
//! Run (tansu or any Kafka; skipped with a message when the variable is unset):
//!   RELAY_TEST_KAFKA_BOOTSTRAP=127.0.0.1:9092 cargo bench -p relay-sink-kafka --bench publish
//! Knobs: BENCH_EVENTS (default 20000), BENCH_BATCH (500), BENCH_ROUNDS (4).

use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use relay_sink::{Message, Payload, Sink};
use relay_sink_kafka::{KafkaSink, KafkaSinkConfig};
use relay_testkit::bench::{env_usize, percentile};

fn messages(n: usize) -> Vec<Message> {
    let base = relay_testkit::fixtures::envelopes();
    (0..n)
        .map(|i| {
            let mut e = base[i % base.len()].clone();
            e.subject = format!("{}", 1_000_000 + i % 1000);
            e.id = format!("{}:{}:{i}", e.subject, e.event_type);
            Message::event(i as u64, 0, e)
        })
        .collect()
}

struct Run {
    total: Duration,
    batch_latencies: Vec<Duration>,
}

impl Run {
    fn events_per_sec(&self, n: usize) -> f64 {
        n as f64 / self.total.as_secs_f64()
    }
}

async fn run_sink(sink: &KafkaSink, msgs: &[Message], batch: usize) -> Run {
    let mut lat = Vec::new();
    let start = Instant::now();
    for chunk in msgs.chunks(batch) {
        let t = Instant::now();
        let r = sink.publish(chunk).await;
        lat.push(t.elapsed());
        let failed = r.iter().filter(|r| r.is_err()).count();
        assert_eq!(
            failed,
            0,
            "sink: {failed} records failed: {:?}",
            r.iter().find(|r| r.is_err())
        );
    }
    Run {
        total: start.elapsed(),
        batch_latencies: lat,
    }
}

async fn run_raw(producer: &FutureProducer, prefix: &str, msgs: &[Message], batch: usize) -> Run {
    let mut lat = Vec::new();
    let start = Instant::now();
    for chunk in msgs.chunks(batch) {
        let t = Instant::now();
        let mut futs = Vec::with_capacity(chunk.len());
        for m in chunk {
            let Payload::Event(e) = &m.payload else {
                unreachable!()
            };
            let topic = format!("{prefix}x.activity.{}", e.event_type);
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header {
                    key: "ce_id",
                    value: Some(e.id.as_str()),
                })
                .insert(Header {
                    key: "content-type",
                    value: Some("application/cloudevents+json"),
                });
            let mut record = FutureRecord::to(&topic)
                .key(e.subject.as_str())
                .payload(&m.json[..])
                .headers(headers);
            loop {
                match producer.send_result(record) {
                    Ok(f) => {
                        futs.push(f);
                        break;
                    }
                    Err((e, r)) => {
                        assert_eq!(
                            e.rdkafka_error_code(),
                            Some(rdkafka::error::RDKafkaErrorCode::QueueFull),
                            "raw: {e}"
                        );
                        record = r;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
            }
        }
        for r in futures::future::join_all(futs).await {
            assert!(matches!(r, Ok(Ok(_))), "raw: {r:?}");
        }
        lat.push(t.elapsed());
    }
    Run {
        total: start.elapsed(),
        batch_latencies: lat,
    }
}

fn summary(name: &str, runs: &[Run], n: usize) -> (Duration, Duration, Duration) {
    let total: Duration = runs.iter().map(|r| r.total).sum();
    let mut lat: Vec<Duration> = runs
        .iter()
        .flat_map(|r| r.batch_latencies.clone())
        .collect();
    lat.sort();
    let (p50, p99) = (percentile(&lat, 0.50), percentile(&lat, 0.99));
    let per_run: Vec<String> = runs
        .iter()
        .map(|r| format!("{:.0}", r.events_per_sec(n)))
        .collect();
    println!(
        "{name:<28} {:>9.0} events/s (runs: {})  batch p50 {:>7.1} ms  p99 {:>7.1} ms",
        (n * runs.len()) as f64 / total.as_secs_f64(),
        per_run.join(", "),
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
    );
    (total, p50, p99)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then just check it builds.
    if !std::env::args().any(|a| a == "--bench") {
        println!("publish bench: run with `cargo bench -p relay-sink-kafka --bench publish`");
        return;
    }
    let Ok(bootstrap) = std::env::var("RELAY_TEST_KAFKA_BOOTSTRAP") else {
        println!(
            "publish bench skipped: RELAY_TEST_KAFKA_BOOTSTRAP is not set (`source scripts/brokers`, or point it at a Kafka)"
        );
        return;
    };
    let n = env_usize("BENCH_EVENTS", 20_000);
    let batch = env_usize("BENCH_BATCH", 500).max(1);
    let rounds = env_usize("BENCH_ROUNDS", 4).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let prefix = format!("bench{stamp}.");
        let mut cfg = KafkaSinkConfig::new(&bootstrap);
        cfg.topic = format!("{prefix}x.activity.{{type}}");
        cfg.deadletter_topic = format!("{prefix}x.activity.deadletter");
        cfg.create_topics = true;
        let sink = KafkaSink::connect("bench", &cfg).await.expect("connect");
        let producer: FutureProducer = cfg.client_config().create().expect("raw producer");
        let msgs = messages(n);
        println!(
            "{n} events ({} distinct types, {:.0} B avg JSON), batches of {batch}, {rounds} rounds, broker {bootstrap}",
            {
                let mut t: Vec<&str> = msgs
                    .iter()
                    .filter_map(|m| match &m.payload {
                        Payload::Event(e) => Some(e.event_type.as_str()),
                        Payload::DeadLetter(_) => None,
                    })
                    .collect();
                t.sort();
                t.dedup();
                t.len()
            },
            msgs.iter().map(|m| m.json.len()).sum::<usize>() as f64 / n as f64
        );
        // Warm-up: creates every topic and opens every connection, for both.
        let warm = &msgs[..msgs.len().min(2000)];
        run_sink(&sink, warm, batch).await;
        run_raw(&producer, &prefix, warm, batch).await;

        let (mut a, mut b) = (Vec::new(), Vec::new());
        for round in 0..rounds {
            if round % 2 == 0 {
                b.push(run_raw(&producer, &prefix, &msgs, batch).await);
                a.push(run_sink(&sink, &msgs, batch).await);
            } else {
                a.push(run_sink(&sink, &msgs, batch).await);
                b.push(run_raw(&producer, &prefix, &msgs, batch).await);
            }
        }
        let (ta, _, p99a) = summary("(a) KafkaSink::publish", &a, n);
        let (tb, _, p99b) = summary("(b) raw FutureProducer", &b, n);
        println!(
            "ratio a/b throughput {:.3} (target >= 0.8); p99 batch latency a/b {:.3}",
            tb.as_secs_f64() / ta.as_secs_f64(),
            p99a.as_secs_f64() / p99b.as_secs_f64().max(1e-9),
        );
        sink.close().await.expect("close");
    });
}
