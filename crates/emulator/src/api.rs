//! X's management endpoints: webhooks, AAA subscriptions, activity (XAA) subscriptions,
//! replay, with rate-limit headers.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::{json, Value};

use crate::auth::{bearer, oauth};
use crate::error::ApiError;
use crate::state::{ActivitySubscription, Shared, Webhook};

type S = State<Arc<Shared>>;
type R = Result<Response, ApiError>;

pub(crate) fn router(st: Arc<Shared>) -> Router {
    Router::new()
        .route("/2/webhooks", post(create_webhook).get(list_webhooks))
        .route("/2/webhooks/replay", post(replay_json))
        .route(
            "/2/webhooks/{id}",
            put(recrc_webhook).delete(delete_webhook),
        )
        .route(
            "/2/account_activity/webhooks/{id}/subscriptions/all",
            post(aaa_subscribe).get(aaa_check),
        )
        .route(
            "/2/account_activity/webhooks/{id}/subscriptions/all/list",
            get(aaa_list),
        )
        .route(
            "/2/account_activity/webhooks/{id}/subscriptions/{user_id}/all",
            axum::routing::delete(aaa_unsubscribe),
        )
        .route("/2/account_activity/subscriptions/count", get(aaa_count))
        .route(
            "/2/account_activity/replay/webhooks/{id}/subscriptions/all",
            post(replay_query),
        )
        .route(
            "/2/activity/subscriptions",
            post(act_create).get(act_list).delete(act_bulk_delete),
        )
        .route(
            "/2/activity/subscriptions/{id}",
            put(act_update).delete(act_delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&st),
            rate_limit,
        ))
        .with_state(st)
}

