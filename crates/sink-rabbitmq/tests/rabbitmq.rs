//! The RabbitMQ sink against a real RabbitMQ (`RELAY_TEST_AMQP_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`), read back with a real AMQP client. Every test
//! uses its own exchange and queue, so tests run in parallel and repeat.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use relay_sink::{Message, PublishError, Sink};
use relay_sink_rabbitmq::{RabbitMqSink, RabbitMqSinkConfig};
use relay_testkit::{amqp_url, fixtures, unique, TcpProxy};

mod common;

struct Fixture {
    exchange: String,
    queue: String,
    _conn: Connection,
    ch: Channel,
}

/// A unique durable topic exchange and, if `bind`, an exclusive queue bound with `#`.
async fn fixture(bind: bool) -> Fixture {
    let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let (exchange, queue) = common::declare(&ch, bind).await;
    Fixture {
        exchange,
        queue,
        _conn: conn,
        ch,
    }
}

impl Fixture {
    fn config(&self, url: &str) -> RabbitMqSinkConfig {
        let mut cfg = RabbitMqSinkConfig::new(url);
        cfg.exchange = self.exchange.clone();
        cfg.confirm_timeout = Duration::from_secs(5);
        cfg.connect_timeout = Duration::from_secs(5);
        cfg.initial_reconnect_backoff = Duration::from_millis(100);
        cfg.max_reconnect_backoff = Duration::from_millis(500);
        cfg
    }

    /// Every message in the queue. Confirmed publishes are already enqueued, so this does
    /// not wait: it stops at the first empty `basic.get`.
    async fn drain(&self) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some(m) = self
            .ch
            .basic_get(&self.queue, BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            out.push(m.delivery);
        }
        out
    }

    async fn delete(&self) {
        let _ = self
            .ch
            .exchange_delete(&self.exchange, ExchangeDeleteOptions::default())
            .await;
    }
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

fn message_id(d: &Delivery) -> String {
    d.properties
        .message_id()
        .as_ref()
        .map(|s| s.as_str().to_owned())
        .unwrap_or_default()
}

/// mandatory = true and no queue bound: the broker returns the message: Refused (retried a
/// bounded number of times by the dispatcher, then dead-lettered), not Ok.
#[tokio::test]
async fn unroutable_is_refused() {
    let f = fixture(false).await;
    let sink = RabbitMqSink::connect("rabbit-test", &f.config(&amqp_url()))
        .await
        .unwrap();
    let msgs = test_messages();
    let results = sink.publish(&msgs[..3]).await;
    assert_eq!(results.len(), 3);
    for r in &results {
        match r {
            Err(PublishError::Refused { reason, .. }) => {
                assert_eq!(*reason, relay_sink::Reason::Unroutable)
            }
            other => panic!("expected unroutable, got {other:?}"),
        }
    }
    // The channel stays usable: with mandatory off the same publish is confirmed.
    let mut cfg = f.config(&amqp_url());
    cfg.mandatory = false;
    let lenient = RabbitMqSink::connect("rabbit-test", &cfg).await.unwrap();
    all_ok(&lenient.publish(&msgs[..3]).await);
    all_ok(&sink.publish(&[]).await);
    f.delete().await;
}

