//! In-process tests of the relay core with a real spool on real disk: dispatcher retries
//! and dead letters, a full spool, dedup across a restart, and the admin endpoints.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use prometheus::{Encoder, Registry, TextEncoder};
use relay_envelope::{Context, IngressKind};
use relay_ingress::{AcceptError, Pipeline};
use relay_sink::{Message, Payload, PublishError, Reason, Sink};
use relay_spool::{NewRecord, RecordKind, Spool, SpoolConfig};
use tokio_util::sync::CancellationToken;

use activity_relay::admin::{AdminServer, AdminState};
use activity_relay::config::DispatchConfig;
use activity_relay::dedup::{rebuild_from_spool, Dedup};
use activity_relay::dispatch::Dispatcher;
use activity_relay::metrics::{PipelineMetrics, SinkMetrics, SpoolMetrics};
use activity_relay::pipeline::{RelayPipeline, SpoolHealth};

/// A test sink: the first `fail_calls` publishes confirm only the first message and fail
/// the rest (retryable); ids in `permanent` are rejected permanently; dead letters are
/// rejected permanently when `reject_dead_letters`. Records every confirmed message.
struct TestSink {
    name: String,
    fail_calls: AtomicUsize,
    permanent: HashSet<String>,
    /// Ids the broker refuses, every time (an unroutable record).
    refused: HashSet<String>,
    reject_dead_letters: bool,
    /// Dead letters are refused (their destination routes nowhere), every time.
    refuse_dead_letters: bool,
    /// Ids refused the first `refuse_first` times they are published (a topic unknown for
    /// a moment), then taken.
    refused_at_first: HashSet<String>,
    refuse_first: AtomicUsize,
    ready: AtomicBool,
    confirmed: Mutex<Vec<Message>>,
}

impl TestSink {
    fn new(name: &str) -> TestSink {
        TestSink {
            name: name.to_string(),
            fail_calls: AtomicUsize::new(0),
            permanent: HashSet::new(),
            refused: HashSet::new(),
            reject_dead_letters: false,
            refuse_dead_letters: false,
            refused_at_first: HashSet::new(),
            refuse_first: AtomicUsize::new(0),
            ready: AtomicBool::new(true),
            confirmed: Mutex::new(Vec::new()),
        }
    }
    fn confirmed(&self) -> Vec<Message> {
        self.confirmed.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Sink for TestSink {
    fn name(&self) -> &str {
        &self.name
    }
    async fn publish(&self, batch: &[Message]) -> Vec<Result<(), PublishError>> {
        let failing = self
            .fail_calls
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let mut out = Vec::new();
        for (i, m) in batch.iter().enumerate() {
            let r = if failing && (i > 0 || batch.len() == 1) {
                Err(PublishError::retryable(Reason::BrokerDown, "test"))
            } else if self.refused.contains(m.id())
                || (self.refuse_dead_letters && m.is_dead_letter())
                || (self.refused_at_first.contains(m.id())
                    && self
                        .refuse_first
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok())
            {
                Err(PublishError::refused(Reason::Unroutable, "test"))
            } else if self.permanent.contains(m.id())
                || (self.reject_dead_letters && m.is_dead_letter())
            {
                Err(PublishError::permanent(Reason::TooLarge, "test"))
            } else {
                self.confirmed.lock().unwrap().push(m.clone());
                Ok(())
            };
            out.push(r);
        }
        out
    }
    async fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

fn envelope_json(id: &str, subject: &str, seq: usize) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"/test","type":"post.create","subject":"{subject}","time":"2025-05-19T14:01:46Z","datacontenttype":"application/json","ingress":"webhook","data":{{"payload":{{"seq":{seq}}}}}}}"#
    )
}

async fn open_spool(dir: &Path, max_bytes: u64, segment_bytes: u64, sinks: &[&str]) -> Spool {
    Spool::open(SpoolConfig {
        dir: dir.to_path_buf(),
        max_bytes,
        segment_bytes,
        sinks: sinks.iter().map(|s| s.to_string()).collect(),
        min_free_bytes: None,
    })
    .await
    .unwrap()
}

fn fast_dispatch(batch_size: usize) -> DispatchConfig {
    DispatchConfig {
        batch_size,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(4),
        max_attempts: None,
        max_refusals: 3,
        refusal_budget: Duration::ZERO,
    }
}

