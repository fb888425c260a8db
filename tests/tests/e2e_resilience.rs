//! Failures on every side, end to end with the real relay binary and NATS JetStream:
//! - the activity stream dropped, stalled and disconnected by X: no event lost, backfilled
//!   repeats removed;
//! - the relay killed with SIGKILL in the middle of a run and restarted, X retrying: every
//!   event X was answered 2xx for reaches the broker;
//! - the broker unreachable during a run: the relay keeps answering 2xx from its spool and
//!   delivers everything once the broker is back.

mod support;

use std::time::Duration;

use relay_envelope::IngressKind;
use support::*;
use x_emulator::{Emitted, Emulator, EmulatorConfig, Format, GeneratorConfig, StreamFault};

fn nats_sink(u: &str, url: &str) -> String {
    r#"
[[sinks]]
name = "nats"
type = "nats"
url = "URL"
subject = "e2eUNIQ.{subject}.{type}"
deadletter_subject = "e2eUNIQ.deadletter"
ack_timeout = "2s"

[sinks.stream]
name = "E2E_UNIQ"
subjects = ["e2eUNIQ.>"]
"#
    .replace("UNIQ", u)
    .replace("URL", url)
}

const BASE: &str = r#"
shutdown_timeout = "10s"

[spool]
dir = "{dir}/spool"
max_bytes = 268435456
segment_bytes = 33554432

[admin]
listen = "{admin}"

[log]
format = "json"
level = "info"

[dispatch]
batch_size = 64
initial_backoff = "50ms"
max_backoff = "1s"
"#;

const WEBHOOK: &str = r#"
[webhook]
listen = "{webhook}"

[[webhook.apps]]
name = "demo"
consumer_secrets = ["emulator-consumer-secret"]
"#;

fn webhook_mix(seed: u64) -> GeneratorConfig {
    let mut g = GeneratorConfig {
        cycle: true,
        duplicate_rate: 0.1,
        seed: Some(seed),
        ..GeneratorConfig::default()
    };
    g.formats.insert("aaa".into(), 1.0);
    g
}

