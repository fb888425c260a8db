//! Webhook tests over real sockets: a bound `WebhookServer`, a reqwest client, and a
//! recording `Pipeline` (plus one test on a real `relay_spool::Spool`).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use relay_envelope::{Context, IngressKind};
use relay_ingress::webhook::{TlsConfig, WebhookConfig, WebhookServer};
use relay_ingress::{AcceptError, AcceptReport, Pipeline};
use tokio_util::sync::CancellationToken;

mod common;
use common::*;

#[tokio::test]
async fn crc_answers_with_the_current_secret() {
    let (srv, rec) = start_default().await;
    let resp = srv
        .client
        .get(srv.url("/webhooks/prod?crc_token=crc-token-1234"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/json"
    );
    let body: serde_json::Value = resp.json().await.unwrap();
    // Computed with: printf %s crc-token-1234 | openssl dgst -sha256 -hmac current-secret -binary | base64
    assert_eq!(
        body,
        serde_json::json!({"response_token": "sha256=OmEAap88a/59Vy6ep3Z5zEY9pCHolClI0y6aZP2f/tM="})
    );
    assert_eq!(
        body["response_token"],
        format!("sha256={}", hmac_b64("current-secret", b"crc-token-1234"))
    );
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_crc_checks_total",
            &[("app", "prod")]
        ),
        1.0
    );
    assert!(rec.got.lock().is_empty(), "a CRC is not a delivery");
    srv.stop().await;
}

#[tokio::test]
async fn crc_ignores_other_query_params_and_decodes_the_token() {
    let (srv, _rec) = start_default().await;
    // `a+b/c=` url-encoded, between other parameters.
    let resp = srv
        .client
        .get(srv.url("/webhooks/other?nonce=123456&crc_token=a%2Bb%2Fc%3D&extra=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["response_token"],
        format!("sha256={}", hmac_b64("other-secret", b"a+b/c="))
    );
    srv.stop().await;
}

#[tokio::test]
async fn crc_without_token_is_400() {
    let (srv, _rec) = start_default().await;
    for path in [
        "/webhooks/prod",
        "/webhooks/prod?nonce=1",
        "/webhooks/prod?crc_token=",
    ] {
        let resp = srv.client.get(srv.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{path}");
    }
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_requests_total",
            &[("app", "prod"), ("outcome", "bad_request")]
        ),
        3.0
    );
    srv.stop().await;
}

#[tokio::test]
async fn signed_post_is_accepted_with_its_exact_bytes_and_context() {
    let (srv, rec) = start_default().await;
    let body = fixture("aaa/favorite.json");
    let sig = format!("sha256={}", hmac_b64("current-secret", &body));
    let before = chrono::Utc::now();
    let resp = srv.post("prod", &body, Some(&sig)).await;
    assert_eq!(resp.status(), 200);
    let got = rec.got.lock().clone();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0.as_ref(), body.as_slice());
    assert_eq!(got[0].1.ingress, IngressKind::Webhook);
    assert_eq!(got[0].1.source, "/x/account-activity/webhook/prod");
    assert!(got[0].1.received_at >= before);
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_requests_total",
            &[("app", "prod"), ("outcome", "accepted")]
        ),
        1.0
    );
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_received_bytes_total",
            &[("app", "prod")]
        ),
        body.len() as f64
    );
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_handler_seconds",
            &[("app", "prod"), ("method", "POST")]
        ),
        1.0
    );
    srv.stop().await;
}