fn metrics_text(registry: &Registry) -> String {
    let mut buf = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut buf)
        .unwrap();
    String::from_utf8(buf).unwrap()
}

/// Runs a dispatcher until everything spooled so far is delivered.
async fn drain(
    sink: Arc<dyn Sink>,
    spool: &Spool,
    cfg: DispatchConfig,
    metrics: SinkMetrics,
    dl_dir: &Path,
) {
    let d = Dispatcher::new(sink, spool.clone(), cfg, metrics, dl_dir.to_path_buf());
    let drain = CancellationToken::new();
    drain.cancel();
    d.run(drain, CancellationToken::new()).await.unwrap();
}

#[tokio::test]
async fn failing_sink_loses_nothing_keeps_order_and_counts_retries() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path(), 1 << 20, 64 << 10, &["flaky"]).await;
    let mut expected = Vec::new();
    for seq in 0..40 {
        let subject = ["a", "b", "c"][seq % 3];
        let id = format!("ev-{seq}");
        spool
            .append(vec![NewRecord {
                kind: RecordKind::Envelope,
                accepted_at_ms: 1,
                payload: Bytes::from(envelope_json(&id, subject, seq)),
                attachment: None,
            }])
            .await
            .unwrap();
        expected.push(id);
    }
    let sink = Arc::new(TestSink::new("flaky"));
    sink.fail_calls.store(5, Ordering::SeqCst);
    let registry = Registry::new();
    let metrics = SinkMetrics::register(&registry).unwrap();
    drain(sink.clone(), &spool, fast_dispatch(8), metrics, dir.path()).await;

    let got: Vec<String> = sink
        .confirmed()
        .iter()
        .map(|m| m.id().to_string())
        .collect();
    assert_eq!(got, expected, "every record confirmed once, in spool order");
    assert_eq!(spool.cursor("flaky").unwrap(), 40, "cursor past everything");
    let text = metrics_text(&registry);
    assert!(
        text.contains(r#"activity_relay_publish_retries_total{sink="flaky"} 5"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"activity_relay_publish_failures_total{reason="broker_down",sink="flaky"} 5"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"activity_relay_published_total{sink="flaky"} 40"#),
        "{text}"
    );

    // Restart: nothing is published again.
    drop(spool);
    let spool = open_spool(dir.path(), 1 << 20, 64 << 10, &["flaky"]).await;
    assert_eq!(spool.cursor("flaky").unwrap(), 40);
}

