//! Configuration: defaults, validation and secret redaction (no broker needed).

use std::time::Duration;

use relay_sink::WireMode;
use relay_sink_kafka::{classify, sanitize_topic, KafkaSinkConfig, KafkaSinkError};

fn parse(json: &str) -> Result<KafkaSinkConfig, serde_json::Error> {
    serde_json::from_str(json)
}

#[test]
fn defaults() {
    let c = parse(r#"{"bootstrap_servers":"k:9092"}"#).unwrap();
    assert_eq!(c.topic, "x.activity.{type}");
    assert_eq!(c.key, "{subject}");
    assert_eq!(c.deadletter_topic, "x.activity.deadletter");
    assert_eq!(c.wire_mode, WireMode::Structured);
    assert_eq!(c.compression, "lz4");
    assert_eq!(c.message_timeout, Duration::from_secs(30));
    assert_eq!(c.linger, Duration::from_millis(5));
    assert!(!c.create_topics);
    assert_eq!((c.partitions, c.replication_factor), (3, 1));
    c.validate("k").unwrap();

    let cc = c.client_config();
    assert_eq!(cc.get("enable.idempotence"), Some("true"));
    assert_eq!(cc.get("acks"), Some("all"));
    assert_eq!(cc.get("message.timeout.ms"), Some("30000"));
    assert_eq!(cc.get("linger.ms"), Some("5"));
    assert_eq!(cc.get("compression.type"), Some("lz4"));
    assert_eq!(cc.get("allow.auto.create.topics"), Some("false"));
}

#[test]
fn durations_binary_mode_and_properties_last() {
    let c = parse(
        r#"{"bootstrap_servers":"k:9092","message_timeout":"2m","linger":"20ms",
            "wire_mode":"binary","properties":{"acks":"1","linger.ms":"7"}}"#,
    )
    .unwrap();
    assert_eq!(c.message_timeout, Duration::from_secs(120));
    assert_eq!(c.wire_mode, WireMode::Binary);
    let cc = c.client_config();
    assert_eq!(cc.get("message.timeout.ms"), Some("120000"));
    assert_eq!(cc.get("acks"), Some("1"), "properties override");
    assert_eq!(cc.get("linger.ms"), Some("7"));
}

#[test]
fn unknown_fields_and_missing_address_are_rejected() {
    assert!(parse(r#"{"bootstrap_servers":"k:9092","topc":"x"}"#).is_err());
    // A missing address parses (the defaults live in one place) and validate() refuses it.
    let missing = parse(r#"{"topic":"x"}"#).unwrap();
    let err = missing.validate("k").unwrap_err().to_string();
    assert!(err.contains("bootstrap_servers is required"), "{err}");
}

#[test]
fn secrets_are_redacted_in_debug() {
    let c = parse(
        r#"{"bootstrap_servers":"k:9092","security_protocol":"sasl_ssl",
            "sasl_mechanism":"SCRAM-SHA-512","sasl_username":"relay",
            "sasl_password":"hunter2-secret",
            "properties":{"ssl.key.password":"pw-in-props","sasl.oauthbearer.client.secret":"s3",
                          "socket.keepalive.enable":"true"}}"#,
    )
    .unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(!dbg.contains("pw-in-props"), "{dbg}");
    assert!(!dbg.contains("\"s3\""), "{dbg}");
    assert!(dbg.contains("relay") && dbg.contains("<redacted>"), "{dbg}");
    assert!(dbg.contains("socket.keepalive.enable"), "{dbg}");
    // The password does reach librdkafka.
    assert_eq!(
        c.client_config().get("sasl.password"),
        Some("hunter2-secret")
    );
}

#[test]
fn invalid_configs_are_clear_errors() {
    let base = || KafkaSinkConfig::new("k:9092");
    let check = |c: KafkaSinkConfig, needle: &str| {
        let err = c.validate("s").unwrap_err();
        assert!(matches!(err, KafkaSinkError::Config { .. }));
        let msg = err.to_string();
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    };
    let mut c = base();
    c.topic = "x.{typ}".into();
    check(c, "typ");
    let mut c = base();
    c.topic = "x/activity.{type}".into();
    check(c, "x/activity.");
    let mut c = base();
    c.key = "{subject".into();
    check(c, "key");
    let mut c = base();
    c.deadletter_topic = "dead letters".into();
    check(c, "deadletter_topic");
    let mut c = base();
    c.topic = String::new();
    check(c, "topic is empty");
    let mut c = base();
    c.partitions = 0;
    check(c, "partitions");
    let mut c = base();
    c.message_timeout = Duration::ZERO;
    check(c, "message_timeout");
    let mut c = base();
    c.bootstrap_servers = " ".into();
    check(c, "bootstrap_servers");
    // An empty key template is allowed: records get no key.
    let mut c = base();
    c.key = String::new();
    c.validate("s").unwrap();
}

#[test]
fn topic_sanitizing() {
    assert_eq!(
        sanitize_topic("x.activity.post.create"),
        "x.activity.post.create"
    );
    assert_eq!(sanitize_topic("a b/c:ü"), "a_b_c__");
    assert_eq!(sanitize_topic(""), "_");
    assert_eq!(sanitize_topic(".."), "_");
    assert_eq!(sanitize_topic(&"a".repeat(300)).len(), 249);
}

#[test]
fn error_classification() {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as C};
    let p = |c| classify(&KafkaError::MessageProduction(c));
    assert!(p(C::MessageSizeTooLarge).is_permanent());
    assert_eq!(p(C::MessageSizeTooLarge).reason().as_str(), "too_large");
    assert!(p(C::InvalidTopic).is_permanent());
    for (code, reason) in [
        (C::MessageTimedOut, "timeout"),
        (C::QueueFull, "queue_full"),
        (C::AllBrokersDown, "broker_down"),
        (C::UnknownTopicOrPartition, "unknown_topic"),
        (C::NotEnoughReplicas, "not_enough_replicas"),
        (C::TopicAuthorizationFailed, "unauthorized"),
        (C::Fatal, "producer_fatal"),
    ] {
        let e = p(code);
        assert!(!e.is_permanent(), "{code:?}");
        assert_eq!(e.reason().as_str(), reason, "{code:?}");
    }
}
