//! Replay jobs over real HTTP: X's date rules, one job per webhook, re-delivery of the
//! window's events, the final `replay_job_status`.

mod common;

use chrono::{Duration, Utc};
use common::*;
use serde_json::{json, Value};
use x_emulator::{Emulator, EmulatorConfig};

fn ymdhm(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y%m%d%H%M").to_string()
}

fn fixture(p: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures().join(p)).unwrap()).unwrap()
}

async fn replay(base: &str, wid: &str, from: &str, to: &str) -> (u16, Value) {
    let r = client()
        .post(format!(
            "{base}/2/account_activity/replay/webhooks/{wid}/subscriptions/all?from_date={from}&to_date={to}"
        ))
        .bearer_auth(BEARER)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn replay_job_lifecycle() {
    // The receiver holds POSTs while the test makes requests below: a delivery timeout no
    // stall reaches, so the held deliveries are answered, not timed out and retried.
    let emu = Emulator::start(EmulatorConfig {
        delivery_timeout_ms: 120_000,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let base = emu.base_url();
    let rx = Receiver::start(SECRET, Crc::Correct).await;
    let w = emu.register_webhook("demo", &rx.url("demo")).await.unwrap();
    emu.subscribe("demo", &w.id, "2244994945").unwrap();
    let now = Utc::now();
    // In the window (an hour ago): three events for the subscribed user.
    let in_window = [
        "aaa/follow.json",
        "aaa/block.json",
        "aaa/tweet_create.quote.json",
    ];
    for f in in_window {
        emu.emit_at(fixture(f), now - Duration::minutes(60));
    }
    // Outside: too recent, and one for a user who is not subscribed.
    emu.emit_at(fixture("aaa/mute.json"), now - Duration::minutes(5));
    emu.emit_at(
        fixture("aaa/direct_message.read.json"),
        now - Duration::minutes(60),
    );
    wait_for(10, || (rx.posts().len() == 4).then_some(())).await;

    // Date rules.
    let from = ymdhm(now - Duration::minutes(90));
    let to = ymdhm(now - Duration::minutes(30));
    for (f, t) in [
        (ymdhm(now - Duration::minutes(20)), to.clone()), // from < 31 min ago
        (from.clone(), ymdhm(now - Duration::minutes(5))), // to < 10 min ago
        (ymdhm(now - Duration::hours(25)), to.clone()),   // older than 24 h
        (
            ymdhm(now - Duration::minutes(40)),
            ymdhm(now - Duration::minutes(50)),
        ), // from after to
        (ymdhm(now + Duration::minutes(40)), to.clone()), // future
        ("2025-01-01".into(), to.clone()),                // format
    ] {
        let (s, v) = replay(&base, &w.id, &f, &t).await;
        assert_eq!(s, 400, "{f} {t}: {v}");
        assert_eq!(v["errors"][0]["code"], "QueryParamInvalid", "{f} {t}");
    }
    let r = client()
        .post(format!(
            "{base}/2/account_activity/replay/webhooks/{}/subscriptions/all",
            w.id
        ))
        .bearer_auth(BEARER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (s, v) = replay(&base, "12345", &from, &to).await;
    assert_eq!(
        (s, v["errors"][0]["code"].clone()),
        (400, json!("WebhookIdInvalid"))
    );

    // Start a job while the receiver holds every POST: a second job conflicts.
    let gate = rx.close_gate();
    let (s, v) = replay(&base, &w.id, &from, &to).await;
    assert_eq!(s, 200, "{v}");
    let job_id = v["data"]["job_id"].as_str().unwrap().to_owned();
    assert!(v["data"]["created_at"].as_str().is_some());
    let (s, v) = replay(&base, &w.id, &from, &to).await;
    assert_eq!(s, 409);
    assert_eq!(v["errors"][0]["code"], "ReplayConflictError");
    let r = client()
        .post(format!("{base}/2/webhooks/replay"))
        .bearer_auth(BEARER)
        .json(&json!({"webhook_id": w.id, "from_date": from, "to_date": to}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    rx.open_gate(&gate);

    // The window's three events again (same bodies), then the status event.
    let posts = wait_for(10, || Some(rx.posts()).filter(|p| p.len() == 4 + 3 + 1)).await;
    let replayed = &posts[4..7];
    let originals: Vec<&Post> = posts[..4]
        .iter()
        .filter(|p| p.json["mute_events"].is_null())
        .collect();
    for (r, o) in replayed.iter().zip(originals) {
        assert_eq!(r.body, o.body);
        assert!(r.signature_valid);
    }
    let status = &posts[7].json["replay_job_status"];
    assert_eq!(status["job_id"], job_id.as_str());
    assert_eq!(status["job_state"], "Complete");
    assert_eq!(status["webhook_id"], w.id.as_str());
    let job = emu.jobs().into_iter().find(|j| j.job_id == job_id).unwrap();
    assert_eq!((job.state.as_str(), job.events), ("Complete", 3));
    let replay_attempts = emu
        .sent()
        .iter()
        .flat_map(|e| e.deliveries.clone())
        .filter(|a| a.replay_job_id.as_deref() == Some(job_id.as_str()))
        .count();
    assert_eq!(replay_attempts, 3);

    // Configured to fail: Incomplete; via the JSON-body endpoint.
    let r: Value = client()
        .post(format!("{base}/admin/faults"))
        .json(&json!({"replay_incomplete": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["applied"][0]["replay_incomplete"], true);
    let r = client()
        .post(format!("{base}/2/webhooks/replay"))
        .bearer_auth(BEARER)
        .json(&json!({"webhook_id": w.id, "from_date": from, "to_date": to}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let posts = wait_for(10, || Some(rx.posts()).filter(|p| p.len() == 8 + 4)).await;
    assert_eq!(
        posts[11].json["replay_job_status"]["job_state"],
        "Incomplete"
    );

    // An invalid webhook cannot be replayed to.
    rx.set_crc(Crc::WrongToken);
    emu.recrc_now().await;
    let (s, v) = replay(&base, &w.id, &from, &to).await;
    assert_eq!(
        (s, v["errors"][0]["code"].clone()),
        (400, json!("CrcValidationFailed"))
    );
    let state: Value = client()
        .get(format!("{base}/admin/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["replay_jobs"].as_array().unwrap().len(), 2);
    assert_eq!(state["webhooks"][0]["valid"], false);
    emu.shutdown().await;
}
