//! The real relay binary on its public webhook, played against attackers over real sockets:
//! the CRC signing oracle, thousands of idle and half-open connections with unsigned
//! megabyte uploads in flight while X delivers, a batch that would expand past the output
//! bound, and made-up event types. Each test asserts a limit (status, count, series, bytes of
//! memory), never a speed; the one clock in them is X's own: a delivery not answered within
//! 3 s is a failed delivery to X.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SECRET: &str = "hostile-test-secret";
/// X waits this long for a 2xx, then counts the delivery as failed.
const X_TIMEOUT: Duration = Duration::from_secs(3);

/// The flood test runs alone (write); the others may run together (read).
static FLOOD: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn config(u: &str) -> String {
    r#"
shutdown_timeout = "5s"

[spool]
dir = "{dir}/spool"
max_bytes = 268435456
segment_bytes = 8388608

[admin]
listen = "{admin}"

[log]
format = "json"
level = "warn"

[dispatch]
batch_size = 64
initial_backoff = "50ms"
max_backoff = "1s"

[webhook]
listen = "{webhook}"

[[webhook.apps]]
name = "prod"
consumer_secrets = ["SECRET"]

[[sinks]]
name = "nats"
type = "nats"
url = "NATS"
subject = "hostileUNIQ.{subject}.{type}"
deadletter_subject = "hostileUNIQ.deadletter"

[sinks.stream]
name = "HOSTILE_UNIQ"
subjects = ["hostileUNIQ.>"]
"#
    .replace("UNIQ", u)
    .replace("SECRET", SECRET)
    .replace("NATS", &relay_testkit::nats_url())
}

fn sign(body: &[u8]) -> String {
    x_signature(SECRET, body)
}

async fn start(dir: &std::path::Path, u: &str) -> Relay {
    Relay::start(dir, &config(u)).await
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(X_TIMEOUT)
        .build()
        .unwrap()
}

async fn post(c: &reqwest::Client, url: &str, body: &[u8], sig: &str) -> reqwest::StatusCode {
    c.post(url)
        .header("x-twitter-webhooks-signature", sig)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map(|r| r.status())
        .unwrap_or_else(|e| panic!("delivery failed as X would see it: {e}"))
}

