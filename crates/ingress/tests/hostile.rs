//! The webhook under hostile clients, over real sockets: the CRC signing oracle, slow and
//! idle connections, the connection cap, per-app concurrency, the pre-auth body budget and
//! oversized bodies a client sends whole before reading. Each test asserts a limit or an
//! outcome; waits are bounded only against a hang.

use std::sync::Arc;
use std::time::Duration;

use relay_ingress::webhook::is_crc_token_shape;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;
use common::*;

/// Longest wait for something the server must do by itself (a bound against a hang, not a
/// speed expectation).
const HANG: Duration = Duration::from_secs(20);

fn addr(srv: &Running) -> String {
    srv.base.trim_start_matches("http://").to_string()
}

/// Reads until EOF or error; returns what was read. Panics only on a hang.
async fn read_to_close(sock: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(HANG, sock.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn wait_metric(srv: &Running, name: &str, labels: &[(&str, &str)], want: f64) {
    let deadline = tokio::time::Instant::now() + HANG;
    while srv.metric(name, labels) < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}{labels:?} never reached {want} (is {})",
            srv.metric(name, labels)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn crc_token_shape_is_xs_alphabet_up_to_255() {
    assert!(is_crc_token_shape(b"crc-token-1234"));
    assert!(is_crc_token_shape(b"a+b/c="));
    assert!(is_crc_token_shape(&[b'A'; 255]));
    assert!(!is_crc_token_shape(&[b'A'; 256]));
    assert!(!is_crc_token_shape(b""));
    for bad in [
        &b"{\"a\":1}"[..],
        b"a b",
        b"1.5",
        b"\"x\"",
        b"a\nb",
        b"\xff",
    ] {
        assert!(!is_crc_token_shape(bad), "{bad:?}");
    }
}

#[tokio::test]
async fn crc_never_signs_a_forged_body() {
    let (srv, rec) = start_default().await;
    let forged = br#"{"for_user_id":"2244994945","follow_events":[{"type":"follow","source":{"id":"1"},"target":{"id":"2244994945"}}]}"#;
    let q: String = url::form_urlencoded::byte_serialize(forged).collect();
    let resp = srv
        .client
        .get(srv.url(&format!("/webhooks/prod?crc_token={q}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let text = resp.text().await.unwrap();
    let sig = hmac_b64("current-secret", forged);
    assert!(!text.contains(&sig), "the answer carries the body's MAC");
    assert!(!text.contains("sha256="), "{text}");
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_requests_total",
            &[("app", "prod"), ("outcome", "bad_crc_token")]
        ),
        1.0
    );
    // An over-long token of the right alphabet is refused too.
    let long = "A".repeat(256);
    let resp = srv
        .client
        .get(srv.url(&format!("/webhooks/prod?crc_token={long}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // X's tokens still pass.
    let resp = srv
        .client
        .get(srv.url("/webhooks/prod?crc_token=Zm9vYmFyLWNyYy10b2tlbg%3D%3D"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(rec.got.lock().is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn a_crc_answer_cannot_be_replayed_as_a_post_signature() {
    let (srv, rec) = start_default().await;
    // Every byte string CRC still signs is refused as a POST body, whatever the signature.
    for token in ["12345", "true", "null", "-1e5", "aGVsbG8="] {
        let url = srv.url(&format!("/webhooks/prod?crc_token={token}"));
        let answer: serde_json::Value = srv
            .client
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sig = answer["response_token"].as_str().unwrap().to_owned();
        assert_eq!(
            sig,
            format!("sha256={}", hmac_b64("current-secret", token.as_bytes()))
        );
        let resp = srv.post("prod", token.as_bytes(), Some(&sig)).await;
        assert_eq!(resp.status(), 401, "{token}");
    }
    assert!(rec.got.lock().is_empty(), "nothing reached the pipeline");
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_signature_failures_total",
            &[("app", "prod"), ("reason", "crc_shaped")]
        ),
        5.0
    );
    srv.stop().await;
}

#[tokio::test]
async fn half_sent_and_idle_connections_are_closed_by_the_header_timeout() {
    let rec = Arc::new(Recorder::default());
    let mut cfg = config(vec![app("prod", &["s"])]);
    cfg.header_read_timeout = Duration::from_millis(300);
    let srv = start(cfg, rec).await;

    let mut half = TcpStream::connect(addr(&srv)).await.unwrap();
    half.write_all(b"POST /webhooks/prod HT").await.unwrap();
    let mut idle = TcpStream::connect(addr(&srv)).await.unwrap();
    let mut headers_only = TcpStream::connect(addr(&srv)).await.unwrap();
    headers_only
        .write_all(b"GET /webhooks/prod?crc_token=abc HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();

    // A prefix of HTTP/2's preface: the protocol detection waits for more.
    let mut preface = TcpStream::connect(addr(&srv)).await.unwrap();
    preface.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();

    for sock in [&mut half, &mut idle, &mut headers_only, &mut preface] {
        let got = read_to_close(sock).await;
        assert!(!got.contains("200 OK"), "{got}");
    }
    wait_metric(
        &srv,
        "activity_relay_webhook_connections_total",
        &[("outcome", "no_request")],
        4.0,
    )
    .await;
    assert_eq!(
        srv.metric("activity_relay_webhook_connections_open", &[]),
        0.0
    );

    // A keep-alive connection that was served is closed once idle for as long.
    let mut ka = TcpStream::connect(addr(&srv)).await.unwrap();
    ka.write_all(b"GET /webhooks/prod?crc_token=abc HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut ka).await;
    assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    wait_metric(
        &srv,
        "activity_relay_webhook_connections_total",
        &[("outcome", "served")],
        1.0,
    )
    .await;
    srv.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_counted() {
    let rec = Arc::new(Recorder::default());
    let mut cfg = config(vec![app("prod", &["s"])]);
    cfg.max_connections = 8;
    cfg.header_read_timeout = Duration::from_secs(30);
    let srv = start(cfg, rec).await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(addr(&srv)).await.unwrap());
    }
    wait_metric(&srv, "activity_relay_webhook_connections_open", &[], 8.0).await;
    let mut extra = TcpStream::connect(addr(&srv)).await.unwrap();
    let _ = extra
        .write_all(b"GET /webhooks/prod?crc_token=abc HTTP/1.1\r\nhost: x\r\n\r\n")
        .await;
    let got = read_to_close(&mut extra).await;
    assert!(got.is_empty(), "served over the cap: {got}");
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_connections_total",
            &[("outcome", "refused")]
        ),
        1.0
    );
    assert_eq!(
        srv.metric("activity_relay_webhook_connections_open", &[]),
        8.0
    );
    // Freeing one slot lets the next connection in.
    held.pop();
    wait_metric(
        &srv,
        "activity_relay_webhook_connections_total",
        &[("outcome", "no_request")],
        1.0,
    )
    .await;
    let resp = srv
        .client
        .get(srv.url("/webhooks/prod?crc_token=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    srv.stop().await;
}

#[tokio::test]
async fn posts_over_the_per_app_cap_get_503_with_retry_after() {
    let rec = Arc::new(Recorder::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *rec.gate.lock() = Some(gate.clone());
    let mut cfg = config(vec![app("prod", &["s"]), app("other", &["o"])]);
    cfg.max_requests_per_app = 2;
    let acceptance = relay_ingress::Acceptance::default();
    let srv = Arc::new(start_with(cfg, acceptance.clone(), rec.clone()).await);
    let body = br#"{"for_user_id":"1","follow_events":[]}"#.to_vec();
    let sig = format!("sha256={}", hmac_b64("s", &body));
    let mut waiting = Vec::new();
    for _ in 0..2 {
        let (srv, body, sig) = (srv.clone(), body.clone(), sig.clone());
        waiting.push(tokio::spawn(async move {
            srv.post("prod", &body, Some(&sig)).await.status()
        }));
        tokio::time::timeout(HANG, rec.entered.notified())
            .await
            .unwrap();
    }
    let before = std::time::SystemTime::now();
    let third = srv.post("prod", &body, Some(&sig)).await;
    assert_eq!(third.status(), 503);
    assert!(third.headers().contains_key("retry-after"));
    // X's delivery may have been the one refused: an interval of refusals begins (the
    // relay recovers it if it lasts past X's retries).
    assert!(acceptance.accepted_up_to() >= before);
    assert!(acceptance.accepted_up_to() <= std::time::SystemTime::now());
    // Another app is not affected.
    let osig = format!("sha256={}", hmac_b64("o", &body));
    gate.add_permits(1);
    assert_eq!(srv.post("other", &body, Some(&osig)).await.status(), 200);
    gate.add_permits(2);
    for w in waiting {
        assert_eq!(w.await.unwrap(), 200);
    }
    assert_eq!(acceptance.take_refused().len(), 1, "one interval, ended");
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_requests_total",
            &[("app", "prod"), ("outcome", "busy")]
        ),
        1.0
    );
}

#[tokio::test]
async fn unauthenticated_bodies_in_flight_are_bounded_by_the_budget() {
    let rec = Arc::new(Recorder::default());
    let mut cfg = config(vec![app("prod", &["s"])]);
    cfg.body_limit = 100_000;
    cfg.preauth_body_budget = 250_000;
    cfg.small_body_reserve = 50_000;
    cfg.small_body_bytes = 10_000;
    cfg.body_timeout = Duration::from_secs(30);
    let srv = start(cfg, rec.clone()).await;
    let wrong = format!("sha256={}", hmac_b64("not-the-secret", b"x"));
    // Two uploads that declare the limit, send half and stall: 200,000 bytes reserved.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut sock = TcpStream::connect(addr(&srv)).await.unwrap();
        let head = format!(
            "POST /webhooks/prod HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n{SIG}: {wrong}\r\n\r\n"
        );
        sock.write_all(head.as_bytes()).await.unwrap();
        sock.write_all(&[b'{'; 50_000]).await.unwrap();
        stalled.push(sock);
    }
    // A third that declares 100,000 does not fit in what is left for large bodies (the
    // budget less the small-body reserve): 503 before its body.
    let deadline = tokio::time::Instant::now() + HANG;
    let big = vec![b'{'; 100_000];
    let big_sig = format!("sha256={}", hmac_b64("s", &big));
    loop {
        let resp = srv.post("prod", &big, Some(&big_sig)).await;
        if resp.status() == 503 {
            assert!(resp.headers().contains_key("retry-after"));
            break;
        }
        // The stalled uploads may not have been read yet: try again.
        assert!(tokio::time::Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        srv.metric(
            "activity_relay_webhook_requests_total",
            &[("app", "prod"), ("outcome", "preauth_budget")]
        ) >= 1.0
    );
    // A small real delivery still fits: the reserve is for bodies like X's.
    let body = br#"{"for_user_id":"1","follow_events":[]}"#;
    let sig = format!("sha256={}", hmac_b64("s", body));
    assert_eq!(srv.post("prod", body, Some(&sig)).await.status(), 200);
    // Once the stalled uploads go away, the budget is whole again.
    drop(stalled);
    let deadline = tokio::time::Instant::now() + HANG;
    loop {
        let resp = srv.post("prod", &big, Some(&big_sig)).await;
        if resp.status() == 200 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "budget never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    srv.stop().await;
}

/// Sends a whole oversized request before reading anything, as Python's urllib does, and
/// returns what comes back.
async fn send_whole_then_read(srv: &Running, head: String, body: &[u8]) -> String {
    let mut sock = TcpStream::connect(addr(srv)).await.unwrap();
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(body).await.unwrap();
    read_to_close(&mut sock).await
}

#[tokio::test]
async fn an_oversized_body_sent_whole_still_gets_its_413() {
    let rec = Arc::new(Recorder::default());
    let mut cfg = config(vec![app("prod", &["s"])]);
    cfg.body_limit = 64 << 10;
    let srv = start(cfg, rec.clone()).await;
    let body = vec![b'x'; 2 << 20];
    let sig = format!("sha256={}", hmac_b64("s", &body));
    let head = format!(
        "POST /webhooks/prod HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n{SIG}: {sig}\r\n\r\n",
        body.len()
    );
    let got = send_whole_then_read(&srv, head, &body).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got:?}");
    // Chunked, over the limit only while reading.
    let mut chunked = Vec::new();
    for _ in 0..32 {
        chunked.extend_from_slice(format!("{:x}\r\n", 8192).as_bytes());
        chunked.extend_from_slice(&[b'y'; 8192]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /webhooks/prod HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n{SIG}: {sig}\r\n\r\n"
    );
    let got = send_whole_then_read(&srv, head, &chunked).await;
    assert!(got.starts_with("HTTP/1.1 413"), "{got:?}");
    assert!(rec.got.lock().is_empty());
    srv.stop().await;
}