/// Adds `x-rate-limit-*` headers (15-minute windows per endpoint and method) and answers
/// 429 `TooManyRequests` past the limit.
async fn rate_limit(State(st): S, req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| req.uri().path().to_owned());
    if st.cfg.aaa_retired && path.starts_with("/2/account_activity/") {
        return ApiError::new(
            410,
            "Gone",
            "The Account Activity API was retired on 2027-01-01; use the X Activity API",
        )
        .into_response();
    }
    let key = format!("{} {}", req.method(), path);
    let now = Utc::now().timestamp().max(0) as u64;
    let limit = st.cfg.rate_limit;
    let (reset, used) = st.count_request(key, now);
    let remaining = limit.saturating_sub(used);
    let mut resp = if used > limit {
        ApiError::new(429, "TooManyRequests", "Too Many Requests").into_response()
    } else {
        next.run(req).await
    };
    let h = resp.headers_mut();
    for (k, v) in [
        ("x-rate-limit-limit", limit.to_string()),
        ("x-rate-limit-remaining", remaining.to_string()),
        ("x-rate-limit-reset", reset.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    resp
}

fn ok(v: Value) -> R {
    Ok(Json(v).into_response())
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Err(ApiError::invalid_request("a JSON body is required"));
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid_request(format!("the body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::invalid_request("the body must be a JSON object"));
    }
    Ok(v)
}

fn query_map(q: &Option<String>) -> HashMap<String, String> {
    q.as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn webhook_json(w: &Webhook) -> Value {
    json!({"id": w.id, "url": w.url, "valid": w.valid, "created_at": rfc3339(w.created_at)})
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

// ------------------------------------------------------------------ webhooks

async fn create_webhook(State(st): S, headers: HeaderMap, body: Bytes) -> R {
    let app = bearer(&st, &headers)?.name.clone();
    let v = parse_body(&body)?;
    let url = v
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid_request("the body needs a string `url`"))?;
    let w = st.register_webhook(&app, url).await?;
    ok(json!({"data": webhook_json(&w)}))
}

async fn list_webhooks(State(st): S, headers: HeaderMap) -> R {
    let app = bearer(&st, &headers)?.name.clone();
    let list: Vec<Value> = st.with_db(|db| {
        db.webhooks
            .iter()
            .filter(|w| w.app == app)
            .map(webhook_json)
            .collect()
    });
    let n = list.len();
    ok(json!({"data": list, "meta": {"result_count": n}}))
}

async fn recrc_webhook(State(st): S, headers: HeaderMap, Path(id): Path<String>) -> R {
    let app = bearer(&st, &headers)?.name.clone();
    st.webhook(&app, &id)?;
    let check = st
        .recrc(&id, "put")
        .await
        .ok_or_else(|| ApiError::bad("WebhookIdInvalid", format!("webhook {id} does not exist")))?;
    if !check.ok {
        return Err(ApiError::bad(
            "CrcValidationFailed",
            format!(
                "CRC check failed: {}; the webhook is now invalid",
                check.error.unwrap_or_default()
            ),
        ));
    }
    ok(json!({"data": {"valid": true}}))
}

async fn delete_webhook(State(st): S, headers: HeaderMap, Path(id): Path<String>) -> R {
    let app = bearer(&st, &headers)?.name.clone();
    st.webhook(&app, &id)?;
    {
        st.with_db(|db| {
            db.webhooks.retain(|w| w.id != id);
            for s in db.activity.iter_mut() {
                if s.webhook_id.as_deref() == Some(id.as_str()) {
                    s.webhook_id = None;
                }
            }
        })
    }
    tracing::info!(webhook_id = id, "webhook deleted");
    ok(json!({"data": {"deleted": true}}))
}

// ---------------------------------------------------------- AAA subscriptions

async fn aaa_subscribe(
    State(st): S,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> R {
    let (app, user) = oauth(&st, &method, &uri, &headers)?;
    st.subscribe(&app.name, &id, &user.user_id)?;
    ok(json!({"data": {"subscribed": true}}))
}

async fn aaa_check(
    State(st): S,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> R {
    let (app, user) = oauth(&st, &method, &uri, &headers)?;
    let w = st.webhook(&app.name, &id)?;
    ok(json!({"data": {"subscribed": w.subscriptions.contains(&user.user_id)}}))
}

async fn aaa_list(State(st): S, headers: HeaderMap, Path(id): Path<String>) -> R {
    let app = bearer(&st, &headers)?;
    let w = st.webhook(&app.name, &id)?;
    let subs: Vec<Value> = w
        .subscriptions
        .iter()
        .map(|u| json!({"user_id": u}))
        .collect();
    ok(json!({"data": {
        "application_id": app.app_id,
        "webhook_id": w.id,
        "webhook_url": w.url,
        "subscriptions": subs,
    }}))
}

async fn aaa_unsubscribe(
    State(st): S,
    headers: HeaderMap,
    Path((id, user_id)): Path<(String, String)>,
) -> R {
    let app = bearer(&st, &headers)?.name.clone();
    st.webhook(&app, &id)?;
    st.with_db(|db| {
        let w = db.webhooks.iter_mut().find(|w| w.id == id).ok_or_else(|| {
            ApiError::bad("WebhookIdInvalid", format!("webhook {id} does not exist"))
        })?;
        let before = w.subscriptions.len();
        w.subscriptions.retain(|u| u != &user_id);
        if w.subscriptions.len() == before {
            return Err(ApiError::bad(
                "SubscriptionNotFound",
                format!("user {user_id} is not subscribed to webhook {id}"),
            ));
        }
        tracing::info!(webhook_id = id, user_id, "user unsubscribed");
        ok(json!({"data": {"subscribed": false}}))
    })
}

async fn aaa_count(State(st): S, headers: HeaderMap) -> R {
    let app = bearer(&st, &headers)?;
    let n = {
        st.with_db(|db| {
            let set: std::collections::HashSet<&String> = db
                .webhooks
                .iter()
                .filter(|w| w.app == app.name)
                .flat_map(|w| w.subscriptions.iter())
                .collect();
            set.len()
        })
    };
    ok(json!({"data": {
        "account_name": app.account_name,
        "provisioned_count": st.cfg.max_subscriptions.to_string(),
        "subscriptions_count_all": n.to_string(),
        "subscriptions_count_direct_messages": "0",
    }}))
}

// -------------------------------------------------------------------- replay

/// Parses `yyyymmddhhmm` (UTC) or an RFC 3339 time.
pub(crate) fn parse_date(name: &str, s: &str) -> Result<DateTime<Utc>, ApiError> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        return NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M")
            .map(|n| Utc.from_utc_datetime(&n))
            .map_err(|_| ApiError::query(format!("{name} is not a valid yyyymmddhhmm date: {s}")));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| ApiError::query(format!("{name} must be yyyymmddhhmm (UTC): {s}")))
}

/// X's rules for a replay window.
pub(crate) fn check_window(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let day = chrono::Duration::hours(24);
    if from > now {
        return Err(ApiError::query("from_date must not be in the future"));
    }
    if from < now - day {
        return Err(ApiError::query(
            "from_date must be within the last 24 hours",
        ));
    }
    if from > now - chrono::Duration::minutes(31) {
        return Err(ApiError::query("from_date must be at least 31 minutes ago"));
    }
    if to < now - day {
        return Err(ApiError::query("to_date must be within the last 24 hours"));
    }
    if to > now - chrono::Duration::minutes(10) {
        return Err(ApiError::query("to_date must be at least 10 minutes ago"));
    }
    if from > to {
        return Err(ApiError::query("from_date must not be after to_date"));
    }
    Ok(())
}

fn start_replay(st: &Arc<Shared>, app: &str, id: &str, from: &str, to: &str) -> R {
    let from = parse_date("from_date", from)?;
    let to = parse_date("to_date", to)?;
    check_window(from, to, Utc::now())?;
    let job = st.start_replay(app, id, from, to)?;
    ok(json!({"data": {"job_id": job.job_id, "created_at": rfc3339(job.created_at)}}))
}

async fn replay_query(
    State(st): S,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> R {
    let app = bearer(&st, &headers)?.name.clone();
    let q = query_map(&q);
    let from = q
        .get("from_date")
        .ok_or_else(|| ApiError::query("from_date is required"))?;
    let to = q
        .get("to_date")
        .ok_or_else(|| ApiError::query("to_date is required"))?;
    start_replay(&st, &app, &id, from, to)
}

async fn replay_json(State(st): S, headers: HeaderMap, body: Bytes) -> R {
    let app = bearer(&st, &headers)?.name.clone();
    let v = parse_body(&body)?;
    let field = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::query(format!("{k} is required")))
    };
    start_replay(
        &st,
        &app,
        field("webhook_id")?,
        field("from_date")?,
        field("to_date")?,
    )
}

// ----------------------------------------------------- activity subscriptions

pub(crate) fn sub_json(s: &ActivitySubscription) -> Value {
    if let Some(et) = &s.event_type {
        let mut v = json!({
            "id": s.id,
            "subscription_id": s.id,
            "event_type": et,
            "filter": s.filter,
            "created_at": rfc3339(s.created_at),
            "updated_at": rfc3339(s.updated_at),
        });
        if let Some(o) = v.as_object_mut() {
            if let Some(t) = &s.tag {
                o.insert("tag".into(), json!(t));
            }
            if let Some(w) = &s.webhook_id {
                o.insert("webhook_id".into(), json!(w));
            }
        }
        v
    } else {
        let mut v = json!({
            "id": s.id,
            "user_id": s.user_id,
            "event_types": s.event_types,
            "created_at": rfc3339(s.created_at),
        });
        if let Some(o) = v.as_object_mut() {
            if let Some(t) = &s.tag {
                o.insert("tag".into(), json!(t));
            }
            if let Some(w) = &s.webhook_id {
                o.insert("webhook_id".into(), json!(w));
            }
        }
        v
    }
}

fn opt_string(v: &Value, k: &str) -> Result<Option<String>, ApiError> {
    match v.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid_request(format!("`{k}` must be a string"))),
    }
}

