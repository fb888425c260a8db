//! Automatic gap recovery, end to end: the real relay binary, X as an in-process emulator,
//! NATS JetStream as the sink.
//!
//! The relay is stopped (SIGTERM) while X keeps producing: deliveries fail and X gives up
//! after its retries. To stay within X's replay date rules (a window must end at least 10
//! minutes ago and start at least 31 minutes ago) without waiting half an hour, the gap is
//! placed in the past: the relay's liveness record is rewritten to 3 h ago and the missed
//! events are recorded by the emulator at times inside that window (`emit_at`), while the
//! relay is down so that their live deliveries fail. Restarted with `[recovery]` enabled and
//! pointed at the emulator, the relay replays the gap one job at a time (the first job ends
//! `Incomplete` and is retried), and every event reaches NATS exactly once.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use support::*;
use x_emulator::{AttemptOutcome, Emitted, Emulator, EmulatorConfig};

fn config(u: &str) -> String {
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
initial_backoff = "50ms"
max_backoff = "1s"

[webhook]
listen = "{webhook}"

[[webhook.apps]]
name = "demo"
consumer_secrets = ["emulator-consumer-secret"]

[[sinks]]
name = "nats"
type = "nats"
url = "NATS"
subject = "gapUNIQ.{subject}.{type}"
deadletter_subject = "gapUNIQ.deadletter"
ack_timeout = "2s"

[sinks.stream]
name = "GAP_UNIQ"
subjects = ["gapUNIQ.>"]
"#
    .replace("UNIQ", u)
    .replace("NATS", &relay_testkit::nats_url())
}

/// `[recovery]` pointed at the emulator.
fn recovery(base_url: &str, webhook_id: &str) -> String {
    format!(
        r#"
[recovery]
enabled = true
base_url = "{base_url}"
bearer_token = "${{GAP_TEST_BEARER:-emulator-bearer}}"
consumer_key = "emulator-consumer-key"
consumer_secret = "${{GAP_TEST_CONSUMER_SECRET:-emulator-consumer-secret}}"
webhook_id = "{webhook_id}"
min_gap = "30s"
max_attempts = 3
retry_delay = "1s"
job_timeout = "60s"
safety_margin = "2m"
liveness_interval = "1s"
"#
    )
}

/// Every envelope of `expected` arrives at the test's NATS stream exactly once, on its
/// subject (read until all arrived and 3 s passed without more, or `max`).
async fn assert_once_at_nats(
    u: &str,
    expected: &BTreeMap<String, relay_envelope::Envelope>,
    max: Duration,
) {
    let got = nats_read_all(
        &format!("GAP_{u}"),
        expected.len(),
        Duration::from_secs(3),
        max,
    )
    .await;
    assert_exactly_once("nats", expected, &got, |e| {
        format!("gap{u}.{}.{}", e.subject, e.event_type)
    });
}

/// [`config`] without the webhook, with a `[[streams]]` "main" reading `emu`'s stream.
fn stream_config(u: &str, emu: &x_emulator::EmulatorHandle, idle_timeout: &str) -> String {
    let base = config(u);
    let (head, sinks) = base.split_once("[webhook]").expect("webhook section");
    let sinks = &sinks[sinks.find("[[sinks]]").expect("sinks")..];
    format!(
        r#"{head}
[[streams]]
name = "main"
url = "{}/2/activity/stream"
bearer_token = "emulator-bearer"
idle_timeout = "{idle_timeout}"

{sinks}"#,
        emu.base_url()
    )
}

/// X after the cutover (AAA retired, XAA webhook and stream), its retries scaled down to
/// milliseconds, with `faults` on its stream.
async fn xaa_only_x(faults: x_emulator::StreamFaults) -> x_emulator::EmulatorHandle {
    Emulator::start(EmulatorConfig {
        recrc_interval_secs: 0.0,
        aaa_retired: true,
        stream: x_emulator::StreamConfig {
            heartbeat_ms: Some(200),
            faults,
            ..x_emulator::StreamConfig::default()
        },
        ..scaled_x(0.001)
    })
    .await
    .unwrap()
}

/// [`config`] with its app taking XAA only, and `[recovery]` re-reading gaps from `emu`'s
/// stream.
fn xaa_recovery_config(u: &str, emu: &x_emulator::EmulatorHandle) -> String {
    let base = config(u).replace(
        "consumer_secrets = [\"emulator-consumer-secret\"]",
        "consumer_secrets = [\"emulator-consumer-secret\"]\nformats = [\"xaa\"]",
    );
    format!(
        r#"{base}
[recovery]
enabled = true
base_url = "{}"
bearer_token = "emulator-bearer"
min_gap = "30s"
max_attempts = 3
retry_delay = "1s"
safety_margin = "2m"
liveness_interval = "1s"
"#,
        emu.base_url()
    )
}

/// A like for `user` with its own favorite id (the envelope id comes from it).
fn like(user: &str, id: &str) -> Value {
    let mut v: Value = serde_json::from_slice(
        &std::fs::read(fixtures_dir().join("aaa/favorite.json")).expect("favorite fixture"),
    )
    .expect("json");
    v["for_user_id"] = Value::String(user.to_string());
    v["favorite_events"][0]["id"] = Value::String(id.to_string());
    v
}

/// Registers the relay's webhook for app `demo`; returns it and the first three users.
async fn register_with_users(
    emu: &x_emulator::EmulatorHandle,
    relay: &Relay,
) -> (x_emulator::Webhook, Vec<String>) {
    let hook = emu
        .register_webhook("demo", &relay.webhook_url("demo"))
        .await
        .expect("CRC");
    let users = support::user_ids(emu, 3);
    (hook, users)
}

/// `activity_relay_replay_jobs_total{outcome}`.
async fn jobs_metric(relay: &Relay, outcome: &str) -> f64 {
    relay
        .metric("activity_relay_replay_jobs_total", &[("outcome", outcome)])
        .await
}

