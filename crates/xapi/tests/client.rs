//! Every `XClient` call against x-emulator over real HTTP (one emulator per test).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use chrono::{DurationRound as _, Utc};
use common::{setup, setup_with, OTHER_USER, USER};
use relay_xapi::{
    AccessToken, ActivitySubscriptionUpdate, ClientOptions, NewActivitySubscription, ReplayError,
    Window, XClient, XapiError,
};
use serde_json::json;
use x_emulator::EmulatorConfig;

fn reason(e: &XapiError) -> &str {
    e.reason().unwrap_or("<none>")
}

#[tokio::test]
async fn webhooks_create_list_validate_delete() {
    let s = setup().await;
    let url = s.receiver.url("main");
    let w = s.client.create_webhook(&url).await.expect("create");
    assert_eq!(w.url, url);
    assert!(w.valid);
    assert!(!w.id.is_empty());
    assert!(w.created_at.is_some());

    let list = s.client.list_webhooks().await.expect("list");
    assert_eq!(list, vec![w.clone()]);

    assert!(s.client.validate_webhook(&w.id).await.expect("validate"));

    let dup = s
        .client
        .create_webhook(&url)
        .await
        .expect_err("duplicate url");
    assert_eq!(reason(&dup), "DuplicateUrlFailed");
    assert_eq!(dup.status(), Some(400));

    assert!(s.client.delete_webhook(&w.id).await.expect("delete"));
    assert!(s.client.list_webhooks().await.expect("list").is_empty());

    let gone = s.client.validate_webhook(&w.id).await.expect_err("deleted");
    assert_eq!(reason(&gone), "WebhookIdInvalid");
    let gone = s.client.delete_webhook(&w.id).await.expect_err("deleted");
    assert_eq!(reason(&gone), "WebhookIdInvalid");
    s.emu.shutdown().await;
}

#[tokio::test]
async fn webhook_crc_failure_is_reported_with_reason() {
    let s = setup().await;
    // Nothing answers there, so X's CRC at registration fails.
    let e = s
        .client
        .create_webhook("http://127.0.0.1:9/webhooks/nobody")
        .await
        .expect_err("crc fails");
    assert_eq!(reason(&e), "CrcValidationFailed");
    assert!(
        e.to_string()
            .starts_with("X refused: CrcValidationFailed: "),
        "{e}"
    );
    assert!(s.client.list_webhooks().await.expect("list").is_empty());
    s.emu.shutdown().await;
}

#[tokio::test]
async fn aaa_subscribe_check_list_count_unsubscribe() {
    let s = setup().await;
    let w = s
        .client
        .create_webhook(&s.receiver.url("aaa"))
        .await
        .expect("webhook");
    let user = s.user(USER);

    assert!(!s.client.check_user(&w.id, &user).await.expect("check"));
    assert!(s
        .client
        .subscribe_user(&w.id, &user)
        .await
        .expect("subscribe"));
    assert!(s.client.check_user(&w.id, &user).await.expect("check"));

    let dup = s
        .client
        .subscribe_user(&w.id, &user)
        .await
        .expect_err("duplicate");
    assert_eq!(reason(&dup), "DuplicateSubscriptionFailed");
    assert!(dup
        .to_string()
        .starts_with("X refused: DuplicateSubscriptionFailed: "));

    s.client
        .subscribe_user(&w.id, &s.user(OTHER_USER))
        .await
        .expect("second user");

    let list = s.client.list_subscriptions(&w.id).await.expect("list");
    assert_eq!(list.webhook_id, w.id);
    assert_eq!(list.webhook_url.as_deref(), Some(w.url.as_str()));
    assert_eq!(
        list.application_id.as_deref(),
        Some(s.cfg.apps[0].app_id.as_str())
    );
    let mut users = list.user_ids.clone();
    users.sort();
    assert_eq!(users, vec![USER.to_string(), OTHER_USER.to_string()]);

    let count = s.client.subscription_count().await.expect("count");
    assert_eq!(count.subscriptions_count_all, 2);
    assert_eq!(count.provisioned_count, Some(5000));
    assert_eq!(count.subscriptions_count_direct_messages, Some(0));
    assert_eq!(count.account_name.as_deref(), Some("emulator"));

    assert!(!s
        .client
        .unsubscribe_user(&w.id, USER)
        .await
        .expect("unsubscribe"));
    assert!(!s.client.check_user(&w.id, &user).await.expect("check"));
    let again = s
        .client
        .unsubscribe_user(&w.id, USER)
        .await
        .expect_err("not subscribed");
    assert_eq!(reason(&again), "SubscriptionNotFound");
    assert_eq!(
        s.client
            .subscription_count()
            .await
            .expect("count")
            .subscriptions_count_all,
        1
    );
    s.emu.shutdown().await;
}