#[tokio::test]
async fn every_bad_signature_form_is_401_and_nothing_is_stored() {
    let (srv, rec) = start_default().await;
    let body = fixture("aaa/follow.json");
    let good = hmac_b64("current-secret", &body);
    let mut tampered = body.clone();
    tampered[10] ^= 1;
    let short = base64::engine::general_purpose::STANDARD.encode([7u8; 31]);
    let cases: Vec<(&str, Vec<u8>, Option<String>, &str)> = vec![
        ("missing", body.clone(), None, "missing"),
        ("no prefix", body.clone(), Some(good.clone()), "malformed"),
        (
            "wrong prefix",
            body.clone(),
            Some(format!("sha1={good}")),
            "malformed",
        ),
        (
            "bad base64",
            body.clone(),
            Some("sha256=!!not*base64!!".into()),
            "malformed",
        ),
        (
            "wrong length",
            body.clone(),
            Some(format!("sha256={short}")),
            "malformed",
        ),
        (
            "wrong secret",
            body.clone(),
            Some(format!("sha256={}", hmac_b64("other-secret", &body))),
            "mismatch",
        ),
        (
            "body tampered",
            tampered,
            Some(format!("sha256={good}")),
            "mismatch",
        ),
    ];
    for (what, body, sig, _) in &cases {
        let resp = srv.post("prod", body, sig.as_deref()).await;
        assert_eq!(resp.status(), 401, "{what}");
    }
    assert!(rec.got.lock().is_empty(), "nothing reaches the pipeline");
    for reason in ["missing", "malformed", "mismatch"] {
        let want = cases.iter().filter(|c| c.3 == reason).count() as f64;
        assert_eq!(
            srv.metric(
                "activity_relay_webhook_signature_failures_total",
                &[("app", "prod"), ("reason", reason)]
            ),
            want,
            "{reason}"
        );
    }
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_requests_total",
            &[("app", "prod"), ("outcome", "unauthorized")]
        ),
        cases.len() as f64
    );
    // The right signature for the untampered body still passes.
    let resp = srv
        .post("prod", &body, Some(&format!("sha256={good}")))
        .await;
    assert_eq!(resp.status(), 200);
    srv.stop().await;
}

#[tokio::test]
async fn a_signature_for_another_app_is_rejected() {
    let (srv, rec) = start_default().await;
    let body = fixture("aaa/mute.json");
    let sig = format!("sha256={}", hmac_b64("current-secret", &body));
    assert_eq!(srv.post("other", &body, Some(&sig)).await.status(), 401);
    assert!(rec.got.lock().is_empty());
    srv.stop().await;
}

#[tokio::test]
async fn rotated_secrets_are_both_accepted() {
    let (srv, rec) = start_default().await;
    let body = fixture("aaa/block.json");
    for secret in ["current-secret", "old-secret"] {
        let sig = format!("sha256={}", hmac_b64(secret, &body));
        assert_eq!(srv.post("prod", &body, Some(&sig)).await.status(), 200);
    }
    assert_eq!(rec.got.lock().len(), 2);
    srv.stop().await;
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let rec = Arc::new(Recorder::default());
    let mut cfg = config(vec![app("prod", &["s"])]);
    cfg.body_limit = 1000;
    let srv = start(cfg, rec.clone()).await;

    // Exactly at the limit: fine.
    let body = vec![b'x'; 1000];
    let sig = format!("sha256={}", hmac_b64("s", &body));
    assert_eq!(srv.post("prod", &body, Some(&sig)).await.status(), 200);

    // Declared by Content-Length.
    let body = vec![b'x'; 1001];
    let sig = format!("sha256={}", hmac_b64("s", &body));
    assert_eq!(srv.post("prod", &body, Some(&sig)).await.status(), 413);

    // Chunked (no Content-Length): enforced while reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..4).map(|_| Ok(vec![b'y'; 400])).collect();
    let all = vec![b'y'; 1600];
    let sig = format!("sha256={}", hmac_b64("s", &all));
    let resp = srv
        .client
        .post(srv.url("/webhooks/prod"))
        .header(SIG, sig)
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    assert_eq!(rec.got.lock().len(), 1, "only the in-limit body was stored");
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_requests_total",
            &[("app", "prod"), ("outcome", "too_large")]
        ),
        2.0
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_stalled_body_gets_408_and_is_not_stored() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rec = Arc::new(Recorder::default());
    let mut cfg = config(vec![app("prod", &["s"])]);
    cfg.body_timeout = Duration::from_millis(200);
    let srv = start(cfg, rec.clone()).await;
    let addr = srv.base.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let sig = format!("sha256={}", hmac_b64("s", &[b'x'; 100]));
    let head = format!(
        "POST /webhooks/prod HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n{SIG}: {sig}\r\n\r\nxxxxxxxxxx"
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    // The remaining 90 bytes never come; the server answers on its own.
    let mut buf = vec![0u8; 1024];
    let n = sock.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(rec.got.lock().is_empty());
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_requests_total",
            &[("app", "prod"), ("outcome", "read_timeout")]
        ),
        1.0
    );
    srv.stop().await;
}