#[tokio::test]
async fn permanent_failures_are_dead_lettered_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path(), 1 << 20, 64 << 10, &["perm"]).await;
    let records = vec![
        NewRecord {
            kind: RecordKind::Envelope,
            accepted_at_ms: 1,
            payload: Bytes::from(envelope_json("ok-1", "a", 1)),
            attachment: None,
        },
        NewRecord {
            kind: RecordKind::Envelope,
            accepted_at_ms: 1,
            payload: Bytes::from(envelope_json("bad", "a", 2)),
            attachment: None,
        },
        // Not an envelope at all: must not stall the cursor.
        NewRecord {
            kind: RecordKind::Envelope,
            accepted_at_ms: 1,
            payload: Bytes::from_static(b"\x00garbage"),
            attachment: None,
        },
        NewRecord {
            kind: RecordKind::Envelope,
            accepted_at_ms: 1,
            payload: Bytes::from(envelope_json("ok-2", "a", 3)),
            attachment: None,
        },
    ];
    spool.append(records).await.unwrap();
    let mut sink = TestSink::new("perm");
    sink.permanent.insert("bad".to_string());
    let sink = Arc::new(sink);
    let registry = Registry::new();
    let metrics = SinkMetrics::register(&registry).unwrap();
    drain(sink.clone(), &spool, fast_dispatch(10), metrics, dir.path()).await;

    // The events in order; the dead letters (published where the sink sends dead letters)
    // once each.
    let got = sink.confirmed();
    assert_eq!(got.len(), 4, "{got:?}");
    let events: Vec<&str> = got
        .iter()
        .filter(|m| !m.is_dead_letter())
        .map(|m| m.id())
        .collect();
    assert_eq!(events, ["ok-1", "ok-2"]);
    let dead: Vec<&relay_envelope::DeadLetter> = got
        .iter()
        .filter_map(|m| match &m.payload {
            Payload::DeadLetter(dl) => Some(&**dl),
            Payload::Event(_) => None,
        })
        .collect();
    assert_eq!(dead.len(), 2);
    let rejected = dead
        .iter()
        .find(|dl| String::from_utf8_lossy(&dl.raw).contains(r#""id":"bad""#))
        .expect("dead letter of the rejected record");
    assert!(rejected.reason.contains("too_large"), "{}", rejected.reason);
    assert!(
        dead.iter().any(|dl| dl.raw == b"\x00garbage"),
        "dead letter of the unparseable record"
    );
    assert_eq!(spool.cursor("perm").unwrap(), 4);
    let text = metrics_text(&registry);
    assert!(
        text.contains(
            r#"activity_relay_sink_dead_letters_total{reason="too_large",sink="perm"} 1"#
        ),
        "{text}"
    );
}

#[tokio::test]
async fn a_record_the_broker_keeps_refusing_is_dead_lettered_and_the_sink_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path(), 1 << 20, 64 << 10, &["poison"]).await;
    let records: Vec<NewRecord> = ["ok-1", "unroutable", "ok-2"]
        .iter()
        .enumerate()
        .map(|(i, id)| NewRecord {
            kind: RecordKind::Envelope,
            accepted_at_ms: 1,
            payload: Bytes::from(envelope_json(id, "a", i)),
            attachment: None,
        })
        .collect();
    spool.append(records).await.unwrap();
    let mut sink = TestSink::new("poison");
    sink.refused.insert("unroutable".to_string());
    // The broker is also down for a while: those failures are retried without limit.
    sink.fail_calls.store(10, Ordering::SeqCst);
    let sink = Arc::new(sink);
    let registry = Registry::new();
    let metrics = SinkMetrics::register(&registry).unwrap();
    drain(sink.clone(), &spool, fast_dispatch(10), metrics, dir.path()).await;

    let got = sink.confirmed();
    let events: Vec<&str> = got
        .iter()
        .filter(|m| !m.is_dead_letter())
        .map(|m| m.id())
        .collect();
    assert_eq!(
        events,
        ["ok-1", "ok-2"],
        "nothing behind the poison record waits for it"
    );
    let dead: Vec<&relay_envelope::DeadLetter> = got
        .iter()
        .filter_map(|m| match &m.payload {
            Payload::DeadLetter(dl) => Some(&**dl),
            Payload::Event(_) => None,
        })
        .collect();
    assert_eq!(dead.len(), 1);
    assert!(String::from_utf8_lossy(&dead[0].raw).contains(r#""id":"unroutable""#));
    assert!(dead[0].reason.contains("unroutable"), "{}", dead[0].reason);
    assert_eq!(spool.cursor("poison").unwrap(), 3);
    let text = metrics_text(&registry);
    assert!(
        text.contains(
            r#"activity_relay_sink_dead_letters_total{reason="refused",sink="poison"} 1"#
        ),
        "{text}"
    );
    // The broker-down failures were retried (10 of them), never dead-lettered.
    assert!(!text.contains(r#"reason="max_attempts""#), "{text}");
}

#[tokio::test]
async fn dead_letter_rejected_too_goes_to_the_dead_letter_file() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path(), 1 << 20, 64 << 10, &["strict"]).await;
    spool
        .append(vec![NewRecord {
            kind: RecordKind::Envelope,
            accepted_at_ms: 1,
            payload: Bytes::from(envelope_json("bad", "a", 1)),
            attachment: None,
        }])
        .await
        .unwrap();
    let mut sink = TestSink::new("strict");
    sink.permanent.insert("bad".to_string());
    sink.reject_dead_letters = true;
    let sink = Arc::new(sink);
    let metrics = SinkMetrics::register(&Registry::new()).unwrap();
    let dl_dir = dir.path().join("dead-letters");
    drain(sink.clone(), &spool, fast_dispatch(10), metrics, &dl_dir).await;
    assert!(sink.confirmed().is_empty());
    assert_eq!(spool.cursor("strict").unwrap(), 1);
    let text = std::fs::read_to_string(dl_dir.join("strict.ndjson")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1);
    let dl: relay_envelope::DeadLetter = serde_json::from_str(lines[0]).unwrap();
    assert!(String::from_utf8(dl.raw).unwrap().contains(r#""id":"bad""#));
}

/// A record the broker refuses for a moment (a Kafka topic unknown during a broker
/// restart) more than `max_refusals` times, but within `refusal_budget`, is waited out and
/// delivered, not dead-lettered.
#[tokio::test]
async fn a_brief_refusal_is_waited_out_within_the_refusal_budget() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path(), 1 << 20, 64 << 10, &["brief"]).await;
    spool
        .append(vec![NewRecord {
            kind: RecordKind::Envelope,
            accepted_at_ms: 1,
            payload: Bytes::from(envelope_json("moment", "a", 1)),
            attachment: None,
        }])
        .await
        .unwrap();
    let mut sink = TestSink::new("brief");
    sink.refused_at_first.insert("moment".to_string());
    sink.refuse_first.store(10, Ordering::SeqCst);
    let sink = Arc::new(sink);
    let mut cfg = fast_dispatch(10);
    cfg.refusal_budget = Duration::from_secs(3600);
    let registry = Registry::new();
    let metrics = SinkMetrics::register(&registry).unwrap();
    drain(sink.clone(), &spool, cfg, metrics, dir.path()).await;
    let got = sink.confirmed();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(!got[0].is_dead_letter(), "delivered, not dead-lettered");
    assert_eq!(got[0].id(), "moment");
    assert_eq!(
        sink.refuse_first.load(Ordering::SeqCst),
        0,
        "refused 10 times first"
    );
    assert!(!metrics_text(&registry).contains("activity_relay_sink_dead_letters_total{"));
}

/// A dead letter whose destination nothing routes either (refused, every time) goes to the
/// dead-letter file under the same rule, and the sink moves on: it never stalls.
#[tokio::test]
async fn an_unroutable_dead_letter_goes_to_the_file_and_the_sink_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path(), 1 << 20, 64 << 10, &["nowhere"]).await;
    for (id, seq) in [("bad", 1), ("good", 2)] {
        spool
            .append(vec![NewRecord {
                kind: RecordKind::Envelope,
                accepted_at_ms: 1,
                payload: Bytes::from(envelope_json(id, "a", seq)),
                attachment: None,
            }])
            .await
            .unwrap();
    }
    let mut sink = TestSink::new("nowhere");
    sink.permanent.insert("bad".to_string());
    sink.refuse_dead_letters = true;
    let sink = Arc::new(sink);
    let metrics = SinkMetrics::register(&Registry::new()).unwrap();
    let dl_dir = dir.path().join("dead-letters");
    tokio::time::timeout(
        Duration::from_secs(60),
        drain(sink.clone(), &spool, fast_dispatch(10), metrics, &dl_dir),
    )
    .await
    .expect("the sink stalled on a dead letter nothing routes");
    let ids: Vec<String> = sink
        .confirmed()
        .iter()
        .map(|m| m.id().to_string())
        .collect();
    assert_eq!(ids, ["good"]);
    assert_eq!(spool.cursor("nowhere").unwrap(), 2);
    let text = std::fs::read_to_string(dl_dir.join("nowhere.ndjson")).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.contains("bad"), "{text}");
}