async fn register_and_subscribe(emu: &x_emulator::EmulatorHandle, relay: &Relay) -> String {
    let w = emu
        .register_webhook("demo", &relay.webhook_url("demo"))
        .await
        .expect("CRC");
    for user in &emu.config().users {
        emu.subscribe("demo", &w.id, &user.user_id)
            .expect("subscribe");
    }
    w.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_drops_stalls_and_disconnects_lose_nothing() {
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    let emu = Emulator::start(EmulatorConfig {
        stream: x_emulator::StreamConfig {
            heartbeat_ms: Some(200),
            ..x_emulator::StreamConfig::default()
        },
        ..scaled_x(0.01)
    })
    .await
    .unwrap();
    let stream = format!(
        r#"
[[streams]]
name = "e2e"
url = "{}/2/activity/stream"
bearer_token = "emulator-bearer"
idle_timeout = "1s"
backfill = true

[streams.backoff]
network_step = "50ms"
network_max = "500ms"
http_initial = "200ms"
http_max = "1s"
"#,
        emu.base_url()
    );
    let config = format!(
        "{BASE}{stream}{}",
        nats_sink(&u, &relay_testkit::nats_url())
    );
    let relay = Relay::start(tmp.path(), &config).await;

    // A fresh seed per call: the same seed would replay the same random ids (favorites).
    let gen = |seed: u64| {
        let mut g = GeneratorConfig {
            cycle: true,
            seed: Some(seed),
            ..GeneratorConfig::default()
        };
        g.formats.insert("stream".into(), 1.0);
        g
    };

    // Waits until a new live connection (beyond the first `n`) is up.
    async fn connected(emu: &x_emulator::EmulatorHandle, n: usize) {
        for _ in 0..300 {
            let c = emu.connections();
            if c.iter().filter(|c| c.outcome == "connected").count() > n
                && c.iter()
                    .any(|c| c.outcome == "connected" && c.ended_at.is_none() && !c.stalled)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the relay did not reconnect: {:?}", emu.connections());
    }

    let mut emitted: Vec<Emitted> = Vec::new();
    connected(&emu, 0).await;
    emitted.extend(emu.generate(&gen(100), 30));
    let faults = [
        StreamFault::Drop { connection: None },
        StreamFault::Stall { connection: None },
        StreamFault::OperationalDisconnect { connection: None },
    ];
    for (i, fault) in faults.into_iter().enumerate() {
        emu.stream_fault(fault);
        // Emitted while the connection is gone or stalled: only backfill can bring these.
        emitted.extend(emu.generate(&gen(200 + i as u64), 20));
        connected(&emu, i + 1).await;
        emitted.extend(emu.generate(&gen(300 + i as u64), 20));
    }

    let expected: std::collections::BTreeMap<_, _> = emu
        .sent_with_bodies()
        .iter()
        .filter(|e| e.format == Format::Stream)
        .flat_map(|e| normalize_value(e.body.as_ref().unwrap(), IngressKind::Stream))
        .map(|e| (e.id.clone(), e))
        .collect();
    assert_eq!(
        expected.len(),
        emitted.iter().map(|e| e.ids.len()).sum::<usize>(),
        "every emitted stream event has its own envelope id"
    );

    let got = nats_read_all(
        &format!("E2E_{u}"),
        expected.len(),
        Duration::from_secs(2),
        Duration::from_secs(90),
    )
    .await;
    assert_exactly_once("nats", &expected, &got, |e| {
        format!("e2e{u}.{}.{}", e.subject, e.event_type)
    });

    let conns = emu.connections();
    let reconnects_with_backfill = conns
        .iter()
        .skip(1)
        .filter(|c| c.params.contains_key("backfill_minutes"))
        .count();
    assert!(
        reconnects_with_backfill >= 3,
        "reconnects did not ask for backfill: {conns:?}"
    );
    // Backfilled repeats dropped as duplicates, reconnects counted (each counted by the
    // relay as it happens: waited for, bounded).
    relay
        .wait_metric(
            "activity_relay_duplicates_total",
            &[],
            1.0,
            Duration::from_secs(30),
        )
        .await;
    relay
        .wait_metric(
            "activity_relay_stream_reconnects_total",
            &[],
            3.0,
            Duration::from_secs(30),
        )
        .await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_run_loses_no_event_x_was_told_2xx_about() {
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    let config = format!(
        "{BASE}{WEBHOOK}{}",
        nats_sink(&u, &relay_testkit::nats_url())
    );
    let mut relay = Relay::start(tmp.path(), &config).await;
    // Retries after 150 ms, 1.35 s and 12.1 s: X keeps trying across the restart.
    let emu = Emulator::start(scaled_x(0.05)).await.unwrap();
    register_and_subscribe(&emu, &relay).await;

    let mut emitted = Vec::new();
    for round in 0..40 {
        emitted.extend(emu.generate(&webhook_mix(1000 + round), 10));
        if round == 15 {
            relay.kill9();
        }
        if round == 20 {
            relay.spawn().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sent = wait_deliveries_settled(&emu, &emitted, Duration::from_secs(90)).await;
    let expected = expected_from_deliveries(&sent);
    let refused = sent
        .iter()
        .flat_map(|e| &e.deliveries)
        .filter(|d| d.outcome == x_emulator::AttemptOutcome::Failed)
        .count();
    assert!(
        refused > 0,
        "the kill did not interrupt any delivery: the test proves nothing"
    );

    assert!(
        relay.wait_drained(&["nats"], Duration::from_secs(60)).await,
        "{}",
        relay.log()
    );
    let got = nats_read_all(
        &format!("E2E_{u}"),
        expected.len(),
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    let ids: std::collections::BTreeSet<&str> = got.iter().map(|r| r.id()).collect();
    let missing: Vec<&String> = expected
        .keys()
        .filter(|id| !ids.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} events X got a 2xx for are missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    assert_eq!(ids.len(), got.len(), "JetStream holds duplicates");
    eprintln!(
        "{} events acknowledged to X, {} at the broker, {} failed attempts around the kill",
        expected.len(),
        got.len(),
        refused
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_keeps_accepting_and_delivers_everything_after() {
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    let proxy = relay_testkit::TcpProxy::start(relay_testkit::nats_addr()).await;
    let config = format!(
        "{BASE}{WEBHOOK}{}",
        nats_sink(&u, &format!("nats://{}", proxy.addr()))
    );
    let relay = Relay::start(tmp.path(), &config).await;
    let emu = Emulator::start(scaled_x(0.01)).await.unwrap();
    register_and_subscribe(&emu, &relay).await;

    proxy.cut().await;
    let emitted = emu.generate(&webhook_mix(5), 150);
    let sent = wait_deliveries_settled(&emu, &emitted, Duration::from_secs(60)).await;
    let failed = sent
        .iter()
        .flat_map(|e| &e.deliveries)
        .filter(|d| d.outcome != x_emulator::AttemptOutcome::Delivered)
        .count();
    assert_eq!(
        failed, 0,
        "the relay refused deliveries while the broker was down"
    );
    let expected = expected_from_deliveries(&sent);
    let pending = relay
        .metric("activity_relay_pending_records", &[("sink", "nats")])
        .await;
    assert!(
        pending > 0.0,
        "nothing waited in the spool while the broker was down"
    );
    // The outage is visible in the metrics (the dispatcher's failed attempts, bounded wait).
    relay
        .wait_metric(
            "activity_relay_publish_failures_total",
            &[("sink", "nats")],
            1.0,
            Duration::from_secs(30),
        )
        .await;

    proxy.restore().await;
    assert!(
        relay.wait_drained(&["nats"], Duration::from_secs(90)).await,
        "{}",
        relay.log()
    );
    let got = nats_read_all(
        &format!("E2E_{u}"),
        expected.len(),
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    assert_exactly_once("nats", &expected, &got, |e| {
        format!("e2e{u}.{}.{}", e.subject, e.event_type)
    });
    emu.shutdown().await;
}
