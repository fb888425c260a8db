//! The NATS sink against a real NATS JetStream server (`RELAY_TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`), read back with a real JetStream consumer. Every test uses its
//! own stream and subject prefix, so tests run in parallel and repeat.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use relay_sink::{Message, PublishError, Sink};
use relay_sink_nats::{NatsSink, NatsSinkConfig, Retention, Storage, StreamSetup};
use relay_testkit::{fixtures, nats_url, unique, TcpProxy};

mod common;

struct Fixture {
    prefix: String,
    stream: String,
    js: jetstream::Context,
}

/// A unique stream `T_<u>` capturing `t<u>.>` (memory storage), created by the test.
async fn fixture() -> Fixture {
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = jetstream::new(client);
    let (prefix, stream) = common::create_stream(&js).await;
    Fixture { prefix, stream, js }
}

impl Fixture {
    fn config(&self, url: &str) -> NatsSinkConfig {
        let mut cfg = NatsSinkConfig::new(url);
        cfg.subject = format!("{}.{{subject}}.{{type}}", self.prefix);
        cfg.deadletter_subject = format!("{}.deadletter", self.prefix);
        cfg.ack_timeout = Duration::from_secs(3);
        cfg.connect_timeout = Duration::from_secs(5);
        cfg
    }

    async fn stored(&self) -> u64 {
        let mut s = self.js.get_stream(&self.stream).await.unwrap();
        s.info().await.unwrap().state.messages
    }

    /// Reads `n` messages with a fresh consumer from the start of the stream.
    async fn consume(&self, n: usize) -> Vec<async_nats::jetstream::Message> {
        common::consume(&self.js, &self.stream, n).await
    }

    async fn delete(&self) {
        let _ = self.js.delete_stream(&self.stream).await;
    }
}

fn header<'a>(m: &'a async_nats::Message, name: &str) -> Option<&'a str> {
    // Parsed, so that standard names (Nats-Msg-Id) match the received representation.
    let name: async_nats::header::HeaderName = name.parse().ok()?;
    m.headers.as_ref()?.get(name).map(|v| v.as_str())
}

fn test_messages() -> Vec<Message> {
    let mut msgs = fixtures::messages();
    let n = msgs.len() as u64;
    msgs.push(fixtures::dead_letter(n, b"{not json", "body is not JSON"));
    msgs
}

fn all_ok(results: &[Result<(), PublishError>]) {
    for (i, r) in results.iter().enumerate() {
        assert!(r.is_ok(), "message {i}: {r:?}");
    }
}