/// A missing exchange with declare_exchange = false: the channel is closed by the broker
/// (404); a retryable error, and the sink recovers once the exchange exists.
#[tokio::test]
async fn missing_exchange_is_retryable_and_recovers() {
    let f = fixture(true).await;
    let mut cfg = f.config(&amqp_url());
    cfg.exchange = format!("missing.{}", unique());
    cfg.declare_exchange = false;
    let sink = RabbitMqSink::connect("rabbit-test", &cfg).await.unwrap();
    let msgs = fixtures::messages();
    let results = sink.publish(&msgs[..2]).await;
    for r in &results {
        assert!(
            matches!(r, Err(PublishError::Retryable { .. })),
            "published to a missing exchange: {r:?}"
        );
    }
    // Create it and bind the test queue; the next publish opens a new channel.
    f.ch.exchange_declare(
        &cfg.exchange,
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    f.ch.queue_bind(
        &f.queue,
        &cfg.exchange,
        "#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    all_ok(&sink.publish(&msgs[..2]).await);
    let got = f.drain().await;
    assert_eq!(got.len(), 2);
    f.delete().await;
}

fn upstream() -> SocketAddr {
    let url = amqp_url();
    let rest = url.trim_start_matches("amqp://");
    let authority = rest.split('/').next().unwrap();
    let hostport = authority.rsplit('@').next().unwrap();
    hostport.to_socket_addrs().unwrap().next().unwrap()
}

fn via(proxy: &TcpProxy) -> String {
    let url = amqp_url();
    let rest = url.trim_start_matches("amqp://");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let userinfo = authority
        .rsplit_once('@')
        .map(|(u, _)| format!("{u}@"))
        .unwrap_or_default();
    format!("amqp://{userinfo}{}/{path}", proxy.addr())
}

/// Nobody listening: a typed connect error, not a hang.
#[tokio::test]
async fn connect_to_nothing_fails() {
    let proxy = TcpProxy::start(upstream()).await;
    proxy.cut().await;
    let mut cfg = RabbitMqSinkConfig::new(via(&proxy));
    cfg.connect_timeout = Duration::from_secs(2);
    let err = RabbitMqSink::connect("rabbit-test", &cfg)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains("guest:guest"), "password in error: {text}");
}

/// Broker unreachable: publish fails (never Ok); reachable again: the sink reconnects on
/// the next publishes and every record arrives (at least once).
#[tokio::test]
async fn outage_then_restore_at_least_once() {
    let f = fixture(true).await;
    let proxy = TcpProxy::start(upstream()).await;
    let sink = RabbitMqSink::connect("rabbit-test", &f.config(&via(&proxy)))
        .await
        .unwrap();
    let msgs = test_messages();
    let (first, second) = msgs.split_at(msgs.len() / 2);
    all_ok(&sink.publish(first).await);

    proxy.cut().await;
    // Two rounds: the first may meet the dying connection, the second a closed one.
    for _ in 0..2 {
        let results = sink.publish(second).await;
        assert_eq!(results.len(), second.len());
        for r in &results {
            assert!(
                matches!(r, Err(PublishError::Retryable { .. })),
                "published while cut: {r:?}"
            );
        }
    }
    assert!(!sink.ready().await, "ready while the broker is unreachable");

    proxy.restore().await;
    // What the dispatcher does: retry what is unconfirmed until it is (bounded here).
    let mut pending: Vec<Message> = msgs.clone();
    let mut rounds = 0;
    while !pending.is_empty() {
        assert!(
            rounds < 100,
            "still failing after restore: {}",
            pending.len()
        );
        rounds += 1;
        let results = sink.publish(&pending).await;
        pending = pending
            .into_iter()
            .zip(results)
            .filter_map(|(m, r)| r.is_err().then_some(m))
            .collect();
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(sink.ready().await);
    assert!(proxy.accepted() >= 2, "the sink did not reconnect");

    let got = f.drain().await;
    let ids: std::collections::HashSet<String> = got.iter().map(message_id).collect();
    for m in &msgs {
        assert!(ids.contains(m.id()), "{} missing", m.id());
    }
    assert!(got.len() >= msgs.len());
    f.delete().await;
}

/// The broker refuses the message (queue full with `x-overflow: reject-publish`): a
/// `basic.nack`, Retryable `nack`, never Ok.
#[tokio::test]
async fn nack_is_retryable() {
    let f = fixture(false).await;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    let q =
        f.ch.queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            args,
        )
        .await
        .unwrap();
    f.ch.queue_bind(
        q.name().as_str(),
        &f.exchange,
        "#",
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let sink = RabbitMqSink::connect("rabbit-test", &f.config(&amqp_url()))
        .await
        .unwrap();
    let msgs = fixtures::messages();
    let results = sink.publish(&msgs[..3]).await;
    for r in &results {
        match r {
            Err(PublishError::Retryable { reason, .. }) => {
                assert_eq!(*reason, relay_sink::Reason::Nack)
            }
            other => panic!("expected nack, got {other:?}"),
        }
    }
    assert!(
        sink.ready().await,
        "a nack must not take the connection down"
    );
    f.delete().await;
}

/// A broker that accepts TCP but never answers: connect gives up with an error (bounded by
/// connect_timeout) instead of hanging.
#[tokio::test]
async fn silent_broker_connect_is_bounded() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let mut cfg = RabbitMqSinkConfig::new(format!("amqp://guest:guest@{addr}/%2f"));
    cfg.connect_timeout = Duration::from_secs(1);
    // The outer timeout only guards against a hang; the assertion is that it is an error.
    let r = tokio::time::timeout(
        Duration::from_secs(60),
        RabbitMqSink::connect("rabbit-test", &cfg),
    )
    .await
    .expect("connect hung");
    assert!(r.is_err(), "connected to a silent broker");
    hold.abort();
}

/// A partition without resets (proxy stalled): publish returns Retryable errors bounded by
/// confirm_timeout instead of hanging; after it heals the sink recovers (new channel or
/// connection) and every record arrives at least once.
#[tokio::test]
async fn stall_times_out_then_recovers() {
    let f = fixture(true).await;
    let proxy = TcpProxy::start(upstream()).await;
    let mut cfg = f.config(&via(&proxy));
    cfg.confirm_timeout = Duration::from_secs(1);
    cfg.connect_timeout = Duration::from_secs(1);
    let sink = RabbitMqSink::connect("rabbit-test", &cfg).await.unwrap();
    let msgs = test_messages();

    proxy.stall();
    for _ in 0..2 {
        let results = tokio::time::timeout(Duration::from_secs(120), sink.publish(&msgs))
            .await
            .expect("publish hung while stalled");
        for r in &results {
            assert!(
                matches!(r, Err(PublishError::Retryable { .. })),
                "confirmed while stalled: {r:?}"
            );
        }
    }
    proxy.unstall();

    let mut pending = msgs.clone();
    let mut rounds = 0;
    while !pending.is_empty() {
        assert!(
            rounds < 100,
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
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let got = f.drain().await;
    let ids: std::collections::HashSet<String> = got.iter().map(message_id).collect();
    for m in &msgs {
        assert!(ids.contains(m.id()), "{} missing", m.id());
    }
    f.delete().await;
}
