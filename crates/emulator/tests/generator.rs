//! The generator: every event type in every format, unique Snowflake ids with real
//! timestamps, X's rounded numeric ids, duplicates, the HTTP controls.

mod common;

use std::collections::{BTreeSet, HashSet};

use common::*;
use serde_json::{json, Value};
use x_emulator::generator::{AAA_KINDS, XAA_KINDS};
use x_emulator::ids::{now_ms, rounded, snowflake_ms};
use x_emulator::{Emulator, EmulatorConfig, Format, GeneratorConfig};

const AAA_TYPES: &[&str] = &[
    "post.create",
    "post.reply.create",
    "post.repost.create",
    "post.quote.create",
    "post.mention.create",
    "like.create",
    "follow.follow",
    "follow.unfollow",
    "block.block",
    "block.unblock",
    "mute.mute",
    "mute.unmute",
    "dm.sent",
    "dm.received",
    "dm.indicate_typing",
    "dm.read",
    "post.delete",
    "oauth.revoke",
    "spaces.event",
];

fn check_tweet(t: &Value) {
    let id: u64 = t["id_str"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        t["id"].as_u64().unwrap(),
        rounded(id),
        "numeric id rounded like X"
    );
    assert!(
        snowflake_ms(id).abs_diff(now_ms()) < 120_000,
        "real timestamp"
    );
    assert!(t["user"]["id_str"].is_string());
    if t["truncated"] == true {
        let full = t["extended_tweet"]["full_text"].as_str().unwrap();
        assert!(full.chars().count() > 140);
        assert!(t["text"].as_str().unwrap().chars().count() <= 140);
    }
}

#[tokio::test]
async fn every_type_in_every_format_with_unique_ids() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let cfg = GeneratorConfig {
        cycle: true,
        batch_rate: 1.0,
        seed: Some(1),
        ..GeneratorConfig::default()
    };
    let n = (2 * AAA_KINDS.len() + XAA_KINDS.len()) as u64;
    let emitted = emu.generate(&cfg, n);
    let sent = emu.sent_with_bodies();
    assert_eq!(sent.len(), emitted.len());

    for f in Format::ALL {
        let types: BTreeSet<String> = sent
            .iter()
            .filter(|e| e.format == f)
            .flat_map(|e| e.types.clone())
            .collect();
        let want: BTreeSet<String> = match f {
            Format::Xaa => XAA_KINDS.iter().map(|s| s.to_string()).collect(),
            _ => AAA_TYPES.iter().map(|s| s.to_string()).collect(),
        };
        assert_eq!(types, want, "{f:?}");
    }
    let mut seen = HashSet::new();
    for e in &sent {
        assert!(
            !e.ids.is_empty() && e.ids.iter().all(|i| !i.is_empty()),
            "{e:?}"
        );
        for id in &e.ids {
            assert!(
                seen.insert((id.clone(), e.for_user_id.clone())),
                "duplicate id {id}"
            );
        }
        let b = e.body.as_ref().unwrap();
        match e.format {
            Format::Aaa => assert!(b.get("event_type").is_none()),
            Format::Stream => {
                assert_eq!(b["event_type"], e.key.as_str());
                assert!(
                    chrono::DateTime::parse_from_rfc3339(b["created_at"].as_str().unwrap()).is_ok()
                );
            }
            Format::Xaa => {
                assert!(b["data"]["event_uuid"].is_string());
                assert!(b["data"]["filter"].is_object());
                assert!(b["data"]["payload"].is_object());
            }
        }
        if let Some(tweets) = b["tweet_create_events"].as_array() {
            tweets.iter().for_each(check_tweet);
        }
        if let Some(dms) = b["direct_message_events"].as_array() {
            assert!(b["users"].is_object() && b["apps"].is_object());
            let id: u64 = dms[0]["id"].as_str().unwrap().parse().unwrap();
            assert!(snowflake_ms(id).abs_diff(now_ms()) < 120_000);
        }
    }
    // Batching happened: some body carries several posts.
    assert!(sent.iter().any(|e| e.ids.len() > 1));
    // A long-form post with extended_tweet.
    assert!(sent
        .iter()
        .any(|e| e.body.as_ref().unwrap()["tweet_create_events"][0]["extended_tweet"].is_object()));
    emu.shutdown().await;
}