/// Rewrites the liveness record: the webhook (or a stream) was last alive at `at`.
fn write_liveness(path: &std::path::Path, key: &str, at: DateTime<Utc>) {
    std::fs::write(
        path,
        serde_json::to_vec(&serde_json::json!({
            "version": 1,
            "alive_until": {key: at.to_rfc3339()},
        }))
        .unwrap(),
    )
    .unwrap();
}

/// X's record, once the status of each of `jobs` replay jobs was delivered (a job is
/// recorded finished just before its status event is sent); panics at `guard`.
async fn sent_once_statuses_delivered(
    emu: &x_emulator::EmulatorHandle,
    jobs: usize,
    guard: tokio::time::Instant,
) -> Vec<x_emulator::SentEvent> {
    loop {
        let sent = emu.sent_with_bodies();
        let delivered_statuses = sent
            .iter()
            .filter(|e| e.key == "replay_job_status")
            .filter(|e| {
                e.deliveries
                    .iter()
                    .any(|d| d.outcome == AttemptOutcome::Delivered)
            })
            .count();
        if delivered_statuses >= jobs {
            return sent;
        }
        assert!(
            tokio::time::Instant::now() < guard,
            "statuses not delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every missed event was delivered again by a replay job.
fn assert_replayed(missed: &[Emitted], sent: &[x_emulator::SentEvent]) {
    for m in missed {
        let e = sent.iter().find(|e| e.seq == m.seq).expect("recorded");
        assert!(
            e.deliveries
                .iter()
                .any(|d| d.outcome == AttemptOutcome::Delivered && d.replay_job_id.is_some()),
            "missed event {} not re-delivered by a replay: {e:?}",
            m.seq
        );
    }
}

fn parse_time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("rfc3339")
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_gap_is_replayed_one_job_at_a_time_and_lands_exactly_once() {
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    // Retries after 3 ms, 27 ms, 242 ms: X gives up quickly on a relay that is down. No
    // periodic re-CRC (a CRC failing while the relay is down would disable the webhook).
    let emu = Emulator::start(EmulatorConfig {
        recrc_interval_secs: 0.0,
        ..scaled_x(0.001)
    })
    .await
    .unwrap();
    let mut relay = Relay::start(tmp.path(), &config(&u)).await;
    let (hook, users) = register_with_users(&emu, &relay).await;
    for user in &users {
        emu.subscribe("demo", &hook.id, user).expect("subscribe");
    }

    // Live, before the outage.
    let mut emitted: Vec<Emitted> = Vec::new();
    for i in 0..5 {
        emitted.push(emu.emit(like(&users[i % users.len()], &format!("live-{u}-{i}"))));
    }
    wait_deliveries_settled(&emu, &emitted, Duration::from_secs(30)).await;
    assert_eq!(relay.terminate(), Some(0), "{}", relay.log());
    let liveness_path = tmp.path().join("spool/liveness.json");
    let recorded: Value =
        serde_json::from_slice(&std::fs::read(&liveness_path).expect("liveness record"))
            .expect("liveness json");
    let at_stop = parse_time(
        recorded["alive_until"]["webhook"]
            .as_str()
            .expect("webhook"),
    );
    assert!(at_stop <= Utc::now(), "{recorded}");

    // The outage, placed 3 h in the past. Missed events inside it, emitted now (the relay
    // is down: every live attempt fails and X gives up).
    let now = Utc::now();
    let last_alive = now - chrono::Duration::hours(3);
    write_liveness(&liveness_path, "webhook", last_alive);
    let offsets_min = [1, 30, 95, 110, 125, 150, 165];
    let mut missed: Vec<Emitted> = Vec::new();
    for (i, m) in offsets_min.iter().enumerate() {
        let at = last_alive + chrono::Duration::minutes(*m);
        let user = &users[i % users.len()];
        missed.push(emu.emit_at(like(user, &format!("missed-{u}-{i}")), at));
    }
    let sent = wait_deliveries_settled(&emu, &missed, Duration::from_secs(30)).await;
    for m in &missed {
        let e = sent.iter().find(|e| e.seq == m.seq).expect("recorded");
        assert!(!e.deliveries.is_empty(), "{e:?}");
        assert!(
            e.deliveries
                .iter()
                .all(|d| d.outcome == AttemptOutcome::Failed),
            "a live delivery reached the stopped relay: {e:?}"
        );
    }

    // Restart with recovery enabled. The first replay job X runs ends Incomplete; then X
    // behaves again and the relay retries the window.
    emu.fail_next_replay_jobs(1);
    let mut text = std::fs::read_to_string(&relay.config).unwrap();
    text.push_str(&recovery(&emu.base_url(), &hook.id));
    std::fs::write(&relay.config, text).unwrap();
    relay.spawn().await;

    // Only a guard against hanging forever; nothing is asserted about how long it takes.
    let guard = tokio::time::Instant::now() + Duration::from_secs(300);
    let jobs = loop {
        let jobs = emu.jobs();
        // Windows of the planned gap: [last_alive − 2 min, +2 h), [.., now − 10 min).
        let complete = jobs.iter().filter(|j| j.state == "Complete").count();
        if complete >= 2 {
            break jobs;
        }
        if relay.log().contains("given up") || tokio::time::Instant::now() > guard {
            panic!("recovery did not complete: {jobs:?}\n{}", relay.log());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };

    // One job at a time, every window inside X's rules, retried windows identical.
    let mut by_window: BTreeMap<(DateTime<Utc>, DateTime<Utc>), Vec<&x_emulator::ReplayJob>> =
        BTreeMap::new();
    for j in &jobs {
        assert_eq!(j.webhook_id, hook.id);
        by_window.entry((j.from, j.to)).or_default().push(j);
    }
    assert_eq!(by_window.len(), 2, "two windows: {jobs:?}");
    let windows: Vec<_> = by_window.keys().copied().collect();
    let margin = chrono::Duration::minutes(2);
    let floor = |t: DateTime<Utc>| {
        DateTime::<Utc>::from_timestamp(t.timestamp().div_euclid(60) * 60, 0).unwrap()
    };
    assert_eq!(windows[0].0, floor(last_alive - margin), "{windows:?}");
    assert_eq!(windows[0].1 - windows[0].0, chrono::Duration::hours(2));
    assert_eq!(windows[1].0, windows[0].1, "consecutive windows");
    assert!(windows[1].1 <= Utc::now() - chrono::Duration::minutes(10));
    let first = &by_window[&windows[0]];
    assert_eq!(
        first.len(),
        2,
        "the Incomplete job was retried once: {jobs:?}"
    );
    assert_eq!(first[0].state, "Incomplete");
    assert_eq!(first[1].state, "Complete");
    assert_eq!(by_window[&windows[1]].len(), 1);
    let mut ordered: Vec<&x_emulator::ReplayJob> = jobs.iter().collect();
    ordered.sort_by_key(|j| j.created_at);
    for pair in ordered.windows(2) {
        let done = pair[0].finished_at.expect("finished");
        assert!(
            pair[1].created_at >= done,
            "a job started before the previous one finished: {ordered:?}"
        );
    }

    // Every event, live and missed, exactly once on NATS (the job statuses too: they are
    // events like any other).
    // A job is recorded finished just before its status event is sent: wait until every
    // job's status has been delivered to the relay before taking the emulator's record.
    let sent = sent_once_statuses_delivered(&emu, jobs.len(), guard).await;
    assert_replayed(&missed, &sent);
    let expected = expected_from_deliveries(&sent);
    for m in missed.iter().chain(&emitted) {
        assert!(
            expected.keys().any(|id| id.ends_with(&m.ids[0])),
            "{:?} not expected",
            m.ids
        );
    }
    assert_once_at_nats(&u, &expected, Duration::from_secs(60)).await;
    // The first Incomplete job re-delivered the first window's events, the retry did again:
    // the relay dropped the repeats.
    assert!(relay.metric("activity_relay_duplicates_total", &[]).await > 0.0);

    // The relay counts a job when it learns of its end, after X's status delivery got
    // its 2xx: wait for that (bounded), then every count is final.
    relay
        .wait_metric(
            "activity_relay_replay_jobs_total",
            &[("outcome", "complete")],
            2.0,
            Duration::from_secs(60),
        )
        .await;
    let m = |o: &'static str| jobs_metric(&relay, o);
    assert_eq!(m("started").await, 3.0);
    assert_eq!(m("complete").await, 2.0);
    assert_eq!(m("incomplete").await, 1.0);
    assert_eq!(m("failed").await, 0.0);
    // The last 10 minutes of the gap wait until X allows them: still pending.
    assert!(
        relay
            .metric(
                "activity_relay_recovery_gap_seconds",
                &[("ingress", "webhook")]
            )
            .await
            > 0.0
    );

    // SIGTERM during the wait for the tail: a clean stop, a fresh liveness record, and where
    // the replay stood.
    assert_eq!(relay.terminate(), Some(0), "{}", relay.log());
    let after: Value = serde_json::from_slice(&std::fs::read(&liveness_path).unwrap()).unwrap();
    let t = parse_time(after["alive_until"]["webhook"].as_str().unwrap());
    assert!(t > now, "liveness record refreshed: {after}");
    // The tail not replayed yet is remembered for the next start.
    let pending = parse_time(
        after["replay_pending_from"]["webhook"]
            .as_str()
            .expect("pending replay recorded"),
    );
    assert_eq!(pending, windows[1].1, "{after}");
    emu.shutdown().await;
}

/// `activity-relay x --config relay.toml …`: base URL and Bearer token from `[recovery]`;
/// an environment variable overrides the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_cli_takes_credentials_from_the_relay_config() {
    let emu = Emulator::start(EmulatorConfig {
        recrc_interval_secs: 0.0,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("relay.toml");
    std::fs::write(&path, recovery(&emu.base_url(), "0")).unwrap();
    let run = |envs: &[(&str, &str)]| {
        let mut c = std::process::Command::new(relay_bin());
        c.args(["x", "--config"])
            .arg(&path)
            .args(["subscriptions", "count", "--json"])
            .env_remove("X_BEARER_TOKEN")
            .env_remove("X_API_BASE_URL")
            .env_remove("X_CONSUMER_KEY")
            .env_remove("X_CONSUMER_SECRET");
        for (k, v) in envs {
            c.env(k, v);
        }
        c.output().expect("run activity-relay x")
    };
    let ok = run(&[]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let count = String::from_utf8_lossy(&ok.stdout);
    assert!(
        count.contains(&emu.config().apps[0].account_name),
        "{count}"
    );
    // The environment overrides the file: a wrong token is refused by X.
    let bad = run(&[("X_BEARER_TOKEN", "not-the-token")]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("401") || err.contains("Unauthorized"), "{err}");
    assert!(!err.contains("not-the-token"), "secret printed: {err}");
    // A `${VAR}` of the section is expanded from the environment.
    let via_env = run(&[("GAP_TEST_BEARER", "emulator-bearer")]);
    assert!(via_env.status.success());
    let wrong_env = run(&[("GAP_TEST_BEARER", "wrong")]);
    assert!(!wrong_env.status.success());
    emu.shutdown().await;
}

/// A stream-format like with its own favorite id.
fn stream_like(id: &str) -> Value {
    let mut v: Value = serde_json::from_slice(
        &std::fs::read(fixtures_dir().join("stream/favorite.json")).expect("stream fixture"),
    )
    .expect("json");
    v["favorite_events"][0]["id"] = Value::String(id.to_string());
    v
}

/// A stream down for "2 hours" (its liveness record moved into the past): the first
/// connection after the restart asks for `start_time` = the recorded time less the 2-minute
/// margin, and the events X recorded in between arrive exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_resumes_from_the_recorded_time_after_a_restart() {
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    let emu = Emulator::start(EmulatorConfig {
        recrc_interval_secs: 0.0,
        stream: x_emulator::StreamConfig {
            heartbeat_ms: Some(200),
            include_xaa: false,
            ..x_emulator::StreamConfig::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let mut relay = Relay::start(tmp.path(), &stream_config(&u, &emu, "2s")).await;
    let connected = |n: usize| {
        let emu = &emu;
        async move {
            for _ in 0..300 {
                let c = emu.connections();
                if c.iter()
                    .filter(|c| c.outcome == "connected" && c.ended_at.is_none())
                    .count()
                    >= 1
                    && c.iter().filter(|c| c.outcome == "connected").count() >= n
                {
                    return c;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("the relay did not connect: {:?}", emu.connections());
        }
    };
    let first = connected(1).await;
    assert!(
        !first[0].params.contains_key("start_time")
            && !first[0].params.contains_key("backfill_minutes"),
        "nothing recorded at the first start: {first:?}"
    );
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = format!("slive-{u}-{i}");
        emu.emit(stream_like(&id));
        ids.push(id);
    }
    // Let the live lines be accepted before stopping (bounded: a guard only).
    let guard = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let accepted = relay
            .metric("activity_relay_events_in_total", &[("ingress", "stream")])
            .await;
        if accepted >= 3.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < guard,
            "{accepted} of 3 live lines accepted\n{}",
            relay.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(relay.terminate(), Some(0), "{}", relay.log());
    // The first run may have reconnected (an idle timeout during a stall): the restart's
    // connection is the first one after those.
    let before = emu
        .connections()
        .iter()
        .filter(|c| c.outcome == "connected")
        .count();

    let now = Utc::now();
    let last_alive = now - chrono::Duration::hours(2);
    write_liveness(
        &tmp.path().join("spool/liveness.json"),
        "stream:main",
        last_alive,
    );
    // Recorded during the "outage" (one before it and its 2-minute margin: not asked for).
    emu.emit_at(
        stream_like(&format!("sbefore-{u}")),
        last_alive - chrono::Duration::minutes(3),
    );
    for (i, m) in [5i64, 60, 100].iter().enumerate() {
        let id = format!("smissed-{u}-{i}");
        emu.emit_at(stream_like(&id), last_alive + chrono::Duration::minutes(*m));
        ids.push(id);
    }
    relay.spawn().await;
    let conns = connected(before + 1).await;
    let resumed = conns
        .iter()
        .filter(|c| c.outcome == "connected")
        .nth(before)
        .expect("the restart's connection");
    let start = parse_time(
        resumed
            .params
            .get("start_time")
            .expect("start_time asked for"),
    );
    // The recorded position, less the 2-minute margin.
    let asked = last_alive - chrono::Duration::minutes(2);
    assert!(
        (start - asked).num_seconds().abs() <= 1,
        "start_time {start} vs recorded {last_alive} - 2 min"
    );
    assert!(!resumed.params.contains_key("backfill_minutes"));

    let got = nats_read_all(
        &format!("GAP_{u}"),
        ids.len(),
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for r in &got {
        *counts.entry(r.id().to_string()).or_default() += 1;
    }
    for id in &ids {
        let n = counts
            .iter()
            .filter(|(k, _)| k.ends_with(id.as_str()))
            .map(|(_, n)| *n)
            .sum::<usize>();
        assert_eq!(n, 1, "{id} on NATS {n} times: {counts:?}");
    }
    assert_eq!(
        got.len(),
        ids.len(),
        "nothing else (not the older event): {counts:?}"
    );
    emu.shutdown().await;
}

/// X after the cutover: the webhook takes only XAA, and AAA's replay is never called. A
/// 30-minute outage (its liveness record moved into the past) is recovered by re-reading
/// the gap from the activity stream with `start_time`/`end_time` (the first read is refused
/// with a 503 and retried); the events X gave up delivering arrive exactly once, and the
/// live ones inside the re-read window are not sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xaa_webhook_gap_is_reread_from_the_stream_without_aaa() {
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    let emu = xaa_only_x(x_emulator::StreamFaults {
        fail_503: 1,
        ..Default::default()
    })
    .await;
    let mut relay = Relay::start(tmp.path(), &xaa_recovery_config(&u, &emu)).await;
    let (hook, users) = register_with_users(&emu, &relay).await;
    let stamp = Utc::now().timestamp_micros();
    let body = |i: usize| xaa_like(&users[i % users.len()], &format!("{stamp}{i:03}"));
    subscribe_for(&emu, &hook.id, &(0..12).map(body).collect::<Vec<_>>()).await;
    // AAA is gone: its endpoints answer 410, and X sends no AAA event.
    let aaa = reqwest::Client::new()
        .get(format!(
            "{}/2/account_activity/subscriptions/count",
            emu.base_url()
        ))
        .bearer_auth("emulator-bearer")
        .send()
        .await
        .unwrap();
    assert_eq!(aaa.status().as_u16(), 410);
    // Subscribed in-process (as before the retirement): still nothing is delivered.
    emu.subscribe("demo", &hook.id, &users[0])
        .expect("in-process AAA subscription");
    let aaa_like = emu.emit(like(&users[0], &format!("aaa-{u}")));

    // Live, before the outage (inside the window re-read later: dedup drops them there).
    let live: Vec<Value> = (0..4).map(body).collect();
    let emitted: Vec<Emitted> = live.iter().map(|b| emu.emit(b.clone())).collect();
    let sent = wait_deliveries_settled(&emu, &emitted, Duration::from_secs(30)).await;
    for e in &emitted {
        let s = sent.iter().find(|s| s.seq == e.seq).expect("recorded");
        assert!(
            s.deliveries
                .iter()
                .any(|d| d.outcome == AttemptOutcome::Delivered),
            "live XAA event not delivered: {s:?}"
        );
    }
    let s = sent
        .iter()
        .find(|s| s.seq == aaa_like.seq)
        .expect("recorded");
    assert!(
        s.deliveries.is_empty(),
        "AAA delivered after retirement: {s:?}"
    );
    assert_eq!(relay.terminate(), Some(0), "{}", relay.log());

    // The outage: 30 minutes, placed in the past.
    let liveness_path = tmp.path().join("spool/liveness.json");
    let now = Utc::now();
    let last_alive = now - chrono::Duration::minutes(30);
    write_liveness(&liveness_path, "webhook", last_alive);
    // Before the gap and its safety margin: delivered live back then, not asked for again.
    emu.emit_at(body(11), last_alive - chrono::Duration::minutes(10));
    let missed_bodies: Vec<Value> = (4..10).map(body).collect();
    let mut missed: Vec<Emitted> = Vec::new();
    for (i, b) in missed_bodies.iter().enumerate() {
        let at = last_alive + chrono::Duration::minutes(1 + 5 * i as i64);
        missed.push(emu.emit_at(b.clone(), at));
    }
    let sent = wait_deliveries_settled(&emu, &missed, Duration::from_secs(30)).await;
    for m in &missed {
        let e = sent.iter().find(|e| e.seq == m.seq).expect("recorded");
        assert!(
            !e.deliveries.is_empty()
                && e.deliveries
                    .iter()
                    .all(|d| d.outcome == AttemptOutcome::Failed),
            "a live delivery reached the stopped relay: {e:?}"
        );
    }

    relay.spawn().await;
    let mut expected = BTreeMap::new();
    for b in live.iter().chain(&missed_bodies) {
        for env in normalize_value(b, relay_envelope::IngressKind::Webhook) {
            expected.insert(env.id.clone(), env);
        }
    }
    assert_eq!(expected.len(), 10, "{:?}", expected.keys());
    assert_once_at_nats(&u, &expected, Duration::from_secs(60)).await;

    // Two reads of the window (the first refused), asking for the gap with the margin.
    let reads: Vec<_> = emu
        .connections()
        .into_iter()
        .filter(|c| c.params.contains_key("end_time"))
        .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert_eq!(reads[0].outcome, "unavailable", "{reads:?}");
    let start = parse_time(reads[1].params.get("start_time").expect("start_time"));
    let end = parse_time(reads[1].params.get("end_time").expect("end_time"));
    let margin = chrono::Duration::minutes(2);
    assert!(
        (start - (last_alive - margin)).num_seconds().abs() <= 1,
        "start_time {start} vs {last_alive} - 2 min"
    );
    assert!(
        end >= now && end <= Utc::now() + chrono::Duration::seconds(1),
        "end_time {end}"
    );
    assert!(emu.jobs().is_empty(), "AAA replay called: {:?}", emu.jobs());
    // The read ends after its last line was accepted: wait for the relay to count it
    // (bounded), then every count is final.
    relay
        .wait_metric(
            "activity_relay_replay_jobs_total",
            &[("outcome", "complete")],
            1.0,
            Duration::from_secs(60),
        )
        .await;
    relay
        .wait_metric(
            "activity_relay_duplicates_total",
            &[],
            4.0,
            Duration::from_secs(60),
        )
        .await;
    let m = |o: &'static str| jobs_metric(&relay, o);
    assert_eq!(m("started").await, 2.0);
    assert_eq!(m("incomplete").await, 1.0);
    assert_eq!(m("complete").await, 1.0);
    assert_eq!(m("failed").await, 0.0);
    assert_eq!(
        relay
            .metric(
                "activity_relay_recovery_gap_seconds",
                &[("ingress", "webhook")]
            )
            .await,
        0.0
    );
    assert_eq!(relay.terminate(), Some(0), "{}", relay.log());
    let after: Value = serde_json::from_slice(&std::fs::read(&liveness_path).unwrap()).unwrap();
    assert!(
        after["replay_pending_from"].get("webhook").is_none(),
        "nothing left pending: {after}"
    );
    emu.shutdown().await;
}

/// X closes the recovery read early: an `operational-disconnect` object after 500 lines
/// of a 1,001-event gap. The read is not complete; the error object is not an event; the
/// next read starts from the newest event time the first one accepted (less the margin),
/// and every event of the gap lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_read_x_closes_early_is_read_on_until_its_end() {
    const GAP_EVENTS: usize = 1001;
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    let emu = xaa_only_x(x_emulator::StreamFaults {
        disconnect_after_lines: Some(500),
        rules_for_connections: Some(1),
        ..Default::default()
    })
    .await;
    let mut relay = Relay::start(tmp.path(), &xaa_recovery_config(&u, &emu)).await;
    let (hook, users) = register_with_users(&emu, &relay).await;
    assert_eq!(relay.terminate(), Some(0), "{}", relay.log());

    // The outage: 30 minutes, placed in the past; the gap's events spread over it.
    let liveness_path = tmp.path().join("spool/liveness.json");
    let now = Utc::now();
    let last_alive = now - chrono::Duration::minutes(30);
    write_liveness(&liveness_path, "webhook", last_alive);
    let stamp = Utc::now().timestamp_micros();
    let step_ms = 25 * 60 * 1000 / GAP_EVENTS as i64;
    let at = |i: usize| {
        last_alive
            + chrono::Duration::minutes(1)
            + chrono::Duration::milliseconds(step_ms * i as i64)
    };
    let bodies: Vec<Value> = (0..GAP_EVENTS)
        .map(|i| xaa_like_at(&users[i % users.len()], &format!("{stamp}{i:04}"), at(i)))
        .collect();
    subscribe_for(&emu, &hook.id, &bodies[..users.len()]).await;
    let missed: Vec<Emitted> = bodies
        .iter()
        .enumerate()
        .map(|(i, b)| emu.emit_at(b.clone(), at(i)))
        .collect();
    wait_deliveries_settled(&emu, &missed, Duration::from_secs(120)).await;

    relay.spawn().await;
    let mut expected = BTreeMap::new();
    for b in &bodies {
        for env in normalize_value(b, relay_envelope::IngressKind::Webhook) {
            expected.insert(env.id.clone(), env);
        }
    }
    assert_eq!(expected.len(), GAP_EVENTS);
    assert_once_at_nats(&u, &expected, Duration::from_secs(120)).await;

    // The first read ended by X after 500 lines; the next one started past what it had
    // accepted (less the 2-minute margin), not from the start of the gap again.
    let reads: Vec<_> = emu
        .connections()
        .into_iter()
        .filter(|c| c.params.contains_key("end_time"))
        .collect();
    assert_eq!(reads.len(), 2, "{reads:?}");
    let first = parse_time(reads[0].params.get("start_time").expect("start_time"));
    let second = parse_time(reads[1].params.get("start_time").expect("start_time"));
    let newest_first = at(499);
    assert!(
        second > first && second <= newest_first,
        "second read from {second}: first from {first}, its newest event {newest_first}"
    );
    relay
        .wait_metric(
            "activity_relay_replay_jobs_total",
            &[("outcome", "complete")],
            1.0,
            Duration::from_secs(60),
        )
        .await;
    let m = |o: &'static str| jobs_metric(&relay, o);
    assert_eq!(m("started").await, 2.0);
    assert_eq!(m("incomplete").await, 1.0, "the read X closed early");
    assert_eq!(m("complete").await, 1.0);
    assert_eq!(m("failed").await, 0.0);
    // The disconnect object was no event: nothing dead-lettered.
    assert_eq!(
        relay.metric("activity_relay_dead_letters_total", &[]).await,
        0.0
    );
    assert_eq!(relay.terminate(), Some(0), "{}", relay.log());
    emu.shutdown().await;
}

/// The catch-up after an outage cut short by X: the relay down for "3 minutes" (its
/// liveness record moved back) while X recorded 4,000 events over them; X drops the first
/// connection after 1,500 lines of the backlog. The reconnect asks for the gap from where
/// the catch-up was in X's time (the newest event accepted, less the margin), not from when
/// the relay last read a line: every event arrives exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_catch_up_cut_short_resumes_where_it_was_cut() {
    const MISSED: usize = 4000;
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    let emu = Emulator::start(EmulatorConfig {
        recrc_interval_secs: 0.0,
        stream: x_emulator::StreamConfig {
            heartbeat_ms: Some(200),
            ..x_emulator::StreamConfig::default()
        },
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let mut relay = Relay::start(tmp.path(), &stream_config(&u, &emu, "10s")).await;
    let guard = tokio::time::Instant::now() + Duration::from_secs(60);
    while !emu
        .connections()
        .iter()
        .any(|c| c.outcome == "connected" && c.ended_at.is_none())
    {
        assert!(tokio::time::Instant::now() < guard, "never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(relay.terminate(), Some(0), "{}", relay.log());
    let before = emu.connections().len();

    // The outage: 3 minutes, placed in the past; X recorded the events over it.
    let now = Utc::now();
    let last_alive = now - chrono::Duration::minutes(3);
    write_liveness(
        &tmp.path().join("spool/liveness.json"),
        "stream:main",
        last_alive,
    );
    let users: Vec<String> = support::user_ids(&emu, 3);
    let stamp = Utc::now().timestamp_micros();
    let step_ms = 170_000 / MISSED as i64;
    let mut expected = BTreeMap::new();
    for i in 0..MISSED {
        let at = last_alive
            + chrono::Duration::seconds(5)
            + chrono::Duration::milliseconds(step_ms * i as i64);
        let body = xaa_like_at(&users[i % users.len()], &format!("{stamp}{i:05}"), at);
        for env in normalize_value(&body, relay_envelope::IngressKind::Stream) {
            expected.insert(env.id.clone(), env);
        }
        emu.emit_at(body, at);
    }
    assert_eq!(expected.len(), MISSED);
    // X drops the next connection (the catch-up) after 1,500 lines; later ones are whole.
    emu.stream_fault(x_emulator::StreamFault::Configure(
        x_emulator::StreamFaults {
            drop_after_lines: Some(1500),
            rules_for_connections: Some(1),
            ..Default::default()
        },
    ));

    relay.spawn().await;
    assert_once_at_nats(&u, &expected, Duration::from_secs(180)).await;
    // The catch-up was cut, and the next connection asked for the gap from where it was
    // cut in X's time (the 1,500th event), not for the minute before it reconnected.
    let conns: Vec<_> = emu.connections().into_iter().skip(before).collect();
    let connected: Vec<_> = conns.iter().filter(|c| c.outcome == "connected").collect();
    assert!(connected.len() >= 2, "{conns:?}");
    assert_eq!(connected[0].lines_sent, 1500, "{conns:?}");
    let again = connected[1];
    let asked_from = match (
        again.params.get("start_time"),
        again.params.get("backfill_minutes"),
    ) {
        (Some(t), _) => parse_time(t),
        (None, Some(m)) => again.at - chrono::Duration::minutes(m.parse::<i64>().unwrap()),
        (None, None) => panic!("the reconnect asked for no gap: {conns:?}"),
    };
    let cut =
        last_alive + chrono::Duration::seconds(5) + chrono::Duration::milliseconds(step_ms * 1499);
    assert!(
        asked_from <= cut,
        "the reconnect asked from {asked_from}, after the cut at {cut}: {conns:?}"
    );
    assert_eq!(relay.terminate(), Some(0), "{}", relay.log());
    emu.shutdown().await;
}

/// The webhook refuses deliveries while running (its spool full: the broker is down) for
/// longer than X keeps retrying, so X gives up on some. Without a restart, once the relay
/// takes deliveries again, it recovers that interval (widened by the safety margin) from
/// the activity stream: every event X emitted reaches NATS exactly once, and the window is
/// counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_x_gave_up_on_while_the_spool_was_full_are_recovered_in_run() {
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    // Retries after 3 ms, 27 ms, 242 ms: X gives up quickly on a relay that refuses.
    let emu = xaa_only_x(x_emulator::StreamFaults::default()).await;
    let proxy = relay_testkit::TcpProxy::start(relay_testkit::nats_addr()).await;
    let config = format!(
        r#"
shutdown_timeout = "10s"

[spool]
dir = "{{dir}}/spool"
max_bytes = 2097152
segment_bytes = 1048576
full_retry_after = "1s"

[admin]
listen = "{{admin}}"
ready_requires_sinks = false

[log]
format = "json"
level = "info"

[dispatch]
initial_backoff = "50ms"
max_backoff = "500ms"

[webhook]
listen = "{{webhook}}"
body_limit = 262144

[[webhook.apps]]
name = "demo"
consumer_secrets = ["emulator-consumer-secret"]
formats = ["xaa"]

[[sinks]]
name = "nats"
type = "nats"
url = "nats://{proxy}"
subject = "gap{u}.{{subject}}.{{type}}"
deadletter_subject = "gap{u}.deadletter"
ack_timeout = "2s"
connect_timeout = "2s"

[sinks.stream]
name = "GAP_{u}"
subjects = ["gap{u}.>"]

[recovery]
enabled = true
base_url = "{base}"
bearer_token = "emulator-bearer"
min_gap = "1s"
max_attempts = 3
retry_delay = "1s"
safety_margin = "5s"
liveness_interval = "1s"
"#,
        proxy = proxy.addr(),
        base = emu.base_url()
    );
    let relay = Relay::start(tmp.path(), &config).await;
    let (hook, users) = register_with_users(&emu, &relay).await;
    let stamp = Utc::now().timestamp_micros();
    let body = |i: usize| {
        xaa_like_at(
            &users[i % users.len()],
            &format!("{stamp}{i:05}"),
            Utc::now(),
        )
    };
    subscribe_for(
        &emu,
        &hook.id,
        &(0..users.len()).map(body).collect::<Vec<_>>(),
    )
    .await;

    // The broker goes away: the spool fills, the webhook answers 503, X gives up on some.
    // Delivered in batches until X gave up on at least 50 events over at least 2 s of
    // refusals (longer than min_gap).
    proxy.cut().await;
    let mut bodies: Vec<Value> = Vec::new();
    let mut emitted: Vec<Emitted> = Vec::new();
    let guard = tokio::time::Instant::now() + Duration::from_secs(180);
    let mut first_given_up: Option<tokio::time::Instant> = None;
    let given_up = loop {
        for _ in 0..100 {
            let b = body(bodies.len());
            emitted.push(emu.emit(b.clone()));
            bodies.push(b);
        }
        let sent = wait_deliveries_settled(&emu, &emitted, Duration::from_secs(60)).await;
        let given_up = sent
            .iter()
            .filter(|e| {
                !e.deliveries.is_empty()
                    && e.deliveries
                        .iter()
                        .all(|d| d.outcome == AttemptOutcome::Failed)
            })
            .count();
        if given_up > 0 && first_given_up.is_none() {
            first_given_up = Some(tokio::time::Instant::now());
        }
        if given_up >= 50 && first_given_up.is_some_and(|t| t.elapsed() >= Duration::from_secs(2)) {
            break given_up;
        }
        assert!(
            tokio::time::Instant::now() < guard,
            "X never gave up on 50 deliveries ({given_up} so far, {} emitted)\n{}",
            bodies.len(),
            relay.metrics().await
        );
    };

    // The broker comes back: the spool drains, and X's next delivery is taken again.
    proxy.restore().await;
    assert!(
        relay
            .wait_drained(&["nats"], Duration::from_secs(120))
            .await,
        "{}",
        relay.log()
    );
    let after = body(bodies.len());
    let last = emu.emit(after.clone());
    let last_seq = last.seq;
    bodies.push(after);
    let sent = wait_deliveries_settled(&emu, &[last], Duration::from_secs(60)).await;
    assert!(
        sent.iter().find(|e| e.seq == last_seq).is_some_and(|e| e
            .deliveries
            .iter()
            .any(|d| d.outcome == AttemptOutcome::Delivered)),
        "the relay takes deliveries again"
    );

    let mut expected = BTreeMap::new();
    for b in &bodies {
        for env in normalize_value(b, relay_envelope::IngressKind::Webhook) {
            expected.insert(env.id.clone(), env);
        }
    }
    assert_eq!(expected.len(), bodies.len());
    assert_once_at_nats(&u, &expected, Duration::from_secs(180)).await;
    relay
        .wait_metric(
            "activity_relay_recovery_windows_total",
            &[("state", "recovered")],
            1.0,
            Duration::from_secs(60),
        )
        .await;
    let windows = |state: &'static str| {
        let labels = [("state", state)];
        let relay = &relay;
        async move {
            relay
                .metric("activity_relay_recovery_windows_total", &labels)
                .await
        }
    };
    assert!(windows("opened").await >= 1.0);
    assert_eq!(windows("not_recovered").await, 0.0);
    assert!(jobs_metric(&relay, "complete").await >= 1.0);
    eprintln!(
        "in-run recovery: {} events, {given_up} given up by X while the spool was full, all delivered once",
        bodies.len()
    );
    drop(relay);
    emu.shutdown().await;
}

/// A fleet: two members behind a round-robin proxy (as an Ingress in front of the
/// Service), sharing NATS key-value as `[cluster]` store, with `[recovery]` on both.
///
/// A rolling restart is no gap: a member restarted with its own liveness record 3 h old
/// finds the fleet's webhook clock current (the other member kept accepting) and asks X for
/// nothing. A fleet-wide outage is one gap: both stopped, the fleet's clock and both records
/// put 3 h back, events X gave up on meanwhile; both members start at once, one of them
/// recovers the gap, each window is asked of X once (never two jobs at a time), the asker
/// learns each job's end whichever member X delivered its status to, and every event lands
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_recovers_a_gap_once_and_a_rolling_restart_is_no_gap() {
    let u = relay_testkit::unique();
    let emu = Emulator::start(EmulatorConfig {
        recrc_interval_secs: 0.0,
        ..scaled_x(0.001)
    })
    .await
    .unwrap();
    let ns = format!("gapfleet-{u}");
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut relays = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let cfg = format!(
            "{}\n[cluster]\nstore = \"{}\"\nmember = \"m{i}\"\nnamespace = \"{ns}\"\n",
            config(&u),
            relay_testkit::nats_url()
        );
        relays.push(Relay::start(dir.path(), &cfg).await);
    }
    let proxy = Proxy::start(relays.iter().map(|r| r.webhook).collect()).await;
    let hook = emu
        .register_webhook("demo", &format!("http://{}/webhooks/demo", proxy.addr))
        .await
        .expect("CRC through the proxy");
    let users: Vec<String> = support::user_ids(&emu, 3);
    for user in &users {
        emu.subscribe("demo", &hook.id, user).expect("subscribe");
    }
    for r in &relays {
        let mut text = std::fs::read_to_string(&r.config).unwrap();
        text.push_str(&recovery(&emu.base_url(), &hook.id));
        std::fs::write(&r.config, text).unwrap();
    }
    let mut emitted: Vec<Emitted> = Vec::new();
    for i in 0..6 {
        emitted.push(emu.emit(like(&users[i % users.len()], &format!("live-{u}-{i}"))));
    }
    wait_deliveries_settled(&emu, &emitted, Duration::from_secs(30)).await;

    // A rolling restart: member 0 goes, its own record says 3 h ago, member 1 serves.
    assert_eq!(relays[0].terminate(), Some(0), "{}", relays[0].log());
    let record = |i: usize| dirs[i].path().join("spool/liveness.json");
    write_liveness(
        &record(0),
        "webhook",
        Utc::now() - chrono::Duration::hours(3),
    );
    relays[0].spawn().await;
    let guard = tokio::time::Instant::now() + Duration::from_secs(30);
    while !relays[0].log().contains("shorter than [recovery] min_gap") {
        assert!(
            tokio::time::Instant::now() < guard,
            "the restarted member took its own record for the fleet's:\n{}",
            relays[0].log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        emu.jobs().is_empty(),
        "a replay for a rolling restart: {:?}",
        emu.jobs()
    );

    // The whole fleet down; its clock, like both records, 3 h back; X gives up on events.
    for r in &mut relays {
        assert_eq!(r.terminate(), Some(0), "{}", r.log());
    }
    let last_alive = Utc::now() - chrono::Duration::hours(3);
    for i in 0..2 {
        write_liveness(&record(i), "webhook", last_alive);
    }
    let js = async_nats::jetstream::new(
        async_nats::connect(relay_testkit::nats_url())
            .await
            .unwrap(),
    );
    let jobs_bucket = js.get_key_value(format!("{ns}-jobs")).await.unwrap();
    jobs_bucket
        .put(
            format!("{ns}=3Aposition=3Awebhook"),
            last_alive.timestamp_millis().to_string().into(),
        )
        .await
        .unwrap();
    let mut missed: Vec<Emitted> = Vec::new();
    for (i, m) in [1, 40, 100, 130, 160].iter().enumerate() {
        let at = last_alive + chrono::Duration::minutes(*m);
        missed.push(emu.emit_at(
            like(&users[i % users.len()], &format!("missed-{u}-{i}")),
            at,
        ));
    }
    let sent = wait_deliveries_settled(&emu, &missed, Duration::from_secs(30)).await;
    for m in &missed {
        let e = sent.iter().find(|e| e.seq == m.seq).expect("recorded");
        assert!(
            e.deliveries
                .iter()
                .all(|d| d.outcome == AttemptOutcome::Failed),
            "a live delivery reached a stopped member: {e:?}"
        );
    }
    {
        let (a, b) = relays.split_at_mut(1);
        tokio::join!(a[0].spawn(), b[0].spawn());
    }

    // Only a guard against hanging forever.
    let guard = tokio::time::Instant::now() + Duration::from_secs(300);
    let jobs = loop {
        let jobs = emu.jobs();
        if jobs.iter().filter(|j| j.state == "Complete").count() >= 2 {
            break jobs;
        }
        assert!(
            tokio::time::Instant::now() < guard,
            "recovery did not complete: {jobs:?}\n{}\n{}",
            relays[0].log(),
            relays[1].log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut windows: Vec<_> = jobs.iter().map(|j| (j.from, j.to)).collect();
    windows.sort();
    windows.dedup();
    assert_eq!(windows.len(), jobs.len(), "a window asked twice: {jobs:?}");
    let mut ordered: Vec<&x_emulator::ReplayJob> = jobs.iter().collect();
    ordered.sort_by_key(|j| j.created_at);
    for pair in ordered.windows(2) {
        assert!(
            pair[1].created_at >= pair[0].finished_at.expect("finished"),
            "two jobs at a time: {ordered:?}"
        );
    }
    // One member asked, and learnt of both ends.
    let mut started = Vec::new();
    for r in &relays {
        started.push(jobs_metric(r, "started").await);
    }
    assert_eq!(
        started.iter().sum::<f64>(),
        jobs.len() as f64,
        "{started:?}"
    );
    let asker = started.iter().position(|n| *n > 0.0).expect("an asker");
    assert_eq!(started[1 - asker], 0.0, "both members asked X: {started:?}");
    relays[asker]
        .wait_metric(
            "activity_relay_replay_jobs_total",
            &[("outcome", "complete")],
            2.0,
            Duration::from_secs(60),
        )
        .await;

    let sent = sent_once_statuses_delivered(&emu, jobs.len(), guard).await;
    assert_replayed(&missed, &sent);
    let expected = expected_from_deliveries(&sent);
    assert_once_at_nats(&u, &expected, Duration::from_secs(60)).await;
    let via_fleet = relays[asker]
        .log()
        .matches("received by another member of the fleet")
        .count();
    eprintln!(
        "fleet gap: member m{asker} asked X for {} windows, the other none; {via_fleet} of the job statuses reached the asker through the store",
        jobs.len()
    );
    for r in &mut relays {
        r.terminate();
    }
    emu.shutdown().await;
    relay_testkit::delete_fleet_buckets(&relay_testkit::nats_url(), &ns).await;
}
