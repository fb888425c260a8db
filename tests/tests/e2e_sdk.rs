//! Consumers use CloudEvents SDKs: every message the real relay publishes to Kafka (tansu),
//! NATS JetStream and RabbitMQ, in structured and in binary mode (six sinks), is consumed
//! from the real broker and read with the official CloudEvents Python SDK's bindings
//! (`cloudevents` 2.2, installed into a venv under ~/.cache/activity-relay/tools on first
//! use); every attribute and `data` must come back as the relay wrote them
//! (`tests/sdk/check_cloudevents.py`). NATS has no binding in the SDK; it is read with the
//! HTTP binding, which its binding follows (ce- headers, percent-encoded values). The NATS
//! structured messages are also read with the official Rust SDK (`cloudevents-sdk`), whose
//! NATS binding is the one it has for our clients (its Kafka binding needs another
//! librdkafka).

mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use support::*;

const SECRET: &str = "sdk-test-secret";
const SDK: &str = "cloudevents==2.2.0";

fn config(u: &str, kafka: &str) -> String {
    let mut c = r#"
shutdown_timeout = "5s"

[spool]
dir = "{dir}/spool"

[admin]
listen = "{admin}"

[dispatch]
initial_backoff = "50ms"
max_backoff = "1s"

[webhook]
listen = "{webhook}"

[[webhook.apps]]
name = "sdk"
consumer_secrets = ["SECRET"]
# Non-ASCII, a space and a `%` sequence: a NATS header that is not percent-encoded would
# be decoded by a conforming reader into something else.
source = "/x/café webhook/%C3%A9"
"#
    .replace("SECRET", SECRET);
    for mode in ["structured", "binary"] {
        c.push_str(&broker_sinks("sdk", u, kafka, Some(mode)));
    }
    c
}

fn sign(body: &[u8]) -> String {
    x_signature(SECRET, body)
}

