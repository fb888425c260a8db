//! The sink conformance suite (`relay_testkit::conformance`) against a real Kafka-protocol
//! broker (tansu, see `scripts/brokers`): each configuration's topics are its own,
//! `t<u>.x.activity.{type}` and `t<u>.x.activity.deadletter`, created by the sink.

mod common;

use std::time::Duration;

use rdkafka::consumer::Consumer;
use relay_sink::{HeaderStyle, Message, Payload, Template, WireMode};
use relay_sink_kafka::{KafkaSinkConfig, KafkaSinkType};
use relay_testkit::conformance::{Harness, Received};

struct Kafka;

impl Kafka {
    async fn new() -> Kafka {
        Kafka
    }
}

/// The configuration's topic prefix, `t<u>.`.
fn prefix_of(cfg: &KafkaSinkConfig) -> &str {
    cfg.topic.trim_end_matches("x.activity.{type}")
}

impl Harness for Kafka {
    type Type = KafkaSinkType;
    const STYLE: HeaderStyle = HeaderStyle::Kafka;
    /// Kafka keeps an order per partition, and each type has its topic.
    const ORDERED: bool = false;

    async fn config(&self, mode: WireMode, _max_in_flight: usize) -> KafkaSinkConfig {
        let prefix = format!("t{}.", relay_testkit::unique());
        let mut cfg = KafkaSinkConfig::new(relay_testkit::require_kafka());
        cfg.topic = format!("{prefix}x.activity.{{type}}");
        cfg.deadletter_topic = format!("{prefix}x.activity.deadletter");
        cfg.create_topics = true;
        cfg.message_timeout = Duration::from_secs(20);
        cfg.wire_mode = mode;
        cfg
    }

    fn unreachable(&self) -> KafkaSinkConfig {
        let mut cfg = KafkaSinkConfig::new(format!("127.0.0.1:{}", relay_testkit::free_port()));
        cfg.message_timeout = Duration::from_secs(5);
        cfg
    }

    fn destination(&self, cfg: &KafkaSinkConfig, message: &Message) -> String {
        match &message.payload {
            Payload::Event(e) => Template::parse(&cfg.topic).unwrap().render(e),
            Payload::DeadLetter(_) => cfg.deadletter_topic.clone(),
        }
    }

    /// Every topic of the configuration's prefix, read to an end marker.
    async fn read(&self, cfg: &KafkaSinkConfig, _n: usize) -> Vec<Received> {
        let bootstrap = relay_testkit::require_kafka();
        let metadata = common::consumer(&bootstrap)
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap();
        let topics: Vec<String> = metadata
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|t| t.starts_with(prefix_of(cfg)))
            .collect();
        let got =
            common::consume_all(&bootstrap, &topics, cfg.partitions, Duration::from_secs(60)).await;
        got.into_iter()
            .map(|c| Received {
                id: c.id(),
                content_type: c.header("content-type").map(str::to_owned),
                properties: vec![(
                    "key",
                    c.key
                        .as_deref()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .unwrap_or_default(),
                )],
                destination: c.topic,
                body: c.payload.into(),
                headers: c.headers,
            })
            .collect()
    }

    /// An event's key is rendered from `key` (`{subject}` by default) and, structured, it
    /// has one header; a dead letter has no key.
    fn check_record(&self, mode: WireMode, message: &Message, r: &Received) {
        match &message.payload {
            Payload::Event(e) => {
                assert_eq!(r.property("key"), Some(e.subject.as_str()));
                if mode == WireMode::Structured {
                    // content-type alone (an SDK takes any `ce_` header for binary mode).
                    assert_eq!(r.headers.len(), 1, "{:?}", r.headers);
                }
            }
            Payload::DeadLetter(_) => assert_eq!(r.property("key"), Some("")),
        }
    }
}

relay_testkit::conformance_tests!(Kafka::new);
