//! Per-sink setup (destinations with run-unique names, the relay's `[[sinks]]` table, a
//! consumer), the raw-client baseline, and cleanup.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::future::join_all;

use crate::consumer::{self, Consumer};
use crate::BoxError;

/// Records per publish window in the baseline: the relay's default `dispatch.batch_size`
/// (and the NATS/RabbitMQ sinks' default `max_in_flight`).
pub const WINDOW: usize = 256;

/// The sink under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkKind {
    Nats,
    Rabbitmq,
    Kafka,
    File,
}

impl SinkKind {
    pub fn name(self) -> &'static str {
        match self {
            SinkKind::Nats => "nats",
            SinkKind::Rabbitmq => "rabbitmq",
            SinkKind::Kafka => "kafka",
            SinkKind::File => "file",
        }
    }

    /// What the baseline does, in words (for the report).
    pub fn baseline_desc(self) -> &'static str {
        match self {
            SinkKind::Nats => "async-nats JetStream publish (Nats-Msg-Id), every ack awaited, 256 in flight; pull consumer",
            SinkKind::Rabbitmq => "lapin, publisher confirms, persistent, mandatory, durable queue, 256 in flight; basic_consume consumer",
            SinkKind::Kafka => "rdkafka FutureProducer, enable.idempotence, acks=all, lz4, linger 5 ms, 256 in flight; assigned consumer",
            SinkKind::File => "write NDJSON lines + fsync per batch of 256; tailing reader",
        }
    }
}

/// Broker endpoints.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub nats: String,
    pub amqp: String,
    pub kafka: Option<String>,
}

/// One message of the baseline: destination (subject / routing key / topic key), id, body.
pub struct RawMessage {
    pub subject: String,
    pub event_type: String,
    pub id: String,
    pub body: Vec<u8>,
}

/// What the baseline measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BaselineResult {
    pub messages: usize,
    pub bytes: usize,
    /// Time until every publish was confirmed.
    pub publish_secs: f64,
    /// Time until the consumer had every message.
    pub all_received_secs: f64,
    pub received: usize,
    /// messages / all_received_secs.
    pub events_per_sec: f64,
}

/// The destinations of one run.
pub struct Setup {
    pub kind: SinkKind,
    pub unique: String,
    pub dir: PathBuf,
    pub ep: Endpoints,
    amqp: Option<lapin::Connection>,
}

fn relay_stream(u: &str) -> String {
    format!("BENCH_{u}")
}
fn raw_stream(u: &str) -> String {
    format!("BENCHRAW_{u}")
}