/// Resident memory of a process, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crc_endpoint_signs_nothing_a_post_would_accept() {
    let _shared = FLOOD.read().await;
    let u = relay_testkit::unique();
    let dir = tempfile::tempdir().unwrap();
    let relay = start(dir.path(), &u).await;
    let c = client();
    let url = relay.webhook_url("prod");

    // The attack as it worked before: a forged follow as crc_token, its MAC as signature.
    let forged = br#"{"for_user_id":"2244994945","follow_events":[{"type":"follow","created_timestamp":"1","source":{"id":"666"},"target":{"id":"2244994945"}}]}"#;
    let q: String = url::form_urlencoded::byte_serialize(forged).collect();
    let resp = c.get(format!("{url}?crc_token={q}")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(!resp.text().await.unwrap().contains("sha256="));
    assert_eq!(
        post(&c, &url, forged, &sign(forged)[..10]).await,
        401,
        "no signature, no entry"
    );

    // What CRC still signs (X-shaped tokens), replayed as bodies: refused.
    for token in ["31337", "true", "null", "c2VjcmV0"] {
        let resp = c
            .get(format!("{url}?crc_token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: serde_json::Value = resp.json().await.unwrap();
        let sig = v["response_token"].as_str().unwrap().to_owned();
        assert_eq!(sig, sign(token.as_bytes()));
        assert_eq!(post(&c, &url, token.as_bytes(), &sig).await, 401, "{token}");
    }

    // A real, signed delivery still goes through.
    let real = std::fs::read(fixtures_dir().join("aaa/favorite.json")).unwrap();
    assert_eq!(post(&c, &url, &real, &sign(&real)).await, 200);
    let got = nats_read_all(
        &format!("HOSTILE_{u}"),
        1,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(got.len(), 1, "only the real event was published: {got:?}");
    assert_eq!(got[0].envelope["type"], "like.create");
    assert_eq!(
        relay
            .metric(
                "activity_relay_webhook_signature_failures_total",
                &[("reason", "crc_shaped")]
            )
            .await,
        4.0
    );
}

/// Opens `n` connections that never finish a request: a third send nothing, a third half a
/// request line, a third all headers but the blank line.
async fn idle_and_half_open(addr: std::net::SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            continue;
        };
        let _ = match i % 3 {
            0 => Ok(()),
            1 => s.write_all(b"POST /webhooks/prod HTT").await,
            _ => {
                s.write_all(b"POST /webhooks/prod HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n")
                    .await
            }
        };
        out.push(s);
    }
    out
}

/// Starts `n` uploads of most of a 1 MiB body with a well-formed but wrong signature, each
/// left hanging with the rest unsent.
async fn stalled_uploads(addr: std::net::SocketAddr, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
    let wrong = sign(b"something else entirely");
    (0..n)
        .map(|_| {
            let wrong = wrong.clone();
            tokio::spawn(async move {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    return;
                };
                let head = format!(
                    "POST /webhooks/prod HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                     content-length: 1048576\r\nx-twitter-webhooks-signature: {wrong}\r\n\r\n"
                );
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'{'; 64 << 10];
                for _ in 0..14 {
                    if s.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
                // Hold the connection (and whatever the relay buffered) open.
                tokio::time::sleep(Duration::from_secs(30)).await;
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_delivery_gets_through_3000_idle_connections_and_200_unsigned_uploads() {
    // Alone: the other tests of this file hold X's 3 s to their deliveries too, and must
    // not share the machine with this flood.
    let _alone = FLOOD.write().await;
    let u = relay_testkit::unique();
    let dir = tempfile::tempdir().unwrap();
    // The flood must be held while it is measured: the relay closes a connection that sent
    // no complete request within `header_read_timeout` (5 s by default), and opening 3,000
    // connections one after another can take longer than that on a loaded machine. With
    // the default, the first ones were shed before the last were open and the gauge never
    // reached 2,900 (the CI failure: "0 open", read after the 60 s guard, when all had been
    // shed; with a 100 ms timeout it fails so every time). That the relay sheds idle
    // connections by this timeout is tested over a real socket in
    // crates/ingress/tests/hostile.rs.
    let relay = Relay::start(
        dir.path(),
        &config(&u).replace("[webhook]\n", "[webhook]\nheader_read_timeout = \"300s\"\n"),
    )
    .await;
    let pid = relay.pid().expect("relay running");
    let c = client();
    let url = relay.webhook_url("prod");
    let real = std::fs::read(fixtures_dir().join("aaa/follow.json")).unwrap();
    // Warm up (first spool append, connection pool) before measuring the baseline.
    assert_eq!(post(&c, &url, &real, &sign(&real)).await, 200);
    let rss_before = rss(pid);

    let held = idle_and_half_open(relay.webhook, 3000).await;
    assert!(held.len() >= 2900, "only {} connections opened", held.len());
    let uploads = stalled_uploads(relay.webhook, 200).await;
    // Wait (bounded, a guard against hanging only) until the flood is in, and let the
    // uploads be read as far as the relay lets them.
    let guard = tokio::time::Instant::now() + Duration::from_secs(60);
    let (open, scrape) = loop {
        // The scrape's outcome is kept, so that a failure says whether the relay's admin
        // endpoint did not answer or answered with fewer connections.
        let scrape = reqwest::get(format!("http://{}/metrics", relay.admin)).await;
        let (open, scrape) = match scrape {
            Ok(r) => {
                let text = r.text().await.unwrap_or_default();
                let open = sum_metric(&text, "activity_relay_webhook_connections_open", &[]);
                (open, format!("scraped {} bytes", text.len()))
            }
            Err(e) => (0.0, format!("scrape failed: {e}")),
        };
        if open >= 2900.0 || tokio::time::Instant::now() > guard {
            break (open, scrape);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(open >= 2900.0, "the flood is in: {open} open ({scrape})");
    // And until the uploads have used up the pre-auth budget (bounded, a guard only): X's
    // deliveries below are made while it is exhausted.
    let guard = tokio::time::Instant::now() + Duration::from_secs(60);
    let refused = loop {
        let refused = relay
            .metric(
                "activity_relay_webhook_requests_total",
                &[("outcome", "preauth_budget")],
            )
            .await;
        if refused > 0.0 || tokio::time::Instant::now() > guard {
            break refused;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(refused > 0.0, "the budget refused some of the 200 uploads");

    // X delivers now: answered 2xx within X's 3 s, every time.
    for i in 0..5 {
        let body = std::fs::read(fixtures_dir().join("aaa/favorite.json")).unwrap();
        let status = post(&c, &url, &body, &sign(&body)).await;
        assert_eq!(status, 200, "delivery {i}");
    }
    let rss_during = rss(pid);
    // The stated bound: the pre-auth budget (64 MiB) plus 16 KiB of read buffer per
    // connection (3,200: 50 MiB) plus slack for the allocator and the tasks.
    let bound = 64 * 1024 * 1024 + 3200 * 16 * 1024 + 48 * 1024 * 1024;
    let grew = rss_during.saturating_sub(rss_before);
    assert!(
        grew < bound,
        "RSS grew by {} MiB (bound {} MiB)",
        grew >> 20,
        bound >> 20
    );
    eprintln!(
        "RSS before {} MiB, during {} MiB; {open} connections open; {refused} uploads refused by the budget",
        rss_before >> 20,
        rss_during >> 20
    );

    // The flood ends: the relay closes every connection the clients closed, and its
    // gauge comes back down (the accounting of connections holds under a flood).
    // (X's client too: its keep-alive connections, which this test's long header timeout
    // would otherwise keep open.)
    drop(held);
    for u in uploads {
        u.abort();
    }
    drop(c);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let open = relay
            .metric("activity_relay_webhook_connections_open", &[])
            .await;
        if open == 0.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{open} still open");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_would_expand_past_the_bound_is_one_dead_letter() {
    let _shared = FLOOD.read().await;
    let u = relay_testkit::unique();
    let dir = tempfile::tempdir().unwrap();
    let relay = start(dir.path(), &u).await;
    let pid = relay.pid().expect("relay running");
    // 300 KB of `users`, and 1,000 tiny items that would each carry it: 300 MB of envelopes.
    // (Small enough that the dead letter, the body in base64, fits NATS's 1 MB payload.)
    let mut users = serde_json::Map::new();
    for i in 0..3000 {
        users.insert(
            format!("{}", 1_000_000 + i),
            serde_json::json!({ "id": format!("{}", 1_000_000 + i), "name": "x".repeat(60) }),
        );
    }
    let items: Vec<serde_json::Value> = (0..1000)
        .map(|i| serde_json::json!({ "type": "message_create", "id": format!("{i}"), "created_timestamp": "1700000000000",
            "message_create": { "target": { "recipient_id": "1" }, "sender_id": "2", "message_data": { "text": "hi" } } }))
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({
        "for_user_id": "1", "direct_message_events": items, "users": users
    }))
    .unwrap();
    assert!(body.len() < 1 << 20, "within body_limit: {}", body.len());
    let rss_before = rss(pid);
    let status = post(&client(), &relay.webhook_url("prod"), &body, &sign(&body)).await;
    assert_eq!(status, 200, "authentic: kept as a dead letter");
    assert_eq!(
        relay
            .metric(
                "activity_relay_dead_letters_total",
                &[("reason", "too_large")]
            )
            .await,
        1.0
    );
    let grew = rss(pid).saturating_sub(rss_before);
    assert!(grew < 100 << 20, "RSS grew by {} MiB", grew >> 20);
    let got = nats_read_all(
        &format!("HOSTILE_{u}"),
        1,
        Duration::from_secs(2),
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(got.len(), 1, "one dead letter, no envelopes");
    assert_eq!(got[0].destination, format!("hostile{u}.deadletter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_event_types_cannot_mint_metric_series() {
    let _shared = FLOOD.read().await;
    let u = relay_testkit::unique();
    let dir = tempfile::tempdir().unwrap();
    let relay = start(dir.path(), &u).await;
    let c = client();
    let url = relay.webhook_url("prod");
    for i in 0..200 {
        let body = serde_json::to_vec(&serde_json::json!({ "data": {
            "event_uuid": format!("{}", 9_000_000 + i),
            "event_type": format!("attacker.type{i}"),
            "filter": { "user_id": "2244994945" },
            "payload": { "n": i }
        }}))
        .unwrap();
        assert_eq!(post(&c, &url, &body, &sign(&body)).await, 200);
    }
    let text = relay.metrics().await;
    assert!(
        !text.contains("attacker.type"),
        "a made-up type named a series"
    );
    assert_eq!(
        sum_metric(
            &text,
            "activity_relay_events_in_total",
            &[("type", "other")]
        ),
        200.0
    );
    // Nothing was dropped: every envelope kept its own type on the broker.
    let got = nats_read_all(
        &format!("HOSTILE_{u}"),
        200,
        Duration::from_secs(2),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(got.len(), 200);
    assert!(got.iter().all(|r| r.envelope["type"]
        .as_str()
        .is_some_and(|t| t.starts_with("attacker.type"))));
}
