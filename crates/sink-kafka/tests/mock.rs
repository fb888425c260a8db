//! Fault injection with librdkafka's mock cluster: a record counts as published only when
//! its delivery report succeeds, and failures are classified retryable or permanent.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use relay_sink::{Message, PublishError, Reason, Sink};
use relay_sink_kafka::{KafkaSink, KafkaSinkConfig};
use relay_testkit::fixtures;

const LIMIT: Duration = Duration::from_secs(60);

struct Setup {
    // Dropped last: the clients below talk to it.
    cluster: MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
    bootstrap: String,
    cfg: KafkaSinkConfig,
    topic: String,
}

fn setup() -> Setup {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let prefix = format!("m{}.", relay_testkit::unique());
    let topic = format!("{prefix}x.activity.post.create");
    let mut cfg = KafkaSinkConfig::new(&bootstrap);
    cfg.topic = format!("{prefix}x.activity.{{type}}");
    cfg.deadletter_topic = format!("{prefix}x.activity.deadletter");
    // The mock cluster has no CreateTopics: topics are made through its own API.
    cluster.create_topic(&topic, 1, 1).unwrap();
    cluster.create_topic(&cfg.deadletter_topic, 1, 1).unwrap();
    // Records fail after 3s instead of 30s, and reconnects are quick.
    cfg.message_timeout = Duration::from_secs(3);
    cfg.properties
        .insert("reconnect.backoff.max.ms".into(), "200".into());
    Setup {
        cluster,
        bootstrap,
        cfg,
        topic,
    }
}

fn batch(from: usize, n: usize) -> Vec<Message> {
    (from..from + n)
        .map(|i| {
            fixtures::message(
                0,
                fixtures::envelope("post.create", &format!("{}", i % 3), i),
            )
        })
        .collect()
}

async fn consumed_ids(s: &Setup) -> HashMap<String, usize> {
    let got = common::consume_all(&s.bootstrap, std::slice::from_ref(&s.topic), 1, LIMIT).await;
    let mut ids = HashMap::new();
    for r in &got {
        *ids.entry(r.id()).or_default() += 1;
    }
    ids
}

#[tokio::test]
async fn broker_down_gives_retryable_errors_and_nothing_is_lost() {
    let s = setup();
    let sink = KafkaSink::connect("mock", &s.cfg).await.unwrap();
    assert!(sink.ready().await);

    let first = batch(0, 10);
    let r = sink.publish(&first).await;
    assert!(r.iter().all(Result::is_ok), "{r:?}");

    s.cluster.broker_down(1).unwrap();
    let second = batch(10, 10);
    let r = sink.publish(&second).await;
    assert_eq!(r.len(), 10);
    for res in &r {
        match res {
            Err(e @ PublishError::Retryable { .. }) => {
                assert!(
                    matches!(e.reason(), Reason::Timeout | Reason::BrokerDown),
                    "reason {:?}: {e}",
                    e.reason()
                );
            }
            other => panic!("a record was not refused while the broker was down: {other:?}"),
        }
    }
    assert!(
        !sink.ready().await,
        "not ready while the only broker is down"
    );

    s.cluster.broker_up(1).unwrap();
    // The dispatcher retries what failed; do the same until everything is confirmed.
    let mut pending: Vec<Message> = second.clone();
    for attempt in 0.. {
        assert!(attempt < 20, "still failing after 20 retries: {pending:?}");
        let r = sink.publish(&pending).await;
        for res in &r {
            if let Err(e) = res {
                assert!(!e.is_permanent(), "{e}");
            }
        }
        pending = pending
            .into_iter()
            .zip(r)
            .filter(|(_, r)| r.is_err())
            .map(|(m, _)| m)
            .collect();
        if pending.is_empty() {
            break;
        }
    }
    assert!(sink.ready().await, "ready again after the broker came back");
    sink.close().await.unwrap();

    let ids = consumed_ids(&s).await;
    for m in &first {
        assert_eq!(
            ids.get(m.id()),
            Some(&1),
            "{} before the outage: once",
            m.id()
        );
    }
    for m in &second {
        // At least once: a record whose report timed out may have been written too.
        assert!(ids.get(m.id()).is_some_and(|n| *n >= 1), "{} lost", m.id());
    }
    drop(s.cluster);
}