impl Setup {
    /// Creates the relay's destination (and the baseline's) so that a consumer can attach
    /// before anything is published.
    pub async fn prepare(
        kind: SinkKind,
        unique: &str,
        dir: &Path,
        ep: Endpoints,
    ) -> Result<Setup, BoxError> {
        let mut setup = Setup {
            kind,
            unique: unique.to_owned(),
            dir: dir.to_path_buf(),
            ep,
            amqp: None,
        };
        let u = unique;
        match kind {
            SinkKind::Nats => {
                let js = setup.jetstream().await?;
                for (name, prefix) in [
                    (relay_stream(u), format!("bench{u}")),
                    (raw_stream(u), format!("benchraw{u}")),
                ] {
                    js.create_stream(async_nats::jetstream::stream::Config {
                        name: name.clone(),
                        subjects: vec![format!("{prefix}.>")],
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| format!("NATS: creating stream {name}: {e}"))?;
                }
            }
            SinkKind::Rabbitmq => {
                let conn = lapin::Connection::connect(
                    &setup.ep.amqp,
                    lapin::ConnectionProperties::default(),
                )
                .await
                .map_err(|e| format!("RabbitMQ: connecting to {}: {e}", setup.ep.amqp))?;
                let ch = conn
                    .create_channel()
                    .await
                    .map_err(|e| format!("RabbitMQ: channel: {e}"))?;
                for ex in [format!("bench.{u}"), format!("benchraw.{u}")] {
                    declare_bound_queue(&ch, &ex).await?;
                }
                setup.amqp = Some(conn);
            }
            SinkKind::Kafka => {
                let bootstrap = setup.kafka_bootstrap()?;
                create_topics(
                    &bootstrap,
                    &[
                        format!("bench{u}"),
                        format!("bench{u}.deadletter"),
                        format!("benchraw{u}"),
                    ],
                )
                .await?;
            }
            SinkKind::File => {
                for d in ["out", "raw"] {
                    std::fs::create_dir_all(dir.join(d))
                        .map_err(|e| format!("creating {}: {e}", dir.join(d).display()))?;
                }
            }
        }
        Ok(setup)
    }

    fn kafka_bootstrap(&self) -> Result<String, BoxError> {
        self.ep.kafka.clone().ok_or_else(|| {
            "--sink kafka needs RELAY_TEST_KAFKA_BOOTSTRAP (or --kafka-bootstrap): \
             `source scripts/brokers` starts tansu and sets it"
                .into()
        })
    }

    async fn jetstream(&self) -> Result<async_nats::jetstream::Context, BoxError> {
        let client = async_nats::connect(&self.ep.nats)
            .await
            .map_err(|e| format!("NATS: connecting to {}: {e}", self.ep.nats))?;
        Ok(async_nats::jetstream::new(client))
    }

    /// The relay's `[[sinks]]` table for this sink.
    pub fn sink_toml(&self) -> String {
        let u = &self.unique;
        match self.kind {
            SinkKind::Nats => format!(
                "[[sinks]]\nname = \"nats\"\ntype = \"nats\"\nurl = \"{}\"\n\
                 subject = \"bench{u}.{{subject}}.{{type}}\"\n\
                 deadletter_subject = \"bench{u}.deadletter\"\n",
                self.ep.nats
            ),
            SinkKind::Rabbitmq => format!(
                "[[sinks]]\nname = \"rabbitmq\"\ntype = \"rabbitmq\"\nurl = \"{}\"\n\
                 exchange = \"bench.{u}\"\nrouting_key = \"{{subject}}.{{type}}\"\n\
                 deadletter_routing_key = \"deadletter\"\n",
                self.ep.amqp
            ),
            SinkKind::Kafka => format!(
                "[[sinks]]\nname = \"kafka\"\ntype = \"kafka\"\nbootstrap_servers = \"{}\"\n\
                 topic = \"bench{u}\"\nkey = \"{{subject}}\"\n\
                 deadletter_topic = \"bench{u}.deadletter\"\n",
                self.ep.kafka.as_deref().unwrap_or_default()
            ),
            SinkKind::File => format!(
                "[[sinks]]\nname = \"file\"\ntype = \"file\"\npath = \"{}\"\nfsync = true\n",
                self.dir.join("out").display()
            ),
        }
    }

    /// A consumer of what the relay publishes (`raw = false`) or of the baseline's
    /// destination (`raw = true`).
    pub async fn consumer(&self, raw: bool) -> Result<Consumer, BoxError> {
        let u = &self.unique;
        match self.kind {
            SinkKind::Nats => {
                let stream = if raw { raw_stream(u) } else { relay_stream(u) };
                consumer::nats(&self.ep.nats, &stream).await
            }
            SinkKind::Rabbitmq => {
                let conn = self.amqp.as_ref().ok_or("RabbitMQ: not connected")?;
                let ch = conn
                    .create_channel()
                    .await
                    .map_err(|e| format!("RabbitMQ: channel: {e}"))?;
                let ex = if raw {
                    format!("benchraw.{u}")
                } else {
                    format!("bench.{u}")
                };
                consumer::rabbitmq(ch, &format!("{ex}.all")).await
            }
            SinkKind::Kafka => {
                let topic = if raw {
                    format!("benchraw{u}")
                } else {
                    format!("bench{u}")
                };
                consumer::kafka(&self.kafka_bootstrap()?, &topic, &format!("{topic}-reader"))
            }
            SinkKind::File => Ok(consumer::files(&self.dir.join(if raw {
                "raw"
            } else {
                "out"
            }))),
        }
    }

    /// Publishes `msgs` with the broker's raw client as fast as it can (windows of
    /// [`WINDOW`]) while a consumer reads them; bounded by `max`.
    pub async fn baseline(
        &self,
        msgs: &[RawMessage],
        max: Duration,
    ) -> Result<BaselineResult, BoxError> {
        let consumer = self.consumer(true).await?;
        let bytes: usize = msgs.iter().map(|m| m.body.len()).sum();
        let t0 = Instant::now();
        match self.kind {
            SinkKind::Nats => self.raw_nats(msgs).await?,
            SinkKind::Rabbitmq => self.raw_rabbitmq(msgs).await?,
            SinkKind::Kafka => self.raw_kafka(msgs).await?,
            SinkKind::File => self.raw_file(msgs)?,
        }
        let publish_secs = t0.elapsed().as_secs_f64();
        let deadline = t0 + max;
        let ids: Vec<String> = msgs.iter().map(|m| m.id.clone()).collect();
        let received = loop {
            let n = consumer.collector.count_of(ids.iter());
            if n >= ids.len() || Instant::now() > deadline {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        let all_received_secs = t0.elapsed().as_secs_f64();
        Ok(BaselineResult {
            messages: msgs.len(),
            bytes,
            publish_secs,
            all_received_secs,
            received,
            events_per_sec: received as f64 / all_received_secs.max(1e-9),
        })
    }

    /// The baseline's raw client: async-nats JetStream publishes, every ack awaited, a window at a time.
    async fn raw_nats(&self, msgs: &[RawMessage]) -> Result<(), BoxError> {
        let u = &self.unique;
        let js = self.jetstream().await?;
        for chunk in msgs.chunks(WINDOW) {
            let mut acks = Vec::with_capacity(chunk.len());
            for m in chunk {
                let mut h = async_nats::HeaderMap::new();
                h.insert("Nats-Msg-Id", m.id.as_str());
                let subject = format!("benchraw{u}.{}.{}", m.subject, m.event_type);
                let ack = js
                    .publish_with_headers(subject, h, m.body.clone().into())
                    .await
                    .map_err(|e| format!("NATS baseline: publish: {e}"))?;
                acks.push(ack);
            }
            for r in join_all(acks.into_iter().map(std::future::IntoFuture::into_future)).await {
                r.map_err(|e| format!("NATS baseline: ack: {e}"))?;
            }
        }
        Ok(())
    }

    /// The baseline's raw client: lapin publishes with confirms, a window at a time.
    async fn raw_rabbitmq(&self, msgs: &[RawMessage]) -> Result<(), BoxError> {
        let u = &self.unique;
        use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
        use lapin::BasicProperties;
        let conn = self.amqp.as_ref().ok_or("RabbitMQ: not connected")?;
        let ch = conn
            .create_channel()
            .await
            .map_err(|e| format!("RabbitMQ baseline: channel: {e}"))?;
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("RabbitMQ baseline: confirm_select: {e}"))?;
        let ex = format!("benchraw.{u}");
        for chunk in msgs.chunks(WINDOW) {
            let mut confirms = Vec::with_capacity(chunk.len());
            for m in chunk {
                let props = BasicProperties::default()
                    .with_delivery_mode(2)
                    .with_message_id(m.id.clone().into())
                    .with_content_type("application/cloudevents+json".into());
                let c = ch
                    .basic_publish(
                        &ex,
                        &format!("{}.{}", m.subject, m.event_type),
                        BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &m.body,
                        props,
                    )
                    .await
                    .map_err(|e| format!("RabbitMQ baseline: publish: {e}"))?;
                confirms.push(c);
            }
            for c in join_all(confirms).await {
                let c = c.map_err(|e| format!("RabbitMQ baseline: confirm: {e}"))?;
                if !c.is_ack() {
                    return Err("RabbitMQ baseline: a publish was nacked".into());
                }
            }
        }
        Ok(())
    }

    /// The baseline's raw client: an rdkafka producer's sends, a window at a time.
    async fn raw_kafka(&self, msgs: &[RawMessage]) -> Result<(), BoxError> {
        let u = &self.unique;
        use rdkafka::config::ClientConfig;
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", self.kafka_bootstrap()?)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "5")
            .create()
            .map_err(|e| format!("Kafka baseline: producer: {e}"))?;
        let topic = format!("benchraw{u}");
        for chunk in msgs.chunks(WINDOW) {
            let sends = chunk.iter().map(|m| {
                producer.send(
                    FutureRecord::to(&topic).key(&m.subject).payload(&m.body),
                    Duration::from_secs(30),
                )
            });
            for r in join_all(sends).await {
                r.map_err(|(e, _)| format!("Kafka baseline: delivery: {e}"))?;
            }
        }
        Ok(())
    }

    /// The baseline's raw client: NDJSON lines, an fsync per window.
    fn raw_file(&self, msgs: &[RawMessage]) -> Result<(), BoxError> {
        use std::io::Write;
        let path = self.dir.join("raw").join("raw.ndjson");
        let file = std::fs::File::create(&path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        let mut w = std::io::BufWriter::new(file);
        for chunk in msgs.chunks(WINDOW) {
            for m in chunk {
                w.write_all(&m.body)
                    .and_then(|_| w.write_all(b"\n"))
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
            }
            w.flush()
                .and_then(|_| w.get_ref().sync_data())
                .map_err(|e| format!("fsync {}: {e}", path.display()))?;
        }
        Ok(())
    }

    /// Deletes the run's streams, queues, exchanges and topics (best effort).
    pub async fn cleanup(&self) {
        let u = &self.unique;
        match self.kind {
            SinkKind::Nats => {
                if let Ok(js) = self.jetstream().await {
                    for s in [relay_stream(u), raw_stream(u)] {
                        let _ = js.delete_stream(&s).await;
                    }
                }
            }
            SinkKind::Rabbitmq => {
                use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
                if let Some(conn) = &self.amqp {
                    if let Ok(ch) = conn.create_channel().await {
                        for ex in [format!("bench.{u}"), format!("benchraw.{u}")] {
                            let _ = ch
                                .queue_delete(&format!("{ex}.all"), QueueDeleteOptions::default())
                                .await;
                            let _ = ch
                                .exchange_delete(&ex, ExchangeDeleteOptions::default())
                                .await;
                        }
                    }
                }
            }
            SinkKind::Kafka => {
                use rdkafka::admin::{AdminClient, AdminOptions};
                use rdkafka::client::DefaultClientContext;
                use rdkafka::config::ClientConfig;
                if let Some(b) = &self.ep.kafka {
                    let admin: Result<AdminClient<DefaultClientContext>, _> =
                        ClientConfig::new().set("bootstrap.servers", b).create();
                    if let Ok(admin) = admin {
                        let names = [
                            format!("bench{u}"),
                            format!("bench{u}.deadletter"),
                            format!("benchraw{u}"),
                        ];
                        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                        let _ = admin.delete_topics(&refs, &AdminOptions::new()).await;
                    }
                }
            }
            SinkKind::File => {}
        }
    }
}

async fn declare_bound_queue(ch: &lapin::Channel, exchange: &str) -> Result<(), BoxError> {
    use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;
    ch.exchange_declare(
        exchange,
        lapin::ExchangeKind::Topic,
        ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .map_err(|e| format!("RabbitMQ: declaring exchange {exchange}: {e}"))?;
    let queue = format!("{exchange}.all");
    ch.queue_declare(
        &queue,
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .map_err(|e| format!("RabbitMQ: declaring queue {queue}: {e}"))?;
    ch.queue_bind(
        &queue,
        exchange,
        "#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .map_err(|e| format!("RabbitMQ: binding {queue}: {e}"))?;
    Ok(())
}

async fn create_topics(bootstrap: &str, names: &[String]) -> Result<(), BoxError> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("Kafka admin: {e}"))?;
    let topics: Vec<NewTopic> = names
        .iter()
        .map(|n| NewTopic::new(n, 1, TopicReplication::Fixed(1)))
        .collect();
    let results = admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .map_err(|e| format!("Kafka: creating topics on {bootstrap}: {e}"))?;
    for r in results {
        r.map_err(|(t, e)| format!("Kafka: creating topic {t}: {e}"))?;
    }
    Ok(())
}
