//! The real binary with a broker sink that cannot be reached: the relay still starts and
//! accepts deliveries into the spool, `/readyz` says which sink is not ready, the other
//! sink still gets every event, and SIGTERM ends it within `shutdown_timeout` with exit 0.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_broker_does_not_stop_accepting() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on (bound for a moment, then closed): the broker is down.
    let dead = relay_testkit::free_port();
    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            r#"
shutdown_timeout = "1s"
[spool]
dir = "{spool}"
[admin]
listen = "127.0.0.1:0"
[log]
level = "warn"
[dispatch]
max_backoff = "200ms"
[webhook]
listen = "127.0.0.1:0"
[[webhook.apps]]
name = "t"
consumer_secrets = ["s3cret"]
[[sinks]]
name = "files"
type = "file"
path = "{out}"
[[sinks]]
name = "nats"
type = "nats"
url = "nats://127.0.0.1:{dead}"
connect_timeout = "500ms"
"#,
            spool = dir.path().join("spool").display(),
            out = dir.path().join("out").display(),
        ),
    )
    .unwrap();
    let mut guard = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_activity-relay"))
            .args(["run", "--config"])
            .arg(&config)
            .arg("--listen-file")
            .arg(dir.path().join("listening.json"))
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("relay.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    let (admin, webhook) = relay_testkit::wait_listening(
        child,
        &dir.path().join("listening.json"),
        &dir.path().join("relay.log"),
    )
    .await;
    let webhook = webhook.expect("the webhook is configured");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let base = format!("http://{admin}");
    let give_up = Instant::now() + Duration::from_secs(60);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(child.try_wait().unwrap().is_none(), "relay exited");
        assert!(Instant::now() < give_up, "relay did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let body = br#"{"data":{"event_uuid":"u-1","filter":{"user_id":"1"},"event_type":"post.create","payload":{"id":"9","text":"unreachable-marker"}}}"#;
    let sig = relay_testkit::x_signature("s3cret", body);
    let r = client
        .post(format!("http://{webhook}/webhooks/t"))
        .header("x-twitter-webhooks-signature", sig)
        .body(&body[..])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());

    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let text = r.text().await.unwrap();
    assert!(text.contains("sink nats not ready"), "{text}");
    assert!(!text.contains("files"), "{text}");
    // With `ready_requires_sinks = false` only the spool would count (see the admin docs);
    // the default includes the sinks, as checked here.

    // The file sink delivers; the NATS one keeps the record pending and counts failures.
    loop {
        let metrics = client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let delivered = metrics.contains(r#"activity_relay_published_total{sink="files"} 1"#);
        let failing = metrics.contains(
            r#"activity_relay_publish_failures_total{reason="not_connected",sink="nats"}"#,
        );
        // (Pending counts follow the cursor commit, right after the broker confirmed.)
        let files_done = metrics.contains(r#"activity_relay_pending_records{sink="files"} 0"#);
        let nats_waiting = metrics.contains(r#"activity_relay_pending_records{sink="nats"} 1"#);
        if delivered && failing && files_done && nats_waiting {
            break;
        }
        assert!(Instant::now() < give_up, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// A failing test must not leave the relay running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
