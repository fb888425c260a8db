//! The Kafka sink against a real Kafka-protocol broker (tansu, see `scripts/brokers`),
//! read back with a real librdkafka consumer.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use relay_sink::{Payload, PublishError, Reason, Sink, WireMode};
use relay_sink_kafka::{KafkaSink, KafkaSinkConfig, KafkaSinkError};
use relay_testkit::fixtures;

const LIMIT: Duration = Duration::from_secs(60);

/// A config whose topics are all unique to this test: `<prefix>x.activity.{type}`.
fn config(prefix: &str) -> KafkaSinkConfig {
    let mut cfg = KafkaSinkConfig::new(relay_testkit::require_kafka());
    cfg.topic = format!("{prefix}x.activity.{{type}}");
    cfg.deadletter_topic = format!("{prefix}x.activity.deadletter");
    cfg.create_topics = true;
    cfg.message_timeout = Duration::from_secs(20);
    cfg
}

async fn create_topic(name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", relay_testkit::require_kafka())
        .create()
        .unwrap();
    let t = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let r = admin
        .create_topics([&t], &AdminOptions::new())
        .await
        .unwrap();
    assert!(r[0].is_ok(), "{r:?}");
}

#[tokio::test]
async fn binary_mode_carries_attributes_in_headers() {
    let prefix = format!("t{}.", relay_testkit::unique());
    let mut cfg = config(&prefix);
    cfg.wire_mode = WireMode::Binary;
    cfg.key = "{actorid}-{targetid}".into();
    let sink = KafkaSink::connect("kafka-binary", &cfg).await.unwrap();
    let batch: Vec<_> = (0..5)
        .map(|i| fixtures::message(0, fixtures::envelope("like.create", "42", i)))
        .collect();
    assert!(sink.publish(&batch).await.iter().all(Result::is_ok));
    let topic = format!("{prefix}x.activity.like.create");
    let got = common::consume_all(
        &relay_testkit::require_kafka(),
        std::slice::from_ref(&topic),
        cfg.partitions,
        LIMIT,
    )
    .await;
    assert_eq!(got.len(), 5);
    let by_id = common::by_id(&got);
    for m in &batch {
        let Payload::Event(e) = &m.payload else {
            unreachable!()
        };
        let rec = &by_id[m.id()][0];
        let data: serde_json::Value = serde_json::from_slice(&rec.payload).unwrap();
        let full: serde_json::Value = serde_json::from_slice(&m.json).unwrap();
        assert_eq!(data, full["data"], "binary body is `data`");
        assert_eq!(
            rec.key.as_deref(),
            Some(&b"2244994945-_"[..]),
            "missing targetid renders _"
        );
        for (h, v) in [
            ("ce_specversion", "1.0"),
            ("ce_id", e.id.as_str()),
            ("ce_source", "/x/account-activity/webhook/test"),
            ("ce_type", "like.create"),
            ("ce_subject", "42"),
            ("ce_time", "2025-05-19T14:01:46Z"),
            ("ce_actorid", "2244994945"),
            ("ce_objectid", e.objectid.as_deref().unwrap()),
            ("ce_ingress", "webhook"),
            ("content-type", "application/json"),
        ] {
            assert_eq!(rec.header(h), Some(v), "header {h}");
        }
        assert_eq!(rec.header("ce_targetid"), None);
        assert_eq!(rec.topic, topic);
    }
}

