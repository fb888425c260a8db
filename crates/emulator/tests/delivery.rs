//! Webhook delivery as X does it: signed POSTs, retries on 500s and slow answers with the
//! scaled 3/27/242 s waits, nothing delivered while a webhook is invalid, periodic re-CRC,
//! duplicates (two apps on one URL, DMs between two subscribed users).

mod common;

use common::*;
use serde_json::Value;
use x_emulator::{AppConfig, AttemptOutcome, Emulator, EmulatorConfig, GeneratorConfig};

async fn setup(cfg: EmulatorConfig) -> (x_emulator::EmulatorHandle, Receiver, String) {
    let emu = Emulator::start(cfg).await.unwrap();
    let rx = Receiver::start(SECRET, Crc::Correct).await;
    let w = emu.register_webhook("demo", &rx.url("demo")).await.unwrap();
    emu.subscribe("demo", &w.id, "2244994945").unwrap();
    (emu, rx, w.id)
}

#[tokio::test]
async fn fixture_delivered_as_is_and_signed() {
    let (emu, rx, wid) = setup(EmulatorConfig::default()).await;
    let path = fixtures().join("aaa/favorite.json");
    let emitted = emu.emit_fixture(&path).unwrap();
    assert_eq!(emitted.len(), 1);
    assert_eq!(emitted[0].webhooks, vec![wid.clone()]);
    assert_eq!(emitted[0].types, vec!["like.create"]);
    let posts = wait_for(10, || Some(rx.posts()).filter(|p| !p.is_empty())).await;
    assert_eq!(posts.len(), 1);
    assert!(posts[0].signature_valid, "{:?}", posts[0].signature);
    assert_eq!(posts[0].body, std::fs::read(&path).unwrap(), "sent as-is");
    let sent = wait_for(10, || {
        let s = emu.sent();
        (s[0].deliveries.len() == 1).then_some(s)
    })
    .await;
    let a = &sent[0].deliveries[0];
    assert_eq!(
        (a.attempt, a.status, a.outcome),
        (1, Some(200), AttemptOutcome::Delivered)
    );
    assert_eq!(a.webhook_id, wid);
    assert_eq!(sent[0].ids, vec!["a7ba59eab0bfcba386f7acedac279542"]);
    assert_eq!(sent[0].for_user_id.as_deref(), Some("2244994945"));

    // For a user nobody subscribed: recorded, not delivered.
    let e = emu
        .emit_fixture(fixtures().join("aaa/direct_message.read.json"))
        .unwrap();
    assert!(e[0].webhooks.is_empty());
    // Over HTTP: /admin/emit then /admin/sent.
    let body = std::fs::read(fixtures().join("aaa/follow.json")).unwrap();
    let r: Value = client()
        .post(format!("{}/admin/emit", emu.base_url()))
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["emitted"][0]["types"][0], "follow.follow");
    wait_for(10, || (rx.posts().len() == 2).then_some(())).await;
    let v: Value = client()
        .get(format!("{}/admin/sent?since=2", emu.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["events"][0]["seq"], 3);
    assert_eq!(v["events"][0]["key"], "follow_events");
    assert!(rx.posts().iter().all(|p| p.signature_valid));
    emu.shutdown().await;
}

#[tokio::test]
async fn retries_follow_x_schedule_scaled() {
    let (emu, rx, _) = setup(EmulatorConfig {
        time_scale: 0.001,
        ..EmulatorConfig::default()
    })
    .await;
    // Always failing: 1 try + 3 retries, then given up.
    rx.script(&[500, 500, 500, 500]);
    let e = emu.emit_fixture(fixtures().join("aaa/block.json")).unwrap();
    let seq = e[0].seq;
    let rec = wait_for(20, || {
        emu.sent()
            .into_iter()
            .find(|s| s.seq == seq && s.deliveries.len() == 4)
    })
    .await;
    let attempts: Vec<u32> = rec.deliveries.iter().map(|a| a.attempt).collect();
    let waits: Vec<u64> = rec.deliveries.iter().map(|a| a.wait_before_ms).collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
    assert_eq!(waits, [0, 3, 27, 242]);
    assert!(rec
        .deliveries
        .iter()
        .all(|a| a.status == Some(500) && a.outcome == AttemptOutcome::Failed));
    assert!(
        rec.deliveries.windows(2).all(|w| w[0].at <= w[1].at),
        "in order"
    );
    let posts = rx.posts();
    assert_eq!(posts.len(), 4);
    assert!(posts
        .iter()
        .all(|p| p.body == posts[0].body && p.signature_valid));

    // Fails once, then succeeds: 2 attempts.
    rx.script(&[503]);
    let e = emu.emit_fixture(fixtures().join("aaa/mute.json")).unwrap();
    let seq = e[0].seq;
    let rec = wait_for(20, || {
        emu.sent().into_iter().find(|s| {
            s.seq == seq
                && s.deliveries
                    .iter()
                    .any(|a| a.outcome == AttemptOutcome::Delivered)
        })
    })
    .await;
    let got: Vec<(u32, Option<u16>)> = rec
        .deliveries
        .iter()
        .map(|a| (a.attempt, a.status))
        .collect();
    assert_eq!(got, [(1, Some(503)), (2, Some(200))]);
    emu.shutdown().await;
}