/// While the pipeline refuses, the webhook's "accepted up to" stays where the refusals
/// began (so the liveness record shows the gap). An accepted delivery ends the interval of
/// refusals, which holds the clock back until the relay takes it (to recover it in-run).
#[tokio::test]
async fn refusals_stop_the_acceptance_clock_until_a_delivery_is_taken() {
    let rec = Arc::new(Recorder::default());
    let cfg = config(vec![app("prod", &["s"])]);
    let acceptance = relay_ingress::Acceptance::default();
    let srv = start_with(cfg, acceptance.clone(), rec.clone()).await;
    let body = fixture("aaa/unmute.json");
    let sig = format!("sha256={}", hmac_b64("s", &body));
    let before = std::time::SystemTime::now();
    *rec.mode.lock() = Some(Mode::Full(Duration::ZERO));
    assert_eq!(srv.post("prod", &body, Some(&sig)).await.status(), 503);
    let stopped = acceptance.accepted_up_to();
    assert!(stopped >= before);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(srv.post("prod", &body, Some(&sig)).await.status(), 503);
    assert_eq!(
        acceptance.accepted_up_to(),
        stopped,
        "still stopped at the first refusal"
    );
    *rec.mode.lock() = Some(Mode::Ok);
    let resumed = std::time::SystemTime::now();
    assert_eq!(srv.post("prod", &body, Some(&sig)).await.status(), 200);
    assert_eq!(
        acceptance.accepted_up_to(),
        stopped,
        "the interval is not forgotten by the next accepted delivery"
    );
    let refused = acceptance.take_refused();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0].0, stopped);
    assert!(refused[0].1 >= resumed, "{refused:?}");
    assert!(
        acceptance.accepted_up_to() > stopped,
        "accepting again, interval taken"
    );
    srv.stop().await;
}

#[tokio::test]
async fn full_and_unavailable_pipelines_give_503_with_retry_after() {
    let (srv, rec) = start_default().await;
    let body = fixture("aaa/unmute.json");
    let sig = format!("sha256={}", hmac_b64("current-secret", &body));

    *rec.mode.lock() = Some(Mode::Full(Duration::from_millis(6200)));
    let resp = srv.post("prod", &body, Some(&sig)).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(
        resp.headers()["retry-after"],
        "7",
        "rounded up to whole seconds"
    );

    *rec.mode.lock() = Some(Mode::Full(Duration::ZERO));
    let resp = srv.post("prod", &body, Some(&sig)).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5", "the configured default");

    *rec.mode.lock() = Some(Mode::Unavailable);
    let resp = srv.post("prod", &body, Some(&sig)).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "5");
    let text = resp.text().await.unwrap();
    assert!(!text.contains("disk"), "internal reasons stay internal");

    *rec.mode.lock() = Some(Mode::Ok);
    assert_eq!(srv.post("prod", &body, Some(&sig)).await.status(), 200);
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_requests_total",
            &[("app", "prod"), ("outcome", "full")]
        ),
        2.0
    );
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_requests_total",
            &[("app", "prod"), ("outcome", "unavailable")]
        ),
        1.0
    );
    srv.stop().await;
}

