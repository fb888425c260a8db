//! The Kafka sink's service: the idempotent producer (replaced after a fatal error), its
//! health, topics checked and created on first use, one record per message and its
//! delivery report; the batch results are [`relay_sink::driver`]'s.

use super::*;

// ---------------------------------------------------------------------------------------
// Client context and health
// ---------------------------------------------------------------------------------------

#[derive(Default)]
struct Health {
    /// When the broker last answered (metadata or delivery), ms since the Unix epoch;
    /// 0 = never, or all brokers reported down since.
    last_ok_ms: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Health {
    fn ok(&self) {
        self.last_ok_ms.store(now_ms(), Ordering::Relaxed);
    }
    fn down(&self) {
        self.last_ok_ms.store(0, Ordering::Relaxed);
    }
    fn is_ready(&self) -> bool {
        let last = self.last_ok_ms.load(Ordering::Relaxed);
        last != 0 && now_ms().saturating_sub(last) <= READY_WINDOW.as_millis() as u64
    }
}

/// Routes librdkafka's logs and errors to `tracing` and tracks broker health.
struct SinkContext {
    sink: String,
    health: Arc<Health>,
}

impl ClientContext for SinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let sink = self.sink.as_str();
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(sink, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(sink, fac, "librdkafka: {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(sink, fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(sink, fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.health.down();
        }
        tracing::warn!(sink = %self.sink, error = %error, "kafka client error: {reason}");
    }
}

type Producer_ = FutureProducer<SinkContext>;

// ---------------------------------------------------------------------------------------
// The sink
// ---------------------------------------------------------------------------------------

/// The Kafka sink. See the crate docs.
pub struct KafkaSink {
    inner: Arc<Inner>,
    probe: tokio::task::JoinHandle<()>,
}

struct Inner {
    name: String,
    routing: Routing,
    client_config: ClientConfig,
    producer: RwLock<Producer_>,
    admin: Option<AdminClient<SinkContext>>,
    health: Arc<Health>,
    /// Topics known to exist.
    known_topics: Mutex<HashSet<String>>,
    partitions: i32,
    replication_factor: i32,
    message_timeout: Duration,
    create_for_unknown_types: bool,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("name", &self.inner.name)
            .finish()
    }
}

impl Drop for KafkaSink {
    fn drop(&mut self) {
        self.probe.abort();
    }
}

/// What the metadata says about one topic.
enum TopicState {
    Exists,
    Missing,
    /// Some other error, or no partitions yet (e.g. just created, leader election).
    Unsettled(String),
}

fn topic_state(md: &Metadata, topic: &str) -> TopicState {
    let Some(t) = md.topics().iter().find(|t| t.name() == topic) else {
        return TopicState::Missing;
    };
    match t.error().map(RDKafkaErrorCode::from) {
        None if !t.partitions().is_empty() => TopicState::Exists,
        None => TopicState::Unsettled("no partitions".into()),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            TopicState::Missing
        }
        Some(code) => TopicState::Unsettled(code.to_string()),
    }
}