#[tokio::test]
async fn aaa_unknown_webhook_and_bad_credentials() {
    let s = setup().await;
    let user = s.user(USER);
    let e = s
        .client
        .subscribe_user("999", &user)
        .await
        .expect_err("unknown webhook");
    assert_eq!(reason(&e), "WebhookIdInvalid");
    let e = s
        .client
        .list_subscriptions("999")
        .await
        .expect_err("unknown webhook");
    assert_eq!(reason(&e), "WebhookIdInvalid");

    // A wrong token secret makes the OAuth signature wrong: X answers 401.
    let w = s
        .client
        .create_webhook(&s.receiver.url("creds"))
        .await
        .expect("webhook");
    let forged = AccessToken {
        token: user.token.clone(),
        secret: "not-the-secret".into(),
    };
    let e = s
        .client
        .subscribe_user(&w.id, &forged)
        .await
        .expect_err("bad signature");
    assert_eq!(e.status(), Some(401));
    assert!(!e.to_string().contains("not-the-secret"));

    // No bearer token configured: refused before any call, naming the variable.
    let bare = XClient::new(&s.emu.base_url()).expect("client");
    let e = bare.list_webhooks().await.expect_err("no bearer");
    assert!(matches!(e, XapiError::MissingCredential(_)));
    assert!(e.to_string().contains("X_BEARER_TOKEN"));
    // No consumer keys: OAuth calls are refused before any call.
    let bearer_only = XClient::new(&s.emu.base_url())
        .expect("client")
        .bearer_token(s.bearer());
    let e = bearer_only
        .subscribe_user(&w.id, &user)
        .await
        .expect_err("no consumer");
    assert!(matches!(e, XapiError::MissingCredential(_)));
    s.emu.shutdown().await;
}

#[tokio::test]
async fn activity_subscriptions_both_shapes_update_delete() {
    let s = setup().await;
    let w = s
        .client
        .create_webhook(&s.receiver.url("xaa"))
        .await
        .expect("webhook");

    let stream = s
        .client
        .create_activity_subscription(&NewActivitySubscription::UserEvents {
            user_id: USER.into(),
            event_types: vec!["tweet_create_events".into(), "favorite_events".into()],
        })
        .await
        .expect("stream shape");
    assert_eq!(stream.user_id.as_deref(), Some(USER));
    assert_eq!(
        stream.event_types,
        vec![
            "tweet_create_events".to_string(),
            "favorite_events".to_string()
        ]
    );

    let xaa = s
        .client
        .create_activity_subscription(&NewActivitySubscription::Filtered {
            event_type: "post.create".into(),
            filter: json!({"user_id": USER}),
            tag: Some("mine".into()),
            webhook_id: Some(w.id.clone()),
        })
        .await
        .expect("xaa shape");
    assert_eq!(xaa.event_type.as_deref(), Some("post.create"));
    assert_eq!(xaa.filter, Some(json!({"user_id": USER})));
    assert_eq!(xaa.tag.as_deref(), Some("mine"));
    assert_eq!(xaa.webhook_id.as_deref(), Some(w.id.as_str()));
    assert_ne!(xaa.id, stream.id);

    let bad = s
        .client
        .create_activity_subscription(&NewActivitySubscription::Filtered {
            event_type: "post.create".into(),
            filter: json!({"user_id": USER}),
            tag: None,
            webhook_id: Some("999".into()),
        })
        .await
        .expect_err("unknown webhook");
    assert_eq!(reason(&bad), "WebhookIdInvalid");

    let all = s
        .client
        .list_all_activity_subscriptions(None)
        .await
        .expect("list");
    assert_eq!(all.len(), 2);
    assert_eq!(all[1], xaa);

    let updated = s
        .client
        .update_activity_subscription(
            &xaa.id,
            &ActivitySubscriptionUpdate {
                tag: Some("renamed".into()),
                webhook_id: None,
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.id, xaa.id);
    assert_eq!(updated.tag.as_deref(), Some("renamed"));
    assert_eq!(updated.webhook_id.as_deref(), Some(w.id.as_str()));
    let e = s
        .client
        .update_activity_subscription(&xaa.id, &ActivitySubscriptionUpdate::default())
        .await
        .expect_err("empty update");
    assert!(matches!(e, XapiError::InvalidArgument(_)));

    assert!(s
        .client
        .delete_activity_subscription(&stream.id)
        .await
        .expect("delete"));
    let e = s
        .client
        .delete_activity_subscription(&stream.id)
        .await
        .expect_err("already gone");
    assert_eq!(reason(&e), "SubscriptionNotFound");
    assert_eq!(e.status(), Some(404));
    let left = s
        .client
        .list_all_activity_subscriptions(None)
        .await
        .expect("list");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].tag.as_deref(), Some("renamed"));
    s.emu.shutdown().await;
}

