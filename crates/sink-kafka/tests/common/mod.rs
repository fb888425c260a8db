#![allow(dead_code)]
//! Shared helpers of the Kafka sink tests: test broker address, unique names, envelopes
//! from the shared fixtures, and a real consumer.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::TimeZone;
use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use relay_envelope::{Context, Envelope, EventData, IngressKind};
use relay_sink::Message;
use serde_json::value::RawValue;

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");

/// The Kafka-protocol test broker (tansu), started by `scripts/brokers`.
pub fn bootstrap() -> String {
    match std::env::var("RELAY_TEST_KAFKA_BOOTSTRAP") {
        Ok(v) if !v.trim().is_empty() => v,
        _ => panic!(
            "RELAY_TEST_KAFKA_BOOTSTRAP is not set: run `source scripts/brokers` first \
             (it starts tansu, the Kafka-protocol test broker, and sets it), or use scripts/test"
        ),
    }
}

/// A suffix no other test (or test run) uses.
pub fn unique() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}{:x}{}",
        std::process::id(),
        nanos & 0xffff_ffff_ffff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A message of `env` (the shared test helper, offset 0).
pub fn message(env: Envelope) -> Message {
    relay_e2e::fixtures::message(0, env)
}

/// A dead letter of `raw` (the shared test helper, offset 0).
pub fn dead_letter(raw: &[u8], reason: &str) -> Message {
    relay_e2e::fixtures::dead_letter(0, raw, reason)
}

/// An envelope built by hand (for when the fixtures are not what is under test).
pub fn envelope(event_type: &str, subject: &str, n: usize) -> Envelope {
    Envelope {
        specversion: "1.0".into(),
        id: format!("{subject}:{event_type}:{n}"),
        source: "/x/account-activity/webhook/test".into(),
        event_type: event_type.into(),
        subject: subject.into(),
        time: chrono::Utc
            .with_ymd_and_hms(2025, 5, 19, 14, 1, 46)
            .unwrap(),
        datacontenttype: "application/json".into(),
        actorid: Some("2244994945".into()),
        targetid: None,
        objectid: Some(format!("{n}")),
        ingress: IngressKind::Webhook,
        xformat: Some(relay_envelope::XFormat::Aaa),
        data: EventData {
            payload: RawValue::from_string(format!(
                r#"{{"n": {n}, "text": "caf\u00e9 \ud83d\ude00"}}"#
            ))
            .unwrap(),
            includes: None,
        },
    }
}

/// One envelope per fixture event: `relay_envelope::normalize` over every file of the
/// shared fixtures, checked against `expected-types.json`.
pub fn fixture_envelopes() -> Vec<Envelope> {
    let expected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&std::fs::read(format!("{FIXTURES}/expected-types.json")).unwrap())
            .unwrap();
    let mut out = Vec::new();
    for (file, types) in &expected {
        let body = std::fs::read(format!("{FIXTURES}/{file}")).unwrap();
        let ingress = if file.starts_with("stream/") {
            IngressKind::Stream
        } else {
            IngressKind::Webhook
        };
        let ctx = Context {
            ingress,
            source: "/x/account-activity/webhook/test".into(),
            received_at: chrono::Utc::now(),
            formats: relay_envelope::Formats::ALL,
        };
        let envs = relay_envelope::normalize(&body, &ctx)
            .unwrap_or_else(|e| panic!("normalize({file}): {e}"));
        let got: Vec<&str> = envs.iter().map(|e| e.event_type.as_str()).collect();
        let want: Vec<&str> = types
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap())
            .collect();
        assert_eq!(got, want, "{file}");
        out.extend(envs);
    }
    out
}

/// A record as a consumer saw it.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub topic: String,
    pub partition: i32,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Consumed {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The CloudEvents id: the `ce_id` header (binary mode, dead letters) or the body's
    /// `id` (structured mode carries no attribute header).
    pub fn id(&self) -> String {
        if let Some(id) = self.header("ce_id") {
            return id.to_owned();
        }
        serde_json::from_slice::<serde_json::Value>(&self.payload)
            .ok()
            .and_then(|v| v.get("id").and_then(|i| i.as_str()).map(str::to_owned))
            .unwrap_or_else(|| "<none>".to_owned())
    }
}

pub fn consumer(bootstrap: &str) -> StreamConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("relay-test-{}", unique()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("allow.auto.create.topics", "false")
        .create()
        .unwrap()
}

/// Everything in `topics`, exactly: writes an end marker into every partition (after the
/// records under test, which are confirmed already), then reads every partition from the
/// beginning (explicit assignment, no consumer group) up to its marker. Exact counts
/// without waiting "long enough" and without watermarks (tansu 0.6 reports the high
/// watermark of a partition as the last batch's base offset + 1, not the last offset + 1).
/// Fails after `limit` naming what is missing.
pub async fn consume_all(
    bootstrap: &str,
    topics: &[String],
    partitions: i32,
    limit: Duration,
) -> Vec<Consumed> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for t in topics {
        for p in 0..partitions {
            producer
                .send(
                    FutureRecord::<(), _>::to(t)
                        .partition(p)
                        .payload("end")
                        .headers(OwnedHeaders::new().insert(Header {
                            key: END_MARKER,
                            value: Some("1"),
                        })),
                    Duration::from_secs(10),
                )
                .await
                .unwrap_or_else(|(e, _)| panic!("end marker to {t}/{p}: {e}"));
        }
    }
    let consumer = consumer(bootstrap);
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        for p in 0..partitions {
            tpl.add_partition_offset(t, p, Offset::Beginning).unwrap();
        }
    }
    consumer.assign(&tpl).unwrap();
    let mut open: HashSet<(String, i32)> = topics
        .iter()
        .flat_map(|t| (0..partitions).map(move |p| (t.clone(), p)))
        .collect();
    let mut got = Vec::new();
    let deadline = Instant::now() + limit;
    let mut stream = consumer.stream();
    while !open.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, stream.next()).await;
        let Ok(Some(msg)) = next else {
            panic!(
                "partitions {open:?} not read to their end marker in {limit:?}; got {} records: {got:#?}",
                got.len()
            );
        };
        let msg = msg.unwrap();
        let headers: Vec<(String, String)> = msg
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let key = (msg.topic().to_owned(), msg.partition());
        if headers.iter().any(|(k, _)| k == END_MARKER) {
            open.remove(&key);
            continue;
        }
        assert!(
            open.contains(&key),
            "a record after the end marker of {key:?}: {headers:?}"
        );
        got.push(Consumed {
            topic: key.0,
            partition: key.1,
            key: msg.key().map(<[u8]>::to_vec),
            payload: msg.payload().unwrap_or_default().to_vec(),
            headers,
        });
    }
    got
}

const END_MARKER: &str = "relay-test-end";

/// Records by CloudEvents id.
pub fn by_id(records: &[Consumed]) -> HashMap<String, Vec<Consumed>> {
    let mut m: HashMap<String, Vec<Consumed>> = HashMap::new();
    for r in records {
        m.entry(r.id()).or_default().push(r.clone());
    }
    m
}