#[tokio::test]
async fn max_attempts_dead_letters_a_stuck_record() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path(), 1 << 20, 64 << 10, &["stuck"]).await;
    spool
        .append(vec![NewRecord {
            kind: RecordKind::Envelope,
            accepted_at_ms: 1,
            payload: Bytes::from(envelope_json("x", "a", 1)),
            attachment: None,
        }])
        .await
        .unwrap();
    let sink = Arc::new(TestSink::new("stuck"));
    // Single-record batches fail while fail_calls lasts; the dead letter is then accepted.
    sink.fail_calls.store(3, Ordering::SeqCst);
    let mut cfg = fast_dispatch(10);
    cfg.max_attempts = Some(3);
    let metrics = SinkMetrics::register(&Registry::new()).unwrap();
    drain(sink.clone(), &spool, cfg, metrics, dir.path()).await;
    let got = sink.confirmed();
    assert_eq!(got.len(), 1);
    assert!(got[0].is_dead_letter(), "{got:?}");
    assert_eq!(spool.cursor("stuck").unwrap(), 1);
}

fn xaa_body(n: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"data":{{"event_uuid":"core-test-{n}","filter":{{"user_id":"2244994945"}},"event_type":"post.create","payload":{{"id":"{n}","text":"hello {n}","author_id":"2244994945","created_at":"2025-05-19T14:01:46.000Z"}}}}}}"#
    ))
}

