//! The real binary with a `[[streams]]` ingress against a minimal NDJSON stream server:
//! streamed events reach the file sink, and the stream's last event time is exported.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn line(n: usize) -> String {
    format!(
        r#"{{"data":{{"event_uuid":"stream-{n}","filter":{{"user_id":"77"}},"event_type":"like.create","payload":{{"id":"{n}","text":"streammk{n}x"}}}}}}"#
    )
}

/// Serves one HTTP/1.1 response per connection: `lines` as a chunked NDJSON body, then
/// heartbeats until the client goes away; 401 without the expected bearer token.
async fn serve(listener: TcpListener, lines: Vec<String>) {
    loop {
        let Ok((mut sock, _)) = listener.accept().await else {
            return;
        };
        let lines = lines.clone();
        tokio::spawn(async move {
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match sock.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&req).to_lowercase();
            if !head.contains("authorization: bearer stream-token") {
                let _ = sock
                    .write_all(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n")
                    .await;
                return;
            }
            let _ = sock
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                .await;
            for l in lines {
                let chunk = format!("{l}\r\n");
                let framed = format!("{:x}\r\n{chunk}\r\n", chunk.len());
                if sock.write_all(framed.as_bytes()).await.is_err() {
                    return;
                }
            }
            loop {
                if sock.write_all(b"2\r\n\r\n\r\n").await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_events_reach_the_sink() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let stream_addr = listener.local_addr().unwrap();
    let lines: Vec<String> = (0..20).map(line).collect();
    tokio::spawn(serve(listener, lines));

    let config = dir.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[spool]
dir = "{spool}"
[admin]
listen = "127.0.0.1:0"
[log]
level = "warn"
[[streams]]
name = "test"
url = "http://{stream_addr}/2/activity/stream"
bearer_token = "${{RELAY_TEST_STREAM_TOKEN}}"
[[sinks]]
name = "files"
type = "file"
path = "{out}"
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
            .env("RELAY_TEST_STREAM_TOKEN", "stream-token")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("relay.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let child = &mut guard.0;
    let (admin, _) = relay_testkit::wait_listening(
        child,
        &dir.path().join("listening.json"),
        &dir.path().join("relay.log"),
    )
    .await;

    let out = dir.path().join("out");
    let give_up = Instant::now() + Duration::from_secs(60);
    let found = loop {
        let mut found = std::collections::BTreeSet::new();
        if let Ok(entries) = std::fs::read_dir(&out) {
            for e in entries {
                let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
                // Only whole lines: the relay may be writing the next one as this reads.
                let whole = text.rfind('\n').map_or("", |end| &text[..end]);
                for l in whole.lines() {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    assert_eq!(v["ingress"], "stream", "{l}");
                    assert_eq!(v["source"], "/x/activity/stream/test", "{l}");
                    found.insert(v["id"].as_str().unwrap().to_string());
                }
            }
        }
        if found.len() >= 20 {
            break found;
        }
        assert!(child.try_wait().unwrap().is_none(), "relay exited");
        assert!(
            Instant::now() < give_up,
            "only {} of 20 events arrived",
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(found.len(), 20, "{found:?}");

    let metrics = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"activity_relay_events_in_total{format="xaa",ingress="stream",type="like.create"} 20"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"activity_relay_last_event_timestamp_seconds{ingress="stream",source="/x/activity/stream/test"}"#
        ),
        "{metrics}"
    );

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
