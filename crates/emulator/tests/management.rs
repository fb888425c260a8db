//! The management API over real HTTP: webhooks, AAA subscriptions (OAuth 1.0a), activity
//! subscriptions, errors in X's shape, rate-limit headers.

mod common;

use common::*;
use relay_xapi::oauth::{authorization_header, Credentials};
use serde_json::{json, Value};
use x_emulator::{Emulator, EmulatorConfig};

fn creds(user_id: &str, consumer_secret: &str) -> Credentials {
    Credentials {
        consumer_key: "emulator-consumer-key".into(),
        consumer_secret: consumer_secret.into(),
        token: format!("{user_id}-emulator-token"),
        token_secret: format!("emulator-secret-{user_id}").into(),
    }
}

async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn assert_x_error(v: &Value, reason: &str) {
    assert_eq!(v["title"], reason, "{v}");
    assert_eq!(v["errors"][0]["code"], reason, "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
}

#[tokio::test]
async fn webhooks_crud_crc_and_errors() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let base = emu.base_url();
    let rx = Receiver::start(SECRET, Crc::Correct).await;
    let c = client();

    // No auth, wrong auth.
    let (s, v) = json_of(c.get(format!("{base}/2/webhooks")).send().await.unwrap()).await;
    assert_eq!(s, 401);
    assert_x_error(&v, "Unauthorized");
    let r = c
        .get(format!("{base}/2/webhooks"))
        .bearer_auth("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // Bad URL, bad body.
    let (s, v) = json_of(register(&base, "not a url").await).await;
    assert_eq!(s, 400);
    assert_x_error(&v, "UrlValidationFailed");
    let r = c
        .post(format!("{base}/2/webhooks"))
        .bearer_auth(BEARER)
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Success, with rate-limit headers.
    let r = register(&base, &rx.url("demo")).await;
    for h in [
        "x-rate-limit-limit",
        "x-rate-limit-remaining",
        "x-rate-limit-reset",
    ] {
        assert!(r.headers().get(h).is_some(), "missing {h}");
    }
    let (s, v) = json_of(r).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["valid"], true);
    assert_eq!(v["data"]["url"], rx.url("demo"));
    assert!(v["data"]["created_at"].as_str().is_some());
    let id = v["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(rx.crc_count(), 1);

    // Duplicate URL.
    let (s, v) = json_of(register(&base, &rx.url("demo")).await).await;
    assert_eq!(s, 400);
    assert_x_error(&v, "DuplicateUrlFailed");

    // List.
    let (_, v) = json_of(
        c.get(format!("{base}/2/webhooks"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["meta"]["result_count"], 1);
    assert_eq!(v["data"][0]["id"], id.as_str());

    // PUT re-runs CRC; a wrong answer makes the webhook invalid.
    let (s, v) = json_of(
        c.put(format!("{base}/2/webhooks/{id}"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["data"]["valid"].clone()), (200, json!(true)));
    rx.set_crc(Crc::WrongToken);
    let (s, v) = json_of(
        c.put(format!("{base}/2/webhooks/{id}"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_x_error(&v, "CrcValidationFailed");
    let (_, v) = json_of(
        c.get(format!("{base}/2/webhooks"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["data"][0]["valid"], false);
    assert_eq!(rx.crc_count(), 3);

    // Unknown id, delete, delete again.
    let (s, v) = json_of(
        c.put(format!("{base}/2/webhooks/123"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_x_error(&v, "WebhookIdInvalid");
    let (s, v) = json_of(
        c.delete(format!("{base}/2/webhooks/{id}"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["data"]["deleted"].clone()), (200, json!(true)));
    let (s, v) = json_of(
        c.delete(format!("{base}/2/webhooks/{id}"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_x_error(&v, "WebhookIdInvalid");

    // Unknown route: X-style 404.
    let (s, v) = json_of(c.get(format!("{base}/2/nothing")).send().await.unwrap()).await;
    assert_eq!(s, 404);
    assert_eq!(v["errors"][0]["code"], "NotFound");
    let (s, v) = json_of(c.patch(format!("{base}/2/webhooks")).send().await.unwrap()).await;
    assert_eq!(s, 405);
    assert_eq!(v["errors"][0]["code"], "MethodNotAllowed");
    emu.shutdown().await;
}

#[tokio::test]
async fn registration_crc_failures() {
    // A CRC timeout no stall of a loaded machine reaches; only the deliberately slow
    // receiver (far slower still) times out.
    let emu = Emulator::start(EmulatorConfig {
        crc_timeout_ms: 3_000,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let base = emu.base_url();
    for mode in [
        Crc::WrongToken,
        Crc::Status(500),
        Crc::Redirect,
        Crc::SlowMs(600_000),
    ] {
        let rx = Receiver::start(SECRET, mode.clone()).await;
        let (s, v) = json_of(register(&base, &rx.url("demo")).await).await;
        assert_eq!(s, 400, "{mode:?}");
        assert_x_error(&v, "CrcValidationFailed");
        // Exactly one CRC request reached the receiver (waited for, bounded: the emulator
        // may give up before the receiver has recorded it).
        let n = wait_for(10, || Some(rx.crc_count()).filter(|&n| n > 0)).await;
        assert_eq!(n, 1, "{mode:?}");
    }
    // A receiver using another secret fails too.
    let rx = Receiver::start("another-secret", Crc::Correct).await;
    let (s, v) = json_of(register(&base, &rx.url("demo")).await).await;
    assert_eq!(s, 400);
    assert_x_error(&v, "CrcValidationFailed");
    assert!(emu.webhooks().is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn pro_limits() {
    let emu = Emulator::start(EmulatorConfig::default().pro_limits())
        .await
        .unwrap();
    let base = emu.base_url();
    let rx = Receiver::start(SECRET, Crc::Correct).await;
    let (s, v) = json_of(register(&base, &rx.url("demo")).await).await;
    assert_eq!(s, 200);
    let id = v["data"]["id"].as_str().unwrap().to_owned();
    let (s, v) = json_of(register(&base, &rx.url("other")).await).await;
    assert_eq!(s, 400);
    assert_x_error(&v, "WebhookLimitExceeded");

    let users = [
        "2244994945",
        "3001969357",
        "4337869213",
        "1111111111111111111",
    ];
    for (i, u) in users.iter().enumerate() {
        let url = format!("{base}/2/account_activity/webhooks/{id}/subscriptions/all");
        let auth = authorization_header("POST", &url, &[], &creds(u, SECRET));
        let (s, v) = json_of(
            client()
                .post(&url)
                .header("authorization", auth)
                .send()
                .await
                .unwrap(),
        )
        .await;
        if i < 3 {
            assert_eq!(s, 200, "{v}");
        } else {
            assert_eq!(s, 400);
            assert_x_error(&v, "SubscriptionLimitExceeded");
        }
    }
    let (_, v) = json_of(
        client()
            .get(format!("{base}/2/account_activity/subscriptions/count"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["data"]["subscriptions_count_all"], "3");
    assert_eq!(v["data"]["provisioned_count"], "3");
    emu.shutdown().await;
}

#[tokio::test]
async fn aaa_subscriptions_with_oauth() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let base = emu.base_url();
    let rx = Receiver::start(SECRET, Crc::Correct).await;
    let (_, v) = json_of(register(&base, &rx.url("demo")).await).await;
    let id = v["data"]["id"].as_str().unwrap().to_owned();
    let c = client();
    let url = format!("{base}/2/account_activity/webhooks/{id}/subscriptions/all");
    let user = "2244994945";

    // No auth, Bearer instead of OAuth, bad signature, unknown token: 401.
    assert_eq!(c.post(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        c.post(&url)
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let bad = authorization_header("POST", &url, &[], &creds(user, "wrong-secret"));
    let (s, v) = json_of(
        c.post(&url)
            .header("authorization", bad)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    assert_x_error(&v, "Unauthorized");
    let mut unknown = creds(user, SECRET);
    unknown.token = "no-such-token".into();
    let h = authorization_header("POST", &url, &[], &unknown);
    assert_eq!(
        c.post(&url)
            .header("authorization", h)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    // Signed for another method: rejected.
    let h = authorization_header("GET", &url, &[], &creds(user, SECRET));
    assert_eq!(
        c.post(&url)
            .header("authorization", h)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Good signature.
    let h = authorization_header("POST", &url, &[], &creds(user, SECRET));
    let (s, v) = json_of(
        c.post(&url)
            .header("authorization", h)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["subscribed"], true);

    // Duplicate.
    let h = authorization_header("POST", &url, &[], &creds(user, SECRET));
    let (s, v) = json_of(
        c.post(&url)
            .header("authorization", h)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_x_error(&v, "DuplicateSubscriptionFailed");

    // GET (query parameters are signed too).
    let qurl = format!("{url}?probe=a%20b");
    let h = authorization_header("GET", &qurl, &[], &creds(user, SECRET));
    let (s, v) = json_of(
        c.get(&qurl)
            .header("authorization", h)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["subscribed"], true);
    let other = "3001969357";
    let h = authorization_header("GET", &url, &[], &creds(other, SECRET));
    let (_, v) = json_of(c.get(&url).header("authorization", h).send().await.unwrap()).await;
    assert_eq!(v["data"]["subscribed"], false);

    // Unknown webhook.
    let wrong = format!("{base}/2/account_activity/webhooks/999/subscriptions/all");
    let h = authorization_header("POST", &wrong, &[], &creds(other, SECRET));
    let (s, v) = json_of(
        c.post(&wrong)
            .header("authorization", h)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_x_error(&v, "WebhookIdInvalid");

    // List and count (Bearer).
    let (s, v) = json_of(
        c.get(format!("{url}/list"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["data"]["application_id"], "13090192");
    assert_eq!(v["data"]["webhook_id"], id.as_str());
    assert_eq!(v["data"]["webhook_url"], rx.url("demo"));
    assert_eq!(v["data"]["subscriptions"], json!([{"user_id": user}]));
    assert_eq!(
        c.get(format!("{url}/list")).send().await.unwrap().status(),
        401
    );
    let (_, v) = json_of(
        c.get(format!("{base}/2/account_activity/subscriptions/count"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["data"]["subscriptions_count_all"], "1");
    assert_eq!(v["data"]["provisioned_count"], "5000");
    assert_eq!(v["data"]["account_name"], "emulator");

    // Delete, delete again.
    let del = format!("{base}/2/account_activity/webhooks/{id}/subscriptions/{user}/all");
    let (s, v) = json_of(c.delete(&del).bearer_auth(BEARER).send().await.unwrap()).await;
    assert_eq!((s, v["data"]["subscribed"].clone()), (200, json!(false)));
    let (s, v) = json_of(c.delete(&del).bearer_auth(BEARER).send().await.unwrap()).await;
    assert_eq!(s, 400);
    assert_x_error(&v, "SubscriptionNotFound");
    let del = format!("{base}/2/account_activity/webhooks/42/subscriptions/{user}/all");
    let (_, v) = json_of(c.delete(&del).bearer_auth(BEARER).send().await.unwrap()).await;
    assert_x_error(&v, "WebhookIdInvalid");
    emu.shutdown().await;
}

#[tokio::test]
async fn activity_subscriptions_crud() {
    let emu = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let base = emu.base_url();
    let rx = Receiver::start(SECRET, Crc::Correct).await;
    let (_, v) = json_of(register(&base, &rx.url("demo")).await).await;
    let wid = v["data"]["id"].as_str().unwrap().to_owned();
    let c = client();
    let subs = format!("{base}/2/activity/subscriptions");
    let post = |body: Value| c.post(&subs).bearer_auth(BEARER).json(&body).send();

    assert_eq!(
        c.post(&subs)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    // Stream shape.
    let (s, v) = json_of(post(json!({"user_id": "2244994945", "event_types": ["tweet_create_events", "favorite_events"]})).await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["user_id"], "2244994945");
    assert_eq!(
        v["data"]["event_types"],
        json!(["tweet_create_events", "favorite_events"])
    );
    let id1 = v["data"]["id"].as_str().unwrap().to_owned();
    assert!(v["data"]["created_at"].as_str().is_some());

    // XAA shape.
    let (s, v) = json_of(post(json!({"event_type": "profile.update.bio", "filter": {"user_id": "2244994945"}, "tag": "bios", "webhook_id": wid})).await.unwrap()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["event_type"], "profile.update.bio");
    assert_eq!(v["data"]["filter"]["user_id"], "2244994945");
    assert_eq!(v["data"]["tag"], "bios");
    assert_eq!(v["data"]["webhook_id"], wid.as_str());
    let id2 = v["data"]["id"].as_str().unwrap().to_owned();
    let (s, _) = json_of(
        post(json!({"event_type": "follow.follow", "filter": {"user_id": "3001969357"}}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);

    // Errors.
    let (s, v) = json_of(post(json!({"event_type": "post.create"})).await.unwrap()).await;
    assert_eq!(s, 400);
    assert_x_error(&v, "InvalidRequest");
    let (_, v) = json_of(
        post(json!({"event_type": "post.create", "filter": {"user_id": "1"}, "webhook_id": "404"}))
            .await
            .unwrap(),
    )
    .await;
    assert_x_error(&v, "WebhookIdInvalid");
    let (_, v) = json_of(post(json!({"event_type": "profile.update.bio", "filter": {"user_id": "2244994945"}, "tag": "bios", "webhook_id": wid})).await.unwrap()).await;
    assert_x_error(&v, "DuplicateSubscriptionFailed");

    // Pagination.
    let (s, v) = json_of(
        c.get(format!("{subs}?max_results=2"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["meta"]["result_count"], 2);
    assert_eq!(v["data"][0]["id"], id1.as_str());
    let next = v["meta"]["next_token"].as_str().unwrap().to_owned();
    let (_, v) = json_of(
        c.get(format!("{subs}?max_results=2&pagination_token={next}"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(v["meta"]["result_count"], 1);
    assert!(v["meta"].get("next_token").is_none());
    for q in ["max_results=0", "max_results=abc", "pagination_token=nope"] {
        let (s, v) = json_of(
            c.get(format!("{subs}?{q}"))
                .bearer_auth(BEARER)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 400, "{q}");
        assert_x_error(&v, "QueryParamInvalid");
    }

    // PUT: only tag and webhook_id.
    let (s, v) = json_of(
        c.put(format!("{subs}/{id2}"))
            .bearer_auth(BEARER)
            .json(&json!({"tag": "renamed"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["data"]["tag"], "renamed");
    assert_eq!(v["data"]["event_type"], "profile.update.bio");
    let (s, v) = json_of(
        c.put(format!("{subs}/{id2}"))
            .bearer_auth(BEARER)
            .json(&json!({"event_type": "post.create"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_x_error(&v, "InvalidRequest");
    let (s, v) = json_of(
        c.put(format!("{subs}/nope"))
            .bearer_auth(BEARER)
            .json(&json!({"tag": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    assert_x_error(&v, "SubscriptionNotFound");

    // DELETE one, bulk.
    let (s, v) = json_of(
        c.delete(format!("{subs}/{id1}"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, v["data"]["deleted"].clone()), (200, json!(true)));
    let (s, _) = json_of(
        c.delete(format!("{subs}/{id1}"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 404);
    let (s, v) = json_of(
        c.delete(format!("{subs}?ids={id2},missing"))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    // X's shape: an item per id deleted, an error per id not, the total left.
    assert_eq!(
        v["data"],
        json!([{"deleted": true, "subscription_id": id2}])
    );
    assert_eq!(v["errors"][0]["subscription_id"], "missing");
    assert_eq!(v["errors"][0]["reason"], "SubscriptionNotFound");
    assert!(v["meta"]["total_subscriptions"].is_u64(), "{v}");
    let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
    let (s, v) = json_of(
        c.delete(format!("{subs}?ids={}", many.join(",")))
            .bearer_auth(BEARER)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 400);
    assert_x_error(&v, "QueryParamInvalid");
    let (_, v) = json_of(c.get(&subs).bearer_auth(BEARER).send().await.unwrap()).await;
    assert_eq!(v["meta"]["result_count"], 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn rate_limit_enforced_with_headers() {
    let emu = Emulator::start(EmulatorConfig {
        rate_limit: 2,
        ..EmulatorConfig::default()
    })
    .await
    .unwrap();
    let url = format!("{}/2/webhooks", emu.base_url());
    let mut remaining = Vec::new();
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let r = client().get(&url).bearer_auth(BEARER).send().await.unwrap();
        statuses.push(r.status().as_u16());
        remaining.push(
            r.headers()["x-rate-limit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(remaining, ["1", "0", "0"]);
    emu.shutdown().await;
}