fn ctx() -> Context {
    Context {
        ingress: IngressKind::Webhook,
        source: "/x/account-activity/webhook/test".into(),
        received_at: Utc::now(),
        formats: relay_envelope::Formats::ALL,
    }
}

struct Harness {
    spool: Spool,
    pipeline: RelayPipeline,
    health: Arc<SpoolHealth>,
    registry: Registry,
}

async fn harness(dir: &Path, max_bytes: u64, segment_bytes: u64, sinks: &[&str]) -> Harness {
    let spool = open_spool(dir, max_bytes, segment_bytes, sinks).await;
    let dedup = Dedup::open(
        dir,
        Duration::from_secs(3600),
        10_000,
        activity_relay::metrics::now_ms() as i64,
    )
    .unwrap();
    rebuild_from_spool(&dedup, &spool).await.unwrap();
    let registry = Registry::new();
    let health = Arc::new(SpoolHealth::default());
    let pipeline = RelayPipeline::new(
        spool.clone(),
        Arc::new(dedup),
        PipelineMetrics::register(&registry).unwrap(),
        health.clone(),
        Duration::from_secs(7),
    );
    Harness {
        spool,
        pipeline,
        health,
        registry,
    }
}

/// A delivery whose request is cancelled once its append was queued (X's 3 s timeout, a
/// client gone) keeps its claim until the records are durable and then remembers them: the
/// same body again, concurrently or as X's retry, is a duplicate, not a second record.
#[tokio::test]
async fn a_cancelled_delivery_still_remembers_what_it_spooled() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), 1 << 20, 64 << 10, &["s"]).await;
    let mut first = Box::pin(h.pipeline.accept(xaa_body(7), ctx()));
    // Polled until the append is queued (the record reaches the spool's writer), then
    // cancelled: the request future is dropped.
    let guard = std::time::Instant::now() + Duration::from_secs(30);
    while h.spool.stats().next_offset == 0 {
        assert!(
            futures::poll!(&mut first).is_pending(),
            "the delivery finished before it could be cancelled"
        );
        assert!(
            std::time::Instant::now() < guard,
            "the append was never made"
        );
        tokio::task::yield_now().await;
    }
    // Durable, and the delivery has not seen it yet: cancelled now.
    drop(first);
    let again = h.pipeline.accept(xaa_body(7), ctx()).await.unwrap();
    assert_eq!(again.spooled, 0, "{again:?}");
    assert_eq!(again.duplicates, 1, "{again:?}");
    assert_eq!(h.spool.stats().next_offset, 1, "one record");
    h.spool.close().await;
}

#[tokio::test]
async fn same_body_twice_spools_once_even_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let h = harness(dir.path(), 1 << 20, 64 << 10, &["s"]).await;
        let first = h.pipeline.accept(xaa_body(1), ctx()).await.unwrap();
        assert_eq!(first.spooled + first.dead_letters, 1, "{first:?}");
        let second = h.pipeline.accept(xaa_body(1), ctx()).await.unwrap();
        assert_eq!(second.spooled + second.dead_letters, 0, "{second:?}");
        assert_eq!(second.duplicates, 1);
        assert_eq!(h.spool.stats().next_offset, 1);
        let text = metrics_text(&h.registry);
        assert!(text.contains("activity_relay_duplicates_total"), "{text}");
        h.spool.close().await;
    }
    // Restart with the spool still holding the record.
    {
        let h = harness(dir.path(), 1 << 20, 64 << 10, &["s"]).await;
        let again = h.pipeline.accept(xaa_body(1), ctx()).await.unwrap();
        assert_eq!(again.duplicates, 1, "{again:?}");
        assert_eq!(h.spool.stats().next_offset, 1);
        // Deliver and drop the record from the spool: only the journal remembers it now.
        let sink = Arc::new(TestSink::new("s"));
        drain(
            sink.clone(),
            &h.spool,
            fast_dispatch(10),
            SinkMetrics::register(&Registry::new()).unwrap(),
            dir.path(),
        )
        .await;
        assert_eq!(sink.confirmed().len(), 1);
        h.spool.close().await;
    }
    {
        let h = harness(dir.path(), 1 << 20, 64 << 10, &["s"]).await;
        let again = h.pipeline.accept(xaa_body(1), ctx()).await.unwrap();
        assert_eq!(again.duplicates, 1, "{again:?}");
        let other = h.pipeline.accept(xaa_body(2), ctx()).await.unwrap();
        assert_eq!(other.spooled + other.dead_letters, 1, "{other:?}");
    }
}