async fn create_many(client: &XClient, prefix: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let sub = client
            .create_activity_subscription(&NewActivitySubscription::Filtered {
                event_type: "post.create".into(),
                filter: json!({"keyword": format!("{prefix}{i}")}),
                tag: Some(format!("t{i}")),
                webhook_id: None,
            })
            .await
            .expect("create");
        ids.push(sub.id);
    }
    ids
}

#[tokio::test]
async fn pagination_follows_next_token_over_many_subscriptions() {
    let s = setup().await;
    let ids = create_many(&s.client, "k", 230).await;

    let first = s
        .client
        .list_activity_subscriptions(Some(100), None)
        .await
        .expect("page 1");
    assert_eq!(first.subscriptions.len(), 100);
    assert_eq!(first.result_count, Some(100));
    let token = first.next_token.clone().expect("more pages");
    let second = s
        .client
        .list_activity_subscriptions(Some(100), Some(&token))
        .await
        .expect("page 2");
    assert_eq!(second.subscriptions[0].id, ids[100]);

    let all = s
        .client
        .list_all_activity_subscriptions(Some(100))
        .await
        .expect("all pages");
    let got: Vec<String> = all.iter().map(|s| s.id.clone()).collect();
    assert_eq!(got, ids);
    assert_eq!(all[229].tag.as_deref(), Some("t229"));

    let small_pages = s
        .client
        .list_all_activity_subscriptions(Some(7))
        .await
        .expect("small pages");
    assert_eq!(small_pages.len(), 230);
    s.emu.shutdown().await;
}

#[tokio::test]
async fn bulk_delete_splits_into_calls_of_at_most_100() {
    let s = setup().await;
    let ids = create_many(&s.client, "k", 250).await;
    let keep = create_many(&s.client, "keep", 1).await;

    // Duplicates are dropped before splitting.
    let mut asked = ids.clone();
    asked.extend(ids[..5].iter().cloned());
    let report = s
        .client
        .delete_activity_subscriptions(&asked)
        .await
        .expect("bulk delete");
    assert_eq!(report.requested, 250);
    assert_eq!(report.calls, 3);
    assert!(report.all_deleted);
    assert!(report.errors.is_empty());
    // Every item of every answer read, not only the first.
    let mut deleted = report.deleted.clone();
    deleted.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(deleted, want);
    assert_eq!(report.total_subscriptions, Some(1));

    let left = s
        .client
        .list_all_activity_subscriptions(None)
        .await
        .expect("list");
    let left: Vec<String> = left.into_iter().map(|s| s.id).collect();
    assert_eq!(left, keep);

    // Ids X does not know are reported per id, not as a failure of the whole call.
    let report = s
        .client
        .delete_activity_subscriptions(&[keep[0].clone(), "12345".into()])
        .await
        .expect("partial");
    assert_eq!(report.calls, 1);
    assert!(!report.all_deleted);
    assert_eq!(report.errors.len(), 1);
    assert!(
        report.errors[0].contains("SubscriptionNotFound"),
        "{:?}",
        report.errors
    );
    assert_eq!(report.deleted, vec![keep[0].clone()]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].subscription_id.as_deref(), Some("12345"));
    assert_eq!(
        report.failed[0].reason.as_deref(),
        Some("SubscriptionNotFound")
    );

    let none = s
        .client
        .delete_activity_subscriptions(&[])
        .await
        .expect("nothing");
    assert_eq!(none.calls, 0);
    s.emu.shutdown().await;
}