#[tokio::test]
async fn slow_answer_is_a_failure_and_retried() {
    // The timeout is far above any stall of a loaded machine, so only the deliberately slow
    // first answer (far longer still) can time out: exactly two attempts.
    let (emu, rx, _) = setup(EmulatorConfig {
        time_scale: 0.001,
        delivery_timeout_ms: 3_000,
        ..EmulatorConfig::default()
    })
    .await;
    rx.slow_next(1, 600_000);
    let e = emu
        .emit_fixture(fixtures().join("aaa/unmute.json"))
        .unwrap();
    let seq = e[0].seq;
    let rec = wait_for(30, || {
        emu.sent()
            .into_iter()
            .find(|s| s.seq == seq && !s.deliveries.is_empty())
    })
    .await;
    let a = &rec.deliveries[0];
    assert_eq!(a.outcome, AttemptOutcome::Failed);
    assert_eq!(a.status, None);
    assert!(
        a.error.as_deref().unwrap_or_default().contains("no answer"),
        "{a:?}"
    );
    let rec = wait_for(20, || {
        emu.sent().into_iter().find(|s| {
            s.seq == seq
                && s.deliveries
                    .last()
                    .is_some_and(|a| a.outcome == AttemptOutcome::Delivered)
        })
    })
    .await;
    assert_eq!(rec.deliveries.len(), 2);
    assert_eq!(rec.deliveries[1].attempt, 2);
    assert_eq!(rec.deliveries[1].wait_before_ms, 3);
    emu.shutdown().await;
}