/// Bound before the spool is open (a spool of several GiB takes a while to scan): alive
/// for the liveness and startup probes, not ready; then the usual answers.
#[tokio::test]
async fn the_admin_answers_while_the_spool_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::new();
    let (admin, starting) =
        AdminServer::bind_starting("127.0.0.1:0".parse().unwrap(), registry.clone())
            .await
            .unwrap();
    let base = format!("http://{}", admin.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server = tokio::spawn(admin.run(stop.clone()));
    let get = |path: &'static str| {
        let url = format!("{base}{path}");
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, body) = get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("starting"), "{body}");
    let (status, body) = get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("starting: opening the spool"), "{body}");
    assert_eq!(get("/metrics").await.0, 200);

    let h = harness(dir.path(), 1 << 20, 64 << 10, &["s"]).await;
    starting.ready(AdminState {
        registry: registry.clone(),
        spool: h.spool.clone(),
        spool_metrics: SpoolMetrics::register(&registry).unwrap(),
        health: h.health.clone(),
        sinks: Vec::new(),
        dedup: None,
        ready_requires_sinks: true,
    });
    assert_eq!(get("/healthz").await, (200, "ok\n".to_string()));
    assert_eq!(get("/readyz").await.0, 200);
    let (_, metrics) = get("/metrics").await;
    assert!(
        metrics.contains("activity_relay_spool_max_bytes 1048576"),
        "{metrics}"
    );
    stop.cancel();
    server.await.unwrap().unwrap();
    h.spool.close().await;
}