fn replayable_window() -> Window {
    let now = Utc::now()
        .duration_trunc(chrono::Duration::minutes(1))
        .expect("trunc");
    Window {
        from: now - chrono::Duration::minutes(90),
        to: now - chrono::Duration::minutes(30),
    }
}

#[tokio::test]
async fn replay_jobs_and_conflict() {
    let s = setup().await;
    let w = s
        .client
        .create_webhook(&s.receiver.url("replay"))
        .await
        .expect("webhook");
    s.client
        .subscribe_user(&w.id, &s.user(USER))
        .await
        .expect("subscribe");
    // An event inside the window: its re-delivery is held open by the receiver, so the
    // job is still running when the second request comes.
    let at = Utc::now() - chrono::Duration::minutes(60);
    s.emu.emit_at(
        json!({"for_user_id": USER, "favorite_events": [{"id": "a1", "created_at": "Mon May 19 14:01:46 +0000 2025", "timestamp_ms": 1747663306000u64, "favorited_status": {"id_str": "1"}, "user": {"id_str": "3001969357"}}]}),
        at,
    );
    let window = replayable_window();
    let job = s
        .client
        .replay_account_activity(&w.id, &window)
        .await
        .expect("replay");
    assert!(!job.job_id.is_empty());
    assert!(job.created_at.is_some());
    assert_eq!(job.window, Some(window));
    let jobs = s.emu.jobs();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].from, window.from);
    assert_eq!(jobs[0].to, window.to);

    assert_eq!(s.emu.jobs()[0].state, "running");
    let conflict = s
        .client
        .replay_account_activity(&w.id, &window)
        .await
        .expect_err("a job runs");
    assert_eq!(reason(&conflict), "ReplayConflictError");
    let conflict = s
        .client
        .replay_webhook(&w.id, &window)
        .await
        .expect_err("a job runs");
    assert_eq!(reason(&conflict), "ReplayConflictError");

    // The JSON-body endpoint on another webhook.
    let w2 = s
        .client
        .create_webhook(&s.receiver.url("replay2"))
        .await
        .expect("webhook 2");
    let job2 = s
        .client
        .replay_webhook(&w2.id, &window)
        .await
        .expect("replay 2");
    assert_ne!(job2.job_id, job.job_id);

    let unknown = s
        .client
        .replay_account_activity("999", &window)
        .await
        .expect_err("unknown webhook");
    assert_eq!(reason(&unknown), "WebhookIdInvalid");
    s.emu.shutdown().await;
}