impl KafkaSink {
    /// Creates the producer, checks that the cluster answers, and makes sure the
    /// dead-letter topic (and a constant topic) exists. See the crate docs.
    pub async fn connect(name: &str, cfg: &KafkaSinkConfig) -> Result<KafkaSink, KafkaSinkError> {
        let routing = cfg.routing(name)?;
        let client_config = cfg.client_config();
        let health = Arc::new(Health::default());
        let producer = create_producer(name, &client_config, &health)?;
        let admin = if cfg.create_topics {
            let ctx = SinkContext {
                sink: name.to_owned(),
                health: Arc::clone(&health),
            };
            Some(
                client_config
                    .create_with_context::<_, AdminClient<SinkContext>>(ctx)
                    .map_err(|source| KafkaSinkError::Client {
                        sink: name.to_owned(),
                        source: Box::new(source),
                    })?,
            )
        } else {
            None
        };
        let inner = Arc::new(Inner {
            name: name.to_owned(),
            routing,
            client_config,
            producer: RwLock::new(producer),
            admin,
            health,
            known_topics: Mutex::new(HashSet::new()),
            partitions: cfg.partitions,
            replication_factor: cfg.replication_factor,
            message_timeout: cfg.message_timeout,
            create_for_unknown_types: cfg.create_topics_for_unknown_types,
        });

        let timeout = cfg.message_timeout.min(METADATA_TIMEOUT);
        let md =
            inner
                .metadata(None, timeout)
                .await
                .map_err(|source| KafkaSinkError::Unreachable {
                    sink: name.to_owned(),
                    bootstrap: cfg.bootstrap_servers.clone(),
                    source: Box::new(source),
                })?;
        {
            let mut known = inner.known_topics.lock();
            for t in md.topics() {
                if t.error().is_none() && !t.partitions().is_empty() {
                    known.insert(t.name().to_owned());
                }
            }
        }
        let mut fixed = vec![inner.routing.deadletter_topic.clone()];
        if inner.routing.topic.is_constant() {
            fixed.push(inner.routing.topic.as_str().to_owned());
        }
        for topic in fixed {
            if inner.known_topics.lock().contains(&topic) {
                continue;
            }
            if let Err(e) = inner.ensure_topic(&topic, true).await {
                return Err(match e {
                    EnsureError::Missing | EnsureError::ForeignType => {
                        KafkaSinkError::MissingTopic {
                            sink: name.to_owned(),
                            topic,
                        }
                    }
                    EnsureError::Create(detail) => KafkaSinkError::CreateTopic {
                        sink: name.to_owned(),
                        topic,
                        detail,
                    },
                });
            }
        }
        tracing::info!(
            sink = name,
            bootstrap = %cfg.bootstrap_servers,
            topic = %cfg.topic,
            deadletter_topic = %cfg.deadletter_topic,
            wire_mode = %cfg.wire_mode,
            "kafka sink connected"
        );
        let probe = tokio::spawn(probe_loop(Arc::downgrade(&inner)));
        Ok(KafkaSink { inner, probe })
    }
}

fn create_producer(
    name: &str,
    config: &ClientConfig,
    health: &Arc<Health>,
) -> Result<Producer_, KafkaSinkError> {
    let ctx = SinkContext {
        sink: name.to_owned(),
        health: Arc::clone(health),
    };
    config
        .create_with_context::<_, Producer_>(ctx)
        .map_err(|source| KafkaSinkError::Client {
            sink: name.to_owned(),
            source: Box::new(source),
        })
}

async fn probe_loop(inner: Weak<Inner>) {
    loop {
        tokio::time::sleep(PROBE_INTERVAL).await;
        let Some(inner) = inner.upgrade() else { return };
        let topic = inner.routing.deadletter_topic.clone();
        // Success is recorded in `metadata`; failures are logged by the client context.
        let _ = inner.metadata(Some(topic), PROBE_INTERVAL).await;
    }
}

enum EnsureError {
    /// Missing and `create_topics = false`.
    Missing,
    /// Missing, and only records of types outside the taxonomy go there.
    ForeignType,
    /// Creation failed.
    Create(String),
}

impl Inner {
    /// Checks (and creates) the topics of `topics` not seen yet, once each; the errors of
    /// those that cannot be used, by topic.
    async fn check_topics(
        &self,
        batch: &[Message],
        topics: &[String],
    ) -> HashMap<String, PublishError> {
        let mut topic_errors: HashMap<String, PublishError> = HashMap::new();
        let unknown: Vec<String> = {
            let known = self.known_topics.lock();
            let mut seen = HashSet::new();
            topics
                .iter()
                .filter(|t| !known.contains(*t) && seen.insert(t.as_str()))
                .cloned()
                .collect()
        };
        for topic in unknown {
            // A topic may be created for a record of a taxonomy type (or a dead letter);
            // types outside it only when the operator allows it.
            let may_create = self.create_for_unknown_types
                || batch.iter().zip(topics).any(|(m, t)| {
                    *t == topic
                        && match &m.payload {
                            Payload::Event(e) => taxonomy::known(&e.event_type).is_some(),
                            Payload::DeadLetter(_) => true,
                        }
                });
            match self.ensure_topic(&topic, may_create).await {
                Ok(()) => {}
                Err(EnsureError::ForeignType) => {
                    topic_errors.insert(
                        topic.clone(),
                        PublishError::permanent(
                            Reason::UnknownTypeTopic,
                            format!(
                                "topic {topic:?} does not exist and only types outside the taxonomy are routed to it: create it, or set create_topics_for_unknown_types = true"
                            ),
                        ),
                    );
                }
                Err(EnsureError::Missing) => {
                    topic_errors.insert(
                        topic.clone(),
                        PublishError::refused(
                            Reason::UnknownTopic,
                            format!(
                                "topic {topic:?} does not exist and create_topics = false: create it"
                            ),
                        ),
                    );
                }
                Err(EnsureError::Create(detail)) => {
                    topic_errors.insert(
                        topic.clone(),
                        PublishError::retryable(
                            Reason::CreateTopicFailed,
                            format!("cannot create topic {topic:?}: {detail}"),
                        ),
                    );
                }
            }
        }
        topic_errors
    }