#[tokio::test]
async fn full_spool_refuses_until_drained_and_readyz_follows() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), 3 * 1024, 1024, &["s"]).await;
    let sink = Arc::new(TestSink::new("s"));
    let admin = AdminServer::bind(
        "127.0.0.1:0".parse().unwrap(),
        AdminState {
            registry: h.registry.clone(),
            spool: h.spool.clone(),
            spool_metrics: SpoolMetrics::register(&h.registry).unwrap(),
            health: h.health.clone(),
            sinks: vec![sink.clone() as Arc<dyn Sink>],
            dedup: None,
            ready_requires_sinks: true,
        },
    )
    .await
    .unwrap();
    let base = format!("http://{}", admin.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server = tokio::spawn(admin.run(stop.clone()));
    let client = reqwest::Client::new();
    let readyz = |c: reqwest::Client, b: String| async move {
        let r = c.get(format!("{b}/readyz")).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(readyz(client.clone(), base.clone()).await.0, 200);

    let mut n = 0;
    let full = loop {
        n += 1;
        assert!(n < 1000, "the spool never filled up");
        match h.pipeline.accept(xaa_body(n), ctx()).await {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    match full {
        AcceptError::Full { retry_after } => assert_eq!(retry_after, Duration::from_secs(7)),
        other => panic!("expected Full, got {other:?}"),
    }
    let (status, body) = readyz(client.clone(), base.clone()).await;
    assert_eq!(status, 503);
    assert!(body.contains("spool full"), "{body}");
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("activity_relay_spool_max_bytes 3072"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"activity_relay_pending_records{sink="s"}"#),
        "{metrics}"
    );

    // Drain, then the same delivery is accepted.
    drain(
        sink.clone(),
        &h.spool,
        fast_dispatch(100),
        SinkMetrics::register(&Registry::new()).unwrap(),
        dir.path(),
    )
    .await;
    assert_eq!(sink.confirmed().len(), n - 1);
    let mut accepted = false;
    for _ in 0..200 {
        if h.pipeline.accept(xaa_body(n), ctx()).await.is_ok() {
            accepted = true;
            break;
        }
        // Deleting delivered segments happens in the background.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(accepted, "still full after the sink drained the spool");
    assert_eq!(readyz(client.clone(), base.clone()).await.0, 200);

    // A sink that is not ready makes /readyz 503 too.
    sink.ready.store(false, Ordering::SeqCst);
    let (status, body) = readyz(client.clone(), base.clone()).await;
    assert_eq!(status, 503);
    assert!(body.contains("sink s not ready"), "{body}");
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    stop.cancel();
    server.await.unwrap().unwrap();
}

#[test]
fn dead_letter_raw_is_base64_in_json() {
    // The crash test decodes dead letters' raw bytes; make sure that is the wire format.
    let dl = relay_envelope::DeadLetter::new(b"abc", "r", &ctx());
    let v: serde_json::Value = serde_json::from_slice(&dl.to_json()).unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v["raw"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, b"abc");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_deliveries_spool_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = Arc::new(harness(dir.path(), 1 << 20, 64 << 10, &["s"]).await);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let h = h.clone();
        tasks.push(tokio::spawn(async move {
            h.pipeline.accept(xaa_body(7), ctx()).await.unwrap()
        }));
    }
    let mut spooled = 0;
    let mut duplicates = 0;
    for t in tasks {
        let r = t.await.unwrap();
        spooled += r.spooled + r.dead_letters;
        duplicates += r.duplicates;
    }
    assert_eq!(spooled, 1);
    assert_eq!(duplicates, 15);
    assert_eq!(h.spool.stats().next_offset, 1);
}

#[tokio::test]
async fn ids_repeated_within_one_delivery_spool_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), 1 << 20, 64 << 10, &["s"]).await;
    let tweet = r#"{"id_str":"1924465506158878979","created_at":"Mon May 19 14:01:46 +0000 2025","text":"hi","user":{"id_str":"2244994945","screen_name":"a"}}"#;
    let body = format!(r#"{{"for_user_id":"2244994945","tweet_create_events":[{tweet},{tweet}]}}"#);
    let r = h.pipeline.accept(Bytes::from(body), ctx()).await.unwrap();
    assert_eq!(r.spooled, 1, "{r:?}");
    assert_eq!(r.duplicates, 1, "{r:?}");
    assert_eq!(h.spool.stats().next_offset, 1);
}

#[tokio::test]
async fn readyz_can_ignore_sinks() {
    let dir = tempfile::tempdir().unwrap();
    let h = harness(dir.path(), 1 << 20, 64 << 10, &["s"]).await;
    let sink = Arc::new(TestSink::new("s"));
    sink.ready.store(false, Ordering::SeqCst);
    let mut statuses = Vec::new();
    for requires in [true, false] {
        let admin = AdminServer::bind(
            "127.0.0.1:0".parse().unwrap(),
            AdminState {
                registry: Registry::new(),
                spool: h.spool.clone(),
                spool_metrics: SpoolMetrics::register(&Registry::new()).unwrap(),
                health: h.health.clone(),
                sinks: vec![sink.clone() as Arc<dyn Sink>],
                dedup: None,
                ready_requires_sinks: requires,
            },
        )
        .await
        .unwrap();
        let url = format!("http://{}/readyz", admin.local_addr().unwrap());
        let stop = CancellationToken::new();
        let server = tokio::spawn(admin.run(stop.clone()));
        statuses.push(reqwest::get(url).await.unwrap().status().as_u16());
        stop.cancel();
        server.await.unwrap().unwrap();
    }
    assert_eq!(statuses, [503, 200]);
}

#[tokio::test]
async fn a_sink_filter_publishes_only_its_types_and_moves_past_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path(), 1 << 20, 64 << 10, &["private"]).await;
    let types = [
        "post.create",
        "dm.sent",
        "dm.indicate_typing",
        "chat.received",
        "like.create",
    ];
    let records: Vec<NewRecord> = types
        .iter()
        .enumerate()
        .map(|(i, t)| NewRecord {
            kind: RecordKind::Envelope,
            accepted_at_ms: 1,
            payload: Bytes::from(
                envelope_json(&format!("id-{i}"), "a", i)
                    .replace("\"post.create\"", &format!("\"{t}\"")),
            ),
            attachment: None,
        })
        .collect();
    spool.append(records).await.unwrap();
    let sink = Arc::new(TestSink::new("private"));
    let registry = Registry::new();
    let metrics = SinkMetrics::register(&registry).unwrap();
    let filter = activity_relay::filter::TypeFilter {
        types: vec!["dm.*".into(), "chat.*".into()],
        exclude_types: vec!["dm.indicate_typing".into()],
    };
    let d = Dispatcher::new(
        sink.clone(),
        spool.clone(),
        fast_dispatch(10),
        metrics,
        dir.path().to_path_buf(),
    )
    .with_filter(filter);
    let drain = CancellationToken::new();
    drain.cancel();
    d.run(drain, CancellationToken::new()).await.unwrap();
    let confirmed = sink.confirmed();
    let got: Vec<&str> = confirmed.iter().map(|m| m.id()).collect();
    assert_eq!(got, ["id-1", "id-3"], "only the DM and the XChat event");
    assert_eq!(
        spool.cursor("private").unwrap(),
        5,
        "the trailing filtered record is passed too"
    );
    let text = metrics_text(&registry);
    assert!(
        text.contains(r#"activity_relay_filtered_total{sink="private"} 3"#),
        "{text}"
    );
}