async fn act_create(State(st): S, headers: HeaderMap, body: Bytes) -> R {
    let (app, user) = crate::auth::bearer_or_user(&st, &headers)?;
    let v = parse_body(&body)?;
    let tag = opt_string(&v, "tag")?;
    let webhook_id = opt_string(&v, "webhook_id")?;
    if let Some(w) = &webhook_id {
        st.webhook(&app, w)?;
    }
    let now = Utc::now();
    let sub = if let Some(types) = v.get("event_types") {
        let types: Vec<String> = serde_json::from_value(types.clone())
            .map_err(|_| ApiError::invalid_request("`event_types` must be an array of strings"))?;
        let user = opt_string(&v, "user_id")?
            .ok_or_else(|| ApiError::invalid_request("`user_id` is required"))?;
        if types.is_empty() {
            return Err(ApiError::invalid_request("`event_types` must not be empty"));
        }
        ActivitySubscription {
            id: st.ids.next_str(),
            app: app.clone(),
            event_type: None,
            event_types: types,
            user_id: Some(user.clone()),
            filter: json!({"user_id": user}),
            tag,
            webhook_id,
            created_at: now,
            updated_at: now,
        }
    } else {
        let et = opt_string(&v, "event_type")?.ok_or_else(|| {
            ApiError::invalid_request(
                "the body needs `event_type` and `filter` (or `user_id` and `event_types`)",
            )
        })?;
        // `oauth.revoke` is the one type subscribed with an empty filter (`{}`).
        let filter = v
            .get("filter")
            .filter(|f| {
                f.as_object()
                    .is_some_and(|o| !o.is_empty() || et == "oauth.revoke")
            })
            .cloned()
            .ok_or_else(|| ApiError::invalid_request("`filter` must be a non-empty object"))?;
        ActivitySubscription {
            id: st.ids.next_str(),
            app: app.clone(),
            event_type: Some(et),
            event_types: Vec::new(),
            user_id: filter
                .get("user_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            filter,
            tag,
            webhook_id,
            created_at: now,
            updated_at: now,
        }
    };
    if let Some(et) = &sub.event_type {
        crate::auth::check_scope(&st, et, sub.user_id.as_deref(), user.as_ref())?;
    }
    st.with_db(|db| {
        if db.activity.iter().any(|s| {
            s.app == app
                && s.event_type == sub.event_type
                && s.event_types == sub.event_types
                && s.filter == sub.filter
                && s.webhook_id == sub.webhook_id
        }) {
            return Err(ApiError::bad(
                "DuplicateSubscriptionFailed",
                "an identical subscription exists",
            ));
        }
        if db.activity.iter().filter(|s| s.app == app).count() >= st.cfg.max_activity_subscriptions
        {
            return Err(ApiError::bad(
                "SubscriptionLimitExceeded",
                format!(
                    "the limit is {} subscriptions",
                    st.cfg.max_activity_subscriptions
                ),
            ));
        }
        db.activity.push(sub.clone());
        let total = db.activity.iter().filter(|s| s.app == app).count();
        tracing::info!(id = sub.id, "activity subscription created");
        ok(json!({"data": sub_json(&sub), "meta": {"total_subscriptions": total}}))
    })
}

async fn act_list(State(st): S, headers: HeaderMap, RawQuery(q): RawQuery) -> R {
    let app = bearer(&st, &headers)?.name.clone();
    let q = query_map(&q);
    let max = match q.get("max_results") {
        None => 100,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|m| (1..=1000).contains(m))
            .ok_or_else(|| ApiError::query("max_results must be between 1 and 1000"))?,
    };
    st.with_db(|db| {
        let mine: Vec<&ActivitySubscription> =
            db.activity.iter().filter(|s| s.app == app).collect();
        let start = match q.get("pagination_token") {
            None => 0,
            Some(t) => mine
                .iter()
                .position(|s| &s.id == t)
                .ok_or_else(|| ApiError::query("pagination_token is invalid"))?,
        };
        let page: Vec<Value> = mine
            .iter()
            .skip(start)
            .take(max)
            .map(|s| sub_json(s))
            .collect();
        let mut meta = json!({"result_count": page.len()});
        if let Some(next) = mine.get(start + max) {
            meta["next_token"] = json!(next.id);
        }
        ok(json!({"data": page, "meta": meta}))
    })
}

