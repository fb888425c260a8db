//! x-emulator → relay webhook → Kafka (tansu), NATS JetStream and RabbitMQ → real consumers.
//!
//! Every fixture of every webhook format and a generated mix of every event type (with
//! X's duplicates: plain re-sends, DMs to both subscribed users, batches) go through the
//! real relay binary; each broker must then hold every event X delivered with a 2xx exactly
//! once, at the destination the default routing gives it.

mod support;

use std::time::Duration;

use support::*;
use x_emulator::{Emulator, Format, GeneratorConfig};

fn config(u: &str, kafka: &str) -> String {
    r#"
shutdown_timeout = "10s"

[spool]
dir = "{dir}/spool"
max_bytes = 268435456
segment_bytes = 8388608

[admin]
listen = "{admin}"

[log]
format = "json"
level = "info"

[dispatch]
batch_size = 128
initial_backoff = "50ms"
max_backoff = "2s"

[webhook]
listen = "{webhook}"

[[webhook.apps]]
name = "demo"
consumer_secrets = ["emulator-consumer-secret"]

"#
    .to_string()
        + &broker_sinks("e2e", u, kafka, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_format_reaches_every_broker_exactly_once() {
    let kafka = relay_testkit::kafka_bootstrap()
        .expect("RELAY_TEST_KAFKA_BOOTSTRAP is not set: `source scripts/brokers` first");
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    // The queue must exist before the relay publishes (mandatory publishes).
    let queue = AmqpQueue::bind(&format!("e2e.{u}")).await;
    let relay = Relay::start(tmp.path(), &config(&u, &kafka)).await;

    let emu = Emulator::start(scaled_x(0.01)).await.unwrap();
    let webhook = emu
        .register_webhook("demo", &relay.webhook_url("demo"))
        .await
        .expect("the relay passes X's CRC");
    assert!(webhook.valid);

    // Subscriptions for the fixtures' users and filters, and for every configured user.
    let mut bodies = fixture_bodies("aaa");
    bodies.extend(fixture_bodies("xaa"));
    subscribe_for(&emu, &webhook.id, &bodies).await;
    subscribe_users_in_both_formats(&emu, &webhook.id).await;

    // The fixtures as they are, then a generated mix of every kind in the webhook formats.
    let mut emitted: Vec<x_emulator::Emitted> =
        bodies.iter().map(|b| emu.emit(b.clone())).collect();
    let mut gen = GeneratorConfig {
        cycle: true,
        duplicate_rate: 0.2,
        batch_rate: 0.2,
        seed: Some(7),
        ..GeneratorConfig::default()
    };
    gen.formats.insert("aaa".into(), 1.0);
    gen.formats.insert("xaa".into(), 1.0);
    let generated = emu.generate(&gen, 300);
    assert!(generated.len() >= 300, "generated {}", generated.len());
    emitted.extend(generated);

    let sent = wait_deliveries_settled(&emu, &emitted, Duration::from_secs(120)).await;
    let expected = expected_from_deliveries(&sent);
    // Everything X sent was taken with a 2xx (nothing failed on the relay's side).
    let failed: Vec<u64> = sent
        .iter()
        .filter(|e| e.format != Format::Stream && !e.deliveries.is_empty())
        .filter(|e| {
            !e.deliveries
                .iter()
                .any(|d| d.outcome == x_emulator::AttemptOutcome::Delivered)
        })
        .map(|e| e.seq)
        .collect();
    assert!(
        failed.is_empty(),
        "deliveries never accepted: {failed:?}\n{}",
        relay.log()
    );
    // Every taxonomy type of the fixtures is in play, and X did send duplicates.
    let types: std::collections::BTreeSet<&str> =
        expected.values().map(|e| e.event_type.as_str()).collect();
    for t in [
        "post.create",
        "post.repost.create",
        "like.create",
        "follow.unfollow",
        "dm.sent",
        "dm.read",
        "profile.update.bio",
        "chat.received",
    ] {
        assert!(types.contains(t), "no {t} among {types:?}");
    }
    let delivered_bodies = sent
        .iter()
        .filter(|e| {
            e.deliveries
                .iter()
                .any(|d| d.outcome == x_emulator::AttemptOutcome::Delivered)
        })
        .count();
    let duplicates = relay.metric("activity_relay_duplicates_total", &[]).await;
    assert!(duplicates > 0.0, "X's duplicates were not seen as such");

    assert!(
        relay
            .wait_drained(&["kafka", "nats", "rabbitmq"], Duration::from_secs(120))
            .await,
        "sinks did not drain:\n{}",
        relay.log()
    );
    let quiet = Duration::from_secs(2);
    let max = Duration::from_secs(60);

    let got = nats_read_all(&format!("E2E_{u}"), expected.len(), quiet, max).await;
    assert_exactly_once("nats", &expected, &got, |e| {
        format!("e2e{u}.{}.{}", e.subject, e.event_type)
    });

    let got = queue.read_all(expected.len(), quiet, max).await;
    assert_exactly_once("rabbitmq", &expected, &got, |e| {
        format!("{}.{}", e.subject, e.event_type)
    });

    let prefix = format!("e2e{u}.");
    let got = tokio::task::spawn_blocking({
        let (kafka, prefix, n) = (kafka.clone(), prefix.clone(), expected.len());
        move || kafka_read_all(&kafka, &prefix, n, quiet, max)
    })
    .await
    .unwrap();
    assert_exactly_once("kafka", &expected, &got, |e| {
        format!("e2e{u}.{}", e.event_type)
    });
    for r in &got {
        assert_eq!(r.key, expected[r.id()].subject, "kafka key is the subject");
    }

    eprintln!(
        "{} bodies delivered by X, {} unique events, {} duplicates dropped",
        delivered_bodies,
        expected.len(),
        duplicates
    );
    emu.shutdown().await;
}
