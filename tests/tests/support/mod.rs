//! What the end-to-end tests share: the relay as a real child process, X as an in-process
//! `x-emulator`, and real consumers for every broker.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use relay_envelope::{Context, Envelope, IngressKind};
use serde_json::Value;
use x_emulator::{AttemptOutcome, EmulatorHandle, SentEvent};

/// X with its retries scaled down by `time_scale` (`0.01`: a 1 minute wait takes 0.6 s).
/// X's own 3 s answer timeout runs on the real clock while the retries are scaled: a
/// machine stall past it would be a retry the test did not plan, so it is 30 s here (X's
/// timeout is held against the relay in e2e_hostile).
pub fn scaled_x(time_scale: f64) -> x_emulator::EmulatorConfig {
    x_emulator::EmulatorConfig {
        time_scale,
        delivery_timeout_ms: 30_000,
        ..x_emulator::EmulatorConfig::default()
    }
}

/// The `activity-relay` binary that `cargo test` built next to this test executable.
pub fn relay_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile> directory");
    let bin = dir.join("activity-relay");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p activity-relay`); \
         `cargo test --workspace` builds it before running tests",
        bin.display()
    );
    bin
}

#[allow(unused_imports)] // not every test file signs
pub use relay_testkit::x_signature;

/// The shared fixtures folder.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures"))
}

/// A running relay process with its config and data in a temporary directory.
pub struct Relay {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub admin: SocketAddr,
    pub webhook: SocketAddr,
    child: Option<Child>,
    starts: u32,
}

impl Relay {
    /// Writes `config` (with `{dir}`, `{admin}` and `{webhook}` substituted) and starts the
    /// relay on it, waiting until `/healthz` answers. The relay binds port 0 and reports
    /// the ports it got (`run --listen-file`): no port is chosen here and bound later by
    /// another process, which anything else on the machine could take in between. The
    /// config file is then rewritten with the ports it got, for restarts ([`Relay::spawn`]),
    /// which a test may edit before it restarts the relay.
    pub async fn start(dir: &Path, config: &str) -> Relay {
        let any: SocketAddr = "127.0.0.1:0".parse().expect("address");
        let render = |admin: SocketAddr, webhook: SocketAddr| {
            config
                .replace("{dir}", &dir.display().to_string())
                .replace("{admin}", &admin.to_string())
                .replace("{webhook}", &webhook.to_string())
        };
        let path = dir.join("relay.toml");
        std::fs::write(&path, render(any, any)).expect("write config");
        let mut relay = Relay {
            dir: dir.to_path_buf(),
            config: path,
            admin: any,
            webhook: any,
            child: None,
            starts: 0,
        };
        relay.spawn().await;
        std::fs::write(&relay.config, render(relay.admin, relay.webhook)).expect("write config");
        relay
    }

    /// Starts the process again on the same config file, directories and (after the first
    /// start) ports: X and the proxies keep the webhook's address across a restart. (Those
    /// ports are free again only once the old process is gone, and another process could
    /// bind one meanwhile: it would show as a bind error in the log, not as a wrong result.)
    pub async fn spawn(&mut self) {
        assert!(self.child.is_none(), "relay already running");
        self.starts += 1;
        let log = std::fs::File::create(self.dir.join(format!("relay-{}.log", self.starts)))
            .expect("log file");
        let listen_file = self.dir.join(format!("listening-{}.json", self.starts));
        let child = Command::new(relay_bin())
            .args(["run", "--config"])
            .arg(&self.config)
            .arg("--listen-file")
            .arg(&listen_file)
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn activity-relay");
        self.child = Some(child);
        let log = self.dir.join(format!("relay-{}.log", self.starts));
        let child = self.child.as_mut().expect("just spawned");
        let (admin, webhook) = relay_testkit::wait_listening(child, &listen_file, &log).await;
        self.admin = admin;
        if let Some(w) = webhook {
            self.webhook = w;
        }
        // Bounded (a guard against a hang, not a speed).
        let url = format!("http://{}/healthz", self.admin);
        for _ in 0..600 {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("activity-relay exited at start ({status}):\n{}", self.log());
            }
            if let Ok(r) = reqwest::get(&url).await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("activity-relay did not come up:\n{}", self.log());
    }

    /// Every log the relay wrote so far.
    pub fn log(&self) -> String {
        let mut out = String::new();
        for i in 1..=self.starts {
            out.push_str(&format!("--- start {i}\n"));
            out.push_str(
                &std::fs::read_to_string(self.dir.join(format!("relay-{i}.log")))
                    .unwrap_or_default(),
            );
        }
        out
    }

    /// The relay's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `http://127.0.0.1:PORT/webhooks/<app>`.
    pub fn webhook_url(&self, app: &str) -> String {
        format!("http://{}/webhooks/{app}", self.webhook)
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        c.wait().ok().and_then(|s| s.code())
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        match reqwest::get(format!("http://{}/metrics", self.admin)).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Sum of a metric's samples whose labels contain every `label="value"` given.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sum_metric(&self.metrics().await, name, labels)
    }

    /// Waits until the metric's sum over the given labels reaches `at_least`, and returns it;
    /// panics with the metrics and the log after `max` (a guard against a hang: the event
    /// it counts happens in another task of the relay, after whatever the test did).
    pub async fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        at_least: f64,
        max: Duration,
    ) -> f64 {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let text = self.metrics().await;
            let v = sum_metric(&text, name, labels);
            if v >= at_least {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}{labels:?} is {v}, never {at_least}:\n{text}\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every sink has nothing pending (bounded); false if it did not happen.
    pub async fn wait_drained(&self, sinks: &[&str], max: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + max;
        loop {
            let text = self.metrics().await;
            let pending: f64 = sinks
                .iter()
                .map(|s| sum_metric(&text, "activity_relay_pending_records", &[("sink", s)]))
                .sum();
            let present = sinks.iter().all(|s| {
                text.lines().any(|l| {
                    l.starts_with("activity_relay_pending_records")
                        && l.contains(&format!("sink=\"{s}\""))
                })
            });
            if present && pending == 0.0 {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Sum of the samples of `name` (exact name, any labels) that carry every given label.
pub fn sum_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let metric = head.split('{').next()?;
            if metric != name {
                return None;
            }
            if !labels
                .iter()
                .all(|(k, v)| head.contains(&format!("{k}=\"{v}\"")))
            {
                return None;
            }
            value.parse::<f64>().ok()
        })
        .sum()
}

/// What X (the emulator) handed to the relay with a 2xx: every body that has at least one
/// `Delivered` attempt, normalized like the relay does, deduplicated by envelope id.
pub fn expected_from_deliveries(sent: &[SentEvent]) -> BTreeMap<String, Envelope> {
    let mut out = BTreeMap::new();
    for e in sent {
        if !e
            .deliveries
            .iter()
            .any(|d| d.outcome == AttemptOutcome::Delivered)
        {
            continue;
        }
        let body = e.body.as_ref().expect("sent_with_bodies");
        for env in normalize_value(body, IngressKind::Webhook) {
            out.insert(env.id.clone(), env);
        }
    }
    out
}

/// Envelopes of one body, as the relay would make them.
pub fn normalize_value(body: &Value, ingress: IngressKind) -> Vec<Envelope> {
    let bytes = serde_json::to_vec(body).expect("json");
    let ctx = Context {
        ingress,
        source: "/e2e".into(),
        received_at: chrono::Utc::now(),
        formats: relay_envelope::Formats::ALL,
    };
    relay_envelope::normalize(&bytes, &ctx).unwrap_or_default()
}

/// Subscribes, on the emulator, what is needed for `bodies` to be delivered to
/// `webhook_id`: AAA users (OAuth'd subscription) and XAA activity subscriptions mirroring
/// each body's filter.
pub async fn subscribe_for(emu: &EmulatorHandle, webhook_id: &str, bodies: &[Value]) {
    let mut users = std::collections::BTreeSet::new();
    let mut xaa = std::collections::BTreeSet::new();
    for b in bodies {
        if let Some(u) = b.get("for_user_id").and_then(Value::as_str) {
            users.insert(u.to_string());
        }
        if let Some(d) = b.get("data") {
            let t = d.get("event_type").and_then(Value::as_str).unwrap_or("");
            let f = d.get("filter").cloned().unwrap_or(Value::Null);
            // An empty filter cannot be subscribed to (X refuses it): such a body is not
            // delivered, and expectations come from what was delivered.
            if f.as_object().is_some_and(|o| !o.is_empty()) {
                xaa.insert((t.to_string(), f.to_string()));
            }
        }
    }
    for u in users {
        match emu.subscribe("demo", webhook_id, &u) {
            Ok(()) => {}
            Err(e) if format!("{e:?}").contains("Duplicate") => {}
            Err(e) => panic!("subscribe {u}: {e:?}"),
        }
    }
    let client = reqwest::Client::new();
    for (t, f) in xaa {
        let filter: Value = serde_json::from_str(&f).unwrap_or(Value::Null);
        let r = client
            .post(format!("{}/2/activity/subscriptions", emu.base_url()))
            .bearer_auth("emulator-bearer")
            .json(&serde_json::json!({"event_type": t, "filter": filter, "webhook_id": webhook_id}))
            .send()
            .await
            .expect("create activity subscription");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(
            status.is_success() || text.contains("Duplicate"),
            "activity subscription {t} {f}: {status} {text}"
        );
    }
}

/// Every fixture body of a format folder (`aaa`, `stream`, `xaa`).
pub fn fixture_bodies(folder: &str) -> Vec<Value> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures_dir().join(folder))
        .expect("fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).expect("read")).expect("fixture json"))
        .collect()
}

