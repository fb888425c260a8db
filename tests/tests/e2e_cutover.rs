//! X's AAA-to-XAA cutover played through the real relay binary into Kafka (tansu), NATS
//! JetStream and RabbitMQ: first AAA only, then both formats at once (X delivering every
//! event once per format), then XAA only; under load, with X's plain duplicates in the
//! first and last phases. Then the operator switches the webhook to `formats = ["xaa"]`
//! and a late AAA delivery is kept as a dead letter.
//!
//! Every event whose formats share an X id (posts, deletes, likes, DMs) must reach each
//! broker exactly once. Those that share none (follow, block, mute, typing, read receipts,
//! revoke) arrive once per format with two ids during the overlap: they are counted here
//! and documented (docs/migration.md).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use relay_envelope::{Envelope, IngressKind};
use support::*;
use x_emulator::config::Cutover;
use x_emulator::{AttemptOutcome, Emulator, Format, GeneratorConfig, SentEvent};

fn config(u: &str, kafka: &str, formats: &str) -> String {
    r#"
shutdown_timeout = "10s"

[spool]
dir = "{dir}/spool"

[admin]
listen = "{admin}"

[log]
format = "json"
level = "info"

[dispatch]
batch_size = 128
initial_backoff = "50ms"
max_backoff = "2s"

[webhook]
listen = "{webhook}"

[[webhook.apps]]
name = "demo"
consumer_secrets = ["emulator-consumer-secret"]
formats = FORMATS

"#
    .replace("FORMATS", formats)
        + &broker_sinks("cut", u, kafka, None)
}

/// Types whose AAA and XAA copies share no X id: one event, two envelopes.
const NO_SHARED_ID: &[&str] = &[
    "follow.follow",
    "follow.unfollow",
    "block.block",
    "block.unblock",
    "mute.mute",
    "mute.unmute",
    "dm.indicate_typing",
    "dm.read",
    "oauth.revoke",
    // AAA's `spaces_events` has no XAA twin (XAA has spaces.start/end instead).
    "spaces.event",
];

fn delivered(e: &SentEvent) -> bool {
    e.deliveries
        .iter()
        .any(|d| d.outcome == AttemptOutcome::Delivered)
}

/// Envelopes of the bodies X delivered with a 2xx, by id, keeping the first copy.
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

