//! RabbitMQ sink vs the raw lapin client, same run, same broker, same messages.
//!
//! (a) `RabbitMqSink::publish` in batches of `BENCH_BATCH`;
//! (b) lapin on a confirm-mode channel publishing the same bytes with the same routing keys
//!     and properties (persistent, mandatory, message_id, content_type, type, timestamp),
//!     awaiting every confirm with the same pipelining depth (256), batch by batch.
//!
//! Both publish to one topic exchange with an exclusive queue bound `#` (so mandatory
//! messages are routable), purged after each side. Rounds alternate (a) and (b), which one
//! goes first alternating too, so that noise on the shared machine hits both. Reported:
//! events/s (median over rounds), p50/p99 of the per-batch publish latency (call to last
//! confirm), and the ratio a/b. Then a short criterion run of both.
//!
//!   RELAY_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f BENCH_N=5000 BENCH_BATCH=100 \
//!     BENCH_ROUNDS=5 cargo bench -p relay-sink-rabbitmq --bench publish

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use futures::stream::{FuturesOrdered, StreamExt};
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use relay_sink::{Message, Payload, Sink};
use relay_sink_rabbitmq::{RabbitMqSink, RabbitMqSinkConfig};
use relay_testkit::bench::{env_usize, median, percentile};
use relay_testkit::{amqp_url, fixtures, unique};

const MAX_IN_FLIGHT: usize = 256;

struct Prepared {
    routing_key: String,
    props: BasicProperties,
    body: Bytes,
}

struct Raw {
    ch: Channel,
    exchange: String,
}

impl Raw {
    async fn publish(&self, batch: &[Prepared]) -> usize {
        let options = BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        };
        let mut pending = FuturesOrdered::new();
        let mut ok = 0;
        for p in batch {
            if pending.len() >= MAX_IN_FLIGHT {
                if let Some(Ok(Confirmation::Ack(None))) = pending.next().await {
                    ok += 1;
                }
            }
            let confirm = self
                .ch
                .basic_publish(
                    &self.exchange,
                    &p.routing_key,
                    options,
                    &p.body,
                    p.props.clone(),
                )
                .await
                .expect("basic_publish");
            pending.push_back(confirm);
        }
        while let Some(r) = pending.next().await {
            if let Ok(Confirmation::Ack(None)) = r {
                ok += 1;
            }
        }
        ok
    }
}

fn prepare(sink: &RabbitMqSink, msgs: &[Message]) -> Vec<Prepared> {
    msgs.iter()
        .map(|m| {
            let Payload::Event(env) = &m.payload else {
                unreachable!()
            };
            Prepared {
                routing_key: sink.routing_key_for(m),
                props: BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(ShortString::from(m.id()))
                    .with_content_type(ShortString::from("application/cloudevents+json"))
                    .with_type(ShortString::from(env.event_type.as_str()))
                    .with_timestamp(env.time.timestamp() as u64)
                    .with_app_id(ShortString::from("activity-relay")),
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

    let exchange = format!("bench.x.{}", unique());
    let (sink, raw, admin, queue, _conns) = rt.block_on(async {
        let admin_conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("connect");
        let admin = admin_conn.create_channel().await.expect("channel");
        admin
            .exchange_declare(
                &exchange,
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("exchange");
        let q = admin
            .queue_declare(
                "",
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("queue");
        let queue = q.name().as_str().to_owned();
        admin
            .queue_bind(
                &queue,
                &exchange,
                "#",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");

        let mut cfg = RabbitMqSinkConfig::new(amqp_url());
        cfg.exchange = exchange.clone();
        cfg.max_in_flight = MAX_IN_FLIGHT;
        let sink = RabbitMqSink::connect("bench", &cfg).await.expect("sink");

        let raw_conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("connect");
        let ch = raw_conn.create_channel().await.expect("channel");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm");
        let raw = Raw {
            ch,
            exchange: exchange.clone(),
        };
        (sink, raw, admin, queue, (admin_conn, raw_conn))
    });
    let purge = || async {
        admin
            .queue_purge(&queue, QueuePurgeOptions::default())
            .await
            .expect("purge");
    };

    let mut sink_rates = Vec::new();
    let mut raw_rates = Vec::new();
    let mut sink_lat = Vec::new();
    let mut raw_lat = Vec::new();
    for round in 0..rounds {
        let a = fixtures::many_tagged(n, &format!("a{round}"));
        let b = prepare(&sink, &fixtures::many_tagged(n, &format!("b{round}")));
        rt.block_on(async {
            // Alternate which side goes first, so that order effects cancel out.
            for side in [round % 2, 1 - round % 2] {
                if side == 0 {
                    let start = Instant::now();
                    for chunk in a.chunks(batch) {
                        let t = Instant::now();
                        let results = sink.publish(chunk).await;
                        sink_lat.push(t.elapsed());
                        assert!(results.iter().all(Result::is_ok), "sink publish failed");
                    }
                    sink_rates.push(n as f64 / start.elapsed().as_secs_f64());
                } else {
                    let start = Instant::now();
                    for chunk in b.chunks(batch) {
                        let t = Instant::now();
                        let ok = raw.publish(chunk).await;
                        raw_lat.push(t.elapsed());
                        assert_eq!(ok, chunk.len(), "raw publish failed");
                    }
                    raw_rates.push(n as f64 / start.elapsed().as_secs_f64());
                }
                purge().await;
            }
        });
    }
    sink_lat.sort();
    raw_lat.sort();
    let sink_rate = median(&mut sink_rates);
    let raw_rate = median(&mut raw_rates);
    println!("RabbitMQ publish (confirms, persistent, mandatory), N={n} per round, batch={batch}, rounds={rounds}, max_in_flight={MAX_IN_FLIGHT}");
    println!("| path | events/s (median) | batch p50 | batch p99 |");
    println!("|---|---|---|---|");
    println!(
        "| (a) RabbitMqSink::publish | {sink_rate:.0} | {:.2?} | {:.2?} |",
        percentile(&sink_lat, 0.5),
        percentile(&sink_lat, 0.99)
    );
    println!(
        "| (b) raw lapin, confirms | {raw_rate:.0} | {:.2?} | {:.2?} |",
        percentile(&raw_lat, 0.5),
        percentile(&raw_lat, 0.99)
    );
    println!("ratio a/b (events/s): {:.3}", sink_rate / raw_rate);
    println!(
        "ratio b/a (batch p99 latency): {:.3}",
        percentile(&raw_lat, 0.99).as_secs_f64() / percentile(&sink_lat, 0.99).as_secs_f64()
    );

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let mut group = c.benchmark_group("rabbitmq_publish_batch");
    group.throughput(Throughput::Elements(batch as u64));
    let (sink_ref, raw_ref) = (&sink, &raw);
    group.bench_function("sink", |bch| {
        bch.to_async(&rt).iter_batched(
            || fixtures::many_tagged(batch, "c"),
            |msgs| async move {
                let r = sink_ref.publish(&msgs).await;
                assert!(r.iter().all(Result::is_ok));
            },
            criterion::BatchSize::PerIteration,
        )
    });
    rt.block_on(purge());
    group.bench_function("raw", |bch| {
        bch.to_async(&rt).iter_batched(
            || prepare(sink_ref, &fixtures::many_tagged(batch, "c")),
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
        purge().await;
        let _ = admin
            .exchange_delete(&exchange, ExchangeDeleteOptions::default())
            .await;
        let _ = sink.close().await;
    });
}