    fn producer(&self) -> Producer_ {
        self.producer.read().clone()
    }

    /// A metadata request off the async runtime (librdkafka's call blocks).
    async fn metadata(
        &self,
        topic: Option<String>,
        timeout: Duration,
    ) -> Result<Metadata, KafkaError> {
        let producer = self.producer();
        let md = tokio::task::spawn_blocking(move || {
            producer.client().fetch_metadata(topic.as_deref(), timeout)
        })
        .await
        .unwrap_or(Err(KafkaError::Canceled))?;
        self.health.ok();
        Ok(md)
    }

    /// Makes sure `topic` exists: checks metadata, creates it when configured to.
    /// A metadata failure (cluster unreachable) is not an error here: the records are
    /// produced anyway and librdkafka reports their fate.
    async fn ensure_topic(&self, topic: &str, may_create: bool) -> Result<(), EnsureError> {
        let md = match self
            .metadata(
                Some(topic.to_owned()),
                self.message_timeout.min(METADATA_TIMEOUT),
            )
            .await
        {
            Ok(md) => md,
            Err(e) => {
                tracing::warn!(sink = %self.name, topic, error = %e, "kafka: metadata request failed");
                return Ok(());
            }
        };
        match topic_state(&md, topic) {
            TopicState::Exists => {
                self.known_topics.lock().insert(topic.to_owned());
                return Ok(());
            }
            TopicState::Unsettled(why) => {
                tracing::debug!(sink = %self.name, topic, why, "kafka: topic not settled; producing anyway");
                return Ok(());
            }
            TopicState::Missing => {}
        }
        if self.admin.is_some() && !may_create {
            tracing::error!(
                sink = %self.name,
                topic,
                "kafka: topic does not exist and only types outside the taxonomy go there: not created (create_topics_for_unknown_types = false); its records are dead-lettered"
            );
            return Err(EnsureError::ForeignType);
        }
        let Some(admin) = &self.admin else {
            tracing::error!(
                sink = %self.name,
                topic,
                "kafka: topic does not exist and create_topics = false: create it; its records are retried"
            );
            return Err(EnsureError::Missing);
        };
        let replication = TopicReplication::Fixed(self.replication_factor);
        let mut new = NewTopic::new(topic, self.partitions, replication);
        if self.replication_factor >= 3 {
            // With acks=all, an ack then means at least two replicas have the record.
            new = new.set("min.insync.replicas", "2");
        }
        let opts = AdminOptions::new()
            .request_timeout(Some(METADATA_TIMEOUT))
            .operation_timeout(Some(METADATA_TIMEOUT));
        match admin.create_topics([&new], &opts).await {
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(_) => {}
                        Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((t, code)) => {
                            tracing::error!(sink = %self.name, topic = %t, error = %code, "kafka: cannot create topic");
                            return Err(EnsureError::Create(code.to_string()));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(sink = %self.name, topic, error = %e, "kafka: cannot create topic");
                return Err(EnsureError::Create(e.to_string()));
            }
        }
        tracing::info!(sink = %self.name, topic, partitions = self.partitions, replication_factor = self.replication_factor, "kafka: created topic");
        // Wait (bounded) until the new topic shows up in metadata, so the first records do
        // not race its propagation.
        let deadline = Instant::now() + CREATE_PROPAGATION;
        while Instant::now() < deadline {
            if let Ok(md) = self
                .metadata(Some(topic.to_owned()), Duration::from_secs(2))
                .await
            {
                if let TopicState::Exists = topic_state(&md, topic) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.known_topics.lock().insert(topic.to_owned());
        Ok(())
    }

    /// Replaces a producer that hit a fatal (idempotence) error: it refuses every record.
    fn replace_fatal_producer(&self) {
        let current = self.producer();
        let Some((code, reason)) = current.client().fatal_error() else {
            return;
        };
        tracing::error!(sink = %self.name, error = %code, reason, "kafka: producer hit a fatal error; replacing it");
        match create_producer(&self.name, &self.client_config, &self.health) {
            Ok(p) => *self.producer.write() = p,
            Err(e) => {
                tracing::error!(sink = %self.name, error = %e, "kafka: cannot create a new producer")
            }
        }
    }
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    fn name(&self) -> &str {
        &self.inner.name
    }

    async fn publish(&self, batch: &[Message]) -> Vec<Result<(), PublishError>> {
        let inner = &*self.inner;
        let routing = &inner.routing;
        let topics: Vec<String> = batch.iter().map(|m| routing.topic_for(m)).collect();

        // Topics not seen yet: check (and create) them, once per topic.
        let mut topic_errors = inner.check_topics(batch, &topics).await;

        // Enqueue in batch order (librdkafka bounds what is in flight by its own queue).
        // After a retryable enqueue failure, later records for the same topic are not
        // enqueued either, so a retry cannot reorder them.
        let producer = inner.producer();
        let queue_deadline = Instant::now() + inner.message_timeout;
        let mut confirmations = Confirmations::new(batch.len(), usize::MAX);
        for (i, (msg, topic)) in batch.iter().zip(&topics).enumerate() {
            if let Some(e) = topic_errors.get(topic) {
                confirmations.failed(i, e.clone());
                continue;
            }
            let (key, headers, body) = routing.encode(msg);
            let mut record = FutureRecord::to(topic).payload(&body[..]).headers(headers);
            if let Some(k) = &key {
                record = record.key(k.as_str());
            }
            let outcome = loop {
                match producer.send_result(record) {
                    Ok(fut) => break Ok(fut),
                    Err((e, r))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull)
                            && Instant::now() < queue_deadline =>
                    {
                        record = r;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => break Err(classify(&e)),
                }
            };
            match outcome {
                Ok(delivery) => confirmations.sent(i, delivered(delivery)),
                Err(e) => {
                    if !e.is_permanent() {
                        topic_errors.insert(topic.clone(), e.clone());
                    }
                    confirmations.failed(i, e);
                }
            }
        }
        let reports = confirmations.finish(&inner.name).await;

        let mut failed = false;
        for (r, topic) in reports.iter().zip(&topics) {
            if let Err(e) = r {
                failed = true;
                // Look at the topic's metadata again before the next records for it: that
                // refreshes librdkafka's cached topic state too, which otherwise keeps
                // failing records until its periodic refresh.
                if matches!(e.reason(), Reason::UnknownTopic | Reason::Unauthorized) {
                    inner.known_topics.lock().remove(topic);
                }
            }
        }
        if reports.iter().any(|r| r.is_ok()) {
            inner.health.ok();
        }
        if failed {
            // Whatever the records' own errors, the producer may now be unusable.
            inner.replace_fatal_producer();
        }
        reports
    }

    async fn ready(&self) -> bool {
        self.inner.health.is_ready()
    }

    async fn close(&self) -> Result<(), PublishError> {
        self.probe.abort();
        let producer = self.inner.producer();
        let timeout = self.inner.message_timeout;
        tokio::task::spawn_blocking(move || producer.flush(timeout))
            .await
            .unwrap_or(Err(KafkaError::Canceled))
            .map_err(|e| {
                PublishError::retryable(
                    Reason::FlushFailed,
                    format!("records still in flight at close: {e}"),
                )
            })
    }
}

/// A delivery report as a publish result.
async fn delivered(delivery: DeliveryFuture) -> Result<(), PublishError> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _msg))) if !matches!(e, KafkaError::Canceled) => Err(classify(&e)),
        Ok(Err(_)) | Err(_) => Err(PublishError::retryable(
            Reason::ProducerClosed,
            "the producer went away before the delivery report",
        )),
    }
}