#[tokio::test]
async fn unknown_app_is_404_without_leaking_the_name_into_metrics() {
    let (srv, rec) = start_default().await;
    let body = b"{}";
    let sig = format!("sha256={}", hmac_b64("current-secret", body));
    assert_eq!(srv.post("nope", body, Some(&sig)).await.status(), 404);
    let resp = srv
        .client
        .get(srv.url("/webhooks/nope?crc_token=x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = srv.client.get(srv.url("/other/path")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert!(rec.got.lock().is_empty());
    assert_eq!(
        srv.metric(
            "activity_relay_webhook_requests_total",
            &[("app", "_unknown"), ("outcome", "unknown_app")]
        ),
        2.0
    );
    assert_eq!(
        srv.metric("activity_relay_webhook_requests_total", &[("app", "nope")]),
        0.0
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_batch_of_three_is_delivered_whole() {
    let (srv, rec) = start_default().await;
    let body = fixture("aaa/tweet_create.batch3.json");
    let sig = format!("sha256={}", hmac_b64("old-secret", &body));
    assert_eq!(srv.post("prod", &body, Some(&sig)).await.status(), 200);
    let got = rec.got.lock().clone();
    assert_eq!(got.len(), 1, "one POST, one accept call");
    assert_eq!(got[0].0.as_ref(), body.as_slice());
    let parsed: serde_json::Value = serde_json::from_slice(&got[0].0).unwrap();
    assert_eq!(parsed["tweet_create_events"].as_array().unwrap().len(), 3);
    srv.stop().await;
}

#[tokio::test]
async fn non_json_authentic_bodies_reach_the_pipeline() {
    // The pipeline dead-letters them; the webhook must not reject or alter them.
    let (srv, rec) = start_default().await;
    let body = b"\xffnot json at all\x00";
    let sig = format!("sha256={}", hmac_b64("current-secret", body));
    assert_eq!(srv.post("prod", body, Some(&sig)).await.status(), 200);
    assert_eq!(rec.got.lock()[0].0.as_ref(), body);
    srv.stop().await;
}

#[tokio::test]
async fn configured_source_is_used() {
    let rec = Arc::new(Recorder::default());
    let mut a = app("prod", &["s"]);
    a.source = Some("/custom/source".into());
    let srv = start(config(vec![a]), rec.clone()).await;
    let sig = format!("sha256={}", hmac_b64("s", b"{}"));
    assert_eq!(srv.post("prod", b"{}", Some(&sig)).await.status(), 200);
    assert_eq!(rec.got.lock()[0].1.source, "/custom/source");
    srv.stop().await;
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_stops_listening() {
    let rec = Arc::new(Recorder::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *rec.gate.lock() = Some(gate.clone());
    let srv = start(config(vec![app("prod", &["s"])]), rec.clone()).await;
    let addr = srv.base.clone();
    let body = b"{\"in\":\"flight\"}".to_vec();
    let sig = format!("sha256={}", hmac_b64("s", &body));
    let client = srv.client.clone();
    let url = srv.url("/webhooks/prod");
    let in_flight = tokio::spawn(async move {
        client
            .post(url)
            .header(SIG, sig)
            .body(body)
            .send()
            .await
            .map(|r| r.status())
    });
    // Wait until the request is inside the pipeline (blocked on the gate).
    rec.entered.notified().await;
    srv.shutdown.cancel();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!srv.task.is_finished(), "waits for the in-flight request");
    gate.add_permits(1);
    let status = in_flight.await.unwrap().unwrap();
    assert_eq!(status, 200);
    srv.task.await.unwrap().unwrap();
    assert_eq!(rec.got.lock().len(), 1);
    // The listener is gone.
    let err = reqwest::Client::new()
        .get(format!("{addr}/webhooks/prod?crc_token=x"))
        .send()
        .await;
    assert!(err.is_err());
}

#[tokio::test]
async fn tls_serves_https() {
    let rec = Arc::new(Recorder::default());
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let mut cfg = config(vec![app("prod", &["s"])]);
    cfg.tls = Some(TlsConfig {
        cert: format!("{data}/test-cert.pem").into(),
        key: format!("{data}/test-key.pem").into(),
    });
    let registry = prometheus::Registry::new();
    let server = WebhookServer::bind(cfg, rec.clone(), &registry)
        .await
        .unwrap();
    let port = server.local_addr().port();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let ca = reqwest::Certificate::from_pem(&std::fs::read(format!("{data}/test-ca.pem")).unwrap())
        .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let body = b"{\"over\":\"tls\"}";
    let resp = client
        .post(format!("https://localhost:{port}/webhooks/prod"))
        .header(SIG, format!("sha256={}", hmac_b64("s", body)))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(rec.got.lock()[0].0.as_ref(), body);
    // Plain HTTP on the TLS port does not get through.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/webhooks/prod?crc_token=x"))
        .send()
        .await;
    assert!(plain.map(|r| r.status() != 200).unwrap_or(true));
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn bad_tls_files_fail_bind_without_echoing_key_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key.pem");
    std::fs::write(
        &key,
        "-----BEGIN PRIVATE KEY-----\nU0VDUkVUS0VZ\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
    let mut cfg = config(vec![app("prod", &["s"])]);
    cfg.tls = Some(TlsConfig {
        cert: format!("{data}/test-cert.pem").into(),
        key: key.clone(),
    });
    let err = WebhookServer::bind(
        cfg,
        Arc::new(Recorder::default()),
        &prometheus::Registry::new(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("TLS"), "{msg}");
    assert!(!msg.contains("U0VDUkVUS0VZ"), "{msg}");

    let mut cfg = config(vec![app("prod", &["s"])]);
    cfg.tls = Some(TlsConfig {
        cert: "/nonexistent/cert.pem".into(),
        key: "/nonexistent/key.pem".into(),
    });
    assert!(matches!(
        WebhookServer::bind(
            cfg,
            Arc::new(Recorder::default()),
            &prometheus::Registry::new()
        )
        .await,
        Err(relay_ingress::IngressError::Config(e)) if e.key == "tls.cert"
    ));
}

#[tokio::test]
async fn spool_backed_pipeline_stores_authentic_bodies_only() {
    use relay_spool::{NewRecord, RecordKind, Spool, SpoolConfig};

    struct SpoolPipeline(Spool);
    #[async_trait::async_trait]
    impl Pipeline for SpoolPipeline {
        async fn accept(&self, body: Bytes, _ctx: Context) -> Result<AcceptReport, AcceptError> {
            let rec = NewRecord {
                kind: RecordKind::DeadLetter,
                accepted_at_ms: 0,
                payload: body,
                attachment: None,
            };
            match self.0.append(vec![rec]).await {
                Ok(_) => Ok(AcceptReport {
                    spooled: 1,
                    ..Default::default()
                }),
                Err(relay_spool::SpoolError::Full { .. }) => Err(AcceptError::Full {
                    retry_after: Duration::from_secs(1),
                }),
                Err(e) => Err(AcceptError::Unavailable(Box::new(e))),
            }
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(SpoolConfig {
        dir: dir.path().to_path_buf(),
        max_bytes: 64 << 20,
        segment_bytes: 1 << 20,
        sinks: vec!["test".into()],
        min_free_bytes: None,
    })
    .await
    .unwrap();
    let srv = start(
        config(vec![app("prod", &["current-secret"])]),
        Arc::new(SpoolPipeline(spool.clone())),
    )
    .await;
    let mut names: Vec<_> = std::fs::read_dir(format!("{FIXTURES}/aaa"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let mut sent = Vec::new();
    for name in &names {
        let body = fixture(&format!("aaa/{name}"));
        let sig = format!("sha256={}", hmac_b64("current-secret", &body));
        assert_eq!(
            srv.post("prod", &body, Some(&sig)).await.status(),
            200,
            "{name}"
        );
        // An unsigned copy must never be stored.
        assert_eq!(srv.post("prod", &body, None).await.status(), 401);
        sent.push(body);
    }
    let stored = spool.read(0, 1000).await.unwrap();
    assert_eq!(stored.len(), sent.len());
    for (rec, body) in stored.iter().zip(&sent) {
        assert_eq!(rec.payload.as_ref(), body.as_slice());
    }
    srv.stop().await;
    spool.close().await;
}

#[test]
fn config_defaults_redaction_and_unknown_fields() {
    let cfg: WebhookConfig = serde_json::from_value(serde_json::json!({
        "apps": [{"name": "prod", "consumer_secrets": ["hunter2-secret", "older-secret"]}]
    }))
    .unwrap();
    assert_eq!(cfg.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(cfg.body_limit, 1048576);
    assert_eq!(cfg.retry_after_secs, 5);
    assert!(cfg.tls.is_none());
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(!dbg.contains("older-secret"), "{dbg}");
    assert!(dbg.contains("prod"));

    let cfg: WebhookConfig = serde_json::from_value(serde_json::json!({
        "listen": "127.0.0.1:9999", "shutdown_grace": "2s",
        "apps": [{"name": "a", "consumer_secrets": ["x"]}]
    }))
    .unwrap();
    assert_eq!(cfg.shutdown_grace, Duration::from_secs(2));

    let err = serde_json::from_value::<WebhookConfig>(serde_json::json!({
        "apps": [{"name": "prod", "consumer_secrets": ["x"], "secret": "typo"}]
    }));
    assert!(err.is_err());
    let err = serde_json::from_value::<WebhookConfig>(serde_json::json!({
        "bodylimit": 5, "apps": []
    }));
    assert!(err.is_err());
}

#[test]
fn invalid_configs_are_rejected() {
    let reg = prometheus::Registry::new();
    let pipe: Arc<dyn Pipeline> = Arc::new(Recorder::default());
    for cfg in [
        config(vec![]),
        config(vec![app("prod", &[])]),
        config(vec![app("prod", &[""])]),
        config(vec![app("bad/name", &["s"])]),
        config(vec![app("prod", &["s"]), app("prod", &["t"])]),
    ] {
        let err = relay_ingress::webhook::router(&cfg, pipe.clone(), &reg).unwrap_err();
        assert!(
            matches!(err, relay_ingress::IngressError::Config(_)),
            "{err}"
        );
    }
}