/// Whether `py` runs and imports what `tests/sdk/check_cloudevents.py` uses (a venv left
/// half-installed has a `bin/python` but not a working SDK).
fn sdk_importable(py: &Path) -> bool {
    Command::new(py)
        .args([
            "-c",
            "from cloudevents.core.bindings import http, kafka, rabbitmq; \
             from cloudevents.core.formats.json import JSONFormat",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Python with the CloudEvents SDK, installed once into the tools cache.
///
/// Installed into a temporary directory beside it, checked, then renamed into place: the
/// venv's path only ever holds a complete install, and concurrent runs each build their own
/// and the first rename wins.
fn python() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let venv = std::env::var_os("ACTIVITY_RELAY_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".cache/activity-relay/tools"))
        .join("cloudevents-2.2.0-venv");
    let py = venv.join("bin/python");
    if sdk_importable(&py) {
        return py;
    }
    let parent = venv.parent().unwrap();
    std::fs::create_dir_all(parent).unwrap();
    let tmp = tempfile::Builder::new()
        .prefix(".cloudevents-2.2.0-venv.")
        .tempdir_in(parent)
        .unwrap();
    // `bin/python` finds its venv from its own path, so the venv still works once renamed
    // (only the generated scripts, such as `bin/pip`, keep the temporary path: not used).
    let tmp_py = tmp.path().join("bin/python");
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(tmp.path())
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(&tmp_py)
            .args(["-m", "pip", "install", "--quiet", SDK])
            .status()
            .is_ok_and(|s| s.success())
        && sdk_importable(&tmp_py);
    assert!(ok, "could not install {SDK} into {}", tmp.path().display());
    if std::fs::rename(tmp.path(), &venv).is_err() && !sdk_importable(&py) {
        // Something unusable is in the way (left by an interrupted install of an older
        // version of this test): move it aside, then ours goes in, unless another run's
        // complete venv just did.
        let aside = tempfile::Builder::new()
            .prefix(".cloudevents-2.2.0-venv.stale.")
            .tempdir_in(parent)
            .unwrap();
        let _ = std::fs::rename(&venv, aside.path().join("venv"));
        let _ = std::fs::rename(tmp.path(), &venv);
    }
    assert!(
        sdk_importable(&py),
        "{SDK} installed, but {} cannot import it",
        py.display()
    );
    py
}

/// One consumed message, as the checker reads it.
fn dump(binding: &str, mode: &str, r: &Received, expected: &Value) -> Value {
    let headers: serde_json::Map<String, Value> = r
        .headers
        .iter()
        // Kafka carries the content type as a header (its binding reads it there);
        // RabbitMQ as a property, NATS as a header the HTTP reader gets back below.
        .filter(|(n, _)| binding == "kafka" || !n.eq_ignore_ascii_case("content-type"))
        .map(|(n, v)| {
            let n = if binding == "nats" {
                n.to_ascii_lowercase()
            } else {
                n.clone()
            };
            (n, Value::String(v.clone()))
        })
        .collect();
    json!({
        "binding": binding,
        "mode": mode,
        "headers": headers,
        "content_type": r.content_type,
        "key": (!r.key.is_empty()).then(|| r.key.clone()),
        "body_b64": base64::engine::general_purpose::STANDARD.encode(&r.body),
        "expected": expected,
    })
}

/// The CloudEvents id of a consumed message: the body's (structured) or the id header.
fn ce_id(r: &Received) -> String {
    if let Some(id) = r.envelope.get("id").and_then(Value::as_str) {
        if r.envelope.get("specversion").is_some() {
            return id.to_owned();
        }
    }
    r.headers
        .iter()
        .find(|(n, _)| n == "ce_id" || n.eq_ignore_ascii_case("ce-id"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_on_every_broker_in_both_modes_reads_back_unmodified_with_the_sdk() {
    let kafka = relay_testkit::kafka_bootstrap()
        .expect("RELAY_TEST_KAFKA_BOOTSTRAP is not set: `source scripts/brokers` first");
    let py = python();
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    let queues = [
        AmqpQueue::bind(&format!("sdk.{u}.structured")).await,
        AmqpQueue::bind(&format!("sdk.{u}.binary")).await,
    ];
    let relay = Relay::start(tmp.path(), &config(&u, &kafka)).await;
    let http = reqwest::Client::new();
    let mut bodies: Vec<Value> = fixture_bodies("aaa");
    bodies.extend(fixture_bodies("xaa"));
    for b in &bodies {
        let body = serde_json::to_vec(b).unwrap();
        let r = http
            .post(relay.webhook_url("sdk"))
            .header("x-twitter-webhooks-signature", sign(&body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let sinks: Vec<String> = ["kafka", "nats", "rabbitmq"]
        .iter()
        .flat_map(|b| ["structured", "binary"].map(|m| format!("{b}-{m}")))
        .collect();
    let names: Vec<&str> = sinks.iter().map(String::as_str).collect();
    assert!(
        relay.wait_drained(&names, Duration::from_secs(120)).await,
        "{}",
        relay.log()
    );
    let n = relay
        .metric(
            "activity_relay_published_total",
            &[("sink", "nats-structured")],
        )
        .await as usize;
    assert!(n >= 60, "only {n} envelopes");

    let quiet = Duration::from_secs(2);
    let max = Duration::from_secs(60);
    let mut consumed: Vec<(&str, &str, Vec<Received>)> = Vec::new();
    for mode in ["structured", "binary"] {
        let stream = format!("SDK_{u}_{mode}");
        consumed.push(("nats", mode, nats_read_all(&stream, n, quiet, max).await));
    }
    for (q, mode) in queues.iter().zip(["structured", "binary"]) {
        consumed.push(("rabbitmq", mode, q.read_all(n, quiet, max).await));
    }
    for mode in ["structured", "binary"] {
        let prefix = format!("sdk{u}.{mode}.");
        let kafka = kafka.clone();
        let got =
            tokio::task::spawn_blocking(move || kafka_read_all(&kafka, &prefix, n, quiet, max))
                .await
                .unwrap();
        consumed.push(("kafka", mode, got));
    }
    // What the relay wrote: the envelopes as spooled, from the structured NATS sink.
    let expected: HashMap<String, Value> = consumed[0]
        .2
        .iter()
        .map(|r| (ce_id(r), r.envelope.clone()))
        .collect();
    assert_eq!(expected.len(), n);
    let mut lines = String::new();
    for (binding, mode, got) in &consumed {
        assert_eq!(
            got.len(),
            n,
            "{binding} {mode}: consumed {} of {n}",
            got.len()
        );
        for r in got {
            let id = ce_id(r);
            let want = expected
                .get(&id)
                .unwrap_or_else(|| panic!("{binding} {mode}: unknown id {id:?}"));
            lines.push_str(&dump(binding, mode, r, want).to_string());
            lines.push('\n');
        }
    }
    // The Rust SDK reads the NATS structured messages.
    {
        use cloudevents::binding::nats::MessageExt;
        use cloudevents::AttributesReader;
        let (_, _, nats_structured) = &consumed[0];
        for r in nats_structured {
            let msg = async_nats::Message {
                subject: r.destination.clone().into(),
                reply: None,
                payload: r.body.clone().into(),
                headers: None,
                status: None,
                description: None,
                length: r.body.len(),
            };
            let ev = msg
                .to_event()
                .unwrap_or_else(|e| panic!("Rust SDK refused {}: {e}", ce_id(r)));
            let want = &expected[&ce_id(r)];
            assert_eq!(ev.id(), want["id"].as_str().unwrap());
            assert_eq!(ev.source().as_str(), want["source"].as_str().unwrap());
            assert_eq!(ev.ty(), want["type"].as_str().unwrap());
            assert_eq!(ev.subject(), want["subject"].as_str());
            assert_eq!(
                ev.time()
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
                want["time"].as_str().map(str::to_owned)
            );
            for ext in ["ingress", "xformat", "actorid", "targetid", "objectid"] {
                assert_eq!(
                    ev.extension(ext).map(|v| v.to_string()),
                    want[ext].as_str().map(str::to_owned),
                    "{ext} of {}",
                    ev.id()
                );
            }
            let data: Value = match ev.data() {
                Some(cloudevents::Data::Json(v)) => v.clone(),
                other => panic!("data of {}: {other:?}", ev.id()),
            };
            assert_eq!(data, want["data"], "data of {}", ev.id());
        }
    }
    let path = tmp.path().join("consumed.ndjson");
    std::fs::write(&path, lines).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sdk/check_cloudevents.py");
    let out = Command::new(&py).arg(&script).arg(&path).output().unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{report}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the SDK did not read everything back:\n{report}"
    );
    assert!(
        report.contains(&format!("sdk: {} read unmodified, 0 not", 6 * n)),
        "{report}"
    );
}