#[tokio::test]
async fn replay_date_rules_are_checked_before_any_call() {
    let s = setup().await;
    let w = s
        .client
        .create_webhook(&s.receiver.url("rules"))
        .await
        .expect("webhook");
    let good = replayable_window();
    let bad = [
        // from too recent
        Window {
            from: good.to,
            to: good.to + chrono::Duration::minutes(15),
        },
        // window longer than 2 h
        Window {
            from: good.from - chrono::Duration::hours(2),
            to: good.to,
        },
        // not before
        Window {
            from: good.to,
            to: good.from,
        },
        // seconds
        Window {
            from: good.from + chrono::Duration::seconds(5),
            to: good.to,
        },
    ];
    for window in &bad {
        let e = s
            .client
            .replay_account_activity(&w.id, window)
            .await
            .expect_err("rejected");
        assert!(matches!(e, XapiError::Replay(_)), "{e:?}");
        assert!(e.to_string().contains("replay rule"), "{e}");
        let e = s
            .client
            .replay_webhook(&w.id, window)
            .await
            .expect_err("rejected");
        assert!(matches!(e, XapiError::Replay(_)), "{e:?}");
    }
    assert!(s.emu.jobs().is_empty(), "no replay reached X");

    // Not even a network error: a client pointing nowhere still reports the rule.
    let nowhere = XClient::new("http://127.0.0.1:9")
        .expect("client")
        .bearer_token("x");
    let e = nowhere
        .replay_account_activity("1", &bad[0])
        .await
        .expect_err("rejected");
    assert!(
        matches!(e, XapiError::Replay(ReplayError::FromTooRecent { .. })),
        "{e:?}"
    );
    let e = nowhere
        .replay_account_activity("1", &good)
        .await
        .expect_err("no server");
    assert!(matches!(e, XapiError::Network(_)), "{e:?}");
    s.emu.shutdown().await;
}