#[tokio::test]
async fn retriable_broker_errors_are_retried_inside_the_producer_without_duplicates() {
    let s = setup();
    let sink = KafkaSink::connect("mock", &s.cfg).await.unwrap();
    s.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS; 3],
    );
    let msgs = batch(0, 5);
    let r = sink.publish(&msgs).await;
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    let ids = consumed_ids(&s).await;
    assert_eq!(ids.len(), 5);
    assert!(
        ids.values().all(|n| *n == 1),
        "idempotent producer: {ids:?}"
    );
}

#[tokio::test]
async fn non_retriable_broker_error_is_reported_not_confirmed() {
    let s = setup();
    let sink = KafkaSink::connect("mock", &s.cfg).await.unwrap();
    s.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let msgs = batch(0, 1);
    let r = sink.publish(&msgs).await;
    match &r[0] {
        Err(e @ PublishError::Retryable { .. }) => {
            assert_eq!(e.reason(), Reason::Unauthorized, "{e}")
        }
        other => panic!("{other:?}"),
    }
    // The error was injected once: the retry goes through (the sink refreshes the
    // topic's metadata first, which clears librdkafka's cached authorization failure).
    let r = sink.publish(&msgs).await;
    assert!(r[0].is_ok(), "{r:?}");
    let ids = consumed_ids(&s).await;
    assert_eq!(ids.get(msgs[0].id()), Some(&1));
}

#[tokio::test]
async fn too_large_is_permanent_and_does_not_hold_up_the_rest() {
    let mut s = setup();
    s.cfg
        .properties
        .insert("message.max.bytes".into(), "4096".into());
    let sink = KafkaSink::connect("mock", &s.cfg).await.unwrap();
    let mut msgs = batch(0, 3);
    let mut big = fixtures::envelope("post.create", "9", 99);
    big.data.payload = serde_json::value::RawValue::from_string(format!(
        "{{\"text\":\"{}\"}}",
        "x".repeat(10_000)
    ))
    .unwrap();
    msgs.insert(1, fixtures::message(0, big));
    let r = sink.publish(&msgs).await;
    assert!(r[0].is_ok() && r[2].is_ok() && r[3].is_ok(), "{r:?}");
    match &r[1] {
        Err(e @ PublishError::Permanent { .. }) => assert_eq!(e.reason(), Reason::TooLarge),
        other => panic!("{other:?}"),
    }
    let ids = consumed_ids(&s).await;
    assert_eq!(ids.len(), 3);
    assert!(!ids.contains_key(msgs[1].id()));
}

#[tokio::test]
async fn a_producer_hit_by_a_fatal_error_is_replaced() {
    let mut s = setup();
    // With the gapless guarantee, a record that fails after being sent makes the
    // idempotent producer fatally failed: it refuses everything from then on.
    s.cfg
        .properties
        .insert("enable.gapless.guarantee".into(), "true".into());
    let sink = KafkaSink::connect("mock", &s.cfg).await.unwrap();
    s.cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED],
    );
    let msgs = batch(0, 2);
    let r = sink.publish(&msgs).await;
    assert!(
        r.iter()
            .all(|r| matches!(r, Err(PublishError::Retryable { .. }))),
        "{r:?}"
    );
    // The sink replaced the failed producer: the retry goes through.
    let r = sink.publish(&msgs).await;
    assert!(r.iter().all(Result::is_ok), "{r:?}");
    let ids = consumed_ids(&s).await;
    for m in &msgs {
        assert_eq!(ids.get(m.id()), Some(&1), "{}", m.id());
    }
}