#[tokio::test]
async fn invalid_webhook_receives_nothing_until_it_passes_crc_again() {
    let (emu, rx, wid) = setup(EmulatorConfig::default()).await;
    rx.set_crc(Crc::Status(500));
    emu.recrc_now().await;
    assert!(!emu.webhooks()[0].valid);
    let e = emu
        .emit_fixture(fixtures().join("aaa/tweet_create.post.json"))
        .unwrap();
    let rec = wait_for(10, || {
        emu.sent()
            .into_iter()
            .find(|s| s.seq == e[0].seq && !s.deliveries.is_empty())
    })
    .await;
    assert_eq!(rec.deliveries.len(), 1);
    assert_eq!(rec.deliveries[0].outcome, AttemptOutcome::Skipped);
    assert!(rx.posts().is_empty());

    // PUT /2/webhooks/:id re-runs CRC; valid again, deliveries resume.
    rx.set_crc(Crc::Correct);
    let r = client()
        .put(format!("{}/2/webhooks/{wid}", emu.base_url()))
        .bearer_auth(BEARER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    emu.emit_fixture(fixtures().join("aaa/tweet_create.post.json"))
        .unwrap();
    let posts = wait_for(10, || Some(rx.posts()).filter(|p| p.len() == 1)).await;
    assert!(posts[0].signature_valid);
    let reasons: Vec<String> = emu.webhooks()[0]
        .crc_checks
        .iter()
        .map(|c| c.reason.clone())
        .collect();
    assert_eq!(reasons, ["registration", "admin", "put"]);
    emu.shutdown().await;
}

#[tokio::test]
async fn periodic_recrc_marks_webhook_invalid() {
    // 3600 s × 0.0001 = 0.36 s between checks.
    let (emu, rx, _) = setup(EmulatorConfig {
        time_scale: 0.0001,
        ..EmulatorConfig::default()
    })
    .await;
    rx.set_crc(Crc::WrongToken);
    wait_for(20, || (!emu.webhooks()[0].valid).then_some(())).await;
    let w = &emu.webhooks()[0];
    let last = w.crc_checks.last().unwrap();
    assert_eq!(last.reason, "periodic");
    assert_eq!(last.error.as_deref(), Some("wrong response_token"));
    emu.shutdown().await;
}

#[tokio::test]
async fn two_apps_on_one_url_get_one_delivery_each() {
    let mut cfg = EmulatorConfig::default();
    cfg.apps.push(AppConfig {
        name: "second".into(),
        app_id: "424242".into(),
        consumer_key: "second-key".into(),
        consumer_secret: SECRET.into(),
        bearer_token: "second-bearer".into(),
        account_name: "second".into(),
    });
    let (emu, rx, _) = setup(cfg).await;
    let w2 = emu
        .register_webhook("second", &rx.url("demo"))
        .await
        .unwrap();
    emu.subscribe("second", &w2.id, "2244994945").unwrap();
    let e = emu
        .emit_fixture(fixtures().join("aaa/tweet_create.mention.json"))
        .unwrap();
    assert_eq!(e[0].webhooks.len(), 2);
    let posts = wait_for(10, || Some(rx.posts()).filter(|p| p.len() == 2)).await;
    assert_eq!(posts[0].body, posts[1].body, "identical bodies");
    emu.shutdown().await;
}

#[tokio::test]
async fn dm_between_two_subscribed_users_is_delivered_once_per_user() {
    let (emu, rx, wid) = setup(EmulatorConfig::default()).await;
    emu.subscribe("demo", &wid, "3001969357").unwrap();
    let cfg = GeneratorConfig {
        mix: [("dm_sent".to_owned(), 1.0)].into(),
        formats: [("aaa".to_owned(), 1.0)].into(),
        target_users: vec!["2244994945".into(), "3001969357".into()],
        seed: Some(7),
        ..GeneratorConfig::default()
    };
    let emitted = emu.generate(&cfg, 30);
    // Find a DM id emitted for both users.
    let mut by_id: std::collections::HashMap<String, Vec<String>> = Default::default();
    for e in &emitted {
        by_id
            .entry(e.ids[0].clone())
            .or_default()
            .push(e.for_user_id.clone().unwrap());
    }
    let (dm_id, users) = by_id
        .iter()
        .find(|(_, u)| u.len() == 2)
        .expect("a DM between two subscribed users");
    assert_ne!(users[0], users[1]);
    let posts = wait_for(10, || Some(rx.posts()).filter(|p| p.len() == emitted.len())).await;
    let for_dm: Vec<&Post> = posts
        .iter()
        .filter(|p| p.json["direct_message_events"][0]["id"] == dm_id.as_str())
        .collect();
    assert_eq!(for_dm.len(), 2);
    assert_ne!(for_dm[0].json["for_user_id"], for_dm[1].json["for_user_id"]);
    emu.shutdown().await;
}

#[tokio::test]
async fn revoke_is_delivered_then_the_subscription_removed() {
    let (emu, rx, wid) = setup(EmulatorConfig::default()).await;
    let revoke = serde_json::json!({"user_event": {"revoke": {
        "date_time": "2026-01-01T00:00:00+00:00",
        "target": {"app_id": "13090192"},
        "source": {"user_id": "2244994945"},
    }}});
    let e = emu.emit(revoke);
    assert_eq!(e.webhooks, vec![wid.clone()]);
    assert_eq!(e.unsubscribed, vec![wid.clone()]);
    assert!(emu.webhooks()[0].subscriptions.is_empty());
    let posts = wait_for(10, || Some(rx.posts()).filter(|p| p.len() == 1)).await;
    assert_eq!(
        posts[0].json["user_event"]["revoke"]["source"]["user_id"],
        "2244994945"
    );
    let e = emu
        .emit_fixture(fixtures().join("aaa/follow.json"))
        .unwrap();
    assert!(e[0].webhooks.is_empty());

    // The generator's users authorize the app again after a revoke.
    emu.subscribe("demo", &wid, "2244994945").unwrap();
    let cfg = GeneratorConfig {
        mix: [("revoke".to_owned(), 1.0)].into(),
        formats: [("aaa".to_owned(), 1.0)].into(),
        target_users: vec!["2244994945".into()],
        ..GeneratorConfig::default()
    };
    let emitted = emu.generate(&cfg, 3);
    assert!(emitted.iter().all(|e| e.unsubscribed == vec![wid.clone()]));
    assert_eq!(emu.webhooks()[0].subscriptions, vec!["2244994945"]);
    emu.shutdown().await;
}

#[tokio::test]
async fn xaa_events_go_to_the_webhook_of_a_matching_activity_subscription() {
    let (emu, rx, wid) = setup(EmulatorConfig::default()).await;
    let r = client()
        .post(format!("{}/2/activity/subscriptions", emu.base_url()))
        .bearer_auth(BEARER)
        .json(&serde_json::json!({"event_type": "profile.update.bio",
            "filter": {"user_id": "1111111111111111111"}, "webhook_id": wid}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let e = emu
        .emit_fixture(fixtures().join("xaa/profile.update.bio.json"))
        .unwrap();
    assert_eq!(e[0].webhooks, vec![wid.clone()]);
    // Another type for that user, or that type for another user: not delivered.
    let e = emu
        .emit_fixture(fixtures().join("xaa/profile.update.geo.json"))
        .unwrap();
    assert!(e[0].webhooks.is_empty());
    let posts = wait_for(10, || Some(rx.posts()).filter(|p| p.len() == 1)).await;
    assert_eq!(posts[0].json["data"]["event_type"], "profile.update.bio");
    assert!(posts[0].signature_valid);
    emu.shutdown().await;
}