/// Every expected id exactly once, with its type.
fn assert_once(broker: &str, expected: &BTreeMap<String, Envelope>, got: &[Received]) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in got {
        *counts.entry(r.id()).or_default() += 1;
    }
    let ids: BTreeSet<&str> = expected.keys().map(String::as_str).collect();
    let got_ids: BTreeSet<&str> = counts.keys().copied().collect();
    let missing: Vec<_> = ids.difference(&got_ids).take(5).collect();
    let extra: Vec<_> = got_ids.difference(&ids).take(5).collect();
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(missing.is_empty(), "{broker}: missing {missing:?}");
    assert!(extra.is_empty(), "{broker}: unexpected {extra:?}");
    assert!(twice.is_empty(), "{broker}: more than once {twice:?}");
    for r in got {
        assert_eq!(
            r.envelope["type"],
            expected[r.id()].event_type.as_str(),
            "{broker}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cutover_played_through_delivers_every_shared_id_event_once() {
    let kafka = relay_testkit::kafka_bootstrap()
        .expect("RELAY_TEST_KAFKA_BOOTSTRAP is not set: `source scripts/brokers` first");
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    let queue = AmqpQueue::bind(&format!("cut.{u}")).await;
    let mut relay = Relay::start(tmp.path(), &config(&u, &kafka, r#"["aaa", "xaa"]"#)).await;
    let emu = Emulator::start(scaled_x(0.01)).await.unwrap();
    let webhook = emu
        .register_webhook("demo", &relay.webhook_url("demo"))
        .await
        .expect("CRC");
    // Every configured user subscribed in both products, to this webhook.
    subscribe_users_in_both_formats(&emu, &webhook.id).await;

    // The three phases, 250 logical events each, all in flight at once.
    let mut emitted = Vec::new();
    let mut phase_of: BTreeMap<u64, Cutover> = BTreeMap::new();
    for (i, phase) in [Cutover::Aaa, Cutover::Both, Cutover::Xaa]
        .into_iter()
        .enumerate()
    {
        let gen = GeneratorConfig {
            cycle: true,
            cutover: phase,
            // Plain re-sends in the single-format phases; none in the overlap, so that
            // every duplicate there is a cross-format one and can be counted exactly.
            duplicate_rate: if phase == Cutover::Both { 0.0 } else { 0.1 },
            batch_rate: 0.2,
            seed: Some(40 + i as u64),
            ..GeneratorConfig::default()
        };
        let out = emu.generate(&gen, 250);
        for e in &out {
            phase_of.insert(e.seq, phase);
        }
        emitted.extend(out);
    }
    let sent = wait_deliveries_settled(&emu, &emitted, Duration::from_secs(180)).await;
    let never: Vec<u64> = sent
        .iter()
        .filter(|e| !e.deliveries.is_empty() && !delivered(e))
        .map(|e| e.seq)
        .collect();
    assert!(
        never.is_empty(),
        "never accepted: {never:?}\n{}",
        relay.log()
    );
    let in_phase = |p: Cutover| -> Vec<&SentEvent> {
        sent.iter()
            .filter(|e| phase_of.get(&e.seq) == Some(&p) && delivered(e))
            .collect()
    };
    // What X sent in each phase.
    let formats_of =
        |p: Cutover| -> BTreeSet<Format> { in_phase(p).iter().map(|e| e.format).collect() };
    assert_eq!(formats_of(Cutover::Aaa), BTreeSet::from([Format::Aaa]));
    assert_eq!(
        formats_of(Cutover::Both),
        BTreeSet::from([Format::Aaa, Format::Xaa])
    );
    assert_eq!(formats_of(Cutover::Xaa), BTreeSet::from([Format::Xaa]));

    // The overlap: each AAA envelope's twin, by id.
    let mut overlap: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for e in in_phase(Cutover::Both) {
        for env in normalize_value(e.body.as_ref().unwrap(), IngressKind::Webhook) {
            let slot = overlap.entry(env.id).or_default();
            match e.format {
                Format::Aaa => slot.0 += 1,
                _ => slot.1 += 1,
            }
        }
    }
    let shared: usize = overlap.values().filter(|(a, x)| *a == 1 && *x == 1).count();
    let unshared: usize = overlap.values().filter(|(a, x)| *a + *x == 1).count();
    assert!(shared > 100, "only {shared} shared-id twins");
    // Every id seen in the overlap is either a pair (one per format) or a one-format event
    // of a type without a shared id; nothing else.
    for (id, (a, x)) in &overlap {
        let ty = id.split(':').nth(1).unwrap_or("");
        assert!(
            (*a == 1 && *x == 1) || NO_SHARED_ID.contains(&ty),
            "{id}: {a} AAA and {x} XAA copies"
        );
    }

    let expected = expected(&sent);
    assert!(
        relay
            .wait_drained(&["kafka", "nats", "rabbitmq"], Duration::from_secs(120))
            .await,
        "sinks did not drain:\n{}",
        relay.log()
    );
    let quiet = Duration::from_secs(2);
    let max = Duration::from_secs(60);
    let got = nats_read_all(&format!("CUT_{u}"), expected.len(), quiet, max).await;
    assert_once("nats", &expected, &got);
    let got = queue.read_all(expected.len(), quiet, max).await;
    assert_once("rabbitmq", &expected, &got);
    let prefix = format!("cut{u}.");
    let got = tokio::task::spawn_blocking({
        let (kafka, prefix, n) = (kafka.clone(), prefix.clone(), expected.len());
        move || kafka_read_all(&kafka, &prefix, n, quiet, max)
    })
    .await
    .unwrap();
    assert_once("kafka", &expected, &got);

    // The relay saw the switch: both formats came in, and every shared-id twin's second
    // copy was dropped as a cross-format duplicate.
    let aaa_in = relay
        .metric("activity_relay_events_in_total", &[("format", "aaa")])
        .await;
    let xaa_in = relay
        .metric("activity_relay_events_in_total", &[("format", "xaa")])
        .await;
    let cross = relay
        .metric("activity_relay_cross_format_duplicates_total", &[])
        .await;
    assert!(aaa_in > 0.0 && xaa_in > 0.0);
    assert_eq!(
        cross as usize, shared,
        "one cross-format duplicate per shared-id twin"
    );
    eprintln!(
        "cutover: {} unique events at each broker; overlap: {shared} twins published once, \
         {unshared} one-format envelopes of types without a shared id (each event twice, \
         with two ids); events in: {aaa_in} aaa, {xaa_in} xaa",
        expected.len()
    );

    // After the cutover the operator takes XAA only; a late AAA delivery is kept, not lost.
    relay.terminate();
    std::fs::write(
        &relay.config,
        std::fs::read_to_string(&relay.config)
            .unwrap()
            .replace(r#"formats = ["aaa", "xaa"]"#, r#"formats = ["xaa"]"#),
    )
    .unwrap();
    relay.spawn().await;
    let late = emu.emit(fixture_bodies("aaa").remove(0));
    let xaa = emu.emit(fixture_bodies("xaa").remove(0));
    let sent = wait_deliveries_settled(&emu, &[late, xaa], Duration::from_secs(60)).await;
    assert!(sent.iter().rev().take(2).all(delivered), "2xx for both");
    assert_eq!(
        relay
            .metric(
                "activity_relay_dead_letters_total",
                &[("reason", "format_not_accepted")]
            )
            .await,
        1.0
    );
    emu.shutdown().await;
}