async fn act_update(State(st): S, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> R {
    let app = bearer(&st, &headers)?.name.clone();
    let v = parse_body(&body)?;
    if let Some(bad) = v
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "tag" && *k != "webhook_id"))
    {
        return Err(ApiError::invalid_request(format!(
            "only `tag` and `webhook_id` can be updated, not `{bad}`"
        )));
    }
    let tag = opt_string(&v, "tag")?;
    let webhook_id = opt_string(&v, "webhook_id")?;
    if let Some(w) = &webhook_id {
        st.webhook(&app, w)?;
    }
    st.with_db(|db| {
        let s = db
            .activity
            .iter_mut()
            .find(|s| s.id == id && s.app == app)
            .ok_or_else(|| {
                ApiError::not_found("SubscriptionNotFound", format!("no subscription {id}"))
            })?;
        if v.get("tag").is_some() {
            s.tag = tag;
        }
        if v.get("webhook_id").is_some() {
            s.webhook_id = webhook_id;
        }
        s.updated_at = Utc::now();
        ok(json!({"data": sub_json(s)}))
    })
}

async fn act_delete(State(st): S, headers: HeaderMap, Path(id): Path<String>) -> R {
    let app = bearer(&st, &headers)?.name.clone();
    st.with_db(|db| {
        let before = db.activity.len();
        db.activity.retain(|s| !(s.id == id && s.app == app));
        if db.activity.len() == before {
            return Err(ApiError::not_found(
                "SubscriptionNotFound",
                format!("no subscription {id}"),
            ));
        }
        ok(json!({"data": {"deleted": true}}))
    })
}

