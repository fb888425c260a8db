//! The alerts as a platform team runs them: a real Prometheus server (Debian's package)
//! scrapes the real relay every second while its broker (NATS, behind a cuttable proxy)
//! goes down and comes back; the publish-failure and oldest-pending alerts must fire during
//! the outage and resolve after it, as read from Prometheus's own API.
//!
//! The rules are `deploy/prometheus/alerts.yml` with only their time constants shortened
//! (every `for:` to 2 s, range windows to 15 s, the 300 s age threshold to 3 s), so that a
//! minutes-long outage plays out in seconds; the expressions are the shipped ones.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

const SECRET: &str = "alerts-test-secret";

struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The shipped rules with their time constants shortened.
fn fast_rules() -> String {
    let mut text = std::fs::read_to_string(repo().join("deploy/prometheus/alerts.yml")).unwrap();
    for d in ["1m", "2m", "5m", "10m"] {
        text = text.replace(&format!("for: {d}"), "for: 2s");
    }
    for w in ["[5m]", "[15m]", "[1h]"] {
        text = text.replace(w, "[15s]");
    }
    text.replace("> 300", "> 3")
}

async fn start_prometheus(dir: &Path, target: std::net::SocketAddr) -> Prometheus {
    std::fs::write(dir.join("rules.yml"), fast_rules()).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [rules.yml]\n\
             scrape_configs:\n  - job_name: activity-relay\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .unwrap();
    let port = relay_testkit::free_port();
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("prometheus (Debian's package; scripts/test installs it)");
    // Owned by the guard from here on: killed and waited for on every path.
    let prom = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    // Bounded (a guard against a hang, not a speed).
    for _ in 0..600 {
        if reqwest::get(format!("{}/-/ready", prom.url))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return prom;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "prometheus did not become ready: {}",
        std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
    );
}

/// The value of an instant query's first sample (0 without one).
async fn query(p: &Prometheus, expr: &str) -> f64 {
    let Ok(r) = reqwest::Client::new()
        .get(format!("{}/api/v1/query", p.url))
        .query(&[("query", expr)])
        .send()
        .await
    else {
        return 0.0;
    };
    let v: Value = r.json().await.unwrap_or(Value::Null);
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|x| x.parse().ok())
        .unwrap_or(0.0)
}

/// The names of the alerts Prometheus has firing now.
async fn firing(p: &Prometheus) -> Vec<String> {
    let Ok(r) = reqwest::get(format!("{}/api/v1/alerts", p.url)).await else {
        return Vec::new();
    };
    let v: Value = r.json().await.unwrap_or(Value::Null);
    v["data"]["alerts"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["state"] == "firing")
                .filter_map(|x| x["labels"]["alertname"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn wait_until(p: &Prometheus, what: &str, max: Duration, cond: impl Fn(&[String]) -> bool) {
    let deadline = tokio::time::Instant::now() + max;
    loop {
        let now = firing(p).await;
        if cond(&now) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: firing now {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn sign(body: &[u8]) -> String {
    x_signature(SECRET, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_failure_and_oldest_pending_alerts_fire_in_an_outage_and_resolve_after() {
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    let proxy = relay_testkit::TcpProxy::start(relay_testkit::nats_addr()).await;
    let config = format!(
        r#"
shutdown_timeout = "5s"

[spool]
dir = "{{dir}}/spool"

[admin]
listen = "{{admin}}"
ready_requires_sinks = false

[dispatch]
initial_backoff = "100ms"
max_backoff = "500ms"

[webhook]
listen = "{{webhook}}"

[[webhook.apps]]
name = "prod"
consumer_secrets = ["{SECRET}"]

[[sinks]]
name = "nats"
type = "nats"
url = "nats://{proxy}"
subject = "alerts{u}.{{subject}}.{{type}}"
deadletter_subject = "alerts{u}.deadletter"
ack_timeout = "5s"
connect_timeout = "5s"

[sinks.stream]
name = "ALERTS_{u}"
subjects = ["alerts{u}.>"]
"#,
        proxy = proxy.addr()
    );
    let relay = Relay::start(tmp.path(), &config).await;
    let prom = start_prometheus(tmp.path(), relay.admin).await;
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        http.post(relay.webhook_url("prod"))
            .header("x-twitter-webhooks-signature", sign(&body))
            .body(body)
            .send()
    };
    let before = fixture_bodies("aaa");
    // Healthy first: nothing fires.
    assert_eq!(
        post(serde_json::to_vec(&before[0]).unwrap())
            .await
            .unwrap()
            .status(),
        200
    );
    // Until Prometheus has scraped the event published (bounded, a guard only): then
    // nothing failed, and the rules, evaluated on that, fire nothing about failures.
    let guard = tokio::time::Instant::now() + Duration::from_secs(60);
    while query(&prom, r#"activity_relay_published_total{sink="nats"}"#).await < 1.0 {
        assert!(
            tokio::time::Instant::now() < guard,
            "Prometheus never saw the event published:\n{}",
            relay.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let failures = relay
        .metric("activity_relay_publish_failures_total", &[])
        .await;
    assert_eq!(failures, 0.0, "{}", relay.metrics().await);
    let now = firing(&prom).await;
    assert!(
        !now.iter().any(|a| a == "ActivityRelayPublishFailures"),
        "{now:?}"
    );

    // The broker goes away with events waiting.
    proxy.cut().await;
    for b in &before[1..6] {
        assert_eq!(
            post(serde_json::to_vec(b).unwrap()).await.unwrap().status(),
            200
        );
    }
    wait_until(
        &prom,
        "alerts firing during the outage",
        Duration::from_secs(90),
        |now| {
            [
                "ActivityRelayPublishFailures",
                "ActivityRelayOldestEventAge",
            ]
            .iter()
            .all(|a| now.iter().any(|n| n == a))
        },
    )
    .await;

    // It comes back: everything is delivered and both alerts resolve.
    proxy.restore().await;
    assert!(relay.wait_drained(&["nats"], Duration::from_secs(60)).await);
    wait_until(
        &prom,
        "alerts resolved after the outage",
        Duration::from_secs(90),
        |now| {
            !now.iter()
                .any(|n| n == "ActivityRelayPublishFailures" || n == "ActivityRelayOldestEventAge")
        },
    )
    .await;
}