#[tokio::test]
async fn missing_topics_without_create_topics() {
    let prefix = format!("t{}.", relay_testkit::unique());
    let mut cfg = config(&prefix);
    cfg.create_topics = false;

    // The dead-letter topic is fixed: its absence is an error at start.
    let err = KafkaSink::connect("kafka-nocreate", &cfg)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, KafkaSinkError::MissingTopic { topic, .. } if *topic == cfg.deadletter_topic),
        "{err}"
    );
    assert!(err.to_string().contains("create_topics"), "{err}");

    create_topic(&cfg.deadletter_topic, 1).await;
    let sink = KafkaSink::connect("kafka-nocreate", &cfg).await.unwrap();

    // A templated topic that does not exist: retryable, naming the topic, nothing sent.
    let topic = format!("{prefix}x.activity.follow.follow");
    let batch = vec![
        fixtures::message(0, fixtures::envelope("follow.follow", "7", 1)),
        fixtures::message(0, fixtures::envelope("follow.follow", "7", 2)),
    ];
    for r in sink.publish(&batch).await {
        match r {
            Err(PublishError::Refused { reason, detail }) => {
                assert_eq!(reason, Reason::UnknownTopic);
                assert!(detail.contains(&topic), "{detail}");
            }
            other => panic!("expected a refused unknown_topic error, got {other:?}"),
        }
    }

    // The operator creates it; the retry goes through.
    create_topic(&topic, 2).await;
    let results = sink.publish(&batch).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let got = common::consume_all(
        &relay_testkit::require_kafka(),
        std::slice::from_ref(&topic),
        2,
        LIMIT,
    )
    .await;
    assert_eq!(got.len(), 2, "the failed attempt sent nothing");
    let ids: BTreeSet<_> = got.iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), 2);
}

#[tokio::test]
async fn invalid_characters_in_values_are_replaced_in_topic_names() {
    let prefix = format!("t{}.", relay_testkit::unique());
    let mut cfg = config(&prefix);
    cfg.topic = format!("{prefix}{{subject}}.{{type}}");
    let sink = KafkaSink::connect("kafka-sanitize", &cfg).await.unwrap();
    let batch = vec![fixtures::message(
        0,
        fixtures::envelope("mute.mute", "a b/c:ü", 1),
    )];
    assert!(sink.publish(&batch).await[0].is_ok());
    let topic = format!("{prefix}a_b_c__.mute.mute");
    let got = common::consume_all(
        &relay_testkit::require_kafka(),
        std::slice::from_ref(&topic),
        cfg.partitions,
        LIMIT,
    )
    .await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].topic, topic);
    assert_eq!(
        got[0].key.as_deref(),
        Some("a b/c:ü".as_bytes()),
        "keys are not sanitized"
    );
}

#[tokio::test]
async fn unreachable_cluster_is_an_error_at_connect() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut cfg = KafkaSinkConfig::new(addr.to_string());
    cfg.message_timeout = Duration::from_secs(2);
    let err = KafkaSink::connect("kafka-down", &cfg).await.err().unwrap();
    assert!(matches!(err, KafkaSinkError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

/// Whether the cluster has `topic`, asked with a fresh client (not the sink's cache).
fn topic_exists(topic: &str) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", relay_testkit::require_kafka())
        .set("allow.auto.create.topics", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    md.topics()
        .iter()
        .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
}

#[tokio::test]
async fn types_outside_the_taxonomy_never_create_topics_unless_allowed() {
    let prefix = format!("t{}.", relay_testkit::unique());
    let cfg = config(&prefix);
    let sink = KafkaSink::connect("kafka-foreign", &cfg).await.unwrap();
    let made_up = "attacker.minted.type";
    let batch = vec![
        fixtures::message(0, fixtures::envelope(made_up, "7", 1)),
        fixtures::message(0, fixtures::envelope("follow.follow", "7", 2)),
    ];
    let results = sink.publish(&batch).await;
    match &results[0] {
        Err(PublishError::Permanent { reason, detail }) => {
            assert_eq!(*reason, Reason::UnknownTypeTopic);
            assert!(
                detail.contains("create_topics_for_unknown_types"),
                "{detail}"
            );
        }
        other => panic!("expected a permanent error (dead letter), got {other:?}"),
    }
    assert!(results[1].is_ok(), "a taxonomy type still gets its topic");
    assert!(!topic_exists(&format!("{prefix}x.activity.{made_up}")));
    assert!(topic_exists(&format!("{prefix}x.activity.follow.follow")));

    // The operator allows it.
    let mut cfg = config(&prefix);
    cfg.create_topics_for_unknown_types = true;
    let sink = KafkaSink::connect("kafka-foreign-allowed", &cfg)
        .await
        .unwrap();
    let results = sink.publish(&batch[..1]).await;
    assert!(results[0].is_ok(), "{results:?}");
    assert!(topic_exists(&format!("{prefix}x.activity.{made_up}")));
}
