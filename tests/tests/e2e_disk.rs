//! A full disk is a state the relay leaves by itself. The real relay binary with its spool
//! on a 16 MiB file system (a tmpfs mounted by the test: it needs root, as CI has) and its
//! broker (NATS) down, under signed load until the disk is full and X is answered 503 with
//! `Retry-After`; then the broker comes back. Without a restart the relay must deliver
//! everything it acknowledged, free its segments and take deliveries again.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;

const SECRET: &str = "disk-test-secret";

/// A tmpfs of `size` mounted on `dir` while this lives.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a {size} tmpfs and needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn sign(body: &[u8]) -> String {
    x_signature(SECRET, body)
}

/// A like with its own id and about 4 KiB of text.
fn like(i: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "for_user_id": "2244994945",
        "favorite_events": [{
            "id": format!("{i:032x}"),
            "timestamp_ms": 1_700_000_000_000u64 + i,
            "favorited_status": {"id_str": format!("{}", 1_900_000_000_000_000_000u64 + i),
                "user": {"id_str": "2244994945"}, "text": "x".repeat(4000)},
            "user": {"id_str": "3001969357"}
        }]
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_recovers_without_a_restart_and_loses_nothing_acknowledged() {
    let u = relay_testkit::unique();
    let tmp = tempfile::tempdir().unwrap();
    let _fs = Tmpfs::mount(&tmp.path().join("small"), "16m");
    let proxy = relay_testkit::TcpProxy::start(relay_testkit::nats_addr()).await;
    let config = format!(
        r#"
shutdown_timeout = "5s"

[spool]
dir = "{{dir}}/small/spool"
segment_bytes = 1048576
full_retry_after = "2s"

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
name = "prod"
consumer_secrets = ["{SECRET}"]

[[sinks]]
name = "nats"
type = "nats"
url = "nats://{proxy}"
subject = "disk{u}.{{subject}}.{{type}}"
deadletter_subject = "disk{u}.deadletter"
ack_timeout = "2s"
connect_timeout = "2s"

[sinks.stream]
name = "DISK_{u}"
subjects = ["disk{u}.>"]
"#,
        proxy = proxy.addr()
    );
    let relay = Relay::start(tmp.path(), &config).await;
    let pid = relay.pid();
    let url = relay.webhook_url("prod");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // The broker goes down; X keeps delivering until the disk is full.
    proxy.cut().await;
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    let mut i = 0u64;
    while refused < 20 {
        if i == 20_000 {
            let m = relay.metrics().await;
            let interesting: Vec<&str> = m
                .lines()
                .filter(|l| {
                    l.contains("spool_bytes")
                        || l.contains("published_total")
                        || l.contains("accept_failures")
                        || l.contains("pending")
                })
                .collect();
            panic!("the 16 MiB disk never filled: {interesting:#?}");
        }
        let body = like(i);
        let r = http
            .post(&url)
            .header("x-twitter-webhooks-signature", sign(&body))
            .body(body)
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => acknowledged.push(i),
            503 => {
                assert!(
                    r.headers().contains_key("retry-after"),
                    "503 without Retry-After"
                );
                refused += 1;
            }
            other => panic!("delivery {i}: {other}\n{}", relay.log()),
        }
        i += 1;
    }
    assert!(
        acknowledged.len() > 1000,
        "only {} accepted",
        acknowledged.len()
    );

    // The broker is back: everything acknowledged is delivered and the disk frees itself.
    proxy.restore().await;
    assert!(
        relay
            .wait_drained(&["nats"], Duration::from_secs(180))
            .await,
        "the spool did not drain:\n{}",
        relay.log()
    );
    // New deliveries are taken again, with no restart.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let after = loop {
        let body = like(i);
        let r = http
            .post(&url)
            .header("x-twitter-webhooks-signature", sign(&body))
            .body(body)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            acknowledged.push(i);
            break i;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still refusing after the broker came back:\n{}",
            relay.log()
        );
        i += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(relay.pid(), pid, "the relay was not restarted");
    assert!(relay.wait_drained(&["nats"], Duration::from_secs(60)).await);

    let got = nats_read_all(
        &format!("DISK_{u}"),
        acknowledged.len(),
        Duration::from_secs(2),
        Duration::from_secs(120),
    )
    .await;
    let ids: std::collections::HashSet<String> = got
        .iter()
        .filter_map(|r| r.id().rsplit(':').next().map(str::to_owned))
        .collect();
    let missing: Vec<u64> = acknowledged
        .iter()
        .copied()
        .filter(|i| !ids.contains(&format!("{i:032x}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged, never published: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(got.len(), acknowledged.len(), "each exactly once");
    eprintln!(
        "disk full after {} accepted deliveries ({refused} refused with 503); all published after the broker returned; accepted again at delivery {after}",
        acknowledged.len() - 1
    );
}
