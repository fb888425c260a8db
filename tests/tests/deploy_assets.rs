//! The deployment assets are checked against the real relay:
//! - every relay config under `deploy/` passes `activity-relay run --check`;
//! - every metric the Grafana dashboard and the Prometheus alerts use is in the relay's
//!   real `/metrics` output, after driving the relay through each outcome those panels watch
//!   (accepted, duplicate, bad signature, dead letter, XAA error, a sink's permanent
//!   rejection, the activity stream).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

fn repo() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn relay_configs(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            relay_configs(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn every_config_under_deploy_passes_check() {
    let mut configs = Vec::new();
    relay_configs(&repo().join("deploy"), &mut configs);
    configs.sort();
    assert!(configs.len() >= 10, "configs found: {configs:?}");
    for c in &configs {
        let out = std::process::Command::new(relay_bin())
            .args(["run", "--check", "--config"])
            .arg(c)
            // The secrets the configs reference (the real ones come from a Secret or .env).
            .env("ACTIVITY_RELAY_DEMO_SECRET", "s")
            .env("X_CONSUMER_SECRET", "s")
            .env("X_BEARER_TOKEN", "s")
            .env("BROKER_PASSWORD", "s")
            .env("ACTIVITY_RELAY_CLUSTER_STORE", "redis://redis:6379/0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{} fails --check:\n{}{}",
            c.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And a config referencing an unset secret fails, naming the variable, not a value.
    let out = std::process::Command::new(relay_bin())
        .args(["run", "--check", "--config"])
        .arg(repo().join("deploy/kubernetes/overlays/nats/config/webhook.toml"))
        .env_remove("X_CONSUMER_SECRET")
        .env("X_BEARER_TOKEN", "s")
        .env("BROKER_PASSWORD", "hunter2-secret")
        .env(
            "ACTIVITY_RELAY_CLUSTER_STORE",
            "redis://:hunter2-secret@redis:6379/0",
        )
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "an unset secret must fail --check");
    assert!(
        text.contains("X_CONSUMER_SECRET"),
        "error names the variable: {text}"
    );
    assert!(
        !text.contains("hunter2-secret"),
        "error leaks a secret: {text}"
    );
}

fn sign(secret: &str, body: &[u8]) -> String {
    x_signature(secret, body)
}

/// `activity_relay_*` names used in a text (PromQL expressions), histogram suffixes removed.
fn used_metrics(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("activity_relay_") {
        let start = i + pos;
        let mut end = start;
        while end < bytes.len() && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_') {
            end += 1;
        }
        let name = &text[start..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        out.insert(base.to_string());
        i = end;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_use_only_metrics_the_relay_exports() {
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    let emu = x_emulator::Emulator::start(x_emulator::EmulatorConfig::default())
        .await
        .unwrap();
    // NATS behind a proxy this test cuts for a moment (publish failures and retries).
    let proxy = relay_testkit::TcpProxy::start(relay_testkit::nats_addr()).await;
    let nats = format!("nats://{}", proxy.addr());
    let config = format!(
        r#"
[spool]
dir = "{{dir}}/spool"

[admin]
listen = "{{admin}}"

[dispatch]
initial_backoff = "50ms"
max_backoff = "500ms"

[recovery]
liveness_interval = "1s"

[cluster]
store = "{}"
member = "deploy"
namespace = "deploy{u}"

[webhook]
listen = "{{webhook}}"
body_limit = 4194304

[[webhook.apps]]
name = "demo"
consumer_secrets = ["secret"]

[[streams]]
name = "e2e"
url = "{}/2/activity/stream"
bearer_token = "emulator-bearer"

[[sinks]]
name = "events"
type = "file"
path = "{{dir}}/out"

[[sinks]]
name = "nats"
type = "nats"
url = "{}"
subject = "e2e{u}.{{subject}}.{{type}}"
deadletter_subject = "e2e{u}.deadletter"

[sinks.stream]
name = "E2E_{u}"
subjects = ["e2e{u}.>"]
"#,
        relay_testkit::nats_url(),
        emu.base_url(),
        nats
    );
    let relay = Relay::start(tmp.path(), &config).await;
    // A member of the fleet that went away with records left: its last report, as a
    // departed member leaves it in the store (one line per member in the jobs bucket).
    let js = async_nats::jetstream::new(
        async_nats::connect(relay_testkit::nats_url())
            .await
            .unwrap(),
    );
    let jobs = js.get_key_value(format!("deploy{u}-jobs")).await.unwrap();
    jobs.put(format!("deploy{u}=3Aspools"), "ghost 5:1000\n".into())
        .await
        .unwrap();
    let url = relay.webhook_url("demo");
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>, signature: Option<String>| {
        let mut r = http.post(&url).body(body);
        if let Some(s) = signature {
            r = r.header("x-twitter-webhooks-signature", s);
        }
        r.send()
    };

    let crc = http
        .get(format!("{url}?crc_token=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(crc.status(), 200);
    let like = std::fs::read(fixtures_dir().join("aaa/favorite.json")).unwrap();
    for _ in 0..2 {
        // The second is a duplicate.
        let r = post(like.clone(), Some(sign("secret", &like)))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // One like once per format, as X sends it during the cutover: a cross-format duplicate.
    for f in ["twins/like.aaa.json", "twins/like.xaa.json"] {
        let twin = std::fs::read(fixtures_dir().join(f)).unwrap();
        let r = post(twin.clone(), Some(sign("secret", &twin)))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = post(like.clone(), Some(sign("wrong", &like)))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let junk = b"<html>not json".to_vec();
    assert_eq!(
        post(junk.clone(), Some(sign("secret", &junk)))
            .await
            .unwrap()
            .status(),
        200
    );
    let errors = br#"{"errors":[{"title":"operational-disconnect","detail":"x"}]}"#.to_vec();
    assert_eq!(
        post(errors.clone(), Some(sign("secret", &errors)))
            .await
            .unwrap()
            .status(),
        200
    );
    // The broker unreachable for a moment: publish failures, backoff and retries.
    proxy.cut().await;
    let dm = std::fs::read(fixtures_dir().join("aaa/direct_message.sent.json")).unwrap();
    assert_eq!(
        post(dm.clone(), Some(sign("secret", &dm)))
            .await
            .unwrap()
            .status(),
        200
    );
    relay
        .wait_metric(
            "activity_relay_publish_retries_total",
            &[("sink", "nats")],
            1.0,
            Duration::from_secs(30),
        )
        .await;
    proxy.restore().await;
    // X drops the stream once, once the relay is connected to it: a reconnect.
    let guard = tokio::time::Instant::now() + Duration::from_secs(30);
    while !emu
        .connections()
        .iter()
        .any(|c| c.outcome == "connected" && c.ended_at.is_none())
    {
        assert!(
            tokio::time::Instant::now() < guard,
            "the relay never connected to the stream: {:?}\n{}",
            emu.connections(),
            relay.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        emu.stream_fault(x_emulator::StreamFault::Drop { connection: None }) >= 1,
        "a connection dropped"
    );
    // A valid post of 1.5 MB: its envelope is over NATS's 1 MB max_payload, which the NATS
    // sink rejects permanently (the relay dead-letters it).
    let mut huge: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixtures_dir().join("aaa/tweet_create.post.json")).unwrap(),
    )
    .unwrap();
    huge["tweet_create_events"][0]["text"] = serde_json::Value::String("x".repeat(1_500_000));
    let huge = serde_json::to_vec(&huge).unwrap();
    assert_eq!(
        post(huge.clone(), Some(sign("secret", &huge)))
            .await
            .unwrap()
            .status(),
        200
    );

    assert!(
        relay
            .wait_drained(&["events", "nats"], Duration::from_secs(60))
            .await,
        "{}",
        relay.log()
    );
    relay
        .wait_metric(
            "activity_relay_stream_reconnects_total",
            &[],
            1.0,
            Duration::from_secs(30),
        )
        .await;
    relay
        .wait_metric(
            "activity_relay_cluster_spool_left_records",
            &[("member", "ghost")],
            5.0,
            Duration::from_secs(30),
        )
        .await;
    let text = relay.metrics().await;
    let exported: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| n.strip_suffix(s))
                .unwrap_or(n)
                .to_string()
        })
        .collect();

    let dashboard =
        std::fs::read_to_string(repo().join("deploy/grafana/dashboards/activity-relay.json"))
            .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    assert!(parsed["panels"].as_array().is_some_and(|p| p.len() > 10));
    let alerts = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    let used_d = used_metrics(&dashboard);
    let used_a = used_metrics(&alerts);
    assert!(
        used_d.len() >= 15 && used_a.len() >= 6,
        "{used_d:?} {used_a:?}"
    );
    let missing: Vec<&String> = used_d
        .union(&used_a)
        .filter(|m| !exported.contains(*m))
        .collect();
    assert!(
        missing.is_empty(),
        "dashboard/alerts use metrics the relay does not export: {missing:?}\nexported: {exported:?}"
    );
    emu.shutdown().await;
    relay_testkit::delete_fleet_buckets(&relay_testkit::nats_url(), &format!("deploy{u}")).await;
}