/// The same envelope published twice (in two calls and twice in one batch) is stored once.
#[tokio::test]
async fn duplicate_is_stored_once() {
    let f = fixture().await;
    let sink = NatsSink::connect("nats-test", &f.config(&nats_url()))
        .await
        .unwrap();
    let msgs = fixtures::messages();
    let one = msgs[0].clone();
    all_ok(&sink.publish(std::slice::from_ref(&one)).await);
    all_ok(&sink.publish(&[one.clone(), one.clone()]).await);
    assert_eq!(f.stored().await, 1);
    let got = f.consume(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(header(&got[0], "Nats-Msg-Id"), Some(one.id()));
    f.delete().await;
}

/// No stream captures the subject: retryable, reason `no_stream`, never Ok.
#[tokio::test]
async fn no_stream_is_retryable() {
    let u = unique();
    let mut cfg = NatsSinkConfig::new(nats_url());
    cfg.subject = format!("nostream{u}.{{type}}");
    cfg.deadletter_subject = format!("nostream{u}.deadletter");
    let sink = NatsSink::connect("nats-test", &cfg).await.unwrap();
    let msgs = test_messages();
    let results = sink.publish(&msgs[..3]).await;
    assert_eq!(results.len(), 3);
    for r in results {
        match r {
            Err(PublishError::Retryable { reason, detail }) => {
                assert_eq!(reason, relay_sink::Reason::NoStream);
                assert!(detail.contains(&format!("nostream{u}.")), "{detail}");
            }
            other => panic!("expected no_stream, got {other:?}"),
        }
    }
}

/// `stream` set: the sink creates the stream when it is missing; an existing one is left
/// as it is, and updated only with `update_existing`.
#[tokio::test]
async fn stream_setup_creates_a_missing_stream_and_updates_only_when_told() {
    let u = unique();
    let name = format!("S_{u}");
    let mut cfg = NatsSinkConfig::new(nats_url());
    cfg.subject = format!("s{u}.{{subject}}.{{type}}");
    cfg.deadletter_subject = format!("s{u}.deadletter");
    cfg.stream = Some(StreamSetup {
        name: name.clone(),
        subjects: vec![format!("s{u}.>")],
        storage: Storage::Memory,
        retention: Retention::Limits,
        max_age: Duration::from_secs(3600),
        duplicate_window: Duration::from_secs(60),
        update_existing: false,
    });
    let sink = NatsSink::connect("nats-test", &cfg).await.unwrap();
    all_ok(&sink.publish(&fixtures::messages()[..2]).await);

    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = jetstream::new(client);
    let mut s = js.get_stream(&name).await.unwrap();
    let info = s.info().await.unwrap().clone();
    assert_eq!(info.state.messages, 2);
    assert_eq!(info.config.max_age, Duration::from_secs(3600));
    assert_eq!(info.config.duplicate_window, Duration::from_secs(60));
    assert_eq!(info.config.storage, stream::StorageType::Memory);

    // Another max_age in the config: the existing stream keeps its own.
    if let Some(setup) = cfg.stream.as_mut() {
        setup.max_age = Duration::from_secs(7200);
    }
    let _sink2 = NatsSink::connect("nats-test", &cfg).await.unwrap();
    let info = s.info().await.unwrap().clone();
    assert_eq!(
        info.config.max_age,
        Duration::from_secs(3600),
        "left as it is"
    );

    // Asked for explicitly: updated, nothing lost.
    if let Some(setup) = cfg.stream.as_mut() {
        setup.update_existing = true;
    }
    let _sink3 = NatsSink::connect("nats-test", &cfg).await.unwrap();
    let info = s.info().await.unwrap().clone();
    assert_eq!(info.config.max_age, Duration::from_secs(7200));
    assert_eq!(info.state.messages, 2, "update lost messages");
    js.delete_stream(&name).await.unwrap();
}

/// A platform team's stream (two subjects, limits, discard policy, description, max age),
/// named in `[sinks.stream]` with other settings: the sink publishes into it and every
/// setting of it is kept.
#[tokio::test]
async fn an_existing_stream_keeps_every_setting() {
    let u = unique();
    let name = format!("OWNED_{u}");
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = jetstream::new(client);
    let theirs = stream::Config {
        name: name.clone(),
        subjects: vec![format!("owned{u}.>"), format!("other{u}.>")],
        max_messages: 10_000,
        max_bytes: 64 << 20,
        discard: stream::DiscardPolicy::New,
        description: Some("the platform team's stream".into()),
        max_age: Duration::from_secs(24 * 3600),
        storage: stream::StorageType::Memory,
        duplicate_window: Duration::from_secs(300),
        ..Default::default()
    };
    js.create_stream(theirs.clone()).await.unwrap();

    let mut cfg = NatsSinkConfig::new(nats_url());
    cfg.subject = format!("owned{u}.{{subject}}.{{type}}");
    cfg.deadletter_subject = format!("owned{u}.deadletter");
    cfg.stream = Some(StreamSetup {
        name: name.clone(),
        subjects: vec![format!("owned{u}.>")],
        ..StreamSetup::default()
    });
    let sink = NatsSink::connect("nats-test", &cfg).await.unwrap();
    all_ok(&sink.publish(&fixtures::messages()[..3]).await);

    let mut s = js.get_stream(&name).await.unwrap();
    let info = s.info().await.unwrap().clone();
    let c = &info.config;
    assert_eq!(c.subjects, theirs.subjects, "no subject dropped");
    assert_eq!(c.max_messages, theirs.max_messages);
    assert_eq!(c.max_bytes, theirs.max_bytes);
    assert_eq!(c.discard, theirs.discard);
    assert_eq!(c.description, theirs.description);
    assert_eq!(c.max_age, theirs.max_age);
    assert_eq!(c.storage, theirs.storage);
    assert_eq!(c.duplicate_window, theirs.duplicate_window);
    assert_eq!(info.state.messages, 3);
    js.delete_stream(&name).await.unwrap();
}

/// An existing stream that does not capture what the sink publishes (here: its dead
/// letters) is refused at connect, naming the subject; the stream is not touched.
#[tokio::test]
async fn an_existing_stream_that_misses_the_sinks_subjects_is_refused() {
    let u = unique();
    let name = format!("MISS_{u}");
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = jetstream::new(client);
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("miss{u}.events.>")],
        storage: stream::StorageType::Memory,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut cfg = NatsSinkConfig::new(nats_url());
    cfg.subject = format!("miss{u}.events.{{subject}}.{{type}}");
    cfg.deadletter_subject = format!("miss{u}.deadletter");
    cfg.stream = Some(StreamSetup {
        name: name.clone(),
        subjects: vec![format!("miss{u}.>")],
        ..StreamSetup::default()
    });
    let err = NatsSink::connect("nats-test", &cfg).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&format!("miss{u}.deadletter")), "{text}");
    assert!(text.contains("update_existing"), "{text}");
    let mut s = js.get_stream(&name).await.unwrap();
    let info = s.info().await.unwrap().clone();
    assert_eq!(info.config.subjects, vec![format!("miss{u}.events.>")]);
    js.delete_stream(&name).await.unwrap();
}

