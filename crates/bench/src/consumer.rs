//! Real consumers of each broker (and of the file sink's NDJSON files), recording the first
//! receipt time of every envelope id.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Deserialize;

use crate::BoxError;

/// What a consumer saw: the first receipt time of each envelope id, and every message.
#[derive(Default)]
pub struct Collector {
    seen: Mutex<HashMap<String, DateTime<Utc>>>,
    messages: AtomicU64,
    unparsable: AtomicU64,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

impl Collector {
    /// Records one message body (a structured CloudEvents envelope) received now.
    pub fn record(&self, body: &[u8]) {
        let now = Utc::now();
        self.messages.fetch_add(1, Ordering::Relaxed);
        match serde_json::from_slice::<IdOnly>(body) {
            Ok(m) => {
                let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                seen.entry(m.id).or_insert(now);
            }
            Err(_) => {
                self.unparsable.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Every message received so far (duplicates included).
    pub fn messages(&self) -> u64 {
        self.messages.load(Ordering::Relaxed)
    }

    /// Bodies that were not an envelope with an `id`.
    pub fn unparsable(&self) -> u64 {
        self.unparsable.load(Ordering::Relaxed)
    }

    /// First receipt time of an id.
    pub fn received_at(&self, id: &str) -> Option<DateTime<Utc>> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    /// How many of `ids` were received.
    pub fn count_of<'a>(&self, ids: impl Iterator<Item = &'a String>) -> usize {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        ids.filter(|id| seen.contains_key(id.as_str())).count()
    }
}

/// A running consumer; stops when dropped.
pub struct Consumer {
    pub collector: Arc<Collector>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// A polling thread (Kafka), joined on drop so that the client is destroyed before
    /// anything else happens.
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.task.take() {
            t.abort();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn new_parts() -> (Arc<Collector>, Arc<AtomicBool>) {
    (
        Arc::new(Collector::default()),
        Arc::new(AtomicBool::new(false)),
    )
}

/// A JetStream pull consumer (ephemeral, no acks) reading `stream` from its start.
pub async fn nats(url: &str, stream: &str) -> Result<Consumer, BoxError> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    let client = async_nats::connect(url)
        .await
        .map_err(|e| format!("NATS consumer: connecting to {url}: {e}"))?;
    let js = async_nats::jetstream::new(client);
    let st = js
        .get_stream(stream)
        .await
        .map_err(|e| format!("NATS consumer: stream {stream}: {e}"))?;
    let consumer = st
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            ..Default::default()
        })
        .await
        .map_err(|e| format!("NATS consumer: creating a consumer on {stream}: {e}"))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| format!("NATS consumer: pulling from {stream}: {e}"))?;
    let (collector, stop) = new_parts();
    let c = Arc::clone(&collector);
    let task = tokio::spawn(async move {
        while let Some(m) = messages.next().await {
            match m {
                Ok(m) => c.record(&m.payload),
                Err(e) => eprintln!("NATS consumer: {e}"),
            }
        }
    });
    Ok(Consumer {
        collector,
        stop,
        task: Some(task),
        thread: None,
    })
}

/// A RabbitMQ push consumer (`basic_consume`, auto-ack) on `queue`.
pub async fn rabbitmq(channel: lapin::Channel, queue: &str) -> Result<Consumer, BoxError> {
    use lapin::options::{BasicConsumeOptions, BasicQosOptions};
    use lapin::types::FieldTable;
    channel
        .basic_qos(1000, BasicQosOptions::default())
        .await
        .map_err(|e| format!("RabbitMQ consumer: qos: {e}"))?;
    let mut deliveries = channel
        .basic_consume(
            queue,
            "relay-bench",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("RabbitMQ consumer: consuming {queue}: {e}"))?;
    let (collector, stop) = new_parts();
    let c = Arc::clone(&collector);
    let task = tokio::spawn(async move {
        let _channel = channel;
        while let Some(d) = deliveries.next().await {
            match d {
                Ok(d) => c.record(&d.data),
                Err(e) => {
                    eprintln!("RabbitMQ consumer: {e}");
                    return;
                }
            }
        }
    });
    Ok(Consumer {
        collector,
        stop,
        task: Some(task),
        thread: None,
    })
}

/// A Kafka consumer assigned to partition 0 of `topic` from the beginning (the topic must
/// exist), polling on a blocking thread.
pub fn kafka(bootstrap: &str, topic: &str, group: &str) -> Result<Consumer, BoxError> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .map_err(|e| format!("Kafka consumer: {e}"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .map_err(|e| format!("Kafka consumer: partition of {topic}: {e}"))?;
    consumer
        .assign(&tpl)
        .map_err(|e| format!("Kafka consumer: assigning {topic}: {e}"))?;
    let (collector, stop) = new_parts();
    let (c, s) = (Arc::clone(&collector), Arc::clone(&stop));
    let thread = std::thread::Builder::new()
        .name("kafka-consumer".into())
        .spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => c.record(m.payload().unwrap_or_default()),
                    Some(Err(e)) => eprintln!("Kafka consumer: {e}"),
                    None => {}
                }
            }
            let _ = consumer.unassign();
        })
        .map_err(|e| format!("Kafka consumer: starting its thread: {e}"))?;
    Ok(Consumer {
        collector,
        stop,
        task: None,
        thread: Some(thread),
    })
}

/// Tails every `*.ndjson` file in `dir` (polling every 20 ms), one envelope per line.
pub fn files(dir: &Path) -> Consumer {
    let (collector, stop) = new_parts();
    let (c, s) = (Arc::clone(&collector), Arc::clone(&stop));
    let dir = dir.to_path_buf();
    let task = tokio::spawn(async move {
        let mut offsets: HashMap<PathBuf, u64> = HashMap::new();
        while !s.load(Ordering::Relaxed) {
            tail_once(&dir, &mut offsets, &c);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    Consumer {
        collector,
        stop,
        task: Some(task),
        thread: None,
    }
}

fn tail_once(dir: &Path, offsets: &mut HashMap<PathBuf, u64>, c: &Collector) {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .collect();
    paths.sort();
    for p in paths {
        let off = offsets.entry(p.clone()).or_insert(0);
        let Ok(mut f) = std::fs::File::open(&p) else {
            continue;
        };
        if f.seek(SeekFrom::Start(*off)).is_err() {
            continue;
        }
        let mut buf = Vec::new();
        if f.read_to_end(&mut buf).is_err() {
            continue;
        }
        // Only complete lines; a partial last line is read again next time.
        let Some(end) = buf.iter().rposition(|b| *b == b'\n') else {
            continue;
        };
        for line in buf[..end].split(|b| *b == b'\n') {
            if !line.is_empty() {
                c.record(line);
            }
        }
        *off += end as u64 + 1;
    }
}
