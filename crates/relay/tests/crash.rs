//! Crash safety with the real binary: signed webhook deliveries are POSTed concurrently,
//! the relay is killed with SIGKILL in the middle, restarted on the same directories, and
//! every delivery that got a 2xx must be in the file sink's output (each line valid JSON,
//! duplicates bounded by one dispatcher batch).

use base64::Engine as _;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const SECRET: &str = "crash-test-consumer-secret";
const BATCH: usize = 16;

fn sign(body: &[u8]) -> String {
    relay_testkit::x_signature(SECRET, body)
}

fn body(n: usize) -> Vec<u8> {
    format!(
        r#"{{"data":{{"event_uuid":"crash-{n}","filter":{{"user_id":"2244994945"}},"event_type":"post.create","payload":{{"id":"{n}","text":"marker crashmk{n}x","author_id":"2244994945","created_at":"2025-05-19T14:01:46.000Z"}}}}}}"#
    )
    .into_bytes()
}

struct Relay {
    child: Child,
    webhook: SocketAddr,
    admin: SocketAddr,
}

/// A failing test must not leave the relay running.
impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The relay's config; `webhook` and `admin` are `127.0.0.1:0` for a first start (the relay
/// picks its ports and reports them) and the ports it got for a restart.
fn write_config(dir: &Path, webhook: SocketAddr, admin: SocketAddr) -> PathBuf {
    let path = dir.join("relay.toml");
    let text = format!(
        r#"
[spool]
dir = "{spool}"
[admin]
listen = "{admin}"
[log]
format = "json"
level = "warn"
[dispatch]
batch_size = {BATCH}
[webhook]
listen = "{webhook}"
[[webhook.apps]]
name = "crash"
consumer_secrets = ["${{CRASH_TEST_SECRET}}"]
[[sinks]]
name = "out"
type = "file"
path = "{out}"
"#,
        spool = dir.join("spool").display(),
        out = dir.join("out").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts the relay on `config` and waits until it reports its listeners.
async fn start(dir: &Path, config: &Path, n: u32) -> Relay {
    let log_path = dir.join("relay.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap();
    let listen_file = dir.join(format!("listening-{n}.json"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_activity-relay"))
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg("--listen-file")
        .arg(&listen_file)
        .env("CRASH_TEST_SECRET", SECRET)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let (admin, webhook) = relay_testkit::wait_listening(&mut child, &listen_file, &log_path).await;
    Relay {
        child,
        webhook: webhook.expect("the webhook is configured"),
        admin,
    }
}

impl Relay {
    fn webhook_url(&self) -> String {
        format!("http://{}/webhooks/crash", self.webhook)
    }
    fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }
}

async fn wait_ready(relay: &mut Relay, client: &reqwest::Client, dir: &Path) {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = relay.child.try_wait() {
            panic!(
                "relay exited early with {status}; log:\n{}",
                std::fs::read_to_string(dir.join("relay.log")).unwrap_or_default()
            );
        }
        let admin_up = client
            .get(relay.admin_url("/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if admin_up {
            return;
        }
        assert!(Instant::now() < give_up, "relay did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Markers found in the output: for each line, the `crashmk<n>x` markers of its event (in
/// an envelope's payload, or inside a dead letter's raw bytes). Panics on a line that is
/// not valid JSON.
fn scan_output(out: &Path) -> (Vec<usize>, Vec<String>) {
    let mut markers = Vec::new();
    let mut ids = Vec::new();
    let Ok(entries) = std::fs::read_dir(out) else {
        return (markers, ids);
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        // Only whole lines: the relay may be writing the next one as this reads.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        for line in whole.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("invalid JSON line in {}: {e}: {line:?}", path.display())
            });
            let haystack = match v.get("raw").and_then(|r| r.as_str()) {
                Some(raw) => String::from_utf8(
                    base64::engine::general_purpose::STANDARD
                        .decode(raw)
                        .unwrap(),
                )
                .unwrap(),
                None => line.to_string(),
            };
            ids.push(v["id"].as_str().unwrap().to_string());
            let mut rest = haystack.as_str();
            while let Some(pos) = rest.find("crashmk") {
                rest = &rest[pos + 7..];
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if rest[digits.len()..].starts_with('x') {
                    markers.push(digits.parse().unwrap());
                }
            }
        }
    }
    (markers, ids)
}

fn terminate(relay: &mut Relay) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(relay.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    relay.child.wait().unwrap()
}

/// The sum of a metric's samples in a Prometheus text, whatever their labels carry besides
/// `labels`; a series that does not exist (nothing happened to create it) reads 0.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (head, value) = l.rsplit_once(' ')?;
            let same = head.split('{').next()? == name
                && labels
                    .iter()
                    .all(|(k, v)| head.contains(&format!("{k}=\"{v}\"")));
            same.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

async fn scrape(client: &reqwest::Client, relay: &Relay) -> String {
    client
        .get(relay.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_traffic_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let config = write_config(dir.path(), any, any);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // Phase 1: concurrent signed deliveries, SIGKILL in the middle.
    let mut relay = start(dir.path(), &config, 1).await;
    wait_ready(&mut relay, &client, dir.path()).await;
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (next, stop, acked, refused) =
            (next.clone(), stop.clone(), acked.clone(), refused.clone());
        let client = client.clone();
        let url = relay.webhook_url();
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let b = body(n);
                let res = client
                    .post(&url)
                    .header("x-twitter-webhooks-signature", sign(&b))
                    .header("content-type", "application/json")
                    .body(b)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(n),
                    Ok(r) => {
                        assert_ne!(r.status().as_u16(), 401, "signature rejected");
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(_) => break, // the relay is gone
                }
            }
        }));
    }
    // Bounded (a guard against a relay that refuses everything, not a speed).
    let guard = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < 400 {
        assert!(
            Instant::now() < guard,
            "only {} deliveries acknowledged ({} refused)",
            acked.lock().unwrap().len(),
            refused.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    relay.child.kill().unwrap(); // SIGKILL
    relay.child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let acked: HashSet<usize> = acked.lock().unwrap().iter().copied().collect();
    assert!(acked.len() >= 400);
    let out = dir.path().join("out");
    // What the killed process wrote: the restart only adds to it.
    let (lines_before, _) = scan_output(&out);

    // Phase 2: restart on the same directories and ports; everything acknowledged comes
    // out.
    let config = write_config(dir.path(), relay.webhook, relay.admin);
    let mut relay = start(dir.path(), &config, 2).await;
    wait_ready(&mut relay, &client, dir.path()).await;
    let give_up = Instant::now() + Duration::from_secs(120);
    loop {
        let (markers, _) = scan_output(&out);
        let found: HashSet<usize> = markers.into_iter().collect();
        if acked.is_subset(&found) {
            break;
        }
        if Instant::now() > give_up {
            let missing: Vec<_> = acked.difference(&found).take(20).collect();
            panic!("acknowledged events missing from the output: {missing:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // X re-sends deliveries it already got a 200 for (retries, replays): after the restart
    // they are still recognized (dedup journal + spool) and spooled no more.
    let dups_before = metric(
        &scrape(&client, &relay).await,
        "activity_relay_duplicates_total",
        &[],
    );
    let mut resent: Vec<usize> = acked.iter().copied().collect();
    resent.sort_unstable();
    resent.truncate(50);
    for n in &resent {
        let b = body(*n);
        let r = client
            .post(relay.webhook_url())
            .header("x-twitter-webhooks-signature", sign(&b))
            .body(b)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    // Everything spooled is published (what the killed process had acknowledged but not
    // yet delivered, whichever part of the traffic that was; possibly nothing).
    let guard = Instant::now() + Duration::from_secs(120);
    let metrics = loop {
        let text = scrape(&client, &relay).await;
        if metric(&text, "activity_relay_pending_records", &[("sink", "out")]) == 0.0
            && text.contains(r#"activity_relay_pending_records{sink="out"}"#)
        {
            break text;
        }
        assert!(Instant::now() < guard, "the spool did not drain:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        metrics.contains(r#"activity_relay_build_info{version="0.1.0"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("activity_relay_dedup_evicted_early 0"),
        "{metrics}"
    );
    let dups = metric(&metrics, "activity_relay_duplicates_total", &[]) - dups_before;
    assert_eq!(
        dups,
        resent.len() as f64,
        "re-sent deliveries counted as duplicates"
    );
    // Read as 0 when the restarted process had nothing left to publish.
    let published = metric(
        &metrics,
        "activity_relay_published_total",
        &[("sink", "out")],
    );
    let health = client
        .get(relay.admin_url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let status = terminate(&mut relay);
    assert!(status.success(), "graceful shutdown exit status {status}");

    // Every line valid JSON (checked by scan_output), nothing missing, duplicates bounded.
    let (markers, ids) = scan_output(&out);
    assert_eq!(
        markers.len(),
        lines_before.len() + published as usize,
        "the restarted relay wrote one line per record it counted as published"
    );
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for m in &markers {
        *counts.entry(*m).or_default() += 1;
    }
    for n in &acked {
        assert!(counts.contains_key(n), "event {n} missing");
    }
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    assert!(
        duplicates <= BATCH,
        "{duplicates} duplicate lines; at most one unconfirmed batch ({BATCH}) may repeat"
    );
    let unique_ids: HashSet<&String> = ids.iter().collect();
    assert_eq!(
        unique_ids.len(),
        counts.len(),
        "one id per event after deduplication by id"
    );
    eprintln!(
        "acked {}, refused {}, lines {} ({} before the restart, {published} after), duplicates {duplicates}",
        acked.len(),
        refused.load(Ordering::SeqCst),
        markers.len(),
        lines_before.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_mid_traffic_delivers_everything_acknowledged_before_exit() {
    let dir = tempfile::tempdir().unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let config = write_config(dir.path(), any, any);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut relay = start(dir.path(), &config, 1).await;
    wait_ready(&mut relay, &client, dir.path()).await;
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (next, acked) = (next.clone(), acked.clone());
        let client = client.clone();
        let url = relay.webhook_url();
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let b = body(n);
                let res = client
                    .post(&url)
                    .header("x-twitter-webhooks-signature", sign(&b))
                    .body(b)
                    .send()
                    .await;
                match res {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(n),
                    Ok(r) => assert_eq!(r.status().as_u16(), 503, "refused while stopping"),
                    Err(_) => break,
                }
            }
        }));
    }
    // Bounded (a guard against a relay that refuses everything, not a speed).
    let guard = Instant::now() + Duration::from_secs(120);
    while acked.lock().unwrap().len() < 300 {
        assert!(
            Instant::now() < guard,
            "fewer than 300 deliveries acknowledged"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The relay stops while deliveries keep coming.
    let status = terminate(&mut relay);
    assert!(status.success(), "exit status {status}");
    for w in workers {
        w.await.unwrap();
    }
    let acked: HashSet<usize> = acked.lock().unwrap().iter().copied().collect();
    let (markers, _) = scan_output(&dir.path().join("out"));
    let found: HashSet<usize> = markers.iter().copied().collect();
    let missing: Vec<_> = acked.difference(&found).take(20).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not delivered before exit: {missing:?}"
    );
    assert_eq!(found.len(), markers.len(), "no duplicates without a crash");
}