/// Invalid subject templates and dead-letter subjects are refused at connect.
#[tokio::test]
async fn invalid_subjects_are_refused() {
    for (subject, dl) in [
        ("x.*.{type}", "x.deadletter"),
        ("x.{type}", "x.>"),
        ("x.{nope}", "x.deadletter"),
        ("x..{type}", "x.deadletter"),
    ] {
        let mut cfg = NatsSinkConfig::new(nats_url());
        cfg.subject = subject.into();
        cfg.deadletter_subject = dl.into();
        assert!(
            NatsSink::connect("nats-test", &cfg).await.is_err(),
            "{subject} / {dl} accepted"
        );
    }
}

/// Values that are not valid subject tokens are replaced, and the record still lands.
#[tokio::test]
async fn invalid_subject_characters_are_replaced() {
    let f = fixture().await;
    let sink = NatsSink::connect("nats-test", &f.config(&nats_url()))
        .await
        .unwrap();
    let mut env = fixtures::envelopes().remove(0);
    env.subject = "a b*c>d".into();
    env.event_type = ".odd..type.".into();
    env.id = format!("odd:{}", unique());
    let msg = fixtures::message(0, env);
    assert_eq!(
        sink.subject_for(&msg),
        format!("{}.a_b_c_d._.odd._.type._", f.prefix)
    );
    all_ok(&sink.publish(std::slice::from_ref(&msg)).await);
    let got = f.consume(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].subject.as_str(),
        format!("{}.a_b_c_d._.odd._.type._", f.prefix)
    );
    f.delete().await;
}