/// Waits until the emulator has finished every delivery of the given emissions: each body
/// has, for each webhook it targets, a final outcome (delivered or skipped, or failed after
/// its last retry); bounded by `max`. Returns everything the emulator recorded.
pub async fn wait_deliveries_settled(
    emu: &EmulatorHandle,
    emitted: &[x_emulator::Emitted],
    max: Duration,
) -> Vec<SentEvent> {
    let deadline = tokio::time::Instant::now() + max;
    let retries = emu.config().retry_waits_secs.len() as u32 + 1;
    let targets: HashMap<u64, usize> = emitted.iter().map(|e| (e.seq, e.webhooks.len())).collect();
    loop {
        let sent = emu.sent_with_bodies();
        let settled = sent.iter().all(|e| {
            let want = targets.get(&e.seq).copied().unwrap_or(0);
            let mut per_webhook: HashMap<&str, (bool, u32)> = HashMap::new();
            for d in &e.deliveries {
                let s = per_webhook.entry(d.webhook_id.as_str()).or_default();
                s.0 |= d.outcome != AttemptOutcome::Failed;
                s.1 = s.1.max(d.attempt);
            }
            per_webhook.len() >= want
                && per_webhook.values().all(|(done, n)| *done || *n >= retries)
        });
        if settled {
            return sent;
        }
        // A guard against a hang: what follows would fail on a partial picture anyway,
        // with a less telling message.
        assert!(
            tokio::time::Instant::now() < deadline,
            "X's deliveries did not settle within {max:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One message as a consumer saw it.
#[derive(Clone, Debug)]
pub struct Received {
    /// Topic, subject or routing key.
    pub destination: String,
    /// Kafka key (empty elsewhere).
    pub key: String,
    /// The broker-level dedup id: `Nats-Msg-Id`, AMQP `message_id`; for Kafka (which has none)
    /// the `ce_id` header or the structured body's `id`.
    pub broker_id: String,
    pub envelope: Value,
    /// The message as it came off the wire: headers (names as the broker gave them), the
    /// content type (Kafka and NATS carry it as a header too) and the body.
    pub headers: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn id(&self) -> &str {
        self.envelope
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
    }
}

/// Reads every message of a JetStream stream (from the start) until `expect` have arrived
/// and then `quiet` passed without more, or `max` passed.
pub async fn nats_read_all(
    stream: &str,
    expect: usize,
    quiet: Duration,
    max: Duration,
) -> Vec<Received> {
    use async_nats::jetstream::consumer::{pull, DeliverPolicy};
    let client = async_nats::connect(relay_testkit::nats_url())
        .await
        .expect("nats");
    let js = async_nats::jetstream::new(client);
    let deadline = tokio::time::Instant::now() + max;
    // The relay's sink creates the stream when it connects, in the background of its
    // start: wait for it (within `max`).
    let st = loop {
        match js.get_stream(stream).await {
            Ok(st) => break st,
            Err(e) => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "stream {stream} does not exist: {e}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let consumer = st
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut out = Vec::new();
    loop {
        let wait = if out.len() >= expect {
            quiet
        } else {
            deadline.saturating_duration_since(tokio::time::Instant::now())
        };
        match tokio::time::timeout(wait, messages.next()).await {
            Ok(Some(Ok(m))) => {
                // Parsed, so that the standard name matches its received representation.
                let name: async_nats::header::HeaderName = "Nats-Msg-Id".parse().expect("name");
                let id = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(name))
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default();
                let mut headers = Vec::new();
                if let Some(h) = &m.headers {
                    for (name, values) in h.iter() {
                        for v in values {
                            headers.push((name.to_string(), v.as_str().to_string()));
                        }
                    }
                }
                let content_type = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-type"))
                    .map(|(_, v)| v.clone());
                out.push(Received {
                    destination: m.subject.to_string(),
                    key: String::new(),
                    broker_id: id,
                    envelope: serde_json::from_slice(&m.payload).unwrap_or(Value::Null),
                    headers,
                    content_type,
                    body: m.payload.to_vec(),
                });
            }
            _ => return out,
        }
        if tokio::time::Instant::now() > deadline {
            return out;
        }
    }
}

/// A RabbitMQ queue bound with `#` to `exchange` (declared durable topic, as the sink does).
pub struct AmqpQueue {
    channel: lapin::Channel,
    _conn: lapin::Connection,
    pub queue: String,
}

impl AmqpQueue {
    pub async fn bind(exchange: &str) -> AmqpQueue {
        use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
        use lapin::types::FieldTable;
        let conn = lapin::Connection::connect(
            &relay_testkit::amqp_url(),
            lapin::ConnectionProperties::default(),
        )
        .await
        .expect("amqp");
        let channel = conn.create_channel().await.expect("channel");
        channel
            .exchange_declare(
                exchange,
                lapin::ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("exchange");
        let queue = format!("{exchange}.all");
        channel
            .queue_declare(
                &queue,
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("queue");
        channel
            .queue_bind(
                &queue,
                exchange,
                "#",
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        AmqpQueue {
            channel,
            _conn: conn,
            queue,
        }
    }

    /// Reads until `expect` have arrived and then `quiet` passed without more, or `max`.
    pub async fn read_all(&self, expect: usize, quiet: Duration, max: Duration) -> Vec<Received> {
        use lapin::options::BasicGetOptions;
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + max;
        let mut idle_since = tokio::time::Instant::now();
        loop {
            let got = self
                .channel
                .basic_get(&self.queue, BasicGetOptions { no_ack: true })
                .await
                .expect("basic_get");
            match got {
                Some(m) => {
                    idle_since = tokio::time::Instant::now();
                    let d = &m.delivery;
                    let mut headers = Vec::new();
                    if let Some(t) = d.properties.headers() {
                        for (k, v) in t.inner() {
                            let v = match v {
                                lapin::types::AMQPValue::LongString(s) => s.to_string(),
                                lapin::types::AMQPValue::ShortString(s) => s.to_string(),
                                other => format!("{other:?}"),
                            };
                            headers.push((k.to_string(), v));
                        }
                    }
                    out.push(Received {
                        headers,
                        content_type: d.properties.content_type().as_ref().map(|s| s.to_string()),
                        body: d.data.clone(),
                        destination: d.routing_key.to_string(),
                        key: String::new(),
                        broker_id: d
                            .properties
                            .message_id()
                            .as_ref()
                            .map(|s| s.to_string())
                            .unwrap_or_default(),
                        envelope: serde_json::from_slice(&d.data).unwrap_or(Value::Null),
                    });
                }
                None => {
                    let now = tokio::time::Instant::now();
                    if (out.len() >= expect && now - idle_since > quiet) || now > deadline {
                        return out;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Reads every message of the topics whose names start with `prefix`, from the beginning,
/// until `expect` have arrived and then `quiet` passed without more, or `max`.
pub fn kafka_read_all(
    bootstrap: &str,
    prefix: &str,
    expect: usize,
    quiet: Duration,
    max: Duration,
) -> Vec<Received> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("e2e-{}", relay_testkit::unique()))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for t in md.topics().iter().filter(|t| t.name().starts_with(prefix)) {
        for p in t.partitions() {
            tpl.add_partition_offset(t.name(), p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let start = std::time::Instant::now();
    let mut idle_since = std::time::Instant::now();
    loop {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                idle_since = std::time::Instant::now();
                // Structured messages carry no `ce_` header: their id is in the body.
                let mut ce_id = String::new();
                let mut headers = Vec::new();
                if let Some(h) = m.headers() {
                    for hd in h.iter() {
                        let v = String::from_utf8_lossy(hd.value.unwrap_or_default()).to_string();
                        if hd.key == "ce_id" {
                            ce_id = v.clone();
                        }
                        headers.push((hd.key.to_string(), v));
                    }
                }
                let content_type = headers
                    .iter()
                    .find(|(n, _)| n == "content-type")
                    .map(|(_, v)| v.clone());
                let envelope: Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or(Value::Null);
                if ce_id.is_empty() {
                    // Kafka has no broker-side dedup id: the CloudEvents `id` is the key to
                    // deduplicate on.
                    ce_id = envelope["id"].as_str().unwrap_or_default().to_owned();
                }
                out.push(Received {
                    destination: m.topic().to_string(),
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into(),
                    broker_id: ce_id,
                    envelope,
                    headers,
                    content_type,
                    body: m.payload().unwrap_or_default().to_vec(),
                });
            }
            Some(Err(e)) => panic!("kafka consumer: {e}"),
            None => {
                if (out.len() >= expect && idle_since.elapsed() > quiet) || start.elapsed() > max {
                    return out;
                }
            }
        }
    }
}

/// Asserts that `got` holds every expected envelope exactly once, each at
/// `destination(envelope)`, with the broker id equal to the envelope id, and the body equal
/// to the envelope (as normalized from what X sent: same id, type, subject and payload).
pub fn assert_exactly_once(
    broker: &str,
    expected: &BTreeMap<String, Envelope>,
    got: &[Received],
    destination: impl Fn(&Envelope) -> String,
) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in got {
        *counts.entry(r.id()).or_default() += 1;
    }
    let missing: Vec<&String> = expected
        .keys()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    let dupes: Vec<(&&str, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let unexpected: Vec<&&str> = counts
        .keys()
        .filter(|id| !expected.contains_key(**id))
        .collect();
    assert!(
        missing.is_empty(),
        "{broker}: {} missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(
        dupes.is_empty(),
        "{broker}: duplicates {:?}",
        &dupes[..dupes.len().min(5)]
    );
    assert!(
        unexpected.is_empty(),
        "{broker}: unexpected ids {:?}",
        &unexpected[..unexpected.len().min(5)]
    );
    for r in got {
        let want = &expected[r.id()];
        assert_eq!(
            r.destination,
            destination(want),
            "{broker}: destination of {}",
            want.id
        );
        assert_eq!(
            r.broker_id, want.id,
            "{broker}: broker dedup id of {}",
            want.id
        );
        assert_eq!(
            r.envelope["type"],
            want.event_type.as_str(),
            "{broker}: type of {}",
            want.id
        );
        assert_eq!(
            r.envelope["subject"],
            want.subject.as_str(),
            "{broker}: subject of {}",
            want.id
        );
        let payload: Value = serde_json::from_str(want.data.payload.get()).expect("payload");
        assert_eq!(
            r.envelope["data"]["payload"], payload,
            "{broker}: payload of {}",
            want.id
        );
    }
}

/// The three broker sinks of an end-to-end test, every name under `tag` + the unique `u`
/// (and `mode`, when the test runs one set of sinks per wire mode): Kafka topics
/// `<tag><u>[.<mode>].{type}`, NATS subjects `<tag><u>[.<mode>].{subject}.{type}` in stream
/// `<TAG>_<u>[_<mode>]`, RabbitMQ exchange `<tag>.<u>[.<mode>]` with routing keys
/// `{subject}.{type}`; dead letters to `….deadletter` (RabbitMQ: `deadletter`).
pub fn broker_sinks(tag: &str, u: &str, kafka: &str, mode: Option<&str>) -> String {
    let name = mode.map(|m| format!("-{m}")).unwrap_or_default();
    let dot = mode.map(|m| format!(".{m}")).unwrap_or_default();
    let under = mode.map(|m| format!("_{m}")).unwrap_or_default();
    let wire = mode
        .map(|m| format!("wire_mode = \"{m}\"\n"))
        .unwrap_or_default();
    let upper = tag.to_ascii_uppercase();
    let nats = relay_testkit::nats_url();
    let amqp = relay_testkit::amqp_url();
    format!(
        r#"
[[sinks]]
name = "kafka{name}"
type = "kafka"
bootstrap_servers = "{kafka}"
topic = "{tag}{u}{dot}.{{type}}"
deadletter_topic = "{tag}{u}{dot}.deadletter"
create_topics = true
partitions = 1
{wire}
[[sinks]]
name = "nats{name}"
type = "nats"
url = "{nats}"
subject = "{tag}{u}{dot}.{{subject}}.{{type}}"
deadletter_subject = "{tag}{u}{dot}.deadletter"
{wire}
[sinks.stream]
name = "{upper}_{u}{under}"
subjects = ["{tag}{u}{dot}.>"]

[[sinks]]
name = "rabbitmq{name}"
type = "rabbitmq"
url = "{amqp}"
exchange = "{tag}.{u}{dot}"
routing_key = "{{subject}}.{{type}}"
deadletter_routing_key = "deadletter"
{wire}"#
    )
}

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A round-robin HTTP proxy: each request to the next member, whole (method, path and
/// query, headers, body), and its answer back; a member that refuses connections is skipped.
pub struct Proxy {
    pub addr: SocketAddr,
    /// Requests each member got through the proxy.
    pub served: Arc<Vec<AtomicUsize>>,
}

#[derive(Clone)]
struct Members {
    addrs: Arc<Vec<SocketAddr>>,
    next: Arc<AtomicUsize>,
    served: Arc<Vec<AtomicUsize>>,
    client: reqwest::Client,
}

async fn forward(State(m): State<Members>, req: Request) -> Response {
    let first = m.next.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let body = axum::body::to_bytes(body, 16 << 20)
        .await
        .unwrap_or_default();
    // Like an ingress's `proxy_next_upstream error`: a member that refuses the connection
    // (it is gone) is skipped for the next one; an answer, whatever it is, is returned.
    for k in 0..m.addrs.len() {
        let i = (first + k) % m.addrs.len();
        let mut out = m
            .client
            .request(parts.method.clone(), format!("http://{}{path}", m.addrs[i]))
            .body(body.clone());
        for (name, v) in &parts.headers {
            if name != "host" && name != "content-length" {
                out = out.header(name, v);
            }
        }
        match out.send().await {
            Ok(r) => {
                m.served[i].fetch_add(1, Ordering::Relaxed);
                let mut b = Response::builder().status(r.status());
                for (name, v) in r.headers() {
                    if name != "content-length" && name != "transfer-encoding" {
                        b = b.header(name, v);
                    }
                }
                return b
                    .body(Body::from(r.bytes().await.unwrap_or_default()))
                    .expect("response");
            }
            Err(e) if e.is_connect() => continue,
            // Cut mid-request (the member was killed while it answered): X retries.
            Err(_) => break,
        }
    }
    Response::builder()
        .status(502)
        .body(Body::empty())
        .expect("response")
}

impl Proxy {
    pub async fn start(addrs: Vec<SocketAddr>) -> Proxy {
        let served: Arc<Vec<AtomicUsize>> =
            Arc::new(addrs.iter().map(|_| AtomicUsize::new(0)).collect());
        let members = Members {
            addrs: Arc::new(addrs),
            next: Arc::default(),
            served: served.clone(),
            client: reqwest::Client::new(),
        };
        let app = axum::Router::new().fallback(forward).with_state(members);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Proxy { addr, served }
    }
}

/// Every configured user of `emu` subscribed to `webhook_id` in both products, as during
/// X's AAA-to-XAA overlap: AAA (a user already subscribed is fine) and XAA for every XAA
/// event type.
pub async fn subscribe_users_in_both_formats(emu: &EmulatorHandle, webhook_id: &str) {
    let xaa_kinds: Vec<&str> = x_emulator::generator::all_kinds()
        .into_iter()
        .filter(|(f, _)| *f == x_emulator::Format::Xaa)
        .map(|(_, k)| k)
        .collect();
    let client = reqwest::Client::new();
    for user in &emu.config().users {
        if let Err(e) = emu.subscribe("demo", webhook_id, &user.user_id) {
            assert!(e.to_string().contains("already subscribed"), "{e}");
        }
        let r = client
            .post(format!("{}/2/activity/subscriptions", emu.base_url()))
            .bearer_auth("emulator-bearer")
            .json(&serde_json::json!({
                "user_id": user.user_id, "event_types": xaa_kinds, "webhook_id": webhook_id
            }))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "{}",
            r.text().await.unwrap_or_default()
        );
    }
}

/// The ids of the emulator's first `n` users.
pub fn user_ids(emu: &EmulatorHandle, n: usize) -> Vec<String> {
    emu.config()
        .users
        .iter()
        .take(n)
        .map(|u| u.user_id.clone())
        .collect()
}

/// An XAA like by `user` of its own post `tweet` (the envelope id comes from both).
pub fn xaa_like(user: &str, tweet: &str) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures_dir().join("xaa/like.create.json")).expect("xaa fixture"),
    )
    .expect("json");
    let d = &mut v["data"];
    d["event_uuid"] = serde_json::Value::String(format!("uuid-{tweet}"));
    d["filter"]["user_id"] = serde_json::Value::String(user.to_string());
    d["payload"]["id"] = serde_json::Value::String(format!("like-{tweet}"));
    d["payload"]["liked_tweet_id"] = serde_json::Value::String(tweet.to_string());
    v
}

/// [`xaa_like`], with its event time (`created_at`, `timestamp_ms`) at `at`.
pub fn xaa_like_at(
    user: &str,
    tweet: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    let mut v = xaa_like(user, tweet);
    let p = &mut v["data"]["payload"];
    p["created_at"] =
        serde_json::Value::String(at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    p["timestamp_ms"] = serde_json::Value::String(at.timestamp_millis().to_string());
    v
}
