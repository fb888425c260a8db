//! X's own documents disagree on response shapes: the client must read all of them.
//! A small server answers with canned bodies over real HTTP.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post, put};
use axum::Router;
use relay_xapi::{ActivitySubscriptionUpdate, NewActivitySubscription, XClient, XapiError};
use serde_json::json;

async fn canned() -> XClient {
    let json = |status: StatusCode, body: &'static str| {
        move || async move { (status, [("content-type", "application/json")], body).into_response() }
    };
    let app = Router::new()
        // data.subscription on create
        .route(
            "/2/activity/subscriptions",
            post(json(
                StatusCode::OK,
                r#"{"data":{"subscription":{"subscription_id":"77","event_type":"post.create","filter":{"user_id":"1"},"tag":"t","created_at":"2026-01-01T00:00:00Z"}},"meta":{"total_subscriptions":1}}"#,
            ))
            // data.subscriptions on list, numbers as strings
            .get(json(
                StatusCode::OK,
                r#"{"data":{"subscriptions":[{"id":"1","event_type":"like.create","filter":{"user_id":"2"}},{"id":2,"user_id":"3","event_types":["follow_events"]}]},"meta":{"result_count":"2"}}"#,
            ))
            .delete(json(
                StatusCode::OK,
                r#"{"data":{"deleted":true},"meta":{"total_subscriptions":0}}"#,
            )),
        )
        // a one-item array on update
        .route(
            "/2/activity/subscriptions/{id}",
            put(json(
                StatusCode::OK,
                r#"{"data":[{"id":"77","event_type":"post.create","filter":{"user_id":"1"},"tag":"new"}]}"#,
            ))
            // 200 with nothing but errors
            .delete(json(
                StatusCode::OK,
                r#"{"errors":[{"title":"SubscriptionNotFound","detail":"gone","type":"https://api.x.com/2/problems/resource-not-found"}]}"#,
            )),
        )
        // X's v1.1-style numeric code
        .route(
            "/2/account_activity/webhooks/{id}/subscriptions/{user}/all",
            delete(json(
                StatusCode::BAD_REQUEST,
                r#"{"errors":[{"message":"Subscription already exists.","code":355}]}"#,
            )),
        )
        // counts as plain numbers this time, "valid" as a string
        .route(
            "/2/account_activity/subscriptions/count",
            get(json(
                StatusCode::OK,
                r#"{"data":{"account_name":"x","provisioned_count":3,"subscriptions_count_all":"2","subscriptions_count_direct_messages":1}}"#,
            )),
        )
        .route(
            "/2/webhooks",
            get(json(
                StatusCode::OK,
                r#"{"data":[{"id":"9","url":"https://e.example/w","valid":"true","created_at":"2026-01-01T00:00:00.000Z"}],"meta":{"result_count":1}}"#,
            ))
            // not JSON at all
            .post(|| async { (StatusCode::OK, "<html>maintenance</html>").into_response() }),
        )
        // job id at the top level, no data wrapper
        .route(
            "/2/webhooks/replay",
            post(json(
                StatusCode::OK,
                r#"{"job_id":"555","created_at":"2026-01-01T00:00:00.000Z"}"#,
            )),
        )
        .route(
            "/2/webhooks/{id}",
            put(|| async { StatusCode::NO_CONTENT.into_response() })
                .delete(json(StatusCode::SERVICE_UNAVAILABLE, "")),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    XClient::new(&format!("http://{addr}"))
        .expect("client")
        .bearer_token("t")
}

#[tokio::test]
async fn nested_array_and_flat_shapes_are_read() {
    let c = canned().await;
    let created = c
        .create_activity_subscription(&NewActivitySubscription::Filtered {
            event_type: "post.create".into(),
            filter: json!({"user_id": "1"}),
            tag: Some("t".into()),
            webhook_id: None,
        })
        .await
        .expect("create");
    assert_eq!(created.id, "77");
    assert_eq!(created.tag.as_deref(), Some("t"));

    let page = c
        .list_activity_subscriptions(None, None)
        .await
        .expect("list");
    assert_eq!(page.subscriptions.len(), 2);
    assert_eq!(page.subscriptions[1].id, "2");
    assert_eq!(
        page.subscriptions[1].event_types,
        vec!["follow_events".to_string()]
    );
    assert_eq!(page.result_count, Some(2));
    assert_eq!(page.next_token, None);

    let updated = c
        .update_activity_subscription(
            "77",
            &ActivitySubscriptionUpdate {
                tag: Some("new".into()),
                webhook_id: None,
            },
        )
        .await
        .expect("update");
    assert_eq!(updated.tag.as_deref(), Some("new"));
    assert_eq!(updated.event_type.as_deref(), Some("post.create"));

    let count = c.subscription_count().await.expect("count");
    assert_eq!(count.subscriptions_count_all, 2);
    assert_eq!(count.provisioned_count, Some(3));
    assert_eq!(count.subscriptions_count_direct_messages, Some(1));

    let hooks = c.list_webhooks().await.expect("webhooks");
    assert!(hooks[0].valid);

    let window = {
        use chrono::{DurationRound as _, Utc};
        let now = Utc::now()
            .duration_trunc(chrono::Duration::minutes(1))
            .expect("trunc");
        relay_xapi::Window {
            from: now - chrono::Duration::minutes(90),
            to: now - chrono::Duration::minutes(40),
        }
    };
    let job = c.replay_webhook("9", &window).await.expect("replay");
    assert_eq!(job.job_id, "555");

    // 204 No Content on a re-CRC: passed.
    assert!(c.validate_webhook("9").await.expect("validate"));
}

#[tokio::test]
async fn error_shapes_are_read() {
    let c = canned().await;
    let e = c
        .unsubscribe_user("1", "2")
        .await
        .expect_err("numeric code");
    assert_eq!(e.reason(), Some("DuplicateSubscriptionFailed"));
    assert_eq!(e.status(), Some(400));
    assert!(
        e.to_string().contains("Subscription already exists."),
        "{e}"
    );

    let e = c
        .delete_activity_subscription("77")
        .await
        .expect_err("200 with only errors");
    // errors[].type (its last path segment) comes before errors[].title.
    assert_eq!(e.reason(), Some("resource-not-found"));
    assert!(e.to_string().ends_with(": gone (HTTP 200)"), "{e}");

    let e = c
        .create_webhook("https://e.example/w")
        .await
        .expect_err("not JSON");
    assert!(
        matches!(e, XapiError::BadResponse { status: 200, .. }),
        "{e:?}"
    );
    assert!(e.to_string().contains("maintenance"));

    let e = c.delete_webhook("9").await.expect_err("503, empty body");
    assert_eq!(e.status(), Some(503));
    assert_eq!(e.reason(), Some("HTTP503"));
}
