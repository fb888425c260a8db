#![allow(dead_code)]
//! The Kafka sink tests' own helper: a real consumer (what every crate's tests share is in
//! `relay-testkit`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

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
        .set(
            "group.id",
            format!("relay-test-{}", relay_testkit::unique()),
        )
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