/// Every fixture delivery goes through the pipeline; each dispatcher then takes the spooled
/// records decoded as the pipeline attached them (the spool hands attachments over from
/// its tail cache): not one is parsed again, and what a sink
/// encodes from them (both wire modes, every header style) is byte for byte what it
/// encodes from the record parsed from the spool.
#[tokio::test]
async fn spooled_records_are_decoded_once_and_encode_as_parsed() {
    use activity_relay::decoded::{to_message, Decoded};
    use relay_sink::{encode, HeaderStyle, WireMode};

    let dir = tempfile::tempdir().unwrap();
    let spool = open_spool(dir.path(), 64 << 20, 8 << 20, &["a", "b"]).await;
    let decoded = Arc::new(Decoded::default());
    let pipeline = RelayPipeline::new(
        spool.clone(),
        Arc::new(Dedup::in_memory(Duration::from_secs(3600), 100_000)),
        PipelineMetrics::register(&Registry::new()).unwrap(),
        Arc::new(SpoolHealth::default()),
        Duration::from_secs(7),
    );
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures");
    let mut deliveries = 0;
    for sub in ["aaa", "xaa", "stream"] {
        for entry in std::fs::read_dir(format!("{root}/{sub}")).unwrap() {
            let body = std::fs::read(entry.unwrap().path()).unwrap();
            pipeline.accept(Bytes::from(body), ctx()).await.unwrap();
            deliveries += 1;
        }
    }
    // And one that is not JSON: a dead letter.
    pipeline
        .accept(Bytes::from_static(b"<html>nope"), ctx())
        .await
        .unwrap();
    assert!(deliveries >= 60, "only {deliveries} fixtures found");
    let records = spool.read(0, 100_000).await.unwrap();
    assert!(records.len() >= deliveries, "{} records", records.len());
    // Two dispatchers read the same records.
    for _sink in ["a", "b"] {
        for r in &records {
            let shared = decoded.message(r.clone());
            let parsed = to_message(r.clone());
            assert_eq!(shared.id(), parsed.id());
            assert_eq!(shared.json, parsed.json);
            for mode in [WireMode::Structured, WireMode::Binary] {
                for style in [
                    HeaderStyle::Kafka,
                    HeaderStyle::Nats,
                    HeaderStyle::Amqp,
                    HeaderStyle::Amqp1,
                ] {
                    let (x, y) = (encode(&shared, mode, style), encode(&parsed, mode, style));
                    assert_eq!(x.body, y.body, "{} {mode:?}", shared.id());
                    assert_eq!(x.headers, y.headers, "{} {mode:?}", shared.id());
                    assert_eq!(x.content_type, y.content_type);
                }
            }
        }
    }
    assert_eq!(decoded.parsed(), 0, "records parsed again");
}
