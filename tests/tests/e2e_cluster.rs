//! A fleet, as the Kubernetes deployment runs it: the real relay binary as 2 and 3 members
//! behind a round-robin HTTP proxy (per request, what an Ingress in front of the Service
//! does), sharing a `[cluster]` store (Redis, and NATS JetStream key-value); x-emulator plays X's AAA-to-XAA overlap (every
//! event once per format) with X's plain duplicates. Every envelope id must reach Kafka
//! (tansu), NATS and RabbitMQ exactly once, whichever member got which copy.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use relay_envelope::{Envelope, IngressKind};
use support::*;
use x_emulator::config::Cutover;
use x_emulator::{AttemptOutcome, Emulator, EmulatorConfig, GeneratorConfig, SentEvent};

fn redis_store() -> String {
    std::env::var("RELAY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// The Redis of [`redis_store`] as an address (for a cuttable proxy in front of it).
fn redis_store_addr() -> SocketAddr {
    redis_store()
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("RELAY_TEST_REDIS_URL as redis://host:port/db")
}

/// X for a fleet: no periodic re-CRC, a heartbeat on the stream every 200 ms.
async fn fleet_x(base: EmulatorConfig) -> x_emulator::EmulatorHandle {
    Emulator::start(EmulatorConfig {
        recrc_interval_secs: 0.0,
        stream: x_emulator::StreamConfig {
            heartbeat_ms: Some(200),
            ..x_emulator::StreamConfig::default()
        },
        ..base
    })
    .await
    .unwrap()
}

fn nats_store() -> String {
    std::env::var("RELAY_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

fn config(u: &str, kafka: &str, member: usize) -> String {
    config_on(&redis_store(), u, kafka, member)
}

fn config_on(store: &str, u: &str, kafka: &str, member: usize) -> String {
    format!(
        r#"
shutdown_timeout = "10s"

[spool]
dir = "{{dir}}/spool"

[admin]
listen = "{{admin}}"

[log]
format = "json"
level = "info"

[dispatch]
batch_size = 128
initial_backoff = "50ms"
max_backoff = "2s"

[webhook]
listen = "{{webhook}}"

[[webhook.apps]]
name = "demo"
consumer_secrets = ["emulator-consumer-secret"]
formats = ["aaa", "xaa"]

[cluster]
store = "{store}"
member = "m{member}"
namespace = "e2e-{u}"
"#
    ) + &broker_sinks("fleet", u, kafka, None)
}

/// `cfg` with the activity stream `main` of `emu` (every member has it; one leads it).
fn stream_on(cfg: &str, emu: &x_emulator::EmulatorHandle) -> String {
    reorder_stream(&cfg.replace(
        "[[webhook.apps]]",
        &format!(
            "[[streams]]\nname = \"main\"\nurl = \"{}/2/activity/stream\"\nbearer_token = \"emulator-bearer\"\nidle_timeout = \"5s\"\n\n[[webhook.apps]]",
            emu.base_url()
        ),
    ))
}

/// Waits until one member leads the stream with one live connection to X; returns it.
async fn one_stream_leader(relays: &[Relay], emu: &x_emulator::EmulatorHandle) -> usize {
    let guard = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut leaders = Vec::new();
        for r in relays {
            leaders.push(leading(r).await);
        }
        let live = emu
            .connections()
            .iter()
            .filter(|c| c.outcome == "connected" && c.ended_at.is_none())
            .count();
        if leaders.iter().sum::<f64>() == 1.0 && live == 1 {
            return leaders.iter().position(|l| *l == 1.0).unwrap_or(0);
        }
        assert!(
            tokio::time::Instant::now() < guard,
            "no single stream leader: {leaders:?} leading, {live} connections"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// X's webhook at the proxy, every user subscribed in AAA and in XAA (the overlap).
async fn subscribe_both_formats(emu: &x_emulator::EmulatorHandle, proxy: &Proxy) {
    let webhook = emu
        .register_webhook("demo", &format!("http://{}/webhooks/demo", proxy.addr))
        .await
        .expect("CRC through the proxy");
    subscribe_users_in_both_formats(emu, &webhook.id).await;
}

/// Adds the envelopes X also put on the stream (its XAA events, once more); returns how
/// many.
fn add_streamed(expected: &mut BTreeMap<String, Envelope>, sent: &[SentEvent]) -> usize {
    let mut n = 0;
    for e in sent.iter().filter(|e| e.streamed > 0) {
        let body = e.body.as_ref().expect("sent_with_bodies");
        for env in normalize_value(body, IngressKind::Stream) {
            n += 1;
            expected.entry(env.id.clone()).or_insert(env);
        }
    }
    n
}

fn delivered(e: &SentEvent) -> bool {
    e.deliveries
        .iter()
        .any(|d| d.outcome == AttemptOutcome::Delivered)
}

/// Envelopes of the bodies X delivered with a 2xx, by id.
fn expected(sent: &[SentEvent]) -> BTreeMap<String, Envelope> {
    let mut out = BTreeMap::new();
    for e in sent.iter().filter(|e| delivered(e)) {
        let body = e.body.as_ref().expect("sent_with_bodies");
        for env in normalize_value(body, IngressKind::Webhook) {
            out.entry(env.id.clone()).or_insert(env);
        }
    }
    out
}

/// Every expected id at least once, nothing else; returns the ids that came more than once.
fn assert_all<'a>(
    broker: &str,
    expected: &BTreeMap<String, Envelope>,
    got: &'a [Received],
) -> Vec<&'a str> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in got {
        *counts.entry(r.id()).or_default() += 1;
    }
    let ids: BTreeSet<&str> = expected.keys().map(String::as_str).collect();
    let got_ids: BTreeSet<&str> = counts.keys().copied().collect();
    let missing: Vec<_> = ids.difference(&got_ids).take(5).collect();
    let extra: Vec<_> = got_ids.difference(&ids).take(5).collect();
    assert!(missing.is_empty(), "{broker}: missing {missing:?}");
    assert!(extra.is_empty(), "{broker}: unexpected {extra:?}");
    counts
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(id, _)| id)
        .collect()
}

/// Every expected id exactly once, nothing else.
fn assert_once(broker: &str, expected: &BTreeMap<String, Envelope>, got: &[Received]) {
    let twice = assert_all(broker, expected, got);
    assert!(
        twice.is_empty(),
        "{broker}: {} ids more than once, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
}

/// Waits (bounded) until every member's sinks confirmed everything it spooled.
async fn wait_fleet_drained(relays: &[Relay]) {
    for r in relays {
        assert!(
            r.wait_drained(&["kafka", "nats", "rabbitmq"], Duration::from_secs(120))
                .await,
            "sinks did not drain:\n{}",
            r.log()
        );
    }
}

/// Reads every broker back (each until it has `expected.len()` ids and `quiet` passed
/// without more, or `max`): every expected id exactly once at NATS (its `Nats-Msg-Id`
/// window), at least once at RabbitMQ and Kafka, nothing else anywhere. Returns how many
/// ids came more than once at RabbitMQ and at Kafka.
async fn read_back(
    u: &str,
    kafka: &str,
    queue: &AmqpQueue,
    expected: &BTreeMap<String, Envelope>,
    quiet: Duration,
    max: Duration,
) -> (usize, usize) {
    let got = nats_read_all(&format!("FLEET_{u}"), expected.len(), quiet, max).await;
    assert_once("nats", expected, &got);
    let got = queue.read_all(expected.len(), quiet, max).await;
    let rabbit_twice = assert_all("rabbitmq", expected, &got).len();
    let got = tokio::task::spawn_blocking({
        let (kafka, prefix, n) = (kafka.to_string(), format!("fleet{u}."), expected.len());
        move || kafka_read_all(&kafka, &prefix, n, quiet, max)
    })
    .await
    .unwrap();
    let kafka_twice = assert_all("kafka", expected, &got).len();
    (rabbit_twice, kafka_twice)
}

/// The overlap through `members` members; with `with_stream`, every member also has the
/// activity stream configured (one leads it), which carries the XAA events a second time.
async fn fleet_delivers_every_id_once(members: usize, store: &str, with_stream: bool) {
    let kafka = relay_testkit::kafka_bootstrap()
        .expect("RELAY_TEST_KAFKA_BOOTSTRAP is not set: `source scripts/brokers` first");
    let u = relay_testkit::unique();
    let queue = AmqpQueue::bind(&format!("fleet.{u}")).await;
    let emu = fleet_x(scaled_x(0.01)).await;
    let dirs: Vec<tempfile::TempDir> = (0..members).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut relays = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let mut cfg = config_on(store, &u, &kafka, i);
        if with_stream {
            cfg = stream_on(&cfg, &emu);
        }
        relays.push(Relay::start(dir.path(), &cfg).await);
    }
    if with_stream {
        one_stream_leader(&relays, &emu).await;
    }
    let proxy = Proxy::start(relays.iter().map(|r| r.webhook).collect()).await;
    subscribe_both_formats(&emu, &proxy).await;

    // X's overlap: every event once per format, and X's plain re-sends.
    let gen = GeneratorConfig {
        cycle: true,
        cutover: Cutover::Both,
        duplicate_rate: 0.15,
        batch_rate: 0.2,
        seed: Some(7 + members as u64),
        ..GeneratorConfig::default()
    };
    let emitted = emu.generate(&gen, 300);
    let sent = wait_deliveries_settled(&emu, &emitted, Duration::from_secs(180)).await;
    let never: Vec<u64> = sent
        .iter()
        .filter(|e| !e.deliveries.is_empty() && !delivered(e))
        .map(|e| e.seq)
        .collect();
    assert!(never.is_empty(), "never accepted: {never:?}");
    for (i, n) in proxy.served.iter().enumerate() {
        assert!(
            n.load(Ordering::Relaxed) > 10,
            "member {i} got {} requests: the proxy spreads them",
            n.load(Ordering::Relaxed)
        );
    }

    let mut expected = expected(&sent);
    let mut streamed = 0;
    if with_stream {
        streamed = add_streamed(&mut expected, &sent);
        assert!(streamed > 0, "nothing went out on the stream");
    }
    wait_fleet_drained(&relays).await;
    let (quiet, max) = (Duration::from_secs(2), Duration::from_secs(60));
    let twice = read_back(&u, &kafka, &queue, &expected, quiet, max).await;
    assert_eq!(twice, (0, 0), "ids more than once at (RabbitMQ, Kafka)");

    // The members found each other's copies: duplicates told by the store.
    let mut fleet_duplicates = 0.0;
    for r in &relays {
        fleet_duplicates += r
            .metric(
                "activity_relay_cluster_claims_total",
                &[("outcome", "duplicate")],
            )
            .await;
        assert_eq!(
            r.metric("activity_relay_cluster_unverified_total", &[])
                .await,
            0.0,
            "{}",
            r.log()
        );
    }
    assert!(fleet_duplicates > 0.0, "no duplicate crossed members");
    eprintln!(
        "fleet of {members} on {store}, stream on each: {with_stream}: {} envelope ids ({streamed} envelopes also on the stream), each once at Kafka, NATS and RabbitMQ; {fleet_duplicates} copies dropped by the fleet's store",
        expected.len()
    );
    emu.shutdown().await;
    relay_testkit::delete_fleet_buckets(store, &format!("e2e-{u}")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_behind_a_round_robin_proxy_deliver_every_id_once() {
    fleet_delivers_every_id_once(2, &redis_store(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_with_the_stream_on_each_deliver_every_id_once() {
    fleet_delivers_every_id_once(2, &redis_store(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_with_the_stream_on_each_sharing_nats_key_value_deliver_every_id_once() {
    fleet_delivers_every_id_once(2, &nats_store(), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_behind_a_round_robin_proxy_deliver_every_id_once() {
    fleet_delivers_every_id_once(3, &redis_store(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_sharing_nats_key_value_deliver_every_id_once() {
    fleet_delivers_every_id_once(3, &nats_store(), false).await;
}

/// One of three members SIGKILLed while X delivers (the AAA-to-XAA overlap, X's retries
/// and re-sends, the stream on every member: one leads it, a standby is killed), restarted
/// later on its own volume (as a pod is): nothing X was told 2xx about is lost at any
/// broker. A copy may repeat only
/// where a survivor took over a delivery the dead member had claimed and may have made
/// durable (counted as `unverified{reason="pending_elsewhere"|"taken_over"}`), and the
/// dead member's one unconfirmed batch per sink (re-sent after its restart, as by any relay
/// killed mid-publish): no more duplicates than that, none at all at NATS (`Nats-Msg-Id`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_midway_loses_nothing() {
    member_killed_midway(&redis_store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_killed_midway_loses_nothing_on_nats_key_value() {
    member_killed_midway(&nats_store()).await;
}

async fn member_killed_midway(store: &str) {
    const BATCH: usize = 16;
    let kafka = relay_testkit::kafka_bootstrap()
        .expect("RELAY_TEST_KAFKA_BOOTSTRAP is not set: `source scripts/brokers` first");
    let u = relay_testkit::unique();
    let queue = AmqpQueue::bind(&format!("fleet.{u}")).await;
    let emu = fleet_x(scaled_x(0.01)).await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut relays = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        // A short pending_ttl: the dead member's claims free up quickly for X's retries.
        // Batches of 16: the killed member re-sends at most its one unconfirmed batch per
        // sink after its restart (at-least-once, as any single relay killed mid-publish).
        // The stream on every member, one leading it.
        let cfg = config_on(store, &u, &kafka, i)
            .replace(
                "[cluster]\n",
                "[cluster]\npending_ttl = \"3s\"\nclaim_wait = \"5s\"\n",
            )
            .replace("batch_size = 128", &format!("batch_size = {BATCH}"));
        relays.push(Relay::start(dir.path(), &stream_on(&cfg, &emu)).await);
    }
    // The member killed is one of the standbys (the leader's death is the next test's).
    let victim = (one_stream_leader(&relays, &emu).await + 1) % relays.len();
    let proxy = Proxy::start(relays.iter().map(|r| r.webhook).collect()).await;
    subscribe_both_formats(&emu, &proxy).await;
    // X's overlap (every event once per format) and X's plain re-sends.
    let gen = |seed: u64| GeneratorConfig {
        cycle: true,
        cutover: Cutover::Both,
        duplicate_rate: 0.15,
        batch_rate: 0.2,
        seed: Some(seed),
        ..GeneratorConfig::default()
    };
    // Traffic, the kill in the middle of it, more traffic while the member is gone.
    let mut emitted = emu.generate(&gen(1), 200);
    relays[victim].kill9();
    emitted.extend(emu.generate(&gen(2), 200));
    let sent = wait_deliveries_settled(&emu, &emitted, Duration::from_secs(180)).await;
    // X got each delivery through on a live member (its retries round-robin past the dead
    // one): nothing was given up.
    let given_up: Vec<u64> = sent
        .iter()
        .filter(|e| !e.deliveries.is_empty() && !delivered(e))
        .map(|e| e.seq)
        .collect();
    assert!(given_up.is_empty(), "X gave up on {given_up:?}");
    // The pod comes back on its own volume and delivers what it had made durable.
    relays[victim].spawn().await;

    let mut expected = expected(&sent);
    let streamed = add_streamed(&mut expected, &sent);
    wait_fleet_drained(&relays).await;
    // Survivors' ids claimed from the dead member: waited out or taken over once expired.
    let mut taken_over = 0.0;
    for r in relays
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, r)| r)
    {
        for reason in ["pending_elsewhere", "taken_over"] {
            taken_over += r
                .metric(
                    "activity_relay_cluster_unverified_total",
                    &[("reason", reason)],
                )
                .await;
        }
    }
    let quiet = Duration::from_secs(2);
    let max = Duration::from_secs(60);
    let (rabbit_twice, kafka_twice) = read_back(&u, &kafka, &queue, &expected, quiet, max).await;
    for (broker, twice) in [("rabbitmq", rabbit_twice), ("kafka", kafka_twice)] {
        assert!(
            twice as f64 <= taken_over + BATCH as f64,
            "{broker}: {twice} ids more than once, beyond the {taken_over} deliveries survivors took over from the dead member's claims and its one unconfirmed batch of {BATCH}"
        );
    }
    eprintln!(
        "member killed midway on {store} (overlap, stream on each): {} deliveries, {} envelope ids ({streamed} also on the stream), none lost; {taken_over} taken over from its claims; more than once: rabbitmq {rabbit_twice}, kafka {kafka_twice}",
        sent.len(),
        expected.len()
    );
    emu.shutdown().await;
    relay_testkit::delete_fleet_buckets(store, &format!("e2e-{u}")).await;
}

/// The stream on two members of a fleet: one leads (the only connection to X), the other
/// stands by. The leader SIGKILLed: the standby takes the stream over within the lease,
/// from the fleet's position, and every event X emitted on the stream arrives, once at NATS;
/// at Kafka and RabbitMQ nothing repeats beyond the killed member's one unconfirmed batch,
/// re-sent when it comes back on its volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_leader_killed_the_standby_takes_over() {
    stream_leader_killed(&redis_store()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_leader_killed_the_standby_takes_over_on_nats_key_value() {
    stream_leader_killed(&nats_store()).await;
}

async fn stream_leader_killed(store: &str) {
    const BATCH: usize = 16;
    let kafka = relay_testkit::kafka_bootstrap()
        .expect("RELAY_TEST_KAFKA_BOOTSTRAP is not set: `source scripts/brokers` first");
    let u = relay_testkit::unique();
    let queue = AmqpQueue::bind(&format!("fleet.{u}")).await;
    let emu = fleet_x(EmulatorConfig::default()).await;
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut relays = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let cfg = config_on(store, &u, &kafka, i)
            .replace("[cluster]\n", "[cluster]\nlease = \"2s\"\n")
            .replace("batch_size = 128", &format!("batch_size = {BATCH}"));
        relays.push(Relay::start(dir.path(), &stream_on(&cfg, &emu)).await);
    }
    let leader = one_stream_leader(&relays, &emu).await;
    let stamp = chrono::Utc::now().timestamp_micros();
    let mut bodies = Vec::new();
    let emit =
        |n: usize, bodies: &mut Vec<serde_json::Value>| emit_likes_now(&emu, stamp, n, bodies);
    emit(100, &mut bodies);
    tokio::time::sleep(Duration::from_millis(500)).await; // traffic before the kill, not an assertion
    relays[leader].kill9();
    emit(100, &mut bodies);
    // The standby leads within the lease (bounded: a guard only) and reads on.
    let standby = 1 - leader;
    let guard = tokio::time::Instant::now() + Duration::from_secs(30);
    while leading(&relays[standby]).await < 1.0 {
        assert!(
            tokio::time::Instant::now() < guard,
            "the standby never took over:\n{}",
            relays[standby].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    emit(100, &mut bodies);
    // The killed member comes back on its own volume (and stands by).
    relays[leader].spawn().await;

    let mut expected = BTreeMap::new();
    for b in &bodies {
        for env in normalize_value(b, IngressKind::Stream) {
            expected.insert(env.id.clone(), env);
        }
    }
    assert_eq!(expected.len(), bodies.len());
    wait_fleet_drained(&relays).await;
    let quiet = Duration::from_secs(3);
    let max = Duration::from_secs(90);
    let (rabbit_twice, kafka_twice) = read_back(&u, &kafka, &queue, &expected, quiet, max).await;
    assert!(
        rabbit_twice <= BATCH && kafka_twice <= BATCH,
        "{rabbit_twice} {kafka_twice}"
    );
    // Never two live connections for the stream at once.
    let conns = emu.connections();
    for a in conns.iter().filter(|c| c.outcome == "connected") {
        let overlapping = conns
            .iter()
            .filter(|b| b.outcome == "connected" && b.id != a.id)
            .filter(|b| {
                b.at < a.ended_at.unwrap_or(chrono::Utc::now())
                    && a.at < b.ended_at.unwrap_or(chrono::Utc::now())
            })
            .count();
        // The killed leader's connection ends when X notices (its socket closed by the
        // kernel): it may overlap the standby's by that moment only.
        assert!(overlapping <= 1, "{conns:?}");
    }
    eprintln!(
        "stream leader killed: {} events, all delivered; more than once: rabbitmq {rabbit_twice}, kafka {kafka_twice}",
        expected.len()
    );
    emu.shutdown().await;
    relay_testkit::delete_fleet_buckets(store, &format!("e2e-{u}")).await;
}

/// Emits `n` XAA likes of the first three users, each with its own ids and its event time
/// now (the stream's position moves), and keeps their bodies in `bodies`;
/// `stamp` makes the ids the test's own.
fn emit_likes_now(
    emu: &x_emulator::EmulatorHandle,
    stamp: i64,
    n: usize,
    bodies: &mut Vec<serde_json::Value>,
) {
    let users: Vec<String> = support::user_ids(emu, 3);
    for _ in 0..n {
        let i = bodies.len();
        let tweet = format!("{stamp}{i:05}");
        let b = xaa_like_at(&users[i % users.len()], &tweet, chrono::Utc::now());
        emu.emit(b.clone());
        bodies.push(b);
    }
}

/// Whether the member leads the stream `main` (its `cluster_leader` gauge).
async fn leading(r: &Relay) -> f64 {
    r.metric("activity_relay_cluster_leader", &[("job", "stream:main")])
        .await
}

/// Moves the `[[streams]]` table (inserted before the webhook's apps) to the end of the
/// file's tables before `[[sinks]]`, where TOML sees it as its own table.
fn reorder_stream(cfg: &str) -> String {
    let start = cfg.find("[[streams]]").expect("stream");
    let end = cfg[start..]
        .find("\n\n")
        .map_or(cfg.len(), |e| start + e + 2);
    let stream = &cfg[start..end];
    let rest = format!("{}{}", &cfg[..start], &cfg[end..]);
    let at = rest.find("[[sinks]]").expect("sinks");
    format!("{}{}\n{}", &rest[..at], stream, &rest[at..])
}

/// The stream's leader cut off from the store (a cuttable proxy between it and Redis): it
/// cannot renew its lease, so it drops the stream before the lease can expire, and the
/// standby takes it over once it has: the two members never both hold the stream for longer
/// than the lease, and nothing X emitted is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_store_hands_the_stream_over_in_time() {
    let kafka = relay_testkit::kafka_bootstrap()
        .expect("RELAY_TEST_KAFKA_BOOTSTRAP is not set: `source scripts/brokers` first");
    let u = relay_testkit::unique();
    // The queue must exist before the relays publish (mandatory publishes).
    let _queue = AmqpQueue::bind(&format!("fleet.{u}")).await;
    let emu = fleet_x(EmulatorConfig::default()).await;
    let (redis_url, redis_addr) = (redis_store(), redis_store_addr());
    let lease = Duration::from_secs(2);
    // Each member reaches the store through its own proxy.
    let mut proxies = Vec::new();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut relays = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let proxy = relay_testkit::TcpProxy::start(redis_addr).await;
        let cfg = config(&u, &kafka, i)
            .replace(&redis_url, &format!("redis://{}/0", proxy.addr()))
            .replace(
                "[cluster]\n",
                "[cluster]\nlease = \"2s\"\ntimeout = \"300ms\"\npending_ttl = \"5s\"\n",
            );
        relays.push(Relay::start(dir.path(), &stream_on(&cfg, &emu)).await);
        proxies.push(proxy);
    }
    let leader = one_stream_leader(&relays, &emu).await;
    let stamp = chrono::Utc::now().timestamp_micros();
    let mut bodies = Vec::new();
    let emit =
        |n: usize, bodies: &mut Vec<serde_json::Value>| emit_likes_now(&emu, stamp, n, bodies);
    emit(50, &mut bodies);
    // The leader loses the store.
    proxies[leader].cut().await;
    let standby = 1 - leader;
    let guard = tokio::time::Instant::now() + Duration::from_secs(30);
    while leading(&relays[standby]).await < 1.0 {
        emit(1, &mut bodies);
        assert!(
            tokio::time::Instant::now() < guard,
            "the standby never took over:\n{}",
            relays[standby].log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        leading(&relays[leader]).await,
        0.0,
        "the cut-off leader stepped down"
    );
    emit(50, &mut bodies);
    proxies[leader].restore().await;

    // Never both on the stream for longer than the lease.
    let conns: Vec<_> = emu
        .connections()
        .into_iter()
        .filter(|c| c.outcome == "connected")
        .collect();
    for a in &conns {
        for b in conns.iter().filter(|b| b.id > a.id) {
            let a_end = a.ended_at.unwrap_or_else(chrono::Utc::now);
            let overlap = (a_end - b.at).num_milliseconds();
            assert!(
                overlap < lease.as_millis() as i64,
                "connections {} and {} overlapped for {overlap} ms: {conns:?}",
                a.id,
                b.id
            );
        }
    }

    let mut expected = BTreeMap::new();
    for b in &bodies {
        for env in normalize_value(b, IngressKind::Stream) {
            expected.insert(env.id.clone(), env);
        }
    }
    wait_fleet_drained(&relays).await;
    let got = nats_read_all(
        &format!("FLEET_{u}"),
        expected.len(),
        Duration::from_secs(3),
        Duration::from_secs(90),
    )
    .await;
    assert_once("nats", &expected, &got);
    eprintln!(
        "leader cut off from the store: {} events, all once at NATS; {} stream connections, none overlapping for a lease",
        expected.len(),
        conns.len()
    );
    emu.shutdown().await;
}

/// The store unreachable under load (a cuttable proxy between both members and Redis), with
/// `on_store_error = "accept"`: deliveries go on, each member spools what the store could
/// not vouch for and counts it; nothing is lost, and an id repeats only among those
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_down_under_load_loses_nothing_and_counts_what_it_could_not_verify() {
    let kafka = relay_testkit::kafka_bootstrap()
        .expect("RELAY_TEST_KAFKA_BOOTSTRAP is not set: `source scripts/brokers` first");
    let u = relay_testkit::unique();
    let queue = AmqpQueue::bind(&format!("fleet.{u}")).await;
    let (redis_url, redis_addr) = (redis_store(), redis_store_addr());
    let store = relay_testkit::TcpProxy::start(redis_addr).await;
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut relays = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let cfg = config(&u, &kafka, i)
            .replace(&redis_url, &format!("redis://{}/0", store.addr()))
            .replace("[cluster]\n", "[cluster]\ntimeout = \"300ms\"\n");
        relays.push(Relay::start(dir.path(), &cfg).await);
    }
    let proxy = Proxy::start(relays.iter().map(|r| r.webhook).collect()).await;
    let emu = fleet_x(scaled_x(0.01)).await;
    let webhook = emu
        .register_webhook("demo", &format!("http://{}/webhooks/demo", proxy.addr))
        .await
        .expect("CRC through the proxy");
    for user in &emu.config().users {
        emu.subscribe("demo", &webhook.id, &user.user_id).unwrap();
    }
    let gen = |seed: u64| GeneratorConfig {
        cycle: true,
        duplicate_rate: 0.15,
        batch_rate: 0.2,
        seed: Some(seed),
        ..GeneratorConfig::default()
    };
    let mut emitted = emu.generate(&gen(11), 150);
    store.cut().await;
    emitted.extend(emu.generate(&gen(12), 150));
    let _ = wait_deliveries_settled(&emu, &emitted, Duration::from_secs(180)).await;
    store.restore().await;
    emitted.extend(emu.generate(&gen(13), 150));
    let sent = wait_deliveries_settled(&emu, &emitted, Duration::from_secs(180)).await;
    let given_up: Vec<u64> = sent
        .iter()
        .filter(|e| !e.deliveries.is_empty() && !delivered(e))
        .map(|e| e.seq)
        .collect();
    assert!(given_up.is_empty(), "X gave up on {given_up:?}");

    let expected = expected(&sent);
    wait_fleet_drained(&relays).await;
    let mut unverified = 0.0;
    for r in &relays {
        unverified += r
            .metric(
                "activity_relay_cluster_unverified_total",
                &[("reason", "store_error")],
            )
            .await;
    }
    assert!(unverified > 0.0, "the outage was not counted");
    let quiet = Duration::from_secs(2);
    let max = Duration::from_secs(60);
    let (rabbit_twice, kafka_twice) = read_back(&u, &kafka, &queue, &expected, quiet, max).await;
    for (broker, twice) in [("rabbitmq", rabbit_twice), ("kafka", kafka_twice)] {
        assert!(
            twice as f64 <= unverified,
            "{broker}: {twice} ids more than once, beyond the {unverified} spooled unverified"
        );
    }
    eprintln!(
        "store down under load: {} ids, none lost; {unverified} spooled unverified; more than once: rabbitmq {rabbit_twice}, kafka {kafka_twice}",
        expected.len()
    );
    emu.shutdown().await;
}

/// A member that leaves the fleet for good (scaled in) while its NATS is unreachable: it
/// stops with records on its volume. The other member sees them in
/// `activity_relay_cluster_spool_left_records{member}` (the alert's metric), and
/// `activity-relay drain`, run on the departed volume as the Kubernetes Job does, delivers
/// every one of them once NATS is back, exits 0 and clears the report; before that, it
/// refuses a directory that holds no spool (exit 2) and gives up with records left (exit 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_departed_members_spool_is_seen_by_the_fleet_and_drained() {
    let kafka = relay_testkit::kafka_bootstrap()
        .expect("RELAY_TEST_KAFKA_BOOTSTRAP is not set: `source scripts/brokers` first");
    let u = relay_testkit::unique();
    // RabbitMQ routes to a queue (an exchange without one returns every message).
    let _queue = AmqpQueue::bind(&format!("fleet.{u}")).await;
    let nats = relay_testkit::TcpProxy::start(relay_testkit::nats_addr()).await;
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut relays = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let mut cfg = config(&u, &kafka, i)
            .replace("shutdown_timeout = \"10s\"", "shutdown_timeout = \"2s\"")
            .replace(
                "[dispatch]",
                "[recovery]\nenabled = false\nliveness_interval = \"500ms\"\n\n[dispatch]",
            );
        if i == 1 {
            // The leaving member reaches NATS through a proxy this test cuts.
            cfg = cfg.replace(
                &relay_testkit::nats_url(),
                &format!("nats://{}", nats.addr()),
            );
        }
        relays.push(Relay::start(dir.path(), &cfg).await);
    }
    let emu = fleet_x(scaled_x(0.01)).await;
    // X delivers to the member that will leave.
    let webhook = emu
        .register_webhook("demo", &relays[1].webhook_url("demo"))
        .await
        .expect("CRC");
    for user in &emu.config().users {
        emu.subscribe("demo", &webhook.id, &user.user_id).unwrap();
    }
    nats.cut().await;
    let gen = GeneratorConfig {
        cycle: true,
        seed: Some(21),
        ..GeneratorConfig::default()
    };
    let emitted = emu.generate(&gen, 60);
    let sent = wait_deliveries_settled(&emu, &emitted, Duration::from_secs(120)).await;
    let given_up: Vec<u64> = sent
        .iter()
        .filter(|e| !e.deliveries.is_empty() && !delivered(e))
        .map(|e| e.seq)
        .collect();
    assert!(given_up.is_empty(), "X gave up on {given_up:?}");
    let expected = expected(&sent);
    assert!(
        relays[1]
            .wait_drained(&["kafka", "rabbitmq"], Duration::from_secs(60))
            .await,
        "{}",
        relays[1].log()
    );
    // Scaled in: SIGTERM, its 2 s of shutdown cannot reach NATS.
    relays[1].terminate();
    let left = relays[0]
        .wait_metric(
            "activity_relay_cluster_spool_left_records",
            &[("member", "m1")],
            1.0,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(left as usize, expected.len(), "{}", relays[0].log());

    // `activity-relay drain` on the departed volume, as the Job runs it.
    let drain = |spool: std::path::PathBuf, timeout: &'static str| {
        let (config, log) = (relays[1].config.clone(), dirs[1].path().join("drain.log"));
        async move {
            tokio::task::spawn_blocking(move || {
                let out = std::fs::File::create(&log).unwrap();
                let status = std::process::Command::new(relay_bin())
                    .args(["drain", "--timeout", timeout, "--config"])
                    .arg(&config)
                    .arg("--spool-dir")
                    .arg(&spool)
                    .stdout(out.try_clone().unwrap())
                    .stderr(out)
                    .status()
                    .unwrap();
                (status, std::fs::read_to_string(&log).unwrap_or_default())
            })
            .await
            .unwrap()
        }
    };
    // A directory one level off holds no spool: refused, the report stays.
    let (status, log) = drain(dirs[1].path().to_path_buf(), "5s").await;
    assert_eq!(status.code(), Some(2), "{log}");
    assert!(log.contains("no spool at"), "{log}");
    // NATS still cut: the drain gives up with the records left, and says so.
    let (status, log) = drain(dirs[1].path().join("spool"), "2s").await;
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("still unconfirmed"), "{log}");
    // NATS back: every record delivered, exit 0.
    nats.restore().await;
    let (status, drain_log) = drain(dirs[1].path().join("spool"), "60s").await;
    assert!(status.success(), "drain failed ({status}):\n{drain_log}");
    let got = nats_read_all(
        &format!("FLEET_{u}"),
        expected.len(),
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    assert_once("nats", &expected, &got);
    // The report is gone: the fleet no longer shows the member.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while relays[0]
        .metric(
            "activity_relay_cluster_spool_left_records",
            &[("member", "m1")],
        )
        .await
        > 0.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "still reported after the drain:\n{}",
            relays[0].log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "departed member: {} records left, seen by the fleet, drained: each once at NATS",
        expected.len()
    );
    emu.shutdown().await;
}