#[tokio::test]
async fn rate_limit_headers_are_surfaced_and_429_reported() {
    let cfg = EmulatorConfig {
        rate_limit: 2,
        ..EmulatorConfig::default()
    };
    let options = ClientOptions {
        retry_rate_limited: true,
        // The emulator's reset is up to 15 minutes away: too far to wait.
        max_rate_limit_wait: Duration::from_secs(1),
        ..ClientOptions::default()
    };
    let s = setup_with(cfg, options).await;
    assert!(s.client.rate_limit().is_none());
    s.client.list_webhooks().await.expect("1st");
    let rl = s.client.rate_limit().expect("headers seen");
    assert_eq!(rl.limit, Some(2));
    assert_eq!(rl.remaining, Some(1));
    assert!(rl.reset.expect("reset") > Utc::now());
    s.client.list_webhooks().await.expect("2nd");
    assert_eq!(s.client.rate_limit().and_then(|r| r.remaining), Some(0));
    let e = s.client.list_webhooks().await.expect_err("3rd is limited");
    match &e {
        XapiError::RateLimited { rate_limit } => {
            assert_eq!(rate_limit.and_then(|r| r.limit), Some(2));
            assert!(rate_limit.and_then(|r| r.reset).is_some());
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert_eq!(e.status(), Some(429));
    assert!(e.to_string().contains("resets at"), "{e}");
    // Another endpoint has its own window.
    s.client.subscription_count().await.expect("other endpoint");
    s.emu.shutdown().await;
}

/// A server answering 429 (reset already passed) to the first `fail` requests, then 200.
async fn flaky_server(fail: usize) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let app = Router::new().route(
        "/2/webhooks",
        get(move |headers: HeaderMap| {
            let counter = Arc::clone(&counter);
            async move {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                let authed = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    == Some("Bearer t");
                let reset = (Utc::now().timestamp() - 1).to_string();
                if !authed {
                    return (StatusCode::UNAUTHORIZED, "no").into_response();
                }
                if n < fail {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        [
                            ("x-rate-limit-limit", "15".to_string()),
                            ("x-rate-limit-remaining", "0".to_string()),
                            ("x-rate-limit-reset", reset),
                        ],
                        r#"{"title":"Too Many Requests","detail":"slow down"}"#,
                    )
                        .into_response()
                } else {
                    (
                        StatusCode::OK,
                        [
                            ("x-rate-limit-limit", "15".to_string()),
                            ("x-rate-limit-remaining", "14".to_string()),
                            ("x-rate-limit-reset", reset),
                        ],
                        r#"{"data":[{"id":"7","url":"https://e.example/w","valid":true,"created_at":"2026-01-01T00:00:00.000Z"}],"meta":{"result_count":1}}"#,
                    )
                        .into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), hits)
}

#[tokio::test]
async fn rate_limited_call_is_retried_after_reset_when_allowed() {
    let (base, hits) = flaky_server(2).await;
    let client = XClient::with_options(
        &base,
        ClientOptions {
            retry_rate_limited: true,
            max_rate_limit_wait: Duration::from_secs(5),
            ..ClientOptions::default()
        },
    )
    .expect("client")
    .bearer_token("t");
    let list = client.list_webhooks().await.expect("retried until 200");
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, "7");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(client.rate_limit().and_then(|r| r.remaining), Some(14));
}

#[tokio::test]
async fn rate_limited_call_is_not_retried_by_default() {
    let (base, hits) = flaky_server(1).await;
    let client = XClient::new(&base).expect("client").bearer_token("t");
    let e = client.list_webhooks().await.expect_err("429");
    assert!(matches!(e, XapiError::RateLimited { .. }), "{e:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    assert_eq!(client.rate_limit().and_then(|r| r.remaining), Some(0));
    // Retries are bounded.
    let (base, hits) = flaky_server(100).await;
    let client = XClient::with_options(
        &base,
        ClientOptions {
            retry_rate_limited: true,
            max_rate_limit_retries: 2,
            ..ClientOptions::default()
        },
    )
    .expect("client")
    .bearer_token("t");
    let e = client.list_webhooks().await.expect_err("still 429");
    assert!(matches!(e, XapiError::RateLimited { .. }));
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

/// Private XAA types need the filtered user's OAuth 2.0 token with the type's scope: the
/// client checks what it can before calling (no call, an error naming the scope), and X
/// (the emulator with `strict_scopes`) refuses the rest.
#[tokio::test]
async fn private_types_need_the_users_oauth2_token_and_scope() {
    let mut cfg = EmulatorConfig {
        strict_scopes: true,
        ..EmulatorConfig::default()
    };
    cfg.users
        .iter_mut()
        .find(|u| u.user_id == USER)
        .unwrap()
        .scopes
        .retain(|s| s != "dm.read");
    let s = setup_with(cfg.clone(), ClientOptions::default()).await;
    let user = cfg.users.iter().find(|u| u.user_id == USER).unwrap();
    let new = |t: &str, u: &str| NewActivitySubscription::Filtered {
        event_type: t.into(),
        filter: json!({ "user_id": u }),
        tag: None,
        webhook_id: None,
    };
    let known = relay_xapi::UserToken {
        access_token: user.oauth2().into(),
        scopes: Some(user.scopes.clone()),
    };
    // Public: the app's Bearer token, no user token needed.
    s.client
        .create_activity_subscription_as(&new("post.create", USER), None)
        .await
        .expect("public type with the app's token");
    // Private, no token: refused before any call.
    let e = s
        .client
        .create_activity_subscription_as(&new("like.create", USER), None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            XapiError::UserTokenRequired {
                scope: "like.read",
                ..
            }
        ),
        "{e}"
    );
    // Private, the scope not granted: refused before any call, naming the scope.
    let e = s
        .client
        .create_activity_subscription_as(&new("dm.sent", USER), Some(&known))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("dm.read"), "{e}");
    assert!(matches!(e, XapiError::MissingScope { .. }), "{e}");
    // With the token and scope: created.
    s.client
        .create_activity_subscription_as(&new("like.create", USER), Some(&known))
        .await
        .expect("private type with the user's token");
    // Scopes unknown to the client: X decides (and refuses).
    let unknown = relay_xapi::UserToken {
        access_token: user.oauth2().into(),
        scopes: None,
    };
    let e = s
        .client
        .create_activity_subscription_as(&new("dm.sent", USER), Some(&unknown))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    assert!(e.to_string().contains("dm.read"), "{e}");
    // Another user's filter with this user's token: refused by X.
    let e = s
        .client
        .create_activity_subscription_as(&new("like.create", OTHER_USER), Some(&known))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    // The app's Bearer token for a private type: refused by X.
    let e = s
        .client
        .create_activity_subscription(&new("like.create", USER))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");
    s.emu.shutdown().await;
}