#[tokio::test]
async fn duplicates_are_marked() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let cfg = GeneratorConfig {
        duplicate_rate: 1.0,
        formats: [("aaa".to_owned(), 1.0)].into(),
        mix: [("post".to_owned(), 1.0), ("favorite".to_owned(), 1.0)].into(),
        target_users: vec!["2244994945".into()],
        seed: Some(3),
        ..GeneratorConfig::default()
    };
    let emitted = emu.generate(&cfg, 10);
    assert_eq!(emitted.len(), 20);
    let sent = emu.sent_with_bodies();
    for pair in sent.chunks(2) {
        assert_eq!(pair[1].duplicate_of, Some(pair[0].seq));
        assert_eq!(pair[0].body, pair[1].body);
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn generator_over_http_delivers_to_the_webhook() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let base = emu.base_url();
    let rx = Receiver::start(SECRET, Crc::Correct).await;
    let w = emu.register_webhook("demo", &rx.url("demo")).await.unwrap();
    for u in ["2244994945", "3001969357"] {
        emu.subscribe("demo", &w.id, u).unwrap();
    }
    let r = client()
        .post(format!("{base}/admin/generator"))
        .json(
            &json!({"action": "start", "rate": 200.0, "count": 30, "formats": {"aaa": 1.0},
                      "target_users": ["2244994945", "3001969357"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Wait for the generator to finish its 30 events (polling its status over HTTP).
    let mut st = Value::Null;
    for _ in 0..1000 {
        st = client()
            .get(format!("{base}/admin/generator"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if st["running"] == false {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(st["running"], false, "{st}");
    assert_eq!(st["emitted"], 30);
    let status = emu.sent();
    assert!(status.len() >= 30);
    assert!(status.iter().all(|e| e.format == Format::Aaa
        && ["2244994945", "3001969357"].contains(&e.for_user_id.as_deref().unwrap_or_default())));
    wait_for(20, || {
        let s = emu.sent();
        s.iter()
            .all(|e| {
                e.deliveries
                    .iter()
                    .any(|a| a.outcome == x_emulator::AttemptOutcome::Delivered)
            })
            .then_some(())
    })
    .await;
    assert!(rx.posts().iter().all(|p| p.signature_valid));
    let r = client()
        .post(format!("{base}/admin/generator"))
        .json(&json!({"action": "stop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(format!("{base}/admin/generator"))
        .json(&json!({"action": "start", "rate": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // POST /admin/emit {"generate": N}.
    let v: Value = client()
        .post(format!("{base}/admin/emit"))
        .json(&json!({"generate": 5, "generator": {"formats": {"xaa": 1.0}}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["meta"]["count"], 5);
    assert!(v["emitted"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["format"] == "xaa"));
    emu.shutdown().await;
}

#[tokio::test]
async fn events_go_to_every_subscribed_user_they_concern() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let targets = ["2244994945", "3001969357"];
    let cfg = GeneratorConfig {
        mix: [
            ("follow".to_owned(), 1.0),
            ("reply".to_owned(), 1.0),
            ("favorite".to_owned(), 1.0),
        ]
        .into(),
        formats: [("aaa".to_owned(), 1.0)].into(),
        target_users: targets.iter().map(|s| s.to_string()).collect(),
        seed: Some(11),
        ..GeneratorConfig::default()
    };
    let emitted = emu.generate(&cfg, 40);
    // Same event (same X id) for both users at least once, and never twice for one user.
    let mut by_id: std::collections::HashMap<&str, Vec<&str>> = Default::default();
    for e in &emitted {
        by_id
            .entry(e.ids[0].as_str())
            .or_default()
            .push(e.for_user_id.as_deref().unwrap());
    }
    assert!(
        by_id.values().any(|u| u.len() == 2),
        "some event concerns both users"
    );
    for users in by_id.values() {
        let set: HashSet<&&str> = users.iter().collect();
        assert_eq!(set.len(), users.len());
        assert!(users.iter().all(|u| targets.contains(u)));
    }
    emu.shutdown().await;
}