async fn act_bulk_delete(State(st): S, headers: HeaderMap, RawQuery(q): RawQuery) -> R {
    let app = bearer(&st, &headers)?.name.clone();
    let q = query_map(&q);
    let ids: Vec<String> = q
        .get("ids")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() || ids.len() > 100 {
        return Err(ApiError::query("ids must list 1 to 100 subscription ids"));
    }
    st.with_db(|db| {
        let mut deleted = Vec::new();
        let mut missing = Vec::new();
        for id in ids {
            let before = db.activity.len();
            db.activity.retain(|s| !(s.id == id && s.app == app));
            if db.activity.len() < before {
                deleted.push(id);
            } else {
                missing.push(id);
            }
        }
        let total = db.activity.iter().filter(|s| s.app == app).count();
        // X's shape: one item per id deleted, one error per id not.
        let data: Vec<Value> = deleted
            .iter()
            .map(|id| json!({"deleted": true, "subscription_id": id}))
            .collect();
        let mut out = json!({"data": data, "meta": {"total_subscriptions": total}});
        if !missing.is_empty() {
            out["errors"] = Value::Array(
                missing
                    .iter()
                    .map(|id| json!({"reason": "SubscriptionNotFound", "message": format!("no subscription {id}"), "subscription_id": id}))
                    .collect(),
            );
        }
        ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window_rules() {
        let now = Utc::now();
        let m = |x: i64| now - chrono::Duration::minutes(x);
        assert!(check_window(m(120), m(20), now).is_ok());
        assert!(check_window(m(20), m(15), now).is_err()); // from < 31 min ago
        assert!(check_window(m(60), m(5), now).is_err()); // to < 10 min ago
        assert!(check_window(m(60 * 25), m(60), now).is_err()); // older than 24 h
        assert!(check_window(m(40), m(50), now).is_err()); // from after to
        assert!(check_window(now + chrono::Duration::minutes(5), m(50), now).is_err());
        assert!(parse_date("from_date", "202501011200").is_ok());
        assert!(parse_date("from_date", "2025-13-01").is_err());
        assert!(parse_date("from_date", "202513011200").is_err());
    }
}