/// Connection to a port nobody listens on: a typed connect error, not a hang.
#[tokio::test]
async fn connect_to_nothing_fails() {
    let proxy = TcpProxy::start(relay_testkit::nats_addr()).await;
    proxy.cut().await;
    let mut cfg = NatsSinkConfig::new(format!("nats://{}", proxy.addr()));
    cfg.connect_timeout = Duration::from_secs(2);
    let err = NatsSink::connect("nats-test", &cfg).await.unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

/// Broker unreachable: publish fails (never Ok); reachable again: publishing the same
/// records succeeds and each is stored exactly once (Nats-Msg-Id).
#[tokio::test]
async fn outage_then_restore_exactly_once() {
    let f = fixture().await;
    let proxy = TcpProxy::start(relay_testkit::nats_addr()).await;
    let sink = NatsSink::connect("nats-test", &f.config(&format!("nats://{}", proxy.addr())))
        .await
        .unwrap();
    let msgs = test_messages();
    let (first, second) = msgs.split_at(msgs.len() / 2);
    all_ok(&sink.publish(first).await);

    proxy.cut().await;
    let results = sink.publish(second).await;
    assert_eq!(results.len(), second.len());
    for r in &results {
        assert!(
            matches!(r, Err(PublishError::Retryable { .. })),
            "published while cut: {r:?}"
        );
    }
    assert!(!sink.ready().await, "ready while the broker is unreachable");

    proxy.restore().await;
    // Bounded wait for the client's reconnect (its backoff is at most 4 s).
    let mut waited = 0;
    while !sink.ready().await {
        assert!(waited < 600, "no reconnect within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    // The dispatcher retries everything unconfirmed; here: the whole set again.
    all_ok(&sink.publish(&msgs).await);

    assert_eq!(f.stored().await, msgs.len() as u64);
    let got = f.consume(msgs.len()).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in &got {
        *counts
            .entry(header(m, "Nats-Msg-Id").unwrap().to_owned())
            .or_default() += 1;
    }
    for m in &msgs {
        assert_eq!(counts.get(m.id()), Some(&1), "{}", m.id());
    }
    assert_eq!(got.len(), msgs.len());
    f.delete().await;
}

/// A private nats-server (token auth, JetStream) started by the test; killed on drop.
struct PrivateServer {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn nats_server_bin() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("RELAY_TEST_NATS_SERVER_BIN") {
        return Some(p.into());
    }
    let std_path = std::path::PathBuf::from("/usr/sbin/nats-server");
    if std_path.exists() {
        return Some(std_path);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nats-server"))
            .find(|p| p.exists())
    })
}

async fn private_server(token: &str) -> Option<PrivateServer> {
    let bin = nats_server_bin()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("relay-nats-auth-{}", unique()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = std::process::Command::new(bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
        .arg(&dir)
        .args(["--auth", token])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let server = PrivateServer { child, port, dir };
    // Bounded wait until it accepts connections.
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Some(server);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("private nats-server did not start on port {port}");
}

/// Token auth: the right token connects and publishes; a wrong one is refused with a
/// typed error that does not contain the token; Debug never shows it.
#[tokio::test]
async fn token_auth_and_redaction() {
    let token = format!("tok{}", unique());
    let Some(server) = private_server(&token).await else {
        eprintln!("SKIPPED: no nats-server binary (set RELAY_TEST_NATS_SERVER_BIN)");
        return;
    };
    let u = unique();
    let url = format!("nats://127.0.0.1:{}", server.port);
    let mut cfg = NatsSinkConfig::new(&url);
    cfg.subject = format!("a{u}.{{subject}}.{{type}}");
    cfg.deadletter_subject = format!("a{u}.deadletter");
    cfg.connect_timeout = Duration::from_secs(5);
    cfg.stream = Some(StreamSetup {
        name: format!("A_{u}"),
        subjects: vec![format!("a{u}.>")],
        storage: Storage::Memory,
        ..StreamSetup::default()
    });

    cfg.auth.token = Some(relay_sink_nats::Secret::new("wrong-token"));
    let err = NatsSink::connect("nats-auth", &cfg).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains("wrong-token"), "token in error: {text}");

    cfg.auth.token = Some(relay_sink_nats::Secret::new(token.clone()));
    assert!(!format!("{cfg:?}").contains(&token), "token in Debug");
    let sink = NatsSink::connect("nats-auth", &cfg).await.unwrap();
    assert!(sink.ready().await);
    all_ok(&sink.publish(&fixtures::messages()[..3]).await);
    assert!(!format!("{sink:?}").contains(&token));
    drop(server);
}

/// A record over the stream's maximum message size is Permanent (`too_large`): retrying
/// cannot help, the dispatcher dead-letters it. Smaller records in the batch still land.
#[tokio::test]
async fn too_large_is_permanent() {
    let u = unique();
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = jetstream::new(client);
    let name = format!("L_{u}");
    js.create_stream(stream::Config {
        name: name.clone(),
        subjects: vec![format!("l{u}.>")],
        storage: stream::StorageType::Memory,
        max_message_size: 600,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut cfg = NatsSinkConfig::new(nats_url());
    cfg.subject = format!("l{u}.{{type}}");
    cfg.deadletter_subject = format!("l{u}.deadletter");
    let sink = NatsSink::connect("nats-test", &cfg).await.unwrap();
    let big = fixtures::messages().remove(0);
    assert!(
        big.json.len() > 600,
        "fixture too small: {}",
        big.json.len()
    );
    let small = fixtures::dead_letter(1, b"x", "tiny");
    assert!(small.json.len() < 500);
    let results = sink.publish(&[big, small]).await;
    match &results[0] {
        Err(PublishError::Permanent { reason, .. }) => {
            assert_eq!(*reason, relay_sink::Reason::TooLarge)
        }
        other => panic!("expected too_large, got {other:?}"),
    }
    assert!(results[1].is_ok(), "{:?}", results[1]);
    let mut s = js.get_stream(&name).await.unwrap();
    assert_eq!(s.info().await.unwrap().state.messages, 1);
    js.delete_stream(&name).await.unwrap();
}

/// A server that accepts TCP but never answers: connect gives up with an error (bounded by
/// connect_timeout) instead of hanging.
#[tokio::test]
async fn silent_server_connect_is_bounded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut cfg = NatsSinkConfig::new(format!("nats://{addr}"));
    cfg.connect_timeout = Duration::from_secs(1);
    // The outer timeout only guards against a hang; the assertion is that it is an error.
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        NatsSink::connect("nats-test", &cfg),
    )
    .await
    .expect("connect hung");
    assert!(r.is_err(), "connected to a silent server");
    hold.abort();
}

/// A partition without resets (proxy stalled): publish returns Retryable errors bounded by
/// ack_timeout instead of hanging; after it heals, republishing stores each record once
/// (the late originals and the retries are deduplicated by Nats-Msg-Id).
#[tokio::test]
async fn stall_times_out_then_exactly_once() {
    let f = fixture().await;
    let proxy = TcpProxy::start(relay_testkit::nats_addr()).await;
    let mut cfg = f.config(&format!("nats://{}", proxy.addr()));
    cfg.ack_timeout = Duration::from_secs(1);
    let sink = NatsSink::connect("nats-test", &cfg).await.unwrap();
    let msgs = test_messages();

    proxy.stall();
    let results = tokio::time::timeout(Duration::from_secs(120), sink.publish(&msgs))
        .await
        .expect("publish hung while stalled");
    for r in &results {
        assert!(
            matches!(r, Err(PublishError::Retryable { .. })),
            "confirmed while stalled: {r:?}"
        );
    }
    proxy.unstall();

    let mut pending = msgs.clone();
    let mut rounds = 0;
    while !pending.is_empty() {
        assert!(
            rounds < 60,
            "still failing after the stall: {}",
            pending.len()
        );
        rounds += 1;
        let results = sink.publish(&pending).await;
        pending = pending
            .into_iter()
            .zip(results)
            .filter_map(|(m, r)| r.is_err().then_some(m))
            .collect();
    }
    assert_eq!(f.stored().await, msgs.len() as u64);
    f.delete().await;
}
